"""What a rollback's lines say of its two writes (decision 164), against the strict API emulator and a real
(backfilled) Prometheus: the weights write (stable 100% on the VirtualService, the end recorded) and, after it,
the stable subset's pointing (the DestinationRule). On-call reads `rollback.retrying` / `rollback.failed` and
the next tick's `rollout.end_confirmed` to know whether traffic is safe. With the DestinationRule deleted
mid-rollout the weights landed and the subset write did not, yet the lines said `write_landed: no: the write was
refused` and "failed with no answer". Each combination is driven here with real refusals: the weights landed and
the subset not (not found; no answer), the weights refused (the subset not tried), both objects refusing, and
the weights write with no answer.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from structlog.testing import capture_logs

from canary import crd
from canary import rollout as rl
from tests import fleet
from tests.fakes import FakeClock
from tests.integration.test_controller import GROUP, _progressing, prometheus, vs, world  # noqa: F401
from tests.integration.test_controller_route_deleted import _delete, _status, _ticks

pytestmark = pytest.mark.integration


def _started(world: Any) -> tuple[Any, Any, Any, FakeClock]:
    api, op, custom = world
    custom.create_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, fleet.rollout_object(0, "v2"))
    _progressing(op, custom, api)
    op.clock = clock = FakeClock(time.time())
    return api, op, custom, clock


def _lines(logs: list[dict[str, Any]], event: str) -> list[dict[str, Any]]:
    return [e for e in logs if e["event"] == event]


def _rollback(custom: Any) -> None:
    custom.patch_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, "r0",
                                          {"spec": {"action": "rollback", "actionReason": "pager"}})


def test_a_destination_rule_deleted_mid_rollout_says_the_weights_landed_and_the_subset_did_not(world: Any) -> None:
    """The end's weights land (stable 100%, recorded aborted) and its subset write meets the DestinationRule's
    404: `rollback.retrying` says `partly`, naming both writes, the DestinationRule and "not found", with no
    "traffic may still be split"; the next tick's `rollout.end_confirmed` says the same, not "no answer"."""
    api, op, custom, clock = _started(world)
    _delete(api, "destinationrules", "m0")
    with capture_logs() as logs:
        _ticks(op, clock, 3)
    assert vs(api, 0)[0] == [100, 0] and _status(custom)["phase"] == rl.ABORTED
    [retrying] = _lines(logs, "rollback.retrying")
    landed = retrying["write_landed"]
    assert landed.startswith("partly: the weights write landed (stable 100% on VirtualService ml/m0"), landed
    assert "the stable subset write (pointing it at v1) did not land: DestinationRule ml/m0 not found" in landed
    assert "refused" not in landed and "no answer" not in landed, landed
    assert retrying["weights"] == "100/0" and "target_weights" not in retrying, retrying
    assert "may still be split" not in retrying["note"] and "restore DestinationRule ml/m0" in retrying["note"]
    [confirmed] = _lines(logs, "rollout.end_confirmed")
    assert confirmed["write_landed"] == landed, confirmed
    assert "no answer" not in confirmed["detail"] and "subset write did not" in confirmed["detail"], confirmed
    assert "stable has 100%" in confirmed["detail"]


def test_a_destination_rule_deleted_mid_rollout_pages_once_that_every_request_fails_until_it_is_restored(
        world: Any) -> None:
    """The route left at stable 100% on a subset no DestinationRule defines is an outage (Istio answers 503 NR to
    every request), not a retry: one error line (`rollout.destination_rule_deleted`) names the DestinationRule,
    says traffic fails until it is restored, and gives the remedy; the ticks after it add none (decision 168: it
    was only the warning `rollback.retrying`)."""
    api, op, custom, clock = _started(world)
    _delete(api, "destinationrules", "m0")
    with capture_logs() as logs:
        _ticks(op, clock, 5)
    assert vs(api, 0)[0] == [100, 0] and _status(custom)["phase"] == rl.ABORTED
    [page] = [e for e in logs if e["log_level"] in ("error", "critical")]
    assert page["event"] == "rollout.destination_rule_deleted" and page["log_level"] == "error", page
    assert page["destination_rule"] == "ml/m0" and page["traffic"] == "failing", page
    assert page["subset"] == "stable" and page["version"] == "v1", page
    assert {"rollout": "ml/r0", "virtual_service": "m0", "canary_version": "v2"}.items() <= page.items(), page
    assert "every request to it fails (503, NR) until the DestinationRule is restored" in page["impact"], page
    assert "DestinationRule ml/m0 is gone" in page["impact"], page
    assert page["hint"].startswith("restore DestinationRule ml/m0 now") and "selecting version v1" in page["hint"]
    [retrying] = _lines(logs, "rollback.retrying")  # the write's own line stays beside it, its note saying so too
    assert "every request fails (503, NR" in retrying["note"], retrying


