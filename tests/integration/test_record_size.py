"""The rollout's record stays within the API server's annotation limit, whatever people type (decision 528).

Reasons are free text, written into the record's `reason` and into each history line, and JSON escapes a
character outside ASCII to up to 12 bytes. The API server refuses a write whose annotations pass 262,144 bytes,
and the strict emulator does the same: twenty pauses with a long reason made the record 260 KB, and the next
write, `canary rollback`'s stable 100% included, was refused with the traffic still split.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, Iterator

import pytest

from canary import rollout as rl
from canary.errors import TargetError
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
POLICY = parse_policy({"steps": [10, 50, 100], "checks": [{"name": "errors", "kind": "error_rate",
                                                         "max_increase_points": 1}]})
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
    state = rl.RolloutState(model="m", stable_version="v1", canary_version="v2", phase=rl.PROGRESSING,
                            weights=Weights(50, 50), step=1, started_at=1.0, step_started_at=2.0)
    for i in range(20):
        state, _ = rl.transition(state, rl.Pause(float(10 + i), reason=f"{i} " + "\U0001F6A8" * 1022), POLICY)
        state, _ = rl.transition(state, rl.Resume(float(10.5 + i)), POLICY)
    state, _ = rl.transition(state, rl.Pause(40.0, reason="\U0001F6A8" * 1024), POLICY)
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


OTHERS = 200_000  # another tool's annotation: past ANNOTATIONS_LIMIT - RECORD_MAX_BYTES, so a 64 KiB record no longer fits


def with_others(api: KubeAPIServer, kc: Path) -> rl.RolloutState:
    """The route at 80/20 under a rollout whose history is near the record's budget (twenty long pause lines), and a
    200 KB `kubectl apply` note beside it: the whole fits (the record is under 62 KB); a 64 KiB record would not."""
    api.edit(GROUP, "virtualservices", "ml", "rec-model", lambda vs: vs["metadata"].setdefault("annotations", {}).update(
        {"kubectl.kubernetes.io/last-applied-configuration": "{" + "x" * (OTHERS - 2) + "}"}))
    history = tuple({"at": float(i), "what": f"paused: operator: {i} " + "\U0001F6A8" * 230} for i in range(20))
    state = rl.RolloutState(model="rec-model", stable_version="v1", canary_version="v2", phase=rl.PROGRESSING,
                            weights=Weights(80, 20), step=2, started_at=1.0, step_started_at=2.0, history=history)
    IstioRouter(api_client(kubeconfig=str(kc))).set_weights(TARGET, Weights(80, 20), state=state.to_json())
    return state


def annotations_bytes(api: KubeAPIServer) -> int:
    obj = api.get(GROUP, "virtualservices", "ml", "rec-model")
    return sum(len(k.encode()) + len(v.encode()) for k, v in obj["metadata"]["annotations"].items())


def test_a_rollback_lands_beside_another_tools_huge_annotation_its_record_cut_to_what_is_left(cluster: Any) -> None:
    """Decision 563: the API server's limit is for all of an object's annotations; a 64 KiB record beside 200 KB of
    another tool's was refused (422), the traffic left split, exit 6. The stable-100% write cuts its record to fit,
    and the rollback's own guarded re-pointing after it finds the text it wrote (no conflict, no re-read)."""
    api, kc = cluster
    with_others(api, kc)
    res = canary("rollback", "rec-model", "-n", "ml", "--reason", LONG * 3, kubeconfig=kc)
    assert res.returncode == 0, res.stderr
    weights, text = record(api)
    assert weights == [100, 0] and annotations_bytes(api) <= ANNOTATIONS_LIMIT
    ended = rl.RolloutState.from_json(text)
    assert ended.phase == rl.ROLLED_BACK and ended.weights == Weights(100, 0) and ended.reason.endswith("…")
    assert ended.history and ended.history[-1]["what"].startswith("rolled_back: ")
    assert "write_conflict" not in res.stderr and "rollback.reread" not in res.stderr, res.stderr


def test_the_controllers_end_beside_a_huge_annotation_lands_and_its_text_is_what_the_route_records(cluster: Any) -> None:
    """The controller's and the runner's path (`reconcile.execute`, `written`): the text it hands on (and guards its
    next writes on, `_confirm_end` compares) is the one the route records, cut; whole, it was refused (422)."""
    from canary import reconcile
    from canary.logs import get

    api, kc = cluster
    state = with_others(api, kc)
    before = record(api)[1]
    ended, actions = rl.transition(state, rl.Rollback(50.0, "operator: " + "\U0001F6A8" * 1024), POLICY)
    texts: list[str] = []
    reconcile.execute(IstioRouter(api_client(kubeconfig=str(kc))), TARGET, ended, actions, log=get(), expect=before,
                      written=texts.append)
    weights, text = record(api)
    assert weights == [100, 0] and texts == [text] and len(text) < len(ended.to_json())
    assert rl.carried(text, ended.to_json()) and not rl.carried(before, ended.to_json())
    assert rl.RolloutState.from_json(text).phase == rl.ROLLED_BACK


