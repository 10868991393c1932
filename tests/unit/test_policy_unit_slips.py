"""A latency limit written in another unit is said before anything moves (decision 206).

`max_ms: 0.25` (seconds, as Prometheus's histograms count them) was valid and silent: in the sandbox,
`canary promote` rolled a canary as fast as stable back at its first look, logged at error level as a
canary shown bad (`end_cause: check`, "canary p95 48.4 ms (limit 0.25 ms)"). `max_increase_pct: 0.2`
(a fraction for +20%) asked for a canary shown within +0.2%, which no step shows: every step ended at its
deadline. Both are valid (a warning, never a refusal), and said by `policy validate`, `plan` and
`promote` as the other advisories are.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from typer.testing import CliRunner

from canary.cli import app
from canary.policy import advisories, parse_policy

CHECKS = [{"name": "lat", "kind": "latency", "max_increase_pct": 0.2, "max_ms": 0.25},
          {"name": "err", "kind": "error_rate", "max_increase_points": 0.5, "max_rate_pct": 0.5}]


def test_a_latency_limit_in_seconds_or_as_a_fraction_is_said_by_every_command(tmp_path: Path) -> None:
    said = dict(advisories(parse_policy({"steps": [10, 100], "checks": CHECKS})))
    assert list(said) == ["checks[0].max_ms", "checks[0].max_increase_pct"], said  # error rates: legitimately small
    assert said["checks[0].max_ms"].startswith("0.25 is below one millisecond: the limit is in milliseconds (a "
                                               "ceiling of 250 ms is `max_ms: 250`"), said
    assert said["checks[0].max_increase_pct"].startswith("0.2 allows +0.2%: the limit is in percent (+20% is "
                                                         "`max_increase_pct: 20`, not a fraction)"), said
    # a model whose p95 really is under a millisecond is possible: the warning says when it does not hold
    assert "unless the model's p95 really is under 0.25 ms where this is measured" in said["checks[0].max_ms"], said
    ok = {"name": "lat", "kind": "latency", "max_increase_pct": 1, "max_ms": 1}
    assert advisories(parse_policy({"steps": [10, 100], "checks": [ok]})) == []

    pol = tmp_path / "p.yaml"
    pol.write_text(yaml.safe_dump({"steps": [10, 100], "checks": CHECKS}))
    res = CliRunner().invoke(app, ["policy", "validate", str(pol)])
    assert res.exit_code == 0, res.output
    assert f"warning: {pol}: checks[0].max_ms 0.25 is below one millisecond" in res.stderr, res.stderr
    doc = json.loads(CliRunner().invoke(app, ["policy", "validate", str(pol), "-o", "json"]).stdout)
    assert [w["field"] for w in doc["files"][0]["warnings"]] == ["checks[0].max_ms", "checks[0].max_increase_pct"]
    # promote says it before anything is read or moved (here it then stops at the kubeconfig it cannot read)
    run = CliRunner().invoke(app, ["promote", "rec-model", "--canary-version", "v2", "--policy", str(pol), "-n", "ml",
                                   "--kubeconfig", str(tmp_path / "none"), "--prometheus-url", "http://127.0.0.1:9",
                                   "--log-format", "json"])
    lines = [json.loads(x) for x in run.stderr.splitlines() if '"policy.advisory"' in x]
    assert [e["field"] for e in lines] == ["checks[0].max_ms", "checks[0].max_increase_pct"], run.output
