"""The sequential state of one rollout revision judged for an external controller, pure.

Why this exists: Argo Rollouts and Flagger own the traffic and call `canary serve` once per
analysis interval. The judge's guarantees need what our own state machine keeps between
looks (canary/rollout.py): the failure evidence of closed windows (the judge's `prior`), the
open window's latest contribution, the consecutive failed looks, the canary requests of the
last look (a look on the same data is no new evidence), and the window's index within its
step (the pass level). A `Session` is exactly that for one rollout revision, and `record_look`
turns one look's `Verdict` into what the caller acts on:

    pass          the window covers `analysis.interval` and every check is shown within its
                  limits with at least `min_canary_requests` canary requests: advance. The
                  next look opens a new window, from the moment of this answer.
    fail          `failure.max_failed_looks` consecutive failed looks, a hard check's breach,
                  or the window's deadline (`interval + no_data_deadline`) passed without a
                  pass under `on_deadline: rollback`. Sticky: every later look says fail.
    inconclusive  neither yet: keep looking. A deadline under `on_deadline: hold` answers
                  this too and opens the next window of the step at its smaller pass level,
                  as an operator's resume does in rollout.py.

Windows also close when the caller names a different `step` than the window's (Argo's step
index or weight, passed as an argument). No clocks and no I/O here: `now` comes in.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field, replace
from typing import Any

from canary.model import Outcome, Verdict, next_pass_anchor, pass_floor, pass_ratio, request_count, valid_pass_anchor
from canary.policy import Policy
from canary.rollout import short_reason, uncounted_reason

PASS, FAIL, INCONCLUSIVE = "pass", "fail", "inconclusive"
VERDICTS = (PASS, FAIL, INCONCLUSIVE)


@dataclass(frozen=True)
class Session:
    """One rollout revision's state. Times are Unix seconds; evidence is {"check/test": (S, I)}."""

    key: str  # "argo/<namespace>/<rollout>" or "flagger/<namespace>/<canary>"
    revision: str  # Argo: `revision` or the canary version; Flagger: the payload's checksum
    policy: str  # the name of the policy it is judged with (fixed for the revision)
    model: str
    namespace: str
    stable_version: str
    canary_version: str
    created_at: float
    window_started_at: float
    step: str = ""  # the caller's step label of the open window ("" when it gives none)
    window: int = 0  # index of the open window within its step: 0, then 1, 2 after holds
    windows_closed: int = 0
    looks: int = 0
    window_looks: int = 0
    failed_looks: int = 0  # consecutive
    last_look_requests: float = -1.0  # canary requests at the previous look of this window
    pass_anchor_requests: float = -1.0  # canary requests at the window's first look that could pass
    evidence: dict[str, tuple[float, float]] = field(default_factory=dict)  # closed windows, summed
    window_evidence: dict[str, tuple[float, float]] = field(default_factory=dict)  # the open window's latest
    verdict: str = INCONCLUSIVE  # the last answer
    reason: str = ""
    advanced_at: float | None = None  # set by a pass: the next look opens a window from here
    gates: str = ""  # pre-rollout: "" not run, "passed", or why they refused
    updated_at: float = 0.0
    # Flagger's first confirm-traffic-increase, at weight 0 before any look, was granted (once per revision)
    first_step: bool = False
    # the look whose pass a confirm hook granted (0: none): a pass grants one traffic increase and one promotion
    traffic_granted_look: int = 0
    promotion_granted_look: int = 0
    # the step labels this rollout of the revision has had windows for (`open_window`: a step named again does
    # not open another; at most MAX_STEPS_SEEN, the oldest dropped)
    steps_seen: tuple[str, ...] = ()
    # the step labels of the calls that looked in the open window (`record_look`'s `caller`): when one of them
    # passes, the others are owed that pass once (`owed_pass`: Argo's background and step analyses on one revision)
    window_callers: tuple[str, ...] = ()
    pass_owed: tuple[str, ...] = ()  # the labels still owed the last pass
    passed_at: float | None = None  # when the last pass was answered
    passed_look: int = 0  # and at which look
    looked_at: float | None = None  # when the last look was recorded (`pass_to_grant`)
    # seconds from the look before the last pass to it (None: none before it, or a file of an earlier version):
    # under half of `look_every`, the caller asks that often (a Flagger `interval` shorter than documented), so a
    # look soon after the pass may be the next tick's, at another weight: `pass_to_grant` grants only the last
    # look's pass then (decision 335)
    pass_gap_s: float | None = None
    # the seconds between the last look and the one before it, and between that one and the one before it (None:
    # not known): the caller's ticks as the looks show them, kept for `pass_ticks_s`
    gap_s: float | None = None
    gap_before_s: float | None = None
    # at the last pass, the longer of the two gaps before the pass's own (None: fewer than two looks before it, or a
    # file of an earlier version). A pass's own gap may be a pause of the caller (Flagger down, `canary serve`
    # restarting) or its first look's (none): only the ticks before it show how often the caller asks, so a
    # confirm-promotion grants a pass that is no longer the last look only when one of them was at least half of
    # `look_every` (decision 440)
    pass_ticks_s: float | None = None
    # when a confirm-traffic-increase was last granted: a look after it is at the weight it moved to (decision 317)
    traffic_granted_at: float | None = None
    # the preflight of the rollout's looks (serve_measure.no_stable_data) answered that the stable arm has data:
    # until it has, every look asks it beside its own queries (one that timed out or failed stays to do; decision
    # 314). Absent from the state files of earlier versions: not done, so it is asked once more
    preflight_done: bool = False
    # the inputs (`[policy, model, stableVersion, canaryVersion]` as a JSON list) this rollout was started over from
    # while nothing was judged (decisions 310, 326): a call naming them again is two callers naming different
    # inputs for one revision, a 409, not another start over (at most MAX_LEFT_INPUTS, the oldest dropped)
    left_inputs: tuple[str, ...] = ()
    # of those, the inputs this rollout left by going back to inputs it had left (an operator's correction undone,
    # or two callers taking turns): a call naming them is a 409 until the rollout's silence, so callers naming
    # different inputs start it over a bounded number of times (decision 334; at most MAX_LEFT_INPUTS)
    barred_inputs: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"session verdict must be one of {VERDICTS}, got {self.verdict!r}")

    def to_json(self) -> str:
        """The stored form; ValueError (never a file `from_json` refuses) if a number is not finite."""
        return json.dumps(dataclasses.asdict(self), sort_keys=True, separators=(",", ":"), allow_nan=False)

    @classmethod
    def from_json(cls, text: str) -> "Session":
        """Parse a stored session; ValueError naming the field when its shape is wrong."""
        d = json.loads(text)
        if not isinstance(d, dict):
            raise ValueError("a session must be a JSON object")
        fields = {f.name: f for f in dataclasses.fields(cls)}
        d = {k: v for k, v in d.items() if k in fields}  # tolerate fields a newer version writes
        for name in ("key", "revision", "policy", "model", "namespace", "stable_version", "canary_version",
                     "created_at", "window_started_at"):
            if name not in d:
                raise ValueError(f"{name}: missing")
        for name, f in fields.items():
            if name not in d:
                continue
            v = d[name]
            if f.type == "str" and not isinstance(v, str):
                raise ValueError(f"{name}: must be a string")
            if f.type == "bool" and not isinstance(v, bool):
                raise ValueError(f"{name}: must be true or false")
            if f.type == "int" and (isinstance(v, bool) or not isinstance(v, int) or v < 0):
                raise ValueError(f"{name}: must be an integer >= 0")
            if f.type == "float" or (f.type == "float | None" and v is not None):
                if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                    raise ValueError(f"{name}: must be a finite number")
                d[name] = float(v)
        for name in ("steps_seen", "window_callers", "pass_owed", "left_inputs", "barred_inputs"):
            seen = d.get(name, [])
            if not isinstance(seen, (list, tuple)) or not all(isinstance(x, str) for x in seen):
                raise ValueError(f"{name}: must be a list of strings")
            d[name] = tuple(seen)
        if not valid_pass_anchor(d.get("pass_anchor_requests", -1.0)):
            raise ValueError("pass_anchor_requests: must be -1 (none yet) or a positive count")
        for name in ("evidence", "window_evidence"):
            d[name] = _evidence(d.get(name, {}), name)
        return cls(**d)

    def prior(self) -> dict[str, tuple[float, float]]:
        """The closed windows' evidence the judge pools the open window with."""
        return dict(self.evidence)

    def pass_ratio(self, canary_requests: float) -> float:
        """The judge's `pass_ratio` for a look with `canary_requests` in the open window."""
        return pass_ratio(self.pass_anchor_requests, canary_requests)

    @property
    def ended(self) -> bool:
        return self.verdict == FAIL


