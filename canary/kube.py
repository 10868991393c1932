"""The one place that builds a Kubernetes client and turns its errors into ours.

Two jobs, both about keeping library details at the boundary:

* :func:`api_client` picks the configuration the way kubectl users expect
  (explicit --kubeconfig/--context, else $KUBECONFIG or ~/.kube/config, else
  the in-cluster service account) and reports a broken setup as ConfigError
  with the path or context named, not as a kubernetes-config traceback;
  :func:`default_namespace` picks the namespace from the same place, as kubectl does.
* :func:`translate` maps ApiException / urllib3 / socket errors onto the
  exception tree, so callers decide retry-or-not by type (5xx and network ->
  KubeUnavailable, 404 -> TargetError, 409 -> RoutingConflict, 401/403 ->
  ConfigError). Our own retries are done with tenacity, so the client's
  urllib3 retries are switched off to keep the attempt budget honest.
"""

from __future__ import annotations

import functools
import json
import os
import re
from pathlib import Path
from typing import Any, Callable

from canary.errors import (ApiRefused, CanaryError, ConfigError, GraceReserved, GraceSpent, KubeUnavailable, NotFound,
                           RoutingConflict, TargetError)
from canary.kube_credentials import install_bounded_plugins, load_noting, note_of, plugin_timeout_s, renew_on_401
from canary.kube_files import install_checked_files, missing

# where a pod's service account tells its namespace (kubectl and client-go read the same file)
IN_CLUSTER_NAMESPACE_FILE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"


def unvalidated(method: Any) -> Any:
    """A generated kubernetes client API method (bound) without the client's per-call argument
    validation (pydantic's `validate_call` over the arguments and request body: about 0.1 ms of
    the ~1.5 ms of client CPU a write costs); the same request, response and errors otherwise. For the
    calls made at every look with arguments this code builds. `method` itself when it has no
    wrapped original (another client version, a test double)."""
    inner = getattr(method, "__wrapped__", None)
    owner = getattr(method, "__self__", None)
    if inner is None or owner is None:
        return method
    return functools.partial(inner, owner)


def api_client(*, kubeconfig: str | None = None, context: str | None = None) -> Any:
    """A `kubernetes.client.ApiClient` for the chosen cluster, whose credentials are fetched again when the
    API server answers 401 (`renew_on_401`). Raises ConfigError."""
    import kubernetes.client

    plugin_timeout_s()  # a bad $CANARY_EXEC_PLUGIN_TIMEOUT is said before anything is sent
    install_bounded_plugins()  # exec plugins bounded, killed when given up on (decisions 426, 427)
    install_checked_files()  # the kubeconfig and its files bounded, never a blocking open (decision 831)
    cfg = kubernetes.client.Configuration()
    load = functools.partial(_load_config, kubeconfig=kubeconfig, context=context)
    unloaded = load_noting(load, cfg)
    cfg.retries = False  # tenacity owns the retries (see module docstring)
    client = kubernetes.client.ApiClient(cfg)
    renew_on_401(client, load, unloaded=unloaded)
    return client


def _load_config(cfg: Any, *, kubeconfig: str | None, context: str | None) -> None:
    """Fill `cfg` from the chosen source (see `api_client`); ConfigError when it cannot be."""
    from kubernetes import config as kconfig

    try:
        if kubeconfig or context:
            where = kubeconfig or _default_kubeconfig() or "~/.kube/config"
            _load_file(kconfig, cfg, kubeconfig, context, where)
        elif (found := _default_kubeconfig()) is not None:
            _load_file(kconfig, cfg, None, None, found)
        else:
            try:
                kconfig.load_incluster_config(client_configuration=cfg)
            except kconfig.ConfigException as exc:
                raise ConfigError(
                    "no Kubernetes configuration: no --kubeconfig, no $KUBECONFIG, no ~/.kube/config, "
                    f"and not running in a cluster ({exc})") from exc
    except ConfigError:
        raise
    except Exception as exc:  # yaml, OSError, bad certificates: all mean "fix your config"
        raise ConfigError(f"cannot load Kubernetes configuration: {exc}") from exc


# below this many seconds left, a request is not sent: it could not be answered in time anyway
MIN_REQUEST_S = 0.05
# after a signal, until the route's write lands, a read of the route is given at most this share of the grace left:
# one that hangs (an API server that accepts and never answers it) leaves time to read again and write (decision 408)
READ_SHARE = 0.5


