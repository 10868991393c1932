"""A model server's float32 inputs against a float64 training profile (decision 153).

Training data are float64 (pandas, Parquet); a model server often holds its inputs as float32 (Triton's
FP32 tensors), and float32(0.1) is 0.10000000149, a little above 0.1. A feature whose bucket bounds are
its own values (a rate with a few values: a bucket per value) had every live 0.1, 0.2, 0.3 counted in
the bucket above, one the training data left empty: drift on unchanged traffic, in every window.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from canary.drift.compare import compare
from canary.drift.exporter import FeatureExporter
from canary.drift.profile import capture

RATES = [0.0, 0.1, 0.2, 0.3]  # a discount rate: four values, a bucket each
SIGNED = [-0.7, -0.3, 0.1, 0.7, 1.1]  # float32 rounds some of these up, some down, on both sides of 0


def _profile(rng: np.random.Generator) -> dict[str, Any]:
    import pyarrow as pa

    n = 5_000
    return capture(pa.table({"rate": rng.choice(RATES, n), "signed": rng.choice(SIGNED, n)}),
                   model="m", version="v1", file="train.parquet", sha256="0" * 64)


def test_float32_inputs_of_a_float64_profile_are_not_drift() -> None:
    rng = np.random.default_rng(3)
    prof = _profile(rng)
    assert prof["features"]["rate"]["bounds"] == RATES  # a bucket per value: the bounds are the values
    exporter = FeatureExporter(prof, registry=None)
    for rate, signed in zip(rng.choice(RATES, 3_000).astype(np.float32), rng.choice(SIGNED, 3_000).astype(np.float32)):
        exporter.observe({"rate": rate, "signed": signed})  # the same traffic, as FP32 tensor values
    live = exporter.live_counts()
    # every float32 value is counted in its own value's bucket, none in the one above (which training left empty)
    assert live["rate"]["counts"][-1] == 0 and live["signed"]["counts"][-1] == 0, live
    assert all(c > 0 for c in live["rate"]["counts"][:-1])
    result = compare(prof, live)
    by = {f.feature: f for f in result.features}
    assert not by["rate"].drifted and not by["signed"].drifted, by  # was Jensen-Shannon 0.41, drifted
    assert by["rate"].score < 0.05 and result.share == 0.0


@pytest.mark.parametrize("value, bucket", [(np.float32(0.1), 1), (0.1 + 1e-15, 1), (0.10001, 2), (0.3000001, 4)])
def test_a_value_is_in_its_bounds_bucket_at_float32_precision_and_only_there(value: float, bucket: int) -> None:
    """One float32 step above a bound still counts as the bound; beyond it, the next bucket: a new value
    between the profile's (0.10001) or above the last (0.3000001, float32's next after 0.3 is 0.30000001192)
    is still seen."""
    prof = _profile(np.random.default_rng(4))
    exporter = FeatureExporter(prof, registry=None)
    exporter.observe({"rate": value, "signed": 0.1})
    assert exporter.live_counts()["rate"]["counts"].index(1) == bucket


def test_the_capture_counts_a_value_as_the_exporter_does() -> None:
    """The profile's counts and the exporter's agree value for value (a training column holding both 0.1
    and float32's 0.1, e.g. one joined from two sources, counts both in the bucket of 0.1)."""
    import pyarrow as pa

    values = [0.0, 0.1, float(np.float32(0.1)), 0.2, float(np.float32(0.2)), 0.3, 0.5, 0.7, 1.0, 2.0] * 50
    prof = capture(pa.table({"x": values}), model="m", version="v1", file="t.parquet", sha256="0" * 64)
    exporter = FeatureExporter(prof, registry=None)
    for v in values:
        exporter.observe({"x": v})
    assert exporter.live_counts()["x"]["counts"] == prof["features"]["x"]["counts"]


def test_a_bound_within_a_float32_step_of_the_next_keeps_its_own_value() -> None:
    """Decision 156: the float32 step above a bound never reaches the next bound. Above 2^23 one float32 step
    is more than 1, so an integer feature (a date as YYYYMMDD, an id) with a bucket per value had 20261202
    counted in 20261201's bucket, in the capture and the exporter alike: the next bucket empty on both sides,
    and traffic moved wholly from one value to the other was no drift (Jensen-Shannon 0)."""
    import pyarrow as pa

    days = [20261201, 20261202, 20261203]
    prof = capture(pa.table({"day": days * 500}), model="m", version="v1", file="t.parquet", sha256="0" * 64)
    f = prof["features"]["day"]
    assert f["bounds"] == days and f["counts"] == [500, 500, 500, 0], f
    exporter = FeatureExporter(prof, registry=None)
    for _ in range(1_000):
        exporter.observe({"day": 20261203})  # every request now has the last day
    live = exporter.live_counts()
    assert live["day"]["counts"] == [0, 0, 1_000, 0], live
    assert compare(prof, live).features[0].drifted
