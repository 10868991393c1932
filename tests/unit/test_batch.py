"""Batched snapshots and deltas: query shapes, escaping, grouping, delta arithmetic. No Prometheus.

`FakeProm` evaluates the one PromQL shape the batch sends, `last_over_time(metric{...}[10m])`,
with a strict parser: a query it cannot parse fails the test, so an injected
name shows up as a parse failure, and regex matchers run through Python's `re`
(the escaped RE2 metacharacters mean the same there). Like Prometheus it answers
every series with all its labels but `__name__`.
"""

from __future__ import annotations

import math
import re
from typing import Any

import pytest

from canary.errors import ConfigError, MetricsUnavailable, NoData, PolicyError
from canary.metrics import batch as b
from canary.metrics import queries as q
from canary.model import Counts, Histogram, Target
from canary.policy import Policy, parse_policy

T = Target(namespace="ml", virtual_service="rec", model="rec", stable_version="v1", canary_version="v2")
EVIL = 'rec"}or vector(1)#'
_QUERY = re.compile(r"^last_over_time\(([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\[(\d+[smh])\]\)$", re.DOTALL)
_MATCHER = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)(=~|=)"((?:[^"\\]|\\.)*)"')
_UNESCAPE = {"\\": "\\", '"': '"', "n": "\n", "r": "\r", "t": "\t"}
Sample = tuple[str, dict[str, str], float]


def _unescape(s: str) -> str:
    return re.sub(r"\\(.)", lambda m: _UNESCAPE[m.group(1)], s)


def parse_matchers(body: str) -> list[tuple[str, str, str]]:
    out, pos = [], 0
    while pos < len(body):
        m = _MATCHER.match(body, pos)
        assert m, f"unparsable matchers at {body[pos:]!r}"
        out.append((m.group(1), m.group(2), _unescape(m.group(3))))
        pos = m.end()
        if pos < len(body):
            assert body[pos] == ",", f"unparsable matchers at {body[pos:]!r}"
            pos += 1
    return out


class FakeProm:
    """Just enough of PrometheusProvider for BatchMetrics: `.at` and `.query()`."""

    def __init__(self, series: list[Sample] | None = None) -> None:
        self.series = series or []
        self.queries: list[str] = []
        self.down: list[str] = []  # the target-down queries
        self.at = None

    def query(self, query: str, *, check: str = "", arm: str = "", at: float | None = None) -> Any:
        out: list[dict[str, Any]] = []
        if query.startswith("count by ("):  # `BatchMetrics._down` (`down_queries_last`): no `up` here, none down
            self.down.append(query)
            return out
        self.queries.append(query)
        if query.startswith("label_replace("):  # `Snapshot.restarted`: these series hold one sample each
            return out
        parts = query.split(" or last_over_time(")  # a family with `either`: one selector per matcher, or'ed
        for part in [parts[0], *("last_over_time(" + p for p in parts[1:])]:
            m = _QUERY.match(part)
            assert m, f"unexpected query shape: {query}"
            matchers = parse_matchers(m.group(2) or "")
            for name, labels, value in self.series:
                if name != m.group(1) or any(dict(labels) == o["metric"] for o in out):
                    continue
                if all((labels.get(k, "") == v) if op == "=" else re.fullmatch(v, labels.get(k, ""))
                       for k, op, v in matchers):
                    sample = [0, value] if isinstance(value, dict) else [0, repr(value)]  # a dict: a native histogram
                    out.append({"metric": dict(labels), "histogram" if isinstance(value, dict) else "value": sample})
        return out


def policy(source: str = "model", checks: list[dict[str, Any]] | None = None, **metrics: Any) -> Policy:
    return parse_policy({"steps": [10, 100], "metrics": {"source": source, **metrics}, "checks": checks or [
        {"name": "lat", "kind": "latency", "max_ms": 100},
        {"name": "err", "kind": "error_rate", "max_rate_pct": 5},
        {"name": "shift", "kind": "prediction_shift", "max_psi": 0.2},
        {"name": "miss", "kind": "feature_missing", "max_rate_pct": 5},
    ]})


def chk(pol: Policy, name: str) -> Any:
    return next(c for c in pol.checks if c.name == name)


def hist(name: str, labels: dict[str, str], bounds: list[float], cumulative: list[float]) -> list[Sample]:
    les = [repr(x) for x in bounds] + ["+Inf"]
    return [(f"{name}_bucket", {**labels, "le": le}, c) for le, c in zip(les, cumulative)]


def model_arm(model: str, version: str, *, lat: list[float], ok: float, err: float, miss: float = 0.0,
              present: float = 0.0, bounds: list[float] | None = None) -> list[Sample]:
    m = {"model_name": model, "model_version": version}
    out = hist("model_inference_duration_seconds", m, bounds or [0.01, 0.1], lat)
    out += hist("model_prediction_value", m, [0.5], [lat[0], lat[-1]])
    out += [("model_requests_total", {**m, "outcome": "success"}, ok),
            ("model_requests_total", {**m, "outcome": "error"}, err)]
    if miss or present:
        out += [("model_features_total", {**m, "state": "missing"}, miss),
                ("model_features_total", {**m, "state": "present"}, present)]
    return out


def snap(series: list[Sample], pol: Policy, *targets: Target, at: float = 0.0) -> b.Snapshot:
    return b.BatchMetrics(FakeProm(series)).snapshot([b.Want(pol, t) for t in targets or (T,)], at=at)  # type: ignore[arg-type]


# -- escaping ---------------------------------------------------------------------------


@pytest.mark.parametrize(("raw", "escaped"), [
    ("rec", "rec"), ("a.*|b", r"a\.\*\|b"), ("x(y)[z]{1}^$+?", r"x\(y\)\[z\]\{1\}\^\$\+\?"), ("a\\b", r"a\\b"),
    ('q"x', 'q"x'),  # a quote is no regex metacharacter: PromQL string escaping handles it
])
def test_regex_escape(raw: str, escaped: str) -> None:
    assert b.regex_escape(raw) == escaped
    assert re.fullmatch(escaped, raw)


def test_regex_matcher_is_promql_escaped_and_matches_only_the_names() -> None:
    text = b.regex_matcher("model_name", ["a.*|b", "c"])
    assert text == 'model_name=~"a\\\\.\\\\*\\\\|b|c"'
    [(label, op, regex)] = parse_matchers(text)
    assert (label, op) == ("model_name", "=~")
    for name, hit in [("a.*|b", True), ("c", True), ("b", False), ("axx", False), ("a", False), ("a.*", False)]:
        assert bool(re.fullmatch(regex, name)) is hit, name


def test_a_model_name_cannot_inject_promql_or_widen_the_match() -> None:
    pol = policy()
    evil = Target(namespace="ml", virtual_service="x", model=EVIL, stable_version="v1", canary_version="v2")
    wide = Target(namespace="ml", virtual_service="x", model="a.*|b", stable_version="v1", canary_version="v2")
    series = (model_arm(EVIL, "v1", lat=[1, 2, 3], ok=5, err=1) + model_arm("a.*|b", "v1", lat=[1, 1, 1], ok=7, err=0)
              + model_arm("b", "v1", lat=[9, 9, 9], ok=100, err=50) + model_arm("axx", "v1", lat=[9, 9, 9], ok=100, err=0))
    fake = FakeProm(series)
    s = b.BatchMetrics(fake).snapshot([b.Want(pol, evil), b.Want(pol, wide)])  # type: ignore[arg-type]
    for query in fake.queries:
        assert _QUERY.match(query), query  # strict parse: the quote stayed inside its string
        assert "vector(1)" not in query.replace('or vector(1)#', '')
    assert fake.down and all("vector(1)" not in query.replace('or vector(1)#', '') for query in fake.down)
    assert s.requests(pol, wide, "stable") == 7
    assert s.requests(pol, evil, "stable") == 6
    # every answered series belongs to one of the two wanted models
    models = {k[0] for fam in s.series.values() for k in fam}
    assert models <= {EVIL, "a.*|b"}


