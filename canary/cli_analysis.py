"""`canary judge` and `canary plan`: the statistics, usable without a cluster.

Thin on purpose: parse flags, call canary.offline / canary.analysis, render a
rich table or JSON, exit with a documented code. `judge` exits 0 PASS, 1 FAIL,
4 INCONCLUSIVE or ERROR, 2 bad input (docs/judge.md). `register` is called by
canary/cli.py so these commands join the main app.
"""

from __future__ import annotations

import os

import math
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import typer

from canary import cli_options as opts
from canary.analysis.shown import beside, whole
from canary.errors import CanaryError
from canary.model import Outcome, Verdict, unmeasured, with_unit
from canary.redact import redact_url

if TYPE_CHECKING:  # rich is loaded where a table is drawn: a command that draws none never loads it (decision 985)
    from rich.console import Console

EXIT_PASS, EXIT_FAIL, EXIT_BAD_INPUT, EXIT_INFRA, EXIT_UNDECIDED = 0, 1, 2, 3, 4
_COLOUR = {Outcome.PASS: "green", Outcome.INCONCLUSIVE: "yellow", Outcome.ERROR: "magenta", Outcome.FAIL: "red"}


def _fail(message: str, code: int = EXIT_BAD_INPUT) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def exit_code(outcome: Outcome) -> int:
    return {Outcome.PASS: EXIT_PASS, Outcome.FAIL: EXIT_FAIL}.get(outcome, EXIT_UNDECIDED)


def _num(x: float, fmt: str = ".4g") -> str:
    return "-" if x is None or (isinstance(x, float) and not math.isfinite(x)) else format(x, fmt)


def _count(x: float) -> str:
    """A request count as the table prints it: 12,345, or 1e+300 (`shown.whole`), never hundreds of digits."""
    return "-" if x is None or not math.isfinite(x) else whole(x)


def render_verdict(j: Verdict, console: Console, *, wide: bool = False) -> None:
    from rich.table import Table

    table = Table(title=f"verdict: {j.outcome.label.upper()}", title_style=_COLOUR[j.outcome])
    cols = ("check", "outcome", "stable", "canary", "n stable", "n canary", "limit", "p", "alpha")
    for col in cols + (("kind", "statistic", "effect") if wide else ()):
        table.add_column(col)
    for r in j.results:
        none = unmeasured(r.outcome.label, r.n_canary, r.n_stable)  # an ERROR's 0.0 defaults are no counts
        row = [r.check + (" (hard)" if r.hard else ""), f"[{_COLOUR[r.outcome]}]{r.outcome.label}[/]",
               # a quantile only known as a bound prints as one ('>300 ms', as the reason), never as a value
               with_unit(r.stable_value, r.value_unit, bound=r.bounded.get("stable_value")),
               with_unit(r.canary_value, r.value_unit, bound=r.bounded.get("canary_value")),
               "-" if none else _count(r.n_stable), "-" if none else _count(r.n_canary),
               with_unit(r.threshold, r.threshold_unit),
               _num(r.p_value, ".2g"), _num(r.alpha, ".2g")]
        if wide:
            effect = _num(r.effect_size, ".3g")
            row += [r.kind, _num(r.statistic), effect if effect == "-" else r.bounded.get("effect_size", "") + effect]
        table.add_row(*row)
    console.print(table)
    for r in j.results:  # reasons are long sentences: one line each, not a squeezed column
        console.print(f"[{_COLOUR[r.outcome]}]{r.outcome.label:>12}[/]  {r.check}: {r.reason}", soft_wrap=True)


