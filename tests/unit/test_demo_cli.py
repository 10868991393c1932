"""`canary demo`'s own inputs, refused before any sandbox process starts (exit 2, the flag named)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from canary import logs
from canary.cli import app
from canary.sandbox.demo import SANDBOX_POLICY


def run(*args: str) -> object:
    try:
        return CliRunner().invoke(app, ["demo", *args])
    finally:
        logs.configure()


def test_an_unknown_scenario_is_refused() -> None:
    r = run("--scenario", "nope")
    assert r.exit_code == 2 and "unknown scenario 'nope'" in r.output and "good" in r.output
    assert "data-drift" in r.output


def test_an_unknown_output_format_is_refused() -> None:
    r = run("-o", "xml")
    assert r.exit_code == 2 and "--output" in r.output


def test_a_log_file_that_cannot_be_opened_is_refused(tmp_path: Path) -> None:
    r = run("--log-file", str(tmp_path / "missing-dir" / "demo.log"))
    assert r.exit_code == 2 and "--log-file" in r.output and "missing-dir" in r.output


def test_a_report_that_cannot_be_written_is_refused_before_the_sandbox_starts(tmp_path: Path,
                                                                           monkeypatch: object) -> None:
    """Decision 262: `--report missing-dir/x.html` started the sandbox, ran the whole rollout (a minute or more of
    real servers) and then said "report: could not be written", exit 0. The sandbox is replaced by a stand-in
    that records being started: the refusal must come before it."""
    import pytest

    from canary.sandbox import demo

    started: list[str] = []
    assert isinstance(monkeypatch, pytest.MonkeyPatch)
    monkeypatch.setattr(demo, "run_scenario", lambda *_a, **_k: started.append("sandbox") or 1 / 0)
    log = tmp_path / "demo.log"
    for report in (tmp_path / "missing-dir" / "x.html", tmp_path):  # no such folder; a folder, not a file
        r = run("--scenario", "slow", "--report", str(report), "--log-file", str(log))
        assert r.exit_code == 2 and f"--report {report}:" in r.output and "Traceback" not in r.output
    assert started == [] and not log.exists()
    fine = tmp_path / "ok.html"  # a writable path goes on to the sandbox and is left as it was (not created)
    r = run("--scenario", "slow", "--report", str(fine), "--log-file", str(log))
    assert started == ["sandbox"] and not fine.exists()


def test_help_says_where_the_logs_and_the_report_go() -> None:
    r = run("--help")
    assert r.exit_code == 0 and "--log-file" in r.output and "--report" in r.output and "Example" in r.output


def test_a_bad_policy_is_refused_before_the_sandbox_starts(tmp_path: Path) -> None:
    # it used to start the whole sandbox, print "? (NOT as expected: rolled_back)" with an empty reason,
    # leave the policy's error in the log file only, and exit 1
    bad = tmp_path / "typo.yaml"
    bad.write_text(SANDBOX_POLICY.read_text().replace("max_increase_pct:", "max_increse_pct:", 1))
    log = tmp_path / "demo.log"
    r = run("--scenario", "slow", "--policy", str(bad), "--log-file", str(log))
    assert r.exit_code == 2 and "max_increse_pct: unknown key" in r.output and str(bad) in r.output
    assert "starting the sandbox" not in r.output and not log.exists()
    r = run("--policy", str(tmp_path / "missing.yaml"))
    assert r.exit_code == 2 and "missing.yaml" in r.output


def test_a_rate_that_is_not_positive_is_refused() -> None:
    for rate in ("0", "-3", "nan"):  # it used to start the sandbox and end in a ValueError traceback, exit 1
        r = run("--rate", rate)
        assert r.exit_code == 2 and "--rate must be above 0" in r.output and "Traceback" not in r.output


@pytest.mark.parametrize("rate", ["inf", "1e400", "1e23", "1501"])
def test_a_rate_past_the_bound_is_refused_before_the_sandbox_starts(rate: str) -> None:
    """An infinite rate was a period of 0 s: the load threads spun, the sandbox's CPUs taken (decision 837)."""
    r = run("--rate", rate)
    assert r.exit_code == 2 and "--rate must be above 0 and at most 1500" in r.output, r.output
    assert "starting the sandbox" not in r.output


