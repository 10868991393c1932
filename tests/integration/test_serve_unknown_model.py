"""`canary serve` asked about a model Prometheus has no series for (decision 291).

A misspelled model name in an AnalysisTemplate's or a Canary's metadata (or a Canary whose model label
matches no series) was answered "inconclusive" at every look ("could not measure: no series for the
stable arm") and `fail` only at `interval + no_data_deadline` (15 minutes with default.yaml), with the
canary's share exposed all along. Now the rollout's first look runs the preflight `canary promote` runs
before traffic moves and answers `fail` at once (Argo: Failed; Flagger: 409), naming the model, the check
and the empty query. Real HTTP on 127.0.0.1 against test_serve.py's backfilled Prometheus, its fake clock.
"""

from __future__ import annotations

import json
import threading
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog.testing

from canary.errors import TransientError
from canary.metrics.prometheus import PrometheusProvider
from canary.policy import parse_policy
from canary.serve import NamedPolicy, Service
from canary.serve_store import SessionStore
from tests.integration.test_serve import POLICY, Clock, argo_get, call, clock, flagger, prom, serve  # noqa: F401

pytestmark = pytest.mark.integration


def test_argo_a_model_with_no_series_fails_at_the_first_call_naming_model_check_and_query(
        serve: Any, clock: Clock, tmp_path: Path) -> None:
    server = serve()
    code, doc = argo_get(server, "goood")  # "good" misspelled: no series has model_name="goood"
    r = doc["result"]
    assert code == 200 and r["verdict"] == "fail", doc  # Argo: a 200 whose verdict is "fail" is Failed
    assert r["reason"].startswith("model 'goood': no stable (v1) data"), r["reason"]
    assert "errors" in r["reason"] and "p95" in r["reason"], r["reason"]
    assert 'model_name="goood"' in r["reason"], "the empty query is named"
    assert r["look"] == 0 and doc["evidence"] == []
    # not recorded as a look, nor as a sticky fail: the next call checks again and says the same. Nothing is
    # stored for the new revision (decision 314: it counted toward --max-revisions)
    assert SessionStore(tmp_path / "state").load("argo/ml/goood", "v2") is None
    clock.t += 15
    code, doc = argo_get(server, "goood")
    assert code == 200 and doc["result"]["verdict"] == "fail" and doc["result"]["look"] == 0
    # a model with stable data is unaffected: its first look is the usual inconclusive one
    code, doc = argo_get(server, "good")
    assert code == 200 and doc["result"]["verdict"] == "inconclusive" and doc["result"]["look"] == 1, doc
    assert "window 0s of 60s" in doc["result"]["reason"], doc


def test_flagger_a_model_with_no_series_is_refused_409_at_the_first_rollout_call(serve: Any, clock: Clock) -> None:
    server = serve()
    assert flagger(server, "pre-rollout", "goood")[0] == 200  # no gates configured
    assert flagger(server, "confirm-traffic-increase", "goood")[0] == 200  # the first step, nothing to judge yet
    clock.t += 15
    code, doc = flagger(server, "rollout", "goood")
    assert code == 409 and doc["result"]["verdict"] == "fail", doc  # Flagger: a failed check, shown as an Event
    assert doc["result"]["reason"].startswith("model 'goood': no stable (v1) data"), doc
    assert 'model_name="goood"' in doc["result"]["reason"]
    assert flagger(server, "confirm-promotion", "goood")[0] == 412, "no pass, no promotion"
    code, doc = flagger(server, "rollout", "good")
    assert code == 200 and doc["result"]["verdict"] == "inconclusive", doc


def test_a_check_compared_with_stable_that_finds_no_stable_data_fails_the_first_call(serve: Any) -> None:
    """Decision 261's rule: the model exists (errors and p95 have data) but one check relative to stable finds none
    (a mistyped metric): that check is ERROR at every look, so no look could pass either."""
    typo = {**POLICY, "checks": [*POLICY["checks"], {
        "name": "ratio", "kind": "custom", "max_ratio": 2,
        "query": 'sum(rate(model_requestz_total{model_name="{model}",model_version="{version}"}[{window}]))'}]}
    server = serve(policies={"typo": typo})
    code, doc = argo_get(server, "good")
    reason = doc["result"]["reason"]
    assert code == 200 and doc["result"]["verdict"] == "fail", doc
    assert reason.startswith("model 'good': no stable (v1) data over the last "), reason
    assert "checks[2] 'ratio' (max_ratio compared with stable)" in reason and "model_requestz_total" in reason
    assert "checks[0]" not in reason, "the checks with data are not blamed"


