"""Two Prometheus replicas behind one load-balanced address (kube-prometheus-stack's `replicas: 2` behind the
`prometheus-operated` Service, as an L7 proxy such as an Istio sidecar balances it: each query to either).

Both replicas scrape the same exporter; replica B scrapes at another offset, so at any instant its newest
sample of a counter is older than A's by up to one scrape interval. Here that offset is made exact and
deterministic: B scrapes an endpoint of the same exporter that serves its state as of one change earlier
(`LaggingExporter`), with the same `instance` label (relabelled), so both replicas store the same series and
B's newest sample is always one tick of traffic behind A's. HAProxy (round-robin, no stickiness) sends each
query to the next replica, so the queries of one look alternate between them. A replica that restarted with
empty storage is started late: its history holds only the traffic since.
"""

from __future__ import annotations

import math
import time
import urllib.parse
import urllib.request
from typing import Any, Iterator

import kubernetes.client as kc
import pytest
import structlog
from structlog.testing import capture_logs

from canary import rollout as rl
from canary.controller import Controller
from canary.metrics.batch import BatchMetrics, UnusableStepStart, Want
from canary.metrics.delta import measure_delta
from canary.metrics.families import policy_families
from canary.metrics.prometheus import PrometheusProvider
from canary.errors import NoData
from canary.model import Counts, Target
from canary.policy import Policy
from canary.reconcile import measure_window
from canary.routing.istio import IstioRouter
from canary.sandbox.haproxy import HAProxy
from canary.sandbox.promserver import PromServer
from tests import fleet
from tests.integration.test_controller_counter_restart import DT, POLICY, Exporter, Run, _held
from tests.integration.test_controller_scale import Clock
from tests.support.http import ScriptedHTTP
from tests.support.native_histograms import SteppedNativeTarget
from tests.support.prom import until_value

pytestmark = pytest.mark.integration

INSTANCE = "model-pod:8000"  # the one `instance` label both replicas give the exporter's series


class LaggingExporter(Exporter):
    """`Exporter`, plus a second endpoint (`lagged`) that serves the exposition as it was before the last
    change: what a replica whose scrape comes later in the interval holds."""

    def __init__(self) -> None:
        super().__init__()
        self.frozen = self._answer("/metrics", {})
        self.lagged = ScriptedHTTP(lambda path, headers: self.frozen)

    def advance(self, model: str, *, canary_errors: float = 0.005) -> int:
        self.frozen = self._answer("/metrics", {})
        return super().advance(model, canary_errors=canary_errors)


class Replica(PromServer):
    """One replica: its own external label (kube-prometheus-stack's `prometheus_replica`) and the exporter's
    series under one `instance` whatever address it scrapes."""

    def __init__(self, name: str, *, relabel: bool = True, **kw: Any) -> None:
        super().__init__(**kw)
        self.name, self.relabel = name, relabel

    def config(self) -> dict[str, object]:
        cfg = super().config()
        cfg["global"]["external_labels"] = {"prometheus_replica": self.name}  # type: ignore[index]
        for job in cfg.get("scrape_configs", []) if self.relabel else []:  # type: ignore[attr-defined]
            job["relabel_configs"] = [{"target_label": "instance", "replacement": INSTANCE}]
        return cfg


def _replica(name: str, target: str, binary: str) -> Replica:
    # a lookback longer than the fake clock can get ahead of Prometheus's (as test_controller_counter_restart)
    return Replica(name, targets=[target], scrape_interval="1s", binary=binary,
                   extra_args=["--query.lookback-delta=30m"])


