"""`canary.judged_marks`: what a rollout is judged under, as the controller compares it mid-rollout
(decision 79). Pure: a rewrite that changes nothing judged changes no mark; an edit of which series
are judged changes a series mark; an edit of how they are judged changes a how-mark."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from canary import judged_marks as jm
from canary.model import Target
from canary.policy import parse_policy
from tests import fleet

TARGET = Target(namespace="ml", virtual_service="m0", model="m0", stable_version="v1", canary_version="v2")


def _marks(pol: dict[str, Any], target: Target = TARGET) -> dict[str, str]:
    return jm.marks(parse_policy(pol), target)


def _edited(fn: Any, target: Target = TARGET) -> tuple[list[str], list[str]]:
    pol = copy.deepcopy(fleet.FAST_POLICY)
    fn(pol)
    return jm.edited(_marks(fleet.FAST_POLICY), _marks(pol, target))


def test_the_marks_are_short_digests_of_every_judged_section() -> None:
    marks = _marks(fleet.FAST_POLICY)
    assert set(marks) == {"series", "steps", "analysis", "checks", "histograms"}
    assert all(len(v) == 16 and int(v, 16) >= 0 for v in marks.values())


def test_the_versions_are_left_out() -> None:
    """The versions are what a rollout compares, not what it is judged under: a restart under another
    stable version judges the same series."""
    assert _marks(fleet.FAST_POLICY) == _marks(fleet.FAST_POLICY, Target("ml", "m0", "m0", "v7", "v9"))


@pytest.mark.parametrize("rewrite", [
    lambda p: p.update(checks=list(reversed(p["checks"]))),
    lambda p: p["checks"][0].update(quantile=0.95, hard=False),
    lambda p: p["metrics"].update(arm_label="model_version", model_label="model_name", labels={}, histograms="classic"),
    lambda p: p["checks"][1].update(source="model"),
    lambda p: p["failure"].update(max_failed_looks=5),  # when to give up: applies at once, no mark
], ids=["reordered", "defaults", "source labels", "check source", "failure"])
def test_a_rewrite_that_changes_nothing_judged_changes_no_mark(rewrite: Any) -> None:
    assert _edited(rewrite) == ([], [])


@pytest.mark.parametrize("edit, series", [
    (lambda p: p["metrics"].update(labels={"region": "eu"}), ["series"]),
    (lambda p: p["metrics"].update(arm_label="version"), ["series"]),
    (lambda p: p["metrics"].update(source="istio"), ["series"]),
], ids=["labels", "arm label", "source"])
def test_an_edit_of_which_series_changes_a_series_mark(edit: Any, series: list[str]) -> None:
    assert _edited(edit)[0] == series


def test_another_model_changes_the_series() -> None:
    assert _edited(lambda p: None, Target("ml", "m0", "m1", "v1", "v2")) == (["series"], [])


@pytest.mark.parametrize("edit, how", [
    (lambda p: p.update(steps=[50, 100]), ["steps"]),
    (lambda p: p["analysis"].update(alpha=0.05), ["analysis"]),
    (lambda p: p["checks"][0].update(max_increase_pct=50), ["checks"]),
    (lambda p: p["checks"][0].update(name="p95"), ["checks"]),  # evidence is kept by check name
    (lambda p: p["checks"].pop(), ["checks"]),
    (lambda p: p["metrics"].update(histograms="native"), ["histograms"]),
], ids=["steps", "analysis", "threshold", "renamed", "removed", "native histograms"])
def test_an_edit_of_how_they_are_judged_changes_a_how_mark(edit: Any, how: list[str]) -> None:
    assert _edited(edit) == ([], how)


def test_a_check_reading_another_source_is_a_checks_edit_not_a_series_one() -> None:
    def add(p: dict[str, Any]) -> None:
        p["checks"].append({"name": "mesh-errors", "kind": "error_rate", "source": "istio", "max_increase_points": 2})
    series, how = _edited(add)
    assert series == [] and how == ["checks"]


def test_a_record_without_a_mark_matches_any_value_of_it() -> None:
    old = {k: v for k, v in _marks(fleet.FAST_POLICY).items() if k != "histograms"}
    pol = copy.deepcopy(fleet.FAST_POLICY)
    pol["metrics"]["histograms"] = "native"
    assert jm.edited(old, _marks(pol)) == ([], [])
