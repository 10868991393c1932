"""Kubernetes credentials that expire or are rotated while a rollout runs (decisions 374-376).

A CD job's kubeconfig gets its token from an exec plugin (`aws eks get-token`, `gke-gcloud-auth-plugin`,
kubelogin) or a `tokenFile` (a pod's projected service-account token), living 15 minutes to an hour; a
rollout can outlive it. The kubernetes client renews a plugin's token only once the `expirationTimestamp`
it reported has passed, and never re-reads a kubeconfig's `tokenFile`: a token revoked or rotated before
then, or one from a plugin that reports no expiry, was sent until the process ended, every request 401.

The real CLI, a real exec plugin (a script: tests/support/kube_tokens.py), the strict Kubernetes API emulator
checking the bearer token of every request (401 for one it does not accept, as an API server does for an
expired or revoked token), a real Prometheus."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration.test_promote import cluster, prometheus, promote, vs_state  # noqa: F401 - fixtures
from tests.support import cli
from tests.support.kube_tokens import ExecTokens, dead, all_dead

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def controller_prometheus(history_pool: Any) -> Any:
    from tests import fleet
    from tests.integration.test_controller import N

    return fleet.pooled_prometheus(history_pool, N)


def on_vs_write(api: Any, write: int, then: Any) -> None:
    """Call `then()` once the `write`-th write of a VirtualService has been served (1: the claim at stable
    100%, 2: the first step's 80/20)."""
    real, seen = api.handler._serve, []

    def serve(method: str, request: Any, kind: Any) -> Any:
        out = real(method, request, kind)
        if method in ("PUT", "PATCH") and kind.plural == "virtualservices":
            seen.append(method)
            if len(seen) == write:
                then()
        return out

    api.handler._serve = serve  # type: ignore[method-assign]


def exec_cluster(api: Any, tmp_path: Path) -> tuple[ExecTokens, Path]:
    tokens = ExecTokens(tmp_path / "plugin")
    api.handler.accept_tokens = tokens.accept
    return tokens, tokens.kubeconfig(tmp_path / "exec-kubeconfig", api.url)


def events(stderr: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]



ROUTE = ("networking.istio.io", "v1beta1", "ml", "virtualservices", "rec-model")


def _route_answers(custom: Any) -> None:
    """The route is read (its error, if any, said as the CLI would), and read again: the renewed credentials are
    the client's from then on."""
    from canary import kube

    try:
        answer = custom.get_namespaced_custom_object(*ROUTE)
    except Exception as exc:  # noqa: BLE001 - said as the CLI would
        raise AssertionError(str(kube.translate(exc, "ml/rec-model"))) from exc
    assert answer["metadata"]["name"] == "rec-model"
    assert custom.get_namespaced_custom_object(*ROUTE)["metadata"]["name"] == "rec-model"  # and from then on


def test_a_token_revoked_mid_rollout_is_renewed_by_the_exec_plugin_and_the_rollout_goes_on(
        cluster: Any, prometheus: Any, tmp_path: Path) -> None:
    """The job's token is revoked at 80/20 (expired early, rotated, or from a plugin that reports no expiry):
    the next request's 401 runs the plugin again and is sent once more with the new token, so the rollout is
    promoted; it was exit 6 with the canary still at 20% (`traffic.unsafe`), the plugin never asked again."""
    api, _, policy = cluster
    tokens, kubeconfig = exec_cluster(api, tmp_path)
    on_vs_write(api, 2, tokens.revoke)
    res = promote(kubeconfig, policy, prometheus.url, "v2")
    assert res.returncode == 0, res.stdout + res.stderr[-3000:]
    weights, record = vs_state(api)
    assert weights == [100, 0] and record["phase"] == "promoted" and record["canary_version"] == "v2"
    assert tokens.issued() == ["tok-1", "tok-2"]  # asked again once, on the first 401
    assert api.handler.refused_tokens and {t for _, _, t in api.handler.refused_tokens} == {"tok-1"}
    renewed = [e for e in events(res.stderr) if e["event"] == "kube.credentials_renewed"]
    method, path, _ = api.handler.refused_tokens[0]
    assert [(e["refused"], e["renewals"]) for e in renewed] == [(f"{method} {path}", 1)], renewed


def test_a_promote_that_outlives_its_tokens_renews_each_before_its_reported_expiry_on_every_path(
        cluster: Any, prometheus: Any, tmp_path: Path) -> None:
    """What held (decision 376): a plugin reporting `expirationTimestamp` (as `aws eks get-token` does) has its
    token renewed by the client before that time, on every path of the process (the route's reads and writes,
    the history ConfigMap, Events: one client, one configuration, no copy keeping an old token). Tokens are
    refused 10 s after they were handed out and reported to expire 1 s after (301 s, less the client's 5-minute
    margin); a rollout of 6 s or more outlives several: promoted, and not one request answered 401."""
    api, _, policy = cluster
    tokens, kubeconfig = exec_cluster(api, tmp_path)
    tokens.expire_in(301)
    tokens.lifetime_s = 10
    res = promote(kubeconfig, policy, prometheus.url, "v2")
    assert res.returncode == 0, res.stdout + res.stderr[-3000:]
    assert vs_state(api)[0] == [100, 0] and vs_state(api)[1]["phase"] == "promoted"
    assert len(tokens.issued()) >= 3, tokens.issued()  # it outlived its first tokens
    assert api.handler.refused_tokens == []  # and each was renewed before the server refused it
    assert not [e for e in events(res.stderr) if e["event"].startswith("kube.credentials_")]


def token_file_kubeconfig(tmp_path: Path, server: str, token_file: Path) -> Path:
    kubeconfig = tmp_path / "file-kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "ci",
        "clusters": [{"name": "ci", "cluster": {"server": server}}],
        "users": [{"name": "ci", "user": {"tokenFile": str(token_file)}}],
        "contexts": [{"name": "ci", "context": {"cluster": "ci", "user": "ci", "namespace": "ml"}}]}))
    return kubeconfig


