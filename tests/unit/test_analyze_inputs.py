"""`canary analyze` refuses, as bad input (exit 2) before asking Prometheus, what would otherwise come back as
a verdict that says nothing: a window no increase() can be taken over, and one version on both sides."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

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
