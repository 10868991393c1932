"""`canary promote` as a CD pipeline runs it, not as a person at a terminal does: its stderr piped
into a log shipper that goes away, its `-o json` read by a step that exits early, started with
stdout or stderr closed, its session hung up (decision 116).

The real CLI process, a real Prometheus (test_promote's backfilled history) and the strict
Kubernetes API emulator. Every event is injected at an observable state (a log line read from the
process), never timed: each assertion holds wherever in the rollout the event lands.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from canary.logs import parse_json_lines
from tests.integration.test_promote import CANARY, POLICY, ROOT, cluster, prometheus, vs_state  # noqa: F401 - fixtures

pytestmark = pytest.mark.integration


def argv(kubeconfig: Path, policy: Path, version: str, *extra: str) -> list[str]:
    return [*CANARY, "promote", "rec-model", "--canary-version", version, "--policy", str(policy), "--namespace", "ml",
            "--kubeconfig", str(kubeconfig), *extra]


def env(prom_url: str) -> dict[str, str]:
    return {**os.environ, "KUBECONFIG": "", "CANARY_PROMETHEUS_URL": prom_url}


def lines_until(proc: subprocess.Popen[str], event: str, *also: str) -> list[str]:
    """The process's stderr lines (JSON logs) up to and including the first of `event` that holds each of `also`;
    AssertionError with its exit code and last lines where the stream ends first."""
    assert proc.stderr is not None
    seen: list[str] = []
    for line in proc.stderr:
        seen.append(line)
        if f'"{event}"' in line and all(a in line for a in also):
            return seen
    raise AssertionError(f"no {event} {' '.join(also)}; exit {proc.wait()}: {''.join(seen)[-3000:]}")


def until_split(proc: subprocess.Popen[str]) -> str:
    """Read the process's stderr up to the line saying traffic is split (step 1 written)."""
    return lines_until(proc, "step.advanced", '"weights": "80/20"')[-1]


