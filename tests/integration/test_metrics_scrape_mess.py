"""Prometheus as an SRE's cluster scrapes it, messier than the sandbox's (decisions 352-355), against one
real, backfilled Prometheus.

- One pod scraped by two jobs (a ServiceMonitor beside the `prometheus.io/scrape` annotation job): every
  series of the pod is in Prometheus twice, with another `job` and the same `instance`. Summed, the
  canary's request count doubled: a look judged on twice the requests served, more evidence than there
  is. Such an arm now "could not measure", naming the metric and the fix (`metrics.labels: {job: ...}`).
- A canary pod whose scrape failed across the step start for longer than the snapshots' 10 min lookback:
  the controller read it as born in the window and counted its whole life; the step now starts again.
- A canary pod whose scrape is down (`up == 0`, the pod still running) for the whole look: per rollout, the
  other pod was summed alone, its errors unseen; such an arm now "could not measure". A deleted pod is not.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterator

import pytest

from canary.errors import NoData
from canary.metrics import batch as b
from canary.metrics.prometheus import PrometheusProvider
from canary.model import Counts, Target
from canary.policy import Policy, parse_policy
from canary.sandbox.promserver import PromServer, Series, histogram, history_window
from tests.integration.test_metrics_attack2 import _During, _openmetrics

pytestmark = pytest.mark.integration

WINDOW_S = 600


def _arm(model: str, version: str, ok: float, bad: float, **labels: str) -> list[Series]:
    """An arm's pod: its request counter, its latency histogram (half under 50 ms, all under 100 ms) and the drift
    exporter's count of one categorical feature (`city`: all "paris")."""
    m = {"model_name": model, "model_version": version, **labels}
    return [_During("model_requests_total", {**m, "outcome": "success"}, ok),
            _During("model_requests_total", {**m, "outcome": "error"}, bad),
            _During("model_feature_category_total", {**m, "feature": "city", "category": "paris"}, ok + bad),
            *histogram("model_inference_duration_seconds", m, [0.05, 0.1], [(ok + bad) / 2, (ok + bad) / 2, 0])]


def _scraped_twice(model: str) -> list[Series]:
    """Stable v1 (one pod, one job) at 1% errors, 100 req/s; canary v2's one pod (10 req/s, 1% errors) read by
    the ServiceMonitor's job and by the annotation job: the same `instance`, another `job`."""
    out = _arm(model, "v1", 99, 1, job="serviceMonitor/ml/rec", instance="10.0.0.1:8000")
    for job in ("serviceMonitor/ml/rec", "kubernetes-pods"):
        out += _arm(model, "v2", 9.9, 0.1, job=job, instance="10.0.0.2:8000")
    return out


@dataclass(frozen=True)
class _Unscraped(Series):
    """A counter that goes on counting while its scrape fails from `begin` until `until` (no samples then)."""

    begin: float = 0.0
    until: float = 0.0

    def value(self, t: float, start: float) -> float | None:  # type: ignore[override]
        return None if self.begin <= t < self.until else self.per_s * (t - start)


def _scrape_gap(model: str, t0: float) -> list[Series]:
    """Stable v1 (100 req/s); canary v2's two pods at 10 req/s each, pod c's scrape failing from 800 s before
    the step start (t0 - WINDOW_S) until 100 s before now: absent from the step-start snapshot, which looks
    back 10 minutes, while its counter kept counting from the start of the history."""
    out = _arm(model, "v1", 99, 1, job="pods", instance="10.0.0.1:8000")
    out += _arm(model, "v2", 10, 0, job="pods", instance="10.0.0.2:8000")
    m = {"model_name": model, "model_version": "v2", "job": "pods", "instance": "10.0.0.3:8000"}
    gap = {"begin": t0 - WINDOW_S - 800, "until": t0 - 100}
    return out + [_Unscraped("model_requests_total", {**m, "outcome": "success"}, 10, **gap),
                  _Unscraped("model_requests_total", {**m, "outcome": "error"}, 0, **gap)]


@dataclass(frozen=True)
class _Up(Series):
    """A target's `up`: 1 until `down_at`, 0 from then until `gone_at` (its pod deleted: no target, no `up`)."""

    down_at: float = 0.0
    gone_at: float = float("inf")

    def value(self, t: float, start: float) -> float | None:  # type: ignore[override]
        return None if t >= self.gone_at else 0.0 if t >= self.down_at else 1.0


def _target_down(model: str, t0: float, *, deleted: bool) -> list[Series]:
    """Stable v1 (100 req/s, 1% errors); canary v2's pod b at 10 req/s without errors, and its pod c at
    50% errors whose series end 400 s before the step start: its scrape fails from then on (`up` 0: the pod
    runs, Istio still sends it requests) or, `deleted`, the pod is gone (its target too)."""
    net = "10.0.2" if deleted else "10.0.1"  # one `up` series per target
    out = _arm(model, "v1", 99, 1, job="pods", instance=f"{net}.1:8000")
    out += _arm(model, "v2", 10, 0, job="pods", instance=f"{net}.2:8000")
    end = t0 - WINDOW_S - 400
    m = {"model_name": model, "model_version": "v2", "job": "pods", "instance": f"{net}.3:8000"}
    out += [_During("model_requests_total", {**m, "outcome": "success"}, 5, until=end),
            _During("model_requests_total", {**m, "outcome": "error"}, 5, until=end),
            _During("model_feature_category_total", {**m, "feature": "city", "category": "lyon"}, 10, until=end)]
    out += [_During("model_inference_duration_seconds_bucket", {**m, "le": le}, n, until=end)
            for le, n in (("0.05", 0), ("0.1", 0), ("+Inf", 10))]  # all of them slower than 100 ms
    for instance in (f"{net}.1:8000", f"{net}.2:8000"):
        out.append(_Up("up", {"job": "pods", "instance": instance}, down_at=float("inf")))
    out.append(_Up("up", {"job": "pods", "instance": f"{net}.3:8000"}, down_at=end, gone_at=end if deleted else float("inf")))
    return out


def _down_pod(model: str, version: str, instance: str, end: float) -> list[Series]:
    """A pod of `version` whose series end at `end`, its target down (`up` 0) from then on."""
    m = {"model_name": model, "model_version": version, "job": "pods", "instance": instance}
    return [_During("model_requests_total", {**m, "outcome": "success"}, 5, until=end),
            _During("model_requests_total", {**m, "outcome": "error"}, 5, until=end),
            _Up("up", {"job": "pods", "instance": instance}, down_at=end)]


def _stable_pod_down(model: str, t0: float) -> list[Series]:
    """Stable v1's pod a serving (100 req/s, 1% errors) and its pod c down since before the window: a pod
    restarting or crash-looping, not Ready, which Istio sends nothing; canary v2's one pod, 10 req/s, 1%."""
    out = _arm(model, "v1", 99, 1, job="pods", instance="10.0.4.1:8000")
    out += _arm(model, "v2", 9.9, 0.1, job="pods", instance="10.0.4.2:8000")
    out += [_Up("up", {"job": "pods", "instance": i}, down_at=float("inf")) for i in ("10.0.4.1:8000", "10.0.4.2:8000")]
    return out + _down_pod(model, "v1", "10.0.4.3:8000", t0 - WINDOW_S - 400)


def _canary_gone(model: str, t0: float) -> list[Series]:
    """Stable v1 (100 req/s); canary v2's only pod down since before the window (crashed, its series ended within
    the hour): the canary counted nothing in the window, as a version no pod serves."""
    out = _arm(model, "v1", 99, 1, job="pods", instance="10.0.5.1:8000")
    out.append(_Up("up", {"job": "pods", "instance": "10.0.5.1:8000"}, down_at=float("inf")))
    return out + _down_pod(model, "v2", "10.0.5.2:8000", t0 - WINDOW_S - 400)


