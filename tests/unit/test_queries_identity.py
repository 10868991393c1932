"""A measurement reads exactly the series it means: identity matchers always win.

The policy refuses, at load time, any label setting that would let a query read
the other arm, another model or another namespace (tests/unit/test_policy_strict.py);
here: the query builder agrees with the policy's table of labels, refuses the same
collisions itself when handed an unvalidated policy (defence in depth), and no
model or version name can change the shape of a custom query.
"""

from __future__ import annotations

import re
from typing import Any, get_args

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from canary.errors import ConfigError, PolicyError
from canary.metrics import queries as q
from canary.metrics.batch import FEATURE_COUNTERS
from canary.model import Target
from canary.policy import (QUERY_LABELS, SOURCE_LABELS, Metrics, Policy, Source, check_promql, parse_policy,
                           scan_promql)

TARGET = Target(namespace="ml", virtual_service="rec", model="rec", stable_version="v1", canary_version="v2")
EVIL = 'rec"}) or vector(1) # \\'
_MATCHER = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"')


def matchers(sel: str) -> list[tuple[str, str]]:
    assert sel.startswith("{") and sel.endswith("}")
    found = _MATCHER.findall(sel[1:-1])
    assert ",".join(f'{k}="{v}"' for k, v in found) == sel[1:-1], sel
    return found


def unvalidated(source: str = "model", **metrics: Any) -> Policy:
    """A Policy that skipped load-time validation: what selector must still refuse."""
    m = Metrics.model_construct(**{"source": source, "arm_label": None, "model_label": None, "labels": {}, **metrics})
    return Policy.model_construct(metrics=m)


# -- one table of labels, two readers ------------------------------------------------------------

def test_every_source_has_a_preset_and_a_label_table() -> None:
    assert set(get_args(Source)) == set(q.PRESETS) == set(SOURCE_LABELS)


@pytest.mark.parametrize("source", sorted(q.PRESETS))
def test_policy_label_table_mirrors_the_presets(source: str) -> None:
    p, sl = q.PRESETS[source], SOURCE_LABELS[source]
    assert (sl.arm, sl.model, sl.namespace) == (p.arm_label, p.model_label, p.namespace_label)
    assert set(sl.fixed) == {name for name, _ in p.fixed}
    if p.errors_matcher:  # the errors query's own matcher must be a label metrics.labels cannot touch
        assert re.match(r"[A-Za-z_]\w*", p.errors_matcher).group(0) in sl.matched  # type: ignore[union-attr]
    if source in FEATURE_COUNTERS:  # so must the label batch snapshots split feature counts on
        assert FEATURE_COUNTERS[source][1] in sl.matched
    assert "le" in QUERY_LABELS


# -- identity matchers: present once, with the target's values -------------------------------------

@pytest.mark.parametrize("source", sorted(q.PRESETS))
@pytest.mark.parametrize("arm", q.ARMS)
def test_identity_matchers_pick_model_arm_and_namespace(source: str, arm: str) -> None:
    pol = parse_policy({"steps": [10, 100], "metrics": {"source": source, "labels": {"cluster": "eu"}},
                        "checks": [{"name": "e", "kind": "error_rate", "max_rate_pct": 5}]})
    found = dict(matchers(q.selector(pol, TARGET, arm, source)))
    sl = SOURCE_LABELS[source]
    assert found[sl.model] == "rec" and found[sl.arm] == ("v1" if arm == "stable" else "v2")
    assert found.get(sl.namespace or "", "ml") == "ml" and found["cluster"] == "eu"
    assert q.identity(pol, TARGET, arm, source) == {k: v for k, v in found.items() if k in (sl.model, sl.arm, sl.namespace)}


# -- defence in depth: an unvalidated policy cannot override identity either -------------------------

@pytest.mark.parametrize(("source", "metrics"), [
    ("model", {"labels": {"model_version": "v1"}}),
    ("model", {"labels": {"model_name": "victim"}}),
    ("model", {"arm_label": "pod", "labels": {"pod": "v1"}}),
    ("istio", {"labels": {"destination_service_namespace": "other"}}),
    ("istio", {"labels": {"destination_version": "v1"}}),
    ("istio", {"arm_label": "reporter"}),  # the arm would be the preset's fixed reporter matcher
    ("istio", {"arm_label": "destination_service_namespace"}),
    ("istio", {"model_label": "destination_service_namespace"}),  # found by the property test below
    ("triton", {"labels": {"version": "1"}}),
    ("triton", {"model_label": "version"}),
    ("model", {"arm_label": "model_name"}),
])
def test_selector_refuses_what_the_policy_refuses(source: str, metrics: dict[str, Any]) -> None:
    with pytest.raises(PolicyError):  # load time: the first line of defence
        parse_policy({"steps": [10, 100], "metrics": {"source": source, **metrics},
                      "checks": [{"name": "e", "kind": "error_rate", "max_rate_pct": 5}]})
    with pytest.raises(ValueError, match="model, arm|override"):  # query time: the second
        q.selector(unvalidated(source, **metrics), TARGET, "stable", source)


