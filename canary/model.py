"""Values shared by every layer: weights, measurements, verdicts, rollout state.

All are frozen and check their invariants on construction, so a value that
exists is a valid one (a `Weights` always sums to 100, a `Histogram` is
cumulative and non-decreasing). Nothing here does I/O.
"""

from __future__ import annotations

import enum
import math
import re
from dataclasses import dataclass, field, fields
from typing import Any

from canary.errors import ConfigError


@dataclass(frozen=True)
class Weights:
    """Traffic split between the stable and canary subsets, integers summing to 100."""

    stable: int
    canary: int

    def __post_init__(self) -> None:
        for name in ("stable", "canary"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"Weights.{name} must be an int, got {value!r}")
            if not 0 <= value <= 100:
                raise ValueError(f"Weights.{name} must be within 0..100, got {value}")
        if self.stable + self.canary != 100:
            raise ValueError(f"weights must sum to 100, got {self.stable}+{self.canary}")

    @classmethod
    def canary_at(cls, canary: int) -> "Weights":
        return cls(stable=100 - canary, canary=canary)

    def __str__(self) -> str:
        return f"{self.stable}/{self.canary}"


STABLE_ONLY = Weights(stable=100, canary=0)


@dataclass(frozen=True)
class Histogram:
    """Prometheus-style cumulative histogram: counts[i] = observations <= bounds[i].

    The last bound is +Inf, so counts[-1] is the total number of observations. `requests`: the
    arm's request count over the same window where observations are not requests (a prediction
    histogram counts one per output row: 4 per request, or 100 for a batched model), None when not
    known; `analysis.min_canary_requests` is compared with it, never with rows.
    """

    bounds: tuple[float, ...]
    counts: tuple[float, ...]
    requests: float | None = None

    def __post_init__(self) -> None:
        _request_count(self.requests)
        if len(self.bounds) != len(self.counts):
            raise ValueError("histogram bounds and counts differ in length")
        if not self.bounds or not math.isinf(self.bounds[-1]):
            raise ValueError("histogram must end with a +Inf bucket")
        for a, b in zip(self.bounds, self.bounds[1:]):
            if not a < b:
                raise ValueError(f"histogram bounds must increase strictly ({a} then {b})")
        # NaN (a bucket Prometheus could not compute) compares false with everything: the known counts are
        # checked among themselves, so [NaN, -5, 900] is refused as [-5, 900] is
        known = [c for c in self.counts if not math.isnan(c)]
        for a, b in zip(known, known[1:]):
            if b < a:
                raise ValueError(f"histogram counts must be cumulative, non-decreasing ({a} then {b})")
        if known and known[0] < 0:
            raise ValueError(f"histogram counts must be non-negative ({known[0]})")

    @property
    def total(self) -> float:
        return self.counts[-1]

    def per_bucket(self) -> tuple[float, ...]:
        """Non-cumulative counts, one per bucket."""
        prev = 0.0
        out = []
        for c in self.counts:
            out.append(c - prev)
            prev = c
        return tuple(out)


@dataclass(frozen=True)
class Counts:
    """Events out of a total (errors of requests, missing features of requests)."""

    events: float
    total: float

    def __post_init__(self) -> None:
        if self.events < 0 or self.total < 0:
            raise ValueError("counts must be non-negative")
        if self.events > self.total + 1e-9:
            raise ValueError(f"events ({self.events}) exceed total ({self.total})")

    @property
    def rate(self) -> float:
        return self.events / self.total if self.total > 0 else math.nan


@dataclass(frozen=True)
class Scalar:
    """One number per arm (custom PromQL checks) with the request count behind it. `unchecked`: why a scrape
    fault (a target read by two jobs, or down) could not be looked for in the series behind it ("" when it was)."""

    value: float
    n: float = math.nan
    unchecked: str = ""