def _merged(model: str) -> list[Series]:
    """Istio's metrics merging: canary v2's pod read by the annotation job through the sidecar's :15020 and by a
    ServiceMonitor on the app's :8000, one pod under two `instance`s."""
    out = _arm(model, "v1", 99, 1, job="serviceMonitor/ml/rec", instance="10.0.6.1:8000")
    out += _arm(model, "v2", 9.9, 0.1, job="serviceMonitor/ml/rec", instance="10.0.6.2:8000")
    return out + _arm(model, "v2", 9.9, 0.1, job="kubernetes-pods", instance="10.0.6.2:15020")


def _one_host(model: str) -> list[Series]:
    """Canary v2's two targets on one host, two ports, one job (two containers of a pod, or hostNetwork pods)."""
    out = _arm(model, "v1", 99, 1, job="pods", instance="10.0.7.1:8000")
    for instance in ("10.0.7.2:8000", "10.0.7.2:8001"):
        out += _arm(model, "v2", 4.95, 0.05, job="pods", instance=instance)
    return out


def _sidecar(model: str, version: str, ip: str) -> _During:
    """A pod's Istio sidecar's `istio_requests_total` (100 req/s, all 200) as Istio's PodMonitor reads it (kube-
    prometheus-stack's envoy-stats: job ml/envoy-stats, port 15090)."""
    return _During("istio_requests_total", {
        "destination_service_name": model, "destination_service_namespace": "ml", "destination_version": version,
        "reporter": "destination", "response_code": "200", "job": "ml/envoy-stats", "instance": f"{ip}:15090"}, 100)


def _two_exporters(model: str) -> list[Series]:
    """Each pod's two exporters, each read by its own job: the model server's series on :8002 by a ServiceMonitor's,
    the sidecar's `istio_requests_total` on :15090 by Istio's PodMonitor (kube-prometheus-stack's envoy-stats) --
    one host, two jobs, no series read twice."""
    out: list[Series] = []
    for version, ip in (("v1", "10.0.8.1"), ("v2", "10.0.8.2")):
        out += _arm(model, version, 99, 1, job="serviceMonitor/ml/triton", instance=f"{ip}:8002")
        out.append(_sidecar(model, version, ip))
    return out


def _stable_read_twice(model: str) -> list[Series]:
    """Stable v1's pod read by two jobs (its server's series twice), canary v2's by one; each pod's sidecar's
    `istio_requests_total` (100 req/s) by Istio's PodMonitor."""
    out = _arm(model, "v1", 99, 1, job="kubernetes-pods", instance="10.0.9.1:8000")
    for version, ip in (("v1", "10.0.9.1"), ("v2", "10.0.9.2")):
        out += _arm(model, version, 99, 1, job="serviceMonitor/ml/rec", instance=f"{ip}:8000")
        out.append(_sidecar(model, version, ip))
    return out


def _federated(model: str, *, direct: bool = True, source_jobs: tuple[str, ...] = ("kubernetes-pods",),
               via: tuple[str, ...] = ("prom-global:9090",)) -> list[Series]:
    """Canary v2's pod re-exported by a target with `honor_labels: false` (another Prometheus's /federate, a
    Pushgateway): Prometheus renames the pod's own `instance` and `job` to `exported_instance`/`exported_job` and
    writes the federating target's (`instance` prom-global:9090, `job` federate). `direct`: the pod is scraped
    here too; `source_jobs`: the jobs that read it where it was federated from (two: read twice there); `via`: the
    federating targets (two: an HA pair of Prometheus servers, both federated)."""
    out = _arm(model, "v1", 99, 1, job="kubernetes-pods", instance="10.0.10.1:8000")
    if direct:
        out += _arm(model, "v2", 9.9, 0.1, job="kubernetes-pods", instance="10.0.10.2:8000")
    for instance in via:
        for job in source_jobs:
            out += _arm(model, "v2", 9.9, 0.1, job="federate", instance=instance, exported_job=job,
                        exported_instance="10.0.10.2:8000")
    return out


def _relabelled(model: str) -> list[Series]:
    """Pod labels copied onto the scrape target (`labelmap: __meta_kubernetes_pod_label_(.+)`) with `honor_labels:
    false`: a pod label `model_version` wins over the exporter's, which is renamed `exported_model_version`. Both
    deployments' pods labelled "v2" (one chart value), the stable's server still serving v1 (100 req/s, 1% errors);
    canary v2's pod at 20% errors (10 req/s)."""
    out = _arm(model, "v2", 99, 1, job="kubernetes-pods", instance="10.0.12.1:8000", exported_model_version="v1")
    return out + _arm(model, "v2", 8, 2, job="kubernetes-pods", instance="10.0.12.2:8000", exported_model_version="v2")


def _relabelled_alike(model: str) -> list[Series]:
    """The control: each pod's label `model_version` the version its server serves (the exporter's kept as
    `exported_model_version`, the same value); canary v2 at 1% errors."""
    out = _arm(model, "v1", 99, 1, job="kubernetes-pods", instance="10.0.13.1:8000", exported_model_version="v1")
    return out + _arm(model, "v2", 9.9, 0.1, job="kubernetes-pods", instance="10.0.13.2:8000",
                      exported_model_version="v2")


def _relabelled_alone(model: str) -> list[Series]:
    """`_relabelled` with only the stable's pod labelled "v2" (its server serving v1) and no canary pod up yet: the
    canary arm holds the stable's series alone, one exporter value (v1, the other arm's)."""
    return _arm(model, "v2", 99, 1, job="kubernetes-pods", instance="10.0.18.1:8000", exported_model_version="v1")


def _relabelled_mixed(model: str) -> list[Series]:
    """`_relabelled` under Triton's numbering: both deployments' pods labelled "v2", their servers saying "1" (the
    stable's) and "2": neither is an arm's value, but the canary arm holds two servers' series."""
    out = _arm(model, "v2", 99, 1, job="kubernetes-pods", instance="10.0.20.1:8000", exported_model_version="1")
    return out + _arm(model, "v2", 8, 2, job="kubernetes-pods", instance="10.0.20.2:8000", exported_model_version="2")


def _relabelled_renamed(model: str) -> list[Series]:
    """docs/triton.md's scrape: the pod label `version` attached to the target (`podTargetLabels`, `honor_labels:
    false`), both arms' servers saying their own "1" (kept as `exported_<label>`), two pods an arm; and
    kube-prometheus-stack's own renames (`exported_namespace`, `exported_pod`, `exported_job`: the exporter's,
    another value). Stable v1 at 1% (100 req/s), canary v2 at 1% (10 req/s)."""
    out: list[Series] = []
    for version, per_pod, ips in (("v1", 49.5, ("10.0.19.1", "10.0.19.2")), ("v2", 4.95, ("10.0.19.3", "10.0.19.4"))):
        for ip in ips:
            out += _arm(model, version, per_pod, per_pod / 99, job="ml/triton", instance=f"{ip}:8002",
                        exported_model_version="1", exported_namespace="default", exported_pod="exporter",
                        exported_job="triton")
    return out


@dataclass(frozen=True)
class _Reset(Series):
    """A counter that restarts from 0 at `reset_at` (its container restarted in place: the same `instance`)."""

    reset_at: float = 0.0

    def value(self, t: float, start: float) -> float | None:  # type: ignore[override]
        return self.per_s * (t - start) if t < self.reset_at else self.per_s * (t - self.reset_at)


