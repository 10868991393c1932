"""PrometheusProvider: the MetricsProvider that asks a real Prometheus.

Everything that can go wrong on the wire is turned into our error tree here,
so the judge only ever sees data or a named reason for having none:

- connection refused, timeout, 5xx/408/429, a malformed answer: retried with
  tenacity within a bounded budget (``retries`` attempts and ``budget_s``
  seconds in all, each request's timeout cut to what is left), then
  `MetricsUnavailable` -- "could not measure", never a pass;
- any other 4xx: `ConfigError` at once -- 400/422 a query Prometheus rejects
  (naming the check, quoting Prometheus's error), 401/403 credentials, 404 and
  the rest a URL that is not a Prometheus HTTP API (path prefix);
- an empty answer, NaN, or an arm with zero requests: `NoData` naming the
  check, the arm and the query.

`preflight` sends every query a look will send, once, before any traffic
moves: the queries come from `query_plan`/`request_plan`, the very functions
`measure` and `request_counts` build theirs with, so what is checked is what
runs.

Feature-missing is a gauge (a fraction per feature), not a counter, so it is
turned into `Counts(events=rate * n, total=n)` with n the arm's request count
over the same window: the expected number of requests missing a feature, which
the proportion tests can weigh by sample size.
"""

from __future__ import annotations

import ast
import json
import math
import os
import re
import time
from typing import Any, Mapping

import requests
import structlog
import urllib3
from prometheus_api_client import PrometheusApiClientException, PrometheusConnect
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, stop_after_delay, wait_exponential
from urllib3.util.retry import Retry

from canary.errors import ConfigError, MetricsUnavailable, NoData
from canary.metrics import queries as q
from canary.metrics.base import PreflightQuery, PreflightReport
from canary.model import ArmData, Counts, Histogram, Scalar, Target
from canary.policy import Check, Policy

log = structlog.get_logger(__name__)
_STATUS = re.compile(r"HTTP Status Code (\d+)")
_BODY = re.compile(r"HTTP Status Code \d+ \((b'.*'|b\".*\")\)\s*$", re.DOTALL)
_TRUE = {"1", "true", "yes", "on"}
_HISTOGRAM = "histogram"  # the plan role read as buckets; every other role is one number
_PROBE = "vector(1)"  # known answer: one series, no labels, value "1"
_MAX_BACKOFF_S = 1.0
_MIN_TIMEOUT_S = 0.05
Plan = dict[str, dict[str, str]]  # arm -> role -> PromQL, in the order `measure` sends them


class _Transient(Exception):
    """One failed attempt worth another try (internal to the retry loop)."""


class _Malformed(_Transient):
    """A 2xx answer that is not Prometheus's JSON: transient for `measure`, fatal at preflight."""


class _NotPrometheus(ConfigError):
    """The URL answers, but not as a Prometheus HTTP API does."""


class _Rejected(ConfigError):
    """Prometheus answered 400/422: the query cannot run."""


def query_plan(policy: Policy, check: Check, target: Target, *, window_s: float) -> Plan:
    """Every query `measure` sends for one check: {arm: {role: PromQL}}, both arms.

    Roles: ``histogram`` (latency, prediction_shift), ``requests``, ``errors``,
    ``feature_missing``, ``custom``. Pure; raises ConfigError for what is wrong
    before any request (an invalid label or metric name, a source without the
    metric, a misplaced placeholder, an unknown kind).
    """
    source = policy.source_of(check)
    p = q.preset(source)
    name = check.name
    out: Plan = {}
    for arm in q.ARMS:
        sel = q.selector(policy, target, arm, source)
        if check.kind == "latency":
            out[arm] = {_HISTOGRAM: q.histogram_query(q.latency_metric(p, name)[0], sel, window_s)}
        elif check.kind == "prediction_shift":
            out[arm] = {_HISTOGRAM: q.histogram_query(q.prediction_metric(p, name, check.metric), sel, window_s)}
        elif check.kind == "error_rate":
            out[arm] = {"requests": q.requests_query(p, sel, window_s), "errors": q.errors_query(p, sel, window_s)}
        elif check.kind == "feature_missing":
            q.feature_metric(p, name)
            out[arm] = {"feature_missing": q.feature_missing_query(p, sel, window_s),
                        "requests": q.requests_query(p, sel, window_s)}
        elif check.kind == "custom":
            custom = q.render_custom(check.template(arm), check_name=name, model=target.model,  # type: ignore[union-attr]
                                     version=q.arm_version(target, arm), namespace=target.namespace, window_s=window_s)
            out[arm] = {"custom": custom, "requests": q.requests_query(p, sel, window_s)}
        else:
            raise ConfigError(f"check {name!r}: unknown kind {check.kind!r}")
    return out


