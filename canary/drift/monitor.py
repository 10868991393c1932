"""The drift monitor's decisions for one model version: pure, like the rollout state machine.

    step(state, result, now, config) -> (state, actions)
    trigger_result(state, ok, now, config, error="") -> (state, actions)

A *drift episode* starts when `config.enter_after` evaluations whose windows do not overlap show
dataset drift, with no evaluation between them showing none, and ends when `config.exit_after` whose
windows do not overlap show none, with none between them showing drift (hysteresis: a share that
hovers at the threshold does not flap the alert; a real drift that reads clean in a run of overlapping
evaluations, one clean hour read three times, is one episode and one retraining Job, not one every
few hours). Overlapping
windows are one piece of evidence, not several: every 5 minutes over the last hour, three drifted
evaluations in a row shared 50 of their 60 minutes, so one unlucky hour of same-distribution traffic
(each test's 5%) opened an episode and created a retraining Job: 33 in four weeks for one feature at
150 requests an hour, none with the windows apart (`scripts/bench_drift_watch_null.py`).
Nothing starts during the quiet period after the version began serving
(`quiet_until`): right after a rollout the live data are few and moving. It
starts at the first evaluation that has live data to compare (a feature with
`compare.MIN_LIVE` observations in the window), not when the profile was first
seen: a baseline registered a day before the version serves must not spend its
quiet period on no traffic.
At the start of an episode: an `Alert` (Kubernetes Event, webhook, Slack) and
one retraining `Trigger`, recorded with its evidence. A failed trigger is
retried with exponential backoff (`Trigger` again when due) while its episode is
open, and every failure is reported (`Alert` "drift.retrain_failed"); it is never
dropped silently (an episode that ends with it still failing stops retrying it and
its "drift.resolved" says so), and never sent twice for one episode: the state says
it succeeded. The episode's Job read Failed is said once ("drift.retrain_job_failed",
`retrain_job_failed`) and replaced by one new Job an hour later (`job_retries`, `job_retry_s`), no more; one
deleted before it was read
so, once too ("drift.retrain_job_gone", `retrain_job_gone`: its outcome unknown). An episode that
opens while an earlier episode's trigger is still pending (its Job could not be
created yet) takes it over: one retraining covers both, on the newer data (two
Jobs in a row would train on the same data), its evidence names the earlier
episode (`supersedes`), and `Alert` "drift.retrain_superseded" says so.
An evaluation's alerts are stored with it before they are delivered (`hold`, the state's `outbox`), and
a later evaluation delivers what is still there (`unsent`): a process that dies between storing and
alerting loses no alert, as it loses no trigger.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field, replace
from typing import Any

from canary.analysis.shown import about, duration
from canary.drift.stats import MISSING_SURE_P, DatasetDrift, over_profile, profile_share
from canary.workqueue import exponential_delay

OK, DRIFTING = "ok", "drifting"

# The drift state's schema: every state `to_dict` writes names it and its writer (`rollout.WRITER`), as a rollout
# record does (decision 169). A state with none is schema 1 (this release and every older one). A release whose state
# an older canary would misread writes a higher one; an older canary refuses it (`NewerState`), never rewrites it.
# A field this canary does not know, in a state of its schema (a newer release's added field: `held_since`,
# `job_retries` were), is kept as it was read and written back with the state (`MonitorState.unknown`): dropped, a
# controller's older replica leading for a while in a rolling upgrade wrote every state back without them (decision
# 448). Such a field is kept as read, not updated with the fields this canary changes: a release whose added field
# must change with them (an episode's, a streak's) raises the schema instead.
STATE_SCHEMA = 1


class NewerState(ValueError):
    """A drift monitor state written in a schema above this canary's (`STATE_SCHEMA`): a newer canary's. Read as
    today's, its unknown fields were dropped and the next save wrote it back without them; it is refused instead
    (left as it is in its file or ConfigMap), naming the writer and the remedy."""

    def __init__(self, schema: int, writer: Any) -> None:
        from canary.rollout import WRITER

        self.schema, self.writer = schema, (str(writer)[:80] if isinstance(writer, str) and writer else "a newer canary")
        super().__init__(f"written by {self.writer} in drift state schema {schema}, which this canary ({WRITER}, "
                         f"drift state schema {STATE_SCHEMA}) cannot read: upgrade this canary (the state is left as "
                         "it is, never rewritten)")


@dataclass(frozen=True)
class MonitorConfig:
    enter_after: int = 3  # drifted evaluations in a row to start an episode
    exit_after: int = 3  # clean evaluations in a row to end one
    quiet_s: float = 3600.0  # after the first evaluation with live data, no episode starts
    retry_s: float = 30.0  # first retry of a failed trigger; doubles, up to retry_max_s
    retry_max_s: float = 1800.0
    # a retraining Job read Failed is replaced by a new one, `job_retries` times in an episode, `job_retry_s` after
    # it was read Failed (`retrain_job_failed`; decision 385): a cause that passes (a node lost, a data store down
    # for the Job's few minutes of pod retries) no longer leaves the episode with no retraining; a cause that stays
    # costs one more Job, never a Job a pass
    job_retries: int = 1
    job_retry_s: float = 3600.0
    # an open episode whose evaluations have been no verdict this long (the features not compared decide it) is said
    # once (`drift.episode_unmeasured`): a feature that stops arriving for good held it open for ever (decision 410)
    hold_tell_s: float = 86400.0


@dataclass(frozen=True)
class MonitorState:
    model: str
    version: str
    phase: str = OK
    drifted_in_row: int = 0  # drifted evaluations in a row whose windows do not overlap (`step`)
    clean_in_row: int = 0
    drifted_at: float = 0.0  # the last evaluation counted in drifted_in_row: the next counts a window later
    clean_at: float = 0.0  # the last evaluation counted in clean_in_row: likewise (the exit's hysteresis)
    # the first evaluation counted in the current drifted_in_row (0: none, or a state stored before the field): the
    # episode's drift has been read since its window began (the evidence's `since`, `retrain.create_job`)
    drifted_from: float = 0.0
    episode: int = 0  # episodes started so far (the current one while DRIFTING)
    quiet_until: float = 0.0
    traffic_since: float = 0.0  # the first evaluation with live data (0: none yet); the quiet period starts there
    trigger: str = ""  # "" none for this episode, "pending", "done"
    trigger_attempts: int = 0
    trigger_due: float = 0.0
    # the wait the retraining receiver asked at the trigger's last failure (a 429's or 5xx's Retry-After, at most
    # `retry_max_s`; 0 none): the retry is due no sooner, and `rebase` keeps it. An older canary keeps it as read
    # (`unknown`) without updating it: stale, it only lets `rebase` leave a later `trigger_due` alone
    trigger_asked: float = 0.0
    # the episode's retraining Job ("namespace/name": created, found or adopted; "" none, or a webhook) and, once it
    # was read Failed, why ("" not seen failed): a Failed Job left the episode open with no alert and no Job
    job: str = ""
    job_failed: str = ""
    # the episode's Job was read as gone (404: deleted by its ttlSecondsAfterFinished or a person) before it was
    # read Failed or Complete: its outcome is unknown; said once (`retrain_job_gone`), never read again
    job_gone: bool = False
    job_retries: int = 0  # new Jobs made (or due) for this episode after its Job was read Failed (`retrain_job_failed`)
    # the first of the open episode's evaluations in a row that were no verdict (0: none), and whether that run was
    # said (`drift.episode_unmeasured`, at `hold_tell_s`): its end is said too (`drift.episode_measured`)
    held_since: float = 0.0
    held_told: bool = False
    evidence: dict[str, Any] = field(default_factory=dict)  # the episode's start: features, scores, window
    missing: list[str] = field(default_factory=list)  # features alerted as MORE MISSING (not arriving included)
    # alerts decided and stored, not yet delivered (`hold`, `unsent`): a process killed between storing an
    # evaluation and acting on it lost its DriftDetected for good (the Job came from "pending", the alert never)
    outbox: list[dict[str, Any]] = field(default_factory=list)
    # the stored fields this canary does not know (a newer release's, in this schema), as read: written back as they
    # were, so a read-modify-write by this canary keeps them (STATE_SCHEMA's comment; decision 448)
    unknown: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The state as stored: its fields, with `schema` (STATE_SCHEMA) and `writer` (`rollout.WRITER`), and the
        fields it was read with that this canary does not know (`unknown`), as they were."""
        from canary.rollout import WRITER

        known = dataclasses.asdict(self)
        kept = known.pop("unknown")
        return {**kept, "schema": STATE_SCHEMA, "writer": WRITER, **known}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "MonitorState":
        """A stored state (`to_dict`'s shape; one without `schema` is schema 1, read as before). Raises NewerState
        for a schema above STATE_SCHEMA (before any field is read), ValueError naming the field for any other:
        a missing model or version, a field of the wrong type, a count below 0, a time that is not a finite
        number >= 0 (NaN, Infinity: `now >= NaN` is never true, so a pending retraining was never retried)."""
        if not isinstance(d, dict):
            raise ValueError("a drift monitor state must be an object")
        schema = d.get("schema", 1)
        if isinstance(schema, bool) or not isinstance(schema, int) or schema < 1:
            raise ValueError(f"drift monitor state: schema must be a positive integer, got {str(schema)[:40]!r}")
        if schema > STATE_SCHEMA:
            raise NewerState(schema, d.get("writer"))
        if "writer" in d and not isinstance(d["writer"], str):
            raise ValueError(f"drift monitor state: writer must be a string, got {str(d['writer'])[:40]!r}")
        known = {f.name: f for f in dataclasses.fields(cls) if f.name != "unknown"}
        kw = {k: v for k, v in d.items() if k in known}
        # the rest is a newer release's (a stored "unknown" too: it is no field of a state written); kept as read
        kw["unknown"] = {k: v for k, v in d.items() if k not in known and k not in ("schema", "writer")}
        for name in ("model", "version", "phase", "trigger", "job", "job_failed"):
            if name in kw and not isinstance(kw[name], str):
                raise ValueError(f"drift monitor state: {name} must be a string, got {kw[name]!r}")
        for name in ("drifted_in_row", "clean_in_row", "episode", "trigger_attempts", "job_retries"):
            if name in kw and (isinstance(kw[name], bool) or not isinstance(kw[name], int) or kw[name] < 0):
                raise ValueError(f"drift monitor state: {name} must be an integer >= 0, got {kw[name]!r}")
        if "traffic_since" not in kw and kw.get("quiet_until"):  # a state written before the field: its
            kw["traffic_since"] = kw["quiet_until"]  # quiet period was set when first seen; keep it, never restart it
        for name in ("quiet_until", "trigger_due", "traffic_since", "drifted_at", "clean_at", "drifted_from",
                     "held_since"):
            if name in kw and (isinstance(kw[name], bool) or not isinstance(kw[name], (int, float))
                               or not math.isfinite(kw[name]) or kw[name] < 0):
                raise ValueError(f"drift monitor state: {name} must be a finite number of seconds >= 0 (a Unix "
                                 f"time, 0 for none), got {kw[name]!r}")
        asked = kw.get("trigger_asked", 0.0)
        if isinstance(asked, bool) or not isinstance(asked, (int, float)) or not math.isfinite(asked) or asked < 0:
            raise ValueError(f"drift monitor state: trigger_asked must be a finite number of seconds >= 0, got "
                             f"{asked!r}")
        for name in ("job_gone", "held_told"):
            if name in kw and not isinstance(kw[name], bool):
                raise ValueError(f"drift monitor state: {name} must be true or false, got {kw[name]!r}")
        if "missing" in kw and (not isinstance(kw["missing"], list) or not all(isinstance(x, str) for x in kw["missing"])):
            raise ValueError("drift monitor state: missing must be a list of feature names")
        if "evidence" in kw and not isinstance(kw["evidence"], dict):
            raise ValueError("drift monitor state: evidence must be an object")
        if "outbox" in kw and (not isinstance(kw["outbox"], list) or not all(
                isinstance(a, dict) and isinstance(a.get("event"), str) and isinstance(a.get("message"), str)
                for a in kw["outbox"])):
            raise ValueError("drift monitor state: outbox must be a list of alerts (event, message)")
        for i, a in enumerate(kw.get("outbox") or ()):  # an alert's time is its webhook id's and its body's `at`
            at = a.get("at")
            if at is not None and (isinstance(at, bool) or not isinstance(at, (int, float)) or not math.isfinite(at)
                                   or at < 0):
                raise ValueError(f"drift monitor state: outbox[{i}].at must be a finite number of seconds >= 0 (a "
                                 f"Unix time) or absent, got {at!r}")
        if kw.get("phase", OK) not in (OK, DRIFTING):  # the field named, as every other one is
            raise ValueError(f"drift monitor state: phase must be {OK!r} or {DRIFTING!r}, got {kw['phase']!r}")
        if kw.get("trigger", "") not in ("", "pending", "done"):
            raise ValueError(f"drift monitor state: trigger must be '', 'pending' or 'done', got {kw['trigger']!r}")
        for name in ("model", "version"):
            if name not in kw:
                raise ValueError(f"drift monitor state: {name} missing")
        return cls(**kw)