# -- shapes and grouping ------------------------------------------------------------------


@pytest.mark.parametrize("metrics", [
    {"source": "model"}, {"source": "triton"}, {"source": "istio"},
    {"source": "istio", "arm_label": "version", "model_label": "destination_app", "labels": {"reporter": "source", "c": "eu"}},
    {"source": "model", "model_label": "", "labels": {"job": "rec"}},
])
def test_family_selects_what_selector_selects(metrics: dict[str, Any]) -> None:
    pol = policy(**metrics, checks=[{"name": "e", "kind": "error_rate", "max_rate_pct": 5}])
    source = metrics["source"]
    fam = b.families(pol)[0]
    for arm in q.ARMS:
        mine = {f'{k}="{q.escape(v)}"' for k, v in fam.constant}
        mine |= {f'{label}="{q.escape(v)}"' for (label, _), v in zip(fam.by, fam.ident(T, arm))}
        assert mine == set(q.selector(pol, T, arm, source)[1:-1].split(","))


def test_a_policy_fixing_a_label_that_tells_rollouts_apart_is_refused() -> None:
    """The namespace label picks the rollout: a policy may not pin it (nothing to mirror then)."""
    with pytest.raises(ConfigError, match="cannot be overridden"):
        policy(source="istio", labels={"destination_service_namespace": "fixed"},
               checks=[{"name": "e", "kind": "error_rate", "max_rate_pct": 5}])


def three_policies() -> list[Policy]:
    return [policy(), policy("istio", checks=[{"name": "lat", "kind": "latency", "max_ms": 100},
                                              {"name": "err", "kind": "error_rate", "max_rate_pct": 5}]),
            policy("triton", checks=[{"name": "err", "kind": "error_rate", "max_rate_pct": 5},
                                     {"name": "c", "kind": "custom", "max_value": 1, "query": "vector(1)"}])]


def wants(n: int) -> list[b.Want]:
    pols = three_policies()
    return [b.Want(pols[i % 3], Target(namespace=f"ns{i % 7}", virtual_service=f"m{i}", model=f"m{i}",
                                       stable_version=f"v{i}", canary_version=f"v{i + 1}")) for i in range(n)]


def test_query_count_is_independent_of_the_number_of_rollouts() -> None:
    counts, downs = {}, {}
    for n in (3, 30, 1000):
        fake = FakeProm()
        batch = b.BatchMetrics(fake)  # type: ignore[arg-type]
        batch.snapshot(wants(n))
        counts[n] = batch.queries_last
        assert len(fake.queries) == batch.queries_last
        downs[n] = batch.down_queries_last  # the target-down query: one per label shape (model, triton, istio)
        assert len(fake.down) == batch.down_queries_last
    # model: requests, _count fallback, errors, latency and predictions (classic and native each),
    # features; istio: requests, errors, latency (classic and native); triton: success, failure (errors
    # are the failure counter); custom is not batched
    assert counts == {3: 14, 30: 14, 1000: 14}
    assert downs == {3: 3, 30: 3, 1000: 3}


def test_every_query_is_filtered_to_its_rollouts_and_chunked_by_model() -> None:
    """Never the whole mesh (issue 10): however many rollouts, each query names its models, versions and
    namespaces; past MAX_REGEX_CHARS the models are split over several queries, each with its own values."""
    few = b.BatchMetrics(FakeProm()).plan(wants(30))  # type: ignore[arg-type]
    assert all(len(texts) == 1 for texts in few.values())
    assert all("model_name=~" in texts[0] for fam, texts in few.items() if fam.metric.startswith("model_"))
    many = wants(3000)
    plan = b.BatchMetrics(FakeProm(), max_regex_chars=4000).plan(many)  # type: ignore[arg-type]
    for fam, texts in plan.items():
        assert len(texts) > 1 and all(text != fam.query() and "=~" in text for text in texts)
        assert all(len(text) < 4000 + 600 for text in texts)  # the alternations, plus the selector around them
        model_label = next(label for label, role in fam.by if role == "model")
        named = [set(re.findall(model_label + r'=~"([^"]*)"', t)[0].split("|")) for t in texts]
        assert sum(map(len, named)) == len(set().union(*named))  # each model in exactly one chunk
        assert set().union(*named) == {fam.ident(w.target, "stable")[[r for _, r in fam.by].index("model")]
                                       for w in many if fam in b.policy_families(w.policy)}
    fake = FakeProm()
    batch = b.BatchMetrics(fake, max_regex_chars=4000)  # type: ignore[arg-type]
    batch.snapshot(many)
    assert batch.queries_last == len(fake.queries) == sum(len(set(t)) for t in plan.values()) - _shared(plan)


def _shared(plan: dict[Any, list[str]]) -> int:
    """Query texts that two families share (sent once)."""
    texts = [t for ts in plan.values() for t in set(ts)]
    return len(texts) - len(set(texts))


def test_chunks_cut_at_the_limit_and_a_long_name_gets_its_own() -> None:
    pol = three_policies()[0]
    names = ["a" * 50, "b" * 5000, "c" * 50]
    ws = [b.Want(pol, Target(namespace="ml", virtual_service=n, model=n, stable_version="v1", canary_version="v2"))
          for n in names]
    fam = b.policy_families(pol)[0]
    texts = b.BatchMetrics(FakeProm(), max_regex_chars=200).plan(ws)[fam]  # type: ignore[arg-type]
    assert [sum(n in t for n in names) for t in texts] == [1, 1, 1]
    assert b.BatchMetrics(FakeProm()).plan(ws)[fam] == [fam.query({"model_name": set(names), "model_version": {"v1", "v2"}})]  # type: ignore[arg-type]


def test_policies_with_different_label_shapes_get_their_own_queries() -> None:
    a, c = policy(), policy(labels={"cluster": "eu"})
    plan = b.BatchMetrics(FakeProm()).plan([b.Want(a, T), b.Want(c, T), b.Want(a, T)])  # type: ignore[arg-type]
    assert len(plan) == 16  # per shape: 2 request counters, errors, features, 2 histograms x classic and native
    assert sum('cluster="eu"' in text for texts in plan.values() for text in texts) == 8


