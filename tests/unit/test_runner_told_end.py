"""`canary promote` tells its end (`Runner.ended`: the webhooks and Slack) once it is on the route, before any
history write of it.

Before: `promote` queued its post after `Runner.run()` returned, which was after the end's history flushes and,
when they failed, their retries (7.5 s of waits against a ConfigMap API answering 500, each flush up to 3 × 5 s
of requests against one that hangs): on-call heard of the rollback late, and not at all when the job was killed
meanwhile. The order is asserted, never a duration (decision 720). And it is told
right after the stable-100% write, not after the end's Kubernetes Event (a hung Events API held it 3 s and more;
decision 723)."""

from __future__ import annotations

from typing import Any

from canary import rollout as rl
from canary.errors import KubeUnavailable
from canary.history_store import Recorder
from canary.model import STABLE_ONLY
from canary.runner import EXIT_ROLLED_BACK
from tests.unit.test_runner import POLICY, TARGET, make


class _FailingConfigMaps:
    """A history ConfigMap API whose every write answers 500 (the store's interface, as ConfigMapStore)."""

    def __init__(self, order: list[tuple[str, str]]) -> None:
        self.order = order

    def load(self, namespace: str, virtual_service: str, *, model: str = "") -> tuple[None, None]:
        return None, None

    def save(self, namespace: str, virtual_service: str, doc: dict[str, Any], resource_version: Any, *,
             model: str = "") -> str:
        self.order.append(("history", str(doc.get("phase"))))
        raise KubeUnavailable("500 Internal Server Error (etcd)")

    def append(self, namespace: str, virtual_service: str, key: str, part: dict[str, Any], resource_version: str,
               *, model: str = "") -> str:
        self.order.append(("history", "part"))
        raise KubeUnavailable("500 Internal Server Error (etcd)")


def test_a_rollbacks_end_is_told_before_its_failing_history_writes_and_once() -> None:
    order: list[tuple[str, str]] = []
    ctl, router, _, _ = make(slowdown=lambda t: 2.0 if t >= 1012 else 1.0)
    ctl.history = Recorder(_FailingConfigMaps(order), namespace=TARGET.namespace,  # type: ignore[arg-type]
                           virtual_service=TARGET.virtual_service, policy=POLICY, source="promote")
    told: list[rl.RolloutState] = []
    ctl.ended = lambda state: (told.append(state), order.append(("ended", state.phase)),
                               router.log.append(("ended", state.phase)))
    res = ctl.run()
    assert res.exit_code == EXIT_ROLLED_BACK and router.weights.canary == 0
    assert [s.phase for s in told] == [rl.ROLLED_BACK]  # once, though the loop and the retries saw it again
    i = order.index(("ended", rl.ROLLED_BACK))
    end_writes = [k for k, (what, phase) in enumerate(order) if what == "history" and phase == rl.ROLLED_BACK]
    assert len(end_writes) > 1 and i < end_writes[0], order  # every write of the end (and its retries) after it
    # and on the route: right after the stable-100% write, before the end's Kubernetes Event (decision 723)
    told_at = router.log.index(("ended", rl.ROLLED_BACK))
    assert router.log[told_at - 1] == ("weights", STABLE_ONLY), router.log
    assert router.log.index(("event", "RollbackCompleted"), told_at) > told_at, router.log


def test_an_end_told_by_a_callback_that_raises_still_ends_as_it_did() -> None:
    ctl, router, _, _ = make(slowdown=lambda t: 2.0 if t >= 1012 else 1.0)

    def broken(state: rl.RolloutState) -> None:
        raise RuntimeError("a notifier bug")

    ctl.ended = broken
    res = ctl.run()
    assert res.exit_code == EXIT_ROLLED_BACK and router.weights.canary == 0


