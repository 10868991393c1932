"""PrometheusProvider: the MetricsProvider that asks a real Prometheus.

Everything that can go wrong on the wire is turned into our error tree here,
so the judge only ever sees data or a named reason for having none:

- connection refused, timeout, 5xx/408/429, a malformed answer: retried with
  tenacity within a bounded budget (``retries`` attempts and ``budget_s``
  seconds in all, each request's timeout cut to what is left), then
  `MetricsUnavailable` -- "could not measure", never a pass;
- 4xx (a bad query): `ConfigError` naming the check and the query, at once;
- an empty answer, NaN, or an arm with zero requests: `NoData` naming the
  check, the arm and the query.

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
from canary.model import ArmData, Counts, Histogram, Scalar, Target
from canary.policy import Check, Policy

log = structlog.get_logger(__name__)
_STATUS = re.compile(r"HTTP Status Code (\d+)")
_BODY = re.compile(r"HTTP Status Code \d+ \((b'.*'|b\".*\")\)\s*$", re.DOTALL)
_TRUE = {"1", "true", "yes", "on"}


class _Transient(Exception):
    """One failed attempt worth another try (internal to the retry loop)."""


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

    # -- the MetricsProvider protocol -------------------------------------------------

    def measure(
        self, policy: Policy, check: Check, target: Target, *, window_s: int, at: float | None = None
    ) -> tuple[ArmData, ArmData]:
        source = policy.source_of(check)
        p = q.preset(source)
        name = check.name
        if check.kind == "custom":
            return self._custom(policy, check, target, "stable", window_s, at), \
                self._custom(policy, check, target, "canary", window_s, at)
        sels = {arm: q.selector(policy, target, arm, source) for arm in q.ARMS}
        if check.kind == "latency":
            base, scale = q.latency_metric(p, name)
            return self._histograms(base, sels, name, window_s, at, scale=scale)
        if check.kind == "prediction_shift":
            return self._histograms(q.prediction_metric(p, name, check.metric), sels, name, window_s, at)
        if check.kind == "error_rate":
            per_arm = self._error_counts
        elif check.kind == "feature_missing":
            q.feature_metric(p, name)
            per_arm = self._missing_counts
        else:
            raise ConfigError(f"check {name!r}: unknown kind {check.kind!r}")
        return per_arm(p, sels["stable"], name, "stable", window_s, at), \
            per_arm(p, sels["canary"], name, "canary", window_s, at)

    def request_counts(
        self, policy: Policy, target: Target, *, window_s: int, at: float | None = None, check: str = "request_counts"
    ) -> tuple[float, float]:
        source = policy.metrics.source
        p = q.preset(source)
        out = [self._requests(p, q.selector(policy, target, arm, source), check, arm, window_s, at) for arm in q.ARMS]
        return out[0], out[1]

    # -- per kind ------------------------------------------------------------------------

    def _histograms(
        self, base: str, sels: dict[str, str], check: str, window_s: float, at: float | None, *, scale: float = 1.0
    ) -> tuple[Histogram, Histogram]:
        """Both arms on the union of their bounds, so the judge can compare bucket by bucket."""
        queries = {arm: q.histogram_query(base, sels[arm], window_s) for arm in q.ARMS}
        raws = {arm: self._buckets(queries[arm], check, arm, at) for arm in q.ARMS}
        bounds = [le for raw in raws.values() for le, _ in raw]
        hists = {arm: q.normalise(raws[arm], bounds, scale=scale) for arm in q.ARMS}
        for arm, h in hists.items():
            if h.total <= 0:
                raise NoData(f"check {check!r}: no observations for {_arm(arm)} in {window_s}s; query: {queries[arm]}")
        return hists["stable"], hists["canary"]

    def _requests(self, p: q.Preset, sel: str, check: str, arm: str, window_s: float, at: float | None) -> float:
        query = q.requests_query(p, sel, window_s)
        n = self.scalar(query, check=check, arm=arm, at=at)
        if n <= 0:
            raise NoData(f"check {check!r}: no requests for {_arm(arm)} in {window_s}s; query: {query}")
        return n

    def _error_counts(self, p: q.Preset, sel: str, check: str, arm: str, window_s: float, at: float | None) -> Counts:
        total = self._requests(p, sel, check, arm, window_s, at)
        errors = self.scalar(q.errors_query(p, sel, window_s), check=check, arm=arm, at=at)
        # the two counters are extrapolated separately; errors may overshoot by a hair
        return Counts(events=min(max(errors, 0.0), total), total=total)

    def _missing_counts(self, p: q.Preset, sel: str, check: str, arm: str, window_s: float, at: float | None) -> Counts:
        query = q.feature_missing_query(p, sel, window_s)
        rate = self.scalar(query, check=check, arm=arm, at=at)
        if rate < 0 or rate > 1 + 1e-9:
            raise ConfigError(
                f"check {check!r}: {p.feature_missing} must be a fraction 0..1, got {rate:g} for {_arm(arm)} "
                f"(exported as a percentage?); query: {query}"
            )
        n = self._requests(p, sel, check, arm, window_s, at)
        return Counts(events=min(rate, 1.0) * n, total=n)

    def _custom(self, policy: Policy, check: Any, target: Target, arm: str, window_s: float, at: float | None) -> Scalar:
        query = q.render_custom(
            check.template(arm), check_name=check.name, model=target.model,
            version=q.arm_version(target, arm), namespace=target.namespace, window_s=window_s,
        )
        value = self.scalar(query, check=check.name, arm=arm, at=at)
        source = policy.source_of(check)
        try:
            n = self._requests(q.preset(source), q.selector(policy, target, arm, source), check.name, arm, window_s, at)
        except NoData:
            n = math.nan  # the custom number stands on its own; n is only evidence
        return Scalar(value=value, n=n)

    # -- querying ------------------------------------------------------------------------

    def scalar(self, query: str, *, check: str = "", arm: str = "", at: float | None = None) -> float:
        """One number from an instant query that must return one series or a scalar."""
        result = self.query(query, check=check, arm=arm, at=at)
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
        result = self.query(query, check=check, arm=arm, at=at)
        if _is_scalar(result) or not result:
            raise NoData(f"check {check!r}: no histogram series for {_arm(arm)}; query: {query}")
        try:
            raw = [(q.parse_le(s["metric"]["le"]), float(s["value"][1])) for s in result]
        except (KeyError, ValueError, TypeError) as exc:
            raise MetricsUnavailable(f"check {check!r}: malformed histogram answer for {_arm(arm)}; query: {query}") from exc
        return raw

    def query(self, query: str, *, check: str = "", arm: str = "", at: float | None = None) -> Any:
        """Instant query with bounded retries; returns Prometheus's `data.result` as is."""
        at = self.at if at is None else at
        params = {} if at is None else {"time": f"{at:.3f}"}
        deadline = time.monotonic() + self.budget_s
        retrying = Retrying(
            stop=stop_after_attempt(self.retries) | stop_after_delay(self.budget_s),
            wait=wait_exponential(multiplier=self.backoff_s, max=1.0),
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
                    timeout = max(0.05, min(self.timeout_s, deadline - time.monotonic()))
                    return self._once(query, params, timeout, check)
        except _Transient as exc:
            log.error("metrics.query_failed", check=check, arm=arm, url=self.url, error=str(exc), query=query)
            raise MetricsUnavailable(
                f"check {check!r}: Prometheus at {self.url} could not be asked for {_arm(arm)} "
                f"({exc}); query: {query}"
            ) from exc.__cause__ or exc
        raise AssertionError("unreachable")  # pragma: no cover

    def _once(self, query: str, params: dict[str, str], timeout: float, check: str) -> Any:
        try:
            return self._client.custom_query(query, params=params, timeout=timeout)  # type: ignore[arg-type]
        except PrometheusApiClientException as exc:
            m = _STATUS.search(str(exc))
            status = int(m.group(1)) if m else 0
            if 400 <= status < 500 and status not in (408, 429):
                raise ConfigError(f"check {check!r}: Prometheus refused the query ({_error_text(exc)}); query: {query}") from exc
            raise _Transient(f"HTTP {status or '?'}") from exc
        except requests.exceptions.Timeout as exc:
            raise _Transient(f"timed out after {timeout:.1f}s") from exc
        except requests.exceptions.ConnectionError as exc:
            raise _Transient("connection failed") from exc
        except (requests.exceptions.RequestException, urllib3.exceptions.HTTPError, ValueError, KeyError, TypeError) as exc:
            raise _Transient(f"malformed answer: {type(exc).__name__}") from exc


def _is_scalar(result: Any) -> bool:
    return isinstance(result, list) and len(result) == 2 and not isinstance(result[0], dict)


def _arm(arm: str) -> str:
    return f"the {arm} arm" if arm else "the query"


def _error_text(exc: Exception) -> str:
    """Prometheus's own error string: the client puts repr(response body) in its message."""
    m = _BODY.search(str(exc))
    try:
        return str(json.loads(ast.literal_eval(m.group(1)))["error"]) if m else str(exc)
    except (ValueError, SyntaxError, KeyError, TypeError):
        return str(exc)
