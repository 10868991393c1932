"""Policy loading: every mistake names the file and field; arbitrary input never tracebacks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from canary.cli import app
from canary.errors import PolicyError
from canary.policy import Policy, load_policy, parse_duration, parse_policy

ROOT = Path(__file__).resolve().parents[2]
GOOD = {"steps": [5, 50, 100], "checks": [{"name": "lat", "kind": "latency", "max_increase_pct": 20}]}


def with_(**changes: object) -> dict:
    d = json.loads(json.dumps(GOOD))
    d.update(changes)
    return d


@pytest.mark.parametrize("path", sorted((ROOT / "policies").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_policies_load(path: Path) -> None:
    assert isinstance(load_policy(path), Policy)


@pytest.mark.parametrize("raw,field,text", [
    (with_(steps=[5, 5, 100]), "steps[1]", "increase strictly"),
    (with_(steps=[0, 50, 100]), "steps[0]", "1..100"),
    (with_(steps=[5, 150]), "steps[1]", "1..100"),
    (with_(steps=[5, 50]), "steps", "last step must be 100"),
    (with_(steps="5,50,100"), "steps", "list"),
    (with_(stepz=[1]), "stepz", "unknown key"),
    (with_(analysis={"interval": "ten minutes"}), "analysis.interval", "not a duration"),
    (with_(analysis={"interval": "10s", "look_every": "1m"}), "analysis", "look_every"),
    (with_(analysis={"alpha": 2}), "analysis.alpha", "must be < 0.5, not 2"),
    (with_(checks=[{"name": "lat", "kind": "latency", "max_ms": "fast"}]), "checks[0].max_ms", "number"),
    (with_(checks=[{"name": "lat", "kind": "latency", "max_msec": 3}]), "checks[0].max_msec", "unknown key"),
    (with_(checks=[{"name": "lat", "kind": "latency"}]), "checks[0]", "max_increase_pct"),
    (with_(checks=[{"name": "x", "kind": "vibes"}]), "checks[0].kind", "is not one of"),
    (with_(checks=[{"name": "a", "kind": "custom", "max_value": 1}]), "checks[0]", "query"),
    (with_(checks=[{"name": "a", "kind": "latency", "max_ms": 1}, {"name": "a", "kind": "latency", "max_ms": 2}]),
     "checks[1].name", "used twice"),
    (with_(failure={"on_deadline": "panic"}), "failure.on_deadline", "rollback"),
    (with_(metrics={"source": "datadog"}), "metrics.source", "istio"),
])
def test_bad_policies_name_file_and_field(raw: dict, field: str, text: str) -> None:
    with pytest.raises(PolicyError) as err:
        parse_policy(raw, file="p.yaml")
    assert err.value.file == "p.yaml" and err.value.field == field, str(err.value)
    assert text in str(err.value)


@pytest.mark.parametrize("text,seconds", [("500ms", 0.5), ("10s", 10), ("5m", 300), ("1h", 3600), (7, 7.0), ("2.5s", 2.5)])
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


def test_unreadable_and_non_yaml_files(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="cannot read"):
        load_policy(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("steps: [1, 2\n")
    with pytest.raises(PolicyError, match="not valid YAML"):
        load_policy(bad)
    bad.write_text("- just\n- a list\n")
    with pytest.raises(PolicyError, match="mapping"):
        load_policy(bad)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-1000, 1000) | st.floats(allow_nan=True) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20,
)
keys = st.sampled_from(["steps", "analysis", "failure", "checks", "metrics", "route", "gates", "extra"])


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(keys, json_values, max_size=6) | json_values)
def test_arbitrary_input_is_a_policy_or_a_policy_error(raw: object) -> None:
    try:
        p = parse_policy(raw, file="f.yaml")
    except PolicyError as exc:
        assert str(exc).startswith("f.yaml")
        return
    assert p.steps[-1] == 100 and all(a < b for a, b in zip(p.steps, p.steps[1:]))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(-10, 120), min_size=0, max_size=7))
def test_steps_are_valid_or_rejected(steps: list[int]) -> None:
    try:
        p = parse_policy(with_(steps=steps), file="f.yaml")
    except PolicyError as exc:
        assert exc.field.startswith("steps")
        return
    assert all(0 < w <= 100 for w in p.steps) and p.steps == sorted(set(p.steps)) and p.steps[-1] == 100


def test_cli_validate_and_schema(tmp_path: Path) -> None:
    runner = CliRunner()
    ok = runner.invoke(app, ["policy", "validate", str(ROOT / "policies" / "default.yaml")])
    assert ok.exit_code == 0 and "ok" in ok.output
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(with_(steps=[50, 10, 100])))
    res = runner.invoke(app, ["policy", "validate", str(bad)])
    assert res.exit_code == 2 and f"{bad}: steps" in res.output
    schema = runner.invoke(app, ["policy", "schema"])
    assert schema.exit_code == 0 and "steps" in json.loads(schema.output)["properties"]


def test_validate_counts_one_check_in_the_singular(tmp_path: Path) -> None:
    """`policy validate` said "ok (2 steps [10, 100], 1 checks)" of a one-check policy (a policy has 2 steps or more)."""
    one = tmp_path / "one.yaml"
    one.write_text("steps: [10, 100]\nchecks:\n  - {name: x, kind: latency, max_ms: 25}\n")
    res = CliRunner().invoke(app, ["policy", "validate", str(one)])
    assert res.exit_code == 0 and f"{one}: ok (2 steps [10, 100], 1 check)" in res.output, res.output
    ok = CliRunner().invoke(app, ["policy", "validate", str(ROOT / "policies" / "default.yaml")])
    assert "(5 steps [5, 10, 25, 50, 100], 5 checks)" in ok.output, ok.output


def test_published_schema_is_current() -> None:
    from canary.policy import json_schema

    assert (ROOT / "docs" / "policy.schema.json").read_text().strip() == json_schema().strip(), \
        "regenerate with: canary policy schema > docs/policy.schema.json"


DRIFT = {"name": "d", "kind": "feature_drift", "max_psi": 0.2}


@pytest.mark.parametrize("raw", [
    with_(steps=[0, 50, 100]), with_(steps=[10, 150]), with_(steps=[10, 10, 100]),
    with_(checks=[{**DRIFT, "features": ["a", "a"]}]), with_(checks=[{**DRIFT, "features": [""]}]),
], ids=["step-0", "step-150", "step-twice", "feature-twice", "feature-empty"])
def test_the_published_schema_refuses_a_bad_step_or_feature_as_the_loader_does(raw: dict) -> None:
    """An editor with `yaml-language-server: $schema=docs/policy.schema.json` showed `steps: [0, 50, 100]`
    and a feature listed twice as valid; `policy validate` refuses them. What one field alone can say, the
    schema says too (what needs two fields, such as weights that increase, is the loader's alone)."""
    import jsonschema

    schema = json.loads((ROOT / "docs" / "policy.schema.json").read_text())
    with pytest.raises(PolicyError):
        parse_policy(raw)
    assert list(jsonschema.Draft202012Validator(schema).iter_errors(raw))
    good = with_(checks=[{**DRIFT, "features": ["a", "b"]}])
    parse_policy(good)
    assert not list(jsonschema.Draft202012Validator(schema).iter_errors(good))


@pytest.mark.parametrize("raw,field,says", [
    # decision 161: each said what was wrong, not what to write instead
    (with_(steps=[5, 10, 25, 50]), "steps", "not 50: end the list with 100, e.g. [5, 10, 25, 50, 100]"),
    (with_(checks=[{"name": "lat", "kind": "latancy", "max_ms": 250}]), "checks[0].kind", "(did you mean `latency`?)"),
    (with_(analysis={"interval": "5min"}), "analysis.interval", "'5min' is not a duration: did you mean '5m'?"),
    (with_(failure={"no_data_deadline": "10 min"}), "failure.no_data_deadline", "did you mean '10m'?"),
    (with_(analysis={"look_every": "30secs"}), "analysis.look_every", "did you mean '30s'?"),
    (with_(analysis={"interval": "2 hours"}), "analysis.interval", "did you mean '2h'?"),
])
def test_a_mistake_a_newcomer_makes_is_answered_with_what_to_write(raw: dict, field: str, says: str) -> None:
    with pytest.raises(PolicyError) as err:
        parse_policy(raw, file="p.yaml")
    assert err.value.field == field and says in str(err.value), str(err.value)


@pytest.mark.parametrize("value", ["1d", "5mm", "1y", "ten minutes", "1m30"])
def test_no_guess_where_no_go_unit_is_meant(value: str) -> None:
    with pytest.raises(ValueError) as err:
        parse_duration(value)
    assert "not a duration" in str(err.value) and "did you mean" not in str(err.value)