def test_argo_a_corrected_stable_version_is_judged_at_once_not_refused_as_other_inputs(serve: Any) -> None:
    """The refusal stored the revision's session with the mistyped input (the session is created before the
    preflight runs), so the corrected call was a 409 "judged with stableVersion 'v0', not 'v1'" (Argo: an Error,
    the rollout aborted after its error limit) until the 15-minute silence that ends a rollout: not "judged at
    once". A session with no look recorded has judged nothing with its inputs: other inputs start it over."""
    server = serve()
    code, doc = argo_get(server, "good", rollout="fraud", stableVersion="v0")  # "v1" mistyped; revision: v2 both times
    assert code == 200 and doc["result"]["verdict"] == "fail", doc
    assert doc["result"]["reason"].startswith("model 'good': no stable (v0) data"), doc
    code, doc = argo_get(server, "good", rollout="fraud")
    assert code == 200 and doc["result"]["verdict"] == "inconclusive" and doc["result"]["look"] == 1, doc
    assert doc["rollout"]["stableVersion"] == "v1", doc
    # once a look is recorded, a revision is judged with one pair, as before
    code, doc = argo_get(server, "good", rollout="fraud", stableVersion="v0")
    assert code == 409 and doc["field"] == "stableVersion", doc


def test_flagger_a_corrected_model_is_judged_at_once_and_the_first_step_stays_granted(serve: Any, clock: Clock) -> None:
    server = serve()
    assert flagger(server, "pre-rollout", "goood")[0] == 200
    assert flagger(server, "confirm-traffic-increase", "goood")[0] == 200  # the first step: the canary has traffic
    clock.t += 15
    assert flagger(server, "rollout", "goood")[0] == 409  # refused: the model matches no series
    # the Canary's metadata.model corrected; the same Canary and checksum (Flagger's hash of the target's spec).
    # The traffic the first step gave is not given again before a look ("first step" twice: 412)
    assert _flagger_named(server, "confirm-traffic-increase", "goood", model="good")[0] == 412
    code, doc = _flagger_named(server, "rollout", "goood", model="good")
    assert code == 200 and doc["result"]["verdict"] == "inconclusive" and doc["result"]["look"] == 1, doc
    assert doc["rollout"]["model"] == "good", doc
    # the traffic the first step gave is not given again: with a look recorded, a confirm hook waits for a pass
    assert _flagger_named(server, "confirm-traffic-increase", "goood", model="good")[0] == 412


def _flagger_named(server: Any, hook: str, name: str, *, model: str) -> tuple[int, dict[str, Any]]:
    """test_serve's `flagger` call for the Canary `name` whose metadata names `model`."""
    body = {"name": name, "namespace": "ml", "phase": "Progressing", "checksum": "6d8f9c7b5",
            "metadata": {"model": model, "stableVersion": "v1", "canaryVersion": "v2"}}
    return call(f"{server.url}/api/v1/flagger/{hook}", method="POST", body=body)


class HeldPreflight:
    """test_serve's provider whose `preflight` is held, while `held`, until the test releases it (a Prometheus
    slow to answer it, or a first look left little time after waiting its turn behind a concurrent call): the
    look's own queries run as usual. `asked` counts the preflights asked."""

    def __init__(self, inner: PrometheusProvider) -> None:
        self.inner, self.held, self.asked = inner, True, 0
        self.release = threading.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def preflight(self, policy: Any, target: Any) -> Any:
        self.asked += 1
        if self.held:
            self.release.wait()  # released by the test once the call was answered: its answer is dropped
            raise TransientError("held preflight released")
        return self.inner.preflight(policy, target)