@pytest.mark.parametrize(("source", "check", "ok"), [
    ("model", {"kind": "latency", "max_ms": 1}, True),
    ("istio", {"kind": "latency", "max_ms": 1}, True),
    ("triton", {"kind": "latency", "max_ms": 1}, False),
    ("model", {"kind": "error_rate", "max_rate_pct": 1}, True),
    ("triton", {"kind": "error_rate", "max_rate_pct": 1}, True),
    ("model", {"kind": "prediction_shift", "max_psi": 0.1}, True),
    ("istio", {"kind": "prediction_shift", "max_psi": 0.1}, False),
    ("istio", {"kind": "prediction_shift", "max_psi": 0.1, "metric": "my_hist_bucket"}, True),
    ("model", {"kind": "feature_missing", "max_rate_pct": 1}, True),
    ("istio", {"kind": "feature_missing", "max_rate_pct": 1}, False),
    ("model", {"kind": "custom", "max_value": 1, "query": "vector(1)"}, False),
])
def test_batchable(source: str, check: dict[str, Any], ok: bool) -> None:
    try:
        pol = policy(source, checks=[{"name": "c", **check}])
    except PolicyError as exc:  # a source without the check's metric is refused at load time ...
        assert exc.field == "checks[0].source" and not ok
        pol = policy("model", checks=[{"name": "c", **check}])  # ... and again at query time, should one get through
        pol = pol.model_copy(update={"metrics": pol.metrics.model_copy(update={"source": source})})
    assert b.batchable(pol, pol.checks[0]) is ok
    if not ok:
        s = b.Snapshot(0.0)
        with pytest.raises(ConfigError):
            b.measure_delta(pol, pol.checks[0], T, s, s)


# -- delta arithmetic ------------------------------------------------------------------------


def both(**kw: Any) -> list[Sample]:
    return model_arm("rec", "v1", **kw) + model_arm("rec", "v2", **{**kw, "ok": kw["ok"] * 2})


def test_histogram_and_counts_deltas() -> None:
    pol = policy()
    base = snap(both(lat=[1, 3, 4], ok=10, err=1, miss=1, present=9), pol, at=100)
    now = snap(both(lat=[3, 9, 14], ok=30, err=4, miss=3, present=27), pol, at=160)
    s, c = b.measure_delta(pol, chk(pol, "lat"), T, now, base)
    assert isinstance(s, Histogram) and s.bounds == (10.0, 100.0, math.inf) and s.counts == (2, 6, 10)
    assert c == s
    s, c = b.measure_delta(pol, chk(pol, "err"), T, now, base)
    assert s == Counts(events=3, total=23) and c == Counts(events=3, total=43)
    s, _ = b.measure_delta(pol, chk(pol, "miss"), T, now, base)
    # 2 of 20 feature values missing, counted over the stable's 23 requests (the unit the gauge path uses)
    assert s.total == 23 and s.events == pytest.approx(2 / 20 * 23)
    assert b.requests_delta(pol, T, now, base) == (23, 43)
    assert now.arm(pol, chk(pol, "lat"), T, "stable") == Histogram((10.0, 100.0, math.inf), (3, 9, 14))
    assert now.arm(pol, chk(pol, "err"), T, "canary") == Counts(events=4, total=64)


def test_counter_reset_uses_the_current_values_and_is_flagged() -> None:
    pol = policy()
    base = snap(both(lat=[5, 10, 20], ok=100, err=5), pol)
    now = snap(both(lat=[1, 2, 3], ok=8, err=1), pol)
    d = b.arm_delta(pol, chk(pol, "lat"), T, "stable", now, base)
    assert d.reset and d.data == Histogram((10.0, 100.0, math.inf), (1, 2, 3))
    d = b.arm_delta(pol, chk(pol, "err"), T, "stable", now, base)
    assert d.reset and d.data == Counts(events=1, total=9)
    assert b.requests_delta(pol, T, now, base) == (9, 17)
    assert not b.arm_delta(pol, chk(pol, "err"), T, "stable", base, snap(both(lat=[1, 2, 3], ok=8, err=1), pol)).reset


def test_bucket_set_change_takes_the_union_and_carries_from_below() -> None:
    pol = policy()
    base = snap(model_arm("rec", "v1", lat=[2, 4], ok=4, err=0, bounds=[0.01]), pol)
    now = snap(model_arm("rec", "v1", lat=[3, 5, 10], ok=10, err=0, bounds=[0.01, 0.1]), pol)
    h = b.arm_delta(pol, chk(pol, "lat"), T, "stable", now, base).data
    # base had no 0.1 bucket: it carries 2 from the 0.01 bucket below
    assert h == Histogram((10.0, 100.0, math.inf), (1, 3, 6))


def test_a_series_born_in_the_window_counts_from_zero() -> None:
    pol = policy()
    base = snap(model_arm("rec", "v1", lat=[1, 1, 1], ok=1, err=0), pol)
    now = snap(both(lat=[2, 4, 5], ok=5, err=1), pol)
    _, c = b.measure_delta(pol, chk(pol, "err"), T, now, base)
    assert c == Counts(events=1, total=11)
    _, c = b.measure_delta(pol, chk(pol, "lat"), T, now, base)
    assert c.counts == (2, 4, 5)


def test_no_data_cases() -> None:
    pol = policy()
    same = snap(both(lat=[1, 2, 3], ok=5, err=0), pol)
    with pytest.raises(NoData, match="no observations"):
        b.measure_delta(pol, chk(pol, "lat"), T, same, same)
    with pytest.raises(NoData, match="no requests"):
        b.measure_delta(pol, chk(pol, "err"), T, same, same)
    with pytest.raises(NoData):
        b.requests_delta(pol, T, same, same)
    absent = snap([], pol)
    with pytest.raises(NoData):
        b.measure_delta(pol, chk(pol, "lat"), T, absent, absent)
    other = Target(namespace="ml", virtual_service="o", model="other", stable_version="v1", canary_version="v2")
    with pytest.raises(NoData, match="among the snapshot's wants"):
        b.measure_delta(pol, chk(pol, "lat"), T, same, b.Snapshot(0.0))
    assert same.arm(pol, chk(pol, "lat"), other, "stable") is None and same.requests(pol, other, "canary") is None


def test_gauge_only_feature_missing_is_not_batchable() -> None:
    pol = policy()
    base = snap(both(lat=[1, 2, 3], ok=5, err=0), pol)
    now = snap(both(lat=[2, 4, 6], ok=9, err=0), pol)
    with pytest.raises(b.NotBatchable, match="gauge only"):
        b.measure_delta(pol, chk(pol, "miss"), T, now, base)
    # the counter exists for the stable arm only while the canary serves requests: the canary's
    # version exports the gauge only, so the whole check is measured per rollout from the gauge
    # (both arms the same way), not left NoData on the canary until the deadline
    now = snap(both(lat=[2, 4, 6], ok=9, err=0) + [("model_features_total", {"model_name": "rec", "model_version": "v1",
                                                                          "state": "missing"}, 3.0)], pol)
    with pytest.raises(b.NotBatchable, match="canary arm.*gauge only"):
        b.measure_delta(pol, chk(pol, "miss"), T, now, base)
    # an arm that has served nothing yet (no requests) has no data, in place: not a reason to go per rollout
    quiet = snap(model_arm("rec", "v1", lat=[2, 4, 6], ok=9, err=0, miss=1, present=9), pol)
    stable, canary = b.measure_delta(pol, chk(pol, "miss"), T, quiet, base)
    assert isinstance(canary, NoData) and not isinstance(stable, NoData)


def native(values: list[float], schema: int = 3, zero: float = 0.0) -> dict[str, Any]:
    """A native histogram sample as the HTTP API writes it, of `values` (in seconds)."""
    from tests.unit.test_native_histograms import api_sample

    return api_sample(values, schema, zero)