@pytest.fixture(scope="module")
def pair(prometheus_binary: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """(A, B, the load balancer, the exporter): B one change behind A, HAProxy round-robin over both."""
    exporter = LaggingExporter()
    a = _replica("a", exporter.http.address, prometheus_binary).start()
    b = _replica("b", exporter.lagged.address, prometheus_binary).start()
    lb = HAProxy({"a": f"127.0.0.1:{a.port}", "b": f"127.0.0.1:{b.port}"}, weights={"a": 1, "b": 1},
                 workdir=tmp_path_factory.mktemp("haproxy")).start()
    try:
        a.wait_targets_up()
        b.wait_targets_up()
        g = exporter.advance("m0")
        _held(a, g)
        _held(b, g - 1)
        yield a, b, lb, exporter
    finally:
        lb.stop()
        b.stop()
        a.stop()
        exporter.lagged.close()
        exporter.http.close()


class HARun(Run):
    """`Run` whose ticks wait until A holds the change and B the one before it."""

    def __init__(self, world: Any, i: int, b: PromServer) -> None:
        super().__init__(world, i)
        self.b = b

    def tick(self, *, canary_errors: float = 0.005) -> None:
        g = self.exporter.advance(self.model, canary_errors=canary_errors)
        _held(self.prom, g)
        _held(self.b, g - 1)
        self.clock.t += DT
        self.clock.t = max(self.clock.t, time.time() + 10.0)
        with capture_logs() as logs:
            self.op.tick()
        self.lines += [(self.clock.t, e) for e in logs]


class Interleaved(PrometheusProvider):
    """The controller's Prometheus client, with one query of another client of the Service (a dashboard, a
    rule evaluator) sent through the balancer just before each of the snapshot's error-family queries: so
    the round robin answers that family from the other replica than the request family (the order in
    which other clients' queries interleave decides it in a cluster; here it is fixed)."""

    def query(self, query: str, **kw: Any) -> Any:
        if query.startswith("last_over_time(") and 'outcome="error"' in query:
            PrometheusProvider(self.url, retries=1, budget_s=5).query("vector(1)")
        return super().query(query, **kw)


def _controller(url: str, *, interleaved: bool = False) -> tuple[Any, Any, Controller, Clock]:
    api = fleet.start_api(fleet_size := 5)
    del fleet_size
    client = api.api_client()
    provider = (Interleaved if interleaved else PrometheusProvider)(url, retries=2, budget_s=5)
    clock = Clock(time.time() + 60.0)
    op = Controller(custom=kc.CustomObjectsApi(client), core=kc.CoreV1Api(client), router=IstioRouter(client, wait=None),
                    metrics=provider, batch=BatchMetrics(provider), namespace="ml", clock=clock)
    return api, client, op, clock


def _agree(snap: Any, i: int) -> bool:
    """Whether the snapshot's request family and its error family hold each series of model `i` with one value."""
    fams = {fam.matcher: fam for fam in policy_families(Policy.model_validate(POLICY)) if fam.metric == "model_requests_total"}
    target = Target("ml", fleet.model(i), fleet.model(i), "v1", "v2")
    for arm in ("stable", "canary"):
        ident = fams[""].ident(target, arm)
        requests, errors = (dict(snap._index[fams[m].key].get(ident, {})) for m in ("", 'outcome="error"'))
        if any(requests.get(sid) is not None and dict(requests[sid]) != dict(vals) for sid, vals in errors.items()):
            return False
    return True


@pytest.mark.parametrize("i,canary_errors,phase", [(0, 0.03, rl.PROMOTED), (1, 0.08, rl.ROLLED_BACK)])
def test_the_controllers_snapshots_read_requests_and_errors_from_one_replica(
        pair: Any, i: int, canary_errors: float, phase: str) -> None:
    """The controller's snapshot asks one query per family; through the balancer, with another client's query
    between two of them, the request family came from one replica and the error family from the other, one
    tick apart: the look's errors were counted over another window than its requests (the canary's cumulative
    counts read 2,400 requests with 9 errors at one snapshot, A's requests and B's errors, and 2,400 with 105
    at the next, B's requests and A's errors). Now a metric's families that disagree
    are asked again together (`metrics.replicas_mixed`) until one replica answers both; every snapshot the
    looks judge agrees, the good canary (3%, under its 5% hard ceiling) is promoted and the bad one (8%)
    rolled back."""
    a, b, lb, exporter = pair
    api, client, op, clock = _controller(lb.url, interleaved=True)
    taken: list[Any] = []
    snapshot = op.batch.snapshot

    def spy(*args: Any, **kw: Any) -> Any:
        taken.append(snapshot(*args, **kw))
        return taken[-1]

    op.batch.snapshot = spy  # type: ignore[method-assign]
    try:
        run = HARun((api, op, kc.CustomObjectsApi(client), clock, a, exporter), i, b)
        run.until_in_step(0)
        end = run.to_end(canary_errors=canary_errors)
        assert taken and all(_agree(snap, i) for snap in taken)
        assert end.phase == phase, end
        asked = run.events("metrics.replicas_mixed")
        assert asked and all(e["asking_again"] for _, e in asked)  # the premise: they disagreed, and were asked again
    finally:
        client.close()
        api.stop()


# -- `canary promote`'s looks: range queries, each arm's counts over the window ------------------------------

FRESH_MODEL = "m4"
TICKS_BEFORE_B = 10  # changes of traffic A holds before B starts (B restarted with empty storage)
# FRESH_MODEL's latency histograms (seconds): per pod, its layout and the cumulative observations one change
# adds at each bound. Stable pod `s0` (the old layout, no 0.25) serves only before B starts (`retire`), `s1`
# and the canary's `c1` throughout; s0's observations are all under 0.1 s.
LAYOUTS = {"s0": (("v1", "0.1", 10), ("v1", "0.5", 10), ("v1", "+Inf", 10)),
           "s1": (("v1", "0.1", 20), ("v1", "0.25", 70), ("v1", "0.5", 95), ("v1", "+Inf", 100)),
           "c1": (("v2", "0.1", 20), ("v2", "0.25", 70), ("v2", "0.5", 95), ("v2", "+Inf", 100))}
# FRESH_MODEL's feature-missing gauge (a fraction) per pod: canary pod `c0` serves only before B starts (its
# series gone from the exposition at `retire`, as a deleted pod's are)
# `SPIKE_MODEL`'s latency histograms, both arms (pods s1 and c1) alike at every change: each change before B
# starts adds `SPIKE` (slow: a load spike on every pod), each one after adds `CALM` (cumulative at each bound)
SPIKE_MODEL = "m3"
SPIKE = (("0.1", 10), ("0.25", 20), ("0.5", 60), ("+Inf", 100))  # B's first sample of every bucket holds
# over 1.1 times the calm change, so its increase() extrapolates every bucket alike (none is clamped at zero)
CALM = (("0.1", 80), ("0.25", 95), ("0.5", 100), ("+Inf", 100))
MISSING = {("s1", "v1"): 0.01, ("s2", "v1"): 0.01, ("c0", "v2"): 0.50, ("c1", "v2"): 0.02, ("c2", "v2"): 0.02}


class ShapedExporter(Exporter):
    """`Exporter`, plus `FRESH_MODEL`'s latency histograms per pod (`LAYOUTS`), grown at each of its
    changes; after `retire()` the old stable pod `s0` grows no more (its series stay, as a pod's do until
    it is gone); and its feature-missing gauges (`MISSING`), the retired canary pod `c0`'s gone after
    `retire()`."""

    def __init__(self) -> None:
        super().__init__()
        self.retired = False
        self.buckets = {(pod, le): 0.0 for pod, layout in LAYOUTS.items() for _, le, _ in layout}
        self.spiked = {(pod, le): 0.0 for pod in ("s1", "c1") for le, _ in SPIKE}

    def retire(self) -> None:
        with self.lock:
            self.retired = True

    def advance(self, model: str, *, canary_errors: float = 0.005) -> int:
        with self.lock:
            for pod, layout in LAYOUTS.items():
                if model == FRESH_MODEL and not (pod == "s0" and self.retired):
                    for _, le, n in layout:
                        self.buckets[(pod, le)] += n
            if model == SPIKE_MODEL:
                for pod in ("s1", "c1"):
                    for le, n in CALM if self.retired else SPIKE:
                        self.spiked[(pod, le)] += n
        return super().advance(model, canary_errors=canary_errors)

    def _answer(self, path: str, headers: dict[str, str]) -> tuple[int, str, str]:
        status, ctype, body = super()._answer(path, headers)
        with self.lock:
            lines = ["# TYPE model_inference_duration_seconds histogram"]
            for pod, layout in LAYOUTS.items():
                for version, le, _ in layout:
                    lines.append(f'model_inference_duration_seconds_bucket{{model_name="{FRESH_MODEL}",'
                                 f'model_version="{version}",pod="{pod}",le="{le}"}} {self.buckets[(pod, le)]}')
            for (pod, le), n in self.spiked.items():
                version = "v1" if pod == "s1" else "v2"
                lines.append(f'model_inference_duration_seconds_bucket{{model_name="{SPIKE_MODEL}",'
                             f'model_version="{version}",pod="{pod}",le="{le}"}} {n}')
            lines.append("# TYPE model_feature_missing_rate gauge")
            for (pod, version), rate in MISSING.items():
                if not (pod == "c0" and self.retired):
                    lines.append(f'model_feature_missing_rate{{model_name="{FRESH_MODEL}",model_version="{version}",'
                                 f'pod="{pod}"}} {rate}')
        return status, ctype, body + "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def fresh_pair(prometheus_binary: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """(A, B, the load balancer): both scrape the one exporter; B started with empty storage after
    `TICKS_BEFORE_B` changes that A holds, so B's history holds one change of the window's traffic; both hold
    the newest scrape. The canary of `FRESH_MODEL` at 1% errors, the stable at 0.5%; `m3`'s canary at 10%.
    `FRESH_MODEL`'s latency histograms (`ShapedExporter`): the old stable pod retired as B starts."""
    exporter = ShapedExporter()
    before = time.time()  # A holds nothing from before this
    a = _replica("a", exporter.http.address, prometheus_binary).start()
    a.before_first_scrape = before  # type: ignore[attr-defined]
    b = _replica("b", exporter.http.address, prometheus_binary)
    lb: HAProxy | None = None
    try:
        a.wait_targets_up()
        for _ in range(TICKS_BEFORE_B):
            exporter.advance("m3", canary_errors=0.10)
            _held(a, exporter.advance(FRESH_MODEL, canary_errors=0.01))
        exporter.retire()
        b.start().wait_targets_up()
        _held(b, exporter.generation)
        exporter.advance("m3", canary_errors=0.10)
        g = exporter.advance(FRESH_MODEL, canary_errors=0.01)
        _held(a, g)
        _held(b, g)
        lb = HAProxy({"a": f"127.0.0.1:{a.port}", "b": f"127.0.0.1:{b.port}"}, weights={"a": 1, "b": 1},
                     workdir=tmp_path_factory.mktemp("haproxy")).start()
        yield a, b, lb
    finally:
        if lb is not None:
            lb.stop()
        b.stop()
        a.stop()
        exporter.http.close()


def _skip(url: str, n: int) -> None:
    """`n` queries to `url`, whatever they answer: the balancer's next query goes to the next replica."""
    for _ in range(n):
        try:
            urllib.request.urlopen(url + "/api/v1/query?query=vector(1)", timeout=5).close()  # noqa: S310
        except OSError:
            pass


def _rates(url: str, model: str, *, skip: int = 0) -> dict[str, float]:
    """One look's error rate of each arm as `canary promote` measures it (`measure_window`, a window of the
    whole history; the client's default retries), after `skip` queries to `url` (so the look's first query
    reaches the other replica)."""
    provider = PrometheusProvider(url, backoff_s=0.01)
    _skip(url, skip)
    policy = Policy.model_validate(POLICY)
    with capture_logs():
        out, _, _, _ = measure_window(provider, policy, Target("ml", model, model, "v1", "v2"), window_s=600,
                                log=structlog.get_logger())
    stable, canary = out["errors"]
    assert isinstance(stable, Counts) and isinstance(canary, Counts), out
    return {"stable": stable.rate, "canary": canary.rate}


@pytest.mark.parametrize("skip", [0, 1])
def test_a_look_through_the_balancer_reads_each_error_rate_from_one_replica(fresh_pair: Any, skip: int) -> None:
    """Through round-robin HAProxy a look's queries alternate between A (the whole window) and B (restarted
    with empty storage: a tenth of it). Read one query at a time, one arm's requests came from one replica
    and its errors from the other: the good canary (1%) read 5.4% (over its 5% hard ceiling: a rollback
    of a good canary) or 0.19%, and the bad one (10%) 1.9% (passing it). Now both arms' requests and
    errors are one query: each rate is the replica's, which is the truth on either (the counts differ,
    the rates not). `skip` starts the look on either replica."""
    a, b, lb = fresh_pair
    for direct in (a, b):  # the premise: each replica alone reads the true rates, from different counts
        got = _rates(direct.url, FRESH_MODEL)
        assert got["canary"] == pytest.approx(0.01, rel=0.05) and got["stable"] == pytest.approx(0.005, rel=0.05)
    good, bad = _rates(lb.url, FRESH_MODEL, skip=skip), _rates(lb.url, "m3", skip=skip)
    assert good["canary"] == pytest.approx(0.01, rel=0.05), good
    assert good["stable"] == pytest.approx(0.005, rel=0.05), good
    assert bad["canary"] == pytest.approx(0.10, rel=0.05), bad


def _latency(url: str, *, skip: int = 0, model: str = FRESH_MODEL, check: dict[str, Any] | None = None
             ) -> tuple[Any, Any]:
    """One look's (stable, canary) p50 latency histograms of `FRESH_MODEL` as `canary promote` measures them,
    after `skip` queries to `url`."""
    provider = PrometheusProvider(url, backoff_s=0.01)
    _skip(url, skip)
    policy = Policy.model_validate({**POLICY, "checks": [check or LATENCY]})
    with capture_logs():
        return provider.measure(policy, policy.checks[0], Target("ml", model, model, "v1", "v2"), window_s=600)


LATENCY = {"name": "p50", "kind": "latency", "quantile": 0.5, "max_increase_pct": 20}


@pytest.mark.parametrize("skip", [0, 1])
def test_a_looks_bucket_sum_and_its_series_count_come_from_one_replica(fresh_pair: Any, skip: int) -> None:
    """The stable arm's pods export two layouts: `s0` (no 0.25 s bound, observations only before B
    restarted empty) and `s1`. A sums both and counts both (s0 grew in the window): 0.25 s is not every
    pod's bound and is dropped. B never saw s0 grow: its sum and its count are s1's alone, 0.25 s kept. Read
    as two queries through the balancer, A's sum with B's count kept 0.25 s holding s1's counts alone
    beside bounds that hold s0's too: 1,200 observations, 320 under 0.1 s and 770 "under 0.25 s" where 870
    were (a distribution nobody observed; that stable's p70 read above 250 ms, its true one below). Now the
    sum and the count are one query (`query_plan.classic_buckets_query`): each arm's histogram is one
    replica's, whichever; `skip` starts the look on either replica."""
    a, b, lb = fresh_pair

    def shares(h: Any) -> tuple[float, float]:  # the observations under 0.1 s and 0.25 s, as shares of all
        return h.counts[h.bounds.index(100.0)] / h.total, h.counts[h.bounds.index(250.0)] / h.total

    on_a, on_b = _latency(a.url)[0], _latency(b.url)[0]
    # the premise: A drops 0.25 s (s0 lacks it); B holds s1's alone (every bucket of one replica is read
    # over the same scrapes, so its shares are exact whatever its increase() extrapolates)
    assert on_a.bounds == (100.0, 500.0, math.inf) and shares(on_b) == pytest.approx((0.20, 0.70), abs=1e-6)
    stable, canary = _latency(lb.url, skip=skip)
    assert stable.bounds == on_a.bounds or shares(stable) == pytest.approx((0.20, 0.70), abs=1e-6), stable
    assert shares(canary) == pytest.approx((0.20, 0.70), abs=1e-6)


@pytest.mark.parametrize("check", [LATENCY, {"name": "shift", "kind": "prediction_shift", "max_psi": 0.2,
                                            "metric": "model_inference_duration_seconds"}])
@pytest.mark.parametrize("skip", [0, 1])
def test_a_looks_two_arms_histograms_come_from_one_replica(fresh_pair: Any, skip: int, check: dict[str, Any]) -> None:
    """`SPIKE_MODEL`'s arms are alike at every change: slow through A's ten changes before B restarted empty
    (a load spike on every pod), fast after. Each replica alone reads the two arms alike (A mostly slow, B
    fast: B's window holds the calm change only). Read as one query per arm through the balancer, one arm
    came from A and the other from B: a canary read slower than a stable that served exactly as it did (a
    rollback of a good canary), or the other way round (a pass of any canary). Now both arms' histograms
    are one query: `skip` starts the look on either replica."""
    a, b, lb = fresh_pair

    def shares(h: Any) -> list[float]:
        return [c / h.total for c in h.counts]

    for direct in (a, b):  # the premise: one replica reads the two arms alike (up to the extrapolation of
        stable, canary = _latency(direct.url, model=SPIKE_MODEL, check=check)  # two queries' instants)
        assert shares(stable) == pytest.approx(shares(canary), abs=0.01)
    on_a, on_b = (shares(_latency(r.url, model=SPIKE_MODEL, check=check)[0]) for r in (a, b))
    assert on_a[0] < 0.3 < 0.7 < on_b[0]  # ... and the two replicas do not
    stable, canary = _latency(lb.url, skip=skip, model=SPIKE_MODEL, check=check)
    assert shares(stable) == pytest.approx(shares(canary), abs=0.01), (stable, canary)
    if check["kind"] == "prediction_shift":  # the arms' request counts from the same replica as well
        assert min(stable.requests, canary.requests) > 0


# `native_pair`: NATIVE_MODEL's latency as a Prometheus native histogram only (protobuf exposition), both arms
# alike at every step: slow through A's ten steps before B starts with empty storage, fast after
NATIVE_MODEL = "m5"
SLOW = [0.4] * 8 + [0.05] * 2  # one step's observations per arm (seconds): 20% under 100 ms
FAST = [0.05] * 8 + [0.4] * 2  # 80% under 100 ms
# ESCAPED_MODEL (read on A alone): versions with RE2 metacharacters, and decoys an unescaped regex of them picks
ESCAPED_MODEL = "m6"
ESCAPED = {"1.0+cu121": FAST, "2.0": FAST, "1x00cu121": SLOW * 5, "2x0": SLOW * 5}


def _arm(model: str, version: str) -> tuple[tuple[str, str], ...]:
    return (("model_name", model), ("model_version", version))


class _Requests:
    """`model_requests_total` of NATIVE_MODEL's two arms (text exposition), one request per observation."""

    def __init__(self) -> None:
        self.n = 0.0
        self.http = ScriptedHTTP(lambda path, headers: (200, "text/plain; version=0.0.4", "".join(
            f'model_requests_total{{model_name="{NATIVE_MODEL}",model_version="{v}",outcome="success"}} {self.n}\n'
            for v in ("v1", "v2"))))


def _holds(prom: PromServer, count: float) -> None:
    """Return once `prom`'s newest samples of NATIVE_MODEL's arms count `count` observations and requests."""
    sel = f'{{model_name="{NATIVE_MODEL}"}}'
    until_value(prom, f"min(histogram_count(model_inference_duration_seconds{sel}) or model_requests_total{sel})",
                count, f"{count} observations")


@pytest.fixture(scope="module")
def native_pair(prometheus_binary: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """(A, B, the load balancer) as `fresh_pair`, over a target that exports NATIVE_MODEL's latency as a
    native histogram only (`SteppedNativeTarget`: it grows at `step`, not at a scrape) and its request
    counter: ten slow steps that A holds, then B started with empty storage, then one fast step both hold.
    Both replicas ingest native histograms (`--enable-feature=native-histograms`)."""
    target = SteppedNativeTarget("model_inference_duration_seconds", {
        **{_arm(NATIVE_MODEL, v): [] for v in ("v1", "v2")}, **{_arm(ESCAPED_MODEL, v): [] for v in ESCAPED}}).start()
    requests = _Requests()
    kw = {"targets": [target.address, requests.http.address], "scrape_interval": "1s", "binary": prometheus_binary,
          "extra_args": ["--query.lookback-delta=30m", "--enable-feature=native-histograms"], "relabel": False}
    a, b = Replica("a", **kw).start(), Replica("b", **kw)
    lb: HAProxy | None = None

    def step(values: list[float]) -> None:
        target.step({_arm(NATIVE_MODEL, v): values for v in ("v1", "v2")})
        requests.n += len(values)

    try:
        a.wait_targets_up()
        target.step({_arm(ESCAPED_MODEL, v): values for v, values in ESCAPED.items()})
        for _ in range(TICKS_BEFORE_B):
            step(SLOW)
            _holds(a, requests.n)
        b.start().wait_targets_up()
        _holds(b, requests.n)
        step(FAST)
        _holds(a, requests.n)
        _holds(b, requests.n)
        lb = HAProxy({"a": f"127.0.0.1:{a.port}", "b": f"127.0.0.1:{b.port}"}, weights={"a": 1, "b": 1},
                     workdir=tmp_path_factory.mktemp("haproxy-native")).start()
        yield a, b, lb
    finally:
        if lb is not None:
            lb.stop()
        b.stop()
        a.stop()
        target.stop()
        requests.http.close()


def _native_look(url: str, check: dict[str, Any], *, histograms: str = "native", skip: int = 0,
                 model: str = NATIVE_MODEL, versions: tuple[str, str] = ("v1", "v2")) -> tuple[Any, Any]:
    """One look's (stable, canary) of `check` on `model`'s native histograms, as `canary promote` measures
    them, `metrics.histograms` as given (native or classic first), after `skip` queries."""
    provider = PrometheusProvider(url, backoff_s=0.01)
    _skip(url, skip)
    policy = Policy.model_validate({**POLICY, "metrics": {**POLICY.get("metrics", {}), "histograms": histograms},
                                    "checks": [check]})
    with capture_logs():
        return provider.measure(policy, policy.checks[0], Target("ml", model, model, *versions), window_s=600)


def _under(h: Any, bound: float) -> float:
    """The share of `h`'s observations at or under `bound`."""
    return h.counts[max(i for i, b in enumerate(h.bounds) if b <= bound)] / h.total


SHIFT = {"name": "shift", "kind": "prediction_shift", "max_psi": 0.2, "metric": "model_inference_duration_seconds"}


@pytest.mark.parametrize("histograms", ["native", "classic"])
@pytest.mark.parametrize("check", [LATENCY, SHIFT])
@pytest.mark.parametrize("skip", [0, 1])
def test_a_looks_two_arms_native_histograms_come_from_one_replica(native_pair: Any, skip: int, check: dict[str, Any],
                                                                   histograms: str) -> None:
    """Decision 193's case for native histograms: NATIVE_MODEL's arms are alike at every step, slow through
    A's ten steps before B restarted empty, fast after. Each replica alone reads the two arms alike (A 25%
    under 100 ms, B 80%). Read one native query per arm through the balancer (what decision 193 left:
    `label_replace` turns a native sample into a float, so the arms could not be parts of one answer), one
    arm came from A and the other from B: a canary read 3x faster or slower than a stable that served
    exactly as it did. Now both arms are ONE query grouped by the arm label (`query_plan.arms_native_query`),
    and a prediction_shift check's request counts are parts of that same answer: `skip` starts the look
    on either replica, with `metrics.histograms: native` and `classic` (the default: classic asked first)."""
    a, b, lb = native_pair

    def under_100ms(h: Any) -> float:  # (a prediction histogram keeps the metric's unit: seconds)
        return _under(h, 100.0 if check["kind"] == "latency" else 0.1)

    on = {}
    for name, direct in (("a", a), ("b", b)):  # the premise: one replica reads the two arms alike ...
        stable, canary = _native_look(direct.url, check, histograms=histograms)
        assert under_100ms(stable) == pytest.approx(under_100ms(canary), abs=1e-6)
        on[name] = under_100ms(stable)
    assert on["a"] == pytest.approx(28 / 110, abs=0.01) and on["b"] == pytest.approx(0.8, abs=0.01)  # ... apart
    stable, canary = _native_look(lb.url, check, histograms=histograms, skip=skip)
    assert under_100ms(stable) == pytest.approx(under_100ms(canary), abs=1e-6), (stable, canary)
    if check["kind"] == "prediction_shift":  # the arms' request counts from the answer their histograms came from
        for arm in (stable, canary):  # (one request per observation; A counts ~110 of each, B ~10-25, as each
            assert 0.5 < arm.requests / arm.total < 2, (stable, canary)  # replica extrapolates its own samples)


def test_a_native_look_reads_each_arm_by_its_own_version_and_never_another(native_pair: Any) -> None:
    """The one query's regex over the arm label: versions with RE2 metacharacters match only themselves
    ("1.0+cu121" never "1x00cu121", "2.0" never "2x0": decoys with five times the observations, all slow);
    an arm with no series is NoData (missing, never an empty histogram or another arm's); both arms the
    same version (`canary plan` reads the stable's layout so) read that version's series each."""
    a, _, _ = native_pair
    latency = {**LATENCY, "max_ms": 1000}  # a limit on the canary alone: judged with the stable arm missing
    stable, canary = _native_look(a.url, latency, model=ESCAPED_MODEL, versions=("1.0+cu121", "2.0"))
    for arm in (stable, canary):
        assert arm.total == pytest.approx(10, rel=0.1) and _under(arm, 100.0) == pytest.approx(0.8), arm
    stable, canary = _native_look(a.url, latency, model=ESCAPED_MODEL, versions=("3.0", "2.0"))
    assert isinstance(stable, NoData) and "stable arm" in str(stable), stable
    assert canary.total == pytest.approx(10, rel=0.1)
    stable, canary = _native_look(a.url, latency, model=ESCAPED_MODEL, versions=("1.0+cu121", "1.0+cu121"))
    assert stable == canary and stable.total == pytest.approx(10, rel=0.1)
    with pytest.raises(NoData):
        _native_look(a.url, latency, model=ESCAPED_MODEL, versions=("3.0", "4.0"))


def _missing(url: str, *, skip: int = 0) -> tuple[Any, Any]:
    """One look's (stable, canary) feature-missing counts of `FRESH_MODEL` as `canary promote` measures
    them (`Counts(fraction * requests, requests)`), after `skip` queries to `url`."""
    provider = PrometheusProvider(url, backoff_s=0.01)
    _skip(url, skip)
    policy = Policy.model_validate({**POLICY, "checks": [{"name": "missing", "kind": "feature_missing",
                                                          "max_increase_points": 2}]})
    with capture_logs():
        return provider.measure(policy, policy.checks[0], Target("ml", FRESH_MODEL, FRESH_MODEL, "v1", "v2"),
                                window_s=600)


@pytest.mark.parametrize("skip", [0, 1])
def test_a_looks_feature_missing_fraction_and_its_requests_come_from_one_replica(fresh_pair: Any, skip: int) -> None:
    """The canary's pod `c0` missed half its features and served only before B restarted empty: over the
    window A's mean fraction is (0.5 + 0.02 + 0.02) / 3 = 18% of 6,600 canary requests, B's 2% of its
    ~600 (`increase()` over its short history). Read as four queries through the balancer (stable's fraction,
    stable's requests, canary's fraction, canary's requests), the canary's fraction came from one replica
    and its requests from the other: B's 2% times A's 6,600 (132 "missing" where A counted 1,188: a
    canary 9x better than it is, and 11 times B's own evidence) or A's 18% of B's requests; and each arm's
    window from another replica. Now the four are one query: each arm is one replica's fraction and count,
    both arms the same replica's. `skip` starts the look on either replica."""
    a, b, lb = fresh_pair
    on = {name: _missing(r.url) for name, r in (("a", a), ("b", b))}
    # the premise: the replicas disagree on the canary's fraction (A held c0's series, B never did)
    assert on["a"][1].rate == pytest.approx(0.18, abs=1e-6) and on["b"][1].rate == pytest.approx(0.02, abs=1e-6)
    assert on["a"][1].total > 3 * on["b"][1].total
    stable, canary = _missing(lb.url, skip=skip)
    replica = min(on, key=lambda r: abs(on[r][1].total - canary.total))
    assert canary.rate == pytest.approx(on[replica][1].rate, abs=1e-6), (replica, canary, on)
    assert stable.total == pytest.approx(on[replica][0].total, rel=0.2), (replica, stable, on)


def test_a_step_start_snapshot_from_a_replica_that_has_not_scraped_yet_is_taken_again(
        fresh_pair: Any, prometheus_binary: str) -> None:
    """A replica restarted with empty storage answers, until its first scrape, with no series at all (here C:
    one with no targets yet). A step-start snapshot it answers lacks every series; the look's snapshot from
    A then counted each of them "born in the window", from 0: the canary's whole life (6,600 requests and
    66 errors, every earlier step's) as the step's data. Now the look's restart probe asks A for each such
    series' value at the step start, and one A held then makes the step-start snapshot unusable (the
    controller takes the next snapshot as the step's start). A series A itself did not hold then (born in
    the window) still counts from 0."""
    a, _, _ = fresh_pair
    policy = Policy.model_validate(POLICY)
    target = Target("ml", FRESH_MODEL, FRESH_MODEL, "v1", "v2")
    check = policy.checks[0]
    c = _replica("c", "127.0.0.1:1", prometheus_binary)
    c.targets = []
    c.start()
    try:
        start = time.time() - 5
        with capture_logs():
            base = BatchMetrics(PrometheusProvider(c.url)).snapshot([Want(policy, target)], at=start)
            now = BatchMetrics(PrometheusProvider(a.url)).snapshot([Want(policy, target)], at=time.time())
    finally:
        c.stop()
    assert base.requests(policy, target, "canary") is None  # the premise: C held nothing
    with capture_logs(), pytest.raises(UnusableStepStart, match="lacks .* series .* Prometheus held then"):
        measure_delta(policy, check, target, now, base.restrict(policy, target))
    with capture_logs():  # A before its first scrape: every series born since, counted from 0
        early = BatchMetrics(PrometheusProvider(a.url)).snapshot([Want(policy, target)],
                                                                 at=a.before_first_scrape)  # type: ignore[attr-defined]
        _, canary = measure_delta(policy, check, target, now, early.restrict(policy, target))
    assert isinstance(canary, Counts) and canary.total == now.requests(policy, target, "canary")


def _preflight_p67(url: str) -> tuple[str, ...]:
    """The layout warnings (`unresolvable`) of preflight for a p67 latency check (+20%) and an error_rate check
    on `FRESH_MODEL`, over a window holding its whole history: ten queries, the stable's `sum by (le)` the
    second and both arms' histograms with their series counts (what a look sends) the ninth, the request counts
    the tenth (decision 380)."""
    policy = Policy.model_validate({**POLICY, "analysis": {**POLICY["analysis"], "interval": "600s"}, "checks": [
        {"name": "p67", "kind": "latency", "quantile": 0.67, "max_increase_pct": 20},
        {"name": "errors", "kind": "error_rate", "max_rate_pct": 5}]})
    with capture_logs():
        report = PrometheusProvider(url, backoff_s=0.01).preflight(policy, Target("ml", FRESH_MODEL, FRESH_MODEL,
                                                                                  "v1", "v2"))
    assert report.sent == 10, report
    return report.unresolvable


def test_preflight_reads_a_stable_layout_from_one_replica(fresh_pair: Any) -> None:
    """Decision 199: decision 188's case in preflight's layout reading. The stable pods export two layouts
    (`s0` without the 0.25 s bound, observations only before B restarted empty). A alone reads the stable p67
    in (100, 500] ms (0.25 s dropped: not every pod's bound), B alone in (100, 250] (s1's alone). Preflight
    read the bounds from the count part of the both-arms query a look sends (decision 196) but the sum from
    the arm's own `sum by (le)` query, asked earlier: through the balancer one came from each replica, and
    A's sum on B's count said "stable p67 in (250, 500] ms, a bucket 2x wide", a bucket neither replica
    reads (a distribution nobody observed). Now the sum is read from the same answer as the count. Two
    preflights in a row (nine queries each) start on each replica in turn."""
    a, b, lb = fresh_pair
    on = {name: _preflight_p67(r.url) for name, r in (("a", a), ("b", b))}
    assert "stable p67 in (100, 500] ms" in on["a"][0] and "stable p67 in (100, 250] ms" in on["b"][0], on
    for _ in range(2):
        got = _preflight_p67(lb.url)
        assert got in on.values(), (got, on)


# Keep this test LAST in the module: it stops `fresh_pair`'s replica B for good (a test after it met B refused).
def test_a_replica_down_behind_the_balancer_costs_a_retry_not_a_look(fresh_pair: Any) -> None:
    """B stopped (a replica rescheduled), the balancer without health checks still sends it every other query:
    HAProxy answers that one 503, the client asks again (`retries`), and the next reaches A. Both paths read
    A's rates: `promote`'s look and the controller's snapshot. (Last in this module: B stays down.)"""
    a, b, lb = fresh_pair
    b.stop()
    for skip in (0, 1):
        got = _rates(lb.url, FRESH_MODEL, skip=skip)
        assert got["canary"] == pytest.approx(0.01, rel=0.05) and got["stable"] == pytest.approx(0.005, rel=0.05)
    policy = Policy.model_validate(POLICY)
    target = Target("ml", FRESH_MODEL, FRESH_MODEL, "v1", "v2")
    for skip in (0, 1):
        provider = PrometheusProvider(lb.url, backoff_s=0.01)
        _skip(lb.url, skip)
        with capture_logs():
            snap = BatchMetrics(provider).snapshot([Want(policy, target)], at=time.time())
        data = snap.arm(policy, policy.checks[0], target, "canary")
        assert isinstance(data, Counts) and data.total > 0 and data.rate == pytest.approx(0.01, rel=0.05)