@dataclass(frozen=True)
class Alert:
    event: str  # "drift.started" | "drift.resolved" | "drift.retrain_failed" | "drift.retrain_superseded" | ...
    message: str
    evidence: dict[str, Any]
    warning: bool = True
    fields: dict[str, Any] = field(default_factory=dict)  # more fields for its log line
    notify: bool = True  # False: its log line only, no Kubernetes Event and no notification (`trigger_result`)
    # when it happened, the notification's `at` (and so its id); None: the evidence's (an episode's alerts: the
    # evaluation's time, the same when the outbox delivers it again). A trigger's failure and recovery have their
    # own: with the episode's, every attempt's notification had one id, and a receiver keeping ids dropped them
    at: float | None = None


@dataclass(frozen=True)
class Trigger:
    """Start retraining for this episode (idempotent per episode: the Job's name carries it)."""

    episode: int
    evidence: dict[str, Any]


Action = Alert | Trigger


def evidence_of(result: DatasetDrift, *, window_s: float, now: float, reference: str = "",
                unmeasured: int = 0) -> dict[str, Any]:
    """What an alert and a trigger carry: which features, their tests and scores, the window, and the
    training profile compared with (`reference`: its file, hash and rows, when known). `share` is of the whole
    profile, at least, with `share_max` when `unmeasured` profiled features were not compared (`profile_share`):
    the share of the compared ones alone, 1.0 for 2 of 2 compared of four, went to the retraining Job and the
    webhook as the episode's (decision 411)."""
    low, high = profile_share(result, unmeasured) or (result.share, result.share)
    return {"at": now, "window_s": window_s, "share": low, **({"share_max": high} if unmeasured > 0 else {}),
            **({"reference": reference} if reference else {}),
            "drifted_features": list(result.drifted_features()),
            "features": [{"feature": f.feature, "test": f.test, "value": f.value, "threshold": f.threshold,
                          "score": f.score, "psi": f.psi, "drifted": f.drifted, "n_current": f.n_current,
                          "p_value": f.p_value}
                         for f in result.features]}


