"""`canary promote` end to end through the real CLI process, a real Prometheus
(backfilled, 1 s resolution) and the strict Kubernetes API emulator.

Backfilled history has every arm's traffic at a constant rate, whatever the
weights: this tests the promote pipeline (steps, judging, writes, exit codes,
logs), not the data plane; the sandbox e2e tests do that with live traffic.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest
import yaml

from canary import rollout as rl
from canary.logs import parse_json_lines
from canary.sandbox.kubeapi import KubeAPIServer
from canary.sandbox.promserver import PromServer, counter, gauge, histogram, history_window, openmetrics
from tests.support.kube import shipped_istio_objects
from tests.support.prom import HistoryPool

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
CANARY = [sys.executable, "-m", "canary"]
GROUP = "networking.istio.io"
from tests.fleet import BOUNDS_S  # noqa: E402  x1.05 around the p95s: a pass can be shown within +20%
PRED_BOUNDS = tuple(round(0.1 * i, 1) for i in range(1, 11))


def latency_rates(scale_s: float, rps: float) -> list[float]:
    """Per-bucket rates of a lognormal latency with median `scale_s` (exact probabilities)."""
    from scipy.stats import lognorm

    cdf = [lognorm.cdf(b, 0.4, scale=scale_s) for b in BOUNDS_S] + [1.0]
    return list(rps * np.diff([0.0, *cdf]))


def arm_series(version: str, *, scale_s: float, rps: float = 800.0, err: float = 0.01) -> list[Any]:
    m = {"model_name": "rec-model", "model_version": version}
    pred = list(rps * np.array([0.02, 0.05, 0.1, 0.15, 0.18, 0.18, 0.15, 0.1, 0.05, 0.02, 0.0]))
    out = histogram("model_inference_duration_seconds", m, BOUNDS_S, latency_rates(scale_s, rps))
    out += histogram("model_prediction_value", m, PRED_BOUNDS, pred)
    out += counter("model_requests_total", {**m, "outcome": "success"}, rps * (1 - err))
    out += counter("model_requests_total", {**m, "outcome": "error"}, rps * err)
    out += gauge("model_feature_missing_rate", {**m, "feature_name": "age"}, 0.02)
    return out


def history(after_s: float) -> str:
    """Four arms of rec-model from 120 s ago to `after_s` ahead, on a 1 s grid."""
    start, end = history_window(before_s=120, after_s=after_s, step=1.0)
    series = arm_series("v1", scale_s=0.040) + arm_series("v2", scale_s=0.040) + arm_series("v3", scale_s=0.060)
    series += arm_series("v4", scale_s=0.040, err=0.10)  # as fast as stable, ten times its errors
    return openmetrics(series, start=start, end=end, step=1.0)


@pytest.fixture(scope="module")
def prometheus(history_pool: HistoryPool) -> PromServer:
    """The four arms' history, shared with the other modules of this process that read it (`HistoryPool`)."""
    return history_pool.get("promote", history)


POLICY = {
    "steps": [20, 50, 100],
    "analysis": {"interval": "3s", "look_every": "1s", "min_canary_requests": 20, "alpha": 0.01},
    "failure": {"max_failed_looks": 2, "no_data_deadline": "6s"},
    "metrics": {"source": "model", "scrape_interval": "1s"},  # the backfilled history's resolution
    "checks": [
        {"name": "latency-p95", "kind": "latency", "max_increase_pct": 20},
        {"name": "errors", "kind": "error_rate", "max_increase_points": 2},
        {"name": "predictions", "kind": "prediction_shift", "max_psi": 0.25},
    ],
}


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[KubeAPIServer, Path, Path]]:
    api = KubeAPIServer(seed=shipped_istio_objects()).start()
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "sandbox",
        "clusters": [{"name": "sandbox", "cluster": {"server": api.url}}],
        "users": [{"name": "sandbox", "user": {}}],
        "contexts": [{"name": "sandbox", "context": {"cluster": "sandbox", "user": "sandbox", "namespace": "ml"}}],
    }))
    policy = tmp_path / "policy.yaml"
    policy.write_text(yaml.safe_dump(POLICY))
    yield api, kubeconfig, policy
    api.stop()


