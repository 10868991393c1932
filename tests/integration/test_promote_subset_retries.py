"""`canary promote`'s rollback tries the canary subset's re-pointing again (decision 1050).

After a rollback, where another VirtualService (the gateway's) still splits with the canary subset, the subset is
pointed at the stable version (603). Where that failed for a cause that may pass (a 503 on the DestinationRule's
write), promote tried once and exited, leaving the gateway's share on the version rolled back; the controller tries
it again (980, 1020). Now promote does too, before it exits: SUBSET_HOME_TRIES in all, the controller's backoff apart,
each try said with `attempt`/`attempts`/`next`; a refusal for good is not tried again, and a signal ends the tries.

`canary promote`'s Runner against the Kubernetes API emulator, its metrics a fake provider that sees the weights.
"""

from __future__ import annotations

from typing import Any

import pytest
import structlog.testing

from canary import rollout as rl
from canary.reconcile import SUBSET_HOME_TRIES
from tests import fleet
from tests.integration.test_promote_route_safety import HookClock, routes, runner, subsets
from tests.integration.test_vs_shapes import DR, _gateway_vs


@pytest.fixture
def api() -> Any:
    server = fleet.start_api(1)
    yield server
    server.stop()


def _rolled_back_with_a_split_elsewhere(api: Any, fault: Any, *, at_end: Any = None) -> tuple[Any, list[dict], Any]:
    """v2 promoted on `m0` while the gateway VirtualService is split 90/10 mid-rollout (a look finds it: rolled
    back, `foreign_edit`); `fault(api)` is called as the split is made, before the rollback's writes; `at_end(v)`
    at the first sleep once the route records the rollback. (result, logs, runner)."""
    _gateway_vs(api, 0)
    clock = HookClock(api)
    v = runner(api, "v2", clock)
    clock.split_while_progressing("ml", "m0-gateway")
    clock.hooks.append((lambda rec: rec.get("phase") == rl.PROGRESSING, lambda: fault(api)))
    if at_end is not None:
        clock.hooks.append((lambda rec: rec.get("phase") == rl.ROLLED_BACK, lambda: at_end(v)))
    with structlog.testing.capture_logs() as logs:
        res = v.run()
    assert res.state.phase == rl.ROLLED_BACK and res.exit_code == 1, res.state
    assert routes(api) == [[("stable", 100), ("canary", 0)]]  # traffic first, whatever the canary subset's tries
    assert not [w for w in api.writes if w[1].endswith("/m0-gateway")]  # another object's route: never written
    return res, logs, v


def _kept(logs: list[dict]) -> list[dict]:
    return [e for e in logs if e["event"] == "rollback.canary_subset_kept"]


def test_promotes_rollback_tries_the_canary_subset_again_where_its_write_met_a_503_and_points_it(api: Any) -> None:
    """The DestinationRule's write answers 503 to the rollback's first try (every retry of the client's own), then
    answers: promote said it once and exited, the canary subset on v2, the gateway's 10% on the version rolled back.
    Now the try says which it was and when the next comes, and the second, 0.5 s later, points it."""
    def mended(v: Any) -> None:  # while promote waits for its second try, the 503s pass
        with api.handler.lock:
            api.handler.faults.clear()

    _, logs, _ = _rolled_back_with_a_split_elsewhere(
        api, lambda api: api.fail_next(503, times=10_000, methods=("PUT",), plural=DR), at_end=mended)
    (kept,) = _kept(logs)
    assert (kept["attempt"], kept["attempts"], kept["next"]) == (1, SUBSET_HOME_TRIES, "promote tries again in 0.5 s")
    assert "503" in kept["error"], kept
    (moved,) = [e for e in logs if e["event"] == "rollback.canary_subset_repointed"]
    assert moved["other_virtual_service"] == "ml/m0-gateway", moved
    assert subsets(api) == {"stable": "v1", "canary": "v1"}
    # traffic first: the end's line (and its post) come before the tries
    events = [e["event"] for e in logs]
    assert events.index("rollback.completed") < events.index("rollback.canary_subset_repointed")


def test_promotes_rollback_whose_canary_subset_write_always_fails_tries_eight_times_then_says_act_by_hand(
        api: Any) -> None:
    """Every PUT of the DestinationRule answers 503: eight tries, each said with its attempt, the backoff between
    them on promote's clock (0.5 + 1 + 2 + 4 + 8 + 10 + 10 s), the last one "act by hand"; the canary subset left on
    v2, stable 100% on the route, exit 1 as the rollback decided."""
    clock_at: list[float] = []

    def fault(api: Any) -> None:
        api.fail_next(503, times=10_000, methods=("PUT",), plural=DR)

    def at_end(v: Any) -> None:
        clock_at.append(v.clock.now())

    _, logs, v = _rolled_back_with_a_split_elsewhere(api, fault, at_end=at_end)
    kept = _kept(logs)
    assert [k["attempt"] for k in kept] == list(range(1, SUBSET_HOME_TRIES + 1)), kept
    assert [k["next"] for k in kept][-1] == "promote's last try: act by hand (hint)", kept
    assert [k["next"] for k in kept][:-1] == [f"promote tries again in {s:g} s" for s in (0.5, 1, 2, 4, 8, 10, 10)]
    assert kept[-1]["hint"].startswith("kubectl -n ml patch virtualservice m0-gateway"), kept[-1]
    assert subsets(api) == {"stable": "v1", "canary": "v2"}
    assert not [e for e in logs if e["event"] == "rollback.canary_subset_repointed"]
    assert v.clock.now() - clock_at[0] >= 35.5 - 0.25, (v.clock.now(), clock_at)


