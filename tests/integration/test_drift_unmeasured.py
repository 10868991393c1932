"""What `drift check` and `drift watch --once` say when not everything was measured, on a real Prometheus
backfilled with what `canary.drift.exporter` exports (constant rates: `increase()` is exact).

"ok" was printed, exit 0, for a version with no series at all (a typo, an exporter not deployed) and for a
profile half of whose features had no series; exporter buckets that are another profile's (a setup
fault) exited 3, "Prometheus unavailable". Now: 4 no live data, 5 not every feature compared (named),
2 live data that do not fit the profile (the feature named), with a log event for each.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from canary.cli import app
from canary.drift.profile import capture
from canary.sandbox.promserver import PromServer, counter, gauge, histogram, history_window, openmetrics

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

H = 3600.0


def _profile() -> dict[str, Any]:
    import pyarrow as pa

    rng = np.random.default_rng(7)
    return capture(pa.table({f"f{i}": rng.normal(0, 1, 5_000) for i in range(4)}), model="rec", version="v1",
                   file="t.parquet", sha256="0" * 64)


def _series(prof: dict[str, Any], version: str, features: list[str], shift_bounds: float = 0.0,
            per_hour: float = 10_000, overflowed: bool = False, drifted: bool = False,
            model: str = "rec") -> list[Any]:
    """An hour's worth of same-distribution traffic per feature (`per_hour` values), over the profile's
    bounds (or bounds moved by `shift_bounds`: an exporter built from another profile); `drifted`: every value
    in the top half of the buckets instead."""
    out = []
    for name in features:
        f = prof["features"][name]
        lab = {"model_name": model, "model_version": version, "feature": name, "role": "input"}
        shares = np.asarray(f["counts"], float) / sum(f["counts"])
        if drifted:
            shares = np.where(np.arange(len(shares)) >= len(shares) // 2, shares, 0.0)
            shares = shares / shares.sum()
        out += histogram("model_feature_value", lab, [b + shift_bounds for b in f["bounds"]],
                         (shares * per_hour / H).tolist())
        if overflowed:  # the positive sum overflowed to +Inf (a sentinel such as 1.8e308 sent twice); the
            # negative one as N(0, 1) makes it: 0.399 a value
            out += gauge("model_feature_value_sum_by_sign_total", {**lab, "sign": "positive"}, float("inf"))
            out += counter("model_feature_value_sum_by_sign_total", {**lab, "sign": "negative"}, 0.399 * per_hour / H)
        else:
            out += counter("model_feature_value_sum_by_sign_total", {**lab, "sign": "positive"}, 0.0)
            out += counter("model_feature_value_sum_by_sign_total", {**lab, "sign": "negative"}, 0.0)
        out += counter("model_feature_value_summed_total", lab, per_hour / H)
        out += counter("model_feature_missing_total", lab, 0.0)
    return out


@pytest.fixture(scope="module")
def setup(prometheus_binary: str) -> Iterator[tuple[str, dict[str, Any]]]:
    prof = _profile()
    names = list(prof["features"])
    series = _series(prof, "v1", names) + _series(prof, "v5", names[:2]) + _series(prof, "v9", names, 0.01)
    # low traffic (120 requests an hour: 60 in a 30-minute window), for all features or half of them
    series += _series(prof, "v3", names, per_hour=120) + _series(prof, "v4", names[:2]) \
        + _series(prof, "v4", names[2:], per_hour=120)
    series += _series(prof, "v6", names[:1], overflowed=True) + _series(prof, "v6", names[1:])
    series += _series(prof, "v8", names, per_hour=0)  # exported, scraped, and no request at all
    # drifted features with the others unexported: f0 alone (1 of 4: no verdict), f0 and f1 (2 of 4: drift)
    series += (_series(prof, "v1", names[:1], drifted=True, model="solo")
               + _series(prof, "v2", names[:2], drifted=True, model="solo"))
    start, end = history_window(before_s=3 * 3600, after_s=3 * 3600)
    server = PromServer(history=openmetrics(series, start=start, end=end), binary=prometheus_binary)
    server.start()
    try:
        yield server.url, prof
    finally:
        server.stop()


def _run(tmp_path: Any, url: str, prof: dict[str, Any], version: str) -> tuple[Any, Any, list[dict[str, Any]]]:
    path = tmp_path / f"{version}.profile.json"
    path.write_text(json.dumps({**prof, "version": version}))
    check = CliRunner().invoke(app, ["drift", "check", "--baseline", str(path), "--prometheus-url", url,
                                     "--window", "30m", "-o", "json"])
    watch = CliRunner().invoke(app, ["drift", "watch", "--baseline", str(path), "--prometheus-url", url,
                                     "--window", "30m", "--no-kube", "--once", "--state-file",
                                     str(tmp_path / f"{version}.state.json"), "-o", "json"])
    return check, watch, _events(watch.stderr)


def _events(stderr: str) -> list[dict[str, Any]]:
    """The log events a command wrote (JSON lines on stderr)."""
    return [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]


def test_everything_measured_is_ok(setup: Any, tmp_path: Any) -> None:
    url, prof = setup
    check, watch, _ = _run(tmp_path, url, prof, "v1")
    assert check.exit_code == 0 and json.loads(check.stdout)["no_live_data"] == [], check.output
    assert watch.exit_code == 0, watch.output
    (row,) = json.loads(watch.stdout)["profiles"]
    assert row["measured"] == "all" and row["phase"] == "ok"


def test_the_table_names_the_version_checked_and_the_profile_it_was_checked_against(setup: Any, tmp_path: Any) -> None:
    """`drift check --version v1` with v9's profile titled its table "rec v9: no dataset drift": the verdict is
    v1's live data against v9's training profile, and on-call read it as v9's (decision 257)."""
    url, prof = setup
    path = tmp_path / "v9.profile.json"
    path.write_text(json.dumps({**prof, "version": "v9"}))
    args = ["drift", "check", "--baseline", str(path), "--prometheus-url", url, "--window", "30m"]
    other = CliRunner().invoke(app, [*args, "--version", "v1"], env={"COLUMNS": "400"})
    assert other.exit_code == 0 and "rec v1 (against the profile of v9): no dataset drift" in other.output, other.output
    path.write_text(json.dumps({**prof, "version": "v1"}))
    own = CliRunner().invoke(app, args, env={"COLUMNS": "400"})
    assert own.exit_code == 0 and "rec v1: no dataset drift" in own.output and "against" not in own.output


