"""A promotion's finish against a rollback, one Kubernetes API call at a time (tests/support/interleave.py).

The finish (`rl.finish_promotion`, carried out by `execute` as `canary promote`, the controller and the
sweep do, guarded on the PROMOTING record) races a rollback of the same rollout: on-call's (`canary
rollback`: guarded on the record it read, it reads again and decides again when refused, so it wins
over a rollout in progress but not over a promotion recorded first), or a guarded one decided on the
PROMOTING record read earlier (the controller's stable-100% write from the recorded state, `to_stable(expect=...)`; the
sweep ending a superseded rollout, `sweep.end`). Whatever the order of their reads and writes, and
wherever either process dies, the route must end consistent: promoted with the stable subset on the
new version, or rolled back / aborted with it on the old one, 100/0 either way (or still PROMOTING at
0/100, its canary subset on the new version, for the next finisher). Real API emulator, real IstioRouter.
"""

from __future__ import annotations

import copy
import itertools
from dataclasses import replace
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from canary import rollout as rl
from canary import sweep
from canary.errors import AlreadyStable, RoutingConflict
from canary.logs import get
from canary.model import Target, Weights
from canary.reconcile import execute, to_stable
from canary.routing import patch
from canary.routing.istio import IstioRouter
from canary.runner import oncall_action
from tests import fleet
from tests.support.interleave import Killed, Schedule
from tests.support.killpoints import GROUP, cluster_state

pytestmark = pytest.mark.integration

TARGET = Target(namespace="ml", virtual_service="m0", model="m0", stable_version="v1", canary_version="v2")
PROMOTING = rl.RolloutState(model="m0", stable_version="v1", canary_version="v2", phase=rl.PROMOTING,
                            weights=Weights(0, 100), step=2, started_at=1.0, owner="promote host/1")
TEXT = PROMOTING.to_json()


@pytest.fixture(scope="module")
def cluster() -> Iterator[tuple[Any, Any]]:
    api = fleet.start_api(1)
    client = api.api_client()
    try:
        yield api, client
    finally:
        client.close()
        api.stop()


# id(the module's emulator) -> its VirtualService and DestinationRule as `_promoting` first wrote them
_START: dict[int, list[dict[str, Any]]] = {}


def _promoting(api: Any, client: Any) -> None:
    """Every steps passed: the canary subset on v2 with 100% of the weights, PROMOTING recorded. Written through
    IstioRouter the first time; then both objects are put back as that left them (the same start: the ~500 runs
    of the exhaustive tests below each wrote it again through the router, half of each run's API calls)."""
    if (start := _START.get(id(api))) is not None:
        for obj in start:
            api.handler.put_object(obj)
        return
    _START[id(api)] = _written_promoting(api, client)


def _written_promoting(api: Any, client: Any) -> list[dict[str, Any]]:
    """PROMOTING written through IstioRouter over whatever the route holds; the VirtualService and DestinationRule
    it leaves."""
    import tenacity

    r = IstioRouter(client, wait=tenacity.wait_none())
    r.point_subset(TARGET, "stable", "v1")
    r.point_subset(TARGET, "canary", "v2")
    r.set_weights(TARGET, Weights(0, 100), state=TEXT)
    return [api.get(GROUP, plural, "ml", "m0") for plural in ("virtualservices", "destinationrules")]


def finisher(s: Schedule, client: Any) -> Callable[[], Any]:
    return lambda: execute(s.router(client, "P"), TARGET, *rl.finish_promotion(PROMOTING, 10.0), log=get(),
                           expect=TEXT)


def oncall(s: Schedule, client: Any) -> Callable[[], Any]:
    return lambda: oncall_action(s.router(client, "R"), TARGET, rl.Rollback(11.0, "on-call"), log=get())