def step(state: MonitorState, result: DatasetDrift, now: float, config: MonitorConfig, *,
         window_s: float, reference: str = "", unmeasured: tuple[str, ...] | list[str] = ()
         ) -> tuple[MonitorState, list[Action]]:
    """One evaluation of the live data against the profile (`reference` says which, for the alert;
    `unmeasured`: the profiled features it could not compare, which the share leaves out and the alert
    names: "1 of 1 features drifted" of a ten-feature profile read as the whole input)."""
    state = rebase(state, now, config)
    state, actions = _missing_alerts(state, result, now)
    if not result.features:  # no live data: neither drift nor its absence
        # no verdict, as one over features not compared: it goes on with (or starts) an open episode's no-verdict run,
        # never ends it. It was left out of the run, so an episode whose version got no traffic again (all of it moved
        # to another version, an exporter gone) stayed open for ever, its gauge 1, and nothing said it (decision 447)
        state, held = _held(state, None, unmeasured, now, config, f"{state.model} {state.version}", nothing=True)
        return state, actions + held + due(state, now)
    if not state.traffic_since:  # the version serves: its quiet period starts now
        state = replace(state, traffic_since=now, quiet_until=max(state.quiet_until, now + config.quiet_s))
    # the verdict over the whole profile: the features not compared can make it neither drift nor its absence
    # (decision 382); None holds the streaks, as no evidence either way
    verdict = over_profile(result, len(unmeasured))
    if verdict is None:
        # drift among the features compared that the ones not compared could undo, or no drift among them that
        # they could make drift: one drifted feature of ten, the other nine without live data at night, read as
        # "1 of 1 drifted", dataset drift, and three such windows opened an episode and a retraining Job
        pass
    elif verdict and state.drifted_in_row and now - state.drifted_at < window_s:
        # its window overlaps the last counted one's: the same traffic, mostly, so no new evidence; the
        # streak holds (a clean evaluation still breaks it)
        state = replace(state, clean_in_row=0)
    elif verdict:
        state = replace(state, drifted_in_row=state.drifted_in_row + 1, drifted_at=now, clean_in_row=0,
                        drifted_from=state.drifted_from if state.drifted_in_row else now)
    # no drift over the whole profile whatever the features not compared are counts as clean, even when the episode
    # opened on some of them: decision 134 held the streaks then (its case, `age` not compared and `city` clean, is
    # no verdict now, 382), and a feature that stopped arriving for good kept its episode open for ever, no new one
    # possible, though no dataset drift was certain (decision 410). `drift.resolved` names them
    elif state.clean_in_row and now - state.clean_at < window_s:
        # likewise a clean window that overlaps the last counted clean one: one clean hour read three
        # times ended a real drift's episode, which the next drifted windows opened again (a Job each)
        state = replace(state, drifted_in_row=0)
    else:
        state = replace(state, clean_in_row=state.clean_in_row + 1, clean_at=now, drifted_in_row=0)
    ev = evidence_of(result, window_s=window_s, now=now, reference=reference, unmeasured=len(unmeasured))
    if unmeasured:
        ev = {**ev, "unmeasured": list(unmeasured)}
    who = f"{state.model} {state.version}"
    state, held = _held(state, verdict, unmeasured, now, config, who)
    actions += held
    # on a window that drifted: a streak held past enter_after (its windows inside the quiet period) opened the
    # episode at the first window after it, one that was no verdict too, its alert saying "drift whatever they
    # are" of features that could undo it (decision 398)
    if verdict and state.phase == OK and state.drifted_in_row >= config.enter_after and now >= state.quiet_until:
        earlier = state if state.trigger == "pending" else None  # an earlier episode's retraining not yet started
        # since when this drift has been read: the start of the first window its streak counted (a state stored
        # before `drifted_from`: its windows, back to back). A retraining Job of this model version created since
        # then is this drift's, whoever created it (`retrain.create_job`: one retraining, whatever the watchers)
        first = state.drifted_from or now - (state.drifted_in_row - 1) * window_s
        ev = {**ev, "since": first - window_s}
        if earlier is not None:
            ev = {**ev, "supersedes": superseded(earlier)}
        state = replace(state, phase=DRIFTING, episode=state.episode + 1, trigger="pending", trigger_attempts=0,
                        trigger_due=now, trigger_asked=0.0, evidence=ev, job="", job_failed="", job_gone=False,
                        job_retries=0, held_since=0.0, held_told=False)
        drifted = [f for f in result.features if f.drifted]
        n = len(result.features)
        left = list(unmeasured)
        names = ", ".join(left[:5]) + (f" and {len(left) - 5} more" if len(left) > 5 else "")
        # with features not compared, the share is said of the whole profile: the episode opened only because the
        # drifted ones alone are half of it (`over_profile`), whatever the others are
        share = (f"{len(drifted)} of {n + len(left)} profiled features drifted ({len(drifted) / (n + len(left)):.0%}"
                 f" at least, {len(left)} not compared: drift whatever they are; {how_much(drifted)})" if left else
                 f"{len(drifted)} of {n} features drifted ({result.share:.0%}; {how_much(drifted)})")
        actions.append(Alert("drift.started", f"{who}: dataset drift, {share} in "
                                              f"{_in_a_row(state.drifted_in_row, 'window', f' of {duration(window_s)}')}"
                                              + (f", against {reference}" if reference else "")
                                              + (f"; not compared (no live data, or not arriving): {names}"
                                                 if left else "")
                                              + f"; drift episode {state.episode}", ev))
        if earlier is not None:
            tries = earlier.trigger_attempts
            actions.append(Alert("drift.retrain_superseded",
                                 f"{who}: the retraining of drift episode {earlier.episode}{_opened(earlier, now)} "
                                 f"was never started ({tries} failed attempt{'' if tries == 1 else 's'}); episode "
                                 f"{state.episode}'s retraining covers both, on the newer data", ev,
                                 fields={"superseded_episode": earlier.episode, "failed_attempts": tries}))
    elif state.phase == DRIFTING and state.clean_in_row >= config.exit_after:
        ended = replace(state, phase=OK, held_since=0.0, held_told=False)
        lost = _unmeasured_drifted(state, unmeasured)
        # a new Job due after a failed one is not made once the drift has ended (as a failing trigger: `due`), and
        # is no trigger a later episode takes over (`supersedes`: it never failed to start)
        state = replace(ended, trigger="") if ended.trigger == "pending" and ended.job_failed else ended
        actions.append(Alert("drift.resolved", f"{who}: no dataset drift in "
                                               f"{_in_a_row(state.clean_in_row, 'evaluation')}; episode "
                                               f"{state.episode} ended"
                                               + (f" (over the whole profile whatever {', '.join(lost)} "
                                                  f"{'is' if len(lost) == 1 else 'are'}: not compared in this window "
                                                  f"though the episode opened on "
                                                  f"{'it' if len(lost) == 1 else 'them'}; {_GONE_FOR_GOOD})"
                                                  if lost else "")
                                               + _retraining_at_end(ended), ev,
                             warning=False, fields={**_retraining_fields(ended),
                                                    **({"unmeasured": lost} if lost else {})}))
    return state, actions + due(state, now)


