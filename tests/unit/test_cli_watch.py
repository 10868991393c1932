"""Which end `canary status --watch` takes as the awaited rollout's outcome (decision 165): table cases of
`cli_watch.RecordWait` and `cli_watch.crd_end`; the command itself: tests/integration/test_cli_ops.py."""

from __future__ import annotations

from typing import Any

import pytest

import canary.cli  # noqa: F401  (registers the commands; cli_controller, whose refusal test crd_end shares, imports it)
from canary import rollout as rl
from canary.cli_watch import RecordWait, crd_end
from canary.errors import CanaryError, ConfigError
from canary.model import Weights


def _state(version: str, phase: str, started_at: float = 1.0, owner: str = "promote") -> rl.RolloutState:
    weights = Weights(100, 0) if phase in rl.TERMINAL else Weights(90, 10)
    return rl.RolloutState(model="m", stable_version="v1", canary_version=version, phase=phase, weights=weights,
                           started_at=started_at, owner=owner)


def test_without_a_version_an_end_there_at_the_start_is_not_the_answer_and_a_later_ones_is() -> None:
    wait = RecordWait()
    old = _state("v2", rl.PROMOTED)
    assert wait.end(old) is None and "ended before this watch started" in wait.waiting(old)
    assert wait.end(old) is None  # read again: still the same old end
    assert wait.end(_state("v3", rl.PROGRESSING, started_at=5.0)) is None
    assert wait.end(_state("v3", rl.ROLLED_BACK, started_at=5.0)) == rl.ROLLED_BACK
    # the same version retried is another rollout (another start): its end is an answer
    retry = RecordWait()
    assert retry.end(_state("v2", rl.ROLLED_BACK)) is None
    assert retry.end(_state("v2", rl.PROMOTED, started_at=9.0)) == rl.PROMOTED


def test_a_rollout_running_at_the_start_or_none_recorded_ends_with_its_own_end() -> None:
    for first in (None, _state("v3", rl.PROGRESSING)):
        wait = RecordWait()
        assert wait.end(first) is None and wait.waiting(first) == ""
        assert wait.end(_state("v3", rl.PROMOTED)) == rl.PROMOTED


def test_with_a_version_only_that_versions_end_answers() -> None:
    wait = RecordWait(canary_version="v3")
    assert wait.end(_state("v2", rl.PROMOTED)) is None
    assert "recorded is v2's (promoted), not v3's" in wait.waiting(_state("v2", rl.PROMOTED))
    assert wait.end(_state("v3", rl.ABORTED)) == rl.ABORTED


def _cr(status: dict[str, Any], *, generation: int = 2, version: str = "v3", uid: str = "u1") -> dict[str, Any]:
    return {"metadata": {"uid": uid, "generation": generation}, "spec": {"canaryVersion": version}, "status": status}


@pytest.mark.parametrize("status, want", [
    ({}, None),  # just applied: nothing observed
    ({"phase": rl.PROMOTED, "observedGeneration": 1, "target": {"canaryVersion": "v2"}}, None),  # the last spec's
    ({"phase": rl.PROMOTED, "observedGeneration": 2, "target": {"canaryVersion": "v2"}}, None),  # another version
    ({"phase": rl.PROGRESSING, "observedGeneration": 2, "target": {"canaryVersion": "v3"}}, None),
    ({"phase": rl.ROLLED_BACK, "observedGeneration": 2, "target": {"canaryVersion": "v3"}}, rl.ROLLED_BACK),
    ({"phase": rl.ABORTED, "observedGeneration": 2, "target": {"canaryVersion": "v3"},
      "waitedOnPhase": rl.PROMOTED}, rl.PROMOTED),  # waited on another owner's rollout of v3: its outcome
])
def test_a_canaryrollout_ends_only_at_its_current_generation(status: dict[str, Any], want: str | None) -> None:
    ended, why = crd_end(_cr(status), where="ml/r", uid="u1")
    assert ended == want and (why == "") == (want is not None)


