"""`canary` command line: parse, call the library, render, exit with a documented code.

Exit codes (docs/reference/cli.md, "Exit codes"): 0 promoted / ok, 1 rolled back, 2 bad input
(nothing touched), 3 could not complete (infrastructure; traffic at stable),
75 busy (another rollout holds the route; nothing touched, retry later),
130 interrupted with --on-interrupt pause (state recorded, resumable).
"""

from __future__ import annotations

import os

# One OpenBLAS thread, set before numpy is first imported (lazily, by the first judgement): the
# judge's arrays are a few hundred values, and a second BLAS thread only spins after each call
# (scripts/bench_judge.py: a latency judgement 0.160 -> 0.080 ms of CPU, docs/benchmarks/judge_speed.md).
# An operator's own setting is kept.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import json  # noqa: E402
import math  # noqa: E402
import signal  # noqa: E402
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Optional

import typer

from canary import ci_job, cli_edits, cli_help
from canary import cli_options as opts
from canary import logs, streams
from canary import rollout as rl
from canary.errors import (AlreadyStable, CanaryError, ConfigError, KubeUnavailable, NoRoom, NotFound, RollbackFailed,
                           RolloutBusy, TargetError, TrafficUnsafe, TransientError)
from canary.model import Target

cli_help.pipe_safe_help()
app = typer.Typer(cls=cli_help.ReadableGroup, add_completion=True, no_args_is_help=True,
                  context_settings={"help_option_names": ["-h", "--help"]},  # -h as kubectl and most tools take it
                  help="Canary analysis and rollback for ML models on Triton behind Istio.")
policy_app = typer.Typer(no_args_is_help=True, help="Validate policies and print their JSON Schema.")
app.add_typer(policy_app, name="policy")


def _version(value: bool) -> None:
    if value:  # `canary --version` alone never gets here (`__main__.main` answers it first: decision 958)
        line = streams.version_line()
        streams.guarded("stdout", lambda: typer.echo(line))  # `canary --version | head -c0`: still 0
        raise typer.Exit(0)


@app.callback()
def _every_command(
    ctx: typer.Context,
    _show_version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="print the installed version and exit"),
) -> None:
    """Canary analysis and rollback for ML models on Triton behind Istio."""
    if ctx.invoked_subcommand != "promote":  # it takes a signal held since the process began (decision 619);
        from canary.interrupts import release_early  # every other command acts on it as it always did

        release_early()
    # Logs go to stderr from the first line of every command (structlog's default is stdout): stdout
    # carries only the requested output, on any path (issue 11). Commands with --log-format refine it.
    logs.configure()

EXIT_BAD_INPUT, EXIT_INFRA = 2, 3
EXIT_TRAFFIC_UNSAFE = 6  # stable 100% could not be written; the canary may still get traffic (docs/reference/cli.md)
EXIT_WATCH_TIMEOUT = 4  # `status --watch --timeout`: still running when the time ran out
# another rollout holds the route (RolloutBusy): nothing touched, and the same command may succeed once it ends.
# sysexits.h's EX_TEMPFAIL ("temporary failure, the user is invited to retry"): exit 2 ("bad input") told a
# pipeline to fix its flags when another job held the route (decision 386)
EXIT_BUSY = 75
WATCH_EXIT = {rl.PROMOTED: 0, rl.ROLLED_BACK: 1, rl.ABORTED: EXIT_INFRA}  # `status --watch` by terminal phase

# ---- shared options ------------------------------------------------------------------

# defined once in cli_options (with the renderer and the parsers); the names here are the ones commands use
NamespaceOpt, KubeconfigOpt, ContextOpt, OutputOpt = opts.NamespaceOpt, opts.KubeconfigOpt, opts.ContextOpt, opts.OutputOpt
# the MODEL argument of status/pause/resume/rollback: their --help said only "[required]"
ModelArg = typer.Argument(..., help="model name (and VirtualService name unless --virtual-service)")


not_blank = opts.not_blank  # decision 743: the name flags' callback, beside -n's in cli_options


VsOpt = typer.Option(None, "--virtual-service", help="VirtualService name (default: the model name)",
                     callback=not_blank("the model name"))
DrOpt = typer.Option(None, "--destination-rule", help="DestinationRule name (default: the VirtualService name)",
                     callback=not_blank("the VirtualService's name"))
RouteOpt = typer.Option(None, "--route", help="name of the VirtualService's HTTP route (default: the only one, else the "
                                               "only one with this DestinationRule's stable and canary subsets)",
                        callback=not_blank("the VirtualService's only route"))
LogFormatOpt = typer.Option("auto", "--log-format", help="auto (JSON unless a TTY), json or console")


def fail(message: str, code: int) -> None:
    from canary import streams

    # a stderr nobody reads must not turn this exit code into click's 1 for a broken pipe (decision 116)
    streams.guarded("stderr", lambda: typer.echo(f"error: {message}", err=True))
    raise typer.Exit(code)


# the least `promote --interrupt-grace` taken: time for the rollback's few requests to the API server (decision 128)
MIN_INTERRUPT_GRACE_S = 1.0


def run_guarded(fn: Any, *, report: Any = None) -> Any:
    """Map the exception tree onto exit codes; never show a library traceback. `report(code,
    message)`, when given, is called before the error is printed and the command exits (a command
    whose -o json|yaml promises a document on stdout prints one on these paths too)."""
    def failed(message: str, code: int) -> None:
        if report is not None:
            report(code, message)
        fail(message, code)

    try:
        return fn()
    except TrafficUnsafe as exc:  # the route may still send traffic to the canary: `traffic.unsafe` logged
        failed(str(exc), EXIT_TRAFFIC_UNSAFE)
    except RolloutBusy as exc:
        failed(str(exc), EXIT_BUSY)
    except ConfigError as exc:
        failed(str(exc), EXIT_BAD_INPUT)
    except TransientError as exc:
        failed(f"could not complete: {exc}", EXIT_INFRA)
    except CanaryError as exc:
        failed(str(exc), EXIT_INFRA)
    except (typer.Exit, typer.Abort, KeyboardInterrupt, SystemExit):
        raise
    except Exception as exc:  # a bug: exit 3 (never 1, which means "rolled back"), the type and message
        logs.get().error("cli.unexpected_error", error=f"{type(exc).__name__}: {exc}")
        failed(f"unexpected error ({type(exc).__name__}: {exc})", EXIT_INFRA)


def _router(kubeconfig: Optional[str], context: Optional[str]) -> Any:
    from canary.kube import api_client
    from canary.routing.istio import IstioRouter

    return IstioRouter(api_client(kubeconfig=kubeconfig, context=context))


def _oncall_router(kubeconfig: Optional[str], context: Optional[str]) -> Any:
    """An IstioRouter for status/pause/resume/rollback, which must act on every VirtualService a
    rollout could drive, whatever its weights: `inspect` reads any weights (Istio's split of them,
    and the raw values in RouteStatus.raw_weights) instead of refusing what a rollout may not start
    from, and `resolve` names the route when the VirtualService has several. Writes are IstioRouter's."""
    from dataclasses import replace

    from canary.kube import api_client
    from canary.routing import patch
    from canary.routing.base import RouteStatus
    from canary.routing.istio import DR_PLURAL, VS_PLURAL, IstioRouter, claimed_route

    class OnCallRouter(IstioRouter):
        def inspect(self, target: Target) -> RouteStatus:
            try:
                return self.inspect_any(target)
            except NotFound as exc:  # `status --destination-rule rec-modl` named no DestinationRule that is there
                if exc.what == f"{target.namespace}/{target.dr_name} ({DR_PLURAL})":  # the VirtualService was read
                    raise _destination_rule_gone(exc, self, target) from None
                raise _named_what_is_there(exc, self, target) from None

        def in_progress(self, target: Target) -> bool:
            """Whether the VirtualService records a rollout in progress (readable, not ended)."""
            recorded = _recorded(patch.read_state(self._get(VS_PLURAL, target.namespace, target.virtual_service)))
            return recorded is not None and not recorded.terminal

        def resolve(self, target: Target) -> Target:
            try:
                vs = self._get(VS_PLURAL, target.namespace, target.virtual_service)
            except NotFound as exc:
                raise NotFound(f"{exc}{self._which(target.namespace, target.virtual_service)}",
                               what=exc.what) from exc
            recorded = _recorded(patch.read_state(vs))
            if recorded is not None and recorded.destination_rule and not recorded.terminal \
                    and not target.destination_rule:  # the DestinationRule the rollout in progress drives
                target = replace(target, destination_rule=recorded.destination_rule)
            if target.route:
                names = patch.route_names(vs)
                if names and target.route not in names:  # a typo: never acted on as given
                    raise patch.no_route_named(vs, target.route)
                return target
            if recorded is not None and recorded.route and not recorded.terminal:
                return replace(target, route=recorded.route)  # the route the rollout in progress drives
            try:
                dr = self._get(DR_PLURAL, target.namespace, target.dr_name)
            except CanaryError:  # a rollback must not need it: the routes with subsets stable and canary
                dr = {}
            if recorded is not None and not recorded.terminal and (claimed := claimed_route(vs, dr, target)):
                return replace(target, route=claimed)  # the route it claimed as the only one, by its note (549)
            return replace(target, route=patch.route_for(vs, dr, recorded=recorded.weights if recorded else None))

        def _which(self, namespace: str, name: str = "") -> str:
            return _which(self, VS_PLURAL, namespace, name)

    return OnCallRouter(api_client(kubeconfig=kubeconfig, context=context))


def _which(router: Any, plural: str, namespace: str, name: str = "") -> str:
    """The VirtualServices (or DestinationRules) `namespace` holds, for a name that is none of them (a typo,
    the wrong -n): one LIST, best effort ("" when it cannot be read); then the one closest to `name`, as
    "did you mean": among more than ten the list is cut (decision 161)."""
    import difflib
    from canary.routing.istio import VS_PLURAL

    kind, flag = (("VirtualService", "a model not named as its VirtualService: --virtual-service VS")
                  if plural == VS_PLURAL else ("DestinationRule", "--destination-rule DR"))
    try:
        names = sorted(str((o.get("metadata") or {}).get("name", "")) for o in router._list(plural, namespace)[0])
    except CanaryError:
        return ""
    if not names:
        return f"; namespace {namespace!r} has no {kind}: is -n right?"
    shown = ", ".join(names[:10]) + (f" and {len(names) - 10} more" if len(names) > 10 else "")
    near = difflib.get_close_matches(name, names, n=1, cutoff=0.75) if name else []
    guess = f"; did you mean {near[0]!r}?" if near else ""
    return f"; {kind}s in {namespace!r}: {shown} ({flag}){guess}"


def _named_what_is_there(exc: NotFound, router: Any, target: Target) -> NotFound:
    """`promote`'s refusal of a VirtualService or DestinationRule that is not there, before anything was claimed:
    with what the namespace holds, as the on-call commands say it (decision 147). It said only "ml/rec-modl
    (virtualservices): not found", naming no flag, where `canary status rec-modl` listed the names."""
    from canary.routing.istio import DR_PLURAL, VS_PLURAL

    for plural, name in ((VS_PLURAL, target.virtual_service), (DR_PLURAL, target.dr_name)):
        if exc.what == f"{target.namespace}/{name} ({plural})":  # as the router named what it read
            return NotFound(f"{exc}{_which(router, plural, target.namespace, name)}", what=exc.what)
    return exc


class DestinationRuleGone(NotFound):
    """The route's DestinationRule not found where its VirtualService was just read (so -n is right): deleted
    (by a person, a GitOps sync) or never applied, or a --destination-rule mistyped. `recorded`: the rollout the
    VirtualService records (None: none readable); `what` as NotFound's ("ml/rec-model (destinationrules)")."""

    def __init__(self, message: str, *, what: str, recorded: Optional[rl.RolloutState],
                 mid_rollout: bool = False) -> None:
        super().__init__(message, what=what)
        self.recorded = recorded
        self.mid_rollout = mid_rollout  # the one the rollout in progress goes by: no typo


def _destination_rule_gone(exc: NotFound, router: Any, target: Target) -> DestinationRuleGone:
    """The on-call commands' refusal of a route whose DestinationRule is not there, its VirtualService read: the
    DestinationRules the namespace holds (a mistyped --destination-rule), or, with none, that it is gone; never
    "is -n right?" (the VirtualService is there). One more read of the VirtualService for its record (best effort)."""
    from canary.routing import patch
    from canary.routing.istio import DR_PLURAL, VS_PLURAL

    try:
        recorded = _recorded(patch.read_state(router._get(VS_PLURAL, target.namespace, target.virtual_service)))
    except CanaryError:
        recorded = None
    where = f"{target.namespace}/{target.dr_name}"
    if recorded is not None and not recorded.terminal and \
            target.dr_name == (recorded.destination_rule or target.virtual_service):
        return DestinationRuleGone(
            f"{exc}: DestinationRule {where} is gone, mid-rollout (VirtualService {target.namespace}/"
            f"{target.virtual_service} records the rollout of {recorded.canary_version} {recorded.phase} at "
            f"{recorded.weights}): Istio cannot resolve the route's subsets, so every request it sends to them "
            "fails (503, NR) until it is restored; `canary status` shows the weights, `canary rollback` sets stable "
            "100% on the VirtualService alone", what=exc.what, recorded=recorded, mid_rollout=True)
    names = _which(router, DR_PLURAL, target.namespace, target.dr_name)
    if not names or names.endswith("is -n right?"):  # the VirtualService was read: -n is right
        names = (f"; namespace {target.namespace!r} has no DestinationRule, though VirtualService "
                 f"{target.namespace}/{target.virtual_service} is there: deleted, or never applied")
    return DestinationRuleGone(f"{exc}{names}", what=exc.what, recorded=recorded)


