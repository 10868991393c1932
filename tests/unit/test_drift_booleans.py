"""A boolean feature is one feature whatever its spelling: True/False, 1/0, "True"/"false"/"1"/"0", at
capture, in the exporter and in --input. It was read as full drift (Jensen-Shannon 0.83, a retraining
Job) when requests sent 1/0 or the text "True"/"False": every value fell under "__other__"."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from canary.drift.compare import compare
from canary.drift.exporter import FeatureExporter
from canary.drift.profile import boolean_category, capture


def _profile(promo: Any) -> dict[str, Any]:
    import pyarrow as pa

    rng = np.random.default_rng(5)
    return capture(pa.table({"promo": promo, "age": rng.normal(40, 10, len(promo))}), model="rec", version="v1",
                   file="t.parquet", sha256="0" * 64)


FLAGS = np.random.default_rng(1).random(5_000) < 0.3


@pytest.mark.parametrize("training", [FLAGS.tolist(), ["True" if b else "False" for b in FLAGS],
                                      ["TRUE" if b else "false" for b in FLAGS]])
@pytest.mark.parametrize("spell", [bool, int, float, lambda b: "True" if b else "False",
                                   lambda b: "1" if b else "0", lambda b: np.bool_(b)])
def test_every_spelling_of_a_boolean_is_the_same_feature(training: list[Any], spell: Any) -> None:
    prof = _profile(training)
    assert set(prof["features"]["promo"]["categories"]) == {"true", "false"}
    ex = FeatureExporter(prof, registry=None)
    r = np.random.default_rng(6)
    for b, a in zip(r.random(5_000) < 0.3, r.normal(40, 10, 5_000)):
        ex.observe({"promo": spell(bool(b)), "age": a})
    res = compare(prof, ex.live_counts())
    promo = next(f for f in res.features if f.feature == "promo")
    assert not promo.drifted and promo.value < 0.05, promo.reason()
    assert ex.live_counts()["promo"]["missing"] == 0 and ex.live_counts()["promo"]["other"] == 0


def test_a_value_that_is_no_boolean_is_a_type_mismatch_not_drift() -> None:
    prof = _profile(FLAGS.tolist())
    ex = FeatureExporter(prof, registry=None)
    r = np.random.default_rng(6)
    for a in r.normal(40, 10, 2_000):
        ex.observe({"promo": "yes", "age": a})
    res = compare(prof, ex.live_counts())
    assert "promo" not in {f.feature for f in res.features} and res.not_arriving() == ("promo",)
    assert not res.drifted


def test_input_files_spell_booleans_as_they_like() -> None:
    prof = _profile(FLAGS.tolist())
    n_true = int(FLAGS.sum())
    live = {"promo": {"categories": {"True": n_true, "False": 5_000 - n_true}}}
    (f,) = compare(prof, live).features
    assert not f.drifted and f.value == 0.0
    live = {"promo": {"categories": {"1": n_true, "0": 5_000 - n_true, "maybe": 4_000}, "missing": 0}}
    res = compare(prof, live)
    assert not res.features[0].drifted and res.more_missing() == ("promo",)


@pytest.mark.parametrize("value,want", [(True, "true"), (0, "false"), (1.0, "true"), (" FALSE ", "false"),
                                        ("1", "true"), (2, None), ("yes", None), (None, None), (0.5, None)])
def test_boolean_spellings(value: Any, want: str | None) -> None:
    assert boolean_category(value) == want
