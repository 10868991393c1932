"""Both arms' native histograms as ONE query (decision 195): its shape and how its answer is split. Pure."""

from __future__ import annotations

import re

import pytest

from canary.metrics import queries as q
from canary.metrics.query_plan import arms_native_query, query_plan, twice_parts
from canary.model import Target
from canary.policy import parse_policy

TARGET = Target(namespace="ml", virtual_service="rec", model="rec", stable_version="v1", canary_version="v2")
BASE = "model_inference_duration_seconds"


def policy(*checks: dict[str, object], **metrics: object):
    return parse_policy({"steps": [10, 100], "metrics": {"source": "model", **metrics}, "checks": list(checks)})


LATENCY = {"name": "p95", "kind": "latency", "max_increase_pct": 20}
SHIFT = {"name": "shift", "kind": "prediction_shift", "max_psi": 0.2}


def test_a_latency_checks_two_arms_native_histograms_are_one_query_grouped_by_the_arm_label() -> None:
    pol = policy(LATENCY)
    got = arms_native_query(pol, pol.checks[0], TARGET, window_s=60)
    assert got is not None and got.parts == twice_parts(pol, pol.checks[0], TARGET, window_s=60)  # no part but the scrape jobs'
    head = f'sum by (model_version) (increase({BASE}{{model_name="rec",model_version=~"v1|v2"}}[60s]))'
    assert got.query == f"{head} or {q.one_answer(got.parts)}"
    assert (got.arm_label, got.versions) == ("model_version", {"stable": "v1", "canary": "v2"})
    # each arm's own native query: what an error about that arm names, and what the arm's sample answers
    plan = query_plan(pol, pol.checks[0], TARGET, window_s=60)
    assert got.arm_queries == {arm: q.native_query_of(plan[arm]["histogram"]) for arm in q.ARMS}
    assert got.arm_queries["canary"] == f'sum(increase({BASE}{{model_name="rec",model_version="v2"}}[60s]))'


def test_a_prediction_shift_checks_request_counts_are_parts_of_the_same_query() -> None:
    pol = policy(SHIFT)
    got = arms_native_query(pol, pol.checks[0], TARGET, window_s=60)
    plan = query_plan(pol, pol.checks[0], TARGET, window_s=60)
    assert got is not None and got.parts == {**{f"{arm}/requests": plan[arm]["requests"] for arm in q.ARMS},
                                             **twice_parts(pol, pol.checks[0], TARGET, window_s=60)}
    head = 'sum by (model_version) (increase(model_prediction_value{model_name="rec",model_version=~"v1|v2"}[60s]))'
    assert got.query == f"{head} or {q.one_answer(got.parts)}"
    # no part is a native histogram: label_replace marks only the request counts (floats), never a histogram
    assert "label_replace((sum by (model_version)" not in got.query


def test_other_kinds_have_no_native_query() -> None:
    pol = policy({"name": "errors", "kind": "error_rate", "max_rate_pct": 5})
    assert arms_native_query(pol, pol.checks[0], TARGET, window_s=60) is None


@pytest.mark.parametrize(("source", "labels", "matcher"), [
    ("istio", {}, 'destination_version=~"v1|v2"'),
    ("model", {"arm_label": "track"}, 'track=~"v1|v2"'),
    ("model", {"labels": {"cluster": "eu-1"}}, 'model_version=~"v1|v2",cluster="eu-1"'),
])
def test_the_arms_differ_only_in_the_arm_label_whatever_the_source(source: str, labels: dict[str, object],
                                                                    matcher: str) -> None:
    pol = policy(LATENCY, **{"source": source, **labels})
    sel, label, _ = q.arms_selector(pol, TARGET, source)
    assert matcher in sel and label == matcher.split("=~")[0]
    one = q.selector(pol, TARGET, "stable", source)
    assert sel == one.replace(f'{label}="v1"', f'{label}=~"v1|v2"')


@pytest.mark.parametrize(("stable", "canary", "decoys"), [
    ("1.2+cu121", "1.3+cu121", ["1.22cu121", "1x2+cu121", "1.2+cu1210"]),
    ("v1.0.0", "v1.0.1", ["v1x0x0", "v100", "v1.0.0-rc1", "xv1.0.0"]),
    ("a|b", "(c)", ["a", "b", "c"]),
])
def test_a_version_with_regex_metacharacters_matches_itself_only(stable: str, canary: str, decoys: list[str]) -> None:
    """Prometheus anchors `=~` at both ends (^(?:...)$) and reads RE2; the versions are regex literals."""
    pol = policy(LATENCY)
    target = Target(namespace="ml", virtual_service="rec", model="rec", stable_version=stable, canary_version=canary)
    sel, _, versions = q.arms_selector(pol, target, "model")
    written = re.search(r'model_version=~"((?:[^"\\]|\\.)*)"', sel)[1]  # type: ignore[index]
    unquoted = re.sub(r"\\(.)", r"\1", written)  # the PromQL string read back: RE2's own escapes
    regex = re.compile(f"^(?:{unquoted})$")
    assert all(regex.match(v) for v in versions.values())
    assert not any(regex.match(v) for v in decoys)


def test_both_arms_the_same_version_ask_it_once_and_each_arm_reads_it() -> None:
    """`canary plan` reads the stable's layout with both arms that version (promote refuses it): one
    series answers both arms, as their own two queries would."""
    pol = policy(LATENCY)
    same = Target(namespace="ml", virtual_service="rec", model="rec", stable_version="v1", canary_version="v1")
    got = arms_native_query(pol, pol.checks[0], same, window_s=60)
    assert got is not None and 'model_version=~"v1"}' in got.query
    series = {"metric": {"model_version": "v1"}, "histogram": [1, {"count": "3"}]}
    arms, _ = q.split_arms([series], "model_version", got.versions)
    assert arms == {"stable": [series], "canary": [series]}


def test_the_answer_is_split_by_version_and_part_a_missing_arm_is_empty_never_another() -> None:
    def native(version: str, count: str) -> dict[str, object]:
        return {"metric": {"model_version": version}, "histogram": [1, {"count": count}]}

    part = {"metric": {q.PART_LABEL: "stable/requests"}, "value": [1, "12"]}
    other = native("v22", "99")  # a series of another version: never counted
    arms, parts = q.split_arms([native("v1", "3"), other, part], "model_version", {"stable": "v1", "canary": "v2"},
                               ["stable/requests", "canary/requests"])
    assert arms == {"stable": [native("v1", "3")], "canary": []}
    assert parts == {"stable/requests": [{"metric": {}, "value": [1, "12"]}], "canary/requests": []}