def _evidence(raw: Any, name: str) -> dict[str, tuple[float, float]]:
    if not isinstance(raw, dict):
        raise ValueError(f"{name}: must be an object")
    out = {}
    for key, v in raw.items():
        if (not isinstance(v, (list, tuple)) or len(v) != 2
                or not all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in v)
                or v[1] < 0):
            raise ValueError(f"{name}.{key}: must be [S, I] with finite S and I >= 0")
        out[str(key)] = (float(v[0]), float(v[1]))
    return out


def window_deadline_s(policy: Policy) -> float:
    """Seconds a window of `policy` may last before it ends without a verdict (`interval +
    no_data_deadline`): also how long a silent caller keeps its window, a finished gate run stays
    fresh, and a revision idle this long may be dropped from the state directory."""
    return policy.analysis.interval + policy.failure.no_data_deadline


MAX_STEPS_SEEN = 64
MAX_LEFT_INPUTS = 16


def new_session(*, key: str, revision: str, policy: str, model: str, namespace: str, stable_version: str,
                canary_version: str, now: float, step: str = "") -> Session:
    """A revision seen for the first time: its first window starts now."""
    return Session(key=key, revision=revision, policy=policy, model=model, namespace=namespace,
                   stable_version=stable_version, canary_version=canary_version, created_at=now,
                   window_started_at=now, step=step, updated_at=now, steps_seen=_seen((), step))


