"""The rollout state machine: pure, so every decision is a function of its inputs.

    transition(state, event, policy) -> (new_state, actions)

No clocks (events carry `now`), no I/O. The controller carries out the actions
in order; the new state is persisted in the same write as the weights (a
`SetWeights` action carries it), so what is recorded and what is routed never
disagree. Phases::

    PENDING ──Begin──▶ PROGRESSING ──(last step passes)──▶ PROMOTING ──▶ PROMOTED
       │                 │   ▲  │
       │            Pause│   │Resume
       │                 ▼   │  └─(breach | deadline | gate | Rollback)──▶ ROLLED_BACK
       │               PAUSED
       └──(gate refused / infrastructure)──▶ ABORTED        (stable 100% in every terminal phase
                                                              but PROMOTED, where stable *is* the new version)

PROMOTING is persisted before the stable subset is re-pointed at the new
version, so a process killed half-way finishes the promotion on restart
instead of "rolling back" onto a subset that already runs the new version.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from canary import ci_job
from canary.end_words import REFUSED_EDIT, REFUSED_POLICY_EDIT, next_step
from canary.model import (STABLE_ONLY, Outcome, Verdict, Weights, next_pass_anchor, pass_floor, pass_ratio,
                          request_count, valid_pass_anchor)

if TYPE_CHECKING:  # only the annotations name it: loading pydantic's models here cost every `canary` command
    from canary.policy import Policy  # ~0.3 s of CPU, `status --help` included (decision 965)

# Phases live here (not in model.Phase) because PROMOTING is a state-machine detail.
PENDING, PROGRESSING, PAUSED, PROMOTING = "pending", "progressing", "paused", "promoting"
PROMOTED, ROLLED_BACK, ABORTED = "promoted", "rolled_back", "aborted"
TERMINAL = frozenset({PROMOTED, ROLLED_BACK, ABORTED})
PHASES = frozenset({PENDING, PROGRESSING, PAUSED, PROMOTING}) | TERMINAL

# The record's schema (decision 169), written into every record as `schema`, with the writer as `writer`. A record
# without one is schema 1: what this release and every one before it wrote. A release whose record an older canary
# would misread (a third weight, a field of another type, a field it needs to drive the rollout right) bumps it;
# a field an older reader may ignore (`_parse` drops fields it does not know) and a new phase (`unowned.newer`) do
# not need to. A reader meeting a schema above its own never ends, resumes or rewrites that rollout (`NewerRecord`);
# only `canary rollback`, asked by a person, sends stable 100% under it.
SCHEMA = 1
# who wrote a record, in words (`writer`); tests/unit/test_record_schema.py keeps it at pyproject's version
WRITER = "modelcanary 0.1.0"

# The class of an end's reason (`end_cause` on its lines and in `-o json`, `canary_rollbacks_total{reason}`)
ROLLBACK_REASONS = ("check", "gate", "deadline", "operator", "interrupted", "infrastructure", "foreign_edit", "abandoned",
                    "other")
# (pattern on the start of the reason, class); the first match wins. The reasons are the ones
# rollout.py and the controller write: "gate: ...", "no verdict after ...", "operator: ...",
# "interrupted", "abandoned: ..." / "orphaned: ..." (canary.sweep), and a verdict's
# "<check>: <why>; <check>: <why>".
# A class's word ends where a check's name would go on (`_WORD_END`, decision 582): a breach of a check whose name
# starts with one ("foreign_calls: ...", "kube-latency: ...", "interrupts: ...") is a check's, never a foreign edit,
# infrastructure or an interruption ("not the canary", the headline said of a canary shown bad)
_WORD_END = r"(?![\w.\-/])"
_REASON_RULES: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(p.replace("\\b", _WORD_END), re.I), c) for p, c in (
    (r"^\s*(operator|superseded)\b", "operator"),  # superseded: the CanaryRollout's spec edited mid-rollout
    # a spec edited mid-rollout that the controller refuses (`REFUSED_EDIT`): the edit's, a person's (decision 801)
    (rf"^\s*{re.escape(REFUSED_EDIT)}\b", "operator"),
    # ...and a policyRef ConfigMap edited mid-rollout to a policy it refuses (`REFUSED_POLICY_EDIT`, decision 822)
    (rf"^\s*{re.escape(REFUSED_POLICY_EDIT)}\b", "operator"),
    (r"^\s*gate\b", "gate"),
    (r"^\s*(no verdict|deadline)\b", "deadline"),
    (r"^\s*interrupt(ed|ion)?\b", "interrupted"),
    # a weights edit put back too often, a subset re-pointed (subset drift)
    (r"^\s*(foreign|weights\.foreign(_edit)?|the (canary|stable) subset was re-pointed)\b", "foreign_edit"),
    # an end typed over a split by hand, ended at stable 100% (canary.unowned, decision 157)
    (r"^\s*the record says\b", "foreign_edit"),
    # the route's record removed or edited outside the rollout (promote's `_lost_reason`, the controller's
    # `_no_state`), or another rollout's now (`taken over`, the controller's rescue): they were "other" (decision 572)
    (r"^\s*(the rollout's record \(annotation|rollout state annotation \S+ is no state|taken over: |the route no "
     r"longer records)", "foreign_edit"),
    (r"^\s*CanaryRollout deleted\b", "operator"),
    # a step refused on a route re-shaped by hand mid-rollout: another model's route given its name (570's
    # `istio.not_noted_words`), its destinations on two ports (578's addendum); they read "infrastructure" (590)
    (r"^\s*failed: .*(takes other requests \(its match\) than the route noted|destinations name different ports "
     r"of the service)", "foreign_edit"),
    # a process's or an API call's failure with traffic split (promote's fail-safe, the controller's `_failed`):
    # `failed: <error>` read as a check's `name: reason`, a pipeline took an aborted rollout for a bad canary
    (r"^\s*failed: ", "infrastructure"),
    (r"^\s*(infrastructure|kube|kubernetes|prometheus|metrics unavailable|unreachable)\b", "infrastructure"),
    (r"^\s*(abandoned|orphaned)\b", "abandoned"),  # ended by the sweep: its owner is gone (canary.sweep)
    # a verdict's "<check>: <why>", or "<check>, <check>: <why>" when checks fail for one reason (unrouted)
    (r"^\s*[\w.\-/]+(, [\w.\-/]+)*: ", "check"),
))


def classify_reason(reason: str) -> str:
    """Map a free-text rollback reason onto the closed set of `canary_rollbacks_total{reason}`.

    The label must stay low-cardinality (a raw reason carries numbers), yet "why do we roll back"
    must be one query; anything unrecognised is "other", never a new label value. Only the fallback since
    decision 607: an end records its class where it is decided (`RolloutState.end_cause`, `cause_of`); words are
    read for a record written before that field (an old record resumed or reported) and for an end whose
    producer names none.
    """
    for pattern, cls in _REASON_RULES:
        if pattern.search(reason or ""):
            return cls
    return "other"


# Ends that say the canary itself was shown bad (a check beyond its limit, a gate it failed): the new
# version must not ship, someone must look at it. Their `rollback.completed` is the one error-level line
# of the rollout; the others (an unproven deadline, an operator, a foreign edit, an abort) stay warnings.
BAD_CANARY = frozenset({"check", "gate"})


def end_cause(cause: str, reason: str) -> str:
    """The class of an end: `cause` as its producer decided it (one of ROLLBACK_REASONS), else the reason's words
    (`classify_reason`: an end whose producer names no class, decision 607)."""
    return cause if cause in ROLLBACK_REASONS else classify_reason(reason)


def cause_of(state: "RolloutState") -> str:
    """The class of the ended `state` (`end_cause` in the logs, `-o json`, `canary report`, `canary_rollbacks_total`):
    the one recorded with the end (`RolloutState.end_cause`), else read from its reason's words (a record written
    before the field existed)."""
    return end_cause(state.end_cause, state.reason)


@dataclass(frozen=True)
class RolloutState:
    model: str
    stable_version: str
    canary_version: str
    phase: str
    weights: Weights
    step: int = -1  # index into policy.steps; -1 before the first step
    look: int = 0  # looks judged in the whole rollout (drives alpha spending)
    step_looks: int = 0  # looks judged in the current step
    failed_looks: int = 0  # consecutive failed looks
    # canary requests counted at the previous look of this step (-1: none yet). Persisted, so a
    # resumed process knows a look over the same data is not new evidence (no re-spent failures).
    last_look_requests: float = -1.0
    # Failure-side evidence (analysis.sequential), per sub-test "check/test": [S, I]. `evidence`
    # sums the closed windows of the rollout (earlier steps, stretches before a resume); the
    # judge adds the open window's data to it at every look. `window_evidence` is the open
    # window's latest contribution, folded into `evidence` when the window closes.
    evidence: dict[str, tuple[float, float]] = field(default_factory=dict)
    window_evidence: dict[str, tuple[float, float]] = field(default_factory=dict)
    step_window: int = 0  # windows opened in this step by operator resumes or restarts (`window_for`; sets the pass level)
    # canary requests at the open window's first look that could pass (covering the interval, with
    # min_canary_requests): the pass level of a later look depends on its requests over these (-1: none yet)
    pass_anchor_requests: float = -1.0
    # the end, on the metrics clock, of the data the open window's looks judged (None: none yet, or looks
    # that measure a range up to now). The controller's batched looks measure from a step-start snapshot;
    # one taken after a restart, at or after this time, starts a new window (`window_for`)
    window_to: float | None = None
    # the start, on the metrics clock, of the data the open window may judge, once `window_for` opened it
    # (the closed window's end; None: the step's own start). A step-start snapshot taken before it reaches
    # back into data already folded into `evidence` (`reaches_back`): never judged again
    window_from: float | None = None
    route: str = ""  # the VirtualService HTTP route the rollout drives ("" = the only one)
    # its DestinationRule, by the name it resolves to ("" in a record claimed before claims named it:
    # the VirtualService's name): what `canary sweep` re-points when nobody else knows it (the owner is
    # gone), and what the controller compares an edit of spec.destinationRule with when no status landed
    destination_rule: str = ""
    # who runs it: `promote` (any `canary promote` of this version may resume it), `CanaryRollout
    # <namespace>/<name>` (only that CR's controller may), "" (written before owners were recorded)
    owner: str = ""
    # the owner's longest time between writes while it runs (a promote's look_every; 0: unknown), by
    # which another promote tells a live owner from a gone one (`Runner._take_over`)
    heartbeat_s: float = 0.0
    # the CI job that runs its owner (`canary.ci_job`: a job's URL, `Argo Workflow <name>`; decision 387), named
    # wherever the holder is: "" for none known (a terminal, the controller). Left out of the record while "",
    # so a record without one reads as before
    job: str = ""
    # which attempt of which CI job runs its owner (`canary.ci_job.rerun_key`: `github:<digest>:<attempt>`,
    # `gitlab:<digest>:<job id>`): a later attempt of the same job takes over at once (decision 454). Left out of
    # the record while "", like `job`; one out of shape reads as none
    job_key: str = ""
    started_at: float = 0.0
    step_started_at: float = 0.0
    updated_at: float = 0.0
    reason: str = ""
    last_verdict: dict[str, Any] | None = None
    history: tuple[dict[str, Any], ...] = field(default_factory=tuple)  # one line per step/phase change
    # what the rollout is judged under (`canary.judged_marks.marks`: mark name -> digest), written with the
    # claim (by a controller or a promote); {} in a record written before marks existed
    judged: dict[str, str] = field(default_factory=dict)
    # weight reverts in a row: our weights found replaced outside the rollout (a GitOps tool re-applying its
    # manifest) and reasserted, with no look counted since (`reverted`; decision 170). Left out of the
    # record while 0, so a record without reverts reads as before
    reverts: int = 0
    # the class of the end (one of ROLLBACK_REASONS), decided where the end is (decision 607): "" while the rollout
    # runs, and in a record written before the field (`cause_of` reads the reason's words then). Left out of the
    # record while "", so a record without an end reads as before
    end_cause: str = ""
    # the failing read of the step's last held look ("": no look of this step was held): a look whose checks all
    # passed whose promotion was held because the other VirtualServices could not be checked (`Looked.
    # promotion_held`). The step's deadline says so even where its last look was inconclusive for another reason
    # (no new requests since the held look). Cleared where the step's window starts over. Left out of the record
    # while "" (decision 977)
    promotion_held: str = ""

    def __post_init__(self) -> None:
        if self.phase not in PHASES:
            raise ValueError(f"unknown rollout phase {self.phase!r}")

    @property
    def terminal(self) -> bool:
        return self.phase in TERMINAL

    def to_json(self) -> str:
        """The recorded form (the VirtualService annotation): every field, `history` cut to its last 20.

        Shallow: `weights` is the only nested dataclass; the other fields are JSON values already, so
        json.dumps reads them in place (dataclasses.asdict deep-copied them first: measured as a
        tenth of the controller's CPU per look)."""
        d = {name: getattr(self, name) for name in _FIELDS}
        d["schema"], d["writer"] = SCHEMA, WRITER
        d["weights"] = {"stable": self.weights.stable, "canary": self.weights.canary}
        d["history"] = list(self.history)[-20:]  # an annotation must stay small
        if not self.reverts:
            del d["reverts"]
        if not self.job:
            del d["job"]
        if not self.job_key:
            del d["job_key"]
        if not self.end_cause:
            del d["end_cause"]
        if not self.promotion_held:
            del d["promotion_held"]
        return _bounded(d)

    @classmethod
    def from_json(cls, text: str) -> "RolloutState":
        """Parse a recorded state. Raises ValueError naming the field when the shape is wrong:
        a state read back is re-validated, never trusted (it may have been edited by hand). A number
        too large for a float (`"started_at": 1000...0`) or arrays nested past the parser's depth is
        such a shape too: they raised OverflowError and RecursionError, which no reader catches, and
        promote left its split with a traceback (decision 148)."""
        try:
            return cls._parse(text)
        except (OverflowError, RecursionError) as exc:
            raise ValueError(f"rollout state: {str(exc)[:200]}") from None

    @classmethod
    def _parse(cls, text: str) -> "RolloutState":
        d = json.loads(text)
        if not isinstance(d, dict):
            raise ValueError("rollout state must be a JSON object")
        if (schema := record_schema(d)) > SCHEMA:  # before any field: a newer schema's shape is not ours to judge
            raise NewerRecord(schema, d.get("writer"))
        known = {f.name for f in dataclasses.fields(cls)}
        d = {k: v for k, v in d.items() if k in known}  # tolerate fields from newer versions
        for name in ("model", "stable_version", "canary_version", "phase", "weights"):
            if name not in d:
                raise ValueError(f"rollout state: {name} is missing")
        for name in ("model", "stable_version", "canary_version", "phase", "reason", "route", "owner",
                     "destination_rule", "job", "job_key", "promotion_held"):
            if name in d and not isinstance(d[name], str):
                raise ValueError(f"rollout state: {name} must be a string, got {type(d[name]).__name__}")
        for name in ("step", "look", "step_looks", "failed_looks", "step_window"):
            if name in d and (isinstance(d[name], bool) or not isinstance(d[name], int) or d[name] < -1):
                raise ValueError(f"rollout state: {name} must be an integer >= -1, got {d[name]!r}")
        if "reverts" in d and (isinstance(d["reverts"], bool) or not isinstance(d["reverts"], int) or d["reverts"] < 0):
            raise ValueError(f"rollout state: reverts must be an integer >= 0, got {d['reverts']!r}")
        for name in ("started_at", "step_started_at", "updated_at", "last_look_requests", "pass_anchor_requests",
                     "heartbeat_s"):
            v = d.get(name, 0.0)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise ValueError(f"rollout state: {name} must be a finite number, got {v!r}")
            if name in d:
                d[name] = float(v)
        for name in ("window_to", "window_from"):
            v = d.get(name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v)):
                raise ValueError(f"rollout state: {name} must be null or a finite number, got {v!r}")
            if v is not None:
                d[name] = float(v)
        if not valid_pass_anchor(d.get("pass_anchor_requests", -1.0)):
            raise ValueError("rollout state: pass_anchor_requests must be -1 (none yet) or a positive count")
        w = d["weights"]
        if not isinstance(w, dict) or set(w) != {"stable", "canary"}:
            raise ValueError("rollout state: weights must be {stable, canary}")
        d["weights"] = Weights(**w)
        if d.get("last_verdict") is not None and not isinstance(d["last_verdict"], dict):
            raise ValueError("rollout state: last_verdict must be an object")
        history = d.get("history") or ()
        if not isinstance(history, (list, tuple)) or not all(isinstance(h, dict) for h in history):
            raise ValueError("rollout state: history must be a list of objects")
        d["history"] = tuple(history)
        if "job" in d:  # display only: one edited by hand into no job's shape is not shown (control characters)
            d["job"] = ci_job.readable(d["job"])
        if "end_cause" in d and d["end_cause"] not in ROLLBACK_REASONS:
            d["end_cause"] = ""  # edited by hand (or a newer canary's class): the reason's words class the end
        if "job_key" in d and not ci_job.JOB_KEY.fullmatch(d["job_key"]):
            d["job_key"] = ""  # edited by hand: no attempt is known, so no take-over at once
        for name in ("evidence", "window_evidence"):
            d[name] = _evidence(d.get(name) or {}, name)
        judged = d.get("judged", {})
        if not isinstance(judged, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in judged.items()):
            raise ValueError("rollout state: judged must be an object of strings")
        return cls(**d)

    def verdict_results(self) -> list[dict[str, Any]]:
        """The last verdict's per-check results (`{"name", "kind", "outcome", ...}` objects); [] when there is
        none. A state read back may have been edited by hand (`"results": 5`): what is not a list of objects
        reads as none, so the announcement of an end never fails on it (it made `promote` exit 3)."""
        results = (self.last_verdict or {}).get("results")
        return [r for r in results if isinstance(r, dict)] if isinstance(results, list) else []

    def prior(self) -> dict[str, tuple[float, float]]:
        """The closed windows' evidence the judge pools the open window with."""
        return dict(self.evidence)

    def pass_ratio(self, canary_requests: float) -> float:
        """The judge's `pass_ratio` for a look with `canary_requests` in the open window: over the
        window's anchor (`pass_anchor_requests`), at least 1; 1 before the anchor is set."""
        return pass_ratio(self.pass_anchor_requests, canary_requests)