def test_no_series_for_the_version_is_not_ok(setup: Any, tmp_path: Any) -> None:
    url, prof = setup
    check, watch, logs = _run(tmp_path, url, prof, "v7")
    assert check.exit_code == 4, check.output
    assert watch.exit_code == 4, watch.output
    (row,) = json.loads(watch.stdout)["profiles"]
    assert row["measured"] == "none" and row["share"] is None
    (ev,) = [e for e in logs if e["event"] == "drift.no_live_data"]
    assert (ev["model"], ev["version"], ev["features"]) == ("rec", "v7", ["f0", "f1", "f2", "f3"])


def test_features_without_series_are_named_and_not_ok(setup: Any, tmp_path: Any) -> None:
    url, prof = setup
    check, watch, logs = _run(tmp_path, url, prof, "v5")
    assert check.exit_code == 5 and json.loads(check.stdout)["no_live_data"] == ["f2", "f3"], check.output
    assert watch.exit_code == 5, watch.output
    (row,) = json.loads(watch.stdout)["profiles"]
    assert row["measured"] == "partial" and row["actions"] == [{"unmeasured": ["f2", "f3"], "not_arriving": []}]
    (ev,) = [e for e in logs if e["event"] == "drift.features_unmeasured"]
    assert ev["features"] == ["f2", "f3"]