def judge_cmd(
    input: Path = typer.Option(..., "--input", "-i", help="exported measurements (JSON, see docs/judge.md)"),
    output: str = opts.OutputOpt,
) -> None:
    """Judge exported measurements offline. Exit 0 pass, 1 fail, 4 inconclusive/error, 2 bad input.

    Example: canary judge --input docs/examples/judge-input.json -o wide
    """
    from canary.analysis.judge import judge
    from canary.offline import load_exported

    try:
        data = load_exported(input)
    except CanaryError as exc:
        _fail(str(exc))

    def go() -> int:  # a bug exits 3 with its type and message, never 1 (which means "fail")
        j = judge(data.policy, data.measurements, prior=data.prior, window=data.window, pass_ratio=data.pass_ratio,
                  canary_weight=data.canary_weight, step=data.step)
        opts.emit({**j.to_dict(), "look": data.look, "step": data.step, "window": data.window, "pass_ratio": data.pass_ratio,
                   "canary_weight": data.canary_weight,
                   "reason": j.reason()}, output,
                  lambda wide: render_verdict(j, opts.console(wide), wide=wide))
        return exit_code(j.outcome)

    from canary.cli import run_guarded

    raise typer.Exit(run_guarded(go))


# `plan`'s assumption flags, and the kind of check whose statistics each describes (analysis.plan's inputs)
_PLAN_FLAGS = (("--error-rate", "error_rate", "error_rate", "the stable's error rate"),
               ("--missing-rate", "missing_rate", "feature_missing", "the stable's rate of missing features"),
               ("--bins", "bins", "prediction_shift", "the prediction histogram's cells"),
               ("--p95-ms", "p95_ms", "latency", "the stable's latency"),
               ("--latency-sigma", "latency_sigma", "latency", "the shape of the latency"),
               ("--bucket-ratio", "bucket_ratio", "latency", "the latency buckets"))


def _flags_unread(ctx: typer.Context, policy: Any, *, layout_read: bool) -> str:
    """Why the first assumption flag typed is no input of this plan: no check of its kind in `policy`, so the
    plan was the same with it as without it (decision 673); '' when every flag typed is read. `--p95-ms` is read
    by a latency ceiling (`max_ms`) alone, or to place the bucket layout read (`layout_read`): a relative limit
    is a ratio of the two arms, the same at any latency (decision 694)."""
    kinds = {c.kind for c in policy.checks}
    for flag, param, kind, what in _PLAN_FLAGS:
        if kind not in kinds and opts.typed(ctx, param):
            return f"{flag} describes {what}, which only {'an' if kind[0] in 'aeiou' else 'a'} {kind} check reads"
    ceiling = any(c.kind == "latency" and c.max_ms is not None for c in policy.checks)
    if not ceiling and not layout_read and opts.typed(ctx, "p95_ms"):
        return ("--p95-ms describes the stable's latency, which only a latency check's ceiling (max_ms) reads (or "
                "the bucket layout --prometheus-url reads: it places it)")
    return ""


MAX_RPS = 1e9  # requests per second to one model, both arms: past any real service (and the plan's arithmetic)