def controller_stable(s: Schedule, client: Any) -> Callable[[], Any]:
    """The controller's stable 100% from the recorded PROMOTING state (a rescue, a failure), guarded on it."""
    return lambda: to_stable(s.router(client, "R"), TARGET, PROMOTING, reason="spec changed", log=get(), now=11.0,
                             expect=TEXT, budget_s=0, attempts=1)


def sweep_superseded(s: Schedule, client: Any) -> Callable[[], Any]:
    """The sweep ending a rollout whose CanaryRollout asks for something else now, guarded on the record."""
    found = sweep.Found("ml", "m0", PROMOTING, TEXT, reason="superseded", superseded=True)
    return lambda: sweep.end(s.router(client, "R"), found, log=get(), now=11.0)


ROLLBACKS = {"oncall": oncall, "controller": controller_stable, "sweep": sweep_superseded}


def run(cluster: Any, rollback: str, steps: list[Any], killed: tuple[str, ...] = ()) -> tuple[Schedule, dict[str, Any]]:
    api, client = cluster
    _promoting(api, client)
    s = Schedule()
    results = s.run({"P": finisher(s, client), "R": ROLLBACKS[rollback](s, client)}, steps, killed=killed)
    return s, results


def problems(api: Any, results: dict[str, Any]) -> list[str]:
    weights, state, stable, canary = cluster_state(api)
    phase = state.get("phase")
    out = []
    if phase == rl.PROMOTED and (weights != [100, 0] or stable != "v2"):
        out.append(f"promoted at {weights} with the stable subset on {stable}")
    if phase in (rl.ROLLED_BACK, rl.ABORTED) and (weights != [100, 0] or stable != "v1"):
        out.append(f"{phase} at {weights} with the stable subset on {stable}")
    if phase == rl.PROMOTING and (weights != [0, 100] or canary != "v2"):
        out.append(f"promoting at {weights} with the canary subset on {canary}")
    ended = results.get("R")  # a rollback that reports it landed is what the route records (a promotion it
    if isinstance(ended, rl.RolloutState) and ended.phase != phase:  # overwrote may report promoted)
        out.append(f"the rollback returned {ended.phase}, the route records {phase}")
    return out


def trace(s: Schedule) -> str:
    return " ".join(f"{who}:{label}" for who, label in s.calls)


# ---- the interleavings, one by one ---------------------------------------------------------------


@pytest.mark.parametrize("rollback", sorted(ROLLBACKS))
def test_a_rollback_landing_between_the_finishs_recheck_and_its_weights_wins(cluster: Any, rollback: str) -> None:
    """The reviewer's interleaving: the stable subset re-pointed at v2 and checked again, then a whole
    rollback, then the finish's 100/0 PROMOTED: that write is guarded on the PROMOTING record and is
    refused; the rollback's own writes (stable subset back on v1 before and after its 100/0) stand."""
    s, res = run(cluster, rollback, [("P", "PUT dr"), ("P", "GET vs"), ("P", 1), ("R", None)])
    assert s.of("P")[-2:] == ["GET vs", "GET dr"], trace(s)  # the re-check read, before the weights write
    api, _ = cluster
    assert problems(api, res) == [], trace(s)
    weights, state, stable, _ = cluster_state(api)
    assert state["phase"] == (rl.ROLLED_BACK if rollback == "oncall" else rl.ABORTED) and stable == "v1"
    assert isinstance(res["P"], RoutingConflict)


@pytest.mark.parametrize("rollback", ["controller", "sweep"])
def test_a_guarded_rollback_decided_on_promoting_never_repoints_a_finished_promotion(cluster: Any,
                                                                                       rollback: str) -> None:
    """The controller or the sweep read PROMOTING and decided stable 100%; the owner finished the promotion
    before their first write. Their re-pointing of the stable subset at v1 (before the weights) was not
    guarded: it landed, the weights write was then refused (the record had changed), and PROMOTED stayed
    recorded with the stable subset on v1: every request served by the old version, the route saying
    promoted. Now the re-pointing is guarded on the record too: refused, nothing written."""
    s, res = run(cluster, rollback, [("P", None), ("R", None)])
    api, _ = cluster
    assert problems(api, res) == [], trace(s)
    assert cluster_state(api)[1]["phase"] == rl.PROMOTED
    assert isinstance(res["R"], RoutingConflict) and "PUT dr" not in s.of("R"), trace(s)