_FIELDS = tuple(f.name for f in dataclasses.fields(RolloutState))
_FIELD_SET = frozenset(_FIELDS)


def replace(obj: Any, /, **changes: Any) -> Any:
    """`dataclasses.replace`, and for a RolloutState the same new state made without its generated `__init__`:
    its fields copied, `changes` set, `__post_init__` checking it as construction does. A look's transition makes
    four to seven of them; dataclasses' took 27 us each (35 fields, each set through `object.__setattr__` of the
    frozen class), this 5 us: an eighth of the Monte Carlo tests of the judge and the state machine
    (docs/benchmarks/suite.md, h-suite1). A name that is not a field is dataclasses' TypeError, as before."""
    if type(obj) is not RolloutState or not _FIELD_SET.issuperset(changes):
        return dataclasses.replace(obj, **changes)
    new = object.__new__(RolloutState)
    values = new.__dict__  # a frozen dataclass refuses setattr, not its instance dictionary
    was = obj.__dict__
    for name in _FIELDS:
        values[name] = changes[name] if name in changes else was[name]
    new.__post_init__()
    return new

# The recorded form's most bytes (decision 528). The API server refuses a write whose annotations, keys and
# values together, pass 262,144 bytes (`metadata.annotations: Too long`): the stable-100% write of a rollback
# included. Reasons are free text (`--reason`, a CanaryRollout's actionReason) written into `reason` and into
# every history line, escaped by JSON to up to 12 bytes a character: twenty pauses with a long reason made a
# 260 KB record, and the next write, rollback included, was refused with traffic split. A record under this
# budget is written as it is (byte for byte as before); over it, what is only read by people gives way first.
RECORD_MAX_BYTES = 65_536
_CUT = "…"