def test_the_load_generator_refuses_a_rate_that_is_no_finite_positive_number() -> None:
    from canary.sandbox.loadgen import LoadGenerator

    for rate in (float("nan"), float("inf"), 0.0):
        with pytest.raises(ValueError, match="rate must be > 0"):
            LoadGenerator("http://127.0.0.1:1", rate=rate)


def test_keeps_printout_is_commands_a_shell_runs_as_pasted(tmp_path: Path) -> None:
    """`canary demo --keep` prints lines "to paste in another shell": the controller's line ended in
    `(drives CanaryRollout objects: README, "The controller")`, a bash syntax error, naming a README section
    that does not exist; and a bare `canary` is "command not found" in a shell without the checkout's
    .venv on PATH (README, "Install": the CLI is .venv/bin/canary)."""
    import re
    import shutil
    import subprocess
    import sys

    from canary.sandbox.demo import cli_program, keep_text

    info = {"scenario": "slow", "kubeconfig": str(tmp_path / "kube config"), "prometheus_url": "http://127.0.0.1:9",
            "namespace": "ml", "model": "rec-model",
            "promote_args": ["promote", "rec-model", "--canary-version", "v2", "--policy", str(tmp_path / "p.yaml")]}
    text = keep_text(info, program="/opt/my env/bin/canary")
    commands = [line.strip() for line in text.splitlines() if line.startswith("  ")]
    assert len(commands) == 7 and all(c.startswith(("export ", "'/opt/my env/bin/canary' ")) for c in commands[2:])
    info |= {"canaryrollout_file": str(tmp_path / "canary rollout.yaml"), "stable_profile": str(tmp_path / "p.json")}
    text = keep_text(info, program="/opt/my env/bin/canary")
    commands = [line.strip() for line in text.splitlines() if line.startswith("  ")]
    assert len(commands) == 9
    for command in commands:
        res = subprocess.run(["bash", "-n", "-c", command], capture_output=True, text=True)
        assert res.returncode == 0, (command, res.stderr)
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    for section in re.findall(r'README, "([^"]+)"', text):
        assert f"\n## {section}\n" in readme, section
    program = cli_program()  # this installation's canary, wherever PATH points
    here = Path(sys.executable).parent / "canary"
    assert Path(shutil.which(program) or program).resolve() == here.resolve()


def test_the_log_file_holds_this_runs_lines_only(tmp_path: Path, monkeypatch: object) -> None:
    """Three scenarios in a row left three sandboxes' lines in one canary-demo.log (a newcomer's finding): the
    summary's "logs:" line named a file whose rollback.completed lines were partly another run's. The sandbox
    itself (a minute of real servers; tests/e2e/test_scenarios.py runs it) is replaced by a scenario that logs
    one line and stops, as an interrupted one does: what is asserted is the file's handling."""
    import pytest

    from canary.sandbox import demo

    log = tmp_path / "demo.log"
    log.write_text('{"event": "rollback.completed", "from": "an earlier run"}\n')

    def interrupted(*_a: object, **_k: object) -> object:
        logs.get().info("sandbox.started")
        raise KeyboardInterrupt

    assert isinstance(monkeypatch, pytest.MonkeyPatch)
    monkeypatch.setattr(demo, "run_scenario", interrupted)
    run("--scenario", "slow", "--log-file", str(log))
    text = log.read_text()
    assert "sandbox.started" in text and "an earlier run" not in text


