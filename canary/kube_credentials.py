"""Kubernetes credentials that expire or rotate while a rollout runs: fetched again on a 401, as client-go does.

The kubernetes client (v37) renews a token only when its exec plugin reported an `expirationTimestamp` that has
passed, re-reads a pod's service-account token once a minute, never re-reads a kubeconfig's `tokenFile`, and
never answers a 401 by asking again. A CI job's token revoked or rotated early, a plugin's token that reports no
expiry, a token file rotated on disk: each was sent until the process ended, every request 401 (decision 374).
`renew_on_401` (installed by `kube.api_client` on every client it builds) loads the configuration again on a 401
and sends the request once more with the new token (or client certificate, decision 429), at most once per
`RENEW_EVERY_S` after one that did not help but for the route's own requests (decision 428), which also wait for
another thread's renewal at most `ROUTE_WAIT_S` before renewing by themselves (decision 488). A client certificate
refused in the TLS handshake (a proxy verifying it: an alert, no 401) is renewed the same way (decision 489).
`run_plugin` runs exec plugins for the loader, bounded and killed with their process group (and the helpers that
left it) when given up on (decisions 426, 427, 490).
"""

from __future__ import annotations

import _thread
import atexit
import contextvars
import os
import threading
from typing import Any, Callable

from canary.errors import ConfigError
from canary.kube_files import follow_ca
from canary.logs import get as get_logger

# how long a kubeconfig's exec plugin may take to answer before it is killed (its process group) and its run failed:
# client-go and the kubernetes client wait for ever, and a plugin that hangs with no signal pending (`aws eks
# get-token` with no route to STS, kubelogin waiting for a browser nobody opens) held a promote's tick, or a
# controller's thread, for as long as it hung (decision 426). A plugin answers in a second or two (a token service's
# round trip); 30 s is three of the API requests' own 10 s timeouts, room for a cold token service, and short enough
# that a rollout ends (stable 100% where the route can still be written) while a human still watches the job
PLUGIN_TIMEOUT_S = 30.0
PLUGIN_TIMEOUT_ENV = "CANARY_EXEC_PLUGIN_TIMEOUT"
# after a renewal that did not help (no credentials had, or the new ones refused too) or a plugin run that hung, the
# plugin is not run again for this long but for a request of the route (decision 428): a server answering 401 to
# everything ran it on every request of every thread
RENEW_EVERY_S = 10.0
# a request of the route refused 401 while another thread renews (its exec plugin running) waits this long for that
# renewal, then renews by itself (its own plugin run) rather than queue behind it: renewals are one at a time, and
# the stable-100% write waited for another thread's hung run, up to the plugin's whole bound (decision 488). A plugin
# answers in a second or two: the usual case (a token rotated, both refused together) still takes the other's token
ROUTE_WAIT_S = 2.0
# a route's objects by name: a request of one (the stable-100% write, the read before it) is never held back by the
# limit (a LIST or watch of them all has no name: `.../virtualservices` or `...?watch`); `is_route_request`
ROUTE_GROUP, ROUTE_PLURALS = "networking.istio.io", ("virtualservices", "destinationrules")
# whether the renewal this thread runs is for a request of the route's (`is_route_request`), refused 401
_ROUTE_REQUEST: contextvars.ContextVar[bool] = contextvars.ContextVar("canary_route_request", default=False)


def plugin_timeout_s() -> float:
    """`PLUGIN_TIMEOUT_S`, or `$CANARY_EXEC_PLUGIN_TIMEOUT` (seconds, > 0) when set; ConfigError naming it otherwise."""
    raw = os.environ.get(PLUGIN_TIMEOUT_ENV, "").strip()
    if not raw:
        return PLUGIN_TIMEOUT_S
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise ConfigError(f"${PLUGIN_TIMEOUT_ENV}={raw!r}: not a number of seconds above 0")
    return value


def is_route_request(path: str) -> bool:
    """Whether a request of `path` is of one of a route's objects (a VirtualService or DestinationRule by name: the
    stable-100% write, and the read before it), never held back by the limit on plugin runs. A LIST or watch of
    them all (a controller's informer) is not."""
    # [<the server URL's own path: Rancher's /k8s/clusters/<id>>]/apis/networking.istio.io/<version>/namespaces/
    # <namespace>/<plural>/<name>, read by its last segments: a namespace named `virtualservices` is no route (a
    # substring match let its every request bypass the limit; decision 465)
    parts = path.strip("/").split("/")[-7:]
    return (len(parts) == 7 and parts[:2] == ["apis", ROUTE_GROUP] and parts[3] == "namespaces"
            and parts[5] in ROUTE_PLURALS)


