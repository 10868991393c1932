"""End to end: every sandbox scenario through the real `canary promote` process (and data-drift, which runs
no rollout, through the drift monitor `canary demo --scenario data-drift` runs).

Real processes on 127.0.0.1: two Triton servers, Prometheus scraping them
every second, HAProxy carrying the load generator's traffic, the Kubernetes
API emulator, and the watcher that pushes VirtualService weights into HAProxy.
No time is asserted: how soon a rollback comes is bounded in what decides it
(the canary requests the failing look judged, the probes that failed in a row),
which a loaded host does not change; the measured times are in
docs/benchmarks/rollback.md (scripts/bench_rollback.py).
"""

from __future__ import annotations

import re
import shutil
import warnings
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from canary.drift.watch import job_name
from canary.policy import load_policy
from canary.sandbox.demo import SANDBOX_POLICY, ScenarioResult, run_scenario
from canary.sandbox.drift_demo import run_drift_scenario
from canary.sandbox.env import Sandbox
from canary.sandbox.model import MODEL_NAME

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]
if not (shutil.which("prometheus") and shutil.which("haproxy")):
    pytest.skip("the sandbox needs prometheus and haproxy (scripts/setup.sh installs them)", allow_module_level=True)

POLICY = load_policy(SANDBOX_POLICY)
# the breach is visible at the first looks of the first step, one failed look rolls back (sandbox.yaml): the
# failing look has judged at most this many canary requests (measured on a quiet host: 60-120). Bounded in
# requests and probes, not seconds: at load average 20 the load generator sent 34 of its 150 rps and the
# errors canary's 120 requests took 27 s; the seconds are measured in docs/benchmarks/rollback.md
BREACH_BOUND_REQUESTS = 400
# a good canary is promoted once each step has shown it within its limits, which takes a number of canary
# requests (590-1,280 canary requests a step, docs/benchmarks/suite.md), not a time: the rollout's cost is the requests it takes, about 4 ms of CPU
# each through the load generator, HAProxy and a Triton. At 150 rps a step of 25% or more shows it within about its
# 10 s interval on a quiet host, so a higher rate only sends more requests; on a loaded one the load generator
# reaches less than either. The breach scenarios keep the demo's rate too, their timing bounds are measured at it
# (docs/benchmarks/rollback.md)
GOOD_RATE = 150.0
# a canary refused before any traffic moves (its gate, its pods): the claim is that none of the load reached it,
# which a few requests a second show as well as the demo's 150 (each costs about 4 ms of CPU while the sandbox
# starts and the promote runs)
REFUSED_RATE = 20.0


def patient_policy(tmp_path: Path) -> Path:
    """The sandbox policy with a step deadline of 400 s instead of 70 s (and the test 900 s instead of 300), for the good canary's runs.

    A good canary is promoted once each step has shown it within its limits: a number of canary requests,
    not a time. On a quiet host the demo's 70 s is ample (the rollout takes about 35 s at 300 rps), but the
    load generator and the two CPU Tritons share the host: at load average 7 on 2 cores the load generator
    reached 72 rps of its 300 and the first step had 558 canary requests at its deadline, not enough to show
    +50% (an upper bound of +114%), so it was rolled back unproven, correctly. This keeps the test about the
    promotion, whatever the host's load; on a quiet host it takes as long as before.
    """
    text = SANDBOX_POLICY.read_text()
    patched = re.sub(r"(?m)^(\s*no_data_deadline:\s*)60s\b", r"\g<1>390s", text)
    assert patched != text, "policies/sandbox.yaml no longer has no_data_deadline: 60s"
    out = tmp_path / "sandbox-patient.yaml"
    out.write_text(patched)
    return out


def one_step_policy(tmp_path: Path) -> Path:
    """patient_policy with steps [50, 100]: one judged step, at half the traffic, then promoted.

    For a test about what is judged at a step (native histograms), not about the demo's steps: the
    judge reads the same series the same way at 50% as at 10% (it is the same look), and a step at
    50% gets five times the canary requests per second that the demo's first step gets, so the good
    canary is shown within its limits in about a fifth of the requests' time, and the three steps'
    minimum of 3 x `interval` is one. Three shifts of the split are run by
    test_good_canary_is_promoted_without_a_failed_request (shifting_policy), the demo's 10% step by the breaches.
    """
    return _patient_with_steps(tmp_path, "[50, 100]")


