"""`metrics.labels` reaches every selector of a custom query, as a real Prometheus reads the query.

Every metric below has the value 1 in cluster eu-1 and 100 in us-1; each query adds up its selectors,
so one selector left without `cluster="eu-1"` reads both clusters and the answer passes 100. Prometheus's
grammar takes most keywords as metric names where an operand stands (`sum(by)`, `offset[5m]`,
`x + sum`): the lexical insertion left those without the labels, a silent widening to every cluster
(a fresh attacker, seventeenth session; decision 73 (i)).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Iterator

import pytest

from canary.metrics.queries import render_custom
from canary.sandbox.promserver import PromServer, gauge, history_window, openmetrics

pytestmark = pytest.mark.integration

NAMES = ("x", "y", "by", "without", "offset", "sum", "count", "topk", "group", "quantile", "and", "or", "unless",
         "smoothed", "anchored", "start", "end", "step", "limitk", "count_values", "stddev", "min", "max", "avg",
         "BY", "Sum", "OFFSET")
# Each query reads its selectors so that one without the labels either adds us-1's 100 to the answer or
# makes the query fail (`ignoring(cluster)`/`on(job)` then match two series on one side: Prometheus 422).
QUERIES = [
    "sum(by)", "sum(rate(offset[5m]) * 0 + offset)", "x + sum", "sum(x) + sum(sum)",
    "sum by (job) (by) + on(job) sum without (cluster) (without)", "by + without",
    "x + ignoring(job) group_left count", "topk(1, topk)", "group + x", "quantile(1, quantile)",
    "sum(and) + sum(or) + sum(unless)", "x and y", "(sum(x) or sum(y))", "x + ignoring(cluster) or",
    "x - on(job) unless", "x > bool ignoring(cluster) and", "offset offset 1m", "x offset 1m + offset",
    "sum(last_over_time(offset[1h]))", "smoothed + anchored", "start + end + step", "limitk + count_values",
    "x + min + max + avg", "BY + Sum + OFFSET", "sum(x) BY (job) + on(job) sum by (job) (y)",
    'sum({__name__="x"})', "x + on(cluster, job) group_left() and",
]

@pytest.fixture(scope="module")
def prom(prometheus_binary: str) -> Iterator[tuple[str, float]]:
    start, end = history_window(before_s=1800, after_s=600)
    series = [s for name in NAMES for cluster, value in (("eu-1", 1.0), ("us-1", 100.0))
              for s in gauge(name, {"cluster": cluster, "job": "j"}, value)]
    server = PromServer(history=openmetrics(series, start=start, end=end), binary=prometheus_binary)
    server.start()
    try:
        yield server.url, start + 1800
    finally:
        server.stop()


def _query(url: str, q: str, at: float) -> float | None:
    """The sum of the query's values at `at`; None when Prometheus refuses it (422: two series on a
    matching side)."""
    try:
        with urllib.request.urlopen(f"{url}/api/v1/query?" + urllib.parse.urlencode({"query": q, "time": at})) as r:
            doc = json.load(r)
    except urllib.error.HTTPError as exc:
        assert exc.code == 422, (q, exc)
        return None
    result = doc["data"]["result"]
    assert result, (q, doc)
    return sum(float(r["value"][1]) for r in result)


@pytest.mark.parametrize("template", QUERIES)
def test_every_selector_reads_only_the_labelled_cluster(prom: tuple[str, float], template: str) -> None:
    url, at = prom
    wide = _query(url, template, at)
    assert wide is None or wide >= 100  # the control: without the labels it reads both clusters, or fails
    got = render_custom(template, check_name="c", model="m", version="v", namespace="n", window_s=60,
                        labels={"cluster": "eu-1"})
    value = _query(url, got, at)
    assert value is not None and value < 100, f"{template!r} rendered {got!r}: a selector reads every cluster ({value})"
