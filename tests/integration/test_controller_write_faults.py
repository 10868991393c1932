"""One failed write at every point of a rollout: each write the controller makes for a rollout (its
VirtualService, DestinationRule, status, finalizer, history) in turn answers 409 or 500 without
landing, or lands and answers 504 (its answer lost). The process goes on (kills are
test_kill_points.py's). Every rollout must end with stable 100%, its record and status agreeing, its
stable subset on what its end says, and the slow canary never promoted. With watches and a fake clock,
against the strict API emulator; six rollouts at once, each with its own faulty write. The three good
(v2) rollouts make the same writes in the same order, as do the three slow (v3) ones, so one run fails
each rollout's k-th write with its own fault: 409, 500 or a lost answer on a promotion and on a
rollback. One run per k covers every fault on every write (one run per fault and k took 2.7 min of the
suite here, two runs per k of four rollouts 1.7, this 1.0; 429 takes 500's path, `kube.is_transient`, and held).

Which writes: a fault-free run first lists each rollout's writes, tick by tick (`_plan`). A look that neither
moves nor ends makes the same writes as the step's look before it (its record on the VirtualService, its
status), in the same state: those repeats are one write each, the first look of each step standing for them
(decision 884). Every other write is failed in its own run, and a promotion's and a rollback's k's run side by
side (each rollout has its own k), so the runs are as many as the longer list.

The controller runs as `controller run` does: its history writes made by its writer threads
(`canary.side_writes`, decision 890), after each tick waited for (`SideWriter.idle`). A history write may land
before or after the tick's own writes of the same rollout, so a write is named by its lane and its place in it
(`Fault`: the tick's writes in the order made, the history's in the order queued; decision 940), never by its
place among all the rollout's writes, which changed from run to run."""

from __future__ import annotations

import json
import re
import threading
from typing import Any

import pytest

from canary import rollout as rl
from canary.sandbox import kubeapi
from canary.sandbox.promserver import PromServer
from canary.side_writes import SideWriter
from tests.integration.test_controller_watch import ISTIO, caught_up, create, make, status
from tests import fleet
from tests.support.prom import HistoryPool

pytestmark = pytest.mark.integration
# per rollout: its canary version (v2 is promoted, v3 rolled back) and the fault its k-th write meets
FAULTS = {0: ("v2", "409"), 1: ("v3", "409"), 2: ("v2", "500"), 3: ("v3", "500"), 4: ("v2", "lost"),
          5: ("v3", "lost")}
VERSIONS = {i: v for i, (v, _) in FAULTS.items()}


@pytest.fixture(scope="module")
def prometheus(history_pool: HistoryPool) -> PromServer:
    return fleet.pooled_prometheus(history_pool, len(FAULTS))


def _rollout_of(path: str) -> int | None:
    m = re.search(r"/(?:virtualservices|destinationrules)/m(\d+)$|/canaryrollouts/r(\d+)(?:/status)?$"
                  r"|/configmaps/m(\d+)-canary-history$", path)
    if not m:
        return None
    return int(next(g for g in m.groups() if g is not None))


Write = tuple[int, str, str]  # (tick, method, what: the path's kind, e.g. "virtualservices" or "status")
Fault = tuple[str, int]  # (lane: "tick" or "history", n: the lane's n-th write of the rollout, 1-based)


def _lane(what: str) -> str:
    """The history ConfigMap's writes are made by the writer threads, every other write in the tick."""
    return "history" if what == "configmaps" else "tick"


def _what(path: str) -> str:
    parts = path.rstrip("/").split("/")
    return "status" if parts[-1] == "status" else parts[-2]


