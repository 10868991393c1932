"""PrometheusClient: instant queries against one Prometheus, every wire failure in our error tree.

The HTTP and retry layer under `PrometheusProvider` (which turns checks into
queries and answers into arm data) and `BatchMetrics` (which asks for
snapshots). Everything that can go wrong on the wire is turned into our error
tree here:

- connection refused, timeout, 5xx/408/429, a malformed answer: retried with
  tenacity within a bounded budget (``retries`` attempts and ``budget_s``
  seconds in all, each request's timeout cut to what is left), then
  `MetricsUnavailable` -- "could not measure", never a pass; a 200 that is a
  partial answer or an error: the same, as its subclass `PartialAnswer`;
- any other 4xx: `ConfigError` at once -- 400/422 a query Prometheus rejects
  (naming the check, quoting Prometheus's error), 401/403 credentials, 404 and
  the rest a URL that is not a Prometheus HTTP API (path prefix).
"""

from __future__ import annotations

import ast
import json
import math
import os
import urllib.parse
import re
import threading
import time
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Iterator, Mapping, Self

import requests
import structlog
import urllib3
from prometheus_api_client import PrometheusApiClientException, PrometheusConnect
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, stop_after_delay, wait_exponential
from urllib3.util.retry import Retry

from canary.errors import ConfigError, MetricsUnavailable
from canary.metrics.answers import arm_name, evaluated_at, number_of, well_formed
from canary.model import Target
from canary.redact import redact_url, scrub, split_userinfo, unseen_host
from canary.throttle import Throttle

if TYPE_CHECKING:
    from canary.ca_bundle import CaBundle

log = structlog.get_logger(__name__)
# how a query refused by our own check of Prometheus's certificate opens, and what to do about it: said by `analyze`
# and `drift check` in place of "is it up?" (decision 950)
TLS_REFUSED = "TLS: Prometheus's certificate is not verified"
TLS_REMEDY = ("Prometheus's certificate is not signed by a CA of the bundle named above: give --prometheus-ca-file a PEM "
              "bundle that holds its CA (it is read again when it changes)")
_STATUS = re.compile(r"HTTP Status Code (\d+)")
_BODY = re.compile(r"HTTP Status Code \d+ \((b'.*'|b\".*\")\)\s*$", re.DOTALL)
_TRUE = {"1", "true", "yes", "on"}
_MAX_BACKOFF_S = 1.0
_MIN_TIMEOUT_S = 0.05



# `check` of the controller's batched snapshot's queries (canary.metrics.batch), and how its errors name it: it is
# no check of any policy ("check 'batch'" sent on-call looking for one)
BATCH = "batch"
BATCH_WHO = "the batched snapshot of every rollout's metrics"

class _Transient(Exception):
    """One failed attempt worth another try (internal to the retry loop). `partial`: Prometheus
    answered, but not in full (a warning, or `"status":"error"` in a 200)."""

    def __init__(self, message: str, *, partial: bool = False) -> None:
        super().__init__(message)
        self.partial = partial


class PartialAnswer(MetricsUnavailable):
    """Prometheus answered this query, but not in full (a partial-response warning, or an error
    status in an HTTP 200), on its last attempt: some series may be missing, which ones it does
    not say. Still "could not measure" for what the query was asked for; a caller that asked for
    many rollouts at once can ask again for fewer (`BatchMetrics`)."""


class NotPrometheus(ConfigError):
    """The URL answers, but not as a Prometheus HTTP API does."""


class Rejected(ConfigError):
    """Prometheus answered 400/422: the query cannot run."""


PREFIX_HINT = ("; check the path prefix in --prometheus-url (a reverse proxy's path such as /prometheus, "
               "or Prometheus's --web.route-prefix), which must be the part before /api/v1")