def test_a_record_fitted_to_any_budget_keeps_what_decisions_read_and_is_known_as_the_one_carried() -> None:
    """`fit` cuts a record to a budget under its own (what a stable-100% write's object leaves it: decision 563) in
    `to_json`'s order, and the reason shorter still where that is not enough; `carried` knows the cut text as the
    record a write carried, from the text alone, and no other record's."""
    history = tuple({"at": float(i), "what": "paused: " + "\U0001F6A8" * 400} for i in range(20))
    state = rl.RolloutState(model="m", stable_version="v1", canary_version="v2", phase=rl.ROLLED_BACK,
                            weights=Weights(100, 0), step=1, reason="operator: " + LONG, history=history,
                            last_verdict={"outcome": "fail", "reason": "\U0001F6A8" * 2000, "results": []})
    text, other = state.to_json(), replace(state, step=2).to_json()
    for budget in (60_000, 30_000, 8_000, 3_000):
        cut = rl.fit(text, budget)
        assert len(cut) <= budget and rl.carried(cut, text) and not rl.carried(rl.fit(other, budget), text)
        back = rl.RolloutState.from_json(cut)
        assert (back.phase, back.weights, back.step) == (rl.ROLLED_BACK, Weights(100, 0), 1)
        assert back.reason.startswith("operator: \U0001F6A8") and back.reason.endswith("…")
    assert rl.fit(text, len(text)) == text and rl.carried(text, text)


def test_a_retry_of_a_cut_stable_write_meets_its_own_text_not_another_writers(cluster: Any) -> None:
    """The stable-100% write's record landed cut (its answer lost, say) and the object was edited since (another
    tool's annotation, 5 KB shorter): its retry, guarded on the record before it, finds its own cut text there and
    writes again, fitted to the room now left (whole, here), instead of a RoutingConflict ("changed by someone
    else")."""
    api, kc = cluster
    state = with_others(api, kc)
    before = record(api)[1]
    ended, _ = rl.transition(state, rl.Rollback(50.0, "operator: " + LONG), POLICY)
    router = IstioRouter(api_client(kubeconfig=str(kc)))
    router.set_weights(TARGET, Weights(100, 0), state=ended.to_json(), expect_state=before)
    first = record(api)[1]
    api.edit(GROUP, "virtualservices", "ml", "rec-model", lambda vs: vs["metadata"]["annotations"].update(
        {"kubectl.kubernetes.io/last-applied-configuration": "{" + "x" * (OTHERS - 5_002) + "}"}))
    router.set_weights(TARGET, Weights(100, 0), state=ended.to_json(), expect_state=before)
    again = record(api)[1]
    assert len(first) < len(again) and rl.carried(first, ended.to_json())
    assert again == ended.to_json()  # the room now left takes it whole


def test_a_rollback_whose_shortest_record_has_no_room_says_which_annotation_takes_it(cluster: Any) -> None:
    """Decision 565: other annotations that leave the record less than its shortest form (the claim's small record
    landed, then a `kubectl apply` grew its last-applied-configuration to fill the object) still get the stable-100%
    write refused, traffic split, exit 6; the error said only "HTTP 422 ... metadata.annotations: Too long" (and the
    hint, an expired token). It names the annotation taking the room, its size and what is left, and how to free it."""
    api, kc = cluster
    state = rl.RolloutState(model="rec-model", stable_version="v1", canary_version="v2", phase=rl.PROGRESSING,
                            weights=Weights(80, 20), step=2, started_at=1.0, step_started_at=2.0)
    IstioRouter(api_client(kubeconfig=str(kc))).set_weights(TARGET, Weights(80, 20), state=state.to_json())
    key = "kubectl.kubernetes.io/last-applied-configuration"
    left = ANNOTATIONS_LIMIT - annotations_bytes(api) - len(key) - 20
    api.edit(GROUP, "virtualservices", "ml", "rec-model", lambda vs: vs["metadata"]["annotations"].update(
        {key: "x" * left}))
    res = canary("rollback", "rec-model", "-n", "ml", "--reason", "r" * 300, kubeconfig=kc)
    assert res.returncode == 6 and record(api)[0] == [80, 20], res.stderr
    error = res.stderr.splitlines()[-1]
    assert f"{key} alone {len(key) + left:,}" in error and "cut to its shortest form" in error, error
    assert f"kubectl annotate virtualservice rec-model -n ml {key}-" in error, error


def test_a_step_whose_record_has_no_room_is_not_sent_and_says_which_annotation_takes_it(cluster: Any) -> None:
    """Decision 565: a write towards the canary is never cut (563), and one whose record the object's other
    annotations leave no room for was refused with the 422's words alone; the rollout's failure (rolled back) then
    said nothing of the annotation. Now it is not sent, and says which annotation takes the room: nothing moved."""
    api, kc = cluster
    state = with_others(api, kc)
    key = "kubectl.kubernetes.io/last-applied-configuration"
    grown = rl.transition(state, rl.Pause(60.0, reason="\U0001F6A8" * 1024), POLICY)[0]
    with pytest.raises(TargetError) as refused:
        IstioRouter(api_client(kubeconfig=str(kc))).set_weights(TARGET, Weights(80, 20), state=grown.to_json(),
                                                                expect_state=record(api)[1])
    assert f"{key} alone {len(key) + OTHERS:,}" in str(refused.value) and "nothing moved (80/20" in str(refused.value)
    assert record(api)[1] == state.to_json()