_GONE_FOR_GOOD = ("a feature that no longer arrives for good (removed from the model's inputs, no longer exported) "
                  "stays in the baseline and is never compared again: re-capture the baseline without it (`canary "
                  "baseline capture`), or fix its export")


def _held(state: MonitorState, verdict: bool | None, unmeasured: tuple[str, ...] | list[str], now: float,
          config: MonitorConfig, who: str, *, nothing: bool = False) -> tuple[MonitorState, list[Action]]:
    """An open episode's run of no-verdict evaluations (`over_profile` None: the features not compared decide it),
    which holds the streaks, so the episode cannot end: said once when it has lasted `config.hold_tell_s`
    (`drift.episode_unmeasured`, naming the features not compared and what to do), and its end once when it was
    said (`drift.episode_measured`). A feature that stopped arriving for good (removed from the model's inputs
    without re-capturing the baseline, an exporter change) held the episode open for ever, its
    `model_data_drift_episode` 1 and no new episode possible, and nothing said why (decision 410). Outside an
    episode, nothing (the streaks' hold starts or ends no episode). `nothing`: this evaluation compared no feature
    at all (no live data): the run goes on, and its line says so and what to look at (decision 447)."""
    if state.phase != DRIFTING:
        return state, []
    if verdict is None:
        since = state.held_since or now
        state = replace(state, held_since=since) if since != state.held_since else state
        if state.held_told or now - since < config.hold_tell_s:
            return state, []
        left = list(unmeasured)
        names = ", ".join(left[:10]) + (f" and {len(left) - 10} more" if len(left) > 10 else "")
        now_said = (f"no live data of any profiled feature now ({len(left)}): the version gets no traffic (all of it "
                    f"moved to another version? then remove this baseline), or its exporter stopped exporting"
                    if nothing else f"not compared now: {names}. Too little traffic at night passes; {_GONE_FOR_GOOD}")
        return replace(state, held_told=True), [Alert(
            "drift.episode_unmeasured",
            f"{who}: drift episode {state.episode} cannot end: its evaluations have had no verdict over the whole "
            f"profile for {about(now - since)} (the features not compared decide it, so an end of the drift "
            f"would not be seen); {now_said}",
            state.evidence, fields={"since": since, "unmeasured": left, "live_data": not nothing}, at=now)]
    if not state.held_since:
        return state, []
    told, since = state.held_told, state.held_since
    state = replace(state, held_since=0.0, held_told=False)
    if not told:
        return state, []
    return state, [Alert("drift.episode_measured",
                         f"{who}: drift episode {state.episode} has a verdict again over the whole profile "
                         f"({'dataset drift' if verdict else 'no dataset drift'}) after {about(now - since)} of "
                         f"none", state.evidence, warning=False, fields={"since": since}, at=now)]