class PrometheusClient:
    """Instant queries against one Prometheus, with bounded retries."""

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        basic_auth: tuple[str, str] | None = None,
        verify_tls: bool | str | CaBundle = True,
        timeout_s: float = 5.0,
        retries: int = 3,
        budget_s: float = 5.0,
        backoff_s: float = 0.2,
        at: float | None = None,
    ) -> None:
        if not url:
            raise ConfigError("Prometheus URL is empty (set CANARY_PROMETHEUS_URL or --prometheus)")
        unseen = unseen_host(url)  # not quoted at all: where its password ends cannot be told (decisions 975, 1003)
        if unseen:
            raise ConfigError(f"Prometheus URL (not shown: it may hold a password) {unseen}, or give the credentials "
                              "in --prometheus-user/--prometheus-password (CANARY_PROMETHEUS_USER/_PASSWORD)")
        shown = redact_url(url)  # every message quotes the URL without its credentials (decision 970)
        try:
            parts = urllib.parse.urlsplit(url)
            parts.port  # noqa: B018 - raises ValueError on a bad port
        except ValueError as exc:
            raise ConfigError(f"Prometheus URL {shown!r} is not a URL: {scrub(str(exc), url)}") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"Prometheus URL {shown!r} must be http(s)://host[:port][/prefix]")
        if parts.query or parts.fragment or url.rstrip("/").endswith(("?", "#")):
            # `/api/v1/query` is put after the URL: a query or fragment swallowed it, and a `?token=` in it
            # was never sent as a credential
            raise ConfigError(f"Prometheus URL {shown!r} must be http(s)://host[:port][/prefix], without a query "
                              "or fragment (a token goes in --prometheus-token / CANARY_PROMETHEUS_TOKEN)")
        if retries < 1 or timeout_s <= 0 or budget_s <= 0:
            raise ConfigError("retries must be >= 1, timeout_s and budget_s > 0")
        url, in_url = split_userinfo(url)
        if in_url is not None:
            # user:password@ in the URL is honoured, as requests and Prometheus's own clients honour it, but sent
            # as basic auth and never kept in `url`: each message, log line, report and Event quotes `self.url`
            if token or basic_auth:
                raise ConfigError(f"Prometheus URL {shown!r} carries a user:password@ and --prometheus-token or "
                                  "--prometheus-user is given too: give the credentials one way (check "
                                  "CANARY_PROMETHEUS_URL, CANARY_PROMETHEUS_TOKEN and CANARY_PROMETHEUS_USER)")
            basic_auth = in_url
        self.url = url.rstrip("/")
        self.retries, self.timeout_s, self.budget_s, self.backoff_s = retries, timeout_s, budget_s, backoff_s
        # `_report`: a query's failure (`metrics.query_failed`, `metrics.query_retry`) said once per cause, then every
        # REPEAT_LOG_S with `repeated`, each cause on its own (key = cause); shared by every look thread. Prometheus
        # down for a 30 s deadline was 45 error lines and 45 warnings from one promote (each look's every query)
        self._quiet = Throttle(max_keys=256)
        self._asking = threading.local()  # `about`: the rollout this thread's queries are for
        # the instant the last `one_instant` evaluated at (Prometheus's clock unless given): promote checks its own
        # clock against it after each look (`Runner._prometheus_behind`, decision 575)
        self.last_instant: float | None = None
        self.at = at  # evaluation time for every query (replay/tests); None: Prometheus's now
        session = requests.Session()
        # a path is a CA bundle, as in requests; a CaBundle's private copy is brought up to its file before each
        # request (`_fresh_ca`: a bundle rotated on disk is taken without a restart, decision 912)
        self._ca = verify_tls if hasattr(verify_tls, "fresh") else None
        session.verify = self._ca.path if self._ca is not None else verify_tls
        # a token is credentials given too: requests' netrc auth would replace its header (decision 1036)
        _environment_once(session, self.url, auth=basic_auth is not None or bool(token))
        headers = {"Authorization": f"Bearer {token}"} if token else None
        # urllib3's own retries are off (read=False keeps a read timeout a Timeout, as requests'
        # default adapter does): tenacity alone owns the budget
        self._client = PrometheusConnect(
            url=self.url, headers=headers, auth=basic_auth, session=session,
            retry=Retry(0, read=False, raise_on_status=False), timeout=timeout_s,  # type: ignore[arg-type]
        )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Self:
        """Build from CANARY_PROMETHEUS_{URL,TOKEN,USER,PASSWORD,INSECURE,CA_FILE}."""
        env = os.environ if env is None else env
        url = env.get("CANARY_PROMETHEUS_URL", "")
        if not url:
            raise ConfigError("CANARY_PROMETHEUS_URL is not set")
        user, password = env.get("CANARY_PROMETHEUS_USER"), env.get("CANARY_PROMETHEUS_PASSWORD")
        if bool(user) != bool(password):
            raise ConfigError("set both CANARY_PROMETHEUS_USER and CANARY_PROMETHEUS_PASSWORD, or neither")
        verify: Any = env.get("CANARY_PROMETHEUS_CA_FILE") or True
        if env.get("CANARY_PROMETHEUS_INSECURE", "").strip().lower() in _TRUE:
            verify = False  # the CA file unread, as before 869: TLS is not verified, so it is never used (882)
        elif isinstance(verify, str):  # checked, and a private copy handed on, as the flag's (decisions 832, 869)
            from canary.cli_options import _ca_bundle

            verify = _ca_bundle(verify, "CANARY_PROMETHEUS_CA_FILE")
        kwargs: dict[str, Any] = {
            "token": env.get("CANARY_PROMETHEUS_TOKEN") or None,
            "basic_auth": (user, password) if user and password else None,
            "verify_tls": verify,
        }
        kwargs.update(overrides)
        return cls(url, **kwargs)

    @property
    def query_bound_s(self) -> float:
        """Worst-case seconds one `query` takes before it answers or raises, e.g. against a
        server that accepts connections and never answers: the smaller of every attempt
        timing out (retries x timeout_s + the backoffs) and the budget plus the last backoff
        plus one minimal attempt. requests applies timeout_s per socket operation (connect,
        each read), so a server trickling bytes, or a connect that succeeds only just in
        time, can stretch one attempt; that is the only way past this bound."""
        waits = [min(self.backoff_s * 2**k, _MAX_BACKOFF_S) for k in range(self.retries - 1)]
        all_attempts = self.retries * self.timeout_s + sum(waits)
        return min(all_attempts, self.budget_s + max(waits, default=0.0) + _MIN_TIMEOUT_S)

    @contextmanager
    def about(self, target: Target) -> Iterator[None]:
        """The queries this thread asks within are for the rollout `target` names: their failed-query lines
        (`metrics.query_failed`, `metrics.query_retry`) carry its `Target.log_context` (model, namespace,
        VirtualService, versions, route), so on-call reads which rollout is blind from the line. Per thread:
        the controller's workers measure several rollouts at once through one client."""
        before = getattr(self._asking, "context", None)
        self._asking.context = target.log_context()
        try:
            yield
        finally:
            self._asking.context = before

    @contextmanager
    def one_instant(self, at: float | None = None) -> Iterator[None]:
        """Every query this thread asks within, with no evaluation time of its own, is evaluated at ONE
        instant: `at`, else the time Prometheus stamped on the first answer that carries one (its own
        clock, or the client's `at`). A look compares the two arms over the same window only when both are
        read at the same instant: asked at Prometheus's "now" one after another, a look against a slow
        Prometheus (a Thanos querier, an overloaded server: seconds a query, 20-odd queries a look) read the
        canary's window tens of seconds after the stable's, and an incident that ended in between showed
        the canary better than stable (decision 143). Nested: the outer instant holds."""
        if getattr(self._asking, "instant", None) is not None:
            yield
            return
        self._asking.instant = [at]
        try:
            yield
        finally:
            self.last_instant, self._asking.instant = self._asking.instant[0], None

    # -- querying ------------------------------------------------------------------------

    def scalar(self, query: str, *, check: str = "", arm: str = "", at: float | None = None) -> float:
        """One number from an instant query that must return one series or a scalar."""
        return number_of(self.query(query, check=check, arm=arm, at=at), query, check, arm)

    def query(self, query: str, *, check: str = "", arm: str = "", at: float | None = None) -> Any:
        """Instant query with bounded retries; returns Prometheus's `data.result` as is."""
        return self.ask(query, check=check, arm=arm, at=at, who=BATCH_WHO if check == BATCH else f"check {check!r}",
                        strict=False, deadline=None)

    def ask(self, query: str, *, check: str, arm: str, at: float | None, who: str, strict: bool,
             deadline: float | None, attempts: int | None = None) -> Any:
        """`query`, and preflight's stricter variant: a 2xx that is not Prometheus's answer
        is then a ConfigError at once instead of a retried transient failure. `deadline`
        (time.monotonic() seconds) cuts the budget; `attempts` caps `retries`. Raises
        MetricsUnavailable, or its `PartialAnswer` when the last attempt was answered in part."""
        at = self.at if at is None else at
        instant = getattr(self._asking, "instant", None)  # `one_instant`: [None] until its first answer
        if at is None and instant is not None:
            at = instant[0]
        params = {} if at is None else {"time": f"{at:.3f}"}
        self._fresh_ca()
        now = time.monotonic()
        deadline = now + self.budget_s if deadline is None else min(deadline, now + self.budget_s)
        if deadline <= now:
            raise MetricsUnavailable(f"{who}: no time left in the budget to ask Prometheus at {self.url}; query: {query}")
        retrying = Retrying(
            stop=stop_after_attempt(min(self.retries, attempts or self.retries)) | stop_after_delay(deadline - now),
            wait=wait_exponential(multiplier=self.backoff_s, max=_MAX_BACKOFF_S),
            retry=retry_if_exception_type(_Transient),
            reraise=True,
            before_sleep=lambda rs: self._report("metrics.query_retry", check=check, arm=arm, attempt=rs.attempt_number,
                                                 error=str(rs.outcome.exception()) if rs.outcome else ""),
        )
        try:
            for attempt in retrying:
                with attempt:
                    timeout = max(_MIN_TIMEOUT_S, min(self.timeout_s, deadline - time.monotonic()))
                    result = self._once(query, params, timeout, who, strict)
                    if strict and not well_formed(result):
                        raise NotPrometheus(f"{self.url} does not look like a Prometheus HTTP API: its answer has "
                                            f"no list of series in data.result ({excerpt(json.dumps(result))})"
                                            f"{PREFIX_HINT}")
                    if instant is not None and instant[0] is None:
                        stamped = at if at is not None else evaluated_at(result)  # None: an empty vector
                        if stamped is not None and math.isfinite(stamped):
                            instant[0] = stamped
                    return result
        except _Transient as exc:
            # the controller's batched snapshot reports its failure itself, once per cause (`metrics.snapshot_failed`):
            # an error line per query and tick was a flood for as long as Prometheus was down
            self._report("metrics.query_failed", check=check, arm=arm, url=self.url, error=str(exc), query=query)
            raise (PartialAnswer if exc.partial else MetricsUnavailable)(
                f"{who}: Prometheus at {self.url} could not be asked for {arm_name(arm)} ({exc}); query: {query}"
            ) from exc.__cause__ or exc
        raise AssertionError("unreachable")  # pragma: no cover

    def _report(self, event: str, *, check: str, error: str, **fields: Any) -> None:
        """A failed query's line: once per cause (the event and the error, not the query nor the rollout), then
        every REPEAT_LOG_S (`repeated`, `canary.throttle`), naming the rollout the query was for (`about`) when
        the caller said; the lines of other rollouts failing for the same cause meanwhile are among `repeated`
        (Prometheus down is one line a minute, not one per rollout). A debug line for the batched snapshot,
        whose caller reports it with the rollouts it was for."""
        if check == BATCH:
            log.debug(event, check=check, error=error, **fields)
            return
        cause = f"{event} {error}"
        repeated = self._quiet.due(cause, cause)
        if repeated is not None:
            rollout = getattr(self._asking, "context", None) or {}
            (log.error if event == "metrics.query_failed" else log.warning)(event, check=check, error=error,
                                                                           repeated=repeated, **rollout, **fields)

    def _once(self, query: str, params: dict[str, str], timeout: float, who: str, strict: bool) -> Any:
        try:
            return self._result(query, params, timeout)
        except PrometheusApiClientException as exc:
            status, body = status_and_body(exc)
            if 400 <= status < 500 and status not in (408, 429):
                raise self._refused(status, body, query, who) from exc
            prom = prometheus_error(body)  # Prometheus says why (a 503 "timeout": its --query.timeout), when it does
            raise _Transient(f"HTTP {status or '?'}" + (f" {prom[0]}: {prom[1][:200]}" if prom else "")) from exc
        except requests.exceptions.Timeout as exc:
            raise _Transient(f"timed out after {timeout:.1f}s") from exc
        except requests.exceptions.SSLError as exc:  # a ConnectionError too: said as TLS, naming the CA (decision 950)
            raise _Transient(self._tls_failed(exc)) from exc
        except requests.exceptions.ConnectionError as exc:
            raise _Transient("connection failed") from exc
        except (requests.exceptions.InvalidURL, requests.exceptions.MissingSchema,
                requests.exceptions.InvalidSchema) as exc:
            raise ConfigError(f"Prometheus URL {self.url!r} is not a valid http(s) URL ({exc})") from exc
        except (requests.exceptions.RequestException, urllib3.exceptions.HTTPError, ValueError, KeyError, TypeError,
                AttributeError) as exc:
            doc = getattr(exc, "doc", None)  # a JSONDecodeError keeps the text it could not read
            what = f"not JSON: {excerpt(doc)}" if isinstance(doc, str) else type(exc).__name__
            if strict:
                raise NotPrometheus(f"{self.url} does not look like a Prometheus HTTP API: GET /api/v1/query "
                                    f"answered {what}{PREFIX_HINT}") from exc
            raise _Transient(f"malformed answer: {type(exc).__name__}") from exc

    def _result(self, query: str, params: dict[str, str], timeout: float) -> Any:
        """`data.result` of a 200 that says it succeeded in full, as `custom_query` reads it but for two
        answers it took as data: `"status":"error"` (a proxy or a Prometheus-compatible store answering
        200), and a warning other than PromQL's own infos (Thanos' or Cortex's partial response, a remote
        read that failed, "PromQL warning: ..." where the engine left series out): some series are
        missing, and a sum over the rest is a wrong number, not a smaller one. Either is transient
        (retried within the budget, then MetricsUnavailable), never data."""
        client = self._client
        response = client._session.request(  # noqa: SLF001 - custom_query's own request, its answer kept whole
            method="GET", url=f"{client.url}/api/v1/query", params={"query": query, **params},
            verify=client._session.verify, headers=client.headers, auth=client.auth,  # noqa: SLF001
            cert=client._session.cert, timeout=timeout)  # noqa: SLF001
        if response.status_code != 200:
            raise PrometheusApiClientException(f"HTTP Status Code {response.status_code} ({response.content!r})")
        doc = response.json()
        status = doc.get("status", "success")
        if status != "success":
            raise _Transient(f"HTTP 200 with status {status!r}: {str(doc.get('errorType', ''))}: "
                             f"{str(doc.get('error', ''))[:200]}", partial=True)
        partial = [str(w) for w in doc.get("warnings") or () if not str(w).startswith("PromQL info:")]
        if partial:
            raise _Transient(f"a partial answer (warnings: {'; '.join(partial)[:300]})", partial=True)
        return doc["data"]["result"]

    def shortest_scrape_interval_s(self) -> float | None:
        """The shortest scrape interval in this Prometheus's configuration (GET /api/v1/status/config: its global
        `scrape_interval`, 1m when unset, and every scrape job's own): one try each, within `timeout_s`. None when it
        cannot tell (no answer, an API without that endpoint: Thanos Query, Mimir; a configuration it cannot read),
        and where its data need not come at the intervals it lists (decision 557): no scrape job, jobs in
        `scrape_config_files` (not in the answer), a job whose relabelling may give a target its own interval
        (`__scrape_interval__`, e.g. from a pod's annotation), or a remote-write or OTLP receiver (GET
        /api/v1/status/flags; data pushed by agents at their own interval, under a self-scrape job's 1m). The
        caller then checks nothing: a refusal must never be wrong. The shortest: the job that scrapes a given series
        is not known before its data are, and a window under twice even the shortest interval holds fewer than two
        scrapes of any series."""
        import yaml

        from canary.policy_fields import parse_duration

        try:
            config = yaml.safe_load(self._status("config")["yaml"]) or {}
            jobs = [j for j in config.get("scrape_configs") or () if isinstance(j, dict)]
            if (not jobs or config.get("scrape_config_files") or any(map(_sets_interval, jobs))
                    or _receives(self._status("flags"))):
                return None
            default = (config.get("global") or {}).get("scrape_interval") or "1m"
            intervals = [default, *(j.get("scrape_interval") or default for j in jobs)]
            return min(parse_duration(str(v)) for v in intervals)
        except Exception:  # noqa: BLE001 - a check that cannot be made is not made; the evaluations' hint stands
            return None

    def _tls_failed(self, exc: BaseException) -> str:
        """A TLS failure's words: Prometheus's certificate refused by the CA bundle in use (named: a bundle rotated
        on disk to a CA that did not sign it fails every query, decision 912), or a handshake that failed otherwise
        (an https:// URL to a plain port). It was "connection failed", said as for a Prometheus that is down
        (decision 950)."""
        import ssl

        seen: list[BaseException] = []
        todo: list[Any] = [exc]
        while todo and len(seen) < 20:  # the chain: __cause__/__context__, args, urllib3's `reason`
            one = todo.pop(0)
            if isinstance(one, BaseException) and not any(one is s for s in seen):
                seen.append(one)
                todo += [one.__cause__, one.__context__, getattr(one, "reason", None), *one.args]
        refused = next((one for one in seen if isinstance(one, ssl.SSLCertVerificationError)), None)
        if refused is None:
            other = next((one for one in seen if isinstance(one, ssl.SSLError)), None)
            return f"TLS handshake failed ({getattr(other, 'reason', None) or type(exc).__name__})"
        verify = self._client._session.verify  # noqa: SLF001
        trust = (f"the CA bundle of {self._ca.name} {self._ca.given!r}" if self._ca is not None
                 else f"the CA bundle {verify!r}" if isinstance(verify, str) else "the system's CA certificates")
        return (f"{TLS_REFUSED} by {trust} "
                f"({refused.verify_message or refused.reason})")

    def _fresh_ca(self) -> None:
        if self._ca is not None:
            self._ca.fresh()

    def _status(self, what: str) -> Any:
        """The `data` of GET /api/v1/status/<what> (one try, within `timeout_s`); raises on any other answer."""
        client = self._client
        self._fresh_ca()
        response = client._session.request(  # noqa: SLF001 - the query's own session, headers and auth
            method="GET", url=f"{client.url}/api/v1/status/{what}", verify=client._session.verify,  # noqa: SLF001
            headers=client.headers, auth=client.auth, cert=client._session.cert,  # noqa: SLF001
            timeout=self.timeout_s)
        response.raise_for_status()
        return response.json()["data"]

    def _refused(self, status: int, body: bytes, query: str, who: str) -> ConfigError:
        """The ConfigError for a 4xx: a rejected query, credentials, or not a Prometheus API."""
        prom = prometheus_error(body)
        if status in (400, 422) or (prom is not None and prom[0] in ("bad_data", "execution")):
            error = f"{prom[0]}: {prom[1]}" if prom else excerpt(body)
            return Rejected(f"{who}: Prometheus rejected the query (HTTP {status} {error}); query: {query}")
        if status in (401, 403):
            return ConfigError(
                f"Prometheus at {self.url} refused our credentials (HTTP {status}: {excerpt(body)}); check "
                "--prometheus-token, or --prometheus-user/--prometheus-password (CANARY_PROMETHEUS_TOKEN/USER/PASSWORD)"
            )
        return NotPrometheus(f"{self.url} does not look like a Prometheus HTTP API: GET /api/v1/query answered "
                             f"HTTP {status} ({excerpt(body)}){PREFIX_HINT}")


