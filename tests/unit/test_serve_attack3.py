"""`canary serve`, decision 105: a pass is spent by the confirm hook it grants, the state directory is
bounded, the names a caller sends cannot reach outside it, and `pre-rollout`'s gates answer within
`--answer-within`.

The rig of test_serve_attack2.py (`Service.handle`, a fake clock, a provider that answers at once, a
real store on disk). A gate that runs long is one that waits on an Event the test sets after it has the
answer, so no sleep decides a result.
"""

from __future__ import annotations

import json
import re
import threading
from pathlib import Path
from typing import Any

import pytest

from canary.policy import parse_policy
from canary.serve import NamedPolicy, Service
from tests.unit.test_serve_attack2 import POLICY, flagger, rig, to_promotion  # noqa: F401 (rig: a fixture)

ROOT = Path(__file__).resolve().parents[2]


def _looks_to_a_pass(svc: Service, clock: Any) -> None:
    """Rollout hooks 15 s apart until the open window (60 s) passes."""
    for _ in range(5):
        clock.t += 15
        status, doc = flagger(svc, "rollout")
        assert status == 200
        if doc["result"]["verdict"] == "pass":
            return
    raise AssertionError(doc["result"])


# ---- a pass is spent by the confirm hook it grants -------------------------------------------


def test_a_pass_grants_one_traffic_increase_and_one_promotion_never_a_replay(rig: Any) -> None:
    clock, _, service = rig
    svc = service()
    assert flagger(svc, "pre-rollout")[0] == 200
    assert flagger(svc, "confirm-traffic-increase")[0] == 200  # the first step, before any look
    _looks_to_a_pass(svc, clock)
    assert flagger(svc, "confirm-traffic-increase")[0] == 200
    status, doc = flagger(svc, "confirm-traffic-increase")  # replayed, or repeated: no look since
    assert status == 412, "one pass moved the canary up twice"
    assert "already granted a traffic increase" in doc["error"] and doc["field"] == "checksum"
    # Flagger's last step asks confirm-traffic-increase and then confirm-promotion after one look
    assert flagger(svc, "confirm-promotion")[0] == 200
    assert flagger(svc, "confirm-promotion")[0] == 412, "one pass promoted twice"
    _looks_to_a_pass(svc, clock)  # the next window's own pass grants again
    assert flagger(svc, "confirm-traffic-increase")[0] == 200
    assert json.loads((svc.store.path("flagger/ml/m", "c1")).read_text())["traffic_granted_look"] > 0


# ---- the state directory is bounded ----------------------------------------------------------


def test_a_full_state_directory_drops_the_oldest_finished_revision_and_refuses_when_all_are_live(rig: Any) -> None:
    clock, _, service = rig
    svc = service()
    svc.store.max_revisions = 3
    assert flagger(svc, "pre-rollout", checksum="old")[0] == 200
    clock.t += 200  # past POLICY's interval + no_data_deadline (180 s): "old"'s caller stopped
    assert flagger(svc, "pre-rollout", checksum="live1")[0] == 200
    assert flagger(svc, "pre-rollout", checksum="live2")[0] == 200
    assert flagger(svc, "pre-rollout", checksum="new1")[0] == 200, "the finished one makes room"
    assert svc.store.load("flagger/ml/m", "old") is None
    status, doc = flagger(svc, "pre-rollout", checksum="new2")
    assert status == 503, "a caller grew the state directory past its cap"
    assert "--max-revisions 3" in doc["error"] and "none more is finished" in doc["error"]
    assert sorted(p.name for p in svc.store.dir.glob("*.json")) == sorted(
        svc.store.path("flagger/ml/m", c).name for c in ("live1", "live2", "new1")), "no live one was dropped"
    assert flagger(svc, "rollout", checksum="live1")[0] == 200, "the revisions in progress go on"


@pytest.mark.parametrize("checksum", ["../../../etc/cron.d/x", "a/b", "c1\x00", ".hidden", "x" * 64, "a b"])
def test_a_revision_name_that_is_not_a_label_value_is_refused_and_stores_nothing(rig: Any, checksum: str) -> None:
    _, _, service = rig
    svc = service()
    status, doc = flagger(svc, "pre-rollout", checksum=checksum)
    assert (status, doc["field"]) == (400, "checksum"), doc
    status, doc = svc.handle("GET", "/api/v1/argo/measure", "namespace=ml&rollout=m&model=m&stableVersion=v1&"
                             f"canaryVersion=v2&revision={checksum.replace(chr(0), '%00').replace(' ', '+')}", b"",
                             None)
    assert (status, doc["field"]) == (400, "revision"), doc
    assert not list(svc.store.dir.iterdir())