def _dr_gone_shown(exc: DestinationRuleGone, flag: Optional[str], target: Target) -> bool:
    """Whether `canary status` shows the route of `exc` from its VirtualService alone: the DestinationRule is the
    one the route goes by (the rollout's recorded one, or the default: the VirtualService's name), not a
    `--destination-rule` given that may be a typo (refused, exit 2, with the names there: decision 147)."""
    if not flag:
        return True
    recorded = exc.recorded.destination_rule if exc.recorded is not None else ""
    return flag == (recorded or target.virtual_service)


def _rule_elsewhere_note(why: str) -> str:
    """`canary status`'s note on a DestinationRule re-hosted to another service (`RouteStatus.rule_elsewhere`):
    why it is not pointed and how to mend it, what Istio does meanwhile, and what a rollback does (decision 650)."""
    return (f"{why}. Meanwhile every request to the route's subsets fails (503, NR: no DestinationRule of its host "
            "defines them); before it is mended a `canary rollback` exits 3, the rule not pointed (a route still "
            "split is set to stable 100% first; one at stable 100% is left as it is)")


def _dr_gone_note(target: Target, state: Optional[rl.RolloutState], model: str, ns: str,
                  virtual_service: Optional[str], route: Optional[str]) -> str:
    """`canary status`'s note (and `destination_rule_missing` in -o json) on a route whose DestinationRule is
    gone: which one, what Istio does with the route's subsets now, and what `canary rollback` writes."""
    where = f"{target.namespace}/{target.dr_name}"
    named = ("the rollout's record names it" if state is not None and state.destination_rule == target.dr_name
             else "the default: the VirtualService's name" if target.dr_name == target.virtual_service
             else "named by --destination-rule")
    said = (f"DestinationRule {where} ({named}) is gone (not found): Istio cannot resolve the route's subsets "
            "'stable' and 'canary' without it, so every request the route sends to them fails (503, NR) until it "
            "is restored")
    if state is not None and not state.terminal:
        return (f"{said} (re-apply it from your manifests: subset 'stable' selecting version {state.stable_version}"
                f", 'canary' {state.canary_version}); `canary rollback {_where(model, ns, virtual_service, route)}` "
                "writes stable 100% (canary 0) on the VirtualService alone and records the rollout rolled back, then "
                f"exits 3: the stable subset cannot be pointed at {state.stable_version} without the DestinationRule, "
                "so requests fail until it is restored")
    return f"{said} (re-apply it from your manifests, or name the right one: --destination-rule DR)"


def _recorded(text: Optional[str]) -> Optional[rl.RolloutState]:
    """The recorded rollout; None when there is no readable record."""
    from canary.reconcile import parse_record

    try:
        return parse_record(text)
    except CanaryError:
        return None


def _on_promote_signal(ctl: Any, grace_until: list[float], interrupt_grace: float, flying: Any) -> Callable[[int, Any], None]:
    """promote's handler of SIGINT, SIGTERM and SIGHUP: the first signal stops the Runner (`ctl.stop`, named in
    `ctl.interrupted_by`), starts the `interrupt_grace` s (`grace_until[0]`, a monotonic time; SIGALRM then cuts
    the requests in flight, `flying.cut()`) and keeps it for the route's write (`flying.signalled()`). A later
    signal changes nothing, even one whose handler runs nested inside the first's (`FirstSignal`, decision 461)."""
    from canary.interrupts import FirstSignal

    firsts = FirstSignal()

    def interrupted(signum: int, _frame: Any) -> None:
        first, name = firsts.claim(signum)  # first of all: a signal nested from here on is not the first
        ctl.interrupted_by = ctl.interrupted_by or name
        if first:  # the first one stopped it, and starts the grace
            grace_until[0] = time.monotonic() + interrupt_grace
            # and a request sent before it, still unanswered when the grace ends, is abandoned then: it kept
            # its own 10 s timeout, and with a hung API server exit 6 came after the CI's SIGKILL (decision 128)
            signal.signal(signal.SIGALRM, lambda _s, _f: flying.cut())
            signal.setitimer(signal.ITIMER_REAL, interrupt_grace)
        ctl.stop.set()
        if first:  # last: it may raise where the main thread waits on a request not the route's write
            flying.signalled()

    return interrupted


def _metrics(url: Optional[str], token: Optional[str], user: Optional[str], password: Optional[str], insecure: bool,
             ca_file: Optional[str] = None) -> Any:
    return opts.prometheus(url, token, user, password, ca_file, insecure)


def _target(model: str, namespace: str, vs: Optional[str], dr: Optional[str], *, stable: str = "", canary: str = "",
            route: Optional[str] = None, kubernetes: bool = True) -> Target:
    """The command's Target; with `kubernetes` (its VirtualService is read or written) its names are
    checked as Kubernetes names first (ConfigError, exit 2, before any request). Commands that only
    query Prometheus pass False: a model name need not be an object name there."""
    from canary.model import check_target_names

    target = Target(namespace=namespace, virtual_service=vs or model, model=model, stable_version=stable,
                    canary_version=canary, destination_rule=dr or "", route=route or "")
    if kubernetes:
        check_target_names(target)
    return target


def state_dict(state: rl.RolloutState, *, exit_code: int | None = None) -> dict[str, Any]:
    """The recorded rollout state (`RolloutState.to_json`) plus `step_number`.

    `step` is the record's 0-based index into the policy's `steps` (-1 before the first step);
    `step_number` is the same step counted from 1 (0 before the first), as the logs, the
    CanaryRollout status and `canary status`'s text count it. A rolled-back or aborted rollout has
    `end_cause`, one of `telemetry.ROLLBACK_REASONS`."""
    d = json.loads(state.to_json())
    d["step_number"] = state.step + 1
    if state.phase in (rl.ROLLED_BACK, rl.ABORTED):
        # why it ended, as `canary_rollbacks_total{reason}` counts it: "check" (shown beyond a limit) and
        # "deadline" (not shown within by the step's deadline) both exit 1; a pipeline tells them apart here.
        # As recorded with the end (decision 607); a record from before that, by its reason's words
        d["end_cause"] = rl.cause_of(state)
    if exit_code is not None:
        d["exit_code"] = exit_code
    return d


# ---- promote ---------------------------------------------------------------------------


def _asked_output(args: list[str]) -> str:
    """The -o/--output a command line asks for, read from its raw words (the last one wins, as click's
    parse does); "" when none is readable."""
    found = ""
    for i, word in enumerate(args):
        if word in ("-o", "--output") and i + 1 < len(args):
            found = args[i + 1]
        elif word.startswith("--output="):
            found = word.partition("=")[2]
        elif word.startswith("-o") and len(word) > 2 and not word.startswith("--"):
            found = word[2:]
    return found.strip()