def promote(kubeconfig: Path, policy: Path, prom_url: str, version: str, *extra: str,
            process: bool = False) -> subprocess.CompletedProcess[str]:
    """`canary promote` of `version`, the real CLI in this process (tests/support/cli.py; pytest-timeout bounds
    it), or with `process` a `canary` process of its own (what happens before it exits); the tests of signals
    start theirs."""
    from tests.support import cli

    args = ["promote", "rec-model", "--canary-version", version, "--policy", str(policy), "--namespace", "ml",
            "--kubeconfig", str(kubeconfig), "--output", "json", "--log-format", "json", *extra]
    env = {"KUBECONFIG": "", "CANARY_PROMETHEUS_URL": prom_url}
    if process:
        return subprocess.run([*CANARY, *args], capture_output=True, text=True, timeout=120,
                              env={**os.environ, **env}, cwd=ROOT)
    return cli.run(args, env=env)


def vs_state(api: KubeAPIServer) -> tuple[list[int], dict[str, Any]]:
    vs = api.get(GROUP, "virtualservices", "ml", "rec-model")
    assert vs is not None
    weights = [d["weight"] for d in vs["spec"]["http"][0]["route"]]
    return weights, json.loads(vs["metadata"]["annotations"]["modelcanary.dev/rollout"])


def subsets(api: KubeAPIServer) -> dict[str, str]:
    dr = api.get(GROUP, "destinationrules", "ml", "rec-model")
    assert dr is not None
    return {s["name"]: s["labels"]["version"] for s in dr["spec"]["subsets"]}


def test_good_canary_is_promoted(cluster: Any, prometheus: PromServer) -> None:
    api, kubeconfig, policy = cluster
    before = api.get(GROUP, "virtualservices", "ml", "rec-model")
    res = promote(kubeconfig, policy, prometheus.url, "v2")
    assert res.returncode == 0, res.stderr[-3000:]
    out = json.loads(res.stdout)
    assert out["phase"] == rl.PROMOTED and out["exit_code"] == 0
    weights, state = vs_state(api)
    assert weights == [100, 0] and state["phase"] == rl.PROMOTED
    assert subsets(api) == {"stable": "v2", "canary": "v2"}  # the next release starts from a normal state
    names = [e["event"] for e in parse_json_lines(res.stderr)]
    for name in ("rollout.started", "step.advanced", "rollout.promoting", "rollout.promoted"):
        assert name in names
    after = api.get(GROUP, "virtualservices", "ml", "rec-model")
    assert after["spec"]["http"][0]["retries"] == before["spec"]["http"][0]["retries"]
    k8s_events = api.list("", "events", "ml")
    assert any(e.get("reason") == "RolloutPromoted" for e in k8s_events)


def test_slow_canary_is_rolled_back_with_evidence(cluster: Any, prometheus: PromServer) -> None:
    api, kubeconfig, policy = cluster
    res = promote(kubeconfig, policy, prometheus.url, "v3")
    assert res.returncode == 1, res.stderr[-3000:]
    weights, state = vs_state(api)
    assert weights == [100, 0] and state["phase"] == rl.ROLLED_BACK
    assert subsets(api)["stable"] == "v1"  # rollback leaves stable as it was
    done = [e for e in parse_json_lines(res.stderr) if e["event"] == "rollback.completed"]
    assert len(done) == 1
    ev = done[0]
    assert ev["model"] == "rec-model" and ev["canary_version"] == "v3" and ev["weights"] == "100/0"
    lat = [r for r in ev["evidence"] if r["check"] == "latency-p95"][0]
    assert lat["outcome"] == "fail" and lat["canary_value"] > lat["stable_value"] * 1.2
    assert lat["n_canary"] > 0 and lat["p_value"] is not None and "p95" in lat["reason"]


