"""`canary serve` under what a fresh attacker found (sixteenth session): Flagger's own hook order at
weight 0, a window opened by a pass or a new step reaching back into the one before, and a request
count of +Inf from Prometheus. Over real HTTP against real (backfilled) Prometheus servers, with a
fake clock, as tests/integration/test_serve.py."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import pytest

from canary.sandbox.promserver import PromServer, Series, counter, histogram, history_window, openmetrics
from canary.serve_http import ServeServer
from tests.integration.test_serve import (BOUNDS_S, GATED, LATENCY_PER_S, POLICY, Clock, _service, argo_get, call,  # noqa: F401
                                          clock, flagger, prom, serve)

pytestmark = pytest.mark.integration


def test_flagger_in_its_own_order_gets_its_first_step_once_then_only_on_evidence(serve: Any, clock: Clock) -> None:
    """At weight 0 Flagger calls pre-rollout and then confirm-traffic-increase in the same tick, and the
    rollout hook only once the canary has traffic (scheduler.go, advanceCanary). The confirm was 412
    for ever: the canary never got traffic. Now the first step is granted once; a second confirm with
    no look in between (no rollout hook configured) is 412, so an unjudged canary cannot climb."""
    server = serve()
    assert flagger(server, "pre-rollout", "good")[0] == 200
    code, doc = flagger(server, "confirm-traffic-increase", "good")
    assert code == 200 and doc["result"]["reason"].startswith("first step granted"), doc
    code, doc = flagger(server, "confirm-traffic-increase", "good")
    assert code == 412 and "rollout webhook must run" in doc["error"], doc
    assert flagger(server, "confirm-promotion", "good")[0] == 412, "promotion is never granted without a pass"
    clock.t += 30
    assert flagger(server, "rollout", "good")[1]["result"]["verdict"] == "inconclusive"
    assert flagger(server, "confirm-traffic-increase", "good")[0] == 412
    clock.t += 30
    assert flagger(server, "rollout", "good")[1]["result"]["verdict"] == "pass"
    assert flagger(server, "confirm-traffic-increase", "good")[0] == 200


def test_flagger_without_a_pre_rollout_hook_gets_its_first_step_and_a_gated_policy_does_not(serve: Any) -> None:
    server = serve(policies={"ml": POLICY, "gated": GATED})
    assert flagger(server, "confirm-traffic-increase", "good", policy="ml")[0] == 200  # no session: created, granted
    code, doc = flagger(server, "confirm-traffic-increase", "bad", policy="gated")
    assert code == 412 and "pre-rollout webhook must pass" in doc["error"], doc


def _spec(server: ServeServer, hook: str, checksum: str) -> tuple[int, dict[str, Any]]:
    """Flagger's call for Canary ml/good whose target spec hashes to `checksum`."""
    body = {"name": "good", "namespace": "ml", "phase": "Progressing", "checksum": checksum,
            "metadata": {"model": "good", "stableVersion": "v1", "canaryVersion": "v2"}}
    return call(f"{server.url}/api/v1/flagger/{hook}", method="POST", body=body)


def test_a_spec_rolled_back_to_mid_analysis_starts_its_analysis_over_without_a_pre_rollout_hook(
        serve: Any, clock: Clock) -> None:
    """Decision 441: Flagger restarts the analysis when the spec changes mid-analysis (weight 0, a new checksum:
    `hasCanaryRevisionChanged`); the spec changed back (a revert) comes back with its old checksum. With no
    `pre-rollout` hook nothing started that revision over: its window opened at its last pass, before the other
    spec's pods ran under the same `app` label, and its first look passed at once on them; its traffic hook, spent
    on that old pass, was 412 at weight 0 for ever. It is a new analysis of that revision: first step, a window
    from now."""
    server = serve()
    assert _spec(server, "confirm-traffic-increase", "aaa1")[0] == 200  # the first step at weight 0
    clock.t += 60
    assert _spec(server, "rollout", "aaa1")[1]["result"]["verdict"] == "pass"
    assert _spec(server, "confirm-traffic-increase", "aaa1")[0] == 200
    clock.t += 30  # the spec edited: Flagger routes all to the primary, then analyses bbb2 from weight 0
    assert _spec(server, "confirm-traffic-increase", "bbb2")[0] == 200
    clock.t += 30
    assert _spec(server, "rollout", "bbb2")[1]["result"]["verdict"] == "inconclusive"
    clock.t += 30  # reverted: aaa1 again, from weight 0
    code, doc = _spec(server, "confirm-traffic-increase", "aaa1")
    assert code == 200 and doc["result"]["reason"].startswith("first step granted"), doc  # 412 without the change
    clock.t += 15
    code, doc = _spec(server, "rollout", "aaa1")
    assert doc["result"]["verdict"] == "inconclusive" and doc["result"]["look"] == 1, doc  # a pass without
    assert _spec(server, "confirm-promotion", "aaa1")[0] == 412
    # bbb2 again is a new analysis of its own too: nothing of its first one carried
    clock.t += 15
    code, doc = _spec(server, "rollout", "bbb2")
    assert doc["result"]["look"] == 1, doc