class PromoteCommand(typer.core.TyperCommand):
    """`promote` whose command line click refuses (a pipeline template's unset variable: a missing
    option, an option's value taken for the next flag, an unknown flag, a bad duration) still prints
    its one `-o json|yaml` document before click's usage message and exit 2 (decision 116)."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        words = list(args)  # click's parser consumes the list it is given
        try:
            return super().parse_args(ctx, args)
        except typer.core._click.exceptions.UsageError as exc:
            output = _asked_output(words)
            if output in ("json", "yaml"):
                opts.emit({"model": None, "canary_version": None, "phase": None, "exit_code": EXIT_BAD_INPUT,
                           "error": exc.format_message()}, output)
            raise


NOTIFY_WAIT_S = 5.0  # how long `promote` waits at exit for its end's posts (--notify-wait's default)


@app.command(cls=PromoteCommand)
def promote(
    ctx: typer.Context,
    model: str = typer.Argument(..., help="model name (and VirtualService name unless --virtual-service)"),
    canary_version: str = typer.Option(..., "--canary-version", help="version label of the canary pods"),
    policy_file: Path = typer.Option(..., "--policy", help="policy YAML"),
    stable_version: str = typer.Option("", "--stable-version", help="default: what the stable subset selects now"),
    namespace: Optional[str] = NamespaceOpt,
    virtual_service: Optional[str] = VsOpt,
    destination_rule: Optional[str] = DrOpt,
    route: Optional[str] = typer.Option(None, "--route", help="name of the VirtualService's HTTP route (default: the "
                                                              "policy's `route`, else the only one)",
                                        callback=not_blank("the policy's route, else the only one")),
    kubeconfig: Optional[str] = KubeconfigOpt,
    context: Optional[str] = ContextOpt,
    prometheus_url: Optional[str] = opts.PromUrlOpt,
    prometheus_token: Optional[str] = opts.PromTokenOpt,
    prometheus_user: Optional[str] = opts.PromUserOpt,
    prometheus_password: Optional[str] = opts.PromPasswordOpt,
    prometheus_ca_file: Optional[str] = opts.PromCaOpt,
    insecure: bool = opts.InsecureOpt,
    triton_canary: Optional[str] = typer.Option(None, "--triton-canary", help="canary Triton URL (host:port) for the gates"),
    triton_stable: Optional[str] = typer.Option(None, "--triton-stable", help="stable Triton URL, to compare model metadata"),
    on_interrupt: str = typer.Option("rollback", "--on-interrupt", help="on SIGINT/SIGTERM: rollback (stable 100%, exit 3) or pause (keep split, exit 130)"),
    retry: bool = typer.Option(False, "--retry", help="run the version again when the route records its rollout "
                                                      "rolled back (without it, a re-run reports that rollback: exit 1; with --via-controller too)"),
    via_controller: bool = typer.Option(False, "--via-controller", help="create a CanaryRollout for `canary controller run` and follow it (same exit codes)"),
    rollout_name: Optional[str] = typer.Option(None, "--rollout-name", help="CanaryRollout name (default: <model>-<version>, lower-cased, . and _ as -, and a hash of both added where that changed a character or cut it to 253)",
                                               callback=not_blank("the default name, <model>-<version>")),
    timeout: float = opts.DurationOpt("1h", "--timeout", help="--via-controller: give up following after this long "
                                                              "(exit 3; the rollout goes on)"),
    wait_ready: float = opts.DurationOpt("10m", "--wait-ready", zero=True,
                                         help="before any traffic moves, wait this long for a Ready pod of the "
                                         "canary version and one of the stable version (their DestinationRule "
                                         "subset's and Service's labels); none by then: exit 3, nothing moved "
                                         "(0: do not wait)"),
    wait_busy: float = opts.DurationOpt("0s", "--wait-busy", zero=True,
                                        help="when another rollout holds the route (another job's promote, a "
                                        "CanaryRollout), wait this long for it to end, reading the route every 5s, "
                                        "then claim it; still held then: exit 75, nothing moved (0: refuse at once)"),
    interrupt_grace: float = opts.DurationOpt(
        "25s", "--interrupt-grace", most=(3600.0, "after a signal the process waits this long for its requests, "
                                          "far past any pod's or CI's grace before SIGKILL"),
        help="after SIGINT/SIGTERM/SIGHUP, end every Kubernetes request by this long from the signal: the "
             "process exits by then with traffic's state said (exit 6 when stable 100% could not be written); "
             "keep it below your CI's or pod's grace before SIGKILL; at least 1s; not given under GitHub "
             "Actions: 8s (its cancel kills 10 s after SIGINT). Spent on the route's "
             "stable-100% write first: other requests (history, Events) wait until it lands"),
    webhook: list[str] = typer.Option([], "--webhook", help="generic JSON webhook URL told of the rollout's end "
                                      "(rollback, aborted, promotion; repeatable; also CANARY_WEBHOOK_URLS)"),
    slack_webhook: list[str] = typer.Option([], "--slack-webhook", help="Slack incoming-webhook URL told of the end "
                                            "(repeatable; also CANARY_SLACK_WEBHOOK_URLS)"),
    notify_wait: float = opts.DurationOpt(
        "5s", "--notify-wait", zero=True, most=opts.NOTIFY_WAIT_BOUND,
        help="at exit, wait this long for the end's posts to the webhooks and Slack (a slow receiver: more); what is "
             "still undelivered then is logged, `notify.undelivered`; after a signal at most what is left of "
             "--interrupt-grace (0: do not wait)"),
    output: str = OutputOpt,
    log_format: str = LogFormatOpt,
) -> None:
    """Walk traffic to the canary step by step; promote (exit 0) or roll back (exit 1).

    The end this run makes (rollback, aborted, promotion) is posted to the webhooks and Slack URLs given
    (canary/notify.py's formats, as the controller's), before the command exits (up to --notify-wait more, 5 s;
    what is still undelivered then is logged, `notify.undelivered`). A bad URL exits 2 before anything is read.

    Example: canary promote rec-model --canary-version v2 --policy policies/default.yaml --prometheus-url http://prometheus:9090

    Example: canary promote rec-model --canary-version v2 --policy p.yaml --via-controller --timeout 2h -o yaml
    """
    logs.configure(fmt=log_format)
    ran: dict[str, Any] = {}  # the Runner, once built: a failure after the claim reports its last state

    def refused(code: int, message: str) -> None:  # -o json|yaml: a document on stdout on every path
        if output not in ("json", "yaml"):
            return
        ctl = ran.get("ctl")
        followed = ran.get("followed") or {}
        running = followed.get("status")
        if running:  # a follow cut short (--timeout, a signal) while its rollout runs: where it is (decision 621)
            from canary.cli_controller import follow_document

            # `rollout`: the CanaryRollout that runs on, named as an end's document names it (decision 642)
            opts.emit({"model": model, "canary_version": canary_version,
                       **follow_document(running, outcome=None, exit_code=code, rollout=followed.get("rollout")),
                       "error": message}, output)
            return
        if getattr(ctl, "rollback_failed", False):  # traffic moved and stable 100% could not be completed
            opts.emit({**state_dict(ctl._current, exit_code=code), "error": message,  # type: ignore[union-attr]
                       "rollback_failed": True}, output)
            return
        doc = {"model": model, "canary_version": canary_version, "phase": None, "exit_code": code, "error": message}
        busy = ran.get("busy")
        if code == EXIT_BUSY and busy is not None:  # who holds the route, for a pipeline's log and its on-call
            from canary.reconcile import shown_owner

            doc.update(holder=shown_owner(busy.holder) or None, holder_job=busy.job or None)
        opts.emit(doc, output)

    def flag_error(message: str) -> None:
        refused(EXIT_BAD_INPUT, message)
        fail(message, EXIT_BAD_INPUT)

    if on_interrupt not in ("rollback", "pause"):
        flag_error("--on-interrupt must be 'rollback' or 'pause'")
    if interrupt_grace < MIN_INTERRUPT_GRACE_S:
        from canary.kube import MIN_REQUEST_S

        # `1ms` (or `0.01`, read as seconds) was taken: after a signal no request could be sent at all (none is under
        # kube.MIN_REQUEST_S left), so every interrupt ended in exit 6 with traffic split and nothing tried
        flag_error(f"--interrupt-grace {interrupt_grace:g}s is too short: after a signal the rollback must read the "
                   f"route and write stable 100% within it (no request is sent with under "
                   f"{MIN_REQUEST_S * 1000:.0f} ms left); give at least {MIN_INTERRUPT_GRACE_S:g}s")
    # a flag that does nothing in the mode asked for is refused, not ignored: `--timeout 30m` without
    # --via-controller bounded nothing, and `--on-interrupt pause` with it held nothing (a cancelled
    # follower leaves the rollout to the controller, whatever the flag said)
    mode_flags = (("--rollout-name", "rollout_name", True, ""), ("--timeout", "timeout", True, ""),
                  ("--on-interrupt", "on_interrupt", False, ": a CanaryRollout goes on in the controller when the "
                   "follower is interrupted (`canary rollback` ends it)"),
                  ("--wait-ready", "wait_ready", False, ": the controller waits for Ready canary and stable pods by itself"),
                  ("--wait-busy", "wait_busy", False, ": a CanaryRollout waits for the route by itself (Ready False, "
                   "RolloutBusy)"),
                  ("--interrupt-grace", "interrupt_grace", False, ": an interrupted follower writes nothing"),
                  ("--notify-wait", "notify_wait", False, ": the controller posts the end, not the follower"))
    for flag, param, needs, why in mode_flags:
        if _given(ctx, param) and needs != via_controller:
            flag_error(f"{flag} only applies {'with' if needs else 'without'} --via-controller{why}")
    # the controller measures with its own Prometheus (`canary controller run --prometheus-url`): these were taken
    # without a word and the CanaryRollout carried none of them. Only as typed: CANARY_PROMETHEUS_* exported for
    # the other commands (`demo --keep` says to) is no request of this one (decision 651)
    prometheus_flags = (("--prometheus-url", "prometheus_url"), ("--prometheus-token", "prometheus_token"),
                        ("--prometheus-user", "prometheus_user"), ("--prometheus-password", "prometheus_password"),
                        ("--prometheus-ca-file", "prometheus_ca_file"), ("--insecure-skip-tls-verify", "insecure"))
    for flag, param in prometheus_flags if via_controller else ():
        if opts.typed(ctx, param):
            flag_error(f"{flag} does not apply with --via-controller: the controller measures with its own "
                       "Prometheus (`canary controller run --prometheus-url` and its other Prometheus flags)")
    if not via_controller and not _given(ctx, "interrupt_grace"):
        interrupt_grace = ci_interrupt_grace(interrupt_grace)

    if via_controller:
        from canary import cli_controller
        from canary.cli_controller import follow

        from canary.interrupts import Interrupt, take_early

        def interrupted(name: str) -> CanaryError:
            # a cancelled CI job: exit 3 with the -o json document (SIGINT was click's exit 130, SIGTERM and
            # SIGHUP killed the follower with nothing said); the request is the controller's from here on
            where = rollout_name or cli_controller.rollout_name(model, canary_version)
            return CanaryError(f"interrupted ({name}) while following; the CanaryRollout {where}, once created, goes "
                               "on in the controller (`canary status`; `canary rollback` ends it)")

        if webhook or slack_webhook:  # the controller posts the ends; a follower posting them too said each twice
            flag_error("--webhook and --slack-webhook do not apply with --via-controller: the controller posts the "
                       "rollout's end (its own --webhook / --slack-webhook)")
        triton = {k: v for k, v in (("stableUrl", triton_stable), ("canaryUrl", triton_canary)) if v} or None
        # raised once, and only while following (a second signal must not cut the report); raised again at the
        # follower's next read when native code lost the handler's raise (decision 225)
        signals = Interrupt(interrupted).install()
        signals.fired = take_early()  # a cancel while the modules loaded (decision 619)

        def following() -> int:
            # that cancel said at once, as `promote` says it before its policy read: at follow's first check it came
            # after the policy read and the client's build, whose refusal (no kubeconfig: exit 2) was said instead
            signals.check()
            try:
                return follow(
                    model=model, canary_version=canary_version, policy_file=policy_file,
                    namespace=opts.namespace(namespace, kubeconfig, context), stable_version=stable_version,
                    virtual_service=virtual_service, destination_rule=destination_rule, route=route,
                    kubeconfig=kubeconfig, context=context, name=rollout_name, triton=triton, output=output,
                    timeout_s=timeout, interrupted=signals.check, reporting=signals.disarm, retry=retry,
                    seen=ran.setdefault("followed", {}))
            except RolloutBusy as exc:  # its name another request's running rollout (decision 701): `holder_job`
                ran["busy"] = exc
                raise

        try:
            code = run_guarded(following, report=lambda code, message: (signals.disarm(), refused(code, message)))
        finally:
            signals.restore()  # an in-process caller (a test) gets its own handlers back
        raise typer.Exit(code)

    def early(name: str) -> CanaryError:
        return CanaryError(f"interrupted ({name}) before the rollout began; nothing was read or written")

    def go() -> int:
        # a cancel before the Runner exists (the policy read, the clients built): exit 3 with the -o json
        # document, not click's 130 for SIGINT (docs/reference/cli.md's "held at the current split") or a kill for SIGTERM
        from canary.interrupts import Interrupt, take_early

        before_runner = ran["signals"] = Interrupt(early).install()
        before_runner.fired = take_early()  # a cancel while the modules loaded (decision 619): exit 3, nothing read
        before_runner.check()
        ran["alarm"] = {signal.SIGALRM: signal.getsignal(signal.SIGALRM)}
        from canary.kube import bound_by
        from canary.notify import Notifier
        from canary.runner import Runner
        from canary.policy import advisories, load_policy
        from canary.routing.patch import RouteNotFound

        # first: a bad URL (no scheme, a port that is none) is refused before anything is read or moved, not
        # found at the rollback it was meant to announce
        notifier = ran["notifier"] = Notifier.from_env(webhooks=webhook, slack=slack_webhook)
        policy = load_policy(policy_file)
        target = _target(model, opts.namespace(namespace, kubeconfig, context), virtual_service, destination_rule,
                         stable=stable_version, canary=canary_version, route=route or policy.route)
        for field, message in advisories(policy):  # valid, and slower than it reads: said before anything moves,
            # with the rollout's context as every line has it (docs/reference/events.md): a CI log of a fleet's
            # promotes named the file alone (decision 148)
            logs.get(component="promote", **target.log_context()).warning(
                "policy.advisory", file=str(policy_file), field=field, message=message)
        metrics = _metrics(prometheus_url, prometheus_token, prometheus_user, prometheus_password, insecure,
                           prometheus_ca_file)
        # a Triton flag not given is refused by the Runner before its first write: a re-run that reports its
        # version's earlier end (nothing written) said "pass --triton-canary" first, exit 2 (decision 544)
        flags_missing = gate_flags_missing(policy.gates.triton, policy_file, triton_stable, triton_canary)
        gate = None if flags_missing else _gate(policy, policy_file, model, triton_stable, triton_canary)
        router = unreadable_route_says(flags_missing, lambda: _router(kubeconfig, context))
        # every Kubernetes request ends within --interrupt-grace of the first signal (none sent after it): an
        # API server that accepts and never answers held the process 40 s and more, past a pod's 30 s grace,
        # and the SIGKILL cut it off before it could say how traffic stands (`traffic.unsafe`, exit 6)
        grace_until = ran["grace_until"] = [math.inf]
        # ...and the grace is the route's stable-100% write's first: a request that is not the route's (the history
        # ConfigMap, an Event, a pod count) is abandoned at the signal and not sent until that write lands; a hung
        # one spent the whole grace and the rollback was never tried (decision 407)
        def on_route(path: str) -> bool:
            # the route as the Runner drives it now, not as the flags named it: a re-run with no
            # --destination-rule resuming a rollout drives the DestinationRule its record names, whose reads and
            # writes after the signal were held back as not the route's (the pause refused unsent, stable 100%
            # written instead; decision 416)
            return getattr(ran.get("ctl"), "target", target).is_route_path(path)

        def grace() -> str:
            return f"the {interrupt_grace:g} s after {ctl.interrupted_by or 'the signal'} (--interrupt-grace)"

        flying = bound_by(router.custom.api_client, lambda: grace_until[0], spent=lambda: f"{grace()} are spent",
                          route=on_route, kept=lambda: f"{grace()} are kept for the route's stable-100% write first",
                          stale=lambda: ctl.writing_before_signal)
        job = ci_job_of_env(**target.log_context())
        ctl = ran["ctl"] = Runner(policy=policy, target=target, router=router, metrics=metrics,
                                  gate=gate, refusal=flags_missing, on_interrupt=on_interrupt, retry=retry,
                                  wait_ready_s=wait_ready,
                                  wait_busy_s=wait_busy, job=job, job_key=ci_job.rerun_key(os.environ),
                                  settled=flying.settle)

        interrupted = _on_promote_signal(ctl, grace_until, interrupt_grace, flying)
        # SIGHUP too: the session a pipeline ran promote in went away (an ssh connection to the deploy host
        # dropped, a runner's terminal closed); its default action killed the process with the route split
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, interrupted)
        # a signal before this whose raise native code lost (building a kubernetes client's validators: decision
        # 225) is said now, before the Runner reads or writes anything; it was dropped and the rollout began
        before_runner.check()
        # the end is posted the moment it is on the route (`Runner.ended`), not after its history writes: those
        # waited 7.5 s and more on a failing ConfigMap API first (decision 720); delivered while the rest of the
        # run goes on, waited for at exit
        ctl.ended = lambda state: announce(notifier, state, namespace=target.namespace,
                                           rollout=target.virtual_service)
        ctl.ended_other = ctl.ended  # a split nobody owned, ended before the claim: posted as every end (779)
        display = None
        from canary import streams

        if output == "text" and streams.isatty("stdout"):  # no stdout at all (closed by the job): no panel
            from canary.display import LiveDisplay

            display = LiveDisplay(policy)
            ctl.on_update = display.update
        try:
            result = ctl.run()
        except RolloutBusy as exc:  # exit 75: the document names the holder (`refused`)
            ran["busy"] = exc
            raise
        except NotFound as exc:
            if ctl._current is not None:  # after the claim: said as the rollout found it
                raise
            raise _named_what_is_there(exc, router, target) from None
        except RouteNotFound as exc:
            raise policy_route_named(exc, route, policy, policy_file) from None
        except RollbackFailed as exc:  # traffic had moved and stable 100% is not sure: the most urgent news of all
            announce_failed(notifier, ctl, exc, namespace=target.namespace, rollout=target.virtual_service)
            raise
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)  # the grace's alarm, if set: nothing to cut from here on
            if display:
                display.close()
        doc = state_dict(result.state, exit_code=result.exit_code)
        tail = ""
        if ctl.found_ended:  # an earlier end reported, nothing written: said as `--via-controller` says it
            doc["already_ended"] = True
            if result.state.phase == rl.ROLLED_BACK:  # when, why, and that `--retry` runs it again (decision 278)
                fields, tail = earlier_rollback(result.state)
                doc.update(fields)
                tail = f"; {tail}"
            elif result.state.phase == rl.PROMOTED:  # a re-run's line read as a fresh promotion (decision 357)
                fields, tail = earlier_promotion(result.state)
                doc.update(fields)
                tail = f"; {tail}"
        opts.emit(doc, output,
                  lambda wide: typer.echo(state_line(result.state, wide=wide, route=target.route) + tail))
        return result.exit_code

    try:
        code = run_guarded(go, report=refused)
    finally:
        if "notifier" in ran:  # delivered, or what was not is logged (`notify.undelivered`)
            ran["notifier"].close(notify_wait_s(ran.get("grace_until", [math.inf])[0], time.monotonic(),
                                                 wait_s=notify_wait))
        # the handlers found are put back, the delivery above still covered: an in-process caller (a test, a
        # program embedding the CLI) kept promote's, which set a stopped Runner's event at its next Ctrl-C
        if "signals" in ran:
            ran["signals"].restore()
        if "alarm" in ran:
            from canary.interrupts import restore_handlers

            if signal.getsignal(signal.SIGALRM) is not ran["alarm"][signal.SIGALRM]:  # a signal after the Runner's
                signal.setitimer(signal.ITIMER_REAL, 0)  # end set the grace's alarm: given back, it went off
            restore_handlers(ran["alarm"])
    raise typer.Exit(code)


def ci_job_of_env(**context: Any) -> str:
    """The CI job this promote runs in (`canary.ci_job.from_env`), recorded with its owner: on-call finding the
    route held is told which pipeline's job to cancel, not only a runner's host and pid (decision 387). Never a
    value that failed its check, nor any other variable: `promote.ci_job_unrecorded` names the variable only.
    `context`: the rollout's log fields."""
    job, unrecorded = ci_job.from_env(os.environ)
    for variable, why in unrecorded:
        logs.get(component="promote", **context).warning(
            "promote.ci_job_unrecorded", variable=variable, why=why,
            note="the rollout's record names no CI job; the host and process still name its holder")
    return job


