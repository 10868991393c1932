"""What the last line of a `canary promote` that could not complete before its claim says (decision 356): exit 3
is "untouched" before traffic moved and "stable 100%" after, and the error alone ("could not complete:
<Prometheus's or the API server's error>") did not say which, nor that running the pipeline's step again is safe.

The real CLI (in-process), the strict Kubernetes API emulator, a real Prometheus or a port that refuses."""

from __future__ import annotations

import json
from typing import Any

import pytest

from canary.runner import NO_TRAFFIC_MOVED
from canary.sandbox import kubeapi
from tests.integration.test_promote import cluster, prometheus, promote  # noqa: F401 - fixtures
from tests.support.refused import refused_port

pytestmark = pytest.mark.integration


def route(api: Any) -> tuple[list[int], str]:
    vs = api.get("networking.istio.io", "virtualservices", "ml", "rec-model")
    return [d["weight"] for d in vs["spec"]["http"][0]["route"]], vs["metadata"].get("resourceVersion", "")


def test_a_prometheus_that_refuses_before_the_claim_says_no_traffic_moved(cluster: Any) -> None:
    api, kubeconfig, policy = cluster
    before = route(api)
    res = promote(kubeconfig, policy, f"http://127.0.0.1:{refused_port()}", "v2")
    assert res.returncode == 3, res.stderr[-2000:]
    doc = json.loads(res.stdout)
    assert doc["phase"] is None and doc["exit_code"] == 3
    assert "could not complete" in doc["error"] and NO_TRAFFIC_MOVED in doc["error"], doc["error"]
    assert res.stderr.rstrip().splitlines()[-1].endswith(NO_TRAFFIC_MOVED)  # the log's last line says it too
    assert route(api) == before  # and it is so: not one write


def test_an_api_server_that_fails_before_the_claim_says_no_traffic_moved(cluster: Any, prometheus: Any) -> None:
    """Every read of the VirtualService answered 503 past the retries: exit 3, with the same words."""
    api, kubeconfig, policy = cluster
    before = route(api)
    real = api.handler._serve

    def serve(method: str, request: Any, kind: Any) -> Any:
        if method == "GET" and "/virtualservices" in request.url.path:
            raise kubeapi.ApiError(503, "ServiceUnavailable", "injected: HTTP 503")
        return real(method, request, kind)

    api.handler._serve = serve  # type: ignore[method-assign]
    res = promote(kubeconfig, policy, prometheus.url, "v2")
    api.handler._serve = real  # type: ignore[method-assign]
    assert res.returncode == 3, res.stderr[-2000:]
    doc = json.loads(res.stdout)
    assert doc["phase"] is None and NO_TRAFFIC_MOVED in doc["error"], doc["error"]
    assert route(api) == before


def test_a_step_re_run_after_its_promotion_says_it_moved_nothing(cluster: Any, prometheus: Any) -> None:
    """A pipeline's retry of a promote step (or a re-run of an old job) after v2 was promoted: exit 0 and nothing
    written, but its text line read "promoted: rec-model v2 ... - all steps passed", word for word a fresh
    promotion's, so the log did not say that nothing was judged or moved this time (decision 357). The re-run of
    a rollback says it (decision 278); a promotion's now does too, and `-o json` gives `promoted_at` and `next`."""
    api, kubeconfig, policy = cluster
    first = promote(kubeconfig, policy, prometheus.url, "v2", "--output", "text")
    assert first.returncode == 0, first.stderr[-2000:]
    assert "earlier" not in first.stdout and "nothing written" not in first.stdout  # its own end: said as before
    before = route(api)
    again = promote(kubeconfig, policy, prometheus.url, "v2", "--output", "text")
    assert again.returncode == 0, again.stderr[-2000:]
    line = again.stdout.strip()
    assert line.startswith("promoted: rec-model v2 weights 100/0") and "promoted earlier at " in line, line
    assert line.endswith("nothing written; nothing to do: v2 already serves all traffic"), line
    doc = json.loads(promote(kubeconfig, policy, prometheus.url, "v2").stdout)
    assert doc["already_ended"] is True and doc["promoted_at"].endswith("Z")
    assert doc["next"] == "nothing to do: v2 already serves all traffic"
    assert route(api) == before  # nothing written by either re-run


@pytest.mark.parametrize("code,says,not_says", [(401, "did not accept our credentials", "check RBAC"),
                                                (403, "check RBAC", "credentials")])
def test_a_refusal_by_the_api_server_says_credentials_for_401_and_rbac_for_403(
        cluster: Any, prometheus: Any, code: int, says: str, not_says: str) -> None:
    """A CI job's token that expired (401) was told "check RBAC", as a Role that lacks a verb (403) is: the
    pipeline's on-call looked at the Role while the token's lifetime was at fault (decision 356)."""
    api, kubeconfig, policy = cluster
    before = route(api)
    api.fail_next(code, times=10**6, methods=("GET",), plural="virtualservices")
    res = promote(kubeconfig, policy, prometheus.url, "v2")
    with api.handler.lock:
        api.handler.faults.clear()
    assert res.returncode == 2, res.stderr[-2000:]
    error = json.loads(res.stdout)["error"]
    assert f"HTTP {code}" in error and says in error and not_says not in error, error
    assert route(api) == before
