"""Kubernetes credentials that expire or rotate while a rollout runs: fetched again on a 401, as client-go does.

The kubernetes client (v37) renews a token only when its exec plugin reported an `expirationTimestamp` that has
passed, re-reads a pod's service-account token once a minute, never re-reads a kubeconfig's `tokenFile`, and
never answers a 401 by asking again. A CI job's token revoked or rotated early, a plugin's token that reports no
expiry, a token file rotated on disk: each was sent until the process ended, every request 401 (decision 374).
`renew_on_401` (installed by `kube.api_client` on every client it builds) loads the configuration again on a 401
and sends the request once more with the new token.
"""

from __future__ import annotations

from typing import Any, Callable

from canary.errors import ConfigError
from canary.logs import get as get_logger


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

    def __init__(self, cfg: Any, load: Callable[[Any], None]) -> None:
        import threading

        self.cfg, self.load, self.lock = cfg, load, threading.Lock()
        self.failure = ""  # why the last renewal gave no token ("" once one did)
        self.renewals = 0  # renewals that gave a token other than the refused one
        self.unloaded = ""  # what the loader said as the process first loaded the configuration (a failed plugin)

    def renewed(self, used: str | None, refused: str = "") -> str | None:
        """`refused`: the request answered 401 ("GET /api/v1/..."), for the log lines."""
        import kubernetes.client

        with self.lock:
            current = _trimmed(self.cfg.api_key.get("BearerToken"))
            if current and current != used:
                return current
            fresh = kubernetes.client.Configuration()
            try:
                # a plugin cut by a signal's grace (`kube.InFlight.cut`), which the loader caught and logged, is raised
                # again there: the request ends so (GraceSpent, not sent), not as credentials the configuration cannot
                # give (`kube.credentials_unrenewed`, "mend the kubeconfig's exec plugin", said of a plugin that works)
                errors = load_noting(self.load, fresh)
            except ConfigError as exc:
                return self._failed(str(exc), refused)
            token = _trimmed(fresh.api_key.get("BearerToken"))
            if not token:  # "" said: no token to renew (client certificates, none at all)
                return self._failed("; ".join(errors), refused)
            self.failure = ""
            if token == used:  # a static token, or a plugin that cached the refused one: nothing else to send
                return None
            # the old loader's hook would put the refused token back before every request: the new loader's owns it
            self.cfg.api_key["BearerToken"] = token
            self.cfg.refresh_api_key_hook = fresh.refresh_api_key_hook
            self.renewals += 1
            get_logger().info("kube.credentials_renewed", refused=refused, renewals=self.renewals)
            return token

    def _failed(self, why: str, refused: str) -> None:
        """No new token: `why` kept for `translate`, and said once per distinct reason (every request of a
        controller whose plugin fails gets here)."""
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

        def emit(self, record: logging.LogRecord) -> None:
            import sys

            from canary.errors import GraceSpent

            if record.name == "root" and "kubernetes" in (record.pathname or ""):
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
    token: a request answered 401 was not authenticated, so it changed nothing and sending it again is safe,
    a write included. Every request of `client` passes here (its API classes call `ApiClient.call_api`),
    watches and the requests of other threads included. A second 401, or no new token, is answered as before
    (`kube.translate` adds why renewing did not help: `last_401_note`). The token is sent trimmed
    (`_trimmed`)."""
    from urllib.parse import urlsplit

    renewal = client.canary_renewal = Renewal(client.configuration, load)
    renewal.unloaded = "; ".join(unloaded or ())  # why the first load gave no credentials ("" when it gave them)
    send = client.call_api

    def call_api(method: str, url: str, header_params: Any = None, body: Any = None, post_params: Any = None,
                 _request_timeout: Any = None) -> Any:
        headers = dict(header_params or {})
        if "authorization" in headers:
            headers["authorization"] = _trimmed(headers["authorization"])
        answer = send(method, url, headers, body, post_params, _request_timeout=_request_timeout)
        # sent with no credentials because the configuration could give none (its exec plugin failed as the process
        # loaded it): an API server with anonymous authentication on (the default: EKS, GKE) answers 403 for
        # `system:anonymous`, not 401; it is answered as a 401 is, never "check RBAC" (decision 413)
        anonymous = answer.status == 403 and not headers.get("authorization") and bool(renewal.unloaded or renewal.failure)
        if answer.status != 401 and not anonymous:
            return answer
        token = renewal.renewed(headers.get("authorization"), f"{method} {urlsplit(url).path}")
        global _LAST_401_NOTE
        if token is None:
            _LAST_401_NOTE = f"new ones could not be had: {renewal.failure}" if renewal.failure else ""
            return answer
        answer.response.drain_conn()  # the refused answer's connection goes back to the pool
        headers["authorization"] = token
        again = send(method, url, headers, body, post_params, _request_timeout=_request_timeout)
        _LAST_401_NOTE = REFUSED_AGAIN if again.status == 401 else ""
        return again

    client.call_api = call_api
    return renewal


def _trimmed(token: Any) -> Any:
    """A bearer token (the whole header value, "Bearer ...") without the whitespace around it: the client sends a
    kubeconfig's `tokenFile` as read, and a file ending in a newline (`echo $TOKEN > file`, which kubectl and
    client-go accept: they trim it) made every request fail before it was sent ("Invalid header value")."""
    return token.strip() if isinstance(token, str) else token


# what this process's last renewal after a 401 came to, when it did not help ("" when it did, or when there was
# nothing to renew: a static token): said by `translate` after the 401's own words
_LAST_401_NOTE = ""
REFUSED_AGAIN = ("the new ones the configuration gave were refused too (the identity itself is refused: revoked, "
                 "deleted, or not one this cluster knows)")


def last_401_note() -> str:
    """Why this process's last renewal after a 401 did not help ("" when it did, or when there was nothing to
    renew: a static token, no token at all), for the 401's error."""
    return _LAST_401_NOTE
