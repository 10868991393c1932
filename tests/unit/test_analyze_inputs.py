"""`canary analyze` refuses, as bad input (exit 2) before asking Prometheus, what would otherwise come back as
a verdict that says nothing: a window no increase() can be taken over, and one version on both sides."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support import cli

DEAD = "http://127.0.0.1:9"  # never asked: each refusal comes before the first query


def analyze(tmp_path: Path, *args: str, scrape: str | None = None, prometheus: str = DEAD) -> tuple[int, str, str]:
    pol = tmp_path / "p.yaml"
    metrics = f"metrics: {{scrape_interval: {scrape}}}\n" if scrape else ""
    pol.write_text("steps: [10, 100]\n" + metrics + "checks: [{name: err, kind: error_rate, max_rate_pct: 5}]\n")
    res = cli.run(["analyze", "rec", "-n", "ml", "--policy", str(pol), "--prometheus-url", prometheus, *args],
                  env={"KUBECONFIG": ""})
    return res.returncode, res.stdout, " ".join(res.stderr.split())


@pytest.mark.parametrize(("window", "scrape", "least"), [("1m", "1m", "120s"), ("5s", "15s", "30s"),
                                                         ("29s", "15s", "30s")])
def test_a_window_shorter_than_two_scrapes_is_bad_input(tmp_path: Path, window: str, scrape: str | None,
                                                        least: str) -> None:
    """It exited 4, every check "could not measure: no series for the stable arm ... the canary arm": on-call
    went looking for a broken exporter. An increase() needs two samples in its window."""
    code, out, err = analyze(tmp_path, "--stable-version", "v1", "--canary-version", "v2", "--window", window,
                             scrape=scrape)
    assert code == 2 and out == "", err
    assert "shorter than two scrapes" in err and "metrics.scrape_interval" in err and f"--window {least} or more" in err


def test_the_same_version_on_both_sides_is_bad_input(tmp_path: Path) -> None:
    """v1 against itself was judged (exit 0 where its checks could show "within the limit": a canary passed that
    was never looked at); `promote` refuses the stable version as the canary (exit 2), so does analyze now."""
    code, out, err = analyze(tmp_path, "--stable-version", "v1", "--canary-version", "v1", "--window", "5m")
    assert code == 2 and out == "", err
    assert "'v1': nothing to compare" in err and "--canary-version" in err


def _prometheus_scraping_every(interval: str) -> Any:
    """A stand-in for Prometheus's HTTP API (`tests.support.http.ScriptedHTTP`, as the drift watch's window test
    uses): its configuration scrapes at `interval`; every query answers no series."""
    import json

    from tests.support.http import ScriptedHTTP

    # one scrape job: a configuration with none tells nothing of the data's interval (decision 557)
    config = json.dumps({"status": "success", "data": {
        "yaml": f"global:\n  scrape_interval: {interval}\nscrape_configs:\n- job_name: models\n"}})
    empty = json.dumps({"status": "success", "data": {"resultType": "vector", "result": []}})
    return ScriptedHTTP(lambda path, headers: (200, "application/json",
                                               config if path.startswith("/api/v1/status/config") else empty))


def test_a_policy_that_does_not_set_the_scrape_interval_is_held_to_prometheuss_own(tmp_path: Path) -> None:
    """With `metrics.scrape_interval` not set (policies/default.yaml leaves it commented), its default 60 s
    refused `--window 1m` against a Prometheus scraping every 15 s (or kube-prometheus-stack's 30 s), where the
    window holds four scrapes, saying "metrics.scrape_interval 60s in p.yaml", a value the file does not hold.
    Unset, the Prometheus's own interval (the shortest in its configuration, as `drift watch --window` reads it)
    decides; the default only where Prometheus cannot tell, and the refusal says it was assumed (decision 562)."""
    server = _prometheus_scraping_every("15s")
    try:
        code, _, err = analyze(tmp_path, "--stable-version", "v1", "--canary-version", "v2", "--window", "1m",
                               prometheus=server.url)
        assert code == 4 and "shorter than two scrapes" not in err, err  # asked, and no series: not a refusal
        code, out, err = analyze(tmp_path, "--stable-version", "v1", "--canary-version", "v2", "--window", "20s",
                                 prometheus=server.url)
        assert code == 2 and out == "" and "--window 30s or more" in err and "15s" in err, err
        assert "not set in" in err and not any("query" in p for p in server.paths[-1:]), (err, server.paths)
    finally:
        server.close()
    # a Prometheus that cannot tell its interval (here: none answers): nothing checked, as `drift watch` checks
    # nothing there (decision 562's addendum): the default's 60 s refused a window that may hold four scrapes
    code, _, err = analyze(tmp_path, "--stable-version", "v1", "--canary-version", "v2", "--window", "1m")
    assert code == 3 and "shorter than two scrapes" not in err, err  # asked: Prometheus unavailable (decision 571)


def _prometheus_answering(by_query: dict[str, tuple[int, dict]]) -> Any:
    """A stand-in for Prometheus's HTTP API whose answer to a query holding one of `by_query`'s keys is that
    (status, body); every other query answers no series; its configuration scrapes every 15 s."""
    import json
    import urllib.parse

    from tests.support.http import ScriptedHTTP

    config = json.dumps({"status": "success", "data": {
        "yaml": "global:\n  scrape_interval: 15s\nscrape_configs:\n- job_name: models\n"}})
    empty = {"status": "success", "data": {"resultType": "vector", "result": []}}

    def answer(path: str, headers: dict[str, str]) -> tuple[int, str, str]:
        if path.startswith("/api/v1/status/config"):
            return 200, "application/json", config
        query = urllib.parse.unquote_plus(path)
        status, body = next((a for key, a in by_query.items() if key in query), (200, empty))
        return status, "application/json", json.dumps(body)

    return ScriptedHTTP(answer)


DOWN = (503, {"status": "error", "errorType": "unavailable", "error": "overloaded"})
SEVEN = (200, {"status": "success", "data": {"resultType": "vector", "result": [{"metric": {}, "value": [0, "7"]}]}})
REJECTED = (400, {"status": "error", "errorType": "bad_data", "error": "parse error"})


def _analyze_checks(tmp_path: Path, server: Any, *queries: str) -> tuple[int, str, str]:
    pol = tmp_path / "custom.yaml"
    pol.write_text(yaml.safe_dump({"steps": [10, 100], "checks": [
        {"name": f"c{i}", "kind": "custom", "query": q, "max_value": 1} for i, q in enumerate(queries)]}))
    res = cli.run(["analyze", "rec", "-n", "ml", "--policy", str(pol), "--prometheus-url", server.url,
                   "--stable-version", "v1", "--canary-version", "v2", "--window", "5m"], env={"KUBECONFIG": ""})
    return res.returncode, res.stdout, " ".join(res.stderr.split())


@pytest.mark.parametrize("queries,code", [
    pytest.param(("vector(7)", 'down_metric{version="{version}"}'), 1, id="a failed check wins over an unanswered one"),
    pytest.param(('down_metric{version="{version}"}', 'bad_metric{version="{version}"}'), 2,
                 id="a query Prometheus rejects is bad input, after an unanswered one"),
    pytest.param(("vector(0)", 'down_metric{version="{version}"}'), 3, id="one check measured, one unanswered"),
])
def test_analyze_says_prometheus_unavailable_only_of_what_it_could_not_answer(
        tmp_path: Path, queries: tuple[str, ...], code: int) -> None:
    """Decision 571's claims, pinned against a Prometheus that answers some queries: a measured failure (1) and a
    rejected query (2) win over a check Prometheus could not answer (3). And its exit 3 said "nothing measured"
    (of 503s: "Prometheus failed these queries") where another check was measured: only the checks it names were
    not (decision 571's review)."""
    server = _prometheus_answering({"vector(7)": SEVEN, "down_metric": DOWN, "bad_metric": REJECTED})
    try:
        got, out, err = _analyze_checks(tmp_path, server, *queries)
    finally:
        server.close()
    assert got == code, (got, out[-800:], err[-800:])
    if code == 2:
        assert "Prometheus rejected the query (HTTP 400 bad_data: parse error)" in err and out == "", err
    if code == 3:
        assert "error: Prometheus unavailable: check 'c1'" in err and "(not measured: c1)" in err, err
        assert "nothing measured" not in err and "Prometheus failed these queries" in err, err


def test_a_connection_refused_after_other_checks_were_measured_is_not_said_as_down_at_all() -> None:
    """Prometheus restarted while analyze asked: its first checks measured, the next refused. "does not answer at
    all ...: nothing measured" was untrue of it (decision 571's review)."""
    from canary.cli_ops import _unmeasured_remedy
    from canary.errors import MetricsUnavailable

    refused = [MetricsUnavailable("check 'c1': Prometheus at http://p:9090 could not be asked (connection failed)")]
    assert "does not answer at all" in _unmeasured_remedy(refused, every=True)
    said = _unmeasured_remedy(refused, every=False)
    assert "stopped answering" in said and "at all" not in said and "nothing measured" not in said, said


@pytest.mark.parametrize("window", ["8760h", "1000000000", "24h1s"])
def test_a_window_longer_than_a_day_is_bad_input_before_prometheus_is_asked(tmp_path: Path, window: str) -> None:
    """A year, or 10^9 s, was sent as `increase(...[1000000000s])`: a query that loads every sample of the
    retention at once, refused past `--query.max-samples` or timed out after minutes (decision 741). Refused
    before any request: the stand-in Prometheus sees none."""
    server = _prometheus_scraping_every("15s")
    try:
        code, out, err = analyze(tmp_path, "--stable-version", "v1", "--canary-version", "v2", "--window", window,
                                 prometheus=server.url)
        assert code == 2 and out == "", err
        assert "is longer than 24h" in err and "--window 24h or less" in err and "max-samples" in err, err
        assert server.paths == [], server.paths
    finally:
        server.close()


def test_a_window_of_a_day_is_taken(tmp_path: Path) -> None:
    server = _prometheus_scraping_every("15s")
    try:
        code, _, err = analyze(tmp_path, "--stable-version", "v1", "--canary-version", "v2", "--window", "24h",
                               prometheus=server.url)
        assert code == 4 and "longer than" not in err, err  # asked, and no series
    finally:
        server.close()
