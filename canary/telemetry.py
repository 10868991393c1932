"""The controller's own observability: Prometheus metrics and health endpoints.

Why this exists: a long-running controller that silently stops ticking, loses
leadership or keeps rolling back is invisible in its logs until someone reads
them. These series answer on-call's first questions from one dashboard:
which version serves what share (`canary_rollout_weight`), what phase every
rollout is in, why rollbacks happen (`canary_rollbacks_total{reason}`), how
fast a breach is undone (`canary_time_to_rollback_seconds`), and whether the
controller itself is healthy (tick duration, Prometheus/Kubernetes errors,
leadership). The metric names are fixed: the Grafana dashboard uses them.

Every `Telemetry` owns its own `CollectorRegistry` (never the process-global
one), so tests and several controllers in one process never collide, and a
forgotten rollout's series really disappear.

`HealthServer` serves /metrics, /healthz (liveness: is the loop alive) and
/readyz (readiness: leader or healthy standby, dependencies reachable) on a
stdlib ThreadingHTTPServer bound only to the host given (127.0.0.1 unless the
Deployment passes 0.0.0.0 explicitly).
"""

from __future__ import annotations

import math
import socket
import threading
import time
from collections.abc import Callable, Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from canary import logs
from canary import rollout as rl
from canary.model import CheckResult, Outcome
from canary.rollout import ROLLBACK_REASONS, classify_reason, end_cause  # re-exported: the end's class lives with the ends

KUBE_ERROR_KINDS = ("conflict", "unavailable", "other")
# breach first seen -> stable 100% written: sub-second is the goal, ten minutes is an incident
ROLLBACK_BUCKETS = (0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0)
# `CheckResult.bounded`'s sides as `canary_check_effect_size_bounded` exports them: the true effect lies above (1)
# or below (-1) the number exported; 0: it is the value
BOUND_SIDES = {">": 1, "<": -1}
# how long a model's effect sizes stay on /metrics once none of its rollouts is unfinished: the look that ended it
# is on the dashboard for a while, and an alert on `canary_check_effect_size > L` resolves after the rollback
EFFECT_KEEP_S = 600.0
TICK_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)