def _retraining_at_end(state: MonitorState) -> str:
    """What the `drift.resolved` line says of the ending episode's retraining when it did not run: a trigger still
    failing (pending: no longer retried, `due`), or a Job that failed (`retrain_job_failed`; its new Job not made
    when it was still due); "" otherwise."""
    if state.job_failed:
        return (f"; its retraining Job {state.job} FAILED ({state.job_failed})"
                + ("; its new Job, still due, is not made now that the drift has ended" if state.trigger == "pending"
                   else ""))
    if state.trigger == "pending":
        n = state.trigger_attempts
        return (f"; its retraining was NEVER STARTED ({n} failed attempt{'' if n == 1 else 's'}) and is no longer "
                f"retried now that the drift has ended (a later episode's retraining covers it)")
    if state.job_gone:
        return (f"; its retraining Job {state.job} was deleted before its outcome was read (UNKNOWN whether it "
                f"succeeded)")
    return ""


def _retraining_fields(state: MonitorState) -> dict[str, Any]:
    """`drift.resolved`'s fields on the ending episode's retraining (`_retraining_at_end`)."""
    if state.job_failed:
        return {"retraining": "failed", "job": state.job, "reason": state.job_failed}
    if state.trigger == "pending":
        return {"retraining": "never started", "failed_attempts": state.trigger_attempts}
    if state.job_gone:
        return {"retraining": "unknown", "job": state.job}
    return {}


