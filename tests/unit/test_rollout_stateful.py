"""The pure state machine (`canary.rollout`) driven by hypothesis with random, well-formed event sequences.

The example tests in test_rollout*.py pin situations one at a time; this one walks `transition`, `window_for`,
`reverted` and `finish_promotion` through whatever order the controller's world can produce (looks that pass,
fail, are inconclusive or could not measure, with canary request counts above, at and below
`min_canary_requests`, the same as or fewer than the look before, at times out of order or repeated; counter
restarts; gate failures; rollbacks; pauses and resumes; weight reverts; window restarts) over random valid
policies, and checks the documented promises after every step (docs/reference/guarantees.md,
docs/judge.md, the module docstring of canary/rollout.py):

* a step advances, and the rollout promotes, only on a look whose verdict is PASS, with at least
  `min_canary_requests` canary requests, none fewer than an earlier look of its window, data covering
  `analysis.interval` of its window, no counter restarted; a promotion only after every judged step passed so;
* weights are always a step's of the policy, or stable 100%, and every weight write is the state's own;
* an ended rollout is absorbing; every end (rollback, abort, gate failure, a step beyond its failures) writes
  stable 100% in that same transition and points the stable subset at the stable version;
* never more than `failure.max_failed_looks` - 1 failed looks in a row without a rollback; a failing look with
  new requests adds a failure or ends the rollout;
* a worse verdict on the same look never moves traffic further towards the canary than a better one (the
  same look with a PASS goes at least as far as with an INCONCLUSIVE or ERROR, and those at least as far as
  with a FAIL, and a FAIL at least as far as a hard breach); a PASS with more requests goes at least as far;
* the closed windows' evidence only grows, and the record read back is the state.

Deterministic: the conftest's "ci" profile derandomizes; sized here to a few seconds.
"""

from __future__ import annotations

import functools
import math
from dataclasses import replace

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from canary import rollout as rl
from canary.model import STABLE_ONLY, CheckResult, Outcome, Verdict, Weights, pass_floor
from canary.policy import Policy, parse_policy

IN_PROGRESS = (rl.PROGRESSING, rl.PAUSED)


@functools.lru_cache(maxsize=None)
def _policy(steps: tuple[int, ...], interval: int, look_every: int, min_requests: int, max_failed: int,
            deadline: int, on_deadline: str) -> Policy:
    return parse_policy({
        "steps": list(steps),
        "analysis": {"interval": f"{interval}s", "look_every": f"{look_every}s", "min_canary_requests": min_requests},
        "failure": {"max_failed_looks": max_failed, "no_data_deadline": f"{deadline}s", "on_deadline": on_deadline},
        "checks": [{"name": "lat", "kind": "latency", "max_increase_pct": 20},
                   {"name": "err", "kind": "error_rate", "max_rate_pct": 10, "hard": True}],
    })


