"""`canary serve`: our judge behind Argo Rollouts' `web` metric provider and Flagger's webhooks.

Why: people who already run Argo Rollouts or Flagger keep their controller (it owns the
traffic) and call this service once per analysis interval; each call measures both arms in
Prometheus over the rollout's open window, judges with the rollout's pooled evidence (the
judge's `prior`) and answers with a verdict. The sequential state of every rollout revision
(`serve_session.Session`) is written to disk before the answer leaves (`serve_store`), so a
restarted service spends the error budget where the last one stopped.

Endpoints (`Service.handle`; the HTTP layer is serve_http.py). Shapes: serve_requests.py.

    GET|POST /api/v1/argo/measure        Argo web metric: 200 with the look document below
                                         (503 when Prometheus could not be asked, or did not
                                         answer within `answer_within_s`)
    POST /api/v1/flagger/pre-rollout     the policy's Triton gates: 200 passed (or none
                                         configured), 409 refused, 503 could not check (or
                                         still running after `answer_within_s`: serve_gates.py)
    POST /api/v1/flagger/rollout         one look: 200 pass or inconclusive, 409 fail, 503
                                         (every call: 503 when another call of the revision
                                         is still being answered after `answer_within_s`)
    POST /api/v1/flagger/confirm-traffic-increase
    POST /api/v1/flagger/confirm-promotion
                                         no measurement: 200 only when the revision's last look
                                         passed (the canary shown within every limit) and that
                                         pass has not granted this hook yet, 409 when it failed,
                                         412 while the evidence is not there yet
    GET  /healthz                        200 {"ok": true}

The look document (`result` is what an Argo `jsonPath: "{$.result}"` selects):

    {"result": {"verdict": "pass|fail|inconclusive", "outcome": "<this look's judge outcome>",
                "reason": str, "look": int, "window": int, "window_s": int, "failed_looks": int,
                "max_failed_looks": int, "canary_requests": float, "checks": {name: outcome}},
     "rollout": {"key", "revision", "policy", "model", "namespace", "stableVersion",
                 "canaryVersion", "step"},
     "evidence": [CheckResult.to_dict(), ...]}          (Argo only; Flagger shows bodies as events)

Every refused request is {"error": str, "field": str} with a 4xx; every decision is one JSON
log line `serve.decision` on stderr. With a token file (serve_auth.py) every endpoint but /healthz
is a 401 without an accepted token; a new revision when the state directory holds
`--max-revisions` live ones is a 503 (serve_store.py).
"""

from __future__ import annotations

import copy
import json
import math
import threading
import time
import urllib.parse
import weakref
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from canary import logs
from canary.analysis.judge import judge
from canary.analysis.shown import beside
from canary.errors import ConfigError
from canary.model import Outcome, Target, Verdict
from canary.policy import Policy, load_policy
from canary.rollout import uncounted_reason
from canary.runner import SKEW_WARN_S, SystemClock, prometheus_time, warn_skew
from canary.serve_auth import TokenFile
from canary.serve_gates import GateRuns, run_gates
from canary.serve_measure import measure_within, no_stable_data
from canary.serve_requests import Ask, BadRequest, argo_ask, flagger_ask, query_fields, read_json
from canary.serve_session import (FAIL, MAX_LEFT_INPUTS, PASS, Session, new_session, open_window, owed_pass,
                                  pass_to_grant, record_gates, record_look, reopen, serve_window, ticks_unknown,
                                  unproven, unreachable_at_deadline, window_deadline_s)
from canary.serve_store import RevisionBusy, SessionStore, StoreError, StoreFull, Turn

MAX_IGNORED_SETS = 64  # sets of unknown Flagger payload fields said once each (`serve.fields_ignored`)
ANSWER_WITHIN_S = 8.0  # below Flagger's and Argo's default webhook/measurement timeout of 10 s
FLAGGER_HOOKS = ("pre-rollout", "rollout", "confirm-traffic-increase", "confirm-promotion")
STATUS = {PASS: 200, "inconclusive": 200, FAIL: 409}
Reply = tuple[int, dict[str, Any]]


@dataclass(frozen=True)
class _Answer:
    """A call's answer as offered to the same call made at once (`Service._joined`): its `hook` and `step`, the
    inputs it named (`_inputs`), the revision's session as the call left it, the status and document, and what
    `serve.decision` logged ((session, verdict, canary requests, reason); None for an answer with no session:
    `_say_decision`)."""

    hook: str
    step: str
    inputs: tuple[str, ...]
    session: Session | None
    status: int
    doc: dict[str, Any]
    decided: Any


@dataclass(frozen=True)
class NamedPolicy:
    name: str
    policy: Policy
    base_dir: Path  # where the policy's relative paths (a gate's sample_file) resolve


def load_policies(files: list[Path]) -> dict[str, NamedPolicy]:
    """Policies by name (the file name without .yaml/.yml); ConfigError for a bad file or a name twice."""
    out: dict[str, NamedPolicy] = {}
    for f in files:
        name = f.name.rsplit(".", 1)[0] if f.suffix in (".yaml", ".yml") else f.name
        if name in out:
            raise ConfigError(f"{f}: a policy named {name!r} is already loaded (policy names are file names)")
        out[name] = NamedPolicy(name=name, policy=load_policy(f), base_dir=f.parent)
    if not out:
        raise ConfigError("no policy: pass --policy FILE (repeatable) or --policy-dir DIR")
    return out


def default_gates(cfg: Any, *, model: str, stable_url: str | None, canary_url: str, base_dir: Path) -> Any:
    from canary.gates import TritonGates

    return TritonGates(cfg, model=model, stable_url=stable_url, canary_url=canary_url, base_dir=base_dir,
                       url_fields=("metadata.tritonStable", "metadata.tritonCanary"))


