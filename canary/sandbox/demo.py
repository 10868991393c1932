"""`canary demo`: one real rollout in the local sandbox, and the measurements behind it.

The rollout is the real `canary promote` process, with the same flags a user
would pass against a cluster: Istio router against the Kubernetes API
emulator, Prometheus provider against a real Prometheus scraping two real
Triton servers, HAProxy carrying the traffic. `run_scenario` is shared by the
demo, the end-to-end tests and scripts/bench_rollback.py, so the numbers in
docs/benchmarks/rollback.md come from exactly what a user sees.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import structlog
import typer

from canary import cli_options as opts

# policies/sandbox.yaml, shipped inside the package (canary/sandbox/data links to it) so that the demo
# runs from an installed wheel as from a checkout
SANDBOX_POLICY = Path(__file__).resolve().parent / "data" / "sandbox.yaml"
EXPECTED = {"good": "promoted", "slow": "rolled_back", "drift": "rolled_back", "errors": "rolled_back",
            "crash": "rolled_back", "bad-schema": "rolled_back"}
DATA_DRIFT = "data-drift"  # no rollout: the stable model's inputs drift (canary.sandbox.drift_demo)
SCENARIOS_HELP = "good | slow | drift | errors | crash | bad-schema (rollouts) | data-drift (no rollout)"


@dataclass
class ScenarioResult:
    scenario: str
    exit_code: int
    phase: str
    reason: str
    final_vs_weights: dict[str, int]
    fault_onset_s: float | None  # seconds after promote started (monotonic)
    stable_100_after_onset_s: float | None  # fault onset -> HAProxy sends everything to the stable server
    rollout_s: float
    load: dict[str, Any]
    canary_requests_before_rollback: int | None = None
    events: list[dict[str, Any]] = field(default_factory=list)  # promote's JSON log lines (when captured)
    report: str | None = None  # the HTML report's path ("" when it could not be written; None: not asked)
    inspected: Any = None  # what `inspect(sandbox)` returned, before the sandbox stopped
    end_cause: str | None = None  # promote's `-o json` end_cause (`deadline`, `check`, ...), None when promoted
    final_subsets: dict[str, str] = field(default_factory=dict)  # subset -> the version it selects, at the end

    @property
    def as_expected(self) -> bool:
        return self.phase == EXPECTED[self.scenario]

    def brief(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("events")
        return d


# --rate's bound: ten times the default, past what the sandbox's Python model servers answer on one machine
MAX_RATE = 1500.0


def run_scenario(scenario: str, *, rate: float = 150.0, policy: Path = SANDBOX_POLICY, capture: bool = True,
                 extra_args: tuple[str, ...] = (), timeout_s: float = 240.0, log_file: Any = None,
                 report: Path | None = None, inspect: Callable[[Any], Any] | None = None,
                 sandbox: Any = None, **sandbox_kw: Any) -> ScenarioResult:
    """Start the sandbox, run `canary promote` against it, measure, stop everything.

    `capture`: promote's JSON output and logs are kept in the result (tests, benchmarks); else
    promote owns the terminal (its live panel) and its JSON logs go to `log_file` (an open text
    file; None: stderr). `report`: where to write the rollout's HTML report before the sandbox
    stops (`ScenarioResult.report`; "" when it could not be written). `inspect`: called with the
    sandbox after the rollout, before it stops (tests read its Prometheus); its result is
    `ScenarioResult.inspected`. `sandbox`: a started one (`Sandbox`) to run in instead, made ready
    for the scenario by `Sandbox.rearm` and left running, its load stopped (tests share one).
    """
    from canary.sandbox.env import Sandbox

    run = dict(policy=policy, capture=capture, extra_args=extra_args, timeout_s=timeout_s, log_file=log_file,
               report=report, inspect=inspect)
    if sandbox is None:
        with Sandbox(scenario, rate=rate, **sandbox_kw) as sb:
            return _promote(sb, **run)
    if sandbox_kw:
        raise ValueError(f"a started sandbox keeps its own configuration: {sorted(sandbox_kw)}")
    try:
        return _promote(sandbox.rearm(scenario, rate=rate), **run)
    finally:
        if sandbox.loadgen is not None:
            sandbox.loadgen.stop()


def _promote(sb: Any, *, policy: Path, capture: bool, extra_args: tuple[str, ...], timeout_s: float,
             log_file: Any, report: Path | None, inspect: Callable[[Any], Any] | None) -> ScenarioResult:
    """`canary promote` against the started sandbox `sb`, measured (`run_scenario`)."""
    from canary.logs import parse_json_lines
    from canary.routing.patch import read_state
    from canary.sandbox.watcher import route_weights, subset_versions

    scenario = sb.scenario
    cmd = [sys.executable, "-m", "canary", *sb.promote_args(policy), *extra_args]
    if capture:
        cmd += ["--log-format", "json", "--output", "json"]
    elif log_file is not None:
        cmd += ["--log-format", "json"]
    t0 = time.monotonic()
    # not captured (the demo): promote owns the terminal and shows its live display; logs to the file
    proc = subprocess.run(cmd, capture_output=capture, text=True, timeout=timeout_s,
                          **({} if capture or log_file is None else {"stderr": log_file}))
    t1 = time.monotonic()
    written = _write_report(sb, report) if report is not None else None
    inspected = inspect(sb) if inspect is not None else None
    # what promote left on the VirtualService: the weights and the recorded state (`canary status`)
    vs = sb.kube.get("networking.istio.io", "virtualservices", sb.namespace, sb.model) or {}
    dr = sb.kube.get("networking.istio.io", "destinationrules", sb.namespace, sb.model) or {}
    raw = read_state(vs)
    out = json.loads(raw) if raw else {}
    onset = _onset(sb)
    back = _stable_100_at(sb.watcher.history, after=onset) if onset is not None else None
    load = sb.loadgen.snapshot() if sb.loadgen else {}
    return ScenarioResult(
        scenario=scenario, exit_code=proc.returncode, phase=str(out.get("phase", "?")),
        reason=str(out.get("reason") or (proc.stderr or "")[-500:]),
        final_vs_weights=route_weights(vs) if vs else {}, rollout_s=round(t1 - t0, 2),
        fault_onset_s=round(onset - t0, 2) if onset is not None else None,
        stable_100_after_onset_s=round(back - onset, 2) if back is not None and onset is not None else None,
        load=load, events=parse_json_lines(proc.stderr) if capture else [],
        canary_requests_before_rollback=int(load.get("by_server", {}).get("canary", 0)) if back is not None else None,
        report=written, inspected=inspected, end_cause=recorded_end_cause(out),
        final_subsets=subset_versions(dr) if dr else {},
    )


def _write_report(sb: Any, path: Path) -> str:
    """The rollout's report from the sandbox's API (`canary report`), before the sandbox stops."""
    from canary import history_store, report
    from canary.errors import CanaryError

    client = sb.kube.api_client()
    try:
        return str(report.write(history_store.from_cluster(client, sb.namespace, sb.model, model=sb.model), path).resolve())
    except (CanaryError, OSError) as exc:
        structlog.get_logger("canary").warning("demo.report_failed", error=f"{type(exc).__name__}: {exc}")
        return ""
    finally:
        client.close()


def _onset(sb: Any) -> float | None:
    """When the canary started misbehaving (monotonic): injection, or the kill for `crash`."""
    if sb.fault_injected_at is None or sb.scenario in ("good", "bad-schema"):
        return None
    if sb.scenario == "crash":
        return sb.canary.killed_at if getattr(sb.canary, "killed_at", None) else sb.fault_injected_at + sb.crash_after_s
    return float(sb.fault_injected_at)


def _stable_100_at(history: list[tuple[float, dict[str, int]]], *, after: float) -> float | None:
    for t, weights in history:
        if t >= after and weights.get("canary", 0) == 0:
            return t
    return None


def demo(
    ctx: typer.Context,
    scenario: str = typer.Option("good", "--scenario", "-s", help=SCENARIOS_HELP),
    rate: float = typer.Option(150.0, "--rate", help="requests per second through HAProxy"),
    policy: Path = typer.Option(SANDBOX_POLICY, "--policy", show_default=False,
                                help="policy for the rollout (default: policies/sandbox.yaml, shipped in the package)"),
    output: str = opts.OutputOpt,
    log_file: str = typer.Option("canary-demo.log", "--log-file",
                                 help="where the JSON logs go, replaced on each run ('-': stderr, as a machine would read them)"),
    report: Path = typer.Option(Path("canary-demo.report.html"), "--report", help="the rollout's HTML report"),
    native_histograms: bool = typer.Option(
        False, "--native-histograms",
        help="the models export their latency as a Prometheus native histogram (protobuf exposition)"),
    keep: bool = typer.Option(
        False, "--keep",
        help="run no rollout: start the sandbox (the scenario's canary), print its kubeconfig and URLs and "
             "the commands to try on it (promote, status, rollback, plan, analyze, report, the controller, drift check), "
             "and keep it until Ctrl-C"),
) -> None:
    """Run a real canary rollout on this machine: two Triton servers, Prometheus, HAProxy, a Kubernetes API emulator.

    On a terminal, promote's live panel shows the weights, each look's per-arm values and verdicts; the JSON logs go to --log-file; at the end, a summary and the report to open in a browser.

    data-drift runs no rollout: the stable model's inputs move away from its training data, and the drift monitor's evaluations show until the alert fires and the retraining Job appears.

    Exit 0 when the outcome is the scenario's (good: promoted; data-drift: one alert and one Job, none before the shift; every other: rolled back), 1 otherwise, 2 for bad input.
    """
    from canary import logs

    if scenario not in EXPECTED and scenario != DATA_DRIFT:
        typer.echo(f"error: unknown scenario {scenario!r}; choose one of {', '.join([*EXPECTED, DATA_DRIFT])}",
                   err=True)
        raise typer.Exit(2)
    if not 0 < rate <= MAX_RATE:  # inf (`1e400` too) was a period of 0 s: the load threads spun, the host's CPUs
        # taken from the model servers they measure (decision 837)
        typer.echo(f"error: --rate must be above 0 and at most {MAX_RATE:g} (requests per second through HAProxy); "
                   f"got {rate:g}", err=True)
        raise typer.Exit(2)
    # a flag the run would ignore is refused, not dropped: the user meant something by it (decision 255)
    ignored = {"--policy": "policy", "--report": "report", "--native-histograms": "native_histograms"} \
        if scenario == DATA_DRIFT else {"--report": "report", "--log-file": "log_file"} if keep else {}
    given = [flag for flag, name in ignored.items() if opts.given(ctx, name)]
    if given:
        why = ("--scenario data-drift runs no rollout (no policy, no report; the models' latency is not judged)"
               if scenario == DATA_DRIFT else
               "--keep runs no rollout (no report) and writes no log file (its processes log to stderr)")
        typer.echo(f"error: {' and '.join(given)} {'has' if len(given) == 1 else 'have'} no effect here: {why}; "
                   "drop it", err=True)
        raise typer.Exit(2)
    if scenario != DATA_DRIFT:  # a bad policy is bad input: refused before the sandbox starts, not a rollout's exit 2
        from canary.errors import ConfigError
        from canary.policy import load_policy

        try:
            load_policy(policy)
        except ConfigError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None
    if not keep and scenario != DATA_DRIFT:  # written after the rollout: a folder that is not there is said now
        unwritable = _unwritable(report)
        if unwritable:
            typer.echo(f"error: --report {report}: {unwritable}", err=True)
            raise typer.Exit(2)
    if keep:
        if scenario == DATA_DRIFT:
            typer.echo("error: --keep runs a rollout scenario's sandbox (good, slow, ...), not data-drift", err=True)
            raise typer.Exit(2)
        raise typer.Exit(keep_sandbox(scenario, rate=rate, policy=policy, output=output,
                                      native_histograms=native_histograms))
    sink: Any = None
    if log_file != "-":
        try:
            # replaced, not appended: the summary's "logs:" line names this run's log (three scenarios in a row left
            # three sandboxes' lines in one file, each rollback.completed among the others')
            sink = open(log_file, "w", encoding="utf-8", buffering=1)  # noqa: SIM115 (closed below)
        except OSError as exc:
            typer.echo(f"error: --log-file {log_file}: {exc.strerror or exc}", err=True)
            raise typer.Exit(2) from None
    try:
        logs.configure(fmt="json", stream=sink) if sink is not None else logs.configure()
        typer.echo(f"starting the sandbox for scenario {scenario!r} (two Tritons, Prometheus, HAProxy, API emulator)"
                   + (f"; logs in {log_file}" if sink is not None else "") + "...", err=True)
        if scenario == DATA_DRIFT:
            drift = _drift_demo(rate, live=output in ("text", "wide"))
        else:
            result = run_scenario(scenario, rate=rate, policy=policy, capture=False, log_file=sink, report=report,
                                  native_histograms=native_histograms)
    finally:
        if sink is not None:
            logs.configure()
            sink.close()
    if scenario == DATA_DRIFT:
        opts.emit({**drift.brief(), "log_file": None if sink is None else str(Path(log_file).resolve())}, output,
                  lambda wide: _print_drift_summary(drift, None if sink is None else log_file))
        raise typer.Exit(0 if drift.as_expected else 1)
    opts.emit({**result.brief(), "log_file": None if sink is None else str(Path(log_file).resolve())}, output,
              lambda wide: _print_summary(result, None if sink is None else log_file))
    raise typer.Exit(0 if result.as_expected else 1)


def _unwritable(path: Path) -> str:
    """Why the file `path` cannot be written ("" when it can): its folder missing or read-only, a folder of that
    name. Tried by opening it for appending; a file that was not there is removed again."""
    existed = path.exists()
    try:
        with open(path, "a", encoding="utf-8"):
            pass
    except OSError as exc:
        return exc.strerror or str(exc)
    if not existed:
        path.unlink(missing_ok=True)
    return ""


def _drift_table(rows: list[Any]) -> Any:
    from rich.table import Table
    from rich.text import Text

    t = Table(title="drift monitor: rec-model's stable version against its training profile")
    for col in ("t (s)", "inputs", "drifted share", "drifted features", "monitor", "actions"):
        t.add_column(col, overflow="fold")
    for e in rows[-15:]:
        share = "-" if e.share is None else f"{e.share:.2f}"
        phase = Text(e.monitor, style="bold red" if e.phase == "drifting" else "green")
        t.add_row(f"{e.t:.0f}", "shifted" if e.shifted else "as trained", share,
                  e.error[:60] if e.error else (", ".join(e.drifted) or "none"), phase, "; ".join(e.actions))
    return t


def _drift_demo(rate: float, *, live: bool) -> Any:
    """run_drift_scenario with a live table on a terminal (or a line per evaluation on stderr)."""
    from canary.sandbox.drift_demo import run_drift_scenario

    rows: list[Any] = []
    from canary import streams

    if live and streams.isatty("stdout"):
        from rich.live import Live

        with Live(_drift_table(rows), refresh_per_second=4) as screen:
            def show(e: Any) -> None:
                rows.append(e)
                screen.update(_drift_table(rows))

            return run_drift_scenario(rate=rate, on_evaluation=show)

    def line(e: Any) -> None:
        typer.echo(f"t={e.t:.0f}s inputs={'shifted' if e.shifted else 'as-trained'} share={e.share} "
                   f"drifted={','.join(e.drifted) or '-'} monitor={e.monitor} {'; '.join(e.actions)}", err=True)

    return run_drift_scenario(rate=rate, on_evaluation=line)


def _print_drift_summary(r: Any, log_file: str | None) -> None:
    from canary import streams
    from rich.table import Table

    t = Table(title=f"canary demo --scenario data-drift: "
                    f"{'as expected' if r.as_expected else 'NOT as expected: one alert and one Job after the shift'}")
    t.add_column("measure")
    t.add_column("value")
    # every A/A evaluation, then those that read no feature drifted: it gave the clean ones alone, "4" under five
    # as-trained lines, one of which read a feature drifted (each feature's test holds 5%: the hysteresis absorbs it)
    aa = sum(1 for e in r.evaluations if not e.shifted)
    t.add_row("evaluations on the training distribution (A/A)", f"{aa}, {r.clean_before_shift} with no feature drifted")
    t.add_row("alerts before the shift", f"{r.false_alerts}")
    t.add_row("inputs shifted -> alert", "-" if r.alert_after_shift_s is None else f"{r.alert_after_shift_s} s")
    t.add_row("retraining Jobs", ", ".join(r.jobs) or "none")
    t.add_row("drifted features (the Job's evidence)", ", ".join(r.job_evidence.get("drifted_features", [])) or "-")
    t.add_row("Kubernetes Events", ", ".join(sorted(set(r.events))) or "none")
    streams.console().print(t)
    if log_file:
        streams.console().print(f"logs:   {log_file}", soft_wrap=True)


def recorded_end_cause(state: dict[str, Any]) -> str | None:
    """The end's class (`deadline`, `check`, `gate`, ...) of a rollout state as the VirtualService records it: its
    `end_cause` (decision 607), else (a record written before it) classed from the reason as `-o json` does; None
    for a rollout that did not roll back or abort."""
    if state.get("phase") not in ("rolled_back", "aborted"):
        return None
    from canary.history import end_cause as recorded
    from canary.rollout import end_cause

    return end_cause(recorded(state), str(state.get("reason") or ""))


def unexpected_hint(r: ScenarioResult) -> str | None:
    """What a newcomer does about a `good` demo that was not promoted (the summary said only "NOT as expected"):
    a rollback for want of a verdict (`end_cause: deadline`) is the sandbox's machine too loaded to show the good
    canary within the sandbox policy's limits by a step's deadline; a check or gate that failed it is a defect."""
    if r.as_expected or r.scenario != "good":
        return None
    if r.end_cause == "deadline":
        return ("why: the good canary was not shown within the policy's limits by a step's deadline "
                "(end_cause deadline: inconclusive, never a promotion without evidence). On a loaded machine (other "
                "jobs on its cores) the two Tritons' latencies vary too much to show that in time: run it again with "
                "less else running (with your own --policy: limits tighter than a step can show, `canary plan` says "
                "which); the reason above names the check that stayed unproven")
    return (f"why: end_cause {r.end_cause or 'unknown'}: a good canary should never end so; the reason above and "
            "the logs say what ended it")


def weights_now(r: ScenarioResult) -> str:
    """The summary's weights, with the version the stable subset selects: after a promotion "100/0" is the new
    version serving everything (the stable subset re-pointed), which read alone looked like the canary sent back."""
    weights = f"{r.final_vs_weights.get('stable')}/{r.final_vs_weights.get('canary')}"
    stable = r.final_subsets.get("stable")
    return f"{weights} (stable subset → {stable})" if stable else weights


def _print_summary(r: ScenarioResult, log_file: str | None = None) -> None:
    from canary import streams
    from rich.table import Table

    t = Table(title=f"canary demo --scenario {r.scenario}: {r.phase} "
                    f"({'as expected' if r.as_expected else 'NOT as expected: ' + EXPECTED[r.scenario]})")
    t.add_column("measure")
    t.add_column("value")
    t.add_row("promote exit code", str(r.exit_code))
    t.add_row("reason", r.reason)
    t.add_row("VirtualService weights now (stable/canary)", weights_now(r))
    t.add_row("rollout wall time", f"{r.rollout_s} s")
    if r.stable_100_after_onset_s is not None:
        t.add_row("fault onset -> stable 100% in the data plane", f"{r.stable_100_after_onset_s} s")
    load = r.load
    if load:
        t.add_row("requests sent / failed", f"{load.get('sent')} / {load.get('failed')}")
        t.add_row("served by stable / canary server", f"{load.get('by_server', {}).get('stable', 0)} / "
                                                        f"{load.get('by_server', {}).get('canary', 0)}")
        t.add_row("client latency p50 / p95", f"{load.get('p50_ms')} ms / {load.get('p95_ms')} ms")
    streams.console().print(t)
    hint = unexpected_hint(r)
    if hint:
        streams.console().print(hint, soft_wrap=True)
    if r.report:
        # the page `canary report` writes from a cluster's history: the command that makes it there
        # soft_wrap: one line however narrow the console (80 columns in a CI log), so the file:// URL and the
        # command are copied and clicked whole, not cut at the width as the table above is
        streams.console().print(f"report: file://{r.report}  (in a cluster, `canary report MODEL -n NAMESPACE` "
                                "writes this page)", soft_wrap=True)
    elif r.report == "":
        streams.console().print("report: could not be written (see the logs)")
    if log_file:
        streams.console().print(f"logs:   {log_file}", soft_wrap=True)


__all__ = ["run_scenario", "ScenarioResult", "demo", "EXPECTED"]


def cli_program() -> str:
    """How another shell runs this CLI: `canary` when that is this installation's on PATH, else the path of
    the `canary` beside this Python (a checkout's `.venv/bin/canary`: README's "the CLI is .venv/bin/canary";
    a bare `canary` there is "command not found")."""
    import shutil

    here = Path(sys.executable).parent / "canary"
    if not here.exists():
        return "canary"
    found = shutil.which("canary")
    return "canary" if found and Path(found).resolve() == here.resolve() else str(here)


def keep_canary_words(scenario: str) -> str:
    """What the kept sandbox's canary does, as `--keep`'s first line says it: "misbehaves once it gets traffic" was
    said of `good` too, whose canary a `promote` promotes (decision 414)."""
    if scenario == "good":
        return "its canary is as good as stable: the promote below promotes it"
    if scenario == "bad-schema":
        return "its canary's tensor contract is not stable's: the Triton gate refuses it before any traffic"
    if scenario == "data-drift":
        return "no canary fault: the stable model's inputs drift"
    return "its canary misbehaves once it gets traffic"


def keep_text(info: dict[str, Any], program: str | None = None) -> str:
    """`canary demo --keep`'s text: the `export` lines and commands to paste in another shell, each line a
    shell command as written (a note after a command is a `#` comment: "(drives ...)" was a syntax error)."""
    import shlex

    prog = shlex.quote(program or cli_program())
    model, ns = shlex.quote(info["model"]), shlex.quote(info["namespace"])
    # the promote line leaves out what the two `export` lines above it set (`--kubeconfig`, `--prometheus-url`),
    # as the status and rollback lines do: it repeated both (decision 956), and `--via-controller` refuses a
    # typed `--prometheus-url` (exit 2, the controller measures with its own), so the same line with the flag
    # added is the rollout through the controller (decision 924)
    args, exported = list(info["promote_args"]), ("--kubeconfig", "--prometheus-url")
    args = [a for i, a in enumerate(args) if a not in exported and (i == 0 or args[i - 1] not in exported)]
    cmd = f"{prog} " + " ".join(shlex.quote(a) for a in args)
    via = f"{cmd} --via-controller"
    tried = extra = ""
    if info.get("policy"):  # docs/reference/setup.md: `plan` and `analyze` work on the kept sandbox, with this policy
        policy = shlex.quote(info["policy"])
        tried += (f"  {prog} plan --policy {policy} --rps {info.get('rate', 150.0):g} --model {model}"
                  f" --stable-version {shlex.quote(info['stable_version'])} --error-rate 0"
                  "   # reads the sandbox's latency buckets through CANARY_PROMETHEUS_URL; its stable fails no"
                  " request (plan's default 0.5% said a good canary may stop at 10%)\n"
                  f"  {prog} analyze {model} -n {ns} --policy {policy} --window 1m"
                  "   # stable vs canary now, once the canary has traffic\n"
                  f"  {prog} report {model} -n {ns}   # the last rollout's HTML page, after a promote\n")
    if info.get("canaryrollout_file"):  # the emulator serves no OpenAPI document: kubectl's validation would fail
        extra += (f"  kubectl apply --validate=false -f {shlex.quote(info['canaryrollout_file'])}"
                  "   # a CanaryRollout of this rollout for the controller\n")
    if info.get("stable_profile"):
        extra += (f"  {prog} drift check --baseline {shlex.quote(info['stable_profile'])} -n {ns}"
                  "   # the stable's training profile, the one its exporter exports\n")
    return f"""sandbox up (scenario {info['scenario']!r}; {keep_canary_words(info['scenario'])}). In another shell:

  export KUBECONFIG={shlex.quote(info['kubeconfig'])}
  export CANARY_PROMETHEUS_URL={shlex.quote(info['prometheus_url'])}

  {cmd}
  {prog} status {model} -n {ns}
  {prog} rollback {model} -n {ns} --reason "trying it"
{tried}  {prog} controller run -n {ns}   # drives CanaryRollout objects (README, "Running it as a controller in the cluster")
  {via}   # with that controller running: the same rollout as a CanaryRollout, followed to its end
{extra}
Ctrl-C stops it (everything it started, and its files)."""


def write_canaryrollout(workdir: Path, policy: Path, *, namespace: str, model: str, canary_version: str,
                        triton_stable_url: str, triton_canary_url: str) -> Path:
    """A CanaryRollout of the sandbox's rollout, `canaryrollout.yaml` in `workdir`, for `--keep`'s printout:
    README's example leaves out `spec.triton`, without which the sandbox policy's Triton gate is a
    `ConfigError` ("needs spec.triton.canaryUrl"), and a newcomer had no manifest to apply."""
    import yaml

    from canary import crd
    from canary.cli_controller import rollout_name
    from canary.policy_yaml import load_text, read_file

    obj = crd.new_object(namespace=namespace, name=rollout_name(model, canary_version), model=model,
                         canary_version=canary_version, policy_raw=load_text(read_file(policy), file=str(policy)),
                         triton={"stableUrl": triton_stable_url, "canaryUrl": triton_canary_url})
    path = workdir / "canaryrollout.yaml"
    path.write_text(yaml.safe_dump(obj, sort_keys=False), encoding="utf-8")
    return path


def keep_sandbox(scenario: str, *, rate: float, policy: Path, output: str, native_histograms: bool = False) -> int:
    """`canary demo --keep`: the sandbox of `scenario` (`keep_canary_words`), its
    Kubernetes API emulator serving CanaryRollout too, kept until SIGINT/SIGTERM. Prints where everything is (text: `export` lines and commands to try; `-o json`:
    one line, `kubeconfig`, `prometheus_url`, `triton_stable_url`, `triton_canary_url`, `namespace`, `model`,
    versions, `promote_args`, `canaryrollout_file`: a CanaryRollout of the rollout to `kubectl apply`,
    `stable_profile`: the stable's training profile, with the drift extra) once it is up, then waits. Returns 0 once stopped (everything it started is
    stopped, by PID, and its work directory removed); the sandbox's own errors raise."""
    import signal
    import threading

    from canary.interrupts import install_handlers, restore_handlers, setting

    done = threading.Event()
    # given back at the end: an in-process caller (a test, a program embedding the CLI) gets its own (main thread only)
    before = install_handlers(setting(done), (signal.SIGINT, signal.SIGTERM))  # no lock in the handler (decision 513)
    try:
        return _keep(scenario, done, rate=rate, policy=policy, output=output, native_histograms=native_histograms)
    finally:
        restore_handlers(before)


