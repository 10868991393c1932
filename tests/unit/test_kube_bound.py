"""`kube.bound_by`'s timeout arithmetic (decision 126); the whole path runs against the emulator in
tests/integration/test_interrupt_grace.py."""

from __future__ import annotations

import math
import time

import pytest

from canary.errors import GraceSpent, TransientError
from canary.kube import _cut_timeout, bound_by, is_transient


@pytest.mark.parametrize(("timeout", "left", "cut"), [
    (None, 3.0, 3.0),  # no timeout of its own: the grace is one
    (10, 3.0, 3.0),
    (2, 3.0, 2.0),
    ((5, 10), 3.0, (3.0, 3.0)),
    ((1, None), 3.0, (1.0, 3.0)),
    (10, math.inf, 10),  # not signalled: untouched
    (None, math.inf, None),
])
def test_a_request_timeout_is_cut_to_the_time_left(timeout: object, left: float, cut: object) -> None:
    assert _cut_timeout(timeout, left) == cut


def test_no_request_is_sent_once_the_grace_is_spent(tmp_path: object) -> None:
    """The refusal comes before any connection (nothing listens on the address) and is not a retry's
    kind of error: the fail-safe gives up at once and says how traffic stands."""
    import kubernetes.client

    cfg = kubernetes.client.Configuration()
    cfg.host = "http://127.0.0.1:9"
    client = kubernetes.client.ApiClient(cfg)
    bound_by(client, lambda: time.monotonic() - 1)
    with pytest.raises(GraceSpent, match=r"GET /api/v1/namespaces/ml/configmaps/x: not sent"):
        kubernetes.client.CoreV1Api(client).read_namespaced_config_map("x", "ml", _request_timeout=10)
    assert not isinstance(GraceSpent("x"), TransientError) and not is_transient(GraceSpent("x"))


def test_cut_abandons_the_request_the_main_thread_waits_on_and_nothing_else() -> None:
    """Decision 128: `bound_by` returns what the main thread waits on; `cut()` (promote's SIGALRM at the
    grace's end) raises GraceSpent naming it, and does nothing when no request is in flight."""
    import kubernetes.client

    from canary.kube import InFlight

    cfg = kubernetes.client.Configuration()
    cfg.host = "http://127.0.0.1:9"
    client = kubernetes.client.ApiClient(cfg)
    flying = bound_by(client, lambda: math.inf, spent=lambda: "the 8 s after SIGINT (--interrupt-grace) are spent")
    assert isinstance(flying, InFlight) and flying.request == ""
    flying.cut()  # nothing in flight: nothing raised
    seen: list[str] = []

    def waiting(*_: object, **__: object) -> None:  # the signal lands while urllib3 waits for the answer
        seen.append(flying.request)
        flying.cut()

    client.rest_client.pool_manager.request = waiting  # type: ignore[method-assign]
    with pytest.raises(GraceSpent, match=r"^GET /api/v1/namespaces/ml/configmaps/x: still unanswered; the 8 s after "
                                         r"SIGINT \(--interrupt-grace\) are spent$"):
        kubernetes.client.CoreV1Api(client).read_namespaced_config_map("x", "ml", _request_timeout=10)
    assert seen == ["GET /api/v1/namespaces/ml/configmaps/x"] and flying.request == ""


def test_a_write_cut_unanswered_may_have_landed_and_one_not_sent_did_not() -> None:
    """Decision 128: the cut request was sent; had it been the stable-100% PUT, `rollback.failed` said
    `write_landed: no: the write was refused`, and the route may read stable 100% already."""
    from canary.kube import InFlight
    from canary.reconcile import write_landed

    flying = InFlight(lambda: "the 8 s after SIGINT (--interrupt-grace) are spent")
    flying.request = "PUT /apis/networking.istio.io/v1beta1/namespaces/ml/virtualservices/m0"
    with pytest.raises(GraceSpent) as got:
        flying.cut()
    assert write_landed(got.value).startswith("unknown: no answer came back")
    # one not sent reached nothing, and was not refused either (decision 131)
    assert write_landed(GraceSpent("PUT /x: not sent, the 8 s ...")) == "no: not sent, the grace after the signal is spent"
    # a read cut so changed nothing (review of 128: a cut GET was said to have maybe landed a write)
    flying.request = "GET /apis/networking.istio.io/v1beta1/namespaces/ml/virtualservices/m0"
    with pytest.raises(GraceSpent) as read:
        flying.cut()
    assert write_landed(read.value).startswith("no: ")