def _unmeasured_drifted(state: MonitorState, unmeasured: tuple[str, ...] | list[str]) -> list[str]:
    """The features the open episode drifted on (its evidence) that this evaluation did not compare."""
    drifted = state.evidence.get("drifted_features") or []
    return [f for f in drifted if f in set(unmeasured)]


def rebase(state: MonitorState, now: float, config: MonitorConfig) -> MonitorState:
    """`state` with every stored time brought back to at most what `now` allows: a time stored later than
    it can be means the clock went back since (NTP stepped a clock that ran ahead, a watcher restarted on a
    machine whose clock is behind the last one's, a leader's replaced by another's). Left as they were, a
    drifted (or clean) evaluation stored a day ahead made every evaluation of that day read as its window's
    overlap, so a real drift opened no episode (and an open one could not end) for a day, a failed retraining
    trigger was retried a day later, and the quiet period lasted a day longer: all of it silent. The streaks
    are kept; the next evaluation that counts is one window after `now` (never sooner: how much real time
    passed is not known), a pending trigger is due at most one backoff delay after `now`, and the quiet
    period ends at most `quiet_s` after it."""
    changes: dict[str, Any] = {}
    if state.drifted_at > now:
        changes["drifted_at"] = now
    if state.clean_at > now:
        changes["clean_at"] = now
    if state.drifted_from > now:
        changes["drifted_from"] = now
    if state.held_since > now:
        changes["held_since"] = now
    if state.traffic_since > now:
        changes["traffic_since"] = now
    if state.quiet_until > now + config.quiet_s:
        changes["quiet_until"] = now + config.quiet_s
    if state.trigger == "pending":
        delay = exponential_delay(config.retry_s, state.trigger_attempts, config.retry_max_s)
        if state.job_failed and not state.trigger_attempts:  # the new Job after a failed one: due job_retry_s later
            delay = max(delay, config.job_retry_s)
        delay = max(delay, min(state.trigger_asked, config.retry_max_s))  # the receiver's Retry-After (decision 541)
        if state.trigger_due > now + delay:
            changes["trigger_due"] = now + delay
    return replace(state, **changes) if changes else state


def superseded(earlier: MonitorState) -> list[dict[str, Any]]:
    """What a new episode's evidence says of the earlier episode whose pending trigger it takes over
    (and of those that one had taken over): episode, start, share, drifted features, failed attempts."""
    ev = earlier.evidence
    before = [x for x in ev.get("supersedes") or [] if isinstance(x, dict)]
    return before + [{"episode": earlier.episode, "at": ev.get("at"), "share": ev.get("share"),
                      "drifted_features": list(ev.get("drifted_features") or []),
                      "failed_attempts": earlier.trigger_attempts}]


def _opened(earlier: MonitorState, now: float) -> str:
    """ " (opened 2h5m earlier)": how long before this one the earlier episode opened (pure: no clock)."""
    at = earlier.evidence.get("at")
    if isinstance(at, bool) or not isinstance(at, (int, float)) or now < at:
        return ""
    return f" (opened {about(now - at)} earlier)"


def how_much(drifted: list[Any], most: int = 5) -> str:
    """Each drifted feature with its test, value and threshold, the most drifted first (at most `most`
    named): what drifted and by how much, on one line."""
    def one(f: Any) -> str:
        if f.test in ("ks", "chisquare", "z"):
            return f"{f.feature} {f.test} p {f.value:.3g} < {f.threshold:g}"
        return (f"{f.feature} {f.test} {f.value:.3g} >= {f.threshold:g}"
                + (f" (p {f.p_value:.3g})" if f.p_value is not None else ""))
    ranked = sorted(drifted, key=lambda f: -f.score)
    more = len(ranked) - most
    return ", ".join(one(f) for f in ranked[:most]) + (f", and {more} more" if more > 0 else "")


def _in_a_row(n: int, what: str, of: str = "") -> str:
    """ "3 windows of 1h in a row", "1 window of 1h": what a person reads ("in 1 windows of 1h in a row" read as a
    slip, and "1 evaluations in a row" too)."""
    return f"{n} {what}{of}" if n == 1 else f"{n} {what}s{of} in a row"