def _reset(model: str, t0: float) -> list[Series]:
    """Canary v2's pod b (5 req/s, no errors) and pod c (5 req/s, 50% errors) whose container restarts 300 s before
    the look."""
    out = _arm(model, "v1", 99, 1, job="pods", instance="10.0.14.1:8000")
    out += _arm(model, "v2", 5, 0, job="pods", instance="10.0.14.2:8000")
    m = {"model_name": model, "model_version": "v2", "job": "pods", "instance": "10.0.14.3:8000"}
    return out + [_Reset("model_requests_total", {**m, "outcome": "success"}, 2.5, reset_at=t0 - 300),
                  _Reset("model_requests_total", {**m, "outcome": "error"}, 2.5, reset_at=t0 - 300)]


def _held(model: str, t0: float) -> list[Series]:
    """Canary v2's pod b (5 req/s, no errors) and pod c (5 req/s, 50% errors) whose target is down (`up` 0) from 120 s
    before the look, its series without a staleness marker (they carry their own timestamps: federated, or
    `honor_timestamps`), so Prometheus answers their last sample for 5 minutes."""
    out = _arm(model, "v1", 99, 1, job="pods", instance="10.0.15.1:8000")
    out += _arm(model, "v2", 5, 0, job="pods", instance="10.0.15.2:8000")
    end = t0 - 120
    m = {"model_name": model, "model_version": "v2", "job": "pods", "instance": "10.0.15.3:8000"}
    out += [_During("model_requests_total", {**m, "outcome": "success"}, 2.5, until=end),
            _During("model_requests_total", {**m, "outcome": "error"}, 2.5, until=end)]
    out += [_During("model_inference_duration_seconds_bucket", {**m, "le": le}, n, until=end)
            for le, n in (("0.05", 0), ("0.1", 0), ("+Inf", 5))]  # all of them slower than 100 ms
    out += [_Up("up", {"job": "pods", "instance": i}, down_at=float("inf")) for i in ("10.0.15.1:8000", "10.0.15.2:8000")]
    return out + [_Up("up", {"job": "pods", "instance": "10.0.15.3:8000"}, down_at=end)]


def _federated_held(model: str, t0: float) -> list[Series]:
    """`_held` federated in (`honor_labels: false`, the source's timestamps kept): canary v2's pods b and c under the
    federating target prom-global:9090 (up), pod c (50% errors) down at the source from 120 s before the look, its
    series and the source's `up` for it (0) re-exported with `exported_instance`."""
    fed = {"job": "federate", "instance": "prom-global:9090", "exported_job": "kubernetes-pods"}
    out = _arm(model, "v1", 99, 1, job="kubernetes-pods", instance="10.0.16.1:8000")
    out += _arm(model, "v2", 5, 0, exported_instance="10.0.16.2:8000", **fed)
    end = t0 - 120
    m = {"model_name": model, "model_version": "v2", "exported_instance": "10.0.16.3:8000", **fed}
    out += [_During("model_requests_total", {**m, "outcome": "success"}, 2.5, until=end),
            _During("model_requests_total", {**m, "outcome": "error"}, 2.5, until=end)]
    out += [_During("model_inference_duration_seconds_bucket", {**m, "le": le}, n, until=end)
            for le, n in (("0.05", 0), ("0.1", 0), ("+Inf", 5))]
    out += [_Up("up", {"job": "kubernetes-pods", "instance": "10.0.16.1:8000"}, down_at=float("inf")),
            _Up("up", {"job": "federate", "instance": "prom-global:9090"}, down_at=float("inf")),
            _Up("up", {**fed, "exported_instance": "10.0.16.2:8000"}, down_at=float("inf"))]
    out.append(_Up("up", {**fed, "exported_instance": "10.0.16.9:8000"}, down_at=end))  # another app's pod, down
    return out + [_Up("up", {**fed, "exported_instance": "10.0.16.3:8000"}, down_at=end)]


def _federated_fine(model: str) -> list[Series]:
    """Canary v2's one pod federated in through prom-global:9090 as `_federated_held`'s, up at the source: another
    pod down there (`_federated_held`'s) is not this canary's."""
    fed = {"job": "federate", "instance": "prom-global:9090", "exported_job": "kubernetes-pods"}
    out = _arm(model, "v1", 99, 1, job="kubernetes-pods", instance="10.0.17.1:8000")
    out += _arm(model, "v2", 9.9, 0.1, exported_instance="10.0.17.2:8000", **fed)
    return out + [_Up("up", {**fed, "exported_instance": "10.0.17.2:8000"}, down_at=float("inf"))]


def _other_job_down(model: str) -> list[Series]:
    """Canary v2's pod read by the ServiceMonitor's job (up), whose `instance` a second job also scrapes and always
    fails on (`up` 0: the annotation job over a port that wants TLS, another path): none of the arm's series are
    that job's; the federated form the same (the source's second job down)."""
    out = _arm(model, "v1", 99, 1, job="serviceMonitor/ml/rec", instance="10.0.21.1:8000")
    out += _arm(model, "v2", 4.95, 0.05, job="serviceMonitor/ml/rec", instance="10.0.21.2:8000")
    fed = {"job": "federate", "instance": "prom-global:9090"}
    out += _arm(model, "v2", 4.95, 0.05, exported_instance="10.0.21.3:8000", exported_job="serviceMonitor/ml/rec",
                **fed)
    out += [_Up("up", {"job": j, "instance": i}, down_at=float("inf"))
            for i in ("10.0.21.1:8000", "10.0.21.2:8000") for j in ("serviceMonitor/ml/rec",)]
    out += [_Up("up", {"job": "kubernetes-pods", "instance": "10.0.21.2:8000"}, down_at=0.0),
            _Up("up", {**fed, "exported_job": "serviceMonitor/ml/rec", "exported_instance": "10.0.21.3:8000"},
                down_at=float("inf")),
            _Up("up", {**fed, "exported_job": "kubernetes-pods", "exported_instance": "10.0.21.3:8000"}, down_at=0.0)]
    return out


def _pushed(model: str, *, direct: bool = True, honor: bool = True, instance: str = "rec-v2-5f7c") -> list[Series]:
    """Canary v2's pod pushing its counters to a Pushgateway (job model-push, grouping key `instance` its pod name, or
    none: `instance=""`) and, `direct`, scraped here too (10 req/s, 1% errors). `honor`: the Pushgateway is scraped
    with `honor_labels: true` (the pushed `job`/`instance` kept); else with `honor_labels: false` (the Pushgateway's
    own, the pushed job as `exported_job`). The Pushgateway's `push_time_seconds` marks each group. Not `direct`: two
    pods that only push (4.95 req/s each)."""
    out = _arm(model, "v1", 99, 1, job="kubernetes-pods", instance="10.0.22.1:8000")
    if direct:
        out += _arm(model, "v2", 9.9, 0.1, job="kubernetes-pods", instance="10.0.22.2:8000")
    pods = [instance] if direct else [f"{instance}-a", f"{instance}-b"]
    for pod in pods:
        group = {"job": "model-push", **({"instance": pod} if instance else {})}
        if not honor:
            group = {"job": "pushgateway", "instance": "pgw:9091", "exported_job": "model-push",
                     **({"exported_instance": pod} if instance else {})}
        rate = 9.9 if direct else 4.95
        out += _arm(model, "v2", rate, rate / 99, **group)
        out.append(_During("push_time_seconds", group, 1))
    return out


@dataclass(frozen=True)
class _PushedUntil(Series):
    """A counter as a Pushgateway exposes it: none before `begin` (its group's first push, carrying `first`), then
    pushed at every scrape, growing by `per_s`, until `last` (its last push, between two scrapes or on one), then the
    last pushed value at every scrape for ever: a Pushgateway keeps a group until it is deleted."""

    begin: float = -math.inf
    last: float = math.inf
    first: float = 0.0

    def value(self, t: float, start: float) -> float | None:  # type: ignore[override]
        if t < self.begin:
            return None
        return self.first + self.per_s * (min(t, self.last) - max(start, self.begin))