def native_arm(model: str, version: str, lat: list[float], *, schema: int = 3, ok: float = 0.0,
               pod: str = "a", classic: bool = False) -> list[Sample]:
    m = {"model_name": model, "model_version": version}
    out: list[Sample] = [("model_inference_duration_seconds", {**m, "pod": pod}, native(lat, schema))]  # type: ignore[list-item]
    if classic:
        cum = [sum(v <= b for v in lat) for b in (0.01, 0.1)] + [len(lat)]
        out += hist("model_inference_duration_seconds", {**m, "pod": pod}, [0.01, 0.1], cum)
    return out + [("model_requests_total", {**m, "outcome": "success", "pod": pod}, ok or len(lat))]


def test_native_histograms_are_measured_from_the_snapshot_on_one_grid() -> None:
    """Issue 9: a version exporting its latency as a Prometheus native histogram is measured from the
    batched snapshot (its buckets kept by index), both arms on one grid, exact: each bound's count is
    the number of the window's observations at or below it, across a schema cut and two pods."""
    import random

    rng = random.Random(5)
    old = {v: [0.04 * math.exp(rng.gauss(0, 0.3)) for _ in range(200)] for v in ("v1", "v2")}
    new = {v: [0.04 * math.exp(rng.gauss(0, 0.3)) * (1.3 if v == "v2" else 1) for _ in range(300)] for v in ("v1", "v2")}
    second = [0.05 * math.exp(rng.gauss(0, 0.3)) for _ in range(100)]  # a second stable pod, born in the window
    pol = policy()
    base = snap(native_arm("rec", "v1", old["v1"]) + native_arm("rec", "v2", old["v2"], schema=4), pol)
    now = snap(native_arm("rec", "v1", old["v1"] + new["v1"]) + native_arm("rec", "v1", second, pod="b")
               + native_arm("rec", "v2", old["v2"] + new["v2"], schema=2), pol)  # the canary's schema cut 4 -> 2
    stable, canary = b.measure_delta(pol, chk(pol, "lat"), T, now, base)
    assert isinstance(stable, Histogram) and isinstance(canary, Histogram)
    assert stable.bounds == canary.bounds and len(stable.bounds) > 10
    window = {"v1": new["v1"] + second, "v2": new["v2"]}
    for h, v in ((stable, "v1"), (canary, "v2")):
        assert h.total == len(window[v])
        for le, c in zip(h.bounds[:-1], h.counts[:-1]):
            assert c == sum(x * 1000 <= le * (1 + 1e-12) for x in window[v]), (v, le)
    ratios = {round(b2 / b1, 6) for b1, b2 in zip(stable.bounds[:-2], stable.bounds[1:-1])}
    assert ratios == {round(2 ** (1 / 4), 6)}  # schema 2, the coarser of the two arms


def test_which_form_of_a_histogram_a_snapshot_reads() -> None:
    """As the per-rollout path: classic first; both arms native when one arm has only native series
    and the other has both; `metrics.histograms: native` the other way round; an arm with neither
    is NoData in place."""
    lat = [0.02, 0.05, 0.05, 0.2]
    pol = policy()
    base = snap(native_arm("rec", "v1", lat[:1], classic=True) + native_arm("rec", "v2", lat[:1]), pol)
    now = snap(native_arm("rec", "v1", lat, classic=True) + native_arm("rec", "v2", lat), pol)
    stable, canary = b.measure_delta(pol, chk(pol, "lat"), T, now, base)
    assert stable.bounds == canary.bounds and len(stable.bounds) > 3  # both native
    only_classic = snap(native_arm("rec", "v1", lat[:1], classic=True)[1:] + native_arm("rec", "v2", lat[:1]), pol)
    now_classic = snap(native_arm("rec", "v1", lat, classic=True)[1:] + native_arm("rec", "v2", lat), pol)
    stable, canary = b.measure_delta(pol, chk(pol, "lat"), T, now_classic, only_classic)
    # one arm of each form: not compared bound for bound; the canary alone (its own limits) is judged
    assert isinstance(stable, NoData) and "classic `_bucket` series" in str(stable) and len(canary.bounds) > 3
    with pytest.raises(NoData, match="canary arm is a Prometheus native histogram"):
        b.arm_delta(pol, chk(pol, "lat"), T, "stable", now_classic, only_classic)
    assert len(b.arm_delta(pol, chk(pol, "lat"), T, "stable", now, base).data.bounds) > 3  # native, as measure_delta
    pol_native = policy(histograms="native")
    base_n = snap(native_arm("rec", "v1", lat[:1], classic=True) + native_arm("rec", "v2", lat[:1]), pol_native)
    now_n = snap(native_arm("rec", "v1", lat, classic=True) + native_arm("rec", "v2", lat), pol_native)
    assert len(b.arm_delta(pol_native, chk(pol_native, "lat"), T, "stable", now_n, base_n).data.bounds) > 3
    # native first, the canary classic only: both arms are read classic (the stable arm has both)
    classic_canary = snap(native_arm("rec", "v1", lat, classic=True) + native_arm("rec", "v2", lat, classic=True)[1:],
                          pol_native)
    classic_base = snap(native_arm("rec", "v1", lat[:1], classic=True) + native_arm("rec", "v2", lat[:1], classic=True)[1:],
                        pol_native)
    stable, canary = b.measure_delta(pol_native, chk(pol_native, "lat"), T, classic_canary, classic_base)
    assert stable.bounds == canary.bounds == (10.0, 100.0, math.inf)
    quiet = snap(native_arm("rec", "v1", lat), pol)
    stable, canary = b.measure_delta(pol, chk(pol, "lat"), T, quiet, snap(native_arm("rec", "v1", lat[:1]), pol))
    assert isinstance(canary, NoData) and not isinstance(stable, NoData)


def test_a_histogram_that_changed_form_within_the_step_is_measured_per_rollout() -> None:
    """Second review: the form was chosen from the current snapshot alone; an arm whose series were
    classic at step start and native now counted every native series as born in the window, its
    whole history with it (a canary 51% slower passed on a million-request stable arm)."""
    lat = [0.02, 0.05, 0.05, 0.2]
    pol = policy()
    base = snap(native_arm("rec", "v1", lat[:1], classic=True)[1:] + native_arm("rec", "v2", lat[:1], classic=True)[1:], pol)
    now = snap(native_arm("rec", "v1", lat) + native_arm("rec", "v2", lat), pol)
    with pytest.raises(b.NotBatchable, match="changed histogram form"):
        b.measure_delta(pol, chk(pol, "lat"), T, now, base)