def _seen(seen: tuple[str, ...], step: str) -> tuple[str, ...]:
    if not step or step in seen:
        return seen
    return (*seen, step)[-MAX_STEPS_SEEN:]


def _fold(s: Session) -> dict[str, tuple[float, float]]:
    """The evidence with the open window added: what stays when the window closes."""
    out = dict(s.evidence)
    for key, (s_w, i_w) in s.window_evidence.items():
        s0, i0 = out.get(key, (0.0, 0.0))
        out[key] = (s0 + s_w, i0 + i_w)
    return out


def _next_window(s: Session, *, start: float, step: str, index: int) -> Session:
    return replace(s, evidence=_fold(s), window_evidence={}, window_started_at=start, step=step, window=index,
                   windows_closed=s.windows_closed + 1, window_looks=0, failed_looks=0, last_look_requests=-1.0,
                   pass_anchor_requests=-1.0, advanced_at=None, steps_seen=_seen(s.steps_seen, step),
                   window_callers=())


def open_window(s: Session, *, now: float, step: str = "", quiet_s: float | None = None) -> Session:
    """The session with the window this look belongs to open.

    After a pass the caller advanced: a new window from the time of that answer (index 0). A `step`
    this rollout has not named before (when the caller names steps) opens one from now (index 0: a new
    step). A step named before does not: Argo's background analysis (the template's default step "0")
    beside a step's ("10") on one revision alternate their labels, and each call opened a window of one
    second, so no look could pass and no failing canary had two failed looks in a row. (An Argo retry
    from its first step within the silence below goes on in the open window.) Otherwise the open window
    goes on. A failed session stays as is.

    A revision not called for more than `quiet_s` (the policy's `interval + no_data_deadline`, as
    long as a window may last) is a caller that stopped and came back: Argo's retry of an aborted
    rollout or an undo to this pod-template hash, a Flagger analysis of the same spec again. Its
    window opens from now (the closed windows' evidence stays the prior): the old one reached back
    over the silence, and its first look judged days of data from before the caller's analysis began
    (and passed on it), or failed at once for a deadline spent while nobody asked.
    """
    if s.ended:
        return s
    if quiet_s is not None and now - s.updated_at > quiet_s:  # a new rollout of the revision: its steps anew
        if s.looks == 0:  # nothing measured yet: the first window, from now
            return replace(s, window_started_at=now, step=step or s.step, steps_seen=_seen((), step or s.step))
        return _next_window(replace(s, steps_seen=()), start=now, step=step or s.step, index=0)
    moved = bool(step) and step != s.step and step not in s.steps_seen
    if s.advanced_at is not None:
        return _next_window(s, start=s.advanced_at, step=step or s.step, index=0)
    if moved:
        return _next_window(s, start=now, step=step, index=0)
    return s


