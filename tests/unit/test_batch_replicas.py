"""A snapshot's families of one metric read from two Prometheus replicas (decision 175).

Behind a load balancer over replicas each of a snapshot's queries may reach either, and their newest scrapes
are up to an interval apart: the request family (`model_requests_total`) and the error family (its
`outcome="error"` part) then hold the same series with two values, and the look's errors would be counted
over another window than its requests. `BatchMetrics` asks such families again together (at most
`REASKS` rounds) and leaves the rollout arms they still disagree on unread (`snapshot.MIXED`).
"""

from __future__ import annotations

from typing import Any

import pytest
from structlog.testing import capture_logs

from canary.errors import MetricsUnavailable
from canary.metrics import batch as b
from canary.metrics.delta import measure_delta
from canary.metrics.snapshot import UnusableStepStart
from tests.unit.test_batch import T, FakeProm, chk, model_arm, policy


class TwoReplicas(FakeProm):
    """A's series to every query, except the error family's first `behind` asks, answered from B: one
    scrape older, two errors fewer on each error series."""

    def __init__(self, *, behind: int) -> None:
        super().__init__(model_arm("rec", "v1", lat=[1, 2], ok=990, err=10)
                         + model_arm("rec", "v2", lat=[1, 2], ok=95, err=5))
        self.behind = behind

    def query(self, query: str, **kw: Any) -> Any:
        out = super().query(query, **kw)
        if query.startswith("last_over_time(") and 'outcome="error"' in query and self.behind > 0:
            self.behind -= 1
            return [{**s, "value": [0, repr(float(s["value"][1]) - 2)]} for s in out]
        return out


def _take(prom: FakeProm) -> tuple[b.Snapshot, list[dict[str, Any]]]:
    pol = policy(checks=[{"name": "err", "kind": "error_rate", "max_rate_pct": 5}])
    with capture_logs() as logs:
        snap = b.BatchMetrics(prom).snapshot([b.Want(pol, T)], at=100.0)  # type: ignore[arg-type]
    return snap, [e for e in logs if e["event"] == "metrics.replicas_mixed"]


def test_families_that_disagree_are_asked_again_together_until_they_agree() -> None:
    prom = TwoReplicas(behind=1)
    snap, lines = _take(prom)
    pol = policy(checks=[{"name": "err", "kind": "error_rate", "max_rate_pct": 5}])
    assert snap.arm(pol, chk(pol, "err"), T, "canary").events == 5  # A's errors, with A's requests
    assert [(e["asking_again"], e["log_level"]) for e in lines] == [(True, "info")]
    asked = [x for x in prom.queries if x.startswith("last_over_time(model_requests_total")]
    assert len(asked) == 4  # requests, errors; both again (the duration family is another metric: not again)


def test_families_that_never_agree_leave_the_arms_unread_and_a_step_start_snapshot_unusable() -> None:
    prom = TwoReplicas(behind=b.REASKS + 1)
    snap, lines = _take(prom)
    pol = policy(checks=[{"name": "err", "kind": "error_rate", "max_rate_pct": 5}])
    assert [e["asking_again"] for e in lines] == [True] * b.REASKS + [False]
    assert lines[-1]["log_level"] == "warning" and lines[-1]["metric"] == "model_requests_total"
    with pytest.raises(MetricsUnavailable, match="two Prometheus replicas"):
        snap.arm(pol, chk(pol, "err"), T, "canary")
    base = snap.restrict(pol, T)
    with pytest.raises(UnusableStepStart, match="two Prometheus replicas"):
        base.arm(pol, chk(pol, "err"), T, "canary")
    good, _ = _take(TwoReplicas(behind=0))
    with pytest.raises(MetricsUnavailable):  # a look against it measures nothing, rather than two windows
        measure_delta(pol, chk(pol, "err"), T, snap, good.restrict(pol, T))


class Unscraped(FakeProm):
    """The request family's first `behind` answers from a replica that has not scraped the canary's second
    pod yet (its series missing), the error family's from one that has."""

    def __init__(self, *, behind: int) -> None:
        super().__init__(model_arm("rec", "v1", lat=[1, 2], ok=990, err=10)
                         + [(n, {**labels, "pod": "c1"}, v) for n, labels, v in model_arm("rec", "v2", lat=[1, 2], ok=95, err=5)]
                         + [(n, {**labels, "pod": "c2"}, v) for n, labels, v in model_arm("rec", "v2", lat=[1, 2], ok=0, err=50)])
        self.behind = behind

    def query(self, query: str, **kw: Any) -> Any:
        out = super().query(query, **kw)
        if query.startswith("last_over_time(model_requests_total{") and "outcome" not in query and self.behind > 0:
            self.behind -= 1
            return [s for s in out if s["metric"].get("pod") != "c2"]
        return out


def test_a_request_family_that_lacks_a_series_its_error_family_holds_disagrees() -> None:
    """Without the rule the canary read 55 errors of 100 requests: c2's 50 errors without c2's 50 requests."""
    snap, lines = _take(Unscraped(behind=b.REASKS + 1))
    pol = policy(checks=[{"name": "err", "kind": "error_rate", "max_rate_pct": 5}])
    assert lines and lines[-1]["asking_again"] is False
    with pytest.raises(MetricsUnavailable, match="two Prometheus replicas"):
        snap.arm(pol, chk(pol, "err"), T, "canary")
    snap, _ = _take(Unscraped(behind=1))
    got = snap.arm(pol, chk(pol, "err"), T, "canary")
    assert (got.events, got.total) == (55, 150)
