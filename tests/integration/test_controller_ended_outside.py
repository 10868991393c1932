"""An end another writer wrote under the controller is told by the controller that finds it (decision 810).

A CanaryRollout runs v3 on m0; on-call's `canary rollback` (the real CLI, against the same API emulator) sends stable
100% and records `rolled_back` with the rollout's owner kept. The controller's next tick mirrored it on the status
and did nothing else: no post to the webhooks and Slack, no `canary_rollbacks_total`, and a process that had not
followed the rollout (restarted, another replica) wrote nothing of it into the rollout's history. Now it says
`rollout.ended_outside` once, posts the end once (its reason saying who ended it), counts it with its class and
writes it into the history; its own ends are not told twice."""

from __future__ import annotations

from typing import Any

import pytest
import structlog
from structlog.testing import capture_logs

from canary import crd
from canary import history_store
from canary import rollout as rl
from canary.controller import ENDED_OUTSIDE, Controller
from canary.telemetry import Telemetry
from tests import fleet
from tests.integration.test_controller import _fresh, _progressing, prometheus, vs, world  # noqa: F401
from tests.integration.test_controller_review import _cr
from tests.unit.test_telemetry import value as metric

pytestmark = pytest.mark.integration


class _Posts:
    """The notifier: what is posted, in order."""

    def __init__(self) -> None:
        self.posts: list[tuple[str, dict[str, Any]]] = []

    def notify(self, event: str, payload: dict[str, Any]) -> None:
        self.posts.append((event, dict(payload)))


def _told(op: Controller) -> tuple[_Posts, Telemetry]:
    posts, t = _Posts(), Telemetry()
    op.notifier, op.telemetry = posts, t
    return posts, t


def _unreadable(o: dict[str, Any]) -> None:
    o["metadata"]["annotations"]["modelcanary.dev/rollout"] = "{not json"


@pytest.mark.parametrize("record", ["kept", "unreadable"], ids=["record kept", "record unreadable"])
@pytest.mark.parametrize("restart", [False, True], ids=["same process", "restarted"])
def test_an_oncall_rollback_under_the_controller_is_posted_counted_and_in_the_history_once(
        world: Any, tmp_path: Any, restart: bool, record: str) -> None:
    """`record unreadable`: on-call's rollback writes a fresh record (no owner, started now) over one it cannot read;
    the controller reads that end through `_rescue` (`_stable_if_ours`: "ended") and told it nothing more either."""
    from typer.testing import CliRunner

    from canary.cli import app
    from canary.routing.istio import GROUP

    api, op, custom = world
    custom.create_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, fleet.rollout_object(0, "v3"))
    _progressing(op, custom, api)
    if record == "unreadable":
        api.edit(GROUP, "virtualservices", "ml", "m0", _unreadable)
    kc = fleet.write_kubeconfig(tmp_path / "kc", api.url)
    processors = structlog.get_config()["processors"]  # the controller's logger holds this list (capture_logs fills it)
    res = CliRunner().invoke(app, ["rollback", "m0", "-n", "ml", "--kubeconfig", str(kc), "--reason", "pager"])
    structlog.configure(processors=processors)  # (the CLI configured a list of its own)
    assert res.exit_code == 0 and vs(api, 0)[0] == [100, 0], res.output
    assert vs(api, 0)[1].get("owner", "").startswith("CanaryRollout ml/r0#") == (record == "kept")  # its own, ended
    ctl = _fresh(op) if restart else op
    posts, t = _told(ctl)
    with capture_logs() as logs:
        for _ in range(4):
            ctl.tick()
    st = (_cr(custom, "r0") or {})["status"]
    assert st["phase"] == rl.ROLLED_BACK and "pager" in st["reason"], st
    said = [e for e in logs if e["event"] == ENDED_OUTSIDE]
    assert len(said) == 1, said
    assert said[0]["model"] == "m0" and said[0]["phase"] == rl.ROLLED_BACK and said[0]["end_cause"] == "operator"
    assert "pager" in said[0]["reason"] and "canary rollback" in said[0]["by"], said
    # and what to do (decision 852): nothing for the traffic, and how v3 runs again
    assert "stable v1 serves 100/0" in said[0]["hint"] and "to run v3 again" in said[0]["hint"], said
    assert [e for e, _ in posts.posts] == ["rollback"], posts.posts
    body = posts.posts[0][1]
    assert body["model"] == "m0" and body["canary_version"] == "v3" and str(body["weights"]) == "100/0"
    assert "pager" in body["reason"] and "another writer" in body["reason"], body
    assert metric(t, "canary_rollbacks_total", model="m0", reason="operator") == 1.0
    cm = api.get("", "configmaps", "ml", "m0-canary-history")
    doc = history_store.read(cm["data"], where="m0-canary-history")
    assert doc["phase"] == rl.ROLLED_BACK and "pager" in doc["reason"] and doc["end_cause"] == "operator", doc
    events = [e["event"] for e in doc["events"]]
    assert ENDED_OUTSIDE in events and "rollback.completed" in events, events
    assert "rollout.phase_changed" not in events, events  # told as the end it is, not as an edit (786's rule)
    assert doc["weights"][-1][1] == 0, doc["weights"]