def serve_window(s: Session, now: float, look_every: float) -> int:
    """Seconds of data a look at `now` measures: the open window's own (at least 1). Only the revision's
    first window may reach back `look_every` before it opened (the caller's first look comes as its
    analysis starts; what came before is this revision's canary on its first step, in no window): a
    later window opened by a pass or a new step would count again the requests the window before it
    judged, which the pooled evidence adds up as independent."""
    since = math.ceil(now - s.window_started_at)
    first = s.windows_closed == 0 and s.window == 0
    return max(since, math.ceil(look_every) if first else 1)


def _not_evidence(verdict: Verdict, outcome: Outcome, why: str) -> Verdict:
    """`outcome` results (not a hard breach) turned INCONCLUSIVE: a look without new evidence."""
    return Verdict.combine([
        dataclasses.replace(r, outcome=Outcome.INCONCLUSIVE, reason=f"{why}; {r.reason}")
        if r.outcome is outcome and not (r.hard and outcome is Outcome.FAIL) else r
        for r in verdict.results])


def record_look(s: Session, verdict: Verdict, *, canary_requests: float, now: float,
                policy: Policy, counted: bool = True, uncounted: str = "", caller: str = "",
                held_s: float | None = None) -> tuple[Session, Verdict]:
    """One look of the open window (see `open_window`) -> (the new session, the verdict as counted).

    The session's `verdict` and `reason` are the answer. Same rules as rollout.py's looks: a
    look with the same canary requests as the last one cannot add a failure, one with fewer
    cannot pass and does not replace the window's evidence; failures must be consecutive, and a look
    that could not measure some check (ERROR: its query refused, timed out, no series) neither adds
    one nor ends the run: with its reset, a failing check whose query timed out every other look (a
    loaded Prometheus) was "failed look 1 of 2" for ever, and each deadline held the window.

    A look at the window's deadline that could not ask Prometheus for some check (`unavailable`:
    refused, timed out, past `--answer-within`), or for the canary requests (`counted` False), is no
    verdict on the canary: the window is held as
    `on_deadline: hold` holds it (the next one opens now, at its smaller pass level), never the
    sticky `fail` that Argo reads as Failed and Flagger as the canary's 409, and that stayed after
    Prometheus came back. The service answers it 503 (`unreachable_at_deadline`), as promote ends
    such a step "could not complete" (ABORTED), not rolled back.

    `uncounted`: why Prometheus answered that the canary's requests cannot be counted (read twice, a target down):
    such a look is no pass, its 0 neither "fewer canary requests" nor a count at the deadline, and the window's
    evidence and pass anchor stay, as the controller's `rollout.Looked.uncounted` (decision 485).

    `caller` is the call's step label ("" when it names none): a pass owes itself once to every other
    label that looked in its window (`owed_pass`); a failed look or a breach cancels what is owed.

    `held_s`: the seconds of the look's window Prometheus holds data for (`PrometheusProvider.counted`; None: not
    told): a pass needs the data, not the window's age, to cover the interval (a Prometheus restarted without its
    storage answers from its first scrape on; decision 574).
    """
    if s.ended:
        return s, verdict
    n = request_count(canary_requests)  # +Inf, NaN: no count (a stored Infinity made every later call a 500)
    j, before = verdict, s.last_look_requests
    if uncounted:  # its 0 is no count: the window's count stays the last look's
        n = before
    stale = (n > 0 and n == before) or 0 <= n < before
    if uncounted:  # the checks' own data are the window's: a failure of theirs stands; no pass
        j = _not_evidence(j, Outcome.PASS, uncounted_reason(uncounted))
    elif stale and n == before:
        j = _not_evidence(j, Outcome.FAIL, "no new canary requests since the last look")
    elif stale:
        j = _not_evidence(j, Outcome.PASS, f"fewer canary requests than an earlier look of this window ({before:.0f})")
    gap = None if s.looked_at is None else max(0.0, now - s.looked_at)
    known = [g for g in (s.gap_s, s.gap_before_s) if g is not None]
    ticks = max(known) if known else None  # how often the caller asked before this look (`pass_ticks_s`)
    s = replace(s, looks=s.looks + 1, window_looks=s.window_looks + 1, updated_at=now, looked_at=now,
                last_look_requests=max(n, before), window_callers=_seen(s.window_callers, caller),
                gap_s=gap, gap_before_s=s.gap_s)
    if not 0 <= n < before:
        s = replace(s, window_evidence={**s.window_evidence, **j.window_evidence()})
    fail, a = policy.failure, policy.analysis
    elapsed = now - s.window_started_at
    covered = elapsed if held_s is None else min(elapsed, held_s)
    anchor = s.pass_anchor_requests if uncounted else next_pass_anchor(
        s.pass_anchor_requests, n, before, covered_s=covered, interval_s=a.interval,
        min_canary_requests=a.min_canary_requests)
    if anchor != s.pass_anchor_requests:
        s = replace(s, pass_anchor_requests=anchor)
    if j.hard_breach:
        return replace(s, verdict=FAIL, pass_owed=(), passed_at=None, reason=f"hard check breached: {j.reason()}"), j
    if j.outcome is Outcome.FAIL:
        s = replace(s, pass_owed=(), passed_at=None)  # shown failing since: the last pass is nobody's any more
        failed = s.failed_looks + 1
        if failed >= fail.max_failed_looks:
            return replace(s, failed_looks=failed, verdict=FAIL,
                           reason=f"{failed} consecutive failed looks: {j.reason()}"), j
        return replace(s, failed_looks=failed, verdict=INCONCLUSIVE,
                       reason=f"failed look {failed} of {fail.max_failed_looks}: {j.reason()}"), j
    if not stale and j.outcome is not Outcome.ERROR:  # "could not measure" shows no failure ended (decision 159)
        s = replace(s, failed_looks=0)
    if (covered >= a.interval and j.outcome is Outcome.PASS and not uncounted
            and n >= pass_floor(a.min_canary_requests)):
        owed = tuple(c for c in s.window_callers if c != caller)
        return replace(s, verdict=PASS, advanced_at=now, passed_at=now, passed_look=s.looks, pass_owed=owed,
                       pass_gap_s=gap, pass_ticks_s=ticks,
                       reason=f"all checks shown within their limits: {j.reason()}"), j
    if elapsed < window_deadline_s(policy):
        if covered >= a.interval:
            why = j.reason()
        elif elapsed >= a.interval:  # the window is old enough, the data Prometheus holds of it are not
            why = f"{short_reason(covered, a.interval, elapsed)}; {j.reason()}"
        else:
            why = f"window {covered:.0f}s of {a.interval:g}s; {j.reason()}"
        return replace(s, verdict=INCONCLUSIVE, reason=why), j
    short = f"; {short_reason(covered, a.interval, elapsed)}" if covered < a.interval else ""
    why = (f"{NO_VERDICT} {elapsed:.0f}s in this window ({j.outcome.label}: {j.reason()}; canary requests "
           f"{'not counted' if uncounted else f'{n:.0f}' if counted else 'not counted (Prometheus)'}, need "
           f"{a.min_canary_requests}{short})")
    if unreachable(j) or not counted:
        held = _next_window(s, start=now, step=s.step, index=s.window + 1)
        return replace(held, verdict=INCONCLUSIVE, reason=f"{UNREACHABLE}{why}; a new window opens now"), j
    if fail.on_deadline == "hold":
        held = _next_window(s, start=now, step=s.step, index=s.window + 1)
        return replace(held, verdict=INCONCLUSIVE, reason=f"held: {why}"), j
    return replace(s, verdict=FAIL, reason=why), j