class InFlight:
    """The Kubernetes request the main thread is waiting on (`bound_by`): its method and path, "" when none.
    `cut()`, called in a signal handler on the main thread once the grace ended (SIGALRM: `canary
    promote`), abandons that request (GraceSpent raised where it waits): one sent before the signal
    kept its own 10 s timeout, past a CI's SIGKILL when the grace is shorter (GitHub Actions: 8 s)."""

    def __init__(self, spent: Callable[[], str], route: Callable[[str], bool] = lambda _path: True,
                 kept: Callable[[], str] = lambda: "the grace after the signal is kept for the route's write",
                 stale: Callable[[], bool] = lambda: False) -> None:
        self.request, self.spent = "", spent
        # which request paths are the route's (its VirtualService and DestinationRule): after the signal, until a
        # write of the route sent after it is answered (or `settle()`), no other request is sent, and the one
        # the main thread waits on at the signal is abandoned unless it is a write of the route (decision 407)
        self.route, self.kept = route, kept
        # whether the caller is making a write decided before the signal that the interrupt's own write replaces (a
        # step's, a look's record): after the signal none of its requests is sent, its route's included (decision 409)
        self.stale = stale
        self.reserved = False
        self.last = ""  # the main thread's last request ("METHOD /path"): a retry's wait of one not the route's ends
        # the request the main thread is getting credentials for, "" when none: the client runs the kubeconfig's exec
        # plugin in the request's thread (a token past its expiry; `Renewal` after a 401), with no timeout of its own
        self.fetching = ""
        # the last write sent after the signal that got no answer (a timeout, a dropped connection), "" once a write
        # is answered: a request refused as not sent after it is said to follow a write that may have landed
        self.unanswered = ""

    def routes(self, what: str) -> bool:
        """Whether `what` ("METHOD /path") is one of the route's requests."""
        return self.route(what.partition(" ")[2])

    def held(self, what: str) -> bool:
        """Whether `what` ("METHOD /path") is held back now: a signal came, and the route's write has not landed."""
        return self.reserved and (not self.routes(what) or self.stale())

    def hold(self, what: str) -> None:
        """GraceReserved (not sent) when `what` is `held` back now: neither sent nor its credentials fetched."""
        if self.held(what):
            held = GraceReserved(f"{what}: not sent, {self.kept()}")
            held.sent = False  # type: ignore[attr-defined]
            raise held

    def signalled(self) -> None:
        """The first signal came (called in its handler, on the main thread): the grace is the route's write's
        first. A request the main thread waits on that is not a write of the route (a history PATCH, an Event, a
        pod count, a read: the interrupt reads the route again itself), or whose credentials it is fetching, is
        abandoned at once (GraceReserved raised where it waits): a hung one spent the whole grace, and the
        stable-100% write was never tried (decision 407). A write of the route in flight may land: it keeps the
        grace, cut at its end (`cut`)."""
        self.reserved = True
        for what, fetch in ((self.request, False), (self.fetching, True)):
            if not what or (self.routes(what) and not what.startswith("GET ")):
                continue
            if fetch:
                self.fetching = ""
            else:
                self.request = ""
            cut = GraceReserved(f"{what}: abandoned at the signal, {self.kept()}" + (
                " (its credentials were still being fetched)" if fetch else ""))
            cut.sent = not fetch and not what.startswith("GET ")  # type: ignore[attr-defined]
            raise cut

    def settle(self) -> None:
        """The route's write after the signal landed, or the rollout's traffic is settled otherwise (ended, left
        paused, taken over): what is left of the grace is for every request again (the end's history, Events)."""
        self.reserved = False

    def cut(self) -> None:
        if self.request:
            what, self.request = self.request, ""
            cut = GraceSpent(f"{what}: still unanswered; {self.spent()}")
            # a write cut so may have been applied (`write_landed`: unknown); a read changed nothing
            cut.sent = not what.startswith("GET ")  # type: ignore[attr-defined]
            raise cut
        if self.fetching:  # in a hung exec plugin, the request not sent yet (decision 377); the client logs this
            what, self.fetching = self.fetching, ""  # and goes on with the token it had, which `request` refuses to send
            cut = GraceSpent(f"{what}: its credentials still not had (the kubeconfig's exec plugin has not answered); "
                             f"{self.spent()}")
            cut.sent = False  # type: ignore[attr-defined]
            raise cut


