"""An attacker on names and numbers (decisions 701-705): a route name that names no route, a quantile or an alpha
written as a percentage, a limit no canary can break.

Pure: no cluster (a kubeconfig pointing at a closed port: any request would fail as unreachable, exit 3, not 2),
no Prometheus."""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from canary import crd
from canary.cli import app
from canary.errors import ConfigError, PolicyError
from canary.policy import parse_policy
from tests import fleet
from tests.unit.test_validation_attack2 import files  # noqa: F401 - fixture (a closed port, the fleet's policy)

NO_ROUTE = ["canary ", " canary", "can\tary", "canary\n", "can\x1bary", "can\u200bary"]


def _policy(**fields: Any) -> dict[str, Any]:
    return {**copy.deepcopy(fleet.FAST_POLICY), **fields}


@pytest.mark.parametrize("route", NO_ROUTE)
def test_a_route_name_with_whitespace_at_an_end_or_a_character_that_does_not_print_is_refused(
        files: tuple[Path, Path], route: str) -> None:
    """Taken, then "route not found" once the VirtualService was read, the name shown as it reads (decision 702):
    the policy's `route`, `--route` and `spec.route` alike, before any request."""
    with pytest.raises(PolicyError, match="route: .* no route of a VirtualService is meant by it"):
        parse_policy(_policy(route=route), file="p.yaml")
    kubeconfig, policy = files
    res = CliRunner().invoke(app, ["promote", "m0", "--canary-version", "v2", "--policy", str(policy), "-n", "ml",
                                   "--kubeconfig", str(kubeconfig), "--prometheus-url", "http://127.0.0.1:9",
                                   "--route", route])
    assert res.exit_code == 2 and "no route of a VirtualService is meant by it" in res.output, res.output
    res = CliRunner().invoke(app, ["promote", "m0", "--canary-version", "v2", "--policy", str(policy), "-n", "ml",
                                   "--kubeconfig", str(kubeconfig), "--via-controller", "--route", route])
    assert res.exit_code == 2 and "no route of a VirtualService is meant by it" in res.output, res.output
    obj = fleet.rollout_object(0, "v2", route=route)
    with pytest.raises(ConfigError, match="CanaryRollout ml/r0: route .* no route of a VirtualService"):
        crd.parse(obj)


def test_a_route_name_with_a_space_inside_is_taken() -> None:
    """Istio leaves a route's name free text: one a VirtualService may hold is not refused."""
    assert parse_policy(_policy(route="canary route"), file="p.yaml").route == "canary route"


@pytest.mark.parametrize(("fields", "says"), [
    ({"checks": [{"name": "lat", "kind": "latency", "quantile": 95, "max_increase_pct": 20}]},
     "checks[0].quantile: must be < 1.0, not 95: a fraction: 0.95 for p95"),
    ({"checks": [{"name": "lat", "kind": "latency", "quantile": 99.9, "max_increase_pct": 20}]},
     "not 99.9: a fraction: 0.999 for p99.9"),
    ({"analysis": {"alpha": 1}}, "analysis.alpha: must be < 0.5, not 1: a fraction: 0.01 for 1%"),
    ({"analysis": {"alpha": 5}}, "not 5: a fraction: 0.05 for 5%"),
])
def test_a_quantile_or_an_alpha_written_as_a_percentage_says_the_fraction(fields: dict[str, Any], says: str) -> None:
    """Refused "must be < 1.0, not 95" alone: what is wrong, not what was meant (decision 703)."""
    with pytest.raises(PolicyError) as err:
        parse_policy(_policy(**fields), file="p.yaml")
    assert says in str(err.value), str(err.value)


@pytest.mark.parametrize("fields", [{"analysis": {"alpha": 0.7}}, {"analysis": {"alpha": 50}},
                                    {"checks": [{"name": "lat", "kind": "latency", "quantile": 1000,
                                                 "max_increase_pct": 20}]}])
def test_no_fraction_is_offered_that_the_field_would_refuse_too(fields: dict[str, Any]) -> None:
    with pytest.raises(PolicyError) as err:
        parse_policy(_policy(**fields), file="p.yaml")
    assert "a fraction" not in str(err.value), str(err.value)