def plan_cmd(
    ctx: typer.Context,
    policy: Path = typer.Option(..., "--policy", "-p", help="policy file"),
    rps: float = typer.Option(..., "--rps", help="total requests per second to the model (both arms)"),
    canary_share: Optional[float] = typer.Option(None, "--canary-share",
                                                 help="fixed canary fraction, strictly between 0 and 1, instead "
                                                 "of the step weights"),
    latency_sigma: float = typer.Option(0.5, "--latency-sigma", help="assumed lognormal shape of latency"),
    error_rate: float = typer.Option(0.5, "--error-rate", help="baseline error rate in %"),
    missing_rate: float = typer.Option(0.5, "--missing-rate", help="baseline rate of missing features in %"),
    p95_ms: Optional[float] = typer.Option(
        None, "--p95-ms", help="the stable's p95 latency in ms: says which steps a good canary passes a latency "
        "ceiling (max_ms) by; without it the plan gives the largest latency each step shows below the ceiling"),
    bins: int = typer.Option(10, "--bins", help="prediction histogram cells the judge compares: the exported "
                             "buckets used; up to about 60 for a native histogram (more cells, wider pass bounds)"),
    bucket_ratio: float = typer.Option(
        1.0, "--bucket-ratio", help="ratio of neighbouring latency bucket bounds near the stable's quantile "
        "(1: fine; 1.1 for x1.1 exponential buckets); read from Prometheus with --prometheus-url"),
    output: str = opts.OutputOpt,
    prometheus_url: Optional[str] = typer.Option(
        None, "--prometheus-url",
        help="read the stable's real latency bucket layout from this Prometheus (needs --model, --stable-version; "
             "CANARY_PROMETHEUS_URL is used when those two are given)"),
    prometheus_token: Optional[str] = opts.PromTokenOpt,
    prometheus_user: Optional[str] = opts.PromUserOpt,
    prometheus_password: Optional[str] = opts.PromPasswordOpt,
    prometheus_ca_file: Optional[str] = opts.PromCaOpt,
    insecure: bool = opts.InsecureOpt,
    model: Optional[str] = typer.Option(None, "--model", help="model whose layout to read"),
    stable_version: Optional[str] = typer.Option(None, "--stable-version", help="version serving the traffic now"),
    namespace: Optional[str] = typer.Option(None, "--namespace", "-n", show_default=False,
                                            help="namespace of the model (default: the kubeconfig context's)"),
    kubeconfig: Optional[str] = opts.KubeconfigOpt,
    context: Optional[str] = opts.ContextOpt,
) -> None:
    """How long a rollout takes and the smallest regressions it detects (95% power) per step.

    With --prometheus-url it also reads the stable version's real latency buckets over the last
    `analysis.interval` (3 x `metrics.scrape_interval` where that is longer) and says, per latency
    check, whether they can resolve its relative limit and ceiling (a layout that cannot never lets
    a canary pass).

    Example: canary plan --policy policies/default.yaml --rps 50

    Example: canary plan -p p.yaml --rps 50 --prometheus-url http://prometheus:9090 --model rec-model --stable-version v1 -n ml
    """
    from canary.analysis.plan import plan
    from canary.policy import load_policy

    checks = [("--rps", rps, lambda x: 0 < x <= MAX_RPS, f"> 0 and at most {MAX_RPS:.0e} (requests per second, "
               "both arms)"),
              ("--canary-share", canary_share, lambda x: 0 < x < 1, "a fraction strictly between 0 and 1"),
              ("--latency-sigma", latency_sigma, lambda x: 0 < x <= 5, "in (0, 5] (the lognormal shape; 0.5 is typical)"),
              ("--error-rate", error_rate, lambda x: 0 <= x < 100, "a percentage in [0, 100)"),
              ("--missing-rate", missing_rate, lambda x: 0 <= x < 100, "a percentage in [0, 100)"),
              ("--p95-ms", p95_ms, lambda x: x > 0, "> 0 ms"),
              ("--bins", bins, lambda x: 2 <= x <= 1000, "an integer in [2, 1000]"),
              ("--bucket-ratio", bucket_ratio, lambda x: 1 <= x <= 10, "in [1, 10] (1: fine buckets; 1.1 for x1.1)")]
    for flag, value, ok, want in checks:
        if value is not None and not (math.isfinite(value) and ok(value)):
            _fail(f"{flag} must be {'a finite number, ' if not math.isfinite(value) else ''}{want}; got {value!r}")
    from canary.cli import run_guarded

    if prometheus_url is not None and not prometheus_url.strip():
        # an unset $PROM_URL in a CI line: asked to read the layout, never silently a fine-bucket plan
        _fail("--prometheus-url is empty: give the Prometheus to read the stable's latency buckets from, or leave "
              "the option out (and --model, --stable-version) to plan without reading them")
    if prometheus_url is None and model and stable_version:
        # the environment's Prometheus (set for promote in a CI job) is read only when asked whose layout to
        # read: it used to turn `plan --policy F --rps 50` into an error there
        prometheus_url = os.environ.get("CANARY_PROMETHEUS_URL") or None
    if prometheus_url is None and (model or stable_version):
        # asked whose layout to read with no Prometheus to read it from (CANARY_PROMETHEUS_URL unset in the job):
        # the plan would assume fine buckets, which Istio's default ones are not (decision 264)
        given = " and ".join(f for f, v in (("--model", model), ("--stable-version", stable_version)) if v)
        _fail(f"{given} {'say' if ' and ' in given else 'says'} whose latency buckets to read, but no Prometheus is "
              "given: pass --prometheus-url or set CANARY_PROMETHEUS_URL (with --model and --stable-version), or "
              "leave them out to plan on --bucket-ratio without reading the layout")

    def go() -> int:  # a bug is exit 3 with its type and message, never a traceback and exit 1 ("rolled back")
        try:
            pol = load_policy(policy)
        except CanaryError as exc:
            _fail(str(exc))
        unread = _flags_unread(ctx, pol, layout_read=bool(prometheus_url))
        if unread:
            _fail(f"{unread}; {policy} has none (checks: {', '.join(f'{c.name} ({c.kind})' for c in pol.checks)}): "
                  "leave the flag out, or plan the policy that has that check")
        if prometheus_url and not (model and stable_version):
            _fail("--prometheus-url needs --model and --stable-version (whose latency buckets to read)")
        layout, ns = None, ""
        if prometheus_url:
            try:
                metrics = opts.prometheus(prometheus_url, prometheus_token, prometheus_user, prometheus_password,
                                          prometheus_ca_file, insecure)
                ns = opts.namespace(namespace, kubeconfig, context)
            except CanaryError as exc:
                _fail(str(exc))
            layout, unreadable = _read_layout(pol, metrics, model or "", stable_version or "", ns, sigma=latency_sigma)
        # every latency claim of a check whose layout was read is computed on those bounds (detection and
        # pass alike); a sub-test the layout can never show a good canary within is late at every step
        p = plan(pol, rps=rps, canary_share=canary_share, latency_sigma=latency_sigma, error_rate=error_rate / 100,
                 bins=bins, bucket_ratio=bucket_ratio, missing_rate=missing_rate / 100, p95_ms=p95_ms,
                 unresolved=[k for x in layout or () for k in x.unresolved],
                 layouts={x.check: x.layout for x in layout or () if x.layout is not None})
        d = _plan_dict(p)
        if layout is not None:
            d["layout"] = [asdict(x) for x in layout]
        from canary.policy import LatencyCheck

        relative = {c.name: c.quantile for c in pol.checks if isinstance(c, LatencyCheck) and c.max_increase_pct is not None}
        opts.emit(d, output, lambda wide: _plan_text(p, rps, layout, opts.console(wide), relative))
        if layout is not None and unreadable:  # the plan above assumed a layout it was asked to read
            # the text output has just printed each reason on its check's layout line: not again here
            why = f" ({'; '.join(f'{c}: {w}' for c, w in unreadable)})" if output not in ("text", "wide") else " (see above)"
            # the series read are the policy's source's: a policy for Istio's metrics read against a Prometheus
            # with only the model's own (the sandbox's) was told to check every flag but the one that was wrong
            names = {c for c, _ in unreadable}
            sources = ", ".join(f"{c.name}: source {pol.source_of(c)!r}" for c in pol.checks if c.name in names)
            _fail(f"could not read the stable's latency buckets of {', '.join(c for c, _ in unreadable)} from "
                  f"{redact_url(prometheus_url)} in namespace {ns!r}{why}; the plan above assumes --bucket-ratio {bucket_ratio:g} "
                  "there: check --prometheus-url, -n, --model and --stable-version, and that this Prometheus has "
                  f"the series the policy reads ({sources}: `metrics.source` or the check's `source` picks another), "
                  "or plan without --prometheus-url and give --bucket-ratio", EXIT_INFRA)
        from canary.policy import advisories

        for field, message in advisories(pol):  # accepted by the policy, planned as if it held
            typer.echo(f"warning: {field} {message}; the plan's time if each step passes at its interval is too "
                       "short", err=True)
        if layout == ():  # asked to read a layout the policy has no latency check for: say so, not silently
            typer.echo("note: the policy has no latency check: no bucket layout read", err=True)
        return 0

    raise typer.Exit(run_guarded(go))


