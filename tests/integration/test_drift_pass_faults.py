"""A drift pass under faults that every baseline shares, and one model served in two namespaces, on real
parts: a real Prometheus scraping real exporters (static-config labels standing in for the `namespace`
label Kubernetes service discovery attaches), a TCP proxy that can hang it, the strict Kubernetes API
emulator for baselines, states, Events and Jobs (decision 107).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, start_http_server
from structlog.testing import capture_logs

from canary.drift import monitor as M
from canary.drift.exporter import FeatureExporter
from canary.drift.live import live_counts
from canary.drift.store import ConfigMapStateStore
from canary.drift.watch import DriftWatcher
from canary.errors import MetricsUnavailable
from canary.metrics.client import PrometheusClient
from tests.integration.test_drift_faults import JOB, _profile, _stored, _ticks, kube  # noqa: F401
from tests.support.blackhole import BlackholeProxy, held_times_out
from tests.support.passes import Passes

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

MODELS = ("o1", "o2", "o3", "o4")  # four baselines served in namespace prod


class Counted(PrometheusClient):
    """The real client, counting the queries it is asked (each with its own retries inside)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.asked: list[str] = []

    def ask(self, query: str, **kw: Any) -> Any:
        self.asked.append(query)
        return super().ask(query, **kw)


@pytest.fixture(scope="module")
def served(prometheus_binary: str) -> Iterator[SimpleNamespace]:
    """Model "twin" v1 in namespaces prod (its training distribution) and staging (moved by two standard
    deviations), and models o1-o4 in prod, each scraped every second by one Prometheus."""
    from canary.sandbox.promserver import PromServer

    rng = np.random.default_rng(107)
    ref = rng.normal(0, 1, 5_000)
    profiles = {m: _profile(m, {"f": ref}) for m in ("twin", *MODELS)}
    regs = {"prod": CollectorRegistry(), "staging": CollectorRegistry()}
    twins = {ns: FeatureExporter(profiles["twin"], registry=reg) for ns, reg in regs.items()}
    others = {m: FeatureExporter(profiles[m], registry=regs["prod"]) for m in MODELS}
    for e in (*twins.values(), *others.values()):
        e.observe({"f": 0.0})  # the series exist before the first scrape
    servers = {ns: start_http_server(0, addr="127.0.0.1", registry=reg) for ns, reg in regs.items()}
    prom = PromServer(binary=prometheus_binary, scrape_interval="1s", labelled=[
        ({"namespace": ns}, [f"127.0.0.1:{srv.server_address[1]}"]) for ns, (srv, _) in servers.items()]).start()
    try:
        assert prom.wait_targets_up(timeout_s=30) < 30
        for ns, shift in (("prod", 0.0), ("staging", 2.0)):
            for x in rng.normal(shift, 1, 3_000):
                twins[ns].observe({"f": x})
        for m in MODELS:
            for x in rng.normal(0, 1, 1_000):
                others[m].observe({"f": x})
        client = PrometheusClient(prom.url)
        for m, ns, n in (("twin", "prod", 3_000), ("twin", "staging", 3_000), *((m, "prod", 1_000) for m in MODELS)):
            _until_scraped(client, profiles[m], m, ns, n)
        yield SimpleNamespace(prom=prom, client=client, profiles=profiles)
    finally:
        prom.stop()
        for srv, thread in servers.values():
            srv.shutdown()
            thread.join(timeout=5)


def _until_scraped(client: PrometheusClient, prof: dict[str, Any], model: str, namespace: str, n: int) -> None:
    """Until Prometheus's last hour of `model` in `namespace` holds `n` values (a scrape saw them)."""
    import time

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        got = live_counts(client, prof, model=model, version="v1", window_s=3600, namespace=namespace)
        if sum(got.get("f", {}).get("counts", [])) >= n:
            return
        time.sleep(0.2)
    raise AssertionError(f"Prometheus never saw {n} values of {model} in {namespace}")