def test_a_failing_check_unmeasured_every_other_look_still_rolls_back_on_its_failed_looks(
        cluster: Any, prometheus: PromServer) -> None:
    """Decision 166: a canary with ten times stable's errors whose error-rate query fails one look in two
    (a loaded Prometheus: 503s past the query's retries). The unmeasured look between two failed ones
    reset the run (max_failed_looks 2): 'failed look 1 of 2' at every failed look, the canary on traffic
    until the step's deadline. Now that look neither adds a failed look nor ends the run: rolled back at
    the second failed look, on the evidence, before the deadline."""
    from urllib.parse import unquote_plus, urlparse

    from tests.support.blackhole import BlackholeProxy

    api, kubeconfig, policy = cluster
    up = urlparse(prometheus.url)
    proxy = BlackholeProxy(up.hostname or "127.0.0.1", up.port or 80).start()
    looks: list[str] = []  # each look's instant (its queries' `time=`), in the order its error query came

    def unmeasured(line: bytes) -> bool:
        """The canary's error-count query of every second look, its retries too (the same instant)."""
        text = unquote_plus(line.decode("latin-1"))
        if 'model_version="v4",outcome="error"' not in text or "&time=" not in text:
            return False
        at = text.split("&time=", 1)[1].split()[0]
        if at not in looks:
            looks.append(at)
        return looks.index(at) % 2 == 1

    proxy.blackhole, proxy.answer, proxy.hold_only = True, 503, unmeasured
    try:
        res = promote(kubeconfig, policy, proxy.url, "v4")
    finally:
        proxy.stop()
    assert res.returncode == 1, res.stderr[-3000:]
    out = json.loads(res.stdout)
    assert out["phase"] == rl.ROLLED_BACK, out
    events = parse_json_lines(res.stderr)
    judged = [e for e in events if e["event"] == "look.completed"]
    seq = [e["checks"]["errors"] for e in judged]  # preflight's query may have taken the first instant
    assert seq[-3:] == ["fail", "error", "fail"] and all(a != b for a, b in zip(seq, seq[1:])), seq
    assert all(e["outcome"] == "error" for e in judged if e["checks"]["errors"] == "error"), judged
    assert [e["failed_looks"] for e in events if e["event"] == "check.failed"] == [1, 2]
    weights, state = vs_state(api)
    assert weights == [100, 0] and state["phase"] == rl.ROLLED_BACK
    assert state["reason"].startswith("errors: ") and "deadline" not in state["reason"], state["reason"]


def test_a_canary_version_no_pod_serves_is_rolled_back_as_unrouted(cluster: Any, prometheus: PromServer) -> None:
    """Decision 110: `--canary-version v9` (a typo: nothing serves it) used to keep its 20% for the whole step
    deadline, every look "could not measure canary: NoData", and end on "no data". Stable's count over a
    window at 20% makes zero canary requests beyond doubt: a hard breach, named so."""
    api, kubeconfig, policy = cluster
    res = promote(kubeconfig, policy, prometheus.url, "v9")
    assert res.returncode == 1, res.stderr[-3000:]
    weights, state = vs_state(api)
    assert weights == [100, 0] and state["phase"] == rl.ROLLED_BACK
    assert subsets(api)["stable"] == "v1"
    done = [e for e in parse_json_lines(res.stderr) if e["event"] == "rollback.completed"]
    assert len(done) == 1, res.stderr[-3000:]
    assert "the canary got no requests at 20% while stable got" in done[0]["reason"], done[0]["reason"]
    assert "do pods labelled version=v9 exist" in done[0]["reason"] and "deadline" not in done[0]["reason"]
    unrouted = [r for r in done[0]["evidence"] if "unrouted" in r["extra"]]
    assert {r["check"] for r in unrouted} == {"latency-p95", "errors"}  # the request-counting checks
    assert all(r["outcome"] == "fail" and r["hard"] and r["n_canary"] == 0 and r["n_stable"] > 0 for r in unrouted)


def test_prometheus_down_exits_3_and_touches_nothing(cluster: Any) -> None:
    api, kubeconfig, policy = cluster
    before = api.get(GROUP, "virtualservices", "ml", "rec-model")
    res = promote(kubeconfig, policy, "http://127.0.0.1:9", "v2")  # nothing listens on port 9
    assert res.returncode == 3, res.stderr[-3000:]
    assert api.get(GROUP, "virtualservices", "ml", "rec-model") == before  # checked before traffic moved
    # -o json promises a document on stdout on every path: the exit code and the error, no phase
    out = json.loads(res.stdout)
    assert out["exit_code"] == 3 and out["phase"] is None and "could not complete" in out["error"]