@dataclass(frozen=True)
class _PushTime(Series):
    """A push group's `push_time_seconds`: from `begin`, the time of its last push (each scrape's until `last`)."""

    begin: float = -math.inf
    last: float = math.inf

    def value(self, t: float, start: float) -> float | None:  # type: ignore[override]
        return None if t < self.begin else min(t, self.last)


def _pushed_then(model: str, *, last: float, begin: float = -math.inf, first: float = 0.0,
                 honor: bool = True) -> list[Series]:
    """Canary v2's pod scraped here (10 req/s, 1% errors: 6,000 requests over the window) beside a group of job
    model-push on a Pushgateway (grouping key `instance` "<model>-old": a pod of an earlier rollout, or this one's)
    holding the same counters, pushed from `begin` (with `first` requests) until `last` at 10 req/s and never
    deleted. `honor`: the Pushgateway scraped with `honor_labels: true`; else `false` (its own `job`/`instance`,
    the pushed ones as `exported_job`/`exported_instance`)."""
    out = _arm(model, "v1", 99, 1, job="kubernetes-pods", instance="10.0.24.1:8000")
    out += _arm(model, "v2", 9.9, 0.1, job="kubernetes-pods", instance="10.0.24.2:8000")
    group = {"job": "model-push", "instance": f"{model}-old"} if honor else {
        "job": "pushgateway", "instance": "10.0.24.9:9091", "exported_job": "model-push",
        "exported_instance": f"{model}-old"}  # not `_pushed`'s Pushgateway, whose push times are no times of day
    out += [_PushedUntil(x.name, x.labels, x.per_s, begin=begin, last=last, first=first * x.per_s / 10)
            for x in _arm(model, "v2", 9.9, 0.1, **group)]
    return out + [_PushTime("push_time_seconds", group, begin=begin, last=last)]


def _instance_hardcoded(model: str) -> list[Series]:
    """An exporter writing one `instance` label on every pod (hard-coded "localhost:8000"), read under `honor_labels:
    false`: Prometheus keeps it as `exported_instance`, beside each pod's own target `instance`. Canary v2's two pods
    4.95 req/s each, 1% errors (6,000 requests over the window); no `exported_job` (the exporter writes no job)."""
    out = _arm(model, "v1", 99, 1, job="kubernetes-pods", instance="10.0.23.1:8000", exported_instance="localhost:8000")
    for ip in ("10.0.23.2", "10.0.23.3"):
        out += _arm(model, "v2", 4.95, 0.05, job="kubernetes-pods", instance=f"{ip}:8000",
                    exported_instance="localhost:8000")
    return out


def _two_pods(model: str) -> list[Series]:
    """The control: canary v2 with two pods of one job (two instances), 5 req/s each."""
    out = _arm(model, "v1", 99, 1, job="pods", instance="10.0.0.1:8000")
    for instance in ("10.0.0.2:8000", "10.0.0.3:8000"):
        out += _arm(model, "v2", 4.95, 0.05, job="pods", instance=instance)
    return out


@pytest.fixture(scope="module")
def prom(prometheus_binary: str) -> Iterator[tuple[PromServer, float]]:
    start, end = history_window(before_s=3600, after_s=3600)
    t0 = start + 3600
    series = _scraped_twice("twice") + _two_pods("pods") + _scrape_gap("gap", t0)
    series += _target_down("down", t0, deleted=False) + _target_down("deleted", t0, deleted=True)
    series += _stable_pod_down("stabledown", t0) + _canary_gone("gone", t0) + _merged("merged") + _one_host("onehost")
    series += _two_exporters("exporters") + _stable_read_twice("stabletwice")
    series += _federated("federated") + _federated("fedonly", direct=False)
    series += _federated("fedtwice", direct=False, source_jobs=("kubernetes-pods", "serviceMonitor/ml/rec"))
    series += _federated("fedha", direct=False, via=("prom-global-0:9090", "prom-global-1:9090"))
    series += _relabelled("relabelled") + _relabelled_alike("relabelalike")
    series += _other_job_down("otherjobdown")
    series += _relabelled_alone("relabelalone") + _relabelled_renamed("relabelrenamed") + _relabelled_mixed("relabelmixed")
    series += _reset("reset", t0) + _held("held", t0) + _federated_held("fedheld", t0) + _federated_fine("fedfine")
    series += _pushed("pushed") + _pushed("pushednoinst", instance="") + _pushed("pushedfalse", honor=False, instance="")
    series += _pushed("pushonly", direct=False) + _instance_hardcoded("hardcoded")
    # a push group's last push 40 min before the window (under either honor_labels), 10 s before it (between two
    # scrapes); 300 s before the look (within it); its first and only push 300 s before the look (3,000 requests)
    series += _pushed_then("pushstale", last=t0 - WINDOW_S - 2400)
    series += _pushed_then("pushstalefalse", last=t0 - WINDOW_S - 2400, honor=False)
    series += _pushed_then("pushedge", last=t0 - WINDOW_S - 10)
    series += _pushed_then("pushlate", last=t0 - 300) + _pushed_then("pushonce", begin=t0 - 300, last=t0 - 300,
                                                                     first=3_000)
    server = PromServer(history=_openmetrics(series, start=start, end=end), binary=prometheus_binary)
    server.start()
    try:
        yield server, start + 3600
    finally:
        server.stop()


def _policy(*checks: dict[str, Any]) -> Policy:
    return parse_policy({"steps": [10, 100], "metrics": {"source": "model", "scrape_interval": "15s"},
                         "checks": list(checks) or [{"name": "errors", "kind": "error_rate", "max_increase_points": 1}]})


_LATENCY = {"name": "p95", "kind": "latency", "quantile": 0.95, "max_increase_pct": 20}
_MISSING = {"name": "missing", "kind": "feature_missing", "max_increase_points": 1}


def _target(model: str) -> Target:
    return Target(namespace="ml", virtual_service=model, model=model, stable_version="v1", canary_version="v2")


def _snapshots(server: PromServer, t0: float, pol: Policy, t: Target) -> tuple[b.Snapshot, b.Snapshot]:
    batch = b.BatchMetrics(PrometheusProvider(server.url, retries=1, budget_s=3.0))
    base = batch.snapshot([b.Want(pol, t)], at=t0 - WINDOW_S).restrict(pol, t, step_started_at=t0 - WINDOW_S)
    return b.Snapshot.from_json(base.to_json()), batch.snapshot([b.Want(pol, t)], at=t0)


def test_two_pods_of_one_job_are_counted_once_each_in_the_batched_snapshot(prom: Any) -> None:
    server, t0 = prom
    pol, t = _policy(), _target("pods")
    base, now = _snapshots(server, t0, pol, t)
    _, canary = b.measure_delta(pol, pol.checks[0], t, now, base)
    assert isinstance(canary, Counts) and canary.total == pytest.approx(10 * WINDOW_S), canary


@pytest.mark.parametrize("check", [None, _LATENCY], ids=["error_rate", "latency"])
def test_a_pod_scraped_by_two_jobs_is_not_twice_the_evidence_in_the_batched_snapshot(prom: Any, check: Any) -> None:
    """The canary arm is NotCountable, the stable arm read as before (decision 365): it was MetricsUnavailable
    for the whole check, judged "Prometheus unreachable" and, lasting to the deadline, aborted with those words."""
    from canary.analysis.judge import judge
    from canary.errors import NotCountable
    from canary.model import Outcome

    server, t0 = prom
    pol, t = (_policy(check) if check else _policy()), _target("twice")
    base, now = _snapshots(server, t0, pol, t)
    stable, canary = b.measure_delta(pol, pol.checks[0], t, now, base)
    assert isinstance(canary, NotCountable), canary
    assert "series of twice/v2 scraped by two jobs" in str(canary) and "metrics.labels" in str(canary)
    assert not isinstance(stable, NoData), stable
    r = judge(pol, {pol.checks[0].name: (stable, canary)}, canary_weight=10, window_s=WINDOW_S,
              canary_version="v2").results[0]
    assert r.outcome is Outcome.ERROR and not r.extra.get("unavailable") and "unrouted" not in r.extra, r


