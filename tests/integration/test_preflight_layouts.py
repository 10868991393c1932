"""Preflight's `metrics.buckets_too_coarse` against a real Prometheus: every latency limit, both arms' layouts.

The judge shows a latency ceiling (`max_ms`) on the canary's own bounds and a relative limit on
the bounds both arms share. Preflight warned only for a relative limit, on the stable's layout:
a ceiling-only check on Istio's buckets (a stable p95 of 114 ms in (100, 250] against 200 ms, which
`canary plan --prometheus-url` calls "CANNOT resolve") and a canary redeployed with new buckets (its
series exported at 0 before any traffic, as client libraries do once a model is loaded) went
through it silently, and the rollout ran to its step's deadline with a good canary INCONCLUSIVE at
every look. One backfilled server, Istio series at 50 rps (lognormal sigma 0.5, stable p95 114 ms):
  istio    both arms on Istio's buckets, the canary's at 0 (no traffic yet)
  fine     both arms on x1.05 buckets from 50 ms, the canary's at 0
  redeploy the stable on x1.05 buckets, the canary's at 0 on Istio's
  quiet    the stable on x1.05 buckets, no canary series at all (the usual case before traffic)
"""

from __future__ import annotations

import math
from typing import Any, Iterator

import pytest
from scipy import stats as st

from canary.analysis.judge import judge_check
from canary.metrics.prometheus import PrometheusProvider
from canary.model import Histogram, Outcome, Target
from canary.policy import parse_policy
from canary.sandbox.promserver import PromServer, counter, find_binary, histogram, history_window, openmetrics

pytestmark = pytest.mark.integration
SIGMA, Z95, P95 = 0.5, float(st.norm.ppf(0.95)), 114.0
ISTIO = (1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0)
FINE = tuple(round(50 * 1.05 ** i, 3) for i in range(40))
LAYOUTS = {"istio": (ISTIO, ISTIO), "fine": (FINE, FINE), "redeploy": (FINE, ISTIO), "quiet": (FINE, None)}
RELATIVE = {"name": "lat", "kind": "latency", "quantile": 0.95, "max_increase_pct": 20}
CEILING = {"name": "lat", "kind": "latency", "quantile": 0.95, "max_ms": 200}


def _shares(bounds: tuple[float, ...]) -> list[float]:
    median = P95 / math.exp(SIGMA * Z95)
    cdf = [float(st.norm.cdf(math.log(b / median) / SIGMA)) for b in bounds] + [1.0]
    return [b - a for a, b in zip([0.0, *cdf[:-1]], cdf)]


def _arm(model: str, version: str, bounds: tuple[float, ...], rps: float) -> list[Any]:
    labels = {"reporter": "destination", "destination_service_name": model, "destination_service_namespace": "ml",
              "destination_version": version}
    per_s = [rps * x for x in _shares(bounds)]
    return (histogram("istio_request_duration_milliseconds", labels, bounds, per_s)
            + counter("istio_requests_total", {**labels, "response_code": "200"}, rps))


@pytest.fixture(scope="module")
def prom() -> Iterator[PrometheusProvider]:
    if not find_binary("prometheus") or not find_binary("promtool"):
        pytest.skip("prometheus/promtool not installed (Debian package `prometheus`; CI installs it)")
    series: list[Any] = []
    for model, (stable, canary) in LAYOUTS.items():
        series += _arm(model, "v1", stable, 50.0)
        if canary is not None:
            series += _arm(model, "v2", canary, 0.0)  # exported, never observed: no traffic yet
    start, end = history_window(None, before_s=3600, after_s=3 * 3600)
    server = PromServer(history=openmetrics(series, start=start, end=end), binary=find_binary("prometheus"))
    server.start()
    try:
        yield PrometheusProvider(server.url, retries=1, budget_s=3.0, backoff_s=0.05)
    finally:
        server.stop()


def _preflight(prom: PrometheusProvider, model: str, *checks: dict[str, Any]) -> tuple[str, ...]:
    pol = parse_policy({"steps": [5, 25, 100], "metrics": {"source": "istio"}, "analysis": {"interval": "5m"},
                        "checks": list(checks)})
    target = Target(namespace="ml", virtual_service=model, model=model, stable_version="v1", canary_version="v2")
    return prom.preflight(pol, target).unresolvable


def _judged(check: dict[str, Any], stable: tuple[float, ...], canary: tuple[float, ...]) -> Outcome:
    """The judge on a good canary (the stable's latency) with plenty of requests on these layouts."""
    def hist(bounds: tuple[float, ...], n: float) -> Histogram:
        cum = [n * c for c in (sum(_shares(bounds)[:i + 1]) for i in range(len(bounds) + 1))]
        return Histogram(bounds=(*bounds, math.inf), counts=tuple(cum))

    pol = parse_policy({"steps": [5, 100], "checks": [check]})
    return judge_check(pol.checks[0], hist(stable, 1e6), hist(canary, 1e5), alpha=0.01, min_canary=100).outcome