def _plan_text(p: Any, rps: float, layout: Any, console: Console, relative: dict[str, float] | None = None) -> None:
    """The plan as a table. `relative`: {check name: quantile} of the policy's relative latency checks; with
    more than one, each gets its own detection column (one column would name one check's quantile for all)."""
    from rich.table import Table

    t = Table(title=f"rollout at {rps:g} rps: {len(p.steps)} judged steps, {p.seconds:g} s if each passes at its "
                    f"interval ({p.looks} looks), {p.longest_s:g} s if each runs to its deadline")
    several = relative is not None and len(relative) > 1
    if several:
        latency_cols = [f"{name} +% (p{q * 100:g}, 95% power)" for name, q in relative.items()]  # type: ignore[union-attr]
    else:
        latency_cols = [f"p{p.latency_quantile * 100:g} +% (95% power)" if p.latency_quantile else "latency +% (95% power)"]
    for col in ("step %", "seconds", "canary req", "stable req", "fail level (fixed-sample equivalent)",
                *latency_cols, "error +points", "PSI", "JS"):
        t.add_column(col, justify="right", overflow="fold")
    for s in p.steps:
        latency = ([_opt(s.latency_by_check.get(name), "+{:.0f}%") for name in relative]  # type: ignore[union-attr]
                   if several else [_opt(s.p95_increase_pct, "+{:.0f}%")])
        t.add_row(str(s.weight), f"{s.seconds:g}", f"{s.canary_requests:,.0f}", f"{s.stable_requests:,.0f}",
                  f"{s.alpha:.2g}", *latency, _opt(s.error_points, "+{:.2f}"),
                  _opt(s.psi, "{:.3f}"), _opt(s.js, "{:.3f}"))
    console.print(t)
    console.print(f"assumes {p.assumptions}; '-' = not detectable by the end of that step, with the evidence "
                  "of the steps before it (or no such check)")
    for check, pair in p.layout_detection.items():
        console.print(f"{check} on the bucket layout read: {pair}", highlight=False)
    _pass_text(p, console)
    for x in layout or ():
        colour = {True: "green", False: "red", None: "yellow"}[x.resolves]
        verdict = {True: "resolves its limit", False: "CANNOT resolve its limit", None: "layout unknown"}[x.resolves]
        console.print(f"[{colour}]{x.check}: {verdict}[/{colour}]: {x.detail}", highlight=False)