def test_a_pod_scraped_by_two_jobs_in_the_step_start_snapshot_starts_the_step_again(prom: Any) -> None:
    server, t0 = prom
    pol, t = _policy(), _target("twice")
    base, _ = _snapshots(server, t0, pol, t)
    with pytest.raises(b.UnusableStepStart, match="scraped by two jobs"):
        for fam in b.families(pol):
            base.groups(fam, fam.ident(t, "canary"))


def _measure(server: PromServer, t0: float, pol: Policy, model: str) -> tuple[Any, Any]:
    provider = PrometheusProvider(server.url, retries=1, budget_s=3.0)
    return provider.measure(pol, pol.checks[0], _target(model), window_s=WINDOW_S, at=t0)


def _counted_once(server: PromServer, t0: float, model: str, *, served: float = 6_000) -> None:
    """`model`'s canary counted `served` requests, neither arm NoData, per rollout and in the controller's snapshots,
    by an error-rate and a latency check (a Histogram: its +Inf count)."""
    for check in (None, _LATENCY):
        pol = _policy(check) if check else _policy()
        stable, canary = _measure(server, t0, pol, model)
        total = canary.total if isinstance(canary, Counts) else canary.counts[-1]
        assert total == pytest.approx(served, rel=0.02), canary
        assert not isinstance(stable, NoData), stable
        base, now = _snapshots(server, t0, pol, _target(model))
        assert b.measure_delta(pol, pol.checks[0], _target(model), now, base)[1].total == pytest.approx(served,
                                                                                                       rel=0.02)


def test_two_pods_of_one_job_are_counted_once_each_per_rollout(prom: Any) -> None:
    server, t0 = prom
    _, canary = _measure(server, t0, _policy(), "pods")
    assert isinstance(canary, Counts) and canary.total == pytest.approx(10 * WINDOW_S, rel=0.02), canary
    _, canary = _measure(server, t0, _policy(_LATENCY), "pods")
    assert canary.total == pytest.approx(10 * WINDOW_S, rel=0.02), canary


@pytest.mark.parametrize("check", [None, _LATENCY], ids=["error_rate", "latency"])
def test_a_pod_scraped_by_two_jobs_is_not_twice_the_evidence_per_rollout(prom: Any, check: Any,
                                                                         caplog: Any) -> None:
    server, t0 = prom
    pol = _policy(check) if check else _policy()
    stable, canary = _measure(server, t0, pol, "twice")
    assert not isinstance(stable, NoData), stable  # stable's one job: judged as before
    assert isinstance(canary, NoData), canary  # before: 12,000 requests, twice the 6,000 served
    assert "scraped by two jobs (host 10.0.0.2)" in str(canary) and "metrics.labels" in str(canary)


def test_a_pod_scraped_by_two_jobs_is_read_once_where_the_policy_names_the_job(prom: Any) -> None:
    server, t0 = prom
    pol = parse_policy({"steps": [10, 100], "metrics": {"source": "model", "labels": {"job": "serviceMonitor/ml/rec"}},
                        "checks": [{"name": "errors", "kind": "error_rate", "max_increase_points": 1}]})
    _, canary = _measure(server, t0, pol, "twice")
    assert isinstance(canary, Counts) and canary.total == pytest.approx(10 * WINDOW_S, rel=0.02), canary


def test_a_pod_whose_scrape_failed_over_the_step_start_is_not_counted_for_its_whole_life(prom: Any) -> None:
    """Before: the batched read took pod c, absent from the step-start snapshot, as born in the window and
    counted its whole life: 42,000 canary requests where the window saw 12,000 served. Now the step-start
    snapshot is refused (the next snapshot starts the step again), as for a series a replica missed."""
    server, t0 = prom
    pol, t = _policy(), _target("gap")
    base, now = _snapshots(server, t0, pol, t)
    with pytest.raises(b.UnusableStepStart, match="lacks 1 model_requests_total series of gap/v2 .*scrape failed"):
        b.measure_delta(pol, pol.checks[0], t, now, base)
    _, canary = _measure(server, t0, pol, "gap")  # per rollout: increase() counts what it saw, no more
    assert isinstance(canary, Counts) and canary.total <= 12_000, canary


@pytest.mark.parametrize("check", [None, _LATENCY], ids=["error_rate", "latency"])
def test_a_canary_pod_whose_scrape_is_down_for_the_whole_look_is_not_read_as_no_errors(prom: Any, check: Any) -> None:
    """Before: pod c (50% errors) unscraped since before the window, pod b counted alone: 6,000 requests,
    0 errors, a pass for a canary at about 17% errors."""
    server, t0 = prom
    pol = _policy(check) if check else _policy()
    stable, canary = _measure(server, t0, pol, "down")
    assert not isinstance(stable, NoData), stable
    assert isinstance(canary, NoData), canary
    assert "scrape target down (up == 0; instance 10.0.1.3:8000)" in str(canary)


def test_a_canary_pod_deleted_before_the_look_is_not_a_target_down(prom: Any) -> None:
    server, t0 = prom
    _, canary = _measure(server, t0, _policy(), "deleted")
    assert isinstance(canary, Counts) and canary.total == pytest.approx(10 * WINDOW_S, rel=0.02), canary


@pytest.mark.parametrize("model", ["twice", "down"])
def test_an_arm_that_cannot_be_counted_is_never_read_as_a_canary_that_got_no_requests(prom: Any, model: str) -> None:
    """The canary arm scraped by two jobs, or with a target down, is NoData for its check (decisions 352, 354); the
    unrouted rule (decision 110) read every NoData canary arm as "the canary got no requests" and, with stable's
    thousands at 10%, failed every request-counting check as a hard breach: a good canary scraped by two jobs was
    rolled back at once, and the sandbox's crashed canary by that rule rather than by its probe. Its series are
    there: such an arm is `NotCountable`, no verdict and no unrouted breach."""
    from canary.analysis.judge import judge
    from canary.model import Outcome
    from canary.errors import NotCountable

    server, t0 = prom
    for pol in (_policy(), _policy(_LATENCY)):
        stable, canary = _measure(server, t0, pol, model)
        assert isinstance(canary, NotCountable), canary
        v = judge(pol, {pol.checks[0].name: (stable, canary)}, canary_weight=10, window_s=WINDOW_S,
                  canary_version="v2")
        r = v.results[0]
        assert r.outcome is Outcome.ERROR and "unrouted" not in r.extra, r
        assert "got no requests" not in r.reason, r.reason


def test_a_stable_pod_down_that_serves_nothing_does_not_stop_the_judgement(prom: Any) -> None:
    """A stable pod restarting or crash-looping (`up` 0, not Ready, sent nothing) made the stable arm NotCountable,
    every relative check ERROR, and a good canary was rolled back "no verdict" at its deadline. The target-down
    rule is the canary arm's: a stable pod unseen only weighs against the canary (the review of decision 354)."""
    server, t0 = prom
    for pol in (_policy(), _policy(_LATENCY)):
        stable, canary = _measure(server, t0, pol, "stabledown")
        assert not isinstance(stable, NoData) and not isinstance(canary, NoData), (stable, canary)