class Renewal:
    """Credentials fetched again after a 401, as client-go does: the kubernetes client renews a token only when
    its exec plugin gave an `expirationTimestamp` that has passed (and re-reads the pod's service-account
    token each minute); a plugin's token without one, a token revoked or rotated before it (a CI job's
    identity, `kubelogin`), and a kubeconfig's `tokenFile` rotated on disk (a pod's projected token) were
    used until the process ended, every request answered 401. `renewed(used)` loads the configuration again
    (running the exec plugin, reading the token files) and makes the client send its token from then on: the
    token to send in place of `used`, or None when there is no other (`failure` then says why when loading
    failed, e.g. the plugin's own error; "" for a token that is simply the same again). One renewal at a time;
    a request that failed with a token another thread has already replaced gets the new one without running
    the plugin again. Decision 374."""

    def __init__(self, cfg: Any, load: Callable[[Any], None], pool: Any = None) -> None:
        import threading

        self.cfg, self.load, self.lock = cfg, load, threading.Lock()  # one renewal (plugin run) at a time
        # what a renewal reads and sets, kept apart from its plugin run: a route's request that did not queue behind
        # another thread's run (`ROUTE_WAIT_S`) runs its own beside it (decision 488)
        self.state = threading.Lock()
        self.pool = pool  # the client's urllib3 pool manager: a client certificate renewed is sent on new connections
        self.failure = ""  # why the last renewal gave no token ("" once one did)
        self.renewals = 0  # renewals that gave a token (or client certificate) other than the refused one
        self.unloaded = ""  # what the loader said as the process first loaded the configuration (a failed plugin)
        # when the last renewal did not help (no credentials had, or its new ones refused too), and what it came to
        # (the 401's note): until RENEW_EVERY_S after it, a 401 does not load the configuration again (decision 428)
        self.futile_at: float | None = None
        self.note = ""
        # the token the last renewal gave, until a request sent with it is answered other than 401: a 401 to it
        # meanwhile (another thread's request, while the renewing one's answer is pending) is that renewal not
        # helping, not a reason to run the plugin again (decision 464)
        self.unproven: str | None = None
        # client certificates: how many times this client's was renewed (a request sent before the last renewal is
        # sent again with the new one), and the digest of the files' content its connections were made with
        self.certs, self.cert_digest = 0, _digest(cfg.cert_file, cfg.key_file)

    def renewed(self, used: str | None, refused: str = "", *, certs: int | None = None,
                urgent: bool = False) -> str | None:
        """`refused`: the request answered 401 ("GET /api/v1/..."), for the log lines. `certs`: `self.certs` when the
        request was sent. `urgent`: a request of the route, never held back by the limit, nor queued behind another
        thread's renewal for longer than `ROUTE_WAIT_S` (decision 488).
        Returns the token to send, `used` itself (or "" when none was) when a new client certificate is to be sent
        instead (decision 429), or None."""
        import time

        if not urgent:
            self.lock.acquire()
            queued = True
        elif not (queued := self.lock.acquire(timeout=ROUTE_WAIT_S)):
            get_logger().warning("kube.credentials_renewal_unqueued", refused=refused, waited_s=ROUTE_WAIT_S,
                                 hint="another thread's renewal of the credentials (its exec plugin run) had not "
                                      "ended: the route's request renews by itself rather than wait for it (up to "
                                      f"${PLUGIN_TIMEOUT_ENV})")
        try:
            with self.state:
                current = _trimmed(self.cfg.api_key.get("BearerToken"))
                if current and current != used:
                    return current
                if certs is not None and certs != self.certs:  # another thread renewed the client certificate since
                    return used or ""
                if not urgent and used and used == self.unproven:  # the token just renewed is refused too
                    self.futile(REFUSED_AGAIN)
                if not urgent and self.futile_at is not None and time.monotonic() - self.futile_at < RENEW_EVERY_S:
                    return None
            return self._load_and_take(used, refused, certs)
        finally:
            if queued:
                self.lock.release()

    def _load_and_take(self, used: str | None, refused: str, certs: int | None) -> str | None:
        """Load the configuration again (the plugin run; not under `state`: a route's request not queued may run
        one beside another thread's) and take what it gives, under `state`."""
        import kubernetes.client

        fresh = kubernetes.client.Configuration()
        try:
            # a plugin cut by a signal's grace (`kube.InFlight.cut`), which the loader caught and logged, is raised
            # again there: the request ends so (GraceSpent, not sent), not as credentials the configuration cannot
            # give (`kube.credentials_unrenewed`, "mend the kubeconfig's exec plugin", said of a plugin that works)
            errors = load_noting(self.load, fresh)
        except ConfigError as exc:
            errors, failed = [], str(exc)
        else:
            failed = None
        with self.state:
            token = _trimmed(fresh.api_key.get("BearerToken")) if failed is None else None
            if not token:
                # the route's request renewed beside this one meanwhile (decision 488): its credentials are had
                current = _trimmed(self.cfg.api_key.get("BearerToken"))
                if current and current != used:
                    return current
                if certs is not None and certs != self.certs:
                    return used or ""
            if failed is not None:
                return self._failed(failed, refused)
            if not token and self._new_certificate(fresh):
                self.failure = ""
                self.renewals += 1
                get_logger().info("kube.credentials_renewed", refused=refused, renewals=self.renewals)
                return used or ""
            if not token:  # "" said: no token to renew (client certificates, none at all)
                return self._failed("; ".join(errors), refused)
            self.failure = ""
            if token == used:  # a static token, or a plugin that cached the refused one: nothing else to send
                self.futile("")
                return None
            # the old loader's hook would put the refused token back before every request: the new loader's owns it
            self.cfg.api_key["BearerToken"] = token
            self.unproven = token
            self.cfg.refresh_api_key_hook = fresh.refresh_api_key_hook
            self.renewals += 1
            get_logger().info("kube.credentials_renewed", refused=refused, renewals=self.renewals)
            return token

    def _new_certificate(self, fresh: Any) -> bool:
        """Whether `fresh` (the configuration loaded again) gives a client certificate other than the one sent: an exec
        plugin's `clientCertificateData`/`clientKeyData` (the loader writes each to a file named by its content). If
        so it is this client's from now on: the pool's new connections present it, the ones open (TLS sessions
        made with the refused one) are closed. The kubernetes client ran such a plugin once and sent its certificate
        until the process ended, past its expiry, every request 401 (decision 429). The same for a kubeconfig's
        `client-certificate`/`client-key` files rotated on disk (cert-manager, a Vault agent): same paths, new
        content, which open connections never read again (client-go reloads such files)."""
        pair = (getattr(fresh, "cert_file", None), getattr(fresh, "key_file", None))
        digest = _digest(*pair)
        if not pair[0] or not pair[1] or (pair == (self.cfg.cert_file, self.cfg.key_file) and digest == self.cert_digest):
            return False
        self.cfg.cert_file, self.cfg.key_file = pair
        self.certs, self.cert_digest = self.certs + 1, digest
        if self.pool is not None:
            self.pool.connection_pool_kw["cert_file"], self.pool.connection_pool_kw["key_file"] = pair
            self.pool.clear()
        return True

    def futile(self, note: str) -> None:
        """The renewal did not help (`note`: why): the next RENEW_EVERY_S of 401s do not load the configuration again."""
        import time

        self.futile_at, self.note = time.monotonic(), note

    def _failed(self, why: str, refused: str) -> None:
        """No new token: `why` kept for `translate`, and said once per distinct reason (every request of a
        controller whose plugin fails gets here)."""
        self.futile(f"new ones could not be had: {why}" if why else "")
        if why and why != self.failure:
            get_logger().warning("kube.credentials_unrenewed", refused=refused, error=why,
                                 hint="the API server refuses this process's credentials and the configuration "
                                      "gives no others: mend the kubeconfig's exec plugin or token file (or the "
                                      "pod's service account); each request answered 401 tries again")
        self.failure = why