def owed_pass(s: Session, *, step: str, now: float, within_s: float) -> Session | None:
    """The session with the last pass answered to a call of step label `step` (nothing measured, nothing judged),
    or None when that call must look.

    Argo's background analysis and a step's, on one revision (docs/integrations.md), alternate their `step`
    labels in one window; a pass opens the next window from its answer. The analysis whose call came first after
    the window covered the interval took every pass: when that was the background one (its first call came after
    the step's, so its new label opened the window), the step analysis met a fresh window at each call, never
    passed, and Argo ended it Inconclusive at `count`: the rollout paused at that step for ever. A pass is now owed
    once to each other label that looked in its window: the same evidence, answered to the analysis it would have
    been answered to had its call come first. Never to the label that got it, to one that did not look in that
    window (a later step reusing a label), to a call naming no step, after a failed look or a breach since (the
    owed labels are dropped), nor more than `within_s` (the policy's interval) after the pass."""
    if s.ended or not step or step not in s.pass_owed or s.passed_at is None or s.failed_looks:
        return None
    if not 0 <= now - s.passed_at <= within_s:
        return None
    s = replace(s, pass_owed=tuple(x for x in s.pass_owed if x != step), updated_at=now)
    if s.advanced_at is not None:  # the window after the pass, as the next look would open it
        s = _next_window(s, start=s.advanced_at, step=step, index=0)
    # a caller of the window it is answered in: owed that window's pass in turn, whoever's call gets it
    return replace(s, window_callers=_seen(s.window_callers, step))