class Service:
    """The endpoints, without HTTP: `handle(method, path, query, body, content_type) -> (status, JSON)`.

    `metrics` is a PrometheusProvider (anything with its `measure`/`request_counts` taking `at`);
    `clock` gives Unix seconds (the window bookkeeping and the queries' evaluation time); by default
    `runner.SystemClock`'s: a step of the host's wall clock (NTP, a VM resumed) while the service runs
    moves it by the time that really passed only. On the raw wall clock a 600 s step forward made the next
    look's window reach 600 s back before it opened (into the window before it, already pooled: counted
    again as new evidence), and evaluated its queries 600 s ahead of Prometheus.
    `answer_within_s` bounds a call's wait for its revision, for Prometheus and for the Triton gates
    (real time): what is not measured by then is "could not measure", gates still running are "could not
    check yet", and a revision still busy with another call is a 503, so the caller gets an answer before
    its own timeout (Flagger's and Argo's default: 10 s). `auth` (None: no credential asked) is checked
    on every endpoint but /healthz: 401 without an accepted token, 503 while the token file is unreadable.
    """

    def __init__(self, *, policies: dict[str, NamedPolicy], metrics: Any, store: SessionStore,
                 clock: Callable[[], float] | None = None, gates: Callable[..., Any] = default_gates,
                 answer_within_s: float = ANSWER_WITHIN_S, auth: TokenFile | None = None) -> None:
        if not (math.isfinite(answer_within_s) and answer_within_s > 0):
            raise ConfigError(f"--answer-within must be a positive duration, got {answer_within_s!r}")
        self.log = logs.get(component="serve")
        if clock is None:  # Prometheus's clock when it answers, then advanced by the monotonic one (decisions 143 c, 145)
            clock = prometheus_clock(metrics, log=self.log)
        self.policies, self.metrics, self.store, self.clock, self.gates = policies, metrics, store, clock, gates
        late = getattr(clock, "__self__", None)  # a clock still waiting for Prometheus's time: settled by each look
        self._late: _LateAnchor | None = late if isinstance(late, _LateAnchor) else None
        self.answer_within_s, self.auth = answer_within_s, auth
        self.gate_runs = GateRuns(clock)
        self._ignored: set[tuple[str, ...]] = set()  # Flagger payload fields ignored and said (serve.fields_ignored)

    def close(self) -> None:
        """Stop what the service runs in the background: the thread of a clock still waiting for Prometheus's
        time (`_LateAnchor.close`). Calls still answer (on the host's clock, settled by each look). Idempotent."""
        if self._late is not None:
            self._late.close()

    def handle(self, method: str, path: str, query: str, body: bytes, content_type: str | None, *,
               authorization: str | None = None, peer: str = "") -> Reply:
        """One request -> (HTTP status, JSON document). `authorization` is the Authorization header's value
        (None when absent), `peer` the client's address (for the log only). Never raises."""
        deadline = time.monotonic() + self.answer_within_s
        caller: dict[str, str] = {}  # who asked, as far as the request says: on every refusal's line
        try:
            refused = self._refused(path, authorization, peer)
            if refused is not None:
                return refused
            return self._route(method, path, query, body, content_type, deadline, caller)
        except RevisionBusy as exc:  # not an answer about the canary: the caller asks again (never a 2xx)
            self.log.warning("serve.busy", path=path, peer=peer, **caller, error=str(exc))
            return 503, {"error": str(exc), "field": ""}
        except StoreFull as exc:
            self.log.error("serve.state_full", path=path, peer=peer, **caller, max_revisions=self.store.max_revisions,
                           error=str(exc))
            return 503, {"error": str(exc), "field": ""}
        except BadRequest as exc:
            self.log.warning("serve.bad_request", path=path, peer=peer, **caller, status=exc.status, field=exc.field,
                             error=exc.message)
            return exc.status, {"error": str(exc), "field": exc.field}
        except StoreError as exc:
            self.log.error("serve.state_error", path=path, peer=peer, **caller, error=str(exc))
            return 500, {"error": str(exc), "field": ""}
        except Exception as exc:  # noqa: BLE001 - a bug answers 500 and the service goes on
            self.log.error("serve.unexpected_error", path=path, peer=peer, **caller,
                           error=f"{type(exc).__name__}: {exc}")
            return 500, {"error": f"unexpected error ({type(exc).__name__}: {exc})", "field": ""}

    def _refused(self, path: str, authorization: str | None, peer: str) -> Reply | None:
        """None when the call may go on (no `auth`, /healthz, an accepted token), else its 401 or 503."""
        if self.auth is None or path == "/healthz":  # a probe carries no token, and learns nothing
            return None
        return self.auth.refusal(authorization, path=path, peer=peer, log=self.log)

    def _route(self, method: str, path: str, query: str, body: bytes, content_type: str | None,
               deadline: float, caller: dict[str, str]) -> Reply:
        """`caller` is filled in with `key` (and `revision`) as soon as the request names them, for the log
        line of a refusal: "no policy 'flager' here" alone does not say which of fifty Canaries to fix."""
        if path == "/healthz":
            _allow(method, ("GET",))
            return 200, {"ok": True}
        if path == "/api/v1/argo/measure":
            _allow(method, ("GET", "POST"))
            if method == "GET":
                if body:  # ignored, it answered "namespace: missing" for a request that sent every field
                    raise BadRequest("", f"a GET gives the fields in the query string; this one sent a body "
                                         f"({len(body)} bytes): send that as a POST (Argo: method: POST with "
                                         "jsonBody), or the fields in the URL")
                raw: Any = query_fields(query)
            else:
                if query:
                    raise BadRequest("", "give the fields in the JSON body or in the query string, not both")
                raw = read_json(body, content_type)
            caller.update(_named(raw, "argo", "rollout"))
            ask = argo_ask(raw)
            caller.update(key=ask.key, revision=ask.revision)
            return self._look(ask, hook="measure", deadline=deadline)
        prefix = "/api/v1/flagger/"
        if path.startswith(prefix):
            hook = path[len(prefix):]
            if hook not in FLAGGER_HOOKS:
                raise BadRequest("", f"no Flagger webhook {hook!r} here; known: {', '.join(FLAGGER_HOOKS)}", 404)
            _allow(method, ("POST",))
            if query:  # not read: `?policy=b` on a webhook URL was judged with the only policy loaded, unsaid
                names = [ascii(k)[1:-1][:60] for k, _ in urllib.parse.parse_qsl(query, keep_blank_values=True)]
                raise BadRequest(names[0] if names else "", "a Flagger webhook's fields come in its payload (the "
                                 "webhook's metadata in the Canary), never in the URL: remove the query string "
                                 f"{ascii(query[:80])}")
            raw = read_json(body, content_type)
            caller.update(_named(raw, "flagger", "name"))
            ask = flagger_ask(raw)
            caller.update(key=ask.key, revision=ask.revision)
            # once per set of names (a Flagger upgrade), for the first MAX_IGNORED_SETS sets: a caller sending new
            # names at every call grew the memory without bound and wrote a line per call (decision 256)
            if ask.ignored and ask.ignored not in self._ignored and len(self._ignored) < MAX_IGNORED_SETS:
                self._ignored.add(ask.ignored)
                full = len(self._ignored) == MAX_IGNORED_SETS
                self.log.info("serve.fields_ignored", integration="flagger", hook=hook, key=ask.key,
                              fields=list(ask.ignored),
                              **({"note": f"{MAX_IGNORED_SETS} sets of ignored fields said: later ones are ignored "
                                          "without a line"} if full else {}))
            if hook == "pre-rollout":
                return self._gates(ask, deadline=deadline)
            if hook == "rollout":
                return self._look(ask, hook=hook, deadline=deadline)
            return self._confirm(ask, hook=hook, deadline=deadline)
        raise BadRequest("", f"no such endpoint {path[:100]!r}", 404)

    # -- the three kinds of answer -----------------------------------------------------

    def _look(self, ask: Ask, *, hook: str, deadline: float) -> Reply:
        named = self._policy(ask)
        policy = named.policy
        if self._late is not None:  # Prometheus's clock before this look's: never a window judged on the host's
            self._late.settle(deadline)
        with self.store.lock(ask.key, ask.revision, timeout=_left(deadline)) as turn:
            stored = self.store.load(ask.key, ask.revision)
            joined = self._joined(turn, ask, hook, named, stored)
            if joined is not None:
                return joined
            # a new revision is stored only once its look is (below): a refusal stores nothing, so it neither
            # counts toward --max-revisions nor meets a full store's 503 (decision 314)
            fresh = stored is None
            said: list[tuple[Session, dict[str, Any]]] = []  # a start over or reopen, stored (and said) with the look
            since = self._since(ask)
            s = (_new_session(ask, named, self.clock()) if fresh
                 else self._session(ask, named, create=True, stored=stored, said=said, since=since))
            assert s is not None
            verdict: Verdict | None = None
            window_s, n, unmeasured, ratio, shared = 0, None, False, None, False
            refused: Session | None = None  # the answer when no look of this rollout could be judged
            uncounted_said: dict[str, Any] | None = None  # `look.requests_uncounted`'s fields, said once recorded
            now = self.clock()
            owed = owed_pass(s, step=ask.step, now=now, within_s=policy.analysis.interval)
            # the preflight (decision 291), asked beside the look's own queries until it once answers: asked only
            # while no look was recorded, on half the time left, one that timed out (behind a concurrent call, a
            # slow Prometheus) was never asked again and the revision was inconclusive to its deadline (314)
            told_by = (no_stable_data(self.metrics, policy, _target(s), log=self.log)
                       if owed is None and not s.ended and not s.preflight_done else None)
            if owed is not None:  # another analysis of this window got its pass: this one is owed it (decision 273)
                s, shared = owed, True
            elif not s.ended:
                before = s
                s = open_window(s, now=now, step=ask.step, quiet_s=window_deadline_s(policy))
                window_s = serve_window(s, now, policy.analysis.look_every)
                measurements, n, counted, uncounted, held = measure_within(self.metrics, policy, _target(s), window_s=window_s, at=now,
                                                 deadline=deadline, answer_within_s=self.answer_within_s, log=self.log)
                ratio = s.pass_ratio(n)  # the look's requests over its window's anchor: sets the pass level
                verdict = judge(policy, measurements, prior=s.prior(), window=s.window, pass_ratio=ratio,
                                step=s.windows_closed)  # a count that never repeats: places the window
                looked = s  # the window the look is in (one held at its deadline opens the next in record_look)
                s, verdict = record_look(s, verdict, canary_requests=n, now=now, policy=policy, counted=counted,
                                         uncounted=uncounted, caller=ask.step, held_s=held)
                if uncounted:  # no pass, and why: as the controller's and promote's looks say it (decision 516)
                    uncounted_said = {"step": looked.step, "window": looked.window + 1, "look": s.looks,
                                      "reason": uncounted_reason(uncounted)}
                # 503 (Argo: Error, never Failed): no check could ask Prometheus, or one could not at the
                # window's deadline (held, not failed: record_look)
                unmeasured = s.verdict != FAIL and (unreachable_at_deadline(s) or all(
                    r.outcome is Outcome.ERROR and r.extra.get("unavailable") for r in verdict.results))
                told, why = told_by(deadline) if told_by is not None else (False, None)
                if why:  # a model (or label) matching no series: refused, as promote's preflight refuses (decision
                    # 291); this look is dropped, nothing recorded (the looks before it, their evidence, stay), so
                    # the next call checks again (the series may appear: a scrape fixed)
                    s, verdict, window_s, n, ratio, unmeasured = before, None, 0, None, None, False
                    uncounted_said = None  # no look recorded: nothing to say of its count
                    refused = replace(s, verdict=FAIL, reason=why, step=ask.step)
                elif told:  # the stable arm has data: not asked again for this revision
                    s = replace(s, preflight_done=True)
            if refused is None and fresh:
                self._create(s, now)
            elif refused is None:
                self.store.save(s)
                for old, why in said:
                    self._say_restarted(ask, old, **why)
            # the stored session (unchanged by a refusal, a start over's included: decision 332; none for a new
            # revision's): a call that joins this one needs it unchanged
            saved = stored if refused is not None else s
            if refused is not None:
                s = refused
            if shared:  # the pass as answered at its look, nothing measured now; the revision's own state is unchanged
                why = (f"the pass of look {s.passed_look}, answered to another analysis of its window, is this one's "
                       f"too (step {ask.step!r})" + (f": {s.reason}" if s.looks == s.passed_look else ""))
                s = replace(s, verdict=PASS, reason=why)
            status = 503 if unmeasured else (200 if ask.integration == "argo" else STATUS[s.verdict])
            doc = _document(s, verdict, policy=policy, window_s=window_s, canary_requests=n, pass_ratio=ratio)
            if ask.integration == "flagger":
                doc.pop("evidence")
            turn.share(_Answer(hook=hook, step=ask.step, inputs=_inputs(ask, named), session=saved, status=status,
                               doc=doc, decided=(s, verdict, n, None)))
        if uncounted_said is not None:  # the look is stored: said once, with its `serve.decision` (never again
            # by a call that joins it: `_joined` answers before any look)
            self.log.warning("look.requests_uncounted", integration=ask.integration, hook=hook, key=ask.key,
                             revision=ask.revision, model=s.model, **uncounted_said)
        self._decided(ask, hook, status, s, verdict, n)
        return status, doc

    def _joined(self, turn: Turn, ask: Ask, hook: str, named: NamedPolicy, stored: Session | None) -> Reply | None:
        """The answer of the call that held this revision while this one waited, when it was the same hook for the
        same step and the same inputs (policy, model, versions: `_inputs`) and nothing was written since (`stored`,
        the session as read now, is the one it left): a call made twice at once (Flagger's retry after its timeout,
        two Flagger replicas in a leader change, two hooks pointed at one URL) is one look, answered to both, where
        the second judged again behind the first, in the window the first one's pass had just opened: its
        `inconclusive` replaced the recorded pass, and the confirm hooks that followed the pass were 412 until the
        next one (decision 303). A call naming another model or policy was answered the first one's verdict, on
        a model it never measured, where made alone it is a 409 (decision 311). None: this call is answered on
        its own. (Called with the revision held.)"""
        prev = turn.since_arrival()
        if (not isinstance(prev, _Answer) or stored != prev.session
                or (prev.hook, prev.step, prev.inputs) != (hook, ask.step, _inputs(ask, named))):
            return None
        self._say_decision(ask, hook, prev.status, prev.doc, prev.decided, joined=True)
        return prev.status, copy.deepcopy(prev.doc)

    def _confirm(self, ask: Ask, *, hook: str, deadline: float) -> Reply:
        """A pass grants one traffic increase and one promotion (Flagger's last step asks both after one
        look): the same confirm hook again before the next look is 412, so a replayed or repeated call
        never moves the canary twice on one piece of evidence. The same call made twice at once is one
        call, answered to both (`_joined`): the second was the replay's 412 while the first one's 200
        went to a caller that had given up."""
        named = self._policy(ask)
        with self.store.lock(ask.key, ask.revision, timeout=_left(deadline)) as turn:
            stored = self.store.load(ask.key, ask.revision)
            joined = self._joined(turn, ask, hook, named, stored)
            if joined is not None:
                return joined
            said: list[tuple[Session, dict[str, Any]]] = []
            status, doc, decided = self._confirm_held(ask, named, hook, stored, said)
            # the session as stored now, read again: the call path above may save it at any of four places
            # (`_create`, `_session`'s start over when it creates, the grant, `_first_step`) or change it unsaved,
            # and `_joined` compares this with what the next call reads; one small file read (decision 331)
            now_stored = self.store.load(ask.key, ask.revision)
            if now_stored != stored:  # a start over is said when stored: granting the first step (decision 332)
                for old, why in said:
                    self._say_restarted(ask, old, **why)
            turn.share(_Answer(hook=hook, step=ask.step, inputs=_inputs(ask, named), session=now_stored,
                               status=status, doc=doc, decided=decided))
        self._say_decision(ask, hook, status, doc, decided)
        return status, doc

    def _say_decision(self, ask: Ask, hook: str, status: int, doc: dict[str, Any], decided: Any, *,
                     joined: bool = False) -> None:
        """`serve.decision` of an answer: `decided` is what `_decided` logs ((session, verdict, canary requests,
        reason)), None for one with no session (a confirm hook before any look: `doc["error"]` says why)."""
        if decided is not None:
            s, verdict, n, reason = decided
            self._decided(ask, hook, status, s, verdict, n, reason=reason, joined=joined)
        else:
            self.log.info("serve.decision", integration=ask.integration, hook=hook, key=ask.key,
                          revision=ask.revision, status=status, verdict="inconclusive", reason=doc["error"],
                          **({"joined": True} if joined else {}))

    def _confirm_held(self, ask: Ask, named: NamedPolicy, hook: str, stored: Session | None,
                      said: list[tuple[Session, dict[str, Any]]]) -> tuple[int, dict[str, Any], Any]:
        """`_confirm`'s answer, with the revision held: (status, document, what `_decided` logs or None). A start
        over `_session` makes is stored only when the first step is granted (`said`: its `serve.restarted`)."""
        spent = ""
        s = self._session(ask, named, create=False, stored=stored, said=said, since=self._since(ask))
        if hook == "confirm-traffic-increase" and (s is None or s.looks == 0):
            return self._first_step(ask, named, s)
        grant = "traffic_granted_look" if hook == "confirm-traffic-increase" else "promotion_granted_look"
        now = self.clock()
        same_tick_s = named.policy.analysis.look_every / 2  # looks closer than this are one tick's (decision 304)
        if s is not None and s.verdict == PASS and getattr(s, grant) == s.looks:
            spent = (f"the pass of look {s.looks} already granted "
                     f"{'a traffic increase' if grant == 'traffic_granted_look' else 'the promotion'}: the "
                     "rollout webhook must judge again before another (a replayed or repeated call)")
        elif s is not None and (look := pass_to_grant(s, granted_look=getattr(s, grant), now=now,
                                                      within_s=named.policy.analysis.interval,
                                                      same_tick_s=same_tick_s,
                                                      promotion=grant == "promotion_granted_look")):
            s = replace(s, **{grant: look}, **({"traffic_granted_at": now} if grant == "traffic_granted_look" else {}))
            self.store.save(s)
            if s.looks != look:  # answered as recorded: the pass of `look`, not the verdict of the looks since
                assert s.passed_at is not None
                s = replace(s, verdict=PASS, reason=(
                    f"the pass of look {look}, answered {now - s.passed_at:.0f}s ago: the {s.looks - look} look(s) "
                    "since, in the same tick, showed no failure (a rollout call made again before this hook)"))
        if spent and s is not None:
            doc = _document(s, None, policy=named.policy, window_s=0, canary_requests=None)
            doc.pop("evidence")
            doc["result"]["reason"] = doc["error"] = spent
            doc["field"] = "checksum"
            return 412, doc, (s, None, None, spent)
        if s is None:
            return 412, {"error": f"no look recorded for {ask.key} revision {ask.revision} yet: the rollout "
                                  "webhook must come before this one", "field": "checksum"}, None
        status = {PASS: 200, FAIL: 409}.get(s.verdict, 412)
        reason = None
        if (status == 412 and s.pass_gap_s is not None and s.pass_gap_s < same_tick_s
                and s.passed_look > getattr(s, grant) and s.looks != s.passed_look):
            reason = (f"the pass of look {s.passed_look} is not granted after look {s.looks}: it came "
                      f"{beside(s.pass_gap_s, same_tick_s, 0, fixed=True)}s after the look before it, under half "
                      "the policy's look_every "
                      f"({named.policy.analysis.look_every:g}s), so a look after it may be the next tick's, at "
                      "another weight; set the Canary's interval to at least the policy's look_every "
                      f"({s.reason})")
            s = _with_reason(s, reason)
        elif (status == 412 and grant == "promotion_granted_look" and ticks_unknown(s, same_tick_s=same_tick_s)
              and pass_to_grant(s, granted_look=s.promotion_granted_look, now=now,
                                within_s=named.policy.analysis.interval, same_tick_s=same_tick_s)):
            # refused for that alone: the traffic hook would have been granted this pass (decision 440)
            reason = (f"the pass of look {s.passed_look} does not grant the promotion after look {s.looks}: "
                      + ("it was this revision's first look" if s.pass_gap_s is None else
                         f"it came {beside(s.pass_gap_s, same_tick_s, 0, fixed=True)}s after the look before it, "
                         "and " + ("fewer than two looks came before that" if s.pass_ticks_s is None else
                                   "the looks before it were at most "
                                   f"{beside(s.pass_ticks_s, same_tick_s, 0, fixed=True)}s apart"))
                      + f", so this caller's ticks are not known to be at least half the policy's look_every "
                      f"({named.policy.analysis.look_every:g}s) apart, and a look after the pass may be the next "
                      "tick's, at the weight Flagger moved to; the promotion waits for a pass that is the last look "
                      f"({s.reason})")
            s = _with_reason(s, reason)
        doc = _document(s, None, policy=named.policy, window_s=0, canary_requests=None)
        doc.pop("evidence")
        return status, doc, (s, None, None, reason)

    def _first_step(self, ask: Ask, named: NamedPolicy, s: Session | None) -> tuple[int, dict[str, Any], Any]:
        """Flagger's confirm-traffic-increase before any look: at weight 0 Flagger runs the pre-rollout
        hooks and then this one, in the same tick, and calls the rollout hook only once the canary has
        traffic (`advanceCanary`, pkg/controller/scheduler.go). Nothing can be judged yet, so the first
        step is granted, as `canary promote` moves to its first step: once per revision, and only after
        the policy's Triton gates passed. A second one with still no look means the rollout hook is
        missing: 412, so the canary stays on its first step instead of climbing unjudged. (Called
        under the revision's lock; `_confirm_held`'s answer.)"""
        gates = named.policy.gates.triton
        if s is not None and s.ended:
            status, why = 409, s.reason
        elif s is not None and s.first_step:
            status, why = 412, (f"no look recorded for {ask.key} revision {ask.revision} since its first step: the "
                                "rollout webhook must run before the next traffic increase")
        elif gates is not None and gates.enabled and (s is None or s.gates != "passed"):
            status, why = 412, (f"policy {named.name!r} enables gates.triton: the pre-rollout webhook must pass "
                                "before the canary gets traffic" + (f" ({s.gates})" if s is not None and s.gates else ""))
        else:
            if s is None:
                s = self._session(ask, named, create=True)
                assert s is not None
            status, why = 200, ("first step granted: the canary has no traffic yet, nothing to judge; the rollout "
                                "webhook judges it from now")
            s = replace(_with_reason(s, why), first_step=True, updated_at=self.clock())
            self.store.save(s)
        if s is None:
            return status, {"error": why, "field": "checksum"}, None
        doc = _document(s, None, policy=named.policy, window_s=0, canary_requests=None)
        doc.pop("evidence")
        doc["result"]["reason"] = why
        if status != 200:
            doc["error"] = why
        return status, doc, (s, None, None, None)

    def _gates(self, ask: Ask, *, deadline: float) -> Reply:
        named = self._policy(ask)
        cfg = named.policy.gates.triton
        if cfg is not None and cfg.enabled and not ask.triton_canary:
            raise BadRequest("metadata.tritonCanary", f"missing: policy {named.name!r} enables gates.triton")
        if cfg is not None and cfg.enabled:  # a URL tritonclient would misread is the request's fault: 400, not 503;
            # so is one server given as both (decision 204): the gates' 503 had Flagger ask again until its deadline
            from canary.gates import check_urls

            fields = ("metadata.tritonStable", "metadata.tritonCanary")
            try:
                check_urls(cfg.protocol, stable_url=ask.triton_stable, canary_url=ask.triton_canary, url_fields=fields)
            except ConfigError as exc:
                raise BadRequest(exc.field or fields[1], exc.detail or str(exc)) from None
        with self.store.lock(ask.key, ask.revision, timeout=_left(deadline)):
            stored = self.store.load(ask.key, ask.revision)  # read once: _restarted and _session both look at it
            since = self._since(ask)
            s = self._restarted(ask, named, stored) or self._session(ask, named, create=True, stored=stored,
                                                                     since=since)
            assert s is not None
            if s.ended:
                status = 409
            elif cfg is None or not cfg.enabled:
                s, status = record_gates(s, passed=True, why="", now=self.clock()), 200
                s = _with_reason(s, f"no gates configured in policy {named.name!r}")
            else:
                others = [t for r, t in since.items() if r != ask.revision]
                status, why = self._gate_result(cfg, ask, named, deadline, started_after=max(others, default=None))
                if status != 0:
                    s = record_gates(s, passed=status == 200, why=why, now=self.clock())
                else:  # still running: nothing recorded about the canary yet
                    status = 503
                s = _with_reason(s, why)
            self.store.save(s)
        doc = _document(s, None, policy=named.policy, window_s=0, canary_requests=None)
        doc.pop("evidence")
        doc["result"]["gates"] = s.gates
        self._decided(ask, "pre-rollout", status, s, None, None)
        return status, doc

    # -- helpers -------------------------------------------------------------------------

    def _restarted(self, ask: Ask, named: NamedPolicy, old: Session | None) -> Session | None:
        """A new session when `pre-rollout` comes for a revision whose analysis already began (a look, or
        its first step granted), else None. Flagger calls pre-rollout only at an analysis's start (weight 0,
        no iteration: `advanceCanary`), and its checksum is a hash of the target's spec, so the same spec
        rolled out again (reverted to, re-applied after another release) comes back with the same revision.
        Kept, its old window reached back to the last pass, hours or days of other releases' pods under the
        same `app` labels, and passed the first look; its old `pass` granted the new analysis's
        confirm hooks before any look. A failed revision stays failed (sticky, 409). `old`: the revision's
        stored session (None: none)."""
        if old is None or old.ended or (old.looks == 0 and not old.first_step):
            return None
        self._say_restarted(ask, old)
        return _new_session(ask, named, self.clock())

    def _gate_result(self, cfg: Any, ask: Ask, named: NamedPolicy, deadline: float, *,
                     started_after: float | None = None) -> tuple[int, str]:
        """The revision's gate run, waited on until `deadline`: its (status, why), or (0, why) while it
        still runs (serve_gates.py: the next pre-rollout joins it or reads its result); never one started before
        `started_after` (another revision of the Canary called since: decision 441)."""
        inputs = (named.name, ask.model, ask.triton_canary, ask.triton_stable)
        fresh_s = window_deadline_s(named.policy)
        key = f"{ask.key}\0{ask.revision}"
        run, started = self.gate_runs.join(key, inputs, lambda: run_gates(
            self.gates, cfg, model=ask.model, stable_url=ask.triton_stable or None, canary_url=ask.triton_canary,
            base_dir=named.base_dir), fresh_s=fresh_s, started_after=started_after)
        if run.done.wait(_left(deadline)):
            return self.gate_runs.take(key, run)
        running_s = self.clock() - run.started_at
        self.log.warning("serve.gates_running", key=ask.key, revision=ask.revision, started=started,
                         running_s=round(running_s, 1), answer_within_s=self.answer_within_s)
        return 0, (f"could not run the gates yet: still running ({running_s:.0f}s) after the {self.answer_within_s:g}s "
                   "this service answers in (--answer-within); they go on, and the next pre-rollout reads their result")

    def _policy(self, ask: Ask) -> NamedPolicy:
        field = "policy" if ask.integration == "argo" else "metadata.policy"
        if not ask.policy:
            if len(self.policies) == 1:
                return next(iter(self.policies.values()))
            raise BadRequest(field, f"missing: this server has several policies ({', '.join(sorted(self.policies))})")
        if ask.policy not in self.policies:
            raise BadRequest(field, f"no policy {ask.policy!r} here; known: {', '.join(sorted(self.policies))}")
        return self.policies[ask.policy]

    def _since(self, ask: Ask) -> dict[str, float]:
        """Flagger: when each revision of the Canary was first called after another, as before this call, which is
        recorded (`serve_current`, decision 441); {} for Argo, whose revisions of one Rollout may be called by turns.
        (Called with the revision held.)"""
        if ask.integration != "flagger":
            return {}
        return self.store.others_called(ask.key, ask.revision, self.clock())

    def _session(self, ask: Ask, named: NamedPolicy, *, create: bool, stored: Any = ...,
                 said: list[tuple[Session, dict[str, Any]]] | None = None,
                 since: dict[str, float] | None = None) -> Session | None:
        """The revision's stored session (a new one if `create`); 409 when the request names other
        inputs than those it was started with: a revision is judged with one policy and one pair.
        `stored`: that session as the caller already read it (None: none), else it is read here. `said`: when a
        list, a start over or a reopen is neither stored nor said here: its `serve.restarted` (the session left,
        the fields) is appended, for the caller to say once it stored the session it returns. A look refused by
        its preflight stores nothing, the start over included (decision 332), and a confirm hook stores one only
        when it grants the first step."""
        s = self.store.load(ask.key, ask.revision) if stored is ... else stored
        if s is None:
            if not create:
                return None
            now = self.clock()
            s = _new_session(ask, named, now)
            self._create(s, now)
            return s
        other = _called_since(s, since or {})
        if other:  # Flagger analysed another revision of the Canary since: this is a new analysis (decision 441)
            now = self.clock()
            why = dict(field="checksum", after=other, idle_s=round(now - s.updated_at))
            return self._start_over(ask, s, _new_session(ask, named, now), why, said=said, create=create)
        meta = "" if ask.integration == "argo" else "metadata."
        named_key = _left_key(_inputs(ask, named))
        barred = named_key in s.barred_inputs  # left by going back: two callers taking turns (decision 334)
        back = named_key in s.left_inputs and not barred
        for field, recorded, given in (("policy", s.policy, named.name), ("model", s.model, ask.model),
                                       ("stableVersion", s.stable_version, ask.stable_version),
                                       ("canaryVersion", s.canary_version, ask.canary_version)):
            if recorded == given:
                continue
            now = self.clock()
            quiet = self._quiet(s, now)  # another rollout of this revision, long after the last one ended
            if quiet or (_unjudged(s) and not barred):  # or nothing judged with those inputs yet: the first
                # look's refusal of a mistyped model or version (decision 291) left its session, and the corrected
                # call was this 409 until the silence that ends a rollout (decision 310); so did looks recorded
                # `inconclusive` while the preflight timed out, before it refused (decisions 314, 326). Back to
                # inputs this rollout left (an operator who corrected a name that was right) too, but the inputs
                # that leaves are barred: two callers, each starting it over, do it once, not by turns (326, 334)
                if quiet and not create:  # another rollout, and nothing to look at yet: no session (a call that
                    return None  # creates one says its start over)
                why = dict(field=meta + field, was=recorded, now=given, idle_s=round(now - s.updated_at),
                           **({"back": True} if back and not quiet else {}))
                fresh = _new_session(ask, named, now)
                if not quiet:  # the same rollout: the traffic its first step was given stays given, and the
                    # inputs it leaves are recorded (decisions 326, 334)
                    gone = _left_key(_session_inputs(s))
                    fresh = replace(fresh, first_step=s.first_step,
                                    left_inputs=_kept(s.left_inputs, gone),
                                    barred_inputs=_kept(s.barred_inputs, gone) if back else s.barred_inputs)
                return self._start_over(ask, s, fresh, why, said=said, create=create)
            if barred and _unjudged(s):  # judged since: the one-pair 409 below says so (decision 334)
                raise BadRequest(meta + field, f"{ask.key} revision {ask.revision} went back from {field} {given!r} "
                                               f"to inputs it had left, with nothing judged (it is judged with "
                                               f"{recorded!r} now, called {now - s.updated_at:.0f}s ago): two "
                                               "callers name different inputs for one rollout of a revision (a "
                                               "metric or webhook per model needs a revision of its own); inputs "
                                               "left by going back are taken again only after the rollout's "
                                               "silence", 409)
            raise BadRequest(meta + field, f"{ask.key} revision {ask.revision} is judged with {field} "
                                           f"{recorded!r}, not {given!r}, and was called {now - s.updated_at:.0f}s "
                                           "ago: one rollout of a revision is judged with one policy and one pair "
                                           "(a new release needs a new revision)", 409)
        if unproven(s):  # a `fail` for want of a verdict is sticky while its rollout lasts, not into the next one
            now = self.clock()
            if self._quiet(s, now):
                why = dict(field="", was=s.reason[:200], now="judged again, the evidence kept",
                           idle_s=round(now - s.updated_at))
                old, s = s, reopen(s, now=now)
                if said is not None:
                    said.append((old, why))
                else:
                    self._say_restarted(ask, old, **why)
                    self.store.save(s)
        if s.ended:  # the silence that ends a rollout (`_quiet`) counts from its caller's last call, not its last
            s = replace(s, updated_at=self.clock())  # look: a caller still asking after a fail is that rollout
        return s

    def _create(self, s: Session, now: float) -> None:
        """Store the new revision `s`, pruning finished ones (`serve.pruned`) when the store is full; StoreFull
        (a 503) when none is finished."""
        for gone in self.store.create(s, finished=lambda old: self._finished(old, now)):
            self.log.info("serve.pruned", key=gone.key, revision=gone.revision, verdict=gone.verdict,
                          idle_s=round(now - gone.updated_at), max_revisions=self.store.max_revisions)

    def _start_over(self, ask: Ask, old: Session, fresh: Session, why: dict[str, Any], *,
                    said: list[tuple[Session, dict[str, Any]]] | None, create: bool) -> Session:
        """`fresh`, the session that starts `old`'s revision over (`why`: `serve.restarted`'s fields): said and
        stored now when `create`, or left in `said` for the caller to store and say with its look."""
        if said is not None:
            said.append((old, why))
            return fresh
        self._say_restarted(ask, old, **why)
        if create:
            self.store.save(fresh)
        return fresh

    def _say_restarted(self, ask: Ask, old: Session, **why: Any) -> None:
        """`serve.restarted`: the revision's stored session `old` is taken for an earlier rollout; `why`: what
        told (the field that changed, `was`/`now`, `idle_s`), none for a new analysis's pre-rollout."""
        self.log.info("serve.restarted", integration=ask.integration, key=ask.key, revision=ask.revision,
                      looks=old.looks, verdict=old.verdict, first_step=old.first_step, **why)

    def settled_now(self) -> float | None:
        """The service's clock now once it is Prometheus's (or the one the caller gave); None while it is still
        the host's (Prometheus has not answered `time()`): the start-up prune judges a session's age on it."""
        owner = getattr(self.clock, "__self__", None)
        if isinstance(owner, SystemClock) and not getattr(owner, "anchored", False):
            return None
        return self.clock()

    def when_settled(self, fn: Callable[[float], None]) -> None:
        """Call `fn(now)` (the service's clock) once `settled_now` is known: now when it is, else when Prometheus
        first answers `time()` (a look's ask, or the clock's own every `REANCHOR_EVERY_S`), on a thread of its own;
        never with a clock that cannot settle (a provider without `ask`)."""
        owner = getattr(self.clock, "__self__", None)
        if isinstance(owner, _LateAnchor):
            owner.when_anchored(lambda: fn(self.clock()))
        elif (now := self.settled_now()) is not None:
            fn(now)

    def _quiet(self, s: Session, now: float) -> bool:
        """Not called for longer than a window of its policy may last (`interval + no_data_deadline`; of the
        longest loaded policy when its own is gone): that rollout is over. Argo's `undo` to a pod-template
        hash that was a canary before (against another stable) comes back as the same revision."""
        named = self.policies.get(s.policy)
        quiet_s = (window_deadline_s(named.policy) if named is not None
                   else max(window_deadline_s(p.policy) for p in self.policies.values()))
        return now - s.updated_at > quiet_s

    def _finished(self, s: Session, now: float) -> bool:
        """A session the state directory may drop to make room: failed (sticky: its caller rolled back), or
        not called for longer than a window of its policy may last (the caller stopped; were it to come
        back, its window would open from then anyway), or judged with a policy no longer loaded."""
        named = self.policies.get(s.policy)
        if s.ended or named is None:
            return True
        return now - s.updated_at > window_deadline_s(named.policy)

    def _decided(self, ask: Ask, hook: str, status: int, s: Session, verdict: Verdict | None, n: float | None, *,
                 reason: str | None = None, joined: bool = False) -> None:
        """`serve.decision`; `joined`: the answer of the same call made at once, given again (`_joined`)."""
        fields: dict[str, Any] = dict(integration=ask.integration, hook=hook, key=ask.key, revision=ask.revision,
                                      policy=s.policy, model=s.model, status=status, verdict=s.verdict,
                                      reason=reason or s.reason, look=s.looks, window=s.windows_closed,
                                      failed_looks=s.failed_looks, **({"joined": True} if joined else {}))
        if verdict is not None:
            fields.update(outcome=verdict.outcome.label, canary_requests=n,
                          checks={r.check: r.outcome.label for r in verdict.results})
        (self.log.warning if status >= 400 or s.verdict == FAIL else self.log.info)("serve.decision", **fields)