def _read_layout(pol: Any, metrics: Any, model: str, version: str, namespace: str, *, sigma: float) -> Any:
    """The stable arm's latency histograms over the last interval (3 scrapes where that is longer: preflight's
    `window_s`), per latency check (relative limit or ceiling), as the rollout reads them; and (check, why)
    for each not read."""
    from canary.analysis.plan import layout_report
    from canary.cli import _target
    from canary.metrics.preflight import window_s
    from canary.policy import LatencyCheck

    # both arms the stable version: the metrics' own messages then name an arm; ours say "the stable version"
    target = _target(model, namespace, None, None, stable=version, canary=version, kubernetes=False)
    stable: dict[str, Any] = {}
    unreadable: list[tuple[str, str]] = []  # not read: Prometheus down, not Prometheus, no series (exit 3 after the plan)
    for check in pol.checks:
        if isinstance(check, LatencyCheck) and (check.max_increase_pct is not None or check.max_ms is not None):
            try:
                arm = metrics.measure(pol, check, target, window_s=window_s(pol))
                got = arm if isinstance(arm, BaseException) else arm[0]
            except CanaryError as exc:  # down, not Prometheus at all, no such series: the layout is unknown
                got = exc
            if isinstance(got, BaseException):
                try:
                    got = type(got)(_stable_words(str(got), version, model))
                except TypeError:  # an exception built otherwise: its own words
                    pass
                unreadable.append((check.name, str(got)))
            stable[check.name] = got
    return layout_report(pol, stable, sigma=sigma), unreadable


def _stable_words(message: str, version: str, model: str) -> str:
    """A metrics error about reading the stable version for the plan: it asked for both arms as that
    version, so "the canary arm" (or "the stable arm", or "the query" asking both) there is the stable version."""
    who = f"the stable version {version!r} of {model!r}"
    for arm in ("canary", "stable"):
        message = message.replace(f"the {arm} arm of {model!r}", who).replace(f"the {arm} arm", who)
        message = message.replace(f"{arm} arm of {model!r}", who)
    # a query asking both arms at once (decision 193) failed "for the query": it was asked for that version too
    message = message.replace("could not be asked for the query", f"could not be asked for {who}")
    # both "arms" failed alike: one account of it, not the same sentence twice
    first, *rest = message.split("; check '")
    parts = list(dict.fromkeys([first, *(f"check '{x}" for x in rest)]))
    return "; ".join(parts)