def _plugin_errors() -> Any:
    """A logging handler keeping (`.errors`) what the kubernetes config loader logs as errors on the root
    logger: a failed exec plugin's exit status and stderr, which the loader logs and goes on without a token."""
    import logging

    class PluginErrors(logging.Handler):
        def __init__(self) -> None:
            super().__init__(logging.ERROR)
            self.errors: list[str] = []
            self.cut: BaseException | None = None  # the grace's cut, if that is what the loader caught
            # this thread's load only: a route's renewal may run beside another thread's (decision 488), whose
            # plugin's error is not this one's
            self.thread = threading.get_ident()

        def emit(self, record: logging.LogRecord) -> None:
            import sys

            from canary.errors import GraceSpent

            if record.name == "root" and "kubernetes" in (record.pathname or "") and record.thread == self.thread:
                self.errors.append(record.getMessage())
                caught = sys.exc_info()[1]  # the loader logs in its `except Exception` around the plugin
                if isinstance(caught, GraceSpent):
                    self.cut = caught

    return PluginErrors()


def load_noting(load: Callable[[Any], None], cfg: Any) -> list[str]:
    """`load(cfg)`, and what the kubernetes config loader logged as errors meanwhile: a failed exec plugin's exit
    status and stderr (the loader logs it and goes on without a token)."""
    import logging

    said = _plugin_errors()
    root = logging.getLogger()
    root.addHandler(said)
    try:
        load(cfg)
    finally:
        root.removeHandler(said)
    if said.cut is not None:
        raise said.cut
    return said.errors