def _named(raw: Any, integration: str, name_field: str) -> dict[str, str]:
    """{"key": "<integration>/<namespace>/<name>"} from a request not yet validated, for a refusal's log line
    (each part cut at 100 characters; {} when the request names neither)."""
    if not isinstance(raw, dict):
        return {}
    ns, name = raw.get("namespace"), raw.get(name_field)
    if not isinstance(ns, str) and not isinstance(name, str):
        return {}
    return {"key": f"{integration}/{_printable(ns)}/{_printable(name)}"}


def _printable(v: Any) -> str:
    """A request's value for a log line: as it is when printable ASCII, else escaped (a newline in a
    console-format log would forge a line), "?" when not a string or empty; at most 100 characters."""
    if not isinstance(v, str) or not v:
        return "?"
    return v[:100] if v.isascii() and v.isprintable() else ascii(v[:40])


def _left(deadline: float) -> float:
    """Seconds to `deadline` (time.monotonic()), at least 0."""
    return max(0.0, deadline - time.monotonic())


def _allow(method: str, methods: tuple[str, ...]) -> None:
    if method not in methods:
        raise BadRequest("", f"method {method} not allowed here; use {' or '.join(methods)}", 405)


def _target(s: Session) -> Target:
    return Target(namespace=s.namespace, virtual_service=s.model, model=s.model, stable_version=s.stable_version,
                  canary_version=s.canary_version)