def pass_to_grant(s: Session, *, granted_look: int, now: float, within_s: float, same_tick_s: float,
                  promotion: bool = False) -> int:
    """The look whose pass a confirm hook may grant now, 0 for none; `granted_look` is the look whose pass
    that hook last granted (`traffic_granted_look` or `promotion_granted_look`), `within_s` the policy's interval,
    `same_tick_s` half its `look_every`. A look after the pass's traffic increase was granted (`traffic_granted_at`)
    is at another weight: the pass is no longer the latest weight's, whenever that look came.

    The last look's pass; or, within `within_s` of it, the last pass when every look after it came within
    `same_tick_s` of it (the same tick's call made again: Flagger asks at least every `look_every`), showed no
    failure (a failed look or a breach drops the pass: `passed_at` None) and did not pass. Flagger asks its
    confirm hooks right after the `rollout` hook in one tick: a second `rollout` call between the two (a second
    Flagger replica in a leader change, a second `rollout` webhook pointed at the same URL) recorded
    `inconclusive` over the pass, and the confirm hook was 412 until the next pass, an interval later (decision
    304). A look of a later tick still takes the pass from a hook not asked by then (the promotion waits for a
    pass at the weight it promotes from). Never a pass this hook already granted, nor, but as the last look, a pass
    that came within `same_tick_s` of the look before it (`pass_gap_s`: a Flagger `interval` under half of
    `look_every` put the next tick, at the weight Flagger moved to without asking a traffic hook, in the "same
    tick" span; decision 335). For the `promotion`, not but as the last look either, a pass whose caller's ticks
    before it are not known to be that far apart (`ticks_unknown`: its revision's first look's pass, or one after
    a pause of the caller, whose own gap shows the pause, not the ticks; decision 440). The traffic hook needs
    neither: Flagger moves the weight on its 200 alone, so the pass it grants is always the weight's now."""
    if s.ended or s.passed_look == 0 or granted_look >= s.passed_look:
        return 0
    if s.verdict == PASS and s.looks == s.passed_look:
        return s.passed_look
    if s.passed_at is None or s.failed_looks or not 0 <= now - s.passed_at <= within_s:
        return 0
    if s.pass_gap_s is not None and s.pass_gap_s < same_tick_s:
        return 0  # the pass came that soon after the look before it: so may the next tick's look after it (335)
    if promotion and ticks_unknown(s, same_tick_s=same_tick_s):
        return 0  # a look after it may be the next tick's, at the weight Flagger moved to unasked (440)
    if s.looked_at is None or not 0 <= s.looked_at - s.passed_at < same_tick_s:
        return 0
    if s.traffic_granted_look == s.passed_look and s.traffic_granted_at is not None \
            and s.looked_at > s.traffic_granted_at:
        # the pass moved the traffic, and a look came after: it judged the new weight, whatever its time. A
        # Flagger `interval` under half of `look_every` put the next tick's look in the "same tick", and its
        # confirm-promotion was granted on the pass of the weight before (decision 317)
        return 0
    return s.passed_look


