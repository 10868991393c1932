"""`metrics.labels` reaches every vector selector of a custom check's PromQL.

A policy with `labels: {cluster: eu-1}` sent its request queries with `cluster="eu-1"` and its custom
query without: the custom check read every cluster. The matchers are now inserted, lexically, into each
selector of the template (`policy_promql.selector_insertions`), never into strings, comments, ranges,
function names, keywords or grouping lists.
"""

from __future__ import annotations

import pytest

from canary.metrics import queries as q
from canary.metrics.query_plan import query_plan
from canary.model import Target
from canary.policy import check_promql, parse_policy

M = 'cluster="eu-1"'
CASES = [
    ('avg(nv_gpu_utilization{model="{model}", version="{version}"})',
     'avg(nv_gpu_utilization{model="rec", version="v2",cluster="eu-1"})'),
    ("sum by (le) (rate(x[{window}]))", 'sum by (le) (rate(x{cluster="eu-1"}[60s]))'),
    ("sum(rate(x_total[5m:1m])) by (job) / on(a) group_left b",
     'sum(rate(x_total{cluster="eu-1"}[5m:1m])) by (job) / on(a) group_left b{cluster="eu-1"}'),
    ("x{}", 'x{cluster="eu-1"}'),
    ('x{a="b",}', 'x{a="b",cluster="eu-1"}'),
    ("SUM(x) WITHOUT (le)", 'SUM(x{cluster="eu-1"}) WITHOUT (le)'),
    ('histogram_quantile(0.9, sum by (le) (rate(lat_bucket{a="}"}[1m])))',
     'histogram_quantile(0.9, sum by (le) (rate(lat_bucket{a="}",cluster="eu-1"}[1m])))'),
    ("vector(1)", "vector(1)"),
    ("x offset 5m @ start()", 'x{cluster="eu-1"} offset 5m @ start()'),
    ("x # and y{z}\n and y", 'x{cluster="eu-1"} # and y{z}\n and y{cluster="eu-1"}'),
    ('label_replace(up, "d", "$1", "s", "(.*)")', 'label_replace(up{cluster="eu-1"}, "d", "$1", "s", "(.*)")'),
    ("x > bool 1e+3 or Inf", 'x{cluster="eu-1"} > bool 1e+3 or Inf'),
    ('{__name__=~"a.*"}', '{__name__=~"a.*",cluster="eu-1"}'),
    ('count_values("v", x) unless y', 'count_values("v", x{cluster="eu-1"}) unless y{cluster="eu-1"}'),
    ('x {a="b"}', 'x {a="b",cluster="eu-1"}'),
    ("job:rate5m:sum * 0x1f", 'job:rate5m:sum{cluster="eu-1"} * 0x1f'),
    ("quantile_over_time(0.9, x[5m]) and nan_count", 'quantile_over_time(0.9, x{cluster="eu-1"}[5m]) and nan_count{cluster="eu-1"}'),
    ("a * ignoring(le, pod) group_right(job) b", 'a{cluster="eu-1"} * ignoring(le, pod) group_right(job) b{cluster="eu-1"}'),
    ("topk(3, x)", 'topk(3, x{cluster="eu-1"})'),
    # keywords are metric names where an operand stands (Prometheus's metric_identifier)
    ("sum(rate(by[5m]))", 'sum(rate(by{cluster="eu-1"}[5m]))'),
    ("x offset 1m + offset", 'x{cluster="eu-1"} offset 1m + offset{cluster="eu-1"}'),
    ("x or on(job) unless", 'x{cluster="eu-1"} or on(job) unless{cluster="eu-1"}'),
    ("x > bool and", 'x{cluster="eu-1"} > bool and{cluster="eu-1"}'),
    ("sum by (job) (SUM) + Count", 'sum by (job) (SUM{cluster="eu-1"}) + Count{cluster="eu-1"}'),
]


@pytest.mark.parametrize(("template", "want"), CASES, ids=[c[0][:40] for c in CASES])
def test_labels_reach_every_selector(template: str, want: str) -> None:
    got = q.render_custom(template, check_name="c", model="rec", version="v2", namespace="ml", window_s=60,
                          labels={"cluster": "eu-1"})
    assert got == want
    assert check_promql(got) == got  # still one balanced query


def test_values_are_escaped_and_never_read_as_placeholders() -> None:
    got = q.render_custom('x{a="{version}"}', check_name="c", model="m", version="v2", namespace="ml", window_s=60,
                          labels={"team": 'a"b{model}', "cluster": "eu"})
    assert got == 'x{a="v2",cluster="eu",team="a\\"b{model}"}'
    assert q.render_custom("x", check_name="c", model="m", version="v", namespace="n", window_s=60) == "x"


def test_the_policy_sends_its_labels_on_the_custom_query() -> None:
    pol = parse_policy({"steps": [10, 100], "metrics": {"labels": {"cluster": "eu-1"}}, "checks": [
        {"name": "gpu", "kind": "custom", "max_ratio": 1.2,
         "query": 'avg(nv_gpu_utilization{model="{model}", version="{version}"})'}]})
    target = Target(namespace="ml", virtual_service="rec", model="rec", stable_version="v1", canary_version="v2")
    plan = query_plan(pol, pol.checks[0], target, window_s=60)
    for arm in ("stable", "canary"):
        assert M in plan[arm]["requests"] and M in plan[arm]["custom"], plan[arm]


@pytest.mark.parametrize("template, want", [
    ('sum(rate(x{a="{model}"}[5m])) / sum(rate(y[5m] offset 1m))', ['x{a="rec"}', "y"]),
    ("max(x) by (job) + on(job) sum(y) # z{a=\"b\"}", ["x", "y"]),
    ('{__name__="x", b="c"} and x {d="{version}"}', ['{__name__="x", b="c"}', 'x {d="v2"}']),
    ("histogram_quantile(0.9, sum by (le) (rate(x_bucket[{window}])))", ["x_bucket"]),
    ("vector(1)", []),
    ('x{a="b"} + x{a="b"}', ['x{a="b"}']),
])
def test_a_custom_querys_selectors_are_the_series_its_scrape_parts_read(template: str, want: list[str]) -> None:
    """Decision 378: the scraped-twice and target-down parts of a custom check read every vector selector of its
    PromQL, rendered for the arm, each once, and nothing that is not a selector (a range, an offset, a label list,
    a function, a comment)."""
    check_promql(template)
    got = q.custom_selectors(template, check_name="c", model="rec", version="v2", namespace="ml", window_s=60)
    assert got == want
    labelled = q.custom_selectors(template, check_name="c", model="rec", version="v2", namespace="ml", window_s=60,
                                  labels={"cluster": "eu"})
    assert all('cluster="eu"' in x for x in labelled) and len(labelled) == len(want)
