"""`spec.action: resume` resumes the pause in force when it was asked, never a later one (decision 520):
an on-call `canary pause` (or a deadline's hold) under a CanaryRollout whose spec still says `resume`
from an earlier resume stays paused. Against the strict API emulator, a real Prometheus and the real CLI."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from canary import crd
from canary import rollout as rl
from tests import fleet
from tests.integration.test_controller import _fresh, _progressing, prometheus, run_until_done, vs, world  # noqa: F401
from tests.support import cli

pytestmark = pytest.mark.integration


def _patch_spec(custom: Any, patch: dict[str, Any]) -> None:
    custom.patch_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, "r0", {"spec": patch})


def _oncall(command: str, kubeconfig: Path) -> None:
    res = cli.run([command, "m0", "-n", "ml", "--kubeconfig", str(kubeconfig)], env={"KUBECONFIG": ""})
    assert res.returncode == 0, res.stderr


@pytest.mark.parametrize("how", ["resumed through the spec", "created with resume", "restarted"])
def test_an_oncall_pause_is_not_undone_by_a_resume_left_in_the_spec(world: Any, tmp_path: Path, how: str) -> None:
    """r0's spec says `action: resume` (an earlier pause and resume through the spec, or a manifest
    that carries it from its creation). On-call runs `canary pause` (exit 0, "paused"): the
    controller's next tick resumed it at once (`rollout.resumed`, the step started over), and a
    deadline's hold was undone the same way. Now it stays paused until a person resumes it (`canary
    resume`, or the request asked again: a new generation of the spec), in a restarted process too."""
    api, op, custom = world
    kubeconfig = fleet.write_kubeconfig(tmp_path / "kubeconfig", api.url)
    spec = {"action": "resume"} if how == "created with resume" else {}
    custom.create_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, fleet.rollout_object(0, "v2", **spec))
    _progressing(op, custom, api)
    if how != "created with resume":
        _patch_spec(custom, {"action": "pause"})
        op.tick()
        assert vs(api, 0)[1]["phase"] == rl.PAUSED
        _patch_spec(custom, {"action": "resume"})
        op.tick()
        assert vs(api, 0)[1]["phase"] == rl.PROGRESSING  # the request asked: the pause it was asked for ends
    _oncall("pause", kubeconfig)
    if how == "restarted":
        op = _fresh(op)
    for _ in range(3):
        op.tick()
    weights, record = vs(api, 0)
    assert record["phase"] == rl.PAUSED and weights == [80, 20], record["history"][-3:]
    _patch_spec(custom, {"actionReason": "looked at it: go on"})  # the request asked anew
    op.tick()
    assert vs(api, 0)[1]["phase"] == rl.PROGRESSING
    _oncall("pause", kubeconfig)
    op.tick()
    assert vs(api, 0)[1]["phase"] == rl.PAUSED
    _oncall("resume", kubeconfig)  # on-call's own resume
    objs = run_until_done(op, custom, ["r0"])
    assert objs["r0"]["status"]["phase"] == rl.PROMOTED



def test_an_edit_of_another_field_is_not_the_resume_asked_again_and_the_used_resume_is_said(
        world: Any, tmp_path: Path) -> None:
    """The request is the `action` and its `actionReason`, not the spec's generation: an edit of another field
    (`onPrometheusOutage`, what GitOps writes routinely) made a new generation, and the used-up `resume` resumed
    on-call's pause once more at the next tick (decision 520's review). It stays paused now, and
    `rollout.resume_used` says once why nothing moves; the action cleared and set again is a new request
    (decision 521)."""
    from structlog.testing import capture_logs

    api, op, custom = world
    kubeconfig = fleet.write_kubeconfig(tmp_path / "kubeconfig", api.url)
    custom.create_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL,
                                           fleet.rollout_object(0, "v2", action="resume"))
    _progressing(op, custom, api)
    _oncall("pause", kubeconfig)
    with capture_logs() as logs:
        op = _fresh(op)  # its logger made under the capture (a restarted process: the status is all it knows)
        for edit in ({"onPrometheusOutage": "hold"}, {"onPrometheusOutage": "rollback"}):
            _patch_spec(custom, edit)
            op.tick()
            op.tick()
            assert vs(api, 0)[1]["phase"] == rl.PAUSED, vs(api, 0)[1]["history"][-3:]
    used = [e for e in logs if e["event"] == "rollout.resume_used"]
    assert len(used) == 2 and "actionReason" in used[0]["hint"], used  # once per generation
    _patch_spec(custom, {"action": ""})
    op.tick()
    assert vs(api, 0)[1]["phase"] == rl.PAUSED
    _patch_spec(custom, {"action": "resume"})  # cleared, then asked again
    op.tick()
    assert vs(api, 0)[1]["phase"] == rl.PROGRESSING