def test_the_weights_write_refused_says_no_and_that_the_subset_was_not_tried(world: Any) -> None:
    """An operator's rollback whose VirtualService write is refused (403: a policy webhook): `write_landed` says
    `no`, that it was the weights write, and that the subset write after it was not tried."""
    api, op, custom, clock = _started(world)
    api.fail_next(403, times=1000, plural="virtualservices")
    _rollback(custom)
    with capture_logs() as logs:
        _ticks(op, clock, 1)
    assert vs(api, 0)[0] == [80, 20]
    lines = _lines(logs, "rollback.retrying") + _lines(logs, "rollback.failed")
    assert lines, [e["event"] for e in logs]
    for line in lines:
        landed = line["write_landed"]
        assert landed.startswith("no: the write was refused (the weights write: stable 100% on VirtualService "
                                 "ml/m0; the stable subset write after it was not tried)"), landed
        assert line["target_weights"] == "100/0" and "weights" not in line, line
    assert not _lines(logs, "rollout.end_confirmed")


def test_both_objects_refusing_says_the_weights_write_was_refused_and_the_subset_not_tried(world: Any) -> None:
    """The DestinationRule deleted and the VirtualService's writes refused (403): the end writes nothing. Its
    line says the weights write was refused and the subset write not tried; nothing is confirmed later, and once
    the VirtualService accepts writes the next tick's line says `partly` (weights landed, DestinationRule not
    found), then `rollout.end_confirmed` the same."""
    api, op, custom, clock = _started(world)
    _delete(api, "destinationrules", "m0")
    api.fail_next(403, times=1000, plural="virtualservices")
    with capture_logs() as logs:
        _ticks(op, clock, 2)
    assert vs(api, 0)[0] == [80, 20]
    refused = _lines(logs, "rollback.retrying")
    assert refused and all(e["write_landed"].startswith("no: the write was refused (the weights write") and
                           "subset write after it was not tried" in e["write_landed"] for e in refused), refused
    assert not _lines(logs, "rollout.end_confirmed")
    with api.handler.lock:
        api.handler.faults.clear()
    with capture_logs() as logs:
        _ticks(op, clock, 2)
    assert vs(api, 0)[0] == [100, 0]
    [partly] = _lines(logs, "rollback.retrying")
    assert partly["write_landed"].startswith("partly: the weights write landed"), partly
    assert "DestinationRule ml/m0 not found" in partly["write_landed"]
    [confirmed] = _lines(logs, "rollout.end_confirmed")
    assert confirmed["write_landed"] == partly["write_landed"] and "no answer" not in confirmed["detail"]


def test_the_weights_write_with_no_answer_says_unknown_and_names_it(world: Any) -> None:
    """An operator's rollback whose VirtualService writes get 500s (no answer: they may have been applied):
    `unknown`, the weights write named, the subset not tried; once one lands, `rollout.end_confirmed` is not
    needed (the write's answer came back) or says no answer only where it was so."""
    api, op, custom, clock = _started(world)
    api.fail_next(500, times=1000, plural="virtualservices")
    _rollback(custom)
    with capture_logs() as logs:
        _ticks(op, clock, 1)
    lines = _lines(logs, "rollback.retrying") + _lines(logs, "rollback.failed")
    assert lines, [e["event"] for e in logs]
    assert all(e["write_landed"].startswith("unknown: no answer came back") and "(the weights write: stable 100% "
               "on VirtualService ml/m0; the stable subset write after it was not tried)" in e["write_landed"]
               for e in lines), lines


def test_the_subset_write_with_no_answer_after_the_weights_landed_says_partly_unknown(world: Any) -> None:
    """The stable subset re-pointed by hand mid-rollout (to v9) ends the rollout (`subset.foreign_edit`); its
    weights land and its DestinationRule writes (pointing the stable subset back at v1) get 500s: `partly`, the
    subset write "had no answer", never "refused" or "not found"; the next tick confirms the end saying so."""
    api, op, custom, clock = _started(world)

    def repoint(o: dict[str, Any]) -> None:
        next(s for s in o["spec"]["subsets"] if s["name"] == "stable")["labels"]["version"] = "v9"

    api.edit(GROUP, "destinationrules", "ml", "m0", repoint)
    api.fail_next(500, times=1000, plural="destinationrules")
    with capture_logs() as logs:
        _ticks(op, clock, 1)
    assert vs(api, 0)[0] == [100, 0]
    lines = _lines(logs, "rollback.retrying") + _lines(logs, "rollback.failed")
    assert lines, [e["event"] for e in logs]
    for line in lines:
        landed = line["write_landed"]
        assert landed.startswith("partly: the weights write landed (stable 100% on VirtualService ml/m0"), landed
        assert "the stable subset write (pointing it at v1) had no answer" in landed, landed
        assert "may still be split" not in line.get("note", ""), line
    with api.handler.lock:
        api.handler.faults.clear()
    with capture_logs() as logs:
        _ticks(op, clock, 1)
    [confirmed] = _lines(logs, "rollout.end_confirmed")
    assert confirmed["write_landed"].startswith("partly") and "subset write did not" in confirmed["detail"]