def test_a_write_refused_after_one_with_no_answer_may_have_landed() -> None:
    """Decision 131 (b), from the review. A stable-100% PUT sent after the signal got no answer (its timeout
    cut to the grace), and the router's retry was then refused as not sent: the page said `write_landed:
    no: not sent` though the first PUT may be in place. The refusal now names that write and is `sent`:
    `write_landed` says unknown. A write answered since clears it."""
    import kubernetes.client
    import urllib3.exceptions

    from canary.reconcile import write_landed

    cfg = kubernetes.client.Configuration()
    cfg.host = "http://127.0.0.1:9"
    client = kubernetes.client.ApiClient(cfg)
    until = [time.monotonic() + 600.0]  # signalled: a grace is running
    flying = bound_by(client, lambda: until[0], spent=lambda: "the grace is spent")

    def no_answer(*_: object, **__: object) -> None:
        until[0] = time.monotonic() - 1.0  # the grace ends while the PUT waits
        raise urllib3.exceptions.ReadTimeoutError(None, "/x", "read timed out")  # type: ignore[arg-type]

    client.rest_client.pool_manager.request = no_answer  # type: ignore[method-assign]
    core = kubernetes.client.CoreV1Api(client)
    body = {"metadata": {"name": "x"}}
    with pytest.raises(urllib3.exceptions.ReadTimeoutError):
        core.replace_namespaced_config_map("x", "ml", body)
    assert flying.unanswered == "PUT /api/v1/namespaces/ml/configmaps/x"
    with pytest.raises(GraceSpent) as got:
        core.replace_namespaced_config_map("x", "ml", body)  # the router's retry
    assert "not sent" in str(got.value) and "PUT /api/v1/namespaces/ml/configmaps/x before it had no answer" in str(got.value)
    assert write_landed(got.value).startswith("unknown")
    with pytest.raises(GraceSpent) as read:
        core.read_namespaced_config_map("x", "ml")
    assert write_landed(read.value).startswith("unknown")  # still: nothing was answered since


def _reserved_client() -> tuple[object, object, list[str]]:
    """A client bound as promote binds it (the route: VirtualService `m0` and DestinationRule `m0` in `ml`), a grace
    running, and every request that reaches the wire recorded (none is answered)."""
    import kubernetes.client

    cfg = kubernetes.client.Configuration()
    cfg.host = "http://127.0.0.1:9"
    client = kubernetes.client.ApiClient(cfg)
    flying = bound_by(client, lambda: time.monotonic() + 600.0, spent=lambda: "the grace is spent",
                      route=lambda path: path.endswith(("/virtualservices/m0", "/destinationrules/m0")),
                      kept=lambda: "kept for the route's write")
    sent: list[str] = []

    def wire(method: str, url: str, *_: object, **__: object) -> None:
        from urllib.parse import urlsplit

        import urllib3.exceptions

        sent.append(f"{method} {urlsplit(url).path}")
        raise urllib3.exceptions.ReadTimeoutError(None, url, "read timed out")  # type: ignore[arg-type]

    client.rest_client.pool_manager.request = wire  # type: ignore[attr-defined]
    return client, flying, sent


def test_after_the_signal_only_the_routes_requests_are_sent_until_its_write_lands() -> None:
    """Decision 407: once signalled, a request that is not the route's (the history ConfigMap, an Event) is refused
    unsent (GraceReserved, not sent, not a retry's kind), a read and a write of the route are sent, and a write of the
    route that is answered frees the rest. The generated methods name a path template and its parameters: the route's
    own requests are told by the path as sent (its credentials are not held either)."""
    import kubernetes.client
    import urllib3.exceptions

    from canary.errors import GraceReserved
    from canary.reconcile import write_landed

    client, flying, sent = _reserved_client()
    flying.signalled()  # nothing in flight: nothing raised
    core, custom = kubernetes.client.CoreV1Api(client), kubernetes.client.CustomObjectsApi(client)
    with pytest.raises(GraceReserved, match=r"^PATCH /api/v1/namespaces/ml/configmaps/h: not sent, kept for") as got:
        core.patch_namespaced_config_map("h", "ml", {"data": {}})
    assert write_landed(got.value).startswith("no: ") and not is_transient(got.value) and sent == []
    with pytest.raises(GraceReserved):
        core.create_namespaced_event("ml", {"metadata": {"generateName": "m0."}, "involvedObject": {}})
    assert sent == []
    for call in (lambda: custom.get_namespaced_custom_object("networking.istio.io", "v1beta1", "ml",
                                                             "virtualservices", "m0"),
                 lambda: custom.get_namespaced_custom_object("networking.istio.io", "v1beta1", "ml",
                                                             "destinationrules", "m0")):
        with pytest.raises(urllib3.exceptions.ReadTimeoutError):
            call()
    assert sent == ["GET /apis/networking.istio.io/v1beta1/namespaces/ml/virtualservices/m0",
                    "GET /apis/networking.istio.io/v1beta1/namespaces/ml/destinationrules/m0"]
    # the route's write answered: what is left of the grace is everyone's again
    client.rest_client.pool_manager.request = lambda *a, **k: _Answer()  # type: ignore[attr-defined]
    custom.replace_namespaced_custom_object("networking.istio.io", "v1beta1", "ml", "virtualservices", "m0", {})
    assert not flying.reserved


