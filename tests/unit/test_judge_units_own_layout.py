"""(A second attacker of decision 81, nineteenth session; fixed by decision 81 (e). What it found:) One layout in two units (decision 81 c) is caught only when the canary's bounds x1000 coincide with
the stable's. A canary whose exporter writes seconds on its own layout (x1.25 from 10 ms) shares no
bound with a stable in ms: a ceiling-only latency check reads its p95 of 549 ms as 0.549 ms and PASSes."""
import numpy as np
from scipy import stats as st

from canary.analysis import judge as J
from canary.model import Histogram, Outcome
from canary.policy import parse_policy

INF = float("inf")
ISTIO_MS = [0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000, 600000,
            1800000, 3600000]
X125_S = [round(0.01 * 1.25 ** k, 9) for k in range(30)]  # 0.01 s .. 6.5 s


def _hist(bounds, dist, n, to_ms=1.0) -> Histogram:
    cum = np.round(dist.cdf(np.array(bounds) * to_ms) * n)
    return Histogram(tuple(float(x) for x in bounds) + (INF,), tuple(float(x) for x in cum) + (float(n),))


def test_a_canary_in_seconds_on_its_own_layout_does_not_pass_a_ms_ceiling() -> None:
    pol = parse_policy({"steps": [10, 100], "checks": [
        {"name": "lat", "kind": "latency", "quantile": 0.95, "max_ms": 250}]})
    stable = _hist(ISTIO_MS, st.lognorm(0.5, scale=60), 90_000)            # ms, p95 ~136 ms
    canary = _hist(X125_S, st.lognorm(0.5, scale=240), 10_000, to_ms=1e3)  # seconds, p95 ~549 ms
    r = J.judge(pol, {"lat": (stable, canary)}).results[0]
    # the canary's p95 is 549 ms, beyond the 250 ms ceiling: anything but PASS (FAIL or ERROR)
    assert r.outcome is not Outcome.PASS, r.reason