def test_one_model_in_two_namespaces_is_two_measurements_and_only_the_one_that_drifted_drifts(
        served: SimpleNamespace, kube: Any) -> None:
    """Baselines of twin v1 in prod and in staging: each read the series of both namespaces (one
    mixture: staging's drift read as prod's, a DriftDetected and a retraining Job in prod), and their
    gauges shared one label set. Every live query now selects the baseline's namespace."""
    from canary.drift.store import save_profile

    for ns in ("prod", "staging"):
        save_profile(kube.core, namespace=ns, name="twin-v1-baseline", profile=served.profiles["twin"])
    reg = CollectorRegistry()
    watcher = DriftWatcher([], client=served.client, window_s=3600, registry=reg,
                           config=M.MonitorConfig(enter_after=1, exit_after=2, quiet_s=0),
                           store=ConfigMapStateStore(kube.core, namespace="canary-system"), core_api=kube.core,
                           batch_api=kube.batch, job_template=JOB, clock=_ticks())
    _lead_everywhere(watcher, kube)
    states = {k: (v["phase"], v["drifted_in_row"]) for k, v in _stored(kube).items()}
    assert states == {"prod/twin/v1": ("ok", 0), "staging/twin/v1": ("drifting", 1)}, states
    assert [j.metadata.name for j in kube.batch.list_namespaced_job("staging").items] == ["retrain-twin-v1-e1"]
    assert not kube.batch.list_namespaced_job("prod").items
    assert not [e.reason for e in kube.core.list_namespaced_event("prod").items]

    def share(ns: str) -> float | None:
        return reg.get_sample_value("model_data_drift_share", {"model": "twin", "version": "v1", "namespace": ns})

    assert share("prod") == 0.0 and share("staging") == 1.0
    # one namespace's live data alone, and every namespace's when none is named (`drift check` without -n)
    pinned = PrometheusClient(served.prom.url, at=_settled_instant(served.prom.url))  # three readings, one instant
    prod, staging, both = (live_counts(pinned, served.profiles["twin"], model="twin", version="v1", window_s=3600,
                                       namespace=ns)["f"]["counts"] for ns in ("prod", "staging", None))
    assert both == pytest.approx([p + s for p, s in zip(prod, staging)]) and prod != pytest.approx(staging)


def _settled_instant(url: str) -> float:
    """An instant (epoch s) whose samples Prometheus has all stored: now, returned once every target's latest scrape
    began after it. A scrape's samples carry its start time and land when it ends, so readings pinned at "now"
    saw a scrape stored between them: with the series a few seconds old, increase() over 1 h extrapolates from
    two or three samples, and one sample more halved a count (CI: prod read 30, prod and staging together 15).
    A target scrapes one scrape at a time, so a scrape begun after the instant means every earlier one is stored."""
    import time

    at = time.time()
    client = PrometheusClient(url)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        began = [float(s["value"][1]) for s in client.query("timestamp(up)", check="drift", arm="")]
        if len(began) >= 2 and min(began) > at:
            return at
        time.sleep(0.2)
    raise AssertionError("Prometheus scraped no target after the instant the readings are pinned at")


def _lead_everywhere(watcher: DriftWatcher, kube: Any) -> None:
    """One pass of the controller's drift loop over the baseline ConfigMaps of every namespace."""
    from canary.drift.watch import watch_baselines

    watch_baselines(watcher, kube.core, namespace=None, stop=Passes(1), interval_s=0.01, is_leader=lambda: True)


def _watcher(client: PrometheusClient, reg: CollectorRegistry, served: SimpleNamespace, **kw: Any) -> DriftWatcher:
    """`drift watch -n prod` over o1-o4."""
    kw.setdefault("clock", _ticks())
    return DriftWatcher([served.profiles[m] for m in MODELS], client=client, window_s=3600, namespace="prod",
                        registry=reg, config=M.MonitorConfig(quiet_s=0), **kw)


@contextmanager
def _proxied(served: SimpleNamespace) -> Iterator[tuple[BlackholeProxy, PrometheusClient]]:
    """A BlackholeProxy before the served Prometheus, and a client of it whose held queries time out in 0.5 s
    (`held_times_out`); stopped after."""
    proxy = BlackholeProxy("127.0.0.1", int(served.prom.url.rsplit(":", 1)[1])).start()
    try:
        yield proxy, held_times_out(proxy)
    finally:
        proxy.stop()


