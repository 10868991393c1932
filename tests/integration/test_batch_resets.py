"""Issue 8 against a real Prometheus: one pod restarting under the arm's sum, compared with `increase()`.

Synthetic history at 1 s resolution reproduces the issue: two canary pods at
50 req/s with 5% errors since the step began (none before; c1 has served 15,000
requests, c2 6,000), stable at 1%; canary pod c2 restarts in place 30 s into a
60 s window. A stable pod is also replaced (s2 deleted 20 s in, s3 created).

`increase()` sees the 1,450 requests c2 served before its restart (its samples
show the drop); two snapshots cannot. So rates must agree with `increase()`
over the whole window, and counts with `increase()` of the pods that did not
restart over the window plus c2's `increase()` since its restart.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator

import pytest

from canary.analysis.judge import judge
from canary.metrics import batch as b
from canary.metrics.prometheus import PrometheusProvider
from canary.metrics.queries import escape
from canary.model import Counts, Histogram, Outcome, Target
from canary.policy import parse_policy
from canary.sandbox.promserver import PromServer, history_window
from tests.support.prom import MODEL_LATENCY_BOUNDS_S

pytestmark = pytest.mark.integration
RATE = 50.0  # requests/s per pod
LAT_SHARE = (0.1, 0.2, 0.2, 0.2, 0.1, 0.1, 0.05, 0.03, 0.02)  # of requests per latency bucket, incl. +Inf
T1, WINDOW, RESTART_AFTER, REPLACED_AFTER = 400.0, 60.0, 30.0, 20.0
TARGET = Target(namespace="ml", virtual_service="rec", model="rec", stable_version="v1", canary_version="v2")
POLICY = parse_policy({"steps": [10, 100], "checks": [
    {"name": "err", "kind": "error_rate", "max_increase_points": 1},
    {"name": "lat", "kind": "latency", "max_ms": 1000},
]})


@dataclass(frozen=True)
class Pod:
    """One pod's counters: 50 req/s from `born` (or its last restart); errors at `share` from `errors_from`."""

    name: str
    version: str
    born: float
    share: float
    errors_from: float = -math.inf
    died: float = math.inf
    restart: float = math.inf

    def alive(self, t: float) -> bool:
        return self.born <= t <= self.died

    def counts(self, t: float) -> tuple[float, float]:
        """Cumulative (requests, errors) of the running process at t."""
        start = self.restart if t >= self.restart else self.born
        return RATE * (t - start), RATE * self.share * max(0.0, t - max(start, self.errors_from))

    def samples(self, t: float) -> list[tuple[str, dict[str, str], float]]:
        n, e = self.counts(t)
        m = {"model_name": "rec", "model_version": self.version, "pod": self.name}
        out = [("model_requests_total", {**m, "outcome": "success"}, n - e),
               ("model_requests_total", {**m, "outcome": "error"}, e)]
        running = 0.0
        for le, share in zip([*MODEL_LATENCY_BOUNDS_S, math.inf], LAT_SHARE):
            running += share
            out.append(("model_inference_duration_seconds_bucket",
                        {**m, "le": "+Inf" if math.isinf(le) else repr(le)}, n * running))
        return out


def pods(start: float) -> list[Pod]:
    t1 = start + T1
    return [
        Pod("s1", "v1", start, 0.01),
        Pod("s2", "v1", start, 0.01, died=t1 + REPLACED_AFTER),
        Pod("s3", "v1", t1 + REPLACED_AFTER, 0.01),
        Pod("c1", "v2", t1 - 300, 0.05, errors_from=t1),
        Pod("c2", "v2", t1 - 120, 0.05, errors_from=t1, restart=t1 + RESTART_AFTER),
    ]


def history(start: float, end: float) -> str:
    by_name: dict[str, list[str]] = {}
    for pod in pods(start):
        for k in range(int(end - start) + 1):
            t = start + k
            if pod.alive(t):
                for name, labels, value in pod.samples(t):
                    text = ",".join(f'{key}="{escape(v)}"' for key, v in labels.items())
                    by_name.setdefault(name, []).append(f"{name}{{{text}}} {value!r} {t:.3f}")
    lines = [line for name, rows in by_name.items() for line in [f"# TYPE {name} unknown", *sorted(
        rows, key=lambda r: (r.split(" ")[0], float(r.split(" ")[-1])))]]
    return "\n".join([*lines, "# EOF"]) + "\n"


@dataclass(frozen=True)
class World:
    prom: PrometheusProvider
    t1: float
    t2: float
    base: b.Snapshot
    now: b.Snapshot


@pytest.fixture(scope="module")
def world(prometheus_binary: str) -> Iterator[World]:
    start, end = history_window(before_s=T1 + WINDOW + 40, after_s=0, step=1.0)
    server = PromServer(history=history(start, end), binary=prometheus_binary)
    server.start()
    try:
        prom = PrometheusProvider(server.url, retries=2, budget_s=5.0, backoff_s=0.05)
        t1, t2 = start + T1, start + T1 + WINDOW
        batch = b.BatchMetrics(prom)
        base = batch.snapshot([b.Want(POLICY, TARGET)], at=t1)
        now = batch.snapshot([b.Want(POLICY, TARGET)], at=t2)
        yield World(prom, t1, t2, base, now)
    finally:
        server.stop()