def shifting_policy(tmp_path: Path) -> Path:
    """patient_policy with steps [25, 50, 75, 100]: three live shifts of the split and the promotion, as the demo's
    [10, 25, 50, 100] makes, for less than half of its traffic.

    For test_good_canary_is_promoted_without_a_failed_request, whose claim is the promotion through every shift
    with no failed request: each step needs about as many canary requests whatever its weight (the same look), so
    the demo's 10% step alone took 10 of the rollout's 16 parts of the traffic (1/0.10 + 1/0.25 + 1/0.50 against
    1/0.25 + 1/0.50 + 1/0.75 = 7.3). The demo's first step at 10% is what the breach scenarios run (their failing
    look is at 90/10) with the shipped policy.
    """
    return _patient_with_steps(tmp_path, "[25, 50, 75, 100]")


def _patient_with_steps(tmp_path: Path, steps: str) -> Path:
    path = patient_policy(tmp_path)
    text = path.read_text()
    patched = re.sub(r"(?m)^steps:\s*\[10, 25, 50, 100\]", f"steps: {steps}", text)
    assert patched != text, "policies/sandbox.yaml no longer has steps: [10, 25, 50, 100]"
    path.write_text(patched)
    return path


def rollback_event(r: ScenarioResult) -> dict:
    done = [e for e in r.events if e.get("event") == "rollback.completed"]
    assert len(done) == 1, [e.get("event") for e in r.events]
    ev = done[0]
    assert ev["model"] == "rec-model" and ev["canary_version"] == "v2.1.0" and ev["weights"] == "100/0"
    return ev


def assert_rolled_back(r: ScenarioResult) -> dict:
    assert r.exit_code == 1, r.reason
    assert r.phase == "rolled_back" and r.final_vs_weights == {"stable": 100, "canary": 0}
    return rollback_event(r)


def test_incompatible_model_never_gets_traffic() -> None:
    r = run_scenario("bad-schema", rate=REFUSED_RATE)
    ev = assert_rolled_back(r)
    assert "gate" in ev["reason"] and "compatible" in ev["reason"]
    assert r.load["by_server"].get("canary", 0) == 0  # refused before any traffic
    assert "gate.failed" in [e.get("event") for e in r.events]


@pytest.fixture(scope="module")
def shared() -> Iterator[Callable[..., Sandbox]]:
    """A started sandbox that scenarios of one configuration take turns in (`run_scenario(sandbox=...)`), each
    from a clean state (`Sandbox.rearm`): the last configuration asked for is kept, the one before it stopped.

    A sandbox's servers take about 6 s of CPU to start and stop (docs/benchmarks/suite.md); the scenarios that
    share one here ran in nine (decisions 760, 805). `bad-schema` (a canary built otherwise) starts its own, and
    comes first in the file, so that no shared sandbox idles while it runs; `crash` kills the classic sandbox's
    canary, so it comes last of those that share it. A shared one a
    test left broken (a server of it exited: `Sandbox.broken`) is stopped and a fresh one started for the next,
    with a warning naming the part and the scenario, so that one failure does not fail the tests after it.
    """
    held: dict[bool, Sandbox] = {}

    def get(*, native_histograms: bool = False) -> Sandbox:
        broken = held[native_histograms].broken() if native_histograms in held else ""
        if broken:  # the test before failed so, or made its own fail: this one gets a fresh sandbox
            warnings.warn(f"a fresh sandbox replaces the shared one: {broken}", stacklevel=2)
            held.pop(native_histograms).stop()
        if native_histograms not in held:
            while held:
                held.popitem()[1].stop()
            held[native_histograms] = Sandbox("good", native_histograms=native_histograms).start()
        return held[native_histograms]

    yield get
    while held:
        held.popitem()[1].stop()