def _left_key(inputs: tuple[str, ...]) -> str:
    """`Session.left_inputs`' entry for `inputs` (`_inputs`' order): a JSON list, unambiguous whatever they hold."""
    return json.dumps(list(inputs), separators=(",", ":"))


def _kept(entries: tuple[str, ...], key: str) -> tuple[str, ...]:
    """`entries` with `key` added once (the oldest dropped past MAX_LEFT_INPUTS)."""
    return entries if key in entries else (*entries, key)[-MAX_LEFT_INPUTS:]


def _unjudged(s: Session) -> bool:
    """Nothing judged yet with `s`'s inputs, so a call naming other ones may start it over (decisions 310, 326):
    not ended, and no look recorded, or looks recorded only while its preflight never completed and with no data
    taken from them (no evidence of a closed or the open window, no failed look, no pass): the looks of a model
    matching no series, `inconclusive` while the preflight timed out, before it refused."""
    if s.ended:
        return False
    return s.looks == 0 or (not s.preflight_done and not s.evidence and not s.window_evidence
                            and s.failed_looks == 0 and s.passed_look == 0)


def _called_since(s: Session, since: dict[str, float]) -> str:
    """The revision of `s`'s Flagger Canary first called after `s` was last written (the latest, "" for none), a
    failed `s` never: Flagger restarted the analysis for another spec since, and calls this one again (the spec
    reverted to), from weight 0. Its window and passes were the earlier analysis's (decision 441)."""
    if s.ended:
        return ""
    later = [(t, r) for r, t in since.items() if r != s.revision and t > s.updated_at]
    return max(later)[1] if later else ""