class Telemetry:
    """All metrics of one controller process, in a private registry."""

    def __init__(self, registry: CollectorRegistry | None = None, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        self.clock = clock
        self._ended: dict[str, float] = {}  # model -> when its last unfinished rollout ended (`EFFECT_KEEP_S`)
        r = self.registry
        # The per-rollout series (weight, phase, step) come from one compact row per rollout, rendered at
        # scrape time (`_RolloutCollector`): 12 prometheus_client children per rollout cost ~12 kB and a
        # dozen label lookups per look; a row costs a tuple (docs/benchmarks/controller.md).
        self._rows: dict[tuple[str, str], tuple[str, str, str, float, float, str, int]] = {}
        r.register(_RolloutCollector(self))
        # Per check and model, also rows rendered at scrape time (`_CheckCollector`): as prometheus_client
        # children, the default policy's five checks cost ~10 kB a rollout (25 MB at 2,500).
        # (model, check, outcome) -> (count, created): created as prometheus_client's Counter exports it
        self._verdicts: dict[tuple[str, str, str], tuple[float, float]] = {}
        # (model, check) -> (last finite effect size, BOUND_SIDES of it: 0 a value, 1/-1 only a lower/upper bound)
        self._effects: dict[tuple[str, str], tuple[float, int]] = {}
        r.register(_CheckCollector(self))
        self.rollbacks = Counter("canary_rollbacks_total", "Rollbacks, by class of reason",
                                 ["model", "reason"], registry=r)
        self.promotions = Counter("canary_promotions_total", "Completed promotions", ["model"], registry=r)
        self.time_to_rollback = Histogram("canary_time_to_rollback_seconds",
                                          "From a breach first seen to stable 100% written",
                                          buckets=ROLLBACK_BUCKETS, registry=r)
        self.tick = Histogram("canary_tick_duration_seconds", "Duration of one controller tick",
                              buckets=TICK_BUCKETS, registry=r)
        self.tick_rollouts = Gauge("canary_tick_rollouts", "Rollouts handled in the last tick", registry=r)
        self.prom_queries = Counter("canary_prometheus_queries_total", "Prometheus queries sent", registry=r)
        self.prom_errors = Counter("canary_prometheus_errors_total", "Prometheus queries that failed", registry=r)
        self.kube_errors = Counter("canary_kube_errors_total", "Kubernetes API errors", ["kind"], registry=r)
        self.leader = Gauge("canary_leader", "1 when this replica holds the leader lease", registry=r)
        self.leader.set(0)
        for kind in KUBE_ERROR_KINDS:  # present at 0 from the start, so rate() sees the first error
            self.kube_errors.labels(kind)
        self._models: set[str] = set()  # models whose rollback and promotion counters exist (at 0 or more)
        self._lock = threading.Lock()

    # ---- rollouts ------------------------------------------------------------------

    def record_state(self, *, namespace: str, rollout: str, state: rl.RolloutState, checks: Iterable[str] = ()) -> None:
        """Set weight, phase and step gauges from a rollout's recorded state. A rollout has one row:
        a version or model change replaces its series instead of leaving a stale "v1 serves 90%" line
        on the dashboard forever. `checks`: the names of the checks its policy judges, whose outcomes are
        made at 0 before their first look (`record_verdict`'s reason)."""
        row = (state.model, state.stable_version, state.canary_version, float(state.weights.stable),
               float(state.weights.canary), state.phase, state.step + 1)
        with self._lock:
            self._set_row((namespace, rollout), row)
            for check in checks:  # a fail at the first look was born at 1: increase() read it as none (553)
                self._zero_outcomes(state.model, check)
        self._zeros(state.model)

    def record_end(self, *, namespace: str, rollout: str, phase: str) -> None:
        """A rollout ended with no state of its own to record (the controller's `_ended_status`: stable 100% found
        with no record, the route run by another rollout now): its row, where it has one, says the end
        (`phase`, 100/0, its versions and step as they were), and its model's effect sizes start their
        `EFFECT_KEEP_S`. It kept its last unfinished phase and the canary's share, and the effect sizes never left
        (decision 561). No row is made for a rollout this process never exported (its stable version is unknown)."""
        with self._lock:
            row = self._rows.get((namespace, rollout))
            if row is not None:
                self._set_row((namespace, rollout), (*row[:3], 100.0, 0.0, phase, row[6]))

    def _set_row(self, key: tuple[str, str], row: tuple[str, str, str, float, float, str, int]) -> None:
        """A rollout's row (under the lock), and its model's effect-size clock: stopped while a rollout of the
        model is unfinished, started when the last one ends."""
        self._rows[key] = row
        if row[5] not in rl.TERMINAL:
            self._ended.pop(row[0], None)
        elif not self._unfinished(row[0]):
            self._ended.setdefault(row[0], self.clock())

    def _zeros(self, model: str) -> None:
        """A model's rollback (every class) and promotion counters, at 0 from its first rollout on. A counter
        child born at 1 has no earlier sample: `increase()` and `changes()` read its first rollback as 0, so the
        dashboard's rollbacks panel and annotation missed the first rollback of each class per model after every
        controller start (for most models, every rollback there is)."""
        with self._lock:
            if model in self._models:
                return
            self._models.add(model)
        for reason in ROLLBACK_REASONS:
            self.rollbacks.labels(model, reason)
        self.promotions.labels(model)

    def forget(self, namespace: str, rollout: str) -> None:
        """Remove every series of a deleted rollout (and its model's effect sizes if no other rollout has it).

        Counters keyed by model only (verdicts, rollbacks, promotions) are kept: they are history,
        and dropping them would read as a counter reset to `rate()`.
        """
        with self._lock:
            row = self._rows.pop((namespace, rollout), None)
            if row is not None and all(r[0] != row[0] for r in self._rows.values()):
                for key in [k for k in self._effects if k[0] == row[0]]:
                    del self._effects[key]
            elif row is not None and not self._unfinished(row[0]):
                self._ended.setdefault(row[0], self.clock())  # only finished ones left: as at an end

    def _unfinished(self, model: str) -> bool:
        """Whether a rollout of `model` with series is not finished (under the lock)."""
        return any(r[0] == model and r[5] not in rl.TERMINAL for r in self._rows.values())

    def rollouts(self) -> list[tuple[str, str]]:
        """(namespace, rollout) of every rollout that has series now."""
        with self._lock:
            return list(self._rows)

    def rollout_rows(self) -> list[tuple[tuple[str, str], tuple[str, str, str, float, float, str, int]]]:
        with self._lock:
            return list(self._rows.items())

    # ---- decisions -----------------------------------------------------------------

    def record_verdict(self, *, model: str, results: Iterable[CheckResult]) -> None:
        """Count each check's outcome; keep its last finite effect size, and whether it is only a bound
        (`CheckResult.bounded`: a latency quantile in the open +Inf bucket). Called for a look judged (the
        controller: once its write lands or fails for a cause other than a refusal; never for a look refused at
        its write, decision 192)."""
        with self._lock:  # with forget() and the scrape: a series is either tracked or gone
            for r in results:
                key = (model, r.check, r.outcome.label)
                if key not in self._verdicts:  # a check its rollout's state did not name: its other outcomes at 0
                    self._zero_outcomes(model, r.check)
                n, created = self._verdicts[key]
                self._verdicts[key] = (n + 1.0, created)
                if isinstance(r.effect_size, (int, float)) and math.isfinite(r.effect_size):
                    side = BOUND_SIDES.get(r.bounded.get("effect_size", ""), 0)
                    self._effects[(model, r.check)] = (float(r.effect_size), side)

    def _zero_outcomes(self, model: str, check: str) -> None:
        """A check's four outcome counters, at 0 where not there yet (under the lock; `_zeros`'s reason)."""
        if (model, check, Outcome.PASS.label) not in self._verdicts:
            for o in Outcome:
                self._verdicts.setdefault((model, check, o.label), (0.0, time.time()))

    def check_rows(self) -> tuple[list[tuple[tuple[str, str, str], tuple[float, float]]],
                                  list[tuple[tuple[str, str], tuple[float, int]]]]:
        """(verdict counts, effect sizes), copied under the lock (for the scrape). A model's effect sizes go
        `EFFECT_KEEP_S` after its last unfinished rollout ended: they were kept for as long as the CanaryRollout
        existed, and an alert on `canary_check_effect_size > L` kept firing after the rollback that answered it."""
        with self._lock:
            now = self.clock()
            for model in [m for m, t in self._ended.items() if now - t >= EFFECT_KEEP_S]:
                del self._ended[model]
                for key in [k for k in self._effects if k[0] == model]:
                    del self._effects[key]
            return list(self._verdicts.items()), list(self._effects.items())

    def record_rollback(self, *, model: str, reason: str, seconds: float | None, cause: str = "") -> None:
        """One rollback; `seconds` from the breach first seen to stable 100% written (None: unknown). `cause`: the
        end's class as recorded (`rl.cause_of`); "" (a caller with no record): `reason`'s words."""
        self._zeros(model)
        self.rollbacks.labels(model, end_cause(cause, reason)).inc()
        if seconds is not None and math.isfinite(seconds) and seconds >= 0:
            self.time_to_rollback.observe(seconds)

    def record_promotion(self, *, model: str) -> None:
        self._zeros(model)
        self.promotions.labels(model).inc()

    # ---- the controller itself -----------------------------------------------------

    def observe_tick(self, seconds: float, rollouts: int) -> None:
        self.tick.observe(max(0.0, seconds))
        self.tick_rollouts.set(rollouts)

    def prometheus_query(self, ok: bool, n: int = 1) -> None:
        """`n` queries sent; all failed when not ok."""
        self.prom_queries.inc(n)
        if not ok:
            self.prom_errors.inc(n)

    def kube_error(self, kind: str) -> None:
        self.kube_errors.labels(kind if kind in KUBE_ERROR_KINDS else "other").inc()

    def set_leader(self, leader: bool) -> None:
        self.leader.set(1 if leader else 0)

    def render(self) -> bytes:
        """Text exposition format (what /metrics serves), without prometheus_client's `<counter>_created` series:
        in this format they are plain gauges of a unix time beside every counter and histogram (another series per
        model and class of `canary_rollbacks_total`, per check and outcome of `canary_verdicts_total`), which no
        Prometheus reads as a created timestamp and which read as counts of something "created"."""
        return generate_latest(_WithoutCreated(self.registry))


class _WithoutCreated:
    """A registry's families as `render` serves them: every sample but the `_created` ones."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry

    def collect(self) -> Iterable[Any]:
        for family in self.registry.collect():  # built anew at each collect: ours to trim
            family.samples = [s for s in family.samples if not s.name.endswith("_created")]
            yield family


class _RolloutCollector:
    """`canary_rollout_weight`, `canary_rollout_phase` and `canary_rollout_step`, rendered from
    `Telemetry`'s rows at each scrape (prometheus_client's custom-collector interface)."""

    def __init__(self, telemetry: Telemetry) -> None:
        self.telemetry = telemetry

    def describe(self) -> list[Any]:
        return list(self._families([]))

    def collect(self) -> Iterable[Any]:
        return self._families(self.telemetry.rollout_rows())

    @staticmethod
    def _families(rows: list[tuple[tuple[str, str], tuple[str, str, str, float, float, str, int]]]) -> list[Any]:
        ro = ["namespace", "rollout", "model"]
        weight = GaugeMetricFamily("canary_rollout_weight", "Traffic share (percent) per arm of a rollout",
                                   labels=ro + ["stable_version", "canary_version", "arm"])
        phase = GaugeMetricFamily("canary_rollout_phase", "1 for the rollout's current phase, 0 for the others",
                                  labels=ro + ["phase"])
        step = GaugeMetricFamily("canary_rollout_step", "Current step, 1-based (0 before the first step)", labels=ro)
        phases = sorted(rl.PHASES)
        for (namespace, rollout), (model, stable_v, canary_v, w_stable, w_canary, current, n) in rows:
            weight.add_metric([namespace, rollout, model, stable_v, canary_v, "stable"], w_stable)
            weight.add_metric([namespace, rollout, model, stable_v, canary_v, "canary"], w_canary)
            for p in phases:
                phase.add_metric([namespace, rollout, model, p], 1.0 if p == current else 0.0)
            step.add_metric([namespace, rollout, model], n)
        return [weight, phase, step]


class _CheckCollector:
    """`canary_verdicts_total` (a counter), `canary_check_effect_size` and `canary_check_effect_size_bounded`
    (gauges), per model and check, rendered from `Telemetry`'s rows at each scrape."""

    def __init__(self, telemetry: Telemetry) -> None:
        self.telemetry = telemetry

    def describe(self) -> list[Any]:
        return self._families([], [])

    def collect(self) -> Iterable[Any]:
        return self._families(*self.telemetry.check_rows())

    @staticmethod
    def _families(verdicts: list[tuple[tuple[str, str, str], tuple[float, float]]],
                  effects: list[tuple[tuple[str, str], tuple[float, int]]]) -> list[Any]:
        counts = CounterMetricFamily("canary_verdicts", "Check verdicts, per check and outcome",
                                     labels=["model", "check", "outcome"])
        for labels, (n, created) in verdicts:
            counts.add_metric(list(labels), n, created=created)
        effect = GaugeMetricFamily("canary_check_effect_size",
                                   "Last effect size per check (e.g. PSI for prediction shift)", labels=["model", "check"])
        # a bound is exported as the number (a lower bound above a limit is above it too: an alert on
        # `> limit` keeps firing when the canary's latency runs off the buckets, where NaN or no sample would
        # silence it), and said so by a second series of the same labels (docs/deploy.md, "The metrics")
        bounded = GaugeMetricFamily("canary_check_effect_size_bounded",
                                    "1 when canary_check_effect_size is only a lower bound (the true effect is above "
                                    "it: a latency quantile in the open +Inf bucket), -1 an upper bound (below it), "
                                    "0 a value", labels=["model", "check"])
        for labels, (x, side) in effects:
            effect.add_metric(list(labels), x)
            bounded.add_metric(list(labels), float(side))
        return [counts, effect, bounded]