def _cut_text(value: Any, limit: int) -> Any:
    """`value` cut to `limit` characters (a mark at the cut) when it is a longer string; else as it is."""
    return value[:limit] + _CUT if isinstance(value, str) and len(value) > limit else value


# `look.completed`'s `reasons`: said at every look, each reason on one line and cut at this many characters. An
# ERROR's reason quotes what Prometheus answered and the PromQL asked (`could not measure: ...; query: ...`), a
# custom query's can run to kilobytes with newlines: one line per look, per check. The whole reason stays in the
# look's verdict (`canary status`, the report) and in `check.failed` for a failure (decision 955)
LOOK_REASON_MAX = 300


def _look_reason(reason: str) -> str:
    return _cut_text(" ".join(str(reason).split()), LOOK_REASON_MAX)


def _cut_field(obj: Any, key: str, limit: int) -> Any:
    """A copy of the mapping `obj` with its `key` cut as `_cut_text` cuts it (no key added); anything else as it is."""
    return dict(obj, **{key: _cut_text(obj[key], limit)}) if isinstance(obj, dict) and key in obj else obj


def _dump(d: dict[str, Any]) -> str:
    """The record's text: sorted keys, compact."""
    return json.dumps(d, sort_keys=True, separators=(",", ":"))


def _bounded(d: dict[str, Any], budget: int = RECORD_MAX_BYTES) -> str:
    """The record `d` as JSON (sorted keys, compact) within `budget` where people's text can make it so.
    Over the budget, in this order until it fits: the free texts are cut (`reason` to 1,000 characters, each
    history line's and each check result's reason to 300), the last verdict kept as its outcome and reason alone
    (display only: its per-check results are in the logs and the history store), then the oldest history lines
    dropped (a decision reads the newest: `advanced_outside`'s step and promotion lines; the oldest, a claim's
    line on the rollout before it, is what the controller's status shows of that one). Never cut: phase,
    weights, step, looks, evidence, marks. Deterministic: the same state gives the same text (a write's guard
    compares texts). Each form is tried in a fixed order and the first within `budget` kept, so the form within a
    budget is the form within its own length (`carried`). Last, where a smaller `budget` (`fit`) still is not met,
    `reason` and the verdict's reason are cut to 100 characters."""
    text = _dump(d)
    if len(text) <= budget:
        return text
    d = dict(d, reason=_cut_text(d.get("reason"), 1000),
             history=[_cut_field(h, "what", 300) for h in d.get("history") or ()])
    verdict = d.get("last_verdict")
    if isinstance(verdict, dict):
        results = verdict.get("results")
        d["last_verdict"] = dict(_cut_field(verdict, "reason", 1000))  # a copy: the state's own dict is never changed
        if isinstance(results, list):
            d["last_verdict"]["results"] = [_cut_field(r, "reason", 300) for r in results]
    text = _dump(d)
    if len(text) > budget and isinstance(verdict, dict):  # display only: before any history line
        d["last_verdict"] = {k: v for k, v in d["last_verdict"].items() if k in ("at", "outcome", "reason", "canary_requests")}
        text = _dump(d)
    while len(text) > budget and d["history"]:  # the newest lines, which decisions read, go last
        d["history"] = d["history"][1:]
        text = _dump(d)
    if len(text) > budget:  # only a budget under the record's (`fit`) gets here
        d["reason"] = _cut_text(d.get("reason"), 100)
        d["last_verdict"] = _cut_field(d.get("last_verdict"), "reason", 100)
        text = _dump(d)
    return text