def test_a_native_histograms_empty_ghost_is_no_classic_histogram() -> None:
    """Prometheus before 2.47 ingests a native histogram with no observations and a zero threshold of
    0 as a classic one: a canary leaves a `_bucket{le="+Inf"}` series at 0 from before its traffic.
    That series is no classic histogram: the arm is read natively (found in the e2e run, where the
    canary's ghost series sat beside its native one). Classic series with only +Inf and observations
    are NoData saying why, never a histogram judged on the +Inf bucket alone."""
    lat = [0.02, 0.05, 0.05, 0.2]
    pol = policy()
    ghost = [("model_inference_duration_seconds_bucket",
              {"model_name": "rec", "model_version": "v2", "pod": "a", "le": "+Inf"}, 0.0)]
    base = snap(native_arm("rec", "v1", lat[:1]) + native_arm("rec", "v2", lat[:1]) + ghost, pol)  # type: ignore[operator]
    now = snap(native_arm("rec", "v1", lat) + native_arm("rec", "v2", lat) + ghost, pol)  # type: ignore[operator]
    stable, canary = b.measure_delta(pol, chk(pol, "lat"), T, now, base)
    assert isinstance(canary, Histogram) and stable.bounds == canary.bounds and len(stable.bounds) > 3
    assert canary.total == 3
    only_inf = [("model_inference_duration_seconds_bucket", {"model_name": "rec", "model_version": v, "pod": "a",
                                                             "le": "+Inf"}, n)
                for v in ("v1", "v2") for n in (40.0,)]
    reqs = [("model_requests_total", {"model_name": "rec", "model_version": v, "outcome": "success", "pod": "a"}, 40.0)
            for v in ("v1", "v2")]
    early = snap([(n, {**lab}, 0.0) for n, lab, _ in only_inf] + reqs, pol)
    with pytest.raises(NoData, match=r"stable arm of 'rec': has only a \+Inf bucket.*canary arm of 'rec': has only"):
        b.measure_delta(pol, chk(pol, "lat"), T, snap(only_inf + reqs, pol), early)
    # the review's cases: a step that starts with the canary's ghost alone (before its first
    # request) is no form change (it went per rollout at every look of the step) ...
    first = snap(native_arm("rec", "v1", lat[:1]) + ghost, pol)  # type: ignore[operator]
    stable, canary = b.measure_delta(pol, chk(pol, "lat"), T, now, first)
    assert isinstance(canary, Histogram) and canary.total == 4
    # ... a ghost pod beside a classic pod leaves the classic pod's counts (as `sum by (le)` does)
    two_pods = native_arm("rec", "v1", lat, classic=True)[1:] + [  # type: ignore[operator]
        ("model_inference_duration_seconds_bucket", {"model_name": "rec", "model_version": "v1", "pod": "b",
                                                     "le": "+Inf"}, 0.0)]
    stable = b.arm_delta(pol, chk(pol, "lat"), T, "stable", snap(two_pods, pol), snap(two_pods[:0] + two_pods[-1:], pol)
                         ).data
    assert isinstance(stable, Histogram) and stable.bounds == (10.0, 100.0, math.inf) and stable.total == 4
    # ... and pods of disjoint layouts are named as such, not as a native histogram scraped as classic
    disjoint = hist("model_inference_duration_seconds", {"model_name": "rec", "model_version": "v1", "pod": "a"},
                    [0.01], [1, 2]) + hist("model_inference_duration_seconds",
                                           {"model_name": "rec", "model_version": "v1", "pod": "b"}, [0.02], [1, 2])
    with pytest.raises(NoData, match="share no finite bucket bound"):
        b.arm_delta(pol, chk(pol, "lat"), T, "stable", snap(disjoint, pol), snap([], pol))


@pytest.mark.parametrize("model", ["mixed-pods", "no-shared"])
def test_pods_of_one_arm_with_different_layouts_sum_as_the_per_rollout_read_does(model: str) -> None:
    """The pods of tests/support/prom.py's MIXED_PODS, one window apart: the batched snapshot sums each
    arm on the bounds its pods *with observations* share, as `PrometheusProvider._classic` does
    against the real Prometheus (tests/integration/test_prometheus.py, the same pods): an idle pod's
    layout (0.2 s) and a ghost's +Inf do not restrict the bounds. Before, the idle pod left the stable
    arm with the +Inf bucket alone."""
    from tests.support.prom import MIXED_PODS, cumulative

    pol = policy(checks=[{"name": "lat", "kind": "latency", "max_increase_pct": 20}])
    target = Target(namespace="ml", virtual_service=model, model=model, stable_version="v1", canary_version="v2")
    now: list[Sample] = []
    for (m, pod), (version, bounds, counts) in MIXED_PODS.items():
        if m == model:
            labels = {"model_name": model, "model_version": version, "pod": pod}
            now += hist("model_inference_duration_seconds", labels, list(bounds), list(cumulative(counts)))
            now.append(("model_requests_total", {**labels, "outcome": "success"}, float(sum(counts))))
    base = [(name, labels, 0.0) for name, labels, _ in now]
    if model == "mixed-pods":
        stable, canary = b.measure_delta(pol, chk(pol, "lat"), target, snap(now, pol, target), snap(base, pol, target))
        assert isinstance(stable, Histogram) and isinstance(canary, Histogram)
        assert stable.bounds == (100.0, 250.0, math.inf) and stable.counts == (12000.0, 19000.0, 20000.0)
        assert canary.bounds == (100.0, 250.0, math.inf) and canary.counts == (6000.0, 9500.0, 10000.0)
    else:
        with pytest.raises(NoData, match="share no finite bucket bound"):
            b.arm_delta(pol, chk(pol, "lat"), target, "stable", snap(now, pol, target), snap(base, pol, target))


def test_a_both_forms_clients_empty_classic_buckets_are_no_classic_histogram() -> None:
    """Prometheus < 2.47 ingests a both-forms client's empty histogram (zero threshold 0) as classic
    at every bound, all 0, and then natively: those zeros beside a native histogram are read past, in
    the snapshot as per rollout (tests/integration/test_prometheus_preflight.py, the real server)."""
    lat = [0.02, 0.05, 0.05, 0.2]
    pol = policy()
    zeros = [sample for v in ("v1", "v2") for sample in hist(
        "model_inference_duration_seconds", {"model_name": "rec", "model_version": v, "pod": "a"}, [0.05, 0.1, 0.2],
        [0.0, 0.0, 0.0, 0.0])]
    base = snap(native_arm("rec", "v1", lat[:1]) + native_arm("rec", "v2", lat[:1]) + zeros, pol)
    now = snap(native_arm("rec", "v1", lat) + native_arm("rec", "v2", lat) + zeros, pol)
    stable, canary = b.measure_delta(pol, chk(pol, "lat"), T, now, base)
    assert isinstance(stable, Histogram) and isinstance(canary, Histogram), (stable, canary)
    assert stable.bounds == canary.bounds and len(stable.bounds) > 4 and canary.total == 3
    # classic buckets that counted observations before the window but none in it (a drained classic
    # pod `last_over_time` still holds): read past too, as `increase()` reads them per rollout
    counted = [(n, lab, 1.0) for n, lab, _ in zeros]
    stable, canary = b.measure_delta(pol, chk(pol, "lat"), T, snap(native_arm("rec", "v1", lat) + native_arm(
        "rec", "v2", lat) + counted, pol), snap(native_arm("rec", "v1", lat[:1]) + native_arm("rec", "v2", lat[:1])
                                               + counted, pol))
    assert isinstance(stable, Histogram) and isinstance(canary, Histogram) and canary.total == 3
    # classic buckets that counted observations in the window stay the preferred form
    grown = [(n, lab, 2.0) for n, lab, _ in zeros]
    stable, canary = b.measure_delta(pol, chk(pol, "lat"), T, snap(native_arm("rec", "v1", lat) + native_arm(
        "rec", "v2", lat) + grown, pol), snap(native_arm("rec", "v1", lat[:1]) + native_arm("rec", "v2", lat[:1])
                                              + counted, pol))
    assert isinstance(stable, Histogram) and stable.bounds == (50.0, 100.0, 200.0, math.inf) and stable.total == 1


