"""A rollout state read back from the route may have been edited by hand: its last verdict's `results` is
then not a list of objects. Every reader of those results (promote's and the controller's announcement of
an end, the CanaryRollout's notification) reads what is not as none: `"results": 5` made `promote`'s
announcement raise after the rollback, and its exit code 3 instead of 1."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest

from canary import rollout as rl
from canary.cli import announce
from canary.notify import payload_for


class Recorder:
    """The notifier's interface (`notify(event, payload)`); the real sender is tested in test_notify*."""

    def __init__(self) -> None:
        self.got: list[tuple[str, dict[str, Any]]] = []

    def notify(self, event: str, payload: dict[str, Any]) -> None:
        self.got.append((event, dict(payload)))


def _rolled_back(results: Any) -> rl.RolloutState:
    state, _ = rl.new_rollout(model="rec", stable_version="v1", canary_version="v2", now=1_000.0)
    raw = json.loads(replace(state, phase=rl.ROLLED_BACK, reason="latency: p95 +40%").to_json())
    raw["last_verdict"] = {"results": results}
    return rl.RolloutState.from_json(json.dumps(raw))


SHIFT = {"name": "predictions", "kind": "prediction_shift", "outcome": "fail", "reason": "psi 0.4"}


@pytest.mark.parametrize("results, kept", [
    (5, []), ("fail", []), ({"kind": "prediction_shift"}, []), (None, []),
    ([1, "x", None, SHIFT], [SHIFT]),  # the objects among them are kept
    ([SHIFT], [SHIFT]),
])
def test_results_that_are_not_a_list_of_objects_read_as_none(results: Any, kept: list[Any]) -> None:
    state = _rolled_back(results)
    assert state.verdict_results() == kept
    assert payload_for(state, namespace="ml", rollout="rec")["evidence"] == kept
    got = Recorder()
    announce(got, state, namespace="ml", rollout="rec")  # raised AttributeError / TypeError for 5 and "fail"
    assert [e for e, _ in got.got] == ["rollback", *(["prediction_shift"] if kept else [])]
    assert got.got[0][1]["reason"] == "latency: p95 +40%"


def test_an_announcement_that_breaks_never_raises_into_the_exit() -> None:
    class Broken(Recorder):
        def notify(self, event: str, payload: dict[str, Any]) -> None:
            raise RuntimeError("a sender bug")

    announce(Broken(), _rolled_back([SHIFT]), namespace="ml", rollout="rec")  # logged, not raised


def test_the_controllers_notification_reads_them_the_same_way() -> None:
    from types import SimpleNamespace

    from canary import crd

    spec = SimpleNamespace(namespace="ml", name="rec", target=SimpleNamespace(model="rec", virtual_service="rec",
                                                                              route=""))
    assert crd.notification(spec, _rolled_back(5))["evidence"] == []  # type: ignore[arg-type]
    assert crd.notification(spec, _rolled_back([7, SHIFT]))["evidence"] == [SHIFT]  # type: ignore[arg-type]


def test_promote_and_the_controller_post_an_end_as_one_mapping_says() -> None:
    """`cli.announce` and `Controller._post_end` each mapped an end to its posts; the two copies differed in one
    case: an end recorded aborted whose last verdict failed a prediction-shift check (a check's rollback whose route
    was deleted before its write keeps its verdict, decision 676) got "prediction_shift" from the controller and not
    from promote. One mapping now (`notify.end_events`, decision 739), the controller's."""
    from canary.controller import Controller
    from canary.notify import end_events

    aborted = replace(_rolled_back([SHIFT]), phase=rl.ABORTED)
    promoted = replace(_rolled_back([SHIFT]), phase=rl.PROMOTED)
    assert [end_events(s) for s in (_rolled_back([SHIFT]), aborted, promoted, _rolled_back([]))] == [
        ("rollback", "prediction_shift"), ("aborted", "prediction_shift"), ("promotion",), ("rollback",)]
    got = Recorder()
    announce(got, aborted, namespace="ml", rollout="rec")
    assert [e for e, _ in got.got] == ["aborted", "prediction_shift"]
    ctl = Controller(custom=None, core=None, router=None, metrics=None, notifier=Recorder())  # type: ignore[arg-type]
    ctl._post_end("ml/rec", lambda: {}, aborted, [rl.Emit("rollout.aborted", {})])
    assert [e for e, _ in ctl.notifier.got] == ["aborted", "prediction_shift"]