def request_plan(policy: Policy, target: Target, *, window_s: float) -> dict[str, str]:
    """The query `request_counts` sends per arm: {arm: PromQL} (source: `metrics.source`)."""
    source = policy.metrics.source
    p = q.preset(source)
    return {arm: q.requests_query(p, q.selector(policy, target, arm, source), window_s) for arm in q.ARMS}


class PrometheusProvider:
    """Measures both arms of a rollout with instant queries against one Prometheus."""

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        basic_auth: tuple[str, str] | None = None,
        verify_tls: bool | str = True,
        timeout_s: float = 5.0,
        retries: int = 3,
        budget_s: float = 5.0,
        backoff_s: float = 0.2,
        at: float | None = None,
    ) -> None:
        if not url:
            raise ConfigError("Prometheus URL is empty (set CANARY_PROMETHEUS_URL or --prometheus)")
        if retries < 1 or timeout_s <= 0 or budget_s <= 0:
            raise ConfigError("retries must be >= 1, timeout_s and budget_s > 0")
        self.url = url.rstrip("/")
        self.retries, self.timeout_s, self.budget_s, self.backoff_s = retries, timeout_s, budget_s, backoff_s
        self.at = at  # evaluation time for every query (replay/tests); None: Prometheus's now
        session = requests.Session()
        session.verify = verify_tls  # a path is a CA bundle, as in requests
        headers = {"Authorization": f"Bearer {token}"} if token else None
        # urllib3's own retries are off (read=False keeps a read timeout a Timeout, as requests'
        # default adapter does): tenacity alone owns the budget
        self._client = PrometheusConnect(
            url=self.url, headers=headers, auth=basic_auth, session=session,
            retry=Retry(0, read=False, raise_on_status=False), timeout=timeout_s,  # type: ignore[arg-type]
        )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> "PrometheusProvider":
        """Build from CANARY_PROMETHEUS_{URL,TOKEN,USER,PASSWORD,INSECURE,CA_FILE}."""
        env = os.environ if env is None else env
        url = env.get("CANARY_PROMETHEUS_URL", "")
        if not url:
            raise ConfigError("CANARY_PROMETHEUS_URL is not set")
        user, password = env.get("CANARY_PROMETHEUS_USER"), env.get("CANARY_PROMETHEUS_PASSWORD")
        if bool(user) != bool(password):
            raise ConfigError("set both CANARY_PROMETHEUS_USER and CANARY_PROMETHEUS_PASSWORD, or neither")
        verify: bool | str = env.get("CANARY_PROMETHEUS_CA_FILE") or True
        if env.get("CANARY_PROMETHEUS_INSECURE", "").strip().lower() in _TRUE:
            verify = False
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

    # -- the MetricsProvider protocol -------------------------------------------------

    def measure(
        self, policy: Policy, check: Check, target: Target, *, window_s: int, at: float | None = None
    ) -> tuple[ArmData, ArmData]:
        plan = query_plan(policy, check, target, window_s=window_s)
        name = check.name
        if check.kind in ("latency", "prediction_shift"):
            scale = q.latency_metric(q.preset(policy.source_of(check)), name)[1] if check.kind == "latency" else 1.0
            return self._histograms({arm: plan[arm][_HISTOGRAM] for arm in q.ARMS}, name, window_s, at, scale=scale)
        per_arm = {"error_rate": self._error_counts, "feature_missing": self._missing_counts,
                   "custom": self._custom}[check.kind]
        return per_arm(plan["stable"], name, "stable", window_s, at), per_arm(plan["canary"], name, "canary", window_s, at)

    def request_counts(
        self, policy: Policy, target: Target, *, window_s: int, at: float | None = None, check: str = "request_counts"
    ) -> tuple[float, float]:
        plan = request_plan(policy, target, window_s=window_s)
        out = [self._requests(plan[arm], check, arm, window_s, at) for arm in q.ARMS]
        return out[0], out[1]

    def preflight(self, policy: Policy, target: Target, *, window_s: int | None = None) -> PreflightReport:
        """Ask Prometheus, once each, every query a look of this rollout will send.

        Shapes: the queries are those of `query_plan` for each of `policy.checks`
        and of `request_plan`, both arms, over `window_s` (default: the policy's
        `analysis.interval`, so an empty stable arm means no data over a whole
        step); equal queries are sent once. A known-answer query (`vector(1)`)
        goes first, so a URL that is not Prometheus is told apart from a bad
        check. Returns a `PreflightReport` (empty answers are recorded, not
        raised: a canary has no series before it gets traffic).

        Errors (source: `canary.errors`):
        - ConfigError (exit 2, never retried): a query that cannot be built
          ("policy checks[i] 'name': ...", or "policy metrics: ..."); a query
          Prometheus rejects (HTTP 400/422, bad_data/execution; its error is
          quoted, with the check and arm); 401/403 (credentials); 404, another
          4xx, or an answer that is not Prometheus's JSON (not a Prometheus
          HTTP API: check the path prefix); an invalid URL.
        - MetricsUnavailable (transient): refused, timed out, 5xx/408/429 after
          the provider's bounded retries. Preflight stops at the first one, so
          a server that hangs costs ONE query: at most `query_bound_s` seconds
          (5.45 s with the defaults timeout_s=5, retries=3, budget_s=5). In all,
          preflight takes at most 3 x budget_s (+ one backoff); a server slower
          than that is MetricsUnavailable too.
        """
        t0 = time.monotonic()
        deadline = t0 + 3 * self.budget_s
        window = int(window_s or max(1, math.ceil(policy.analysis.interval)))
        planned = _preflight_plan(policy, target, window)
        answers: dict[str, tuple[int, float | None]] = {}
        self._probe(deadline)
        for where, check, arm, role, query in planned:
            if query not in answers:
                answers[query] = self._preflight_one(query, where=where, check=check, arm=arm, role=role,
                                                     deadline=deadline)
        found = tuple(PreflightQuery(where=w, check=c, arm=a, query=x, series=answers[x][0], value=answers[x][1])
                      for w, c, a, _, x in planned)
        return PreflightReport(url=self.url, window_s=window, queries=found, sent=1 + len(answers),
                               elapsed_s=time.monotonic() - t0)

    # -- preflight -----------------------------------------------------------------------

    def _probe(self, deadline: float) -> None:
        try:
            result = self._ask(_PROBE, check="preflight", arm="", at=None, who="preflight", strict=True,
                               deadline=deadline)
        except _Rejected as exc:  # nothing is wrong with vector(1): whatever answered is not Prometheus
            raise _NotPrometheus(f"{self.url} does not look like a Prometheus HTTP API: it rejected the "
                                 f"query {_PROBE} ({exc}){_PREFIX_HINT}") from exc
        ok = (isinstance(result, list) and len(result) == 1 and isinstance(result[0], dict)
              and result[0].get("metric") == {} and _number(result[0].get("value")) == 1.0)
        if not ok:
            raise _NotPrometheus(f"{self.url} does not look like a Prometheus HTTP API: {_PROBE} answered "
                                 f"{_excerpt(json.dumps(result))} instead of one series of value 1{_PREFIX_HINT}")

    def _preflight_one(self, query: str, *, where: str, check: str, arm: str, role: str,
                       deadline: float) -> tuple[int, float | None]:
        """(series, value) of one answer, checked with the code `measure` reads it with."""
        who = f"policy {where} ({arm} arm)"
        result = self._ask(query, check=check, arm=arm, at=None, who=who, strict=True, deadline=deadline)
        if isinstance(result, list) and result and isinstance(result[0], dict) and "values" in result[0]:
            raise ConfigError(f"{who}: the query returns a range vector; a check needs an instant vector "
                              f"or a scalar; query: {query}")
        series = 1 if _is_scalar(result) else len(result)
        try:
            if role == _HISTOGRAM:  # value: observations in the window (the +Inf bucket)
                pairs = self._bucket_pairs(result, query, check, arm)
                return series, q.normalise(pairs, [le for le, _ in pairs]).total
            return series, self._number_of(result, query, check, arm)
        except NoData:
            return series, (math.nan if series else None)
        except (ConfigError, MetricsUnavailable) as exc:  # the answer's shape, not the wire: fix the query
            detail = str(exc).removeprefix(f"check {check!r}: ")
            raise ConfigError(f"{who}: {detail}") from exc

    # -- per kind ------------------------------------------------------------------------

    def _histograms(
        self, queries: dict[str, str], check: str, window_s: float, at: float | None, *, scale: float = 1.0
    ) -> tuple[Histogram, Histogram]:
        """Both arms on the union of their bounds, so the judge can compare bucket by bucket."""
        raws = {arm: self._buckets(queries[arm], check, arm, at) for arm in q.ARMS}
        bounds = [le for raw in raws.values() for le, _ in raw]
        hists = {arm: q.normalise(raws[arm], bounds, scale=scale) for arm in q.ARMS}
        for arm, h in hists.items():
            if h.total <= 0:
                raise NoData(f"check {check!r}: no observations for {_arm(arm)} in {window_s}s; query: {queries[arm]}")
        return hists["stable"], hists["canary"]

    def _requests(self, query: str, check: str, arm: str, window_s: float, at: float | None) -> float:
        n = self.scalar(query, check=check, arm=arm, at=at)
        if n <= 0:
            raise NoData(f"check {check!r}: no requests for {_arm(arm)} in {window_s}s; query: {query}")
        return n

    def _error_counts(self, plan: dict[str, str], check: str, arm: str, window_s: float, at: float | None) -> Counts:
        total = self._requests(plan["requests"], check, arm, window_s, at)
        errors = self.scalar(plan["errors"], check=check, arm=arm, at=at)
        # the two counters are extrapolated separately; errors may overshoot by a hair
        return Counts(events=min(max(errors, 0.0), total), total=total)

    def _missing_counts(self, plan: dict[str, str], check: str, arm: str, window_s: float, at: float | None) -> Counts:
        query = plan["feature_missing"]
        rate = self.scalar(query, check=check, arm=arm, at=at)
        if rate < 0 or rate > 1 + 1e-9:
            raise ConfigError(
                f"check {check!r}: the feature-missing gauge must be a fraction 0..1, got {rate:g} for {_arm(arm)} "
                f"(exported as a percentage?); query: {query}"
            )
        n = self._requests(plan["requests"], check, arm, window_s, at)
        return Counts(events=min(rate, 1.0) * n, total=n)

    def _custom(self, plan: dict[str, str], check: str, arm: str, window_s: float, at: float | None) -> Scalar:
        value = self.scalar(plan["custom"], check=check, arm=arm, at=at)
        try:
            n = self._requests(plan["requests"], check, arm, window_s, at)
        except NoData:
            n = math.nan  # the custom number stands on its own; n is only evidence
        return Scalar(value=value, n=n)

    # -- querying ------------------------------------------------------------------------

    def scalar(self, query: str, *, check: str = "", arm: str = "", at: float | None = None) -> float:
        """One number from an instant query that must return one series or a scalar."""
        return self._number_of(self.query(query, check=check, arm=arm, at=at), query, check, arm)

    def _number_of(self, result: Any, query: str, check: str, arm: str) -> float:
        if _is_scalar(result):
            value = float(result[1])
        else:
            if not result:
                raise NoData(f"check {check!r}: no series for {_arm(arm)}; query: {query}")
            if len(result) > 1 or "value" not in result[0]:
                raise ConfigError(
                    f"check {check!r}: query must return one number per arm, got {len(result)} series "
                    f"(aggregate with sum() or avg()); query: {query}"
                )
            value = float(result[0]["value"][1])
        if math.isnan(value):
            raise NoData(f"check {check!r}: NaN for {_arm(arm)}; query: {query}")
        return value

    def _buckets(self, query: str, check: str, arm: str, at: float | None) -> list[tuple[float, float]]:
        return self._bucket_pairs(self.query(query, check=check, arm=arm, at=at), query, check, arm)

    def _bucket_pairs(self, result: Any, query: str, check: str, arm: str) -> list[tuple[float, float]]:
        if _is_scalar(result) or not result:
            raise NoData(f"check {check!r}: no histogram series for {_arm(arm)}; query: {query}")
        try:
            raw = [(q.parse_le(s["metric"]["le"]), float(s["value"][1])) for s in result]
        except (KeyError, ValueError, TypeError) as exc:
            raise MetricsUnavailable(f"check {check!r}: malformed histogram answer for {_arm(arm)}; query: {query}") from exc
        return raw

    def query(self, query: str, *, check: str = "", arm: str = "", at: float | None = None) -> Any:
        """Instant query with bounded retries; returns Prometheus's `data.result` as is."""
        return self._ask(query, check=check, arm=arm, at=at, who=f"check {check!r}", strict=False, deadline=None)

    def _ask(self, query: str, *, check: str, arm: str, at: float | None, who: str, strict: bool,
             deadline: float | None) -> Any:
        """`query`, and preflight's stricter variant: a 2xx that is not Prometheus's answer
        is then a ConfigError at once instead of a retried transient failure."""
        at = self.at if at is None else at
        params = {} if at is None else {"time": f"{at:.3f}"}
        now = time.monotonic()
        deadline = now + self.budget_s if deadline is None else min(deadline, now + self.budget_s)
        if deadline <= now:
            raise MetricsUnavailable(f"{who}: no time left in the budget to ask Prometheus at {self.url}; query: {query}")
        retrying = Retrying(
            stop=stop_after_attempt(self.retries) | stop_after_delay(deadline - now),
            wait=wait_exponential(multiplier=self.backoff_s, max=_MAX_BACKOFF_S),
            retry=retry_if_exception_type(_Transient),
            reraise=True,
            before_sleep=lambda rs: log.warning(
                "metrics.query_retry", check=check, arm=arm, attempt=rs.attempt_number,
                error=str(rs.outcome.exception()) if rs.outcome else "",
            ),
        )
        try:
            for attempt in retrying:
                with attempt:
                    timeout = max(_MIN_TIMEOUT_S, min(self.timeout_s, deadline - time.monotonic()))
                    result = self._once(query, params, timeout, who, strict)
                    if strict and not _well_formed(result):
                        raise _NotPrometheus(f"{self.url} does not look like a Prometheus HTTP API: its answer has "
                                             f"no list of series in data.result ({_excerpt(json.dumps(result))})"
                                             f"{_PREFIX_HINT}")
                    return result
        except _Transient as exc:
            log.error("metrics.query_failed", check=check, arm=arm, url=self.url, error=str(exc), query=query)
            raise MetricsUnavailable(
                f"{who}: Prometheus at {self.url} could not be asked for {_arm(arm)} ({exc}); query: {query}"
            ) from exc.__cause__ or exc
        raise AssertionError("unreachable")  # pragma: no cover

    def _once(self, query: str, params: dict[str, str], timeout: float, who: str, strict: bool) -> Any:
        try:
            return self._client.custom_query(query, params=params, timeout=timeout)  # type: ignore[arg-type]
        except PrometheusApiClientException as exc:
            status, body = _status_and_body(exc)
            if 400 <= status < 500 and status not in (408, 429):
                raise self._refused(status, body, query, who) from exc
            raise _Transient(f"HTTP {status or '?'}") from exc
        except requests.exceptions.Timeout as exc:
            raise _Transient(f"timed out after {timeout:.1f}s") from exc
        except requests.exceptions.ConnectionError as exc:
            raise _Transient("connection failed") from exc
        except (requests.exceptions.InvalidURL, requests.exceptions.MissingSchema,
                requests.exceptions.InvalidSchema) as exc:
            raise ConfigError(f"Prometheus URL {self.url!r} is not a valid http(s) URL ({exc})") from exc
        except (requests.exceptions.RequestException, urllib3.exceptions.HTTPError, ValueError, KeyError, TypeError) as exc:
            doc = getattr(exc, "doc", None)  # a JSONDecodeError keeps the text it could not read
            what = f"not JSON: {_excerpt(doc)}" if isinstance(doc, str) else type(exc).__name__
            if strict:
                raise _NotPrometheus(f"{self.url} does not look like a Prometheus HTTP API: GET /api/v1/query "
                                     f"answered {what}{_PREFIX_HINT}") from exc
            raise _Malformed(f"malformed answer: {type(exc).__name__}") from exc

    def _refused(self, status: int, body: bytes, query: str, who: str) -> ConfigError:
        """The ConfigError for a 4xx: a rejected query, credentials, or not a Prometheus API."""
        prom = _prometheus_error(body)
        if status in (400, 422) or (prom is not None and prom[0] in ("bad_data", "execution")):
            error = f"{prom[0]}: {prom[1]}" if prom else _excerpt(body)
            return _Rejected(f"{who}: Prometheus rejected the query (HTTP {status} {error}); query: {query}")
        if status in (401, 403):
            return ConfigError(
                f"Prometheus at {self.url} refused our credentials (HTTP {status}: {_excerpt(body)}); check "
                "--prometheus-token, or --prometheus-user/--prometheus-password (CANARY_PROMETHEUS_TOKEN/USER/PASSWORD)"
            )
        return _NotPrometheus(f"{self.url} does not look like a Prometheus HTTP API: GET /api/v1/query answered "
                              f"HTTP {status} ({_excerpt(body)}){_PREFIX_HINT}")


