"""Every validation error names a field that exists, in the author's words, never pydantic's.

`5: x` at the top level read `[5]: Keys should be strings` (a list index), `~: 1` read `None: ...`, and
`analysis: [interval, 10s]` read `Input should be a valid dictionary or instance of Analysis` (a class
name of ours).
"""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest

from canary.errors import PolicyError
from canary.policy import parse_policy, parse_policy_text

GOOD: dict[str, Any] = {"steps": [10, 100], "checks": [{"name": "l", "kind": "latency", "max_ms": 100}]}
HEAD = "steps: [10, 100]\nchecks: [{name: l, kind: latency, max_ms: 100}]\n"


@pytest.mark.parametrize(("text", "field", "says"), [
    (HEAD + "5: x\n", "", "key 5 (a number) at the top level: keys are names (text); quote it"),
    (HEAD + "~: 1\n", "", "key ~ (null"),
    (HEAD + "true: 1\n", "", "key true (a boolean)"),
    (HEAD + "metrics: {labels: {5: a}}\n", "metrics.labels", "key 5 (a number) under metrics.labels"),
    ("steps: [10, 100]\nchecks: [{name: l, kind: latency, 7: 100}]\n", "checks[0]", "key 7 (a number) under checks[0]"),
])
def test_a_key_that_is_not_text_is_named_as_written(text: str, field: str, says: str) -> None:
    with pytest.raises(PolicyError) as err:
        parse_policy_text(text, file="p.yaml")
    assert err.value.field == field and says in err.value.detail, str(err.value)
    assert "[5]" not in str(err.value) and "None" not in str(err.value)


SECTIONS = [("analysis",), ("failure",), ("metrics",), ("gates",), ("gates", "triton"), ("metrics", "labels"),
            ("checks",), ("checks", 0), ("checks", 0, "kind"), ("gates", "triton", "output_range"), ("route",),
            ("metrics", "histograms"), ("failure", "on_deadline"), ("steps",)]
WRONG = [[1, 2], {"a": 1}, 5, "x", None, True, 1.5]
# what pydantic's own words look like: "Input should ...", "Field required", our class names
LEAKS = re.compile(r"Input should|String should|Field required|Unable to extract|Input tag|instance of|\b(Analysis|Failure|Metrics|"
                   r"Gates|TritonGate|Policy|LatencyCheck|ErrorRateCheck|CustomCheck)\b")


@pytest.mark.parametrize("path", SECTIONS, ids=[".".join(map(str, p)) for p in SECTIONS])
def test_a_wrong_shape_is_said_plainly(path: tuple) -> None:
    for wrong in WRONG:
        raw = copy.deepcopy(GOOD)
        node: Any = raw
        for key in path[:-1]:
            node = node.setdefault(key, {}) if isinstance(node, dict) else node[key]
        node[path[-1]] = wrong
        try:
            parse_policy(raw, file="p.yaml")
        except PolicyError as exc:
            for field, message in exc.problems:
                assert not LEAKS.search(message), (path, wrong, field, message)


def test_the_examples() -> None:
    with pytest.raises(PolicyError) as err:
        parse_policy_text("steps: [10, 100]\nanalysis: [interval, 10s]\nchecks: [{name: l, kind: latency, max_ms: 100}]\n",
                          file="p.yaml")
    assert str(err.value) == "p.yaml: analysis: must be a mapping (key: value), not a list of 2"
    with pytest.raises(PolicyError) as err:
        parse_policy({"steps": [10, 100]}, file="p.yaml")
    assert str(err.value) == "p.yaml: checks: required, and missing"
    with pytest.raises(PolicyError) as err:
        parse_policy({"steps": [10, 100], "checks": [{"name": "l"}]}, file="p.yaml")
    assert err.value.field == "checks[0].kind" and "required, and missing: one of" in err.value.detail


def _names_itself(field: str, message: str) -> bool:
    """True when `message` says its own field again: the whole path, a path below it ("steps: steps[0]=..."), or
    its own name first, in code, or as a word when it is no English word ("checks[0].kind: kind 'x' ...", "needs a
    `kind`", "max_ms is in ..."; "a scrape interval" is English). Not:
    another item of the same list (`steps[0]` under `steps[1]`), a field of another path (`checks[0].name`), a
    quoted value, or a line to write (`max_ms: 250`)."""
    key = field.rsplit(".", 1)[-1]
    bare = re.sub(r"\[\d+\]$", "", key)
    return bool(re.search(rf"(?<![\w.\[]){re.escape(field)}(?![\w])", message)
                or re.search(rf"{'' if '_' in bare else '^'}(?<![\w.`']){re.escape(bare)}(?![\w\[`'])", message)
                or f"`{bare}`" in message
                or (key == bare and re.search(rf"(?<![\w.]){re.escape(bare)}\[", message)))