@pytest.mark.parametrize("change,expect", [
    ({"checks": [{"name": "custom", "kind": "custom", "query": 'rate(model_requests_total{model_version="{version}"})',
                  "max_value": 1}]}, "custom"),  # balanced, but rate() of an instant vector: Prometheus says 400
    ({"metrics": {"source": "model", "arm_label": "model-version"}}, "arm_label"),
])
def test_a_policy_prometheus_would_refuse_exits_2_and_touches_nothing(cluster: Any, prometheus: PromServer,
                                                                      tmp_path: Path, change: dict[str, Any],
                                                                      expect: str) -> None:
    api, kubeconfig, _ = cluster
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({**POLICY, **change}))
    before = api.get(GROUP, "virtualservices", "ml", "rec-model")
    res = promote(kubeconfig, bad, prometheus.url, "v2")
    assert res.returncode == 2 and expect in res.stderr, res.stderr[-2000:]
    assert "Traceback" not in res.stderr
    assert api.get(GROUP, "virtualservices", "ml", "rec-model") == before


@pytest.mark.parametrize("change,blind", [
    # a mistyped label: every query of both arms matches nothing
    ({"metrics": {"source": "model", "labels": {"cluster": "eu-1"}, "scrape_interval": "1s"}},
     "checks[0] 'latency-p95', checks[1] 'errors', checks[2] 'predictions', request counts"),
    # default.yaml's mix against a Prometheus without Istio metrics: predictions has data, the request count none
    ({"metrics": {"source": "istio", "scrape_interval": "1s"}, "checks": [
        {"name": "latency-p95", "kind": "latency", "max_increase_pct": 20},
        {"name": "predictions", "kind": "prediction_shift", "source": "model", "max_psi": 0.25}]},
     "checks[0] 'latency-p95', request counts"),
    # decision 260: a check's own request count (found) does not make its query compare: a custom query and a
    # prediction `metric` that match nothing were a warning, then every look an error to the deadline, exit 1
    ({"checks": [{"name": "ratio", "kind": "custom", "max_ratio": 2,
                  "query": 'sum(rate(model_requestz_total{model_version="{version}"}[{window}]))'}]},
     "checks[0] 'ratio'"),
    ({"checks": [{"name": "predictions", "kind": "prediction_shift", "metric": "model_predictoin_value",
                  "max_psi": 0.25}]}, "checks[0] 'predictions'"),
])
def test_no_stable_data_to_judge_exits_2_before_traffic_moves(cluster: Any, prometheus: PromServer, tmp_path: Path,
                                                             change: dict[str, Any], blind: str) -> None:
    """Decision 110: it used to move to 80/20 and error "no data" at every look to the deadline, exit 1."""
    api, kubeconfig, _ = cluster
    bad = tmp_path / "labels.yaml"
    bad.write_text(yaml.safe_dump({**POLICY, **change}))
    before = api.get(GROUP, "virtualservices", "ml", "rec-model")
    res = promote(kubeconfig, bad, prometheus.url, "v2")
    assert res.returncode == 2, res.stderr[-3000:]
    out = json.loads(res.stdout)
    assert out["exit_code"] == 2 and f"no stable (v1) data over the last 3s for {blind}:" in out["error"]
    assert "metrics.labels" in out["error"] and "metrics.source" in out["error"]
    names = [e["event"] for e in parse_json_lines(res.stderr)]
    assert "metrics.preflight_empty_stable" in names and "metrics.preflight_passed" not in names
    assert "rollout.started" not in names
    assert api.get(GROUP, "virtualservices", "ml", "rec-model") == before


def test_a_check_compared_with_stable_that_finds_no_stable_data_exits_2_before_traffic_moves(
        cluster: Any, prometheus: PromServer, tmp_path: Path) -> None:
    """Decision 261: a mistyped prediction `metric` beside checks with data was a warning; the check was ERROR at
    every look (no stable to compare with), so no step could pass: 80/20 to the deadline, exit 1, a good canary."""
    api, kubeconfig, _ = cluster
    bad = tmp_path / "typo.yaml"
    bad.write_text(yaml.safe_dump({**POLICY, "checks": [*POLICY["checks"][:2], {
        "name": "predictions", "kind": "prediction_shift", "metric": "model_predictoin_value", "max_psi": 0.25}]}))
    before = api.get(GROUP, "virtualservices", "ml", "rec-model")
    res = promote(kubeconfig, bad, prometheus.url, "v2")
    assert res.returncode == 2, res.stderr[-3000:]
    out = json.loads(res.stdout)
    assert out["exit_code"] == 2 and out["phase"] is None
    assert ("no stable (v1) data over the last 3s for checks[2] 'predictions' (max_psi compared with stable): "
            in out["error"]) and "model_predictoin_value_bucket" in out["error"]
    names = [e["event"] for e in parse_json_lines(res.stderr)]
    assert names.count("metrics.preflight_empty_stable") == 1 and "rollout.started" not in names
    assert api.get(GROUP, "virtualservices", "ml", "rec-model") == before