def bound_by(client: Any, until: Callable[[], float], *,
             spent: Callable[[], str] = lambda: "the grace after the signal is spent",
             route: Callable[[str], bool] = lambda _path: True,
             kept: Callable[[], str] = lambda: "the grace after the signal is kept for the route's write",
             stale: Callable[[], bool] = lambda: False) -> InFlight:
    """Make every request `client` (a `kubernetes.client.ApiClient`) sends from now on end by
    `until()`, a time on `time.monotonic`'s clock (math.inf: unbounded, the default of a caller that
    has not been signalled): its timeout (`_request_timeout`: none, seconds, or a (connect, read)
    pair) is cut to the seconds left, and with less than MIN_REQUEST_S left nothing is sent
    (GraceSpent, naming the method and path, then `spent()`). `canary promote --interrupt-grace`: a signal sets
    `until`, and a Kubernetes API server that accepts connections and never answers can no longer
    hold the process past its CI job's SIGKILL with the route unspoken for. Every request of the
    client passes here (`ApiClient.call_api` calls `rest_client.request`), whichever API class and
    caller (routing, history, events) made it. A request already sent keeps its own timeout, unless the
    caller cuts it: the returned `InFlight` names the request the main thread waits on, and its `cut()`
    abandons it (decision 128). `route(path)`: whether a request is one of the route's; once `InFlight.signalled()`
    (the signal's handler), no other request is sent (GraceReserved) until a write of the route sent after it is
    answered, or `InFlight.settle()` (decision 407). Default: every request is the route's (nothing held).
    `stale()`: the caller makes a write decided before the signal (a step's): none of its requests, the route's
    included, is sent after it (decision 409)."""
    import math
    import threading
    import time
    from urllib.parse import urlsplit

    rest = client.rest_client
    send = rest.request
    flying = InFlight(spent, route, kept, stale)

    def request(method: str, url: str, *args: Any, _request_timeout: Any = None, **kw: Any) -> Any:
        what = f"{method} {urlsplit(url).path}"
        main = threading.current_thread() is threading.main_thread()  # only the main thread's is cut
        if main:
            flying.last = what
        flying.hold(what)  # the grace is the route's write's first: not sent, nothing spent on it
        left = until() - time.monotonic()
        if left < MIN_REQUEST_S:
            refused = GraceSpent(f"{what}: not sent, {spent()}" + (
                f"; {flying.unanswered} before it had no answer and may have been applied" if flying.unanswered else ""))
            # the router's retry of a write that timed out, refused here: that write may be in place (`write_landed`)
            refused.sent = bool(flying.unanswered)  # type: ignore[attr-defined]
            raise refused
        if flying.reserved and method.upper() == "GET":  # the route's write reads first: a hung read is not all
            left *= READ_SHARE
        timeout = _cut_timeout(_request_timeout, left)
        route_write = method.upper() != "GET" and flying.routes(what)
        after_signal = until() != math.inf
        if main:
            flying.request = what
        try:
            answer = send(method, url, *args, _request_timeout=timeout, **kw)
        except Exception as exc:
            # no answer to a write of the route sent after the signal (not an HTTP status: that is an answer); a
            # history or Event write with none says nothing of the route (its refused write is not `sent`)
            if route_write and after_signal and not hasattr(exc, "status"):
                flying.unanswered = what
            raise
        finally:
            if main:
                flying.request = ""
        if route_write:
            flying.unanswered = ""
            if after_signal:  # the route's write after the signal landed: the rest of the grace is everyone's
                flying.settle()
        return answer

    rest.request = request
    rest.canary_until = until  # a retry's wait ends by then too (`retry_wait`, `retry_sleep`)
    rest.canary_held = lambda: flying.held(flying.last)  # ...and at once when its next try would be held back
    _bound_credentials(client, until, flying)
    return flying


# the longest a `Retry-After` is waited before the next try: kube-apiserver asks 1 s (API Priority and Fairness,
# max-in-flight) or a few (a storage timeout); a proxy asking minutes must not hold a rollback's write that long
MAX_RETRY_AFTER_S = 5.0