def test_too_little_traffic_is_said_inconclusive_not_no_series(setup: Any, tmp_path: Any) -> None:
    """60 requests in the window: each feature arrives, too rarely to be compared (fewer than 100 values).
    `drift check` printed "no live data for: f0, f1, f2, f3" and `drift watch` logged "no series for this
    model and version, or fewer than 100 values ... (is the exporter deployed ...?)": on-call looked for
    an exporter that was there. Now both say it is too little traffic to judge, per feature with its
    count, and that a longer window holds more; the exit codes stay 4 and 5 (not measured)."""
    url, prof = setup
    check, watch, logs = _run(tmp_path, url, prof, "v3")
    assert check.exit_code == 4, check.output
    doc = json.loads(check.stdout)
    assert doc["no_live_data"] == ["f0", "f1", "f2", "f3"] and set(doc["too_few"]) == set(doc["no_live_data"])
    assert all(55 <= n <= 65 for n in doc["too_few"].values()), doc["too_few"]
    assert watch.exit_code == 4, watch.output
    (ev,) = [e for e in logs if e["event"] == "drift.no_live_data"]
    assert set(ev["too_few"]) == {"f0", "f1", "f2", "f3"}
    assert "too little traffic to judge f0 (" in ev["message"] and "inconclusive" in ev["message"]
    assert "fewer than 100 values in the window of 30m" in ev["message"] and "exporter" not in ev["message"]
    (row,) = json.loads(watch.stdout)["profiles"]
    assert row["measured"] == "none" and row["actions"][0]["too_few"] == doc["too_few"]
    text = CliRunner().invoke(app, ["drift", "check", "--baseline", str(tmp_path / "v3.profile.json"),
                                    "--prometheus-url", url, "--window", "30m"])
    assert text.exit_code == 4 and "too little live data to judge (inconclusive" in text.output, text.output
    assert "no live data for" not in text.output

    check, watch, logs = _run(tmp_path, url, prof, "v4")  # half the features at 10,000 an hour, half at 120
    assert check.exit_code == 5 and set(json.loads(check.stdout)["too_few"]) == {"f2", "f3"}, check.output
    assert watch.exit_code == 5, watch.output
    (ev,) = [e for e in logs if e["event"] == "drift.features_unmeasured"]
    assert ev["features"] == ["f2", "f3"] and set(ev["too_few"]) == {"f2", "f3"}
    assert "too little traffic to judge f2 (" in ev["message"] and "older profile" not in ev["message"]


def test_a_sum_that_overflowed_is_no_mean_not_half_of_one(setup: Any, tmp_path: Any) -> None:
    """f0's positive-sign sum overflowed to +Inf (increase() then NaN, left out of the answer): its live mean
    was read from the negative sign alone, -0.4 std from training's, and same-distribution traffic was a
    drift (exit 1; a watch would open an episode and retrain, every window until the pod restarted). Now f0
    is compared from its buckets, its mean said not checked."""
    url, prof = setup
    check, _, _ = _run(tmp_path, url, prof, "v6")
    assert check.exit_code == 0, check.output
    by = {f["feature"]: f for f in json.loads(check.stdout)["features"]}
    assert not by["f0"]["drifted"] and "no live sum" in by["f0"]["note"], by["f0"]
    assert "no live sum" not in (by["f1"]["note"] or "")


def test_buckets_of_another_profile_are_a_configuration_error_naming_the_feature(setup: Any, tmp_path: Any) -> None:
    url, prof = setup
    check, watch, logs = _run(tmp_path, url, prof, "v9")
    assert check.exit_code == 2 and "feature 'f0'" in check.output, check.output
    assert watch.exit_code == 2, watch.output
    (ev,) = [e for e in logs if e["event"] == "drift.bad_live_data"]
    assert "feature 'f0'" in ev["error"] and "not the profile's" in ev["error"]
    assert not [e for e in logs if e["event"] == "drift.unmeasured"]  # not "Prometheus unavailable"