def test_a_fail_safe_end_is_told_at_its_write_though_the_subset_pointing_after_it_fails() -> None:
    """The rollback's stable-100% write failed (a 503), the fail-safe (`to_stable`) wrote it, and the stable subset's
    pointing after that write met its DestinationRule deleted: `run` raises (exit 3, `rollback.failed`), but the end
    is on the route. It was never told: `_fail_safe` told it only once `to_stable` returned, and it raised. Now told
    as that write lands, as `_write`'s end is (decisions 723, 725)."""
    from canary.errors import NotFound, RollbackFailed

    ctl, router, _, _ = make(slowdown=lambda t: 2.0 if t >= 1012 else 1.0)
    told: list[str] = []
    ctl.ended = lambda state: (told.append(state.phase), router.log.append(("ended", state.phase)))
    set_weights, armed = router.set_weights, []

    def rollback_write_fails_once(target: Any, weights: Any, **kw: Any) -> Any:
        if weights == STABLE_ONLY and '"rolled_back"' in kw["state"] and not armed:
            armed.append(True)
            router.fail_writes = 1  # the rollback's own write: a 503, nothing written

            def rule_gone(*args: Any, **kw: Any) -> None:
                raise NotFound("destinationrules rec-model not found", what="ml/rec-model (destinationrules)")

            router.point_subset = rule_gone  # type: ignore[method-assign]
        return set_weights(target, weights, **kw)

    router.set_weights = rollback_write_fails_once  # type: ignore[method-assign]
    try:
        ctl.run()
    except RollbackFailed:
        pass
    else:
        raise AssertionError("the subset pointing failed: run raises")
    assert router.weights == STABLE_ONLY and armed
    assert told == [rl.ROLLED_BACK], router.log
    told_at = router.log.index(("ended", rl.ROLLED_BACK))
    assert router.log[told_at - 1] == ("weights", STABLE_ONLY), router.log


def test_a_run_whose_end_was_told_at_its_write_is_not_announced_again_as_unfinished() -> None:
    """`promote`'s RollbackFailed after the end was told at its stable-100% write (the subset pointing after it
    failed): the channel got "rollback, 100/0", then "aborted, weights unknown, stable 100% not confirmed" for the
    same end. Now the second post is made only where no end was told: stable 100% not sure."""
    from canary.cli import announce_failed
    from canary.errors import RollbackFailed

    class _Posts:
        def __init__(self) -> None:
            self.got: list[tuple[str, Any]] = []

        def notify(self, event: str, payload: Any) -> None:
            self.got.append((event, payload))

    ctl, _, _, _ = make()
    exc = RollbackFailed("the stable subset was not pointed: DestinationRule ml/rec-model is gone")
    told, untold = _Posts(), _Posts()
    ctl._told_end = True
    announce_failed(told, ctl, exc, namespace="ml", rollout="rec-model")
    ctl._told_end = False
    announce_failed(untold, ctl, exc, namespace="ml", rollout="rec-model")
    assert told.got == []
    assert [(e, p["weights"]) for e, p in untold.got] == [("aborted", None)], untold.got


def test_a_split_nobody_owned_that_promote_ends_before_its_claim_is_told_at_its_write() -> None:
    """An end typed over a split (`canary.unowned`) is ended by the next `canary promote` before it claims the route:
    stable 100%, recorded aborted, `rollout.split_unowned`. The controller's and the sweeps' ends of such a split are
    posted; promote's was not (its `ended` is its own rollout's end, once a run). Told now as its write lands, before
    its Event on the VirtualService, by `ended_other`, which `promote` posts as every end (decision 779)."""
    from canary.model import Weights

    ctl, router, _, _ = make()
    typed = rl.RolloutState(model="rec", stable_version="v1", canary_version="v0", phase=rl.PROMOTED,
                            weights=Weights(80, 20), started_at=900.0, updated_at=950.0)
    router.weights, router.state, router.subsets = Weights(80, 20), typed.to_json(), {"stable": "v1", "canary": "v0"}
    order: list[tuple[str, str]] = []
    ctl.ended = lambda state: order.append(("ended", state.phase))
    ctl.ended_other = lambda state: order.append(("told", state.phase))
    vs_event = router.record_event
    router.record_event = lambda target, **kw: (order.append(("vs-event", kw["reason"])), vs_event(target, **kw))[1]
    ctl._unowned_split(router.inspect(TARGET))
    assert router.weights == STABLE_ONLY and rl.RolloutState.from_json(router.state).phase == rl.ABORTED
    assert order[0] == ("told", rl.ABORTED) and ("vs-event", "RolloutAborted") in order, order
    assert [k for k, _ in order].count("told") == 1 and not ctl.told_end, order  # this run's own end is to come