@pytest.fixture
def held(prom: Any, clock: Clock, tmp_path: Path) -> Iterator[Any]:
    """start(max_revisions=...) -> (Service on test_serve's Prometheus and fake clock, its HeldPreflight)."""
    made: list[HeldPreflight] = []

    def start(**store: Any) -> tuple[Service, HeldPreflight]:
        metrics = HeldPreflight(PrometheusProvider(prom[0].url, retries=2, budget_s=3.0, backoff_s=0.05))
        made.append(metrics)
        named = {"ml": NamedPolicy("ml", parse_policy(POLICY), tmp_path)}
        return Service(policies=named, metrics=metrics, store=SessionStore(tmp_path / "state", **store), clock=clock,
                       answer_within_s=4.0), metrics

    yield start
    for m in made:
        m.release.set()


def _measure(service: Service, model: str, *, rollout: str = "") -> tuple[int, dict[str, Any]]:
    q = {"namespace": "ml", "rollout": rollout or model, "model": model, "stableVersion": "v1", "canaryVersion": "v2"}
    return service.handle("GET", "/api/v1/argo/measure", urllib.parse.urlencode(q), b"", None)


def test_a_first_look_whose_preflight_timed_out_is_refused_at_the_next_look_with_nothing_recorded(
        held: Any, clock: Clock, tmp_path: Path) -> None:
    """The preflight ran only while no look was recorded: a first look whose preflight did not answer in its half of
    the time (behind Argo's other analysis on the revision's lock, a slow Prometheus) recorded its look, and the
    mistyped model was `inconclusive` at every look until the deadline, 15 minutes with default.yaml. It is now
    asked until it once answers; its refusal then leaves the looks recorded and their evidence as they are."""
    service, metrics = held()
    code, doc = _measure(service, "goood")
    assert doc["result"]["verdict"] == "inconclusive" and doc["result"]["look"] == 1, doc  # as before: not told
    metrics.release.set()
    metrics.held = False
    store = SessionStore(tmp_path / "state")
    before = store.load("argo/ml/goood", "v2")
    assert before is not None and before.looks == 1 and not before.preflight_done
    clock.t += 15
    code, doc = _measure(service, "goood")
    assert code == 200 and doc["result"]["verdict"] == "fail", doc  # inconclusive, look 2, without the change
    assert doc["result"]["reason"].startswith("model 'goood': no stable (v1) data"), doc
    assert doc["result"]["look"] == 1 and metrics.asked == 2
    assert store.load("argo/ml/goood", "v2") == before, "a refusal records nothing: no look, no evidence, no fail"
    clock.t += 15
    assert _measure(service, "goood")[1]["result"]["verdict"] == "fail"  # asked again: still nothing recorded
    assert store.load("argo/ml/goood", "v2") == before


def test_a_preflight_is_asked_until_it_once_answers_then_never_again(held: Any, clock: Clock, tmp_path: Path) -> None:
    service, metrics = held()
    assert _measure(service, "good")[1]["result"]["look"] == 1 and metrics.asked == 1  # held: not told
    metrics.release.set()
    metrics.held = False
    clock.t += 15
    code, doc = _measure(service, "good")
    assert code == 200 and doc["result"]["verdict"] != "fail" and doc["result"]["look"] == 2, doc
    assert metrics.asked == 2, "the preflight that did not answer is asked again at the next look"
    stored = SessionStore(tmp_path / "state").load("argo/ml/good", "v2")
    assert stored is not None and stored.preflight_done
    clock.t += 15
    assert _measure(service, "good")[1]["result"]["look"] == 3
    assert metrics.asked == 2, "answered once (the stable arm has data): not asked again"


def test_a_refusal_with_the_state_directory_full_is_the_refusal_not_a_503(held: Any, tmp_path: Path) -> None:
    """The refused call's revision was stored before its preflight ran: it counted toward --max-revisions, and with
    the store full of live rollouts the call was a 503 "state directory full" (Argo: an Error) instead of its
    refusal. A refusal stores nothing now."""
    service, metrics = held(max_revisions=1)
    metrics.held = False
    assert _measure(service, "good")[1]["result"]["look"] == 1  # the one live revision the store holds
    code, doc = _measure(service, "goood")
    assert code == 200 and doc["result"]["verdict"] == "fail", doc  # 503 without the change
    assert doc["result"]["reason"].startswith("model 'goood': no stable (v1) data"), doc
    assert SessionStore(tmp_path / "state").load("argo/ml/goood", "v2") is None
    code, doc = _measure(service, "bad")  # a revision a look would store still meets the full store
    assert code == 503, doc


