"""A numeric feature with a few distinct training values gets a bucket per value (`profile`: `le` bounds at the values),
and is compared bucket by bucket, as categories (Evidently compares such features as categories). But a live value
that is none of the training's counts in the bucket of the value above it: a 0/1 flag sent -1 for "unknown" read as
0, a rating of 1-5 sent 0 read as 1, a 1.5 read as 2. Such traffic read "no drift", exit 0, however much of it came
(decision 449). The live mean, which the exporter sends, is checked against what the buckets hold at the training's
values; float32 values of the training's own are not drift (decision 153's case, held)."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from canary.cli import app
from canary.drift.compare import compare
from canary.drift.exporter import FeatureExporter
from canary.drift.profile import capture


def _profile(rng: np.random.Generator) -> dict[str, Any]:
    import pyarrow as pa

    n = 5_000
    return capture(pa.table({"flag": rng.choice([0.0, 1.0], n), "rating": rng.choice([1.0, 2.0, 3.0, 4.0, 5.0], n),
                             "rate": rng.choice([0.1, 0.2, 0.3], n), "const": np.full(n, 7.0)}),
                   model="m", version="v1", file="train.parquet", sha256="0" * 64)


def _live(prof: dict[str, Any], rng: np.random.Generator, **change: Any) -> dict[str, Any]:
    exporter = FeatureExporter(prof, registry=None)
    n = 3_000
    cols = {"flag": rng.choice([0.0, 1.0], n), "rating": rng.choice([1.0, 2.0, 3.0, 4.0, 5.0], n),
            "rate": rng.choice([0.1, 0.2, 0.3], n), "const": np.full(n, 7.0)}
    for name, edit in change.items():
        cols[name] = edit(cols[name])
    for row in zip(*(np.asarray(v, np.float32) for v in cols.values())):  # FP32 tensors, as a model server holds them
        exporter.observe(dict(zip(cols, row)))
    return exporter.live_counts()


def _part(value: float, share: float) -> Any:
    def edit(x: np.ndarray) -> np.ndarray:
        x = x.copy()
        x[: int(len(x) * share)] = value
        return x
    return edit


@pytest.mark.parametrize("feature,edit", [
    ("flag", _part(-1.0, 0.12)),  # -1 for "unknown" in 12% of requests: counted as 0
    ("rating", _part(-999.0, 0.01)),  # a sentinel in 1%, below the lowest
    ("rate", _part(-1.0, 0.05)),
    ("const", _part(-1.0, 0.1))])  # a feature constant in training
def test_live_values_none_of_the_trainings_are_drift(tmp_path: Any, feature: str, edit: Any) -> None:
    rng = np.random.default_rng(11)
    prof = _profile(rng)
    assert prof["features"]["rating"]["bounds"] == [1.0, 2.0, 3.0, 4.0, 5.0]  # a bucket per value
    live = _live(prof, rng, **{feature: edit})
    [f] = [f for f in compare(prof, live).features if f.feature == feature]
    assert f.drifted and f.test == "off_values", f
    assert "none of the training's" in f.note and f.p_value is not None and f.p_value < 0.05, f
    (tmp_path / "p.json").write_text(json.dumps(prof))
    (tmp_path / "i.json").write_text(json.dumps({"features": {feature: live[feature]}}))
    r = CliRunner().invoke(app, ["drift", "check", "--baseline", str(tmp_path / "p.json"), "--input",
                                 str(tmp_path / "i.json"), "-o", "json"])
    def strict(token: str) -> Any:
        raise AssertionError(f"{token} in -o json: no JSON a Go or JavaScript reader parses")

    out = json.loads(r.stdout, parse_constant=strict)  # a constant feature's gap has no spread to divide by
    [row] = [x for x in out["features"] if x["feature"] == feature]
    assert row["drifted"] is True and row["test"] == "off_values", row


def test_the_same_traffic_as_float32_is_no_drift_and_a_shift_among_the_values_is_judged_by_value() -> None:
    rng = np.random.default_rng(12)
    prof = _profile(rng)
    for _ in range(5):
        got = compare(prof, _live(prof, rng))
        assert not [f for f in got.features if f.drifted], got.features
    # more 1s than in training, no value off the training's: judged value by value as before (not `off_values`)
    moved = compare(prof, _live(prof, rng, flag=lambda x: np.where(rng.random(len(x)) < 0.8, 1.0, 0.0)))
    [flag] = [f for f in moved.features if f.feature == "flag"]
    assert flag.test == "jensenshannon" and flag.drifted, flag


def test_without_a_live_sum_the_values_are_said_not_checked() -> None:
    """An exporter that sends no sum (an older one's buckets alone, `--input` without one): the check cannot run, and
    the feature's note says so, as a Wasserstein verdict read without the sum does (never silently)."""
    from canary.drift.compare import NO_SUM_VALUES

    rng = np.random.default_rng(13)
    prof = _profile(rng)
    live = {name: {"counts": cur["counts"]} for name, cur in _live(prof, rng, flag=_part(-1.0, 0.12)).items()}
    got = {f.feature: f for f in compare(prof, live).features}
    assert not got["flag"].drifted and got["flag"].note == NO_SUM_VALUES, got["flag"]
    assert got["const"].note == NO_SUM_VALUES and got["rating"].note == NO_SUM_VALUES