def _missing_alerts(state: MonitorState, result: DatasetDrift, now: float) -> tuple[MonitorState, list[Action]]:
    """Features whose missing rate rose (MORE MISSING; one that stopped arriving is the extreme case) are
    alerted when they start and when they recover. They are not part of the drift share and start no
    episode (retraining on a broken pipeline's data would not help), but they must never go unsaid:
    the share is computed without them. Only features with live counts are judged (no live data at
    all says nothing about a feature)."""
    if not result.missing:
        return state, []
    judged = {m.feature for m in result.missing}
    before = set(state.missing)
    # alerted when the rise is beyond doubt (MISSING_SURE_P), kept while it is MORE MISSING at all
    now_missing = sorted(m.feature for m in result.missing if m.shifted
                         and (m.feature in before or m.p_value < MISSING_SURE_P))
    kept = sorted((before - judged) | set(now_missing))
    started = [f for f in now_missing if f not in before]
    ended = sorted(f for f in before & judged if f not in now_missing)
    who = f"{state.model} {state.version}"
    gone = set(result.not_arriving())
    by = {m.feature: m for m in result.missing}
    actions: list[Action] = []
    if started:
        what = "; ".join(("NOT ARRIVING: " + by[f].reason().removesuffix("; MORE MISSING")) if f in gone
                         else by[f].reason() for f in started)
        actions.append(Alert("drift.features_missing", f"{who}: {what} (missing: absent, None, NaN, or text "
                                                       f"sent for a numeric feature)",
                             {"features": [by[f].reason() for f in started], "not_arriving": sorted(gone)},
                             at=now))  # its own time (no episode's): delivered again from the outbox, the same id
    if ended:
        actions.append(Alert("drift.features_missing_resolved", f"{who}: missing values back to training's "
                                                                f"rate for {', '.join(ended)}",
                             {"features": [by[f].reason() for f in ended]}, warning=False, at=now))
    return (replace(state, missing=kept) if kept != list(state.missing) else state), actions


def hold(state: MonitorState, actions: list[Action]) -> MonitorState:
    """`state` with the alerts among `actions` in its outbox, to be stored before they are delivered: the
    process that stored them may die before it delivers them, and the next evaluation (any process's)
    delivers them then (`unsent`). At least once: one killed after delivering and before storing the
    emptied outbox delivers them twice, never none. An alert whose evidence is the episode's keeps none of
    its own (the state holds it once)."""
    box = [{"event": a.event, "message": a.message, "warning": a.warning, "fields": dict(a.fields),
            **({} if a.evidence == state.evidence else {"evidence": a.evidence}),
            **({} if a.notify else {"notify": False}), **({} if a.at is None else {"at": a.at})}
           for a in actions if isinstance(a, Alert)]
    return replace(state, outbox=box) if box != state.outbox else state


def unsent(state: MonitorState) -> list[Action]:
    """The alerts `state`'s outbox holds (stored by an evaluation whose process did not deliver them)."""
    return [Alert(str(a["event"]), str(a["message"]), a.get("evidence", state.evidence), bool(a.get("warning", True)),
                  dict(a.get("fields") or {}), a.get("notify") is not False,
                  float(a["at"]) if isinstance(a.get("at"), (int, float)) else None) for a in state.outbox]


def due(state: MonitorState, now: float) -> list[Action]:
    """The retraining trigger of the open episode when it is due (a retry), whatever this evaluation
    measured: the drift it acts on was decided when the episode opened. Only while the episode is open: a
    trigger still failing when its episode ended is no longer retried (its retry created a Job days after
    the drift had ended, and `drift watch --once` exited 0 meanwhile); it stays "pending", so the next episode
    takes it over (`supersedes`), and `drift.resolved` says it never started (decision 276)."""
    if state.trigger == "pending" and state.phase == DRIFTING and now >= state.trigger_due:
        return [Trigger(state.episode, state.evidence)]
    return []


def retrain_job_failed(state: MonitorState, job: str, why: str, now: float,
                       config: MonitorConfig | None = None) -> tuple[MonitorState, list[Action]]:
    """The open episode's retraining Job `job` ("namespace/name", the one `state.job` records) was read with a
    Failed condition (`why`: its reason and message): recorded in `state.job_failed` and alerted once
    (`drift.retrain_job_failed`). A new Job is made for the episode `config.job_retries` times (1), each
    `config.job_retry_s` (1 h) after its predecessor was read Failed: the trigger is pending again, due then, its
    evidence marked `retry` (a Job of its own: `retrain.episode_start`) with the Jobs that failed (`retry_of`). The
    Job's own `backoffLimit` retried its pods within minutes, and a cause that lasts longer (a node pool lost, a data
    store down) left the episode with no retraining for good; a new Job at every pass was a Job storm, so one, an
    hour later. After that, none: a person fixes the cause and starts the retraining, and the next episode creates its
    own Job. Nothing when the episode is not open, the Job is not its recorded one, or its failure was recorded."""
    if state.phase != DRIFTING or not job or state.job != job or state.job_failed:
        return state, []
    why = why or "Failed"
    config = config or MonitorConfig()
    who = f"{state.model} {state.version}: the retraining Job {job} of drift episode {state.episode} FAILED ({why})"
    if state.job_retries < config.job_retries:
        n = state.job_retries + 1
        before = [x for x in state.evidence.get("retry_of") or [] if isinstance(x, str)]
        due_at = now + config.job_retry_s
        state = replace(state, job_failed=why, job_retries=n, trigger="pending", trigger_attempts=0,
                        trigger_due=due_at, trigger_asked=0.0,
                        evidence={**state.evidence, "retry": n, "retry_of": [*before, job]})
        left = config.job_retries - n
        message = (f"{who}; a new Job is created for the episode in {duration(config.job_retry_s)} (the "
                   f"evaluation after; `new_job_due`), in case the cause passes (a node lost, a data store down while the Job's pods "
                   f"retried); {'it is the last: ' if not left else ''}fix the cause meanwhile if it stays")
    else:
        state = replace(state, job_failed=why)
        tried = state.job_retries + 1
        message = (f"{who}; the episode stays open and nothing is retraining it: no new Job is created "
                   f"({tried} Job{'' if tried == 1 else 's'} failed for it: the Job's backoffLimit was its pods' "
                   f"retries{', and its new Jobs the retries of the Job' if tried > 1 else ''}); fix the cause and "
                   f"start the retraining by hand (the next episode creates its own Job)")
    return state, [Alert("drift.retrain_job_failed", message, state.evidence,
                         fields={"job": job, "reason": why,
                                 "new_job_due": state.trigger_due if state.trigger == "pending" else None}, at=now)]