def test_a_model_corrected_after_looks_recorded_while_its_preflight_timed_out_is_judged_at_once(
        held: Any, clock: Clock, tmp_path: Path) -> None:
    """Decision 326: the mistyped model's first looks were recorded `inconclusive` while its preflight timed out
    (decision 314), then refused once it answered; the corrected call was a 409 "judged with model 'goood', not
    'good'" until the rollout went quiet (15 minutes with default.yaml), since decision 310 started a session over
    only with no look recorded. Those looks judged nothing (no evidence, no failed look, no pass): started over."""
    service, metrics = held()
    for _ in range(2):  # two looks recorded while the preflight is held: nothing judged, no series for `goood`
        code, doc = _measure(service, "goood", rollout="fraud")
        assert code == 200 and doc["result"]["verdict"] == "inconclusive", doc
        clock.t += 15
    store = SessionStore(tmp_path / "state")
    before = store.load("argo/ml/fraud", "v2")
    assert before is not None and before.looks == 2 and not before.preflight_done
    assert not before.evidence and not before.window_evidence and before.failed_looks == 0
    metrics.release.set()
    metrics.held = False
    code, doc = _measure(service, "goood", rollout="fraud")
    assert code == 200 and doc["result"]["verdict"] == "fail", doc
    assert doc["result"]["reason"].startswith("model 'goood': no stable (v1) data"), doc
    clock.t += 15
    code, doc = _measure(service, "good", rollout="fraud")  # the AnalysisTemplate's model corrected
    assert code == 200 and doc["result"]["verdict"] == "inconclusive" and doc["result"]["look"] == 1, doc  # 409
    assert doc["rollout"]["model"] == "good", doc
    stored = store.load("argo/ml/fraud", "v2")
    assert stored is not None and stored.model == "good" and stored.preflight_done
    # judged now, with its preflight done: a revision is judged with one pair, as before
    clock.t += 15
    code, doc = _measure(service, "goood", rollout="fraud")
    assert code == 409 and doc["field"] == "model", doc


def test_looks_with_evidence_are_not_started_over_on_another_model_while_the_preflight_never_answered(
        held: Any, clock: Clock, tmp_path: Path) -> None:
    """Decision 326's restart is only for looks that judged nothing: a model with data whose preflight has not
    answered yet has evidence after its first look, and a call naming another model is the 409 of decision 310."""
    service, metrics = held()
    code, doc = _measure(service, "good", rollout="fraud")
    assert code == 200 and doc["result"]["look"] == 1, doc
    stored = SessionStore(tmp_path / "state").load("argo/ml/fraud", "v2")
    assert stored is not None and not stored.preflight_done and stored.window_evidence, stored
    clock.t += 15
    code, doc = _measure(service, "bad", rollout="fraud")
    assert code == 409 and doc["field"] == "model", doc
    assert SessionStore(tmp_path / "state").load("argo/ml/fraud", "v2") == stored