_PREFIX_HINT = ("; check the path prefix in --prometheus-url (a reverse proxy's path such as /prometheus, "
                "or Prometheus's --web.route-prefix), which must be the part before /api/v1")


def _preflight_plan(policy: Policy, target: Target, window_s: int) -> list[tuple[str, str, str, str, str]]:
    """(where, check, arm, role, query) for every query of a look, in the order a look sends them."""
    out: list[tuple[str, str, str, str, str]] = []
    for i, check in enumerate(policy.checks):
        where = f"checks[{i}] {check.name!r}"
        try:
            plan = query_plan(policy, check, target, window_s=window_s)
        except (ConfigError, ValueError) as exc:  # queries.selector: ValueError for an identity label override
            raise ConfigError(f"policy {where}: {exc}") from exc
        out += [(where, check.name, arm, role, query) for arm in q.ARMS for role, query in plan[arm].items()]
    try:
        counts = request_plan(policy, target, window_s=window_s)
    except (ConfigError, ValueError) as exc:
        raise ConfigError(f"policy metrics: {exc}") from exc
    return out + [("request counts", "request_counts", arm, "requests", counts[arm]) for arm in q.ARMS]


def _is_scalar(result: Any) -> bool:
    return isinstance(result, list) and len(result) == 2 and not isinstance(result[0], dict)