def _with_reason(s: Session, reason: str) -> Session:
    return replace(s, reason=reason) if not s.ended else s


def _document(s: Session, verdict: Verdict | None, *, policy: Policy, window_s: int,
              canary_requests: float | None, pass_ratio: float | None = None) -> dict[str, Any]:
    result = {"verdict": s.verdict, "outcome": verdict.outcome.label if verdict else None, "reason": s.reason,
              "look": s.looks, "window": s.windows_closed, "window_s": window_s, "failed_looks": s.failed_looks,
              "max_failed_looks": policy.failure.max_failed_looks, "canary_requests": canary_requests,
              "pass_ratio": pass_ratio,
              "checks": {r.check: r.outcome.label for r in verdict.results} if verdict else {}}
    rollout = {"key": s.key, "revision": s.revision, "policy": s.policy, "model": s.model, "namespace": s.namespace,
               "stableVersion": s.stable_version, "canaryVersion": s.canary_version, "step": s.step}
    return {"result": result, "rollout": rollout,
            "evidence": [r.to_dict() for r in verdict.results] if verdict else []}


def _inputs(ask: Ask, named: NamedPolicy) -> tuple[str, ...]:
    """What a call names that its revision's session is judged with: (policy, model, stable, canary version)."""
    return (named.name, ask.model, ask.stable_version, ask.canary_version)