def test_a_log_reader_that_goes_away_mid_rollout_leaves_no_split(cluster: Any, prometheus: Any) -> None:
    """`canary promote ... 2>&1 | ship-logs` and the shipper dies while traffic is split: every log line
    after it raised BrokenPipeError inside the rollout, and inside its fail-safe (whose own
    `rollout.failed` line raised again): the process exited 1 ("rolled back") with the route at 80/20
    and no `-o json` document. Now the lines are dropped and the rollout goes on to its end."""
    api, kubeconfig, policy = cluster
    proc = subprocess.Popen(argv(kubeconfig, policy, "v2", "-o", "json", "--log-format", "json"), cwd=ROOT,
                            env=env(prometheus.url), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    until_split(proc)
    assert vs_state(api)[0] == [80, 20]
    proc.stderr.close()  # type: ignore[union-attr]  - the reader goes away; the next log line meets EPIPE
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out
    doc = json.loads(out)
    assert doc["phase"] == "promoted" and doc["exit_code"] == 0
    weights, rec = vs_state(api)
    assert weights == [100, 0] and rec["phase"] == "promoted"


def test_a_json_reader_that_went_away_keeps_the_exit_code(cluster: Any, prometheus: Any) -> None:
    """`canary promote -o json | jq -e ...` where the reader exited first: the promotion finished, then
    the document met EPIPE and click exited 1 -- "rolled back" to the pipeline, with v2 serving all
    traffic. Now the output is lost (`output.lost`), the exit code is the rollout's."""
    api, kubeconfig, policy = cluster
    proc = subprocess.Popen(argv(kubeconfig, policy, "v2", "-o", "json", "--log-format", "json"), cwd=ROOT,
                            env=env(prometheus.url), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    proc.stdout.close()  # type: ignore[union-attr]  - before the only write to stdout (the final document)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-3000:]
    events = parse_json_lines(err)
    lost = [e for e in events if e["event"] == "output.lost"]
    assert lost and lost[0]["stream"] == "stdout", [e["event"] for e in events][-5:]
    assert "Traceback" not in err
    weights, rec = vs_state(api)
    assert weights == [100, 0] and rec["phase"] == "promoted"


@pytest.mark.parametrize("closed,output", [("2>&-", "json"), (">&- 2>&-", "text"), (">&-", "json")])
def test_a_job_started_with_a_standard_stream_closed(cluster: Any, prometheus: Any, closed: str, output: str) -> None:
    """A job whose stderr (or both streams) is closed when promote starts: Python has no sys.stderr,
    and configuring the logs raised AttributeError -- exit 1 ("rolled back") before anything was
    read; with both closed and text output, `sys.stdout.isatty()` raised inside the command: exit 3.
    Now it runs as any other: promoted, exit 0, the output it can write written."""
    api, kubeconfig, policy = cluster
    args = argv(kubeconfig, policy, "v2", "-o", output)
    res = subprocess.run(["bash", "-c", f'exec "$@" {closed}', "promote", *args], cwd=ROOT, env=env(prometheus.url),
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, (res.stdout[-2000:], res.stderr[-2000:])
    if closed == "2>&-":
        assert json.loads(res.stdout)["phase"] == "promoted"
    weights, rec = vs_state(api)
    assert weights == [100, 0] and rec["phase"] == "promoted"


def test_bad_input_with_stderr_closed_is_still_exit_2(cluster: Any, prometheus: Any) -> None:
    """A pipeline template's unset variable (`--canary-version ""`) in a job with stderr closed: exit 2
    and the one JSON document, not click's 1 from a crash before the check."""
    api, kubeconfig, policy = cluster
    res = subprocess.run(["bash", "-c", 'exec "$@" 2>&-', "promote", *argv(kubeconfig, policy, "", "-o", "json")],
                         cwd=ROOT, env=env(prometheus.url), capture_output=True, text=True, timeout=120)
    assert res.returncode == 2, res.stdout
    doc = json.loads(res.stdout)
    assert doc["exit_code"] == 2 and doc["phase"] is None and "label value" in doc["error"]


def test_a_hangup_mid_rollout_sends_stable_100(cluster: Any, prometheus: Any) -> None:
    """The session promote ran in went away (an ssh connection to the deploy host dropped): SIGHUP,
    whose default action killed the process with the route split (left to the sweep minutes later).
    Now it is an interrupt as SIGTERM is: stable 100%, recorded aborted, exit 3. The first step lasts
    10 minutes: the signal lands while the route is split, however slowly this test runs."""
    api, kubeconfig, policy = cluster
    policy.write_text(yaml.safe_dump({**POLICY, "analysis": {**POLICY["analysis"], "interval": "10m"}}))
    proc = subprocess.Popen(argv(kubeconfig, policy, "v2", "-o", "json", "--log-format", "json"), cwd=ROOT,
                            env=env(prometheus.url), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    until_split(proc)
    rest: list[str] = []
    drain = threading.Thread(target=lambda: rest.append(proc.stderr.read()), daemon=True)  # type: ignore[union-attr]
    drain.start()
    proc.send_signal(signal.SIGHUP)
    out = proc.stdout.read()  # type: ignore[union-attr]
    proc.wait(timeout=120)
    drain.join(timeout=60)
    assert proc.returncode == 3, (proc.returncode, out, "".join(rest)[-2000:])
    doc = json.loads(out)
    assert doc["phase"] == "aborted" and doc["exit_code"] == 3
    weights, rec = vs_state(api)
    assert weights == [100, 0] and rec["phase"] == "aborted"


def test_a_step_retried_after_a_rollback_reports_it_and_retry_runs_it_again(cluster: Any, prometheus: Any) -> None:
    """A pipeline retrying a failed step (`retry: 2` on exit 1) ran the rolled-back v3 again from its first
    step: each retry put it back in front of users and drew another chance at a false pass. Now the same
    step re-run reports the recorded rollback (exit 1, nothing written), as a re-run reports a promotion
    (exit 0); `--retry` runs it again; another version is a new rollout as always."""
    from tests.integration.test_promote import promote  # in this process: what is said, not the process's own

    api, kubeconfig, policy = cluster
    first = promote(kubeconfig, policy, prometheus.url, "v3")
    assert first.returncode == 1, first.stderr[-2000:]
    ended = api.get("networking.istio.io", "virtualservices", "ml", "rec-model")
    again = promote(kubeconfig, policy, prometheus.url, "v3")
    assert again.returncode == 1, again.stderr[-2000:]
    doc = json.loads(again.stdout)
    assert doc["phase"] == "rolled_back" and doc["exit_code"] == 1
    assert doc["started_at"] == json.loads(first.stdout)["started_at"]  # that rollout, not a new one
    # said as `--via-controller` says an end it found (decision 248); the first run's own end is not
    assert doc["already_ended"] is True and "already_ended" not in json.loads(first.stdout)
    assert "rollout.already_rolled_back" in [e["event"] for e in parse_json_lines(again.stderr)]
    now = api.get("networking.istio.io", "virtualservices", "ml", "rec-model")
    assert now["metadata"]["resourceVersion"] == ended["metadata"]["resourceVersion"]  # nothing written
    retried = promote(kubeconfig, policy, prometheus.url, "v3", "--retry")
    assert retried.returncode == 1, retried.stderr[-2000:]
    events = [e["event"] for e in parse_json_lines(retried.stderr)]
    assert "rollout.started" in events and "rollout.already_rolled_back" not in events
    assert json.loads(retried.stdout)["started_at"] > doc["started_at"]


def test_via_controller_reports_a_rollback_a_plain_promote_recorded_and_retry_runs_it_again(
        cluster: Any, prometheus: Any) -> None:
    """A plain `promote` rolled v3 back; the same step as `--via-controller` created a new CanaryRollout, and
    the controller ran the rolled-back version again in front of users. Now it reports that rollback (exit 1,
    `already_ended`, nothing created, decision 238); `--retry` creates the CanaryRollout (no controller runs
    here: followed until `--timeout`, exit 3)."""
    from canary import crd
    from tests.fleet import CANARY_RESOURCE
    from tests.integration.test_promote import promote  # in this process: what is said, not the process's own

    api, kubeconfig, policy = cluster
    api.handler.register(CANARY_RESOURCE)  # the CanaryRollout CRD installed
    first = promote(kubeconfig, policy, prometheus.url, "v3")
    assert first.returncode == 1, first.stderr[-2000:]
    ended = api.get("networking.istio.io", "virtualservices", "ml", "rec-model")
    res = promote(kubeconfig, policy, prometheus.url, "v3", "--via-controller", "--timeout", "20s")
    assert res.returncode == 1, (res.stdout, res.stderr[-2000:])
    doc = json.loads(res.stdout)
    assert doc["outcome"] == doc["phase"] == "rolled_back" and doc["already_ended"] is True
    assert doc["started_at"] == json.loads(first.stdout)["started_at"] and doc["end_cause"] == "check"
    # when, and how to run it again: said in the document, not only in a log line's note (decision 278)
    assert doc["rolled_back_at"] and doc["before_traffic"] is False and "with --retry" in doc["next"], doc
    assert "rollout.already_rolled_back" in [e["event"] for e in parse_json_lines(res.stderr)]
    assert api.get(crd.GROUP, crd.PLURAL, "ml", "rec-model-v3") is None  # nothing created
    now = api.get("networking.istio.io", "virtualservices", "ml", "rec-model")
    assert now["metadata"]["resourceVersion"] == ended["metadata"]["resourceVersion"]  # nothing written
    # a gated policy without the Triton flags: reported the same; only a run that creates asks for them (544)
    gated = policy.with_name("gated.yaml")
    gated.write_text(yaml.safe_dump({**POLICY, "gates": {"triton": {"warmup_requests": 1}}}))
    bare = promote(kubeconfig, gated, prometheus.url, "v3", "--via-controller", "--timeout", "20s")
    assert bare.returncode == 1 and json.loads(bare.stdout)["already_ended"] is True, bare.stdout
    bare = promote(kubeconfig, gated, prometheus.url, "v3", "--via-controller", "--retry", "--timeout", "2s")
    assert bare.returncode == 2 and "pass --triton-canary" in json.loads(bare.stdout)["error"], bare.stdout
    assert api.get(crd.GROUP, crd.PLURAL, "ml", "rec-model-v3") is None  # nothing created
    res = promote(kubeconfig, policy, prometheus.url, "v3", "--via-controller", "--retry", "--timeout", "2s")
    assert res.returncode == 3 and "did not finish within 2s" in json.loads(res.stdout)["error"], res.stdout
    assert api.get(crd.GROUP, crd.PLURAL, "ml", "rec-model-v3") is not None  # created: the controller runs it


@pytest.mark.parametrize("words,output,said", [
    (["--canary-version", "--policy", "p.yaml"], ["-o", "json"], "Missing option '--policy'"),  # $VERSION unset
    (["--policy", "p.yaml"], ["--output=yaml"], "Missing option '--canary-version'"),
    (["--canary-version", "v2", "--policy", "p.yaml", "--bogus"], ["-ojson"], "No such option: --bogus"),
    (["--canary-version", "v2", "--policy", "p.yaml", "--on-interrupt"], ["-o", "json"], "requires an argument"),
])
def test_a_command_line_click_refuses_still_prints_its_document(words: list[str], output: list[str], said: str) -> None:
    """A pipeline template's mistakes that click itself refuses (an unset variable leaving an option
    without its value, or swallowing the next flag; an unknown flag): exit 2 as before, and the one
    `-o json|yaml` document docs/reference/cli.md, "Every command behaves alike" promises for a refusal, which was
    missing (only click's usage text, on stderr): a step parsing stdout got nothing to parse."""
    res = subprocess.run([*CANARY, "promote", "rec-model", *output, *words], cwd=ROOT, capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 2, res.stderr
    doc = yaml.safe_load(res.stdout)  # JSON is YAML
    assert doc["exit_code"] == 2 and doc["phase"] is None and said in doc["error"], doc


def test_an_empty_namespace_is_refused_not_read_as_the_contexts(cluster: Any, prometheus: Any) -> None:
    """`-n "$NAMESPACE"` with the variable unset: `-n ""` was read as "not given", and promote rolled v2
    out in the kubeconfig context's namespace (here `ml`; in a pipeline, whatever environment the
    service account's context names). Now exit 2 before anything is read, the VirtualService untouched."""
    api, kubeconfig, policy = cluster
    before = api.get("networking.istio.io", "virtualservices", "ml", "rec-model")
    from tests.support import cli  # in this process: what is said, not the process's own

    words = argv(kubeconfig, policy, "v2", "-o", "json")[len(CANARY):]
    words[words.index("--namespace") + 1] = ""
    res = cli.run(words, env={"KUBECONFIG": "", "CANARY_PROMETHEUS_URL": prometheus.url})
    assert res.returncode == 2, res.stderr[-2000:]
    doc = json.loads(res.stdout)
    assert doc["phase"] is None and "-n/--namespace was given empty" in doc["error"]
    assert api.get("networking.istio.io", "virtualservices", "ml", "rec-model") == before


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_cancel_before_the_rollout_began_is_exit_3_with_its_document(cluster: Any, prometheus: Any, tmp_path: Path,
                                                                       sig: int) -> None:
    """A CI cancel in promote's first moments, before its Runner (and its handler) existed: SIGINT was
    click's exit 130 -- README's "held at the current split" -- and SIGTERM killed it, neither with the
    `-o json` document. The policy is a FIFO, so the signal lands while promote reads it (seen from here:
    opening the FIFO's write end succeeds only once promote has opened it to read), and the policy is
    written only after the signal was sent."""
    api, kubeconfig, _ = cluster
    fifo = tmp_path / "fifo-policy.yaml"
    os.mkfifo(fifo)
    before = api.get("networking.istio.io", "virtualservices", "ml", "rec-model")
    proc = subprocess.Popen(argv(kubeconfig, fifo, "v2", "-o", "json"), cwd=ROOT, env=env(prometheus.url),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    writer = -1
    try:
        while writer < 0:
            assert proc.poll() is None, proc.communicate()
            try:
                writer = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)  # ENXIO until promote opened it to read
            except OSError:
                time.sleep(0.02)
        proc.send_signal(sig)
        # the signal is pending before the policy arrives: promote's read returns (a signal taken by another
        # of its threads does not interrupt the main thread's read()) and the handler runs at once after it
        try:
            os.write(writer, yaml.safe_dump(POLICY).encode())
        except BrokenPipeError:  # promote had already ended its read (the signal interrupted it)
            pass
        os.close(writer)
        writer = -1
        out, err = proc.communicate(timeout=60)
    finally:
        if writer >= 0:
            os.close(writer)
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 3, (proc.returncode, out, err[-1500:])
    doc = json.loads(out)
    assert doc["exit_code"] == 3 and doc["phase"] is None and "before the rollout began" in doc["error"]
    assert api.get("networking.istio.io", "virtualservices", "ml", "rec-model") == before


def test_via_controller_without_the_crd_says_so_whatever_the_route_records(tmp_path: Path) -> None:
    """The CanaryRollout CRD not installed: `promote --via-controller` exits 2 saying so. With a rollback of the
    version recorded on the route, decision 238's check read the 404 its GET of the CanaryRollout met (the type
    not served) as "no CanaryRollout of that name" and reported the rollback (exit 1, "--retry runs it again"),
    and `--retry` then exited 2 for the CRD: the same 404 is not an absent object (decision 245)."""
    from typer.testing import CliRunner

    from canary.cli import app
    from canary.sandbox.kubeapi import KubeAPIServer
    from tests import fleet

    api = KubeAPIServer(seed=fleet.istio_objects(1)).start()  # no CanaryRollout resource registered
    try:
        fleet.record(api, "m0", fleet.rolled_back())
        policy = tmp_path / "policy.yaml"
        policy.write_text(yaml.safe_dump(fleet.FAST_POLICY))
        args = ["promote", "m0", "--canary-version", "v2", "--policy", str(policy), "-n", "ml", "--kubeconfig",
                str(fleet.write_kubeconfig(tmp_path / "kubeconfig", api.url)), "-o", "json", "--via-controller"]
        for retry in ([], ["--retry"]):
            res = CliRunner().invoke(app, [*args, *retry])
            assert res.exit_code == 2 and "is the CRD installed" in json.loads(res.stdout)["error"], res.stdout
    finally:
        api.stop()


def test_a_rerun_after_a_gate_failure_at_0_percent_says_when_why_and_how_to_retry(cluster: Any,
                                                                                  prometheus: Any) -> None:
    """A typo'd `--triton-canary` port: the pre-traffic gate fails at 0% and v2 is recorded rolled back (exit 1,
    `end_cause` gate). The same command with the port corrected reports that rollback (exit 1, nothing written,
    decision 116 (f)); its text line read as a fresh rollback and only a JSON log line's note named `--retry`.
    Now the line and `-o json` say when it was rolled back, that no traffic had moved, and to run it again with
    `--retry` (decision 278), which does; without the Triton flags it is reported too, and only `--retry` asks
    for them (decision 544). Both ports refuse: the canary's is probed first, so the gate fails
    on it whichever the run, with no Triton started."""
    from tests.integration.test_promote import promote
    from tests.support.refused import refused_port

    api, kubeconfig, policy = cluster
    policy.write_text(yaml.safe_dump({**POLICY, "gates": {"triton": {"warmup_requests": 1}}}))
    stable, typo, fixed = (f"127.0.0.1:{refused_port()}" for _ in range(3))
    first = promote(kubeconfig, policy, prometheus.url, "v2", "--triton-stable", stable, "--triton-canary", typo)
    assert first.returncode == 1, first.stderr[-2000:]
    ended = json.loads(first.stdout)
    assert ended["phase"] == "rolled_back" and ended["end_cause"] == "gate" and ended["step_number"] == 0, ended
    assert vs_state(api)[0] == [100, 0]
    written = api.get("networking.istio.io", "virtualservices", "ml", "rec-model")["metadata"]["resourceVersion"]

    text = promote(kubeconfig, policy, prometheus.url, "v2", "--triton-stable", stable, "--triton-canary", fixed,
                   "-o", "text")
    assert text.returncode == 1, text.stderr[-2000:]
    line = text.stdout.strip()
    assert line.startswith("rolled_back: rec-model v2 weights 100/0"), line
    assert ended["reason"] in line and "rolled back earlier at 20" in line and "nothing written" in line, line
    assert "before any traffic moved" in line and "--triton-canary" in line and "with --retry" in line, line
    doc = json.loads(promote(kubeconfig, policy, prometheus.url, "v2", "--triton-stable", stable,
                             "--triton-canary", fixed).stdout)
    assert doc["already_ended"] is True and doc["before_traffic"] is True and "--retry" in doc["next"], doc
    assert doc["rolled_back_at"].startswith("20") and doc["started_at"] == ended["started_at"], doc
    # the same command without the Triton flags: the report, not "pass --triton-canary" first (exit 2, decision 544)
    bare = promote(kubeconfig, policy, prometheus.url, "v2")
    assert bare.returncode == 1 and json.loads(bare.stdout)["already_ended"] is True, (bare.stdout, bare.stderr[-2000:])
    now = api.get("networking.istio.io", "virtualservices", "ml", "rec-model")["metadata"]["resourceVersion"]
    assert now == written  # nothing written by any re-run
    refused = promote(kubeconfig, policy, prometheus.url, "v2", "--retry")  # a run that moves traffic: refused
    assert refused.returncode == 2 and "pass --triton-canary" in json.loads(refused.stdout)["error"], refused.stdout

    retried = promote(kubeconfig, policy, prometheus.url, "v2", "--triton-stable", stable, "--triton-canary", fixed,
                      "--retry")
    assert retried.returncode == 1, retried.stderr[-2000:]  # the fixed port refuses too: the gate fails again
    again = json.loads(retried.stdout)
    assert "already_ended" not in again and again["started_at"] > ended["started_at"], again
    assert fixed.split(":")[1] in again["reason"], again["reason"]
