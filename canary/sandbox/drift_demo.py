"""`canary demo --scenario data-drift`: the stable model's inputs drift while no rollout runs.

On the real sandbox (Triton exporting its feature distributions over the training profile's
buckets, Prometheus scraping them, the Kubernetes API emulator), the drift monitor evaluates the
stable version against its training profile every couple of seconds: first on the data it was
trained on (an A/A stretch, which must raise nothing), then after five of its eight inputs move
by one standard deviation, until the alert fires and the retraining Job appears. Shared by the
demo and the end-to-end test (tests/e2e/test_scenarios.py), so what a person watches is
what is tested.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

JOB_TEMPLATE = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"generateName": "retrain-"},
                "spec": {"template": {"spec": {"restartPolicy": "Never",
                                               "containers": [{"name": "train", "image": "trainer:1"}]}}}}


@dataclass
class Evaluation:
    """One evaluation of the stable version against its training profile."""

    t: float  # seconds since the monitor started
    shifted: bool  # after the inputs moved
    share: float | None  # share of drifted features (None: not measured)
    drifted: list[str]
    phase: str  # the monitor's: ok | drifting
    episode: int
    actions: list[str]  # alerts and triggers of this evaluation
    error: str = ""
    drifted_in_row: int = 0  # the monitor's drifted evaluations in a row, windows apart (`MonitorState`)
    enter_after: int = 0  # how many of them open an episode (`MonitorConfig`)

    @property
    def monitor(self) -> str:
        """The monitor's phase, and while it is still `ok` over drifted windows how far the episode is: the demo
        showed `drifted=f0,...,score monitor=ok` for 17 s with no word of the hysteresis (decision 923)."""
        if self.phase == "ok" and self.drifted_in_row and self.enter_after:
            if self.drifted_in_row >= self.enter_after:  # the streak is long enough but the monitor held the
                # episode (its quiet period after traffic started, or no verdict this time): "3 of the 2" was said
                return (f"ok (drift in {self.drifted_in_row} windows apart, the {self.enter_after} that start an "
                        f"episode reached; not opened yet)")
            return (f"ok (drift in {self.drifted_in_row} of the {self.enter_after} windows apart that start an "
                    f"episode)")
        return self.phase


@dataclass
class DriftResult:
    clean_before_shift: int  # evaluations with data and no drift, before the shift
    false_alerts: int  # alerts during the A/A stretch (must be 0)
    alert_after_shift_s: float | None  # from the shift to the alert
    jobs: list[str]
    job_evidence: dict[str, Any]
    events: list[str]  # Kubernetes Event reasons in the namespace
    evaluations: list[Evaluation] = field(default_factory=list)

    @property
    def as_expected(self) -> bool:
        return self.false_alerts == 0 and self.alert_after_shift_s is not None and len(self.jobs) == 1

    def brief(self) -> dict[str, Any]:
        d = asdict(self)
        d["as_expected"] = self.as_expected
        return d


def run_drift_scenario(*, rate: float = 100.0, clean_needed: int = 4, clean_timeout_s: float = 90.0,
                       drift_timeout_s: float = 120.0, after_alert: int = 1, interval_s: float = 2.0,
                       window_s: float = 15.0, on_evaluation: Callable[[Evaluation], None] | None = None,
                       sandbox: Any = None, **sandbox_kw: Any) -> DriftResult:
    """A/A until `clean_needed` evaluations saw data and no drift, shift the inputs, evaluate until
    the alert, then `after_alert` more (the episode goes on: no second Job). Hysteresis 2/2, a
    quiet period of 1 s (the sandbox's stable version has just started). `sandbox`: a started one of
    the same schema to run in instead (`Sandbox.rearm` readies it, as `demo.run_scenario` does; its
    fault is injected here only, and its load stopped at the end): tests share one."""
    from canary.sandbox.env import Sandbox

    run = dict(clean_needed=clean_needed, clean_timeout_s=clean_timeout_s, drift_timeout_s=drift_timeout_s,
               after_alert=after_alert, interval_s=interval_s, window_s=window_s, on_evaluation=on_evaluation)
    if sandbox is None:
        with Sandbox("data-drift", rate=rate, fault_at="manual", watch=True, **sandbox_kw) as sb:
            return _drift(sb, **run)
    if sandbox_kw:
        raise ValueError(f"a started sandbox keeps its own configuration: {sorted(sandbox_kw)}")
    fault_at, sandbox.fault_at = sandbox.fault_at, "manual"  # no push of weights injects the shift
    try:
        return _drift(sandbox.rearm("data-drift", rate=rate), **run)
    finally:
        sandbox.fault_at = fault_at
        if sandbox.loadgen is not None:
            sandbox.loadgen.stop()


def _drift(sb: Any, *, clean_needed: int, clean_timeout_s: float, drift_timeout_s: float, after_alert: int,
           interval_s: float, window_s: float, on_evaluation: Callable[[Evaluation], None] | None) -> DriftResult:
    """`run_drift_scenario`'s run in the started data-drift sandbox `sb`."""
    import kubernetes

    from canary.drift import monitor as M
    from canary.drift.watch import DriftWatcher
    from canary.metrics.client import PrometheusClient

    api = sb.kube.api_client()
    core, batch = kubernetes.client.CoreV1Api(api), kubernetes.client.BatchV1Api(api)
    profile = json.loads((sb.workdir / f"{sb.model}-{sb.stable_version}.profile.json").read_text())
    watcher = DriftWatcher([profile], client=PrometheusClient(sb.prometheus_url), window_s=window_s,
                           config=M.MonitorConfig(enter_after=2, exit_after=2, quiet_s=1.0),
                           namespace=sb.namespace, core_api=core, batch_api=batch, job_template=JOB_TEMPLATE)
    key = f"{sb.model}/{sb.stable_version}"
    t0, shifted_at, alert_at = time.monotonic(), None, None
    evaluations: list[Evaluation] = []

    def evaluate() -> Evaluation:
        done = watcher.once()
        st, res = watcher.states[key], watcher.last.get(key)
        error = next((d["error"] for d in done if "error" in d), "")
        e = Evaluation(t=round(time.monotonic() - t0, 1), shifted=shifted_at is not None,
                       share=None if error or res is None else round(res.share, 3),
                       drifted=[] if error or res is None else list(res.drifted_features()),
                       phase=st.phase, episode=st.episode, error=error,
                       drifted_in_row=st.drifted_in_row,
                       enter_after=int(profile.get("_enter_after") or watcher.config.enter_after),
                       actions=[d.get("alert") or f"retraining Job (episode {d['trigger']})"
                                for d in done if "alert" in d or "trigger" in d])
        evaluations.append(e)
        if on_evaluation is not None:
            on_evaluation(e)
        return e

    clean = 0
    deadline = time.monotonic() + clean_timeout_s
    while clean < clean_needed and time.monotonic() < deadline:
        e = evaluate()
        clean = clean + 1 if e.share is not None and not e.drifted and e.phase == M.OK else clean
        time.sleep(interval_s)
    false_alerts = sum(len(e.actions) for e in evaluations)
    sb.inject_fault()  # 5 of 8 inputs move by one standard deviation
    shifted_at = time.monotonic()
    deadline = time.monotonic() + drift_timeout_s
    while alert_at is None and time.monotonic() < deadline:
        time.sleep(interval_s)
        if evaluate().phase == M.DRIFTING:
            alert_at = time.monotonic()
    for _ in range(after_alert if alert_at is not None else 0):
        time.sleep(interval_s)
        evaluate()
    jobs = batch.list_namespaced_job(sb.namespace).items
    evidence = json.loads(((jobs[0].metadata.annotations or {}).get("modelcanary.dev/drift-evidence")) or "{}") \
        if jobs else {}
    events = [e.reason for e in core.list_namespaced_event(sb.namespace).items]
    api.close()
    return DriftResult(clean_before_shift=clean, false_alerts=false_alerts,
                       alert_after_shift_s=None if alert_at is None else round(alert_at - shifted_at, 1),
                       jobs=[j.metadata.name for j in jobs], job_evidence=evidence, events=events,
                       evaluations=evaluations)