def test_a_prometheus_url_that_is_not_a_prometheus_api_exits_2_and_touches_nothing(cluster: Any,
                                                                                  prometheus: PromServer) -> None:
    api, kubeconfig, policy = cluster
    before = api.get(GROUP, "virtualservices", "ml", "rec-model")
    res = promote(kubeconfig, policy, prometheus.url + "/not-here", "v2")  # answers 404
    assert res.returncode == 2 and "Prometheus" in res.stderr, res.stderr[-2000:]
    assert api.get(GROUP, "virtualservices", "ml", "rec-model") == before


def test_bad_policy_exits_2_and_touches_nothing(cluster: Any, tmp_path: Path) -> None:
    api, kubeconfig, _ = cluster
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({**POLICY, "steps": [50, 20, 100]}))
    before = api.get(GROUP, "virtualservices", "ml", "rec-model")
    res = promote(kubeconfig, bad, "http://127.0.0.1:9", "v2")
    assert res.returncode == 2 and f"{bad}: steps" in res.stderr
    assert json.loads(res.stdout)["exit_code"] == 2
    assert api.get(GROUP, "virtualservices", "ml", "rec-model") == before


def test_missing_virtual_service_exits_2(cluster: Any, prometheus: PromServer) -> None:
    from tests.support import cli  # in this process: an exception would fail the test (catch_exceptions=False)

    api, kubeconfig, policy = cluster
    res = cli.run(["promote", "nope", "--canary-version", "v2", "--policy", str(policy), "-n", "ml",
                   "--kubeconfig", str(kubeconfig), "--prometheus-url", prometheus.url], env={"KUBECONFIG": ""})
    assert res.returncode == 2 and "nope" in res.stderr and "Traceback" not in res.stderr


def test_concurrent_edit_of_the_virtual_service_is_survived(cluster: Any, prometheus: PromServer) -> None:
    api, kubeconfig, policy = cluster

    def foreign_edit() -> None:
        api.edit(GROUP, "virtualservices", "ml", "rec-model",
                 lambda vs: vs["spec"]["http"][0].__setitem__("timeout", "7s"))

    for _ in range(3):  # three of the rollout's writes race a person editing the timeout
        api.before_next_write(foreign_edit)
    res = promote(kubeconfig, policy, prometheus.url, "v2")
    assert res.returncode == 0, res.stderr[-3000:]
    vs = api.get(GROUP, "virtualservices", "ml", "rec-model")
    assert vs["spec"]["http"][0]["timeout"] == "7s"  # their edit kept
    assert [d["weight"] for d in vs["spec"]["http"][0]["route"]] == [100, 0]


def _promote_then_signal(kubeconfig: Path, policy: Path, prom_url: str, api: KubeAPIServer,
                         *extra: str) -> subprocess.CompletedProcess[str]:
    """Start promote and send SIGTERM once the canary has traffic: from a proxy before the API server, at the first
    request read once the route is split, before it is forwarded (`run_acting_at`). Polled by the test's thread,
    a loaded machine could let the rollout go on first (step 2 3 s later, promoted 6 s later: exit 0)."""
    import signal

    from tests.integration.test_interrupt_grace import run_acting_at
    from tests.support.blackhole import weights

    return run_acting_at(
        api, kubeconfig, lambda kc: [*CANARY, "promote", "rec-model", "--canary-version", "v2", "--policy", str(policy),
                                     "--namespace", "ml", "--kubeconfig", str(kc), "--output", "json", "--log-format",
                                     "json", *extra],
        {**os.environ, "KUBECONFIG": "", "CANARY_PROMETHEUS_URL": prom_url},
        when=lambda: weights(api)[1] > 0, act=lambda proc: proc.send_signal(signal.SIGTERM))


def test_sigterm_rolls_back_by_default(cluster: Any, prometheus: PromServer) -> None:
    api, kubeconfig, policy = cluster
    res = _promote_then_signal(kubeconfig, policy, prometheus.url, api)
    assert res.returncode == 3, res.stderr[-2000:]
    weights, state = vs_state(api)
    # which signal stopped it (decision 115): a CI job cancelled or a pod evicted, not someone's Ctrl-C
    assert weights == [100, 0] and state["phase"] == rl.ABORTED and state["reason"] == "interrupted by SIGTERM"