# ---- pre-rollout's gates answer within --answer-within ---------------------------------------


class SlowGates:
    """A gate run that ends when the test sets `release` (at the latest 30 s on), and passes."""

    runs = 0
    release = threading.Event()

    def __init__(self, cfg: Any, **kw: Any) -> None:
        type(self).runs += 1

    def preflight(self) -> dict[str, Any]:
        type(self).release.wait(30)
        return {"checks": ["ready", "warm-up 2/2"]}


@pytest.fixture
def slow_gates() -> Any:
    SlowGates.runs, SlowGates.release = 0, threading.Event()
    yield SlowGates
    SlowGates.release.set()


def test_a_gate_run_longer_than_answer_within_is_a_503_and_the_next_pre_rollout_reads_its_result(
        rig: Any, slow_gates: Any) -> None:
    clock, _, service = rig
    svc = service(answer_within_s=0.3, policy={**POLICY, "gates": {"triton": {"warmup_requests": 2}}})
    svc.gates = slow_gates
    status, doc = flagger_triton(svc)
    assert status == 503, "the gates held the call past the caller's timeout"
    assert doc["result"]["gates"] != "passed" and "--answer-within" in doc["result"]["reason"]
    assert flagger(svc, "confirm-traffic-increase")[0] == 412, "no traffic before the gates passed"
    slow_gates.release.set()
    svc.answer_within_s = 30  # the next call waits for the run's end, however loaded this machine is
    status, doc = flagger_triton(svc)
    assert (status, doc["result"]["gates"]) == (200, "passed"), doc
    assert slow_gates.runs == 1, "the second call joined the run, it did not start over"
    assert flagger(svc, "confirm-traffic-increase")[0] == 200


def flagger_triton(svc: Service, checksum: str = "c1") -> tuple[int, dict[str, Any]]:
    body = {"name": "m", "namespace": "ml", "phase": "Progressing", "checksum": checksum,
            "metadata": {"model": "m", "stableVersion": "m-primary", "canaryVersion": "m",
                         "tritonCanary": "127.0.0.1:1", "tritonStable": "127.0.0.1:2"}}
    return svc.handle("POST", "/api/v1/flagger/pre-rollout", "", json.dumps(body).encode(), "application/json")


# ---- every event serve logs is documented ------------------------------------------------------


def test_every_event_canary_serve_logs_is_in_readmes_log_events_table() -> None:
    table = (ROOT / "docs" / "reference" / "events.md").read_text()  # the README's "Log events", moved there
    documented = set(re.findall(r"`([a-z_]+\.[a-z_.]+)`", table))
    call = re.compile(r"\.(?:info|warning|error|critical)\(\s*\"([a-z_]+\.[a-z_]+)\"")
    logged = {m.group(1) for p in [*(ROOT / "canary").glob("serve*.py"), ROOT / "canary" / "cli_serve.py"]
              for m in call.finditer(p.read_text())}
    assert logged and not logged - documented, f"logged but not in docs/reference/events.md: {logged - documented}"


def test_a_policy_no_longer_loaded_makes_its_revisions_finished(tmp_path: Path) -> None:
    from canary.serve_session import new_session
    from canary.serve_store import SessionStore

    svc = Service(policies={"p": NamedPolicy("p", parse_policy(POLICY), tmp_path)}, metrics=object(),
                  store=SessionStore(tmp_path / "s"), clock=lambda: 1000.0)
    s = new_session(key="k", revision="r", policy="gone", model="m", namespace="ml", stable_version="a",
                    canary_version="b", now=1000.0)
    assert svc._finished(s, 1000.0) and not svc._finished(s.__class__(**{**s.__dict__, "policy": "p"}), 1000.0)


def _gates_ended_unread(rig: Any, slow_gates: Any) -> tuple[Any, Service]:
    """A service whose revision c1's gates outlasted its pre-rollout (503) and then ended, their result unread."""
    clock, _, service = rig
    svc = service(answer_within_s=0.3, policy={**POLICY, "gates": {"triton": {"warmup_requests": 2}}})
    svc.gates = slow_gates
    assert flagger_triton(svc)[0] == 503
    (run,) = svc.gate_runs._runs.values()
    slow_gates.release.set()
    assert run.done.wait(30)
    return clock, svc


