"""`canary promote`'s version flags are checked before anything is asked of anyone.

`--canary-version 'v 2'` (no Kubernetes label value: no pod carries it) was refused only after the
Prometheus clock read, which against a Prometheus that does not answer retried first; the refusal came
out behind a `metrics.query_retry` and a `metrics.query_failed` (decision 674)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from canary.cli import app
from tests.unit.test_validation_attack2 import files  # noqa: F401 - the fixture


@pytest.mark.parametrize(("flag", "value"), [("--canary-version", "v 2"), ("--stable-version", "v1/x"),
                                             ("--canary-version", "v\u00e9")])
def test_a_version_no_pod_can_carry_is_refused_before_prometheus_is_asked(files: tuple[Path, Path],  # noqa: F811
                                                                          flag: str, value: str) -> None:
    kubeconfig, policy = files
    versions = {"--canary-version": "v2", flag: value}
    res = CliRunner().invoke(app, ["promote", "m0", "--policy", str(policy), "-n", "ml", "--kubeconfig",
                                   str(kubeconfig), "--prometheus-url", "http://127.0.0.1:9",
                                   *(x for kv in versions.items() for x in kv)])
    assert res.exit_code == 2, res.output
    assert f"{flag} {value!r} is not a Kubernetes label value" in res.output, res.output
    assert "metrics.query" not in res.output, res.output  # nothing asked of Prometheus


def test_one_version_given_as_both_is_refused_before_anything_is_asked(files: tuple[Path, Path]) -> None:  # noqa: F811
    """It was refused at the claim (check_claim), after Prometheus's clock (retried against one that does not
    answer) and the route were read; `--via-controller` refused it before anything (decision 743)."""
    kubeconfig, policy = files
    res = CliRunner().invoke(app, ["promote", "m0", "--policy", str(policy), "-n", "ml", "--kubeconfig",
                                   str(kubeconfig), "--prometheus-url", "http://127.0.0.1:9",
                                   "--canary-version", "v2", "--stable-version", "v2"])
    assert res.exit_code == 2, res.output
    assert "--canary-version 'v2' is --stable-version too" in res.output, res.output
    assert "metrics.query" not in res.output, res.output  # nothing asked of Prometheus