def ci_interrupt_grace(default_s: float) -> float:
    """`--interrupt-grace` when it is not given: under a CI whose cancel kills sooner than the default
    (`canary.ci_job.cancel_grace_s`: GitHub Actions' SIGINT, SIGTERM 7.5 s later, SIGKILL 2.5 s after that),
    that CI's; said once (`promote.interrupt_grace_from_ci`). With 25 s a cancelled job whose API server hung was
    SIGKILLed at 10 s, before its rollback's end said how traffic stands (`traffic.unsafe`, exit 6; decision 458)."""
    ci = ci_job.cancel_grace_s(os.environ)
    if ci is None or ci[0] >= default_s:
        return default_s
    logs.get(component="promote").info("promote.interrupt_grace_from_ci", interrupt_grace_s=ci[0], ci=ci[1],
                                       note="--interrupt-grace not given: the CI kills a cancelled step sooner than "
                                            f"{default_s:g}s")
    return ci[0]


def notify_wait_s(grace_until: float, now: float, *, wait_s: float = NOTIFY_WAIT_S) -> float:
    """Seconds `promote` waits at exit for its posts: `wait_s` (--notify-wait, NOTIFY_WAIT_S by default), or after
    a signal what is left of `--interrupt-grace` (`grace_until`, monotonic; math.inf before a signal), never below
    0. The 5 s came on top of the grace, past a pod's terminationGracePeriodSeconds: the SIGKILL cut the exit's
    last line."""
    return max(0.0, min(wait_s, grace_until - now))


def announce(notifier: Any, state: rl.RolloutState, *, namespace: str, rollout: str) -> None:
    """Post the end `state` records, as the controller does: `notify_body.announce` (never raises)."""
    from canary.notify_body import announce as post

    post(notifier, state, namespace=namespace, rollout=rollout)


def announce_failed(notifier: Any, ctl: Any, exc: BaseException, *, namespace: str, rollout: str) -> None:
    """A run that raised RollbackFailed (`ctl`: its Runner): "aborted", stable 100% not confirmed
    (`announce_unfinished`), unless its end was told at its stable-100% write (`Runner.told_end`: what failed came
    after it, the stable subset's pointing over a DestinationRule deleted or re-hosted, paged in the log). That post
    said "rollback, 100/0" and this one then "aborted, weights unknown, stable 100% not confirmed": two ends for
    one, the second false (r-aa's review of decision 725). So before the claim (`ctl._current` None), where the
    end that failed is the split nobody owned that this promote ended first, told at its write (`Runner.told_other`;
    decision 784)."""
    if getattr(ctl, "told_end", False) or (ctl._current is None and getattr(ctl, "told_other", False)):
        return
    announce_unfinished(notifier, ctl._current, exc, namespace=namespace, rollout=rollout)


def announce_unfinished(notifier: Any, state: rl.RolloutState | None, exc: BaseException, *, namespace: str,
                        rollout: str) -> None:
    """Post "aborted" with the weights unknown (null) and the error as the reason ("...; then stable 100%
    failed: ...", which says where traffic was last seen and what to do by hand) when `promote` ends
    without being able to write stable 100%: it posted nothing, so the channel heard nothing of the one end
    that needs a person. `state`: the last state written to the route (None: only the error is said)."""
    from canary.notify import payload_for

    try:
        payload = dict(payload_for(state, namespace=namespace, rollout=rollout)) if state is not None else {
            "namespace": namespace, "rollout": rollout, "virtual_service": rollout}
        payload.update(weights=None, reason=f"stable 100% not confirmed: {exc}")
        notifier.notify("aborted", payload)
    except Exception as err:  # noqa: BLE001 - an announcement never changes the exit
        logs.get().error("notify.internal_error", notify_event="aborted", error=type(err).__name__)


_given = opts.given


def earlier_rollback(s: rl.RolloutState, *, created: bool = False) -> tuple[dict[str, Any], str]:
    """What a re-run that meets the earlier rollback `s` of its version says about it (decision 278): the
    `-o json` fields (`rolled_back_at`: its time, UTC ISO 8601, "" when unrecorded; `before_traffic`: True when
    its pre-traffic gate ended it at 0%: step -1, before the first step, and cause `gate`; `next`: how to run
    the version again) and the one text line's tail. The run wrote nothing (`created`: the `--via-controller` wording, nothing created);
    the same command with `--retry` runs the version again. Before decision 278 only a JSON log line's note
    named `--retry`, and the text line read as a fresh rollback."""
    from canary.crd import iso

    at = iso(s.updated_at) if s.updated_at else ""
    before_traffic = s.step < 0 and rl.cause_of(s) == "gate"
    if before_traffic:
        nxt = ("its pre-traffic gate failed before any traffic moved (a wrong --triton-canary or --triton-stable "
               "URL fails it as a canary whose model does not load does): once the cause is fixed, run the same "
               "command with --retry")
    else:
        nxt = "run the same command with --retry to roll this version out again (it goes back in front of users)"
    done = "nothing created" if created else "nothing written"
    tail = f"rolled back earlier{f' at {at}' if at else ''}, {done}; {nxt}"
    return {"rolled_back_at": at, "before_traffic": before_traffic, "next": nxt}, tail


def _captured(write: Callable[[], None]) -> str:
    """What `write` prints on stdout, captured instead of printed (its rich tables rendered as for a stdout that is
    no terminal, which is when `status --watch` compares its passes)."""
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        write()
    return buf.getvalue()


def earlier_promotion(s: rl.RolloutState) -> tuple[dict[str, Any], str]:
    """What a re-run that meets the earlier promotion `s` of its version says about it (decision 357): the `-o json`
    fields (`promoted_at`: its time, UTC ISO 8601, "" when unrecorded; `next`) and the text line's tail. The text
    line of a re-run read "promoted: ... - all steps passed", word for word a fresh promotion's: a pipeline's retry
    (or a re-run of an old job) could not tell from its log that nothing was judged or moved this time."""
    from canary.crd import iso

    at = iso(s.updated_at) if s.updated_at else ""
    nxt = f"nothing to do: {s.canary_version} already serves all traffic"
    return {"promoted_at": at, "next": nxt}, f"promoted earlier{f' at {at}' if at else ''}, nothing written; {nxt}"


def state_line(s: rl.RolloutState, *, wide: bool = False, route: str = "") -> str:
    """One rollout state as the one line `promote`, `rollback`, `pause` and `resume` print."""
    # promoted, 100/0 read alone says the canary got nothing: the stable subset now selects the canary version
    split = "stable/canary; the stable subset now selects " + s.canary_version if s.phase == rl.PROMOTED else \
        "stable/canary"
    line = f"{s.phase}: {s.model} {s.canary_version} weights {s.weights} ({split})"
    if route:
        line += f" route {route}"
    if wide:
        step = f"{s.step + 1}" if s.step >= 0 else "-"
        line += f" stable {s.stable_version or '-'} step {step} look {s.look} failed-looks {s.failed_looks}"
    return f"{line} - {s.reason}"


def warn_gate_off(cfg: Any, policy_file: Path, stable_url: Optional[str], canary_url: Optional[str]) -> None:
    """Log `gate.flags_ignored` (warning) when Triton URLs are given but the policy's `gates.triton` is
    absent or `enabled: false`: no gate runs, and the person who passed the URLs expects one. A warning,
    not a refusal: pipelines that turn the gate off in the policy keep their flags."""
    if (cfg is not None and cfg.enabled) or not (stable_url or canary_url):
        return
    flags = [f for f, v in (("--triton-stable", stable_url), ("--triton-canary", canary_url)) if v]
    logs.get(component="promote").warning(
        "gate.flags_ignored", flags=" ".join(flags), policy=str(policy_file),
        reason=f"{policy_file}: gates.triton is {'absent' if cfg is None else 'enabled: false'}; no Triton gate runs "
               "(no compatibility check, no readiness probe)")


def gate_flags_missing(cfg: Any, policy_file: Path, stable_url: Optional[str],
                       canary_url: Optional[str]) -> ConfigError | None:
    """The refusal (not raised) naming the Triton flag not given when the policy's `gates.triton` is enabled; None
    when both are given or no gate runs. `promote` raises it only where its run would move traffic: a re-run that
    reports its version's earlier end first (nothing written, no gate needed; decision 544)."""
    if cfg is None or not cfg.enabled:
        return None
    if not canary_url:
        return ConfigError(f"{policy_file}: gates.triton is enabled; pass --triton-canary (and --triton-stable)")
    if not stable_url:  # without it the tensor-contract check (docs/triton.md) was skipped, saying nothing
        return ConfigError(f"{policy_file}: gates.triton is enabled; pass --triton-stable too: the canary's inputs, "
                           "outputs and max_batch_size are compared with stable's before it gets traffic")
    return None


def unreadable_route_says(missing: ConfigError | None, client: Callable[[], Any]) -> Any:
    """`client()`, the Kubernetes client that reads the route; when it cannot be built (no kubeconfig) and a Triton
    flag is `missing`, that flag is refused instead: no earlier end can be found to report, and the flag was said
    first before decision 544."""
    try:
        return client()
    except CanaryError:
        if missing is not None:
            raise missing from None
        raise


def check_gate_urls(cfg: Any, policy_file: Path, stable_url: Optional[str], canary_url: Optional[str]) -> None:
    """ConfigError naming the flags when the policy's `gates.triton` is enabled and a Triton URL is missing,
    malformed, or the same server for both (`promote`, and `promote --via-controller` before its CanaryRollout
    is created)."""
    if cfg is None or not cfg.enabled:
        return
    missing = gate_flags_missing(cfg, policy_file, stable_url, canary_url)
    if missing is not None:
        raise missing
    assert canary_url  # gate_flags_missing: given
    from canary.gates import check_urls

    # a URL tritonclient would misread, or one server given as both (decision 204): refused here, before a
    # CanaryRollout is created, as `promote` refuses it before anything is read
    check_urls(cfg.protocol, stable_url=stable_url, canary_url=canary_url,
               url_fields=("--triton-stable", "--triton-canary"))


def policy_route_named(exc: Exception, flag: str | None, policy: Any, policy_file: Path) -> Exception:
    """`exc` (a RouteNotFound: "ns/vs: spec.http has no route named 'x' (routes: [...])"), naming the policy
    file's `route:` field when the name came from there (no `--route` given): a mistyped `route:` said only
    the VirtualService, and the user looked for the typo in the command (decision 214). Else `exc` itself."""
    if flag or not getattr(policy, "route", None):
        return exc
    return type(exc)(f"{exc}; the route named is the policy's: {policy_file}: route: {policy.route!r} "
                     "(--route overrides it)")


def _gate(policy: Any, policy_file: Path, model: str, stable_url: Optional[str], canary_url: Optional[str]) -> Any:
    cfg = policy.gates.triton
    if cfg is None or not cfg.enabled:
        warn_gate_off(cfg, policy_file, stable_url, canary_url)
        return None
    check_gate_urls(cfg, policy_file, stable_url, canary_url)
    from canary.gates import TritonGates

    return TritonGates(cfg, model=model, stable_url=stable_url, canary_url=canary_url, base_dir=policy_file.parent,
                       url_fields=("--triton-stable", "--triton-canary"))


# ---- operator commands -------------------------------------------------------------------