def test_a_canary_whose_every_pod_is_gone_is_still_the_unrouted_breach(prom: Any) -> None:
    """The canary's only pod down since before the window: it counted nothing at 10% while stable counted
    thousands. That arm was NotCountable (its series held within the hour, its target down), which the unrouted
    rule skips, so its share of the traffic failed until the step's deadline; it is plain NoData, as a version no
    pod serves, and the unrouted rule fails it at once (the review of decision 363)."""
    from canary.analysis.judge import judge
    from canary.errors import NotCountable
    from canary.model import Outcome

    server, t0 = prom
    pol = _policy()
    stable, canary = _measure(server, t0, pol, "gone")
    assert isinstance(canary, NoData) and not isinstance(canary, NotCountable), canary
    v = judge(pol, {pol.checks[0].name: (stable, canary)}, canary_weight=10, window_s=WINDOW_S, canary_version="v2")
    assert v.results[0].outcome is Outcome.FAIL and "unrouted" in v.results[0].extra, v.results[0]


def test_one_pod_read_under_two_instances_by_istios_metrics_merging_is_not_twice_the_evidence(prom: Any) -> None:
    """The annotation job scrapes the sidecar's :15020 (the app's metrics merged), a ServiceMonitor the app's
    :8000: two `instance`s, one pod, its requests counted twice and not flagged (12,000 read where 6,000 were
    served). Targets are compared by host (the review of decision 352)."""
    from canary.errors import NotCountable

    server, t0 = prom
    for pol in (_policy(), _policy(_LATENCY)):
        _, canary = _measure(server, t0, pol, "merged")
        assert isinstance(canary, NotCountable) and "scraped by two jobs (host 10.0.6.2)" in str(canary), canary


def test_a_pod_scraped_twice_is_said_once_not_at_every_look(prom: Any) -> None:
    """`metrics.scraped_twice` was a warning at every look of every check: one scrape config's mistake flooded the
    log. It is said once per check, arm and hosts, then every minute with `repeated` (the review of decision 352)."""
    from structlog.testing import capture_logs

    server, t0 = prom
    pol = _policy()
    provider = PrometheusProvider(server.url, retries=1, budget_s=3.0)
    clock = [0.0]
    provider._quiet.clock = lambda: clock[0]  # the throttle's minute on the test's clock
    with capture_logs() as logs:
        for _ in range(3):
            provider.measure(pol, pol.checks[0], _target("twice"), window_s=WINDOW_S, at=t0)
        clock[0] += 61.0  # a minute on: said again, counting the looks it left out
        provider.measure(pol, pol.checks[0], _target("twice"), window_s=WINDOW_S, at=t0)
    said = [e for e in logs if e["event"] == "metrics.scraped_twice"]
    assert len(said) == 2 and said[0]["repeated"] == 0 and said[0]["instances"] == ["10.0.0.2"], said
    assert said[1]["repeated"] == 2 and said[1]["instances"] == ["10.0.0.2"], said
@pytest.mark.parametrize("check", [None, _LATENCY], ids=["error_rate", "latency"])
def test_a_canary_pod_whose_scrape_is_down_is_not_read_as_no_errors_by_the_controller(prom: Any, check: Any) -> None:
    """Decision 354 in the controller's batched snapshot (decision 364): pod c (50% errors) unscraped since before
    the window, its last values out of the snapshot's 10 min lookback, pod b counted alone: 6,000 requests, 0 errors,
    a pass. Now that arm is NotCountable (no verdict, never "Prometheus unreachable"), stable judged as before; the
    step-start snapshot is still a step start (its marks are not kept), and a deleted pod is no target down."""
    from canary.errors import NotCountable

    server, t0 = prom
    pol = _policy(check) if check else _policy()
    t = _target("down")
    base, now = _snapshots(server, t0, pol, t)
    stable, canary = b.measure_delta(pol, pol.checks[0], t, now, base)
    assert isinstance(canary, NotCountable), canary  # before: Counts(events=0, total=6000), or its histogram
    assert "scrape target down (up == 0; instance 10.0.1.3:8000)" in str(canary), canary
    assert not isinstance(stable, NoData), stable
    from canary.analysis.judge import judge
    from canary.model import Outcome

    r = judge(pol, {pol.checks[0].name: (stable, canary)}, canary_weight=10, window_s=WINDOW_S, canary_version="v2").results[0]
    assert r.outcome is Outcome.ERROR and not r.extra.get("unavailable") and "unrouted" not in r.extra, r
    for fam in b.families(pol):  # the step-start snapshot: read as it was
        base.groups(fam, fam.ident(t, "canary"))
    batch = b.BatchMetrics(PrometheusProvider(server.url, retries=1, budget_s=3.0))
    wants = [b.Want(pol, _target(m)) for m in ("down", "deleted", "pods", "gap")]
    batch.snapshot(wants, at=t0)
    assert batch.down_queries_last == 1  # one per label shape and chunk, whatever the rollouts
    t = _target("deleted")
    base, now = _snapshots(server, t0, pol, t)
    _, canary = b.measure_delta(pol, pol.checks[0], t, now, base)
    assert not isinstance(canary, NoData), canary


_DRIFT = {"name": "inputs", "kind": "feature_drift", "max_psi": 0.2}


@pytest.mark.parametrize("model", ["twice", "down"])
def test_a_feature_drift_arm_scraped_twice_or_with_a_target_down_cannot_be_counted(prom: Any, model: str) -> None:
    """feature_drift counts feature values per arm (decision 366): a pod read by two jobs weighs twice in the canary's
    distribution (and its requests, the floor, count twice); a pod whose scrape is down (its values all "lyon") is
    out of it, the canary read as the stable's all "paris". Both read as a FeatureCounts before; NotCountable now,
    the stable arm as before, and preflight asks what the look asks."""
    from canary.errors import NotCountable
    from canary.model import FeatureCounts

    server, t0 = prom
    pol = _policy(_DRIFT)
    stable, canary = _measure(server, t0, pol, model)
    assert isinstance(stable, FeatureCounts), stable
    assert isinstance(canary, NotCountable), canary
    assert ("scraped by two jobs" if model == "twice" else "scrape target down") in str(canary), canary
    _, canary = _measure(server, t0, pol, "pods")  # two pods of one job: counted once each
    assert isinstance(canary, FeatureCounts) and canary.categorical["city"]["paris"] == pytest.approx(
        10 * WINDOW_S, rel=0.02), canary
    from canary.metrics.preflight import window_s
    from canary.metrics.query_plan import one_query_of

    class Asked(PrometheusProvider):
        def ask(self, query: str, **kw: Any) -> Any:
            asked.append(query)
            return super().ask(query, **kw)

    asked: list[str] = []
    Asked(server.url, retries=1, budget_s=3.0).preflight(pol, _target(model))
    assert one_query_of(pol, pol.checks[0], _target(model), window_s=window_s(pol)) in asked  # its parts: decision 631


def test_the_controller_reads_a_stable_pod_down_and_a_canary_with_every_pod_gone_as_per_rollout(prom: Any) -> None:
    """Decision 370 in the batched snapshot (decision 364 marked every arm): a stable pod down that serves nothing
    made the stable arm NotCountable (every relative check ERROR, a good canary rolled back "no verdict"); a canary
    whose every pod is gone was NotCountable, which the unrouted rule skips. Now the stable arm is read, and the
    empty canary arm is plain NoData, the unrouted breach."""
    from canary.analysis.judge import judge
    from canary.errors import NotCountable
    from canary.model import Outcome

    server, t0 = prom
    pol = _policy()
    t = _target("stabledown")
    base, now = _snapshots(server, t0, pol, t)
    stable, canary = b.measure_delta(pol, pol.checks[0], t, now, base)
    assert not isinstance(stable, NoData) and not isinstance(canary, NoData), (stable, canary)
    t = _target("gone")
    base, now = _snapshots(server, t0, pol, t)
    stable, canary = b.measure_delta(pol, pol.checks[0], t, now, base)
    assert isinstance(canary, NoData) and not isinstance(canary, NotCountable), canary
    r = judge(pol, {pol.checks[0].name: (stable, canary)}, canary_weight=10, window_s=WINDOW_S,
              canary_version="v2").results[0]
    assert r.outcome is Outcome.FAIL and "unrouted" in r.extra, r