@dataclass(frozen=True)
class FeatureCounts:
    """One arm's live input features over a window (what `canary.drift.exporter` exports).

    `numeric`: feature -> cumulative Histogram over the bounds the arm exports (the feature's
    own units); `categorical`: feature -> category -> count; `missing`: feature -> values
    missing (None, NaN, absent). A feature is numeric or categorical, never both.
    """

    numeric: dict[str, Histogram] = field(default_factory=dict)
    categorical: dict[str, dict[str, float]] = field(default_factory=dict)
    missing: dict[str, float] = field(default_factory=dict)
    requests: float | None = None  # the arm's requests over the window (rows are not requests); None: unknown

    def __post_init__(self) -> None:
        _request_count(self.requests)
        both = sorted(set(self.numeric) & set(self.categorical))
        if both:
            raise ValueError(f"feature {both[0]!r} is both numeric and categorical")
        for name, cats in self.categorical.items():
            if any(not math.isfinite(v) or v < 0 for v in cats.values()):
                raise ValueError(f"feature {name!r}: category counts must be finite and non-negative")
        for name, v in self.missing.items():
            if not math.isfinite(v) or v < 0:
                raise ValueError(f"feature {name!r}: the missing count must be finite and non-negative")

    def names(self) -> set[str]:
        """Features with any series (values, categories or missing counts)."""
        return set(self.numeric) | set(self.categorical) | set(self.missing)

    def kind(self, name: str) -> str | None:
        return "numeric" if name in self.numeric else "categorical" if name in self.categorical else None

    def observed(self, name: str) -> float:
        """Values seen for one feature, missing ones included."""
        present = (self.numeric[name].total if name in self.numeric
                   else sum(self.categorical.get(name, {}).values()))
        return float(present + self.missing.get(name, 0.0))

    @property
    def total(self) -> float:
        """Observations of the most observed feature: the arm's requests, as far as features tell."""
        return max((self.observed(n) for n in self.names()), default=0.0)


ArmData = Histogram | Counts | Scalar | FeatureCounts


def _request_count(n: float | None) -> None:
    if n is not None and (isinstance(n, bool) or not isinstance(n, (int, float)) or not 0 <= n < math.inf):
        raise ValueError(f"requests must be a finite count >= 0 or None, got {n!r}")


class Outcome(enum.IntEnum):
    """Ordered verdict: a larger value is worse, and the worst one wins."""

    PASS = 0
    INCONCLUSIVE = 1  # measured, but not enough evidence either way
    ERROR = 2  # could not measure; never a promotion, never "the canary is bad"
    FAIL = 3  # the canary breaches the policy

    @property
    def label(self) -> str:
        return self.name.lower()