def renew_on_401(client: Any, load: Callable[[Any], None], *, unloaded: list[str] | None = None) -> Renewal:
    """Answer a 401 by renewing the credentials (`Renewal`) and sending the request once more with the new
    token (or client certificate): a request answered 401 was not authenticated, so it changed nothing and
    sending it again is safe, a write included. Every request of `client` passes here (its API classes call
    `ApiClient.call_api`), watches and the requests of other threads included. A second 401, or no new
    credentials, is answered as before, the answer carrying why renewing did not help (`note_of`, which
    `kube.translate` says). The token is sent trimmed (`_trimmed`). The renewal for a request of the route marks its
    thread (`_ROUTE_REQUEST`): neither limit on plugin runs holds it back. Before a request, the client's own hook
    (a token past its reported expiry) runs the plugin unmarked: one that hung is not run again there, and the
    request goes with the token it had, which the server may still take (a 401 then renews, marked)."""
    from urllib.parse import urlsplit

    renewal = Renewal(client.configuration, load, getattr(getattr(client, "rest_client", None), "pool_manager", None))
    renewal.unloaded = "; ".join(unloaded or ())  # why the first load gave no credentials ("" when it gave them)
    send = client.call_api

    def call_api(method: str, url: str, header_params: Any = None, body: Any = None, post_params: Any = None,
                 _request_timeout: Any = None) -> Any:
        headers = dict(header_params or {})
        if "authorization" in headers:
            headers["authorization"] = _trimmed(headers["authorization"])
        certs = renewal.certs
        follow_ca()  # a kubeconfig's CA rotated on disk, taken by new connections (decision 913)
        try:
            answer = send(method, url, headers, body, post_params, _request_timeout=_request_timeout)
        except Exception as exc:
            # our client certificate refused in the TLS handshake (a proxy verifying it: an alert, no 401): the
            # server read nothing of the request, so it is renewed and sent again as a 401's is (decision 489)
            if not (renewal.cfg.cert_file and certificate_refused(exc)):
                raise
            return renew_refused_certificate(exc, method, url, headers, body, post_params, _request_timeout, certs)
        _proven(renewal, headers, answer)
        # sent with no credentials because the configuration could give none (its exec plugin failed as the process
        # loaded it): an API server with anonymous authentication on (the default: EKS, GKE) answers 403 for
        # `system:anonymous`, not 401; it is answered as a 401 is, never "check RBAC" (decision 413)
        anonymous = answer.status == 403 and not headers.get("authorization") and bool(renewal.unloaded or renewal.failure)
        if answer.status != 401 and not anonymous:
            return answer
        path = urlsplit(url).path
        urgent = is_route_request(path)
        mark = _ROUTE_REQUEST.set(urgent)
        try:
            token = renewal.renewed(headers.get("authorization"), f"{method} {path}", certs=certs, urgent=urgent)
        finally:
            _ROUTE_REQUEST.reset(mark)
        if token is None:
            return _noted(answer, renewal.note)
        answer.response.drain_conn()  # the refused answer's connection goes back to the pool
        if token:
            headers["authorization"] = token
        again = send(method, url, headers, body, post_params, _request_timeout=_request_timeout)
        _proven(renewal, headers, again)
        if again.status == 401:
            renewal.futile(REFUSED_AGAIN)
            return _noted(again, REFUSED_AGAIN)
        renewal.futile_at = None
        return again

    def renew_refused_certificate(refusal: BaseException, method: str, url: str, headers: dict[str, Any], body: Any,
                                  post_params: Any, _request_timeout: Any, certs: int) -> Any:
        path = urlsplit(url).path
        urgent = is_route_request(path)
        mark = _ROUTE_REQUEST.set(urgent)
        try:
            token = renewal.renewed(headers.get("authorization"), f"{method} {path} ({certificate_refused(refusal)})",
                                    certs=certs, urgent=urgent)
        finally:
            _ROUTE_REQUEST.reset(mark)
        if token is None:  # no other certificate: the refusal stands (retried as the API unreachable is)
            raise refusal
        if token:
            headers["authorization"] = token
        try:
            again = send(method, url, headers, body, post_params, _request_timeout=_request_timeout)
        except Exception as exc:
            if certificate_refused(exc):  # the new one refused too: held as a 401's renewal in vain is
                renewal.futile(REFUSED_AGAIN)
            raise
        if again.status == 401:
            renewal.futile(REFUSED_AGAIN)
            return _noted(again, REFUSED_AGAIN)
        renewal.futile_at = None
        return again

    client.call_api = call_api
    return renewal