@st.composite
def policies(draw: st.DrawFn) -> Policy:
    judged = draw(st.lists(st.integers(1, 99), min_size=1, max_size=4, unique=True))
    interval = draw(st.sampled_from([2, 5, 10, 60]))
    look_every = draw(st.integers(1, interval))
    deadline = draw(st.sampled_from([1, 5, 20, 300]))
    max_failed = draw(st.integers(1, max(1, min(5, (interval + deadline) // look_every))))
    return _policy((*sorted(judged), 100), interval, look_every, draw(st.sampled_from([0, 1, 50, 100])), max_failed,
                   deadline, draw(st.sampled_from(["rollback", "hold"])))


def _result(check: str, outcome: Outcome, *, hard: bool = False, unavailable: bool = False,
            n: float = 0.0, s_window: float = 0.0) -> CheckResult:
    extra: dict = {"tests": [{"test": "t", "s_window": s_window, "info_window": n / 2}]} if n > 0 else {}
    if unavailable:
        extra["unavailable"] = True
    return CheckResult(check=check, kind="latency", outcome=outcome, reason=f"{outcome.label} reason",
                       stable_value=100.0, canary_value=110.0, hard=hard, extra=extra)


def _verdict(outcome: Outcome, *, hard: bool, unavailable: bool, other: Outcome, n: float, s: float) -> Verdict:
    """A look's verdict: check `lat` at `outcome` (hard when `hard`), check `err` at `other` (never worse unless
    the look's outcome is a hard breach), each with its window's evidence on `n` canary requests."""
    return Verdict.combine([_result("lat", outcome, hard=hard, unavailable=unavailable and outcome is Outcome.ERROR,
                                    n=n, s_window=s),
                            _result("err", min(other, outcome), n=n, s_window=-s)])


def _rank(before: rl.RolloutState, after: rl.RolloutState) -> int:
    """How far a transition moved traffic towards the canary: 0 ended, 1 stayed, 2 a step on or a promotion."""
    if after.phase in (rl.ROLLED_BACK, rl.ABORTED):
        return 0
    if after.phase == rl.PROMOTING or after.step > before.step:
        return 2
    return 1


class RolloutMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.policy: Policy
        self.state: rl.RolloutState
        self.now = 0.0
        self.metrics_clock = 1000.0  # the controller's snapshot clock (`Looked.data_to`, `window_for`)
        self.passed: set[int] = set()  # judged steps passed by a look that shows a pass
        self.window_start = 0.0  # the model's own step_started_at: step entry, resume, revert
        self.window_max_n = -1.0  # the most canary requests a look of the open window counted
        self.last_n = -1.0

    # ---- driving ------------------------------------------------------------------

    @initialize(policy=policies(), start=st.integers(0, 10_000), gates_pass=st.integers(0, 4))
    def claim(self, policy: Policy, start: int, gates_pass: int) -> None:
        """The claim (PENDING, 100/0); the gates pass at once four times in five (`Begin`)."""
        self.policy, self.now = policy, float(start)
        self.state, actions = rl.new_rollout(model="m", stable_version="v1", canary_version="v2", now=self.now)
        assert self.state.phase == rl.PENDING and self.state.weights == STABLE_ONLY
        if gates_pass:
            self.begin(0)

    def _tick(self, dt: int) -> float:
        """Time moves on, stands still (a repeated timestamp) or goes back (an event read out of order)."""
        self.now = max(0.0, self.now + dt)
        return self.now

    def _apply(self, event: object) -> None:
        before = self.state
        after, actions = rl.transition(before, event, self.policy)  # type: ignore[arg-type]
        self._check_transition(before, after, actions, event)
        self.before, self.state, self.actions, self.event = before, after, actions, event

    @precondition(lambda self: self.state.phase == rl.PENDING)
    @rule(dt=st.integers(-3, 5))
    def begin(self, dt: int) -> None:
        self._apply(rl.Begin(self._tick(dt)))
        assert self.state.phase == rl.PROGRESSING and self.state.step == 0
        assert self.actions[0] == rl.PointSubset("canary", "v2")  # pointed again before its first traffic
        self._new_window(step_start=True)

    @precondition(lambda self: not self.state.terminal)
    @rule(dt=st.integers(-3, 5), kind=st.sampled_from(["begin", "pause", "resume", "look"]))
    def out_of_place(self, dt: int, kind: str) -> None:
        """An event its phase has no transition for (a Begin twice, a Resume of a running step, a look before the
        gates passed or while paused or promoting) changes nothing and writes nothing."""
        now = self._tick(dt)
        fits = {"begin": rl.PENDING, "pause": rl.PROGRESSING, "resume": rl.PAUSED, "look": rl.PROGRESSING}[kind]
        if self.state.phase == fits:
            return
        event = {"begin": rl.Begin(now), "pause": rl.Pause(now), "resume": rl.Resume(now),
                 "look": rl.Looked(now, _verdict(Outcome.PASS, hard=False, unavailable=False, other=Outcome.PASS,
                                                 n=1e6, s=-3.0), 1e6, window_s=1e9)}[kind]
        before = self.state
        self._apply(event)
        assert self.state is before and self.actions == []

    @precondition(lambda self: self.state.phase == rl.PROGRESSING)
    @rule(dt=st.integers(-3, 40), outcome=st.sampled_from(list(Outcome)), hard=st.integers(0, 3),
          other=st.sampled_from([Outcome.PASS, Outcome.INCONCLUSIVE, Outcome.ERROR]), unavailable=st.booleans(),
          n_kind=st.sampled_from(["more", "more", "same", "fewer", "zero", "floor", "below_floor", "lots"]),
          s=st.floats(-5, 5), window=st.sampled_from([None, None, 1.0, 1e9]), snapshots=st.booleans(),
          restarted=st.integers(0, 1), hold_unreachable=st.booleans())
    def look(self, dt: int, outcome: Outcome, hard: int, other: Outcome, unavailable: bool, n_kind: str, s: float,
             window: float | None, snapshots: bool, restarted: int, hold_unreachable: bool) -> None:
        """Any look: a hard breach one time in four, a counter restart one batched look in two."""
        self._look(dt, outcome, hard=hard == 0 and outcome is Outcome.FAIL, other=other, unavailable=unavailable,
                   n_kind=n_kind, s=s, window=window, snapshots=snapshots, restarted=restarted == 0 and snapshots,
                   hold_unreachable=hold_unreachable)

    @precondition(lambda self: self.state.phase == rl.PROGRESSING)
    @rule(dt=st.integers(0, 70), n_kind=st.sampled_from(["more", "floor", "lots"]), snapshots=st.booleans())
    def passing_look(self, dt: int, n_kind: str, snapshots: bool) -> None:
        """A look that shows a pass, on new requests: the rollout's way forward."""
        self._look(dt, Outcome.PASS, hard=False, other=Outcome.PASS, unavailable=False, n_kind=n_kind, s=-1.0,
                   window=None, snapshots=snapshots, restarted=False, hold_unreachable=False)

    def _look(self, dt: int, outcome: Outcome, *, hard: bool, other: Outcome, unavailable: bool, n_kind: str,
              s: float, window: float | None, snapshots: bool, restarted: bool, hold_unreachable: bool) -> None:
        now = self._tick(dt)
        floor = pass_floor(self.policy.analysis.min_canary_requests)
        last = max(self.last_n, 0.0)
        n = {"more": last + 37, "same": last, "fewer": max(0.0, last - 5), "zero": 0.0, "floor": max(floor, last),
             "below_floor": floor - 1, "lots": last + 10 * floor + 1000}[n_kind]
        self.metrics_clock += max(dt, 0)
        data_to = self.metrics_clock if snapshots else None
        window_s = None if window is None else (window if window < 1e9 else now - self.window_start + 1)
        verdict = _verdict(outcome, hard=hard, unavailable=unavailable, other=other, n=n, s=s)
        event = rl.Looked(now, verdict, n, window_s=window_s, data_to=data_to, restarted=restarted,
                          hold_unreachable=hold_unreachable)
        self._check_monotone(event)
        self._apply(event)
        self._after_look(event)

    @precondition(lambda self: not self.state.terminal)
    @rule(how=st.sampled_from(["none"] * 6 + ["rollback", "abort", "gate", "gate_abort"]), dt=st.integers(0, 5))
    def end(self, how: str, dt: int) -> None:
        """An operator's rollback, an abort (could not complete), a gate the canary or the stable failed; most
        draws do nothing, so that rollouts live long enough to be judged."""
        now = self._tick(dt)
        if how in ("rollback", "abort"):
            self._apply(rl.Rollback(now, "operator: rollback", aborted=how == "abort"))
        elif how != "none":
            self._apply(rl.GateFailed(now, "canary server unready", aborted=how == "gate_abort"))

    @precondition(lambda self: self.state.phase == rl.PROGRESSING)
    @rule(dt=st.integers(-3, 30), now=st.integers(0, 2))
    def pause(self, dt: int, now: int) -> None:
        """An operator's pause, one draw in three (a held step waits for a person): weights kept."""
        if now == 0:
            before = self.state
            self._apply(rl.Pause(self._tick(dt)))
            assert self.state.phase == rl.PAUSED and self.state.weights == before.weights

    @precondition(lambda self: self.state.phase == rl.PAUSED)
    @rule(dt=st.integers(-3, 30))
    def resume(self, dt: int) -> None:
        self._apply(rl.Resume(self._tick(dt)))
        assert self.state.phase == rl.PROGRESSING and self.state.failed_looks == 0
        self._new_window(step_start=True)

    @precondition(lambda self: not self.state.terminal)
    @rule(dt=st.integers(0, 10))
    def weights_reverted(self, dt: int) -> None:
        """A GitOps tool put its own weights back (`reverted`); the controller reasserts ours."""
        before = self.state
        after = rl.reverted(before, self._tick(dt), STABLE_ONLY)
        assert after.reverts == before.reverts + 1
        assert (after.phase, after.step, after.weights) == (before.phase, before.step, before.weights)
        self._check_state(after)
        self._check_evidence_kept(before, after, closes=before.phase == rl.PROGRESSING)
        if before.phase == rl.PROGRESSING:
            assert after.failed_looks == before.failed_looks  # a revert neither forgives nor adds a failure
            self.state = after
            self._new_window(step_start=True)
        self.state = after

    @precondition(lambda self: self.state.phase == rl.PROGRESSING)
    @rule(gap=st.integers(-5, 5))
    def restarted_controller(self, gap: int) -> None:
        """A controller that restarted without the step-start snapshot measures from its first one (`window_for`)."""
        before = self.state
        data_from = (before.window_to if before.window_to is not None else self.metrics_clock) + gap
        after = rl.window_for(before, data_from, self.now)
        opened = before.window_to is not None and before.last_look_requests >= 0 and data_from >= before.window_to
        assert (after is before) != opened
        assert (after.phase, after.step, after.weights, after.failed_looks, after.step_started_at) == (
            before.phase, before.step, before.weights, before.failed_looks, before.step_started_at)
        self._check_evidence_kept(before, after, closes=opened)
        if opened:
            assert after.window_evidence == {} and after.window_from == before.window_to
            self.window_max_n = self.last_n = -1.0
        self.state = after
        self._check_state(after)

    @precondition(lambda self: self.state.terminal)
    @rule(dt=st.integers(-3, 5), kind=st.sampled_from(["begin", "pass", "fail", "pause", "resume", "rollback", "gate"]))
    def after_the_end(self, dt: int, kind: str) -> None:
        """An ended rollout is absorbing: whatever comes later changes nothing and writes nothing."""
        now = self._tick(dt)
        event = {"begin": rl.Begin(now), "pause": rl.Pause(now), "resume": rl.Resume(now),
                 "rollback": rl.Rollback(now, "operator: again"), "gate": rl.GateFailed(now, "unready"),
                 "pass": rl.Looked(now, _verdict(Outcome.PASS, hard=False, unavailable=False, other=Outcome.PASS,
                                                 n=1e6, s=-3.0), 1e6),
                 "fail": rl.Looked(now, _verdict(Outcome.FAIL, hard=True, unavailable=False, other=Outcome.PASS,
                                                 n=1e6, s=3.0), 1e6)}[kind]
        self._apply(event)

    @precondition(lambda self: self.state.phase == rl.PROMOTING)
    @rule(dt=st.integers(0, 5))
    def promoted(self, dt: int) -> None:
        before = self.state
        after, actions = rl.finish_promotion(before, self._tick(dt))
        assert after.phase == rl.PROMOTED and after.weights == STABLE_ONLY
        # the stable subset runs the new version before traffic returns to it
        kinds = [a for a in actions if not isinstance(a, rl.Emit)]
        assert kinds[0] == rl.PointSubset("stable", "v2", guarded=True, undo_version="v1")
        assert kinds[1] == rl.SetWeights(STABLE_ONLY)
        self.state = after

    # ---- the model's bookkeeping ---------------------------------------------------

    def _new_window(self, *, step_start: bool) -> None:
        if step_start:
            self.window_start = self.state.step_started_at
            assert self.window_start == self.now
        self.window_max_n = self.last_n = -1.0

    def _after_look(self, ev: rl.Looked) -> None:
        s = self.state
        if s.phase == rl.PROGRESSING and s.step > self.before.step:
            self._new_window(step_start=True)
        elif s.phase == rl.PROGRESSING and ev.data_to is not None and s.step_window > self.before.step_window:
            self._new_window(step_start=False)  # a counter restart opened a new window at this look
        else:
            self.window_max_n = max(self.window_max_n, ev.canary_requests)
            self.last_n = self.window_max_n

    # ---- the promises -------------------------------------------------------------

    def _check_state(self, s: rl.RolloutState) -> None:
        steps = self.policy.steps
        if s.phase in IN_PROGRESS:
            assert 0 <= s.step <= len(steps) - 2 and s.weights == Weights.canary_at(steps[s.step]), s
            assert rl.off_policy(s, self.policy) == ""
            assert 0 <= s.failed_looks < self.policy.failure.max_failed_looks, (s.failed_looks, s.phase)
        elif s.phase == rl.PROMOTING:
            assert s.weights == Weights.canary_at(100) and s.step == len(steps) - 1
        else:  # PENDING, and every end: stable 100%
            assert s.weights == STABLE_ONLY, s
        # the record read back is the state: a restarted process resumes exactly here
        assert rl.RolloutState.from_json(s.to_json()).to_json() == s.to_json()

    def _check_evidence_kept(self, before: rl.RolloutState, after: rl.RolloutState, *, closes: bool) -> None:
        """The closed windows' evidence never loses a sub-test nor information; a window that closes is folded."""
        for key, (_, info) in before.evidence.items():
            assert key in after.evidence and after.evidence[key][1] >= info
        if closes:
            assert after.evidence == rl._fold(before)
        else:  # the closed windows' evidence changes only when a window closes
            assert after.evidence == before.evidence

    def _check_transition(self, before: rl.RolloutState, after: rl.RolloutState, actions: list,
                          event: object) -> None:
        writes = [a.weights for a in actions if isinstance(a, rl.SetWeights)]
        if before.terminal:  # absorbing: nothing moves, nothing is written
            assert after is before and actions == []
            return
        self._check_state(after)
        # a weight write carries the state it records: what is routed is what is recorded
        assert all(w == after.weights for w in writes), (writes, after.weights)
        allowed = {STABLE_ONLY, *(Weights.canary_at(w) for w in self.policy.steps)}
        assert set(writes) <= allowed
        # only a promotion's finish points the stable subset at the new version (`promoted`)
        assert all((a.subset, a.version) in {("canary", "v2"), ("stable", "v1")}
                   for a in actions if isinstance(a, rl.PointSubset)), actions
        if isinstance(event, (rl.Rollback, rl.GateFailed)):
            assert after.phase == (rl.ABORTED if event.aborted else rl.ROLLED_BACK)
        if after.phase in (rl.ROLLED_BACK, rl.ABORTED):
            # at once: this very transition writes stable 100% and points the stable subset at the stable version
            assert writes == [STABLE_ONLY], actions
            points = [a for a in actions if isinstance(a, rl.PointSubset)]
            assert points and points[-1].subset == "stable" and points[-1].version == "v1"
            emits = [a.event for a in actions if isinstance(a, rl.Emit)]
            i = actions.index(rl.SetWeights(STABLE_ONLY))
            assert any(isinstance(a, rl.Emit) and a.event in ("rollback.started", "rollout.aborting")
                       for a in actions[:i]) and emits[-1] in ("rollback.completed", "rollout.aborted")
        moved_on = after.step > before.step and after.phase in (rl.PROMOTING, *IN_PROGRESS)
        if moved_on and before.phase != rl.PENDING:
            self._check_earned(before, after, event)
        if after.phase == rl.PROMOTING:
            assert self.passed >= set(range(len(self.policy.steps) - 1)), (self.passed, self.policy.steps)
        if after.phase not in (rl.ROLLED_BACK, rl.ABORTED):
            # a window closes at a new window or step; the promotion judges nothing more (its evidence stays)
            closes = after.phase in IN_PROGRESS and (after.step_window != before.step_window or after.step != before.step)
            judged = before
            if isinstance(event, rl.Looked) and after.step != before.step:  # the passing look's evidence is its window's
                judged = replace(before, window_evidence={**before.window_evidence, **event.verdict.window_evidence()})
            self._check_evidence_kept(judged, after, closes=closes)
        if isinstance(event, rl.Looked) and before.phase == rl.PROGRESSING:
            assert after.look == before.look + 1
            self._check_failures(before, after, event)
            self._check_deadline(before, after, event)
            if after.phase == rl.PROGRESSING and after.step == before.step:
                self._check_window_evidence(before, after, event)
        elif not (isinstance(event, rl.Begin) and before.phase == rl.PENDING):
            assert after.step == before.step  # only a look moves a step on

    def _check_earned(self, before: rl.RolloutState, after: rl.RolloutState, event: object) -> None:
        """A step on, or the promotion, only on a look that shows the canary within its limits at this step."""
        assert isinstance(event, rl.Looked) and before.phase == rl.PROGRESSING, (event, before.phase)
        assert after.step == before.step + 1
        v, n = event.verdict, event.canary_requests
        assert v.outcome is Outcome.PASS and not v.hard_breach, v.outcome
        assert n >= pass_floor(self.policy.analysis.min_canary_requests), n
        assert n >= self.window_max_n, (n, self.window_max_n)  # not on fewer requests than its window saw
        assert n > 0 and not event.restarted
        covered = event.now - self.window_start
        if event.window_s is not None:
            covered = min(covered, event.window_s)
        assert covered >= self.policy.analysis.interval, (covered, self.policy.analysis.interval)
        self.passed.add(before.step)

    def _check_deadline(self, before: rl.RolloutState, after: rl.RolloutState, ev: rl.Looked) -> None:
        """A step still without a pass at `interval + no_data_deadline` after its start (resume, revert) is not left
        running: a look there moves it on, ends it, or holds it (`on_deadline: hold`, or Prometheus unreachable
        with `hold_unreachable`), whatever its outcome."""
        a, f = self.policy.analysis, self.policy.failure
        if ev.now - before.step_started_at >= a.interval + f.no_data_deadline:
            assert after.phase != rl.PROGRESSING or after.step > before.step, (after.phase, ev.verdict.outcome)
            if after.phase == rl.PAUSED:
                unreachable = any(r.outcome is Outcome.ERROR and r.extra.get("unavailable") for r in ev.verdict.results)
                assert f.on_deadline == "hold" or (ev.hold_unreachable and unreachable)

    def _check_window_evidence(self, before: rl.RolloutState, after: rl.RolloutState, ev: rl.Looked) -> None:
        """The open window's evidence is its own looks' latest (docs/judge.md, decision 163: "no window is counted
        twice"): a look on fewer canary requests than an earlier one of the window is not the window's data and
        leaves it as it was; a look whose counters restarted after earlier looks of its window is no evidence and
        opens a new window that judges only data after it, so that window starts empty (decision 442); any other
        look's parts replace the window's."""
        n, earlier = ev.canary_requests, before.last_look_requests >= 0
        if ev.data_to is not None and earlier and (ev.restarted or n < before.last_look_requests):
            # its data overlap the earlier looks' (folded as the restart closed their window): kept, counted twice
            assert after.window_evidence == {}, after.window_evidence
        elif ev.data_to is not None and ev.restarted:  # the window's first look: disjoint from all folded data
            assert after.window_evidence == ev.verdict.window_evidence()
        elif n < before.last_look_requests:
            assert after.window_evidence == before.window_evidence
        else:
            assert after.window_evidence == {**before.window_evidence, **ev.verdict.window_evidence()}

    def _check_failures(self, before: rl.RolloutState, after: rl.RolloutState, ev: rl.Looked) -> None:
        n = ev.canary_requests
        fails = any(r.outcome is Outcome.FAIL for r in ev.verdict.results)
        if ev.verdict.hard_breach:
            assert after.phase == rl.ROLLED_BACK  # a hard breach rolls back at the first look, restart or not
        elif fails and not ev.restarted and n > before.last_look_requests:
            # new requests shown beyond a limit: one more failure in a row, or the end
            assert after.phase == rl.ROLLED_BACK or after.failed_looks == before.failed_looks + 1

    def _check_monotone(self, ev: rl.Looked) -> None:
        """The same look with a worse verdict never goes further towards the canary; a PASS with more requests
        never goes less far."""
        def outcome_of(outcome: Outcome, *, hard: bool = False, n: float | None = None) -> int:
            n = ev.canary_requests if n is None else n
            v = _verdict(outcome, hard=hard, unavailable=bool(ev.verdict.results[0].extra.get("unavailable")),
                         other=Outcome.PASS, n=n, s=0.0)
            after, _ = rl.transition(self.state, rl.Looked(ev.now, v, n, window_s=ev.window_s, data_to=ev.data_to,
                                                           restarted=ev.restarted,
                                                           hold_unreachable=ev.hold_unreachable), self.policy)
            return _rank(self.state, after)

        ok, unclear, unmeasured = outcome_of(Outcome.PASS), outcome_of(Outcome.INCONCLUSIVE), outcome_of(Outcome.ERROR)
        failed, breach = outcome_of(Outcome.FAIL), outcome_of(Outcome.FAIL, hard=True)
        assert ok >= unclear >= failed >= breach and unmeasured >= failed, (ok, unclear, unmeasured, failed)
        # a step whose looks could not ask Prometheus is held at its deadline when the rollout says so
        # (`hold_unreachable`, a CanaryRollout's onPrometheusOutage: hold), where a measured step without a verdict
        # ends as the policy says (docs/reference/policy.md's `failure.on_deadline`, `Looked`): there only, a look
        # that could not measure may stay longer
        assert ok >= unmeasured or ev.hold_unreachable, (ok, unmeasured)
        assert breach == 0
        assert outcome_of(Outcome.PASS, n=ev.canary_requests * 2 + 1) >= ok

    @invariant()
    def weights_are_a_step_or_stable(self) -> None:
        if hasattr(self, "state"):
            allowed = {STABLE_ONLY, *(Weights.canary_at(w) for w in self.policy.steps)}
            assert self.state.weights in allowed
            assert math.isfinite(self.state.last_look_requests)


RolloutMachine.TestCase.settings = settings(RolloutMachine.TestCase.settings, max_examples=150,
                                            stateful_step_count=30)
test_rollout_state_machine = RolloutMachine.TestCase