def test_keeps_printout_gives_a_canaryrollout_the_controller_runs_and_the_stables_profile(tmp_path: Path) -> None:
    """A newcomer told that `canary controller run` works on the kept sandbox had no CanaryRollout to apply:
    README's example has no `spec.triton`, which the sandbox policy's gate needs (Ready False, ConfigError
    "needs spec.triton.canaryUrl"); `kubectl apply` without `--validate=false` fails on the emulator ("failed
    to download openapi"); and nothing said which profile `canary drift check` could read the sandbox with
    (one captured by hand has other buckets: exit 2)."""
    import shlex

    import yaml

    from canary import crd
    from canary.cli_controller import rollout_name
    from canary.sandbox.demo import keep_text, write_canaryrollout

    path = write_canaryrollout(tmp_path, SANDBOX_POLICY, namespace="ml", model="rec-model", canary_version="v2.1.0",
                               triton_stable_url="http://127.0.0.1:1", triton_canary_url="http://127.0.0.1:2")
    obj = yaml.safe_load(path.read_text())
    spec = crd.parse(obj | {"metadata": {**obj["metadata"], "uid": "u", "generation": 1}})
    # promote --via-controller's default name: a hash of the exact version kept where '.' became '-' (decision 701)
    assert spec.name == rollout_name("rec-model", "v2.1.0") and spec.name.startswith("rec-model-v2-1-0-")
    assert spec.policy.gates.triton is not None
    assert (spec.triton_canary, spec.triton_stable) == ("http://127.0.0.1:2", "http://127.0.0.1:1")
    info = {"scenario": "slow", "kubeconfig": "k", "prometheus_url": "http://127.0.0.1:9", "namespace": "ml",
            "model": "rec-model", "promote_args": ["promote", "rec-model"], "canaryrollout_file": str(path),
            "stable_profile": str(tmp_path / "rec-model-v1.0.0.profile.json")}
    lines = [line.strip() for line in keep_text(info, program="canary").splitlines()]
    assert f"kubectl apply --validate=false -f {shlex.quote(str(path))}" in " ".join(lines)
    assert any(line.startswith(f"canary drift check --baseline {shlex.quote(info['stable_profile'])} -n ml")
               for line in lines)


def test_the_demo_summary_says_how_a_cluster_makes_the_report_page(capsys: Any) -> None:
    """The summary's report line names the command that writes that page in a cluster, with placeholders
    a newcomer can read (it read "(canary report rec-model, in a cluster)")."""
    from canary.sandbox.demo import ScenarioResult, _print_summary

    r = ScenarioResult(scenario="slow", exit_code=1, phase="rolled_back", reason="latency", final_vs_weights={
        "stable": 100, "canary": 0}, fault_onset_s=1.0, stable_100_after_onset_s=2.0, rollout_s=9.0, load={},
        report="/tmp/x/canary-demo.report.html")
    _print_summary(r)
    out = " ".join(capsys.readouterr().out.split())  # as one line, whatever the terminal's width wrapped
    said = out[out.index("report: "):]
    assert said.startswith("report: file:///tmp/x/canary-demo.report.html (in a cluster, `canary report MODEL -n "
                           "NAMESPACE` writes this page)"), said


def test_the_demo_summary_keeps_the_report_url_and_the_log_path_on_one_line(capsys: Any) -> None:
    """Out of a terminal (a CI log, `| tee`) rich's console is 80 columns wide: the report line was cut inside
    its command (`canary` / `report MODEL -n NAMESPACE`) and a long folder's file:// URL inside the path, so
    neither could be copied or clicked whole. Both summaries (a rollout's and data-drift's) print them whole."""
    from canary.sandbox.demo import ScenarioResult, _print_drift_summary, _print_summary
    from canary.sandbox.drift_demo import DriftResult

    folder = "/home/runner/work/some-team-repository/some-team-repository/build/canary-demo-output"
    r = ScenarioResult(scenario="slow", exit_code=1, phase="rolled_back", reason="latency", final_vs_weights={
        "stable": 100, "canary": 0}, fault_onset_s=1.0, stable_100_after_onset_s=2.0, rollout_s=9.0, load={},
        report=f"{folder}/canary-demo.report.html")
    _print_summary(r, f"{folder}/canary-demo.log")
    lines = capsys.readouterr().out.splitlines()
    assert f"report: file://{folder}/canary-demo.report.html  (in a cluster, `canary report MODEL -n NAMESPACE` " \
           "writes this page)" in lines, lines
    assert f"logs:   {folder}/canary-demo.log" in lines, lines
    d = DriftResult(clean_before_shift=0, false_alerts=0, alert_after_shift_s=None, jobs=[], job_evidence={},
                    events=[], evaluations=[])
    _print_drift_summary(d, f"{folder}/canary-demo.log")
    assert f"logs:   {folder}/canary-demo.log" in capsys.readouterr().out.splitlines()