def retry_after_s(exc: BaseException | None) -> float | None:
    """The seconds a 429 or 5xx answer asked to wait before the next try: its `Retry-After` header (delta-seconds;
    an HTTP date is no advice), else its Status's `details.retryAfterSeconds`; None when it asked nothing."""
    if exc is None or not _is_api_exception(exc):
        return None
    headers = getattr(exc, "headers", None) or {}
    try:
        value = headers.get("Retry-After") or headers.get("retry-after")
    except AttributeError:
        value = None
    try:
        if value is not None and float(value) >= 0:
            return float(value)
    except (TypeError, ValueError):
        pass
    try:
        details = json.loads(getattr(exc, "body", None) or "{}").get("details") or {}
        asked = details.get("retryAfterSeconds")
        return float(asked) if isinstance(asked, (int, float)) and asked >= 0 else None
    except (TypeError, ValueError, AttributeError):
        return None


def retry_wait(base: Callable[[Any], float], client: Any) -> Callable[[Any], float]:
    """A tenacity wait: `base`'s backoff, or what the answer's `Retry-After` asked when longer (at most
    MAX_RETRY_AFTER_S), and never past the end of `client`'s grace (`bound_by`; none before a signal). Without
    it a 429 asking 1 s was tried again 0.2, 0.4 and 0.8 s later: all four tries of a write in 1.4 s, three of
    them before the server said it would take one (decision 392)."""
    import math
    import time

    until = getattr(getattr(client, "rest_client", None), "canary_until", None)
    held = getattr(getattr(client, "rest_client", None), "canary_held", None)

    def wait(state: Any) -> float:
        if callable(held) and held():  # its next try is held back for the route's write: no wait spent on it
            return 0.0
        out = float(base(state))
        outcome = getattr(state, "outcome", None)
        asked = retry_after_s(outcome.exception() if outcome is not None and outcome.failed else None)
        if asked is not None:
            out = max(out, min(asked, MAX_RETRY_AFTER_S))
        end = until() if callable(until) else math.inf
        return max(0.0, min(out, end - time.monotonic()))

    return wait


def retry_sleep(client: Any, nap: Callable[[float], None] | None = None) -> Callable[[float], None]:
    """A sleep (tenacity's, `reconcile.to_stable`'s between its attempts) that ends early once `client`'s grace
    is spent (a signal arrived while it slept: the next request is refused unsent at once, GraceSpent, instead
    of after the rest of a Retry-After). `nap`: what sleeps each piece of it (`time.sleep`), at most 0.25 s and
    never past the grace's end."""
    import time

    nap = nap or time.sleep
    until = getattr(getattr(client, "rest_client", None), "canary_until", None)
    if not callable(until):
        return nap
    held = getattr(getattr(client, "rest_client", None), "canary_held", lambda: False)

    def sleep(seconds: float) -> None:
        # counted down by what was asked of `nap`, and cut to the grace left after each piece: never more in all
        # than `seconds`, nor than the grace left when it began or was set (a signal while it slept); and ended
        # when the signal holds back the try it waits for (a request not the route's: decision 407)
        left = min(float(seconds), until() - time.monotonic())
        while left > 0 and not held():
            piece = min(left, 0.25)
            nap(piece)
            left = min(left - piece, until() - time.monotonic())

    return sleep


def _bound_credentials(client: Any, until: Callable[[], float], flying: InFlight) -> None:
    """`bound_by` for the credentials a request is sent with. The client gets them in the request's thread
    before sending it (`param_serialize`: a token past its reported expiry renewed, the exec plugin run) and
    `Renewal` after a 401 (`call_api`), and a plugin that hangs (no network for `aws eks get-token`, kubelogin
    waiting for a browser) has no timeout of its own: a tick, or the stable-100% write after a signal, waited on
    it past the CI's SIGKILL. The main thread's fetch is named to `flying` (its `cut()` ends it when the grace
    does: the client then goes on with the token it had, and `request` refuses to send past the grace), and
    once the grace is spent no credentials are fetched any more (decision 377)."""
    import threading
    import time

    serialize, call = client.param_serialize, client.call_api

    def fetching(what: str, run: Callable[[], Any]) -> Any:
        flying.hold(what)  # held back for the route's write (decision 407): no plugin run for it either
        if until() - time.monotonic() < MIN_REQUEST_S:
            # past the grace nothing is sent (`request` refuses it, naming it): no plugin run to wait on either
            client.configuration.refresh_api_key_hook = None
            return run()
        main = threading.current_thread() is threading.main_thread()
        if main:
            flying.fetching = what
        try:
            return run()
        finally:
            if main:
                flying.fetching = ""

    def param_serialize(method: str, resource_path: str, *args: Any, **kw: Any) -> Any:
        # the path as sent (the generated methods pass a template and its `path_params`): which request it is
        params = kw.get("path_params") if "path_params" in kw else (args[0] if args else None)
        path = resource_path
        for key, value in (params.items() if isinstance(params, dict) else ()):
            path = path.replace("{" + str(key) + "}", str(value))
        return fetching(f"{method} {path}", lambda: serialize(method, resource_path, *args, **kw))

    def call_api(method: str, url: str, *args: Any, **kw: Any) -> Any:
        from urllib.parse import urlsplit

        return fetching(f"{method} {urlsplit(url).path}", lambda: call(method, url, *args, **kw))

    client.param_serialize, client.call_api = param_serialize, call_api