def test_a_gate_result_older_than_a_window_is_not_used_the_gates_run_again(rig: Any, slow_gates: Any) -> None:
    clock, svc = _gates_ended_unread(rig, slow_gates)
    clock.t += 181  # POLICY's interval + no_data_deadline after the run ended: it says little about now
    svc.answer_within_s = 30
    assert flagger_triton(svc)[0] == 200
    assert slow_gates.runs == 2, "a stale gate result let the canary in"


class BrokenGates(SlowGates):
    def preflight(self) -> dict[str, Any]:
        raise KeyError("a bug in the gate")


def test_a_gate_that_breaks_is_a_500_and_the_next_call_runs_it_again(rig: Any) -> None:
    _, _, service = rig
    svc = service(answer_within_s=30, policy={**POLICY, "gates": {"triton": {"warmup_requests": 2}}})
    svc.gates, BrokenGates.runs = BrokenGates, 0
    status, doc = flagger_triton(svc)
    assert status == 500 and "KeyError" in doc["error"]
    assert not svc.gate_runs._runs, "the broken run is forgotten"
    status, doc = flagger_triton(svc)
    assert status == 500 and "KeyError" in doc["error"] and BrokenGates.runs == 2, "the next call ran it again"


def test_the_state_cap_never_drops_a_revision_a_call_holds(tmp_path: Path) -> None:
    """`SessionStore.create` with the directory full: a finished revision whose lock a call holds (its
    look under way) is not deleted under it; the new revision is refused (StoreFull) until that call
    is done, and then it makes room."""
    from canary.serve_session import new_session
    from canary.serve_store import SessionStore, StoreFull

    def session(revision: str) -> Any:
        return new_session(key="flagger/ml/m", revision=revision, policy="p", model="m", namespace="ml",
                           stable_version="v1", canary_version="v2", now=1.0, step="")

    store = SessionStore(tmp_path / "state", max_revisions=1)
    store.create(session("old"), finished=lambda s: True)
    with store.lock("flagger/ml/m", "old"):
        with pytest.raises(StoreFull):
            store.create(session("new"), finished=lambda s: True)
        assert store.load("flagger/ml/m", "old") is not None and store.load("flagger/ml/m", "new") is None
    assert [s.revision for s in store.create(session("new"), finished=lambda s: True)] == ["old"]
    assert store.load("flagger/ml/m", "new") is not None


def test_a_gate_result_is_kept_as_long_as_its_own_policy_says_whatever_another_policy_calls(
        tmp_path: Path, slow_gates: Any) -> None:
    """Two policies on one server: "slow" (interval 10m: a gate result holds 12 min) and "fast" (interval 10s,
    no_data_deadline 20s: 30 s). A pre-rollout of a "fast" revision dropped every run ended more than ITS 30 s
    ago, the "slow" revision's too: that revision's next pre-rollout (Flagger asks each interval) started
    its gates over, and with "fast" calls in between, a gate run longer than --answer-within never passed."""
    from canary.serve_store import SessionStore

    gates = {"gates": {"triton": {"warmup_requests": 2}}}
    slow = {**POLICY, **gates, "analysis": {**POLICY["analysis"], "interval": "10m"}}
    fast = {**POLICY, **gates, "analysis": {**POLICY["analysis"], "interval": "10s", "look_every": "5s"},
            "failure": {**POLICY["failure"], "no_data_deadline": "20s"}}
    clock = [1_000_000.0]
    svc = Service(policies={n: NamedPolicy(n, parse_policy(p), tmp_path) for n, p in (("slow", slow), ("fast", fast))},
                  metrics=object(), store=SessionStore(tmp_path / "s"), clock=lambda: clock[0], answer_within_s=0.3)
    svc.gates = slow_gates

    def pre_rollout(name: str, policy: str) -> int:
        body = {"name": name, "namespace": "ml", "phase": "Progressing", "checksum": "c1",
                "metadata": {"model": name, "stableVersion": f"{name}-primary", "canaryVersion": name,
                             "policy": policy, "tritonCanary": "127.0.0.1:1", "tritonStable": "127.0.0.1:2"}}
        return svc.handle("POST", "/api/v1/flagger/pre-rollout", "", json.dumps(body).encode(), "application/json")[0]

    assert pre_rollout("a", "slow") == 503  # the run goes on past the call
    (run,) = svc.gate_runs._runs.values()
    slow_gates.release.set()
    assert run.done.wait(30)
    clock[0] += 60
    assert pre_rollout("b", "fast") in (200, 503)  # another policy's revision: its own run
    clock[0] += 60  # "a"'s next pre-rollout, 2 min after its run ended: within its own 12 min
    svc.answer_within_s = 30
    assert pre_rollout("a", "slow") == 200
    assert slow_gates.runs == 2, "the slow revision's gates ran again (1 run for 'a' and 1 for 'b' is 2)"