def test_two_targets_of_one_host_under_one_job_are_measured(prom: Any) -> None:
    """The scraped-twice part wrote each target's host over its `instance`: two targets of one host (two ports)
    made two series with one label set, Prometheus refused the whole look's query (422 "vector cannot contain
    metrics with the same labelset"), and every look of such a canary could not measure (a clean-clone run's
    failure). The host is a label of its own (`queries.HOST_LABEL`)."""
    server, t0 = prom
    for pol in (_policy(), _policy(_LATENCY)):
        _, canary = _measure(server, t0, pol, "onehost")
        assert not isinstance(canary, NoData), canary
        total = canary.total if isinstance(canary, Counts) else canary.counts[-1]  # requests, or observations
        assert total == pytest.approx(10 * WINDOW_S, rel=0.02), canary


@pytest.mark.parametrize("model", ["federated", "fedtwice", "fedha"])
def test_a_canary_pod_re_exported_under_exported_instance_is_not_twice_the_evidence(prom: Any, model: str) -> None:
    """`honor_labels: false` (another Prometheus's /federate, a Pushgateway) renames the pod's `instance` and `job`
    to `exported_instance`/`exported_job` and writes the federating target's: a canary pod scraped here and federated
    in (federated), federated from a Prometheus that read it by two jobs (fedtwice), or through an HA pair of
    federating targets (fedha) read 12,000 requests where 6,000 were served, per rollout, in the request count and in
    the controller's snapshots alike: the host compared was the federating target's. It is the exported instance's
    now, each re-exporting target one reading (decision 434). Federated in alone (fedonly): counted once, as before."""
    from canary.errors import NotCountable

    server, t0 = prom
    for check in (None, _LATENCY):
        pol = _policy(check) if check else _policy()
        stable, canary = _measure(server, t0, pol, model)
        assert isinstance(canary, NotCountable) and "host 10.0.10.2" in str(canary), canary
        assert "exported_job" in str(canary) and not isinstance(stable, NoData), stable
        base, now = _snapshots(server, t0, pol, _target(model))
        stable, canary = b.measure_delta(pol, pol.checks[0], _target(model), now, base)
        assert isinstance(canary, NotCountable) and not isinstance(stable, NoData), canary
    provider = PrometheusProvider(server.url, retries=1, budget_s=3.0)
    with pytest.raises(NotCountable):
        provider.request_counts(_policy(), _target(model), window_s=WINDOW_S, at=t0)
    _counted_once(server, t0, "fedonly")


def test_a_stable_pod_labelled_with_the_canarys_version_is_not_read_as_the_canary(prom: Any) -> None:
    """A pod label `model_version` copied onto the scrape target (`labelmap`, `honor_labels: false`) overrides the
    exporter's, kept as `exported_model_version`: both deployments' pods labelled "v2", the stable's server serving
    v1 at 1% (100 req/s) and the canary at 20% (10 req/s) read as one canary at 2.7% errors, a PASS of `max_rate_pct:
    5` (the stable arm had no series: a limit on the canary alone is judged). Such an arm is NotCountable now, per
    rollout, in the request count and in the controller's snapshots: no verdict (decision 435). Pods whose label is
    their server's version are read as before."""
    from canary.analysis.judge import judge
    from canary.errors import NotCountable
    from canary.model import Outcome
    from canary.reconcile import measure_window

    server, t0 = prom
    for check in ({"name": "errors", "kind": "error_rate", "max_rate_pct": 5}, _LATENCY):
        pol = _policy(check)
        provider = PrometheusProvider(server.url, retries=1, budget_s=3.0, at=t0)
        got, n, _, _ = measure_window(provider, pol, _target("relabelled"), window_s=WINDOW_S, log=None)
        verdict = judge(pol, got, canary_weight=10, window_s=WINDOW_S, canary_version="v2")
        assert verdict.results[0].outcome is Outcome.ERROR and n == 0.0, verdict.results[0]
        assert "exporter said another model or version" in str(got[pol.checks[0].name]), got
        base, now = _snapshots(server, t0, pol, _target("relabelled"))
        with pytest.raises(NotCountable, match="exporter said another model or version"):
            b.measure_delta(pol, pol.checks[0], _target("relabelled"), now, base)
        for model in ("relabelalike", "relabelrenamed"):  # the labels agree, or say another name for what the
            # arm's pods serve, the same on all of them: counted (a NotCountable at every look rolled back every
            # canary of docs/triton.md's scrape at its deadline; decision 468)
            stable, canary = _measure(server, t0, pol, model)
            assert canary.total == pytest.approx(6_000, rel=0.02) and stable.total == pytest.approx(60_000, rel=0.02)
            base, now = _snapshots(server, t0, pol, _target(model))
            assert b.measure_delta(pol, pol.checks[0], _target(model), now, base)[1].total == pytest.approx(
                6_000, rel=0.02)
            got, n, _, _ = measure_window(provider, pol, _target(model), window_s=WINDOW_S, log=None)
            assert n == pytest.approx(6_000, rel=0.02) and not isinstance(got[pol.checks[0].name], Exception), got
        # the canary arm holds the stable's series alone (v1's value), or two servers' ("1" and "2")
        for model in ("relabelalone", "relabelmixed"):
            with pytest.raises(NotCountable, match="canary arm's series include ones whose exporter said another"):
                _measure(server, t0, pol, model)
            base, now = _snapshots(server, t0, pol, _target(model))
            with pytest.raises(NotCountable, match="exporter said another model or version"):
                b.measure_delta(pol, pol.checks[0], _target(model), now, base)


def test_a_canary_pod_down_whose_series_are_held_without_a_staleness_marker_is_not_read_as_live(prom: Any) -> None:
    """A series that carries its own timestamps gets no staleness marker when its target goes down: Prometheus answers
    its last sample for 5 minutes. Canary pod c (50% errors) down for the look's last 2 minutes was read as live from
    its older samples (5,362 requests of ~6,000, no target down: `unless on (instance) <its series>` found them), where
    the same pod with staleness markers is "could not measure" (decision 354). Now it is NotCountable too, per rollout,
    in the request count and in the controller's snapshot (decision 436). Federated in (fedheld: the pod is its
    `exported_instance`, its `up` the source's, re-exported): named by its own `up`; before, any federated `up` of 0
    (another app's pod down at the source) named every arm federated through that target (fedfine)."""
    from canary.errors import NotCountable

    server, t0 = prom
    for model, pod in (("held", "10.0.15.3:8000"), ("fedheld", "10.0.16.3:8000")):
        for check in (None, _LATENCY):
            pol = _policy(check) if check else _policy()
            _, canary = _measure(server, t0, pol, model)
            assert isinstance(canary, NotCountable) and f"instance {pod}" in str(canary), canary
            base, now = _snapshots(server, t0, pol, _target(model))
            _, canary = b.measure_delta(pol, pol.checks[0], _target(model), now, base)
            assert isinstance(canary, NotCountable) and pod in str(canary), canary
        with pytest.raises(NotCountable):
            PrometheusProvider(server.url, retries=1, budget_s=3.0).request_counts(_policy(), _target(model),
                                                                                   window_s=WINDOW_S, at=t0)
    _counted_once(server, t0, "fedfine")  # another pod down at the source: not this federated canary's