def test_a_float_answer_to_the_native_family_goes_per_rollout() -> None:
    """Prometheus 2.42's last_over_time answers a native series with a float ("0"), not a histogram:
    the snapshot cannot read it, and the check is measured per rollout (which reads it with
    increase()), never NoData until the deadline."""
    pol = policy()
    m = {"model_name": "rec", "pod": "a"}
    floats = [("model_inference_duration_seconds", {**m, "model_version": v}, 0.0) for v in ("v1", "v2")]
    reqs = [("model_requests_total", {**m, "model_version": v, "outcome": "success"}, 5.0) for v in ("v1", "v2")]
    base = snap(floats + reqs, pol)
    with pytest.raises(b.NotBatchable, match="last_over_time gives no histogram"):
        b.measure_delta(pol, chk(pol, "lat"), T, base, base)


def test_native_series_without_an_exact_subtraction_are_measured_per_rollout() -> None:
    """Custom buckets, zero buckets of different widths, or a step-start snapshot taken before the
    native family was asked (an upgrade mid-step): NotBatchable, never an approximate window."""
    pol = policy()
    lat = [0.02, 0.05, 0.2]
    custom = {"count": "3", "sum": "0.27", "buckets": [[0, "0", "0.03", "1"], [0, "0.03", "0.1", "1"], [0, "0.1", "0.3", "1"]]}
    m = {"model_name": "rec", "model_version": "v2", "pod": "a"}
    base = snap(native_arm("rec", "v1", lat) + [("model_inference_duration_seconds", m, custom)], pol)  # type: ignore[list-item]
    with pytest.raises(b.NotBatchable, match="custom"):
        b.measure_delta(pol, chk(pol, "lat"), T, base, base)
    z1 = snap(native_arm("rec", "v1", lat) + [("model_inference_duration_seconds", m, native([0.0] + lat, 3, 1e-3))], pol)  # type: ignore[list-item]
    z2 = snap(native_arm("rec", "v1", lat) + [("model_inference_duration_seconds", m, native([0.0] + lat, 3, 1e-4))], pol)  # type: ignore[list-item]
    with pytest.raises(b.NotBatchable, match="zero buckets"):
        b.measure_delta(pol, chk(pol, "lat"), T, z2, z1)
    old_format = b.Snapshot.from_index(0.0, {k: v for k, v in z1._index.items() if "_bucket" in k or "requests" in k})
    with pytest.raises(b.NotBatchable, match="step-start snapshot holds no native"):
        b.measure_delta(pol, chk(pol, "lat"), T, z1, old_format)


def test_requests_fall_back_to_the_latency_count() -> None:
    pol = policy()
    m = {"model_name": "rec"}
    def counts(n1: float, n2: float) -> list[Sample]:
        return [("model_inference_duration_seconds_count", {**m, "model_version": "v1"}, n1),
                ("model_inference_duration_seconds_count", {**m, "model_version": "v2"}, n2)]
    assert b.requests_delta(pol, T, snap(counts(10, 20), pol), snap(counts(4, 5), pol)) == (6, 15)


def test_triton_requests_are_success_plus_failure() -> None:
    pol = policy("triton", checks=[{"name": "err", "kind": "error_rate", "max_rate_pct": 5}])
    def arms(ok: float, bad: float) -> list[Sample]:
        return [(name, {"model": "rec", "version": v}, val) for v in ("v1", "v2")
                for name, val in (("nv_inference_request_success", ok), ("nv_inference_request_failure", bad))]
    s, _ = b.measure_delta(pol, chk(pol, "err"), T, snap(arms(50, 5), pol), snap(arms(10, 1), pol))
    assert s == Counts(events=4, total=44)


# -- persistence -------------------------------------------------------------------------------


def test_json_round_trip_and_restrict() -> None:
    pol = policy()
    other = Target(namespace="ml", virtual_service="o", model="other", stable_version="v1", canary_version="v9")
    series = both(lat=[1, 2, 3], ok=5, err=1, miss=1, present=2) + model_arm("other", "v9", lat=[1, 1, 1], ok=1, err=0)
    full = snap(series, pol, T, other, at=123.5)
    assert b.Snapshot.from_json(full.to_json()) == full
    assert b.Snapshot.from_json(full.to_dict()) == full
    mine = full.restrict(pol, T)
    assert mine.taken_at == 123.5
    assert all(k[0] == "rec" for fam in mine.series.values() for k in fam)
    assert set(mine.series) == set(full.series)
    now = snap(both(lat=[4, 5, 9], ok=9, err=2, miss=2, present=4), pol, at=200)
    restored = b.Snapshot.from_json(mine.to_json())
    for name in ("lat", "err", "shift", "miss"):
        assert b.measure_delta(pol, chk(pol, name), T, now, restored) == b.measure_delta(pol, chk(pol, name), T, now, full)
    assert "+Inf" in mine.to_json() and "Infinity" not in mine.to_json()
    for bad in ('{"version": 3}', '{"version": 2}', "not json", "[]", '{"version": 2, "taken_at": 1, "series": {"k": [1]}}'):
        with pytest.raises(b.UnusableStepStart):  # a ConfigError: unreadable, take a new step-start snapshot
            b.Snapshot.from_json(bad)


def test_a_packed_step_start_snapshot_unpacks_to_the_same_snapshot() -> None:
    from canary.metrics.snapshot import PackedSnapshot

    pol = policy()
    mine = snap(both(lat=[1, 2, 3], ok=5, err=1, miss=1, present=2), pol, at=123.5).restrict(pol, T, step_started_at=100.0)
    packed = PackedSnapshot(mine)
    assert packed.unpack() == mine and packed.taken_at == 123.5 and packed.bound == mine.bound
    assert PackedSnapshot(mine, mine.to_dict()).unpack() == mine
    assert 0 < len(packed) < len(mine.to_json())
    with pytest.raises(AttributeError):
        packed.taken_at = 1.0  # type: ignore[misc]
    damaged = PackedSnapshot(mine)
    object.__setattr__(damaged, "_blob", b"not zlib")
    with pytest.raises(b.UnusableStepStart):
        damaged.unpack()


def test_snapshot_is_immutable() -> None:
    s = snap(both(lat=[1, 2, 3], ok=5, err=1), policy())
    with pytest.raises((TypeError, AttributeError)):
        s.series["x"] = {}  # type: ignore[index]
    with pytest.raises((TypeError, AttributeError)):
        next(iter(s.series.values()))[("a",)] = 1.0  # type: ignore[index]


def test_a_malformed_answer_is_metrics_unavailable() -> None:
    class Broken(FakeProm):
        def query(self, query: str, **kw: Any) -> Any:
            return [{"metric": {"model_name": "rec", "model_version": "v1"}, "value": [0, "x"]}]

    with pytest.raises(MetricsUnavailable):
        b.BatchMetrics(Broken()).snapshot([b.Want(policy(), T)])  # type: ignore[arg-type]


