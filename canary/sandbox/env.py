"""The local stand-in for a cluster: every moving part of a canary rollout, for real.

``with Sandbox("slow") as sb:`` starts, all on 127.0.0.1:

- the strict Kubernetes API emulator holding the shipped ``istio/`` VirtualService
  and DestinationRule (subsets pointed at the two versions), and a kubeconfig for it;
- two Triton servers (PyTriton): ``stable`` runs ``stable_version``, ``canary`` runs
  ``canary_version``, each exporting the model's metrics;
- HAProxy as the data plane, and the watcher that plays istiod (VS weights -> HAProxy);
- Prometheus scraping both model-metrics and both Triton-metrics endpoints every
  second, with target labels ``arm`` and ``version`` (Triton's own ``version="1"``
  becomes ``exported_version``, as with a PodMonitor's ``podTargetLabels``);
- a load generator sending requests through HAProxy.

The scenario's fault reaches the canary when it first receives traffic (or at
``inject_fault()``): "slow", "drift" and "errors" change the canary's knobs, "crash"
kills its process ``crash_after_s`` later, "bad-schema" is built in from the start
(its canary must be refused before any traffic). Everything is stopped in reverse
order by PID on exit, Ctrl-C or a failed start. Start it from a thread that outlives
it (the main thread): the Triton children die with the thread that spawned them.
``rearm(scenario)`` readies a started sandbox for another scenario's rollout, from
the seeded state (the end-to-end tests share one: decision 760).
"""

from __future__ import annotations

import atexit
import copy
import json
import shutil
import signal
import tempfile
import threading
import time
import urllib.request
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

import structlog
import yaml

from canary.interrupts import Interrupt
from canary.policy_yaml import load_documents
from canary.sandbox.haproxy import HAProxy
from canary.sandbox.loadgen import LoadGenerator
from canary.sandbox.model import MODEL_NAME, SCENARIOS, Behaviour
from canary.sandbox.promserver import PromServer
from canary.sandbox.tritonserver import TritonServer

log = structlog.get_logger(__name__)

ISTIO_DIR = Path(__file__).resolve().parent / "data" / "istio"  # the repository's istio/, shipped in the package
DATA_DRIFT_FEATURES, DATA_DRIFT_SHIFT = 5, 1.0  # "data-drift": 5 of 8 inputs move by one standard deviation


def istio_objects(istio_dir: Path, *, stable_version: str, canary_version: str) -> list[dict[str, Any]]:
    """The shipped VirtualService/DestinationRule, DR subsets pointed at the two versions."""
    out = []
    for path in sorted(istio_dir.glob("*.yaml")):
        for doc in load_documents(path):  # strictly: a key written twice is refused (decision 834)
            if isinstance(doc, dict) and doc.get("kind") in ("VirtualService", "DestinationRule"):
                doc = copy.deepcopy(doc)
                if doc["kind"] == "DestinationRule":
                    versions = {"stable": stable_version, "canary": canary_version}
                    for subset in doc["spec"].get("subsets", []):
                        if subset.get("name") in versions:
                            subset.setdefault("labels", {})["version"] = versions[subset["name"]]
                out.append(doc)
    if not out:
        raise FileNotFoundError(f"no VirtualService/DestinationRule manifests in {istio_dir}")
    return out


