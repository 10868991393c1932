"""A canary whose exporter writes seconds, on Prometheus native histograms (judge pass side, twenty-first
session, an attacker).

Native arms share one log grid (2^(i/8) at schema 3) whatever the unit, so the canary's bounds x1000 are
no bounds of the stable's and `_unit_mismatch` has nothing to match. A canary really k times slower,
exporting seconds, reads 1000/k times *faster*: at k = 10..50 that is 20-100x, under the 100x that
`_far_faster` refused, and the default policy's latency check (+20% and 250 ms) PASSed a canary whose
p95 is 1.1-5.7 s against the stable's 114 ms. A canary 10x or more faster at the median is now read as a
unit slip (ERROR: never a pass; the step's deadline or a person decides), at every layout.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import lognorm

from canary.analysis import judge as J
from canary.model import Histogram, Outcome
from canary.policy import parse_policy

GRID = [2 ** (i / 8) for i in range(-80, 140)]  # schema 3, 0.001 .. 185,000


def _native(n: int, median_ms: float, unit: float) -> Histogram:
    """A native arm on GRID of lognormal latency (sigma 0.5) written in `unit` (1: ms, 1e-3: seconds)."""
    counts = [float(round(n * x)) for x in lognorm.cdf(np.array(GRID) / unit, 0.5, scale=median_ms)]
    return Histogram((*GRID, math.inf), (*counts, float(n)))


def _policy(**limits: float):
    return parse_policy({"steps": [10, 100], "checks": [{"name": "l", "kind": "latency", "quantile": 0.95,
                                                         **limits}]})


@pytest.mark.parametrize("slower", [10, 20, 50])
@pytest.mark.parametrize("limits", [{"max_increase_pct": 20}, {"max_increase_pct": 20, "max_ms": 250},
                                    {"max_ms": 250}])
def test_a_slower_canary_exporting_seconds_on_a_native_grid_never_passes(slower: int, limits: dict) -> None:
    stable, canary = _native(100_000, 50, 1), _native(5_000, 50 * slower, 1e-3)
    r = J.judge(_policy(**limits), {"l": (stable, canary)}).results[0]
    assert r.outcome is Outcome.ERROR, r.reason  # was PASS: "p95 2.29 ms vs 114 ms (-98%, limit +20%)"
    assert "exporter writing seconds" in r.reason, r.reason


@pytest.mark.parametrize("faster", [1.0, 1.5, 4.0])
def test_a_faster_canary_on_the_same_grid_is_still_judged(faster: float) -> None:
    stable, canary = _native(100_000, 50, 1), _native(5_000, 50 / faster, 1)
    r = J.judge(_policy(max_increase_pct=20, max_ms=250), {"l": (stable, canary)}).results[0]
    assert r.outcome is Outcome.PASS, r.reason
