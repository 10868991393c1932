"""The rollout's record stays within the API server's annotation limit, whatever people type (decision 528).

Reasons are free text, written into the record's `reason` and into each history line, and JSON escapes a
character outside ASCII to up to 12 bytes. The API server refuses a write whose annotations pass 262,144 bytes,
and the strict emulator does the same: twenty pauses with a long reason made the record 260 KB, and the next
write, `canary rollback`'s stable 100% included, was refused with the traffic still split.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import pytest

from canary import rollout as rl
from canary.kube import api_client
from canary.model import Target, Weights
from canary.policy import parse_policy
from canary.routing.istio import IstioRouter
from canary.sandbox.kubeapi import ANNOTATIONS_LIMIT, KubeAPIServer
from tests import fleet
from tests.support import cli
from tests.support.kube import shipped_istio_objects

pytestmark = pytest.mark.integration
GROUP = "networking.istio.io"
TARGET = Target(namespace="ml", virtual_service="rec-model", model="rec-model", stable_version="v1", canary_version="v2")
LONG = "\U0001F6A8" * 5000  # 60 KB once escaped: in `reason` and in a history line, past the budget at once


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[KubeAPIServer, Path]]:
    api = KubeAPIServer(seed=shipped_istio_objects()).start()
    yield api, fleet.write_kubeconfig(tmp_path / "kubeconfig", api.url)
    api.stop()


def canary(*args: str, kubeconfig: Path) -> Any:
    return cli.run([*args, "--kubeconfig", str(kubeconfig)], env={"KUBECONFIG": ""})


def record(api: KubeAPIServer) -> tuple[list[int], str]:
    obj = api.get(GROUP, "virtualservices", "ml", "rec-model")
    return [d["weight"] for d in obj["spec"]["http"][0]["route"]], obj["metadata"]["annotations"][
        "modelcanary.dev/rollout"]


def test_long_reasons_never_make_a_record_the_api_server_refuses_and_the_rollback_lands(cluster: Any) -> None:
    api, kc = cluster
    state = rl.RolloutState(model="rec-model", stable_version="v1", canary_version="v2", phase=rl.PROGRESSING,
                            weights=Weights(80, 20), step=2, started_at=1.0, step_started_at=2.0)
    IstioRouter(api_client(kubeconfig=str(kc))).set_weights(TARGET, Weights(80, 20), state=state.to_json())
    assert canary("pause", "rec-model", "-n", "ml", kubeconfig=kc).returncode == 0
    assert canary("resume", "rec-model", "-n", "ml", kubeconfig=kc).returncode == 0
    res = canary("rollback", "rec-model", "-n", "ml", "--reason", LONG * 3, kubeconfig=kc)
    assert res.returncode == 0, res.stderr
    weights, text = record(api)
    assert weights == [100, 0] and len(text) <= rl.RECORD_MAX_BYTES < ANNOTATIONS_LIMIT
    ended = rl.RolloutState.from_json(text)
    assert ended.phase == rl.ROLLED_BACK and ended.weights == Weights(100, 0)
    assert LONG[:100] in ended.reason and ended.reason.endswith("…")  # cut, and said to be
    assert ended.history and ended.history[-1]["what"].startswith("rolled_back: ")  # the newest lines kept


def test_twenty_pauses_with_the_longest_action_reason_stay_within_the_budget_and_keep_what_decisions_read() -> None:
    """A CanaryRollout's actionReason (at most 1,024 characters, its CRD) goes into each pause's `reason` and
    history line: twenty of them made a 260 KB record."""
    policy = parse_policy({"steps": [10, 50, 100], "checks": [{"name": "errors", "kind": "error_rate",
                                                               "max_increase_points": 1}]})
    state = rl.RolloutState(model="m", stable_version="v1", canary_version="v2", phase=rl.PROGRESSING,
                            weights=Weights(50, 50), step=1, started_at=1.0, step_started_at=2.0)
    for i in range(20):
        state, _ = rl.transition(state, rl.Pause(float(10 + i), reason=f"{i} " + "\U0001F6A8" * 1022), policy)
        state, _ = rl.transition(state, rl.Resume(float(10.5 + i)), policy)
    state, _ = rl.transition(state, rl.Pause(40.0, reason="\U0001F6A8" * 1024), policy)
    text = state.to_json()
    assert len(text) <= rl.RECORD_MAX_BYTES
    back = rl.RolloutState.from_json(text)
    assert (back.phase, back.weights, back.step, back.step_started_at) == (rl.PAUSED, Weights(50, 50), 1, state.step_started_at)
    assert back.history[-1] == {**state.history[-1], "what": state.history[-1]["what"][:300] + "…"}


def test_a_record_under_the_budget_is_written_as_before() -> None:
    state = rl.RolloutState(model="m", stable_version="v1", canary_version="v2", phase=rl.PAUSED, weights=Weights(90, 10),
                            reason="r" * 2000, history=tuple({"at": float(i), "what": "w" * 500} for i in range(20)))
    text = state.to_json()
    assert len(text) < rl.RECORD_MAX_BYTES
    assert rl.RolloutState.from_json(text) == state  # nothing cut: the same state read back


def test_the_emulator_refuses_annotations_past_the_api_servers_limit(cluster: Any) -> None:
    api, kc = cluster
    router = IstioRouter(api_client(kubeconfig=str(kc)))
    with pytest.raises(Exception, match="Too long"):
        router.set_weights(TARGET, Weights(90, 10), state="x" * (ANNOTATIONS_LIMIT + 1))
    assert record_absent(api)


def record_absent(api: KubeAPIServer) -> bool:
    obj = api.get(GROUP, "virtualservices", "ml", "rec-model")
    return "modelcanary.dev/rollout" not in (obj["metadata"].get("annotations") or {})


def test_a_record_over_the_budget_is_cut_in_its_text_alone_never_in_the_state() -> None:
    verdict = {"outcome": "pass", "results": [{"check": "latency", "reason": "\U0001F6A8" * 3000}]}
    history = tuple({"at": float(i), "phase": "progressing"} for i in range(3))  # hand-written lines, no "what"
    state = rl.RolloutState(model="m", stable_version="v1", canary_version="v2", phase=rl.PAUSED, weights=Weights(90, 10),
                            reason="\U0001F6A8" * 6000, last_verdict=verdict, history=history)
    text = state.to_json()
    assert len(text) <= rl.RECORD_MAX_BYTES
    assert state.last_verdict == {"outcome": "pass", "results": [{"check": "latency", "reason": "\U0001F6A8" * 3000}]}
    back = rl.RolloutState.from_json(text)
    assert back.history == history  # nothing added to lines that had no text to cut
    assert back.last_verdict is not None and back.last_verdict["results"][0]["reason"].endswith("…")
