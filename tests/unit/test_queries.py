"""PromQL building, escaping and bucket normalisation: pure, no Prometheus."""

from __future__ import annotations

import math

import pytest

from canary.errors import ConfigError
from canary.metrics import queries as q
from canary.model import Target
from canary.policy import parse_policy

TARGET = Target(namespace="ml", virtual_service="rec", model="rec", stable_version="v1", canary_version="v2")
EVIL = 'rec"}or vector(1)#'


def policy(**metrics: object):
    return parse_policy({"steps": [10, 100], "metrics": metrics,
                         "checks": [{"name": "err", "kind": "error_rate", "max_rate_pct": 5}]})  # every source has one


@pytest.mark.parametrize(("raw", "escaped"), [
    ("plain", "plain"),
    ('a"b', 'a\\"b'),
    ("a\\b", "a\\\\b"),
    ("a\nb", "a\\nb"),
    (EVIL, 'rec\\"}or vector(1)#'),
    ('\\"', '\\\\\\"'),  # a backslash before a quote must not un-escape the quote
])
def test_escape(raw: str, escaped: str) -> None:
    assert q.escape(raw) == escaped


@pytest.mark.parametrize(("source", "stable", "canary"), [
    ("model", '{model_name="rec",model_version="v1"}', '{model_name="rec",model_version="v2"}'),
    ("triton", '{model="rec",version="v1"}', '{model="rec",version="v2"}'),
    ("istio",
     '{destination_service_name="rec",destination_version="v1",destination_service_namespace="ml",reporter="destination"}',
     '{destination_service_name="rec",destination_version="v2",destination_service_namespace="ml",reporter="destination"}'),
])
def test_selector_per_preset(source: str, stable: str, canary: str) -> None:
    p = policy(source=source)
    assert q.selector(p, TARGET, "stable", source) == stable
    assert q.selector(p, TARGET, "canary", source) == canary


def test_selector_overrides_and_extra_labels() -> None:
    p = policy(source="istio", arm_label="version", model_label="destination_app",
               labels={"reporter": "source", "cluster": "eu-1"})
    assert q.selector(p, TARGET, "canary", "istio") == (
        '{destination_app="rec",version="v2",destination_service_namespace="ml",cluster="eu-1",reporter="source"}'
    )


def test_empty_model_label_matches_no_model() -> None:
    p = policy(source="model", model_label="", labels={"job": "rec"})
    assert q.selector(p, TARGET, "stable", "model") == '{model_version="v1",job="rec"}'


def test_selector_escapes_values_so_a_name_cannot_inject() -> None:
    evil = Target(namespace="ml", virtual_service="rec", model=EVIL, stable_version='v1"} or vector(1)', canary_version="v2")
    sel = q.selector(policy(source="model"), evil, "stable", "model")
    assert sel == '{model_name="rec\\"}or vector(1)#",model_version="v1\\"} or vector(1)"}'


@pytest.mark.parametrize("bad", ["1version", "ver-sion", 'x"}', ""])
def test_bad_label_names_are_config_errors(bad: str) -> None:
    with pytest.raises(ConfigError, match="label name"):
        q.selector(policy(source="model", labels={bad: "x"}), TARGET, "stable", "model")


def test_histogram_query() -> None:
    assert q.histogram_query("m", '{a="b"}', 60) == 'sum by (le) (increase(m_bucket{a="b"}[60s]))'


@pytest.mark.parametrize(("seconds", "text"), [(60, "60s"), (60.0, "60s"), (1.5, "1500ms"), (0.0004, "1ms")])
def test_duration(seconds: float, text: str) -> None:
    assert q.duration(seconds) == text


@pytest.mark.parametrize("bad", [0, -1, math.inf, math.nan])
def test_duration_rejects(bad: float) -> None:
    with pytest.raises(ConfigError):
        q.duration(bad)


def test_request_and_error_queries() -> None:
    sel = '{model="m",version="1"}'
    triton = q.preset("triton")
    assert q.requests_query(triton, sel, 30) == (
        'sum(increase(nv_inference_request_success{model="m",version="1"}[30s]))'
        ' + (sum(increase(nv_inference_request_failure{model="m",version="1"}[30s])) or vector(0))'
    )
    # no 5xx series is no errors only where the request counter that would carry them exists
    assert q.errors_query(q.preset("istio"), '{a="b"}', 30) == (
        '(sum(increase(istio_requests_total{a="b",response_code=~"5.."}[30s]) or '
        f'increase(istio_requests_total{{a="b",{q.GRPC_SERVER_ERRORS}}}[30s])) or '
        '(sum(increase(istio_requests_total{a="b"}[30s])) * 0))'
    )
    model = q.requests_query(q.preset("model"), '{a="b"}', 30)
    assert model == ('(sum(increase(model_requests_total{a="b"}[30s]))) or '
                     'sum(increase(model_inference_duration_seconds_count{a="b"}[30s]))')
    assert q.feature_missing_query(q.preset("model"), '{a="b"}', 30) == (
        'avg(avg_over_time(model_feature_missing_rate{a="b"}[30s]))'
    )