def test_a_good_demo_rolled_back_unproven_says_why_and_what_to_do(capsys: Any) -> None:
    """`--scenario good` rolled back at a step's deadline (a loaded machine: the Tritons' latencies vary too much to
    show the canary within +50% in time) printed only "NOT as expected: promoted": a newcomer could not tell a
    loaded machine from a defect. The summary now says which it is and what to do."""
    from canary.sandbox.demo import ScenarioResult, _print_summary

    def said(end_cause: str | None, scenario: str = "good", phase: str = "rolled_back") -> str:
        r = ScenarioResult(scenario=scenario, exit_code=1, phase=phase, reason="no verdict after 70s at step 2",
                           final_vs_weights={"stable": 100, "canary": 0}, fault_onset_s=None,
                           stable_100_after_onset_s=None, rollout_s=97.0, load={}, end_cause=end_cause)
        _print_summary(r)
        return " ".join(capsys.readouterr().out.split())

    out = said("deadline")
    assert "NOT as expected: promoted" in out, out
    assert "why: the good canary was not shown within the policy's limits by a step's deadline" in out, out
    assert "with your own --policy" in out, "a tight --policy given to the demo is the other cause"
    assert "run it again with less else running" in out, out
    assert "a good canary should never end so" in said("check"), "a check that failed a good canary is a defect"
    assert "why:" not in said(None, phase="promoted"), "a promoted good demo needs no explanation"
    assert "why:" not in said("check", scenario="slow"), "a slow canary's rollback is what the demo shows"


def test_the_demo_reads_the_end_cause_from_the_record_the_rollout_left() -> None:
    """The demo reads the VirtualService's record, which carries no `end_cause` (promote's `-o json` adds it): read
    from it as a key, every unproven `good` was told "end_cause unknown: a good canary should never end so"."""
    from canary import rollout as rl
    from canary.sandbox.demo import recorded_end_cause

    def recorded(phase: str, reason: str) -> dict[str, Any]:
        import json

        from canary.model import Weights

        state = rl.RolloutState(model="rec-model", stable_version="v1.0.0", canary_version="v2.1.0", phase=phase,
                                weights=Weights(100, 0), step=1, reason=reason)
        return json.loads(state.to_json())

    assert "end_cause" not in recorded(rl.ROLLED_BACK, "x"), "the record now has it: read it as a key instead"
    assert recorded_end_cause(recorded(rl.ROLLED_BACK, "no verdict after 70s at step 2 (inconclusive: ...)")) == \
        "deadline"
    assert recorded_end_cause(recorded(rl.ROLLED_BACK, "latency-p95: canary p95 47.7 ms vs stable 6.42 ms")) == "check"
    assert recorded_end_cause(recorded(rl.PROMOTED, "all steps passed")) is None


def test_keep_gives_back_the_signal_handlers_it_found(monkeypatch: Any) -> None:
    """`canary demo --keep` waits for SIGINT/SIGTERM with handlers of its own, and left them installed when it
    returned: an in-process caller (a test, a program embedding the CLI) then had Ctrl-C set an Event nobody
    waits on. While it waits a signal ends the wait; once it returns the handlers found are back."""
    import signal

    from canary.sandbox import demo

    seen: dict[str, Any] = {}

    def keep(scenario: str, done: Any, **_kw: Any) -> int:
        signal.raise_signal(signal.SIGTERM)  # the wait's own handler: `done` set (by its relay), nothing raised
        seen["done"] = done.is_set()
        return 0

    monkeypatch.setattr(demo, "_keep", keep)
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    assert demo.keep_sandbox("good", rate=1.0, policy=Path("p.yaml"), output="text") == 0
    assert seen == {"done": True}
    assert {sig: signal.getsignal(sig) for sig in before} == before