def test_a_kubeconfig_token_file_ending_in_a_newline_is_sent_trimmed(cluster: Any, prometheus: Any,
                                                                     tmp_path: Path) -> None:
    """`echo $TOKEN > token` (kubectl and client-go trim the file): every request failed before it was sent,
    `Invalid header value b'Bearer first\\n'`, exit 3."""
    api, _, policy = cluster
    token_file = tmp_path / "token"
    token_file.write_text("first\n")
    api.handler.accept_tokens = lambda token: token == "first"
    res = promote(token_file_kubeconfig(tmp_path, api.url, token_file), policy, prometheus.url, "v2")
    assert res.returncode == 0, res.stdout + res.stderr[-3000:]
    assert vs_state(api)[0] == [100, 0] and not api.handler.refused_tokens


def test_a_kubeconfig_token_file_rotated_on_disk_is_read_again_after_a_401(
        cluster: Any, prometheus: Any, tmp_path: Path) -> None:
    """A kubeconfig whose user has `tokenFile:` (a pod's projected service-account token, rotated by the
    kubelet; a CI runner's mounted token): the client read it once. Rotated and the old token refused at
    80/20, the promote read the file again on the 401 and went on."""
    api, _, policy = cluster
    token_file = tmp_path / "token"
    token_file.write_text("first")
    good = {"first"}
    api.handler.accept_tokens = lambda token: token in good
    kubeconfig = token_file_kubeconfig(tmp_path, api.url, token_file)

    def rotate() -> None:
        token_file.write_text("second")
        good.clear()
        good.add("second")

    on_vs_write(api, 2, rotate)
    res = promote(kubeconfig, policy, prometheus.url, "v2")
    assert res.returncode == 0, res.stdout + res.stderr[-3000:]
    assert vs_state(api)[0] == [100, 0] and vs_state(api)[1]["phase"] == "promoted"
    assert {t for _, _, t in api.handler.refused_tokens} == {"first"}


@pytest.mark.parametrize("how", ["plugin fails", "identity revoked"])
def test_credentials_gone_for_good_mid_rollout_exit_6_naming_the_split_then_a_rollback_ends_it(
        cluster: Any, prometheus: Any, tmp_path: Path, how: str) -> None:
    """No new credentials to be had at 80/20 (the plugin fails: an SSO session that expired; or every token
    refused: the job's identity deleted): stable 100% cannot be written. The promote exits 6 with the critical
    `traffic.unsafe` naming the route and the split it left, never claims a rollback, and (the plugin failing)
    its error carries the plugin's own words, where it said only "the token expired or was revoked ... or a
    kubeconfig whose exec plugin renews it", which this kubeconfig has. Its hint names the command that ends it
    (it said only "set ... by hand", decision 375). Once the credentials work again, that `canary rollback`
    with the same kubeconfig ends it at stable 100%."""
    api, _, policy = cluster
    tokens, kubeconfig = exec_cluster(api, tmp_path)

    def gone() -> None:
        tokens.revoke()
        if how == "plugin fails":
            tokens.fail("error: the SSO session has expired; run aws sso login")
        else:
            tokens.refuse_all = True

    on_vs_write(api, 2, gone)
    res = promote(kubeconfig, policy, prometheus.url, "v2")
    assert res.returncode == 6, res.stdout + res.stderr[-3000:]
    doc = json.loads(res.stdout)
    assert doc["rollback_failed"] is True and doc["phase"] == "progressing", doc
    assert "did not accept our credentials (HTTP 401" in doc["error"] and "check RBAC" not in doc["error"]
    unrenewed = [e for e in events(res.stderr) if e["event"] == "kube.credentials_unrenewed"]
    if how == "plugin fails":
        assert "new ones could not be had: exec: process returned 1. error: the SSO session has expired" in doc["error"]
        assert len(unrenewed) == 1 and "the SSO session has expired" in unrenewed[0]["error"], unrenewed  # said once
    else:  # new tokens were had, and refused too: said so, not "the token expired"
        assert not unrenewed and len(tokens.issued()) > 2
        assert "and the new ones the configuration gave were refused too (the identity itself is refused" in doc["error"]
        assert "the token expired or was revoked" not in doc["error"], doc["error"]
    assert doc["error"].endswith("traffic may still be split on ml/rec-model route (the only route, or each with a "
                                 "'stable' destination beside others): 80/20"), doc["error"]
    unsafe = [e for e in events(res.stderr) if e["event"] == "traffic.unsafe"]
    assert len(unsafe) == 1 and unsafe[0]["weights"] == "80/20" and unsafe[0]["level"] == "critical"
    assert unsafe[0]["hint"].endswith("run `canary rollback rec-model -n ml --virtual-service rec-model`"), unsafe[0]
    assert not [e for e in events(res.stderr) if e["event"] in ("rollback.completed", "rollout.aborted")]
    assert vs_state(api)[0] == [80, 20]  # as it says: still split

    tokens.fail(None)
    tokens.refuse_all = False
    back = cli.run(["rollback", "rec-model", "-n", "ml", "--virtual-service", "rec-model", "--kubeconfig",
                    str(kubeconfig), "-o", "json"], env={"KUBECONFIG": ""})
    assert back.returncode == 0, back.stdout + back.stderr[-2000:]
    weights, record = vs_state(api)
    assert weights == [100, 0] and record["phase"] == "rolled_back", record