def _cut_timeout(timeout: Any, left: float) -> Any:
    """A `_request_timeout` (None, seconds, or (connect, read)) cut to at most `left` seconds."""
    if left == float("inf"):
        return timeout
    if isinstance(timeout, tuple) and len(timeout) == 2:
        return tuple(left if t is None else min(float(t), left) for t in timeout)
    if isinstance(timeout, (int, float)) and timeout:
        return min(float(timeout), left)
    return left


def default_namespace(*, kubeconfig: str | None = None, context: str | None = None) -> str:
    """The namespace a command acts in when no `-n` is given, as kubectl picks it: the selected
    context's (`--context`, else the current context) in the kubeconfig that `api_client` would
    load; in a pod without a kubeconfig, the pod's own (the service account's namespace file);
    else 'default'. Raises ConfigError for a kubeconfig that cannot be read or an unknown context."""
    from kubernetes import config as kconfig

    where = kubeconfig or _default_kubeconfig()
    if where is None:
        if context:
            raise ConfigError(f"--context {context!r}: there is no kubeconfig (no --kubeconfig, no $KUBECONFIG, "
                              "no ~/.kube/config)")
        try:
            return Path(IN_CLUSTER_NAMESPACE_FILE).read_text(encoding="utf-8").strip() or "default"
        except OSError:
            return "default"
    first = _first_kubeconfig(where)
    install_checked_files()
    try:
        contexts, current = kconfig.list_kube_config_contexts(config_file=where)
    except Exception as exc:  # ConfigException, yaml, OSError: all mean "fix your config"
        raise ConfigError(f"cannot read kubeconfig {first!r}: {_unnamed(exc, first)}") from exc
    if context:
        chosen = next((c for c in contexts or () if c.get("name") == context), None)
        if chosen is None:
            raise ConfigError(f"--context {context!r} is not in kubeconfig {first!r} "
                              f"(contexts: {', '.join(str(c.get('name')) for c in contexts or ()) or 'none'})")
    else:
        chosen = current
    return str(((chosen or {}).get("context") or {}).get("namespace") or "default")


def _default_kubeconfig() -> str | None:
    env = os.environ.get("KUBECONFIG", "")
    if env:
        return env  # may be a ':'-separated list; the loader merges it
    home = Path("~/.kube/config").expanduser()
    return str(home) if home.is_file() else None


def _first_kubeconfig(where: str) -> str:
    """The first file of `where` (`--kubeconfig`'s or `$KUBECONFIG`'s list) that exists, checked by
    `_kubeconfig_file`: the file errors name. One that does not exist (a link to nothing included) is skipped at any
    place of the list, as kubectl (client-go's loader: `os.IsNotExist`) and the Python client skip it, since the
    merger loads the others without it (decision 910: a missing first file was exit 2, "does not exist"). None
    existing is ConfigError naming each: kubectl warns "Config not found" and goes on with an empty configuration
    (the pod's service account, else localhost:8080), the Python client refuses "No configuration found"; a
    `$KUBECONFIG` set says which cluster was meant, so no other credentials are taken in its place."""
    paths = [p for p in where.split(os.pathsep) if p]
    found = next((p for p in paths if not missing(os.path.expanduser(p))), None)
    if found is not None:
        _kubeconfig_file(found)
        return found
    if len(paths) == 1:
        raise ConfigError(f"kubeconfig {paths[0]!r} does not exist")
    named = ", ".join(repr(p) for p in paths) or "none"
    raise ConfigError(f"kubeconfig list {where!r}: none of its files exists (named: {named}); kubectl skips each "
                      "and goes on with no configuration: name a kubeconfig that exists, or unset KUBECONFIG for "
                      "~/.kube/config or, in a pod, its service account")