# the TLS alerts a server (or a proxy before it) sends when it refuses the client certificate we presented: an
# OpenSSL server names the reason (expired, revoked, an unknown CA), Go's says `bad certificate` for any of them;
# `ssl.SSLError.reason` as the client reads the alert it received. A refusal of the server's certificate by us is
# `CERTIFICATE_VERIFY_FAILED`, no alert, and is not one
CERTIFICATE_ALERTS = frozenset({
    "SSLV3_ALERT_BAD_CERTIFICATE", "SSLV3_ALERT_UNSUPPORTED_CERTIFICATE", "SSLV3_ALERT_CERTIFICATE_REVOKED",
    "SSLV3_ALERT_CERTIFICATE_EXPIRED", "SSLV3_ALERT_CERTIFICATE_UNKNOWN", "TLSV1_ALERT_UNKNOWN_CA",
    "TLSV13_ALERT_CERTIFICATE_REQUIRED",
})


def certificate_refused(exc: BaseException) -> str:
    """The TLS alert (`SSLV3_ALERT_CERTIFICATE_EXPIRED`, ...) by which the server refused our client certificate in
    the handshake, if that is what `exc` (the client's ApiException of status 0, urllib3's SSLError or
    ProtocolError, the ssl module's error) came of; "" otherwise."""
    import ssl

    seen: set[int] = set()
    todo: list[Any] = [exc]
    while todo:
        err = todo.pop()
        if not isinstance(err, BaseException) or id(err) in seen or len(seen) > 16:
            continue
        seen.add(id(err))
        if isinstance(err, ssl.SSLError) and getattr(err, "reason", None) in CERTIFICATE_ALERTS:
            return str(err.reason)
        todo.extend([err.__cause__, err.__context__, getattr(err, "reason", None), *err.args])
    return ""


def _proven(renewal: Renewal, headers: dict[str, Any], answer: Any) -> None:
    """A request sent with the token the last renewal gave (`headers`' authorization, filled in by the client as it
    sent it) answered other than 401: that token is taken (`Renewal.unproven` cleared)."""
    if renewal.unproven is not None and answer.status != 401 and headers.get("authorization") == renewal.unproven:
        renewal.unproven = None


# the header a 401 (or anonymous 403) answer carries, once renewing did not help, saying why: the note travels with
# that request's own answer (and its ApiException) to `translate`. It was one process-wide note, the last renewal's
# of any thread: a controller's rollouts said each other's (decision 430)
NOTE_HEADER = "x-canary-credentials-note"


def _noted(answer: Any, note: str) -> Any:
    if note:
        try:
            answer.response.headers[NOTE_HEADER] = note
        except (AttributeError, TypeError):  # an answer without headers of its own to carry it
            pass
    return answer


def note_of(exc: BaseException) -> str:
    """Why renewing the credentials did not help the request `exc` (its 401, or 403 for `system:anonymous`) is the
    answer to ("" when it did, or when there was nothing to renew: a static token, no token at all)."""
    headers = getattr(exc, "headers", None)
    try:
        return str(headers.get(NOTE_HEADER) or "") if headers is not None else ""
    except AttributeError:
        return ""


def _digest(*paths: Any) -> str | None:
    """A digest of the files' content (a client certificate and its key), None when any cannot be read."""
    import hashlib

    out = hashlib.sha256()
    try:
        for path in paths:
            if path:
                with open(path, "rb") as f:
                    out.update(f.read())
    except OSError:
        return None
    return out.hexdigest()


def _trimmed(token: Any) -> Any:
    """A bearer token (the whole header value, "Bearer ...") without the whitespace around it: the client sends a
    kubeconfig's `tokenFile` as read, and a file ending in a newline (`echo $TOKEN > file`, which kubectl and
    client-go accept: they trim it) made every request fail before it was sent ("Invalid header value")."""
    return token.strip() if isinstance(token, str) else token


REFUSED_AGAIN = ("the new ones the configuration gave were refused too (the identity itself is refused: revoked, "
                 "deleted, or not one this cluster knows)")