def _keep(scenario: str, done: Any, *, rate: float, policy: Path, output: str, native_histograms: bool) -> int:
    """`keep_sandbox`'s body, with SIGINT/SIGTERM setting `done`."""
    from canary import crd
    from canary.sandbox.env import Sandbox
    from canary.sandbox.kubeapi import Resource

    typer.echo(f"starting the sandbox for scenario {scenario!r} (two Tritons, Prometheus, HAProxy, API emulator)...",
               err=True)
    sb = Sandbox(scenario, rate=rate, native_histograms=native_histograms)
    try:
        sb.start()
        sb.kube.handler.register(Resource(crd.GROUP, crd.PLURAL, crd.KIND, (crd.VERSION,), status_subresource=True))
        args = sb.promote_args(policy)
        info = {"scenario": scenario, "kubeconfig": str(sb.kubeconfig), "prometheus_url": sb.prometheus_url,
                "triton_stable_url": sb.triton_stable_url, "triton_canary_url": sb.triton_canary_url,
                "namespace": sb.namespace, "model": sb.model, "stable_version": sb.stable_version,
                "canary_version": sb.canary_version, "promote_args": args, "policy": str(policy), "rate": rate,
                "canaryrollout_file": str(write_canaryrollout(sb.workdir, policy, namespace=sb.namespace,
                                                              model=sb.model, canary_version=sb.canary_version,
                                                              triton_stable_url=sb.triton_stable_url,
                                                              triton_canary_url=sb.triton_canary_url))}
        profile = sb.workdir / f"{sb.model}-{sb.stable_version}.profile.json"
        if profile.is_file():  # written only with the drift extra installed
            info["stable_profile"] = str(profile)

        def text(wide: bool) -> None:
            typer.echo(keep_text(info))

        opts.emit(info, output, text)
        sys.stdout.flush()
        while not done.wait(0.5):
            pass
        return 0
    finally:
        sb.stop()
