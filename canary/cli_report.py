"""`canary report`: one rollout as a self-contained HTML page, from the cluster or a saved export.

    canary report rec-model -n ml -o rec-model.html            # the model's latest rollout
    canary report m1 --virtual-service shared -n ml -o m1.html  # of one model of a shared VirtualService
    canary report -n ml --rollout rec-model-v2 -o r.html        # a CanaryRollout's (the controller's)
    canary report rec-model -n ml -o json > rollout.json        # the history itself, to keep
    canary report --input rollout.json -o r.html                # later, with no cluster

Exit 0 written; 2 bad input (no history recorded, an unreadable export naming the file and
field, a CanaryRollout whose VirtualService has recorded a later rollout); 3 the cluster could
not be reached. Registered onto the main app by `register`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import typer

from canary import cli
from canary import cli_options as opts
from canary.filekind import read_input

_FORMATS = ("json", "yaml")


def _output(value: str) -> str:
    """-o: FILE.html (the page), FILE.json (the export), or json / yaml (the export on stdout)."""
    if value in ("", *_FORMATS) or value.lower().endswith((".html", ".htm", ".json")):
        return value
    raise typer.BadParameter(f"{value!r}: give FILE.html (the page), FILE.json (the history), or json / yaml "
                             "(the history on stdout)")


def report_cmd(
    model: Optional[str] = typer.Argument(None, help="model name (and VirtualService name unless --virtual-service)"),
    namespace: Optional[str] = opts.NamespaceOpt,
    virtual_service: Optional[str] = cli.VsOpt,
    rollout: Optional[str] = typer.Option(None, "--rollout", help="a CanaryRollout's name: the rollout it drives",
                                          callback=cli.not_blank("MODEL's latest rollout")),
    input_file: Optional[Path] = typer.Option(None, "--input", "-i", "-f", help="a saved history (`-o json`) instead "
                                                                           "of the cluster"),
    output: str = typer.Option("", "--output", "-o", callback=_output, metavar="FILE.html|FILE.json|json|yaml",
                               help="where the page goes (default <model>-<canary version>.report.html), or the "
                                    "history as JSON/YAML"),
    kubeconfig: Optional[str] = opts.KubeconfigOpt,
    context: Optional[str] = opts.ContextOpt,
) -> None:
    """Render one rollout as an HTML page that opens with no network (or export its history).

    The page: weights over time, each check's per-arm values against its limits, every look's verdict
    with its evidence, the gates.

    Works for rollouts run by `canary promote` and by the controller (`--rollout NAME`).

    Example: canary report rec-model -n ml -o rec-model.html

    Example: canary report --input rollout.json -o rollout.html
    """
    from canary import logs

    logs.configure()  # logs on stderr: stdout carries only the requested output

    def go() -> int:
        if input_file is not None and rollout:
            raise cli.ConfigError("give --input FILE or --rollout NAME, not both: the file is the rollout's history")
        doc = _from_file(input_file) if input_file is not None else _from_cluster(
            model, namespace, virtual_service, rollout, kubeconfig, context)
        saved = str((doc.get("rollout") or {}).get("model") or "")
        if input_file is not None and model and model != saved:
            # it rendered the file's model under no warning: a page for `other-model` that was rec-model's
            raise cli.ConfigError(f"{input_file} is the history of model {saved!r}, not {model!r}: give the file of "
                                  f"{model}'s rollout, or leave MODEL out")
        if output == "json":
            typer.echo(json.dumps(doc, ensure_ascii=False))
            return 0
        if output == "yaml":
            import yaml

            typer.echo(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True), nl=False)
            return 0
        from canary.report import write

        typer.echo(str(write(doc, Path(output) if output else None)))
        return 0

    raise typer.Exit(cli.run_guarded(go))


def _from_file(path: Path) -> dict[str, Any]:
    from canary import history as hist

    try:
        text = read_input(path)
    except OSError as exc:
        raise cli.ConfigError(f"{path}: cannot read ({exc.strerror})") from None
    except UnicodeDecodeError as exc:
        raise cli.ConfigError(f"{path}: not UTF-8 text (byte {exc.start}); give the file `canary report -o json` "
                              "wrote") from None
    try:
        return hist.parse(text, where=str(path))
    except hist.NotJson as exc:  # it says what the file is; and what --input takes
        raise cli.ConfigError(f"{exc}; --input takes the JSON history `canary report MODEL -o FILE.json` "
                              "writes") from None


def _from_cluster(model: Optional[str], namespace: Optional[str], vs: Optional[str], rollout: Optional[str],
                  kubeconfig: Optional[str], context: Optional[str]) -> dict[str, Any]:
    import kubernetes.client as kc

    from canary import crd
    from canary.kube import api_client, translate

    if not model and not rollout:
        raise cli.ConfigError("give MODEL, --rollout NAME or --input FILE")
    from canary.model import check_namespace, check_object_name

    ns = opts.namespace(namespace, kubeconfig, context)
    check_namespace(ns, "namespace")  # ConfigError (exit 2) before any request
    if rollout:
        check_object_name(rollout, "--rollout")
    client = api_client(kubeconfig=kubeconfig, context=context)
    canary_version = ""
    vs_given = bool(vs)
    if rollout:
        try:
            obj = kc.CustomObjectsApi(client).get_namespaced_custom_object(crd.GROUP, crd.VERSION, ns, crd.PLURAL,
                                                                           rollout)
        except Exception as exc:
            if getattr(exc, "status", None) == 404:
                raise cli.ConfigError(f"CanaryRollout {ns}/{rollout} not found") from None
            raise translate(exc, f"CanaryRollout {ns}/{rollout}") from exc
        spec = obj.get("spec") or {}
        vs = vs or spec.get("virtualService") or spec.get("model") or model
        model = str(spec.get("model") or model or "")  # the history is the rollout's model's (decision 127)
        canary_version = str(spec.get("canaryVersion") or "")
    vs = vs or model
    assert vs
    check_object_name(vs, "--virtual-service" if vs_given else f"VirtualService (of CanaryRollout {ns}/{rollout})"
                      if rollout else "the model's VirtualService")
    from canary.history_store import from_cluster

    return from_cluster(client, ns, vs, model=model or vs, canary_version=canary_version, rollout=rollout or "")


def register(app: typer.Typer) -> None:
    app.command("report")(report_cmd)