def test_callers_naming_two_models_for_one_revision_before_anything_judged_are_a_409_not_started_over_by_turns(
        held: Any, clock: Clock, tmp_path: Path) -> None:
    """Decision 326: while nothing was judged, each call naming another model started the revision over
    (`serve.restarted`), so two metrics of one Rollout naming different models (one without series, its preflight
    timing out) reset it by turns, each window opened afresh and never reaching its deadline, where once evidence
    is recorded the second is a 409. Inputs a rollout was started over from are a 409 when named again in it; a
    correction to inputs not named before still starts it over, and so does a later rollout."""
    service, metrics = held()
    store = SessionStore(tmp_path / "state")
    assert _measure(service, "goood", rollout="fraud")[1]["result"]["look"] == 1  # held: nothing judged
    clock.t += 15
    code, doc = _measure(service, "gooood", rollout="fraud")  # another caller's model: started over
    assert code == 200 and doc["result"]["look"] == 1 and doc["rollout"]["model"] == "gooood", doc
    stored = store.load("argo/ml/fraud", "v2")
    assert stored is not None and stored.looks == 1 and stored.model == "gooood", stored
    clock.t += 15
    code, doc = _measure(service, "goood", rollout="fraud")  # back to inputs left: once (decision 334)
    assert code == 200 and doc["result"]["look"] == 1 and doc["rollout"]["model"] == "goood", doc
    stored = store.load("argo/ml/fraud", "v2")
    assert stored is not None and stored.model == "goood" and len(stored.barred_inputs) == 1, stored
    clock.t += 15
    code, doc = _measure(service, "gooood", rollout="fraud")  # started over again, look 1, without the change
    assert code == 409 and doc["field"] == "model", doc
    assert "went back from model 'gooood' to inputs it had left" in doc["error"], doc
    assert store.load("argo/ml/fraud", "v2") == stored, "nothing written"
    code, doc = _measure(service, "good", rollout="fraud")  # a model not named before in this rollout
    assert code == 200 and doc["rollout"]["model"] == "good" and doc["result"]["look"] == 1, doc
    clock.t += 15
    code, doc = _measure(service, "goood", rollout="fraud")  # judged with `good` now: one pair (decision 310)
    assert code == 409 and doc["field"] == "model" and "is judged with model 'good'" in doc["error"], doc
    # after the silence that ends a rollout (interval + no_data_deadline), another rollout takes any inputs
    clock.t += 16 * 60
    code, doc = _measure(service, "goood", rollout="fraud")
    assert code == 200 and doc["rollout"]["model"] == "goood", doc


def test_a_start_over_to_inputs_the_preflight_refuses_stores_nothing(held: Any, clock: Clock, tmp_path: Path) -> None:
    """Decision 332: a call naming other inputs for a revision with nothing judged started it over and stored the
    new session before its look's preflight ran; when that refused the new inputs too (a second typo), the refusal
    had stored the start over: the looks of the inputs it left were gone, those inputs were in `left_inputs`, and
    their next call was a 409 "was started over from model 'goood' to 'gooood'", a start over that never was,
    instead of its own answer. A refusal stores nothing (decisions 291, 314), and says no `serve.restarted`."""
    service, metrics = held()
    store = SessionStore(tmp_path / "state")
    assert _measure(service, "goood", rollout="fraud")[1]["result"]["look"] == 1  # held: recorded, nothing judged
    metrics.release.set()
    metrics.held = False
    before = store.load("argo/ml/fraud", "v2")
    assert before is not None and before.model == "goood" and before.looks == 1
    clock.t += 15
    with structlog.testing.capture_logs() as lines:
        code, doc = _measure(service, "gooood", rollout="fraud")  # another typo: refused by its preflight
    assert code == 200 and doc["result"]["verdict"] == "fail", doc
    assert doc["result"]["reason"].startswith("model 'gooood': no stable (v1) data"), doc
    assert store.load("argo/ml/fraud", "v2") == before, "the refused start over is not stored"
    assert not any(e["event"] == "serve.restarted" for e in lines), lines
    clock.t += 15
    code, doc = _measure(service, "goood", rollout="fraud")  # 409 "started over from" without the change
    assert code == 200 and doc["result"]["verdict"] == "fail", doc
    assert doc["result"]["reason"].startswith("model 'goood': no stable (v1) data"), doc
    with structlog.testing.capture_logs() as lines:
        code, doc = _measure(service, "good", rollout="fraud")  # corrected: started over and judged
    assert code == 200 and doc["result"]["look"] == 1 and doc["rollout"]["model"] == "good", doc
    assert [e["field"] for e in lines if e["event"] == "serve.restarted"] == ["model"], lines
    stored = store.load("argo/ml/fraud", "v2")
    assert stored is not None and stored.model == "good" and stored.looks == 1