def _run(prometheus: Any, ks: dict[int, Fault], trace: dict[str, Any] | None = None) -> list[str]:
    """One run of the six rollouts, rollout i's write `ks[i]` failed with its fault (none where absent).
    With `trace`, no fault is asked: it gets each rollout's writes (`writes`: {i: [Write]}) and its state after
    each tick (`states`: {i: [(record phase, step, weights)]})."""
    import time

    from tests.integration.test_controller_scale import Clock

    api = fleet.start_api(len(FAULTS))
    clock = Clock(time.time())
    op, stop, client = make(api, prometheus, clock, side_writes=SideWriter())
    counts: dict[tuple[int, str], int] = {}
    hit: list[str] = []
    tick = [0]
    writes: dict[int, list[Write]] = {i: [] for i in VERSIONS}
    states: dict[int, list[tuple[Any, ...]]] = {i: [] for i in VERSIONS}
    real = api.handler._serve
    lock = threading.Lock()  # the tick's worker and the writer threads count

    def serve(method: str, request: Any, kind: Any) -> Any:
        i = _rollout_of(request.url.path) if method in ("PUT", "PATCH", "POST", "DELETE") else None
        if i is None:
            return real(method, request, kind)
        what = _what(request.url.path)
        lane = _lane(what)
        with lock:
            counts[i, lane] = counts.get((i, lane), 0) + 1
            writes[i].append((tick[0], method, what))
            n = counts[i, lane]
        if (lane, n) != ks.get(i):
            return real(method, request, kind)
        mode = FAULTS[i][1]
        hit.append(f"r{i} {mode} {method} {request.url.path}")
        if mode == "lost":
            real(method, request, kind)
            raise kubeapi.ApiError(504, "Timeout", "injected: landed, answer lost")
        code = int(mode)
        raise kubeapi.ApiError(code, {409: "Conflict", 429: "TooManyRequests"}.get(code, "InternalError"),
                               f"injected: HTTP {code}")

    api.handler._serve = serve  # type: ignore[method-assign]
    problems: list[str] = []
    try:
        for i, v in VERSIONS.items():
            create(api, i, v)
        def one_tick() -> None:
            caught_up(api, op)
            op.tick()
            assert op.side.idle(60), "the side writes never ended"  # a tick's history writes are its own
            clock.t += 1.0
            if trace is not None:
                for i in VERSIONS:
                    o = api.get(ISTIO, "virtualservices", "ml", f"m{i}")
                    rec = json.loads(o["metadata"]["annotations"].get("modelcanary.dev/rollout") or "{}")
                    states[i].append((rec.get("phase"), rec.get("step"),
                                      tuple(d["weight"] for d in o["spec"]["http"][0]["route"])))
            tick[0] += 1

        for _ in range(150):
            one_tick()
            if all(status(api, f"r{i}").get("phase") in rl.TERMINAL for i in VERSIONS):
                break
        for _ in range(3):  # the status mirrors the end
            one_tick()
        for i, v in VERSIONS.items():
            o = api.get(ISTIO, "virtualservices", "ml", f"m{i}")
            w = [d["weight"] for d in o["spec"]["http"][0]["route"]]
            rec = json.loads(o["metadata"]["annotations"].get("modelcanary.dev/rollout") or "{}")
            dr = api.get(ISTIO, "destinationrules", "ml", f"m{i}")
            stable = [s["labels"]["version"] for s in dr["spec"]["subsets"] if s["name"] == "stable"][0]
            st = status(api, f"r{i}")
            phase = rec.get("phase")
            bad = []
            if w != [100, 0]:
                bad.append(f"weights {w}")
            if phase not in rl.TERMINAL:
                bad.append(f"record {phase}")
            if phase == rl.PROMOTED and v == "v3":
                bad.append("slow canary promoted")
            if stable != (v if phase == rl.PROMOTED else "v1"):
                bad.append(f"stable subset {stable} under {phase}")
            if st.get("phase") != phase:
                bad.append(f"status {st.get('phase')} vs record {phase}")
            if bad:
                problems.append(f"{FAULTS[i][1]} k={ks.get(i)} r{i} ({hit}): {', '.join(bad)}; "
                                f"reason={rec.get('reason', '')[:120]}")
        # a k past a rollout's last write meets nothing: the history's flushes follow the wall clock, so a run
        # makes a few writes more or fewer than the plan's (14-17 for a rollback, 36-39 for a promotion), and
        # its own last writes are failed by the plan's k's below them (every k of the end's state is kept)
        if trace is not None:
            trace.update(writes=writes, states=states)
    finally:
        stop.set()
        op.side.close(5)
        client.close()
        api.stop()
    return problems