def test_an_episode_of_a_version_not_watched_is_kept_and_not_exited_on(setup: Any, tmp_path: Any) -> None:
    """The state file holds rec v1's open episode (no longer watched); this run watches v7, which has no
    series: exit 4 as `drift check`, not 1 (a fresh attacker: the other version's episode exited 1)."""
    from canary.drift.monitor import DRIFTING, MonitorState

    url, prof = setup
    old = MonitorState("rec", "v1", phase=DRIFTING, episode=1, trigger="done", traffic_since=1.0)
    (tmp_path / "v7.state.json").write_text(json.dumps({"rec/v1": old.to_dict()}))
    check, watch, _ = _run(tmp_path, url, prof, "v7")
    assert check.exit_code == watch.exit_code == 4, watch.output
    assert [r["version"] for r in json.loads(watch.stdout)["profiles"]] == ["v7"]
    assert "rec/v1" in json.loads((tmp_path / "v7.state.json").read_text())  # kept for when it is watched again


def test_a_query_prometheus_refuses_is_unmeasured_not_bad_live_data(prometheus_binary: str, tmp_path: Any) -> None:
    """Decision 153: a Prometheus that refuses the live-data queries (HTTP 422, more samples than its
    `--query.max-samples`: a 24h window, which docs/drift.md recommends for daily cycles, over many pods) was
    `drift.bad_live_data`, "the exporter counts over another profile's buckets", exit 2, and its words said
    "Prometheus rejected the live data of rec v1". It is not measured: exit 3, `drift.unmeasured`, the
    refusal quoted with what to change."""
    prof = _profile()
    start, end = history_window(before_s=3 * 3600, after_s=3 * 3600)
    server = PromServer(history=openmetrics(_series(prof, "v1", list(prof["features"])), start=start, end=end),
                        binary=prometheus_binary, extra_args=["--query.max-samples=50"])
    server.start()
    try:
        check, watch, logs = _run(tmp_path, server.url, prof, "v1")
    finally:
        server.stop()
    assert check.exit_code == 3, check.output
    assert "Prometheus rejected the query (HTTP 422" in check.output and "too many samples" in check.output
    assert "a shorter --window" in check.output and "rejected the live data" not in check.output
    assert watch.exit_code == 3, watch.output
    assert not [e for e in logs if e["event"] == "drift.bad_live_data"], logs
    (ev,) = [e for e in logs if e["event"] == "drift.unmeasured"]
    assert "too many samples" in ev["error"] and "not drift, not a profile fault" in ev["error"]
    # what to change before the query it quotes: one query of five parts since decision 623, over 1 KB of PromQL
    # between the refusal and its remedy (decision 623's addendum)
    for said in (ev["error"], check.output):
        assert said.index("a shorter --window") < said.index("; query: label_replace("), said


def test_a_renamed_model_is_not_measured_never_no_drift(setup: Any, tmp_path: Any) -> None:
    """Decision 160: the model renamed in the server (its series now carry another `model_name`), so every query
    answers an empty vector. `drift check` exited 4, but its table's title read "no dataset drift (0 of 0
    features drifted, 0%)", and `-o json` said `"dataset_drift": false`: what a person and a script read as "no
    drift". Now: NOT MEASURED, no verdict (`null`), and the line names what to check."""
    url, prof = setup
    path = tmp_path / "renamed.profile.json"
    path.write_text(json.dumps({**prof, "model": "rec-renamed"}))
    table = CliRunner().invoke(app, ["drift", "check", "--baseline", str(path), "--prometheus-url", url,
                                     "--window", "30m"], env={"COLUMNS": "250"})
    assert table.exit_code == 4, table.output
    assert "NOT MEASURED" in table.output and "no dataset drift" not in table.output, table.output
    assert "a model renamed in the server" in table.output
    out = CliRunner().invoke(app, ["drift", "check", "--baseline", str(path), "--prometheus-url", url,
                                   "--window", "30m", "-o", "json"])
    got = json.loads(out.stdout)
    assert out.exit_code == 4 and got["dataset_drift"] is None and got["measured"] is False, out.output
    assert got["share"] is None and got["share_max"] is None, got  # it read 0.0: "no drift" (decision 412)


