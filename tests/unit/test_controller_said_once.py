"""What the controller says once per CanaryRollout and generation (`Controller._once`, `status.editWaiting`) is said
again for a CanaryRollout deleted and created again under its name: generations start over at 1, so the name and
generation alone took the new object's edit for the old one's (decision 538's addendum)."""

from __future__ import annotations

from canary import controller as controller_mod
from canary import crd
from tests import fleet
from tests.unit.test_errors_said import _Statuses


def test_a_canaryrollout_created_again_under_its_name_is_told_its_waiting_edit_anew() -> None:
    """r0 paused, its steps edited (generation 2): the edit waits, `status.editWaiting` written, `rollout.edit_waits`
    said. r0 deleted and created again, paused, edited the same way: generation 2 again, the same edit. Its status
    (a new object's, empty) never got editWaiting, so `canary status` said nothing and `canary resume` "the
    controller goes on with it" while the next tick restarted the rollout; nor was the event logged."""
    statuses = _Statuses()
    op = controller_mod.Controller(custom=statuses, core=None, router=None, metrics=None)  # type: ignore[arg-type]
    waiting = {"edit": "the policy's steps changed", "then": controller_mod.RESUMED_RESTARTS, "generation": 2}
    for uid in ("u-1", "u-2"):  # the first object, then the one created again under its name
        obj = fleet.rollout_object(0, "v2")
        obj["metadata"].update(generation=2, uid=uid)
        obj["status"] = {}
        assert op._once("rollout.edit_waits", crd.parse(obj)), uid
        op._say_edit_waiting(obj, dict(waiting))
        assert not op._once("rollout.edit_waits", crd.parse(obj))  # once per object and generation still
        op._say_edit_waiting({**obj, "status": {}}, dict(waiting))  # a CRD that prunes it: not sent again
    assert [p["status"]["editWaiting"] for p in statuses.patches] == [waiting, waiting], statuses.patches