def test_a_gate_run_of_a_spec_left_for_another_is_not_used_when_that_spec_comes_back(rig: Any, slow_gates: Any) -> None:
    """Decision 441: c1's gates outlast its pre-rollout (503) and end unread; the spec is edited (Flagger analyses
    c2 from weight 0), then reverted within a window: c1's next pre-rollout read the old run's result, a run whose
    warm-up went on while c2's pods were behind the canary's URL. That analysis of c1 is over: its gates run again."""
    clock, svc = _gates_ended_unread(rig, slow_gates)
    svc.answer_within_s = 30
    clock.t += 15
    assert flagger_triton(svc, "c2")[0] == 200  # c2's own run
    clock.t += 15
    assert flagger_triton(svc)[0] == 200
    assert slow_gates.runs == 3, "c1's run of its earlier analysis was taken"  # 2 without the change


def test_which_revision_of_a_canary_was_called_is_written_on_a_change_and_pruned_by_both_clocks(tmp_path: Path) -> None:
    """Decision 441's record (`serve_current`): written only when the called revision changes, never counted as a
    session, and deleted with the sessions once idle by both clocks (either one ahead alone deletes nothing)."""
    import os

    from canary.serve_store import SessionStore

    store = SessionStore(tmp_path / "s")
    assert store.others_called("flagger/ml/m", "a", 1000.0) == {}
    p = store.current.path("flagger/ml/m")
    written = p.stat().st_mtime_ns
    assert store.others_called("flagger/ml/m", "a", 1010.0) == {"a": 1000.0} and p.stat().st_mtime_ns == written
    assert store.others_called("flagger/ml/m", "b", 1020.0) == {"a": 1000.0}
    assert store.others_called("flagger/ml/m", "a", 1030.0) == {"a": 1000.0, "b": 1020.0}
    assert not list(store.dir.glob("*.json")), "not a session: --max-revisions does not count it"
    os.utime(p, (0, 0))  # the host's clock: idle for ever
    assert store.prune(older_than_s=600, now=1100.0) == 0 and p.exists(), "the service's clock: called 70 s ago"
    store.prune(older_than_s=600, now=5000.0)
    assert not p.exists()
    p.write_text("{not json")  # unreadable: taken as empty, rewritten
    assert store.others_called("flagger/ml/m", "c", 6000.0) == {} and store.others_called("flagger/ml/m", "d",
                                                                                             6001.0) == {"c": 6000.0}


def test_which_revision_was_called_is_kept_for_no_more_canaries_than_the_store_holds_sessions_of(tmp_path: Path) -> None:
    """Decision 474: every call of a Flagger Canary wrote its `serve_current` record before the call was judged,
    a refused one too (a full store's 503, a 412 for a Canary never looked at), so a caller naming a new Canary at
    each call grew the state directory without bound (decision 314 keeps refusals from storing sessions). Past
    `--max-revisions` records, those of Canaries with no session stored are dropped: such a record can restart
    nothing (a session stored later is written after every mark in it); one whose Canary has a session is kept."""
    from canary.serve_session import new_session
    from canary.serve_store import SessionStore

    store = SessionStore(tmp_path / "s", max_revisions=3)
    store.others_called("flagger/ml/kept", "a", 1000.0)
    s = new_session(key="flagger/ml/kept", revision="a", policy="default", model="m", namespace="ml",
                    stable_version="s", canary_version="c", now=1000.0)
    store.save(s)
    for i in range(40):
        store.others_called(f"flagger/ml/m{i}", "a", 1001.0 + i)
    assert len(list(store.dir.glob("*.key"))) <= 4, "one record per Canary ever named"  # 41 without the change
    store.others_called("flagger/ml/kept", "b", 2000.0)
    assert store.others_called("flagger/ml/kept", "a", 2001.0) == {"a": 1000.0, "b": 2000.0}, "kept: it has a session"