def test_a_pass_asks_a_down_prometheus_once_whatever_the_number_of_baselines(served: SimpleNamespace) -> None:
    """Prometheus hung: each of N baselines waited out the client's whole retry budget (N x 5 s a pass with
    the defaults: 100 baselines made a pass longer than its 5 min interval), each with its own line. Now the
    first failure and one trivial query find it down, the others are unmeasured for that same reason without
    a query, one line says so, every gauge reads NaN; Prometheus back, the next pass reads it."""
    port = int(served.prom.url.rsplit(":", 1)[1])
    proxy = BlackholeProxy("127.0.0.1", port).start()
    try:
        client = held_times_out(proxy, base=Counted)
        reg = CollectorRegistry()
        watcher = _watcher(client, reg, served)

        def shares() -> list[float | None]:
            return [reg.get_sample_value("model_data_drift_share", {"model": m, "version": "v1", "namespace": "prod"})
                    for m in MODELS]

        assert not [d for d in watcher.once() if "error" in d] and shares() == [0.0] * 4
        proxy.blackhole = True
        client.asked.clear()
        with capture_logs() as logs:
            done = watcher.once()
        assert len(client.asked) == 2 and client.asked[1] == "vector(1)", client.asked  # one baseline's, the probe
        errors = [d["error"] for d in done if "error" in d]
        assert len(errors) == 4 and len(set(errors)) == 1 and "no other baseline is asked" in errors[0], done
        events = [e for e in logs if e["event"].startswith("drift.")]
        assert [e["event"] for e in events] == ["drift.prometheus_unavailable"], events
        assert events[0]["baselines"] == 4 and events[0]["unmeasured"] == [f"prod/{m}/v1" for m in MODELS]
        assert all(math.isnan(s) for s in shares())  # never the last value measured (decision 97 e)
        proxy.blackhole = False  # Prometheus is back: the next pass asks it
        assert not [d for d in watcher.once() if "error" in d] and shares() == [0.0] * 4
    finally:
        proxy.stop()


def test_one_baselines_failing_queries_do_not_stop_the_others(served: SimpleNamespace) -> None:
    """A baseline whose own queries fail (too heavy for the timeout) while Prometheus answers is that
    baseline's `drift.unmeasured`: the breaker stays closed and the other baselines are read."""

    class Heavy(Counted):
        def ask(self, query: str, **kw: Any) -> Any:
            if 'model_name="o1"' in query:
                self.asked.append(query)
                raise MetricsUnavailable("drift of o1 v1: Prometheus could not be asked (timed out after 5.0s)")
            return super().ask(query, **kw)

    reg = CollectorRegistry()
    watcher = _watcher(Heavy(served.prom.url), reg, served)
    with capture_logs() as logs:
        done = watcher.once()
    assert [d["model"] for d in done if "error" in d] == ["o1"], done
    assert [e["event"] for e in logs if e["event"].startswith("drift.")] == ["drift.unmeasured"]
    assert [reg.get_sample_value("model_data_drift_share", {"model": m, "version": "v1", "namespace": "prod"})
            for m in MODELS[1:]] == [0.0] * 3


def test_a_store_that_does_not_answer_is_written_once_a_pass(served: SimpleNamespace, kube: Any) -> None:
    """The Kubernetes API gone after the baselines were read: every baseline's state write waited out its
    own timeouts (10 s each, retried) and was dropped all the same. One write a pass now; nothing is acted
    on that was not stored, and the next pass tries again."""

    class Store(ConfigMapStateStore):
        writes = 0

        def save(self, states: Any) -> None:
            Store.writes += 1
            super().save(states)

    store = Store(kube.core, namespace="canary-system")
    watcher = _watcher(served.client, CollectorRegistry(), served, store=store)
    watcher.once()
    assert Store.writes == 4 and {s.drifted_in_row for s in watcher.states.values()} == {0}
    kept = dict(watcher.states)
    kube.stop()
    Store.writes = 0
    for _ in range(2):
        with capture_logs() as logs:
            watcher.once()
        failed = [e for e in logs if e["event"] == "drift.state_save_failed"]
        assert len(failed) == 1 and "no other state is written" in failed[0]["message"], logs
    assert Store.writes == 2 and watcher.states == kept  # one write tried per pass; nothing kept unstored


def test_a_process_killed_after_storing_an_episode_and_before_alerting_is_alerted_by_the_next(
        served: SimpleNamespace, kube: Any) -> None:
    """Killed between storing the evaluation that opens an episode and acting on it: the next process read
    "drifting, trigger pending" and created the Job, but the DriftDetected Event and the notification were
    never sent (only a trigger was kept pending). The alerts are stored with the evaluation now (the
    outbox) and the next evaluation, in any process, delivers them: one Event, one Job."""

    class Killed(BaseException):
        """SIGKILL, right after the write landed (nothing after it happens)."""

    class Store(ConfigMapStateStore):
        def save(self, states: Any) -> None:
            super().save(states)
            if any(s.get("phase") == M.DRIFTING for s in states.values()):  # the episode's opening
                raise Killed

    def replica(store: ConfigMapStateStore) -> DriftWatcher:
        return DriftWatcher([{**served.profiles["twin"], "_namespace": "staging"}], client=served.client,
                            window_s=3600, config=M.MonitorConfig(enter_after=1, quiet_s=0), store=store,
                            core_api=kube.core, batch_api=kube.batch, job_template=JOB, clock=clock)

    clock = _ticks()
    with pytest.raises(Killed):
        replica(Store(kube.core, namespace="canary-system")).once()
    assert _stored(kube)["staging/twin/v1"]["phase"] == M.DRIFTING
    assert not kube.core.list_namespaced_event("staging").items and not kube.batch.list_namespaced_job("staging").items
    with capture_logs() as logs:
        replica(ConfigMapStateStore(kube.core, namespace="canary-system")).once()
    assert [e.reason for e in kube.core.list_namespaced_event("staging").items] == ["DriftDetected"]
    assert [j.metadata.name for j in kube.batch.list_namespaced_job("staging").items] == ["retrain-twin-v1-e1"]
    assert [e["event"] for e in logs if e["event"] == "drift.started"] == ["drift.started"]
    assert _stored(kube)["staging/twin/v1"]["outbox"] == []