def test_a_limit_no_canary_short_of_a_broken_one_breaks_is_said_never_refused(tmp_path: Path) -> None:
    """`max_increase_pct: 1e300` was valid and silent: the check passed every canary (decision 704). A warning of
    `policy validate`, `plan` and `promote` (`policy.advisory`), as a limit in another unit is (decision 206)."""
    from canary.policy import advisories

    checks = [{"name": "lat", "kind": "latency", "max_increase_pct": 1e300, "max_ms": 3.6e6},
              {"name": "err", "kind": "error_rate", "max_increase_points": 100, "max_rate_pct": 50},
              {"name": "ok", "kind": "latency", "max_increase_pct": 999, "max_ms": 59999},
              {"name": "fine", "kind": "error_rate", "max_increase_points": 49, "max_rate_pct": 49.9}]
    said = dict(advisories(parse_policy(_policy(checks=checks), file="p.yaml")))
    assert list(said) == ["checks[0].max_increase_pct", "checks[0].max_ms", "checks[1].max_increase_points",
                          "checks[1].max_rate_pct"], said
    assert said["checks[0].max_increase_pct"].startswith("1e+300: a canary breaks it only with a p95 over 1e+298 "
                                                         "times stable's, so the check passes every other canary"), said
    assert "a p95 above 3600 s" in said["checks[0].max_ms"], said
    pol = tmp_path / "p.yaml"
    pol.write_text(yaml.safe_dump(_policy(checks=checks)))
    res = CliRunner().invoke(app, ["policy", "validate", str(pol)])
    assert res.exit_code == 0 and f"warning: {pol}: checks[1].max_rate_pct 50: a canary breaks it" in res.stderr, \
        res.output


def test_a_loose_limit_beside_one_that_judges_is_no_advisory() -> None:
    """A loose ceiling kept as a hard stop beside a tight relative limit (`max_increase_points: 1` with
    `max_rate_pct: 50`, a slow model's `max_ms: 60000` with `max_increase_pct: 20`) was said "the check passes every
    other canary, however much worse than stable": false, its other limit judges (704 addendum). Said only where
    every limit the check sets is one only a broken canary breaks."""
    from canary.policy import advisories

    checks = [{"name": "lat", "kind": "latency", "max_increase_pct": 20, "max_ms": 60000},
              {"name": "err", "kind": "error_rate", "max_increase_points": 1, "max_rate_pct": 50},
              {"name": "miss", "kind": "feature_missing", "max_increase_points": 2, "max_rate_pct": 80},
              {"name": "shift", "kind": "prediction_shift", "max_psi": 0.2, "max_js": 1},
              {"name": "only", "kind": "error_rate", "max_rate_pct": 50}]
    said = dict(advisories(parse_policy(_policy(checks=checks), file="p.yaml")))
    assert list(said) == ["checks[4].max_rate_pct"], said


@pytest.mark.parametrize("kind", ["prediction_shift", "feature_drift"])
def test_a_psi_limit_no_count_reaches_is_an_advisory(kind: str) -> None:
    """`max_psi: 1000` (a typo of 0.1000?) passed every canary, with no word: the judge's PSI smooths each bucket
    by +0.5, so it is under 2 ln(2n + k), 84 at 10^18 predictions an arm (decision 744). Said as 704's are; a PSI
    limit under the bound, or beside a JS limit that judges, is none."""
    import numpy as np

    from canary.analysis.shift import shift_tests
    from canary.policy import advisories

    said = dict(advisories(parse_policy(_policy(checks=[{"name": "s", "kind": kind, "max_psi": 1000}]), file="p.yaml")))
    assert list(said) == ["checks[0].max_psi"] and said["checks[0].max_psi"].startswith(
        "1000: a canary breaks it only with a PSI above 1000, which no count reaches"), said
    for loose in ({"max_psi": 99}, {"max_psi": 1000, "max_js": 0.2}):
        assert not advisories(parse_policy(_policy(checks=[{"name": "s", "kind": kind, **loose}]), file="p.yaml"))
    # the bound is what the judge computes: two disjoint arms of 10^12 predictions each are PSI 56.6, under it
    far = dict(shift_tests(np.array([1e12, 0.0]), np.array([0.0, 1e12]), max_psi=56, max_js=None, alpha=0.05,
                           beta=0.05))
    assert far["psi"].breach and 56 < far["psi"].effect < 2 * math.log(2 * 1e12 + 2)
