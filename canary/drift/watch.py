"""`canary drift watch`: the drift monitor's loop, and what its decisions do (issue 12).

Every `interval`, for every profile: read the live counts of its version from
Prometheus (`live.live_counts`), compare (`compare.compare`), step the pure
monitor (`monitor.step`) and carry out its actions:

* `Alert` -> one log line (what happened and why), a Kubernetes Event on the
  model's VirtualService (name = model, `--namespace`), the webhook/Slack
  notifications that already exist (`canary.notify`);
* `Trigger` -> a retraining Job created from the user's template, or one of this
  model version adopted (in flight, or created since this drift began to be read:
  at most one retraining in flight per model version whatever the number of
  watchers, and one Job per episode across restarts; `retrain.create_job`),
  the evidence in the `CANARY_DRIFT_EVIDENCE` env var of every container and
  in an annotation; or a POST of the evidence to `--retrain-webhook`. A failure
  is reported and retried with backoff (`monitor.trigger_result`).

The monitor states are written to `--state-file` after every change (atomic
rename), so a restarted watcher continues its episodes instead of re-alerting
and re-triggering. Gauges for the person on call:
`model_data_drift_score{model, version, namespace, feature}`,
`model_data_drift_share{model, version, namespace}` (of the whole profile, at least),
`model_data_drift_share_max` (at most), `model_data_drift_verdict` (1, 0, NaN for none),
`model_data_drift_episode{model, version, namespace}` (1 while drifting), `model_data_missing_rate{model, version, namespace, feature}`: the baseline's
namespace, so one model version watched in two namespaces keeps two sets.

A pass asks a Prometheus that is down once, not once per profile: when a profile's live data cannot be
read (MetricsUnavailable) and Prometheus does not answer a trivial query either (`live.unavailable`),
every profile left in the pass is unmeasured for that same reason without a query (gauges NaN, nothing
decided, a due retraining trigger still retried) and one line says so (`drift.prometheus_unavailable`);
with N profiles a pass waited N times the client's retry budget before. The next pass asks again. Likewise
the store: once a state write failed in a pass (not a conflict), the pass writes no more (each write to a
hung API server waits out its timeout and retries) and acts on nothing it could not store.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import structlog
from prometheus_client import CollectorRegistry, Gauge

from canary.drift import monitor as M
from canary.drift.compare import MIN_LIVE, compare, too_few
from canary.drift.exporter import series_per_pod
from canary.drift.live import (PROFILE_INFO, AccessRefused, exported_profiles, live_counts, remedy, said_before_query,
                               unavailable, why_no_live_data)
from canary.drift.profile import profile_hash
from canary.drift.retrain import create_job, job_name, load_job_template, retrain_job  # noqa: F401 (re-exported)
from canary.drift.retrain import event_prefix, failed_condition
from canary.drift.stats import over_profile, profile_share
from canary.filekind import MAX_INPUT_BYTES, read_regular
from canary.drift.store import KEY, StateConflict, brief
from canary.drift.unread import PassNews, Said, cause
from canary.analysis.shown import about as _about, duration
from canary.drift.unread import at as _at
from canary.errors import CanaryError, ConfigError, MetricsUnavailable
from canary.notify import retry_after_s
from canary.redact import bare_url, scrub

log = structlog.get_logger("canary.drift")


class DriftWatcher:
    def __init__(self, profiles: Sequence[Mapping[str, Any]], *, client: Any, window_s: float,
                 config: M.MonitorConfig, namespace: str | None = None, state_file: Path | None = None,
                 store: Any = None,
                 core_api: Any = None, batch_api: Any = None, job_template: Mapping[str, Any] | None = None,
                 retrain_webhook: str | None = None, notifier: Any = None, registry: CollectorRegistry | None = None,
                 clock: Callable[[], float] = time.time, post: Callable[[str, dict], "int | Posted"] | None = None,
                 load: bool = True) -> None:
        """`load`: read the stored states now (`reload`; ConfigError when one cannot be used). False: later,
        by `reload` (the controller's `watch_baselines` reads them when its replica leads, so a state it cannot
        use, a newer canary's or a hand-edited one, is said there and never stops the rollouts' controller).
        `namespace`: the Events' and Jobs' namespace ("default" when None) and the one the live queries
        select (`live.live_counts`; None: every namespace) for a profile without its own (`_namespace`,
        a baseline ConfigMap's, which wins for both)."""
        self.profiles = list(profiles)
        self.client, self.window_s, self.config = client, window_s, config
        self.namespace, self._selects = namespace or "default", namespace
        self._outage: str | None = None  # this pass's: why Prometheus did not answer (`once`)
        self._jobs_unread = ""  # this pass's: why a retraining Job's read failed (`_job_outcome`)
        self._store_down: str | None = None  # this pass's: why the store could not be written (`_save`)
        self._not_measured: list[str] = []  # this pass's: the profiles its outage left unmeasured
        self._left: list[str] = []  # the state keys a cut pass did not evaluate, in order (`once`): first next pass
        self._keep_going: Callable[[], str] | None = None  # this pass's (`once`)
        self._act_stored = False  # this pass's (`once`)
        self._held: str = ""  # this pass's: why an evaluation was stored and not acted on (`_go_on`)
        # since when Prometheus has been down at every pass, whether people were told, the last pass that found it
        # down (`_outage_news`), and that record as stored (OUTAGE_KEY): set by `reload`
        self._down_since: float | None = None
        self._down_told = False
        self._down_seen: float | None = None
        self._outage_rec: dict[str, Any] | None = None
        self._outage_synced: dict[str, Any] | None = None
        # what the store holds that this canary does not know, kept as read and written back (decision 448): its
        # outage record's other fields, and records of keys that are no baseline's (`_read`)
        self._outage_kept: dict[str, Any] = {}
        self._records: dict[str, Any] = {}
        # per state key: since when a run of `_failing` that lasted PROMETHEUS_DOWN_TELL_S, told to people
        # (`drift.live_data_unreadable`), has lasted, until its end is told (`drift.live_data_readable`); stored in
        # the outage record (OUTAGE_KEY's "unreadable"), so a restart or a new leader tells the end, not the start again
        self._unread_told: dict[str, float] = {}
        self._inherited: set[str] = set()  # the state keys whose run here goes on with a stored told one
        # per state key: a run of evaluations whose live data do not fit the profile (`_bad_live`): the error last
        # said (cut to MISFIT_CHARS), the run's first such evaluation's time, how many here, and whether an earlier
        # watcher's run goes on in it; stored in the outage record (OUTAGE_KEY's "misfit": the error and the time),
        # so a restart or a new leader does not say a continuing cause's line again (decision 668)
        self._misfit: dict[str, tuple[str, float, int, bool]] = {}
        # this pass's lines on unreadable live data, said once per cause at its end (`unread.PassNews`, decision 384)
        self._news = PassNews()
        self.core, self.batch = core_api, batch_api
        self.job_template, self.retrain_webhook, self.notifier = job_template, retrain_webhook, notifier
        self.clock, self._post = clock, post or _post_json
        # where the monitor states live: a file (`canary drift watch`), or a ConfigMap (the controller)
        self.store = store if store is not None else (FileStateStore(state_file) if state_file else None)
        self.states: dict[str, M.MonitorState] = {}
        self._synced: dict[str, M.MonitorState] = {}  # what the store held at our last read or write
        if load:
            self.reload()
        self.last: dict[str, Any] = {}  # per state key: the last evaluation's DatasetDrift (displays, demos)
        self._unmeasured: dict[str, Any] = {}  # per state key: the features last logged as without live data
        self._few: dict[str, dict[str, int]] = {}  # per state key: features with too few live values to compare
        # per state key: (the baseline's hash, the other profiles' hashes) last said (`_say_profiles`)
        self._foreign: dict[str, tuple[str, list[str]]] = {}
        # per state key: consecutive evaluations whose profile query failed (`_say_profiles`)
        self._unread: dict[str, int] = {}
        # per state key: a run of evaluations whose live data could not be read while Prometheus answered (`_measure`):
        # (the faults said in it: each error's kind and remedy, the first such evaluation's time, how many)
        self._failing: dict[str, tuple[tuple[tuple[str, str], ...], float, int]] = {}
        # per state key: the gauges' labels set for it (model, version, namespace, features), removed with it
        self._gauged: dict[str, tuple[str, str, str, tuple[str, ...]]] = {}
        reg = registry if registry is not None else CollectorRegistry()
        self.g_score = Gauge("model_data_drift_score", "Drift score per feature (1 - p, or the distance)",
                             ["model", "version", "namespace", "feature"], registry=reg)
        # the share of the whole profile's features drifted, and its bounds while some were not compared: the share of
        # the features compared read 100% for 1 of 1 compared of a ten-feature profile, while the verdict, over the
        # whole profile (`stats.over_profile`, decision 382), was no verdict (decision 411)
        self.g_share = Gauge("model_data_drift_share", "Share of the profile's features drifted (at least: features "
                             "not compared count as not drifted)", ["model", "version", "namespace"], registry=reg)
        self.g_share_max = Gauge("model_data_drift_share_max", "Share of the profile's features drifted at most "
                                 "(features not compared count as drifted)", ["model", "version", "namespace"],
                                 registry=reg)
        self.g_verdict = Gauge("model_data_drift_verdict", "Dataset drift over the whole profile: 1 drift, 0 none, "
                               "NaN no verdict (the features not compared decide it, or nothing was measured)",
                               ["model", "version", "namespace"], registry=reg)
        self.g_episode = Gauge("model_data_drift_episode", "1 while a drift episode is open",
                               ["model", "version", "namespace"], registry=reg)
        self.g_missing = Gauge("model_data_missing_rate", "Live share of requests missing the feature (text "
                               "sent for a number counts as missing)", ["model", "version", "namespace", "feature"],
                               registry=reg)

    def reload(self) -> None:
        """Read the monitor states from the store (at start, and when this replica becomes the
        leader: the states another leader wrote meanwhile are the truth, not the ones we held)."""
        states, outage, self._records = _read(self.store)
        self.states, self._synced = dict(states), dict(states)
        # a Prometheus outage an earlier process (or leader) saw and perhaps told people of (`_outage_news`)
        self._outage_rec, self._outage_synced = outage, outage
        self._down_since, self._down_told, self._down_seen = (
            (outage["down_since"], outage["told"], outage["seen"]) if outage and "down_since" in outage
            else (None, False, None))
        self._unread_told = dict(outage.get("unreadable", {})) if outage else {}
        self._misfit = {k: (error, since, 0, True) for k, (error, since) in (outage or {}).get("misfit", {}).items()}
        self._outage_kept = _unknown_outage(outage)

    def once(self, *, keep_going: Callable[[], str] | None = None,
             interval_s: float | None = None, act_stored: bool = False) -> list[dict[str, Any]]:
        """One evaluation of every profile; returns what was done (for logs and tests). A profile
        that fails in any way is logged (`drift.evaluation_failed`) and never stops the others. A
        Prometheus found down is asked no more in this pass (module docstring): the profiles left are
        unmeasured, with one line for all (`drift.prometheus_unavailable`).

        `keep_going`: asked before each profile; a non-empty answer (why: "stopping", "no longer the
        leader") ends the pass there, with one line naming the baselines left (`drift.pass_cut`); they
        are evaluated first in the next pass (or by the next leader, from the stored states). A replica
        that lost its lease mid-pass thus stops alerting and triggering at the next baseline, not at the
        end of the pass. It is asked again between storing an evaluation and acting on it (the store's
        write may outlast a lease): a stop there leaves that baseline's alerts in its stored outbox and its
        retraining trigger pending, for whichever replica evaluates it next, and ends the pass. A
        `keep_going` that raises is a stop (whether this replica may act is not known). `interval_s`: the
        time between passes; a pass that took longer is said once (`drift.pass_slow`: every baseline is
        evaluated less often than configured). `act_stored`: `keep_going` is asked before each profile only,
        and an evaluation stored is acted on (`drift watch` on SIGTERM: it still holds its state file, and
        its alerts held in the stored outbox would wait for a watcher that may never start again)."""
        done: list[dict[str, Any]] = []
        seen: set[str] = set()
        self._outage = self._store_down = None
        self._jobs_unread = ""  # why this pass's Job reads stopped (one failed: the others wait for the next pass)
        self._not_measured = []
        self._keep_going, self._held, self._act_stored = keep_going, "", act_stored
        started = time.monotonic()
        # notifications that failed past their few quick retries (Slack down for a minute) are posted again, the same
        # body and id, at every pass until delivered (`Notifier`'s `keep_failed`, `notify.drift_event`)
        if self.notifier is not None and hasattr(self.notifier, "resend"):
            self.notifier.resend()
        self._forget_removed()
        # the baselines a cut pass left first, in the order it would have taken them, then the others
        first = {k: i for i, k in enumerate(self._left)}
        order = sorted(self.profiles, key=lambda p: first.get(_key(p, self.namespace), len(first)))
        self._left = []
        for i, prof in enumerate(order):
            why = self._go_on(before_profile=True)
            if why:
                self._cut(why, order[i:])
                break
            key = _key(prof, self.namespace)
            if key in seen:  # a second profile of one model version would step its monitor twice a pass
                error = (f"a second baseline of {prof.get('model')} {prof.get('version')} is skipped: one model "
                         f"version has one baseline (two would count each evaluation twice)")
                log.error("drift.duplicate_baseline", model=str(prof.get("model")), version=str(prof.get("version")),
                          error=error)
                done.append({"model": str(prof.get("model")), "version": str(prof.get("version")), "error": error,
                             "config_error": True})
                continue
            seen.add(key)
            try:
                self._evaluate(prof, done)
            except Exception as exc:  # noqa: BLE001 - one model's fault is that model's, not the pass's
                log.error("drift.evaluation_failed", model=str(prof.get("model")), version=str(prof.get("version")),
                          error=brief(exc))
                done.append({"model": str(prof.get("model")), "version": str(prof.get("version")),
                             "error": brief(exc)})
            if self._held:  # stored, not acted on: it goes first next pass, with the ones not evaluated
                self._cut(self._held, order[i:], held=True)
                break
        # unreadable live data: one line per cause for all baselines (a token rotated refuses them all at once)
        self._news.flush(self._tell, self.clock())
        if self._outage is not None:
            n = len(self._not_measured)
            log.warning("drift.prometheus_unavailable", error=self._outage, baselines=n,
                        unmeasured=self._not_measured[:20],
                        message=f"Prometheus did not answer: {n} baseline{'' if n == 1 else 's'} not measured in "
                                f"this pass, asked once (gauges NaN, nothing decided; due retraining triggers "
                                f"still retried); the next pass asks again")
        self._outage_news(len(order))
        took = time.monotonic() - started
        if interval_s is not None and took > interval_s and not self._left:
            log.warning("drift.pass_slow", took_s=round(took, 1), interval_s=interval_s, baselines=len(order),
                        message=f"a drift pass over {len(order)} baseline{'' if len(order) == 1 else 's'} took "
                                f"{took:.0f} s, longer than the {interval_s:.0f} s between passes: each baseline is "
                                f"evaluated about every {took + interval_s:.0f} s, not every {interval_s:.0f} s "
                                f"(a slow Prometheus, or too many baselines for one watcher)")
        return done

    def _forget_removed(self) -> None:
        """What this process said of a baseline no longer watched (its ConfigMap deleted or malformed, the model
        no longer served) is forgotten: the other profile hashes its exporters said (`_foreign`), its failed
        profile queries in a row (`_unread`), the features said without live data (`_unmeasured`, `_few`), its
        last verdict (`last`). Kept, a baseline added again was measured against what was said of the removed
        one: its exporters' mismatch, still there, was never said again (the last line on record was the
        removed baseline's), its first failed profile query was "3 in a row" with the removed one's two, and a
        `drift.profile_check_restored` or `drift.live_data_back` ended a warning said of the removed one. Its
        monitor state (episode, hysteresis) is the stored truth and is kept (decision 336)."""
        watched = {_key(p, self.namespace) for p in self.profiles}
        for said in (self._foreign, self._unread, self._unmeasured, self._few, self.last, self._failing,
                     self._unread_told, self._misfit):
            for key in [k for k in said if k not in watched]:
                del said[key]
        self._inherited &= watched
        for key in [k for k in self._gauged if k not in watched]:
            self._ungauge(*self._gauged.pop(key))

    def _ungauge(self, model: str, version: str, ns: str, features: Sequence[str], *, whole: bool = True) -> None:
        """Remove a baseline's series from the gauges: a removed baseline's `model_data_drift_episode` 1 kept an
        alert on it firing, and its scores stayed on dashboards, for the process's life. `whole`: False, only
        the series of `features` (a baseline that no longer has them)."""
        per_baseline = [(g, (model, version, ns)) for g in (self.g_share, self.g_share_max, self.g_verdict,
                                                             self.g_episode)] if whole else []
        for gauge, labels in per_baseline + [
                (g, (model, version, ns, name)) for name in features for g in (self.g_score, self.g_missing)]:
            try:
                gauge.remove(*labels)
            except KeyError:  # never set (an evaluation that stopped before its gauges)
                pass

    def _outage_news(self, baselines: int) -> None:
        """People hear of a Prometheus down for PROMETHEUS_DOWN_TELL_S at every pass (`drift.prometheus_down`:
        the log, and the notifications), once, and of its return (`drift.prometheus_back`). The per-pass
        `drift.prometheus_unavailable` is a log line only, and the gauges that would show it are scraped
        by that same Prometheus: a day's outage left drift unwatched with nobody told. One line for all
        baselines (a Prometheus is down for every one).

        The outage is stored with the monitor states (OUTAGE_KEY: since when, whether told, the last pass that
        found it down), so a restart or a new leader goes on with it: kept in the process only, a `down` told
        before a restart was never followed by its `back` (Slack's last word stayed "down"), a watcher
        restarted more often than every hour (a crash loop, a node drained twice) never told it at all, and
        one restarted after telling told it again an hour later. A stored outage whose last pass is more than
        PROMETHEUS_DOWN_TELL_S old (no watcher ran meanwhile) is counted again from now; one already told is
        not told again either way."""
        now = self.clock()
        if self._outage is not None and not self._not_measured:
            return  # a pass cut before any baseline was asked: no news either way
        if self._outage is None:
            since = self._down_since if self._down_since is not None else now
            seen = self._down_seen if self._down_seen is not None else now
            if now - seen > PROMETHEUS_DOWN_TELL_S:  # no watcher ran between the last pass that found it down and
                # this one (a restart hours later): "after 20 h, found down at every pass since" was not seen
                how = (f"was found down for about {_about(max(seen - since, 0.0))}, last {_about(now - seen)} ago "
                       "(no pass ran since), and answers now")
            else:
                how = f"answers again after about {_about(max(now - since, 0.0))}"
            if self._down_told:
                message = f"Prometheus {how}: drift is watched again ({baselines} baselines)"
                log.info("drift.prometheus_back", down_since=self._down_since, message=message)
                self._tell("drift.prometheus_back", message, now)
            elif self._down_since is not None:  # an outage said in the log only (`drift.prometheus_unavailable`)
                # its end said too: the last line on drift watching stayed "Prometheus did not answer" (decision 338)
                found = "" if now - seen > PROMETHEUS_DOWN_TELL_S else " (found down at every pass since)"
                log.info("drift.prometheus_answers", down_since=self._down_since,
                         message=f"Prometheus {how}{found}: drift is watched again ({baselines} baselines)")
            self._down_since, self._down_told, self._down_seen = None, False, None
            self._store_outage()
            return
        if self._down_since is None or self._down_seen is None or now - self._down_seen > PROMETHEUS_DOWN_TELL_S:
            self._down_since = now  # first seen down, or not watched for an hour since: counted from now
        self._down_seen = now
        if not self._down_told and now - self._down_since >= PROMETHEUS_DOWN_TELL_S:
            self._down_told = True
            message = (f"Prometheus has not answered for {_about(now - self._down_since)} (every pass since): "
                       f"{len(self._not_measured)} baselines are not measured, so a drift now is not seen and no "
                       f"retraining starts; {self._outage[:300]}")
            log.warning("drift.prometheus_down", down_since=self._down_since, unmeasured=self._not_measured[:20],
                        message=message)
            self._tell("drift.prometheus_down", message, now)
        self._store_outage()

    def _store_outage(self) -> None:
        """Store the outage record with the states (`_outage_news`); a failed write is said and tried again at
        the next pass (the record is also written with the next state that is)."""
        rec: dict[str, Any] = dict(self._outage_kept)  # a newer canary's fields, as read (decision 448)
        if self._down_since is not None:
            rec.update(down_since=self._down_since, told=self._down_told, seen=self._down_seen)
        if self._unread_told:  # the told runs of unreadable live data (`_unreadable_news`)
            rec["unreadable"] = dict(self._unread_told)
        if self._misfit:  # the runs of live data not fitting, as said (`_bad_live`): a new cause is a write, a count not
            rec["misfit"] = {k: [error, since] for k, (error, since, _, _) in self._misfit.items()}
        self._outage_rec = rec or None
        if self.store is None or self._outage_rec == self._outage_synced or self._store_down is not None:
            return
        try:
            self._write_merging()
        except Exception as exc:  # noqa: BLE001 - the next pass writes it again
            log.warning("drift.state_save_failed", model="", version="", error=brief(exc),
                        message="the Prometheus outage record could not be stored; the next pass tries again")

    def _tell(self, event: str, message: str, now: float, *, model: str = "", version: str = "",
              ns: str | None = None) -> None:
        """A watcher's alert, notified (no Kubernetes Event: a watcher's fault): watcher-wide, or of one baseline
        (`model`, `version`, `ns`)."""
        if self.notifier is not None:
            self.notifier.notify(event.replace(".", "_"), {
                "model": model, "namespace": (self._selects or "") if ns is None else ns, "rollout": model,
                "stable_version": version, "canary_version": "", "weights": None, "reason": message,
                "evidence": [], "at": now})

    def _go_on(self, before_profile: bool = False) -> str:
        """This pass's `keep_going`: "" to go on, else why not. One that raises is a stop: whether this
        replica may still act is not known, and a pass that stops early loses nothing (`once`). With
        `act_stored`, asked before a profile only."""
        if self._keep_going is None or (self._act_stored and not before_profile):
            return ""
        try:
            return str(self._keep_going() or "")
        except Exception as exc:  # noqa: BLE001 - not knowing is not leave to act
            return f"cannot tell whether to go on ({brief(exc)})"

    def _cut(self, why: str, left: Sequence[Mapping[str, Any]], *, held: bool = False) -> None:
        """A pass ended before `left` were evaluated (`once`'s `keep_going`): they go first next time.
        `held`: the first of them was evaluated and stored, not acted on (`_evaluate`)."""
        self._left = [_key(p, self.namespace) for p in left]
        names = [f"{p.get('_namespace') or self.namespace}/{p.get('model')}/{p.get('version')}" for p in left]
        kept = (f"; {names[0]} was evaluated and stored, not acted on: its alerts and retraining trigger are "
                f"delivered by its next evaluation (its stored outbox)" if held else "")
        log.warning("drift.pass_cut", reason=why, baselines=len(names), left=names[:20],
                    held=names[0] if held else "",
                    message=f"drift pass ended early ({why}): {len(names) - held} baseline"
                            f"{'' if len(names) - held == 1 else 's'} not evaluated in this pass (nothing decided "
                            f"for them; evaluated first next pass){kept}")

    def _window(self, prof: Mapping[str, Any]) -> float:
        """The profile's own window (its baseline ConfigMap's annotation, `store.monitor_settings`), else
        the process's."""
        return float(prof.get("_window_s") or self.window_s)

    def _evaluate(self, prof: Mapping[str, Any], done: list[dict[str, Any]]) -> None:
        model, version = str(prof["model"]), str(prof["version"])
        ns = str(prof.get("_namespace") or self.namespace)  # a baseline ConfigMap's namespace
        key = _key(prof, self.namespace)
        now = self.clock()
        state = self.states.get(key) or M.MonitorState(model, version)  # quiet from its first live data (step)
        # a baseline ConfigMap's own settings (store.monitor_settings) over the process's
        window_s = self._window(prof)
        config = (dataclasses.replace(self.config, enter_after=int(prof["_enter_after"])) if prof.get("_enter_after")
                  else self.config)
        state = M.rebase(state, now, config)  # times stored ahead of this clock (it went back): `rebase`
        result = self._measure(prof, key, state, now, done, ns, window_s)
        if result is None:
            return
        self.last[key] = result
        self._say_unmeasured(key, prof, result, done)
        self._say_profiles(key, prof, window_s)
        self._gauges(prof, result, ns)
        before = self.states.get(key)
        compared = {f.feature for f in result.features}
        state, actions = M.step(state, result, now, config, window_s=window_s, reference=_reference(prof),
                                unmeasured=[n for n in prof["features"] if n not in compared])
        actions = M.unsent(state) + actions  # alerts an earlier evaluation stored and its process never delivered
        # the evaluation is stored before it is acted on: an episode opened here, and its start (the
        # retraining Job's identity), exist for every replica before its Event and its Job do, and so do
        # its alerts (the outbox: delivered by the next evaluation when this process dies first). One
        # that cannot be stored, or that another replica's stored state overrides, does nothing
        state = M.hold(state, actions)
        if self._save(key, state) != STORED:
            if key in self.states and self.states[key] == state:  # not stored: the next evaluation repeats it
                self._forget(key, before)
            self._episode(prof, ns, self.states.get(key, state))
            return
        if actions and (why := self._go_on()):  # the write outlasted the lease (or a stop came): the stored
            self._held = why  # outbox and pending trigger are the next evaluation's, whichever replica's
            self._episode(prof, ns, state)
            return
        state = self._act(dataclasses.replace(state, outbox=[]), actions, done, ns)
        state = self._job_outcome(state, done, ns)
        self._episode(prof, ns, state)
        # a trigger's outcome and the emptied outbox; when lost, the stored "pending" retries the trigger (same
        # Job) and the stored outbox delivers the alerts again (at least once)
        self._save(key, state)

    def _episode(self, prof: Mapping[str, Any], ns: str, state: M.MonitorState) -> None:
        """`model_data_drift_episode`: 1 while `state` has an episode open."""
        self.g_episode.labels(str(prof["model"]), str(prof["version"]), ns).set(
            1.0 if state.phase == M.DRIFTING else 0.0)

    def _measure(self, prof: Mapping[str, Any], key: str, state: M.MonitorState, now: float,
                 done: list[dict[str, Any]], ns: str, window_s: float) -> Any:
        """This evaluation's DatasetDrift, or None when nothing was measured (said, gauges NaN, a due
        trigger retried): live data that do not fit the profile, Prometheus failing for this profile, or
        Prometheus down (`_outage`: found now, or earlier in this pass and then not asked)."""
        model, version = str(prof["model"]), str(prof["version"])
        if self._outage is None:
            try:
                live = live_counts(self.client, prof, model=model, version=version, window_s=window_s,
                                   namespace=prof.get("_namespace") or self._selects)
                self._read_again(key, model, version, ns, now)
                result = compare(prof, live)
                self._fits_again(key, model, version, ns, now)
                self._few[key] = too_few(prof, live)  # left out for low traffic, not for want of series
                return result
            except AccessRefused as exc:  # the watcher's access (credentials, a URL that is no Prometheus API)
                self._unreadable(key, exc, str(exc), model, version, ns, now, refused=True)
                done.append({"model": model, "version": version, "error": str(exc), "config_error": True})
            except ConfigError as exc:  # live data that cannot be compared (another profile's buckets): a setup fault
                self._read_again(key, model, version, ns, now)  # read, if not comparable: that run is over
                self._bad_live(key, str(exc), model, version, ns, now)
                done.append({"model": model, "version": version, "error": str(exc), "config_error": True})
            except CanaryError as exc:  # Prometheus down or a bad answer: nothing is decided, say so
                # Prometheus answers a trivial query: only this profile's queries failed, the others are asked
                if not (isinstance(exc, MetricsUnavailable) and unavailable(self.client)):
                    error = said_before_query(exc, remedy(exc))  # why nothing was measured, and what to do about it
                    self._unreadable(key, exc, error, model, version, ns, now)
                    done.append({"model": model, "version": version, "error": error})
                else:  # down: no profile left in this pass is asked (each would wait out the retry budget)
                    self._outage = said_before_query(exc, "; Prometheus does not answer a trivial query either: no "
                                                          "other baseline is asked in this pass")
        if self._outage is not None:
            self._not_measured.append(f"{ns}/{model}/{version}")
            done.append({"model": model, "version": version, "error": self._outage})
        self._gauges(prof, None, ns)
        self._retry_unmeasured(key, state, now, done, ns)
        return None

    def _bad_live(self, key: str, error: str, model: str, version: str, ns: str, now: float) -> None:
        """`drift.bad_live_data` (error) at the first evaluation of a run whose live data do not fit the profile, and
        again when its cause changes (another feature, other bounds: the error's words); the run's other evaluations
        are a debug line (`drift.still_bad_live_data`), and its end `drift.live_data_fits` (`_fits_again`). It was
        an error at every evaluation: an exporter of another profile's buckets left for a night was a page-worthy
        line every 5 minutes, saying nothing new (decision 652). The run is stored (`_store_outage`), so a watcher
        restarted in it goes on with it: its cause is not said again (decision 668)."""
        was = self._misfit.get(key)
        since, n = (was[1], was[2] + 1) if was else (now, 1)
        self._misfit[key] = (error[:MISFIT_CHARS], since, n, bool(was and was[3]))
        if was is not None and was[0] == error[:MISFIT_CHARS]:
            log.debug("drift.still_bad_live_data", model=model, version=version, namespace=ns, error=error,
                      evaluations=n, since=since)
            return
        log.error("drift.bad_live_data", model=model, version=version, namespace=ns, error=error,
                  **({"evaluations": n, "since": since, "was": was[0]} if was else {}))

    def _fits_again(self, key: str, model: str, version: str, ns: str, now: float) -> None:
        """The live data fit the profile again after a `drift.bad_live_data` run (`_bad_live`): said once."""
        was = self._misfit.pop(key, None)
        if was is None:
            return
        n = was[2]
        # a run stored by an earlier watcher (`reload`): its evaluations here, and that watcher's before them
        count = f"{n} evaluation{'' if n == 1 else 's'}" + (" here and an earlier watcher's" if was[3] else "")
        if was[3] and not n:
            count = "evaluations of an earlier watcher"
        log.info("drift.live_data_fits", model=model, version=version, namespace=ns, evaluations=n, since=was[1],
                 message=f"{model} {version}: the live data fit the profile again, after {count} over about "
                         f"{_about(max(now - was[1], 0.0))} that found them not fitting (nothing was decided by "
                         f"those): drift is measured again")

    def _unreadable(self, key: str, exc: Exception, error: str, model: str, version: str, ns: str,
                    now: float, refused: bool = False) -> None:
        """`drift.unmeasured` (warning) at the first evaluation of a run whose live data could not be read while
        Prometheus answered (a 5xx, its timeout, a refusal, a partial answer), and again for each other kind of
        fault (another remedy) in the run, once; the run's other evaluations are a debug line
        (`drift.still_unmeasured`), and its end `drift.readable_again` (`_read_again`). It was a warning at every
        evaluation and nothing at the end: a 422 on a 24 h window was one line every 5 minutes for good, and its
        cure left the last line saying nothing was measured (decision 337). `refused`: `drift.prometheus_refused`
        (error) instead, for a refused access (`AccessRefused`: credentials, a URL that is no Prometheus API; decision 339).
        Each is said at the pass's end, once for every baseline struck by the same cause (`unread.PassNews`: a
        rotated token refuses them all, and 30 baselines were 30 lines; decision 384)."""
        text = str(exc)
        # a refusal's remedy, the last of its words before the query it quotes (`live.said_before_query`): its query
        # names the model, and a kind of each baseline's own was a line per baseline for one cause (decision 384)
        kind = (type(exc).__name__, remedy(exc) or text.partition("; query: ")[0].rsplit("; ", 1)[-1])
        was = self._failing.get(key)
        if was is not None and kind in was[0]:  # said in this run (two faults taking turns: each said once)
            self._failing[key] = (was[0], was[1], was[2] + 1)
            log.debug("drift.still_unmeasured", model=model, version=version, namespace=ns, error=error,
                      evaluations=was[2] + 1, since=was[1])
        else:
            # a run told before a restart (stored) goes on from its stored start
            if was is None and key in self._unread_told:
                self._inherited.add(key)
            self._failing[key] = ((*was[0], kind) if was else (kind,),
                                  was[1] if was else self._unread_told.get(key, now), was[2] + 1 if was else 1)
            why = cause(exc, kind)
            said = Said(model, version, ns, {"error": error})
            if refused:
                self._news.add("drift.prometheus_refused", why, said)
            else:
                self._news.add("drift.unmeasured", why, said)
        self._unreadable_news(key, error, model, version, ns, now, cause(exc, kind))

    def _unreadable_news(self, key: str, error: str, model: str, version: str, ns: str, now: float,
                         why: str = "") -> None:
        """People hear of a run of `_unreadable` evaluations that lasted PROMETHEUS_DOWN_TELL_S
        (`drift.live_data_unreadable`: the log and the notifications), once; its end, `drift.live_data_readable`
        (`_read_again`). It was a log line only: a model whose drift was not measured for a day, Prometheus
        answering all along (so no `drift.prometheus_down`), was watched by nobody. Evaluations skipped by a
        Prometheus down neither count nor end the run (that outage is `drift.prometheus_down`'s)."""
        _, since, n = self._failing[key]
        if key in self._unread_told or now - since < PROMETHEUS_DOWN_TELL_S:
            return
        self._unread_told[key] = since
        at = _at(since)
        message = (f"{model} {version} in namespace {ns}: its live data could not be read for "
                   f"{_about(now - since)} ({n} evaluation{'' if n == 1 else 's'} since {at}, every one failed) "
                   f"while Prometheus answers: its drift is not measured, so a drift now is not seen and no "
                   f"retraining starts; last error: {error[:400]}")
        # said at the pass's end, once for every baseline told in it for the same cause (`unread.PassNews`)
        self._news.add("drift.live_data_unreadable", why, Said(model, version, ns, {
            "since": since, "evaluations": n, "error": error, "message": message}))

    def _read_again(self, key: str, model: str, version: str, ns: str, now: float) -> None:
        """The live data were read after a `drift.unmeasured` run (`_unreadable`): said once."""
        was = self._failing.pop(key, None)
        told = self._unread_told.pop(key, None)
        if was is None and told is None:
            return
        if was is None:  # a run told before this process started (stored), read at its first evaluation here
            was = ((), told, 0)
        n = was[2]
        # a run told before this process started: its evaluations here, and an earlier watcher's before them
        count = f"{n} evaluation{'' if n == 1 else 's'}"
        if not was[0]:
            count = "evaluations of an earlier watcher"
        elif key in self._inherited:
            count += " here and an earlier watcher's"
        self._inherited.discard(key)
        message = (f"{model} {version}: the live data are read again, after {count} over about "
                   f"{_about(max(now - was[1], 0.0))} that could not read them (nothing was decided by those)")
        if told is not None:  # told to people: its end is told too, said by it alone
            message = f"{message}; namespace {ns}: drift is measured again"
            self._news.add("drift.live_data_readable", "", Said(model, version, ns, {
                "evaluations": n, "since": was[1], "message": message}))
            return
        self._news.add("drift.readable_again", "", Said(model, version, ns, {
            "evaluations": n, "since": was[1], "message": message}))

    def _gauges(self, prof: Mapping[str, Any], result: Any, ns: str) -> None:
        """This evaluation's gauges, for every profiled feature: what was not measured (Prometheus down, live
        data that do not fit, a feature without live data) is NaN, never the last value measured: a share of
        0 kept through hours of Prometheus failing read as "no drift" on a dashboard, and a feature gone
        from the live data kept its last score."""
        model, version = str(prof["model"]), str(prof["version"])
        key, features = _key(prof, self.namespace), tuple(prof["features"])
        was = self._gauged.get(key)
        if was is not None and was != (model, version, ns, features):
            # the baseline changed under the same key (re-captured without a feature, or renamed one): the series of
            # what it no longer has are removed; kept, a dropped feature's last score and missing rate stayed on
            # dashboards (and alerts on them firing) for the process's life
            self._ungauge(*was[:3], [name for name in was[3] if name not in features], whole=False)
        self._gauged[key] = (model, version, ns, features)
        scores = {f.feature: f.score for f in result.features} if result is not None else {}
        rates = {m.feature: m.live_rate for m in result.missing} if result is not None else {}
        for name in prof["features"]:
            self.g_score.labels(model, version, ns, name).set(scores.get(name, float("nan")))
            self.g_missing.labels(model, version, ns, name).set(rates.get(name, float("nan")))
        # nothing compared: no share at all (NaN), never a 0 that a dashboard reads as "no drift". Otherwise the share
        # of the whole profile, bounded: at least (the features not compared not drifted), at most (all drifted); the
        # verdict is `over_profile`'s, the one `monitor.step` counts: a share of the compared features alone read
        # 100% for 1 of 1 compared while the verdict was none (decision 411)
        nan = float("nan")
        share = share_max = verdict = nan
        if result is not None and result.features:
            compared = {f.feature for f in result.features}
            left = sum(1 for name in prof["features"] if name not in compared)
            share, share_max = profile_share(result, left) or (nan, nan)
            said = over_profile(result, left)
            verdict = nan if said is None else float(said)
        self.g_share.labels(model, version, ns).set(share)
        self.g_share_max.labels(model, version, ns).set(share_max)
        self.g_verdict.labels(model, version, ns).set(verdict)

    def _retry_unmeasured(self, key: str, state: M.MonitorState, now: float, done: list[dict[str, Any]],
                          ns: str) -> None:
        """An evaluation that measured nothing decides nothing, but a retraining trigger that failed
        before is retried when due: it needs the Kubernetes API, not Prometheus (it waited for
        Prometheus to come back, however long that took); so are alerts stored and never delivered."""
        if self._save(key, state) != STORED:
            return
        due = M.unsent(state) + M.due(state, now)
        if due and (why := self._go_on()):  # as `_evaluate`: left to the next evaluation
            self._held = why
        elif due:
            state = self._act(dataclasses.replace(state, outbox=[]), due, done, ns)
            self._save(key, state)
        if not self._held:  # the Job's outcome needs the Kubernetes API only, not Prometheus
            self._save(key, self._job_outcome(state, done, ns))

    def _job_outcome(self, state: M.MonitorState, done: list[dict[str, Any]], ns: str) -> M.MonitorState:
        """The open episode's retraining Job (`state.job`), read once an evaluation: a Failed condition is recorded
        and alerted once (`monitor.retrain_job_failed`, `drift.retrain_job_failed`); a Job that ended Failed was
        never noticed, and the episode stayed open with nothing retraining it. A Job not found (404: deleted by its
        `ttlSecondsAfterFinished` or a person before it was read Failed) is recorded and alerted once too
        (`monitor.retrain_job_gone`, `drift.retrain_job_gone`: outcome unknown) and not read again. Any other read
        that fails (the API server down) changes nothing: read again at the next evaluation, and the other open
        episodes' Jobs are not read in this pass (an API server that does not answer cost each its 5 s timeout,
        every pass). RBAC: `get` on jobs."""
        if (self.batch is None or state.phase != M.DRIFTING or state.trigger != "done" or not state.job
                or state.job_failed or state.job_gone or self._jobs_unread):
            return state
        where, _, name = state.job.partition("/")
        try:
            job = self.batch.read_namespaced_job(name, where, _request_timeout=5)
        except Exception as exc:  # noqa: BLE001 - not known: asked again next evaluation
            if getattr(exc, "status", None) == 404:  # deleted before it was read ended: said once, outcome unknown
                state, alerts = M.retrain_job_gone(state, state.job, self.clock())
                return self._act(state, alerts, done, ns)
            self._jobs_unread = brief(exc)  # the others' reads wait for the next pass (decision 258)
            log.debug("drift.retrain_job_unread", model=state.model, version=state.version, job=state.job,
                      error=brief(exc), note="no other Job is read in this pass")
            return state
        why = failed_condition(job)
        if why is None:
            return state
        state, alerts = M.retrain_job_failed(state, state.job, why, self.clock(), self.config)
        return self._act(state, alerts, done, ns)

    def _say_unmeasured(self, key: str, prof: Mapping[str, Any], result: Any, done: list[dict[str, Any]]) -> None:
        """Profiled features this evaluation could not compare are never silently "ok": with none
        compared, `drift.no_live_data` (no series for the model and version, or fewer than MIN_LIVE
        values in the window: a wrong name or version, an exporter not deployed, no traffic); with
        some, `drift.features_unmeasured` naming the others (an exporter built from an older
        profile). Features that arrive, fewer than MIN_LIVE times in the window, are said apart (`too_few`,
        feature -> values): low traffic, inconclusive, not an exporter to look for. Logged when the set
        changes (every evaluation of a continuous watch would repeat it); always recorded in `done`
        (`--once` exits 4 or 5 on them). Every feature compared again after such a line is said too
        (`drift.live_data_back`): else "nothing was measured" stayed the watch's last word while it
        measured. Features that do not arrive (text for numbers, all missing) have
        their own alert (`drift.features_missing`)."""
        gone = set(result.not_arriving())
        absent = sorted(set(prof["features"]) - {f.feature for f in result.features} - gone)
        few = {name: n for name, n in self._few.get(key, {}).items() if name in absent}
        who = {"model": str(prof["model"]), "version": str(prof["version"])}
        extra = {"too_few": few} if few else {}
        if not result.features:
            done.append({**who, "no_live_data": absent, "not_arriving": sorted(gone), **extra})
        elif absent or gone:
            done.append({**who, "unmeasured": absent, "not_arriving": sorted(gone), **extra})
        before = self._unmeasured.get(key)
        if before == (absent, sorted(few), bool(result.features)):
            return
        self._unmeasured[key] = (absent, sorted(few), bool(result.features))
        window = self._window(prof)
        if not absent and result.features:
            if before is not None and before[0]:  # said not measured: say it is again, or that line stays the last
                names = ", ".join(before[0][:10]) + (f" and {len(before[0]) - 10} more" if len(before[0]) > 10 else "")
                log.info("drift.live_data_back", **who, features=before[0], window_s=window,
                         message=f"{who['model']} {who['version']}: {names} compared again (without live data, or "
                                 f"with too few values, before): "
                                 + ("the verdict covers the whole profile again" if not gone else
                                    f"{', '.join(sorted(gone))} still not arriving (drift.features_missing)"))
            return
        unseen = [name for name in absent if name not in few]
        low = (f"too little traffic to judge {', '.join(f'{k} ({n} values)' for k, n in few.items())}: fewer than "
               f"{MIN_LIVE} values in the window of {duration(window)}, so inconclusive (no drift alarm and no "
               f"all-clear from so few); a longer window holds more (--window, or the baseline ConfigMap's "
               f"modelcanary.dev/drift-window annotation)") if few else ""
        if not result.features:
            reason = ""
            if unseen and not few:  # nothing at all: what Prometheus can tell of why (asked when this line is logged)
                reason = why_no_live_data(self.client, model=str(prof["model"]), version=str(prof["version"]),
                                          window_s=window, namespace=prof.get("_namespace") or self._selects,
                                          series=series_per_pod(prof))
            why = ([f"no live values of {', '.join(unseen)} in the window ("
                    + (reason or "is the exporter deployed, are the model name and version right, does the version "
                                 "get traffic?") + ")"] if unseen else []) + ([low] if low else [])
            log.warning("drift.no_live_data", **who, features=absent, too_few=few, window_s=window,
                        message="nothing was measured: " + "; ".join(why))
        elif absent:
            why = ([f"{', '.join(unseen)} {'has' if len(unseen) == 1 else 'have'} no live data (an exporter "
                    f"built from an older profile?)"] if unseen else []) + ([low] if low else [])
            log.warning("drift.features_unmeasured", **who, features=absent, too_few=few, window_s=window,
                        message="not every profiled feature was compared, the verdict does not cover them: "
                                + "; ".join(why))

    def _say_profiles(self, key: str, prof: Mapping[str, Any], window_s: float) -> None:
        """`drift.profile_mismatch` when the model version's exporters said, in the window, that they count over
        a profile other than this baseline (`model_feature_profile_info`'s `profile_hash`): a server still
        running an exporter built from an older capture. Over the same bounds (`--bounds-from`) and categories
        nothing else tells it (other bounds are `drift.bad_live_data`). Logged when the set of other hashes
        changes; `drift.profile_matched` once when a mismatch said before is gone (every hash said is the
        baseline's). Exporters that export no hash (older canary) say nothing either way; a failed query is a
        debug line (`drift.profiles_unread`) and changes nothing, but UNREAD_WARN_AFTER failed evaluations in a
        row of one model version are `drift.profile_check_failing` once (the check is off until the query
        answers: a Prometheus refusing it, a proxy), and the first answer after it `drift.profile_check_restored`.
        The verdict is not changed: the live counts are still compared."""
        model, version = str(prof["model"]), str(prof["version"])
        mine = profile_hash(prof)
        who = {"model": model, "version": version}
        try:
            seen = exported_profiles(self.client, model=model, version=version, window_s=window_s,
                                     namespace=prof.get("_namespace") or self._selects)
        except Exception as exc:  # noqa: BLE001 - a hint only: the evaluation stands without it
            failed = self._unread[key] = self._unread.get(key, 0) + 1
            log.debug("drift.profiles_unread", **who, error=str(exc))
            if failed == UNREAD_WARN_AFTER:
                log.warning("drift.profile_check_failing", **who, failures=failed, error=str(exc), message=(
                    f"{model} {version}: the query of {PROFILE_INFO} failed at {failed} evaluations in a row "
                    f"({exc}): whether the model server counts over this baseline's profile ({mine}) is not "
                    f"checked until it answers (the live counts are still compared). Let the query reach Prometheus "
                    f"(a proxy's or a tenant's rules, a query limit)"))
            return
        if self._unread.pop(key, 0) >= UNREAD_WARN_AFTER:
            log.info("drift.profile_check_restored", **who, profile_hash=mine, message=(
                f"{model} {version}: the query of {PROFILE_INFO} answers again; the exported profile is checked"))
        if not seen:  # no exporter in the window says (older exporters, no series): nothing known either way
            return
        other = sorted(seen - {mine})
        before = self._foreign.get(key, ("", []))
        # keyed on the baseline's hash too: a baseline re-captured while the server still exports the old
        # profile was not said again, and the last line on record named a baseline that no longer exists
        if (other == before[1]) and (not other or mine == before[0]):
            return
        self._foreign[key] = (mine, other)
        if not other:
            log.info("drift.profile_matched", **who, profile_hash=mine, message=(
                f"{model} {version}: every exporter in the window counts over this baseline's profile ({mine}) "
                f"again"))
            return
        log.warning("drift.profile_mismatch", **who, profile_hash=mine, exported=other, window_s=window_s,
                    message=profile_mismatch_message(prof, other, some=mine in seen))

    def _forget(self, key: str, before: M.MonitorState | None) -> None:
        if before is None:
            self.states.pop(key, None)
        else:
            self.states[key] = before

    def _act(self, state: M.MonitorState, actions: list[M.Action], done: list[dict[str, Any]],
             namespace: str) -> M.MonitorState:
        queue = list(actions)
        while queue:
            a = queue.pop(0)
            try:
                state = self._one(state, a, done, namespace, queue)
            except Exception as exc:  # an action must not lose the state (it is saved by the caller)
                log.error("drift.action_failed", model=state.model, version=state.version,
                          action=type(a).__name__, error=brief(exc))
                if isinstance(a, M.Trigger):
                    state, more = M.trigger_result(state, False, self.clock(), self.config, brief(exc))
                    queue.extend(more)
        return state

    def _one(self, state: M.MonitorState, a: M.Action, done: list[dict[str, Any]], namespace: str,
             queue: list[M.Action]) -> M.MonitorState:
        if isinstance(a, M.Alert):
            self._alert(state, a, namespace)
            done.append({"model": state.model, "version": state.version, "alert": a.event, "message": a.message})
            return state
        ok, error, target, asked = self._trigger(state, a, namespace)
        configured = self.retrain_webhook is not None or (self.job_template is not None and self.batch is not None)
        done.append({"model": state.model, "version": state.version, "trigger": a.episode, "ok": ok, "error": error,
                     **({"target": target} if target else {}), **({} if configured else {"configured": False})})
        state, more = M.trigger_result(state, ok, self.clock(), self.config,
                                       f"{target}: {error}" if target and error else error, target=target,
                                       retry_after_s=asked)
        queue.extend(more)
        if ok and target.startswith("Job ") and state.episode == a.episode:  # the episode's Job, read each pass
            state = dataclasses.replace(state, job=target.removeprefix("Job "), job_failed="",
                                        job_gone=False)
        if ok and configured:  # which Job (or webhook), for which drift: on-call finds it from this line
            log.warning("drift.retrain_triggered", model=state.model, version=state.version, namespace=namespace,
                        episode=a.episode,
                        features=a.evidence.get("drifted_features"), retraining=target,
                        message=f"{state.model} {state.version}: retraining for drift episode {a.episode} "
                                f"started: {target}")
        elif ok:  # the episode is alerted only: say so, never claim a retraining that nothing started
            log.info("drift.retrain_not_configured", model=state.model, version=state.version, episode=a.episode,
                     message=f"{state.model} {state.version}: drift episode {a.episode} is alerted only, nothing "
                             f"retrains it (no retraining Job template nor webhook configured: `drift watch "
                             f"--retrain-job` or `--retrain-webhook`, `controller run --drift --retrain-job`)")
        return state

    def _alert(self, state: M.MonitorState, a: M.Alert, namespace: str) -> None:
        (log.warning if a.warning else log.info)(a.event, model=state.model, version=state.version,
                                                   namespace=namespace, episode=state.episode, message=a.message,
                                                   **a.fields)
        if not a.notify:  # logged at every attempt; people hear of it at some (`monitor.reported_attempt`)
            return
        if self.notifier is not None:
            self.notifier.notify(a.event.replace(".", "_"), {
                "model": state.model, "namespace": namespace, "rollout": state.model,
                "stable_version": state.version, "canary_version": "", "weights": None, "reason": a.message,
                "evidence": a.evidence.get("features", []),
                # the evaluation's time: an alert delivered again from the outbox carries the same webhook `id`;
                # a trigger's failure or recovery, its own (`Alert.at`)
                **({"at": a.at} if a.at is not None else
                   {"at": a.evidence["at"]} if isinstance(a.evidence.get("at"), (int, float)) else {})})
        if self.core is not None:
            from canary.kube import event_body

            body = event_body(namespace=namespace, reason={"drift.started": "DriftDetected",
                                                                "drift.resolved": "DriftResolved",
                                                                "drift.features_missing": "FeatureMissing",
                                                                "drift.retrain_superseded": "RetrainSuperseded",
                                                                "drift.retrain_recovered": "RetrainRecovered",
                                                                "drift.retrain_job_failed": "RetrainJobFailed",
                                                                "drift.retrain_job_gone": "RetrainJobGone",
                                                                "drift.episode_unmeasured": "DriftEpisodeUnmeasured",
                                                                "drift.episode_measured": "DriftEpisodeMeasured",
                                                                "drift.features_missing_resolved":
                                                                    "FeatureMissingResolved"}.get(
                                  a.event, "RetrainTriggerFailed"),
                              involved={"apiVersion": "networking.istio.io/v1beta1", "kind": "VirtualService",
                                        "name": state.model},
                              message=a.message, warning=a.warning, component="canary-drift",
                              generate_name=event_prefix(state.model))
            try:
                self.core.create_namespaced_event(namespace, body, _request_timeout=3)
            except Exception as exc:  # an Event is a record, not a decision: log and go on
                log.warning("drift.event_failed", model=state.model, error=brief(exc))

    def _trigger(self, state: M.MonitorState, t: M.Trigger, namespace: str) -> tuple[bool, str, str, float | None]:
        """(done, error, what was asked to retrain: "Job <namespace>/<name>" or "webhook <url>", the seconds the
        webhook's failed answer asked to wait: its `Retry-After`, or None)."""
        if self.job_template is not None and self.batch is not None:
            ok, error, name = create_job(self.batch, self.job_template, namespace=namespace, model=state.model,
                                         version=state.version, episode=t.episode, evidence=t.evidence,
                                         since=_since(t.evidence, self.config))
            # no name when the list failed: "Job ml: cannot list ..." named a Job that does not exist
            return ok, error, f"Job {namespace}/{name}" if name else "", None
        if self.retrain_webhook:
            target = f"webhook {bare_url(self.retrain_webhook)}"
            try:
                got = self._post(self.retrain_webhook, {"event": "retrain", "model": state.model,
                                                         "version": state.version, "episode": t.episode,
                                                         "idempotency_key": webhook_key(state, t),
                                                         "evidence": t.evidence})
            except Exception as exc:
                import requests

                if isinstance(exc, requests.ReadTimeout):  # sent, unanswered: it may be retraining already
                    return False, (f"no answer within 5 s (ReadTimeout): the receiver may have started the "
                                   f"retraining; the retry sends the same idempotency_key "
                                   f"({webhook_key(state, t)}), which a receiver that keeps the keys it acted "
                                   f"on does not act on twice"), target, None
                return False, scrub(f"{type(exc).__name__}: {exc}", self.retrain_webhook, whole_query=True)[:300], target, None
            code, header = (got.status, got.retry_after) if isinstance(got, Posted) else (int(got), None)
            if code == 409:  # the key's request in progress there (IETF Idempotency-Key; decision 530)
                return True, "", f"{target} (409 Conflict: {IN_PROGRESS})", None
            if 200 <= code < 300:
                return True, "", target, None
            # a 429 (or a 5xx) that says when to come back: the retry waits that long when longer than the backoff
            # (at most its ceiling); it came back at the backoff's 30 s, 60 s, ... into the limit again (decision 541)
            asked = retry_after_s(header, self.clock()) if code == 429 or code >= 500 else None
            return False, f"HTTP {code}" + (f", Retry-After {asked:.0f} s" if asked else ""), target, asked
        return True, "", "", None  # no trigger configured: the episode is alerted only

    def _save(self, key: str, state: M.MonitorState) -> str:
        """Record `state` and write every state not yet stored; STORED when `state` is in the store
        (or there is no store), THEIRS when the store holds another replica's newer one (kept, ours
        dropped), FAILED when the write failed (`drift.state_save_failed`; the caller drops the
        evaluation, so nothing it decided is acted on, and the next evaluation repeats it, whichever
        replica leads). Never raises.

        Guarded read-modify-write: when the store changed since our last read (StateConflict:
        another replica wrote it, or the ConfigMap was deleted), re-read it; a state changed only here
        is kept, one changed there too is theirs (`drift.state_conflict`), one the store lost is ours
        again (`drift.state_lost`), all others are taken from the store; then write once more.

        A write that got no answer at all (a timeout, a refused connection: no HTTP status) is not tried
        again in this pass (`_store_down`): each later one would wait out the same timeouts and retries,
        and be dropped all the same. An answered failure (a 500) costs nothing to try again."""
        self.states[key] = state
        if self.store is None or self.states == self._synced:
            return STORED
        if self._store_down is not None:  # the store did not answer earlier in this pass (said then)
            return FAILED
        try:
            self._write_merging()
        except Exception as exc:  # noqa: BLE001 - this evaluation is dropped by the caller
            unanswered = not isinstance(getattr(exc, "status", None), int)
            if unanswered:
                self._store_down = brief(exc)
            log.warning("drift.state_save_failed", model=state.model, version=state.version, error=brief(exc),
                        message="this evaluation is not acted on; the next one repeats it"
                                + ("; the store did not answer, so no other state is written (nor acted on) in "
                                   "this pass" if unanswered else ""))
            return FAILED
        return STORED if self.states.get(key) == state else THEIRS

    def _write_merging(self) -> None:
        """`_write`; on a conflict (another replica stored since this one read) merge the stored states
        (`_merge_stored`) and write once more. Raises what the store raises."""
        try:
            self._write()
        except StateConflict:
            self._merge_stored()
            self._write()

    def _write(self) -> None:
        if self.states != self._synced or self._outage_rec != self._outage_synced:
            self.store.save({**self._records, **{k: s.to_dict() for k, s in self.states.items()},
                             **({OUTAGE_KEY: self._outage_rec} if self._outage_rec else {})})
            self._synced, self._outage_synced = dict(self.states), self._outage_rec

    def _merge_stored(self) -> None:
        stored, outage, self._records = _read(self.store)
        self._outage_synced = outage  # this replica's outage record is written over it (it leads)
        self._outage_kept = _unknown_outage(outage)
        merged = dict(stored)
        for k, mine in self.states.items():
            base = self._synced.get(k)
            if k not in stored:  # new here, or the store lost it (its ConfigMap deleted): nobody else's
                merged[k] = mine
                if base is not None:
                    log.warning("drift.state_lost", key=k, model=mine.model, version=mine.version,
                                message="the stored state is gone (its ConfigMap deleted?); this replica's "
                                        "is written back")
            elif mine == base:
                continue  # unchanged here: the store's is as new or newer
            elif stored.get(k) == base:
                merged[k] = mine  # changed here only
            else:
                log.warning("drift.state_conflict", key=k, model=mine.model, version=mine.version,
                            message="another replica stored this state since this one read it: the stored "
                                    "state is kept and this evaluation is not acted on")
        self.states, self._synced = merged, stored


STORED, THEIRS, FAILED = "stored", "theirs", "failed"


# failed evaluations in a row of the profile query before `drift.profile_check_failing` (`_say_profiles`):
# one failure is a blip the next evaluation retries; three is a query that is refused
UNREAD_WARN_AFTER = 3
PROMETHEUS_DOWN_TELL_S = 3600.0  # a Prometheus down at every pass this long is told to people (`_outage_news`)


def profile_mismatch_message(prof: Mapping[str, Any], other: list[str], *, some: bool) -> str:
    """`drift.profile_mismatch`'s words (and `drift check`'s warning): the model version's exporters count over
    the profiles `other` (`profile.profile_hash`), not this baseline's; `some`: the baseline's own hash was
    exported too (some pods only, as in a rolling redeploy)."""
    model, version, mine = str(prof["model"]), str(prof["version"]), profile_hash(prof)
    # pods of an exporter from before the label name no profile: "every pod" could be wrong when some run one
    pods = ("some of the model server's pods export" if some else
            "every pod of the model server that names its profile (older exporters name none) exports")
    ref = _reference(prof)
    return (f"{model} {version}: {pods} live counts built from another profile ({', '.join(other)}) than this "
            f"baseline's ({mine}{', ' + ref if ref else ''}): an exporter built from an older capture, whose counts "
            f"are compared with a reference they were not built for (where its buckets differ: drift.bad_live_data). "
            f"Deploy the server with this baseline's profile file, or use the profile it exports as the baseline")


def _reference(prof: Mapping[str, Any]) -> str:
    """The training profile an evaluation compares with, in words: its source file, the start of the
    file's hash and its rows (a re-captured profile of the same version reads differently)."""
    src = prof.get("source") if isinstance(prof.get("source"), Mapping) else {}
    parts = [str(src.get("file") or "")] + ([f"sha256 {str(src['sha256'])[:12]}"] if src.get("sha256") else []) \
        + ([f"{prof['rows']:,} rows"] if isinstance(prof.get("rows"), int) else [])
    where = f" (baseline ConfigMap in {prof['_namespace']})" if prof.get("_namespace") else ""
    return ("training profile " + ", ".join(p for p in parts if p) + where) if any(parts) else ""


def _since(evidence: Mapping[str, Any], config: M.MonitorConfig) -> float | None:
    """When the episode's drift began to be read (`retrain.create_job` adopts a retraining Job created since):
    its evidence's `since`; for an episode opened before that field, its `enter_after` windows back to back."""
    since, at, window = (evidence.get(k) for k in ("since", "at", "window_s"))
    num = lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)  # noqa: E731
    if num(since):
        return float(since)
    return float(at) - config.enter_after * float(window) if num(at) and num(window) else None