def test_drift_check_reads_the_namespace_it_is_given(served: SimpleNamespace, tmp_path: Any) -> None:
    """`drift check -n`: prod's twin has not drifted, staging's has; without -n both are read as one."""
    import json

    from typer.testing import CliRunner

    from canary.cli import app

    path = tmp_path / "twin.profile.json"
    path.write_text(json.dumps(served.profiles["twin"]))

    def check(*extra: str) -> int:
        return CliRunner().invoke(app, ["drift", "check", "--baseline", str(path), "--prometheus-url",
                                        served.prom.url, *extra]).exit_code

    assert (check("-n", "prod"), check("-n", "staging"), check()) == (0, 1, 1)
    # the text says how many features drifted and the share at which the dataset drifts (a newcomer read
    # "no dataset drift (33% of 3 features drifted)" beside a row saying drift=yes)
    said = " ".join(CliRunner().invoke(app, ["drift", "check", "--baseline", str(path), "--prometheus-url",
                                             served.prom.url, "-n", "staging"]).output.split())
    assert "features drifted" in said and "dataset drift at 50% or more" in said, said


@pytest.mark.parametrize("given", ["", "prod|staging", "Prod", "prod.*"])
def test_drift_check_refuses_a_namespace_that_is_not_one(served: SimpleNamespace, tmp_path: Any, given: str) -> None:
    """`drift check -n` takes a namespace name (as drift watch's -n does), not a pattern: "" read only the
    series without the label and a pattern (escaped) matched none, both exit 4 "no live data", read as a
    model that serves nothing. Now exit 2 naming --namespace, before any query."""
    import json

    from typer.testing import CliRunner

    from canary.cli import app

    path = tmp_path / "twin.profile.json"
    path.write_text(json.dumps(served.profiles["twin"]))
    r = CliRunner().invoke(app, ["drift", "check", "--baseline", str(path), "--prometheus-url", served.prom.url,
                                 "-n", given])
    assert r.exit_code == 2 and "--namespace" in r.output, r.output


def _asked_models(client: Counted) -> list[str]:
    """The baselines a pass read, in the order it read them (each model's first query)."""
    seen: list[str] = []
    for q in client.asked:
        for m in MODELS:
            if f'model_name="{m}"' in q and m not in seen:
                seen.append(m)
    return seen


def test_a_pass_ends_at_the_next_baseline_when_its_replica_stops_leading(served: SimpleNamespace) -> None:
    """The controller's drift loop asked whether it leads once per pass: a replica that lost its lease
    mid-pass went on evaluating, alerting and triggering for every baseline left. Now `keep_going` is
    asked before each baseline; the pass ends there with one line naming the baselines left, and those
    go first in the next pass (none is starved by cuts that always land at the same place)."""
    client = Counted(served.prom.url)
    watcher = _watcher(client, CollectorRegistry(), served)
    answers = iter(["", "", "no longer the leader"])
    with capture_logs() as logs:
        done = watcher.once(keep_going=lambda: next(answers))
    assert _asked_models(client) == ["o1", "o2"] and len(done) == 0, (client.asked, done)
    cut = [e for e in logs if e["event"] == "drift.pass_cut"]
    assert len(cut) == 1 and cut[0]["reason"] == "no longer the leader" and cut[0]["left"] == ["prod/o3/v1", "prod/o4/v1"]
    assert "not evaluated in this pass" in cut[0]["message"]
    client.asked.clear()
    answers = iter(["", "stopping"])
    with capture_logs() as logs:
        watcher.once(keep_going=lambda: next(answers))
    assert _asked_models(client) == ["o3"]  # the ones left first
    assert [e["left"] for e in logs if e["event"] == "drift.pass_cut"] == [["prod/o4/v1", "prod/o1/v1", "prod/o2/v1"]]
    client.asked.clear()
    with capture_logs() as logs:
        watcher.once(keep_going=lambda: "")
    assert _asked_models(client) == ["o4", "o1", "o2", "o3"]
    assert not [e for e in logs if e["event"] == "drift.pass_cut"]
    client.asked.clear()
    watcher.once()  # nothing left over: the profiles' own order
    assert _asked_models(client) == list(MODELS)