def _canonical(writes: list[Write]) -> list[Write]:
    """`writes` in an order that does not depend on the threads: each tick's own writes, then its history's."""
    return sorted(writes, key=lambda w: (w[0], _lane(w[2]) == "history"))  # stable: each lane's order kept


def _faults(writes: list[Write], ks: list[int]) -> list[Fault]:
    """The k's of `_canonical(writes)` as (lane, n)."""
    seen: dict[str, int] = {}
    at: list[Fault] = []
    for _, _, what in writes:
        lane = _lane(what)
        seen[lane] = seen.get(lane, 0) + 1
        at.append((lane, seen[lane]))
    return [at[k - 1] for k in ks]


def _kept(writes: list[Write], states: list[tuple[Any, ...]]) -> list[int]:
    """The k's (1-based) of `writes` to fail: a write whose tick made the same writes in the same place of the
    same state (record phase, step, weights after the tick) as an earlier tick is that earlier write again."""
    by_tick: dict[int, list[tuple[str, str]]] = {}
    for t, method, what in writes:
        by_tick.setdefault(t, []).append((method, what))
    seen: set[tuple[Any, ...]] = set()
    kept: list[int] = []
    place: dict[int, int] = {}
    for k, (t, method, what) in enumerate(writes, start=1):
        place[t] = place.get(t, -1) + 1
        state = states[t] if t < len(states) else None
        sig = (state, tuple(by_tick[t]), place[t])
        if sig not in seen:
            seen.add(sig)
            kept.append(k)
    return kept


@pytest.fixture(scope="module")
def plan(prometheus: Any) -> list[dict[int, Fault]]:
    """The runs: each a {rollout: (lane, n)}, from a fault-free run's writes (see the module's docstring)."""
    # the process's first run makes more ticks and writes than every later one (19 ticks and 45 writes of a
    # promotion against 16 and 36, measured): planned from it, a third of the faults met no write (decision 944)
    assert _run(prometheus, {}) == []
    trace: dict[str, Any] = {}
    assert _run(prometheus, {}, trace) == []
    ordered = {i: _canonical(trace["writes"][i]) for i in VERSIONS}
    kept = {i: _kept(ordered[i], trace["states"][i]) for i in VERSIONS}
    for i, v in VERSIONS.items():
        n = len(ordered[i])
        assert n > (20 if v == "v2" else 10), (i, n)  # a promotion's and a rollback's writes, all of them
        kinds = {(m, w) for _, m, w in ordered[i]}
        assert kinds == {(m, w) for k in kept[i] for _, m, w in [ordered[i][k - 1]]}, i  # each kind failed
        assert {m for m, w in kinds if w == "configmaps"}, i  # the history's writes (off the tick) among them
    faults = {i: _faults(ordered[i], kept[i]) for i in VERSIONS}
    runs = max(len(ks) for ks in faults.values())
    return [{i: ks[j] for i, ks in faults.items() if j < len(ks)} for j in range(runs)]


# the runs, in chunks (one test of every k was the suite's longest, 2.5-3.5 min, and reported nothing until its
# end); a chunk past the plan's end has nothing to run
CHUNKS = 4


@pytest.mark.parametrize("chunk", range(CHUNKS))
def test_one_failed_write_anywhere_ends_with_stable_and_agreeing_records(prometheus: Any, plan: list[dict[int, Fault]],
                                                                          chunk: int) -> None:
    size = -(-len(plan) // CHUNKS)
    found: list[str] = []
    for ks in plan[chunk * size:(chunk + 1) * size]:
        found += _run(prometheus, ks)
    assert not found, "\n".join(found)