def _environment_once(session: requests.Session, url: str, *, auth: bool) -> None:
    """What requests takes from the environment for `url`, taken once, when the client is made: the proxies
    (`HTTP_PROXY`, `HTTPS_PROXY`, `ALL_PROXY`, `NO_PROXY`), a CA bundle (`REQUESTS_CA_BUNDLE`, `CURL_CA_BUNDLE`) where
    TLS is verified with the default trust, and `~/.netrc`'s credentials (`NETRC`) where none are given (`auth`: a token
    or basic auth is; requests' netrc basic auth replaced a token's `Authorization` header, decision 1036). requests read
    them again at every request (`Session.merge_environment_settings`: every variable of the environment walked for
    the proxies, the netrc file looked for): a tenth of a query's CPU of our own, a controller asking 10-20 queries a
    tick and rollout (docs/benchmarks/suite.md, h-suite1). Every URL the client asks is under `url`: the same
    host, so the same proxies."""
    env = session.merge_environment_settings(url, {}, None, session.verify, None)
    session.proxies, session.verify = env["proxies"], env["verify"]
    if not auth and session.auth is None:
        session.auth = requests.utils.get_netrc_auth(url)
    session.trust_env = False


def status_and_body(exc: Exception) -> tuple[int, bytes]:
    """HTTP status and body from the client's exception ("HTTP Status Code 400 (b'...')")."""
    text = str(exc)
    m = _STATUS.search(text)
    b = _BODY.search(text)
    try:
        body = ast.literal_eval(b.group(1)) if b else b""
    except (ValueError, SyntaxError):
        body = b""
    return (int(m.group(1)) if m else 0), (body if isinstance(body, bytes) else b"")