def test_missing_metrics_are_config_errors_naming_the_check() -> None:
    with pytest.raises(ConfigError, match="'p95'.*use source 'model' or 'istio'"):
        q.latency_metric(q.preset("triton"), "p95")
    with pytest.raises(ConfigError, match="'shift'.*istio"):
        q.prediction_metric(q.preset("istio"), "shift", None)
    assert q.prediction_metric(q.preset("istio"), "shift", "score_bucket") == "score"
    with pytest.raises(ConfigError, match="metric name"):
        q.prediction_metric(q.preset("model"), "shift", "x{a='b'}")
    with pytest.raises(ConfigError, match="'miss'"):
        q.feature_metric(q.preset("triton"), "miss")
    with pytest.raises(ConfigError, match="unknown metrics source"):
        q.preset("datadog")


def test_triton_mean_latency_query() -> None:
    query = q.triton_mean_latency_query('{model="m"}', 60)
    assert query.startswith('sum(increase(nv_inference_request_duration_us{model="m"}[60s])) / (')
    assert query.endswith(") / 1000")


def render(template: str, **kw: str) -> str:
    args = {"model": "rec", "version": "v2", "namespace": "ml", "window_s": 60, **kw}
    return q.render_custom(template, check_name="biz", **args)  # type: ignore[arg-type]


def test_custom_placeholders() -> None:
    t = 'sum(rate(clicks_total{model_name="{model}",v="{version}",ns="{namespace}"}[{window}]))'
    assert render(t) == 'sum(rate(clicks_total{model_name="rec",v="v2",ns="ml"}[60s]))'


def test_custom_leaves_other_braces_alone() -> None:
    assert render('sum(x{a="{other}"}) by (le)') == 'sum(x{a="{other}"}) by (le)'


def test_custom_escapes_injection() -> None:
    out = render('sum(x{model_name="{model}"})', model=EVIL)
    assert out == 'sum(x{model_name="rec\\"}or vector(1)#"})'


@pytest.mark.parametrize("template", [
    "sum(x{model_name={model}})",  # bare: escaping cannot protect it
    "sum(x{model_name='{model}'})",  # single quotes: our escaping is for double quotes
    "sum(x{model_name=`{version}`})",
    'sum(x{a="\\"",b={namespace}})',  # the escaped quote does not close the string
])
def test_custom_placeholder_outside_double_quotes_is_refused(template: str) -> None:
    with pytest.raises(ConfigError, match="'biz'.*double-quoted"):
        render(template)


def test_custom_escaped_quote_keeps_string_open() -> None:
    assert render('x{a="\\"{model}"}') == 'x{a="\\"rec"}'


def test_normalise_sorts_and_clamps() -> None:
    raw = [(math.inf, 99.8), (0.5, 60.2), (0.1, 10.0), (0.25, 60.4), (1.0, 99.9)]  # non-monotone by tiny amounts
    h = q.normalise(raw, [le for le, _ in raw], scale=1000)
    assert h.bounds == (100.0, 250.0, 500.0, 1000.0, math.inf)
    assert h.counts == (10.0, 60.4, 60.4, 99.9, 99.9)


def test_normalise_fills_missing_and_nan_buckets_from_below() -> None:
    h = q.normalise([(1.0, 5.0), (2.0, math.nan), (math.inf, 9.0)], [1.0, 2.0, 4.0])
    assert h.bounds == (1.0, 2.0, 4.0, math.inf)
    assert h.counts == (5.0, 5.0, 5.0, 9.0)


def test_normalise_merges_equal_bounds_and_adds_inf() -> None:
    # '1' from a Go exporter and '1.0' from prometheus_client are one bucket once parsed
    h = q.normalise([(q.parse_le("1"), 3.0), (q.parse_le("1.0"), 4.0), (q.parse_le("+Inf"), 9.0)], [1.0])
    assert h.bounds == (1.0, math.inf)
    assert h.counts == (7.0, 9.0)
    h = q.normalise([(0.5, 2.0), (-0.0, -1e-12)], [0.5])  # no +Inf sample, a negative extrapolation
    assert h.bounds == (-0.0, 0.5, math.inf) and h.counts == (0.0, 2.0, 2.0)


def test_seconds_to_ms_without_float_noise() -> None:
    h = q.normalise([(0.025, 1.0), (0.005, 0.5)], [0.025, 0.005], scale=1000)
    assert h.bounds == (5.0, 25.0, math.inf)


def test_a_custom_query_returning_a_native_histogram_says_how_to_take_a_number():
    from canary.errors import ConfigError
    from canary.metrics.answers import number_of

    sample = [{"metric": {}, "histogram": [1, {"count": "3", "sum": "0.1", "buckets": [[0, "0.01", "0.02", "3"]]}]}]
    with pytest.raises(ConfigError, match="native histogram.*histogram_quantile"):
        number_of(sample, "sum(rate(lat[5m]))", "custom", "canary")


@pytest.mark.parametrize("sel", ['{model_name="rec",model_version="v1"}', '{a="x]}[5m]))",b="\\\\\\"q"}',
                                 '{model_name="réc 🚀",model_version=""}'])
@pytest.mark.parametrize("window_s", [1, 1.5, 60, 5400, 86400])
def test_the_native_query_of_a_histogram_query_reads_the_same_series_and_window(sel, window_s):
    """A histogram with no classic buckets is read as a native one: the native query is built back
    from the query that `histogram_query` built, so it must invert it for any label values and window."""
    from canary.metrics import queries as q

    for base in ("model_inference_duration_seconds", "ns:latency:seconds"):
        assert q.native_query_of(q.histogram_query(base, sel, window_s)) == q.native_histogram_query(base, sel, window_s)
    assert q.native_query_of("sum(rate(x[5m]))") is None