def retrain_job_gone(state: MonitorState, job: str, now: float) -> tuple[MonitorState, list[Action]]:
    """The open episode's retraining Job `job` ("namespace/name", `state.job`) was read as not found (404) before it
    was ever read Failed: deleted by its template's `ttlSecondsAfterFinished` or by a person, so whether it
    succeeded is unknown. Recorded in `state.job_gone` (not read again) and alerted once (`drift.retrain_job_gone`,
    a warning: it was a debug line only, and on-call never learnt that the episode's retraining was gone). No new
    Job is created (as `retrain_job_failed`: it may have failed, and a new one would fail the same way; or it
    succeeded). Nothing when the episode is not open, the Job is not its recorded one, or its end was recorded."""
    if state.phase != DRIFTING or not job or state.job != job or state.job_failed or state.job_gone:
        return state, []
    state = replace(state, job_gone=True)
    return state, [Alert("drift.retrain_job_gone",
                         f"{state.model} {state.version}: the retraining Job {job} of drift episode {state.episode} "
                         f"is GONE (deleted, by its ttlSecondsAfterFinished or by hand, before its outcome was "
                         f"read): whether the retraining succeeded is UNKNOWN; no new Job is created; check the "
                         f"trainer's output or logs and start the retraining by hand if it did not succeed",
                         state.evidence, fields={"job": job, "outcome": "unknown"}, at=now)]


def reported_attempt(attempts: int) -> bool:
    """Whether the `attempts`-th failure in a row of one trigger is reported to people (a Kubernetes Event and
    the notifications), not only logged: the 1st, 2nd, 4th, 8th... At the 30 min cap every attempt reported
    was 48 Slack messages and Events a day for one receiver down; now six in the first day (the first
    failure among them), ever rarer after (the 64th at about 30 h), and the log line at every attempt."""
    return attempts >= 1 and attempts & (attempts - 1) == 0


def trigger_result(state: MonitorState, ok: bool, now: float, config: MonitorConfig,
                   error: str = "", target: str = "", retry_after_s: float | None = None,
                   ) -> tuple[MonitorState, list[Action]]:
    """Record a trigger's outcome: done, or retried later with backoff (and reported: `reported_attempt`).
    A success after failures is reported too (`drift.retrain_recovered`): its failures reached people, and
    without it they were the last word (`target`: the Job or webhook that took it). `retry_after_s`: the wait the
    receiver asked with its failure (a 429's `Retry-After`): the retry waits the longer of it and the backoff, at
    most `config.retry_max_s` (the backoff's own ceiling; decision 541)."""
    if state.trigger != "pending":
        return state, []
    if ok:
        failed = state.trigger_attempts
        if not failed:
            return replace(state, trigger="done"), []
        return replace(state, trigger="done"), [Alert(
            "drift.retrain_recovered", f"{state.model} {state.version}: retraining for episode {state.episode} "
                                       f"started after {failed} failed attempt{'' if failed == 1 else 's'}"
                                       + (f": {target}" if target else ""),
            state.evidence, warning=False, fields={"failed_attempts": failed}, at=now)]
    attempts = state.trigger_attempts + 1
    delay = exponential_delay(config.retry_s, attempts, config.retry_max_s)
    asked = min(retry_after_s, config.retry_max_s) if retry_after_s and retry_after_s > 0 else 0.0
    delay = max(delay, asked)
    state = replace(state, trigger_attempts=attempts, trigger_due=now + delay, trigger_asked=asked)
    nxt = next(n for n in range(attempts + 1, 2 * attempts + 1) if reported_attempt(n))
    return state, [Alert("drift.retrain_failed", f"{state.model} {state.version}: retraining trigger for episode "
                                                  f"{state.episode} failed (attempt {attempts}): {error}; "
                                                  f"retrying in {delay:.0f}s (every attempt is logged; Event and "
                                                  f"notifications at attempt {nxt} next, or at its success)",
                         state.evidence, fields={"attempt": attempts}, notify=reported_attempt(attempts), at=now)]