def test_an_end_cut_to_fit_beside_a_huge_annotation_is_confirmed_at_the_next_tick(world: Any) -> None:
    """Decision 563: the controller's rollback on a VirtualService carrying 245 KB of another tool's annotation lands
    stable 100% with its record cut to fit (whole, it was refused: 422); its stable subset's pointing after it fails
    (the DestinationRule's reads answer 500), and the next tick reads the cut record back as the end that write
    carried: `rollout.end_confirmed`, not another writer's end."""
    api, op, custom, clock = _started(world)
    api.edit(GROUP, "virtualservices", "ml", "m0", lambda o: o["metadata"]["annotations"].update(
        {"kubectl.kubernetes.io/last-applied-configuration": "x" * 245_000}))
    custom.patch_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, "r0", {
        "spec": {"action": "rollback", "actionReason": "\U0001F6A8" * 1024}})
    # from the rollback's first write on (the tick's reads before it are served)
    api.before_next_write(lambda: api.fail_next(500, times=1000, methods=("GET",), plural="destinationrules"))
    with capture_logs() as logs:
        _ticks(op, clock, 1)
    assert vs(api, 0)[0] == [100, 0], [e["event"] for e in logs]
    assert _lines(logs, "rollback.retrying"), [e["event"] for e in logs]
    with api.handler.lock:
        api.handler.faults.clear()
    with capture_logs() as logs:
        _ticks(op, clock, 1)
    [confirmed] = _lines(logs, "rollout.end_confirmed")
    assert confirmed["phase"] == rl.ROLLED_BACK and confirmed["reason"].endswith("…"), confirmed["phase"]
    with capture_logs() as later:
        _ticks(op, clock, 2)
    assert not [e["event"] for e in later if e["log_level"] != "info"]  # nothing read as another writer's end


def test_a_decided_rollback_whose_write_is_refused_ends_as_decided_not_as_the_failure(world: Any) -> None:
    """A rollback the controller decided, whose stable-100% write fails for good (a refusal, or 5xx past the failure
    budget), ends as it was decided, not as the failure (decision 676).

    The tick's failure went to `_failed`, whose rescue wrote an abort of its own: `rollout.aborted`, `end_cause:
    infrastructure`, `reason: failed: <the API error>`. On-call read, from the one line the end leaves, that the
    canary was not to blame: an operator's rollback (`pager`) lost its reason, and a canary shown bad by a check (the
    one `error` line of its rollout) was said "not the canary", fit to be rolled out again. Promote's fail-safe already
    wrote the decided end (decision 14's `decided`). Against the strict Kubernetes API emulator and a real Prometheus."""
    api, op, custom = world
    custom.create_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, fleet.rollout_object(0, "v2"))
    _progressing(op, custom, api)
    custom.patch_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, "r0",
                                          {"spec": {"action": "rollback", "actionReason": "pager"}})
    # the decided end's weights write is refused (a webhook's denial, not retried): the tick fails
    api.fail_next(403, times=1, methods=("PUT", "PATCH"), plural="virtualservices")
    with capture_logs() as logs:
        for _ in range(3):
            op.tick()
    assert vs(api, 0)[0] == [100, 0]
    ends = [e for e in logs if e["event"] in ("rollback.completed", "rollout.aborted")]
    assert len(ends) == 1, [(e["event"], e.get("reason")) for e in logs]
    [end] = ends
    assert end["event"] == "rollback.completed" and end["phase"] == rl.ROLLED_BACK, end
    assert end["end_cause"] == "operator" and end["reason"] == "operator: pager", end
    status = custom.get_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, "r0")["status"]
    assert status["phase"] == rl.ROLLED_BACK and "pager" in status["reason"], status


