"""Who runs a rollout: the route's record names its owner (`RolloutState.owner`: `CanaryRollout
<namespace>/<name>`, or `promote`), so a second CanaryRollout naming the same VirtualService and
canary version, or a `canary promote` of that version, neither judges it with its own policy nor
sends it to stable when deleted. Against the strict API emulator and a real Prometheus."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from typing import Any

import pytest

from canary import crd
from canary import rollout as rl
from canary.errors import RolloutBusy
from canary.logs import get as get_logger
from canary.model import Target
from canary.reconcile import PROMOTE_OWNER, execute
from canary.runner import Runner, SystemClock
from tests import fleet
from tests.fakes import HeldClock
from tests.integration.test_controller import GROUP, _progressing, prometheus, run_until_done, vs, world  # noqa: F401
from tests.integration.test_controller_review import _cr

pytestmark = pytest.mark.integration


def _twin(name: str, version: str = "v3") -> dict[str, Any]:
    """A CanaryRollout like r0 (VirtualService m0) under another name."""
    obj = fleet.rollout_object(0, version)
    obj["metadata"]["name"] = name
    return obj


def _ready(obj: dict[str, Any] | None) -> dict[str, Any]:
    return next((c for c in ((obj or {}).get("status") or {}).get("conditions") or [] if c.get("type") == "Ready"), {})


def test_a_second_cr_on_the_same_route_and_version_is_busy_and_its_deletion_leaves_the_rollout_alone(world: Any) -> None:
    """r0 runs v3 on m0; `twin` names m0 and v3 too. twin neither adopts r0's rollout (it did: both
    judged it, each with its own policy) nor, deleted, sends it to stable (it did: 'CanaryRollout
    deleted mid-rollout' rolled r0's good canary back). r0 then ends as its own policy says."""
    api, op, custom = world
    custom.create_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, fleet.rollout_object(0, "v3"))
    _progressing(op, custom, api)
    assert vs(api, 0)[1]["owner"].startswith("CanaryRollout ml/r0#")
    custom.create_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, _twin("twin"))
    split = vs(api, 0)[0]
    # its clock held at the step's start until the twin is gone: no look comes due in these ticks however
    # slowly they run (v3 is the fleet's slow canary, `look_every` 1 s: on a loaded machine two looks judged
    # it and r0 rolled back before the twin's deletion, which this test is not about)
    op.clock = HeldClock(vs(api, 0)[1]["step_started_at"])
    for _ in range(2):
        op.tick()
    twin = _cr(custom, "twin") or {}
    ready = _ready(twin)
    assert ready.get("reason") == "RolloutBusy" and "CanaryRollout ml/r0" in ready.get("message", ""), ready
    assert not (twin.get("status") or {}).get("phase") and not (twin.get("status") or {}).get("startedAt")
    weights, record = vs(api, 0)
    assert record["owner"].startswith("CanaryRollout ml/r0#") and record["phase"] == rl.PROGRESSING and weights[1] >= split[1] > 0
    custom.delete_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, "twin")
    op.tick()
    assert _cr(custom, "twin") is None
    weights, record = vs(api, 0)
    assert record["phase"] == rl.PROGRESSING and weights[1] > 0, (weights, record)
    op.clock = SystemClock()  # and now r0 runs to its end
    objs = run_until_done(op, custom, ["r0"])
    assert objs["r0"]["status"]["phase"] == fleet.expected_phase("v3")


def _ended_untouched(op: Any, custom: Any, owner: str) -> None:
    """The twin, which waited while `owner` ran its version, ended without running it again (it then
    put traffic on v3, just rolled back, a second time), and says so; and the tick after its status
    ended (a separate write: the status is a subresource) released its finalizer."""
    twin = _cr(custom, "twin") or {}
    st = twin.get("status") or {}
    assert st["phase"] == rl.ABORTED and not st.get("startedAt"), st
    assert st["reason"].startswith(f"not run: run by CanaryRollout ml/{owner}, the rollout of v3 on ml/m0 ended "), st
    for _ in range(3):  # run_until_done returns once the status is terminal, maybe before that tick
        op.tick()
        twin = _cr(custom, "twin") or {}
        if not twin["metadata"].get("finalizers"):
            break
    assert not (twin["metadata"].get("finalizers") or []), twin["metadata"]


def test_a_twin_created_while_a_rollout_ran_ends_with_it_and_one_created_after_runs(world: Any) -> None:
    """Refused as RolloutBusy while r0 ran v3, `twin` ends when r0's rollout ends (untouched); `later`,
    created after, never waited: a new request, it runs v3 itself."""
    api, op, custom = world
    custom.create_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, fleet.rollout_object(0, "v3"))
    _progressing(op, custom, api)
    custom.create_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, _twin("twin"))
    objs = run_until_done(op, custom, ["r0", "twin"])
    assert objs["r0"]["status"]["phase"] == fleet.expected_phase("v3")
    _ended_untouched(op, custom, "r0")
    custom.create_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, _twin("later"))
    objs = run_until_done(op, custom, ["later"])
    assert objs["later"]["status"]["phase"] == fleet.expected_phase("v3") and objs["later"]["status"]["startedAt"]
    assert vs(api, 0)[1]["owner"].startswith("CanaryRollout ml/later#")


def promote_claims(router: Any, version: str, *, log: Any, vs_name: str = "m0") -> None:
    """What a `canary promote` of `version` writes to claim `vs_name` and begin its first step."""
    t = Target(namespace="ml", virtual_service=vs_name, model=vs_name, stable_version="v1", canary_version=version)
    policy = crd.parse(fleet.rollout_object(0, version)).policy
    s, actions = rl.new_rollout(model=vs_name, stable_version="v1", canary_version=version, now=time.time(),
                                owner=PROMOTE_OWNER)
    s = execute(router, t, s, actions, log=log)
    s, actions = rl.transition(s, rl.Begin(time.time()), policy)
    execute(router, t, s, actions, log=log)


def test_a_cli_promotes_rollout_is_not_adopted_by_a_cr_nor_a_crs_by_promote(world: Any) -> None:
    """A rollout `canary promote` started is RolloutBusy for a CanaryRollout of the same version (the
    controller used to adopt it: two judges, two policies); and `canary promote` refuses to resume a
    rollout a CanaryRollout runs (nothing is written)."""
    api, op, custom = world
    router, log = op.router, get_logger(component="cli")
    promote_claims(router, "v3", log=log)
    policy = crd.parse(fleet.rollout_object(0, "v3")).policy
    before = api.get(GROUP, "virtualservices", "ml", "m0")
    custom.create_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, fleet.rollout_object(0, "v3"))
    op.tick()
    ready = _ready(_cr(custom, "r0"))
    assert ready.get("reason") == "RolloutBusy" and "`canary promote`" in ready.get("message", ""), ready
    assert api.get(GROUP, "virtualservices", "ml", "m0")["spec"] == before["spec"]

    custom.create_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, fleet.rollout_object(1, "v3"))
    _progressing(op, custom, api, "r1", 1)
    m1 = api.get(GROUP, "virtualservices", "ml", "m1")
    t1 = Target(namespace="ml", virtual_service="m1", model="m1", stable_version="", canary_version="v3")
    cli = Runner(policy=policy, target=t1, router=router, metrics=op.metrics)
    with pytest.raises(RolloutBusy, match="CanaryRollout ml/r1"):
        cli._start()
    assert api.get(GROUP, "virtualservices", "ml", "m1") == m1


def test_a_record_without_owner_is_adopted_only_by_the_cr_whose_status_started_it(world: Any) -> None:
    """A rollout recorded before owners were (an upgrade mid-rollout): r0, whose status says it started
    that rollout, drives it on and records itself as owner; a twin of the same version does not."""
    api, op, custom = world
    custom.create_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, fleet.rollout_object(0, "v3"))
    _progressing(op, custom, api)

    def strip(o: dict[str, Any]) -> None:
        rec = json.loads(o["metadata"]["annotations"]["modelcanary.dev/rollout"])
        del rec["owner"]
        o["metadata"]["annotations"]["modelcanary.dev/rollout"] = json.dumps(rec)

    api.edit(GROUP, "virtualservices", "ml", "m0", strip)
    custom.create_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, _twin("twin"))
    op.tick()
    assert _ready(_cr(custom, "twin")).get("reason") == "RolloutBusy"
    objs = run_until_done(op, custom, ["r0", "twin"])
    assert objs["r0"]["status"]["phase"] == fleet.expected_phase("v3")
    assert vs(api, 0)[1].get("owner", "").startswith("CanaryRollout ml/r0#")  # recorded at its next write
    _ended_untouched(op, custom, "r0")


def _damage(o: dict[str, Any]) -> None:
    o["metadata"]["annotations"]["modelcanary.dev/rollout"] = "{not json"


def _strip(o: dict[str, Any]) -> None:
    del o["metadata"]["annotations"]["modelcanary.dev/rollout"]


@pytest.mark.parametrize("restart", [False, True], ids=["same process", "restarted"])
@pytest.mark.parametrize("damage", [_damage, _strip], ids=["unreadable", "removed"])
def test_an_oncall_rollback_writing_a_fresh_record_ends_the_cr_never_a_new_claim(world: Any, tmp_path: Any,
                                                                                 damage: Any, restart: bool) -> None:
    """r0 runs v3; its record is damaged, and on-call's `canary rollback` writes stable 100% with a
    fresh record (no owner, started now). The controller mirrors that outcome on r0; it claimed the
    route again and put the rolled-back v3 back on 20%."""
    from typer.testing import CliRunner

    from canary.cli import app
    from tests.integration.test_controller import _fresh

    api, op, custom = world
    custom.create_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, fleet.rollout_object(0, "v3"))
    _progressing(op, custom, api)
    api.edit(GROUP, "virtualservices", "ml", "m0", damage)
    kc = fleet.write_kubeconfig(tmp_path / "kc", api.url)
    res = CliRunner().invoke(app, ["rollback", "m0", "-n", "ml", "--kubeconfig", str(kc), "--reason", "pager"])
    assert res.exit_code == 0 and vs(api, 0)[0] == [100, 0], res.output
    ctl = _fresh(op) if restart else op
    for _ in range(4):
        ctl.tick()
        assert vs(api, 0)[0] == [100, 0]
    st = (_cr(custom, "r0") or {})["status"]
    assert st["phase"] == rl.ROLLED_BACK and "pager" in st["reason"], st


def test_promote_never_adopts_a_rollout_a_cr_started_after_its_own_ended(world: Any) -> None:
    """promote runs v2 on m0 and sleeps; on-call rolls it back and a CanaryRollout claims v2. On waking,
    promote's rollout has ended and theirs is left alone: nothing written, exit 3 (it adopted the CR's
    record, judged it with its own policy, and wrote `aborted` over it on Ctrl-C)."""
    from canary.logs import get as get_logger
    from canary.runner import Runner, oncall_action

    api, op, custom = world
    policy = crd.parse(fleet.rollout_object(0, "v2")).policy
    t = Target(namespace="ml", virtual_service="m0", model="m0", stable_version="", canary_version="v2")
    cli = Runner(policy=policy, target=t, router=op.router, metrics=op.metrics)
    state = cli._start()
    assert vs(api, 0)[1]["owner"] == cli.owner and cli.owner.startswith(PROMOTE_OWNER + "#")
    oncall_action(op.router, replace(t, stable_version="v1"), rl.Rollback(time.time(), "pager"),
                  log=get_logger(component="cli"))
    custom.create_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, fleet.rollout_object(0, "v2"))
    _progressing(op, custom, api)
    before = api.get(GROUP, "virtualservices", "ml", "m0")
    woke = cli._check_outside(state)
    assert woke.phase == rl.ABORTED and woke.reason.startswith("taken over: the route records another rollout of v2 "
                                                               "(run by CanaryRollout ml/r0, progressing)"), woke.reason
    assert api.get(GROUP, "virtualservices", "ml", "m0") == before


def test_a_finished_cr_edited_to_a_version_another_cr_ran_runs_it(world: Any) -> None:
    """`a` promoted v2; `b` then ran v3 (rolled back). `a` edited to v3 is a new request: it runs v3
    (it was told it had 'waited' and ended untouched: the rule read creationTimestamp)."""
    api, op, custom = world
    a = _twin("a", "v2")
    custom.create_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, a)
    assert run_until_done(op, custom, ["a"])["a"]["status"]["phase"] == rl.PROMOTED
    custom.create_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, _twin("b", "v3"))
    assert run_until_done(op, custom, ["b"])["b"]["status"]["phase"] == rl.ROLLED_BACK
    custom.patch_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, "a", {"spec": {"canaryVersion": "v3"}})
    st = run_until_done(op, custom, ["a"], version="v3")["a"]["status"]
    assert st["phase"] == rl.ROLLED_BACK and not st["reason"].startswith("not run"), st
    assert vs(api, 0)[1]["owner"].startswith("CanaryRollout ml/a#")


def test_a_cr_deleted_and_created_again_under_its_name_runs(world: Any) -> None:
    """The owner carries the CR's uid: r0 created again after its rollout of v2 ended is a new request
    and runs (it mirrored the old object's outcome and never ran)."""
    api, op, custom = world
    custom.create_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, fleet.rollout_object(0, "v3"))
    run_until_done(op, custom, ["r0"])
    custom.delete_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, "r0")
    op.tick()
    assert _cr(custom, "r0") is None
    custom.create_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, fleet.rollout_object(0, "v3"))
    again = run_until_done(op, custom, ["r0"])["r0"]
    assert again["status"]["phase"] == rl.ROLLED_BACK
    assert vs(api, 0)[1]["owner"] == f"CanaryRollout ml/r0#{again['metadata']['uid']}"  # its own rollout ran


