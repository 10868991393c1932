"""scripts/bench_boundary.py: every boundary it compares is valid at the limit (crosses in at most
its level of paths over 60 looks), and the mixture it calls ours is the judge's own."""

from __future__ import annotations

import math

import numpy as np
import pytest

from canary.analysis import sequential
from scripts import bench_boundary as bb

INFO = bb.DI * np.arange(1, bb.LOOKS + 1)


@pytest.mark.parametrize("level", bb.LEVELS)
def test_every_boundary_crosses_at_most_its_level_at_the_limit(level: float) -> None:
    for name, fn in bb.boundaries(level).items():
        looks = bb.crossing_looks(np.array([fn(i) for i in INFO]), 0.0, np.random.default_rng(7), 20_000)
        assert np.mean(np.isfinite(looks)) <= level, name


def test_ours_is_the_judges_boundary_and_a_point_sprt_is_lowest_where_it_is_tuned() -> None:
    ours, _, point, _ = bb.boundaries(0.0098).values()
    for i in (450.0, 4500.0):
        assert math.exp(-sequential.log_mixture(ours(i), i)) == pytest.approx(0.0098, rel=1e-4)
    tuned = 2 * math.log(1 / 0.0098) / bb.THETA_MARGIN**2  # where theta1 sqrt(I) = sqrt(2 log(1/level))
    assert point(tuned) < ours(tuned) and point(20 * tuned) > ours(20 * tuned)


def test_the_table_has_a_row_per_level_and_boundary() -> None:
    out = bb.table(paths=500, seed=1)
    assert out.count("\n| 0.0022 |") == out.count("\n| 0.0098 |") == 4 and "(ours)" in out
