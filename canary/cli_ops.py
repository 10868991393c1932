"""On-call and sandbox commands: `canary analyze` (one-shot comparison now), `canary demo`.

Kept apart from cli.py so the promote path stays short; registered onto the
main Typer app by `register`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from canary import cli


def analyze(
    model: str = typer.Argument(..., help="model name"),
    policy_file: Path = typer.Option(..., "--policy", help="policy whose checks to run"),
    window: str = typer.Option("5m", "--window", help="how far back to compare, e.g. 30s, 5m"),
    canary_version: str = typer.Option("", "--canary-version", help="default: what the canary subset selects"),
    stable_version: str = typer.Option("", "--stable-version", help="default: what the stable subset selects"),
    namespace: str = cli.NamespaceOpt,
    virtual_service: Optional[str] = cli.VsOpt,
    kubeconfig: Optional[str] = cli.KubeconfigOpt,
    context: Optional[str] = cli.ContextOpt,
    prometheus_url: Optional[str] = typer.Option(None, "--prometheus-url", envvar="CANARY_PROMETHEUS_URL"),
    prometheus_token: Optional[str] = typer.Option(None, "--prometheus-token", envvar="CANARY_PROMETHEUS_TOKEN", show_default=False),
    insecure: bool = typer.Option(False, "--insecure-skip-tls-verify", envvar="CANARY_PROMETHEUS_INSECURE"),
    output: str = cli.OutputOpt,
) -> None:
    """Compare stable and canary now over --window, print the verdict with its evidence.

    Exit 0 pass, 1 fail, 4 inconclusive or could not measure, 2 bad input.
    Nothing is written anywhere. Versions not given are read from the
    DestinationRule's subsets (needs Kubernetes access).
    """
    from canary.analysis.judge import judge
    from canary.model import Outcome
    from canary.policy import load_policy, parse_duration

    def go() -> int:
        policy = load_policy(policy_file)
        try:
            window_s = int(parse_duration(window))
        except ValueError as exc:
            raise cli.ConfigError(f"--window: {exc}") from None
        stable, canary = stable_version, canary_version
        if not (stable and canary):
            st = cli._router(kubeconfig, context).inspect(cli._target(model, namespace, virtual_service, None))
            stable, canary = stable or st.stable_subset_version, canary or st.canary_subset_version
        target = cli._target(model, namespace, virtual_service, None, stable=stable, canary=canary, route=policy.route)
        metrics = cli._metrics(prometheus_url, prometheus_token, None, None, insecure)
        measurements: dict = {}
        for check in policy.checks:
            try:
                measurements[check.name] = metrics.measure(policy, check, target, window_s=window_s)
            except cli.CanaryError as exc:
                measurements[check.name] = exc
        verdict = judge(policy, measurements)
        if output == "json":
            typer.echo(json.dumps({"model": model, "stable_version": stable, "canary_version": canary,
                                   "window_s": window_s, **verdict.to_dict()}))
        else:
            from rich.console import Console

            from canary.display import evidence_table

            Console().print(evidence_table((r.to_dict() for r in verdict.results),
                                           title=f"{model}: {stable} (stable) vs {canary} (canary), last {window}: "
                                                 f"{verdict.outcome.label}"))
        return {Outcome.PASS: 0, Outcome.FAIL: 1}.get(verdict.outcome, 4)

    raise typer.Exit(cli.run_guarded(go))


def register(app: typer.Typer) -> None:
    from canary.sandbox.demo import demo

    app.command("analyze")(analyze)
    app.command("demo")(demo)