# a plugin (its argv) whose last run hung: (when, why), so that it is not run again within RENEW_EVERY_S
_HUNG: dict[tuple[str, ...], tuple[float, str]] = {}


# plugin runs not yet over: {process: interactive}; killed when this process exits (`_end_live_plugins`)
_LIVE: dict[Any, bool] = {}
_LIVE_LOCK = threading.Lock()
# set by `_end_live_plugins` as the process exits: no plugin is started after its kill (decision 507)
_ENDING = False
# the most seconds a signal's exception, or the exit, waits for a plugin's start (its `Popen`) to end (decision 514)
GATE_WAIT_S = 2.0


def _end_plugin(process: Any, interactive: bool) -> None:
    """Kill a plugin run given up on, with its process group where it has its own (not interactive), and reap it."""
    import signal
    import subprocess
    import sys

    try:
        if interactive:
            process.kill()
        else:
            # its descendants that left the group (a helper started with setsid or start_new_session: killpg missed
            # it, and it kept the run's pipe open) stopped first, then all killed (decision 490)
            strays: list[Any] = []
            try:
                # not once reaped: its children are init's by then, and its pid may be another process's whose
                # children the search would stop and kill (decision 506)
                if process.returncode is None:
                    _stop_descendants(process.pid, strays)
            except Exception:  # noqa: BLE001 - the search never keeps the group's kill from happening
                pass
            finally:  # a signal's exception raised meanwhile included: nothing is left stopped and alive
                for handle in strays:
                    _signal(handle, signal.SIGKILL)
                    _close(handle)
                os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    for pipe in (process.stdout, process.stderr):
        if pipe is not None and pipe is not sys.stderr:
            pipe.close()
    try:
        process.wait(5)
    except subprocess.TimeoutExpired:
        pass


def _children() -> dict[int, list[int]]:
    """Every process's children, read from /proc ({} where there is none: not Linux)."""
    out: dict[int, list[int]] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return out
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rpartition(")")[2].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        out.setdefault(ppid, []).append(int(entry))
    return out