def test_sigterm_with_pause_keeps_a_resumable_state(cluster: Any, prometheus: PromServer) -> None:
    api, kubeconfig, policy = cluster
    res = _promote_then_signal(kubeconfig, policy, prometheus.url, api, "--on-interrupt", "pause")
    assert res.returncode == 130, res.stderr[-2000:]
    weights, state = vs_state(api)
    assert weights[1] > 0 and state["phase"] == rl.PAUSED  # split kept, and recorded as such
    again = promote(kubeconfig, policy, prometheus.url, "v2")  # the same command resumes it
    assert again.returncode == 0, again.stderr[-2000:]
    assert "rollout.resumed_from_state" in [e["event"] for e in parse_json_lines(again.stderr)]
    assert vs_state(api)[0] == [100, 0] and subsets(api)["stable"] == "v2"


@pytest.mark.parametrize("edit", ["steps edited", "threshold loosened", "rewritten, nothing judged changed"])
def test_a_resume_under_another_policy_starts_the_rollout_again(cluster: Any, prometheus: PromServer,
                                                                 edit: str) -> None:
    """A promote interrupted (paused at its first step) is re-run with an edited policy file: the
    rollout's looks were judged under the old one (the record names it: `judged`, written with the
    claim). It used to resume and judge the rest under the new policy: edited steps were taken up at
    the recorded step's index of the new list; a loosened threshold passed on evidence gathered
    under the strict one. Now the recorded rollout goes to stable 100% (`superseded: ...`) and this promote
    starts it again from the first step. A rewrite that changes nothing judged still resumes."""
    api, kubeconfig, policy = cluster
    res = _promote_then_signal(kubeconfig, policy, prometheus.url, api, "--on-interrupt", "pause")
    assert res.returncode == 130, res.stderr[-2000:]
    _, paused = vs_state(api)
    assert paused["phase"] == rl.PAUSED and paused["judged"]
    pol = json.loads(json.dumps(POLICY))
    if edit == "steps edited":
        pol["steps"] = [50, 100]
    elif edit == "threshold loosened":
        pol["checks"][0]["max_increase_pct"] = 80
    else:
        pol = {k: pol[k] for k in reversed(list(pol))}
        pol["checks"] = list(reversed(pol["checks"]))
    policy.write_text(yaml.safe_dump(pol, sort_keys=False))
    again = promote(kubeconfig, policy, prometheus.url, "v2")
    assert again.returncode == 0, again.stderr[-2000:]
    events = parse_json_lines(again.stderr)
    names = [e["event"] for e in events]
    weights, final = vs_state(api)
    assert weights == [100, 0] and final["phase"] == rl.PROMOTED
    if edit.startswith("rewritten"):
        assert "rollout.resumed_from_state" in names and "rollout.superseded" not in names
        assert final["started_at"] == paused["started_at"]
        return
    assert "rollout.resumed_from_state" not in names
    said = next(e for e in events if e["event"] == "rollout.superseded")
    section = "steps" if edit == "steps edited" else "checks"
    assert said["reason"].startswith(f"superseded: the policy's {section} changed since the rollout began")
    assert final["started_at"] > paused["started_at"] and final["look"] > 0
    if edit == "steps edited":
        assert "50/50" in [h.get("weights") for h in final["history"]]


@pytest.mark.parametrize("first, then", [((), ("--route", "primary")), (("--route", "primary"), ())])
def test_a_resume_naming_the_route_it_drives_or_dropping_the_name_resumes(
        cluster: Any, prometheus: PromServer, first: tuple[str, ...], then: tuple[str, ...]) -> None:
    """rec-model's only HTTP route is `primary`: a promote re-run that names it (`--route primary`)
    on a rollout claimed with no route, or drops the name, drives the same route and resumes it
    (decision 80 b: the controller used to end its rollouts for that; a resume never compared routes)."""
    api, kubeconfig, policy = cluster
    res = _promote_then_signal(kubeconfig, policy, prometheus.url, api, "--on-interrupt", "pause", *first)
    assert res.returncode == 130, res.stderr[-2000:]
    _, paused = vs_state(api)
    assert paused["phase"] == rl.PAUSED and paused["route"] == ("primary" if first else "")
    again = promote(kubeconfig, policy, prometheus.url, "v2", *then)
    assert again.returncode == 0, again.stderr[-2000:]
    names = [e["event"] for e in parse_json_lines(again.stderr)]
    assert "rollout.resumed_from_state" in names and "rollout.superseded" not in names
    weights, final = vs_state(api)
    assert weights == [100, 0] and final["phase"] == rl.PROMOTED and final["started_at"] == paused["started_at"]