def fit(text: str, budget: int) -> str:
    """The record `text` (`RolloutState.to_json`) within `budget` bytes, cut as `to_json` cuts one over
    RECORD_MAX_BYTES (decision 563): a stable-100% write on an object whose other annotations leave its record less
    than that (the API server's limit is for all of them together). `text` itself when it fits, or is no record.
    (A record is ASCII, JSON's escapes: its length is its bytes.)"""
    if len(text.encode()) <= budget:
        return text
    try:
        d = json.loads(text)
    except (ValueError, RecursionError):
        return text
    return _bounded(d, budget) if isinstance(d, dict) else text


def carried(found: str | None, text: str | None) -> bool:
    """Whether the record `found` (read back) is the record `text` as a write carried it: `text` itself (None: no
    record, none read back), or `text` cut by `fit` to some budget (the router's, from the object the write was
    computed on: decision 563). The form within a budget is the form within its own length, so no budget need be
    known."""
    return found == text or (isinstance(found, str) and text is not None and len(found) < len(text)
                             and fit(text, len(found)) == found)


class NewerRecord(ValueError):
    """A record written in a schema above this canary's (`SCHEMA`): a newer canary's rollout, maybe live (a
    rolling upgrade of canary itself: a controller replica or a CI image a release behind). Not garbage: every
    reader leaves it (never ends, resumes or rewrites it) and says so, naming the writer; `canary rollback` alone
    ends it. A ValueError, so a reader that knows no better still reads it as unreadable, never as a state."""

    def __init__(self, schema: int, writer: Any = None) -> None:
        self.schema = schema
        self.writer = writer[:80] if isinstance(writer, str) and writer else "a newer canary"
        super().__init__(f"written by {self.writer} in record schema {schema}, which this canary ({WRITER}, record "
                         f"schema {SCHEMA}) cannot read: upgrade this canary to read it; left to the canary that "
                         "wrote it, `canary rollback` sends stable 100%")


def record_schema(d: dict[str, Any]) -> int:
    """The record schema of the parsed record `d`: its `schema`, 1 when it has none (written by this release or an
    older one). Raises ValueError when it is no positive integer: no canary writes that (a hand edit)."""
    schema = d.get("schema", 1)
    if isinstance(schema, bool) or not isinstance(schema, int) or schema < 1:
        raise ValueError(f"rollout state: schema must be a positive integer, got {str(schema)[:40]!r}")
    return schema


def _evidence(raw: Any, name: str) -> dict[str, tuple[float, float]]:
    if not isinstance(raw, dict):
        raise ValueError(f"rollout state: {name} must be an object")
    out = {}
    for key, v in raw.items():
        if (not isinstance(v, (list, tuple)) or len(v) != 2
                or not all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in v)
                or v[1] < 0):
            raise ValueError(f"rollout state: {name}[{key!r}] must be [S, I] with finite S and I >= 0, got {v!r}")
        out[str(key)] = (float(v[0]), float(v[1]))
    return out


def _fold(state: "RolloutState") -> dict[str, tuple[float, float]]:
    """The evidence with the open window added: what stays when the window closes."""
    out = dict(state.evidence)
    for key, (s_w, i_w) in state.window_evidence.items():
        s0, i0 = out.get(key, (0.0, 0.0))
        out[key] = (s0 + s_w, i0 + i_w)
    return out


# ---- events -------------------------------------------------------------------------


@dataclass(frozen=True)
class Begin:
    """Gates passed: give the canary its first step of traffic."""

    now: float


@dataclass(frozen=True)
class Looked:
    """One look of the judge over the current step's window. `window_s`: seconds of data the
    measurement covers (None: the whole step). A step can pass only when the judged data cover
    `analysis.interval`, however long the step has been running (a restarted or slow process
    may measure less than the step's age)."""

    now: float
    verdict: Verdict
    canary_requests: float
    window_s: float | None = None
    # the end of the judged data on the metrics clock (the controller's snapshot time); None: up to now
    data_to: float | None = None
    # a request counter series restarted between the look's step-start snapshot and its own (the controller's
    # `metrics.batch.requests_restarted`): its data are no superset of the window's earlier looks' (decision 163)
    restarted: bool = False
    # a step whose looks could not ask Prometheus is held at its deadline, whatever the policy's
    # `failure.on_deadline` (a CanaryRollout's `spec.onPrometheusOutage: hold`); a measured step without
    # a verdict still ends as the policy says
    hold_unreachable: bool = False
    # why the canary's requests could not be counted ("": they were; the controller's `metrics.delta.
    # canary_count`): a canary read by two scrape jobs or with a target down, no series. `canary_requests` is then
    # 0, which is no pass, never a counter that restarted (no new window: the checks' data are the window's)
    uncounted: str = ""
    # the class of an end with no verdict at the step's deadline where the caller knows better than `deadline` (""):
    # promote's looks all discarded because Prometheus's clock stayed behind, `infrastructure` (decision 647)
    deadline_cause: str = ""
    # why a look whose checks all passed was not let promote ("": it was, or it did not pass): the other
    # VirtualServices could not be checked for a split with the canary subset (a failing cluster-wide LIST; its
    # verdict is then inconclusive). The step's deadline says that, not "no verdict" (decisions 900, 945)
    promotion_held: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "canary_requests", request_count(self.canary_requests))  # +Inf, NaN: no count


@dataclass(frozen=True)
class GateFailed:
    """The canary server went unready / failed its probe: roll back at once. `aborted`: it was the
    *stable* server that failed (the canary was not judged): stable 100% all the same, recorded ABORTED
    ("could not complete"), never ROLLED_BACK ("bad canary")."""

    now: float
    reason: str
    aborted: bool = False
    # the class of the end (ROLLBACK_REASONS, decision 607): a gate's, whichever server failed it, as its words
    # ("gate: ...") always classed it
    cause: str = "gate"


@dataclass(frozen=True)
class Rollback:
    """Stable 100% now, asked by a person (`canary rollback`) -> ROLLED_BACK, or because the
    rollout could not complete (interrupt, unexpected error, objects changed under it) with
    `aborted=True` -> ABORTED. ABORTED always means "could not complete", never "bad canary"."""

    now: float
    reason: str
    aborted: bool = False
    # the class of the end (one of ROLLBACK_REASONS), decided by whoever ends it (decision 607); "": read from
    # `reason`'s words (`classify_reason`), as every end was before
    cause: str = ""


@dataclass(frozen=True)
class Pause:
    now: float
    reason: str = "paused by operator"


@dataclass(frozen=True)
class Resume:
    now: float


Event = Begin | Looked | GateFailed | Rollback | Pause | Resume


# ---- actions ------------------------------------------------------------------------


@dataclass(frozen=True)
class SetWeights:
    """Write weights and the new state in one write."""

    weights: Weights


@dataclass(frozen=True)
class PointSubset:
    """Make `subset` select `version`. With `guarded`, the executor first checks that the recorded
    state is still the one this process wrote, and after the write checks again (undoing it if a
    rollback was recorded meanwhile): re-pointing stable at the new version races `canary rollback`."""

    subset: str
    version: str
    guarded: bool = False
    undo_version: str = ""  # with guarded: what to point back to when the guard fails after the write
    supersede: bool = False  # write even if unchanged: a write another process prepared earlier then fails