@pytest.mark.parametrize("rollback", ["controller", "sweep"])
def test_a_guarded_rollbacks_repointing_landing_mid_finish_is_put_right(cluster: Any, rollback: str) -> None:
    """Its re-pointing at v1 lands after the finish re-pointed stable at v2 and checked the record, and
    before the finish's PROMOTED 100/0 lands; its own 100/0 is then refused. The promotion landed: the
    stable subset must select v2 again (the rollback's re-check undoes its write; the finish re-points
    after its weights write)."""
    s, res = run(cluster, rollback, [("P", "PUT dr"), ("R", "PUT dr"), ("P", None), ("R", None)])
    api, _ = cluster
    assert "PUT vs" in s.of("P"), trace(s)
    assert problems(api, res) == [], trace(s)
    assert cluster_state(api)[1]["phase"] == rl.PROMOTED and isinstance(res["R"], RoutingConflict)


@pytest.mark.parametrize("rollback", sorted(ROLLBACKS))
def test_a_finish_that_dies_after_a_late_repointing_leaves_no_rollback_on_the_new_version(cluster: Any,
                                                                                           rollback: str) -> None:
    """The finish checked the record (PROMOTING), then a whole rollback ran (stable subset on v1, 100/0,
    its superseding re-point), then the finish read the DestinationRule and wrote stable -> v2, and died
    before its re-check could undo it: rolled back (or aborted) recorded, every request on v2. The
    DestinationRule is now read before the record is checked: a rollback recorded after the check ends
    with a DestinationRule write after that read, so the late write fails its resourceVersion
    precondition (and its retry finds the record changed)."""
    s, res = run(cluster, rollback, [("P", "GET vs"), ("P", 1), ("R", None), ("P", "PUT dr")], killed=("P",))
    api, _ = cluster
    assert problems(api, res) == [], trace(s)
    assert isinstance(res["P"], Killed) and cluster_state(api)[2] == "v1"


@pytest.mark.parametrize("rollback", sorted(ROLLBACKS))
def test_a_rollback_that_dies_after_its_repointing_leaves_no_promotion_on_the_old_version(cluster: Any,
                                                                                          rollback: str) -> None:
    """The rollback pointed the stable subset back at v1 after the finish had pointed it at v2, and died
    before its 100/0; the finish's PROMOTED 100/0 then landed: promoted, every request on v1. The finish
    now points the stable subset at v2 once more after its weights write (guarded on PROMOTED,
    superseding any write prepared before)."""
    s, res = run(cluster, rollback, [("P", "PUT dr"), ("R", "PUT dr"), ("P", None)], killed=("R",))
    api, _ = cluster
    assert problems(api, res) == [], trace(s)
    assert cluster_state(api)[1]["phase"] == rl.PROMOTED and cluster_state(api)[2] == "v2"


def test_an_oncall_rollback_killed_after_its_repointing_over_a_finished_promotion(cluster: Any) -> None:
    """On-call read PROMOTING; the finish then ran to its end (PROMOTED, its last pointing included); the
    on-call's pointing of the stable subset at v1 landed, and the command was killed before its 100/0:
    promoted, every request on v1. The on-call's writes are now guarded on the record it read: that
    pointing is refused, it reads the route again, finds the promotion ended, and writes nothing (a
    finished promotion is not undone by a rollback: docs/decisions.md 94)."""
    s, res = run(cluster, "oncall", [("R", "GET dr"), ("P", None), ("R", "PUT dr")], killed=("R",))
    api, _ = cluster
    assert problems(api, res) == [], trace(s)
    assert [label for label in s.of("R") if label.startswith("PUT")] == [], trace(s)
    assert isinstance(res["R"], AlreadyStable) and "v2 is the stable version now and was not rolled back" in str(res["R"])
    assert cluster_state(api)[1]["phase"] == rl.PROMOTED and cluster_state(api)[2] == "v2"