def _session_inputs(s: Session) -> tuple[str, ...]:
    """The inputs `s` is judged with, in `_inputs`' order: (policy, model, stable, canary version)."""
    return (s.policy, s.model, s.stable_version, s.canary_version)


def _new_session(ask: Ask, named: NamedPolicy, now: float) -> Session:
    """A revision's first session, for the inputs `ask` names, judged with `named`."""
    return new_session(key=ask.key, revision=ask.revision, policy=named.name, model=ask.model,
                       namespace=ask.namespace, stable_version=ask.stable_version,
                       canary_version=ask.canary_version, now=now, step=ask.step)


REANCHOR_EVERY_S = 30.0  # how often a service that started without Prometheus's time asks for it again


def prometheus_clock(metrics: Any, *, log: Any) -> Callable[[], float]:
    """`runner.SystemClock`'s `now`, anchored at Prometheus's `time()` when it answers within 2 s (else at this
    host's wall clock), as `Runner._on_prometheus_clock` anchors promote's: the monotonic clock keeps an
    anchor for the life of the process, so a host clock wrong when the service started (a VM resumed before
    NTP synced) and corrected later kept its error: 900 s ahead, every look was asked 900 s ahead of
    Prometheus and "could not measure: no series" until a restart (decision 145). `clock.skew` when the two
    differ by more than `runner.SKEW_WARN_S`. A Prometheus that did not answer at start (an Istio sidecar not
    ready yet, both pods restarted together) is asked again every `REANCHOR_EVERY_S` (`_LateAnchor`). One that
    answers and refuses the query (a path prefix it does not serve, credentials it refuses) is a ConfigError naming
    `--prometheus-url`: started, the service answered every look "could not measure" until someone read its log."""
    try:  # at most 2 s: a Prometheus that does not answer now is the looks' to report
        anchor = prometheus_time(metrics, refused=True)
    except ConfigError as exc:  # it answers, and refuses: no look could ask it (decision 271), exit 2 now
        raise ConfigError(f"--prometheus-url: {exc}") from None
    except Exception:  # noqa: BLE001 - the host's clock then, as before
        anchor = None
    if anchor is None:  # asked again later, when there is a way to ask (a provider with `ask`)
        return _LateAnchor(metrics, log=log).now if getattr(metrics, "ask", None) is not None else SystemClock().now
    warn_skew(log, anchor - time.time(), note="this service's times are Prometheus's; run NTP")
    return _Anchored(anchor=anchor).now