@dataclass(frozen=True)
class Emit:
    """A log event (stable name, documented in docs/reference/events.md) and fields, logged at info, at warning
    (`warning`, also the Kubernetes Event's type), or at `level` when given (e.g. "error")."""

    event: str
    fields: dict[str, Any]
    warning: bool = False
    level: str = ""

    @property
    def log_level(self) -> str:
        return self.level or ("warning" if self.warning else "info")


Action = SetWeights | PointSubset | Emit


def new_rollout(*, model: str, stable_version: str, canary_version: str, now: float,
                route: str = "", owner: str = "", heartbeat_s: float = 0.0, job: str = "", job_key: str = "",
                destination_rule: str = "", judged: dict[str, str] | None = None) -> tuple[RolloutState, list[Action]]:
    """Claim the VirtualService (PENDING at 100/0), then point the canary subset. `owner`: who runs
    it (`RolloutState.owner`), `job`: its CI job (`RolloutState.job`), `job_key`: which attempt of it
    (`RolloutState.job_key`); `judged`: what it is judged under
    (`RolloutState.judged`)."""
    state = RolloutState(
        model=model, stable_version=stable_version, canary_version=canary_version, route=route, owner=owner, job=job,
        job_key=job_key, heartbeat_s=heartbeat_s, destination_rule=destination_rule, judged=dict(judged or {}),
        phase=PENDING, weights=STABLE_ONLY, started_at=now, step_started_at=now, updated_at=now,
    )
    return state, [SetWeights(STABLE_ONLY), PointSubset("canary", canary_version), Emit("rollout.started", {})]


def transition(state: RolloutState, event: Event, policy: Policy) -> tuple[RolloutState, list[Action]]:
    """The whole decision logic. Unknown combinations change nothing."""
    if state.terminal:
        return state, []
    now = event.now
    if isinstance(event, Rollback):
        return _end(state, now, reason=event.reason, phase=ABORTED if event.aborted else ROLLED_BACK,
                    cause=event.cause)
    if isinstance(event, GateFailed):
        return _end(state, now, reason=f"gate: {event.reason}", phase=ABORTED if event.aborted else ROLLED_BACK,
                    cause=event.cause)
    if isinstance(event, Pause) and state.phase == PROGRESSING:
        s = _log(replace(state, phase=PAUSED, reason=event.reason, updated_at=now), now,
                 f"paused: {event.reason}" if event.reason else "paused")
        return s, [SetWeights(s.weights), Emit("rollout.paused", {"reason": event.reason})]
    if isinstance(event, Resume) and state.phase == PAUSED:
        # the step's window starts over: paused time is neither evidence nor deadline. The closed
        # window's failure evidence is kept (pooled); a pass needs the new window's own data.
        s = replace(state, phase=PROGRESSING, reason="", step_started_at=now, step_looks=0, failed_looks=0,
                    last_look_requests=-1.0, updated_at=now, evidence=_fold(state), window_evidence={},
                    step_window=state.step_window + 1, pass_anchor_requests=-1.0, window_to=None,
                    window_from=None, promotion_held="")
        s = _log(s, now, "resumed: the step starts over")
        return s, [SetWeights(s.weights), Emit("rollout.resumed", {})]
    if isinstance(event, Begin) and state.phase == PENDING:
        # Point the canary subset again (idempotent): a process killed between the claim and
        # the first pointing must not send the first step to whatever the subset selected before.
        s, actions = _enter_step(state, 0, policy, now)
        return s, [PointSubset("canary", state.canary_version), *actions]
    if isinstance(event, Looked) and state.phase == PROGRESSING:
        return _judge(state, event, policy)
    return state, []


def advanced_outside(ours: RolloutState, theirs: RolloutState, policy: Policy) -> str:
    """Why the record `theirs`, written outside this process for its own rollout `ours` (same version, owner
    and start: `runner._ours`), is no state this rollout can be adopted into ("" when it is one). Another
    process records only `canary rollback`, `pause` and `resume` of a rollout: an end, a hold, a new window of
    the same step. A record that moved the rollout on (a later step, a promotion), or whose step and
    weights are not one of the policy's steps, was edited by hand, and adopted it promoted a canary shown
    good at one step only: `step` 99 at 80/20 "passed" its last step at the next pass (decision 148)."""
    if theirs.phase == ROLLED_BACK or theirs.phase == ABORTED:
        return ""
    runs = "its gate before the first step (pending)" if ours.phase == PENDING else f"step {ours.step + 1}"
    if theirs.phase in (PROMOTING, PROMOTED) and ours.phase != PROMOTING:
        return f"it records the rollout {theirs.phase} at {theirs.weights} while this process runs " + (
            runs if ours.phase == PENDING else f"it {ours.phase}")
    if theirs.step > ours.step and theirs.phase in (PROGRESSING, PAUSED):
        return f"it records step {theirs.step + 1} while this process runs {runs}"
    return off_policy(theirs, policy)


def off_policy(state: RolloutState, policy: Policy) -> str:
    """Why `state` (in progress) is no state a rollout under `policy` is ever in ("" when it is one): a step
    (PROGRESSING, PAUSED) outside the policy's judged steps, or whose weights are not that step's; a
    promotion (PROMOTING) not at 0/100. Only a hand edit of the record makes one (decision 148)."""
    last = len(policy.steps) - 2  # the last judged step (the one after it, 100%, is the promotion)
    if state.phase in (PROGRESSING, PAUSED) and not (
            0 <= state.step <= last and state.weights == Weights.canary_at(policy.steps[state.step])):
        return (f"its step {state.step + 1} at {state.weights} is not one of the policy's steps "
                f"{list(policy.steps[:-1])}")
    if state.phase == PROMOTING and state.weights != Weights.canary_at(100):
        return f"it records the rollout promoting at {state.weights}, where a promotion is at 0/100"
    return ""


def ahead_of(state: RolloutState, reference: int | None, policy: Policy) -> str:
    """Why the record `state` (in progress, this very rollout's) is ahead of `reference`, the step its owner
    last recorded somewhere a hand edit of the record does not reach ("" when it is not): the controller's
    CanaryRollout status (`status.step` - 1), written after every write of the record; None when no status of
    this rollout landed (its claim is then the reference: PENDING, -1). A promotion ranks as the last step.

    The record may be one transition ahead of its reference: the owner wrote the record and died (or lost its
    lease, or the status write failed) before the status. Every tick writes the status before its look, so a
    look, and with it an advance, follows a status showing the step it judges: the record is never more than
    one transition ahead. That one transition is told from a hand edit by the marks only `transition` writes
    into the record it enters (`_entered`): a step's line in the history and no look judged yet; a promotion's
    line and its step. A hand edit to a later step at that step's weights (step 2 at 50/50 typed while step 1
    ran) has neither, and adopted it skipped a step's judgement; two transitions ahead is never legitimate
    (decision 150). Pure."""
    last = len(policy.steps) - 1
    ref = -1 if reference is None else reference
    if state.phase == PROMOTED:
        # its promotion's status (PROMOTING) may be lost as well as its own: two transitions past the last step's
        lines = {str(h.get("what", "")) for h in state.history}
        if ref >= last - 1 and {"promoting", "promoted"} <= lines:
            return ""
        return (f"it records the rollout promoted at {state.weights} while the CanaryRollout's status shows "
                f"{'its claim (pending)' if ref < 0 else f'step {ref + 1}'}; a rollout's own record is promoted only "
                "after its last step, with that promotion's history lines")
    if state.terminal:
        return ""
    rank = last if state.phase == PROMOTING else state.step
    if rank <= ref or (rank == ref + 1 and _entered(state, policy)):
        return ""
    where = ("the promotion" if ref >= last else f"step {ref + 1}" if ref >= 0 else "its claim (pending)")
    said = (f"the rollout {state.phase} at {state.weights}" if state.phase == PROMOTING
            else f"step {state.step + 1} at {state.weights}")
    source = "no status of this rollout landed" if reference is None else "the CanaryRollout's status shows"
    why = ("a rollout's own record is never that far ahead of its status" if rank > ref + 1 else
           "a rollout's own record one step ahead of its status carries that step's history line and no look")
    return f"it records {said} while {source} {where}; {why}"