# a broken field of each kind of validation: a field's own check, an item's, a check's kind, a cross-field rule
SAID_ONCE = [
    ({"steps": [0, 100]}, "steps[0]"), ({"steps": [50, 50, 100]}, "steps[1]"), ({"steps": [10, 50]}, "steps"),
    ({"steps": [10.5, 100]}, "steps[0]"),
    ({"checks": [{"name": "l", "kind": "latence", "max_ms": 100}]}, "checks[0].kind"),
    ({"checks": [{"name": "l", "max_ms": 100}]}, "checks[0].kind"),
    ({"checks": [{"name": "l", "kind": "latency", "max_ms": 100}] * 2}, "checks[1].name"),
    ({"checks": [{"name": "", "kind": "latency", "max_ms": 100}]}, "checks[0].name"),
    ({"checks": [{"name": "f", "kind": "feature_drift", "max_psi": 0.2, "features": ["a", ""]}]}, "checks[0].features[1]"),
    ({"checks": [{"name": "f", "kind": "feature_drift", "max_psi": 0.2, "features": ["a", "a"]}]}, "checks[0].features[1]"),
    ({"checks": [{"name": "c", "kind": "custom", "query": " ", "max_value": 1}]}, "checks[0].query"),
    ({"checks": [{"name": "c", "kind": "custom", "query": "x{", "max_value": 1}]}, "checks[0].query"),
    ({"gates": {"triton": {"output_range": [0, 1, 2]}}}, "gates.triton.output_range"),
    ({"gates": {"triton": {"output_range": [1, 0]}}}, "gates.triton.output_range"),
    ({"gates": {"triton": {"output_range": [0, 1], "warmup_requests": 0}}}, "gates.triton.output_range"),
    ({"analysis": {"interval": "5min"}}, "analysis.interval"), ({"analysis": {"alpha": 0.7}}, "analysis.alpha"),
    ({"analysis": {"interval": "10s", "look_every": "20s"}}, "analysis"),
    ({"failure": {"max_failed_looks": 500}}, "failure.max_failed_looks"),
    ({"metrics": {"labels": {"a-b": "x"}}}, "metrics.labels.a-b"), ({"metrics": {"sorce": "model"}}, "metrics.sorce"),
    ({"route": ""}, "route"),
]


@pytest.mark.parametrize(("change", "field"), SAID_ONCE, ids=[f for _, f in SAID_ONCE])
def test_a_problem_names_its_field_once(change: dict[str, Any], field: str) -> None:
    """`steps: steps[0]=0: ...`, `checks[0].kind: kind 'x' is not ...`, `checks[0].kind: needs a \\`kind\\``,
    `checks[0].features: features[1]=...`, `gates.triton.output_range: output_range must be ...`: the field was
    said twice, and an item's index stood in the message instead of in the field (decision 545). The field
    names the very item; the message says what is wrong with it, in the policy's words."""
    with pytest.raises(PolicyError) as err:
        parse_policy({**GOOD, **change}, file="p.yaml")
    assert err.value.field == field, str(err.value)
    for where, message in err.value.problems:
        assert not _names_itself(where, message) and not LEAKS.search(message), f"{where}: {message}"


@pytest.mark.parametrize("change", [
    {"analysis": {"interval": "10s", "look_every": "5s"}, "metrics": {"scrape_interval": "30s"}},
    {"checks": [{"name": "l", "kind": "latency", "max_ms": 0.25, "max_increase_pct": 0.2}]},
], ids=["interval below the scrape interval", "latency limits in another unit"])
def test_an_advisory_names_its_field_once(change: dict[str, Any]) -> None:
    """`policy validate`'s warnings read `analysis.interval 10s is shorter than ...; set analysis.interval to at
    least ...` and `checks[0].max_ms 0.25 ...: max_ms is in milliseconds` (decision 545)."""
    from canary.policy import advisories

    said = advisories(parse_policy({**GOOD, **change}, file="p.yaml"))
    assert said and all(not _names_itself(field, message) for field, message in said), said


@pytest.mark.parametrize(("metrics", "field"), [
    ({"labels": {"model_name": "rec"}}, "metrics.labels.model_name"),
    ({"source": "istio", "labels": {"response_code": "500"}}, "metrics.labels.response_code"),
])
def test_a_label_key_the_queries_own_is_not_said_again(metrics: dict[str, Any], field: str) -> None:
    """`metrics.labels.model_name: 'model_name' is the model label ...`: the key is the field's last part (decision
    545's addendum). An invalid key keeps it quoted: `metrics.labels.a b: 'a b' is not a valid ...` shows a space
    the field's path does not."""
    with pytest.raises(PolicyError) as err:
        parse_policy({**GOOD, "metrics": metrics}, file="p.yaml")
    assert err.value.field == field, str(err.value)
    ((where, message),) = err.value.problems
    assert field.rsplit(".", 1)[1] not in message and message.split(":")[0].startswith(("the ", "a label")), message
