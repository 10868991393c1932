"""`controller._Known`: a rollout's state kept packed between its ticks gives the same state back."""

from __future__ import annotations

import math
from dataclasses import replace

from canary import crd
from canary import rollout as rl
from canary.controller import _Known
from canary.model import Weights
from canary.reconcile import next_look_at
from tests import fleet


def progressing(history: int) -> tuple[crd.RolloutSpec, rl.RolloutState]:
    spec = crd.parse(fleet.rollout_object(0, "v2"))
    state = rl.RolloutState(
        model="m0", stable_version="v1", canary_version="v2", phase=rl.PROGRESSING, weights=Weights(90, 10),
        step=1, look=7, step_looks=3, failed_looks=1, last_look_requests=812.0,
        evidence={"latency/upper": (1.25, 3.5)}, window_evidence={"latency/upper": (0.5, 1.0)},
        started_at=1000.0, step_started_at=1060.5, updated_at=1090.25, reason="look 7: inconclusive",
        last_verdict={"outcome": "inconclusive", "results": [{"check": "latency", "p": 0.031, "stable": 41.2}]},
        history=tuple({"at": 1000.0 + i, "event": f"e{i}"} for i in range(history)))
    return spec, state


def test_a_packed_state_is_the_state_it_was() -> None:
    spec, state = progressing(history=5)
    known = _Known(spec, state)
    due = next_look_at(spec.policy, state)
    known.pack()
    assert known._state is None and known._packed is not None  # noqa: SLF001
    assert known.state() == state
    assert known.next_look() == due and known.phase == rl.PROGRESSING and known.weights == Weights(90, 10)
    known.pack()  # idempotent
    assert known.state() == state


def test_a_packed_state_keeps_the_history_the_annotation_keeps() -> None:
    spec, state = progressing(history=30)
    known = _Known(spec, state)
    known.pack()
    assert known.state() == replace(state, history=state.history[-20:])


def test_only_a_progressing_rollout_has_a_next_look() -> None:
    spec, state = progressing(history=0)
    for phase in (rl.PAUSED, rl.PROMOTED, rl.ABORTED):
        known = _Known(spec, replace(state, phase=phase))
        known.pack()
        assert known.next_look() == math.inf
    assert _Known(spec, replace(state, phase=rl.PROMOTED)).terminal