def test_promotes_rollback_whose_canary_subset_write_is_refused_for_good_is_not_tried_again(api: Any) -> None:
    """An admission webhook's 403 on the DestinationRule: a refusal for good, said once as before (no `attempt`),
    and not tried again: one try's PUTs only."""
    _, logs, _ = _rolled_back_with_a_split_elsewhere(
        api, lambda api: api.fail_next(403, times=10_000, methods=("PUT",), plural=DR, message="denied by policy"))
    (kept,) = _kept(logs)
    assert "403" in kept["error"] and "attempt" not in kept, kept
    assert len([w for w in api.writes if w[0] == "PUT" and "/destinationrules/" in w[1] and w[2] == 403]) == 1
    assert subsets(api) == {"stable": "v1", "canary": "v2"}


def test_a_signal_during_promotes_canary_subset_tries_ends_them_and_traffic_stays_at_stable(api: Any) -> None:
    """SIGTERM arrives while promote waits for its second try (every PUT of the DestinationRule answering 503): no
    try follows, the last failure said once more with `next` naming the signal and "act by hand"; stable 100% on
    the route as the rollback wrote it, nothing else written."""
    seen: list[int] = []

    def at_end(v: Any) -> None:
        seen.append(len(api.writes))
        v.interrupted_by = "SIGTERM"
        v.stop.set()

    _, logs, _ = _rolled_back_with_a_split_elsewhere(
        api, lambda api: api.fail_next(503, times=10_000, methods=("PUT",), plural=DR), at_end=at_end)
    kept = _kept(logs)
    assert [(k["attempt"], k["next"]) for k in kept] == [
        (1, "promote tries again in 0.5 s"),
        (1, "interrupted (SIGTERM): promote tries no more: act by hand (hint)")], kept
    assert [w for w in api.writes[seen[0]:] if "/events" not in w[1]] == [], "written after the signal"
    assert subsets(api) == {"stable": "v1", "canary": "v2"}


def test_a_try_whose_read_of_the_route_fails_is_spent_and_said_with_its_attempt(api: Any) -> None:
    """After the first try's 503, every read of the VirtualServices answers 503 too: each later try reads the route
    first (its record must still be this rollout's end), fails there, and is said with its attempt and the route's
    words (`say_subset_unread`, the controller's line); the eighth is the last. Stable 100% untouched."""
    def unreadable(v: Any) -> None:
        with api.handler.lock:
            api.handler.faults.clear()
        api.fail_next(503, times=10_000, methods=("GET",), plural="virtualservices")

    _, logs, _ = _rolled_back_with_a_split_elsewhere(
        api, lambda api: api.fail_next(503, times=10_000, methods=("PUT",), plural=DR), at_end=unreadable)
    kept = _kept(logs)
    assert [k["attempt"] for k in kept] == list(range(1, SUBSET_HOME_TRIES + 1)), kept
    assert all(k["note"].startswith("the route could not be read") for k in kept[1:]), kept
    assert kept[-1]["next"] == "promote's last try: act by hand (hint)", kept[-1]
    assert subsets(api) == {"stable": "v1", "canary": "v2"}


def test_the_fail_safes_rollback_tries_the_canary_subset_again_too(api: Any) -> None:
    """The rollback's own write of the route meets 503s past its retries (`rollout.failed`): the fail-safe
    (`to_stable`) writes stable 100%, and its canary-subset re-pointing, whose DestinationRule write met a 503, is
    tried again as the plain rollback's is (`subset_kept` passed to `to_stable`; 1050's left-over, 1054)."""
    def fault(api: Any) -> None:
        api.fail_next(503, times=10_000, methods=("PUT",), plural=DR)
        # past the run's own write and its retries, not past the fail-safe's first attempt (a count, not a time)
        api.fail_next(503, times=6, methods=("PUT", "PATCH"), plural="virtualservices")

    def mended(v: Any) -> None:
        with api.handler.lock:
            api.handler.faults.clear()

    _, logs, _ = _rolled_back_with_a_split_elsewhere(api, fault, at_end=mended)
    events = [e["event"] for e in logs]
    assert "rollout.failed" in events, events  # the run's write failed: the fail-safe wrote the end
    (kept,) = _kept(logs)
    assert (kept["attempt"], kept["next"]) == (1, "promote tries again in 0.5 s"), kept
    assert events.index("rollback.completed") < events.index("rollback.canary_subset_repointed")
    assert subsets(api) == {"stable": "v1", "canary": "v1"}