def test_cumulative_arm_without_error_series_has_no_errors() -> None:
    pol = policy()
    m = {"model_name": "rec", "model_version": "v1"}
    s = snap([("model_requests_total", {**m, "outcome": "success"}, 40.0)], pol)
    assert s.arm(pol, chk(pol, "err"), T, "stable") == Counts(events=0, total=40)
    assert s.arm(pol, chk(pol, "err"), T, "canary") is None
    assert s.arm(pol, chk(pol, "lat"), T, "stable") is None


def test_a_snapshot_keeps_one_string_per_label_value_and_one_raw_answer_at_a_time() -> None:
    """At 2,500 rollouts a snapshot holds ~85,000 keys: the buckets of every series share their label
    strings (measured 35.6 -> 23.8 MB retained), and each raw answer is dropped once parsed."""
    import weakref

    class Answer(list):  # type: ignore[type-arg]
        """A raw answer that can be watched (weak references: alive only while the batch holds it)."""

    class Counting(FakeProm):
        def __init__(self, series: list[Sample]) -> None:
            super().__init__(series)
            self.given: list[Any] = []
            self.held: list[int] = []

        def query(self, query: str, **kw: Any) -> Any:
            self.held.append(sum(1 for ref in self.given if ref() is not None))  # alive when the next is asked
            answer = Answer(super().query(query, **kw))
            self.given.append(weakref.ref(answer))
            return answer

    series: list[Sample] = []
    for version in ("v1", "v2"):
        for le in ("0.1", "0.2", "+Inf"):
            series.append(("model_inference_duration_seconds_bucket",
                           {"model_name": "rec", "model_version": version, "le": le, "pod": "a"}, 1.0))
    pol = policy(checks=[{"name": "lat", "kind": "latency", "max_ms": 100},
                         {"name": "err", "kind": "error_rate", "max_rate_pct": 5}])
    fake = Counting(series)
    snap = b.BatchMetrics(fake).snapshot([b.Want(pol, T)])  # type: ignore[arg-type]
    assert max(fake.held) == 0 and len(fake.queries) >= 2
    keys = [k for got in snap.series.values() for k in got if "v1" in k]
    assert len(keys) == 3
    assert all(k[i] is keys[0][i] for k in keys for i in range(len(keys[0]) - 1))  # shared, le aside


def test_a_family_with_many_series_per_rollout_is_split_so_no_answer_exceeds_the_cap() -> None:
    pol = policy()
    targets = [Target(model=f"m{i}", namespace="ml", virtual_service=f"m{i}", stable_version="v1",
                      canary_version="v2") for i in range(12)]
    series: list[Sample] = []
    for t in targets:
        for v in ("v1", "v2"):
            series += model_arm(t.model, v, lat=[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], ok=10, err=1,
                                bounds=[0.01, 0.02, 0.05, 0.1, 0.2])
    wants = [b.Want(pol, t) for t in targets]
    fake = FakeProm(series)
    batch = b.BatchMetrics(fake, max_series=30)  # type: ignore[arg-type]
    first = batch.snapshot(wants, at=1.0)
    n_first = batch.queries_last
    bucket = next(f for f in b.policy_families(pol) if "duration_seconds_bucket" in f.key)
    assert batch.series_per_ident[bucket.key] == 6  # 6 bucket series per rollout arm (5 bounds and +Inf)
    fake.queries.clear()
    second = batch.snapshot(wants, at=1.0)
    bucket_queries = [q for q in fake.queries if "model_inference_duration_seconds_bucket" in q]
    assert len(bucket_queries) == 6  # at most 30 series an answer = 5 arms; a model's 2 arms stay together: 2 a query
    for query in bucket_queries:
        assert len(fake.query(query)) <= 30
    assert batch.queries_last > n_first and second == first  # the same values, in more, smaller answers


def test_a_snapshot_stores_each_series_compactly_and_shares_the_layout() -> None:
    """Every series' values are a read-only `Values` (one array of doubles, keys shared by every
    series with the same layout); it reads like the dict it was built from."""
    from canary.metrics.snapshot import Values

    pol = policy()
    other = Target(namespace="ml", virtual_service="o", model="other", stable_version="v1", canary_version="v9")
    full = snap(both(lat=[1, 2, 3], ok=5, err=1) + model_arm("other", "v9", lat=[1, 1, 4], ok=1, err=0), pol, T, other)
    vals = [v for per in full._index.values() for groups in per.values() for v in groups.values()]  # noqa: SLF001
    assert vals and all(isinstance(v, Values) for v in vals)
    same = [v for v in vals if len(v) == 3]  # the latency buckets (0.01, 0.1, +Inf) of the three arms exported
    assert len(same) == 3 and len({id(v._keys) for v in same}) == 1  # noqa: SLF001
    v = Values({"0.1": 1.0, "0.25": 2.5, "+Inf": 3.0})
    assert v == {"0.1": 1.0, "0.25": 2.5, "+Inf": 3.0} and dict(v.items()) == dict(v)
    assert v["0.25"] == 2.5 and v.get("9", 0.0) == 0.0 and "+Inf" in v and "9" not in v and sum(v.values()) == 6.5
    with pytest.raises(KeyError):
        v["9"]
    with pytest.raises(TypeError):
        v["0.1"] = 2.0  # type: ignore[index]
    with pytest.raises(TypeError):
        v.values()[0] = 9.0  # shared by every snapshot holding it: its values are read only too
    items = v.items()
    assert list(items) == list(items) == [("0.1", 1.0), ("0.25", 2.5), ("+Inf", 3.0)] and len(items) == 3
    mine = full.restrict(pol, T)
    assert all(a is b for a, b in zip(  # restrict shares the immutable values, it does not copy them
        (x for per in mine._index.values() for g in per.values() for x in g.values()),  # noqa: SLF001
        (full._index[k][i][s] for k, per in mine._index.items() for i, g in per.items() for s in g)))  # noqa: SLF001


class Clocked(FakeProm):
    """A FakeProm whose own clock reads `now`: `time()` answers it (a scalar stamped with it, as
    Prometheus does; `stamp=None`: an answer without a time), and every query records its `at`."""

    def __init__(self, series: list[Sample], now: float, stamp: bool = True) -> None:
        super().__init__(series)
        self.now, self.stamp, self.asked_at = now, stamp, []

    def query(self, query: str, *, check: str = "", arm: str = "", at: float | None = None) -> Any:
        if query == "time()":
            self.asked_at.append(("time()", at))
            return [self.now, repr(self.now)] if self.stamp else []
        self.asked_at.append((query, at))
        return super().query(query, check=check, arm=arm, at=at)


@pytest.mark.parametrize("local, expect_at", [(900.0, 1000.0), (1100.0, 1100.0), (1000.0, 1000.0)])
def test_a_snapshot_not_before_the_callers_clock_is_taken_at_prometheuss_now_or_later(
        local: float, expect_at: float) -> None:
    """The controller passes its clock as `not_before`: a clock 100 s behind Prometheus's would read
    the data of 100 s ago (the newest of every window left unread), so the snapshot is evaluated at
    Prometheus's now (`time()`); a clock ahead asks a moment Prometheus has not reached, which answers
    its newest samples. Every query of the snapshot at that one time, and the offset is kept."""
    m = {"model_name": "rec", "model_version": "v1"}
    fake = Clocked([("model_requests_total", {**m, "outcome": "success"}, 40.0)], now=1000.0)
    batch = b.BatchMetrics(fake)  # type: ignore[arg-type]
    s = batch.snapshot([b.Want(policy(), T)], not_before=local)
    assert s.taken_at == expect_at
    assert fake.asked_at[0] == ("time()", None)  # asked at Prometheus's own now
    assert [at for query, at in fake.asked_at[1:]] == [expect_at] * (len(fake.asked_at) - 1) and len(fake.asked_at) > 1
    assert batch.clock_offset_last == 1000.0 - local
    assert batch.queries_last + batch.down_queries_last == len(fake.asked_at)
    batch.snapshot([b.Want(policy(), T)], at=5.0)  # an explicit time: no clock asked, no offset
    assert fake.asked_at[-1][1] == 5.0 and batch.clock_offset_last is None
    assert sum(1 for query, _ in fake.asked_at if query == "time()") == 1