def test_a_canary_pod_whose_other_scrape_job_fails_on_its_instance_is_counted(prom: Any) -> None:
    """Target-down is a target's: a (job, instance), not an instance. A canary pod read by one job (up) whose
    `instance` another job scrapes and fails on (`up` 0 for good: the annotation job over a port that wants TLS) has
    none of its series from that job. Before decision 436 its series, answered now, hid it (`unless on (instance)`);
    with the held series joined `on (instance)` alone it was "target down" at every look: no verdict, every good
    canary rolled back at its deadline. Joined on the job too now (`exported_job` for a federated pod; decision
    470)."""
    server, t0 = prom
    _counted_once(server, t0, "otherjobdown")
    got = PrometheusProvider(server.url, retries=1, budget_s=3.0).request_counts(_policy(), _target("otherjobdown"),
                                                                              window_s=WINDOW_S, at=t0)
    assert got[1] == pytest.approx(6_000, rel=0.02), got


def test_a_canary_pods_counter_reset_mid_window_is_counted_from_both_lives(prom: Any) -> None:
    """Held (checked, no change): a canary container restarted in place 300 s before the look (its counters from 0,
    the same series). Per rollout `increase()` counts both lives: ~6,000 requests and the pod's 1,500 errors (one
    scrape interval's worth lost at the reset). The controller's snapshots see the restart (`requests_restarted`):
    the look opens a new window rather than judging a second path of it (decision 163)."""
    server, t0 = prom
    _, canary = _measure(server, t0, _policy(), "reset")
    assert isinstance(canary, Counts) and canary.total == pytest.approx(6_000, rel=0.02), canary
    assert canary.events == pytest.approx(1_500, rel=0.03), canary
    base, now = _snapshots(server, t0, _policy(), _target("reset"))
    assert b.requests_restarted(_policy(), _target("reset"), now, base)


@pytest.mark.parametrize("model", ["pushed", "pushednoinst", "pushedfalse"])
def test_a_canary_pod_pushed_to_a_pushgateway_and_scraped_is_not_twice_the_evidence(prom: Any, model: str) -> None:
    """A pod pushing its counters to a Pushgateway and scraped here too: under `honor_labels: true` the pushed series
    keep the pushed `job` and `instance` (its pod name, or none), under `honor_labels: false` the Pushgateway's own
    with no `exported_instance` where none was pushed; either way the host compared was not the pod's, and the sum
    read 12,000 requests where 6,000 were served, per rollout and in the controller's snapshots. An arm whose series
    of one metric are both pushed (a group the Pushgateway's `push_time_seconds` marks) and read otherwise is
    NotCountable now (decision 483). Pods that only push: counted once (pushonly)."""
    from canary.errors import NotCountable

    server, t0 = prom
    for check in (None, _LATENCY):
        pol = _policy(check) if check else _policy()
        stable, canary = _measure(server, t0, pol, model)
        assert isinstance(canary, NotCountable) and "Pushgateway" in str(canary), canary  # before: 12,000 requests
        assert "model-push" in str(canary) and not isinstance(stable, NoData), stable
        base, now = _snapshots(server, t0, pol, _target(model))
        stable, canary = b.measure_delta(pol, pol.checks[0], _target(model), now, base)
        assert isinstance(canary, NotCountable) and "Pushgateway" in str(canary), canary
        assert not isinstance(stable, NoData), stable
    with pytest.raises(NotCountable):
        PrometheusProvider(server.url, retries=1, budget_s=3.0).request_counts(_policy(), _target(model),
                                                                              window_s=WINDOW_S, at=t0)
    _counted_once(server, t0, "pushonly")


@pytest.mark.parametrize("model", ["pushstale", "pushstalefalse", "pushedge"])
def test_a_push_group_not_pushed_within_the_window_beside_a_scraped_canary_is_counted_once(prom: Any,
                                                                                           model: str) -> None:
    """A group a Pushgateway keeps (never deleted) whose last push came before the look's window, beside the canary's
    scraped pod: every sample of it in the window is that push's, flat, so it adds nothing to the window's counts.
    Decision 483 refused such an arm at every look until someone deleted the group, per rollout and in the
    controller's snapshots, and a good canary was rolled back or held at its deadline. Now a group whose push time
    Prometheus read at the window's start is the one it reads at the look (`offset`) is not refused per rollout:
    6,000 requests counted, not 0 and not NotCountable (decision 515). Under either `honor_labels`, and with the last
    push 10 s before the window's start, between two scrapes. The controller's snapshots keep decision 483's rule
    (NotCountable): their push times and counters are read by separate queries at separate moments, and a push
    between them was hidden (decision 515's review)."""
    from canary.errors import NotCountable

    server, t0 = prom
    for check in (None, _LATENCY):
        pol = _policy(check) if check else _policy()
        stable, canary = _measure(server, t0, pol, model)
        total = canary.total if isinstance(canary, Counts) else canary.counts[-1]
        assert total == pytest.approx(6_000, rel=0.02), canary
        assert not isinstance(stable, NoData), stable
        base, now = _snapshots(server, t0, pol, _target(model))
        canary = b.measure_delta(pol, pol.checks[0], _target(model), now, base)[1]
        assert isinstance(canary, NotCountable) and "Pushgateway" in str(canary), canary
    got = PrometheusProvider(server.url, retries=1, budget_s=3.0).request_counts(_policy(), _target(model),
                                                                              window_s=WINDOW_S, at=t0)
    assert got[1] == pytest.approx(6_000, rel=0.02), got


@pytest.mark.parametrize("model", ["pushlate", "pushonce"])
def test_a_push_group_pushed_within_the_window_beside_a_scraped_canary_is_still_not_counted(prom: Any,
                                                                                             model: str) -> None:
    """The same group pushed within the window (its last push 300 s before the look), or pushed for the first time
    within it (one push of 3,000 requests): its values moved in the window, or Prometheus held no push time of it at
    the window's start, so it may be the scraped pod's requests a second time: NotCountable as in decision 483, per
    rollout and in the controller's snapshots, with the controller's `metrics.arm_pushed` line naming the pushed job
    as the snapshot is taken."""
    from structlog.testing import capture_logs

    from canary.errors import NotCountable

    server, t0 = prom
    for check in (None, _LATENCY):
        pol = _policy(check) if check else _policy()
        stable, canary = _measure(server, t0, pol, model)
        assert isinstance(canary, NotCountable) and "model-push" in str(canary), canary
        assert not isinstance(stable, NoData), stable
        with capture_logs() as logs:
            base, now = _snapshots(server, t0, pol, _target(model))
        stable, canary = b.measure_delta(pol, pol.checks[0], _target(model), now, base)
        assert isinstance(canary, NotCountable) and "Pushgateway" in str(canary), canary
        assert not isinstance(stable, NoData), stable
        said = [x for x in logs if x["event"] == "metrics.arm_pushed"]
        assert said and said[0]["instances"] == ["model-push"], logs
    with pytest.raises(NotCountable):
        PrometheusProvider(server.url, retries=1, budget_s=3.0).request_counts(_policy(), _target(model),
                                                                              window_s=WINDOW_S, at=t0)


def test_two_canary_pods_whose_exporter_writes_one_instance_label_are_two_pods(prom: Any) -> None:
    """An exporter writing the same `instance` on every pod (hard-coded), read under `honor_labels: false`: kept as
    `exported_instance` beside each pod's own target `instance`. Decision 434 read any `exported_instance` as a pod
    re-exported by a federating target, each target one reading of it: two healthy canary pods were one host read
    twice, NotCountable at every look, per rollout and in the controller's snapshots, and every good canary rolled
    back at its deadline. A series is re-exported only where it also carries the source's job (`exported_job`: a
    federated or pushed series always does); such a pod is its own target (decision 484)."""
    server, t0 = prom
    _counted_once(server, t0, "hardcoded")
    got = PrometheusProvider(server.url, retries=1, budget_s=3.0).request_counts(_policy(), _target("hardcoded"),
                                                                              window_s=WINDOW_S, at=t0)
    assert got[1] == pytest.approx(6_000, rel=0.02), got