def _operator(model: str, namespace: Optional[str], vs: Optional[str], dr: Optional[str], route: Optional[str],
              kubeconfig: Optional[str], context: Optional[str], event: Any, output: str) -> None:
    logs.configure()
    command = type(event).__name__.lower()  # rollback, pause, resume
    # a Ctrl-C on a command hanging on the API server exited 130 saying nothing, whether or not its write had
    # been sent (decision 308): the route's writes sent so far, and where, are said then
    sent: list[str] = []
    at = {"ns": namespace or "", "vs": vs or model}

    def go() -> int:
        from canary.runner import oncall_action

        ns = at["ns"] = opts.namespace(namespace, kubeconfig, context)
        router = _oncall_router(kubeconfig, context)
        _note_route_writes(router.custom.api_client, sent)
        named = _target(model, ns, vs, dr, route=route)
        try:
            target = router.resolve(named)
        except TargetError as exc:
            if not isinstance(event, rl.Rollback) or isinstance(exc, NotFound) or not router.in_progress(named):
                raise  # nobody's rollout: nothing tells the routes apart, on-call names one (--route)
            from dataclasses import replace

            from canary.routing.patch import RouteNotFound

            target, ambiguous = named, exc
            if isinstance(exc, RouteNotFound):
                # a mistyped --route (or one renamed since): the rollback goes on, on the rollout's own route
                # (its record, else the weights it wrote), and no line names the route given as the one written
                logs.get(model=model, namespace=ns).warning(
                    "rollback.route_not_found", route_given=route, error=str(exc),
                    note="stable 100% on the rollout's own route (recorded, else the one holding its weights)")
                target = named = replace(named, route="")
                try:
                    target, ambiguous = router.resolve(named), None
                except TargetError as again:
                    ambiguous = again
            if ambiguous is not None:
                # a rollout in progress claimed the only route, and copies of it were added since: which one
                # it drives cannot be told: stable 100% on each that matches (canary.routing.stable)
                logs.get(model=model, namespace=ns).warning("rollback.route_ambiguous", error=str(ambiguous),
                                                            note="stable 100% on every route that may be the rollout's")
        log = logs.get(model=model, namespace=ns, **({"route": target.route} if target.route else {}))
        # an edit of its CanaryRollout waiting for this resume (decision 538): read before the resume lands, as the
        # controller's next tick applies it and clears what waited
        edit = _edit_before_resume(router, target) if isinstance(event, rl.Resume) else None
        try:
            state = oncall_action(router, target, event, log=log)
        except DestinationRuleGone as exc:
            if not exc.mid_rollout:
                raise  # a mistyped --destination-rule, or no rollout: bad input, exit 2, with the names there
            # the rollout's DestinationRule deleted (a person, a GitOps sync): a pause or resume cannot hold or go on
            # with routing Istio cannot resolve; it said "is -n right?", exit 2, blaming the flags. Nothing written
            raise CanaryError(f"{command} refused, nothing written: {exc}") from None
        except AlreadyStable as exc:  # idempotent: the traffic is where a rollback would put it
            said = (f"stable 100% already, {exc.wrote}: " if exc.wrote else "stable 100% already, nothing written: ") \
                + str(exc).replace(" stable already serves 100%;", "", 1)
            opts.emit({"weights": {"stable": 100, "canary": 0}, "phase": None, "note": str(exc),
                       **({"wrote": exc.wrote} if exc.wrote else {})}, output,
                      lambda wide: typer.echo(said))
            return 0

        if not isinstance(event, rl.Resume):
            note = ""
        elif edit is not None and state.owner.startswith("CanaryRollout "):
            note = cli_edits.resume_note(edit)  # the edit that waited for this resume (decision 538)
        else:
            note = resume_note(state, model, ns)  # who acts on it, and what to run if nobody does (decision 546)

        def text(wide: bool) -> None:
            if wide:
                typer.echo(state_line(state, wide=True, route=target.route))
            else:
                where = f" (route {target.route})" if target.route else ""
                typer.echo(f"{state.phase}: weights {state.weights} (stable/canary){where}"
                           + (f" - {state.reason}" if state.reason else ""))  # as promote's line (state_line)
            if note:
                typer.echo(f"note: {note}")

        opts.emit({**state_dict(state), **({"note": note} if note else {}),
                   **({"edit_waiting": edit} if edit is not None and note else {})}, output, text)
        return 0

    def guarded() -> int:
        try:
            return go()
        except KubeUnavailable as exc:
            if not isinstance(event, rl.Rollback) or sent:
                raise  # a pause/resume that could not read changes nothing; a write sent is oncall_action's to judge
            # the emergency button could not even read the route: nothing was written, and whether a canary gets
            # traffic is not known. It was exit 3, "could not complete", with no `traffic.unsafe`: a pipeline's
            # rollback step read it as a retryable hiccup while a split may stand (decision 309)
            ns = at["ns"] or "(the kubeconfig's namespace)"
            # named as every line names it: `virtual_service` the name, `namespace` beside it ("ns/name" here alone
            # missed a query on the name; decision 677's addendum)
            logs.get(model=model, namespace=ns).critical(
                "traffic.unsafe", virtual_service=at["vs"], route=route or "(the only route)",
                weights="unknown", error=str(exc)[:500],
                hint="nothing was written: if a rollout is in progress the canary may still get traffic; run "
                     "`canary rollback` again once the API server answers, or set the route's stable destination "
                     "to 100 by hand")
            raise TrafficUnsafe(f"stable 100% could not be written: the route could not be read ({exc}); nothing "
                                f"was written: if a rollout is in progress on {ns}/{at['vs']}, its canary may still "
                                "get traffic") from exc

    try:
        code = run_guarded(guarded)
    except KeyboardInterrupt:
        where = f"{at['ns']}/{at['vs']}" if at["ns"] else at["vs"]
        again = _where(model, at["ns"], vs, route) if at["ns"] else model
        if not sent:
            typer.echo(f"interrupted (Ctrl-C) before {command} wrote anything: {where} is as it was; run "
                       f"`canary {command} {again}` again", err=True)
        else:
            then = (f"`canary rollback {again}` again finishes it" if command == "rollback" else
                    f"if it did not land, run `canary {command} {again}` again")
            typer.echo(f"interrupted (Ctrl-C) during its write to {where} ({', '.join(sent)}): it may have landed, "
                       f"or part of it; `canary status {again}` shows what holds now, {then}", err=True)
        code = 130
    raise typer.Exit(code)


def _edit_before_resume(router: Any, target: Target) -> dict[str, Any] | None:
    """The edit of a CanaryRollout that waits for the resume of the paused rollout on `target` (`cli_edits.waiting`),
    read before the resume is written; None when none, or the route cannot be read here (the resume reads it)."""
    from canary.reconcile import parse_record

    try:
        state = parse_record(router.inspect(target).state)
    except Exception:  # noqa: BLE001 - the resume's own read says what is wrong with the route
        return None
    return cli_edits.waiting(router.custom, state)


def _note_route_writes(client: Any, sent: list[str]) -> None:
    """Append to `sent` each write to a VirtualService or DestinationRule that `client` (a kubernetes
    `ApiClient`) sends from now on, as "PUT virtualservices/NAME", before it is sent (answered or not)."""
    rest = client.rest_client
    send = rest.request

    def request(method: str, url: str, *args: Any, **kw: Any) -> Any:
        parts = url.split("?", 1)[0].rstrip("/").split("/")
        if method.upper() != "GET" and len(parts) >= 2 and parts[-2] in ("virtualservices", "destinationrules"):
            sent.append(f"{method.upper()} {parts[-2]}/{parts[-1]}")
        return send(method, url, *args, **kw)

    rest.request = request


@app.command()
def rollback(model: str = ModelArg,
             reason: str = typer.Option("manual rollback", "--reason", help="why, recorded with the rollback "
                                        "(`operator: <reason>`)"), namespace: Optional[str] = NamespaceOpt,
             virtual_service: Optional[str] = VsOpt, destination_rule: Optional[str] = DrOpt,
             route: Optional[str] = RouteOpt, kubeconfig: Optional[str] = KubeconfigOpt,
             context: Optional[str] = ContextOpt, output: str = OutputOpt) -> None:
    """Send all traffic to stable now (100/0, from any weights) and record why.

    Example: canary rollback rec-model -n ml --reason "p95 alert" --route primary
    """
    _operator(model, namespace, virtual_service, destination_rule, route, kubeconfig, context,
              rl.Rollback(time.time(), f"operator: {reason}", cause="operator"), output)