class _Answer:
    status, reason, data = 200, "OK", b"{}"

    def getheaders(self) -> dict[str, str]:
        return {"content-type": "application/json"}

    def getheader(self, name: str, default: object = None) -> object:
        return self.getheaders().get(name.lower(), default)

    @property
    def headers(self) -> dict[str, str]:
        return self.getheaders()


def test_the_signal_abandons_a_wait_that_is_not_a_write_of_the_route() -> None:
    """Decision 407: the request the main thread waits on at the signal is abandoned there (GraceReserved raised
    from the handler) unless it is a write of the route, which may land and keeps the grace (`cut` at its end)."""
    from canary.errors import GraceReserved
    from canary.reconcile import write_landed

    _client, flying, _sent = _reserved_client()
    for waiting, sent in (("PATCH /api/v1/namespaces/ml/configmaps/h", True),
                          ("POST /api/v1/namespaces/ml/events", True),
                          ("GET /apis/networking.istio.io/v1beta1/namespaces/ml/virtualservices/m0", False)):
        flying.reserved, flying.request = False, waiting
        with pytest.raises(GraceReserved, match=rf"^{waiting}: abandoned at the signal, kept for") as got:
            flying.signalled()
        assert flying.request == "" and flying.reserved and getattr(got.value, "sent") is sent
        assert write_landed(got.value).startswith("unknown" if sent else "no: ")
    flying.reserved, flying.request = False, "PUT /apis/networking.istio.io/v1beta1/namespaces/ml/virtualservices/m0"
    flying.signalled()  # a write of the route: kept
    assert flying.request.startswith("PUT ") and flying.reserved
    # a credential fetch (an exec plugin that hangs) for a request not the route's: abandoned too
    flying.request, flying.reserved, flying.fetching = "", False, "PATCH /api/v1/namespaces/ml/configmaps/h"
    with pytest.raises(GraceReserved, match="its credentials were still being fetched") as fetch:
        flying.signalled()
    assert getattr(fetch.value, "sent") is False and flying.fetching == ""


def test_a_history_write_with_no_answer_says_nothing_of_the_routes_write() -> None:
    """Decision 407: after the signal, a ConfigMap PATCH that timed out made the route's next refused request say
    "PATCH .../configmaps/...-canary-history before it had no answer and may have been applied" and be `sent`:
    `rollback.failed` paged `write_landed: unknown` for a route nothing had written. Only a write of the route
    counts now."""
    import kubernetes.client
    import urllib3.exceptions

    from canary.reconcile import write_landed

    cfg = kubernetes.client.Configuration()
    cfg.host = "http://127.0.0.1:9"
    client = kubernetes.client.ApiClient(cfg)
    until = [time.monotonic() + 600.0]
    bound_by(client, lambda: until[0], spent=lambda: "the grace is spent",
             route=lambda path: path.endswith("/virtualservices/m0"))

    def no_answer(*_: object, **__: object) -> None:
        until[0] = time.monotonic() - 1.0
        raise urllib3.exceptions.ReadTimeoutError(None, "/x", "read timed out")  # type: ignore[arg-type]

    client.rest_client.pool_manager.request = no_answer  # type: ignore[attr-defined]
    with pytest.raises(urllib3.exceptions.ReadTimeoutError):
        kubernetes.client.CoreV1Api(client).patch_namespaced_config_map("h", "ml", {"data": {}})
    with pytest.raises(GraceSpent) as got:
        kubernetes.client.CustomObjectsApi(client).replace_namespaced_custom_object(
            "networking.istio.io", "v1beta1", "ml", "virtualservices", "m0", {})
    assert "configmaps" not in str(got.value) and write_landed(got.value).startswith("no: not sent"), str(got.value)