def _parent(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rpartition(")")[2].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def _stop_descendants(root: int, found: list[Any], rounds: int = 8) -> None:
    """Stop (SIGSTOP) the plugin's group and every process descended from `root` that is not in it (a helper that
    started a session of its own), so that none forks or reaps meanwhile, and put a handle on each of the latter
    in `found` (a pidfd where the kernel has them, else the pid) for the kill. A stopped parent reaps no child, so
    a pid found under it is not reused before the kill; a pidfd is opened and the parent checked again after it.
    Not reached: a helper whose parent had already exited (a daemon's double fork), init's child by then."""
    import signal

    try:
        os.killpg(root, signal.SIGSTOP)
    except ProcessLookupError:  # the group is gone: its strays may not be
        pass
    seen: set[int] = set()
    for _ in range(rounds):  # until a walk finds no new process (each one found is stopped: it forks no more)
        tree, todo, new = _children(), [root], False
        while todo:
            pid = todo.pop()
            for child in tree.get(pid, ()):
                todo.append(child)
                if child in seen:
                    continue
                try:
                    if os.getpgid(child) == root:  # in the group: stopped and killed with it
                        continue
                except OSError:  # gone meanwhile
                    continue
                handle = _handle(child)
                if handle is None or _parent(child) != pid:  # gone, or its pid another's by now
                    _close(handle)
                    continue
                found.append(handle)
                seen.add(child)
                _signal(handle, signal.SIGSTOP)
                new = True
        if not new:
            break


def _handle(pid: int) -> Any:
    """A pidfd on `pid` (Linux 5.3, Python 3.9), else the pid itself; None once it is gone."""
    opener = getattr(os, "pidfd_open", None)
    if opener is None:
        return pid
    try:
        return ("fd", opener(pid))
    except ProcessLookupError:
        return None
    except OSError:  # no pidfds here (an old kernel, a seccomp profile)
        return pid


def _signal(handle: Any, sig: int) -> None:
    import signal

    try:
        if isinstance(handle, tuple):
            signal.pidfd_send_signal(handle[1], sig)
        else:
            os.kill(handle, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _close(handle: Any) -> None:
    if isinstance(handle, tuple):
        os.close(handle[1])


def _end_live_plugins() -> None:
    """At exit: the plugin runs still waited on by threads the process does not wait for (a look's worker, a
    daemon thread whose request the signal abandoned) are killed with their groups. Started in sessions of their
    own, they outlived the process (a hung `aws eks get-token` and its helper left running after exit 6)."""
    global _ENDING
    # bounded: a start holds the lock over its `Popen`, and one whose exec hangs (a plugin on a hung network mount)
    # would hold the exit for ever; past the bound the runs noted so far are killed all the same
    held = _LIVE_LOCK.acquire(timeout=GATE_WAIT_S)
    try:
        _ENDING = True
        live = list(_LIVE.copy().items())
        _LIVE.clear()
    finally:
        if held:
            _LIVE_LOCK.release()
    for process, interactive in live:
        _end_plugin(process, interactive)


atexit.register(_end_live_plugins)


def install_bounded_plugins() -> None:
    """Make the kubernetes config loader run kubeconfig exec plugins with `run_plugin` (a bound, its process group
    killed when it is given up on) in place of its own `ExecProvider.run`, which waits for ever. Idempotent."""
    from kubernetes.config import exec_provider, kube_config

    if getattr(kube_config.ExecProvider, "canary_bounded", False):
        return

    class BoundedExecProvider(exec_provider.ExecProvider):  # type: ignore[misc]
        canary_bounded = True

        def run(self, previous_response: Any = None) -> Any:
            return run_plugin(self, previous_response)

    kube_config.ExecProvider = BoundedExecProvider


def _forget(process: Any) -> None:
    with _LIVE_LOCK:
        _LIVE.pop(process, None)


def _start(provider: Any, command: str, interactive: bool, box: dict[str, Any], gate: Any, done: Any) -> None:
    """Start the plugin (`subprocess.Popen`) and note the run in `_LIVE`: run in a thread of its own, launched by
    `run_plugin` (decision 514). Puts the run in `box["process"]`, or what failed in `box["error"]` (ConfigException
    when this process is exiting: no plugin starts after the at-exit kill, decision 507; what `Popen` raised, a
    plugin not found); sets `done` when over. A caller that gave up on the start (`box["cancelled"]`, set first,
    without `gate`; then it waits for `gate`) finds the run in `box` only when the start saw no mark after its
    `Popen`; else the start killed the run itself, or never started it (decision 525).

    Why a thread: a signal's handler raises in the main thread between any two of its bytecodes (the grace's cut,
    the signal's abandoning of a request that is not the route's). One landing inside `Popen` (while it waits for
    the child's exec) or before the run was noted left a plugin started that nobody knew of: a hung one outlived
    exit 6 with its helper. No handler's exception lands here. Launched with `_thread.start_new_thread`, not a
    `threading.Thread`: an exception landing inside `Thread.start()` just after the thread was launched made
    `start()` undo its bookkeeping under the running thread, which failed ("Exception ignored in thread started
    by ...", a traceback written into the JSON log lines)."""
    import subprocess
    import sys

    from kubernetes.config.config_exception import ConfigException

    try:
        with gate:
            if box.get("cancelled"):
                return
            with _LIVE_LOCK:
                if _ENDING:
                    box["error"] = ConfigException(f"exec: {command} not run: this process is exiting (its plugin "
                                                   "runs were killed)")
                    return
                process = subprocess.Popen(provider.args, stdout=subprocess.PIPE,
                                           stderr=sys.stderr if interactive else subprocess.PIPE,
                                           stdin=sys.stdin if interactive else None, cwd=provider.cwd,
                                           env=provider.env, universal_newlines=True,
                                           start_new_session=not interactive,
                                           # `shell` came with kubernetes 32.0.1 (True on Windows only); 29-31 have
                                           # none and run without a shell (pyproject allows >=29)
                                           shell=getattr(provider, "shell", False))
                _LIVE[process] = interactive
                if not box.get("cancelled"):
                    box["process"] = process  # the caller's: to wait on, or to kill once it gives up
                    return
                # given up on while it started (the caller marks that first, without `gate`, and a second exception
                # may cut its wait for `gate`): killed here, where no handler's exception lands, and forgotten once
                # killed (decision 525)
                _end_plugin(process, interactive)
                del _LIVE[process]
    except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
        box["error"] = exc
    finally:
        done.set()


def run_plugin(provider: Any, previous_response: Any = None) -> Any:
    """`ExecProvider.run` (the same input, `KUBERNETES_EXEC_INFO`, the same checks of the answer, the same
    ConfigException texts), bounded: a plugin that has not answered within `plugin_timeout_s()` is killed, its
    whole process group (it is started in a session of its own; a shell script's `sleep`, a helper it forked, go
    with it), and the run fails naming the bound (decision 426). One cut short by a signal's grace (the exception
    raised in the handler) is killed the same way before that goes on: the plugin outlived the process before
    (decision 427). A plugin that hung is not run again within `RENEW_EVERY_S` (the run fails at once, saying so)
    but for the renewal of a request of the route refused 401. Interactive (stdout a terminal): the plugin keeps our terminal and process group,
    so only its own pid is killed."""
    import json
    import subprocess
    import sys
    import time

    from kubernetes.config.config_exception import ConfigException

    interactive = hasattr(sys.stdout, "isatty") and sys.stdout.isatty()
    info: dict[str, Any] = {"apiVersion": provider.api_version, "kind": "ExecCredential",
                            "spec": {"interactive": interactive}}
    if previous_response:
        info["spec"]["response"] = previous_response
    if provider.cluster:
        info["spec"]["cluster"] = provider.cluster.value
        for extension in provider.cluster.value.get("extensions") or ():
            if extension["name"] == "client.authentication.k8s.io/exec":
                info["spec"]["cluster"]["config"] = extension["extension"]
                break
    provider.env["KUBERNETES_EXEC_INFO"] = json.dumps(info)
    key = tuple(str(a) for a in provider.args)
    hung = _HUNG.get(key)
    if hung is not None and not _ROUTE_REQUEST.get() and time.monotonic() - hung[0] < RENEW_EVERY_S:
        raise ConfigException(f"{hung[1]}; not run again within {RENEW_EVERY_S:g} s of that")
    limit = plugin_timeout_s()
    box: dict[str, Any] = {}
    gate, done = threading.Lock(), threading.Event()
    try:
        _thread.start_new_thread(_start, (provider, key[0], interactive, box, gate, done))
        done.wait()
        if isinstance(box.get("error"), (OSError, ValueError)):  # Popen's: not found, a directory, a FIFO, a NUL
            exc = box["error"]
            raise ConfigException(f"exec: command {key[0]!r} cannot be run: {getattr(exc, 'strerror', None) or exc}")
        if "error" in box:
            raise box["error"]
        process = box["process"]
        stdout, stderr = process.communicate(timeout=limit)
        _forget(process)  # inside the `try`: an exception landing in it kills (a no-op, reaped) and forgets the run
    except subprocess.TimeoutExpired:
        _end_plugin(process, interactive)
        _forget(process)
        why = (f"exec: {key[0]} did not answer within {limit:g} s (${PLUGIN_TIMEOUT_ENV}); killed it "
               f"(pid {process.pid} and its process group)")
        _HUNG[key] = (time.monotonic(), why)
        get_logger().warning("kube.exec_plugin_killed", command=key[0], pid=process.pid, timeout_s=limit,
                             hint=f"the kubeconfig's exec plugin hangs (no route to its token service? waiting for "
                                  f"a login?); set ${PLUGIN_TIMEOUT_ENV} for one that needs longer")
        raise ConfigException(why) from None
    except BaseException:  # a signal's grace cut it (raised in the handler), or the process is ending
        # marked first: a start not over kills its run itself once `Popen` returns, or starts nothing (`_start`).
        # Marked after the wait for `gate`, a second exception landing in that wait (up to GATE_WAIT_S while the exec
        # runs) left the run to the at-exit kill. CPython runs a signal's handler only where its eval loop checks
        # (after a call, at a function's entry, at a backward jump): nothing before this store is one, so no
        # exception splits it from the `except`'s start (pinned by test_kube_bound; decision 525)
        box["cancelled"] = True
        # the start, never cut, is over (its run ours, in `box`, when it saw no mark) or will kill what it starts;
        # bounded: a start whose exec hangs kills its run once that returns, and the exception goes on meanwhile
        held = gate.acquire(timeout=GATE_WAIT_S)
        if held:
            gate.release()
        if "process" in box:
            # forgotten only once killed: a second signal's exception landing inside the kill leaves it to the
            # at-exit one (before, it was forgotten whatever happened: a group stopped, not killed, outlived us)
            _end_plugin(box["process"], interactive)
            _forget(box["process"])
        raise
    _HUNG.pop(key, None)
    if process.returncode != 0:
        msg = "exec: process returned %d" % process.returncode
        if stderr and stderr.strip():
            msg += ". %s" % stderr.strip()
        raise ConfigException(msg)
    try:
        data = json.loads(stdout)
    except ValueError as exc:
        raise ConfigException("exec: failed to decode process output: %s" % exc) from None
    for field in ("apiVersion", "kind", "status"):
        if field not in data:
            raise ConfigException("exec: malformed response. missing key '%s'" % field)
    if data["apiVersion"] != provider.api_version:
        raise ConfigException("exec: plugin api version %s does not match %s" % (data["apiVersion"],
                                                                               provider.api_version))
    return data["status"]