def _entered(state: RolloutState, policy: Policy) -> bool:
    """Whether `state` carries the marks of the transition into its step or promotion: the history line
    `_enter_step` (or a promotion) writes, and, in a step, no look judged in it yet (any later write before
    the status shows the step is a reassert, a pause or a resume, which keep both)."""
    lines = {str(h.get("what", "")) for h in state.history}
    if state.phase == PROMOTING:
        return state.step == len(policy.steps) - 1 and "promoting" in lines
    if state.step < 0 or state.step >= len(policy.steps):
        return False
    return state.step_looks == 0 and _step_line(state.step, policy) in lines


def window_for(state: RolloutState, data_from: float, now: float) -> RolloutState:
    """The state a look whose data start at `data_from` (metrics clock, seconds) is judged under.

    The controller's batched looks measure a step's window from a step-start snapshot. A controller
    that restarts, or takes the rollout over, without the persisted one takes its first snapshot as
    the start: every look from then on sees only data after the earlier looks of the window ended.
    Judged as the same window, that shorter path would spend the window's share of the level a
    second time (two paths of one (step, window)) and lose the earlier data's evidence. When the
    open window's earlier looks judged data ending at or before `data_from` (`window_to`), this
    opens a new window as a resume does (the old one's failure evidence folded into the pooled
    evidence: disjoint data, so the sums still add up to one Brownian motion; a pass needs the new
    window's own data over `analysis.interval`), but the step's start and deadline stay. Otherwise
    (no earlier look, or overlapping data: the window as before) `state` unchanged. Pure."""
    if (state.phase != PROGRESSING or state.window_to is None or state.last_look_requests < 0
            or not data_from >= state.window_to):
        return state
    s = replace(state, last_look_requests=-1.0, evidence=_fold(state), window_evidence={},
                step_window=state.step_window + 1, pass_anchor_requests=-1.0, window_to=None,
                window_from=state.window_to, updated_at=now)
    return _log(s, now, "window restarted: the data before the step-start snapshot were not measured again "
                        "(a restart without it); their failure evidence is kept, a pass needs the new window's data")


def reverted(state: RolloutState, now: float, found: Weights) -> RolloutState:
    """The state after our weights were found replaced outside the rollout (`found`, with our record still on
    the route) and are about to be reasserted: one more revert in a row, and, while a step runs, the step's
    window starts over at `now`, as after a resume (decision 170). The data since the window began were
    measured partly at `found`, a weight the canary did not have (at 100/0: none of its own), so no look may
    judge them as the step's: its failure evidence is kept (pooled; failures seen at a smaller share are still
    the canary's), a pass needs the new window's own data. Pure."""
    s = replace(state, reverts=state.reverts + 1, updated_at=now)
    if state.phase == PROGRESSING:
        s = replace(s, step_started_at=now, step_looks=0, failed_looks=state.failed_looks, last_look_requests=-1.0,
                    evidence=_fold(state), window_evidence={}, step_window=state.step_window + 1,
                    pass_anchor_requests=-1.0, window_to=None, window_from=None, promotion_held="")
    return _log(s, now, f"weights reverted outside the rollout to {found} ({s.reverts} in a row); reasserted"
                        + ("; the step's window starts over" if state.phase == PROGRESSING else ""))


def reaches_back(state: RolloutState, taken_at: float) -> bool:
    """Whether a step-start snapshot taken at `taken_at` (metrics clock) reaches back into data of this
    step already folded into the pooled evidence: taken before the open window's data start, once
    `window_for` restarted it (`window_from`). Such a snapshot (an old leader's memory of the step's
    first one, or a persisted one a restarted controller could not replace) would count that stretch
    twice, in `evidence` and again in the open window's evidence when it closes: not used. Pure."""
    return state.window_from is not None and taken_at < state.window_from


def _not_evidence(verdict: Verdict, outcome: Outcome, why: str) -> Verdict:
    """The verdict with its (non-hard) `outcome` results turned INCONCLUSIVE, `why` in front of their reason.

    Used for a look that brings no new evidence: the same canary requests as the previous look
    (the judge's error bound assumes each look sees new data, docs/judge.md) cannot add a failure;
    fewer requests than an earlier look of the step (a shorter window, e.g. a restarted
    controller's snapshot) cannot pass."""
    return Verdict.combine([
        dataclasses.replace(r, outcome=Outcome.INCONCLUSIVE, reason=f"{why}; {r.reason}")
        if r.outcome is outcome and not (r.hard and outcome is Outcome.FAIL) else r
        for r in verdict.results])


def finish_promotion(state: RolloutState, now: float) -> tuple[RolloutState, list[Action]]:
    """From PROMOTING: stable subset -> new version, then 100/0 on it, then the stable subset pointed at
    the new version once more, guarded on the PROMOTED record just written and superseding: a rollback
    decided on PROMOTING may have pointed it back at the old version after the first pointing (its own
    100/0 is then refused, or it died before it), which would leave PROMOTED recorded with every request
    on the old version. Each end's last write is its own subset pointing, checked against its own record
    (a rollback's: `_end`), so the subset follows whichever end is recorded last."""
    s = replace(state, phase=PROMOTED, weights=STABLE_ONLY, updated_at=now, reason="all steps passed")
    s = _log(s, now, "promoted")
    return s, [
        PointSubset("stable", state.canary_version, guarded=True, undo_version=state.stable_version),
        SetWeights(STABLE_ONLY),
        # `serving_version`: one line says what serves all traffic now (its `weights` 100/0 read alone says "rollback")
        Emit("rollout.promoted", {"duration_s": round(now - state.started_at, 1), "serving_version": state.canary_version}),
        PointSubset("stable", state.canary_version, guarded=True, undo_version=state.stable_version, supersede=True),
    ]


def _restart_reason(n: float, before: float, *, uncounted: str = "") -> str:
    """Why a batched look is no evidence (`_counters_restarted`), in on-call's words."""
    if uncounted:  # the snapshots show a restart, and the canary's requests could not be counted either
        counted = f"the canary's requests could not be counted: {uncounted[:300]}"
    else:
        seen = f", {before:.0f} at the last look" if 0 <= n < before else ""
        counted = f"{n:.0f} canary requests counted since the step-start snapshot{seen}"
    return f"a request counter restarted within the window ({counted}): not this window's data, a new window opens"


def _counters_restarted(state: RolloutState, data_to: float, now: float) -> RolloutState:
    """The state after a batched look (`Looked.data_to`) whose canary requests went down, or whose
    snapshots show a request counter that restarted (`Looked.restarted`: one pod of several, a stable
    pod, a restart that outgrew its start): between two snapshots a counter only goes down when it
    restarted or its series left, and `metrics.delta` then counts that series from its restart (the
    other series from the step start). Such a look's data are not a superset of
    the window's earlier looks': each reset would start a second path of the same window at the same
    share (a canary restarting before every look had a fresh test at every look: at its ceiling, its
    pooled exact p read as a test of its own reached 0.05 in 8.2% of rollouts, its share of the level
    in 2.1% where 1% is allowed; decision 163). So the look is no evidence either way (a hard breach
    still stands), and it closes the window as `window_for` does: the earlier looks' evidence is
    folded, the new window (its own smaller share) judges only data after this look (`window_from`:
    `reaches_back` refuses the old step-start snapshot, so the controller takes its next snapshot as
    the start), the step's start and deadline stay. Pure."""
    s = replace(state, last_look_requests=-1.0, evidence=_fold(state), window_evidence={},
                step_window=state.step_window + 1, pass_anchor_requests=-1.0, window_to=None, window_from=data_to)
    return _log(s, now, "window restarted: a request counter restarted within it; the failure evidence of its "
                        "looks before is kept, the data from the next snapshot on are a new window")


