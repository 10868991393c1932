"""A CD pipeline's `canary promote` on a route another job's rollout holds (decision 386).

Exit 2 is "bad input: fix the flags"; a route held by another job's promote (or a CanaryRollout) was exit 2
too, so a pipeline could not tell "retry later" from "your flags are wrong". It is now exit 75 (EX_TEMPFAIL),
the `-o json` document names the holder, and `--wait-busy` waits for the route, bounded.

The real CLI (the holder a `canary` process of its own, split at 80/20 for a 10-minute step; the second
promote in-process or as a process), a real Prometheus (test_promote's backfilled history) and the strict
Kubernetes API emulator. Every event is injected at an observable state (a log line read from a process).
"""

from __future__ import annotations

import json
import signal
import subprocess
import threading
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

from canary.logs import parse_json_lines
from tests.integration.test_promote import (POLICY, ROOT, cluster, prometheus, promote,  # noqa: F401 - fixtures
                                            vs_state)
from tests.integration.test_promote_pipeline import argv, env, lines_until, until_split
from tests.support import cli

pytestmark = pytest.mark.integration
EXIT_BUSY = 75


@pytest.fixture
def holder(cluster: Any, prometheus: Any, tmp_path: Path) -> Iterator[Any]:
    """Start `canary promote <version>` whose first step lasts 10 minutes: it holds the route at 80/20, alive,
    however slowly the test runs. Ended at teardown by SIGTERM (stable 100%)."""
    api, kubeconfig, _ = cluster
    slow = tmp_path / "slow.yaml"
    slow.write_text(yaml.safe_dump({**POLICY, "analysis": {**POLICY["analysis"], "interval": "10m"}}))
    procs: list[subprocess.Popen[str]] = []

    def start(version: str, *, extra_env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        proc = subprocess.Popen(argv(kubeconfig, slow, version, "-o", "json", "--log-format", "json"), cwd=ROOT,
                                env={**env(prometheus.url), **(extra_env or {})}, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        procs.append(proc)
        until_split(proc)
        threading.Thread(target=proc.stderr.read, daemon=True).start()  # type: ignore[union-attr]
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=120)


@pytest.mark.parametrize("version", ["v2", "v3"])
def test_a_route_held_by_a_live_promote_is_exit_75_naming_the_holder(cluster: Any, prometheus: Any, holder: Any,
                                                                     version: str) -> None:
    """A second pipeline's promote while another job's promote of v2 runs: of the same version (the take-over
    refused: its process is alive) or another (the claim refused: a rollout in progress). Exit 2 before ("bad
    input"), now 75, with the holder in the document; nothing written."""
    api, kubeconfig, policy = cluster
    held = holder("v2")
    owner = vs_state(api)[1]["owner"]
    res = promote(kubeconfig, policy, prometheus.url, version)
    assert res.returncode == EXIT_BUSY, (res.returncode, res.stdout, res.stderr[-2000:])
    doc = json.loads(res.stdout)
    assert doc["exit_code"] == EXIT_BUSY and doc["phase"] is None
    assert doc["holder"].startswith("promote#") and f":{held.pid}:" in doc["holder"], doc
    assert "run by `canary promote`" in doc["error"], doc["error"]
    assert doc["error"].endswith("give --wait-busy DURATION to wait for it"), doc["error"]  # what a pipeline can do
    weights, rec = vs_state(api)  # the holder's heartbeats go on: its record, its split
    assert weights == [80, 20] and rec["owner"] == owner and rec["canary_version"] == "v2"
    assert held.poll() is None  # and the holder goes on


def test_wait_busy_is_bounded_then_exit_75_saying_it_waited(cluster: Any, prometheus: Any, holder: Any) -> None:
    """`--wait-busy 1s` on a route a live promote holds all along: it waits (`preflight.waiting_for_route`,
    once, naming the holder), then exit 75 saying how long it waited; nothing written."""
    api, kubeconfig, policy = cluster
    held = holder("v2")
    res = promote(kubeconfig, policy, prometheus.url, "v3", "--wait-busy", "1s")
    assert res.returncode == EXIT_BUSY, (res.stdout, res.stderr[-2000:])
    assert "(--wait-busy 1s)" in json.loads(res.stdout)["error"]
    waiting = [e for e in parse_json_lines(res.stderr) if e["event"] == "preflight.waiting_for_route"]
    assert len(waiting) == 1 and f":{held.pid}:" in waiting[0]["holder"], waiting
    assert vs_state(api)[0] == [80, 20] and held.poll() is None


def waiting_promote(kubeconfig: Path, policy: Path, prom_url: str, *extra: str) -> subprocess.Popen[str]:
    """`canary promote v3 --wait-busy 10m` as a process, read up to its `preflight.waiting_for_route` line."""
    proc = subprocess.Popen(argv(kubeconfig, policy, "v3", "-o", "json", "--log-format", "json", "--wait-busy",
                                 "10m", *extra), cwd=ROOT, env=env(prom_url), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    lines_until(proc, "preflight.waiting_for_route")
    return proc


def test_wait_busy_claims_the_route_once_the_holder_has_ended(cluster: Any, prometheus: Any, holder: Any) -> None:
    """The job waiting with `--wait-busy` while on-call rolls the holder's v2 back: it then claims the route and
    runs its v3 as if started after that end (v3 is slower than stable: judged and rolled back, exit 1)."""
    api, kubeconfig, policy = cluster
    held = holder("v2")
    owner = vs_state(api)[1]["owner"]
    waiter = waiting_promote(kubeconfig, policy, prometheus.url)
    assert vs_state(api)[1]["owner"] == owner  # nothing of the waiter's written
    ended = cli.run(["rollback", "rec-model", "-n", "ml", "--kubeconfig", str(kubeconfig)], env={"KUBECONFIG": ""})
    assert ended.returncode == 0, ended.stderr[-2000:]
    out, err = waiter.communicate(timeout=180)
    assert waiter.returncode == 1, (out, err[-3000:])
    assert json.loads(out)["phase"] == "rolled_back"
    weights, rec = vs_state(api)
    assert weights == [100, 0] and rec["canary_version"] == "v3" and rec["owner"] != owner
    assert "look.completed" in {e["event"] for e in parse_json_lines(err)}  # claimed, judged
    held.communicate(timeout=120)
    assert held.returncode == 1  # the holder saw on-call's rollback


def test_a_signal_while_waiting_for_the_route_is_exit_3_nothing_written(cluster: Any, prometheus: Any,
                                                                        holder: Any) -> None:
    """A cancelled job waiting for the route: exit 3 at once, the document saying nothing was written."""
    api, kubeconfig, policy = cluster
    holder("v2")
    waiter = waiting_promote(kubeconfig, policy, prometheus.url)
    waiter.send_signal(signal.SIGTERM)
    out, err = waiter.communicate(timeout=120)
    assert waiter.returncode == 3, (out, err[-2000:])
    error = json.loads(out)["error"]
    assert "while waiting for the rollout holding the route to end" in error and "nothing was written" in error
    assert vs_state(api)[0] == [80, 20]


GITHUB_JOB = {"GITHUB_ACTIONS": "true", "GITHUB_SERVER_URL": "https://github.com", "GITHUB_REPOSITORY": "acme/models",
              "GITHUB_RUN_ID": "9876543210", "GITHUB_RUN_ATTEMPT": "2"}
RUN_URL = "https://github.com/acme/models/actions/runs/9876543210/attempts/2"


def test_the_holder_is_named_by_its_ci_job_in_the_refusal_and_in_status(cluster: Any, prometheus: Any,
                                                                       holder: Any) -> None:
    """The holder runs in a GitHub Actions job: its record names the run (with its attempt), and the busy
    refusal, its document and `canary status` (text and JSON) name it after the host and pid, which on a hosted
    runner or a pod name no job on-call can find (decision 387). A variable that is no clean URL is not
    recorded, and said by its name only."""
    api, kubeconfig, policy = cluster
    holder("v2", extra_env=GITHUB_JOB)
    assert vs_state(api)[1]["job"] == RUN_URL
    res = promote(kubeconfig, policy, prometheus.url, "v2")
    assert res.returncode == EXIT_BUSY, res.stderr[-2000:]
    doc = json.loads(res.stdout)
    assert doc["holder_job"] == RUN_URL and f"CI job {RUN_URL}" in doc["error"], doc
    base = ["status", "rec-model", "-n", "ml", "--kubeconfig", str(kubeconfig)]
    text = cli.run([*base, "-o", "wide"], env={"KUBECONFIG": "", "COLUMNS": "400"})
    assert f"CI job {RUN_URL}" in " ".join(text.stdout.split()), text.stdout
    st = json.loads(cli.run([*base, "-o", "json"], env={"KUBECONFIG": ""}).stdout)
    assert st["rollout"]["job"] == RUN_URL


def test_a_ci_variable_that_is_no_clean_url_is_not_recorded(cluster: Any, prometheus: Any) -> None:
    """A job URL with a user and password in it (a template that pasted a token into it) lands in no
    annotation and no log line: not recorded, `promote.ci_job_unrecorded` names the variable only."""
    api, kubeconfig, policy = cluster
    secret = "https://deploy:hunter2@gitlab.example/ml/-/jobs/7"
    res = cli.run(["promote", "rec-model", "--canary-version", "v2", "--policy", str(policy), "-n", "ml",
                   "--kubeconfig", str(kubeconfig), "-o", "json", "--log-format", "json"],
                  env={"KUBECONFIG": "", "CANARY_PROMETHEUS_URL": prometheus.url, "GITLAB_CI": "true",
                       "CI_JOB_URL": secret})
    assert res.returncode == 0, res.stderr[-2000:]
    said = [e for e in parse_json_lines(res.stderr) if e["event"] == "promote.ci_job_unrecorded"]
    assert [e["variable"] for e in said] == ["CI_JOB_URL"] and "hunter2" not in res.stderr + res.stdout
    weights, rec = vs_state(api)
    assert rec["phase"] == "promoted" and "job" not in rec


def test_on_calls_rollback_names_the_job_whose_rollout_it_ended(cluster: Any, prometheus: Any, holder: Any) -> None:
    """`canary rollback` of a rollout a pipeline's promote runs: its lines name that promote and its CI job
    (`ended_owner`, `ended_job`), the job on-call then looks at (its promote exits 1, rolled back)."""
    api, kubeconfig, policy = cluster
    held = holder("v2", extra_env=GITHUB_JOB)
    owner = vs_state(api)[1]["owner"]
    res = cli.run(["rollback", "rec-model", "-n", "ml", "--kubeconfig", str(kubeconfig)], env={"KUBECONFIG": ""})
    assert res.returncode == 0, res.stderr[-2000:]
    done = [e for e in parse_json_lines(res.stderr) if e["event"] == "rollback.completed"]
    assert len(done) == 1 and done[0]["ended_owner"] == owner and done[0]["ended_job"] == RUN_URL, done
    held.communicate(timeout=120)
    assert held.returncode == 1


def test_wait_busy_takes_over_a_rollout_whose_job_was_killed_on_another_runner(cluster: Any, prometheus: Any,
                                                                              holder: Any) -> None:
    """A cancelled job whose promote was SIGKILLed before its rollback (GitHub kills 10 s after its SIGINT) on
    a runner that is gone; the re-run lands on another runner. The record is fresh and its owner cannot be
    asked from here: exit 75 ("run this again after Ns"); with `--wait-busy` it waits until the record is stale
    (2 x look_every + 60 s after its last write), then takes the split over and runs (here: superseded, its
    policy being another, and started again: v2 promoted). The record is made stale only once the waiting
    promote has said it waits (its line read from its stderr), so the test waits on what the promote did, not
    on the clock (it slept 32 s of wall clock before, and a promote that took that long to start would not
    have waited at all)."""
    import time

    api, kubeconfig, policy = cluster
    held = holder("v2")
    held.send_signal(signal.SIGKILL)
    held.wait(timeout=60)

    def elsewhere(age_s: float) -> Any:
        def edit(vs: dict[str, Any]) -> None:
            ann = vs["metadata"]["annotations"]
            rec = json.loads(ann["modelcanary.dev/rollout"])
            rec["owner"] = "promote#gone-runner-7:4026531836:311:ab12cd34"
            # stale once 2 x 600 s (heartbeat) + 60 s old: fresh however slowly the waiter starts (with the
            # holder's 1 s, a waiter slower than 62 s to say it waits found it stale and never waited)
            rec["updated_at"], rec["heartbeat_s"] = time.time() - age_s, 600.0
            ann["modelcanary.dev/rollout"] = json.dumps(rec)
        return edit

    api.edit("networking.istio.io", "virtualservices", "ml", "rec-model", elsewhere(0))  # fresh: written just now
    assert vs_state(api)[0] == [80, 20]
    proc = subprocess.Popen(argv(kubeconfig, policy, "v2", "-o", "json", "--log-format", "json", "--wait-busy", "5m"),
                            cwd=ROOT, env=env(prometheus.url), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        seen = lines_until(proc, "preflight.waiting_for_route")
        api.edit("networking.istio.io", "virtualservices", "ml", "rec-model", elsewhere(3600))  # the job is long gone
        out, rest = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    stderr = "".join(seen) + rest
    assert proc.returncode == 0, (proc.returncode, out, stderr[-3000:])
    events = [e["event"] for e in parse_json_lines(stderr)]
    assert "preflight.waiting_for_route" in events and "rollout.superseded" in events, events
    weights, rec = vs_state(api)
    assert weights == [100, 0] and rec["phase"] == "promoted" and "gone-runner-7" not in rec["owner"]


def test_a_re_run_of_the_killed_job_takes_over_at_once_and_its_cancel_ends_before_githubs_sigkill(
        cluster: Any, prometheus: Any, holder: Any, tmp_path: Path) -> None:
    """GitHub's re-run of a job whose promote was SIGKILLed on a runner that is gone (attempt 1), on another
    runner (attempt 2, the same run id and job): the record is fresh, so it was exit 75 "run this again after
    Ns" (or a `--wait-busy` of 2 x look_every + 60 s), though GitHub starts a re-run only once the run ended. It
    takes the rollout over at once, recording its own attempt (decision 454). Then that attempt is cancelled too
    (GitHub: SIGINT, SIGKILL 10 s later) while the API server hangs: with no `--interrupt-grace` given, the
    default 25 s outlived the SIGKILL and nothing said how traffic stood; under GitHub Actions the grace is 8 s,
    so it ends by then, exit 6 with `traffic.unsafe` (decision 458). Nothing is timed: the grace's end is the
    process's own."""
    import os
    import time
    from urllib.parse import urlparse

    from tests.support.blackhole import BlackholeProxy, through

    api, kubeconfig, _ = cluster
    attempt = {**GITHUB_JOB, "GITHUB_JOB": "deploy", "GITHUB_RUN_ATTEMPT": "1"}
    held = holder("v2", extra_env=attempt)
    held.send_signal(signal.SIGKILL)
    held.wait(timeout=60)

    def elsewhere(vs: dict[str, Any]) -> None:
        ann = vs["metadata"]["annotations"]
        rec = json.loads(ann["modelcanary.dev/rollout"])
        rec["owner"], rec["updated_at"] = "promote#gone-runner-7:4026531836:311:ab12cd34", time.time()
        # fresh for 2 x 600 + 60 s however slowly attempt 2 starts (look_every's 1 s gave 62 s): taken over at once,
        # never as stale
        rec["heartbeat_s"] = 600.0
        ann["modelcanary.dev/rollout"] = json.dumps(rec)

    api.edit("networking.istio.io", "virtualservices", "ml", "rec-model", elsewhere)
    assert vs_state(api)[0] == [80, 20] and vs_state(api)[1]["job_key"].endswith(":1")
    up = urlparse(api.url)
    proxy = BlackholeProxy(up.hostname or "127.0.0.1", up.port or 80).start()
    # the holder's policy (a 10-minute step): resumed, not superseded, it waits for its look when cancelled
    proc = subprocess.Popen(argv(through(proxy, kubeconfig), tmp_path / "slow.yaml", "v2", "-o", "json",
                                 "--log-format", "json"),
                            cwd=ROOT, env={**env(prometheus.url), **attempt, "GITHUB_RUN_ATTEMPT": "2"},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        seen = lines_until(proc, "rollout.resumed_from_state")
        rec = vs_state(api)[1]
        assert rec["job"].endswith("/attempts/2") and rec["job_key"].endswith(":2"), rec
        proxy.blackhole = True  # the API server accepts and never answers from now on
        proc.send_signal(signal.SIGINT)  # GitHub's cancel
        out, rest = proc.communicate(timeout=120)
    finally:
        proxy.stop()
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.communicate()
    events = parse_json_lines("".join(seen) + rest)
    took = [e for e in events if e["event"] == "rollout.rerun_takes_over"]
    assert len(took) == 1 and took[0]["holder_job"].endswith("/attempts/1"), took
    grace = [e for e in events if e["event"] == "promote.interrupt_grace_from_ci"]
    assert len(grace) == 1 and grace[0]["interrupt_grace_s"] == 8.0 and grace[0]["ci"] == "GitHub Actions", grace
    assert proc.returncode == 6, rest[-3000:]
    assert "the 8 s after SIGINT (--interrupt-grace) are spent" in json.loads(out)["error"], out
    assert [e["weights"] for e in events if e["event"] == "traffic.unsafe"] == ["80/20"]
    assert vs_state(api)[0] == [80, 20]  # nothing reached the API server: the line says so truly


BAD_QUERY = {"checks": [{"name": "custom", "kind": "custom", "max_value": 1,
                         "query": 'rate(model_requests_total{model_version="{version}"})'}]}  # Prometheus: 400


@pytest.mark.parametrize(("change", "extra", "expect"), [
    (BAD_QUERY, (), "custom"),
    ({}, ("--stable-version", "v3"), "is --stable-version too"),  # before the route is read (decision 743)
], ids=["query-prometheus-rejects", "stable-version-is-the-canary"])
def test_bad_input_on_a_busy_route_is_exit_2_at_once_not_75(cluster: Any, prometheus: Any, holder: Any,
                                                            tmp_path: Path, change: dict[str, Any],
                                                            extra: tuple[str, ...], expect: str) -> None:
    """A route held by another job's promote, and a promote whose input is wrong whoever holds it (a policy
    query Prometheus rejects, `--stable-version` the canary version too): exit 2 naming it, at once, nothing
    written. It was exit 75 ("busy, retry later": a retry rule on 75 retried the typo), and `--wait-busy`
    waited its whole duration before saying it (decision 400)."""
    api, kubeconfig, _ = cluster
    held = holder("v2")
    owner = vs_state(api)[1]["owner"]
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({**POLICY, **change}))
    res = promote(kubeconfig, bad, prometheus.url, "v3", "--wait-busy", "2s", *extra)
    assert res.returncode == 2, (res.returncode, res.stdout, res.stderr[-2000:])
    doc = json.loads(res.stdout)
    assert doc["exit_code"] == 2 and expect in doc["error"], doc
    assert ("held by another rollout" in doc["error"]) == (expect == "custom"), doc
    assert "preflight.waiting_for_route" not in {e["event"] for e in parse_json_lines(res.stderr)}
    weights, rec = vs_state(api)
    assert weights == [80, 20] and rec["owner"] == owner and held.poll() is None


def test_a_holder_edited_by_hand_is_named_escaped_in_the_refusal_and_its_document(cluster: Any, prometheus: Any,
                                                                                  holder: Any) -> None:
    """The route's record is anyone's who may edit the VirtualService: an owner with a newline and an escape
    sequence forged an `error:` line in the pipeline's log (the refusal's stderr line, `jq -r .holder`) and cleared
    a terminal. The busy refusal, its document's `holder` and `preflight.waiting_for_route` show it escaped; the
    record keeps it as written (decision 401)."""
    import time

    api, kubeconfig, policy = cluster
    held = holder("v2")
    held.send_signal(signal.SIGKILL)
    held.wait(timeout=60)
    forged = "promote#runner-7:1:2:ab\nerror: v2 is bad, rolled back\x1b[2J"

    def edit(vs: dict[str, Any]) -> None:
        ann = vs["metadata"]["annotations"]
        rec = json.loads(ann["modelcanary.dev/rollout"])
        rec["owner"], rec["updated_at"] = forged, time.time()
        ann["modelcanary.dev/rollout"] = json.dumps(rec)

    api.edit("networking.istio.io", "virtualservices", "ml", "rec-model", edit)
    res = promote(kubeconfig, policy, prometheus.url, "v3", "--wait-busy", "1s")
    assert res.returncode == EXIT_BUSY, (res.stdout, res.stderr[-2000:])
    assert "\x1b" not in res.stdout + res.stderr and "\nerror: v2 is bad" not in res.stderr
    doc = json.loads(res.stdout)
    assert doc["holder"].isprintable() and "\\n" in doc["holder"] and doc["error"].isprintable(), doc
    waiting = [e for e in parse_json_lines(res.stderr) if e["event"] == "preflight.waiting_for_route"]
    assert len(waiting) == 1 and waiting[0]["holder"].isprintable(), waiting
    assert vs_state(api)[1]["owner"] == forged


@pytest.mark.parametrize(("elsewhere", "said"), [
    (False, "its promote no longer runs (it ran on this machine)"),
    (True, "its promote has not written it for"),
    ("paused", "it is paused: no sweep ends a paused rollout"),
], ids=["gone-here", "quiet-elsewhere", "paused"])
def test_a_busy_refusal_by_a_gone_promote_says_that_only_a_sweep_or_a_rollback_frees_the_route(
        cluster: Any, prometheus: Any, holder: Any, elsewhere: bool | str, said: str) -> None:
    """Another version's rollout whose promote was SIGKILLed (here; or on a runner that is gone, its record
    older than a sweep waits; or paused, which no sweep ends): waiting frees the route only if a sweep runs. The refusal (exit 75) said
    "finish it or run `canary rollback` first" alone; it now says its promote is gone or quiet and what ends
    it (decision 402)."""
    import time

    api, kubeconfig, policy = cluster
    held = holder("v2")
    held.send_signal(signal.SIGKILL)
    held.wait(timeout=60)
    if elsewhere:
        def edit(vs: dict[str, Any]) -> None:
            ann = vs["metadata"]["annotations"]
            rec = json.loads(ann["modelcanary.dev/rollout"])
            rec["owner"], rec["updated_at"] = "promote#gone-runner-7:4026531836:311:ab12cd34", time.time() - 3600
            if elsewhere == "paused":  # as `canary pause` leaves it: held by a person, which no sweep ends
                rec["phase"] = "paused"
            ann["modelcanary.dev/rollout"] = json.dumps(rec)

        api.edit("networking.istio.io", "virtualservices", "ml", "rec-model", edit)
    res = promote(kubeconfig, policy, prometheus.url, "v3")
    assert res.returncode == EXIT_BUSY, (res.stdout, res.stderr[-2000:])
    error = json.loads(res.stdout)["error"]
    assert said in error and "`canary rollback`" in error and "sweep" in error, error
    assert vs_state(api)[0] == [80, 20]