def test_the_controller_renews_a_revoked_token_in_its_threads_and_ends_its_rollouts(
        controller_prometheus: Any, tmp_path: Path) -> None:
    """`canary controller run` with an exec-plugin kubeconfig (a controller outside the cluster, or one whose
    token a CI rotates): every token handed out so far revoked once the rollouts split traffic. Its watches,
    status writes, Events and route writes (the informers' threads and the ticks share one client) go on
    with the plugin's new token, and every rollout ends where its canary deserves; before, every request
    answered 401 until the process was restarted."""
    import kubernetes.client as kc

    from canary import crd
    from canary.controller import Controller
    from canary.kube import api_client
    from canary.metrics.batch import BatchMetrics
    from canary.metrics.prometheus import PrometheusProvider
    from canary.routing.istio import IstioRouter
    from tests import fleet
    from tests.integration.test_controller import N, run_until_done

    api = fleet.start_api(N)
    tokens = ExecTokens(tmp_path / "plugin")
    api.handler.accept_tokens = lambda token: token == "reader" or tokens.accept(token)
    reader = api.api_client()
    reader.configuration.api_key["BearerToken"] = "Bearer reader"  # the test's own reads and CanaryRollouts
    client = api_client(kubeconfig=str(tokens.kubeconfig(tmp_path / "exec-kubeconfig", api.url)))
    on_vs_write(api, N + 1, tokens.revoke)  # once the rollouts have started moving traffic
    prom = PrometheusProvider(controller_prometheus.url, retries=2, budget_s=2)
    op = Controller(custom=kc.CustomObjectsApi(client), core=kc.CoreV1Api(client),
                    router=IstioRouter(client, wait=None), metrics=prom, batch=BatchMetrics(prom), namespace="ml")
    custom = kc.CustomObjectsApi(reader)
    versions = ["v2", "v3", "v2", "v3", "v2", "v3"]
    try:
        for i, v in enumerate(versions):
            custom.create_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL,
                                                   fleet.rollout_object(i, v))
        objs = run_until_done(op, custom, [f"r{i}" for i in range(N)])
    finally:
        client.close()
        reader.close()
        api.stop()
    assert [objs[f"r{i}"]["status"]["phase"] for i in range(N)] == [fleet.expected_phase(v) for v in versions]
    assert "tok-1" in tokens.revoked and len(tokens.issued()) >= 2
    assert {t for _, _, t in api.handler.refused_tokens} <= tokens.revoked  # only revoked tokens were refused


def test_in_a_pod_a_service_account_token_rotated_on_disk_is_read_again_after_a_401(
        prometheus: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """In a pod (no kubeconfig): the kubelet rotates the projected service-account token in its file, and an
    API server stops accepting the old one. The client reads the file again only once a minute has passed
    since it last did; a rollout whose old token was refused within that minute failed (exit 6 at 80/20).
    The in-cluster loader itself, against the emulator over HTTPS with its own CA, as a pod's would be."""
    import ssl
    import subprocess

    import yaml as _yaml
    from kubernetes.config import incluster_config

    from canary.sandbox.kubeapi import KubeAPIServer
    from tests.integration.test_promote import POLICY
    from tests.support.kube import shipped_istio_objects

    cert, key = tmp_path / "ca.crt", tmp_path / "tls.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(str(cert), str(key))
    api = KubeAPIServer(seed=shipped_istio_objects(), ssl_context=tls).start()
    token_file = tmp_path / "token"
    token_file.write_text("sa-first")
    good = {"sa-first"}
    api.handler.accept_tokens = lambda token: token in good

    def rotate() -> None:
        token_file.write_text("sa-second")
        good.clear()
        good.add("sa-second")

    on_vs_write(api, 2, rotate)
    monkeypatch.setattr(incluster_config, "SERVICE_TOKEN_FILENAME", str(token_file))
    monkeypatch.setattr(incluster_config, "SERVICE_CERT_FILENAME", str(cert))
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "127.0.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", api.url.rsplit(":", 1)[1])
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.kube/config
    policy = tmp_path / "policy.yaml"
    policy.write_text(_yaml.safe_dump(POLICY))
    try:
        res = cli.run(["promote", "rec-model", "--canary-version", "v2", "--policy", str(policy), "--namespace", "ml",
                       "--output", "json", "--log-format", "json"],
                      env={"KUBECONFIG": "", "CANARY_PROMETHEUS_URL": prometheus.url})
        assert res.returncode == 0, res.stdout + res.stderr[-3000:]
        assert vs_state(api)[0] == [100, 0] and vs_state(api)[1]["phase"] == "promoted"
        assert {t for _, _, t in api.handler.refused_tokens} == {"sa-first"}
    finally:
        api.stop()


def test_the_controller_keeps_ending_its_rollouts_while_no_credentials_are_had_and_ends_them_once_they_are(
        controller_prometheus: Any, tmp_path: Path) -> None:
    """The controller's exec plugin fails once its rollouts split traffic (an SSO session expired; a cloud
    identity's role deleted): every request 401, no new token. It keeps trying to end them, running the
    plugin again on each 401, and once the plugin works again every rollout ends with no split left; before,
    the plugin was not asked again until its token's own expiry had passed, if ever (a plugin that reports
    none), and the process had to be restarted."""
    import threading
    import time

    import kubernetes.client as kc

    from canary import crd
    from canary import rollout as rl
    from canary.controller import Controller
    from canary.kube import api_client
    from canary.metrics.batch import BatchMetrics
    from canary.metrics.prometheus import PrometheusProvider
    from canary.routing.istio import IstioRouter
    from tests import fleet
    from tests.integration.test_controller import N, run_until_done

    api = fleet.start_api(N)
    tokens = ExecTokens(tmp_path / "plugin")
    api.handler.accept_tokens = lambda token: token == "reader" or tokens.accept(token)
    reader = api.api_client()
    reader.configuration.api_key["BearerToken"] = "Bearer reader"
    client = api_client(kubeconfig=str(tokens.kubeconfig(tmp_path / "exec-kubeconfig", api.url)))

    def gone() -> None:
        tokens.revoke()
        tokens.fail("error: the SSO session has expired")

    on_vs_write(api, N + 1, gone)
    back = threading.Event()

    def restore() -> None:  # after the plugin was asked (and failed) a few times: the credentials come back
        deadline = time.monotonic() + 60
        while tokens.failures() < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        tokens.fail(None)
        back.set()

    prom = PrometheusProvider(controller_prometheus.url, retries=2, budget_s=2)
    op = Controller(custom=kc.CustomObjectsApi(client), core=kc.CoreV1Api(client),
                    router=IstioRouter(client, wait=None), metrics=prom, batch=BatchMetrics(prom), namespace="ml")
    custom = kc.CustomObjectsApi(reader)
    helper = threading.Thread(target=restore, daemon=True)
    try:
        for i, v in enumerate(["v2", "v3", "v2", "v3", "v2", "v3"]):
            custom.create_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL,
                                                   fleet.rollout_object(i, v))
        helper.start()
        objs = run_until_done(op, custom, [f"r{i}" for i in range(N)])
        routes = [api.get("networking.istio.io", "virtualservices", "ml", f"m{i}") for i in range(N)]
    finally:
        helper.join(70)
        client.close()
        reader.close()
        api.stop()
    assert back.is_set() and tokens.failures() >= 3
    assert all(objs[f"r{i}"]["status"]["phase"] in rl.TERMINAL for i in range(N))
    assert [[d["weight"] for d in vs["spec"]["http"][0]["route"]] for vs in routes] == [[100, 0]] * N  # no split left