def test_an_oncall_rollback_reads_again_a_record_written_after_its_read(cluster: Any) -> None:
    """The record changed between on-call's read and its first write (here the owner re-wrote PROMOTING,
    as a look or a resume does): the rollback is refused, reads the route again and rolls back the
    record as it is now, instead of writing over it a rollback of the one it read (losing what was
    recorded meanwhile)."""
    api, client = cluster
    _promoting(api, client)
    later = replace(PROMOTING, updated_at=5.0, history=({"at": 5.0, "phase": rl.PROMOTING, "weights": "0/100",
                                                          "what": "written after on-call's read"},))
    s = Schedule()
    owner = lambda: execute(s.router(client, "P"), TARGET, later, [rl.SetWeights(Weights(0, 100))], log=get(),  # noqa: E731
                            expect=TEXT)
    res = s.run({"P": owner, "R": oncall(s, client)}, [("R", "GET dr"), ("P", None), ("R", None)])
    assert problems(api, res) == [], trace(s)
    state = cluster_state(api)[1]
    assert state["phase"] == rl.ROLLED_BACK and cluster_state(api)[2] == "v1", trace(s)
    assert any(h["what"] == "written after on-call's read" for h in state["history"]), state["history"]
    assert s.of("R").count("GET vs") >= 3, trace(s)  # read, refused by its guard, read again


@pytest.mark.parametrize("rollback", sorted(ROLLBACKS))
def test_a_rollback_whose_100_0_lands_over_the_finishs_repointing_and_dies_is_followed_by_the_finish(
        cluster: Any, rollback: str) -> None:
    """The rollback checked the stable subset (on v1 already: nothing to write) and the record, then the
    finish pointed the subset at v2 and checked the record (still PROMOTING), then the rollback's 100/0
    landed (guarded on PROMOTING, which the DestinationRule write did not change) and the rollback died
    before its last pointing: rolled back (or aborted) recorded, every request on v2. The finish's 100/0
    is refused; it now points the subset as the end recorded meanwhile wants it, guarded on that record."""
    first = 3 if rollback == "oncall" else 5  # its read (on-call), its pointing and the check after it
    s, res = run(cluster, rollback, [("R", first), ("P", "PUT dr"), ("P", 2), ("R", "PUT vs")], killed=("R",))
    api, _ = cluster
    assert problems(api, res) == [], trace(s)
    assert cluster_state(api)[2] == "v1" and isinstance(res["P"], RoutingConflict), trace(s)


@pytest.mark.parametrize("rollback", sorted(ROLLBACKS))
def test_a_finish_that_dies_after_promoted_over_a_rollbacks_repointing_is_followed_by_the_rollback(
        cluster: Any, rollback: str) -> None:
    """The mirror image: the rollback pointed the stable subset back at v1 after the finish's pointing
    and checked the record (still PROMOTING); the finish's PROMOTED 100/0 landed and it died before its
    last pointing: promoted, every request on v1. The rollback's 100/0 is refused; it now points the
    subset at v2, as the promotion recorded wants (on-call then finds the rollout promoted)."""
    s, res = run(cluster, rollback, [("P", "PUT dr"), ("R", "PUT dr"), ("R", 2), ("P", "PUT vs")], killed=("P",))
    api, _ = cluster
    assert problems(api, res) == [], trace(s)
    assert cluster_state(api)[1]["phase"] == rl.PROMOTED and cluster_state(api)[2] == "v2", trace(s)


# ---- every interleaving of a few shapes ------------------------------------------------------------


def _alone(cluster: Any, rollback: str, who: str) -> int:
    s, _ = run(cluster, rollback, [(who, None)])
    return len(s.of(who))