def _opt(x: Any, fmt: str) -> str:
    return "-" if x is None else fmt.format(x)


def _pass_text(p: Any, console: Console) -> None:
    """The pass side: per sub-test, what a canary equal to stable is shown within by each step's deadline."""
    from rich.table import Table

    notes = []
    if p.pass_unplanned:
        notes.append(f"not planned: {', '.join(p.pass_unplanned)} (feature drift: one test per feature, against its "
                     "profile's bins)")
    if p.custom_checks:
        notes.append(f"not planned: {', '.join(p.custom_checks)} (custom checks compare a value with a limit, "
                     "no statistics)")
    floor = set(p.floor_steps)
    if not p.pass_checks:  # the request floor holds all the same: no look passes below it, whatever the checks
        console.print("pass side: no statistical limit to plan", highlight=False)
        _floor_text(p, console)
        for note in notes:
            console.print(note, highlight=False)
        if floor:
            console.print("[bold]so a good canary cannot be promoted at this traffic with this policy[/bold]",
                          highlight=False)
        return
    t = Table(title="a good canary (equal to stable) shown within, with 95% probability, by each step's deadline "
                    "(the tightest limit; for a latency ceiling the largest latency shown below it)")
    t.add_column("check/test", overflow="fold")
    t.add_column("limit", justify="right", overflow="fold")
    for s in p.steps:
        t.add_column(f"step {s.weight}%", justify="right", overflow="fold")
    t.add_row("deadline s / canary req", "", *(f"{s.pass_by_s:g} / {s.pass_canary_requests:,.0f}" for s in p.steps),
              end_section=True)
    for c in p.pass_checks:
        t.add_row(c["key"], _limit_text(c["limit"], c["unit"]),
                  *(_shown_text(s.pass_by_check[c["key"]], c["unit"], c["limit"]) for s in p.steps))
    console.print(t)
    _floor_text(p, console)
    late_any: set[int] = set()
    never: list[str] = []  # sub-tests no canary like the one described ever passes, each with why
    for c in p.pass_checks:
        limit = _limit_text(c["limit"], c["unit"])
        head = f"{c['key']} ({limit})"
        latency = c["unit"] in ("%", "ms")  # the latency tests: bucket rounding applies
        unsure = [w for w in c["late_steps"] if w not in floor]
        late_any.update(c["late_steps"])
        read = c["check"] in p.layout_checks  # planned on the bucket layout read from Prometheus
        if c.get("unresolvable"):
            console.print(f"[red]{head}: the bucket layout read cannot show a canary as fast as stable within it, "
                          f"whatever the traffic (see {c['check']}'s layout line): a good canary never passes it, at "
                          "any step. Only other buckets help: a bucket bound where the layout line says; more "
                          "traffic, a longer interval or deadline do not.[/red]", highlight=False)
            never.append(f"{c['key']} (the bucket layout read cannot show a canary as fast as stable within "
                         f"{limit})")
        elif c.get("depends_on_latency"):
            extra = (f" (never at step(s) {_steps_text(unsure)}: too few requests to bound the quantile)"
                     if unsure else "")
            console.print(f"{head}: a good canary is shown below it by a step's deadline while its latency is at "
                          f"most the value in the table{extra}; give --p95-ms to check", highlight=False)
        elif "canary_quantile_ms" in c and c["canary_quantile_ms"] >= c["limit"]:
            source = "from --p95-ms" if p.p95_ms is not None else "read from Prometheus"
            console.print(f"[red]{head}: the stable's latency there ({c['canary_quantile_ms']:.3g} ms, {source}) "
                          "is already at or above the limit: no canary like it passes[/red]", highlight=False)
            never.append(f"{c['key']} (the stable's latency {c['canary_quantile_ms']:.3g} ms is at or above "
                         f"{limit})")
        elif "canary_rate_pct" in c and c["canary_rate_pct"] >= c["limit"] - 1e-9:
            # a ceiling on the canary alone: at the baseline it is never shown below, and over it the judge fails
            # it (a rollback, not a deadline), the sooner the more traffic
            rate = f"{c['canary_rate_pct']:g}%"
            console.print(f"[red]{head}: the stable's rate there ({rate}, the baseline assumed) is already at or "
                          "above the limit: no canary like it passes; over it the judge fails it and it is rolled "
                          "back, the sooner the more traffic. Only a lower rate or a higher limit help.[/red]",
                          highlight=False)
            never.append(f"{c['key']} (the baseline rate {rate} is at or above {limit})")
        elif unsure:
            worst = (" (on the bucket layout read)" if latency and read else
                     " (worst case over where the quantile falls in its bucket)" if latency and p.bucket_ratio > 1
                     else "")
            helps = "More traffic, a longer interval or deadline" + (
                ", or finer buckets near the quantile" if latency else "")
            console.print(f"[yellow]{head}: a good canary is not sure (95%) to be shown within its limit by the "
                          f"deadline at step(s) {_steps_text(unsure)}{worst}; there it may end as "
                          f"failure.on_deadline says. {helps} help.[/yellow]", highlight=False)
        elif floor >= {s.weight for s in p.steps}:  # "at every step with enough requests": there is none
            console.print(f"[red]{head}: shown within at no step: none has min_canary_requests canary requests by "
                          "its deadline[/red]", highlight=False)
        else:
            rest = " with enough requests" if floor else ""
            console.print(f"[green]{head}: a good canary is shown within by the deadline at every step{rest}[/green]",
                          highlight=False)
    for note in notes:
        console.print(note, highlight=False)
    if never:  # whatever the traffic: stronger than the floor's "at this traffic" and the unsure steps
        console.print(f"[bold]so a canary like the one described cannot be promoted with this policy, at any "
                      f"traffic: {'; '.join(never)}[/bold]", highlight=False)
    elif floor:
        console.print("[bold]so a good canary cannot be promoted at this traffic with this policy[/bold]",
                      highlight=False)
    elif late_any:
        console.print(f"[bold]so a good canary is not sure to be promoted at this traffic: it may stop at step(s) "
                      f"{_steps_text(sorted(late_any))}[/bold]", highlight=False)