def _kubeconfig_file(first: str) -> None:
    """ConfigError unless `first` is a regular file, before the client opens it: a FIFO (or a directory) was said
    as "does not exist", and a FIFO the client opened would hold the command at its open (decision 771)."""
    import stat

    try:
        mode = Path(first).expanduser().stat().st_mode
    except FileNotFoundError:
        raise ConfigError(f"kubeconfig {first!r} does not exist") from None
    except (OSError, ValueError) as exc:  # a link loop, a name too long, a component no directory, a NUL
        raise ConfigError(f"kubeconfig {first!r} cannot be read: {getattr(exc, 'strerror', None) or exc}") from None
    if stat.S_ISREG(mode):
        return
    # a process substitution (`--kubeconfig <(sops -d kc.enc)`, which kubectl takes) is /dev/fd/N, a pipe: it reads
    # once, and the kubeconfig is read more than once (its contexts for the namespace, then the client's load)
    what = ("a FIFO or a pipe (a process substitution, <(...)?), which reads once, and the kubeconfig is read more "
            "than once: write it to a file (umask 077 first) and name that file instead" if stat.S_ISFIFO(mode)
            else "a directory" if stat.S_ISDIR(mode) else "a device")
    raise ConfigError(f"kubeconfig {first!r} is not a regular file: {what}")


def _load_file(kconfig: Any, cfg: Any, path: str | None, context: str | None, where: str) -> None:
    first = _first_kubeconfig(path or where)
    try:
        kconfig.load_kube_config(config_file=path or where, context=context,
                                 client_configuration=cfg, persist_config=False)
    except kconfig.ConfigException as exc:
        what = f"context {context!r} in " if context else ""
        raise ConfigError(f"cannot use {what}kubeconfig {first!r}: {_unnamed(exc, first)}") from exc


def _unnamed(exc: BaseException, first: str) -> str:
    """`exc`'s words without the kubeconfig's name where they open with the one the caller names
    (`kube_files.read_kubeconfig`'s "kubeconfig '<f>': ...", which names another file of a list)."""
    said = str(exc)
    return said.removeprefix(f"kubeconfig {first!r}: ")


class BadAnswer(ValueError):
    """A request answered 200 with a body that is not what was asked for: empty, cut short, not JSON, or a
    LIST's answer without its `items` (a proxy in front of the API server, a connection cut mid-body that
    the framing did not catch). Transient: asked again. Never read as "nothing there" (decision 391)."""


def list_items(answer: Any, what: str) -> list[Any]:
    """The `items` of a LIST's answer (the JSON object, parsed), or BadAnswer when it is not a list object:
    not a JSON object, or without `items` (an API server always sends the key; `null` is read as none). An
    empty or non-JSON body, which the client hands back as "" or as the text itself, was read as an empty
    list: no routes for `canary sweep`, no CanaryRollouts for the controller, no pods for the pod check."""
    if not isinstance(answer, dict) or "items" not in answer:
        raise BadAnswer(f"the LIST of {what} was answered with a body that is not a list ({_shown(answer, body=True)}); "
                        "a proxy or a cut answer?")
    items = answer["items"]
    if items is None:
        return []
    if not isinstance(items, list):
        raise BadAnswer(f"the LIST of {what} was answered with `items` that is not a list ({_shown(items)})")
    for i, item in enumerate(items):  # an item read as an object failed later, far from the answer: a raw
        # AttributeError in the informer's relist, a retraining trigger's or the pod check's
        if not isinstance(item, dict):
            raise BadAnswer(f"the LIST of {what} was answered with item {i} that is not an object ({_shown(item)})")
    return items


def _shown(answer: Any, *, body: bool = False) -> str:
    """An answer, or a part of one, in a message: its JSON, quoted, cut to 80 characters; a `body` that is text
    (not JSON: a proxy's page, a cut answer) as it came, "an empty body" for none."""
    if body and isinstance(answer, str) and not answer.strip():
        return "an empty body"
    shown = answer if body and isinstance(answer, str) else json.dumps(answer, default=str)
    return repr(shown[:80] + "..." if len(shown) > 80 else shown)