def workload_objects(istio: list[dict[str, Any]], namespace: str, versions: tuple[str, ...]) -> list[dict[str, Any]]:
    """The Service the DestinationRule's host names (selecting its subsets' common labels) and one Ready pod
    per version with the canary subset's labels and that version."""
    from canary.sandbox.kubeapi import ready_pod

    dr = next(o for o in istio if o.get("kind") == "DestinationRule")
    subsets = dr["spec"].get("subsets", [])
    common = {k: v for k, v in (subsets[0].get("labels") or {}).items() if k != "version"} if subsets else {}
    name = str(dr["spec"]["host"]).split(".")[0]
    # subsets told apart by `version` alone: the Service still selects by a label of its own (`app`), as a
    # Deployment's does; an empty selector is a Service with no selector, whose pods are not checked
    common = common or {"app": name}
    out: list[dict[str, Any]] = [{"apiVersion": "v1", "kind": "Service",
                                  "metadata": {"name": name, "namespace": namespace},
                                  "spec": {"selector": common, "ports": [{"name": "http", "port": 8000}]}}]
    for version in dict.fromkeys(versions):
        out.append(ready_pod(f"{name}-{version}-0".lower().replace(".", "-"), namespace,
                             {**common, "version": version}))
    return out


def write_kubeconfig(path: Path, server: str, namespace: str) -> Path:
    cfg = {
        "apiVersion": "v1", "kind": "Config", "current-context": "sandbox",
        "clusters": [{"name": "sandbox", "cluster": {"server": server}}],
        "users": [{"name": "sandbox", "user": {"token": "sandbox"}}],
        "contexts": [{"name": "sandbox", "context": {"cluster": "sandbox", "user": "sandbox", "namespace": namespace}}],
    }
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return path