@dataclass(frozen=True)
class CheckResult:
    """One check's verdict with every number behind it."""

    check: str
    kind: str
    outcome: Outcome
    reason: str  # one line a human understands
    stable_value: float = math.nan
    canary_value: float = math.nan
    n_stable: float = 0.0
    n_canary: float = 0.0
    threshold: float = math.nan
    statistic: float = math.nan
    p_value: float = math.nan
    effect_size: float = math.nan
    alpha: float = math.nan
    hard: bool = False  # a breach rolls back at once, whatever the failure count
    extra: dict[str, Any] = field(default_factory=dict)
    # the units of `threshold` (and `effect_size`) and of `stable_value`/`canary_value`, which differ by the
    # sub-test that decided: "ms", "%" (a rate: errors, missing features), "+%" (an increase relative to
    # stable, in %: latency), "points" (an increase in percentage points), "psi", "js" (the statistics),
    # "ratio" (custom canary/stable), "" (a custom query's own unit, or no threshold); `with_unit` prints one
    threshold_unit: str = ""
    value_unit: str = ""
    # which of `stable_value`, `canary_value` and `effect_size` are only bounds: ">" (the true value lies
    # above the number: a latency quantile in the open +Inf bucket is only known to exceed the last finite
    # bound) or "<" (below it); a field not named is a value. `with_unit(..., bound=)` prints ">300 ms"
    bounded: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Every field as JSON values (NaN/inf -> None at the top level; `n_stable`/`n_canary` None
        for an ERROR that counted neither arm, `unmeasured`); `extra` copied, so the
        dict can be changed without changing the result. What `dataclasses.asdict` gives, without
        its deepcopy of every leaf (measured at 3% of the controller's CPU per look)."""
        d = {name: _json_number(getattr(self, name)) for name in _CHECK_FIELDS}
        d["outcome"] = self.outcome.label
        if unmeasured(d["outcome"], self.n_canary, self.n_stable):  # no count of either arm, not "no traffic"
            d["n_stable"] = d["n_canary"] = None
        d["extra"] = _plain_copy(self.extra)
        d["bounded"] = dict(self.bounded)
        return d


@dataclass(frozen=True)
class Verdict:
    """All checks of one look, combined worst-of."""

    outcome: Outcome
    results: tuple[CheckResult, ...]

    @classmethod
    def combine(cls, results: tuple[CheckResult, ...] | list[CheckResult]) -> "Verdict":
        results = tuple(results)
        worst = max((r.outcome for r in results), default=Outcome.INCONCLUSIVE)
        return cls(outcome=worst, results=results)

    @property
    def hard_breach(self) -> bool:
        return any(r.hard and r.outcome is Outcome.FAIL for r in self.results)

    @property
    def failed(self) -> tuple[CheckResult, ...]:
        return tuple(r for r in self.results if r.outcome is Outcome.FAIL)

    def reason(self) -> str:
        """The reason of the worst result(s), joined: what on-call reads first. With several, each
        without the query it sent (in the evidence) and checks with the same words named together:
        five checks Prometheus could not answer made one line of ~2,000 characters."""
        worst = [r for r in self.results if r.outcome is self.outcome]
        if len(worst) < 2:
            return "; ".join(f"{r.check}: {r.reason}" for r in worst) or self.outcome.label
        said: dict[str, list[tuple[str, str]]] = {}  # one cause -> (check, its words)
        for r in worst:
            text = r.reason.split("; query: ")[0].replace(f"check '{r.check}': ", "")
            said.setdefault(_ASKED_FOR.sub("could not be asked (", text), []).append((r.check, text))
        # the query a Prometheus that could not be asked failed on first (the stable arm's, or a check's one query
        # for both arms, decision 175) is no part of the cause: checks that differ only in it are one cause, said
        # without it; with the same query words they keep them
        return "; ".join(f"{', '.join(c for c, _ in hit)}: {hit[0][1] if len({t for _, t in hit}) == 1 else cause}"
                         for cause, hit in said.items())

    def window_evidence(self) -> dict[str, tuple[float, float]]:
        """This look's contribution of its own window per sub-test "check/test": (z*sqrt(I), I); and
        per exact test "check/test.exact" its pooled part (a ceiling's exceedance count and requests, an
        increase's log factor and 1; docs/judge.md, "The exact tests pooled over windows").

        What a caller keeps while the window is open and adds to the rollout's prior evidence
        when it closes (the step advances, or an operator resumes); see analysis.sequential.
        """
        out: dict[str, tuple[float, float]] = {}
        for r in self.results:
            for t in r.extra.get("tests", ()):
                if t.get("info_window"):
                    out[f"{r.check}/{t['test']}"] = (float(t["s_window"]), float(t["info_window"]))
                    part = t.get("exact_window")  # an exact test's pooled part (analysis.judge._pool, decision 151)
                    if part:
                        out[f"{r.check}/{t['test']}.exact"] = (float(part[0]), float(part[1]))
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"outcome": self.outcome.label, "results": [r.to_dict() for r in self.results]}


_ASKED_FOR = re.compile(r"could not be asked for (?:the \w+ arm|the query|both arms) \(")  # client.py's words

_CHECK_FIELDS = tuple(f.name for f in fields(CheckResult))


def unmeasured(outcome: str, n_canary: Any, n_stable: Any) -> bool:
    """Whether a check's row is an ERROR with no request counts: the check could not measure, and
    CheckResult's 0.0 defaults are no count of either arm (decision 190). The terminal's tables and the
    HTML report show "-" for its n, never "0/0" (read as arms with no traffic)."""
    return outcome == "error" and not n_canary and not n_stable


def with_unit(value: Any, unit: str | None, digits: int = 4, *, bound: str | None = None) -> str:
    """A threshold or value as tables print it, with its unit (`CheckResult.threshold_unit`): '50 ms',
    '1%', '+50%', '+1 points', 'PSI 0.1', 'x1.2'; '-' for none or not a finite number. `bound`: ">" or "<"
    for a number that is only a bound (`CheckResult.bounded`), printed before it: '>300 ms', '<-68%'."""
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return "-"
    side = bound if bound in (">", "<") else ""
    v, signed = f"{side}{value:.{digits}g}", f"{side}{value:+.{digits}g}"  # an increase keeps its sign: -5%, +20%
    return {"ms": f"{v} ms", "%": f"{v}%", "+%": f"{signed}%", "points": f"{signed} points", "psi": f"PSI {v}",
            "js": f"JS {v}", "ratio": f"x{v}"}.get(unit or "", v)