def test_a_time_answer_without_a_time_is_metrics_unavailable() -> None:
    with pytest.raises(MetricsUnavailable, match=r"time\(\)"):
        b.BatchMetrics(Clocked([], now=1000.0, stamp=False)).snapshot(  # type: ignore[arg-type]
            [b.Want(policy(), T)], not_before=900.0)


def test_a_histogram_series_that_is_not_cumulative_is_could_not_measure_not_repaired() -> None:
    """The batched read of a canary whose le="0.01" counts every request (or whose +Inf counts fewer):
    a running maximum made it another distribution (p95 9.5 ms for a 972 ms canary); it is now
    MetricsUnavailable, as the per-rollout read (sixteenth session, decision 71)."""
    pol = policy()
    base = snap(both(lat=[100, 300, 400], ok=1000, err=100), pol, at=100)
    for broken in ([1400, 900, 1400], [300, 900, 700]):  # a lower bucket above a higher one; +Inf below le=0.1
        now = snap(both(lat=broken, ok=3000, err=400), pol, at=160)
        with pytest.raises(MetricsUnavailable, match="not cumulative"):
            b.measure_delta(pol, chk(pol, "lat"), T, now, base)
    assert q.not_cumulative([(0.01, 100.0), (0.1, 95.0), (math.inf, 100.0)]) == ""  # extrapolation-sized: kept
    assert "NaN" in q.not_cumulative([(0.01, math.nan), (math.inf, 10.0)])


def test_an_arm_counted_by_the_latency_count_has_no_error_count() -> None:
    """A canary exporting no request counter: its requests come from the latency histogram's _count,
    and no error series then is no error count at all (it read as 0% errors, and passed)."""
    pol = policy()
    m = {"model_name": "rec"}

    def arms(n1: float, n2: float, ok: float) -> list[Sample]:
        stable = [("model_requests_total", {**m, "model_version": "v1", "outcome": "success"}, ok)]
        return stable + [("model_inference_duration_seconds_count", {**m, "model_version": "v1"}, n1),
                         ("model_inference_duration_seconds_count", {**m, "model_version": "v2"}, n2)]

    now, base = snap(arms(10, 20, 10), pol, at=160), snap(arms(4, 5, 4), pol, at=100)
    stable, canary = b.measure_delta(pol, chk(pol, "err"), T, now, base)
    assert stable == Counts(events=0, total=6) and isinstance(canary, NoData), canary
    assert "its errors not at all" in str(canary)
    assert now.arm(pol, chk(pol, "err"), T, "canary") is None
    assert now.arm(pol, chk(pol, "err"), T, "stable") == Counts(events=0, total=10)


def test_the_windows_difference_of_a_histogram_must_be_cumulative_too() -> None:
    """Both scrapes cumulative, their difference not (+1000 at le=0.01, +200 at +Inf): the running
    maximum read it as 1,000 requests under 10 ms; the per-rollout read refuses the same numbers."""
    pol = policy()

    def arms(canary: list[float], ok: float) -> list[Sample]:
        return (model_arm("rec", "v1", lat=[500, 900, 1000], ok=1000, err=10)
                + model_arm("rec", "v2", lat=canary, ok=ok, err=10))

    base, now = snap(arms([100, 200, 1000], 1000), pol, at=100), snap(arms([1100, 1150, 1200], 1200), pol, at=160)
    with pytest.raises(MetricsUnavailable, match="not cumulative over the window"):
        b.measure_delta(pol, chk(pol, "lat"), T, now, base)


def test_a_bound_written_two_ways_in_one_series_is_one_bucket() -> None:
    """Prometheus 3 writes le="1" as "1.0"; the old series stays in the lookback for minutes. Summed, the
    bucket counted twice and a healthy histogram read as not cumulative."""
    pol = policy(checks=[{"name": "lat", "kind": "latency", "max_ms": 2000}])

    def arm(version: str, les: list[str], counts: list[float], ok: float) -> list[Sample]:
        m = {"model_name": "rec", "model_version": version}
        return ([("model_inference_duration_seconds_bucket", {**m, "le": le}, c) for le, c in zip(les, counts)]
                + [("model_requests_total", {**m, "outcome": "success"}, ok)])

    base = snap(arm("v1", ["0.5", "1", "+Inf"], [900, 1000, 1000], 1000)
                + arm("v2", ["0.5", "1", "+Inf"], [900, 1000, 1000], 1000), pol, at=100)
    now = snap(arm("v1", ["0.5", "1", "+Inf"], [1800, 2000, 2000], 2000)
               + arm("v2", ["0.5", "1", "1.0", "+Inf"], [950, 1000, 1050, 1050], 1050), pol, at=160)
    _, canary = b.measure_delta(pol, chk(pol, "lat"), T, now, base)
    assert canary == Histogram((500.0, 1000.0, math.inf), (50.0, 50.0, 50.0))


def test_a_bound_two_pods_spell_two_ways_is_summed_in_the_window_and_since_the_start() -> None:
    """Two pods of the canary, one writing le="1" and "+Inf", the other "1.0" and "Inf" (two client libraries):
    two series, each with its own observations. `Snapshot.arm` summed the series per spelling first and then
    took the larger spelling (the one-series rule above), dropping a pod: it counts both, as the window does."""
    pol = policy(checks=[{"name": "lat", "kind": "latency", "max_ms": 2000}])

    def pod(version: str, name: str, les: list[str], counts: list[float]) -> list[Sample]:
        m = {"model_name": "rec", "model_version": version, "pod": name}
        return ([("model_inference_duration_seconds_bucket", {**m, "le": le}, c) for le, c in zip(les, counts)]
                + [("model_requests_total", {**m, "outcome": "success"}, counts[-1])])

    def arms(a: list[float], b_: list[float]) -> list[Sample]:
        return (pod("v1", "s", ["0.5", "1", "+Inf"], [10, 20, 20])
                + pod("v2", "a", ["0.5", "1", "+Inf"], a) + pod("v2", "b", ["0.5", "1.0", "Inf"], b_))

    base = snap(arms([10, 20, 20], [30, 40, 40]), pol, at=100)
    now = snap(arms([30, 60, 60], [130, 190, 200]), pol, at=160)
    assert now.arm(pol, chk(pol, "lat"), T, "canary") == Histogram((500.0, 1000.0, math.inf), (160.0, 250.0, 260.0))
    _, canary = b.measure_delta(pol, chk(pol, "lat"), T, now, base)
    assert canary == Histogram((500.0, 1000.0, math.inf), (120.0, 190.0, 200.0))