@pytest.mark.parametrize("interval_s, said", [(0.0, True), (3600.0, False)])
def test_a_pass_longer_than_its_interval_is_said(served: SimpleNamespace, interval_s: float, said: bool) -> None:
    """A pass that takes longer than the time between passes evaluates every baseline less often than
    configured: one warning says how often it really is (a real pass always takes more than 0 s)."""
    watcher = _watcher(Counted(served.prom.url), CollectorRegistry(), served)
    with capture_logs() as logs:
        watcher.once(interval_s=interval_s)
    slow = [e for e in logs if e["event"] == "drift.pass_slow"]
    assert len(slow) == int(said), logs
    if said:
        assert slow[0]["baselines"] == 4 and slow[0]["interval_s"] == 0.0 and "evaluated about every" in slow[0]["message"]


def test_a_prometheus_down_for_an_hour_is_told_to_people_once_and_its_return_too(served: SimpleNamespace) -> None:
    """Decision 153: a Prometheus down was one `drift.prometheus_unavailable` log line a pass and nothing
    else: no notification, and the gauges that would show it are scraped by that same Prometheus, so a day
    without drift watching went unseen. After an hour down at every pass: `drift.prometheus_down` (the log
    and the notifications, one for all baselines), once; back: `drift.prometheus_back`. The clock is the test's;
    the notification receiver is a real HTTP server on 127.0.0.1."""
    from canary.notify import Notifier
    from tests.support.http import receiving

    port = int(served.prom.url.rsplit(":", 1)[1])
    proxy = BlackholeProxy("127.0.0.1", port).start()
    t = [2_000_000_000.0]
    try:
        with receiving() as (hook, notes):
            notifier = Notifier(webhooks=[f"{hook}/hook"], retries=0)
            client = held_times_out(proxy)
            watcher = DriftWatcher([served.profiles[m] for m in MODELS], client=client, window_s=3600,
                                   namespace="prod", registry=CollectorRegistry(), config=M.MonitorConfig(quiet_s=0),
                                   clock=lambda: t[0], notifier=notifier)
            proxy.blackhole = True
            with capture_logs() as logs:
                for _ in range(5):  # every 20 min: down at 0, 20, 40 min (not yet told), 60 (told), 80 (not again)
                    watcher.once()
                    t[0] += 1_200
                proxy.blackhole = False
                watcher.once()  # back
                watcher.once()  # and nothing more
            assert notifier.close(timeout=10)
            said = [e for e in logs if e["event"] in ("drift.prometheus_down", "drift.prometheus_back")]
            assert [e["event"] for e in said] == ["drift.prometheus_down", "drift.prometheus_back"], said
            assert "has not answered for 1h" in said[0]["message"]
            assert "4 baselines are not measured" in said[0]["message"]
            assert said[0]["unmeasured"] == [f"prod/{m}/v1" for m in MODELS]
            assert "after about 1h40m" in said[1]["message"]
            assert [n["event"] for n in notes] == ["drift_prometheus_down", "drift_prometheus_back"], notes
            assert len([e for e in logs if e["event"] == "drift.prometheus_unavailable"]) == 5  # each pass, as before
    finally:
        proxy.stop()


@pytest.mark.parametrize("fault", [503, None], ids=["http-503", "timeout"])
def test_a_baselines_unreadable_live_data_are_said_once_and_their_return_too(served: SimpleNamespace,
                                                                            fault: int | None) -> None:
    """One baseline's live-data queries failing while Prometheus answers a trivial query (a real Prometheus behind a
    proxy that answers those queries with a 5xx, or holds them past the client's timeout): `drift.unmeasured` was a
    warning at every evaluation, and nothing said when they were read again, so the last line stayed "nothing
    measured". Now: once when the run starts, once for each other kind of fault in the run (a 422 refusal, whose
    remedy differs; the first fault back again says nothing), once when the data are read again
    (`drift.readable_again`); every failed evaluation is still an error
    in what the pass did (`--once` exits 3), and nothing is decided from it (decision 337)."""
    port = int(served.prom.url.rsplit(":", 1)[1])
    proxy = BlackholeProxy("127.0.0.1", port).start()
    try:
        reg = CollectorRegistry()  # a clock that stands still: a run shorter than its told hour (below)
        watcher = _watcher(held_times_out(proxy), reg, served, clock=lambda: 2_000_000_000.0)
        proxy.hold_only = lambda line: b"o1%22" in line  # o1's queries (model_name="o1"), never vector(1)
        said, errors = [], []
        for answer in ("ok", fault, fault, 422, 422, fault, "ok", "ok"):
            proxy.blackhole, proxy.answer = answer != "ok", (None if answer == "ok" else answer)
            with capture_logs() as logs:
                done = watcher.once()
            said.append([e["event"] for e in logs if e["event"].startswith("drift.") and e.get("model") == "o1"])
            errors.append([d["model"] for d in done if "error" in d])
            assert not [e for e in logs if e["event"] in ("drift.started", "drift.prometheus_unavailable")], logs
        assert said == [[], ["drift.unmeasured"], [], ["drift.unmeasured"], [], [], ["drift.readable_again"], []], said
        assert errors == [[], ["o1"], ["o1"], ["o1"], ["o1"], ["o1"], [], []]
    finally:
        proxy.stop()