def test_an_exec_plugin_that_hangs_after_the_signal_ends_within_the_grace_with_traffic_said(
        cluster: Any, prometheus: Any, tmp_path: Path) -> None:
    """The job's token reaches its reported expiry mid-rollout and the plugin hangs (`aws eks get-token` with no
    route to STS). The client runs it in the request's thread, with no timeout, outside `--interrupt-grace`'s
    cut of a hung request: SIGTERM's stable-100% write waited on it until the CI's SIGKILL, nothing said. Now
    the grace ends the wait, no plugin is run past it, and the process exits 6 with `traffic.unsafe` naming the
    split, within the test's limit. Nothing timed: the proof is the exit with its words (before: the limit)."""
    from tests.integration.test_interrupt_grace import _promote_signalled

    api, _, policy = cluster
    tokens, kubeconfig = exec_cluster(api, tmp_path)
    tokens.expire_in(300)  # expired at once for the client (its 5-minute margin): every request runs the plugin
    try:
        code, out, err = _promote_signalled(kubeconfig, policy, prometheus.url, "--interrupt-grace", "3",
                                            at_split=tokens.hang, split_of=api)
        pids = tokens.hung_pids()  # the plugin cut by the grace, and the helper it started, were left running
        assert pids and all_dead(pids), [(p, dead(p)) for p in pids]  # (decision 427)
    finally:
        tokens.end_hung()
    assert code == 6, out + err[-3000:]
    assert (tmp_path / "plugin" / "hung").exists()  # the plugin did hang
    unsafe = [e for e in events(err) if e["event"] == "traffic.unsafe"]
    assert len(unsafe) == 1 and unsafe[0]["weights"] == "80/20", unsafe  # signalled before step 2 could be written
    assert "(--interrupt-grace) are spent" in json.loads(out)["error"], out


def test_a_renewal_after_a_401_cut_by_the_grace_is_said_as_the_grace_not_as_a_broken_plugin(
        cluster: Any, prometheus: Any, tmp_path: Path) -> None:
    """The job's token is revoked at 80/20 and the plugin hangs (no route to STS) when the 401's renewal runs it;
    SIGTERM's grace cuts it (decision 377). The loader catches the cut and logs it: the renewal read that as no new
    credentials and said `kube.credentials_unrenewed`, "mend the kubeconfig's exec plugin ...", of a plugin that
    works, cut by our own grace, and the request failed as a 401 ("new ones could not be had: ... the grace ...
    spent; not RBAC"). Now the request ends as the grace's cut (GraceSpent): no such line, exit 6 with
    `traffic.unsafe` naming the split (decision 396)."""
    from tests.integration.test_interrupt_grace import _promote_signalled

    api, _, policy = cluster
    tokens, kubeconfig = exec_cluster(api, tmp_path)

    def at_split() -> None:
        tokens.revoke()
        tokens.hang()

    try:
        code, out, err = _promote_signalled(kubeconfig, policy, prometheus.url, "--interrupt-grace", "3",
                                            at_split=at_split, split_of=api)
    finally:
        tokens.end_hung()
    assert code == 6, out + err[-3000:]
    assert (tmp_path / "plugin" / "hung").exists()  # the renewal's plugin did hang
    said = events(err)
    assert not [e for e in said if e["event"] == "kube.credentials_unrenewed"], err[-3000:]
    unsafe = [e for e in said if e["event"] == "traffic.unsafe"]
    assert len(unsafe) == 1 and unsafe[0]["weights"] == "80/20", unsafe
    assert "(--interrupt-grace) are spent" in json.loads(out)["error"] and "HTTP 401" not in out, out


@pytest.mark.parametrize("anonymous", [True, False], ids=["anonymous-auth-403", "401"])
def test_a_plugin_failing_before_the_job_starts_is_exit_2_naming_it_not_rbac_and_nothing_written(
        cluster: Any, prometheus: Any, tmp_path: Path, anonymous: bool) -> None:
    """The exec plugin fails from the job's first request (an SSO session that expired before the pipeline ran):
    the kubernetes client logs the plugin's error and sends its requests with no credentials at all. An API server
    with anonymous authentication on (the default, EKS and GKE) answers those 403 `system:anonymous`, which canary
    said as "refused us (HTTP 403 ...); check RBAC": the on-call went to the Role, the plugin's own error only in a
    `library.log` line above. Now a request sent with no credentials because the configuration could give none is
    answered as a 401 is: the configuration is loaded again, and with still no token the error names the plugin's
    words, "not RBAC", `kube.credentials_unrenewed` said; exit 2, nothing written (decision 413)."""
    api, _, policy = cluster
    tokens, kubeconfig = exec_cluster(api, tmp_path)
    api.handler.anonymous_forbidden = anonymous
    tokens.fail("Error when retrieving token from sso: Token has expired and refresh failed")
    res = promote(kubeconfig, policy, prometheus.url, "v2")
    assert res.returncode == 2, res.stdout + res.stderr[-3000:]
    doc = json.loads(res.stdout)
    assert doc["phase"] is None and "check RBAC" not in doc["error"] and doc["error"].endswith("; not RBAC"), doc
    assert ("new ones could not be had: exec: process returned 1. Error when retrieving token from sso: Token has "
            "expired and refresh failed") in doc["error"], doc["error"]
    unrenewed = [e for e in events(res.stderr) if e["event"] == "kube.credentials_unrenewed"]
    assert len(unrenewed) == 1 and "Token has expired" in unrenewed[0]["error"], unrenewed
    assert "modelcanary.dev/rollout" not in (api.get("networking.istio.io", "virtualservices", "ml", "rec-model")
                                             ["metadata"].get("annotations") or {})


