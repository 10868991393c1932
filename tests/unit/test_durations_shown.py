"""Every length a person reads is said one way: the policy's and the flags' own ('2h5m'), decision 495.

Before, drift said "26h" in one line and "26.0 h" in the next, "(opened 2h 5m earlier)", a policy's range
"100ms .. 10m", and the report "3 h 2 min (10920 s)".
"""

from __future__ import annotations

import math

import pytest

from canary.analysis.shown import about, duration
from canary.drift import monitor as M
from canary.policy_fields import parse_duration


@pytest.mark.parametrize(("seconds", "exact", "rough"), [
    (0, "0s", "0s"), (0.1, "100ms", "0s"), (0.0015, "1.5ms", "0s"), (1, "1s", "1s"), (1.5, "1.5s", "2s"),
    (45, "45s", "45s"), (90, "1m30s", "1m30s"), (552.4, "9m12.4s", "9m12s"), (600, "10m", "10m"),
    (2712, "45m12s", "45m"), (3600, "1h", "1h"), (3723.004, "1h2m3.004s", "1h2m"), (6000, "1h40m", "1h40m"),
    (86401, "24h1s", "24h"), (93_672.3, "26h1m12.3s", "26h1m"), (59.9999999, "1m", "1m"),
    (1e40, "1e+40s", "1e+40s"), (-5, "-5s", "0s"), (math.nan, "?", "?"), (math.inf, "inf", "inf"),
])
def test_a_length_is_said_exactly_or_roughly_in_one_format(seconds: float, exact: str, rough: str) -> None:
    assert (duration(seconds), about(seconds)) == (exact, rough)


@pytest.mark.parametrize("seconds", [0.1, 0.0015, 1.5, 90.25, 3723.004, 93_672.3, 86_401, 7 * 86_400, 1.234567,
                                     3723.004567, 59.123456, 0.123456])
def test_an_exact_length_reads_back_as_a_duration_to_the_same_seconds(seconds: float) -> None:
    """What a line says can be typed into `--window`, a policy or `--timeout` as it is: to the microsecond, as
    `duration` says (its seconds were 6 significant digits, '1.23457s' for 1.234567)."""
    assert parse_duration(duration(seconds)) == pytest.approx(seconds, abs=5e-7)


def test_the_drift_lines_say_lengths_in_that_format() -> None:
    earlier = M.MonitorState("m", "v1", evidence={"at": 1_000.0})
    assert M._opened(earlier, 1_000.0 + 6_300) == " (opened 1h45m earlier)"  # "1h 45m" before
    assert M._opened(earlier, 1_000.0 + 93_672) == " (opened 26h1m earlier)"