@pytest.mark.parametrize("fault", [503, None], ids=["http-503", "timeout"])
def test_a_short_prometheus_outage_has_its_end_said_once(served: SimpleNamespace, fault: int | None) -> None:
    """Prometheus down for less than the hour that tells people (`drift.prometheus_down`): restarted, or a proxy in
    front of it answering 503 for a while. Each pass said `drift.prometheus_unavailable`, and its end nothing: the
    last line on drift watching stayed "Prometheus did not answer" while every baseline was measured again. Its
    end is now one `drift.prometheus_answers` line; nothing is decided during it (decision 338)."""
    t = [2_000_000_000.0]
    with _proxied(served) as (proxy, client):
        watcher = _watcher(client, CollectorRegistry(), served, clock=lambda: t[0])
        said = []
        for down in (False, True, True, False, False):
            proxy.blackhole, proxy.answer = down, fault
            with capture_logs() as logs:
                watcher.once()
            t[0] += 600
            said.append([e["event"] for e in logs if e["event"].startswith("drift.prometheus")])
            assert not [e for e in logs if e["event"] in ("drift.started", "drift.evaluation_failed")], logs
        assert said == [[], ["drift.prometheus_unavailable"], ["drift.prometheus_unavailable"],
                        ["drift.prometheus_answers"], []], said


def test_an_outage_end_found_hours_after_the_last_pass_does_not_say_it_was_down_all_along(
        served: SimpleNamespace) -> None:
    """A pass found Prometheus down (503 from a proxy); the next pass runs 3 hours later (the watcher restarted,
    a `--once` cron paused) and finds it answering. `drift.prometheus_answers` said "answers again after about 3 h
    (found down at every pass since)": no pass ran in those hours. It now says how long it was found down and when
    it was last seen down (the review of decision 338)."""
    t = [2_000_000_000.0]
    with _proxied(served) as (proxy, client):
        watcher = _watcher(client, CollectorRegistry(), served, clock=lambda: t[0])
        proxy.blackhole, proxy.answer = True, 503
        watcher.once()
        t[0] += 600
        watcher.once()
        t[0] += 3 * 3600
        proxy.blackhole = False
        with capture_logs() as logs:
            watcher.once()
        said = [e for e in logs if e["event"] == "drift.prometheus_answers"]
        assert len(said) == 1, logs
        assert "found down at every pass since" not in said[0]["message"], said
        assert "was found down for about 10m, last 3h ago (no pass ran since)" in said[0]["message"], said


@pytest.mark.parametrize("status", [401, 403, 404])
def test_refused_access_to_prometheus_is_said_as_such_once_and_its_end_too(served: SimpleNamespace,
                                                                          status: int) -> None:
    """A proxy before a real Prometheus refusing the watcher's credentials (401, 403: a token rotated) or answering
    404 (a path prefix): each baseline's evaluation was `drift.bad_live_data`, "the live data do not fit the profile
    (the exporter counts over another profile's buckets)", an error at every evaluation, and nothing when access
    came back. Now `drift.prometheus_refused` once per run, naming the credentials or the URL, and
    `drift.readable_again` at its end; nothing decided, `--once` still exits 2 (a setup fault; decision 339). And
    once for all four baselines, one cause, naming them: it was a line per baseline, 30 for 30 baselines on one
    Prometheus (decision 384)."""
    with _proxied(served) as (proxy, client):
        watcher = _watcher(client, CollectorRegistry(), served, clock=lambda: 2_000_000_000.0)  # under the hour
        proxy.answer = status
        said, lines = [], []
        for refused in (False, True, True, False, False):
            proxy.blackhole = refused
            with capture_logs() as logs:
                done = watcher.once()
            said.append(sorted({e["event"] for e in logs if e["event"].startswith("drift.")}))
            lines.append([e for e in logs if e["event"] in ("drift.prometheus_refused", "drift.readable_again")])
            assert [d.get("config_error") for d in done if "error" in d] == ([True] * 4 if refused else [])
        assert said == [[], ["drift.prometheus_refused"], [], ["drift.readable_again"], []], said
        [refusal], [back] = lines[1], lines[3]
        names = [f"prod/{m}/v1" for m in MODELS]
        assert refusal["baselines"] == 4 and refusal["names"] == names and "model" not in refusal, refusal
        why = refusal["error"]
        assert ("credentials" in why if status != 404 else "path prefix" in why) and "o1" not in why, why
        assert ", ".join(names) in refusal["message"], refusal
        assert back["baselines"] == 4 and back["names"] == names and back["namespace"] == "prod", back