# ---- health server ---------------------------------------------------------------------

Probe = Callable[[], tuple[bool, str]]


class BackgroundHTTPServer:
    """A stdlib ThreadingHTTPServer bound to `host` only (IPv4 or IPv6), served on a daemon thread:
    `port`, `url`, `start()` (then `_listening()`: a subclass logs its own event, listed in docs/reference/events.md) and
    `stop()`. Shared by the controller's health server (the controller logs `controller.serving`) and
    `canary serve` (canary/serve_http.py: `serve.listening`)."""

    component = "http"
    stop_timeout_s = 5.0  # how long stop() waits for the serving thread
    scheme = "http"

    def __init__(self, handler: type[BaseHTTPRequestHandler], *, host: str, port: int) -> None:
        self.host = host
        self._server = _server_class(host)((host, port), handler)
        self._thread: threading.Thread | None = None
        self.log = logs.get(component=self.component)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(self.host, self.host)
        return f"{self.scheme}://[{host}]:{self.port}" if ":" in host else f"{self.scheme}://{host}:{self.port}"

    def start(self) -> Any:
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.2},
                                        name=f"canary-{self.component}", daemon=True)
        self._thread.start()
        self._listening()
        return self

    def _listening(self) -> None:
        """Say that it listens: nothing here (an event name built from `component`, `health.listening`,
        was logged by no row of docs/reference/events.md and doubled the controller's `controller.serving`)."""

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=self.stop_timeout_s)
            self._thread = None
        self._server.server_close()


