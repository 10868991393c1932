"""What the exporter counts a categorical value under (decision 540), and a boolean sent for a numeric feature
(decision 543).

- A training category spelt like the exporter's own labels ("__other__", "__empty__") was counted with the values
  the profile never saw, or with "": the watch read a pipeline's own "__other__" bin as unseen values.
- A category captured from text ("1") and sent live as a number of another spelling (1.0) counted under
  "__other__": a drift of the whole feature, and a retraining, for nothing.
- A numeric 0/1 feature sent as Python booleans counted missing while np.True_ counted 1.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from canary.drift.compare import compare
from canary.drift.exporter import FeatureExporter
from canary.feature_labels import OTHER, category_label, category_of_label
from canary.drift.profile import capture


def _profile(**columns: Any) -> dict[str, Any]:
    import pyarrow as pa

    return capture(pa.table(columns), model="rec", version="v1", file="t.parquet", sha256="0" * 64)


def _labels(ex: FeatureExporter, feature: str) -> dict[str, float]:
    (fam,) = [m for m in ex.collect() if m.name == "model_feature_category"]
    return {s.labels["category"]: s.value for s in fam.samples if s.labels["feature"] == feature}


def test_a_category_spelt_like_the_exporters_own_labels_is_a_series_of_its_own() -> None:
    training = ["__other__"] * 500 + ["__empty__"] * 300 + [""] * 150 + ["___other__"] * 50
    prof = _profile(c=training)
    ex = FeatureExporter(prof, registry=CollectorRegistry())
    for v in [*training, "never-seen", "never-seen"]:
        ex.observe({"c": v})
    assert _labels(ex, "c") == {"___other__": 500, "___empty__": 300, "__empty__": 150, "____other__": 50,
                                OTHER: 2}
    live = ex.live_counts()["c"]
    assert live["categories"] == {"__other__": 500, "__empty__": 300, "": 150, "___other__": 50}
    assert live["other"] == 2
    assert not compare(prof, ex.live_counts()).drifted
    # what the watch reads back from those labels (`live.live_counts`); every other label is the text itself
    assert {category_of_label(k) for k in _labels(ex, "c") if k != OTHER} == set(prof["features"]["c"]["categories"])
    for text in ("Lyon", "", "other", "_other__", "x__other__", "__other__x", "__empty__", "__other__"):
        assert category_of_label(category_label(text)) == text
    assert category_label("Lyon") == "Lyon" and category_label("x__other__") == "x__other__"


@pytest.mark.parametrize("training, sent, under", [
    (["1", "2", "3"], [1.0, 2.0, np.float32(3.0), np.float64(1.0)], ["1", "2", "3", "1"]),  # text "1", a float live
    (["1.0", "2.0", "2.5"], [1, np.int64(2), 2.5], ["1.0", "2.0", "2.5"]),  # text "1.0", an int live
])
def test_a_number_counts_under_the_profiles_spelling_of_the_same_number(training: list[str], sent: list[Any],
                                                                       under: list[str]) -> None:
    prof = _profile(code=training * 400)
    assert prof["features"]["code"]["type"] == "categorical"
    ex = FeatureExporter(prof, registry=None)
    for v in sent:
        ex.observe({"code": v})
    live = ex.live_counts()["code"]
    assert live["other"] == 0 and live["missing"] == 0
    assert {k: n for k, n in live["categories"].items() if n} == {k: under.count(k) for k in under}


def test_only_the_same_number_counts_under_a_category_and_text_is_its_own() -> None:
    prof = _profile(code=["1", "2", "01"] * 400)
    ex = FeatureExporter(prof, registry=None)
    for v in (1.5, 4.0, 4, "1.0", " 1", True, float("nan")):
        ex.observe({"code": v})
    live = ex.live_counts()["code"]
    # 1.5, 4.0, 4 and the texts "1.0" and " 1" are none of the categories; True is "true"; NaN is missing
    assert live["other"] == 6 and live["missing"] == 1 and not any(live["categories"].values())
    ex.observe({"code": 1.0})  # "1" and "01" are both the number 1: Python's own spelling of it takes it
    assert ex.live_counts()["code"]["categories"]["1"] == 1


def test_a_boolean_sent_for_a_0_1_feature_counts_as_1_or_0_either_kind() -> None:
    rng = np.random.default_rng(3)
    flags = (rng.random(2_000) < 0.3).astype(int)
    prof = _profile(flag=flags, age=rng.normal(40, 10, 2_000))
    assert prof["features"]["flag"]["bounds"] == [0.0, 1.0]
    counted = []
    for spell in (int, bool, np.bool_):
        ex = FeatureExporter(prof, registry=None)
        for f in flags:
            ex.observe({"flag": spell(f), "age": 40.0})
        counted.append(ex.live_counts()["flag"])
    assert counted[0] == counted[1] == counted[2] and counted[0]["missing"] == 0
    # on a feature that is not one of 0s and 1s, a boolean of either kind is a type mismatch: missing
    ex = FeatureExporter(prof, registry=None)
    for v in (True, np.True_, False, np.False_):
        ex.observe({"flag": 1, "age": v})
    assert ex.live_counts()["age"]["missing"] == 4 and sum(ex.live_counts()["age"]["counts"]) == 0


def test_an_exporter_from_before_the_escape_is_named_as_the_cause() -> None:
    """The watch upgraded before the model server: the old exporter counts a profile category "__other__" under its
    own label, read as the values the profile never saw; said as an exporter to upgrade (exit 2, bad live data)."""
    from canary.drift.live import _same_categories
    from canary.errors import ConfigError

    with pytest.raises(ConfigError, match=r"'__other__' is exported under the exporter's own label .* upgrade canary "
                                          r"in the model server \(it exports such a category as ___other__\)"):
        _same_categories("bin", {"categories": {"__other__": 5, "a": 5}}, {"a": 3.0})
    with pytest.raises(ConfigError, match="upgrade canary in the model server"):
        _same_categories("bin", {"categories": {"__empty__": 5, "a": 5}}, {"a": 3.0, "": 2.0})