def prometheus_error(body: bytes) -> tuple[str, str] | None:
    """(errorType, error) when the body is Prometheus's error JSON."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    if isinstance(data, dict) and data.get("status") == "error" and "error" in data:
        return str(data.get("errorType", "")), str(data["error"])
    return None


def excerpt(text: bytes | str | None, limit: int = 120) -> str:
    """The start of a body, on one line, for a message (an HTML page says what answered)."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    flat = " ".join((text or "").split())
    if not flat:
        return "empty body"
    return repr(flat if len(flat) <= limit else flat[:limit] + "...")


def _sets_interval(job: Mapping[str, Any]) -> bool:
    """Whether a scrape job's relabelling may give a target its own interval (label `__scrape_interval__`, which
    Prometheus scrapes it at instead of the job's): written to it, or by a `labelmap` that can make `__` labels."""
    return any(isinstance(r, dict) and (r.get("target_label") == "__scrape_interval__" or (
        r.get("action") == "labelmap" and str(r.get("replacement", "$1")).startswith("__")))
        for r in job.get("relabel_configs") or ())


def _receives(flags: Mapping[str, Any]) -> bool:
    """Whether a Prometheus's flags (/api/v1/status/flags) take pushed samples: the remote-write or OTLP receiver
    (their own flags since 2.33 and 2.47; `--enable-feature` before)."""
    on = any(str(flags.get(f, "")).lower() == "true" for f in ("web.enable-remote-write-receiver",
                                                              "web.enable-otlp-receiver"))
    features = str(flags.get("enable-feature", ""))
    return on or any(f in features for f in ("remote-write-receiver", "otlp-write-receiver"))