def test_a_decided_rollback_refused_past_its_page_stays_as_decided_and_its_end_says_the_page_is_over(
        world: Any) -> None:
    """An operator's rollback whose every stable-100% write is refused (a webhook's denial) past the page
    (`rollback.failed`): every tick writes it again as decided (decision 676: never the failure's abort, whose
    `end_cause` was infrastructure), it pages once, and once the writes are let through its `rollback.completed`
    says it ends that page (`resolves`), as a page's end must for whoever acts on it by hand (676's addendum)."""
    api, op, custom, clock = _started(world)
    _rollback(custom)
    api.fail_next(403, times=10**6, methods=("PUT", "PATCH"), plural="virtualservices")
    with capture_logs() as failing:
        _ticks(op, clock, 25)
    assert vs(api, 0)[0] != [100, 0]
    pages = _lines(failing, "rollback.failed")
    assert len(pages) == 1, [e["event"] for e in failing]
    said = pages + _lines(failing, "rollback.retrying")
    assert {(e["end_cause"], e["reason"]) for e in said} == {("operator", "operator: pager")}, said
    assert not _lines(failing, "rollout.aborting") and not _lines(failing, "rollout.aborted")
    api.handler.faults.clear()  # the webhook lets canary's writes through again
    with capture_logs() as logs:
        _ticks(op, clock, 2)
    assert vs(api, 0)[0] == [100, 0] and _status(custom)["phase"] == rl.ROLLED_BACK
    [done] = _lines(logs, "rollback.completed")
    assert done["end_cause"] == "operator" and done["resolves"] == "rollback.failed", done
    assert done["failed_for_s"] >= 20 and done["failed_attempts"] >= 2, done


def test_a_decided_rollback_whose_write_meets_its_virtual_service_deleted_keeps_its_class(world: Any) -> None:
    """An operator's rollback decided at a tick whose stable-100% write meets the VirtualService deleted just before
    it: the end keeps the decided reason and class (683's rule, promote's since), on the status and on the one page
    (`rollout.route_deleted`). 676 kept the decided end for every other failure of that write, but `_failed`'s path
    for the VirtualService's 404 wrote the deletion's: "failed: ... not found", `foreign_edit` (whose `next` says
    "not the canary ... roll v2 out again", for a check's rollback too), the operator's `pager` gone (decision 710)."""
    api, op, custom, clock = _started(world)
    _rollback(custom)
    api.before_next_write(lambda: _delete(api, "virtualservices", "m0"))
    with capture_logs() as logs:
        _ticks(op, clock, 3)
    st = _status(custom)
    assert st["phase"] == rl.ABORTED and "VirtualService m0 is gone" in st["reason"], st
    assert st["endCause"] == "operator" and "pager" in st["reason"], st
    [page] = _lines(logs, "rollout.route_deleted")
    assert page["end_cause"] == "operator", page
    assert [e["event"] for e in logs if e["log_level"] == "critical"] == ["rollout.route_deleted"]


def test_a_decided_rollback_whose_pointing_meets_its_destination_rule_deleted_keeps_its_class(world: Any) -> None:
    """681 meant a rule found deleted only by a rollback's pointing, after an end another cause decided, to keep that
    end's class (recorded with stable 100% before the pointing), untested: an operator's rollback decided with the
    DestinationRule deleted just before its weights write. Its weights and end land; the pointing's 404 fails the tick, and the
    status and every line of the end say the operator's class, never the deletion's."""
    api, op, custom, clock = _started(world)
    _rollback(custom)
    api.before_next_write(lambda: _delete(api, "destinationrules", "m0"))  # decided: the weights write is next
    with capture_logs() as logs:
        _ticks(op, clock, 3)
    st = _status(custom)
    assert vs(api, 0)[0] == [100, 0] and st["phase"] == rl.ROLLED_BACK, st
    assert st["endCause"] == "operator" and "pager" in st["reason"], st
    classed = {e.get("end_cause") for e in logs if "end_cause" in e}
    assert classed == {"operator"}, [(e["event"], e.get("end_cause")) for e in logs]


def test_a_restarted_controllers_rescue_that_finds_its_virtual_service_gone_pages_the_ends_class(world: Any) -> None:
    """A restarted controller (nothing in memory) whose tick fails on the spec (edited to a policy it refuses), and
    whose rescue then finds the VirtualService deleted: the status's `endCause` is the failure's, and the page
    `rollout.route_deleted` said `foreign_edit` beside it (683's left): the one critical line and the status the
    follower reads named two classes for one end. The page carries the end's class, as 683 has promote's do (713)."""
    from tests.integration.test_controller import _fresh

    api, op, custom = world
    custom.create_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, fleet.rollout_object(0, "v2"))
    _progressing(op, custom, api)
    custom.patch_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, "r0",
                                          {"spec": {"policy": {"steps": [50, 10, 100]}}})
    _delete(api, "virtualservices", "m0")
    op = _fresh(op)
    op.clock = clock = FakeClock(time.time())
    with capture_logs() as logs:
        _ticks(op, clock, 3)
    st = _status(custom)
    assert st["phase"] == rl.ABORTED and "VirtualService m0 is gone" in st["reason"], st
    [page] = _lines(logs, "rollout.route_deleted")
    assert page["end_cause"] == st["endCause"], (page, st)