def test_live_data_coming_back_is_said_after_a_line_that_said_it_was_not_measured(setup: Any) -> None:
    """A continuous watch logs `drift.no_live_data` (and `drift.features_unmeasured`) when it starts, not at every
    evaluation, and said nothing when the live data came back: "nothing was measured" stayed its last line while
    it measured again (a night without traffic, an exporter redeployed), and on-call could not tell from the log
    whether the verdicts covered the model again. Now `drift.live_data_back` says so, once. The watcher reads the
    backfilled history at chosen instants: before its series began (nothing), then within them (every feature)."""
    import time

    from structlog.testing import capture_logs

    from canary.drift import monitor as M
    from canary.drift.watch import DriftWatcher
    from canary.metrics.client import PrometheusClient

    url, prof = setup
    client = PrometheusClient(url, retries=1)
    w = DriftWatcher([prof], client=client, window_s=1800, config=M.MonitorConfig(quiet_s=0))
    events = []
    for at in (time.time() - 5 * H, time.time() - 5 * H + 60, time.time() - H, time.time() - H + 60):
        client.at = at
        with capture_logs() as logs:
            w.once()
        events.append([e for e in logs if e["event"].startswith("drift.")])
    assert [e["event"] for e in events[0]] == ["drift.no_live_data"] and events[1] == []
    [back] = events[2]
    assert back["event"] == "drift.live_data_back" and back["log_level"] == "info", back
    assert back["features"] == ["f0", "f1", "f2", "f3"] and "f0, f1, f2, f3 compared again" in back["message"]
    assert "the verdict covers the whole profile again" in back["message"] and events[3] == []


@pytest.mark.parametrize(("model", "version", "window", "says"), [
    ("rec", "v8", "30m", "scrapes in the window) and counted no request: rec v8 got no traffic in the window"),
    ("rec", "v7", "30m", "no series of version v7, but rec's exporter exports versions v1, v3, v4, v5, v6, v8, v9 (in "
                         "the last 1h): is the version the server labels (model_version) the profile's"),
    ("rec-renamed", "v1", "30m", "no series of model rec-renamed at all in the last 1h: is the exporter deployed"),
    ("rec", "v1", "10s", "of its series, and increase() needs two (they are there in the last 1h): a window shorter "
                         "than twice Prometheus's scrape interval"),
])
def test_no_live_data_says_what_prometheus_can_tell_of_why(setup: Any, tmp_path: Any, model: str, version: str,
                                                           window: str, says: str) -> None:
    """With no live value at all, `drift check` and `drift watch` said the same list of guesses whatever the cause
    ("is the exporter deployed, are the model name and version right, does the version get traffic?"): a version
    that got no traffic, a profile of v7 while the server labels v1, a renamed model and a --window shorter than two
    scrapes all read alike, and on-call checked the exporter, which was there. Prometheus is now asked (only then)
    what it can tell: the version's series scraped and counting nothing, the versions the model's series carry, no
    series of the model at all, or a window holding fewer than two scrapes of series that exist (the 15 s grid of
    the backfill: a 10 s window holds one or none). Still no verdict: exit 4, nothing measured."""
    url, prof = setup
    path = tmp_path / "p.json"
    path.write_text(json.dumps({**prof, "model": model, "version": version}))
    args = ["--baseline", str(path), "--prometheus-url", url, "--window", window]
    check = CliRunner().invoke(app, ["drift", "check", *args, "-o", "json"])
    assert check.exit_code == 4, check.output
    doc = json.loads(check.stdout)
    assert doc["measured"] is False and says in doc["no_live_data_reason"], doc
    table = CliRunner().invoke(app, ["drift", "check", *args], env={"COLUMNS": "400"})
    assert table.exit_code == 4 and says in " ".join(table.output.split()), table.output
    watch = CliRunner().invoke(app, ["drift", "watch", *args, "--no-kube", "--once", "--state-file",
                                     str(tmp_path / "s.json"), "-o", "json"])
    assert watch.exit_code == 4, watch.output
    (ev,) = [e for e in _events(watch.stderr) if e["event"] == "drift.no_live_data"]
    assert says in ev["message"] and "is the exporter deployed, are the model name and version right" not in \
        ev["message"], ev["message"]