@app.command()
def sweep(namespace: Optional[str] = NamespaceOpt,
          all_namespaces: bool = typer.Option(False, "--all-namespaces", "-A", help="every namespace"),
          dry_run: bool = typer.Option(False, "--dry-run", help="report only; write nothing (no marks either)"),
          webhook: list[str] = typer.Option([], "--webhook", help="generic JSON webhook URL told of each end "
                                            "(repeatable; also CANARY_WEBHOOK_URLS)"),
          slack_webhook: list[str] = typer.Option([], "--slack-webhook", help="Slack incoming-webhook URL "
                                                  "(repeatable; also CANARY_SLACK_WEBHOOK_URLS)"),
          kubeconfig: Optional[str] = KubeconfigOpt, context: Optional[str] = ContextOpt,
          output: str = OutputOpt) -> None:
    """End abandoned rollouts: stable 100% (or the promotion finished) where nobody drives them any more.

    An abandoned rollout is a `canary promote` whose record stayed unchanged for 3 of its looks + 120 s
    (killed with SIGKILL and never run again: stable 100%, or its promotion finished if every step had
    passed), or a CanaryRollout that no longer exists. A promote's record is timed from one pass to the
    next by a mark on its VirtualService (modelcanary.dev/sweep-seen, the API server's clock), so run
    it repeatedly: a CronJob where no controller runs (the controller sweeps by itself). Every write is
    guarded on the record read; paused, pending and ended rollouts are left alone, except an ended (or
    unreadable) record over weights that still give the canary traffic: nobody drives that split, and once
    seen unchanged for 30 s it is sent to stable 100%, recorded aborted (log `rollout.split_unowned`).

    Each end is posted, as the controller's are, to the webhooks and Slack URLs given (event "aborted" or
    "promotion"; docs/integrations.md), before the command exits (up to 5 s more).

    Exit codes: 0 nothing to end, or all ended (with --dry-run: whatever it found); 2 bad flags, an unreadable
    kubeconfig; 3 the VirtualServices could not be listed, a write failed, or an owner could not be looked
    up; 6 stable 100% could not be written (the canary may still get traffic: act by hand).

    Example: canary sweep -A --dry-run
    """
    from canary import sweep as sw
    from canary.notify import Notifier
    from canary.reconcile import shown_owner

    if all_namespaces and namespace:
        fail("give -n/--namespace or -A/--all-namespaces, not both", EXIT_BAD_INPUT)
    try:
        notifier = Notifier.from_env(webhooks=webhook, slack=slack_webhook)
    except CanaryError as exc:
        fail(str(exc), EXIT_BAD_INPUT)

    # what the pass found and answered so far: a Ctrl-C still reports it (-o json's document too), with every route
    # found and not answered, and the one whose write it cut, named as such
    out: dict[str, list[dict[str, Any]]] = {"abandoned": [], "watching": [], "unchecked": [], "unowned": []}
    seen: dict[str, Any] = {"found": None, "writing": None, "reported": False, "ns": namespace or "any namespace"}

    def row(one: Any, result: str, **more: Any) -> dict[str, Any]:
        r, routed = one.record, one.routed
        # `owner` shown and `job` named as the busy refusal's `holder` and `holder_job` are (decision 456)
        return {"virtualService": one.key, "model": r.model, "canaryVersion": r.canary_version,
                "owner": shown_owner(r.owner), "job": r.job or None, "phase": r.phase,
                "weights": {"stable": r.weights.stable, "canary": r.weights.canary},
                # the route as listed, as Istio splits it: what the pass found (the record's weights may say
                # otherwise: a route edited under it, an unreadable record's stand-in)
                "routedWeights": None if routed is None else {"stable": routed.stable, "canary": routed.canary},
                "result": result, **more}

    def report(interrupted: bool) -> None:
        seen["reported"] = True
        if interrupted and seen["found"] is not None:
            answered = {r["virtualService"] for rows in out.values() for r in rows}
            found = seen["found"]
            for group, ones in (("abandoned", found.abandoned), ("unchecked", found.unknown),
                                ("watching", found.watching), ("unowned", found.unowned)):
                for one in ones:
                    if one.key not in answered:
                        out[group].append(row(one, "interrupted during its write: it may have landed; sweep again"
                                              if one.key == seen["writing"] else
                                              "interrupted before it was answered: nothing written; sweep again"))

        def text(wide: bool) -> None:
            rows = out["abandoned"] + out["unchecked"] + out["unowned"] + out["watching"]
            if not rows:
                typer.echo(f"no rollouts in progress in {seen['ns']}" if not interrupted
                           else "interrupted before the VirtualServices were read: nothing written")
            for r in rows:
                w, routed = r["weights"], r.get("routedWeights")
                at = f"{w['stable']}/{w['canary']}"
                if r["phase"] == "unreadable" or not r["canaryVersion"]:  # no record to read: the route's split only
                    at = f"routed {routed['stable']}/{routed['canary']}" if routed else "route unreadable"
                    what = "(unreadable record)"
                else:
                    what = f"{r['canaryVersion']} {r['phase']}"
                    if routed and routed != w:  # the route is not at what its record says: say both
                        at = f"{routed['stable']}/{routed['canary']} as routed (recorded {at})"
                typer.echo(f"{r['virtualService']}: {what} at {at}: {r['result']}"
                           + (f" ({r['reason']})" if r.get("reason") else ""))

        opts.emit({**out, "dryRun": dry_run, "interrupted": interrupted}, output, text)

    def go() -> int:
        import kubernetes.client as kc

        from canary.errors import RoutingConflict

        ns = None if all_namespaces else opts.namespace(namespace, kubeconfig, context)
        seen["ns"] = ns or "any namespace"
        router = _router(kubeconfig, context)
        vss, server_now = router.list_virtual_services_at(ns)
        first: list[str] = []

        def quiet(vs: dict[str, Any], key: str, text: str) -> Optional[float]:
            if server_now is None:  # a real API server always sends Date; no other clock is trusted
                return None
            mark = sw.seen_mark(vs)
            if mark is not None and mark[0] == sw.fingerprint(text):
                return max(0.0, server_now - mark[1])
            first.append(key)
            return None

        custom = kc.CustomObjectsApi(router.custom.api_client)
        from canary.history_store import ConfigMapStore

        from canary.kube_core import CoreV1

        history = ConfigMapStore(CoreV1(router.custom.api_client))  # each end in its history (decision 811, 1041)
        found = seen["found"] = sw.scan(vss, quiet, lambda owner: sw.crd_gone(custom, owner))
        code = 0

        for one in found.abandoned:
            ctrl_c.check()  # a Ctrl-C lost in the last route's write: nothing more is written
            if dry_run:
                result = "dry-run: not written"
            else:
                seen["writing"] = one.key
                try:
                    ended = sw.end(router, one, log=logs.get(), now=server_now if server_now is not None else time.time(),
                                   notifier=notifier, history=history)
                    result = ("promotion finished (every step had passed)" if ended.phase == rl.PROMOTED
                              else "stable 100%, recorded aborted")
                except RoutingConflict:
                    result, left_split = sw.since_read(router, one)
                    code = max(code, EXIT_INFRA) if left_split else code
                except TrafficUnsafe as exc:  # the route may still send traffic to the canary
                    result, code = f"failed: {exc}", EXIT_TRAFFIC_UNSAFE
                except CanaryError as exc:
                    ctrl_c.check()  # the error a Ctrl-C lost in the write came out as: the Ctrl-C is reported
                    result, code = f"failed: {exc}", max(code, EXIT_INFRA)
            out["abandoned"].append(row(one, result, reason=one.reason, seenUnchangedS=one.quiet_s))
        for one in found.unknown:
            code = max(code, EXIT_INFRA)
            out["unchecked"].append(row(one, f"not checked: {one.unknown}"))
        for one in found.watching:
            ctrl_c.check()  # a Ctrl-C lost in the last route's write: nothing more is written
            limit = sw.abandoned_after(one.record)
            if one.key not in first:
                result = f"watching: unchanged for {one.quiet_s:.0f}s of {limit:.0f}s"
            elif server_now is None:
                result, code = "not timed: the API server's answer had no Date header", max(code, EXIT_INFRA)
            elif dry_run:
                result = f"watching: first seen now (dry run: not marked); ended after {limit:.0f}s unchanged"
            else:
                seen["writing"] = one.key
                try:
                    router.annotate(one.namespace, one.virtual_service, sw.SEEN_ANNOTATION,
                                    json.dumps({"record": sw.fingerprint(one.text), "since": server_now}),
                                    expect_state=one.text)
                    result = f"watching: first seen now; ended if still unchanged after {limit:.0f}s (sweep again then)"
                except RoutingConflict:
                    result = "watching: its owner just wrote"
                except CanaryError as exc:  # this route only: the others are still swept
                    ctrl_c.check()
                    result, code = f"not marked: {exc}", max(code, EXIT_INFRA)
            out["watching"].append(row(one, result, seenUnchangedS=one.quiet_s, abandonedAfterS=limit))

        def mark(one: Any) -> str:
            """`canary sweep`'s memory of `one`'s record until its next pass; "" once written, else why not.
            Raises NoRoom: the object's other annotations leave the mark no room (nothing sent; decision 569)."""
            seen["writing"] = one.key
            try:
                router.annotate(one.namespace, one.virtual_service, sw.SEEN_ANNOTATION,
                                json.dumps({"record": sw.fingerprint(one.text), "since": server_now}),
                                expect_state=one.text)
                return ""
            except RoutingConflict:
                return "its record was just written"
            except NoRoom:
                raise
            except CanaryError as exc:  # this route only: the others are still swept
                ctrl_c.check()
                return f"not marked: {exc}"

        def end_unowned(one: Any, after: float, *, at_once: bool = False) -> tuple[str, int]:
            """The split under `one`'s record ended once seen unchanged `after` s (`at_once`: now): (result, code)."""
            seen["writing"] = one.key
            try:
                done = sw.end_unowned(router, one, log=logs.get(), notifier=notifier, at_once=at_once, history=history,
                                      now=server_now if server_now is not None else time.time())
                result = {"ended": "stable 100%, recorded aborted",
                          "agrees": "left alone: both subsets select one version",
                          "waiting": f"waiting: unchanged for {one.quiet_s or 0:.0f}s of {after:.0f}s",
                          "left alone": None,
                          "unknown": "not read: the route changed or could not be read; the next sweep reads "
                                     "it again"}[done]
                left_split = False
                if result is None:
                    result, left_split = sw.since_read(router, one)
                return result, EXIT_INFRA if done == "unknown" or left_split else 0
            except TrafficUnsafe as exc:
                return f"failed: {exc}", EXIT_TRAFFIC_UNSAFE
            except CanaryError as exc:
                ctrl_c.check()  # the error a Ctrl-C lost in the write came out as: the Ctrl-C is reported
                return f"failed: {exc}", EXIT_INFRA

        for one in found.unowned:  # an end typed over a split, or garbage: nobody drives it (decision 157)
            ctrl_c.check()  # a Ctrl-C lost in the last route's write: nothing more is written
            after = sw.UNOWNED_AFTER_S
            if one.key in first and server_now is None:
                result, code = "not timed: the API server's answer had no Date header", max(code, EXIT_INFRA)
            elif one.key in first:
                result = "split under an ended or unreadable record: first seen now" + (
                    " (dry run: not marked)" if dry_run else "")
                if not dry_run:
                    try:
                        why = mark(one)
                    except NoRoom as exc:
                        # no memory between passes: never timed, it would stay split for good. Nobody drives it
                        # (the wait lets a live owner end one typed under it first): stable 100% now (decision 569)
                        ended, got = end_unowned(one, after, at_once=True)
                        why, code = f"cannot be marked ({exc}); not timed: {ended}", max(code, got)
                    code = max(code, EXIT_INFRA) if why.startswith("not marked") else code
                    result = why or f"{result}; stable 100% if still unchanged after {after:.0f}s (sweep again then)"
            elif dry_run:
                result = (f"dry-run: not written (unchanged for {one.quiet_s:.0f}s)" if (one.quiet_s or 0) >= after
                          else f"waiting: unchanged for {one.quiet_s:.0f}s of {after:.0f}s")
            else:
                result, got = end_unowned(one, after)
                code = max(code, got)
            shown = row(one, result, seenUnchangedS=one.quiet_s, endedAfterS=after,
                        **({"unreadable": one.unreadable} if one.unreadable else {}))
            out["unowned"].append({**shown, "phase": "unreadable"} if one.unreadable else shown)

        ctrl_c.check()
        ctrl_c.disarm()  # every route answered: the report is the outcome, a Ctrl-C now does not cut it (237)
        report(False)
        return code

    # Ctrl-C landing inside the Kubernetes client's pydantic `validate_call` was lost, or came out as the API
    # unreachable: the pass went on writing the next routes and ended exit 3 "could not complete". It is recorded
    # and raised before the next route, as a Ctrl-C that was not lost (decision 240).
    from canary.interrupts import Interrupt

    ctrl_c = Interrupt.keyboard().install()
    try:
        try:
            code = run_guarded(lambda: ctrl_c.guarded(go))
        except KeyboardInterrupt:
            ctrl_c.disarm()  # a second Ctrl-C does not cut the report of the first
            if not seen["reported"]:
                report(True)
            typer.echo("interrupted (Ctrl-C): the routes above not answered are as they were read, or as their "
                       "write in flight left them; run `canary sweep` again", err=True)
            code = 130
    finally:
        ctrl_c.restore()
        notifier.close(5.0)  # what is queued is delivered (or given up) before the process ends
    raise typer.Exit(code)


@app.command()
def pause(model: str = ModelArg, namespace: Optional[str] = NamespaceOpt, virtual_service: Optional[str] = VsOpt,
          destination_rule: Optional[str] = DrOpt, route: Optional[str] = RouteOpt,
          kubeconfig: Optional[str] = KubeconfigOpt, context: Optional[str] = ContextOpt, output: str = OutputOpt) -> None:
    """Hold the current weights; the running `promote` waits.

    Example: canary pause rec-model -n ml
    """
    _operator(model, namespace, virtual_service, destination_rule, route, kubeconfig, context,
              rl.Pause(time.time()), output)


@app.command()
def resume(model: str = ModelArg, namespace: Optional[str] = NamespaceOpt, virtual_service: Optional[str] = VsOpt,
           destination_rule: Optional[str] = DrOpt, route: Optional[str] = RouteOpt,
           kubeconfig: Optional[str] = KubeconfigOpt, context: Optional[str] = ContextOpt, output: str = OutputOpt) -> None:
    """Continue a paused rollout (the current step starts over).

    Example: canary resume rec-model -n ml -o yaml
    """
    _operator(model, namespace, virtual_service, destination_rule, route, kubeconfig, context,
              rl.Resume(time.time()), output)


