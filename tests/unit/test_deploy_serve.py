"""canary/deploy/serve.yaml: `canary serve` as the docs describe it (docs/integrations.md). Every
object also validates strictly against Kubernetes' schemas in test_deploy_manifests.py."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import typer
import yaml

from canary.cli import app

ROOT = Path(__file__).resolve().parents[2]
OBJECTS = [o for o in yaml.safe_load_all((ROOT / "canary" / "deploy" / "serve.yaml").read_text()) if o]


def one(kind: str) -> dict[str, Any]:
    (obj,) = [o for o in OBJECTS if o["kind"] == kind]
    return obj


def test_the_container_args_are_what_canary_serve_accepts() -> None:
    container = one("Deployment")["spec"]["template"]["spec"]["containers"][0]
    args = container["args"]
    assert args[0] == "serve"
    serve = typer.main.get_command(app).commands["serve"]  # type: ignore[attr-defined]
    ctx = serve.make_context("serve", list(args[1:]), resilient_parsing=True)
    assert ctx.params["state_dir"] is not None and ctx.params["port"] == 8090 and ctx.params["host"] == "0.0.0.0"
    assert ctx.params["policy_dir"] is not None  # the policies mounted from the ConfigMap are read
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert {args[args.index("--state-dir") + 1], args[args.index("--policy-dir") + 1]} <= mounts
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"


def test_one_writer_of_the_state_volume_and_no_kubernetes_access() -> None:
    spec = one("Deployment")["spec"]
    assert spec["replicas"] == 1 and spec["strategy"]["type"] == "Recreate"
    assert spec["template"]["spec"]["automountServiceAccountToken"] is False
    assert not [o for o in OBJECTS if o["kind"] in ("Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding")]
    claim = spec["template"]["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"]
    assert claim == one("PersistentVolumeClaim")["metadata"]["name"]


def test_the_documented_urls_reach_this_service() -> None:
    svc = one("Service")
    host = f"{svc['metadata']['name']}.{svc['metadata']['namespace']}.svc:{svc['spec']['ports'][0]['port']}"
    urls = re.findall(r"url: http://(?:[^@/\s]+@)?([^/\s]+)/", (ROOT / "docs" / "integrations.md").read_text())
    assert urls and set(urls) == {host}


def test_the_token_comes_from_a_mounted_secret_never_from_the_manifest() -> None:
    """A non-loopback --host needs --token-file (decision 105): the file is a Secret's key, mounted as a
    directory so that a rotated Secret reaches it (a subPath mount is never updated)."""
    pod = one("Deployment")["spec"]["template"]["spec"]
    container = pod["containers"][0]
    path = Path(container["args"][container["args"].index("--token-file") + 1])
    (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == str(path.parent)]
    assert "subPath" not in mount and mount["readOnly"] is True
    (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    assert volume["secret"]["secretName"] == "canary-serve-token" and path.name == "token"
    assert not [o for o in OBJECTS if o["kind"] == "Secret"], "a token in a manifest is a token in Git"


def test_the_manifest_says_how_to_serve_https_probes_included() -> None:
    """Decision 119 (c): with --tls-cert-file the kubelet's probes, at their default scheme HTTP, fail on
    the HTTPS port and the pod is restarted forever; serve.yaml did not say so. Its header names the
    flags (which `canary serve` accepts) and `scheme: HTTPS`, as docs/integrations.md does."""
    text = (ROOT / "canary" / "deploy" / "serve.yaml").read_text()
    header = "\n".join(line for line in text.splitlines() if line.startswith("#"))
    flags = re.findall(r'"(--tls-[a-z-]+)", "(/[^"]+)"', header)
    assert [f for f, _ in flags] == ["--tls-cert-file", "--tls-private-key-file"] and "scheme: HTTPS" in header
    serve = typer.main.get_command(app).commands["serve"]  # type: ignore[attr-defined]
    ctx = serve.make_context("serve", [x for pair in flags for x in pair], resilient_parsing=True)
    assert ctx.params["tls_cert_file"] is not None and ctx.params["tls_private_key_file"] is not None
    assert "scheme: HTTPS" in (ROOT / "docs" / "integrations.md").read_text()