def test_a_canaryrollout_gone_or_refused_is_said_not_waited_on() -> None:
    with pytest.raises(CanaryError, match="deleted while"):
        crd_end(None, where="ml/r", uid="u1")
    with pytest.raises(CanaryError, match="deleted and created again"):
        crd_end(_cr({}, uid="u2"), where="ml/r", uid="u1")
    refused = {"conditions": [{"type": "Ready", "status": "False", "reason": "PolicyError", "message": "bad steps",
                               "observedGeneration": 2}]}
    with pytest.raises(ConfigError, match="CanaryRollout ml/r: bad steps; nothing was moved"):
        crd_end(_cr(refused), where="ml/r", uid="u1")
    # a refusal whose words say it already (a preflight's) is not told twice
    said = "check 'p95': no stable data in 5m; nothing was moved; query: x"
    empty = {"conditions": [{**refused["conditions"][0], "reason": "ConfigError", "message": said}]}
    with pytest.raises(ConfigError) as raised:
        crd_end(_cr(empty), where="ml/r", uid="u1")
    assert str(raised.value) == f"CanaryRollout ml/r: {said}", raised.value


def test_a_canaryrollout_a_newer_canary_recorded_is_said_not_waited_on() -> None:
    """Decision 172: Ready False, reason RecordTooNew. Never claimed: refused (exit 2), as `promote` refuses that
    route; claimed and progressing: exit 3, its outcome the newer canary's; ended: its end, as any."""
    ready = {"type": "Ready", "status": "False", "reason": "RecordTooNew", "observedGeneration": 2,
             "message": "rollout state annotation was written by modelcanary 9.1.0 in record schema 2"}
    with pytest.raises(ConfigError, match="CanaryRollout ml/r: RecordTooNew: rollout state annotation was written "
                                          "by modelcanary 9.1.0.*; nothing was moved"):
        crd_end(_cr({"conditions": [ready]}), where="ml/r", uid="u1")
    running = {"phase": rl.PROGRESSING, "observedGeneration": 2, "target": {"canaryVersion": "v3"},
               "weights": {"stable": 80, "canary": 20}, "conditions": [ready]}
    with pytest.raises(CanaryError, match=r"CanaryRollout ml/r \(progressing, weights 80/20\): RecordTooNew: "
                                          "rollout state annotation was written by modelcanary 9.1.0") as raised:
        crd_end(_cr(running), where="ml/r", uid="u1")
    assert not isinstance(raised.value, ConfigError) and "left in place" in str(raised.value)
    assert crd_end(_cr({**running, "conditions": [{**ready, "observedGeneration": 1}]}), where="ml/r",
                   uid="u1")[0] is None  # an earlier generation's: waited on
    assert crd_end(_cr({**running, "phase": rl.ROLLED_BACK}), where="ml/r", uid="u1")[0] == rl.ROLLED_BACK


@pytest.mark.parametrize(("weights", "said"), [
    ({"stable": 80, "canary": 20}, "80/20"),
    ({"stable": 100}, "100/?"),  # a status written in part: `follow.status` said "100/None"
    (None, None),  # not claimed yet: none
    ("80/20", None),  # no object: none, as before
])
def test_a_followers_lines_say_a_statuss_weights_alike_a_partial_one_too(weights: Any, said: str | None) -> None:
    """`follow.status` (`_progress`) and the end's and a newer canary's lines formatted `status.weights` each its
    own way; one function now (`weights_text`), "?" for an arm a status left out, where `follow.status` said
    "None"."""
    from canary.cli_controller import _progress, left_to_newer_words

    st = {"phase": "progressing", "step": 1, **({"weights": weights} if weights is not None else {})}
    assert _progress(st, 1)["weights"] == said
    assert f"(progressing, weights {said or '?/?'}): " in left_to_newer_words("ml/r0", st, "newer")