def uncounted_reason(why: str) -> str:
    """Why a look whose canary requests could not be counted (`Looked.uncounted`; serve's `record_look`'s
    `uncounted`) cannot pass: the words of `look.requests_uncounted` and of the look's verdict."""
    return f"the canary's requests could not be counted ({why[:300]}): no pass on this look"


def _judge(state: RolloutState, ev: Looked, policy: Policy) -> tuple[RolloutState, list[Action]]:
    j = ev.verdict
    n, before = ev.canary_requests, state.last_look_requests
    uncounted = bool(ev.uncounted)
    if uncounted:  # its 0 is no count: neither fewer requests nor a counter that went down (decision 433)
        n = before
    stale = n > 0 and n == before or 0 <= n < before  # no new evidence: the failure count neither grows nor resets
    # snapshot counts that went down, or a series the snapshots show restarted: not the window's path of data
    restarted = ev.data_to is not None and (ev.restarted or 0 <= n < before)
    if restarted:
        why = _restart_reason(n, before, uncounted=ev.uncounted)
        j = _not_evidence(_not_evidence(j, Outcome.FAIL, why), Outcome.PASS, why)
    elif uncounted:  # the checks' own data are the window's (each is NotCountable where it reads what was not
        # counted): a failure of theirs stands; no pass, as on a look with fewer requests than the floor
        j = _not_evidence(j, Outcome.PASS, uncounted_reason(ev.uncounted))
    elif stale and n == before:
        j = _not_evidence(j, Outcome.FAIL, "no new canary requests since the last look")
        if ev.data_to is not None:  # snapshots: the canary's counters did not move (its pods down, a series
            # read at its last value), so the data end where the last look's did and cannot cover more of the
            # interval than it did: no pass either (a canary restarting at its step's last look passed; 168)
            j = _not_evidence(j, Outcome.PASS, "no new canary requests since the last look (its counters did "
                                               "not move: the data end where that look's did)")
    elif stale:
        j = _not_evidence(j, Outcome.PASS, f"fewer canary requests than an earlier look of this step ({before:.0f})")
    s = replace(state, look=state.look + 1, step_looks=state.step_looks + 1, updated_at=ev.now,
                last_verdict=_verdict_summary(j, ev), last_look_requests=max(n, before),
                promotion_held=ev.promotion_held or state.promotion_held)
    if restarted:
        s = _counters_restarted(s, ev.data_to, ev.now)  # type: ignore[arg-type]
    elif ev.data_to is not None:
        s = replace(s, window_to=ev.data_to if s.window_to is None else max(s.window_to, ev.data_to))
    # a shorter window than an earlier look's is not this window's data; nor is a restarted look's after earlier
    # looks of its window: its data overlap theirs, folded just now (`_counters_restarted`), and kept as the new
    # window's they were folded again when it closed before a look replaced them (a resume, a revert, a second
    # restart: decision 442). A window's first look, restarted or not, overlaps no folded data: kept
    if n >= before and not (restarted and before >= 0):
        s = replace(s, window_evidence={**s.window_evidence, **j.window_evidence()})
    elapsed = ev.now - s.step_started_at
    covered = elapsed if ev.window_s is None else min(elapsed, ev.window_s)
    interval = policy.analysis.interval
    anchor = s.pass_anchor_requests if restarted or uncounted else next_pass_anchor(
        s.pass_anchor_requests, n, before, covered_s=covered, interval_s=interval,
        min_canary_requests=policy.analysis.min_canary_requests)
    if anchor != s.pass_anchor_requests:
        s = replace(s, pass_anchor_requests=anchor)
    # logged before the write that records the look: phase and weights as routed while it was judged
    actions: list[Action] = [Emit("look.completed", {"outcome": j.outcome.label, "phase": state.phase,
                                                     "weights": str(state.weights),  # judged at, not the next step's
                                                     "step": state.step + 1,  # likewise
                                                     "canary_requests": round(ev.canary_requests, 1),
                                                     "look": state.look,
                                                     "checks": {r.check: r.outcome.label for r in j.results},
                                                     # why a step is not passing yet, in the log on-call reads:
                                                     # each check not passed, with its one-line reason, cut
                                                     "reasons": {r.check: _look_reason(r.reason) for r in j.results
                                                                 if r.outcome is not Outcome.PASS}})]
    if restarted:
        actions.append(Emit("look.window_restarted", {"step": s.step + 1, "window": s.step_window + 1,
                                                      "reason": _restart_reason(n, before, uncounted=ev.uncounted)},
                            warning=True))
    elif uncounted:
        actions.append(Emit("look.requests_uncounted", {"step": s.step + 1, "window": s.step_window + 1,
                                                        "reason": uncounted_reason(ev.uncounted)}, warning=True))
    if j.outcome is Outcome.FAIL or j.hard_breach:
        s = replace(s, failed_looks=s.failed_looks + 1)
        for r in j.failed:  # a hard breach's too: alerts keyed on check.failed must not miss the worst ones
            actions.append(Emit("check.failed", {"check": r.check, "reason": r.reason, "failed_looks": s.failed_looks,
                                                 "phase": state.phase, "weights": str(state.weights),  # as routed
                                                 "max_failed_looks": policy.failure.max_failed_looks,
                                                 "hard": r.hard, "evidence": r.to_dict()},
                                warning=True))
    if j.hard_breach:
        s2, more = _end(s, ev.now, reason=j.reason(), phase=ROLLED_BACK, verdict=j, cause="check")
        return s2, actions + more
    if j.outcome is Outcome.FAIL:
        if s.failed_looks >= policy.failure.max_failed_looks:
            s2, more = _end(s, ev.now, reason=j.reason(), phase=ROLLED_BACK, verdict=j, cause="check")
            return s2, actions + more
        if ev.now - s.step_started_at >= policy.analysis.interval + policy.failure.no_data_deadline:
            # failing at the step's deadline: shown beyond the limit, never held (on_deadline is for no verdict)
            why = (f"{j.reason()}; still failing at the step's deadline ({s.failed_looks} of "
                   f"{policy.failure.max_failed_looks} failed looks in a row)")
            s2, more = _end(s, ev.now, reason=why, phase=ROLLED_BACK, verdict=j, cause="check")
            return s2, actions + more
        return s, actions
    # a look that could not measure some check (ERROR: its query refused, timed out, no series) shows no
    # failure ended: it neither adds a failed look nor ends the run, as serve's looks (decision 166)
    if not stale and j.outcome is not Outcome.ERROR:
        s = replace(s, failed_looks=0)
    if covered < interval <= elapsed:
        actions.append(Emit("look.window_short", {"window_s": round(covered, 3), "interval_s": interval,
                                                  "reason": short_reason(covered, interval, elapsed)}))
    if (covered >= interval and j.outcome is Outcome.PASS and not uncounted  # (`n` is the last count there)
            and n >= pass_floor(policy.analysis.min_canary_requests)):
        if s.step + 2 < len(policy.steps):
            s2, more = _enter_step(s, s.step + 1, policy, ev.now)
            return s2, actions + more
        # The last step (100%) is the promotion itself: with no stable traffic left there
        # is nothing to compare against, so it is not judged. All traffic moves to the
        # canary subset (a state persisted as PROMOTING), then finish_promotion re-points
        # stable at the new version and returns to 100/0 on it.
        s2 = _log(replace(s, phase=PROMOTING, step=len(policy.steps) - 1, weights=Weights.canary_at(100),
                          reason="all steps passed"), ev.now, "promoting")
        return s2, actions + [SetWeights(s2.weights), Emit("rollout.promoting", {})]
    if elapsed < interval + policy.failure.no_data_deadline:
        return s, actions
    # never a promotion without evidence: measured-but-unclear rolls back (exit 1), and so does a
    # Prometheus that answered without the canary's series; only "could not ask Prometheus" aborts (exit 3),
    # and its reason opens with that: the end is the infrastructure's, not an unproven canary's (`end_cause`)
    unreachable = any(r.outcome is Outcome.ERROR and r.extra.get("unavailable") for r in j.results)
    n_said = f"{ev.canary_requests:.0f}"  # a look whose requests could not be counted says so, never 0 (433)
    short = f"; {short_reason(covered, interval, elapsed)}" if covered < interval else ""  # a pass too few s long
    why = (f"{'Prometheus unreachable: ' if unreachable else ''}no verdict after {elapsed:.0f}s at step "
           f"{s.step + 1} ({j.outcome.label}: {j.reason()}; canary requests "
           f"{'not counted' if uncounted else 'not measured' if unreachable and not ev.canary_requests else n_said}, "
           f"need {policy.analysis.min_canary_requests}{short})")
    held = ev.promotion_held or s.promotion_held  # this look's, or an earlier look's of the step (977)
    if held:  # every check passed; the promotion, not the canary's evidence, was what could not go on
        last = "" if ev.promotion_held else f"; the step's last look: {j.outcome.label}: {j.reason()}"
        why = (f"promotion held at step {s.step + 1} for {elapsed:.0f}s, until the step's deadline: every check "
               f"passed{'' if ev.promotion_held else ' at an earlier look'}, but the other VirtualServices (of every "
               f"namespace) could not be checked for a route that sends traffic to the canary subset ({held}); not "
               f"promoted over a split nobody could look for{last}")
    if policy.failure.on_deadline == "hold" or (unreachable and ev.hold_unreachable):
        s2 = _log(replace(s, phase=PAUSED, reason=why), ev.now, "held")
        return s2, actions + [SetWeights(s2.weights), Emit("rollout.held", {"reason": why}, warning=True)]
    phase = ABORTED if unreachable else ROLLED_BACK
    cause = "infrastructure" if unreachable or held else ev.deadline_cause or "deadline"
    s2, more = _end(s, ev.now, reason=why, phase=phase, verdict=j, cause=cause)
    return s2, actions + more