class Sandbox:
    """Context manager; see the module docstring. Attributes are valid after start()."""

    SCENARIOS = tuple(SCENARIOS)

    def __init__(self, scenario: str = "good", *, model: str = MODEL_NAME, namespace: str = "ml",
                 stable_version: str = "v1.0.0", canary_version: str = "v2.1.0", rate: float = 40.0,
                 batch: int = 4, missing_share: float = 0.05, load: bool = True, fault_at: str = "traffic",
                 crash_after_s: float = 3.0, device: str = "cpu", prometheus: bool = True,
                 workdir: Path | None = None, istio_dir: Path = ISTIO_DIR, watch: bool = True,
                 native_histograms: bool = False) -> None:
        if scenario not in SCENARIOS:
            raise ValueError(f"unknown scenario {scenario!r}; choose one of {', '.join(SCENARIOS)}")
        if fault_at not in ("traffic", "start", "manual"):
            raise ValueError("fault_at must be 'traffic', 'start' or 'manual'")
        if model != MODEL_NAME:
            raise ValueError(f"the sandbox serves only {MODEL_NAME!r}")
        self.scenario, self.model, self.namespace = scenario, model, namespace
        self.stable_version, self.canary_version = stable_version, canary_version
        # batch: rows (candidate items) per request; 4 gives the prediction-shift test
        # 4x the samples per request, so a good canary is bounded within a short step
        self.rate, self.batch, self.missing_share, self.load = rate, batch, missing_share, load
        self.fault_at, self.crash_after_s, self.device = fault_at, crash_after_s, device
        self.use_prometheus, self.istio_dir, self.watch = prometheus, istio_dir, watch
        # the models' latency as a Prometheus native histogram (Prometheus with the feature on)
        self.native_histograms = native_histograms
        self._own_workdir = workdir is None
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="canary-sandbox-"))
        self.kube: Any = None
        self.stable: TritonServer | None = None
        self.canary: TritonServer | None = None
        self.haproxy: HAProxy | None = None
        self.watcher: Any = None
        self.prom: Any = None
        self.loadgen: LoadGenerator | None = None
        self.kubeconfig: Path = self.workdir / "kubeconfig"
        self.fault_injected_at: float | None = None
        self.timings: dict[str, float] = {}
        self._stops: list[tuple[str, Callable[[], None]]] = []
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None
        self._interrupt: Interrupt | None = None  # SIGTERM/SIGINT while started (`_trap_sigterm`)

    # -- urls ------------------------------------------------------------------------------
    @property
    def kube_url(self) -> str:
        return str(self.kube.url)

    @property
    def prometheus_url(self) -> str:
        return str(self.prom.url) if self.prom else ""

    @property
    def triton_stable_url(self) -> str:
        assert self.stable is not None
        return self.stable.http_url

    @property
    def triton_canary_url(self) -> str:
        assert self.canary is not None
        return self.canary.http_url

    @property
    def haproxy_url(self) -> str:
        assert self.haproxy is not None
        return self.haproxy.url

    def promote_args(self, policy: str | Path) -> list[str]:
        """Arguments for `canary promote` against this sandbox."""
        return [
            "promote", self.model, "--canary-version", self.canary_version, "--stable-version", self.stable_version,
            "--namespace", self.namespace, "--policy", str(policy), "--kubeconfig", str(self.kubeconfig),
            "--prometheus-url", self.prometheus_url, "--triton-canary", self.triton_canary_url,
            "--triton-stable", self.triton_stable_url,
        ]

    # -- lifecycle -------------------------------------------------------------------------
    def __enter__(self) -> "Sandbox":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> "Sandbox":
        atexit.register(self.stop)
        self._trap_sigterm()
        t0 = time.monotonic()
        try:
            # a signal whose raise native code lost (the watcher's first read builds the kubernetes client's
            # validators: decision 225) is raised between the parts: the sandbox started on, then ran the whole
            # demo (decision 232)
            for part in (self._start_kube, self._start_tritons, self._start_data_plane,
                         self._start_prometheus if self.use_prometheus else None):
                self._interrupted()
                if part is not None:
                    part()
            self._interrupted()
            if self.load:
                self.loadgen = LoadGenerator(self.haproxy_url, rate=self.rate, batch=self.batch,
                                             missing_share=self.missing_share).start()
                self._stops.append(("loadgen", self.loadgen.stop))
            if self.fault_at == "start":
                self.inject_fault()
        except BaseException:
            self.stop()
            raise
        self.timings["total_start_s"] = round(time.monotonic() - t0, 2)
        log.info("sandbox.started", scenario=self.scenario, **self.urls(), **self.timings)
        return self

    def _start_kube(self) -> None:
        from canary.sandbox.kubeapi import PODS, SERVICES, KubeAPIServer, Resource

        objs = istio_objects(self.istio_dir, stable_version=self.stable_version, canary_version=self.canary_version)
        for obj in objs:
            obj.setdefault("metadata", {})["namespace"] = self.namespace
        self.kube = KubeAPIServer(seed=objs)
        self.kube.handler.register(Resource("batch", "jobs", "Job", ("v1",)))  # retraining Jobs (drift)
        # the Service and one Ready pod per version, as a cluster shows them: what promote checks before traffic
        # moves (`routing.pods`); the pods' processes are the two Triton servers behind HAProxy
        for res in (PODS, SERVICES):
            self.kube.handler.register(res)
        for obj in workload_objects(objs, self.namespace, (self.stable_version, self.canary_version)):
            self.kube.handler.put_object(obj)
        with self.kube.handler.lock:  # what `rearm` puts back: the objects as seeded, nothing else
            self._seeded = copy.deepcopy(self.kube.handler.objects)
        self.kube.start()
        self._stops.append(("kube", self.kube.stop))
        write_kubeconfig(self.kubeconfig, self.kube.url, self.namespace)

    def _start_tritons(self) -> None:
        canary_b = Behaviour(device=self.device, schema=SCENARIOS[self.scenario].schema)
        profiles = self.write_profiles()
        self.stable = TritonServer("stable", self.stable_version, Behaviour(device=self.device),
                                   workdir=self.workdir / "triton-stable", drift_profile=profiles.get("stable"),
                                   native_histograms=self.native_histograms)
        self.canary = TritonServer("canary", self.canary_version, canary_b, workdir=self.workdir / "triton-canary",
                                   drift_profile=profiles.get("canary"), native_histograms=self.native_histograms)
        for server in (self.stable, self.canary):  # both spawn now, from this thread; then wait together
            server.start()
        self._stops.append(("tritons", self._stop_tritons))
        for server in (self.stable, self.canary):
            self.timings[f"triton_{server.arm}_ready_s"] = round(server.wait_ready(), 2)

    def rearm(self, scenario: str, *, rate: float) -> "Sandbox":
        """Ready this started sandbox for another scenario's rollout from a clean state (tests share one).

        Put back: the API's objects as seeded (the VirtualService's weights and rollout record, the
        DestinationRule's subsets; whatever a rollout created, its history, leases and events, deleted),
        HAProxy's weights from them (waited for), the canary's knobs, no fault injected, the load
        generator's inputs and counts, at `rate`. Prometheus keeps its history: a look judges only
        the data since its step began (`reconcile.look_window`), and the canary, at weight 0 between
        rollouts, adds none. Not for a scenario of another schema (Triton fixes the model's at start):
        it needs its own sandbox; nor after a server of it exited (`broken`, named in the RuntimeError),
        as after "crash", whose canary is killed: it may run in a shared sandbox, the last there.
        """
        assert self.canary is not None and self.kube is not None, "rearm a started sandbox"
        want = SCENARIOS[scenario].schema
        if want != self.canary.behaviour.schema:
            raise ValueError(f"scenario {scenario!r} cannot run in a started {self.scenario!r} sandbox")
        broken = self.broken()
        if broken:  # what the scenario before left: its own sandbox to run in, not a misleading verdict here
            raise RuntimeError(f"scenario {scenario!r} cannot run in this sandbox: {broken}")
        if self.loadgen is not None:
            self.loadgen.stop()
        # the objects first: until the watcher has read them back, a push of the last rollout's weights can
        # still come, and its hook (`_before_push`) inject the fault again
        self._restore_seeded()
        with self._lock:
            if self._timer:
                self._timer.cancel()
                self._timer = None
            self.scenario, self.fault_injected_at = scenario, None
        base = Behaviour(device=self.device, schema=want)
        if self.canary.behaviour != base:
            self.canary.set_behaviour(base)
        if self.loadgen is not None:
            self.loadgen.input_shift[:] = 0.0
            self.loadgen.rate = self.rate = rate
            self.loadgen.start()
        return self

    def broken(self) -> str:
        """Why this started sandbox cannot run another scenario ("" when it can): a server of it that exited,
        named with the scenario it last ran (`rearm` refuses so; the end-to-end tests start a fresh one)."""
        parts = [("the stable Triton", self.stable and self.stable.proc),
                 ("the canary Triton", self.canary and self.canary.proc),
                 ("HAProxy", self.haproxy and self.haproxy.proc), ("Prometheus", self.prom and self.prom._proc)]
        dead = [f"{name} (pid {proc.pid}) exited with {proc.returncode}" for name, proc in parts
                if proc is not None and proc.poll() is not None]
        return f"{', '.join(dead)} during or after scenario {self.scenario!r}" if dead else ""

    def _restore_seeded(self) -> None:
        handler = self.kube.handler
        with handler.lock:
            for key in [k for k in handler.objects if k not in self._seeded]:
                handler._delete(key, handler.objects[key])
            for key, obj in self._seeded.items():
                if handler.objects.get(key) != obj:
                    handler.put_object(obj)
            versions = {key[1]: int(handler.objects[key]["metadata"]["resourceVersion"])
                        for key in handler.objects if key[1] in ("virtualservices", "destinationrules")
                        and key[3] == self.model}
        if self.watcher is not None:
            weights = {"stable": 100, "canary": 0}
            # hang guards, not speed bounds: both return as soon as it holds (a loaded host: decision 804)
            if not (self.watcher.wait_seen(versions, timeout=60.0) and self.watcher.wait_for(weights, timeout=60.0)):
                raise RuntimeError(f"the watcher did not push the seeded weights {weights} after scenario "
                                   f"{self.scenario!r}: HAProxy's are {self.haproxy and self.haproxy.weights()}")

    def _stop_tritons(self) -> None:
        servers = [s for s in (self.stable, self.canary) if s is not None]
        for s in servers:  # both stop in parallel (each waits ~2 s for open connections)
            s.terminate()
        for s in servers:
            s.stop()

    def write_profiles(self) -> dict[str, Path]:
        """Each version's training profile (`model.training_profile`) in the workdir, for the
        servers' drift exporters and for `canary drift watch`; {} when pyarrow is not installed."""
        try:
            from canary.sandbox.model import training_profile

            out = {}
            profile = training_profile(self.stable_version)  # the same training data: captured once
            for arm, version in (("stable", self.stable_version), ("canary", self.canary_version)):
                path = self.workdir / f"{self.model}-{version}.profile.json"
                path.write_text(json.dumps({**profile, "version": version}), encoding="utf-8")
                out[arm] = path
            return out
        except ImportError:
            log.info("sandbox.no_drift_profiles", why="pyarrow is not installed (the drift extra)")
            return {}

    def _start_data_plane(self) -> None:
        from canary.sandbox.watcher import Watcher

        assert self.stable and self.canary
        self.haproxy = HAProxy({"stable": f"127.0.0.1:{self.stable.http_port}",
                                "canary": f"127.0.0.1:{self.canary.http_port}"},
                               workdir=self.workdir / "haproxy").start()
        self._stops.append(("haproxy", self.haproxy.stop))
        self._api_client = self.kube.api_client()
        self.watcher = Watcher(self._api_client, self.haproxy, namespace=self.namespace, name=self.model,
                               servers={self.stable_version: "stable", self.canary_version: "canary"},
                               use_watch=self.watch, before_push=self._before_push).start()
        self._stops.append(("watcher", self.watcher.stop))

    def _start_prometheus(self) -> None:
        assert self.stable and self.canary
        labelled = [
            ({"arm": s.arm, "version": s.version}, [f"127.0.0.1:{s.model_metrics_port}", f"127.0.0.1:{s.metrics_port}"])
            for s in (self.stable, self.canary)
        ]
        native = ["--enable-feature=native-histograms"] if self.native_histograms else []
        self.prom = LabelledPromServer(labelled, data_dir=self.workdir / "prometheus-data", extra_args=native).start()
        self._stops.append(("prometheus", self.prom.stop))
        t = time.monotonic()
        self.prom.wait_targets_up(timeout_s=30.0)
        self.timings["prometheus_first_scrape_s"] = round(time.monotonic() - t, 2)

    def stop(self) -> None:
        """Stop everything started, newest first; never raises (logs what failed)."""
        with self._lock:
            if self._timer:
                self._timer.cancel()
            while self._stops:
                name, stop = self._stops.pop()
                try:
                    stop()
                except Exception as exc:  # keep stopping the rest
                    log.error("sandbox.stop_failed", part=name, error=str(exc))
            if getattr(self, "_api_client", None) is not None:
                self._api_client.close()
                self._api_client = None
            if self._own_workdir:
                shutil.rmtree(self.workdir, ignore_errors=True)
            if self._interrupt is not None:
                self._interrupt.restore()
                self._interrupt = None
        atexit.unregister(self.stop)

    def _trap_sigterm(self) -> None:
        """SIGTERM becomes KeyboardInterrupt (so `with` cleans up), if nobody else handles it; it and Ctrl-C (its
        default handler's) are recorded, so that `start` raises one whose raise native code lost (decision 232).
        Every one raises (`repeat`); `stop` puts the handlers back. Another thread's start installs nothing
        (`Interrupt.install`: handlers are the main thread's)."""
        signals = tuple(sig for sig, default in ((signal.SIGTERM, signal.SIG_DFL),
                                                 (signal.SIGINT, signal.default_int_handler))
                        if signal.getsignal(sig) is default)
        if signals:
            self._interrupt = Interrupt.keyboard(signals).install()

    def _interrupted(self) -> None:
        """KeyboardInterrupt when SIGTERM or Ctrl-C came since `start` began (its handler's raise lost)."""
        if self._interrupt is not None:
            self._interrupt.check()

    # -- faults ----------------------------------------------------------------------------
    def _before_push(self, weights: dict[str, int]) -> None:
        if self.fault_at == "traffic" and weights.get("canary", 0) > 0 and self.fault_injected_at is None:
            self.inject_fault()

    def inject_fault(self) -> None:
        """Make the canary misbehave as the scenario says (idempotent)."""
        if self.fault_injected_at is not None or self.canary is None:
            return
        self.fault_injected_at = time.monotonic()
        knobs = SCENARIOS[self.scenario]
        if self.scenario == "good":
            return  # nothing to inject: no line saying otherwise
        log.warning("sandbox.fault_injected", scenario=self.scenario)
        if self.scenario == "crash":
            self._timer = threading.Timer(self.crash_after_s, self.canary.kill)
            self._timer.daemon = True
            self._timer.start()
        elif self.scenario == "data-drift" and self.loadgen is not None:  # the inputs move, on every arm
            self.loadgen.input_shift[:DATA_DRIFT_FEATURES] = DATA_DRIFT_SHIFT
        elif self.scenario in ("slow", "drift", "errors"):
            self.canary.set_behaviour(replace(
                self.canary.behaviour, extra_latency_ms=knobs.extra_latency_ms,
                prediction_shift=knobs.prediction_shift, error_share=knobs.error_share))

    # -- reporting -------------------------------------------------------------------------
    def urls(self) -> dict[str, str]:
        return {"kubeconfig": str(self.kubeconfig), "kube_url": self.kube_url if self.kube else "",
                "prometheus_url": self.prometheus_url,
                "triton_stable_url": self.stable.http_url if self.stable else "",
                "triton_canary_url": self.canary.http_url if self.canary else "",
                "haproxy_url": self.haproxy.url if self.haproxy else ""}

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {"scenario": self.scenario, "timings": dict(self.timings)}
        for s in (self.stable, self.canary):
            if s is not None:
                out[f"triton_{s.arm}"] = {"pid": s.pid, "alive": s.alive(), "rss_mb": round(s.rss_mb(), 1)}
        if self.haproxy and self.haproxy.proc and self.haproxy.proc.poll() is None:
            out["haproxy_weights"] = self.haproxy.weights()
        if self.loadgen:
            out["load"] = self.loadgen.snapshot()
        return out


class LabelledPromServer(PromServer):
    """PromServer with per-target labels (the sandbox's stand-in for Kubernetes SD relabelling)."""

    def __init__(self, labelled: list[tuple[dict[str, str], list[str]]], **kwargs: Any) -> None:
        super().__init__(targets=[t for _, ts in labelled for t in ts], **kwargs)
        self.labelled = labelled

    def config(self) -> dict[str, object]:
        cfg = super().config()
        cfg["scrape_configs"] = [{
            "job_name": "sandbox", "scrape_interval": self.scrape_interval, "scrape_timeout": self.scrape_interval,
            "static_configs": [{"targets": t, "labels": labels} for labels, t in self.labelled],
        }]
        return cfg

    def wait_targets_up(self, timeout_s: float = 30.0) -> None:
        """Block until every target has been scraped successfully once (~6 s after start)."""
        want = len(self.targets)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(self.url + "/api/v1/targets?state=active", timeout=1) as r:
                    active = json.load(r)["data"]["activeTargets"]
                if sum(1 for t in active if t.get("health") == "up") >= want:
                    return
            except (OSError, ValueError, KeyError):
                pass
            time.sleep(0.2)
        raise TimeoutError(f"prometheus targets not all up after {timeout_s}s")