def ticks_unknown(s: Session, *, same_tick_s: float) -> bool:
    """The last pass's caller is not known to ask at most every `same_tick_s` (half of `look_every`): the pass had
    no look before it (its revision's first look: `pass_gap_s` None), or fewer than two, or neither of the two gaps
    before its own was that long (`pass_ticks_s`: its own gap may be a pause). A Flagger `interval` under half of
    `look_every`, the caller late to its first look after `pre-rollout` (Flagger restarting, `canary serve` down,
    its calls refused) or back from a pause: the pass came at the weight before the last, Flagger moved to the
    last on the `rollout` hook's 200 (no traffic hook), and the next tick's look within `same_tick_s` of the pass
    was taken for the same tick's call made again: its confirm-promotion was granted on the weight before's pass
    (decision 440)."""
    return s.pass_gap_s is None or s.pass_ticks_s is None or s.pass_ticks_s < same_tick_s


UNREACHABLE = "Prometheus could not be asked at the window's deadline: "
NO_VERDICT = "no verdict after"  # how a `fail` at the deadline without a verdict opens its reason


def unproven(s: Session) -> bool:
    """Failed at a window's deadline with no verdict (`on_deadline: rollback`): neither shown within its limits
    nor beyond them (too little traffic, no data), unlike a failed look in a row or a hard breach."""
    return s.ended and s.reason.startswith(NO_VERDICT)


def reopen(s: Session, *, now: float) -> Session:
    """An `unproven` revision called again after its caller stopped (Argo's `retry` of the aborted rollout the
    next morning): judged again from a window opening now, the closed windows' evidence kept as the prior (the
    failure budget is not spent again, as after any silence: `open_window`). Its first step, gates and grants
    start over: they were the last rollout's."""
    w = _next_window(s, start=now, step=s.step, index=0)
    return replace(w, verdict=INCONCLUSIVE, first_step=False, gates="", updated_at=now,
                   reason=f"judged again: its last rollout ended without a verdict ({s.reason[:300]})")


def unreachable(verdict: Verdict) -> bool:
    """Some check of this look could not ask Prometheus (refused, timed out, past `--answer-within`)."""
    return any(r.outcome is Outcome.ERROR and r.extra.get("unavailable") for r in verdict.results)


def unreachable_at_deadline(s: Session) -> bool:
    """The look just recorded reached its window's deadline without Prometheus: "could not measure"."""
    return s.verdict == INCONCLUSIVE and s.reason.startswith(UNREACHABLE)


def record_gates(s: Session, *, passed: bool, why: str, now: float) -> Session:
    """Pre-rollout gates: passed (the canary gets traffic next, so a window with no look yet starts
    now), or refused (recorded; not sticky: the caller may ask again once the canary is ready)."""
    if not passed:
        return replace(s, gates=why or "refused", updated_at=now)
    s = replace(s, gates="passed", updated_at=now)
    return replace(s, window_started_at=now) if s.looks == 0 else s