@pytest.mark.parametrize("rollback", ["oncall", "controller"])
def test_every_placement_of_a_rollback_in_a_finish_and_every_death_ends_consistent(cluster: Any,
                                                                                   rollback: str) -> None:
    """The rollback as one block of API calls at each place among the finish's, then either process killed
    after each of its writes (a death after a read is one after the write before it); and the rollback as
    two blocks at each pair of places, split after its first read (its decision) or after any of its
    writes. The route ends consistent every time. A death is run once for each prefix it follows: a death
    before the rollback's block (or a death at the start) is the same run whichever place the block would
    have taken later. (About 520 runs of 15 ms.)"""
    api, _ = cluster
    s, _ = run(cluster, rollback, [("R", None)])
    r_calls = s.of("R")
    n_p, n_r = _alone(cluster, rollback, "P"), len(r_calls)
    bad = []
    killed_after: set[tuple[tuple[str, ...], str]] = set()
    for a in range(n_p + 1):
        order = "P" * a + "R" * n_r + "P" * (n_p - a)
        s, res = run(cluster, rollback, list(order))
        if found := problems(api, res):
            bad.append(f"{found}: {trace(s)}")
        deaths = [(i + 1, who) for i, (who, label) in enumerate(s.calls) if label.startswith("PUT")]
        for cut, victim in [(0, "P"), (0, "R"), *deaths]:
            survivor = "P" if victim == "R" else "R"
            prefix = tuple(who for who, _ in s.calls[:cut])
            if (prefix, victim) in killed_after:  # a death inside the finish's first block: the same run for
                continue  # every later place of the rollback (55 repeats with either; on-call's 94 deaths are 39 runs)
            killed_after.add((prefix, victim))
            s2, res2 = run(cluster, rollback, [*prefix, (survivor, None)], killed=(victim,))
            if found := problems(api, res2):
                bad.append(f"{victim} killed: {found}: {trace(s2)}")
    splits = [1, *(i + 1 for i, label in enumerate(r_calls[:-1]) if label.startswith("PUT"))]
    for cut in splits:
        for a, b in itertools.combinations(range(n_p + 1), 2):
            order = "P" * a + "R" * cut + "P" * (b - a) + "R" * (n_r - cut) + "P" * (n_p - b)
            s, res = run(cluster, rollback, list(order))
            if found := problems(api, res):
                bad.append(f"{found}: {trace(s)}")
    assert not bad, f"{len(bad)} inconsistent ends, e.g.\n" + "\n".join(bad[:5])


@pytest.mark.parametrize("rollback", sorted(ROLLBACKS))
def test_the_start_put_back_is_what_the_router_writes_after_any_end(cluster: Any, rollback: str) -> None:
    """`_promoting` puts back the start it first wrote instead of writing it again through IstioRouter: over the
    end of a run (promoted, rolled back or aborted, or left by a killed finish or rollback) the router's rewrite
    leaves the same objects, but for their versions (resourceVersion, generation) and the DestinationRule's
    `modelcanary.dev/subsets` mark (who pointed a subset, when), which canary writes and never reads."""
    api, client = cluster
    ends = [[("R", None), ("P", None)], [("P", "PUT dr"), ("R", "PUT dr"), ("P", None)]]
    for steps in ends:
        for killed in ((), ("P",), ("R",)):
            s, _ = run(cluster, rollback, steps, killed)
            written = _written_promoting(api, client)
            for was, now in zip(copy.deepcopy(_START[id(api)]), written):
                for obj in (was, now):
                    for field in ("resourceVersion", "generation"):
                        obj["metadata"].pop(field)
                    notes = obj["metadata"].get("annotations") or {}
                    notes.pop(patch.SUBSETS_ANNOTATION, None)
                    if not notes:
                        obj["metadata"].pop("annotations", None)
                assert now == was, (trace(s), killed)