def _plain_copy(value: Any) -> Any:
    """A copy of nested dicts, lists and tuples (as asdict copies them; leaves are shared)."""
    if isinstance(value, dict):
        return {k: _plain_copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain_copy(v) for v in value]
    if isinstance(value, tuple):
        items = [_plain_copy(v) for v in value]
        return type(value)(*items) if hasattr(value, "_fields") else type(value)(items)
    return value


def _json_number(value: Any) -> Any:
    """NaN/inf are not JSON; they become None (unknown) in every serialised form."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


@dataclass(frozen=True)
class Target:
    """What one rollout drives: the Istio objects and the two versions."""

    namespace: str
    virtual_service: str
    model: str
    stable_version: str
    canary_version: str
    destination_rule: str = ""  # defaults to the VirtualService's name
    route: str = ""  # name of the HTTP route; "" means the only one

    @property
    def dr_name(self) -> str:
        return self.destination_rule or self.virtual_service

    def is_route_path(self, path: str) -> bool:
        """Whether an API request path is of this target's VirtualService or DestinationRule (Istio's group, any
        version): the route's own requests, which keep `promote`'s grace after a signal (`kube.bound_by`'s
        `route`; decisions 407, 416)."""
        return path.startswith("/apis/networking.istio.io/") and path.endswith((
            f"/namespaces/{self.namespace}/virtualservices/{self.virtual_service}",
            f"/namespaces/{self.namespace}/destinationrules/{self.dr_name}"))

    def log_context(self) -> dict[str, str]:
        """What every line about this rollout carries (docs/reference/events.md): model, namespace, VirtualService,
        both versions, the route; the empty ones left out (a version not known yet, the only route).
        `reconcile.rollout_context` gives a recorded state's versions and route precedence."""
        ctx = {"model": self.model, "namespace": self.namespace, "virtual_service": self.virtual_service,
               "stable_version": self.stable_version, "canary_version": self.canary_version, "route": self.route}
        return {k: v for k, v in ctx.items() if v}


def rollback_command(target: Target) -> str:
    """The command on-call runs to send `target`'s route to stable 100% now (a line's `hint`)."""
    route = f" --route {target.route}" if target.route else ""
    return f"canary rollback {target.model} -n {target.namespace} --virtual-service {target.virtual_service}{route}"


_LABEL_VALUE = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?", re.ASCII)


def check_version(value: object, what: str) -> None:
    """A version is what a subset selects (a `version=<v>` label): it must be a valid, non-empty
    Kubernetes label value, or the subset would select no pod. Raises ConfigError (exit 2)."""
    if not isinstance(value, str) or not _LABEL_VALUE.fullmatch(value):
        raise ConfigError(f"{what} {value!r} is not a Kubernetes label value "
                          "(1-63 of A-Z a-z 0-9 - _ and ., starting and ending with a letter or digit)")


def check_versions(canary_version: object, stable_version: object) -> None:
    """`--canary-version` and `--stable-version` (empty: not given, read from the stable subset) as `promote` and
    `promote --via-controller` take them: label values, and two. ConfigError (exit 2), before anything is read;
    one wording for both entry points (decision 743)."""
    check_version(canary_version, "--canary-version")
    if stable_version:
        check_version(stable_version, "--stable-version")
        if stable_version == canary_version:
            raise ConfigError(f"--canary-version {canary_version!r} is --stable-version too: a rollout compares a new "
                              "version with the one serving; nothing was read or written")


_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", re.ASCII)
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*", re.ASCII)