def raw_list(resp: Any, what: str) -> tuple[list[dict[str, Any]], str]:
    """The items and the resourceVersion ("" when none) of a LIST sent with `_preload_content=False` (the
    urllib3 response: no client model built), parsed and checked by `list_items`: BadAnswer naming `what` for an
    empty, cut or non-JSON body (shown as it came), `{}`, `null`, `items` not a list, an item not an object, a
    `metadata` not an object; the LIST's `raw_object` (decision 494). The connection is released either way."""
    try:
        data = resp.data or b""  # None: no body at all
        try:
            answer = json.loads(data)
        except ValueError:  # the text itself in the message (a proxy's page), not "null"
            answer = data.decode("utf-8", "replace") if isinstance(data, (bytes, bytearray)) else str(data)
        items = list_items(answer, what)
        meta = answer.get("metadata")
        if meta is not None and not isinstance(meta, dict):
            raise BadAnswer(f"the LIST of {what} was answered with `metadata` that is not an object "
                            f"({_shown(meta)})")
        return items, str((meta or {}).get("resourceVersion") or "")
    finally:
        resp.release_conn()


def an_object(answer: Any, what: str) -> dict[str, Any]:
    """The answer of a GET of one object (parsed), or BadAnswer when it is not one: not a JSON object, or without
    `metadata.uid` (the API server gives every object one). An empty body, `{}` or a proxy's page was read as an
    object with no uid: "deleted and created again", a watch's and a follower's exit 3, a sweep's end."""
    meta = answer.get("metadata") if isinstance(answer, dict) else None
    if not isinstance(meta, dict) or not meta.get("uid"):
        raise BadAnswer(f"{what} was answered with a body that is not the object (no metadata.uid); "
                        "a proxy or a cut answer?")
    return answer  # type: ignore[return-value]


def raw_object(resp: Any, what: str) -> dict[str, Any]:
    """The object of a request sent with `_preload_content=False` (the urllib3 response: no client model built),
    parsed and checked by `an_object`: BadAnswer for an empty, cut or non-JSON body, `{}`, `null`, an object with
    no uid (decisions 419, 421). The connection is released either way."""
    try:
        try:
            answer = json.loads(resp.data or b"")  # None: no body at all, as an empty one
        except ValueError:
            answer = None
        return an_object(answer, what)
    finally:
        resp.release_conn()


def is_transient(exc: BaseException) -> bool:
    """True for errors worth another attempt: 5xx, 429, timeouts (408, a proxy's in front of the API server, too),
    refused connections, and a 200 whose body is not what was asked for (BadAnswer, or JSON cut short)."""
    status = getattr(exc, "status", None)
    if _is_api_exception(exc) and isinstance(status, int):
        return status >= 500 or status in (0, 408, 429)
    if isinstance(exc, (BadAnswer, json.JSONDecodeError)):
        return True
    return _is_network_error(exc)


def translate(exc: BaseException, what: str) -> CanaryError:
    """The CanaryError for a client exception; `what` names the object ('ml/rec-model')."""
    if isinstance(exc, CanaryError):
        return exc
    if _is_api_exception(exc):
        status = getattr(exc, "status", 0) or 0
        reason = _status_message(exc)
        if status == 404 and reason == "the server could not find the requested resource":
            return TargetError(f"{what}: this API group/version is not served by the cluster ({reason}); "
                               "is the CRD installed, and is the version right?")
        if status == 404:
            return NotFound(f"{what}: not found ({reason})", what=what)
        if status == 409:
            return RoutingConflict(f"{what}: conflicting write ({reason})")
        if status == 401:  # authentication, not RBAC: "check RBAC" sent a pipeline's on-call to the Role (decision 356)
            if note := note_of(exc):  # renewed in vain: the exec plugin failed, or its new token was refused (decision 374)
                return ConfigError(f"{what}: the Kubernetes API did not accept our credentials (HTTP 401: {reason}) "
                                   f"and {note}; not RBAC")
            return ConfigError(f"{what}: the Kubernetes API did not accept our credentials (HTTP 401: {reason}): "
                               "the token expired or was revoked (a CI job's short-lived token can expire before a "
                               "long rollout ends: give it a lifetime longer than the rollout, or a kubeconfig whose "
                               "exec plugin renews it); not RBAC")
        if status == 403 and "system:anonymous" in reason:  # sent with no credentials: not a Role's (decision 413)
            why = note_of(exc) or "the kubeconfig's user gives none"
            return ConfigError(f"{what}: the Kubernetes API refused us (HTTP 403: {reason}): this process sent no "
                               f"credentials, and {why}; not RBAC")
        if status == 403:
            return ConfigError(f"{what}: the Kubernetes API refused us (HTTP {status}: {reason}); check RBAC")
        if status >= 500 or status in (0, 408, 429):  # 408: a timeout, as the metrics client reads it (decision 564)
            return KubeUnavailable(f"{what}: Kubernetes API error HTTP {status} ({reason})")
        return TargetError(f"{what}: the Kubernetes API rejected the request (HTTP {status}: {reason})")
    if isinstance(exc, BadAnswer):
        return KubeUnavailable(f"{what}: {exc}")
    if isinstance(exc, json.JSONDecodeError):
        return KubeUnavailable(f"{what}: the Kubernetes API's answer is not JSON, or was cut short ({exc})")
    if _is_network_error(exc):
        return KubeUnavailable(f"{what}: Kubernetes API unreachable ({type(exc).__name__}: {exc})")
    return KubeUnavailable(f"{what}: unexpected Kubernetes client error ({type(exc).__name__}: {exc})")