def scalar(w: World, query: str) -> float:
    got = w.prom.query(query, at=w.t2)
    assert len(got) == 1, (query, got)
    return float(got[0]["value"][1])


def scalar_at(w: World, query: str, at: float) -> float:
    return float(w.prom.query(query, at=at)[0]["value"][1])


def increase(w: World, version: str, *, pods: str, window: float, errors: bool = False) -> float:
    outcome = ',outcome="error"' if errors else ""
    sel = f'model_requests_total{{model_name="rec",model_version="{version}",pod=~"{pods}"{outcome}}}'
    return scalar(w, f"sum(increase({sel}[{int(window)}s]))")


def test_the_issue_reproduces_with_the_former_sums(world: World) -> None:
    """Sums per arm as the former snapshots took them: 21,000 -> 19,500 requests, so a 'reset' of the
    whole arm: 225 errors in 19,500 requests (1.15%)."""
    q = 'sum(model_requests_total{model_name="rec",model_version="v2"%s})'
    at = {t: (scalar_at(world, q % "", t), scalar_at(world, q % ',outcome="error"', t)) for t in (world.t1, world.t2)}
    assert at[world.t1] == pytest.approx((21_000, 0)) and at[world.t2] == pytest.approx((19_500, 225))
    # increase() over the window: about 298 errors in 5,950 requests (5%)
    assert increase(world, "v2", pods=".*", window=WINDOW) == pytest.approx(5_950, rel=1e-6)
    assert increase(world, "v2", pods=".*", window=WINDOW, errors=True) == pytest.approx(297.5, rel=1e-6)


def test_error_rate_agrees_with_increase_and_fails_the_canary(world: World) -> None:
    err = POLICY.checks[0]
    got = b.measure_delta(POLICY, err, TARGET, world.now, world.base)
    want = world.prom.measure(POLICY, err, TARGET, window_s=int(WINDOW), at=world.t2)  # sum(increase(...))
    for g, w, share in zip(got, want, (0.01, 0.05)):
        assert isinstance(g, Counts) and isinstance(w, Counts)
        assert g.events / g.total == pytest.approx(share, rel=1e-6)
        # extrapolation: increase() of the deleted pod runs half a sample past its last one (+25 of 6,000)
        assert g.events / g.total == pytest.approx(w.events / w.total, rel=0.01)
    assert got[1] == Counts(events=225, total=4_500)
    for measured in (got, want):  # 5% against 1%: the canary fails, as the issue says it must
        [result] = [r for r in judge(POLICY, {"err": measured}).results if r.check == "err"]
        assert result.outcome is Outcome.FAIL


def test_counts_equal_increase_of_each_series_since_it_last_started(world: World) -> None:
    stable, canary = b.requests_delta(POLICY, TARGET, world.now, world.base)
    # canary: c1 over the window + c2 since its restart; both exact on the 1 s grid
    since = world.t2 - (world.t1 + RESTART_AFTER)
    assert canary == pytest.approx(increase(world, "v2", pods="c1", window=WINDOW)
                                   + increase(world, "v2", pods="c2", window=since), rel=1e-6)
    assert canary == pytest.approx(4_500)
    # stable: s1 whole window, s2 until it was deleted (still seen by last_over_time), s3 since it was born
    assert stable == pytest.approx(6_000)
    assert stable == pytest.approx(increase(world, "v1", pods=".*", window=WINDOW), rel=0.01)
    assert b.arm_delta(POLICY, POLICY.checks[0], TARGET, "canary", world.now, world.base).reset
    assert not b.arm_delta(POLICY, POLICY.checks[0], TARGET, "stable", world.now, world.base).reset


def test_latency_histogram_resets_per_pod(world: World) -> None:
    lat = POLICY.checks[1]
    _, canary = b.measure_delta(POLICY, lat, TARGET, world.now, world.base)
    assert isinstance(canary, Histogram)
    since = world.t2 - (world.t1 + RESTART_AFTER)
    sel = 'model_inference_duration_seconds_bucket{model_name="rec",model_version="v2",pod="%s"}'
    want: dict[float, float] = {}
    for pod, window in (("c1", WINDOW), ("c2", since)):
        for s in world.prom.query(f"sum by (le) (increase({sel % pod}[{int(window)}s]))", at=world.t2):
            le = float(s["metric"]["le"])
            want[le] = want.get(le, 0.0) + float(s["value"][1])
    assert canary.bounds == tuple(x * 1000 if not math.isinf(x) else x for x in sorted(want))
    assert canary.counts == pytest.approx([want[le] for le in sorted(want)], rel=1e-6)
    assert canary.total == pytest.approx(4_500)


def test_a_persisted_bound_step_start_gives_the_same_answer(world: World) -> None:
    stored = b.Snapshot.from_json(world.base.restrict(POLICY, TARGET, step_started_at=world.t1).to_json())
    stored.check_step_start(TARGET, step_started_at=world.t1)
    for check in POLICY.checks:
        assert b.measure_delta(POLICY, check, TARGET, world.now, stored) == \
            b.measure_delta(POLICY, check, TARGET, world.now, world.base)
    other = Target(namespace="ml", virtual_service="rec", model="rec", stable_version="v1", canary_version="v3")
    with pytest.raises(b.UnusableStepStart):
        b.measure_delta(POLICY, POLICY.checks[0], other, world.now, stored)