def _well_formed(result: Any) -> bool:
    """data.result as Prometheus writes it: a [time, "value"] pair, or a list of series."""
    if _is_scalar(result):
        return isinstance(result[1], str)
    return isinstance(result, list) and all(
        isinstance(s, dict) and isinstance(s.get("metric"), dict) and ("value" in s or "values" in s) for s in result
    )


def _number(pair: Any) -> float | None:
    try:
        return float(pair[1])
    except (TypeError, ValueError, IndexError, KeyError):
        return None


def _arm(arm: str) -> str:
    return f"the {arm} arm" if arm else "the query"


def _status_and_body(exc: Exception) -> tuple[int, bytes]:
    """HTTP status and body from the client's exception ("HTTP Status Code 400 (b'...')")."""
    text = str(exc)
    m = _STATUS.search(text)
    b = _BODY.search(text)
    try:
        body = ast.literal_eval(b.group(1)) if b else b""
    except (ValueError, SyntaxError):
        body = b""
    return (int(m.group(1)) if m else 0), (body if isinstance(body, bytes) else b"")


def _prometheus_error(body: bytes) -> tuple[str, str] | None:
    """(errorType, error) when the body is Prometheus's error JSON."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    if isinstance(data, dict) and data.get("status") == "error" and "error" in data:
        return str(data.get("errorType", "")), str(data["error"])
    return None


def _excerpt(text: bytes | str | None, limit: int = 120) -> str:
    """The start of a body, on one line, for a message (an HTML page says what answered)."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    flat = " ".join((text or "").split())
    if not flat:
        return "empty body"
    return repr(flat if len(flat) <= limit else flat[:limit] + "...")
