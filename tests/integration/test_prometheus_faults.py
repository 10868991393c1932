"""Broken Prometheus data never makes a pass (a fresh attacker, sixteenth session; decision 71).

One real, backfilled Prometheus holds a model per fault, each a canary that is bad or unknown in
truth; `canary serve`'s Service (the same PrometheusProvider and judge `canary promote` uses) looks
at it every 15 s on a fake clock until its window covers the interval. Before: a canary exporting
no request counter read as 0% errors and passed (and promoted through the CLI); buckets that were
not cumulative, NaN, or a +Inf bucket below the others were repaired into another distribution and
passed a 972 ms p95 against 500 ms; a success counter that jumped by 1e12 read a 10%-error canary
as 1.5e-08% errors and passed it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import pytest

from canary.metrics.prometheus import PrometheusProvider
from canary.policy import parse_policy
from canary.sandbox.promserver import PromServer, Series, counter, histogram, history_window, openmetrics
from canary.serve import NamedPolicy, Service
from canary.serve_store import SessionStore
from tests.integration.test_serve import BOUNDS_S, LATENCY_PER_S, POLICY

pytestmark = pytest.mark.integration

# test_serve's policy (interval 60 s, looks every 15 s, errors +1 point, p95 under 500 ms) and layout
BOUNDS, GOOD = BOUNDS_S, LATENCY_PER_S  # per-bucket shares, x rps/100: p95 about 250 ms
SLOW = (1, 0, 0, 0, 0, 0, 9, 0, 0)  # 90% in (0.5, 1] s: p95 about 972 ms


@dataclass(frozen=True)
class _NaN(Series):
    def value(self, t: float, start: float) -> float:
        return math.nan


@dataclass(frozen=True)
class _Jump(Series):
    at: float = 0.0
    by: float = 0.0

    def value(self, t: float, start: float) -> float:
        return self.per_s * (t - start) + (self.by if t >= self.at else 0.0)


def _arm(model: str, version: str, *, rps: float = 100.0, err: float = 0.005, lat: tuple[int, ...] = GOOD,
         requests: bool = True) -> list[Series]:
    m = {"model_name": model, "model_version": version}
    out: list[Series] = []
    if requests:
        out += counter("model_requests_total", {**m, "outcome": "success"}, rps * (1 - err))
        out += counter("model_requests_total", {**m, "outcome": "error"}, rps * err)
    return out + histogram("model_inference_duration_seconds", m, BOUNDS, [x * rps / 100 for x in lat])


def _bucket(s: Series, le: str) -> bool:
    return s.name.endswith("_bucket") and s.labels.get("le") == le


def _models(t0: float) -> list[Series]:
    def canary(model: str, **kw: Any) -> list[Series]:
        return _arm(model, "v1") + _arm(model, "v2", rps=50, **kw)

    out = canary("good") + canary("slow", lat=SLOW) + canary("erring", err=0.10)
    out += canary("no-counter", requests=False)  # requests from the histogram's _count; errors unknown
    out += [Series(s.name, s.labels, 50.0) if _bucket(s, "0.01") and s.labels["model_version"] == "v2" else s
            for s in canary("not-cumulative", lat=SLOW)]  # le="0.01" counts every request
    out += [_NaN(s.name, s.labels) if s.name.endswith("_bucket") and s.labels["le"] != "0.01"
            and s.labels["model_version"] == "v2" else s for s in canary("nan-buckets", lat=SLOW)]
    out += [Series(s.name, s.labels, 25.0) if _bucket(s, "+Inf") and s.labels["model_version"] == "v2" else s
            for s in canary("inf-below")]  # +Inf counts half of what le=2.5 does
    out += [_Jump(s.name, s.labels, s.per_s, at=t0 + 30, by=1e12)
            if s.labels.get("outcome") == "success" and s.labels["model_version"] == "v2" else s
            for s in canary("jumped", err=0.10)]
    return out


@pytest.fixture(scope="module")
def prom(prometheus_binary: str) -> Iterator[tuple[PromServer, float]]:
    start, end = history_window(before_s=3600, after_s=3600)
    server = PromServer(history=openmetrics(_models(start + 3600), start=start, end=end), binary=prometheus_binary)
    server.start()
    try:
        yield server, start + 3600
    finally:
        server.stop()


def _looks(prom: tuple[PromServer, float], tmp_path: Path, model: str, looks: int = 7) -> list[dict[str, Any]]:
    """Argo's measure every 15 s from the first request on, until a verdict or `looks` looks."""
    server, t0 = prom
    clock = [t0]
    state = tmp_path / model
    service = Service(policies={"ml": NamedPolicy("ml", parse_policy(POLICY), state)},
                      metrics=PrometheusProvider(server.url, retries=2, budget_s=3.0, backoff_s=0.05),
                      store=SessionStore(state), clock=lambda: clock[0])
    out = []
    for _ in range(looks):
        query = f"namespace=ml&rollout={model}&model={model}&stableVersion=v1&canaryVersion=v2"
        status, doc = service.handle("GET", "/api/v1/argo/measure", query, b"", None)
        assert status == 200, doc
        out.append(doc["result"])
        if doc["result"]["verdict"] in ("pass", "fail"):
            break
        clock[0] += 15
    return out


def test_the_controls_pass_and_fail_as_their_data_say(prom: Any, tmp_path: Path) -> None:
    assert _looks(prom, tmp_path, "good")[-1]["verdict"] == "pass"
    assert _looks(prom, tmp_path, "slow")[-1]["verdict"] == "fail"
    assert _looks(prom, tmp_path, "erring")[-1]["verdict"] == "fail"


@pytest.mark.parametrize(("model", "why"), [
    ("no-counter", "errors: could not measure canary: check 'errors': no series for the canary arm"),
    ("not-cumulative", "is not cumulative (le=0.01 counts"),
    ("nan-buckets", "counts NaN"),
    ("inf-below", "but le=inf only"),
    ("jumped", "the canary arm's request counts disagree across checks"),
])
def test_broken_data_is_never_a_pass(prom: Any, tmp_path: Path, model: str, why: str) -> None:
    looks = _looks(prom, tmp_path, model)
    assert all(r["verdict"] != "pass" for r in looks), [r["reason"][:200] for r in looks]
    assert any(why in r["reason"] for r in looks), looks[-1]["reason"]
