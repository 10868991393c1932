"""Decision 163 against a real Prometheus scraping a real exporter whose canary counters restart mid-window
(decision 168): the controller's batched look must treat a request counter that restarted within a window as
no evidence and open a new window (`look.window_restarted`), never pass a step on the restarted window's data
before a full `analysis.interval` of new data, still roll back on a hard breach after the restart, and promote
a good canary that restarted.

The exporter is a real HTTP endpoint Prometheus scrapes every second. Its counters move only when the test
says so (`Exporter.advance`: `DT` seconds of traffic), and a `generation` gauge in the same scrape tells the
test once Prometheus holds them; a restart sets a pod's counters back to zero, as a process restart does. The
controller runs on a fake clock kept ahead of Prometheus's (so every snapshot is evaluated at the fake time,
`not_before`, which reads the newest scrape: the step's windows are exact multiples of `DT`, whatever this
machine's speed); nothing depends on when a sleep ends, only on what Prometheus holds.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Iterator

import kubernetes.client as kc
import pytest
from structlog.testing import capture_logs

from canary import crd
from canary import rollout as rl
from canary.controller import Controller
from canary.metrics.batch import BatchMetrics
from canary.metrics.prometheus import PrometheusProvider
from canary.routing.istio import IstioRouter
from canary.sandbox.promserver import PromServer
from tests import fleet
from tests.integration.test_controller_scale import Clock  # the controller's clock, moved only by the test
from tests.support.http import ScriptedHTTP
from tests.support.prom import until_value

pytestmark = pytest.mark.integration

N = 5  # models m0..m4: one per test, all served by the one exporter
DT = 5.0  # fake seconds of traffic per tick (= `look_every`)
INTERVAL = 20.0
RPS = {"s1": 100.0, "s2": 100.0, "c1": 20.0, "c2": 100.0}  # requests/s per pod: c1 a quiet one
POLICY = {
    "steps": [20, 50, 100],
    "analysis": {"interval": f"{INTERVAL:.0f}s", "look_every": f"{DT:.0f}s", "min_canary_requests": 100,
                 "alpha": 0.01},
    "failure": {"max_failed_looks": 2, "no_data_deadline": "120s"},
    "metrics": {"source": "model", "scrape_interval": "1s"},
    "checks": [{"name": "errors", "kind": "error_rate", "max_rate_pct": 5, "hard": True}],
}
PODS = {"s1": "v1", "s2": "v1", "c1": "v2", "c2": "v2"}


class Exporter:
    """`model_requests_total{model_name, model_version, pod, outcome}` per model and pod, and the
    `canary_test_generation` gauge, counted up by one at every change."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.counts = {(fleet.model(i), pod): [0.0, 0.0] for i in range(N) for pod in PODS}  # [success, error]
        self.generation = 0
        self.down: set[tuple[str, str]] = set()  # (model, pod) whose series the exposition leaves out
        self.http = ScriptedHTTP(self._answer)

    def _answer(self, path: str, headers: dict[str, str]) -> tuple[int, str, str]:
        with self.lock:
            lines = ["# TYPE model_requests_total counter"]
            for (model, pod), (ok, err) in sorted(self.counts.items()):
                if (model, pod) in self.down:
                    continue
                m = f'model_name="{model}",model_version="{PODS[pod]}",pod="{pod}"'
                lines.append(f'model_requests_total{{{m},outcome="success"}} {ok}')
                lines.append(f'model_requests_total{{{m},outcome="error"}} {err}')
            lines += ["# TYPE canary_test_generation gauge", f"canary_test_generation {self.generation}", ""]
        return 200, "text/plain; version=0.0.4", "\n".join(lines)

    def advance(self, model: str, *, canary_errors: float = 0.005) -> int:
        """DT seconds of traffic for `model`'s pods at their RPS, stable at 0.5% errors, the canary at `canary_errors`."""
        with self.lock:
            for pod, version in PODS.items():
                share = 0.005 if version == "v1" else canary_errors
                c = self.counts[(model, pod)]
                c[0] += RPS[pod] * DT * (1 - share)
                c[1] += RPS[pod] * DT * share
            self.generation += 1
            return self.generation

    def restart(self, model: str, pod: str) -> None:
        """The pod's process restarted: its counters start again from zero (seen at the next scrape)."""
        with self.lock:
            self.counts[(model, pod)] = [0.0, 0.0]


def _held(prom: PromServer, generation: int) -> None:
    """Return once Prometheus's newest scrape of the exporter carries `generation` (and so every counter of it)."""
    until_value(prom, "canary_test_generation", generation, f"generation {generation}")


