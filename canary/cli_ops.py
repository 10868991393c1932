"""On-call and sandbox commands: `canary analyze` (one-shot comparison now), `canary demo`.

Kept apart from cli.py so the promote path stays short; registered onto the
main Typer app by `register`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Optional

import typer

from canary import cli
from canary import cli_options as opts

# The longest `--window` analyze asks over: a day, the bound of a rollout's own windows (`analysis.interval`,
# `StepDuration`: `MAX_STEP_S`), which analyze is there to reproduce. Each check's query loads every sample of
# its window at once: a day at 15 s scrapes is 5,760 samples a series, so one 2-arm latency histogram over 100
# pods of 30 buckets holds about 35M of Prometheus's default `--query.max-samples` 50M; a week holds 7x that and is
# refused ("query processing would load too many samples"), a year or 10^9 s reads the whole retention (15 days
# by default) or times out after minutes (decision 741). Read in `analyze` from policy_fields (pydantic), which
# no other command loads (decision 965).


def analyze(
    model: str = typer.Argument(..., help="model name"),
    policy_file: Path = typer.Option(..., "--policy", help="policy whose checks to run"),
    # bounded in `go` (max_window_s, a day, a rollout step's longest), with its own words (741)
    window: float = opts.DurationOpt("5m", "--window", help="how far back to compare", most=(math.inf, "")),
    canary_version: str = typer.Option("", "--canary-version", help="default: what the canary subset selects"),
    stable_version: str = typer.Option("", "--stable-version", help="default: what the stable subset selects"),
    namespace: Optional[str] = cli.NamespaceOpt,
    virtual_service: Optional[str] = cli.VsOpt,
    destination_rule: Optional[str] = cli.DrOpt,
    route: Optional[str] = cli.RouteOpt,
    kubeconfig: Optional[str] = cli.KubeconfigOpt,
    context: Optional[str] = cli.ContextOpt,
    prometheus_url: Optional[str] = opts.PromUrlOpt,
    prometheus_token: Optional[str] = opts.PromTokenOpt,
    prometheus_user: Optional[str] = opts.PromUserOpt,
    prometheus_password: Optional[str] = opts.PromPasswordOpt,
    prometheus_ca_file: Optional[str] = opts.PromCaOpt,
    insecure: bool = opts.InsecureOpt,
    output: str = cli.OutputOpt,
) -> None:
    """Compare stable and canary now over --window, print the verdict with its evidence.

    Exit 0 pass, 1 fail, 4 inconclusive or could not measure (no series), 3 Prometheus unavailable (down, or
    failing the queries: its words and what to check), 2 bad input (a URL that is not a
    Prometheus API, credentials refused, a query Prometheus rejects, a --window shorter than two
    scrapes or longer than 24h, the same version on both sides).
    Nothing is written anywhere. Versions not given are read from the
    DestinationRule's subsets (needs Kubernetes access; --route picks the
    HTTP route of a VirtualService that has several).

    Example: canary analyze rec-model -n ml --policy policies/default.yaml --window 10m --prometheus-url http://prometheus:9090

    Example: canary analyze rec-model --policy p.yaml --stable-version v1 --canary-version v2 --window 2m -o json
    """
    from canary.analysis.judge import judge
    from canary.model import Outcome
    from canary.policy import load_policy
    from canary.policy_fields import MAX_STEP_S
    from canary.reconcile import one_instant
    from canary.routing.patch import RouteNotFound

    max_window_s = int(MAX_STEP_S)

    def go() -> int:
        if window > max_window_s:  # before the policy is read or Prometheus asked anything
            from canary.analysis.shown import duration, duration_beside

            raise cli.ConfigError(
                f"--window {duration_beside(window, max_window_s)} is longer than {duration(max_window_s)}, the longest a rollout's "
                "step reads (analysis.interval): each query would load every sample of the window at once, past "
                "Prometheus's --query.max-samples or its --query.timeout, or past its retention (15 days by "
                f"default); give --window {duration(max_window_s)} or less")
        policy = load_policy(policy_file)
        window_s = max(1, int(window))
        metrics = cli._metrics(prometheus_url, prometheus_token, prometheus_user, prometheus_password, insecure,
                               prometheus_ca_file)
        told = policy.metrics.scrape_interval  # where the file sets it; else Prometheus's own (decision 562)
        opts.check_window(window_s, metrics, policy_scrape=(told, f"metrics.scrape_interval {told:g}s in {policy_file}")
                          if "scrape_interval" in policy.metrics.model_fields_set else None,
                          unset=f"; metrics.scrape_interval is not set in {policy_file}",
                          hint=" (or set metrics.scrape_interval to what your Prometheus really scrapes at)")
        ns = opts.namespace(namespace, kubeconfig, context)
        stable, canary = stable_version, canary_version
        where = route or policy.route
        if not (stable and canary):
            router = cli._oncall_router(kubeconfig, context)
            try:
                resolved = router.resolve(cli._target(model, ns, virtual_service, destination_rule, route=where))
            except RouteNotFound as exc:
                raise cli.policy_route_named(exc, route, policy, policy_file) from None
            where = resolved.route
            st = router.inspect(resolved)
            stable, canary = stable or st.stable_subset_version, canary or st.canary_subset_version
        if stable == canary:  # the same series on both sides: a pass would say nothing of any canary
            given = "--stable-version and --canary-version are" if stable_version and canary_version else \
                "the stable and canary subsets (or the versions given) both select"
            raise cli.ConfigError(f"{given} {stable!r}: nothing to compare (a rollout that ended leaves both "
                                  "subsets on one version); give the canary's version with --canary-version")
        target = cli._target(model, ns, virtual_service, destination_rule, stable=stable, canary=canary,
                             route=where, kubernetes=False)  # only Prometheus reads it
        measurements: dict = {}
        with one_instant(metrics):  # both arms of every check over one window (decision 143)
            for check in policy.checks:
                try:
                    measurements[check.name] = metrics.measure(policy, check, target, window_s=window_s)
                except cli.ConfigError:  # not Prometheus, credentials refused, a query rejected: bad input, exit 2
                    raise  # (as promote's preflight refuses it), not a verdict of "could not measure" (exit 4)
                except cli.CanaryError as exc:
                    measurements[check.name] = exc
        verdict = judge(policy, measurements)

        def text(wide: bool) -> None:
            from canary.display import evidence_table

            where_ = f" route {target.route}," if wide and target.route else ""
            opts.console(wide).print(evidence_table(
                (r.to_dict() for r in verdict.results),
                title=f"{model}: {stable} (stable) vs {canary} (canary),{where_} last {window_s}s: "
                      f"{verdict.outcome.label}"))

        opts.emit({"model": model, "namespace": ns, "stable_version": stable, "canary_version": canary,
                   "route": target.route or None, "window_s": window_s, **verdict.to_dict()}, output, text)
        code = {Outcome.PASS: 0, Outcome.FAIL: 1}.get(verdict.outcome, 4)
        asked = {name: m for name, m in measurements.items() if isinstance(m, cli.TransientError)}
        if code == 4 and asked:  # Prometheus unavailable is exit 3, as everywhere else, never "not enough data"
            first = str(next(iter(asked.values()))).split("; query: ")[0]  # the query is in the evidence above
            cli.fail(f"Prometheus unavailable: {first} (not measured: {', '.join(asked)})"
                     f"{_unmeasured_remedy(list(asked.values()), every=len(asked) == len(measurements))}",
                     cli.EXIT_INFRA)
        return code

    raise typer.Exit(cli.run_guarded(go))


def _unmeasured_remedy(failures: list[BaseException], *, every: bool) -> str:
    """What to do about checks Prometheus could not answer (`analyze`'s exit 3, decision 571), by the cause its words
    name, as `drift check` says it: a 4 ("inconclusive or could not measure") was read by pipelines as "not enough
    data yet" and retried blindly against a Prometheus that was down. `every`: no check was measured; where some
    were, "nothing measured" and "does not answer at all" were untrue (decision 571's review)."""
    from canary.metrics.client import TLS_REFUSED, TLS_REMEDY

    text = " ".join(str(exc) for exc in failures)
    nothing = "nothing measured: " if every else ""
    if TLS_REFUSED in text:  # not down: refused by us (decision 950)
        return f"; {nothing}" + TLS_REMEDY
    if "connection failed" in text:
        return ("; Prometheus does not answer at all (is it up, is --prometheus-url right?): nothing measured" if every
                else "; Prometheus stopped answering while analyze asked (the other checks were measured): a restart? "
                "run analyze again once it answers")
    if "timed out" in text or "timeout" in text:
        return (f"; {nothing}these queries took longer than Prometheus's --query.timeout or the client's budget: a "
                "shorter --window reads fewer samples")
    return f"; {nothing}Prometheus failed these queries (its words above; its own log says more)"


def register(app: typer.Typer) -> None:
    from canary.sandbox.demo import demo

    app.command("analyze")(analyze)
    app.command("demo", epilog="Example: canary demo --scenario slow -o json")(demo)