def test_a_confirm_hooks_start_over_is_stored_and_said_only_when_it_grants_the_first_step(
        serve: Any, tmp_path: Path) -> None:
    """Decision 333: a confirm hook naming other inputs for a revision with nothing judged answers as the start over
    would (it judges nothing), and stores it only when it grants the first step, `left_inputs` included: a caller
    whose confirm hooks are answered so cannot start the revision over by turns. `serve.restarted` was said at each
    such call, stored or not: a start over that never was, in the log an on-call person reads."""
    server = serve()
    store = SessionStore(tmp_path / "state")
    assert flagger(server, "pre-rollout", "goood")[0] == 200  # stored: gates passed, nothing judged
    before = store.load("flagger/ml/goood", "6d8f9c7b5")
    assert before is not None and before.model == "goood" and before.looks == 0
    with structlog.testing.capture_logs() as lines:
        code, doc = _flagger_named(server, "confirm-promotion", "goood", model="good")
    assert code == 412, doc
    assert store.load("flagger/ml/goood", "6d8f9c7b5") == before, "nothing stored"
    assert not any(e["event"] == "serve.restarted" for e in lines), lines  # said without the change
    with structlog.testing.capture_logs() as lines:
        code, doc = _flagger_named(server, "confirm-traffic-increase", "goood", model="good")
    assert code == 200, doc  # the first step, granted: the start over is stored, and said once
    assert [e["now"] for e in lines if e["event"] == "serve.restarted"] == ["good"], lines
    stored = store.load("flagger/ml/goood", "6d8f9c7b5")
    assert stored is not None and stored.model == "good" and stored.first_step and len(stored.left_inputs) == 1


def _hook(service: Service, hook: str, model: str) -> tuple[int, dict[str, Any]]:
    """Flagger's `hook` for Canary `fraud` (one checksum) whose metadata names `model`."""
    body = {"name": "fraud", "namespace": "ml", "phase": "Progressing", "checksum": "6d8f9c7b5",
            "metadata": {"model": model, "stableVersion": "v1", "canaryVersion": "v2"}}
    return service.handle("POST", f"/api/v1/flagger/{hook}", "", json.dumps(body).encode(), "application/json")


def test_an_operator_who_goes_back_to_the_inputs_first_named_is_judged_at_once(
        held: Any, clock: Clock, tmp_path: Path) -> None:
    """Decision 334: a Canary's model `good`, its first step granted; the operator "corrects" it to `goood` (no
    series; its preflight slow, so its look is recorded with nothing judged: the rollout starts over), then sees
    `good` was right. That call was a 409 "was started over from model 'good'" until the rollout went quiet (15
    minutes with default.yaml, the canary's traffic exposed unjudged). Going back is a start over; the inputs it
    leaves are then barred, so two callers still cannot take turns."""
    service, metrics = held()
    store = SessionStore(tmp_path / "state")
    assert _hook(service, "pre-rollout", "good")[0] == 200
    assert _hook(service, "confirm-traffic-increase", "good")[0] == 200  # the first step: the canary has traffic
    clock.t += 15
    code, doc = _hook(service, "rollout", "goood")  # the mistaken correction: recorded, nothing judged (held)
    assert code == 200 and doc["result"]["look"] == 1 and doc["rollout"]["model"] == "goood", doc
    metrics.release.set()
    metrics.held = False
    clock.t += 15
    code, doc = _hook(service, "rollout", "good")  # 409 without the change
    assert code == 200 and doc["result"]["verdict"] == "inconclusive", doc
    assert doc["result"]["look"] == 1 and doc["rollout"]["model"] == "good", doc
    stored = store.load("flagger/ml/fraud", "6d8f9c7b5")
    assert stored is not None and stored.model == "good" and stored.first_step and stored.window_evidence
    # the first step stays given: no second unjudged step
    assert _hook(service, "confirm-traffic-increase", "good")[0] == 412
    clock.t += 15
    code, doc = _hook(service, "rollout", "goood")  # judged with `good`: one pair, as before
    assert code == 409 and doc["field"] == "metadata.model", doc
    assert "is judged with model 'good', not 'goood'" in doc["error"] and "nothing judged" not in doc["error"], doc