@app.command()
def status(model: str = ModelArg, namespace: Optional[str] = NamespaceOpt, virtual_service: Optional[str] = VsOpt,
           destination_rule: Optional[str] = DrOpt, route: Optional[str] = RouteOpt,
           kubeconfig: Optional[str] = KubeconfigOpt, context: Optional[str] = ContextOpt, output: str = OutputOpt,
           watch: bool = typer.Option(False, "--watch", "-w", help="refresh every 2 s until a terminal phase"),
           timeout: Optional[float] = opts.DurationOpt(None, "--timeout", help="with --watch: give up after this "
                                                                                "long, exit 4"),
           canary_version: Optional[str] = typer.Option(None, "--canary-version", help="with --watch: the version "
                                                        "whose end to wait for (another's is not an answer)"),
           rollout: Optional[str] = typer.Option(None, "--rollout", help="with --watch: a CanaryRollout's name: wait "
                                                 "for its end at its current generation")) -> None:
    """Weights (as written and as Istio splits them), step, phase and the last verdict with its evidence.

    With --watch, exits by phase like `kubectl argo rollouts status`: 0 promoted, 1 rolled back,
    3 aborted (also an end recorded over weights that still split traffic: nobody drives that split),
    4 still running when --timeout ran out (2 bad input). With no rollout recorded yet (a
    CanaryRollout just applied) it waits for one to end. A record already ended when the watch starts is
    not an answer (it may be the previous rollout's): --rollout NAME waits for that CanaryRollout's end at
    its current generation, --canary-version V for V's end; without either, for the next rollout's end.
    Without --watch: 0.

    Example: kubectl apply -f rollout.yaml && canary status rec-model -n ml -w --rollout rec-model-v2

    Example: canary status rec-model -n ml --watch --timeout 15m

    Example: canary status rec-model --route primary -o yaml
    """
    from canary import unowned
    from canary.display import render_status
    from canary.reconcile import end_disagreement, parse_record
    from canary.sweep import UNOWNED_AFTER_S as sweep_after

    logs.configure()  # logs on stderr: stdout carries only the status

    for flag, given in (("--timeout", timeout is not None), ("--canary-version", canary_version is not None),
                        ("--rollout", rollout is not None)):
        if given and not watch:
            fail(f"{flag} only applies with --watch", EXIT_BAD_INPUT)
    if canary_version is not None and rollout is not None:
        fail("give --canary-version or --rollout, not both (the CanaryRollout names its version)", EXIT_BAD_INPUT)
    deadline = time.monotonic() + timeout if timeout is not None else None

    def go() -> int:
        from canary.cli_watch import RecordWait, crd_end
        from canary.model import check_version

        ns = opts.namespace(namespace, kubeconfig, context)
        if canary_version is not None:
            check_version(canary_version, "--canary-version")
        read_cr, where, uid, spec = _watched_rollout(rollout, ns, kubeconfig, context)
        router = _oncall_router(kubeconfig, context)
        target = router.resolve(_target(model, ns, virtual_service or spec.get("virtualService") or None,
                                        destination_rule or spec.get("destinationRule") or None,
                                        route=route or spec.get("route") or None))
        awaited = RecordWait(canary_version=canary_version or "")
        said_waiting = said_stale = False
        last_shown: list[str | None] = [None]  # what the last pass printed, when stdout is no terminal
        said_undriven = False  # said on stderr that nothing drives the watched rollout (again once driven again)
        crd_unread: dict[str, Any] = {}  # a read of the CanaryRollout that failed for a moment (167)
        shown = False  # a pass read the route: an object not found after it was deleted while the watch waited
        dr_gone_seen = False  # a pass showed the route with its DestinationRule gone: not deleted under this watch
        while True:
            ctrl_c.check()  # a Ctrl-C whose raise the Kubernetes client lost ends the watch here (decision 230)
            shape = ""  # why no rollout can go on on this route as it is, when it is a shape one never starts from
            try:
                dr_gone = ""
                try:
                    st = router.inspect(target)
                except TargetError as exc:
                    if isinstance(exc, DestinationRuleGone) and (not shown or dr_gone_seen) and _dr_gone_shown(
                            exc, destination_rule or spec.get("destinationRule") or None, target):
                        # the route's DestinationRule deleted (a person, a GitOps sync): on-call's first command
                        # said "is -n right?", exit 2, and no weights; the VirtualService alone shows them, as
                        # `canary rollback` reads it. One deleted under a watch that had read it is decision 307's
                        dr_gone = "gone"
                        st = router.inspect_any(target, for_stable=True, shown=True)
                    elif isinstance(exc, (NotFound, TransientError)):
                        raise
                    else:
                        # a third destination, the canary subset gone from the DestinationRule: on-call's first
                        # command said only the error, exit 2, and showed no split, though `canary rollback` acts on
                        # it; show the route as the rollback reads it (the stable destination's share, every other's)
                        shape = str(exc)
                        st = router.inspect_any(target, for_stable=True, shown=True)
            except NotFound as exc:
                ctrl_c.check()
                if not shown:  # the first read: a name not there is bad input (exit 2), said with the names there
                    raise
                # read by an earlier pass, then deleted: "is -n right?", exit 2 (bad input), told a pipeline whose
                # flags had just read it; the rollout's outcome is not known, as for a CanaryRollout deleted
                # under `--rollout` (exit 3)
                raise CanaryError(_deleted_under_watch(exc)) from None
            except TransientError as exc:
                ctrl_c.check()  # the Ctrl-C itself, come out as the API unreachable: no "reading it again"
                if not watch:
                    raise
                # a watch waits: a moment's outage of the API server is no outcome (exit 3 ended a pipeline's
                # wait while its rollout went on); read again until --timeout (decision 167)
                typer.echo(f"{ns}/{target.virtual_service} could not be read ({exc}): reading it again", err=True)
                if deadline is not None and time.monotonic() >= deadline:
                    typer.echo(f"timed out after {timeout:g}s: the route could not be read", err=True)
                    return EXIT_WATCH_TIMEOUT
                time.sleep(2 if deadline is None else max(0.0, min(2.0, deadline - time.monotonic())))
                continue
            shown = True
            dr_gone_seen = bool(dr_gone)
            unreadable = ""
            try:  # status must show the traffic even when the record is damaged
                state = parse_record(st.state)
            except CanaryError as exc:
                state, unreadable = None, str(exc)
                logs.get(model=model, namespace=ns).warning("rollout.state_unreadable", error=unreadable)
            raw = st.raw_weights or (st.weights.stable, st.weights.canary)
            others = isinstance(raw[1], list)  # `inspect_any(for_stable=True)`: every non-stable destination's weight
            # an ended rollout whose stable subset selects another version than its end names: a process
            # killed between its writes, nobody following it (docs/decisions.md 94)
            # (not where its rule names another service: its subsets are that service's, and `canary rollback` does
            # not point them, decision 650; said in the rule's own note)
            disagrees = end_disagreement(state, st) if state is not None and not st.rule_elsewhere else ""
            elsewhere = _recorded_elsewhere(state, target, st)
            # an end typed in (or garbage) over a split: nobody drives it, and the end it claims is not so
            nobody = unowned.why(state, st, unreadable=unreadable)
            # in progress, its promote gone: nobody judges it (205); a record from elsewhere is timed by the API
            # server's clock, asked only then (216)
            undriven = _undriven(state, lambda: router.server_time(target.namespace, target.virtual_service))
            # a route whose destination list was emptied by hand routes nothing: its weights were shown 50/50 (the
            # rollback's reading of a total of 0: never stable-only), a half the canary does not get (decision 233)
            nothing = bool(shape) and st.shares == {"stable": 0, "canary": 0, "others": 0}
            if dr_gone:
                dr_gone = _dr_gone_note(target, state, model, ns, virtual_service, route)
            edit = cli_edits.waiting(router.custom, state)  # an edit of its CanaryRollout waiting for the resume (538)
            if disagrees:
                logs.get(model=model, namespace=ns).warning("rollout.route_disagrees", phase=state.phase,
                                                            error=disagrees)

            def text(wide: bool) -> None:
                if wide:
                    typer.echo(f"{ns}/{target.virtual_service} route {target.route or '(the only one)'} "
                               f"destination rule {target.dr_name}; weights as written stable={raw[0]!r} "
                               f"{'others' if others else 'canary'}={raw[1]!r}")
                render_status(st, state, console=opts.console(wide), routes_nothing=nothing)
                if st.rule_elsewhere:
                    pass  # its note below says why, what Istio does and what a rollback does: the shape's note (the
                    # strict read's refusal) said a rollback writes stable 100% after the end too, and a split Istio
                    # does not make, every request failing (decision 663)
                elif shape:
                    typer.echo(_shape_note(shape, st.weights, raw, state, st.shares, st.stable_added,
                                           st.stable_unwritable, st.routes_nothing))
                elif st.raw_weights is not None:
                    typer.echo(_raw_note(st.weights, st.raw_weights))
                if dr_gone:
                    typer.echo(f"note: {dr_gone}")
                if st.rule_elsewhere:
                    typer.echo(f"note: {_rule_elsewhere_note(st.rule_elsewhere)}")
                if unreadable:
                    typer.echo(f"note: {unreadable}; `canary rollback` writes 100/0 and a new record")
                if disagrees:
                    typer.echo(f"note: {disagrees}" + ("; `canary rollback` points it back" if state is not None
                                                       and state.phase != rl.PROMOTED else ""))
                if nobody:
                    typer.echo(f"note: {nobody}; `canary rollback {_where(model, ns, virtual_service, route)}` sends "
                               f"stable 100% now {unowned.who_ends(state, sweep_after)}")
                if undriven:
                    typer.echo(_undriven_note(undriven, state, model, ns, virtual_service, route))
                if elsewhere:
                    typer.echo(f"note: {elsewhere}")
                elif state is not None and state.phase in (rl.PROGRESSING, rl.PAUSED) and not dr_gone:
                    typer.echo(_oncall_hint(state.phase, model, ns, virtual_service, route))
                if edit is not None:
                    typer.echo(f"note: {cli_edits.status_note(edit)}")

            doc = {"weights": {"stable": 0, "canary": 0} if nothing else {"stable": st.weights.stable,
                                                                            "canary": st.weights.canary},
                   "raw_weights": {"stable": raw[0], "others" if others else "canary": raw[1]},
                   **({"route_shape": shape} if shape else {}),
                   **({"shares": st.shares} if shape and st.shares else {}),
                   **({"stable_added": st.stable_added} if shape and st.stable_added else {}),
                   **({"stable_unwritable": st.stable_unwritable} if shape and st.stable_unwritable else {}),
                   **({"routes_nothing": st.routes_nothing} if shape and st.routes_nothing else {}),
                   **({"destination_rule_missing": dr_gone} if dr_gone else {}),
                   **({"destination_rule_elsewhere": _rule_elsewhere_note(st.rule_elsewhere)}
                      if st.rule_elsewhere else {}),
                   "route": target.route or None,
                   "stable_subset_version": st.stable_subset_version,
                   "canary_subset_version": st.canary_subset_version,
                   "rollout": state_dict(state) if state else None,
                   **({"unreadable_state": unreadable} if unreadable else {}),
                   **({"route_disagrees": disagrees} if disagrees else {}),
                   **({"recorded_elsewhere": elsewhere} if elsewhere else {}),
                   **({"split_unowned": nobody} if nobody else {}),
                   **({"undriven": undriven} if undriven else {}),
                   **({"edit_waiting": edit} if edit is not None else {})}
            if watch and not streams.isatty("stdout"):
                # a pipeline's log, a file: a pass is printed when it differs from the last one printed, as
                # `kubectl get -w` and `kubectl argo rollouts status` print changes. It printed the same block every
                # 2 s: 900 of them in the log of a pipeline waiting 30 minutes for its rollout (decision 358)
                now_shown = _captured(lambda: opts.emit(doc, output, text, stream=True))
                if now_shown != last_shown[0]:
                    last_shown[0] = now_shown
                    opts.emit(None, "text", lambda _wide: typer.echo(now_shown, nl=False))
            else:
                opts.emit(doc, output, text, stream=watch)
            # the end it claims does not hold: never a pipeline's "promoted" (exit 0); the answer only when that
            # split is the awaited rollout's: another version's, under `--rollout` or `--canary-version`, is ended by
            # the awaited one's start (its promote, its controller), and its exit 3 failed a pipeline whose rollout
            # then ran (decision 167)
            if watch and nobody and read_cr is None and (not canary_version or (
                    state is not None and state.canary_version == canary_version)):
                typer.echo(f"the record says {state.phase if state else 'nothing readable'}, but traffic is split with "
                           "nobody driving it: exit 3, as for an aborted rollout", err=True)
                return WATCH_EXIT[rl.ABORTED]
            if not watch:
                return 0
            # an end is the answer only when it is the awaited rollout's: a record already ended when the watch
            # started (the previous rollout's, the controller not yet at the new request) was reported as this
            # rollout's outcome, exit 0 for a model never judged (decision 165)
            if read_cr is not None:
                try:
                    obj = read_cr()
                except TransientError as exc:  # a moment's outage is no outcome: read again, until --timeout (167)
                    ctrl_c.check()
                    typer.echo(f"CanaryRollout {where} could not be read ({exc}): reading it again", err=True)
                    obj = crd_unread
                ended, now = (None, f"CanaryRollout {where} could not be read") if obj is crd_unread else crd_end(
                    obj, where=where, uid=uid)
                if ended is not None:
                    typer.echo(f"CanaryRollout {where}: {ended}", err=True)
                    return WATCH_EXIT[ended]
                if not said_waiting:  # what is awaited, once: the route's record shown may be an earlier one's
                    said_waiting = True
                    typer.echo(f"{now}: watching until it ends", err=True)
            else:
                ended = awaited.end(state)
                if ended is not None:
                    return WATCH_EXIT[ended]
                stale = awaited.waiting(state)
                if stale and not said_stale:
                    said_stale = True
                    typer.echo(stale, err=True)
                # no rollout recorded (yet: a CanaryRollout just applied, a promote starting) is no promotion:
                # exit 0 said "promoted" to a pipeline's `status -w` (decision 161); it waits for one to end
                now = (stale.partition(":")[0] if stale else f"the rollout is {state.phase}" if state is not None
                       else "its record is unreadable" if unreadable
                       else f"no rollout is recorded on {ns}/{target.virtual_service}")
            if undriven and not said_undriven:  # (past `if not watch: return 0`)
                # the watch waits on: a re-run of its promote resumes it, a sweep or `canary rollback` ends it; said
                # once on stderr (a pipeline reading -o json saw nothing, and waited to its --timeout or for ever)
                typer.echo(f"nothing drives this rollout now: {undriven}; watching until it ends (a re-run of its "
                           "promote resumes it, a sweep or `canary rollback` ends it)" +
                           ("" if deadline is not None else "; --timeout D gives up, exit 4"), err=True)
            said_undriven = bool(undriven)
            if state is None and not said_waiting and read_cr is None:
                said_waiting = True
                typer.echo(f"{now} yet: watching until one ends" + ("" if deadline is not None else
                                                                     " (--timeout D gives up, exit 4)"), err=True)
            if deadline is not None and time.monotonic() >= deadline:
                typer.echo(f"timed out after {timeout:g}s: {now}", err=True)
                return EXIT_WATCH_TIMEOUT
            time.sleep(2 if deadline is None else max(0.0, min(2.0, deadline - time.monotonic())))

    # Ctrl-C (SIGINT's KeyboardInterrupt) landing inside the Kubernetes client's pydantic `validate_call` was lost
    # or came out as a SchemaError, read as the API unreachable: the watch read on until --timeout, or for ever
    # without one. The signal is recorded and said at the loop's next step; any error it came out as is the
    # signal (decision 230). Only for --watch: a single read ends by itself.
    from canary.interrupts import Interrupt

    ctrl_c = Interrupt.keyboard()
    if watch:
        ctrl_c.install()
    try:
        code = run_guarded(lambda: ctrl_c.guarded(go))
    finally:
        ctrl_c.restore()
    raise typer.Exit(code)


def _deleted_under_watch(exc: NotFound) -> str:
    """`status --watch`'s one line for the route's VirtualService or DestinationRule (`exc.what`, as
    `kube.translate` names it: "ml/rec-model (virtualservices)") found gone after a pass had read it."""
    from canary.routing.istio import DR_PLURAL, VS_PLURAL

    name, _, plural = exc.what.rpartition(" (")
    plural = plural.rstrip(")")
    kind = {VS_PLURAL: "VirtualService", DR_PLURAL: "DestinationRule"}.get(plural)
    if kind is None or not name:
        return f"{exc}: deleted while this watch waited; the rollout's outcome is not known"
    traffic = ("the mesh no longer routes by it: requests are balanced over the Service's pods, the canary's "
               "included" if kind == "VirtualService" else
               "the route's subsets no longer resolve: its requests fail until it is restored")
    return f"{kind} {name} was deleted while this watch waited: the rollout's outcome is not known ({traffic})"


def _watched_rollout(name: Optional[str], ns: str, kubeconfig: Optional[str], context: Optional[str]) -> Any:
    """(a reader of CanaryRollout `name`, "ns/name", its uid, its spec) for `status --watch --rollout`, or
    (None, "", "", {}) without the flag. ConfigError (exit 2) when it is not there at the start; the reader
    returns None once it is gone (`cli_watch.crd_end` says so)."""
    if name is None:
        return None, "", "", {}
    import kubernetes.client as kc

    from canary import crd
    from canary.kube import an_object, api_client, translate
    from canary.model import check_object_name

    check_object_name(name, "--rollout")
    api = kc.CustomObjectsApi(api_client(kubeconfig=kubeconfig, context=context))
    where = f"{ns}/{name}"

    def read() -> dict[str, Any] | None:
        try:
            # a 200 whose body is no object (a proxy's): a read that failed, read again (not "created again")
            return dict(an_object(api.get_namespaced_custom_object(crd.GROUP, crd.VERSION, ns, crd.PLURAL, name),
                                  f"CanaryRollout {where}"))
        except Exception as exc:
            if getattr(exc, "status", None) == 404:
                return None
            raise translate(exc, f"CanaryRollout {where}") from exc

    first = read()
    if first is None:
        raise ConfigError(f"CanaryRollout {where} not found")
    return read, where, str((first.get("metadata") or {}).get("uid") or ""), first.get("spec") or {}


def _oncall_hint(phase: str, model: str, ns: str, virtual_service: str | None, route: str | None) -> str:
    """What `canary status` of a rollout in progress tells the person reading it at night: the commands
    that end or hold it, as pasted (the status showed the split and nothing to do about it)."""
    where = _where(model, ns, virtual_service, route)
    hold = (f"`canary resume {where}` goes on (the current step starts over)" if phase == rl.PAUSED
            else f"`canary pause {where}` holds this split")
    return (f"to act: `canary rollback {where} --reason \"...\"` sends stable 100% now (recorded rolled back; "
            f"the promote or CanaryRollout running it ends too); {hold}")