def test_scripts_demo_sh_reads_relative_paths_from_the_callers_folder(tmp_path: Path) -> None:
    """Decision 263: scripts/demo.sh changed to the checkout before `canary demo`, so a policy given relative to
    the folder it was run from was "cannot read" (and a relative --log-file or --report, and canary-demo.log,
    went into the checkout). A policy with a typo is refused before any sandbox starts: its error shows which
    file was read, and that the log file given went nowhere."""
    import subprocess

    root = Path(__file__).resolve().parents[2]
    (tmp_path / "my.yaml").write_text(SANDBOX_POLICY.read_text().replace("max_increase_pct:", "max_increse_pct:", 1))
    res = subprocess.run(["bash", str(root / "scripts" / "demo.sh"), "--scenario", "slow", "--policy", "my.yaml",
                          "--log-file", "my.log"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert res.returncode == 2, res.stderr[-2000:]
    assert "my.yaml: checks[0].max_increse_pct: unknown key" in res.stderr and "cannot read" not in res.stderr
    assert not (root / "my.log").exists() and not (tmp_path / "my.log").exists()


def test_a_flag_the_run_would_ignore_is_refused_before_the_sandbox_starts(tmp_path: Path) -> None:
    """`--scenario data-drift` runs no rollout: its `--policy`, `--report` and `--native-histograms` were dropped
    without a word, as were `--keep`'s `--report` and `--log-file`; the user meant something by each. Refused, exit
    2, the flags named, before any process starts; the defaults (flags not given) still run."""
    r = run("--scenario", "data-drift", "--policy", str(SANDBOX_POLICY), "--report", str(tmp_path / "r.html"))
    assert r.exit_code == 2 and "--policy and --report have no effect here" in r.output, r.output
    assert "data-drift runs no rollout" in r.output
    r = run("--keep", "--log-file", str(tmp_path / "x.log"))
    assert r.exit_code == 2 and "--log-file has no effect here" in r.output and "--keep runs no rollout" in r.output
    assert not (tmp_path / "x.log").exists() and not (tmp_path / "r.html").exists()


def test_the_data_drift_summary_counts_every_evaluation_before_the_shift(capsys: Any) -> None:
    """Decision 323: five as-trained lines, one reading a feature drifted, were summed up as "evaluations on the
    training distribution (A/A), alerts: 4, 0": the count was of the clean ones alone. Both are given now."""
    from canary.sandbox.demo import _print_drift_summary
    from canary.sandbox.drift_demo import DriftResult, Evaluation

    def ev(t: float, shifted: bool, drifted: list[str]) -> Evaluation:
        return Evaluation(t=t, shifted=shifted, share=len(drifted) / 9, drifted=drifted, phase="ok", episode=0,
                          actions=[])

    evaluations = [ev(0, False, ["f3"])] + [ev(2.0 * i, False, []) for i in range(1, 5)] + [ev(12, True, ["f0"])]
    r = DriftResult(clean_before_shift=4, false_alerts=0, alert_after_shift_s=18.5, jobs=["retrain-e1"],
                    job_evidence={}, events=["DriftDetected"], evaluations=evaluations)
    _print_drift_summary(r, None)
    out = " ".join(capsys.readouterr().out.split())  # as one line, whatever the terminal's width wrapped
    assert "5, 4 with no feature drifted" in out, out
    assert "alerts before the shift" in out and "A/A), alerts" not in out, out


def test_keep_says_what_the_kept_canary_does_by_scenario() -> None:
    """`canary demo --keep --scenario good` said "its canary misbehaves once it gets traffic" of a canary that a
    promote promotes, and so of bad-schema's, which the Triton gate refuses before any traffic (decision 414)."""
    from canary.sandbox.demo import keep_text

    def first(scenario: str) -> str:
        info = {"scenario": scenario, "kubeconfig": "/k", "prometheus_url": "http://127.0.0.1:9", "namespace": "ml",
                "model": "rec-model", "promote_args": ["promote", "rec-model", "--canary-version", "v2"]}
        return keep_text(info, program="canary").splitlines()[0]

    assert "misbehaves" not in first("good") and "promotes it" in first("good"), first("good")
    assert "misbehaves" not in first("bad-schema") and "Triton gate refuses it" in first("bad-schema")
    for scenario in ("slow", "drift", "errors", "crash"):
        assert "its canary misbehaves once it gets traffic" in first(scenario), first(scenario)


def test_keeps_printout_gives_the_plan_and_analyze_lines_the_readme_says_work_on_it(tmp_path: Path) -> None:
    """The README said (now docs/reference/setup.md, "The kept sandbox"): `canary analyze` and `canary plan` work
    on the kept sandbox "with the printed `--policy`", but the
    printout had no line for either: a newcomer dug the policy's path out of the middle of the promote line and
    guessed `plan`'s `--rps`, `--model` and `--stable-version`. Each printed line is one the CLI parses as is."""
    import shlex

    import typer

    from canary.sandbox.demo import keep_text

    info = {"scenario": "slow", "kubeconfig": "/k", "prometheus_url": "http://127.0.0.1:9", "namespace": "ml",
            "model": "rec-model", "stable_version": "v1.0.0", "promote_args": ["promote", "rec-model"],
            "policy": str(tmp_path / "my policy.yaml"), "rate": 150.0}
    lines = [line.strip() for line in keep_text(info, program="canary").splitlines()]
    policy = shlex.quote(info["policy"])
    plan = next(line for line in lines if line.startswith("canary plan "))
    analyze = next(line for line in lines if line.startswith("canary analyze "))
    assert plan.startswith(f"canary plan --policy {policy} --rps 150 --model rec-model --stable-version v1.0.0 "), plan
    assert analyze.startswith(f"canary analyze rec-model -n ml --policy {policy} --window 1m "), analyze
    assert any(line.startswith("canary report rec-model -n ml ") for line in lines), lines
    assert lines.index(plan) < next(i for i, line in enumerate(lines) if line.startswith("canary controller run"))
    command = typer.main.get_command(app)
    for line in (plan, analyze):
        argv = shlex.split(line, comments=True)[1:]
        with command.make_context("canary", argv) as ctx:  # click's own parse: a usage error raises
            sub = command.get_command(ctx, argv[0])
            assert sub is not None
            sub.make_context(argv[0], argv[1:], parent=ctx)


def test_the_demo_summary_says_which_version_the_stable_subset_serves(capsys: Any) -> None:
    """After `--scenario good` the summary said "VirtualService weights now (stable/canary) 100/0": read alone, the
    canary sent back. A promotion re-points the stable subset at the new version: the row names it."""
    from canary.sandbox.demo import ScenarioResult, _print_summary

    r = ScenarioResult(scenario="good", exit_code=0, phase="promoted", reason="all steps passed",
                       final_vs_weights={"stable": 100, "canary": 0}, fault_onset_s=None,
                       stable_100_after_onset_s=None, rollout_s=40.0, load={},
                       final_subsets={"stable": "v2.1.0", "canary": "v2.1.0"})
    _print_summary(r)
    out = " ".join(capsys.readouterr().out.split())
    assert "100/0 (stable subset → v2.1.0)" in out, out


def test_the_kept_sandboxs_plan_line_shows_its_good_canary_promotable() -> None:
    """`canary demo --keep` prints a `canary plan` line for the sandbox's own policy. With plan's default baseline
    error rate (0.5%) it closed "a good canary is not sure to be promoted at this traffic: it may stop at step(s)
    10%", while `--scenario good` promotes: the sandbox's stable fails no request, and the line says so."""
    import json
    import shlex

    from canary.sandbox.demo import keep_text

    info = {"scenario": "good", "kubeconfig": "k", "prometheus_url": "http://127.0.0.1:9", "namespace": "ml",
            "model": "rec-model", "promote_args": ["promote", "rec-model"], "policy": str(SANDBOX_POLICY),
            "stable_version": "v1.0.0", "rate": 150.0}
    line = next(line.strip() for line in keep_text(info, program="canary").splitlines()
                if line.strip().startswith("canary plan "))
    args = shlex.split(line.split("   #")[0])[1:]
    for flag in ("--model", "--stable-version"):  # those read Prometheus's buckets; the rates are what is checked
        i = args.index(flag)
        del args[i:i + 2]
    res = CliRunner().invoke(app, [*args, "-o", "json"])
    assert res.exit_code == 0, res.output
    late = {c["key"]: c["late_steps"] for c in json.loads(res.stdout)["pass_checks"] if c["late_steps"]}
    assert not late, late


def test_the_data_drift_lines_say_how_far_an_episode_is_while_the_monitor_is_still_ok() -> None:
    """A newcomer's data-drift demo printed `share=0.667 drifted=f0,f1,f2,f3,f4,score monitor=ok` for 17 s before
    the alert, with no word of why `ok`: the monitor opens an episode after `enter_after` drifted windows that do
    not overlap. The line and the live table say how many it has (decision 923)."""
    from rich.console import Console

    from canary.sandbox.demo import _drift_table
    from canary.sandbox.drift_demo import Evaluation

    waiting = Evaluation(t=13, shifted=True, share=0.556, drifted=["f0", "f1"], phase="ok", episode=0, actions=[],
                         drifted_in_row=1, enter_after=2)
    assert waiting.monitor == "ok (drift in 1 of the 2 windows apart that start an episode)"
    clean = Evaluation(t=2, shifted=False, share=0.0, drifted=[], phase="ok", episode=0, actions=[], enter_after=2)
    drifting = Evaluation(t=30, shifted=True, share=0.667, drifted=["f0"], phase="drifting", episode=1,
                          actions=["drift.started"], drifted_in_row=2, enter_after=2)
    assert (clean.monitor, drifting.monitor) == ("ok", "drifting")
    held = Evaluation(t=20, shifted=True, share=0.6, drifted=["f0"], phase="ok", episode=0, actions=[],
                      drifted_in_row=3, enter_after=2)  # the monitor's quiet period holds the episode: never "3 of 2"
    assert held.monitor == "ok (drift in 3 windows apart, the 2 that start an episode reached; not opened yet)"
    console = Console(width=200, record=True)
    console.print(_drift_table([clean, waiting, drifting]))
    assert "1 of the 2 windows apart" in console.export_text()


def test_keeps_printout_gives_a_via_controller_line_that_promote_takes(tmp_path: Path) -> None:
    """The README said (now docs/reference/setup.md, "The kept sandbox") the printed `canary promote` line "with
    `--via-controller` added" follows the rollout through the
    controller; pasted so, it was exit 2 at once ("--prometheus-url does not apply with --via-controller"): the
    printout gives that line itself, and promote takes it (decision 924). The promote line repeated the
    `--kubeconfig` and `--prometheus-url` the two `export` lines above it set: both lines now leave them to those
    (decision 956). Each line, run with the exports, gets past every flag check to the cluster (here a kubeconfig
    that is not there: the exported one, so the line read it)."""
    import shlex

    from canary.sandbox.demo import keep_text

    kubeconfig = str(tmp_path / "kubeconfig")
    args = ["promote", "rec-model", "--canary-version", "v2", "--stable-version", "v1", "--namespace", "ml",
            "--policy", str(SANDBOX_POLICY), "--kubeconfig", kubeconfig,
            "--prometheus-url", "http://127.0.0.1:9", "--triton-canary", "http://127.0.0.1:8",
            "--triton-stable", "http://127.0.0.1:7"]
    info = {"scenario": "good", "kubeconfig": kubeconfig, "prometheus_url": "http://127.0.0.1:9",
            "namespace": "ml", "model": "rec-model", "promote_args": args}
    lines = [line.split("   #")[0].strip() for line in keep_text(info, program="canary").splitlines()]
    [promote] = [line for line in lines if line.startswith("canary promote") and "--via-controller" not in line]
    [via] = [line for line in lines if "--via-controller" in line]
    assert f"export KUBECONFIG={kubeconfig}" in lines and "export CANARY_PROMETHEUS_URL=http://127.0.0.1:9" in lines
    assert via == f"{promote} --via-controller", (promote, via)
    kept = [a for a in args if a not in ("--kubeconfig", kubeconfig, "--prometheus-url", "http://127.0.0.1:9")]
    assert shlex.split(promote)[1:] == kept, promote
    exported = {"KUBECONFIG": kubeconfig, "CANARY_PROMETHEUS_URL": "http://127.0.0.1:9"}
    for line in (promote, via):
        res = CliRunner().invoke(app, shlex.split(line)[1:], env=exported)
        assert res.exit_code == 2 and f"kubeconfig '{kubeconfig}' does not exist" in res.output, (line, res.output)
