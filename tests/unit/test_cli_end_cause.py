"""`-o json` of an ended rollout says why it ended (`end_cause`): a CI pipeline could not tell a canary
shown beyond a limit from one not shown within by the deadline (both exit 1, "rolled_back")."""

from __future__ import annotations

from typing import Any

import pytest

from canary import rollout as rl
from canary.cli import state_dict
from canary.model import Weights


@pytest.mark.parametrize(("phase", "reason", "cause"), [
    (rl.ROLLED_BACK, "latency-p95: canary p95 135 ms vs stable 77.3 ms (+74%, limit +20%), n=400/400, p=0.0001",
     "check"),
    (rl.ROLLED_BACK, "no verdict after 70s at step 1 (latency-p95: not yet shown within +20%)", "deadline"),
    (rl.ROLLED_BACK, "operator: bad canary", "operator"),
    (rl.ABORTED, "interrupted", "interrupted"),
    # promote's fail-safe and the controller's `_failed` (decision 112): an API or process failure, not a check
    (rl.ABORTED, "failed: kubernetes API unreachable: ml/m0 (virtualservices)", "infrastructure"),
    (rl.ABORTED, "failed: RuntimeError: boom", "infrastructure"),
    (rl.ABORTED, "the stable subset was re-pointed from v1 to v3 outside the rollout", "foreign_edit"),
    (rl.ABORTED, "CanaryRollout deleted mid-rollout", "operator"),
    (rl.PROMOTED, "all steps passed", None),
])
def test_an_ended_rollouts_json_names_its_end_cause(phase: str, reason: str, cause: str | None) -> None:
    state = rl.RolloutState(model="m", stable_version="v1", canary_version="v2", phase=phase, weights=Weights(100, 0),
                            step=1, started_at=1.0, reason=reason)
    assert state_dict(state, exit_code=1).get("end_cause") == cause


def test_an_ended_rollouts_json_says_the_class_recorded_with_its_end() -> None:
    """`end_cause` is the class its producer recorded with the end (decision 607), whatever the words read as: a
    route re-shaped by hand mid-rollout, refused as "failed: ..." (infrastructure by its words), is a foreign edit.
    The rows above are records written before the field: classed by their words."""
    state = rl.RolloutState(model="m", stable_version="v1", canary_version="v2", phase=rl.ABORTED,
                            weights=Weights(100, 0), step=1, started_at=1.0, end_cause="foreign_edit",
                            reason="failed: ml/m0: spec.http[0].route has 3 destinations, expected 2")
    assert state_dict(state)["end_cause"] == "foreign_edit"


def test_a_followers_json_says_the_class_the_controller_recorded_on_the_status() -> None:
    """`promote --via-controller`'s `end_cause` is the status's `endCause` (decision 609); a status written before it
    (no `endCause`, or one that is no class) is classed by its reason's words."""
    from canary.cli_controller import follow_document as _document

    reason = "failed: ml/m0: spec.http[0].route has 3 destinations, expected 2"
    assert _document({"phase": rl.ABORTED, "reason": reason, "endCause": "foreign_edit"})["end_cause"] == "foreign_edit"
    for old in ({}, {"endCause": "nonsense"}, {"endCause": None}):
        assert _document({"phase": rl.ABORTED, "reason": reason, **old})["end_cause"] == "infrastructure", old
    assert "end_cause" not in _document({"phase": rl.PROMOTED, "reason": "all steps passed"})


def test_a_promotions_line_says_the_stable_subset_now_selects_the_new_version() -> None:
    """"promoted: ... weights 100/0" read alone says the canary got nothing: after a promotion the stable subset
    selects the canary version, and the line says so (a newcomer's reading of the demo)."""
    from canary import rollout as rl
    from canary.cli import state_line
    from canary.model import Weights

    done = rl.RolloutState(model="m", stable_version="v1", canary_version="v2", phase=rl.PROMOTED,
                           weights=Weights(100, 0), reason="all steps passed")
    assert state_line(done) == ("promoted: m v2 weights 100/0 (stable/canary; the stable subset now selects v2) - "
                                "all steps passed")
    back = rl.RolloutState(model="m", stable_version="v1", canary_version="v2", phase=rl.ROLLED_BACK,
                           weights=Weights(100, 0), reason="latency")
    assert state_line(back) == "rolled_back: m v2 weights 100/0 (stable/canary) - latency"


def _status_patched() -> tuple[Any, list[dict]]:
    """A Controller whose status patches are kept (and answered), nothing else reachable: an unrun end's status."""
    from canary.controller import Controller

    patches: list[dict] = []

    class Custom:
        def patch_namespaced_custom_object_status(self, group: str, version: str, namespace: str, plural: str,
                                                  name: str, body: dict, **_: object) -> dict:
            patches.append(body["status"])
            return {"metadata": {"name": name, "namespace": namespace, "uid": "u-1"}, "status": body["status"]}

    op = Controller(custom=Custom(), core=None, router=None, metrics=None, identity="c-0")  # type: ignore[arg-type]
    return op, patches


def _merged(status: dict, patches: list[dict]) -> dict:
    """`status` with `patches` merged as the API server merges them: null removes."""
    for patch in patches:
        status = {k: v for k, v in {**status, **patch}.items() if v is not None}
    return status