@pytest.mark.parametrize("fault", [503, None, 422, 403], ids=["http-503", "timeout", "http-422", "refused-403"])
def test_a_baselines_live_data_unreadable_for_an_hour_are_told_to_people_once_and_their_return_too(
        served: SimpleNamespace, fault: int | None) -> None:
    """One baseline's live-data queries failing while Prometheus answers (a real Prometheus behind a proxy that
    answers o1's queries with a 5xx, a 422 or a 403, or holds them past the client's timeout): decision 337 said it
    in the log once, and no one was ever notified, unlike a Prometheus down for an hour: a model not measured for a
    day was watched by nobody. Now after an hour of failed evaluations: `drift.live_data_unreadable`, the log and
    the notifications, once, naming the model, version, namespace, since when, the error; read again:
    `drift.live_data_readable`, notified, once. Prometheus wholly down for hours tells only `drift.prometheus_down`
    (the test's clock; the notification receiver a real HTTP server on 127.0.0.1)."""
    from canary.notify import Notifier
    from tests.support.http import receiving

    port = int(served.prom.url.rsplit(":", 1)[1])
    proxy = BlackholeProxy("127.0.0.1", port).start()
    t = [2_000_000_000.0]  # 2033-05-18 03:33:20 UTC
    try:
        with receiving() as (hook, notes):
            notifier = Notifier(webhooks=[f"{hook}/hook"], retries=0)
            client = held_times_out(proxy)
            watcher = _watcher(client, CollectorRegistry(), served, clock=lambda: t[0], notifier=notifier)
            said = []
            # every 20 min: read at 0, o1 failing from 20 min (60 min later, told: once), read again at 2 h, then
            # all of Prometheus down for 2 h (its own `drift.prometheus_down`, never o1's), then answering
            for o1_fails, down in ((False, False), *[(True, False)] * 5, (False, False), (False, False),
                                   *[(False, True)] * 7, (False, False)):
                proxy.blackhole, proxy.answer = o1_fails or down, 503 if down else fault
                proxy.hold_only = None if down else (lambda line: b"o1%22" in line)  # model_name="o1", not vector(1)
                with capture_logs() as logs:
                    watcher.once()
                t[0] += 1_200
                said.append([e for e in logs if e["event"] in (
                    "drift.live_data_unreadable", "drift.live_data_readable", "drift.readable_again",
                    "drift.prometheus_down", "drift.prometheus_back")])
                assert not [e for e in logs if e["event"] in ("drift.started", "drift.evaluation_failed")], logs
            assert notifier.close(timeout=10)
        events = [[e["event"] for e in s] for s in said]
        assert events == [[], [], [], [], ["drift.live_data_unreadable"], [], ["drift.live_data_readable"], [],
                          [], [], [], ["drift.prometheus_down"], [], [], [], ["drift.prometheus_back"]], events
        told, back = said[4][0], said[6][0]
        assert (told["model"], told["version"], told["namespace"]) == ("o1", "v1", "prod")
        assert told["since"] == 2_000_001_200.0 and told["evaluations"] == 4
        assert "o1 v1 in namespace prod: its live data could not be read for 1h" in told["message"], told
        assert "4 evaluations since 2033-05-18 03:53 UTC" in told["message"], told
        assert ("credentials" in told["error"] if fault == 403 else
                str(fault) in told["error"] if fault else "timed out" in told["error"]), told
        assert "read again, after 5 evaluations over about 1h40m" in back["message"], back
        assert [(n["event"], n.get("model"), n.get("stable_version")) for n in notes] == [
            ("drift_live_data_unreadable", "o1", "v1"), ("drift_live_data_readable", "o1", "v1"),
            ("drift_prometheus_down", "", ""), ("drift_prometheus_back", "", "")], notes
        assert notes[0]["reason"] == told["message"][:len(notes[0]["reason"])]
    finally:
        proxy.stop()