class _Anchored(SystemClock):
    """`SystemClock` anchored at Prometheus's `time()` at start-up: `anchored`, as a `_LateAnchor` once it is."""

    anchored = True


class _LateAnchor(SystemClock):
    """The host's clock until Prometheus first answers `time()` (decision 154), asked by every look before it reads
    the clock (`settle`) and, between calls, on a thread of its own every `REANCHOR_EVERY_S`. Then, if the host was
    ahead by more than `SKEW_WARN_S`, the clock moves back to Prometheus's (`clock.skew`): ahead, every look was
    asked in Prometheus's future, "no series", and a good canary failed at the deadline, for the life of the process.
    A host behind is kept (said once): the looks lag by that much but stay consistent, where a jump forward would
    stretch every open window back over data the window before it had judged.

    Why every look asks first (decision 159): with the thread alone, the looks of the up to 30 s between Prometheus
    coming up and the thread's next ask were judged on the host's clock. A host D seconds ahead measured a window's
    last D seconds in Prometheus's future, where there is no data yet, and counted them as covered: after a restart
    with the sidecar not ready, a window opened by the last process passed at `interval` on `interval - D` seconds
    of traffic (50 s of a 600 s interval), or failed at its deadline on "no series"."""

    def __init__(self, metrics: Any, *, log: Any) -> None:
        super().__init__()
        self._base = (self._wall0, self._mono0)
        self._metrics, self._log = metrics, log
        self.anchored = False  # Prometheus answered: the clock is settled for the life of the process
        self._asking = threading.Lock()  # one `time()` in flight: a look's and the thread's never both move it
        self._closed = threading.Event()  # `close`: the thread asks no more
        _LateAnchor.live.add(self)
        self._then: list[Callable[[], None]] = []  # `when_anchored`'s, run once when Prometheus first answers
        self._then_lock = threading.Lock()
        self._running: threading.Thread | None = None  # the thread running them, once started
        threading.Thread(target=self._ask, name="canary-serve-clock", daemon=True).start()

    live: "weakref.WeakSet[_LateAnchor]" = weakref.WeakSet()  # every anchor whose thread may still be asking

    def close(self, wait_s: float = 5.0) -> None:
        """Stop the thread that asks `time()` (a stopped service's clock asked a Prometheus that never came up
        every `REANCHOR_EVERY_S` for the life of the process, one `metrics.query_failed` line a minute naming no
        rollout), drop the `when_anchored` calls still waiting (a stopped service's prune ran when Prometheus
        answered later), and wait up to `wait_s` seconds for an ask in flight (at most 2 s) and for those calls
        already running to end, so nothing of the service runs or logs after its stop. `settle` still asks when a
        look calls it. Idempotent."""
        self._closed.set()
        _LateAnchor.live.discard(self)
        with self._then_lock:
            self._then, running = [], self._running
        until = time.monotonic() + wait_s
        if self._asking.acquire(timeout=max(0.0, until - time.monotonic())):
            self._asking.release()
        if running is not None and running is not threading.current_thread():
            running.join(timeout=max(0.0, until - time.monotonic()))

    def now(self) -> float:
        wall0, mono0 = self._base  # one read: an anchor moved between two reads would mix them
        return wall0 + (time.monotonic() - mono0)

    def settle(self, deadline: float) -> bool:
        """Ask Prometheus's `time()` now unless it already answered, within 2 s and `deadline` (time.monotonic()):
        whether the clock is Prometheus's. Not answered, the look goes on with the host's clock, as before; its
        queries are then most likely unanswered too ("could not measure")."""
        if self.anchored:
            return True
        if not self._asking.acquire(timeout=max(0.0, deadline - time.monotonic())):
            return self.anchored
        try:
            if not self.anchored:
                self._try(within_s=min(2.0, deadline - time.monotonic()))
        finally:
            self._asking.release()
        return self.anchored

    def when_anchored(self, fn: Callable[[], None]) -> None:
        """Run `fn` once the clock is Prometheus's: on a thread of its own when Prometheus first answers (never in
        the look that asked: it answers within --answer-within), or now, on this thread, when it already has."""
        with self._then_lock:
            if self._closed.is_set():
                return  # the service stopped: nothing of it runs any more
            if not self.anchored:
                self._then.append(fn)
                return
        fn()

    def _anchored_now(self) -> None:
        with self._then_lock:
            then, self._then = self._then, []
            if not then or self._closed.is_set():
                return
            self._running = threading.Thread(target=lambda: [fn() for fn in then], name="canary-serve-anchored",
                                             daemon=True)
            self._running.start()

    def _ask(self) -> None:
        while not self.anchored and not self._closed.is_set():
            with self._asking:
                if not self.anchored and not self._closed.is_set():
                    self._try(within_s=2.0)
            if not self.anchored:
                self._closed.wait(REANCHOR_EVERY_S)

    def _try(self, *, within_s: float) -> None:
        """One `time()` asked (under `_asking`); the clock anchored when Prometheus answers."""
        if within_s <= 0:
            return
        try:
            theirs = prometheus_time(self._metrics, within_s=within_s)
        except Exception:  # noqa: BLE001 - asked again later
            theirs = None
        if theirs is None:
            return
        offset = theirs - self.now()
        if offset < -SKEW_WARN_S:
            self._base = (theirs, time.monotonic())
            self._log.warning("clock.skew", prometheus_minus_local_s=round(offset, 3),
                              note="Prometheus answered after start-up: this service's times moved back to "
                                   "Prometheus's; run NTP")
        elif offset > SKEW_WARN_S:
            self._log.warning("clock.skew", prometheus_minus_local_s=round(offset, 3),
                              note="Prometheus answered after start-up: this host is behind, kept (its looks lag "
                                   "by that much); run NTP")
        self.anchored = True
        self._anchored_now()