def test_selector_still_validates_label_names_of_an_unvalidated_policy() -> None:
    with pytest.raises(ConfigError, match="label name"):
        q.selector(unvalidated(labels={"__name__": "x"}), TARGET, "stable", "model")
    with pytest.raises(ConfigError, match="label name"):
        q.selector(unvalidated(arm_label="a-b"), TARGET, "stable", "model")


labels_pool = st.sampled_from(sorted({n for sl in SOURCE_LABELS.values() for n in (sl.arm, sl.model, sl.namespace or "le")}
                                     | {"reporter", "outcome", "response_code", "le", "cluster", "job", "pod", "app"}))


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(sorted(q.PRESETS)), st.sampled_from([None] + sorted(q.PRESETS)),
       st.none() | labels_pool, st.none() | st.just("") | labels_pool,
       st.dictionaries(labels_pool, st.sampled_from(["v1", "v2", "rec", "ml", "x"]), max_size=3))
def test_any_loadable_policy_reads_exactly_its_arm(source: str, check_source: str | None, arm_label: str | None,
                                                  model_label: str | None, labels: dict[str, str]) -> None:
    raw = {"steps": [10, 100], "metrics": {"source": source, "arm_label": arm_label, "model_label": model_label,
                                           "labels": labels},
           "checks": [{"name": "e", "kind": "error_rate", "max_rate_pct": 5, "source": check_source}]}
    try:
        pol = parse_policy(raw)
    except PolicyError:
        return
    for src in pol.sources():
        sels = {arm: q.selector(pol, TARGET, arm, src) for arm in q.ARMS}
        assert sels["stable"] != sels["canary"]
        for arm, sel in sels.items():
            found = matchers(sel)
            names = [k for k, _ in found]
            assert len(names) == len(set(names)), sel  # one matcher per label: none silently replaced
            ident = q.identity(pol, TARGET, arm, src)
            assert set(ident.items()) <= set(found), sel
            assert ident[arm_label or SOURCE_LABELS[src].arm] == ("v1" if arm == "stable" else "v2")


# -- custom templates: the load-time check and the renderer read a query the same way -------------------

def render(template: str, model: str = "rec", version: str = "v2") -> str:
    return q.render_custom(template, check_name="c", model=model, version=version, namespace="ml", window_s=60)


def test_comments_are_left_as_written() -> None:
    t = 'sum(x) # the {model}\'s "rate" (\n + y{a="{model}"}'
    assert check_promql(t) == t
    assert render(t) == 'sum(x) # the {model}\'s "rate" (\n + y{a="rec"}'


def test_unknown_placeholders_render_verbatim_but_do_not_load() -> None:
    assert render('x{a="{other}"}') == 'x{a="{other}"}'
    with pytest.raises(ValueError, match="unknown placeholder"):
        check_promql('x{a="{other}"}')


def skeleton(query: str) -> str:
    """The query's code outside strings and comments: what a value must never change."""
    return "".join(text for text, ctx, _ in scan_promql(query)[0] if not ctx)


TOKENS = ["sum(", "rate(", ")", "x", "{", "}", "a=", '"', "'", "`", "{model}", "{version}", "{namespace}",
          "{window}", "[", "]", " ", "\\", "#", "\n", ",", " by (le) ", "=~", "{other}", "}or vector(1)"]
# whole, balanced pieces: joined, they load, so most examples carry a value into a real query
PIECES = ['x{a="{model}"}', 'y{b=~"{version}",c="{namespace}"}', "sum(rate(z[{window}]))",
          'sum by (le) (rate(h{m="{model}",v="{version}"}[{window}]))', 'w{a="{model}"} # a "comment" {version}',
          "vector(1)", 'q{a=\'{version}\'}']
TEMPLATES = st.one_of(st.lists(st.sampled_from(TOKENS), max_size=24).map("".join),
                      st.lists(st.sampled_from(PIECES), min_size=1, max_size=5).map(" + ".join))


@settings(max_examples=500, deadline=None)
@given(TEMPLATES)
def test_a_loadable_template_renders_and_no_value_changes_its_shape(template: str) -> None:
    try:
        check_promql(template)
    except ValueError:
        return
    event("carries a value" if any(p in template for p in ('"{model}"', '"{version}"', '"{namespace}"'))
          else "loads, no value")
    plain, evil = render(template), render(template, model=EVIL, version=EVIL)
    assert skeleton(plain) == skeleton(evil), (template, evil)
    assert check_promql(plain) == plain and check_promql(evil) == evil  # still one balanced query once rendered
