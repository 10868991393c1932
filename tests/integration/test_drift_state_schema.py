"""The controller's drift state ConfigMap holding a state it must not use (decisions 210 and 211), against kmock:
a newer canary's state (schema 2, a field this one does not know) and a hand edit to a pending trigger due at NaN.
Before, the first was read with its unknown field dropped and written back without it at the next evaluation, and
the second kept a retraining that never fires; now the leader says it (`drift.state_unreadable`, naming the
ConfigMap, the entry and the writer or field), evaluates nothing and never writes the ConfigMap."""

from __future__ import annotations

import json
from typing import Any

import pytest
from structlog.testing import capture_logs

from canary.drift import monitor as M
from canary.metrics.client import PrometheusClient
from tests.integration.test_drift_faults import JOB, _profile, kube  # noqa: F401 - kube: the kmock fixture
from tests.support.passes import Passes

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


@pytest.mark.parametrize("entry,said", [
    ({"schema": 2, "writer": "modelcanary 9.0.0", "model": "m1", "version": "v1", "phase": "drifting",
      "episode": 2, "cooldown": {"until": 5e9}}, "written by modelcanary 9.0.0 in drift state schema 2"),
    ({"model": "m1", "version": "v1", "phase": "drifting", "episode": 1, "trigger": "pending",
      "trigger_attempts": 1, "trigger_due": float("nan")}, "trigger_due must be a finite number")])
def test_the_leader_leaves_a_state_it_must_not_use_and_says_so(kube: Any, entry: dict[str, Any], said: str) -> None:
    import numpy as np

    from canary.drift.store import ConfigMapStateStore
    from canary.drift.watch import DriftWatcher, watch_baselines

    kube.save_profile(_profile("m1", {"f": np.random.default_rng(1).normal(0, 1, 2_000)}), "m1-v1-baseline")
    kube.core.create_namespaced_config_map("canary-system", {
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "canary-drift-state",
                                                              "namespace": "canary-system"},
        "data": {"state.json": json.dumps({"ml/m1/v1": entry})}})
    before = kube.core.read_namespaced_config_map("canary-drift-state", "canary-system")
    watcher = DriftWatcher([], client=PrometheusClient("http://127.0.0.1:9"), window_s=3600,
                           config=M.MonitorConfig(quiet_s=0), store=ConfigMapStateStore(kube.core,
                                                                                        namespace="canary-system"),
                           core_api=kube.core, batch_api=kube.batch, job_template=JOB, clock=lambda: 10_000.0, load=False)
    with capture_logs() as logs:
        watch_baselines(watcher, kube.core, namespace="ml", stop=Passes(2), interval_s=0.01, is_leader=lambda: True)
    unreadable = [e for e in logs if e["event"] == "drift.state_unreadable"]
    assert unreadable and all("ConfigMap canary-system/canary-drift-state: ml/m1/v1: " in e["error"]
                              and said in e["error"] for e in unreadable), logs
    assert not [e for e in logs if e["event"].startswith("drift.") and e["event"] != "drift.state_unreadable"], logs
    after = kube.core.read_namespaced_config_map("canary-drift-state", "canary-system")
    assert after.metadata.resource_version == before.metadata.resource_version
    assert after.data == before.data
    assert not kube.batch.list_namespaced_job("ml").items


def test_the_controller_starts_its_drift_monitor_beside_a_state_it_cannot_use(kube: Any) -> None:
    """`canary controller run --drift` read the state ConfigMap in the watcher's constructor: a state it could not
    use (a newer canary's, during a rolling upgrade of canary) stopped the whole controller at start (ConfigError,
    exit 2), rollouts included, on every restart. It is read by the drift loop when it leads, which says it."""
    import threading

    import canary.cli  # noqa: F401 - cli_controller registers itself on it
    from canary.cli_controller import _start_drift

    kube.core.create_namespaced_config_map("canary-system", {
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "canary-drift-state",
                                                              "namespace": "canary-system"},
        "data": {"state.json": json.dumps({"ml/m1/v1": {"schema": 2, "model": "m1", "version": "v1"}})}})
    stop = threading.Event()
    stop.set()  # one pass at most, then the thread ends
    _start_drift(kube.api_client(), PrometheusClient("http://127.0.0.1:9"), namespace="ml",
                 state_namespace="canary-system", stop=stop, is_leader=lambda: False, notifier=None, interval=0.01,
                 window=3600.0, quiet=0.0, retrain_job=None)


def test_the_leader_keeps_what_a_newer_canary_stored_in_this_schema_when_it_writes_the_configmap(kube: Any) -> None:
    """A rolling upgrade of the controller: the older replica leads a while and writes the state ConfigMap. The newer
    release's fields in this schema (a state's, the outage record's, a record of their own) were dropped by that
    write; they are written back as read now (decision 448)."""
    import numpy as np

    from canary.drift.store import ConfigMapStateStore
    from canary.drift.watch import DriftWatcher, watch_baselines

    kube.save_profile(_profile("m2", {"f": np.random.default_rng(1).normal(0, 1, 2_000)}), "m2-v1-baseline")
    newer = {"ml/m2/v1": {"schema": 1, "writer": "modelcanary 9.0.0", "model": "m2", "version": "v1",
                          "phase": "drifting", "episode": 1, "trigger": "done", "held_reason": "night"},
             "prometheus": {"flaps": 2}, "fleet": {"leader": "r2"}}
    kube.core.create_namespaced_config_map("canary-system", {
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "canary-drift-state",
                                                              "namespace": "canary-system"},
        "data": {"state.json": json.dumps(newer)}})
    before = kube.core.read_namespaced_config_map("canary-drift-state", "canary-system")
    watcher = DriftWatcher([], client=PrometheusClient("http://127.0.0.1:9"), window_s=3600,
                           config=M.MonitorConfig(quiet_s=0), store=ConfigMapStateStore(kube.core,
                                                                                        namespace="canary-system"),
                           core_api=kube.core, batch_api=kube.batch, job_template=JOB, clock=lambda: 10_000.0, load=False)
    watch_baselines(watcher, kube.core, namespace="ml", stop=Passes(1), interval_s=0.01, is_leader=lambda: True)
    after = kube.core.read_namespaced_config_map("canary-drift-state", "canary-system")
    assert after.metadata.resource_version != before.metadata.resource_version  # written (the outage stored)
    stored = json.loads(after.data["state.json"])
    assert stored["prometheus"]["flaps"] == 2 and stored["prometheus"]["down_since"] == 10_000.0, stored
    assert stored["fleet"] == {"leader": "r2"} and stored["ml/m2/v1"]["held_reason"] == "night", stored