def test_access_refused_to_every_baseline_for_an_hour_is_told_once_naming_them_and_its_end_once(
        served: SimpleNamespace) -> None:
    """A token rotated: the proxy before Prometheus refuses every query (403) for an hour. Each baseline was told on
    its own, `drift_live_data_unreadable` four times at the hour (30 for 30 baselines) and `drift_live_data_readable`
    four times when access came back, for one cause. Now one notification at the hour naming the four, and one at the
    end (decision 384); nothing decided meanwhile."""
    from canary.notify import Notifier
    from tests.support.http import receiving

    t = [2_000_000_000.0]
    with _proxied(served) as (proxy, client), receiving() as (hook, notes):
        notifier = Notifier(webhooks=[f"{hook}/hook"], retries=0)
        watcher = _watcher(client, CollectorRegistry(), served, clock=lambda: t[0], notifier=notifier)
        proxy.answer = 403
        said = []
        for refused in (False, *[True] * 5, False, False):  # every 20 min: refused from 20 min to 1 h 40
            proxy.blackhole = refused
            with capture_logs() as logs:
                watcher.once()
            t[0] += 1_200
            said.append([e for e in logs if e["event"] in ("drift.live_data_unreadable", "drift.live_data_readable",
                                                           "drift.prometheus_refused", "drift.readable_again")])
            assert not [e for e in logs if e["event"] in ("drift.started", "drift.evaluation_failed")], logs
        assert notifier.close(timeout=10)
    assert [[e["event"] for e in s] for s in said] == [
        [], ["drift.prometheus_refused"], [], [], ["drift.live_data_unreadable"], [], ["drift.live_data_readable"],
        []], said
    names = [f"prod/{m}/v1" for m in MODELS]
    told, back = said[4][0], said[6][0]
    assert told["baselines"] == 4 and told["names"] == names and "credentials" in told["error"], told
    assert ", ".join(names) in told["message"] and "for about 1h" in told["message"], told
    assert back["baselines"] == 4 and back["names"] == names, back
    assert [n["event"] for n in notes] == ["drift_live_data_unreadable", "drift_live_data_readable"], notes
    assert notes[0]["reason"] == told["message"][:len(notes[0]["reason"])]


def test_unreadable_live_data_told_before_a_restart_have_their_end_told_by_the_next_watcher(
        served: SimpleNamespace, tmp_path: Any) -> None:
    """`drift.live_data_unreadable` told, then the watcher restarted (same state file): kept in the process, the
    next watcher counted a new hour, told it again, and never told its end (the last notification stayed
    "unreadable"). It is stored with the Prometheus outage record: the next watcher tells neither the start again
    nor forgets its end (`drift.live_data_readable`, notified once)."""
    import json

    from canary.notify import Notifier
    from tests.support.http import receiving

    port = int(served.prom.url.rsplit(":", 1)[1])
    proxy = BlackholeProxy("127.0.0.1", port).start()
    t = [2_000_000_000.0]
    state = tmp_path / "state.json"
    try:
        with receiving() as (hook, notes):
            def watcher() -> DriftWatcher:
                client = held_times_out(proxy)
                return _watcher(client, CollectorRegistry(), served, clock=lambda: t[0], state_file=state,
                                notifier=Notifier(webhooks=[f"{hook}/hook"], retries=0))

            proxy.blackhole, proxy.answer = True, 503
            proxy.hold_only = lambda line: b"o1%22" in line
            first = watcher()
            for _ in range(4):  # failing at 0, 20, 40, 60 min: told at 60
                first.once()
                t[0] += 1_200
            assert first.notifier.close(timeout=10)
            assert json.loads(state.read_text())["prometheus"] == {"unreadable": {"o1/v1": 2_000_000_000.0}}
            second = watcher()  # restarted
            with capture_logs() as logs:
                for _ in range(4):  # still failing for another hour: not told again
                    second.once()
                    t[0] += 1_200
                proxy.blackhole = False
                second.once()  # read again: its end told
                second.once()
            assert second.notifier.close(timeout=10)
        said = [e for e in logs if e["event"] in ("drift.live_data_unreadable", "drift.live_data_readable",
                                                  "drift.readable_again")]
        assert [e["event"] for e in said] == ["drift.live_data_readable"], said
        assert "after 4 evaluations here and an earlier watcher's over about 2h40m" in said[0]["message"], said
        assert [n["event"] for n in notes] == ["drift_live_data_unreadable", "drift_live_data_readable"], notes
        assert "prometheus" not in json.loads(state.read_text())  # nothing left to tell
    finally:
        proxy.stop()