def test_a_plugin_that_failed_at_the_start_and_works_when_asked_again_runs_the_rollout(
        cluster: Any, prometheus: Any, tmp_path: Path) -> None:
    """The plugin failed once as the job started (its token service blipped), so the first request went with no
    credentials, answered 403 `system:anonymous` by an API server with anonymous authentication on: it was exit 2,
    "check RBAC". The configuration is loaded again on that answer, as on a 401, and the request sent once more
    with the token it now gives: promoted (decision 413)."""
    api, _, policy = cluster
    tokens, kubeconfig = exec_cluster(api, tmp_path)
    api.handler.anonymous_forbidden = True
    tokens.fail("Error when retrieving token from sso: connection reset")
    real = api.handler.accept_tokens

    def accept(token: str | None) -> bool:
        if token is None:
            tokens.fail(None)  # the token service is back by the time the anonymous request is answered
        return real(token)

    api.handler.accept_tokens = accept
    res = promote(kubeconfig, policy, prometheus.url, "v2")
    assert res.returncode == 0, res.stdout + res.stderr[-3000:]
    assert vs_state(api)[0] == [100, 0] and vs_state(api)[1]["phase"] == "promoted"
    assert tokens.issued() == ["tok-1"] and tokens.failures() == 1
    renewed = [e for e in events(res.stderr) if e["event"] == "kube.credentials_renewed"]
    assert len(renewed) == 1 and renewed[0]["renewals"] == 1, renewed
def test_a_renewal_hung_at_the_signal_for_a_request_not_the_routes_write_leaves_the_grace_to_the_rollback(
        cluster: Any, prometheus: Any, tmp_path: Path) -> None:
    """Decision 396 left it: the renewal that hung at SIGTERM was a history write's (or an Event's), and it spent the
    whole grace before the stable-100% write was tried (exit 6). The job's token is revoked at 80/20 and the plugin
    hangs once, on the renewal of the next request (the Event or the history write after the step, well before the
    next look's write of the route); SIGTERM once it hangs. Since decision 407 that renewal is abandoned at the
    signal, the interrupt's requests renew with a plugin that answers, and stable 100% lands: exit 3."""
    from tests.integration.test_interrupt_grace import _promote_signalled

    api, _, policy = cluster
    tokens, kubeconfig = exec_cluster(api, tmp_path)

    def at_split() -> None:  # in the proxy's thread, before the first request after the split is forwarded
        tokens.hang()
        tokens.revoke()

    def hung() -> None:  # in the test's thread: the process waits on a plugin with no timeout, however late
        hung = tmp_path / "plugin" / "hung"
        for _ in range(600):  # a condition (the plugin says it hangs), polled; not a guess of how long
            if hung.exists() and hung.read_text().strip():
                break
            time.sleep(0.1)
        assert hung.exists(), "the renewal's plugin never ran"
        (tmp_path / "plugin" / "hang").unlink()  # its later runs answer

    try:
        code, out, err = _promote_signalled(kubeconfig, policy, prometheus.url, "--interrupt-grace", "3",
                                            at_split=at_split, split_of=api, then=hung)
    finally:
        tokens.end_hung()
    method, path, _ = api.handler.refused_tokens[0]
    assert not (method != "GET" and "/virtualservices/" in path), (method, path)  # the premise: not the route's write
    assert code == 3, out + err[-3000:]
    weights, record = vs_state(api)
    assert weights == [100, 0] and record["phase"] == "aborted" and "SIGTERM" in record["reason"], record
    said = events(err)
    assert not [e for e in said if e["event"] in ("traffic.unsafe", "kube.credentials_unrenewed")], err[-3000:]


def test_an_exec_plugin_that_hangs_with_no_signal_is_killed_with_its_helpers_and_the_rollout_ends_safely(
        cluster: Any, prometheus: Any, tmp_path: Path) -> None:
    """The job's token is revoked at 80/20 and the plugin then hangs (`aws eks get-token` with no route to STS),
    no signal ever coming: the 401's renewal waited on it for ever (client-go and the kubernetes client have no
    timeout), the route split, nothing said, until the CI's job timeout. Each run is now bounded
    (`$CANARY_EXEC_PLUGIN_TIMEOUT`, here 1 s): killed with its whole process group (the helper it started too; both
    were left running), the request failed naming the bound, and the rollout ends as credentials gone for good do:
    exit 6, `traffic.unsafe` naming the split (decisions 426, 427). Nothing timed: the proof is the exit with its
    words and the pids gone (before: pytest's timeout)."""
    api, _, policy = cluster
    tokens, kubeconfig = exec_cluster(api, tmp_path)

    def at_split() -> None:
        tokens.revoke()
        tokens.hang()

    on_vs_write(api, 2, at_split)
    try:
        res = cli.run(["promote", "rec-model", "--canary-version", "v2", "--policy", str(policy), "--namespace", "ml",
                       "--kubeconfig", str(kubeconfig), "--output", "json", "--log-format", "json"],
                      env={"KUBECONFIG": "", "CANARY_PROMETHEUS_URL": prometheus.url, "CANARY_EXEC_PLUGIN_TIMEOUT": "1"})
        # every run the bound killed, and each helper a run had started (its pids written) by then: none left. A run
        # killed before it wrote its pids (a slow start under load) had no helper yet: its pid is the log's
        killed = [e for e in events(res.stderr) if e["event"] == "kube.exec_plugin_killed"]
        pids = sorted({e["pid"] for e in killed} | set(tokens.hung_pids()))
        assert killed and all_dead(pids), [(p, dead(p)) for p in pids]  # plugin and helper killed
    finally:
        tokens.end_hung()
    assert res.returncode == 6, res.stdout + res.stderr[-3000:]
    doc = json.loads(res.stdout)
    assert "did not answer within 1 s ($CANARY_EXEC_PLUGIN_TIMEOUT); killed it" in doc["error"], doc["error"]
    said = events(res.stderr)
    unsafe = [e for e in said if e["event"] == "traffic.unsafe"]
    assert len(unsafe) == 1 and unsafe[0]["weights"] == "80/20", unsafe
    assert vs_state(api)[0] == [80, 20]