def short_reason(covered: float, interval: float, elapsed: float) -> str:
    """Why a look of a step old enough cannot pass on its data's length (`look.window_short`, the deadline's reason)."""
    return (f"the data judged cover {covered:.0f}s of the step's {elapsed:.0f}s, under the {interval:.0f}s interval "
            "(Prometheus holds less of the step: restarted without its storage, or new; or the request counters were "
            "first exported inside the step, no request before it, a pod restarted while idle; or the window "
            "restarted): no pass until they cover it")


def _step_line(step: int, policy: Policy) -> str:
    """The history line `_enter_step` writes entering `step` (0-based), which `_entered` looks for."""
    return f"step {step + 1}/{len(policy.steps)} canary {Weights.canary_at(policy.steps[step]).canary}%"


def _enter_step(state: RolloutState, step: int, policy: Policy, now: float) -> tuple[RolloutState, list[Action]]:
    weights = Weights.canary_at(policy.steps[step])
    s = replace(state, phase=PROGRESSING, step=step, weights=weights, step_started_at=now, step_looks=0,
                failed_looks=0, last_look_requests=-1.0, updated_at=now, reason="", evidence=_fold(state),
                window_evidence={}, step_window=0, pass_anchor_requests=-1.0, window_to=None, window_from=None,
                promotion_held="")
    s = _log(s, now, _step_line(step, policy))
    return s, [SetWeights(weights), Emit("step.advanced", {"step": step + 1, "steps": len(policy.steps),
                                                          "from_weights": str(state.weights)})]


def _end(state: RolloutState, now: float, *, reason: str, phase: str, verdict: Verdict | None = None,
         cause: str = "") -> tuple[RolloutState, list[Action]]:
    """Traffic first: one write sets stable 100% and records why, and the end's class (`cause`, decided by the
    caller; "": read from `reason`'s words)."""
    cause = end_cause(cause, reason)
    s = _log(replace(state, phase=phase, weights=STABLE_ONLY, reason=reason, updated_at=now, end_cause=cause), now,
             f"{phase}: {reason}")
    evidence = [r.to_dict() for r in verdict.results if r.outcome >= Outcome.ERROR] if verdict else []
    fields: dict[str, Any] = {"reason": reason, "end_cause": cause, "from_weights": str(state.weights),
                              "step": state.step + 1}
    if evidence:
        fields["evidence"] = evidence
    start = "rollback.started" if phase == ROLLED_BACK else "rollout.aborting"
    done = "rollback.completed" if phase == ROLLED_BACK else "rollout.aborted"
    # The stable subset must select the stable version whenever stable is recorded as serving: a
    # promotion may have re-pointed it (PROMOTING, canary at 100%) or may race this rollback. Point it
    # back while it carries no traffic, write 100/0, then check it again (idempotent: no write if right).
    # From PROMOTING the final check supersedes: a promoting process's DestinationRule write that is
    # still in flight (or whose process died mid-request) fails its precondition instead of landing.
    # The first pointing is guarded like the promotion's (checked against the record before and after,
    # undone if the promotion was recorded meanwhile): a rollback decided on a PROMOTING record read
    # earlier (a controller's, the sweep's) must not point a finished promotion's subset at the old version
    # and then have its own 100/0 refused. (Unguarded, by `canary rollback`, its 100/0 always follows.)
    promoting = state.phase == PROMOTING
    repoint = [PointSubset("stable", state.stable_version, guarded=True,
                           undo_version=state.canary_version)] if promoting else []
    # `start` is logged before the write: the phase and weights as routed (the executor labels the decision
    # target_phase/target_weights until its write lands); `done` after it
    routed = {"phase": state.phase, "weights": str(state.weights)}
    level = "error" if phase == ROLLED_BACK and cause in BAD_CANARY else "warning"
    # `next`: what on-call does after an end of this class (decision 678), on the end's line alone: said once stable
    # has 100%. On the start's, before the write, it was false wherever the write then failed ("nothing to do" of an
    # operator's rollback still split; "roll v2 out again" of one never ended): what to do then is the
    # `rollback.retrying` / `rollback.failed` line's (decision 738)
    said = {**fields, "next": next_step(cause, state.canary_version, reason=reason)}
    return s, [Emit(start, {**fields, **routed}, warning=True), *repoint, SetWeights(STABLE_ONLY),
               PointSubset("stable", state.stable_version, supersede=promoting),
               Emit(done, said, warning=True, level=level)]


def _log(state: RolloutState, now: float, what: str) -> RolloutState:
    entry = {"at": round(now, 3), "phase": state.phase, "weights": str(state.weights), "what": what}
    return replace(state, history=(state.history + (entry,))[-20:])


def _verdict_summary(j: Verdict, ev: Looked) -> dict[str, Any]:
    return {"at": round(ev.now, 3), "outcome": j.outcome.label, "reason": j.reason(),
            "canary_requests": ev.canary_requests, "results": [r.to_dict() for r in j.results]}