def test_a_crs_end_without_a_run_drops_the_class_of_its_earlier_end() -> None:
    """A CanaryRollout whose rollout of v2 rolled back (`status.endCause` check), its spec then edited to v3, which
    ends without having run (`_end_unrun`: not ready, promoted already, `spec.action: rollback`): the status is
    merge-patched, so the v2 end's `endCause` stayed beside the v3 end's phase and reason, and `promote
    --via-controller` said `end_cause: check` (a canary shown beyond a limit) of a version that never took traffic.
    The end without a run removes it: its class is its reason's words (decision 609's addendum)."""
    from canary import crd
    from canary.cli_controller import follow_document as _document
    from canary.logs import get
    from tests import fleet

    op, patches = _status_patched()
    obj = fleet.rollout_object(0, "v3")
    obj["metadata"].update(generation=2, uid="u-1")
    obj["status"] = {"phase": rl.ROLLED_BACK, "endCause": "check",
                     "reason": "latency-p95: canary p95 135 ms vs stable 77.3 ms (+74%, limit +20%)"}
    op._end_unrun(obj, crd.parse(obj), "not run: no Ready pod of v3 within 300s (none Ready)", get(),
                  event="rollout.not_ready_ended", owner="", phase=None, cause="infrastructure")
    status = _merged(obj["status"], patches)
    assert status["phase"] == rl.ABORTED and status["endCause"] == "infrastructure", status  # its own (667)
    assert _document(status)["end_cause"] == "infrastructure"


@pytest.mark.parametrize("their_phase, their_cause, expected", [
    (rl.ROLLED_BACK, "check", "check"),
    (rl.ROLLED_BACK, "deadline", "deadline"),
    (rl.PROMOTED, "", None),
])
def test_a_follower_that_waited_on_another_owners_rollout_says_that_rollouts_class(
        their_phase: str, their_cause: str, expected: str | None) -> None:
    """A CanaryRollout that waited (RolloutBusy) while another owner ran the same version ends unrun when that
    rollout ends (`_duplicate_ended`), and `promote --via-controller` exits by how that one ended (`waitedOnPhase`:
    rolled back, exit 1). Its `end_cause` was the unrun end's words, `other` ("a reason no rule classes") beside
    exit 1, where docs/reference/cli.md, "Exit codes" has a pipeline tell `check` from `deadline`; and `other` too
    beside a promotion, exit 0, which has no `end_cause`. Now the status records the class of the rollout waited on,
    and the document says the class of the outcome it reports (decision 648)."""
    from canary import crd
    from canary.cli_controller import follow_document
    from canary.logs import get
    from tests import fleet

    op, patches = _status_patched()
    obj = fleet.rollout_object(0, "v2")
    obj["metadata"].update(generation=1, uid="u-1")
    theirs = rl.RolloutState(model="m0", stable_version="v1", canary_version="v2", phase=their_phase,
                             weights=Weights(100, 0), step=1, started_at=5.0, owner="promote on ci-7",
                             reason="lat: canary p95 135 ms vs stable 77 ms" if their_cause == "check" else
                             "no verdict after 330s at step 1" if their_cause else "all steps passed",
                             end_cause=their_cause)
    obj["status"] = {"waitedOn": {"owner": theirs.owner, "canaryVersion": "v2", "startedAt": 5.0}}
    op._duplicate_ended(obj, crd.parse(obj), theirs, get())
    status = _merged(obj["status"], patches)
    assert status["phase"] == rl.ABORTED and status["waitedOnPhase"] == their_phase, status
    doc = follow_document(status, outcome=their_phase, exit_code=1 if their_phase == rl.ROLLED_BACK else 0)
    assert doc.get("end_cause") == expected, doc


@pytest.mark.parametrize("waited", ["promoted", "moved on"])
def test_a_request_that_waited_on_a_rollout_that_promoted_or_moved_on_records_its_own_class(waited: str) -> None:
    """A CanaryRollout that waited on another owner's rollout of its version ends unrun when that one ends
    (`_duplicate_ended`). Where that rollout rolled back, its class is the request's (648); where it promoted, or the
    route no longer records it (a re-run promote took it over), the status had no `endCause`, and its words ("not
    run: ...") class nothing: `other`, beside exit 3 for the route moved on. Now the request's own class: another
    owner's run superseded it, `operator` (decision 667)."""
    from canary import crd
    from canary.cli_controller import follow_document
    from canary.logs import get
    from tests import fleet

    op, patches = _status_patched()
    obj = fleet.rollout_object(0, "v2")
    obj["metadata"].update(generation=1, uid="u-1")
    theirs = rl.RolloutState(model="m0", stable_version="v1", canary_version="v2", phase=rl.PROMOTED,
                             weights=Weights(100, 0), step=1, started_at=5.0, owner="promote on ci-7",
                             reason="all steps passed")
    obj["status"] = {"waitedOn": {"owner": theirs.owner, "canaryVersion": "v2", "startedAt": 5.0}}
    op._duplicate_ended(obj, crd.parse(obj), theirs if waited == "promoted" else None, get())
    status = _merged(obj["status"], patches)
    assert status["phase"] == rl.ABORTED and status["endCause"] == "operator", status
    doc = follow_document(status, outcome=status.get("waitedOnPhase") or rl.ABORTED, exit_code=0)
    assert doc.get("end_cause") == (None if waited == "promoted" else "operator"), doc