def check_object_name(value: object, what: str) -> None:
    """A VirtualService or DestinationRule name: a DNS-1123 subdomain (lower-case letters, digits, '-'
    and '.', at most 253), as the API server requires; ConfigError (exit 2) naming `what` before any
    request is sent (`../x` or `a/b` went into the request path)."""
    if not isinstance(value, str) or len(value) > 253 or not _DNS_SUBDOMAIN.fullmatch(value):
        raise ConfigError(f"{what} {value!r} is not a Kubernetes object name (a DNS-1123 subdomain: at most 253 "
                          "lower-case letters, digits, '-' and '.', starting and ending with a letter or digit)")


def check_namespace(value: object, what: str) -> None:
    """A namespace: a DNS-1123 label (lower-case letters, digits and '-', at most 63); ConfigError."""
    if not isinstance(value, str) or not _DNS_LABEL.fullmatch(value):
        raise ConfigError(f"{what} {value!r} is not a Kubernetes namespace (a DNS-1123 label: at most 63 "
                          "lower-case letters, digits and '-', starting and ending with a letter or digit)")


def route_name_problem(route: str) -> str:
    """Why `route` (a VirtualService HTTP route's name as typed: `--route`, a policy's `route`, `spec.route`) can
    name no route anyone meant: whitespace at its start or end, or a character that does not print (a control
    character, a zero-width space), else "". Istio leaves a route's name free text, so one inside a name is kept;
    these were taken, then said "route not found" once the VirtualService was read, the name shown as it reads
    (decision 702)."""
    if route != route.strip():
        return "has whitespace at its start or end"
    bad = next((ch for ch in route if not ch.isprintable()), None)
    return f"holds U+{ord(bad):04X}, a character that does not print" if bad is not None else ""


def check_target_names(target: "Target", where: str = "") -> None:
    """The target's namespace, VirtualService and DestinationRule are valid Kubernetes names
    (`check_namespace`, `check_object_name`); `where` prefixes the messages (a CR's location)."""
    at = f"{where}: " if where else ""
    check_namespace(target.namespace, f"{at}namespace")
    check_object_name(target.virtual_service,
                      f"{at}VirtualService (the model name unless --virtual-service or spec.virtualService names another)")
    if target.destination_rule:
        check_object_name(target.destination_rule, f"{at}DestinationRule")
    problem = route_name_problem(target.route)
    if problem:
        raise ConfigError(f"{at}route {target.route!r} {problem}: no route of a VirtualService is meant by it "
                          "(--route, the policy's route or spec.route); nothing was read or written")


def pass_ratio(anchor_requests: float, canary_requests: float) -> float:
    """A look's canary requests over its window's anchor (the first look that could pass), >= 1.

    The judge sets the pass level of a look by it (`evidence.pass_level`). 1 before the anchor
    is set (`anchor_requests` < 0 or 0) and for a look with fewer requests than the anchor
    (such a look cannot pass); infinite for a non-finite count (the level of the 64th doubling past
    the plan, about 1e-8: such a look is all but unable to pass)."""
    if not anchor_requests > 0:
        return 1.0
    if not math.isfinite(canary_requests):
        return math.inf
    return max(1.0, canary_requests / anchor_requests)


def request_count(n: float) -> float:
    """`n` when it can be a count of requests, else 0.0: +Inf (a counter that overflowed), NaN or a
    negative number is no count (a look on it cannot pass, and nothing non-finite is stored)."""
    return float(n) if isinstance(n, (int, float)) and math.isfinite(n) and n >= 0 else 0.0


def pass_floor(min_canary_requests: int) -> float:
    """Canary requests a window needs before a look can pass: `min_canary_requests`, and at least one
    (a pass on no canary request is no evidence)."""
    return max(1.0, float(min_canary_requests))


def next_pass_anchor(anchor: float, canary_requests: float, before: float, *, covered_s: float, interval_s: float,
                     min_canary_requests: int) -> float:
    """The window's anchor after a look (`pass_ratio`): set once, at the first look that could pass
    (covering the interval, at least `pass_floor` requests, not fewer than an earlier look's
    `before`), whatever its outcome: traffic fixes it, not the data. That look was judged at ratio 1."""
    n = canary_requests
    if anchor < 0 and covered_s >= interval_s and n >= pass_floor(min_canary_requests) and not 0 <= n < before:
        return float(n)
    return anchor


def valid_pass_anchor(value: float) -> bool:
    """A recorded anchor is -1 (none yet) or a positive count."""
    return value == -1.0 or value > 0