@pytest.mark.timeout(900)  # a loaded host: see patient_policy
def test_good_canary_is_promoted_without_a_failed_request(tmp_path: Path, shared: Callable[..., Sandbox]) -> None:
    policy = shifting_policy(tmp_path)
    r = run_scenario("good", rate=GOOD_RATE, report=tmp_path / "demo.report.html", policy=policy,
                     timeout_s=840.0, sandbox=shared())
    assert r.exit_code == 0 and r.phase == "promoted", r.reason
    assert r.final_vs_weights == {"stable": 100, "canary": 0}  # on the stable subset, now the new version
    assert r.final_subsets.get("stable") == "v2.1.0", r.final_subsets  # what the summary names (decision 532)
    assert r.load["failed"] == 0 and r.load["sent"] > 500
    assert r.load["by_server"].get("canary", 0) > 100  # the canary really served traffic
    names = [e.get("event") for e in r.events]
    assert names.count("step.advanced") == len(load_policy(policy).steps) - 1 == 3 and "rollout.promoted" in names
    assert "gate.passed" in names
    pods = [e for e in r.events if e.get("event") == "preflight.canary_pods"]  # the sandbox's Ready v2 pod
    assert len(pods) == 1 and pods[0]["ready"] == 1
    assert pods[0]["selector"].endswith("version=" + pods[0]["canary_version"]), pods
    stable = [e for e in r.events if e.get("event") == "preflight.stable_pods"]  # and its Ready v1 pod (decision 124)
    assert len(stable) == 1 and stable[0]["ready"] == 1, stable
    assert stable[0]["selector"].endswith("version=" + stable[0]["stable_version"]), stable
    # the demo ends by pointing at the rollout's report, written from the sandbox's API before it stops
    assert r.report and Path(r.report).is_file()
    page = Path(r.report).read_text()
    assert "<svg" in page and "promoted" in page


def test_a_mistyped_canary_version_never_gets_traffic(shared: Callable[..., Sandbox]) -> None:
    """`--canary-version v2.1` where the canary pods run v2.1.0. Decision 110 rolled it back at the first
    look whose window covered the settle time (10% of requests answered 503 until then); the pod check
    before traffic (decision 120) now finds no Ready pod labelled v2.1 and refuses with nothing moved
    (exit 3 after `--wait-ready`), naming the selector. The unrouted rule still stands behind it where the
    pods cannot be counted (tests/integration/test_promote.py, v9 on an API without pods)."""
    r = run_scenario("good", extra_args=("--canary-version", "v2.1", "--wait-ready", "2s"), sandbox=shared(),
                     rate=REFUSED_RATE)
    assert r.exit_code == 3, r.reason
    assert r.final_vs_weights == {"stable": 100, "canary": 0}
    assert "canary v2.1 has no Ready pod after waiting 2s" in r.reason and "version=v2.1" in r.reason, r.reason
    assert "nothing was moved" in r.reason
    assert not [e for e in r.events if e.get("event") in ("rollout.started", "look.completed")]
    assert r.load["by_server"].get("canary", 0) == 0
    waiting = [e for e in r.events if e.get("event") == "preflight.waiting_for_canary_pods"]
    assert len(waiting) == 1 and "there are none" in waiting[0]["detail"], waiting


@pytest.mark.parametrize("scenario,check", [("slow", "latency-p95"), ("drift", "predictions"), ("errors", "errors")])
def test_breach_is_rolled_back_with_its_evidence(scenario: str, check: str, shared: Callable[..., Sandbox]) -> None:
    r = run_scenario(scenario, sandbox=shared())
    ev = assert_rolled_back(r)
    assert check in ev["reason"]
    failing = [e for e in ev["evidence"] if e["check"].startswith(check) and e["outcome"] == "fail"]
    assert failing, ev["evidence"]
    e = failing[0]
    assert e["n_canary"] > 0 and e["n_stable"] > 0 and e["p_value"] is not None and e["reason"]
    assert r.stable_100_after_onset_s is not None  # the data plane sent everything to stable after the onset
    # the rollback came from the first step's looks, at the first failed one, on few canary requests
    looks = [x for x in r.events if x.get("event") == "look.completed"]
    assert looks and looks[-1]["outcome"] == "fail" and all(x["outcome"] != "fail" for x in looks[:-1]), looks
    assert looks[-1]["weights"] == "90/10" and looks[-1]["canary_requests"] <= BREACH_BOUND_REQUESTS, looks[-1]
    started = [x for x in r.events if x.get("event") == "rollback.started"]
    assert started and r.events.index(started[0]) > r.events.index(looks[-1]), "the rollback follows the failed look"
    # the sandbox's stable pod is Ready: the rollback's one count of it says nothing (decision 124)
    assert not [x for x in r.events if x.get("event") == "rollback.stable_not_ready"]