@pytest.fixture(scope="module")
def scraped(prometheus_binary: str) -> Iterator[tuple[PromServer, Exporter]]:
    exporter = Exporter()
    # a lookback longer than the fake clock can get ahead of Prometheus's: every snapshot reads the newest scrape
    prom = PromServer(targets=[exporter.http.address], scrape_interval="1s", binary=prometheus_binary,
                      extra_args=["--query.lookback-delta=30m"])
    prom.start()
    try:
        prom.wait_targets_up()
        _held(prom, exporter.advance("m0"))
        yield prom, exporter
    finally:
        prom.stop()
        exporter.http.close()


@pytest.fixture
def world(scraped: tuple[PromServer, Exporter]) -> Iterator[tuple[Any, Controller, Any, Clock, PromServer, Exporter]]:
    prom, exporter = scraped
    api = fleet.start_api(N)
    client = api.api_client()
    provider = PrometheusProvider(prom.url, retries=2, budget_s=5)
    clock = Clock(time.time() + 60.0)
    op = Controller(custom=kc.CustomObjectsApi(client), core=kc.CoreV1Api(client), router=IstioRouter(client, wait=None),
                    metrics=provider, batch=BatchMetrics(provider), namespace="ml", clock=clock)
    yield api, op, kc.CustomObjectsApi(client), clock, prom, exporter
    client.close()
    api.stop()


def _state(api: Any, i: int) -> rl.RolloutState | None:
    from canary.reconcile import parse_record
    from canary.routing.patch import STATE_ANNOTATION

    obj = api.get("networking.istio.io", "virtualservices", "ml", fleet.model(i))
    text = (obj["metadata"].get("annotations") or {}).get(STATE_ANNOTATION)
    return parse_record(text) if text else None


class Run:
    """One rollout driven tick by tick: DT of traffic, Prometheus holding it, the clock DT later, one tick.
    `lines` keeps (the tick's fake time, the line) of every line logged; `base()` is the step-start
    snapshot's time (Prometheus's evaluation time, as every snapshot's)."""

    def __init__(self, world: Any, i: int) -> None:
        self.api, self.op, self.custom, self.clock, self.prom, self.exporter = world
        self.i, self.model, self.key = i, fleet.model(i), f"ml/r{i}"
        self.lines: list[tuple[float, dict[str, Any]]] = []
        self.custom.create_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL,
                                                    fleet.rollout_object(i, "v2", policy=POLICY))

    def tick(self, *, canary_errors: float = 0.005) -> None:
        _held(self.prom, self.exporter.advance(self.model, canary_errors=canary_errors))
        self.clock.t += DT
        # the premise: the controller's clock ahead of Prometheus's (a slow machine only makes a gap longer)
        self.clock.t = max(self.clock.t, time.time() + 10.0)
        with capture_logs() as logs:
            self.op.tick()
        self.lines += [(self.clock.t, e) for e in logs]

    def state(self) -> rl.RolloutState:
        s = _state(self.api, self.i)
        assert s is not None
        return s

    def base(self) -> float | None:
        held = self.op._step_starts.get(self.key)
        return None if held is None else held[1].taken_at

    def until_in_step(self, step: int) -> None:
        """Tick until the rollout is in its step `step` (0: the first) with its step-start snapshot taken."""
        for _ in range(40):
            s = _state(self.api, self.i)
            if s is not None and s.phase == rl.PROGRESSING and s.step == step and self.base() is not None:
                return
            self.tick()
        raise AssertionError(_state(self.api, self.i))

    def before_the_look_that_would_pass(self) -> None:
        """Tick until the next look's window would cover `analysis.interval` (the look a good canary's step
        passes at)."""
        for _ in range(40):
            base = self.base()
            if base is not None and self.clock.t + DT - base >= INTERVAL:
                return
            self.tick()
        raise AssertionError(self.state())

    def restart_before_the_look_that_would_pass(self, pod: str) -> None:
        """... and restart `pod` then, so that this very look meets the restart."""
        self.before_the_look_that_would_pass()
        self.exporter.restart(self.model, pod)

    def events(self, name: str) -> list[tuple[float, dict[str, Any]]]:
        return [(t, e) for t, e in self.lines if e["event"] == name]

    def to_end(self, **kw: Any) -> rl.RolloutState:
        for _ in range(60):
            s = self.state()
            if s.phase in rl.TERMINAL and s.phase != rl.PROMOTING:
                return s
            self.tick(**kw)
        raise AssertionError(self.state())


def _no_early_pass(run: Run, restarts: list[tuple[float, dict[str, Any]]]) -> None:
    """After each restart look (at t_r), the step it was in is passed (`step.advanced`, or the promotion) only
    once a full interval of data after it is judged: the new window's first snapshot is t_r or later."""
    ends = run.events("step.advanced") + run.events("rollout.promoted")
    for t_r, line in restarts:
        step = line["step"]
        passed = [t for t, e in ends if e.get("step", 0) >= step and t >= t_r]
        assert passed, (t_r, ends)
        assert min(passed) - t_r >= INTERVAL, (t_r, min(passed), ends)
        [(_, look)] = [(t, e) for t, e in run.events("look.completed") if t == t_r]
        assert look["outcome"] != "pass", look