def test_a_retry_wait_of_a_held_request_ends_at_the_signal() -> None:
    """Decision 407: a wait between tries (a Retry-After, the backoff) of a request not the route's ends when the
    signal holds its next try back; one of the route's is waited as before (decision 395)."""
    from canary.kube import retry_sleep

    client, flying, _sent = _reserved_client()
    naps: list[float] = []
    sleep = retry_sleep(client, naps.append)
    flying.last = "GET /api/v1/namespaces/ml/pods"
    sleep(1.0)
    assert naps == [0.25, 0.25, 0.25, 0.25]  # not signalled: the whole wait
    naps.clear()
    flying.reserved = True
    sleep(1.0)
    assert naps == []
    flying.last = "GET /apis/networking.istio.io/v1beta1/namespaces/ml/virtualservices/m0"
    sleep(1.0)
    assert naps == [0.25, 0.25, 0.25, 0.25]


@pytest.mark.parametrize("value", ["abc", "0", "-1", "inf", "nan"])
def test_a_bad_exec_plugin_timeout_is_a_config_error_naming_the_variable(value: str,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """`$CANARY_EXEC_PLUGIN_TIMEOUT` (decision 426) that is not seconds above 0: exit 2 naming it, before anything
    is loaded or sent (a kubeconfig that does not exist is not even read)."""
    from canary import kube
    from canary.errors import ConfigError

    monkeypatch.setenv("CANARY_EXEC_PLUGIN_TIMEOUT", value)
    with pytest.raises(ConfigError, match=r"\$CANARY_EXEC_PLUGIN_TIMEOUT=.*not a number of seconds above 0"):
        kube.api_client(kubeconfig="/nonexistent/kubeconfig")


def test_run_plugin_runs_the_plugin_of_a_kubernetes_client_whose_exec_provider_has_no_shell(tmp_path: object) -> None:
    """pyproject allows kubernetes>=29; its `ExecProvider.shell` came with 32.0.1 (kubernetes-client/python#2338;
    29-31 run the plugin with no shell). `run_plugin` read `provider.shell`: on those clients every exec plugin's
    run was an AttributeError, which the loader logs and goes on with no credentials at all (every request 401
    or anonymous). A provider as the 29-31 clients build it (no `shell`) runs its plugin as the client's own
    `run` does."""
    import os
    from pathlib import Path

    from canary.kube_credentials import run_plugin
    from tests.support.kube_tokens import ExecTokens

    tokens = ExecTokens(Path(str(tmp_path)) / "plugin")

    class ClientV31ExecProvider:  # kubernetes 29-31's ExecProvider after __init__: these attributes, no `shell`
        def __init__(self) -> None:
            self.api_version = "client.authentication.k8s.io/v1"
            self.args, self.env, self.cluster, self.cwd = [str(tokens.plugin)], os.environ.copy(), None, None

    assert run_plugin(ClientV31ExecProvider()) == {"token": "tok-1"}


@pytest.mark.parametrize(("path", "route"), [
    ("/apis/networking.istio.io/v1/namespaces/ml/virtualservices/rec-model", True),  # the route's read and write
    ("/apis/networking.istio.io/v1beta1/namespaces/ml/destinationrules/rec-model", True),
    ("/apis/networking.istio.io/v1/namespaces/virtualservices/virtualservices/x", True),
    ("/k8s/clusters/c-m-4x2/apis/networking.istio.io/v1/namespaces/ml/virtualservices/rec-model", True),  # Rancher
    ("/apis/networking.istio.io/v1/namespaces/ml/virtualservices", False),  # a LIST (an informer, a prefetch)
    ("/apis/networking.istio.io/v1/virtualservices", False),
    ("/api/v1/namespaces/virtualservices/configmaps", False),  # a namespace named so: not the route's
    ("/api/v1/namespaces/destinationrules/pods/p", False),
    ("/api/v1/namespaces/ml/configmaps/virtualservices", False),
    ("/apis/other.mesh.io/v1/namespaces/ml/virtualservices/rec-model", False),  # another group's kind
])
def test_a_request_of_the_route_is_a_virtualservice_or_destinationrule_by_name(path: str, route: bool) -> None:
    """`is_route_request` (decision 428: never held back by the limit on plugin runs) names the route's own
    objects by their path's segments, never a request of a namespace that happens to be named `virtualservices`
    or `destinationrules` (a substring match let every request there bypass the limit; decision 465)."""
    from canary.kube_credentials import is_route_request

    assert is_route_request(path) is route


def test_a_plugin_run_still_waited_on_by_a_thread_at_exit_is_killed_with_its_helper(tmp_path: object) -> None:
    """A plugin run by a thread the process does not wait for (a look's worker, a daemon thread whose request the
    signal abandoned) hangs; the process exits. Started in a session of its own, the plugin and the helper it
    started outlived it (a suite run's `test_an_exec_plugin_that_hangs_after_the_signal_ends_within_the_grace_...`
    found one of two hung runs alive). Now they are killed at exit (decision 482). A real process: it exits once
    the plugin says it hangs (its pids written), nothing timed."""
    import subprocess
    import sys
    from pathlib import Path

    from tests.support.kube_tokens import ExecTokens, all_dead, dead

    state = Path(str(tmp_path)) / "plugin"
    tokens = ExecTokens(state)
    tokens.hang()
    script = f"""
import os, sys, threading, time
from pathlib import Path
from canary.kube_credentials import run_plugin

class Provider:  # an ExecProvider after __init__
    api_version, cluster, cwd, shell = "client.authentication.k8s.io/v1", None, None, False
    args, env = [{str(tokens.plugin)!r}], dict(os.environ)

threading.Thread(target=run_plugin, args=(Provider(),), daemon=True).start()
hung = Path({str(state / "hung")!r})
while not hung.exists() or len(hung.read_text().split()) < 2:  # the plugin's pid and its helper's
    time.sleep(0.02)
"""
    try:
        done = subprocess.run([sys.executable, "-c", script], cwd=Path(__file__).resolve().parents[2], timeout=120,
                              capture_output=True, text=True)
        assert done.returncode == 0, done.stderr[-2000:]
        pids = tokens.hung_pids()
        assert len(pids) == 2 and all_dead(pids), [(p, dead(p)) for p in pids]
    finally:
        tokens.end_hung()


def test_a_plugin_run_given_up_on_is_killed_with_a_helper_that_left_its_process_group(
        tmp_path: object, monkeypatch: pytest.MonkeyPatch) -> None:
    """A plugin given up on is killed with its process group (decision 427), but a helper it started in a session
    of its own (`setsid curl ...`, a Python helper's `start_new_session`) is in no group of the plugin's: it outlived
    the kill and kept the run's stdout open. Its descendants outside the group are now found (/proc), stopped, and
    killed with it (decision 490). The plugin hangs; the run is ended as at exit (`_end_live_plugins`, the kill the
    bound's shares); nothing timed."""
    import threading
    from pathlib import Path

    from canary import kube_credentials
    from tests.support.kube_tokens import ExecTokens, all_dead, dead

    monkeypatch.setattr(kube_credentials, "_ENDING", False)  # the at-exit kill below ends no later test's runs
    state = Path(str(tmp_path)) / "plugin"
    tokens = ExecTokens(state)
    tokens.hang()
    tokens.detach_helper()

    class Provider:  # an ExecProvider after __init__
        api_version, cluster, cwd, shell = "client.authentication.k8s.io/v1", None, None, False
        args, env = [str(tokens.plugin)], dict(__import__("os").environ)

    ended: list[BaseException] = []

    def run() -> None:
        try:
            kube_credentials.run_plugin(Provider())
        except Exception as exc:  # noqa: BLE001 - the run killed (its pipes closed under it)
            ended.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    hung = state / "hung"
    try:
        for _ in range(6000):  # the plugin's pid and its helper's written: it hangs
            if hung.exists() and len(hung.read_text().split()) >= 2:
                break
            thread.join(0.02)
        pids = tokens.hung_pids()
        assert len(pids) == 2 and __import__("os").getpgid(pids[1]) != pids[0]  # the helper left the group
        kube_credentials._end_live_plugins()
        assert all_dead(pids), [(p, dead(p)) for p in pids]
        thread.join(60)
        assert not thread.is_alive() and ended, ended  # its run ended (failed), no longer held by the helper's pipe
    finally:
        tokens.end_hung()



def test_a_plugin_run_already_reaped_has_no_descendants_searched_under_its_pid() -> None:
    """The search of decision 490 starts at the plugin's pid: once the run is reaped (`returncode` set: the at-exit
    kill of a run whose thread was answered meanwhile, a signal's exception raised as `communicate` reaped it) that
    pid may be another process's, and the search stopped and killed that one's children outside its group. Here
    the pid of a reaped run names another process (the pid reused) with a child in a session of its own: the kill
    of the run leaves it alone (decision 506). Nothing timed: the child's end is read from its parent's wait, the
    first fatal signal sent deciding it (SIGKILL by the search, else the SIGTERM sent after)."""
    import os
    import signal
    import subprocess
    import sys

    from canary import kube_credentials

    other = subprocess.Popen([sys.executable, "-c", "import subprocess\n"
                              "c = subprocess.Popen(['sleep', '600'], start_new_session=True)\n"
                              "print(c.pid, flush=True)\nprint(c.wait(), flush=True)"],
                             stdout=subprocess.PIPE, text=True)
    child = 0
    try:
        child = int(other.stdout.readline())
        assert os.getpgid(child) != other.pid and os.getpgid(other.pid) != other.pid  # no group named other.pid
        run = subprocess.Popen(["true"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
        run.wait()
        run.pid = other.pid  # the reaped run's pid, another process's by now
        kube_credentials._end_plugin(run, False)
        for sig in (signal.SIGTERM, signal.SIGCONT):  # SIGCONT for a child the search stopped; gone once reaped
            try:
                os.kill(child, sig)
            except ProcessLookupError:
                pass
        assert other.stdout.readline().strip() == str(-signal.SIGTERM)  # not -9: the search did not kill it
    finally:
        if child:
            try:
                os.kill(child, signal.SIGKILL)
            except ProcessLookupError:
                pass
        other.kill()
        other.wait()


def test_no_plugin_is_started_once_the_at_exit_kill_has_run(tmp_path: object, monkeypatch: pytest.MonkeyPatch) -> None:
    """At exit the runs in flight are killed (`_end_live_plugins`, decision 427), but a daemon thread (a look's
    worker whose request runs the plugin for a token past its expiry) went on starting runs after that kill, or
    noted one started as it copied the runs in flight after the copy: the plugin and its helper outlived the process
    (seen under load in test_kube_credentials's hung-plugin tests). Now a run is started and noted under the lock,
    and none is started once the kill has run: it fails at once, the plugin never run (decision 507)."""
    from pathlib import Path

    from kubernetes.config.config_exception import ConfigException

    from canary import kube_credentials
    from tests.support.kube_tokens import ExecTokens

    monkeypatch.setattr(kube_credentials, "_ENDING", False, raising=False)
    tokens = ExecTokens(Path(str(tmp_path)) / "plugin")

    class Provider:  # an ExecProvider after __init__
        api_version, cluster, cwd, shell = "client.authentication.k8s.io/v1", None, None, False
        args, env = [str(tokens.plugin)], dict(__import__("os").environ)

    assert kube_credentials.run_plugin(Provider())["token"] == "tok-1"  # the plugin works
    kube_credentials._end_live_plugins()
    with pytest.raises(ConfigException, match="not run: this process is exiting"):
        kube_credentials.run_plugin(Provider())
    assert tokens.issued() == ["tok-1"], tokens.issued()


@pytest.mark.parametrize("landing", ["in-popen", "after-launch", "in-popen-then-in-the-give-up"])
def test_a_signals_exception_landing_while_the_plugin_starts_leaves_no_run_unkilled(
        tmp_path: object, monkeypatch: pytest.MonkeyPatch, landing: str) -> None:
    """A signal's handler raises in the main thread between any two of its bytecodes: SIGTERM abandons a credential
    fetch that is not the route's (an Event's POST). Landing inside `subprocess.Popen` (its wait for the child's exec)
    or before the run was noted, it left a plugin started that nobody knew of: the hung plugin and its helper
    outlived promote's exit 6 (test_kube_credentials's hung-plugin test, 2 runs in 13 under load; decision 514).
    `in-popen`: the signal is sent to the main thread once the plugin runs (it has said its pids), while the run is
    being started. `after-launch`: it lands just after the thread that starts the run was launched (inside a
    `threading.Thread.start()`, that failed the thread's bootstrap, "Exception ignored in thread started by").
    `in-popen-then-in-the-give-up`: as `in-popen`, then a second signal while the main thread's `except` waits for
    the start to be over (the grace's cut after SIGTERM's exception): that wait marked the start given up on only
    once it ended, so the run the start then noted was left to the at-exit kill (decision 525).
    Either way the exception goes on, and no plugin started is left alive, no thread failed. The bounds are reached
    only by the fault."""
    import _thread
    import linecache
    import signal
    import subprocess
    import sys
    import threading
    from pathlib import Path

    from canary import kube_credentials
    from tests.support.kube_tokens import ExecTokens, all_dead, dead

    monkeypatch.setattr(kube_credentials, "_ENDING", False, raising=False)
    monkeypatch.setattr(kube_credentials, "GATE_WAIT_S", 30.0)  # the give-up's wait ends with the start, not its bound
    state = Path(str(tmp_path)) / "plugin"
    tokens = ExecTokens(state)
    tokens.hang()
    hung = state / "hung"
    real_popen, real_launch = subprocess.Popen, _thread.start_new_thread
    started: list[subprocess.Popen[str]] = []
    failed: list[BaseException] = []
    finished = threading.Event()

    class Cut(Exception):
        pass

    def cut(_signum: int, _frame: object) -> None:
        raise Cut("the grace's cut")

    def land() -> None:  # the handler runs in the main thread at its next bytecode (at once if it is waiting)
        signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGUSR1)
        for _ in range(1000):
            pass

    def giving_up() -> bool:  # the main thread waits in run_plugin's `except` for the start (here) to be over
        frame = sys._current_frames().get(threading.main_thread().ident or 0)
        return frame is not None and frame.f_code is kube_credentials.run_plugin.__code__ and \
            "gate.acquire(" in linecache.getline(frame.f_code.co_filename, frame.f_lineno)

    def popen(*args: object, **kw: object) -> object:
        process = real_popen(*args, **kw)
        started.append(process)
        if landing.startswith("in-popen"):
            while not hung.exists() or len(hung.read_text().split()) < 2:  # the plugin runs: its pids said
                if process.poll() is not None:
                    break
                threading.Event().wait(0.02)
            land()
        if landing == "in-popen-then-in-the-give-up":
            for _ in range(1500):  # the bound is reached only by the fault
                if giving_up():
                    break
                threading.Event().wait(0.02)
            land()
        return process

    def launch(fn: object, args: tuple[object, ...], *rest: object) -> int:
        def run() -> None:
            try:
                fn(*args)  # type: ignore[operator]
            except BaseException as exc:
                failed.append(exc)
                raise
            finally:
                finished.set()

        ident = real_launch(run, (), *rest)
        if landing == "after-launch":
            land()
        return ident

    class Provider:  # an ExecProvider after __init__
        api_version, cluster, cwd, shell = "client.authentication.k8s.io/v1", None, None, False
        args, env = [str(tokens.plugin)], dict(__import__("os").environ)

    monkeypatch.setattr(subprocess, "Popen", popen)
    monkeypatch.setattr(_thread, "start_new_thread", launch)
    monkeypatch.setattr(threading, "_start_new_thread", launch)  # a `threading.Thread` launches through it
    before = signal.signal(signal.SIGUSR1, cut)
    try:
        with pytest.raises(Cut):
            kube_credentials.run_plugin(Provider())
        assert finished.wait(30) and not failed, failed
        pids = [p.pid for p in started] + tokens.hung_pids()
        assert all_dead(pids), [(p, dead(p)) for p in pids]
        assert not kube_credentials._LIVE, kube_credentials._LIVE  # killed, then forgotten
    finally:
        signal.signal(signal.SIGUSR1, before)
        tokens.end_hung()
        for process in started:
            process.kill()
            process.wait()


def test_nothing_where_a_signals_exception_can_land_comes_before_the_give_up_is_marked() -> None:
    """Decision 525: `run_plugin`'s `except` marks the start given up on first (the start then kills the run it
    started itself), since a second signal's exception landing before the mark left the run to the at-exit kill.
    CPython runs a signal's handler only where its eval loop checks for pending work (after a call, at a
    function's entry, at a backward jump), so the mark is whole when the `except`'s instructions up to it include
    none. Pinned in two halves: `run_plugin`'s instructions from the `except`'s start to its mark are those of
    `probe` below (before decision 525 a call came first: the wait for `gate`); and on this interpreter a handler
    already pending as `probe`'s `except` begins runs only after the mark. The signal is tripped in another
    thread while the main thread waits in `recv` (which goes on waiting), and the connection reset then raises
    from that C call: a real SIGUSR2, a real TCP reset on 127.0.0.1, nothing timed."""
    import dis
    import signal
    import socket
    import struct
    import sys
    import threading

    from canary import kube_credentials

    def probe(conn: socket.socket, box: dict[str, object], gate: threading.Lock) -> None:
        import subprocess

        try:
            conn.recv(1)
        except subprocess.TimeoutExpired:
            raise
        except BaseException:
            box["cancelled"] = True
            held = gate.acquire(timeout=30)
            if held:
                gate.release()
            raise

    def marking(fn: object) -> list[str]:
        """The instructions run from the start of `fn`'s `except` to its mark (`box["cancelled"]`), for an exception
        that is no TimeoutExpired: the other clauses' class tests, then the mark. (EXTENDED_ARG is no instruction of
        its own: a prefix of the next one's argument.)"""
        ins = [x for x in dis.get_instructions(fn) if x.opname != "EXTENDED_ARG"]  # type: ignore[arg-type]
        at = {x.offset: i for i, x in enumerate(ins)}
        mark = next(i for i, x in enumerate(ins) if x.opname == "STORE_SUBSCR" and ins[i - 1].argval == "cancelled")
        i, tested, path = max(i for i in range(mark) if ins[i].opname == "PUSH_EXC_INFO"), "", []
        while True:
            x = ins[i]
            path.append(x.opname if x.opname.startswith("POP_JUMP") else f"{x.opname} {x.argval}")
            if i == mark:
                return path
            tested = x.argval if x.opname.startswith("LOAD") else tested
            i = at[x.argval] if x.opname.startswith("POP_JUMP") and tested != "BaseException" else i + 1

    assert marking(kube_credentials.run_plugin) == marking(probe), marking(kube_credentials.run_plugin)

    class Cut(Exception):
        pass

    box: dict[str, object] = {}
    seen: list[dict[str, object]] = []

    def handler(_signum: int, _frame: object) -> None:
        seen.append(dict(box))
        raise Cut("the grace's cut")

    main = threading.main_thread().ident
    call = next(x.offset for x in dis.get_instructions(probe) if x.opname == "CALL")  # conn.recv(1)

    def reset() -> None:
        for _ in range(30000):  # until the main thread waits in `recv` (the bound is reached only by the fault)
            frame = sys._current_frames().get(main or 0)
            if frame is not None and frame.f_code is probe.__code__ and frame.f_lasti == call:
                break
            threading.Event().wait(0.001)
        signal.pthread_kill(threading.get_ident(), signal.SIGUSR2)  # this thread's: the main thread's wait goes on
        peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        peer.close()  # a reset: `recv` raises

    with socket.create_server(("127.0.0.1", 0)) as server, socket.create_connection(server.getsockname()) as conn:
        peer = server.accept()[0]
        before = signal.signal(signal.SIGUSR2, handler)
        resetter = threading.Thread(target=reset)
        try:
            resetter.start()
            with pytest.raises(Cut):
                probe(conn, box, threading.Lock())
        finally:
            resetter.join()
            signal.signal(signal.SIGUSR2, before)
    assert seen == [{"cancelled": True}], seen


@pytest.mark.parametrize("text, state", [("", ""), ("884 (py (x)) Z 1 884", "Z"), ("884 (sleep) S 1 884", "S")])
def test_a_process_being_reaped_reads_as_gone_not_as_an_error(monkeypatch: pytest.MonkeyPatch, text: str,
                                                              state: str) -> None:
    """A CI run read /proc/<pid>/stat of a killed helper while it was reaped: the text was empty, and the tests'
    `dead` raised IndexError instead of answering "gone". The empty text, ESRCH and no file are all gone."""
    import builtins
    import io

    from tests.support.kube_tokens import dead, proc_state

    monkeypatch.setattr(builtins, "open", lambda *a, **k: io.StringIO(text))
    assert proc_state(884) == state
    assert dead(884) is (state in ("", "Z"))

    def refused(*a: object, **k: object) -> io.StringIO:
        raise ProcessLookupError(3, "No such process")

    monkeypatch.setattr(builtins, "open", refused)
    assert proc_state(884) == "" and dead(884)