def test_a_resume_on_another_route_exits_2_and_moves_nothing(cluster: Any, prometheus: PromServer) -> None:
    """rec-model's VirtualService gets a second HTTP route, `secondary`; promote --route primary is paused at
    its first step. A re-run with --route secondary exits 2 naming both routes and how to go on, and writes
    nothing (decision 82: it resumed the rollout on `secondary`, and `primary` stayed split); a re-run with
    no --route (none of two routes: it exited 2) resumes on the route recorded and promotes, `secondary`
    untouched."""
    import copy

    api, kubeconfig, policy = cluster

    def second_route(vs: dict[str, Any]) -> None:
        route = copy.deepcopy(vs["spec"]["http"][0])
        route["name"], route["match"] = "secondary", [{"headers": {"x-tier": {"exact": "batch"}}}]
        vs["spec"]["http"].append(route)

    api.edit(GROUP, "virtualservices", "ml", "rec-model", second_route)
    res = _promote_then_signal(kubeconfig, policy, prometheus.url, api, "--on-interrupt", "pause", "--route", "primary")
    assert res.returncode == 130, res.stderr[-2000:]
    before = api.get(GROUP, "virtualservices", "ml", "rec-model")
    other = promote(kubeconfig, policy, prometheus.url, "v2", "--route", "secondary")
    assert other.returncode == 2, other.stderr[-2000:]
    assert "--route secondary" in other.stderr and "canary rollback --route primary" in other.stderr, other.stderr
    assert api.get(GROUP, "virtualservices", "ml", "rec-model") == before
    again = promote(kubeconfig, policy, prometheus.url, "v2")
    assert again.returncode == 0, again.stderr[-2000:]
    resumed = [e for e in parse_json_lines(again.stderr) if e["event"] == "rollout.resumed_from_state"]
    assert resumed and resumed[0]["route"] == "primary"
    vs = api.get(GROUP, "virtualservices", "ml", "rec-model")
    assert [[d["weight"] for d in r["route"]] for r in vs["spec"]["http"]] == [[100, 0], [100, 0]]
    assert vs_state(api)[1]["phase"] == rl.PROMOTED and vs_state(api)[1]["route"] == "primary"


def test_sigterm_during_a_look_on_an_unresponsive_prometheus_goes_to_stable_without_waiting(
        cluster: Any, prometheus: PromServer) -> None:
    from urllib.parse import urlparse

    from tests.support.blackhole import BlackholeProxy, sigterm_trial

    api, kubeconfig, policy = cluster
    up = urlparse(prometheus.url)
    proxy = BlackholeProxy(up.hostname or "127.0.0.1", up.port or 80).start()
    proxy.trickle_s = 1.0  # the held query never times out: it ends (100 s later) only if waited for
    try:
        env = {**os.environ, "KUBECONFIG": "", "CANARY_PROMETHEUS_URL": proxy.url}
        argv = [*CANARY, "promote", "rec-model", "--canary-version", "v2", "--policy", str(policy), "--namespace",
                "ml", "--kubeconfig", str(kubeconfig), "--output", "json", "--log-format", "json"]
        r = sigterm_trial(api, argv, env, proxy, cwd=ROOT)
    finally:
        proxy.stop()
    print(f"\nSIGTERM -> stable 100%: {r['seconds']:.2f} s")
    assert r["exit"] == 3 and r["weights"] == [100, 0] and r["phase"] == rl.ABORTED, r
    events = [e["event"] for e in parse_json_lines(r["stderr"])]
    assert "look.abandoned" in events  # the look waiting on Prometheus was dropped, not waited for
    # Ordering, not speed: stable was back within sigterm_trial's 60 s guard, and the held query, trickled
    # (`trickle_s`), could not end before 100 s: the look was not waited for. It was `seconds <
    # query_bound_s` (5.45 s), the query's own timeout: a loaded host's rollback took longer. The time itself
    # (typically 0.05 s; issue 8 asks <= 5 s) is measured by scripts/bench_sigterm.py.
    assert r["seconds"] < 60, r["seconds"]