def test_stable_inputs_drift_alert_and_one_retraining_job(shared: Callable[..., Sandbox]) -> None:
    """Issue 12's scenario: no rollout runs; the stable model's inputs move away from its training data. On the
    real sandbox (Triton exporting feature distributions over the training profile's buckets, Prometheus scraping
    it, the API emulator), the drift monitor raises nothing while the inputs are what the model trained on (A/A),
    then the alert and exactly one retraining Job once five of its eight inputs move. It runs what `canary demo
    --scenario data-drift` shows a person (`canary.sandbox.drift_demo`), in the classic sandbox the rollouts above
    ran in, rearmed (its own sandbox before decision 805); `canary drift watch --once` itself is covered by the
    integration tests."""
    r = run_drift_scenario(rate=100.0, clean_needed=4, after_alert=1, sandbox=shared())
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


def test_crashed_canary_is_rolled_back_by_the_probe_within_seconds(shared: Callable[..., Sandbox]) -> None:
    """The last in the classic sandbox: its canary is killed, so the sandbox is `broken` after it (decision 805)."""
    r = run_scenario("crash", sandbox=shared())
    ev = assert_rolled_back(r)
    assert "gate" in ev["reason"] and "not ready" in ev["reason"]
    assert r.stable_100_after_onset_s is not None
    failed = [e for e in r.events if e.get("event") == "gate.probe_failed"]
    assert failed and all(e.get("reason") for e in failed), failed  # each says why (on-call reads one line)
    # rolled back at the probe failure that reached the limit (2 in a row, sandbox.yaml), not by a deadline:
    # bounded in probes, not seconds (a loaded host spaces them out)
    assert failed[-1]["consecutive"] == failed[-1]["limit"] == POLICY.gates.triton.probe_failures, failed
    assert [e["consecutive"] for e in failed[-failed[-1]["limit"]:]] == list(range(1, failed[-1]["limit"] + 1)), failed


@pytest.mark.timeout(900)  # a loaded host: see patient_policy
@pytest.mark.parametrize("scenario", ["good", "slow"])
def test_a_rollout_on_native_histograms(scenario: str, tmp_path: Path, shared: Callable[..., Sandbox]) -> None:
    """Issue 9: both models export their latency only as a Prometheus native histogram (protobuf
    exposition, Prometheus with the feature on): a good canary is shown within the limits and
    promoted, a slow one rolled back on bounds of the native grid."""
    import math
    import re

    from canary.metrics.prometheus import PrometheusProvider

    def series(sb: Any) -> tuple[Any, Any]:
        prom = PrometheusProvider(sb.prometheus_url)
        sel = '{model_name="rec-model"}'
        return tuple(prom.query(f"model_inference_duration_seconds{suffix}{sel}", check="t", arm="", at=None)
                     for suffix in ("_bucket", ""))  # classic buckets, the native series

    good = scenario == "good"
    policy = one_step_policy(tmp_path) if good else SANDBOX_POLICY
    r = run_scenario(scenario, sandbox=shared(native_histograms=True), inspect=series,
                     rate=GOOD_RATE, **({"policy": policy, "timeout_s": 600.0} if good else {}))
    classic, native = r.inspected
    assert classic == [] and len(native) == 2 and all("histogram" in s for s in native), (classic, native)
    if scenario == "good":
        assert r.exit_code == 0 and r.phase == "promoted", r.reason
        # promoted on a look at the 50% step that passed, its latency check among what passed
        names = [e.get("event") for e in r.events]
        assert names.count("step.advanced") == len(load_policy(policy).steps) - 1 and "rollout.promoted" in names, names
        passed = [e for e in r.events if e.get("event") == "look.completed" and e["outcome"] == "pass"]
        assert passed and passed[0]["weights"] == "50/50" and passed[0]["checks"]["latency-p95"] == "pass", passed
        return
    ev = assert_rolled_back(r)
    assert "latency-p95" in ev["reason"], ev["reason"]
    # the canary's bound it compared at is 2^(i/8) s (schema 3), in ms (printed to 6 digits): no
    # classic layout of the sandbox has it (0.5 ms x 1.1^i)
    compared = [float(x) for x in re.findall(r"compared canary >([0-9.]+)", ev["reason"])]
    assert compared, ev["reason"]
    for ms in compared:
        i = math.log2(ms / 1000) * 8
        assert abs(i - round(i)) < 1e-4, (ms, ev["reason"])