def _floor_text(p: Any, console: Console) -> None:
    if p.floor_steps:
        console.print(f"[red]step(s) {_steps_text(p.floor_steps)}: fewer than min_canary_requests "
                      f"({p.min_canary_requests}) canary requests by the deadline, so no look can pass there and a "
                      "good canary always ends as failure.on_deadline says: more traffic, a higher step weight, a "
                      "longer interval or deadline, or a lower min_canary_requests[/red]", highlight=False)


def _steps_text(weights: Any) -> str:
    return ", ".join(f"{w}%" for w in weights)


def _limit_text(limit: float, unit: str) -> str:
    return {"%": f"+{limit:g}%", "points": f"+{limit:g} points", "% rate": f"{limit:g}%", "ms": f"{limit:g} ms"
            }.get(unit, f"{unit} {limit:g}")


def _shown_text(value: float | None, unit: str, limit: float | None = None) -> str:
    """A pass value, with the digits it needs to read on its own side of the policy's `limit` (0.1011 beside
    JS 0.1 read "0.1": on the limit, where the plan called it late). A ceiling's value is a latency, no limit."""
    if value is None:
        return "-"
    if unit == "ms":
        return f"<={value:.3g} ms"
    digits, fixed = {"%": (0, True), "points": (2, True), "% rate": (2, True)}.get(unit, (2, False))
    text = beside(value, limit, digits, fixed=fixed)
    return {"%": f"+{text}%", "points": f"+{text}", "% rate": f"{text}%"}.get(unit, text)


def _plan_dict(p: Any) -> dict[str, Any]:
    return asdict(p) | {"steps": [asdict(s) for s in p.steps]}


def register(app: typer.Typer) -> None:
    """Add `judge` and `plan` to the main app (called by canary/cli.py)."""
    app.command("judge")(judge_cmd)
    app.command("plan")(plan_cmd)
