"""`status.writer` (decision 172) goes with `status.leader`: every status write that names the controller pod
that wrote it names its release too (decision 182). Against the strict API emulator and a real Prometheus."""

from __future__ import annotations

from typing import Any

import pytest

from canary import crd
from canary import rollout as rl
from tests import fleet
from tests.integration.test_controller import _progressing, prometheus, world  # noqa: F401 - fixtures

pytestmark = pytest.mark.integration


def test_a_status_a_newer_release_wrote_names_this_release_once_this_controller_ends_it(world: Any) -> None:
    """A CanaryRollout whose status a newer replica wrote last (mid rolling upgrade: `leader` its pod, `writer` its
    release), then ended unrun by this controller (`spec.action: rollback` before any claim): the end's status
    names this pod as `leader` and, before, still named the newer release as `writer` (the status is merge-patched
    and only `_status` wrote the field): a status that said which release wrote it, wrongly, at the very moment
    two releases share the work. Each such write (`_end_unrun`, `_ended_status`, the claim's wait) names both."""
    api, op, custom = world
    custom.create_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL,
                                           fleet.rollout_object(0, "v2", action="rollback", actionReason="not now"))
    custom.patch_namespaced_custom_object_status(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, "r0", {
        "status": {"leader": "canary-newer-0", "writer": "modelcanary 9.9.9"}})
    op.tick()
    st = custom.get_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, "r0")["status"]
    assert st["phase"] == rl.ABORTED and st["leader"] == op.identity, st
    assert st["writer"] == rl.WRITER, st
    # an operator's end before the start: its class says so (decision 609's addendum; the words said `other`)
    assert st.get("endCause") == "operator", st


def test_a_cluster_whose_crd_predates_the_writer_field_gets_no_status_write_a_tick_for_it(world: Any) -> None:
    """The controller upgraded before the CRD (a chart that installs CRDs once, a `kubectl apply` of the controller
    alone): the API server prunes `status.writer`, a field the installed schema does not declare, from every status
    write. `_status` compared it with what the status held (none) and wrote the status again at every tick of a
    paused rollout, for nothing: a PATCH a second per CanaryRollout until the CRD is upgraded. `writer` names the
    release of a write made for something else; it is never the only reason for one."""
    api, op, custom = world
    real = custom.patch_namespaced_custom_object_status

    def pruned(group: str, version: str, namespace: str, plural: str, name: str, body: Any, **kw: Any) -> Any:
        body = {**body, "status": {k: v for k, v in (body.get("status") or {}).items() if k != "writer"}}
        return real(group, version, namespace, plural, name, body, **kw)

    op.custom.patch_namespaced_custom_object_status = pruned
    custom.create_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, fleet.rollout_object(0, "v2"))
    _progressing(op, custom, api)
    custom.patch_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, "r0",
                                          {"spec": {"action": "pause", "actionReason": "hold"}})
    for _ in range(5):
        op.tick()
        if custom.get_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, "r0")["status"]["phase"] \
                == rl.PAUSED:
            break
    st = custom.get_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, "r0")["status"]
    assert st["phase"] == rl.PAUSED and "writer" not in st, st
    op.tick()  # the pause's own writes settled
    before = api.handler.requests[("PATCH", crd.PLURAL)]
    for _ in range(5):
        op.tick()
    assert api.handler.requests[("PATCH", crd.PLURAL)] == before
