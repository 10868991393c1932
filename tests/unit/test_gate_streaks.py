"""The probe asks two servers (`TritonGates.ready`): failures in a row are counted per server, so a
canary failing once and then stable once is not "2 probes in a row" of either (it ended a good rollout
ABORTED saying stable had failed twice in a row), while a server failing `probe_failures` in a row
still ends it, named (docs/decisions.md 93, 95)."""

from __future__ import annotations

from pathlib import Path

import pytest

from canary import rollout as rl
from canary.gates import TritonGates
from canary.model import STABLE_ONLY
from canary.policy import TritonGate
from canary.runner import probe_reason, probe_streak

pytest.importorskip("tritonclient.http")

GATE = TritonGate(warmup_requests=2, probe_interval=0.5, probe_failures=2)


class Scripted:
    """A ReadinessProbe that answers from a script (True: ready, else the failure's words)."""

    def __init__(self, answers: list[bool | str]) -> None:
        self.answers, self.contract, self.last_failure = list(answers), object(), ""

    def ready(self) -> bool:
        got = self.answers.pop(0) if self.answers else True
        self.last_failure = "" if got is True else str(got)
        return got is True


def gates(canary: list[bool | str], stable: list[bool | str]) -> TritonGates:
    g = TritonGates(GATE, model="rec", stable_url="127.0.0.1:8000", canary_url="127.0.0.1:8001", base_dir=Path("."))
    g._probe, g._stable_probe = Scripted(canary), Scripted(stable)  # type: ignore[assignment]
    g.preflight = lambda: {"warm_p50_ms": 3.0}  # type: ignore[method-assign]  # no server: the probes are the test
    return g


def run(g: TritonGates, probes: int) -> list[tuple[bool, str, int]]:
    """(ready, failing, the loop's count of failures in a row) per probe, counted as the loops count them."""
    out, count = [], 0
    for _ in range(probes):
        ok = g.ready()
        count = 0 if ok else probe_streak(g, count)
        out.append((ok, g.failing, count))
    return out


def test_a_canary_failure_then_a_stable_one_are_not_two_in_a_row_of_either() -> None:
    g = gates(["unreachable: refused", True, True], [True, "unreachable: refused", True])
    assert run(g, 3) == [(False, "canary", 1), (False, "stable", 1), (True, "", 0)]


def test_a_server_failing_twice_in_a_row_is_named_and_counted_two() -> None:
    g = gates([True, True], ["unreachable: refused", "unreachable: refused"])
    assert run(g, 2)[-1] == (False, "stable", 2)
    why = probe_reason(g, 2)
    assert why.startswith("stable Triton not ready (2 probes in a row: stable rec@127.0.0.1:8000: unreachable"), why


def test_stable_down_longer_than_a_canary_that_just_failed_is_the_stable_s_end() -> None:
    """Stable failed at the first probe, both at the second: stable has failed twice in a row, the canary
    once: the rollout ends ABORTED naming stable (and saying the canary failed too), not as the canary's
    first failure (which would not have ended it)."""
    g = gates([True, "model 'rec' not ready"], ["unreachable: refused", "unreachable: refused"])
    assert run(g, 2)[-1] == (False, "stable", 2)
    assert "the canary is not ready either (model 'rec' not ready)" in g.last_failure


def test_both_failing_alike_is_the_canary_s_rollback() -> None:
    g = gates(["unreachable: a", "unreachable: a"], ["unreachable: b", "unreachable: b"])
    assert run(g, 2)[-1] == (False, "canary", 2)
    assert "stable is not ready either" in g.last_failure


def test_a_gate_without_per_server_counts_is_counted_as_before() -> None:
    class Plain:
        pass

    assert probe_streak(Plain(), 0) == 1 and probe_streak(Plain(), 4) == 5


def test_the_runner_does_not_end_a_rollout_on_one_failure_of_each_server() -> None:
    """Through `canary promote`'s loop (fake clock): one canary failure then one stable failure, the
    rest ready: the rollout is promoted, not ABORTED."""
    from tests.unit.test_runner import make

    ctl, router, _, clock = make()
    ctl.gate = gates([True, "unreachable: refused"], [True, True, "unreachable: refused"])
    res = ctl.run()
    assert res.exit_code == 0 and res.state.phase == rl.PROMOTED and router.weights == STABLE_ONLY, res.state


def test_the_runner_ends_a_rollout_whose_stable_fails_twice_in_a_row() -> None:
    from tests.unit.test_runner import make

    ctl, router, _, clock = make()
    ctl.gate = gates([True] * 3, [True, True, "unreachable: refused", "unreachable: refused"])
    res = ctl.run()
    assert res.exit_code == 3 and res.state.phase == rl.ABORTED and router.weights == STABLE_ONLY, res.state
    assert res.state.reason.startswith("gate: stable Triton not ready (2 probes in a row: stable rec@"), res.state.reason


def test_the_loops_own_reset_still_holds() -> None:
    """The controller starts its count over at a new step or canary version; the gate's per-server count
    does not know of steps: the loops take the smaller of the two."""
    g = gates(["unreachable: a"] * 3, [True] * 3)
    run(g, 3)
    assert g.consecutive == 3 and probe_streak(g, 0) == 1 and probe_streak(g, 1) == 2


def test_the_probe_line_names_the_real_gates_failing_server_and_its_address() -> None:
    """`gate.probe_failed`'s `arm` and `endpoint` (decision 922) from `TritonGates` itself, not a test double that
    sets them: the server failing longest is named with the address it was probed at, the canary on a tie."""
    from canary.runner import probe_server

    g = gates(["unreachable: refused", True, "unreachable: a"], [True, "unreachable: refused", "unreachable: b"])
    said = []
    for _ in range(3):
        assert not g.ready()
        said.append(probe_server(g))
    assert said == [{"arm": "canary", "endpoint": "rec@127.0.0.1:8001"},
                    {"arm": "stable", "endpoint": "rec@127.0.0.1:8000"},
                    {"arm": "stable", "endpoint": "rec@127.0.0.1:8000"}], said