def test_the_controllers_own_end_whose_status_write_failed_is_not_told_again(world: Any) -> None:
    """The controller's own rollback landed and its status write failed: the next tick finds the end on the route and
    the status still progressing, as it finds another writer's. It posted that end at its write: told once."""
    api, op, custom = world
    posts, t = _told(op)
    custom.create_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, fleet.rollout_object(0, "v3"))
    _progressing(op, custom, api)
    custom.patch_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, "r0",
                                          {"spec": {"action": "rollback", "actionReason": "pager"}})
    real = op._patch_status
    failed: list[str] = []

    def once(obj: dict[str, Any], status: dict[str, Any]) -> None:
        if status.get("phase") == rl.ROLLED_BACK and not failed:
            failed.append(status["phase"])
            from canary.errors import KubeUnavailable

            raise KubeUnavailable("503 (the API server restarting)")
        real(obj, status)

    op._patch_status = once  # type: ignore[method-assign]
    with capture_logs() as logs:
        for _ in range(6):
            try:
                op.tick()
            except Exception:  # noqa: BLE001 - the tick's own failure path handles it
                pass
    assert failed and vs(api, 0)[0] == [100, 0]
    assert (_cr(custom, "r0") or {})["status"]["phase"] == rl.ROLLED_BACK
    assert [e for e, _ in posts.posts] == ["rollback"], posts.posts
    assert not [e for e in logs if e["event"] == ENDED_OUTSIDE]
    assert metric(t, "canary_rollbacks_total", model="m0", reason="operator") == 1.0


class _Died(BaseException):
    """The process killed at a fault point: nothing after it runs in that process (no `except Exception` takes it)."""


def test_an_end_whose_process_died_between_its_write_and_its_post_is_posted_by_the_next_process(world: Any) -> None:
    """At-least-once for the controller's ends (decision 813): the end's stable-100% write landed and the process died
    at the fault point right before its post (so before its counters, history and status write). The CanaryRollout's
    status, written after the post, is the mark that it was told: the next process (a restart, another replica)
    finds the end on the route that the status does not show and posts it, once, counts it and records it."""
    api, op, custom = world
    custom.create_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, fleet.rollout_object(0, "v3"))
    _progressing(op, custom, api)
    custom.patch_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, "r0",
                                          {"spec": {"action": "rollback", "actionReason": "pager"}})
    dead, _ = _told(op)

    def died(*args: Any, **kw: Any) -> None:
        raise _Died("killed between the end's write and its post")

    op._post_end = died  # type: ignore[method-assign]
    with pytest.raises(_Died):
        for _ in range(6):
            op.tick()
    assert vs(api, 0)[0] == [100, 0] and vs(api, 0)[1]["phase"] == rl.ROLLED_BACK  # the end landed
    assert (_cr(custom, "r0") or {})["status"]["phase"] == rl.PROGRESSING and not dead.posts  # and nothing else
    nxt = _fresh(op)
    posts, t = _told(nxt)
    for _ in range(4):
        nxt.tick()
    assert [e for e, _ in posts.posts] == ["rollback"], posts.posts
    assert "pager" in posts.posts[0][1]["reason"] and str(posts.posts[0][1]["weights"]) == "100/0"
    assert metric(t, "canary_rollbacks_total", model="m0", reason="operator") == 1.0
    assert (_cr(custom, "r0") or {})["status"]["phase"] == rl.ROLLED_BACK
    doc = history_store.read(api.get("", "configmaps", "ml", "m0-canary-history")["data"], where="m0-canary-history")
    assert doc["phase"] == rl.ROLLED_BACK and "rollback.completed" in [e["event"] for e in doc["events"]], doc


def test_the_controllers_own_sweep_end_of_a_split_under_its_rollouts_typed_end_is_told_once(world: Any) -> None:
    """The record of a CanaryRollout's rollout typed into `rolled_back` while its route still splits 80/20, and its
    ticks not reaching it (failing before, for longer than the sweep's 30 s): this process's own sweep ends the split
    (`sweep.end_unowned`: stable 100%, recorded aborted), posts it and counts it. The rollout's next tick found that
    end on the route, its status still progressing and `_told_ends` without it: it told it again as
    `rollout.ended_outside` (a second post, `canary_rollbacks_total` 2 for one end; decision 850)."""
    import json
    import time

    from canary import sweep
    from canary.routing.istio import GROUP
    from tests.fakes import FakeClock

    api, op, custom = world
    custom.create_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, fleet.rollout_object(0, "v3"))
    _progressing(op, custom, api)
    assert vs(api, 0)[0][1] > 0

    def typed(o: dict[str, Any]) -> None:
        ann = o["metadata"]["annotations"]
        ann["modelcanary.dev/rollout"] = json.dumps({**json.loads(ann["modelcanary.dev/rollout"]),
                                                    "phase": rl.ROLLED_BACK, "reason": "operator: typed"})
    api.edit(GROUP, "virtualservices", "ml", "m0", typed)
    clock = FakeClock(time.time())
    op.clock, op.sweep_every, op._next_sweep = clock, 0.001, 0.0
    posts, t = _told(op)
    listed = {"ml/r0": _cr(custom, "r0")}
    with capture_logs() as swept:
        op._sweep(listed)  # seen first: its quiet time starts
        clock.sleep(sweep.UNOWNED_AFTER_S + 1)
        op._sweep(listed)
    assert vs(api, 0)[0] == [100, 0] and vs(api, 0)[1]["phase"] == rl.ABORTED, swept
    assert [e for e, _ in posts.posts] == ["aborted"], posts.posts  # the sweep's post
    with capture_logs() as logs:
        for _ in range(3):
            op.tick()
    assert (_cr(custom, "r0") or {})["status"]["phase"] == rl.ABORTED
    assert [e for e, _ in posts.posts] == ["aborted"], posts.posts
    assert not [e for e in logs if e["event"] == ENDED_OUTSIDE], logs
    from tests.unit.test_telemetry import samples

    assert sum(v for (n, _), v in samples(t).items() if n == "canary_rollbacks_total") == 1.0, samples(t)
