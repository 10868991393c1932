"""`rollout.replace`: a RolloutState's transition copies it without its generated `__init__` (decision 1032), and
gives what `dataclasses.replace` gives, field by field, its checks included."""

from __future__ import annotations

import dataclasses

import pytest

from canary import rollout as rl
from canary.model import Weights

STATE = rl.RolloutState(model="m", stable_version="a", canary_version="b", phase=rl.PROGRESSING,
                        weights=Weights(90, 10), step=1, look=4, evidence={"c/t": (1.0, 2.0)},
                        history=({"at": 1.0, "phase": rl.PROGRESSING},), judged={"policy": "x"})
CHANGES = {"phase": rl.PAUSED, "weights": Weights(100, 0), "step": 2, "look": 5, "evidence": {}, "reason": "r",
           "window_to": 3.5, "history": (), "last_verdict": {"results": []}, "reverts": 1, "end_cause": "",
           "promotion_held": "held"}


@pytest.mark.parametrize("name", [f.name for f in dataclasses.fields(rl.RolloutState)])
def test_each_field_replaced_is_what_dataclasses_replace_gives(name: str) -> None:
    value = CHANGES.get(name, getattr(STATE, name))
    ours, theirs = rl.replace(STATE, **{name: value}), dataclasses.replace(STATE, **{name: value})
    assert ours == theirs and ours.to_json() == theirs.to_json()
    assert ours is not STATE and STATE == rl.RolloutState.from_json(STATE.to_json())  # the old state untouched


def test_several_at_once_and_the_checks_of_construction() -> None:
    assert rl.replace(STATE, **CHANGES) == dataclasses.replace(STATE, **CHANGES)
    with pytest.raises(ValueError, match="unknown rollout phase 'bogus'"):
        rl.replace(STATE, phase="bogus")
    with pytest.raises(TypeError, match="nosuch"):
        rl.replace(STATE, nosuch=1)
    with pytest.raises(ValueError, match="sum to 100"):  # another dataclass: dataclasses.replace, its checks
        rl.replace(Weights(90, 10), canary=20)


def test_a_state_is_copied_without_its_generated_init(monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[int] = []
    init = rl.RolloutState.__init__

    def counted(self: rl.RolloutState, *a: object, **kw: object) -> None:
        made.append(1)
        init(self, *a, **kw)

    monkeypatch.setattr(rl.RolloutState, "__init__", counted)
    assert rl.replace(STATE, look=9).look == 9
    assert made == []
