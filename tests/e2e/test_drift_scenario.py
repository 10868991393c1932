"""End to end, issue 12's sandbox scenario: no rollout runs; the stable model's inputs move away from
its training data. On the real sandbox (Triton exporting feature distributions over the training
profile's buckets, Prometheus scraping it, the API emulator), the drift monitor raises nothing while
the inputs are what the model trained on (A/A), then the alert and exactly one retraining Job once
five of its eight inputs move. The test runs what `canary demo --scenario data-drift` shows a person
(`canary.sandbox.drift_demo`); `canary drift watch --once` itself is covered by the integration tests."""

from __future__ import annotations

import shutil

import pytest

from canary.drift.watch import job_name
from canary.sandbox.drift_demo import run_drift_scenario
from canary.sandbox.model import MODEL_NAME

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]
if not (shutil.which("prometheus") and shutil.which("haproxy")):
    pytest.skip("the sandbox needs prometheus and haproxy (scripts/setup.sh installs them)", allow_module_level=True)


def test_stable_inputs_drift_alert_and_one_retraining_job() -> None:
    r = run_drift_scenario(rate=100.0, clean_needed=4, after_alert=1)
    # A/A: four evaluations with data and no drift, and no alert, no Job before the shift
    assert r.clean_before_shift >= 4 and r.false_alerts == 0
    before = [e for e in r.evaluations if not e.shifted]
    assert all(e.phase == "ok" and e.episode == 0 for e in before)
    # the shift: the alert, one Job named for the episode, its evidence, an Event
    assert r.alert_after_shift_s is not None
    assert r.jobs == [job_name("retrain-", model=MODEL_NAME, version="v1.0.0", episode=1)]
    assert set(r.job_evidence["drifted_features"]) >= {"f0", "f1", "f2", "f3", "f4"}
    assert not set(r.job_evidence["drifted_features"]) & {"f5", "f6", "f7"}
    assert "DriftDetected" in r.events
    # the episode goes on after the alert: no second Job
    assert r.evaluations[-1].phase == "drifting" and r.evaluations[-1].episode == 1
    assert r.as_expected