def test_a_spec_rolled_back_to_mid_analysis_is_not_promoted_on_its_earlier_windows_look(serve: Any,
                                                                                         clock: Clock) -> None:
    """Decision 441, a Canary with only `rollout` and `confirm-promotion` hooks: the reverted spec's first look
    measured from its last pass, before the other spec ran, passed at once, and the promotion was granted on it."""
    server = serve()
    clock.t += 60
    assert _spec(server, "rollout", "aaa1")[1]["result"]["verdict"] == "inconclusive"  # its first look: 60 s back
    clock.t += 60
    assert _spec(server, "rollout", "aaa1")[1]["result"]["verdict"] == "pass"
    clock.t += 30
    assert _spec(server, "rollout", "bbb2")[1]["result"]["verdict"] == "inconclusive"
    clock.t += 30  # reverted: Flagger moved aaa1 to its first step unasked, and looks a tick later
    code, doc = _spec(server, "rollout", "aaa1")
    assert (doc["result"]["verdict"], doc["result"]["look"]) == ("inconclusive", 1), doc  # pass, look 3 without
    assert _spec(server, "confirm-promotion", "aaa1")[0] == 412


def test_a_window_opened_by_a_pass_or_a_new_step_measures_only_its_own_data(serve: Any, clock: Clock) -> None:
    """Argo starts the next step's analysis at once: its first look, 1 s into the new window, measured
    `look_every` back (the requests of the window that had just passed, already in the pooled
    evidence) and counted them again as new."""
    server = serve()
    argo_get(server, "good", step="10")
    clock.t += 60
    _, doc = argo_get(server, "good", step="10")
    assert doc["result"]["verdict"] == "pass"
    info_at_pass = next(e for e in doc["evidence"] if e["check"] == "errors")["extra"]["tests"][0]["info"]
    clock.t += 1
    _, doc = argo_get(server, "good", step="50")
    assert doc["result"]["window"] == 1 and doc["result"]["window_s"] == 1, doc["result"]
    assert (doc["result"]["canary_requests"] or 0) <= 100, "a 1 s window holds at most 1 s of requests"
    errors = (next(e for e in doc["evidence"] if e["check"] == "errors")["extra"].get("tests") or [{}])[0]
    assert errors.get("info", info_at_pass) <= info_at_pass + 100, errors  # nothing of window 0 counted twice
    clock.t += 30  # the window's own 31 s
    _, doc = argo_get(server, "good", step="50")
    assert doc["result"]["window_s"] == 31
    # without step labels, the window a pass opens starts at the pass
    clock.t += 60
    _, doc = argo_get(server, "good", step="50")
    assert doc["result"]["verdict"] == "pass", doc["result"]
    clock.t += 2
    _, doc = argo_get(server, "good", step="50")
    assert doc["result"]["window"] == 2 and doc["result"]["window_s"] == 2


@dataclass(frozen=True)
class _Overflow(Series):
    """A counter at 0 that jumps to 1.7e308 at `at`: two such series sum to +Inf in PromQL."""

    at: float = 0.0

    def value(self, t: float, start: float) -> float:
        return 0.0 if t < self.at else 1.7e308


@pytest.fixture
def overflowing(prometheus_binary: str) -> Iterator[tuple[PromServer, float]]:
    start, end = history_window(before_s=3600, after_s=3600)
    t0 = start + 3600
    series: list[Any] = []
    for version, rps in (("v1", 100.0), ("v2", 50.0)):
        m = {"model_name": "ovf", "model_version": version}
        series += histogram("model_inference_duration_seconds", m, BOUNDS_S, [x * rps / 100 for x in LATENCY_PER_S])
        if version == "v1":
            series += counter("model_requests_total", {**m, "outcome": "success"}, rps)
            series += counter("model_requests_total", {**m, "outcome": "error"}, rps * 0.005)
        else:  # the canary's counters overflow 40 s into the test
            series += [_Overflow("model_requests_total", {**m, "outcome": o}, at=t0 + 40) for o in ("success", "error")]
    server = PromServer(history=openmetrics(series, start=start, end=end), binary=prometheus_binary)
    server.start()
    try:
        yield server, t0
    finally:
        server.stop()


def test_a_request_count_of_inf_is_no_count_and_the_state_stays_readable(overflowing: Any, tmp_path: Path) -> None:
    """Summed counters past the float range: Prometheus answers +Inf requests. The look stored
    `Infinity` in the revision's state, which every later call (restarts included) refused: 500."""
    prom_server, t0 = overflowing
    clock = Clock(t0 + 45)
    state = tmp_path / "state"
    server = ServeServer(_service(prom_server, state, clock)).start()
    try:
        for _ in range(3):
            code, doc = argo_get(server, "ovf")
            assert code in (200, 503) and doc["result"]["verdict"] != "pass", doc
            clock.t += 15
        stored = [json.loads(p.read_text()) for p in state.rglob("*") if p.is_file() and "ovf" in p.read_text()]
        assert stored and all(isinstance(s["last_look_requests"], float) for s in stored), stored
        assert all(abs(s["last_look_requests"]) < 1e300 for s in stored)
    finally:
        server.stop()
    again = ServeServer(_service(prom_server, state, clock)).start()  # a restart reads the same file
    try:
        code, doc = argo_get(again, "ovf")
        assert code in (200, 503) and doc["result"]["verdict"] != "pass", doc
    finally:
        again.stop()