@pytest.mark.parametrize("version", ["v2", "v3"])
def test_promote_via_controller_that_waited_exits_by_the_outcome_of_the_rollout_it_waited_on(
        world: Any, tmp_path: Any, version: str) -> None:
    """r0 runs `version` on m0; a pipeline's `promote --via-controller` of the same version creates
    `twin`, which waits (RolloutBusy) and ends unrun when r0 ends. It exits by what became of that
    version (0 promoted, 1 rolled back), not 3 as if the infrastructure had failed: a pipeline read a
    promoted version as a failed deploy. The CR itself stays `aborted` (it ran nothing), and
    `status.waitedOnPhase` says how the rollout it waited on ended."""
    import threading

    import yaml

    import canary.cli  # noqa: F401  (registers the commands; cli_controller imports it)
    from canary.cli_controller import follow

    api, op, custom = world
    custom.create_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, fleet.rollout_object(0, version))
    _progressing(op, custom, api)
    kubeconfig = fleet.write_kubeconfig(tmp_path / "kubeconfig", api.url)
    policy = tmp_path / "policy.yaml"
    policy.write_text(yaml.safe_dump(fleet.FAST_POLICY))
    stop = threading.Event()
    ticking = threading.Thread(target=op.run, args=(stop,), kwargs={"tick_s": 0.2}, daemon=True)
    ticking.start()
    try:
        code = follow(model="m0", canary_version=version, policy_file=policy, namespace="ml", stable_version="",
                      virtual_service=None, kubeconfig=str(kubeconfig), context=None, name="twin", triton=None,
                      output="json", timeout_s=90)
    finally:
        stop.set()
        ticking.join(120)  # its tick in flight ends before the statuses are read
        assert not ticking.is_alive(), "the controller's loop did not stop"
    want = fleet.expected_phase(version)
    assert code == {rl.PROMOTED: 0, rl.ROLLED_BACK: 1}[want]
    r0, twin = _cr(custom, "r0") or {}, _cr(custom, "twin") or {}
    assert r0["status"]["phase"] == want
    st = twin["status"]
    assert st["phase"] == rl.ABORTED and not st.get("startedAt") and st["waitedOnPhase"] == want, st
    assert st["reason"].startswith(f"not run: run by CanaryRollout ml/r0, the rollout of {version} on ml/m0 ended {want}")
