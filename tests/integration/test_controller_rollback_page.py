"""The controller's page for a rollback it cannot write (decision 123), against the API emulator and a real
(backfilled) Prometheus, on a fake clock. Before: a stable-100% write that failed within one tick's 2 s was
the critical `rollback.failed` ("act by hand") at once, and again at every tick it failed, although the
controller writes it again at its next tick and most such failures (an API server restarting) pass in
seconds. Now each failed tick is the warning `rollback.retrying` (how many attempts, for how long, the
error, traffic may still be split); the page comes once, when the write has failed for
ROLLBACK_PAGE_AFTER_S across ticks; a write refused by the fence (this replica lost the lease) counts for
nothing; and the tick that lands it says `rollback.completed` as before."""

from __future__ import annotations

import time
from typing import Any

import pytest
import tenacity
from structlog.testing import capture_logs

from canary import controller as ctl
from canary import crd
from canary import rollout as rl
from canary.sandbox import kubeapi
from tests import fleet
from tests.fakes import FakeClock
from tests.integration.test_controller import _progressing, prometheus, vs, world  # noqa: F401  (fixtures)

pytestmark = pytest.mark.integration


def _vs_writes(api: Any) -> dict[str, str]:
    """The VirtualServices' writes answer as `mode["now"]` says: "ok", "503" (refused, nothing written)."""
    mode = {"now": "ok"}
    real = api.handler._serve

    def serve(method: str, request: Any, kind: Any) -> Any:
        if mode["now"] == "503" and method in ("PUT", "PATCH") and "/virtualservices/" in request.url.path:
            raise kubeapi.ApiError(503, "ServiceUnavailable", "injected: the API server is restarting")
        return real(method, request, kind)

    api.handler._serve = serve  # type: ignore[method-assign]
    return mode


def _ticks(op: Any, clock: FakeClock, plan: list[str], mode: dict[str, str], *, step_s: float) -> list[list[Any]]:
    """One tick per entry of `plan` ("ok", "503", "fenced": the lease lost at the write), `step_s` apart on
    the controller's clock; the lines each tick logged."""
    lines = []
    for what in plan:
        mode["now"] = "503" if what == "503" else "ok"
        op.fenced.may_write = (lambda: False) if what == "fenced" else (lambda: True)
        with capture_logs() as logs:
            op.tick()
        lines.append(logs)
        clock.t += step_s
    return lines


def _events(logs: list[Any], event: str) -> list[Any]:
    return [e for e in logs if e["event"] == event]


def test_an_operator_rollback_whose_write_fails_for_ticks_pages_once_past_the_bound(world: Any) -> None:
    api, op, custom = world
    custom.create_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, fleet.rollout_object(0, "v2"))
    _progressing(op, custom, api)
    op.router.wait = tenacity.wait_none()  # the router's own retries of each 503: not timed here
    op.clock = clock = FakeClock(time.time())
    mode = _vs_writes(api)
    custom.patch_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, "r0",
                                          {"spec": {"action": "rollback", "actionReason": "pager"}})
    pass
    # t = 0, 4, 8, 12, 16: failing; 20: the lease lost (refused by the fence: no page, not counted);
    # 24: failing, past the bound: the page; 28: failing again: no second page; 32: it lands
    plan = ["503"] * 5 + ["fenced", "503", "503", "ok", "ok"]
    ticks = _ticks(op, clock, plan, mode, step_s=4.0)
    every = [e for logs in ticks for e in logs]
    critical = [e for e in every if e["log_level"] == "critical"]
    assert [e["event"] for e in critical] == ["rollback.failed"], [(e["event"], e.get("error")) for e in critical]
    assert critical[0] in ticks[6], [i for i, logs in enumerate(ticks) if critical[0] in logs]
    page = critical[0]
    assert page["failed_attempts"] == 6 and page["failing_for_s"] == 24.0, page
    assert "`canary rollback m0 -n ml --virtual-service m0` sends stable 100% now" in page["hint"], page["hint"]
    assert page["model"] == "m0" and page["canary_version"] == "v2" and page["reason"] == "operator: pager"
    assert page["end_cause"] == "operator" and page["target_weights"] == "100/0" and "503" in page["error"]
    for i in (0, 1, 2, 3, 4, 7):  # every other failed tick: one warning, with its count and how long
        [retrying] = _events(ticks[i], "rollback.retrying")
        assert retrying["log_level"] == "warning" and "traffic may still be split" in retrying["note"], retrying
        assert retrying["failing_for_s"] == (4.0 * i if i < 5 else 28.0) and "503" in retrying["error"]
        assert retrying["failed_attempts"] == (i + 1 if i < 5 else 7), retrying
    assert not _events(ticks[5], "rollback.retrying") and not _events(ticks[5], "rollback.failed")  # the fence
    # one rollback, one start: said at the tick whose write first failed, not again at each tick after it (each
    # says `rollback.retrying`); the fenced tick's write (refused: nothing failed) is the same end (decision 737)
    assert [i for i, logs in enumerate(ticks) if _events(logs, "rollback.started")] == [0], [
        [e["event"] for e in logs] for logs in ticks]
    done = _events(every, "rollback.completed")
    assert len(done) == 1 and done[0] in ticks[8], done
    weights, record = vs(api, 0)
    assert weights == [100, 0] and record["phase"] == rl.ROLLED_BACK
    assert not op._stable_failing  # forgotten once it landed


def test_a_rescue_whose_write_fails_for_ticks_pages_once_past_the_bound(world: Any,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """The same through `_failed`'s stable 100% (`to_stable`): a route left unreadable mid-rollout fails every
    tick, and each tick writes stable 100% within its 2 s (its last attempt's failure was the page)."""
    api, op, custom = world
    custom.create_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, fleet.rollout_object(0, "v2"))
    _progressing(op, custom, api)
    op.router.wait = tenacity.wait_none()
    monkeypatch.setattr(ctl, "TO_STABLE_BUDGET_S", 0.0)  # its three attempts a tick without sleeping between them
    op.clock = clock = FakeClock(time.time())
    mode = _vs_writes(api)
    api.edit("networking.istio.io", "virtualservices", "ml", "m0",
             lambda o: o["metadata"]["annotations"].__setitem__("modelcanary.dev/rollout", "{not json"))
    ticks = _ticks(op, clock, ["503"] * 4 + ["ok", "ok"], mode, step_s=10.0)
    critical = [(i, e) for i, logs in enumerate(ticks) for e in logs if e["log_level"] == "critical"]
    assert [(i, e["event"]) for i, e in critical] == [(2, "rollback.failed")], critical
    assert critical[0][1]["failing_for_s"] == 20.0 and critical[0][1]["failed_attempts"] == 3
    assert _events(ticks[3], "rollback.retrying")[-1]["failed_attempts"] == 4
    # its start once: not at each of a tick's attempts (`to_stable`), nor at each tick (decision 737)
    assert [i for i, logs in enumerate(ticks) for e in _events(logs, "rollout.aborting")] == [0], ticks
    weights, record = vs(api, 0)
    assert weights == [100, 0] and record["phase"] == rl.ABORTED