def _undriven(state: Any, server_now: Callable[[], float | None]) -> str:
    """Why no process drives the rollout `state` any more ("" when one may): a rollout in progress (progressing or
    promoting, traffic on the canary) whose `canary promote` is gone from this machine, or, run elsewhere, whose
    record has not changed for the time after which the sweeps call it abandoned (3 of its looks + 120 s).
    `canary status` showed it "progressing, run by `canary promote`" with nothing judging or moving the split
    until a sweep ended it, or never, with no sweep deployed (decision 205). A CanaryRollout's rollout is the
    controller's: never said here. The record's `updated_at` is on its promote's clock, Prometheus's: its age is
    read against the API server's (`server_now()`, Unix seconds; None: not said), a clock of the cluster as
    Prometheus's is, never this host's: a laptop 5 minutes ahead called every live rollout elsewhere gone, and
    one behind never said it (decision 216)."""
    from canary import sweep as sw
    from canary.reconcile import is_promote_owner
    from canary.processes import owner_pid, promote_here

    if state is None or not sw.in_progress(state) or not is_promote_owner(state.owner):
        return ""
    here = promote_here(state.owner)
    if here == "alive":
        return ""
    if here in ("gone", "stopped"):
        pid = owner_pid(state.owner)
        if here == "stopped":  # Ctrl-Z in its terminal, or a SIGSTOP: it judges and moves nothing meanwhile
            return (f"its `canary promote` (pid {pid} on this machine) is stopped (Ctrl-Z or SIGSTOP) and judges "
                    f"nothing until it is continued (`fg` in its terminal, or `kill -CONT {pid}`)")
        return f"its `canary promote` (pid {pid} on this machine) is no longer running"
    now = server_now()
    if now is None:
        return ""
    age = now - state.updated_at
    if age < sw.abandoned_after(state):
        return ""
    writes = (f"a running `canary promote` writes it at least every {state.heartbeat_s:g}s" if state.heartbeat_s > 0
              else "a running `canary promote` writes it at every look")
    return (f"its record has not changed for {age:.0f}s (the API server's clock against its promote's, "
            f"Prometheus's) and {writes}: its `canary promote` is gone or stalled")


def resume_note(state: Any, model: str, ns: str) -> str:
    """Who acts on the resume `canary resume` wrote (`state`, as written), and what to run when nobody does
    (decision 546): the controller for a CanaryRollout's; for a `canary promote`'s, that process when it runs on
    this machine (a stopped one only once continued; a gone one was refused before writing:
    `runner._resume_acted_on`), and for one elsewhere, which cannot be told alive from here, both outcomes: it
    goes on, or nothing judges the canary's share until promote is run again, a rollback, or a sweep."""
    from canary import sweep as sw
    from canary.ci_job import described
    from canary.processes import owner_pid, resume_here
    from canary.reconcile import describe_owner, is_promote_owner, shown_owner

    again = f"`canary promote {model} --canary-version {state.canary_version} ...`"
    if state.owner.startswith("CanaryRollout "):
        return f"the controller goes on with it ({describe_owner(state.owner)})"
    process = state.owner.partition("#")[2]
    if not is_promote_owner(state.owner) or not process:  # no owner recorded (a record of an older canary)
        return (f"judged only while a `canary promote` (or the controller) runs for it: if none does, run {again} "
                "again to go on")
    here, pid = resume_here(state.owner), owner_pid(state.owner)
    if here == "alive":
        return (f"its `canary promote` (pid {pid} on this machine) goes on with it: it reads the route every second "
                "and judges the step from its start")
    if here == "stopped":
        return (f"its `canary promote` (pid {pid} on this machine) is stopped (Ctrl-Z or SIGSTOP): nothing judges the "
                f"step until it is continued (`fg` in its terminal, or `kill -CONT {pid}`)")
    stale = 2 * state.heartbeat_s + 60.0  # when a re-run takes the rollout over (`Runner._take_over`)
    return (f"its `canary promote` ({shown_owner(process)}{described(state.job)}) goes on with it if it still runs "
            f"(it reads the route every second); if it no longer runs, nothing judges the step: the canary keeps "
            f"{state.weights.canary}% unjudged until {again} is run again (it takes the rollout over once the record "
            f"is {stale:.0f}s old: give it --wait-busy {stale:.0f}s), `canary rollback {model} -n {ns}` ends it, or "
            f"a sweep (the controller's, or `canary sweep`) ends it as abandoned after {sw.abandoned_after(state):.0f}s")


def _undriven_note(why: str, state: Any, model: str, ns: str, virtual_service: str | None,
                   route: str | None) -> str:
    """`canary status`'s line for a rollout nothing drives (`_undriven`): what holds, and the commands."""
    import shlex

    where = _where(model, ns, virtual_service, route)
    again = f"`canary promote {shlex.quote(model)} --canary-version {shlex.quote(state.canary_version)} ...`"
    if state.phase == rl.PROMOTING:  # every step passed: a re-run or the sweep finishes the promotion
        return (f"note: nothing drives this rollout now: {why}. Its promotion is unfinished (every step passed; the "
                f"canary has {state.weights.canary}%) until {again} is run again (it finishes it), `canary rollback "
                f"{where}` sends stable 100%, or a sweep (the controller's, or `canary sweep`) finishes it")
    return (f"note: nothing drives this rollout now: {why}. The canary keeps {state.weights.canary}% unjudged "
            f"until {again} is run again (it resumes the recorded step), `canary rollback {where}` sends stable 100%, "
            "or a sweep (the controller's, or `canary sweep`) ends it as abandoned")


def _where(model: str, ns: str, virtual_service: str | None, route: str | None) -> str:
    """The arguments that name this rollout to `canary rollback/pause/resume`, quoted as pasted."""
    import shlex

    return f"{shlex.quote(model)} -n {shlex.quote(ns)}" + "".join(
        f" {flag} {shlex.quote(v)}" for flag, v in (("--virtual-service", virtual_service), ("--route", route)) if v)


def _recorded_elsewhere(state: Any, target: Any, st: Any) -> str:
    """`canary status` of a route whose VirtualService records a rollout on another route (a VirtualService
    routing several models): the phase and history shown are that rollout's, not this route's ("" when
    the record is this route's, or there is none)."""
    from canary.routing.patch import same_route

    if state is None or not state.route or not target.route or same_route(st.routes, state.route, target.route):
        return ""
    whose = f"model {state.model}'s rollout" if state.model else "the rollout"
    return (f"the phase and history shown are {whose} of {state.canary_version} on route {state.route!r}, recorded "
            f"on {target.namespace}/{target.virtual_service}; route {target.route!r} is not that rollout's")


def _shape_note(shape: str, weights: Any, raw: tuple[Any, Any], state: Any,
                split: dict[str, int] | None = None, added: str = "", unwritable: str = "", answered: str = "") -> str:
    """`canary status`'s note on a route of a shape no rollout starts from (`shape`: the refusal), read as a
    stable-100% write reads it: the stable subset's weight (a list: copies of its destination) and every other
    one's (`raw`), and what Istio sends to each (`split`, `stable.shares`: stable, canary subset, others);
    `added`: the route has no stable destination, and the host of the one `canary rollback` adds;
    `unwritable`: it has none, and why `canary rollback` cannot add one; `answered`: it answers every request
    itself ("redirect", "directResponse"), and `canary rollback` writes nothing on it (decision 522)."""
    others = raw[1] if isinstance(raw[1], list) else [raw[1]]
    going = (f"; the rollout recorded {state.phase} cannot go on on it" if state is not None and not state.terminal
             else "")
    if answered:
        return (f"note: {shape}{going}: Istio sends no request to any destination by it, none to the canary; "
                + (f"`canary rollback` ends the rollout writing nothing on the route (its {answered} kept)" if going
                   else f"nothing to send back to stable on it (its {answered} is left as it is)"))
    if added and not others:
        return (f"note: {shape}{going}: the route has no destination at all: Istio routes nothing by it (and refuses "
                f"such a route); `canary rollback` is what restores stable: it writes one destination, host {added} "
                "subset stable, weight 100")
    if split is None:
        sent = f"the canary subset and every other destination get {weights.canary}%"
    else:
        sent = (f"Istio sends {split['stable']}% to the stable subset, {split['canary']}% to the canary subset"
                + (f", {split['others']}% to other destinations" if split["others"] or len(others) > 1 else ""))
    if unwritable and not others:
        return (f"note: {shape}{going}: the route has no destination at all: Istio routes nothing by it (and refuses "
                f"such a route); `canary rollback` is what restores stable, but cannot here (exit 6): {unwritable}; "
                "add a destination with subset stable at 100 by hand, or restore the DestinationRule and run "
                "`canary rollback`")
    if unwritable and raw[0] is not None:  # its stable destination is there: the rule names another service (523)
        return (f"note: {shape}{going}; weights as written stable={raw[0]!r}, others={others!r}: {sent}; `canary "
                f"rollback` cannot write stable 100% here (exit 6): {unwritable}")
    if unwritable:
        return (f"note: {shape}{going}: the route has no destination with subset 'stable' (deleted by hand); weights "
                f"as written others={others!r}: {sent}; `canary rollback` is what restores stable, but cannot here "
                f"(exit 6): {unwritable}; add a destination with subset stable at 100 by hand, or restore the "
                "DestinationRule and run `canary rollback`")
    if added:
        return (f"note: {shape}{going}: the route has no destination with subset 'stable' (deleted by hand); weights "
                f"as written others={others!r}: {sent}; `canary rollback` is what restores stable: it adds a "
                f"destination host {added} subset stable at 100 and gives every other 0")
    return (f"note: {shape}{going}; weights as written stable={'(missing)' if raw[0] is None else repr(raw[0])}, "
            f"others={others!r}: {sent}; "
            f"`canary rollback` writes stable 100% on it (the stable destination 100, every other 0)")


def _raw_note(weights: Any, raw: tuple[Any, Any]) -> str:
    from canary.routing.patch import SeenWeights

    shown = " ".join(f"{k}={'(missing)' if v is None else repr(v)}" for k, v in zip(("stable", "canary"), raw))
    how = (f"Istio splits them {weights}" if SeenWeights(weights, raw).routable
           else f"Istio rejects them: not non-negative integers, or a total of 0; shown as {weights}")
    return f"note: the route's weights are written as {shown} ({how}); `canary rollback` writes 100/0"




# ---- policy ------------------------------------------------------------------------------


@policy_app.command("validate")
def policy_validate(files: list[Path] = typer.Argument(..., help="policy files"), output: str = OutputOpt) -> None:
    """Load and check every policy; list every problem of each, with its field path. Exit 0 all valid, 2 any not.

    With -o json/yaml the problems are in the output too ({"files": [{"file", "ok", "problems": [{"field",
    "message"}]}]}); in text they go to stderr.

    Example: canary policy validate policies/*.yaml -o json
    """
    from canary.errors import PolicyError
    from canary.policy import advisories, load_policy

    def go() -> int:
        report: list[dict[str, Any]] = []
        for f in files:
            try:
                p = load_policy(f)
            except PolicyError as exc:
                report.append({"file": str(f), "ok": False, "error": str(exc),
                               "problems": [{"field": fld, "message": msg} for fld, msg in exc.problems]})
                continue
            report.append({"file": str(f), "ok": True, "steps": list(p.steps),
                           "checks": [{"name": c.name, "kind": c.kind} for c in p.checks],
                           "interval_s": p.analysis.interval, "look_every_s": p.analysis.look_every,
                           "warnings": [{"field": fld, "message": msg} for fld, msg in advisories(p)]})

        def text(wide: bool) -> None:
            for r in report:
                if not r["ok"]:
                    typer.echo(f"error: {r['error']}", err=True)
                    continue
                n_steps, n_checks = len(r["steps"]), len(r["checks"])
                typer.echo(f"{r['file']}: ok ({n_steps} step{'s' * (n_steps != 1)} {r['steps']}, "
                           f"{n_checks} check{'s' * (n_checks != 1)})")
                for w in r["warnings"]:
                    typer.echo(f"warning: {r['file']}: {w['field']} {w['message']}", err=True)
                if wide:
                    typer.echo(f"  looks every {r['look_every_s']:g}s, at least {r['interval_s']:g}s a step; checks: "
                               + ", ".join(f"{c['name']} ({c['kind']})" for c in r["checks"]))

        opts.emit({"files": report}, output, text)
        return EXIT_BAD_INPUT if any(not r["ok"] for r in report) else 0

    raise typer.Exit(run_guarded(go))


@policy_app.command("schema")
def policy_schema(output: str = OutputOpt) -> None:
    """Print the policy JSON Schema (for editors: yaml-language-server $schema); -o yaml prints it as YAML.

    Example: canary policy schema > policy.schema.json
    """
    from canary.policy import json_schema

    text = json_schema()
    opts.emit(json.loads(text), output, lambda wide: typer.echo(text))


def _register_commands() -> None:
    """Commands that live in their own modules (analysis, on-call and sandbox, the controller)."""
    from canary import cli_analysis, cli_controller, cli_drift, cli_ops, cli_serve

    for mod in (cli_analysis, cli_ops, cli_controller, cli_drift, cli_serve):
        mod.register(app)
    from canary import cli_report  # `canary report` (issue 11)

    cli_report.register(app)


_register_commands()
