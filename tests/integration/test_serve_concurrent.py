"""Two calls for one Flagger Canary at once, against a real Prometheus (decision 303).

Flagger may call one webhook of a Canary twice at once: its client's retry after a timeout while the first
call is still being answered, two Flagger replicas during a leader change, a confirm-rollout gate pointed at
the rollout hook beside the rollout hook. The interleaving is forced, never timed: the first call's look is
held before its state write (`Held`) until the second call is seen waiting on the revision
(the store's count of the calls that hold or wait on it), then let go.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Iterator

import pytest

from canary.serve_http import ServeServer
from tests.integration.test_serve import Clock, _service, call, clock, flagger, prom  # noqa: F401 - fixtures

pytestmark = pytest.mark.integration
WAIT_S = 30.0  # a guard against a harness bug only: nothing waits for time to pass


class Held:
    """The service's store, whose next `save` waits at `go` once `hold()` is called (`entered` set when it does):
    a call held with the revision's session read and its answer judged, before its write. `hold("load")` holds
    the next `load` instead: a call held with the revision held, before it reads the session (a call that
    writes nothing: a confirm hook before any look)."""

    def __init__(self, store: Any) -> None:
        self.store, self.armed, self._save, self._load = store, "", store.save, store.load
        self.entered, self.go = threading.Event(), threading.Event()
        store.save, store.load = self.save, self.load

    def hold(self, at: str = "save") -> None:
        self.armed, self.entered, self.go = at, threading.Event(), threading.Event()

    def _wait(self, at: str) -> None:
        if self.armed == at:
            self.armed = ""
            self.entered.set()
            assert self.go.wait(WAIT_S), "never let go"

    def save(self, s: Any) -> None:
        self._wait("save")
        self._save(s)

    def load(self, key: str, revision: str) -> Any:
        self._wait("load")
        return self._load(key, revision)


@pytest.fixture
def rig(prom: tuple[Any, float], clock: Clock, tmp_path: Path) -> Iterator[tuple[ServeServer, Held]]:
    service = _service(prom[0], tmp_path / "state", clock, answer_within_s=60.0)
    held = Held(service.store)
    server = ServeServer(service).start()
    try:
        yield server, held
    finally:
        held.go.set()
        server.stop()


def _waiting(server: ServeServer, n: int) -> None:
    """Until `n` calls hold or wait on the Canary's one revision (the store's count), without sleeping."""
    store = server.service.store
    done = threading.Event()

    def watch() -> None:  # asked under the store's guard, as each call comes and goes
        while not done.is_set():
            with store._guard:
                if sum(slot.users for slot in store._locks.values()) >= n:
                    done.set()
                    return
            done.wait(0.001)

    t = threading.Thread(target=watch, daemon=True)
    t.start()
    t.join(WAIT_S)
    assert done.is_set(), f"never {n} calls on the revision"


def _twice(server: ServeServer, held: Held, hook: str, model: str = "good", at: str = "save",
           second_model: str | None = None) -> list[tuple[int, dict[str, Any]]]:
    """`hook` of Canary `model` called twice at once: the first held in its look (at `Held.hold`'s `at`) until the
    second waits on the revision. `second_model`: the model the second call names instead (same Canary, checksum)."""
    out: list[Any] = [None, None]

    def one(i: int) -> None:
        named = second_model if i == 1 and second_model is not None else model
        body = {"name": model, "namespace": "ml", "phase": "Progressing", "checksum": "6d8f9c7b5",
                "metadata": {"model": named, "stableVersion": "v1", "canaryVersion": "v2"}}
        out[i] = call(f"{server.url}/api/v1/flagger/{hook}", method="POST", body=body)

    held.hold(at)
    first = threading.Thread(target=one, args=(0,))
    first.start()
    assert held.entered.wait(WAIT_S)
    second = threading.Thread(target=one, args=(1,))
    second.start()
    _waiting(server, 2)
    held.go.set()
    first.join(WAIT_S)
    second.join(WAIT_S)
    return out


def test_a_rollout_call_made_twice_at_once_is_one_look_and_its_pass_grants_the_confirm_hooks(
        rig: tuple[ServeServer, Held], clock: Clock) -> None:
    server, held = rig
    assert flagger(server, "pre-rollout", "good")[0] == 200
    clock.t += 30
    assert flagger(server, "rollout", "good")[1]["result"]["verdict"] == "inconclusive"
    clock.t += 30  # the window covers the interval: this look passes
    (c1, d1), (c2, d2) = _twice(server, held, "rollout")
    assert (c1, d1["result"]["verdict"], d1["result"]["look"]) == (200, "pass", 2), d1
    assert (c2, d2["result"]["verdict"], d2["result"]["look"]) == (200, "pass", 2), d2  # the same look, answered twice
    # the state records the pass both calls were answered: Flagger's confirm hooks read it
    assert flagger(server, "confirm-traffic-increase", "good")[0] == 200
    assert flagger(server, "confirm-traffic-increase", "good")[0] == 412  # one pass, one traffic increase
    assert flagger(server, "confirm-promotion", "good")[0] == 200


def test_a_confirm_hook_called_twice_at_once_is_one_grant_answered_to_both(rig: tuple[ServeServer, Held],
                                                                          clock: Clock) -> None:
    server, held = rig
    assert flagger(server, "pre-rollout", "good")[0] == 200
    clock.t += 60
    assert flagger(server, "rollout", "good")[1]["result"]["verdict"] == "pass"
    # Flagger's retry after its own timeout: the first call's 200 went to a caller that gave up; the retry was the
    # replay's 412 ("already granted"), and the canary stayed at its weight until the next pass
    (c1, d1), (c2, d2) = _twice(server, held, "confirm-traffic-increase")
    assert (c1, c2) == (200, 200) and d1 == d2, (d1, d2)
    assert flagger(server, "confirm-traffic-increase", "good")[0] == 412  # a later call is a replay: one grant
    # the first step, at weight 0 before any look, the same way
    clock.t += 1
    (c1, d1), (c2, d2) = _twice(server, held, "confirm-traffic-increase", model="other")
    assert (c1, c2) == (200, 200) and "first step granted" in d2["result"]["reason"], (d1, d2)
    assert flagger(server, "confirm-traffic-increase", "other")[0] == 412


def test_a_rollout_call_made_again_just_after_a_pass_does_not_take_it_from_the_confirm_hooks(
        rig: tuple[ServeServer, Held], clock: Clock) -> None:
    server, _ = rig
    assert flagger(server, "pre-rollout", "good")[0] == 200
    clock.t += 60
    assert flagger(server, "rollout", "good")[1]["result"]["verdict"] == "pass"
    # the same tick's call again, once the first was answered (a second Flagger replica in a leader change, a
    # confirm-rollout gate pointed at the rollout URL): a look in the window the pass opened, nothing to show yet
    code, doc = flagger(server, "rollout", "good")
    assert (code, doc["result"]["verdict"], doc["result"]["look"]) == (200, "inconclusive", 2), doc
    code, doc = flagger(server, "confirm-traffic-increase", "good")
    assert code == 200 and doc["result"]["verdict"] == "pass" and "the pass of look 1" in doc["result"]["reason"], doc
    assert flagger(server, "confirm-traffic-increase", "good")[0] == 412  # one pass, one traffic increase
    # a later tick's look (Flagger's interval, at least the policy's look_every of 15 s) takes the pass from a
    # hook not asked in the pass's own tick: the promotion waits for a pass at the weight it promotes from
    clock.t += 15
    assert flagger(server, "rollout", "good")[1]["result"]["verdict"] == "inconclusive"
    assert flagger(server, "confirm-promotion", "good")[0] == 412


def test_a_first_look_that_passes_late_after_pre_rollout_does_not_promote_on_the_next_ticks_look(
        rig: tuple[ServeServer, Held], clock: Clock) -> None:
    """Decision 440: Flagger's interval 5 s (under half the policy's `look_every` of 15 s), no traffic hook, its first
    `rollout` call a minute after `pre-rollout` (Flagger restarting, this service down: its calls refused). That look
    passes (the weight before the last), Flagger moves to the last on the 200, and the next tick's look, 5 s later,
    fell in decision 304's "same tick" span: a pass with no look before it was trusted, and the promotion granted on
    it, the last weight never judged."""
    server, _ = rig
    assert flagger(server, "pre-rollout", "good")[0] == 200
    clock.t += 60
    assert flagger(server, "rollout", "good")[1]["result"]["verdict"] == "pass"
    clock.t += 5  # the next tick, at the weight Flagger moved to without asking
    assert flagger(server, "rollout", "good")[1]["result"]["verdict"] == "inconclusive"
    code, doc = flagger(server, "confirm-promotion", "good")
    assert code == 412, doc  # 200 without the change
    assert "this revision's first look" in doc["result"]["reason"], doc


def test_a_call_naming_another_model_at_once_is_not_answered_the_first_ones_verdict(rig: tuple[ServeServer, Held],
                                                                                   clock: Clock) -> None:
    """Two calls for one Canary and checksum at once, the second naming another model (an AnalysisTemplate or a
    Canary's webhooks with one metric per model of a Triton server, the revision not set apart): the second was
    joined and answered the first one's pass, a verdict on a model it never measured. Made one after the other it
    is a 409 (one revision is judged with one model); at once it is the same."""
    server, held = rig
    assert flagger(server, "pre-rollout", "good")[0] == 200
    clock.t += 30
    assert flagger(server, "rollout", "good")[1]["result"]["verdict"] == "inconclusive"
    clock.t += 30  # this look passes
    (c1, d1), (c2, d2) = _twice(server, held, "rollout", second_model="bad")
    assert (c1, d1["result"]["verdict"]) == (200, "pass"), d1
    assert (c2, d2.get("field")) == (409, "metadata.model"), d2  # not the pass of model "good"


def test_a_confirm_hook_refused_with_no_session_called_twice_at_once_is_the_same_412_to_both(
        rig: tuple[ServeServer, Held]) -> None:
    """`confirm-promotion` before any look answers 412 and writes nothing (no session): the same call made at once
    joined that answer, which carried no session to log, and was a 500 (a TypeError unpacking it)."""
    server, held = rig
    (c1, d1), (c2, d2) = _twice(server, held, "confirm-promotion", at="load")
    assert c1 == 412 and "no look recorded" in d1["error"] and (c2, d2) == (c1, d1), (d1, d2)


def test_a_look_after_the_pass_moved_the_traffic_never_lets_that_pass_promote(rig: tuple[ServeServer, Held],
                                                                             clock: Clock) -> None:
    """A Canary whose Flagger `interval` is under half the policy's `look_every` (15 s here): the pass's tick
    granted its traffic increase, and the next tick's look came within the "same tick" span of decision 304. Its
    confirm-promotion was granted on the pass of the weight before: a weight never judged promoted. A look
    after the pass's traffic increase is at the new weight, whenever it comes (decision 317)."""
    server, _ = rig
    assert flagger(server, "pre-rollout", "good")[0] == 200
    clock.t += 60
    assert flagger(server, "rollout", "good")[1]["result"]["verdict"] == "pass"
    assert flagger(server, "confirm-traffic-increase", "good")[0] == 200  # the weight moves on this pass
    clock.t += 5  # the next tick, 5 s later (interval 5s < look_every/2): a look at the new weight
    assert flagger(server, "rollout", "good")[1]["result"]["verdict"] == "inconclusive"
    code, doc = flagger(server, "confirm-promotion", "good")
    assert code == 412, doc


def test_a_canary_ticking_under_half_of_look_every_is_not_promoted_on_the_weight_befores_pass(
        rig: tuple[ServeServer, Held], clock: Clock) -> None:
    """Decision 335: no traffic hook, so Flagger moves the weight after each rollout answer itself; its interval 5 s,
    under half the policy's `look_every` (15 s). The next tick's look, at the new weight, came within decision 304's
    "same tick" span of the pass, and its confirm-promotion was granted on the pass of the weight before."""
    server, _ = rig
    assert flagger(server, "pre-rollout", "good")[0] == 200
    verdict = ""
    for _ in range(20):  # every 5 s until the window covers the interval and passes
        clock.t += 5
        verdict = flagger(server, "rollout", "good")[1]["result"]["verdict"]
        if verdict == "pass":
            break
    assert verdict == "pass"
    clock.t += 5  # the next tick, at the weight Flagger moved to
    assert flagger(server, "rollout", "good")[1]["result"]["verdict"] == "inconclusive"
    code, doc = flagger(server, "confirm-promotion", "good")
    assert code == 412, doc  # 200 without the change
    assert "under half the policy's look_every" in doc["result"]["reason"], doc