def test_no_live_data_on_a_prometheus_restarted_without_its_storage_says_so(prometheus_binary: str, tmp_path: Any
                                                                           ) -> None:
    """A Prometheus restarted without its storage (an emptyDir, a pod rescheduled) holds no series of the model until
    its first scrapes: "no series of model rec at all in the last 1h: is the exporter deployed" sent on-call to an
    exporter that was there. Prometheus is asked how much data it holds at all (its oldest `up` sample, any target):
    less than the window is said (decision 339). A real Prometheus started now, scraping another model's exporter."""
    from prometheus_client import CollectorRegistry, start_http_server

    from canary.drift.exporter import FeatureExporter
    from tests.support.prom import until_value

    prof = _profile()
    reg = CollectorRegistry()
    FeatureExporter({**prof, "model": "other"}, registry=reg).observe({})
    srv, thread = start_http_server(0, addr="127.0.0.1", registry=reg)
    server = PromServer(targets=[f"127.0.0.1:{srv.server_address[1]}"], binary=prometheus_binary).start()
    try:
        until_value(server, "count(up)", 1, "a first scrape")
        path = tmp_path / "p.json"
        path.write_text(json.dumps(prof))
        args = ["--baseline", str(path), "--prometheus-url", server.url, "--window", "30m"]
        check = CliRunner().invoke(app, ["drift", "check", *args, "-o", "json"])
        assert check.exit_code == 4, check.output
        reason = json.loads(check.stdout)["no_live_data_reason"]
        assert "no series of model rec at all" in reason and "Prometheus itself holds only about" in reason, reason
        assert "restarted without its storage" in reason and "or its retention is that short" in reason
        watch = CliRunner().invoke(app, ["drift", "watch", *args, "--no-kube", "--once", "--state-file",
                                         str(tmp_path / "s.json"), "-o", "json"])
        assert watch.exit_code == 4, watch.output
        (ev,) = [e for e in _events(watch.stderr) if e["event"] == "drift.no_live_data"]
        assert "Prometheus itself holds only about" in ev["message"], ev["message"]
    finally:
        server.stop()
        srv.shutdown()
        srv.server_close()
        thread.join(timeout=5)