# A 409 Conflict to a retraining POST: the IETF Idempotency-Key draft's answer to a request whose key the receiver
# is still processing (an Airflow dagRun POST with its id taken says 409 too): the retraining was received, by an
# earlier POST of this episode (one unanswered within 5 s, or sent before a restart). Read as a failure it was
# retried and said failed to people, every backoff, while the retraining ran (decision 530)
IN_PROGRESS = ("a request with this idempotency key is already there, in progress or done: the retraining was "
               "received by an earlier attempt")


def webhook_key(state: M.MonitorState, t: M.Trigger) -> str:
    """The retraining POST's `idempotency_key`: one per episode, the same on every retry. A POST whose
    answer was lost (a timeout after the receiver acted) or whose success could not be stored (the state
    write failed, the process died) is sent again; a Job is deduplicated by its name, a webhook receiver
    by this key. The episode's start is in it: a watcher restarted without its state numbers episodes
    from 1 again, and a new episode 1 must not read as the old one."""
    from canary.drift.retrain import episode_start

    return f"{state.model}/{state.version}/episode-{t.episode}/{episode_start(t.evidence)}"


def _key(prof: Mapping[str, Any], namespace: str) -> str:
    """The monitor state's key of a profile: model/version, prefixed by a baseline ConfigMap's namespace."""
    model, version = str(prof.get("model")), str(prof.get("version"))
    return f"{model}/{version}" if "_namespace" not in prof else f"{prof['_namespace'] or namespace}/{model}/{version}"