def test_a_ceiling_its_layout_cannot_show_is_warned_before_traffic(prom: PrometheusProvider) -> None:
    """max_ms 200 on Istio's buckets: only the bound 100 ms is at or below it, the stable's p95 is above
    it, so a canary as fast as stable never passes (the judge says so at every look); preflight said
    nothing. On x1.05 buckets the same ceiling is shown, and preflight stays quiet."""
    assert _judged(CEILING, ISTIO, ISTIO) is Outcome.INCONCLUSIVE and _judged(CEILING, FINE, FINE) is Outcome.PASS
    [line] = _preflight(prom, "istio", CEILING)
    assert line.startswith("checks[0] 'lat': stable p95 in (100, 250] ms, a bucket around the ceiling 200 ms"), line
    assert "only one faster than the bound 100 ms" in line
    assert _preflight(prom, "fine", CEILING) == ()
    # a check with both limits: one line per limit its layout cannot show
    both = _preflight(prom, "istio", {**RELATIVE, "max_ms": 200})
    assert len(both) == 2 and "within +20%" in both[0] and "below it" in both[1], both


def test_a_canary_exporting_other_buckets_before_its_traffic_is_warned(prom: PrometheusProvider) -> None:
    """The stable on x1.05 buckets resolves +20% and 200 ms; the canary's series, at 0, are on Istio's
    (a redeploy with new buckets). The arms share only 50 ms finite, and the canary's own bounds put
    nothing between the stable's p95 and 200 ms: a good canary never passes either limit. Preflight
    reads the canary's layout from its answer (counts 0) and says so; a canary with no series yet
    (the usual case) is no warning."""
    assert _judged(RELATIVE, FINE, ISTIO) is Outcome.INCONCLUSIVE
    assert _judged(CEILING, FINE, ISTIO) is Outcome.INCONCLUSIVE
    [line] = _preflight(prom, "redeploy", RELATIVE)
    assert line.startswith("checks[0] 'lat': the canary's series export other buckets (1, 2.5, 5, 10, ..., 500, "
                           "1000 ms; a redeploy with new buckets?); on the bounds both arms share, stable p95 in "
                           "(50, inf] ms, the open +Inf bucket"), line
    [line] = _preflight(prom, "redeploy", CEILING)
    assert "the canary's buckets have no bound between" in line and "its largest at or below it: 100 ms" in line, line
    assert _preflight(prom, "quiet", RELATIVE, {**CEILING, "name": "lat2"}) == ()
    assert _preflight(prom, "fine", RELATIVE) == ()


# -- Prometheus's default scrape interval ---------------------------------------------------------


@pytest.fixture(scope="module")
def minute_scrapes() -> Iterator[str]:
    """A stable serving 50 rps, its series sampled every 60 s (Prometheus's default scrape interval)."""
    if not find_binary("prometheus") or not find_binary("promtool"):
        pytest.skip("prometheus/promtool not installed (Debian package `prometheus`; CI installs it)")
    start, end = history_window(None, before_s=3600, after_s=3 * 3600, step=60.0)
    server = PromServer(history=openmetrics(_arm("minute", "v1", FINE, 50.0), start=start, end=end, step=60.0),
                        binary=find_binary("prometheus"))
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


def test_a_serving_stable_scraped_every_minute_is_not_refused_as_blind(minute_scrapes: str, tmp_path: Any) -> None:
    """`analysis.interval` 60 s (the field's default) and `metrics.scrape_interval` left at its 1 min default,
    as Prometheus scrapes: preflight asked `increase(...[60s])`, which holds one sample of a 60 s series,
    so every stable query was empty and a stable serving 50 rps was refused, exit 2, as "no stable (v1) data
    over the last 60s" (check the labels...); `canary plan --prometheus-url` exited 3, "could not read".
    Both now ask over 3 scrapes (180 s) where that is longer than the interval."""
    import structlog
    import yaml
    from typer.testing import CliRunner

    from canary.cli import app
    from canary.reconcile import preflight_metrics

    doc = {"steps": [5, 25, 100], "metrics": {"source": "istio"}, "analysis": {"interval": "60s"},
           "checks": [RELATIVE]}
    pol = parse_policy(doc)
    target = Target(namespace="ml", virtual_service="minute", model="minute", stable_version="v1", canary_version="v2")
    prom = PrometheusProvider(minute_scrapes, retries=1, budget_s=3.0, backoff_s=0.05)
    with structlog.testing.capture_logs() as logs:
        preflight_metrics(prom, pol, target, log=structlog.get_logger())
    [passed] = [e for e in logs if e["event"] == "metrics.preflight_passed"]
    assert passed["window_s"] == 180 and not [e for e in logs if e["event"] == "metrics.preflight_empty_stable"]
    f = tmp_path / "p.yaml"
    f.write_text(yaml.safe_dump(doc))
    r = CliRunner().invoke(app, ["plan", "-p", str(f), "--rps", "50", "--prometheus-url", minute_scrapes,
                                 "--model", "minute", "--stable-version", "v1", "-n", "ml", "-o", "json"])
    assert r.exit_code == 0, r.output
    import json

    [layout] = json.loads(r.stdout)["layout"]
    assert layout["resolves"] is True and layout["quantile_ms"] == pytest.approx(P95, rel=0.05), layout