def test_a_server_refusing_every_token_runs_the_plugin_once_per_window_shared_by_threads_but_not_for_the_route(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every token refused (the identity deleted): each request's 401 ran the plugin again, every request of every
    thread (a controller's informers, ticks, Events), the token service hammered. After a renewal that did not
    help, the plugin is not run again within `RENEW_EVERY_S` (one hour here: nothing timed), whichever thread asks;
    each 401 still says why (`refused too`). A request of the route (the stable-100% write, the read before it)
    is never held back: it renews (decision 428)."""
    import threading

    import kubernetes.client as kc

    from canary import kube, kube_credentials
    from canary.sandbox.kubeapi import KubeAPIServer
    from tests.support.kube import shipped_istio_objects

    monkeypatch.setattr(kube_credentials, "RENEW_EVERY_S", 3600.0, raising=False)
    api = KubeAPIServer(seed=shipped_istio_objects()).start()
    tokens, kubeconfig = exec_cluster(api, tmp_path)
    client = kube.api_client(kubeconfig=str(kubeconfig))
    try:
        tokens.refuse_all = True
        core = kc.CoreV1Api(client)
        errors: list[str] = []

        def read() -> None:
            for _ in range(3):
                try:
                    core.read_namespaced_config_map("history", "ml")
                except Exception as exc:  # noqa: BLE001 - the 401, translated as the CLI does
                    errors.append(str(kube.translate(exc, "ml/history")))

        threads = [threading.Thread(target=read) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert len(errors) == 12 and all("HTTP 401" in e and "refused too" in e for e in errors), errors
        assert tokens.issued() == ["tok-1", "tok-2"], tokens.issued()  # the first load, one renewal: no more
        with pytest.raises(Exception) as refused:
            kc.CustomObjectsApi(client).get_namespaced_custom_object("networking.istio.io", "v1beta1", "ml",
                                                                     "virtualservices", "rec-model")
        assert "refused too" in str(kube.translate(refused.value, "ml/rec-model"))
        assert tokens.issued() == ["tok-1", "tok-2", "tok-3"]  # the route's request renewed, held back by nothing
    finally:
        client.close()
        api.stop()


def test_a_401_with_the_token_a_renewal_just_gave_is_refused_too_not_another_plugin_run(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every token refused (the identity deleted). Thread A's 401 renews (tok-2) and sends again; before that
    answer comes, thread B's request, sent with tok-2, is refused 401. Before: B's renewal saw no renewal that did
    not help yet (A's answer pending) and ran the plugin again (tok-3): the once-per-window limit of decision 428
    held only once the renewing request's own answer came. A 401 to the token a renewal just gave is that
    renewal not helping: B is answered at once saying so (`refused too`), no plugin run (decision 464)."""
    import asyncio
    import threading

    import kubernetes.client as kc

    from canary import kube, kube_credentials
    from canary.sandbox.kubeapi import KubeAPIServer
    from tests.support.kube import shipped_istio_objects

    monkeypatch.setattr(kube_credentials, "RENEW_EVERY_S", 3600.0, raising=False)
    api = KubeAPIServer(seed=shipped_istio_objects()).start()
    tokens, kubeconfig = exec_cluster(api, tmp_path)
    client = kube.api_client(kubeconfig=str(kubeconfig))
    real, resent, release = api.handler._handle, threading.Event(), threading.Event()

    async def handle(request: Any) -> Any:
        if request.url.path.endswith("/configmaps/a") and "tok-2" in (request.headers.get("Authorization") or ""):
            resent.set()  # A's request sent again with the renewed token: its answer waits for B's
            await asyncio.get_running_loop().run_in_executor(None, release.wait, 60)
        return await real(request)

    api.handler._handle = handle  # type: ignore[method-assign]
    core, errors = kc.CoreV1Api(client), {}

    def read(name: str) -> None:
        try:
            core.read_namespaced_config_map(name, "ml")
        except Exception as exc:  # noqa: BLE001 - the 401, translated as the CLI does
            errors[name] = str(kube.translate(exc, f"ml/{name}"))

    try:
        tokens.refuse_all = True
        a = threading.Thread(target=read, args=("a",))
        a.start()
        assert resent.wait(60)
        read("b")  # sent with tok-2 while A's answer is pending
        release.set()
        a.join(60)
        assert tokens.issued() == ["tok-1", "tok-2"], tokens.issued()  # the first load, A's renewal: no more
        assert set(errors) == {"a", "b"} and all("HTTP 401" in e and "refused too" in e for e in errors.values()), errors
    finally:
        release.set()
        client.close()
        api.stop()


def test_two_clients_401s_each_say_their_own_renewals_note(tmp_path: Path) -> None:
    """Why renewing did not help was one note for the whole process, the last renewal's: a controller's (or any
    process's) two clients, or two threads, said each other's (`SSO session expired` of an identity that was
    deleted). The note travels with the request's own answer now (decision 430)."""
    from canary import kube
    from canary.sandbox.kubeapi import KubeAPIServer
    from tests.support.kube import shipped_istio_objects

    import kubernetes.client as kc

    api = KubeAPIServer(seed=shipped_istio_objects()).start()
    failing, refused = ExecTokens(tmp_path / "a", prefix="a"), ExecTokens(tmp_path / "b", prefix="b")
    api.handler.accept_tokens = lambda token: failing.accept(token) or refused.accept(token)
    a = kube.api_client(kubeconfig=str(failing.kubeconfig(tmp_path / "a.kubeconfig", api.url)))
    b = kube.api_client(kubeconfig=str(refused.kubeconfig(tmp_path / "b.kubeconfig", api.url)))
    try:
        failing.revoke()
        failing.fail("error: the SSO session has expired")
        refused.refuse_all = True
        said = {}
        for name, client in (("a", a), ("b", b)):
            try:
                kc.CoreV1Api(client).read_namespaced_config_map("history", "ml")
            except Exception as exc:  # noqa: BLE001 - the 401
                said[name] = exc
        first, second = (str(kube.translate(said[n], "ml/history")) for n in ("a", "b"))
    finally:
        a.close()
        b.close()
        api.stop()
    assert "new ones could not be had: exec: process returned 1. error: the SSO session has expired" in first, first
    assert "refused too" not in first, first
    assert "refused too" in second and "SSO" not in second, second


@pytest.mark.parametrize("source", ["exec plugin", "kubeconfig files"])
def test_a_client_certificate_rotated_mid_rollout_is_renewed_after_a_401(tmp_path: Path, source: str) -> None:
    """An exec plugin that hands out a client certificate (`clientCertificateData`/`clientKeyData`: Teleport's
    `tsh kube credentials`, Vault-issued certificates, OpenShift's), short-lived, rotated: the API server refuses
    the old one with 401 (it asks for a certificate in the handshake and refuses it afterwards). The kubernetes
    client ran the plugin once and kept the certificate in its connection pool until the process ended, and our
    401 renewal looked for a token only: every request 401 ("the token expired"), a rollout split until restarted.
    client-go renews it and closes its connections (`connTracker.CloseAll`); now so does the renewal: the pool's
    new connections present the new certificate and the request is sent once more (decision 429). The same for a
    kubeconfig's `client-certificate`/`client-key` files rotated in place (cert-manager, a Vault agent): the pool's
    open connections kept the old one (client-go reloads such files). Over HTTPS with the emulator's own CA, as a
    cluster's would be."""
    import ssl
    import subprocess

    import kubernetes.client as kc

    from canary import kube
    from canary.sandbox.kubeapi import KubeAPIServer
    from tests.support.kube import shipped_istio_objects

    ca, ca_key = tmp_path / "ca.crt", tmp_path / "ca.key"

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True)

    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1",
            "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(ca_key), "-out", str(ca))

    def client_certificate(name: str) -> tuple[str, str]:
        key, csr, crt = (tmp_path / f"{name}.{ext}" for ext in ("key", "csr", "crt"))
        openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-subj",
                f"/CN={name}", "-keyout", str(key), "-out", str(csr))
        openssl("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial", "-days", "1",
                "-out", str(crt))
        return crt.read_text(), key.read_text()

    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(str(ca), str(ca_key))
    tls.verify_mode = ssl.CERT_OPTIONAL  # as an API server asks for a client certificate: optional in the handshake
    tls.load_verify_locations(str(ca))
    api = KubeAPIServer(seed=shipped_istio_objects(), ssl_context=tls).start()
    good = {"job-1"}
    api.handler.accept_certs = lambda name: name in good
    tokens = ExecTokens(tmp_path / "plugin")
    kubeconfig = tokens.kubeconfig(tmp_path / "kubeconfig", api.url, ca=ca)
    cert_file, key_file = tmp_path / "client.crt", tmp_path / "client.key"

    def hand_out(cert: str, key: str) -> None:
        if source == "exec plugin":
            tokens.hand_out_certificate(cert, key)
        else:  # rotated in place, as cert-manager or a Vault agent rewrites the files a kubeconfig names
            cert_file.write_text(cert)
            key_file.write_text(key)

    hand_out(*client_certificate("job-1"))
    if source == "kubeconfig files":
        config = yaml.safe_load(kubeconfig.read_text())
        config["users"][0]["user"] = {"client-certificate": str(cert_file), "client-key": str(key_file)}
        kubeconfig.write_text(yaml.safe_dump(config))
    client = kube.api_client(kubeconfig=str(kubeconfig))
    custom = kc.CustomObjectsApi(client)
    try:
        assert custom.get_namespaced_custom_object(*ROUTE)["metadata"]["name"] == "rec-model"
        hand_out(*client_certificate("job-2"))  # rotated; the old one refused from now on
        good.clear()
        good.add("job-2")
        _route_answers(custom)
    finally:
        client.close()
        api.stop()
    assert [name for _, _, name in api.handler.refused_certs] == ["job-1"], api.handler.refused_certs


