"""A Prometheus restarted without its storage in the middle of a step (decision 574), against a real Prometheus.

The exporters keep counting; Prometheus's data of the step begin at its first scrape after the restart (an
emptyDir, a pod rescheduled). `increase()` over "the step" then counts only what came after the restart, while
`canary promote`'s look (and the controller's without snapshots) took the step's age for the seconds judged:
a step whose `analysis.interval` the data did not cover passed. Backfilled history (no scrape, no sleep): model
`kept` holds the whole step, model `lost` holds only its last `HELD_S` seconds, counters from long before.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import structlog

from canary import rollout as rl
from canary.analysis.judge import judge
from canary.metrics.prometheus import PrometheusProvider
from canary.model import Target, Weights
from canary.policy import parse_policy
from canary.reconcile import measure_window
from canary.sandbox.promserver import PromServer, history_window

pytestmark = pytest.mark.integration
STEP_AGE_S, HELD_S, INTERVAL_S = 300, 150, 240  # the step's age at the look; what Prometheus holds of it
FRESH_S = 29  # model `fresh`: Prometheus holds its last 29 s (just started), 1 s past a 10 s subquery step
RATES = {"v1": 90.0, "v2": 10.0}  # requests/s per arm (10% canary), errors 0.2% in both
POLICY = parse_policy({"steps": [10, 100], "analysis": {"interval": f"{INTERVAL_S}s", "look_every": "30s"},
                       "checks": [{"name": "err", "kind": "error_rate", "max_increase_points": 1}]})


def _history(start: float, end: float) -> str:
    lines: list[str] = ["# TYPE model_requests_total counter"]
    born = start - 100_000.0  # the pods' counters ran long before Prometheus's data
    # `gap`: the old storage's data up to the step's start (the controller's step-start snapshot read them), then
    # none until the restart, HELD_S before the end
    gap = (start, end - STEP_AGE_S)
    for model, first in (("kept", start), ("lost", end - HELD_S), ("fresh", end - FRESH_S), ("gap", end - HELD_S)):
        for version, rate in RATES.items():
            for outcome, share in (("success", 0.998), ("error", 0.002)):
                labels = (f'model_name="{model}",model_version="{version}",outcome="{outcome}",'
                          f'instance="{model}-{version}:8002",job="triton"')
                lines += [f"model_requests_total{{{labels}}} {rate * share * (t - born):.3f} {t:.3f}"
                          for t in [*(range(int(gap[0]), int(gap[1]) + 1) if model == "gap" else ()),
                                    *range(int(first), int(end) + 1)]]
    # model `ruled`: a recording rule's output (no `instance`, no `job`: `sum without (instance, job, pod)` recorded
    # under the counter's name), held its last HELD_S seconds, as the rule's own series are after a storage loss
    for version, rate in RATES.items():
        for outcome, share in (("success", 0.998), ("error", 0.002)):
            labels = f'model_name="ruled",model_version="{version}",outcome="{outcome}"'
            lines += [f"model_requests_total{{{labels}}} {rate * share * (t - born):.3f} {t:.3f}"
                      for t in range(int(end - HELD_S), int(end) + 1)]
    # Triton's two request counters, the same labels but the name (decision 586), of both models too
    for name, share in (("nv_inference_request_success", 0.998), ("nv_inference_request_failure", 0.002)):
        lines.append(f"# TYPE {name} counter")
        for model, first in (("kept", start), ("lost", end - HELD_S)):
            for version, rate in RATES.items():
                labels = f'model="{model}",version="{version}",instance="{model}-{version}:8002",job="triton"'
                lines += [f"{name}{{{labels}}} {rate * share * (t - born):.3f} {t:.3f}"
                          for t in range(int(first), int(end) + 1, 5)]
    # OpenMetrics wants one metric family's samples grouped by series, in time order: as written above
    return "\n".join([*lines, "# EOF"]) + "\n"


@pytest.fixture(scope="module")
def prom(prometheus_binary: str) -> Iterator[tuple[PrometheusProvider, float]]:
    start, end = history_window(before_s=STEP_AGE_S + 200, after_s=0, step=10.0)  # on 10 s: FRESH_S's offset
    server = PromServer(history=_history(start, end), binary=prometheus_binary).start()
    try:
        yield PrometheusProvider(server.url, at=end, retries=2, budget_s=5.0, backoff_s=0.05), end
    finally:
        server.stop()


def _look(prom: PrometheusProvider, at: float, model: str) -> tuple[float, rl.RolloutState, list[str]]:
    """What `Runner._look` does at the step's age `STEP_AGE_S`: measure, judge, and the state machine's answer."""
    target = Target(namespace="ml", virtual_service=model, model=model, stable_version="v1", canary_version="v2")
    state = rl.RolloutState(model=model, stable_version="v1", canary_version="v2", phase=rl.PROGRESSING, step=0,
                            weights=Weights.canary_at(10), started_at=at - STEP_AGE_S,
                            step_started_at=at - STEP_AGE_S, updated_at=at - 30)
    with structlog.testing.capture_logs():
        out, canary_n, uncounted, covered = measure_window(prom, POLICY, target, window_s=STEP_AGE_S,
                                                           log=structlog.get_logger())
    verdict = judge(POLICY, out, prior=state.prior(), window=0, pass_ratio=1.0, canary_weight=10, step=0,
                    window_s=STEP_AGE_S, canary_version="v2")
    new, actions = rl.transition(state, rl.Looked(at, verdict, canary_n, covered, uncounted=uncounted), POLICY)
    return covered, new, [a.event for a in actions if isinstance(a, rl.Emit)]


def test_a_look_judges_no_more_seconds_than_prometheus_holds(prom: tuple[PrometheusProvider, float]) -> None:
    """The whole step held: the look covers its 300 s and passes (the interval is 240 s). Only its last 150 s held
    (restarted without its storage 150 s ago): the same rates, 1,500 canary requests, and before this change a
    pass "over 300 s"; now the look covers 150 s at most (the subquery's 10 s resolution below it), so no pass:
    `look.window_short` says the seconds covered, and the step goes on."""
    provider, at = prom
    covered, new, events = _look(provider, at, "kept")
    assert covered == STEP_AGE_S and new.phase == rl.PROMOTING, (covered, new.phase, events)
    covered, new, events = _look(provider, at, "lost")
    assert new.phase == rl.PROGRESSING and new.step == 0 and "look.window_short" in events, (new.phase, events)
    assert HELD_S - 11 <= covered <= HELD_S + 1, covered
    assert new.last_verdict["outcome"] == "pass", new.last_verdict  # the data are good: only too few seconds of them


def test_serves_look_judges_no_more_seconds_than_prometheus_holds(prom: tuple[PrometheusProvider, float]) -> None:
    """`canary serve`'s look (Flagger's, Argo's webhook) at a window 300 s old: `pass` where Prometheus holds the
    window; where it holds its last 150 s, before this change also `pass`, now inconclusive, saying why."""
    import time

    from canary.serve_measure import measure_within
    from canary.serve_session import INCONCLUSIVE, PASS, new_session, record_look

    provider, at = prom

    def answer(model: str) -> tuple[str, str]:
        s = new_session(key=f"flagger/ml/{model}", revision="r", policy="p", model=model, namespace="ml",
                        stable_version="v1", canary_version="v2", now=at - STEP_AGE_S)
        target = Target(namespace="ml", virtual_service=model, model=model, stable_version="v1", canary_version="v2")
        with structlog.testing.capture_logs():
            out, n, counted, uncounted, held = measure_within(
                provider, POLICY, target, window_s=STEP_AGE_S, at=at, deadline=time.monotonic() + 30,
                answer_within_s=30, log=structlog.get_logger())
        verdict = judge(POLICY, out, prior={}, window=0, pass_ratio=1.0, step=0)
        s, _ = record_look(s, verdict, canary_requests=n, now=at, policy=POLICY, counted=counted,
                           uncounted=uncounted, held_s=held)
        return s.verdict, s.reason

    assert answer("kept")[0] == PASS
    verdict, reason = answer("lost")
    assert verdict == INCONCLUSIVE and "restarted without its storage" in reason, (verdict, reason)


def test_a_request_counter_read_through_a_recording_rule_is_held_too(prom: tuple[PrometheusProvider, float]) -> None:
    """The counters are a recording rule's output (no `instance`): `held` looked at series with a scrape target only,
    answered nothing, and the look took its whole 300 s as held: a pass on Prometheus's last 150 s, the gap 574
    closed for scraped counters. The rule's output is stored as any series and lost with the storage: `held` now
    reads the series the count sums (decision 613)."""
    provider, at = prom
    covered, new, events = _look(provider, at, "ruled")
    assert HELD_S - 11 <= covered <= HELD_S + 1 and new.phase == rl.PROGRESSING, (covered, new.phase, events)
    assert "look.window_short" in events, events


def test_tritons_two_request_counters_are_counted_and_held(prom: tuple[PrometheusProvider, float]) -> None:
    """`metrics.source: triton` counts `nv_inference_request_success` + `_failure`, two counters with the same labels
    but their names. The `held` part asked `timestamp()` of both in one selector: the name dropped, Prometheus
    refused the whole request-count query (422 "vector cannot contain metrics with the same labelset"), so every
    Triton rollout's count was 0 and not counted: no pass ever, a good canary rolled back at its deadline
    (decision 586). Now counted, and held as for the other sources: the whole window, or its last 150 s."""
    provider, at = prom
    policy = parse_policy({"steps": [10, 100], "metrics": {"source": "triton"},
                           "analysis": {"interval": f"{INTERVAL_S}s", "look_every": "30s"},
                           "checks": [{"name": "err", "kind": "error_rate", "max_increase_points": 1}]})
    for model, held in (("kept", STEP_AGE_S), ("lost", HELD_S)):
        target = Target(namespace="ml", virtual_service=model, model=model, stable_version="v1", canary_version="v2")
        stable, canary, got = provider.counted(policy, target, window_s=STEP_AGE_S, at=at)
        assert canary > 0 and stable > canary, (model, stable, canary)
        assert got is not None and held - 11 <= got <= held + 1, (model, got)


def test_a_long_windows_held_part_asks_a_bounded_number_of_steps(prom: tuple[PrometheusProvider, float]) -> None:
    """`held`'s subquery evaluates `timestamp()` of every counter at each of its steps: at a fixed 10 s a step's
    window of hours asked hundreds per series, each look (25 minutes, 50 rollouts: the request count's query 6
    times as long). Now about `HELD_STEPS` at most, coarser for a longer window (decision 587), and still a
    step at or before the window's start: data that reach it are held whole, data that do not are judged at most
    one step shorter than held, never longer."""
    import re

    from canary.metrics import queries as q

    for window in (300, 1500, 3600, 86400):
        span, step = map(int, re.findall(r"\[(\d+)s:(\d+)s\]", q.held_query(['x{a="1"}'], window))[0])
        assert span - step >= window and span / step <= 40, (window, span, step)  # about HELD_STEPS
    provider, at = prom
    window = 480  # a step of 16 s (`held_step`), over the fixture's history (500 s)
    policy = parse_policy({"steps": [10, 100], "analysis": {"interval": f"{INTERVAL_S}s"},
                           "checks": [{"name": "err", "kind": "error_rate", "max_increase_points": 1}]})
    for model, held in (("kept", window), ("lost", HELD_S)):
        target = Target(namespace="ml", virtual_service=model, model=model, stable_version="v1", canary_version="v2")
        got = provider.counted(policy, target, window_s=window, at=at)[2]
        assert got is not None and held - 17 <= got <= held + 1, (model, got)


def test_a_short_window_is_held_to_the_second(prom: tuple[PrometheusProvider, float]) -> None:
    """The sandbox's policy judges 10 s windows, its Prometheus started just before the rollout: a fixed 10 s
    subquery step read data begun 29 s ago, 1 s past a step, as 20 s held, a whole interval short; a pass came
    10 s late. Now the step is a thirtieth of the window (1 s here): 28-29 s (decision 587)."""
    provider, at = prom
    policy = parse_policy({"steps": [10, 100], "analysis": {"interval": "10s"},
                           "checks": [{"name": "err", "kind": "error_rate", "max_increase_points": 1}]})
    target = Target(namespace="ml", virtual_service="fresh", model="fresh", stable_version="v1", canary_version="v2")
    got = provider.counted(policy, target, window_s=30, at=at)[2]
    assert got is not None and FRESH_S - 1.5 <= got <= FRESH_S + 0.5, got


def test_the_controllers_batched_snapshots_count_the_whole_step_after_a_storage_loss(
        prom: tuple[PrometheusProvider, float]) -> None:
    """The controller's batched snapshots read the counters' values (no `increase()`): its step-start snapshot,
    taken before Prometheus lost its storage, and a look's, taken after, count the whole step's requests (the
    exporters kept counting), 300 s of them, though Prometheus holds only the last 150 s; `held` is not theirs to
    ask (decision 574 reasoned it; r-h's review drove it)."""
    from canary.metrics import batch as b

    provider, at = prom
    target = Target(namespace="ml", virtual_service="gap", model="gap", stable_version="v1", canary_version="v2")
    snapshots = b.BatchMetrics(provider)
    base, now = (snapshots.snapshot([b.Want(POLICY, target)], at=t) for t in (at - STEP_AGE_S, at))
    stable, canary = b.requests_delta(POLICY, target, now, base)
    assert abs(canary - RATES["v2"] * STEP_AGE_S) < 1 and abs(stable - RATES["v1"] * STEP_AGE_S) < 1, (stable, canary)


KEPT = Target(namespace="ml", virtual_service="kept", model="kept", stable_version="v1", canary_version="v2")


def _store(real: PrometheusProvider, refused: Any) -> Any:
    """A proxy in front of the real Prometheus standing in for another store: `refused(query)` gives its refusal
    (HTTP status, errorType, error) of a query, None to pass the query on. Close it."""
    import json
    import urllib.parse
    import urllib.request

    from tests.support.http import ScriptedHTTP

    def store(path: str, headers: dict[str, str]) -> tuple[int, str, str]:
        asked = urllib.parse.parse_qs(urllib.parse.urlsplit(path).query).get("query", [""])[0]
        if (refusal := refused(asked)) is not None:
            status, kind, error = refusal
            return status, "application/json", json.dumps({"status": "error", "errorType": kind, "error": error})
        with urllib.request.urlopen(real.url + path, timeout=10) as got:  # noqa: S310 - 127.0.0.1
            return got.status, "application/json", got.read().decode()

    return ScriptedHTTP(store)


def test_a_store_without_subqueries_counts_without_held_and_says_so_once(
        prom: tuple[PrometheusProvider, float]) -> None:
    """A Prometheus-compatible store that refuses subqueries (or `timestamp()`): decision 574's `held` part made it
    refuse the whole request-count query, so preflight refused every rollout (exit 2) on words naming a query of
    several KB, and every look of `canary serve` and the controller went uncounted. Stood in for by a proxy in front
    of the real Prometheus that answers such a query as such a store does (400 bad_data) and passes the rest on.
    Now the count is asked again without `held` (the window taken as held, as before 574), said once as
    `metrics.held_unsupported`, and a query refused for its own sake still raises its own refusal (decision 593)."""
    import urllib.parse

    from canary.metrics.client import Rejected

    real, at = prom

    def refused(asked: str) -> tuple[int, str, str] | None:
        if "broken(" in asked:  # a query the store cannot run for its own sake
            return 400, "bad_data", "unknown function"
        return (400, "bad_data", "subqueries are not supported") if "timestamp(" in asked else None

    proxy = _store(real, refused)
    try:
        provider = PrometheusProvider(proxy.url, at=at, retries=2, budget_s=5.0, backoff_s=0.05)
        target = KEPT
        with structlog.testing.capture_logs() as logs:
            report = provider.preflight(POLICY, target)
            first = provider.counted(POLICY, target, window_s=STEP_AGE_S, at=at)
            second = provider.counted(POLICY, target, window_s=STEP_AGE_S, at=at)
        assert report.sent > 0
        for stable, canary, held in (first, second):
            assert canary > 0 and stable > canary and held is None, (stable, canary, held)
        said = [e for e in logs if e["event"] == "metrics.held_unsupported"]
        assert len(said) == 1 and "subqueries are not supported" in said[0]["error"], said
        # asked once, and the probe that tells a store without it (decision 595), never again
        assert sum("timestamp(" in urllib.parse.unquote_plus(p) for p in proxy.paths) == 2
        # a count the store refuses for its own sake, with `held` and without: that refusal is raised, and `held`
        # is not given up for it
        fresh = PrometheusProvider(proxy.url, at=at, retries=1, budget_s=5.0, backoff_s=0.05)
        with pytest.raises(Rejected, match="unknown function"):
            fresh.ask_counts(POLICY, target, STEP_AGE_S, lambda query: fresh.query(f"broken({query})",
                                                                                   check="request_counts"))
        assert fresh.held_refused == ""
    finally:
        proxy.close()


def test_a_count_refused_for_its_load_keeps_held(prom: tuple[PrometheusProvider, float]) -> None:
    """A store that runs subqueries but refuses one request count for its load (Prometheus's 422 execution "query
    processing would load too many samples", a Mimir limit): 593 asked it again without `held`, got an answer, and
    left `held` out for the rest of the process, saying the store had no subqueries; a Prometheus that later lost
    its storage mid-step then passed a step on data shorter than the window (574 undone by one busy moment). Now
    the store is asked `HELD_PROBE`: it answers, so that look's refusal is raised (uncounted: no pass) and the next
    look asks with `held` again (decision 595)."""
    import urllib.parse

    from canary.metrics.client import Rejected
    from canary.metrics.queries import HELD_LABEL, PART_LABEL

    real, at = prom
    busy = [1]  # the store refuses the first count that asks `held` (a busy moment), then answers

    def refused(asked: str) -> tuple[int, str, str] | None:
        if busy[0] and PART_LABEL in asked and HELD_LABEL in asked:
            busy[0] -= 1
            return 422, "execution", "query processing would load too many samples into memory in query execution"
        return None

    proxy = _store(real, refused)
    try:
        provider = PrometheusProvider(proxy.url, at=at, retries=1, budget_s=5.0, backoff_s=0.05)
        target = KEPT
        with structlog.testing.capture_logs() as logs:
            with pytest.raises(Rejected, match="too many samples"):
                provider.counted(POLICY, target, window_s=STEP_AGE_S, at=at)
            stable, canary, held = provider.counted(POLICY, target, window_s=STEP_AGE_S, at=at)
        assert provider.held_refused == "" and not [e for e in logs if e["event"] == "metrics.held_unsupported"]
        assert canary > 0 and held is not None, (stable, canary, held)
        # the probe is asked after the refusal only, not at the look the store answered (no query more a look)
        asked = [urllib.parse.parse_qs(urllib.parse.urlsplit(p).query).get("query", [""])[0] for p in proxy.paths]
        assert asked.count(PrometheusProvider.HELD_PROBE) == 1, asked
    finally:
        proxy.close()


def test_a_probe_the_store_answers_5xx_does_not_mask_the_counts_refusal(prom: tuple[PrometheusProvider, float]) -> None:
    """The count refused for its load (422 "too many samples"), and 595's probe answered 503 (the store overloaded
    still): the probe's failure was raised in place of the count's refusal, so the look's check and preflight said
    "could not measure ... 503" over the probe's `vector(0)` subquery (a transient outage, at the deadline an abort
    "Prometheus unreachable"), not the store's words about the count. A probe not answered tells nothing: the
    count's own refusal is raised, `held` kept, nothing said (decision 615)."""
    from canary.metrics.client import Rejected
    from canary.metrics.queries import HELD_LABEL, PART_LABEL

    real, at = prom

    def refused(asked: str) -> tuple[int, str, str] | None:
        if PART_LABEL in asked and HELD_LABEL in asked:
            return 422, "execution", "query processing would load too many samples into memory in query execution"
        return (503, "unavailable", "overloaded") if asked == PrometheusProvider.HELD_PROBE else None

    proxy = _store(real, refused)
    try:
        provider = PrometheusProvider(proxy.url, at=at, retries=1, budget_s=5.0, backoff_s=0.05)
        with structlog.testing.capture_logs() as logs:
            with pytest.raises(Rejected, match="too many samples"):
                provider.counted(POLICY, KEPT, window_s=STEP_AGE_S, at=at)
        assert provider.held_refused == "" and not [e for e in logs if e["event"] == "metrics.held_unsupported"]
    finally:
        proxy.close()