def refused(exc: BaseException, what: str, *, request: str,
            kind: type[ApiRefused] = ApiRefused) -> ApiRefused | None:
    """`translate`'s error for an answer of the API server that refuses `request` for good (401 after the
    credentials' renewal, 403, a 4xx other than 404, 408, 409 and 429), as ApiRefused (or its `kind`) carrying
    `request` and the HTTP status; None for any other error (not found, a conflict, a transient one, a 408's timeout
    included: the callers' own handling)."""
    status = getattr(exc, "status", None) if _is_api_exception(exc) else None
    if not isinstance(status, int) or not 400 <= status < 500 or status in (404, 408, 409, 429):
        return None
    return kind(str(translate(exc, what)), request=request, status=status)


# how the API server words a request an admission check of the cluster's denied: a webhook's (HTTP 400 unless the
# webhook gives a code: Kyverno's, a webhook's plain `allowed: false`), a ValidatingAdmissionPolicy's (403 or 422,
# after `<resource> "<name>" is forbidden: `)
_ADMISSION = re.compile(r"""(?:^|: )(admission webhook "[^"]+"|ValidatingAdmissionPolicy '[^']+'(?: with binding """
                        r"""'[^']+')?) denied (?:the )?request""")


def admission_denial(exc: BaseException) -> str:
    """The admission check that denied the request (`admission webhook "validate.kyverno.svc-fail"`), "" when the
    answer is not such a denial: the cluster's policy, not canary's request nor RBAC (decision 583)."""
    hit = _ADMISSION.search(_status_message(exc)) if _is_api_exception(exc) else None
    return hit.group(1) if hit else ""


def _status_message(exc: BaseException) -> str:
    """The `message` of a Kubernetes Status body, else the HTTP reason."""
    body = getattr(exc, "body", None)
    try:
        data = json.loads(body) if body else {}
    except (TypeError, ValueError):
        data = {}
    message = data.get("message") if isinstance(data, dict) else None
    return str(message or getattr(exc, "reason", "") or "no detail")


def _is_api_exception(exc: BaseException) -> bool:
    from kubernetes.client.exceptions import ApiException

    return isinstance(exc, ApiException)


def _is_network_error(exc: BaseException) -> bool:
    import urllib3.exceptions

    return isinstance(exc, (urllib3.exceptions.HTTPError, OSError, TimeoutError))


def event_body(*, namespace: str, involved: dict[str, Any], reason: str, message: str, warning: bool,
               component: str, generate_name: str) -> dict[str, Any]:
    """A core/v1 Event (the one shape both the VirtualService's and the CanaryRollout's Events use).
    `reason` is CamelCase (<= 128 chars), `message` is cut at 1,024 characters."""
    import datetime

    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"apiVersion": "v1", "kind": "Event",
            "metadata": {"generateName": generate_name, "namespace": namespace},
            "involvedObject": {**involved, "namespace": namespace},
            "reason": reason[:128], "message": message[:1024], "type": "Warning" if warning else "Normal",
            "source": {"component": component}, "reportingComponent": component,
            "firstTimestamp": now, "lastTimestamp": now, "count": 1}