class FileStateStore:
    """The monitor states in a JSON file, replaced atomically (write, then rename)."""

    def __init__(self, path: Path) -> None:
        self.path = path  # as given: what messages name
        # where it is: a state file that is a symlink (an image's fixed path linked into a persistent volume) was
        # replaced by the first write with a plain file beside the link, so the volume kept nothing and each
        # restart started afresh (a new episode, a new retraining, per restart); and its lock was the link's, so a
        # second watcher given the target's path ran beside the first (two episodes, two Jobs)
        self._real = Path(os.path.realpath(path))
        self._held: int | None = None  # the descriptor of `hold()`'s lock file while this process holds it

    def hold(self) -> None:
        """Make this process the state file's only writer, for as long as it runs: an exclusive `flock` on
        `<state file>.lock` (released by the kernel when the process ends, however it ends). Two `drift
        watch` processes on one state file (two replicas on a shared volume, a `--once` cron run beside a
        continuous watch) each read the state at start and wrote their own over the other's: both opened
        the same episode, so one drift made two `DriftDetected` and two retraining Jobs (the second
        renamed, as if the state had been lost), and each stepped the streaks of the other's evaluations.
        ConfigError, naming the file and the holder's pid, when another process holds it."""
        from canary.pidlock import Held, hold

        lock = self._real.with_name(self._real.name + ".lock")
        try:
            self._held = hold(lock)
        except OSError as exc:
            raise ConfigError(f"{lock}: cannot open the state file's lock: {exc.strerror or exc}") from None
        except Held as held:
            raise ConfigError(f"{self.path}: the drift state file is in use by another `canary drift watch` (pid "
                              f"{held.holder}); run one watcher per state file (two would open every episode "
                              "twice and create two retraining Jobs)") from None

    def release(self) -> None:
        """Give up `hold()` (the process ending does it too)."""
        if self._held is not None:
            os.close(self._held)
            self._held = None

    def load(self) -> dict[str, Any]:
        if not self.path.exists():
            return {}
        try:
            # a FIFO given as --state-file held the start for ever at its open (decision 771)
            raw = json.loads(read_regular(self.path, MAX_INPUT_BYTES).decode("utf-8"))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{self.path}: cannot read the drift monitor state: {str(exc)[:200]}") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"{self.path}: the drift monitor state must be a JSON object")
        return raw

    def save(self, states: Mapping[str, Any]) -> None:
        """Written whole to `<file>.tmp`, fsynced, renamed over the file. Without the fsync a node that lost power
        after the rename could leave the file empty on a filesystem that orders no data before a rename (XFS, a
        cloud volume's): the next watch refused it (exit 2, "cannot read the drift monitor state"), a crash loop
        until a person deleted it, and with it the open episode and its retraining (decision 530)."""
        tmp = self._real.with_suffix(self._real.suffix + ".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(json.dumps(states))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self._real)


OUTAGE_KEY = "prometheus"  # the stored Prometheus outage (`_outage_news`): no "/", so never a baseline's key


def _states(store: Any) -> dict[str, M.MonitorState]:
    return _read(store)[0]


def _read(store: Any) -> tuple[dict[str, M.MonitorState], dict[str, Any] | None, dict[str, Any]]:
    """The stored monitor states, the stored Prometheus outage (OUTAGE_KEY) or None, and the stored records this
    canary does not know (a key with no "/", so no baseline's, other than OUTAGE_KEY: a newer release's), as read:
    written back with the states (`_write`), never dropped nor read as a state (decision 448)."""
    if store is None:
        return {}, None, {}
    raw = dict(store.load())
    outage = _outage_record(raw.pop(OUTAGE_KEY, None))
    records = {k: raw.pop(k) for k in [k for k in raw if isinstance(k, str) and "/" not in k]}
    # where and which: the state file (or ConfigMap) and the baseline's key, as a profile's errors name theirs
    where = getattr(store, "path", None) or (f"ConfigMap {getattr(store, 'namespace', '?')}/"
                                             f"{getattr(store, 'name', '?')}")
    out: dict[str, M.MonitorState] = {}
    for k, v in raw.items():
        try:
            out[k] = M.MonitorState.from_dict(v)
        except (ValueError, TypeError, AttributeError) as exc:
            raise ConfigError(f"{where}: {k}: the drift monitor state is not readable: {str(exc)[:200]}") from None
    return out, outage, records


def _outage_record(raw: Any) -> dict[str, Any] | None:
    """A stored outage record, or None when there is none or it is not one (it is news for people, not a
    decision: a malformed one is counted again from the next pass rather than refusing the state)."""
    if not isinstance(raw, dict):
        return None

    def _t(t: Any) -> bool:
        return isinstance(t, (int, float)) and not isinstance(t, bool) and math.isfinite(t)

    rec: dict[str, Any] = {}
    since, seen, told = raw.get("down_since"), raw.get("seen"), raw.get("told")
    if _t(since) and _t(seen) and isinstance(told, bool):
        rec = {"down_since": float(since), "told": told, "seen": float(seen)}
    # the baselines whose unreadable live data were told to people, and since when (`_unreadable_news`); an older
    # canary reads a record without the outage's fields as none, and drops this
    unread = raw.get("unreadable")
    if isinstance(unread, dict):
        kept = {str(k): float(v) for k, v in unread.items() if isinstance(k, str) and _t(v)}
        if kept:
            rec["unreadable"] = kept
    # the baselines whose live data do not fit their profile, the error said and since when (`_bad_live`); one not
    # of that shape is dropped: its line is said again, as before decision 668
    misfit = raw.get("misfit")
    if isinstance(misfit, dict):
        runs = {k: [v[0][:MISFIT_CHARS], float(v[1])] for k, v in misfit.items() if isinstance(k, str)
                and isinstance(v, list) and len(v) == 2 and isinstance(v[0], str) and _t(v[1])}
        if runs:
            rec["misfit"] = runs
    # a newer canary's fields, kept as read and written back (`_unknown_outage`; decision 448)
    rec.update({k: v for k, v in raw.items() if k not in _OUTAGE_FIELDS})
    return rec or None


_OUTAGE_FIELDS = ("down_since", "told", "seen", "unreadable", "misfit")
# how much of a `drift.bad_live_data` error is kept to tell its cause from another's, and stored (decision 668): the
# error names the feature and the bounds or categories that differ, which may be many
MISFIT_CHARS = 1000


def _unknown_outage(rec: dict[str, Any] | None) -> dict[str, Any]:
    """The fields of a stored outage record this canary does not know (`_outage_record` keeps them), to be written
    back with the record it writes."""
    return {k: v for k, v in (rec or {}).items() if k not in _OUTAGE_FIELDS}


class Posted(NamedTuple):
    """The retraining webhook's answer: its status, and its `Retry-After` header as sent (None: none)."""

    status: int
    retry_after: str | None = None


def _post_json(url: str, body: dict) -> Posted:
    """POST the retraining request; its answer's status and Retry-After. The body is never read (`stream=True`, closed
    unread): a receiver that answers 200 and then streams its progress held the POST until a 5 s gap
    between two chunks (read as a failure, so retraining was started again 30 s later) or, while it kept
    sending, held the whole watch."""
    import requests

    # the key in a header too (the IETF httpapi "Idempotency-Key" field): a receiver or gateway that deduplicates
    # by header (as Stripe-style APIs and several CI triggers do) does so without reading the body
    key = body.get("idempotency_key")
    headers = {"Idempotency-Key": f'"{key}"'} if isinstance(key, str) else {}
    with requests.post(url, json=body, timeout=5, stream=True, headers=headers) as answer:
        for hop in answer.history:  # requests turns a POST redirected by 301, 302 or 303 into a GET
            if hop.status_code in (301, 302, 303):  # (307 and 308 keep the POST and its body)
                from urllib.parse import urljoin

                to = bare_url(urljoin(hop.url, hop.headers.get("Location", "")))
                raise Redirected(f"HTTP {hop.status_code}, a redirect to {to}: the retraining POST was not "
                                 f"delivered (a client follows such a redirect with a GET, without the request); "
                                 f"give that address as --retrain-webhook")
        return Posted(answer.status_code, answer.headers.get("Retry-After"))


class Redirected(Exception):
    """The retraining webhook answered with a redirect that turns the POST into a GET (`_post_json`): the
    GET's answer (a 200 from an ingress's HTTPS page) was read as a retraining started, and none was."""


def watch_baselines(watcher: DriftWatcher, core: Any, *, namespace: str | None, stop: Any, interval_s: float,
                    is_leader: Callable[[], bool] = lambda: True, job_source: str = "--retrain-job") -> None:
    """The controller's drift loop: every `interval_s`, while this replica leads, evaluate every
    baseline ConfigMap (`store.load_profiles`; new versions are picked up without a restart). With a
    retraining Job template, each baseline's Job is asked of the API server when the baseline is first
    seen (`JobChecks`: `job_source` names the template's file). Never raises: a failed pass is logged and
    the next one tries again."""
    from canary.drift.compare import validate_profile
    from canary.drift.store import load_profiles

    from canary.drift.compare import profile_rows, small_references

    leading = False
    warned: dict[str, str] = {}  # ConfigMap -> the error logged for it: once per baseline content, not per pass
    small_warned: dict[str, Any] = {}  # ConfigMap -> the profile it warned of as a small reference (once per content)
    jobs = JobChecks(watcher, job_source)
    while True:
        if not is_leader():
            leading = False
        else:
            if not leading:  # just became the leader: what the previous one wrote is the state
                try:
                    watcher.reload()
                    leading = True
                except Exception as exc:  # noqa: BLE001 - never evaluate from stale state: next interval
                    _log_quietly("drift.state_unreadable", error=brief(exc))
        if leading:
            try:
                good = []
                owner: dict[str, str] = {}  # state key -> the ConfigMap whose baseline it is
                for where, prof in load_profiles(core, namespace):
                    if "error" not in prof:
                        try:  # every field the comparison reads: one bad baseline never fails the pass
                            validate_profile(prof, f"ConfigMap {where}: {KEY}")
                        except ConfigError as exc:
                            prof = {"error": str(exc)}
                    if "error" not in prof:  # one baseline per model version: a second would halve the hysteresis
                        key = _key({**prof, "_namespace": where.split("/", 1)[0]}, watcher.namespace)
                        if key in owner:
                            prof = {"error": f"ConfigMap {where}: a second baseline of {prof['model']} "
                                             f"{prof['version']} (ConfigMap {owner[key]} is watched): skipped; "
                                             f"delete one of them"}
                        else:
                            owner[key] = where
                    if "error" in prof:
                        if warned.get(where) != prof["error"]:
                            log.warning("drift.bad_baseline", configmap=where, error=prof["error"])
                            warned[where] = prof["error"]
                    else:
                        warned.pop(where, None)
                        small = small_references(prof)
                        # once per content: the source file's hash (re-captured), the rows, the features
                        content = (str(prof.get("source")), profile_rows(prof), small)
                        if small and small_warned.get(where) != content:
                            # judged by two-sample tests against a fixed small sample: about 1 capture in 20
                            # reads drifted in nearly every large window, for good (decision 89 c)
                            log.warning("drift.small_reference", configmap=where, model=prof["model"],
                                        version=prof["version"], rows=profile_rows(prof), features=small,
                                        hint="capture at least 1,001 values of each feature (more rows of the "
                                             "training data); a feature of 1,000 or fewer may read drifted for good")
                        small_warned[where] = content if small else None
                        good.append({**prof, "_namespace": where.split("/", 1)[0]})
                watcher.profiles = good
                jobs.check(good)
                watcher.once(keep_going=lambda: "stopping" if stop.is_set() else
                             "" if is_leader() else "no longer the leader", interval_s=interval_s)
            except Exception as exc:  # the rollouts' controller must never die of its drift monitor
                _log_quietly("drift.pass_failed", error=brief(exc))
        if stop.wait(interval_s):
            return


class JobChecks:
    """The controller's check of its retraining Job template (`--retrain-job`), as `drift watch` checks its own at
    start (`retrain.check_job_template`: the list an episode starts with, then a create with dryRun=All): the
    Jobs go to each baseline ConfigMap's namespace, known only once the baselines are listed, so each baseline's
    (namespace, model, version) is asked when first seen. A template the API server refused (a 422 field, RBAC
    without list or create on jobs in that namespace) was found only when an episode opened, weeks later, and
    retried there while the model drifted untrained. The controller serves rollouts and does not exit for it:
    ``drift.retrain_refused`` (error) once per answer, ``drift.retrain_unchecked`` (warning) when the server
    gave none; both are asked again at the next pass (RBAC fixed meanwhile: ``drift.retrain_accepted``). An
    accepted one is not asked again while it stays listed. One pass stops asking at the first unanswered check
    (an API server that does not answer costs one 5 s timeout a pass, not one per baseline); the next asks the
    baselines never left unanswered first, then those left so, longest ago first: one namespace whose checks stay
    unanswered (a full ResourceQuota on Jobs, a webhook that hangs) kept every baseline listed after it unasked,
    its refusal never said, for as long as it lasted (decision 227). A baseline missing from a pass's listing is
    forgotten: listed again later (deleted and created again, its namespace too), it is asked again (decision
    228); RBAC revoked under a baseline that stays listed is not seen before an episode's create."""

    def __init__(self, watcher: DriftWatcher, source: str) -> None:
        self.watcher, self.source = watcher, source
        self.accepted: set[tuple[str, str, str]] = set()
        self.said: dict[tuple[str, str, str], str] = {}  # what was last logged of each: once per answer
        self.unanswered: dict[tuple[str, str, str], int] = {}  # the pass that last left each unanswered
        self.passes = 0

    def check(self, profiles: list[dict[str, Any]]) -> None:
        from canary.drift.retrain import check_job_template

        template, batch = self.watcher.job_template, self.watcher.batch
        if template is None or batch is None:
            return
        self.passes += 1

        def key_of(prof: dict[str, Any]) -> tuple[str, str, str]:
            ns = str(prof.get("_namespace") or self.watcher.namespace)
            return ns, str(prof.get("model")), str(prof.get("version"))

        # a baseline gone from the listing is forgotten: listed again (its namespace deleted and created again,
        # the controller's RBAC there perhaps not), it is first seen and asked again (decision 228)
        listed = {key_of(p) for p in profiles}
        self.accepted &= listed
        for kept in (self.said, self.unanswered):
            for key in [k for k in kept if k not in listed]:
                del kept[key]
        # the listing's order, those left unanswered last (longest ago first): a pass that stops at one never
        # starts at the same one again while others wait (sorted is stable)
        for prof in sorted(profiles, key=lambda p: self.unanswered.get(key_of(p), -1)):
            key = key_of(prof)
            ns = key[0]
            if key in self.accepted:
                continue
            fields = {"template": self.source, "namespace": ns, "model": key[1], "version": key[2]}
            try:
                unchecked = check_job_template(batch, template, source=self.source, namespace=ns,
                                               versions=[(key[1], key[2])])
            except ConfigError as exc:
                if self.said.get(key) != str(exc):
                    log.error("drift.retrain_refused", **fields, error=str(exc),
                              hint="a drift episode of this model would start no retraining: fix the template or "
                                   "the controller's RBAC on jobs in this namespace (asked again every pass)")
                    self.said[key] = str(exc)
                self.unanswered.pop(key, None)
                continue
            except Exception as exc:  # noqa: BLE001 - a check is a warning, never the pass's failure
                unchecked = brief(exc)
            if unchecked:
                if self.said.get(key) != unchecked:
                    log.warning("drift.retrain_unchecked", **fields, error=unchecked,
                                message=f"{self.source}: the retraining Job could not be checked ({unchecked}); "
                                        "asked again next pass, and an episode's create says what the API "
                                        "server answers")
                    self.said[key] = unchecked
                self.unanswered[key] = self.passes
                return
            self.unanswered.pop(key, None)
            self.accepted.add(key)
            if self.said.pop(key, None) is not None:
                log.info("drift.retrain_accepted", **fields)


def _log_quietly(event: str, **fields: Any) -> None:
    try:
        log.warning(event, **fields)
    except Exception:  # noqa: BLE001 - not even of a log stream that went away
        pass
