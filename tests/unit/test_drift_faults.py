"""Drift faults found by a fourteenth-session review, pure parts: features whose values are negative,
malformed baselines, episode numbers that repeat, the quiet period, features that stop arriving,
evidence too large for an annotation."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from canary.drift import compare as C
from canary.drift.compare import compare

NO_SUM = getattr(C, "NO_SUM", "no live sum")  # the note (a name only the fixed module has)
from canary.drift.exporter import FeatureExporter
from canary.drift.profile import capture


def _profile(columns: dict[str, Any], model: str = "rec", version: str = "v1") -> dict[str, Any]:
    import pyarrow as pa

    return capture(pa.table(columns), model=model, version=version, file="t.parquet", sha256="0" * 64)


def test_every_numeric_feature_exports_its_sum_whatever_the_sign_of_its_bounds() -> None:
    from prometheus_client import CollectorRegistry, generate_latest

    rng = np.random.default_rng(1)
    prof = _profile({"z": rng.normal(0, 1, 2_000), "p": rng.uniform(1, 2, 2_000)})
    assert prof["features"]["z"]["bounds"][0] < 0 <= prof["features"]["p"]["bounds"][0]
    reg = CollectorRegistry()
    ex = FeatureExporter(prof, registry=reg)
    for z, p in zip((-3.0, 1.0, -0.5), (1.5, 1.2, 1.9)):
        ex.observe({"z": z, "p": p})
    text = generate_latest(reg).decode()
    for name, pos, neg in (("z", 1.0, 3.5), ("p", 4.6, 0.0)):
        for sign, value in (("positive", pos), ("negative", neg)):
            line = next(x for x in text.splitlines() if x.startswith("model_feature_value_sum_by_sign_total{")
                        and f'feature="{name}"' in x and f'sign="{sign}"' in x)
            assert abs(float(line.rsplit(" ", 1)[1]) - value) < 1e-9, line
    assert abs(ex.live_counts()["z"]["sum"] - (-2.5)) < 1e-12


def test_a_missing_live_sum_is_said_never_silently_skipped() -> None:
    rng = np.random.default_rng(2)
    prof = _profile({"age": rng.normal(40, 10, 5_000)})
    ex = FeatureExporter(prof, registry=None)
    for a in rng.normal(40, 10, 2_000):
        ex.observe({"age": a})
    live = ex.live_counts()
    [with_sum] = compare(prof, live).features
    assert with_sum.test == "wasserstein" and NO_SUM not in with_sum.note
    [without] = compare(prof, {"age": {"counts": live["age"]["counts"]}}).features
    assert without.note == NO_SUM and NO_SUM in without.reason()