@pytest.mark.parametrize("pod", ["c1", "c2"])
def test_a_canary_pod_restarted_at_the_look_that_would_pass_opens_one_new_window_and_still_promotes(
        world: Any, pod: str) -> None:
    """One canary pod of two restarts just before the look whose window first covers the interval, the look a
    good canary's step passes at. c1, the quiet pod: the canary's total still grows (c2's traffic), so only
    the snapshots' restart (`requests_restarted`, `Looked.restarted`) tells; c2: the total goes down. Either
    way that look, on data partly counted from the restart, is no evidence; one `look.window_restarted`; the
    step passes only an interval of new data later; promoted. (c1 passed the step at the restart look
    without `Looked.restarted`.)"""
    run = Run(world, 0 if pod == "c1" else 1)
    run.until_in_step(0)
    run.restart_before_the_look_that_would_pass(pod)
    before = run.state()
    run.tick()
    restarts = run.events("look.window_restarted")
    assert len(restarts) == 1, [e for _, e in restarts]
    assert restarts[0][1]["log_level"] == "warning" and "restarted within the window" in restarts[0][1]["reason"]
    after = run.state()
    assert after.step == before.step and after.step_window == before.step_window + 1
    assert after.window_from == restarts[0][0]  # the new window's data start at the restart look's snapshot
    end = run.to_end()
    assert end.phase == rl.PROMOTED, end
    assert len(run.events("look.window_restarted")) == 1  # once per restart
    _no_early_pass(run, restarts)


def test_two_restarts_in_two_steps_are_logged_once_each_and_the_canary_promotes(world: Any) -> None:
    """A restart in each analysis step (both canary pods at once in the first: its total goes down; one
    pod in the second): one `look.window_restarted` each, neither step passed early, promoted."""
    run = Run(world, 2)
    run.until_in_step(0)
    run.restart_before_the_look_that_would_pass("c1")
    run.exporter.restart(run.model, "c2")
    run.tick()
    run.until_in_step(1)
    run.restart_before_the_look_that_would_pass("c2")
    run.tick()
    end = run.to_end()
    assert end.phase == rl.PROMOTED, end
    restarts = run.events("look.window_restarted")
    assert [e["step"] for _, e in restarts] == [1, 2], [e for _, e in restarts]
    _no_early_pass(run, restarts)


def test_a_hard_breach_after_a_restart_still_rolls_back_at_that_look(world: Any) -> None:
    """Both canary pods restart and serve 50% errors from then on (a ceiling of 5%, a hard check): the look
    that meets the restart is no evidence for a pass, but its hard breach, on the data since the restart,
    rolls back there and then, not two looks later."""
    run = Run(world, 3)
    run.until_in_step(0)
    run.tick()
    run.exporter.restart(run.model, "c1")
    run.exporter.restart(run.model, "c2")
    run.tick(canary_errors=0.5)
    [(t_r, _)] = run.events("look.window_restarted")
    end = run.state()
    assert end.phase == rl.ROLLED_BACK, end
    failed = [(t, e) for t, e in run.events("check.failed") if e["hard"]]
    assert failed and all(t == t_r for t, _ in failed), failed
    assert [t for t, _ in run.events("rollback.completed")] == [t_r]
    assert [e["step"] for _, e in run.events("step.advanced")] == [1]  # into the first step, never past it


def test_a_canary_down_at_the_look_that_would_pass_passes_nothing_on_its_frozen_counts(world: Any) -> None:
    """A restart as a process restart is scraped: the canary's only pods are down at the look whose window
    first covers the interval (their series gone from the scrape), then back from zero. The snapshot reads
    a series' last value within its lookback, so that look counts exactly the canary requests of the look
    before: no canary request in its last `look_every`, its data end where the earlier look's did. It passed
    the step there (a pass on a look without new requests stood), before a full interval of data and while
    the canary was down. Now no pass on it; the restart at the next look opens one new window; promoted."""
    run = Run(world, 4)
    run.until_in_step(0)
    run.before_the_look_that_would_pass()
    run.exporter.down |= {(run.model, "c1"), (run.model, "c2")}
    run.tick()
    t_down = run.clock.t
    [(_, look)] = [(t, e) for t, e in run.events("look.completed") if t == t_down]
    assert look["outcome"] != "pass" and not [t for t, _ in run.events("step.advanced") if t >= t_down], look
    run.exporter.down.clear()
    run.exporter.restart(run.model, "c1")
    run.exporter.restart(run.model, "c2")
    end = run.to_end()
    assert end.phase == rl.PROMOTED, end
    restarts = run.events("look.window_restarted")
    assert len(restarts) == 1, [e for _, e in restarts]
    _no_early_pass(run, restarts)
