"""A check whose metric family has no metric for it is refused by every loader, at load time.

A latency check on source triton (Triton exports no latency histogram), a prediction_shift or
feature_missing check on istio or triton: `canary policy validate` and `canary plan` accepted them and
only `canary promote` refused them, with no file named. The rule is one table
(`policy_metrics.source_lacks`), read by the policy and by `metrics.queries`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from canary.errors import ConfigError, PolicyError
from canary.metrics import queries as q
from canary.offline import parse_exported
from canary.policy import SOURCE_LABELS, load_policy, parse_policy, source_lacks

KINDS: dict[str, dict[str, Any]] = {
    "latency": {"max_ms": 100},
    "error_rate": {"max_rate_pct": 5},
    "prediction_shift": {"max_psi": 0.2},
    "feature_missing": {"max_rate_pct": 5},
    "custom": {"max_value": 1, "query": "vector(1)"},
}
# what each preset has a metric for: the query side of the same rule
HAS = {"latency": "latency", "prediction_shift": "prediction", "feature_missing": "feature_missing"}
CASES = [(s, k) for s in SOURCE_LABELS for k in KINDS]


def _policy(kind: str, *, source: str, own: bool, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    check = {"name": "c", "kind": kind, **KINDS[kind], **(extra or {})}
    checks = [{"name": "e", "kind": "error_rate", "max_rate_pct": 5}, check]  # the bad one is checks[1]
    if own:
        check["source"] = source
        return {"steps": [10, 100], "checks": checks}
    return {"steps": [10, 100], "metrics": {"source": source}, "checks": checks}


@pytest.mark.parametrize(("source", "kind"), CASES)
@pytest.mark.parametrize("own", [True, False], ids=["check.source", "metrics.source"])
def test_a_source_without_the_checks_metric_is_refused_naming_the_field(source: str, kind: str, own: bool) -> None:
    served = kind not in HAS or getattr(q.PRESETS[source], HAS[kind]) is not None
    assert (source_lacks(source, kind) is None) is served  # the policy's table agrees with the presets
    raw = _policy(kind, source=source, own=own)
    if served:
        parse_policy(raw)
        return
    with pytest.raises(PolicyError) as err:
        parse_policy(raw, file="p.yaml")
    assert (err.value.file, err.value.field) == ("p.yaml", "checks[1].source"), str(err.value)
    assert f"{source!r}" in err.value.detail and kind in err.value.detail
    assert ("metrics.source" in err.value.detail) is not own  # says where the source came from
    assert str(err.value).count("check 'c'") <= 1  # not "check 'c': check 'c'"


@pytest.mark.parametrize("source", ["istio", "triton"])
def test_a_prediction_shift_naming_its_histogram_reads_any_source(source: str) -> None:
    parse_policy(_policy("prediction_shift", source=source, own=True, extra={"metric": "my_scores_bucket"}))


def test_every_loader_refuses_it(tmp_path: Path) -> None:
    """validate/plan/promote (a file), judge (inline and policy_file), the controller (a CR's spec: parse_policy)."""
    raw = _policy("latency", source="triton", own=True)
    path = tmp_path / "p.yaml"
    path.write_text(json.dumps(raw))  # JSON is YAML
    with pytest.raises(PolicyError, match=r"p\.yaml: checks\[1\]\.source: .*no latency histogram"):
        load_policy(path)
    checks = {"e": {"stable": {"events": 0, "total": 10}, "canary": {"events": 0, "total": 10}}}
    with pytest.raises(ConfigError, match=r"checks\[1\]\.source: .*no latency histogram"):
        parse_exported({"policy": raw, "checks": checks}, file="look.json")
    with pytest.raises(ConfigError, match=r"p\.yaml: checks\[1\]\.source"):
        parse_exported({"policy_file": str(path), "checks": checks}, file="look.json")


def test_the_query_side_gives_the_policys_words() -> None:
    with pytest.raises(ConfigError, match="source 'triton' has no latency histogram"):
        q.latency_metric(q.PRESETS["triton"], "lat")
    with pytest.raises(ConfigError, match="source 'istio' has no prediction histogram"):
        q.prediction_metric(q.PRESETS["istio"], "p", None)
    with pytest.raises(ConfigError, match="source 'triton' has no feature-missing gauge"):
        q.feature_metric(q.PRESETS["triton"], "f")