class HealthServer(BackgroundHTTPServer):
    """/metrics, /healthz and /readyz on a background thread; binds only `host`."""

    component = "health"

    def __init__(self, telemetry: Telemetry, *, host: str = "127.0.0.1", port: int = 0,
                 ready: Probe, live: Probe | None = None) -> None:
        self.telemetry = telemetry
        self._ready = ready
        self._live = live or (lambda: (True, ""))
        super().__init__(self._handler(), host=host, port=port)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            timeout = 10  # a client that never sends its request does not hold a thread forever
            server_version = "canary"

            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    self._send(200, outer.telemetry.render(), CONTENT_TYPE_LATEST)
                elif path in ("/healthz", "/readyz"):
                    ok, why = _ask(outer._live if path == "/healthz" else outer._ready)
                    text = ("ok" + (f": {why}" if why else "")) if ok else (why or "not ok")
                    self._send(200 if ok else 503, (text + "\n").encode(), "text/plain; charset=utf-8")
                else:
                    self._send(404, b"not found\n", "text/plain; charset=utf-8")

            def _send(self, code: int, body: bytes, ctype: str) -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass  # probes every few seconds would drown the event log

        return Handler


def _ask(probe: Probe) -> tuple[bool, str]:
    """A probe that raises is a failing probe, with the exception as the reason."""
    try:
        ok, why = probe()
        return bool(ok), str(why or "")
    except Exception as exc:  # noqa: BLE001 - the endpoint must answer, not crash its thread
        return False, f"probe raised {type(exc).__name__}: {exc}"


def _server_class(host: str) -> type[ThreadingHTTPServer]:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET

    class Server(ThreadingHTTPServer):
        address_family = family
        daemon_threads = True  # a request thread never keeps the process alive

    return Server


__all__ = ["BackgroundHTTPServer", "HealthServer", "Telemetry", "classify_reason", "ROLLBACK_REASONS", "KUBE_ERROR_KINDS"]
