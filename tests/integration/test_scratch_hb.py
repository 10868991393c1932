from typing import Any
from canary.metrics.prometheus import PrometheusProvider
from canary.metrics import batch as b
from tests.integration.test_metrics_scrape_mess import prom, _policy, _target, _snapshots, WINDOW_S  # noqa

def test_x(prom: Any) -> None:
    server, t0 = prom
    p = PrometheusProvider(server.url, retries=1, budget_s=3.0)
    pol = _policy()
    for m in ("twice", "down", "merged", "pods", "onehost"):
        t = _target(m)
        try:
            print(m, "per rollout", p.request_counts(pol, t, window_s=WINDOW_S, at=t0))
        except Exception as e:
            print(m, "per rollout", repr(e))
        base, now = _snapshots(server, t0, pol, t)
        try:
            print(m, "batched", b.requests_delta(pol, t, now, base))
        except Exception as e:
            print(m, "batched", repr(e))