def test_the_routes_401_is_not_queued_behind_another_threads_hung_plugin_run(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Renewals are one at a time (decision 374): a tick's, an informer's or a look's worker's 401 ran the plugin
    under the renewal's lock, and a request of the route refused 401 meanwhile (the stable-100% write, the read
    before it) waited on that lock until the other thread's run ended: up to `CANARY_EXEC_PLUGIN_TIMEOUT` (30 s) for a
    plugin that hangs, then its own run. Here thread A's run hangs (a stuck connection to the token service: the
    plugin's next run answers) with the bound an hour, and the route's GET, refused 401, waits for it at most
    `ROUTE_WAIT_S` (nothing timed: 0 here) and then runs the plugin itself, saying so: it gets tok-2 and is
    answered (decision 488). Without: it waited until A's plugin was killed."""
    import threading

    import kubernetes.client as kc
    from structlog.testing import capture_logs

    from canary import kube, kube_credentials
    from canary.sandbox.kubeapi import KubeAPIServer
    from tests.support.kube import shipped_istio_objects

    monkeypatch.setenv("CANARY_EXEC_PLUGIN_TIMEOUT", "3600")
    monkeypatch.setattr(kube_credentials, "ROUTE_WAIT_S", 0.0, raising=False)
    api = KubeAPIServer(seed=shipped_istio_objects()).start()
    tokens, kubeconfig = exec_cluster(api, tmp_path)
    client = kube.api_client(kubeconfig=str(kubeconfig))
    core, custom = kc.CoreV1Api(client), kc.CustomObjectsApi(client)
    said: dict[str, Any] = {}

    def read() -> None:
        try:
            said["a"] = core.read_namespaced_config_map("history", "ml")
        except Exception as exc:  # noqa: BLE001 - the 401 of a renewal whose plugin was killed
            said["a"] = exc

    def route() -> None:
        try:
            said["route"] = custom.get_namespaced_custom_object("networking.istio.io", "v1beta1", "ml",
                                                                "virtualservices", "rec-model")
        except Exception as exc:  # noqa: BLE001 - said below
            said["route"] = exc

    a, r = threading.Thread(target=read, daemon=True), threading.Thread(target=route, daemon=True)
    try:
        with capture_logs() as log:
            tokens.revoke()
            tokens.hang()
            a.start()
            hung = tokens.state / "hung"
            end = time.monotonic() + 60
            while not hung.exists() and time.monotonic() < end:  # A's renewal runs the plugin, which hangs
                time.sleep(0.02)
            assert hung.exists()
            (tokens.state / "hang").unlink()  # the plugin's next run answers
            r.start()
            r.join(60)  # a bound only a route's request queued behind A's hung run reaches
            assert not r.is_alive(), "the route's request waited for another thread's hung plugin run"
        assert isinstance(said["route"], dict) and said["route"]["metadata"]["name"] == "rec-model", said["route"]
        assert tokens.issued() == ["tok-1", "tok-2"], tokens.issued()
        unqueued = [e for e in log if e["event"] == "kube.credentials_renewal_unqueued"]
        assert len(unqueued) == 1 and "virtualservices/rec-model" in unqueued[0]["refused"], unqueued
    finally:
        tokens.end_hung()
        a.join(60)
        client.close()
        api.stop()
    # A's run killed, its renewal failed: it takes the token the route's renewal gave meanwhile, not a 401; the
    # request sent with it is answered (404: no such ConfigMap here), not any other error that is not a 401
    assert getattr(said["a"], "status", None) == 404, said["a"]