def test_one_drifted_feature_of_four_compared_alone_is_no_verdict_and_opens_no_episode(
        setup: Any, tmp_path: Any) -> None:
    """f0 drifted, f1-f3 not exported: `drift check` said "DATASET DRIFT (1 of 1 features drifted, 100%)", exit 1,
    `"dataset_drift": true`, and `drift watch --enter-after 1` opened an episode (a retraining Job with
    `--retrain-job`) over three features never measured. Now no verdict: exit 5, null, and no episode; with f0 and f1
    drifted (half of the profile whatever f2 and f3 are) it is dataset drift, and the episode's line says the share
    of the profile (decision 382)."""
    url, prof = setup
    for version, code, verdict in (("v1", 5, None), ("v2", 1, True)):
        path = tmp_path / f"{version}.profile.json"
        path.write_text(json.dumps({**prof, "model": "solo", "version": version}))
        args = ["--baseline", str(path), "--prometheus-url", url, "--window", "30m"]
        check = CliRunner().invoke(app, ["drift", "check", *args, "-o", "json"])
        assert check.exit_code == code and json.loads(check.stdout)["dataset_drift"] is verdict, check.output
        watch = CliRunner().invoke(app, ["drift", "watch", *args, "--no-kube", "--once", "--enter-after", "1",
                                         "--quiet", "0", "--state-file", str(tmp_path / f"{version}.json"),
                                         "-o", "json"])
        assert watch.exit_code == code, watch.output
        started = [e for e in _events(watch.stderr) if e["event"] == "drift.started"]
        if verdict:
            [e] = started
            assert "2 of 4 profiled features drifted (50% at least, 2 not compared: drift whatever they are" \
                in e["message"], e
        else:
            assert started == [], started
            text = CliRunner().invoke(app, ["drift", "check", *args], env={"COLUMNS": "400"})
            assert text.exit_code == 5 and "NO VERDICT" in text.output, text.output
            # `--once`'s row said "ok for the features compared" of a drifted f0
            row = CliRunner().invoke(app, ["drift", "watch", *args, "--no-kube", "--once", "--state-file",
                                           str(tmp_path / f"{version}.json")])
            assert "solo v1: no episode (NOT every feature compared)" in row.stdout, row.stdout
            # the share of the profile, bounded: it read "drifted share 1.00" of f0 alone (decision 411)
            assert "drifted share 0.25 to 1.00 (not every feature compared) [f0]" in row.stdout, row.stdout
            got = json.loads(check.stdout)
            assert (got["share"], got["share_max"]) == (0.25, 1.0), got
            rows = CliRunner().invoke(app, ["drift", "watch", *args, "--no-kube", "--once", "--state-file",
                                            str(tmp_path / f"{version}.json"), "-o", "json"])
            [r] = json.loads(rows.stdout)["profiles"]
            assert (r["share"], r["share_max"]) == (0.25, 1.0), r


def test_the_share_gauges_are_of_the_whole_profile_and_agree_with_the_verdict(setup: Any) -> None:
    """`model_data_drift_share` was the share of the features compared: 1.0 for solo v1's f0, drifted and alone of
    four exported, while the verdict over the whole profile was none (decision 382) and no episode opened; a
    dashboard (or an alert on share >= 0.5) showed 100% drift. Now the share is of the whole profile, at least (the
    features not compared not drifted), `model_data_drift_share_max` at most (all drifted), and
    `model_data_drift_verdict` the verdict `drift watch` counts: 1, 0, NaN for none (decision 411). Read by a watcher
    from the real Prometheus."""
    import math

    from prometheus_client import CollectorRegistry

    from canary.drift import monitor as M
    from canary.drift.watch import DriftWatcher
    from canary.metrics.client import PrometheusClient

    url, prof = setup
    reg = CollectorRegistry()
    profs = [{**prof, "model": "solo", "version": "v1"}, {**prof, "model": "solo", "version": "v2"},
             {**prof, "version": "v1"}, {**prof, "version": "v5"}]
    w = DriftWatcher(profs, client=PrometheusClient(url, retries=1), window_s=1800,
                     config=M.MonitorConfig(quiet_s=0), registry=reg)
    w.once()

    def got(model: str, version: str) -> list[float]:
        labels = {"model": model, "version": version, "namespace": "default"}
        return [reg.get_sample_value(g, labels) for g in ("model_data_drift_share", "model_data_drift_share_max",
                                                          "model_data_drift_verdict")]

    share, most, verdict = got("solo", "v1")  # f0 drifted, f1-f3 not compared: 1 of 4 at least, 4 at most
    assert (share, most) == (0.25, 1.0) and math.isnan(verdict), (share, most, verdict)
    assert got("solo", "v2") == [0.5, 1.0, 1.0]  # f0, f1 drifted: drift whatever f2, f3 are
    assert got("rec", "v1") == [0.0, 0.0, 0.0]  # all four compared, clean
    share, most, verdict = got("rec", "v5")  # f0, f1 clean, f2, f3 not compared: they could be the half
    assert (share, most) == (0.0, 0.5) and math.isnan(verdict), (share, most, verdict)


