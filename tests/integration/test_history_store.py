"""The history ConfigMap against the strict API emulator: parts appended with one guarded merge
PATCH, read back merged mid-rollout, and a foreign write between two appends never has a part
added over it."""

from __future__ import annotations

from typing import Any

import kubernetes.client as kc
import pytest

from canary import history as hist
from canary.history_store import KEY, ConfigMapStore, Recorder, load_history
from canary.sandbox.kubeapi import KubeAPIServer
from tests.unit.test_history import drive
from tests.unit.test_runner import POLICY

pytestmark = pytest.mark.integration


def calls(api: KubeAPIServer) -> dict[Any, int]:
    return {k: v for k, v in api.handler.requests.items() if k[1] == "configmaps"}


def test_parts_are_one_guarded_patch_each_and_read_back_merged() -> None:
    with KubeAPIServer() as api:
        core = kc.CoreV1Api(api.api_client())
        rec = Recorder(ConfigMapStore(core), namespace="ml", virtual_service="rec", policy=POLICY,
                       source="controller", flush_every=2)
        drive(rec, range(1, 3))  # the first flush: read (404) and create
        before = dict(calls(api))
        drive(rec, range(3, 9))  # three parts
        delta = {k: v - before.get(k, 0) for k, v in calls(api).items() if v != before.get(k, 0)}
        assert delta == {("PATCH", "configmaps"): 3}  # nothing read
        data = api.get("", "configmaps", "ml", "rec-canary-history")["data"]
        assert len(data) == 4 and KEY in data
        assert [lk["n"] for lk in load_history(core, "ml", "rec")["looks"]] == list(range(1, 9))  # mid-rollout

        # a foreign write between two appends (another writer's rewrite): the next PATCH gets 409 and
        # the flush reads and rewrites instead of adding a part over it
        other = hist.new_doc(rollout={"model": "rec", "canary_version": "v1", "stable_version": "v0",
                                      "started_at": 500.0}, policy=hist.policy_summary(POLICY))
        api.edit("", "configmaps", "ml", "rec-canary-history", lambda o: o.update(data={KEY: hist.dumps(other)}))
        drive(rec, range(9, 11))
        data = api.get("", "configmaps", "ml", "rec-canary-history")["data"]
        assert set(data) == {KEY}  # rewritten, no part over the foreign write
        doc = load_history(core, "ml", "rec")
        assert doc["rollout"]["canary_version"] == "v2" and [lk["n"] for lk in doc["looks"]] == [9, 10]