def test_a_client_certificate_refused_in_the_tls_handshake_is_renewed_as_a_401_is(tmp_path: Path) -> None:
    """A proxy or load balancer in front of the API server that verifies client certificates itself (HAProxy's
    `verify required`, nginx's `ssl_verify_client on`, a Teleport or corporate proxy) refuses an expired one in the
    TLS handshake: an alert (`certificate expired`), no HTTP answer, no 401. The renewal of decision 429 ran on a
    401 only, so the client sent the exec plugin's expired certificate until the process ended, each request an
    SSLError retried as the API unreachable. Now such a refusal renews as a 401 does (the plugin run again) and the
    request, which the server never read, is sent once more with the new certificate (decision 489). A real
    HAProxy (OpenSSL) terminating TLS in front of the emulator; the plugin first gave a certificate that has
    expired, then a fresh one. (A kubeconfig's `client-certificate` files need nothing: the client reads them on
    each new connection, and a refused handshake's connection is not kept.)"""
    import subprocess

    import kubernetes.client as kc

    from canary import kube
    from canary.sandbox.haproxy import HAProxy
    from canary.sandbox.kubeapi import KubeAPIServer
    from tests.support.kube import shipped_istio_objects

    ca, ca_key, server_pem = tmp_path / "ca.crt", tmp_path / "ca.key", tmp_path / "server.pem"

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True)

    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1",
            "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(ca_key), "-out", str(ca))
    server_pem.write_text(ca.read_text() + ca_key.read_text())

    def client_certificate(name: str, days: str) -> tuple[str, str]:
        key, csr, crt = (tmp_path / f"{name}.{ext}" for ext in ("key", "csr", "crt"))
        openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-subj",
                f"/CN={name}", "-keyout", str(key), "-out", str(csr))
        openssl("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial", "-days", days,
                "-out", str(crt))
        return crt.read_text(), key.read_text()

    class VerifyingProxy(HAProxy):  # TLS ends here, client certificates verified against the CA: an LB's
        def config_text(self) -> str:
            return super().config_text().replace(
                f"bind 127.0.0.1:{self.port}",
                f"bind 127.0.0.1:{self.port} ssl crt {server_pem} ca-file {ca} verify required")

    api = KubeAPIServer(seed=shipped_istio_objects()).start()
    proxy = VerifyingProxy({"api": api.url.removeprefix("http://")}, workdir=tmp_path / "haproxy").start()
    tokens = ExecTokens(tmp_path / "plugin")
    kubeconfig = tokens.kubeconfig(tmp_path / "kubeconfig", f"https://127.0.0.1:{proxy.port}", ca=ca)
    tokens.hand_out_certificate(*client_certificate("job-0", "-1"))  # expired (until a day before it was issued)
    client = kube.api_client(kubeconfig=str(kubeconfig))
    custom = kc.CustomObjectsApi(client)
    try:
        tokens.hand_out_certificate(*client_certificate("job-1", "1"))  # the fresh one, given from now on
        _route_answers(custom)
    finally:
        client.close()
        proxy.stop()
        api.stop()
    assert tokens.issued() == ["tok-1", "tok-2"], tokens.issued()  # the load's run, the renewal's: one each


def test_a_rollouts_core_calls_through_kube_core_are_renewed_after_a_401(tmp_path: Path) -> None:
    """A promote's core-API calls (its history ConfigMap, Events, the subset's Service and pods) go through
    `kube_core.CoreV1`, not CoreV1Api (decision 1041): a token revoked mid-rollout is renewed by the exec plugin
    and the call sent again for them too (the client's `call_api`, which `_call_with_legacy_options` calls), reads
    and writes; an identity refused for good is the 401 `kube.translate` says as credentials, not RBAC, with why
    renewing did not help (decision 1034)."""
    from kubernetes.client.exceptions import ApiException

    from canary import kube
    from canary.kube_core import CoreV1
    from canary.sandbox.kubeapi import KubeAPIServer
    from tests.support.kube import shipped_istio_objects

    api = KubeAPIServer(seed=shipped_istio_objects()).start()
    tokens, kubeconfig = exec_cluster(api, tmp_path)
    client = kube.api_client(kubeconfig=str(kubeconfig))
    core = CoreV1(client)
    body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "h", "namespace": "ml"}, "data": {"k": "v"}}
    try:
        kube.raw_object(core.create_namespaced_config_map("ml", body, _preload_content=False), "create")
        tokens.revoke()
        got = kube.raw_object(core.read_namespaced_config_map("h", "ml", _preload_content=False), "read")
        assert got["data"] == {"k": "v"} and tokens.issued() == ["tok-1", "tok-2"], tokens.issued()
        tokens.revoke()
        patched = kube.raw_object(core.patch_namespaced_config_map(
            "h", "ml", {"data": {"p": "1"}}, _content_type="application/merge-patch+json", _preload_content=False),
            "patch")
        assert patched["data"] == {"k": "v", "p": "1"} and tokens.issued()[-1] == "tok-3", tokens.issued()
        tokens.refuse_all = True
        with pytest.raises(ApiException) as err:
            core.read_namespaced_config_map("h", "ml", _preload_content=False)
        said = str(kube.translate(err.value, "ConfigMap ml/h"))
        assert err.value.status == 401 and "did not accept our credentials (HTTP 401" in said, said
        assert kube.note_of(err.value), "why renewing did not help travels with the answer"
    finally:
        client.close()
        api.stop()