def test_an_episode_whose_feature_stopped_arriving_ends_when_no_drift_is_certain(prometheus_binary: str) -> None:
    """A real Prometheus holding six hours: in the first three f0 and f1 drifted (half of the four-feature profile:
    an episode opens), then f0 is no longer exported (dropped from the model's inputs, its baseline not
    re-captured) and f1-f3 read clean. Decision 134's hold kept the episode open for ever, since f0, which it opened
    on, was never compared again, though 1 of 4 at most is no dataset drift whatever f0 is: its
    `model_data_drift_episode` stayed 1. It ends now, `drift.resolved` naming f0 and the remedy (decision 410)."""
    import time

    from prometheus_client import CollectorRegistry
    from structlog.testing import capture_logs

    from canary.drift import monitor as M
    from canary.drift.watch import DriftWatcher
    from canary.metrics.client import PrometheusClient

    prof = {**_profile(), "model": "gone"}
    names = list(prof["features"])
    now = time.time()
    start, end = history_window(now, before_s=6 * 3600, after_s=600)
    cut = start + 3 * 3600

    def families(text: str) -> dict[str, dict[str, list[str]]]:
        out: dict[str, dict[str, list[str]]] = {}
        for line in text.splitlines():
            if line.startswith("#"):
                continue
            head = line.rsplit(" ", 2)[0]
            out.setdefault(head.split("{")[0], {}).setdefault(head, []).append(line)
        return out

    # the first three hours drifted on f0 and f1; then no f0, and f1 clean (counters from 0 again: a restart)
    before = families(openmetrics(_series(prof, "v1", names[:2], drifted=True, model="gone")
                                  + _series(prof, "v1", names[2:], model="gone"), start=start, end=cut - 15))
    after = families(openmetrics(_series(prof, "v1", names[1:], model="gone"), start=cut, end=end))
    text = []
    for name in sorted(set(before) | set(after)):
        text.append(f"# TYPE {name} unknown")
        for head in sorted(set(before.get(name, {})) | set(after.get(name, {}))):
            text += before.get(name, {}).get(head, []) + after.get(name, {}).get(head, [])
    server = PromServer(history="\n".join(text) + "\n# EOF\n", binary=prometheus_binary)
    server.start()
    try:
        client = PrometheusClient(server.url, retries=1)
        reg = CollectorRegistry()
        w = DriftWatcher([prof], client=client, window_s=1800, registry=reg, clock=lambda: float(client.at),
                         config=M.MonitorConfig(enter_after=1, exit_after=3, quiet_s=0))
        labels = {"model": "gone", "version": "v1", "namespace": "default"}
        client.at = cut - 600
        w.once()
        assert reg.get_sample_value("model_data_drift_episode", labels) == 1.0
        assert w.states[next(iter(w.states))].evidence["drifted_features"] == ["f0", "f1"]
        events = []
        for k in range(1, 4):  # f0 gone, the rest clean: windows that do not overlap
            client.at = cut + 1800 + k * 1800
            with capture_logs() as logs:
                w.once()
            events += [e for e in logs if e["event"].startswith("drift.")]
        [end_] = [e for e in events if e["event"] == "drift.resolved"]
        assert end_["unmeasured"] == ["f0"] and "whatever f0 is" in end_["message"], end_
        assert reg.get_sample_value("model_data_drift_episode", labels) == 0.0
        assert reg.get_sample_value("model_data_drift_verdict", labels) == 0.0
        assert reg.get_sample_value("model_data_drift_share_max", labels) == 0.25
    finally:
        server.stop()
