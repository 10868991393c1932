"""`canary serve` under a fresh attacker (docs/decisions.md 99): the same Flagger checksum rolled out
again, a Prometheus that hangs during a call, calls for one revision piling up behind a slow one.

`Service.handle` with a fake clock and a fake provider (no sockets): a hanging Prometheus is a
provider that waits on an Event the test sets only after it has the answer, so no sleep decides a
result; the service's own `answer_within_s` is the only clock that runs.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from canary.model import Counts
from canary.policy import parse_policy
from canary.serve import NamedPolicy, Service
from canary.serve_store import SessionStore

POLICY = {
    "steps": [10, 50, 100],
    "analysis": {"interval": "60s", "look_every": "15s", "min_canary_requests": 100},
    "failure": {"max_failed_looks": 2, "no_data_deadline": "2m"},
    "metrics": {"source": "model"},
    "checks": [{"name": "errors", "kind": "error_rate", "max_increase_points": 1},
               {"name": "errors-too", "kind": "error_rate", "max_increase_points": 2}],
}
BAD = {**POLICY, "checks": [{"name": "errors", "kind": "error_rate", "max_increase_points": 1, "hard": True}]}


class Clock:
    def __init__(self) -> None:
        self.t = 1_000_000.0

    def __call__(self) -> float:
        return self.t


class Metrics:
    """100 req/s on each arm, no errors (`canary_errors`: the canary's error share); a check named in
    `hang` (or "*": every query) waits on `release` before it answers."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.hang: set[str] = set()
        self.entered = threading.Event()
        self.canary_errors = 0.0

    def _wait(self, name: str) -> None:
        if name in self.hang or "*" in self.hang:
            self.entered.set()
            self.release.wait(30)

    def measure(self, policy: Any, check: Any, target: Any, *, window_s: int, at: float) -> Any:
        self._wait(check.name)
        n = 100 * window_s
        return Counts(0, n), Counts(int(n * self.canary_errors), n)

    def request_counts(self, policy: Any, target: Any, *, window_s: int, at: float) -> tuple[float, float]:
        self._wait("requests")
        return 100.0 * window_s, 100.0 * window_s


@pytest.fixture
def rig(tmp_path: Path) -> Any:
    clock, metrics, store = Clock(), Metrics(), SessionStore(tmp_path / "state")

    def service(answer_within_s: float = 5.0, policy: dict[str, Any] = POLICY) -> Service:
        """A Service on the one store (two of them: two calls with different `answer_within_s`)."""
        named = {"p": NamedPolicy("p", parse_policy(policy), tmp_path)}
        return Service(policies=named, metrics=metrics, store=store, clock=clock, answer_within_s=answer_within_s)

    yield clock, metrics, service
    metrics.release.set()  # let any thread left waiting end


def flagger(svc: Service, hook: str, *, name: str = "m", checksum: str = "c1") -> tuple[int, dict[str, Any]]:
    body = {"name": name, "namespace": "ml", "phase": "Progressing", "checksum": checksum,
            "metadata": {"model": name, "stableVersion": f"{name}-primary", "canaryVersion": name}}
    return svc.handle("POST", f"/api/v1/flagger/{hook}", "", json.dumps(body).encode(), "application/json")


def to_promotion(svc: Service, clock: Clock) -> None:
    """One Flagger analysis of checksum c1 in its order, to a pass and the promotion."""
    assert flagger(svc, "pre-rollout")[0] == 200
    assert flagger(svc, "confirm-traffic-increase")[0] == 200
    for _ in range(4):
        clock.t += 15
        status, doc = flagger(svc, "rollout")
        assert status == 200
    assert doc["result"]["verdict"] == "pass"
    assert flagger(svc, "confirm-promotion")[0] == 200


# ---- the same checksum rolled out again ----------------------------------------------------


def test_the_same_spec_rolled_out_again_is_judged_on_its_own_looks_not_the_last_rollouts_pass(rig: Any) -> None:
    clock, _, service = rig
    svc = service()
    to_promotion(svc, clock)
    clock.t += 3600  # another release, then this spec again: Flagger's checksum is the same
    status, doc = flagger(svc, "pre-rollout")
    assert (status, doc["result"]["look"]) == (200, 0), "a new analysis: no look yet"
    status, doc = flagger(svc, "confirm-traffic-increase")
    assert status == 200 and "first step granted" in doc["result"]["reason"], "the first step, not the old pass"
    clock.t += 15
    status, doc = flagger(svc, "rollout")
    assert doc["result"]["verdict"] != "pass", "an hour of other releases' pods is no evidence on this one"
    assert doc["result"]["window_s"] <= 15, doc["result"]
    assert flagger(svc, "confirm-promotion")[0] == 412


def test_a_first_step_granted_then_an_analysis_restarted_before_any_look_gets_its_first_step_again(rig: Any) -> None:
    clock, _, service = rig
    svc = service()
    assert flagger(svc, "pre-rollout")[0] == 200
    assert flagger(svc, "confirm-traffic-increase")[0] == 200
    clock.t += 600  # rolled back by Flagger before any rollout hook (e.g. its progress deadline), then again
    assert flagger(svc, "pre-rollout")[0] == 200
    assert flagger(svc, "confirm-traffic-increase")[0] == 200, "it stayed at weight 0 for ever (412)"
    assert flagger(svc, "confirm-traffic-increase")[0] == 412, "still once per analysis"


def test_a_failed_revision_stays_failed_when_its_analysis_starts_again(rig: Any) -> None:
    clock, metrics, service = rig
    svc = service(policy=BAD)
    metrics.canary_errors = 0.2
    assert flagger(svc, "pre-rollout")[0] == 200
    clock.t += 15
    assert flagger(svc, "rollout")[0] == 409
    assert flagger(svc, "pre-rollout")[0] == 409, "sticky: the same spec was shown bad"
    assert flagger(svc, "confirm-traffic-increase")[0] == 409


def argo(svc: Service, step: str = "10") -> tuple[int, dict[str, Any]]:
    return svc.handle("GET", "/api/v1/argo/measure", "namespace=ml&rollout=m&model=m&stableVersion=h0&"
                      f"canaryVersion=h1&step={step}", b"", None)


def test_a_look_after_the_caller_went_quiet_is_judged_from_now_not_over_the_silence(rig: Any) -> None:
    clock, _, service = rig
    svc = service()
    for _ in range(2):
        assert argo(svc)[1]["result"]["verdict"] == "inconclusive"
        clock.t += 15
    clock.t += 2 * 86400  # aborted by hand, retried two days later: the same pod-template hash
    status, doc = argo(svc)
    assert doc["result"]["verdict"] != "pass", "two days of data from before the retry is no evidence on it"
    assert doc["result"]["window_s"] <= 15 and doc["result"]["window"] == 1, doc["result"]
    for _ in range(4):  # judged on its own data from now: a pass once that covers the interval
        clock.t += 15
        status, doc = argo(svc)
    assert doc["result"]["verdict"] == "pass" and doc["result"]["window_s"] == 60


def test_a_quiet_caller_does_not_come_back_to_a_deadline_spent_while_nobody_asked(rig: Any) -> None:
    clock, metrics, service = rig
    svc = service()
    metrics.hang = set()
    assert flagger(svc, "pre-rollout")[0] == 200
    clock.t += 86400  # no rollout hook for a day (the caller stopped), then a look
    status, doc = flagger(svc, "rollout")
    assert (status, doc["result"]["verdict"]) == (200, "inconclusive"), doc["result"]
    assert doc["result"]["window_s"] == 15, "the first window reaches back look_every, not a day"


# ---- a Prometheus that hangs during a call -------------------------------------------------


def test_a_hanging_prometheus_is_a_503_within_answer_within_never_a_pass(rig: Any) -> None:
    clock, metrics, service = rig
    svc = service(answer_within_s=0.3)
    metrics.hang = {"*"}
    t0 = time.monotonic()
    status, doc = flagger(svc, "rollout")
    # the hang lasts 30 s (`release.wait(30)`): 20 s tells "cut at answer_within" from "waited it out" on a
    # loaded machine too (5 s was a wall-clock bound around threads for 0.3 s of work)
    assert time.monotonic() - t0 < 20, "answered long after the caller's timeout"
    assert status == 503 and doc["result"]["verdict"] != "pass"
    status, doc = svc.handle("GET", "/api/v1/argo/measure", "namespace=ml&rollout=m&model=m&stableVersion=v1&"
                             "canaryVersion=v2", b"", None)
    assert status == 503 and doc["result"]["verdict"] != "pass"
    assert "--answer-within" in json.dumps(doc["evidence"])


def test_one_check_that_does_not_answer_in_time_keeps_the_look_from_passing(rig: Any) -> None:
    clock, metrics, service = rig
    svc = service(answer_within_s=0.3)
    assert flagger(svc, "pre-rollout")[0] == 200
    for _ in range(3):
        clock.t += 15
        assert flagger(svc, "rollout")[0] == 200
    metrics.hang = {"errors-too"}  # the look that would pass: its window covers the interval
    clock.t += 15
    status, doc = flagger(svc, "rollout")
    assert status == 200, "measured in part: inconclusive, the rollout hook's 200"
    assert doc["result"]["verdict"] == "inconclusive" and doc["result"]["checks"]["errors-too"] == "error"
    assert doc["result"]["checks"]["errors"] == "pass", "the checks that answered are judged"
    assert flagger(svc, "confirm-traffic-increase")[0] == 412


# ---- calls piling up behind a slow one -----------------------------------------------------


def _call(fn: Any) -> tuple[threading.Thread, dict[str, Any]]:
    box: dict[str, Any] = {}
    t = threading.Thread(target=lambda: box.update(answer=fn()), daemon=True)
    t.start()
    return t, box


def _same_stripe(store: SessionStore) -> str:
    """A Canary name whose revision shared the old 64 striped locks with flagger/ml/m c1."""
    stripe = int(store.path("flagger/ml/m", "c1").stem[:8], 16) % 64
    return next(n for n in (f"m{i}" for i in range(10_000))
                if int(store.path(f"flagger/ml/{n}", "c1").stem[:8], 16) % 64 == stripe)


def test_a_slow_look_makes_its_own_revision_busy_not_another_ones(rig: Any, tmp_path: Path) -> None:
    clock, metrics, service = rig
    slow_svc, svc = service(answer_within_s=60), service(answer_within_s=0.3)
    metrics.hang = {"*"}
    slow, _ = _call(lambda: flagger(slow_svc, "rollout"))  # holds c1 until the test releases Prometheus
    assert metrics.entered.wait(20), "the look asks Prometheus"
    other = _same_stripe(svc.store)
    metrics.hang = set()
    t, box = _call(lambda: flagger(svc, "pre-rollout", name=other))
    t.join(20)  # under the 30 s the slow look hangs: one waiting on it would not be back (5 s: a loaded machine's race)
    assert box.get("answer", (None,))[0] == 200, "another Canary waited on this one's slow look"
    t, box = _call(lambda: flagger(svc, "confirm-promotion"))
    t.join(20)
    assert box.get("answer", (None,))[0] == 503, box  # this revision is busy: not a 2xx, within answer_within
    assert "still being answered" in box["answer"][1]["error"]
    metrics.release.set()
    slow.join(60)
    assert not slow.is_alive() and not svc.store._locks, "no lock left behind"


def test_a_request_count_that_fails_is_reported_as_not_counted(tmp_path: Path) -> None:
    """Decision 154 (a): `measure_within` said 0 requests for a count Prometheus did not give, and the look at the
    deadline was the canary's `fail`; it now says it was not counted (and logs which query was too slow)."""
    from canary.errors import MetricsUnavailable
    from canary.model import Target
    from canary.serve_measure import measure_within

    class Refusing(Metrics):
        def request_counts(self, policy: Any, target: Any, *, window_s: int, at: float) -> tuple[float, float]:
            raise MetricsUnavailable("refused")

    target = Target(namespace="ml", virtual_service="m", model="m", stable_version="v1", canary_version="v2")
    import structlog
    log = structlog.get_logger()
    out, n, counted, _, _ = measure_within(Refusing(), parse_policy(POLICY), target, window_s=60, at=0.0,
                                     deadline=time.monotonic() + 20, answer_within_s=20, log=log)
    assert (n, counted) == (0.0, False) and set(out) == {"errors", "errors-too"}
    out, n, counted, _, _ = measure_within(Metrics(), parse_policy(POLICY), target, window_s=60, at=0.0,
                                     deadline=time.monotonic() + 20, answer_within_s=20, log=log)
    assert (n, counted) == (6000.0, True)


def test_a_request_count_prometheus_has_no_series_for_is_counted_as_zero(tmp_path: Path) -> None:
    from canary.errors import NoData
    from canary.model import Target
    from canary.serve_measure import measure_within
    import structlog

    class Empty(Metrics):
        def request_counts(self, policy: Any, target: Any, *, window_s: int, at: float) -> tuple[float, float]:
            raise NoData("no series")

    target = Target(namespace="ml", virtual_service="m", model="m", stable_version="v1", canary_version="v2")
    _, n, counted, _, _ = measure_within(Empty(), parse_policy(POLICY), target, window_s=60, at=0.0,
                                   deadline=time.monotonic() + 20, answer_within_s=20, log=structlog.get_logger())
    assert (n, counted) == (0.0, True), "Prometheus answered: no requests, which a deadline may still end on"


@pytest.mark.parametrize("exc, said", [(KeyError("x"), "KeyError: 'x'"),
                                       (RuntimeError(), "RuntimeError, with no message")])
def test_a_request_count_that_fails_says_its_cause_as_every_reason_does(exc: Exception, said: str) -> None:
    """Decision 485's cause of an uncountable count (`rollout.Looked.uncounted`, serve's `record_look`) is said by
    `errors.said` (decision 493), as the snapshots' `canary_count` says it: a provider bug's KeyError was "'x'",
    one with no message its type alone. `measure_window` (promote, the controller without snapshots) says any
    failure that is not NoData; `measure_within` a NotCountable (its others are "not counted (Prometheus)")."""
    from canary.errors import NotCountable
    from canary.model import Target
    from canary.reconcile import measure_window
    from canary.serve_measure import measure_within
    import structlog

    class Failing(Metrics):
        def __init__(self, exc: Exception) -> None:
            super().__init__()
            self.exc = exc

        def request_counts(self, policy: Any, target: Any, *, window_s: int, at: float = 0.0) -> tuple[float, float]:
            raise self.exc

    target = Target(namespace="ml", virtual_service="m", model="m", stable_version="v1", canary_version="v2")
    log = structlog.get_logger()
    _, n, why, _ = measure_window(Failing(exc), parse_policy(POLICY), target, window_s=60, log=log)
    assert (n, why) == (0.0, said)
    _, n, counted, why, _ = measure_within(Failing(NotCountable()), parse_policy(POLICY), target, window_s=60, at=0.0,
                                        deadline=time.monotonic() + 20, answer_within_s=20, log=log)
    assert (n, counted, why) == (0.0, True, "NotCountable, with no message")
