"""Which rollouts `canary sweep` and the controller's sweep end: nobody drives them (`canary.sweep`)."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest

from canary import rollout as rl
from canary.model import Weights
from canary.reconcile import promote_owner
from canary.sweep import ABANDON_GRACE_S, UNKNOWN_HEARTBEAT_S, OwnerUnknown, abandoned_after, scan, why_abandoned
from tests.fakes import FakeRouter

NOW = 1_000_000.0
PROMOTE = promote_owner("ci-runner-7:4026531836:4242:ab12")
CR = "CanaryRollout ml/r0#uid-1"


def _rec(owner: str = PROMOTE, *, age_s: float = 0.0, heartbeat_s: float = 60.0, phase: str = rl.PROGRESSING,
         weights: Weights = Weights(80, 20)) -> rl.RolloutState:
    return rl.RolloutState(model="m0", stable_version="v1", canary_version="v2", phase=phase, weights=weights,
                           step=0, owner=owner, heartbeat_s=heartbeat_s, started_at=NOW - 3600,
                           updated_at=NOW - age_s)


def _never(owner: str) -> bool:
    raise AssertionError(f"asked about {owner}")


def test_a_promote_is_abandoned_only_after_three_of_its_looks_and_the_grace_seen_unchanged() -> None:
    limit = abandoned_after(_rec())
    assert limit == 3 * 60 + ABANDON_GRACE_S == 300
    assert why_abandoned(_rec(), limit, _never) is None
    why = why_abandoned(_rec(), limit + 1, _never)
    assert why is not None and why.startswith("abandoned: run by `canary promote` (ci-runner-7:")
    assert "has not written this rollout for 301s" in why and "60s apart" in why and "process is gone" in why


def test_only_the_sweepers_own_observation_counts_never_the_records_clock() -> None:
    """A record stamped a day ago (its writer on Prometheus's clock, 300 s or a day behind) but seen
    for the first time now, or seen unchanged for a minute, is not abandoned."""
    old = _rec(age_s=86400)
    assert why_abandoned(old, None, _never) is None
    assert why_abandoned(old, 60.0, _never) is None


def test_the_owners_own_look_interval_sets_the_limit() -> None:
    """A promote looking every 5 minutes is not abandoned after 6; one looking every second is after 3."""
    assert why_abandoned(_rec(heartbeat_s=300.0), 360.0, _never) is None
    assert why_abandoned(_rec(heartbeat_s=1.0), 130.0, _never) is not None


def test_a_promote_record_without_a_heartbeat_gets_a_long_one() -> None:
    rec = _rec(heartbeat_s=0.0)
    assert why_abandoned(rec, 3 * UNKNOWN_HEARTBEAT_S + ABANDON_GRACE_S - 1, _never) is None
    why = why_abandoned(rec, 3 * UNKNOWN_HEARTBEAT_S + ABANDON_GRACE_S + 1, _never)
    assert why is not None and "its look interval was not recorded" in why


@pytest.mark.parametrize("phase", [rl.PAUSED, rl.PENDING, rl.PROMOTED, rl.ROLLED_BACK, rl.ABORTED])
def test_paused_pending_and_ended_rollouts_are_left_alone(phase: str) -> None:
    """Paused: a person holds the split on purpose. Pending: stable still has 100%. Ended: nothing to do."""
    assert why_abandoned(_rec(phase=phase), 10**6, lambda owner: True) is None
    assert why_abandoned(_rec(CR, phase=phase), None, lambda owner: True) is None


@pytest.mark.parametrize("phase", [rl.PROGRESSING, rl.PROMOTING])
def test_a_split_or_a_promotion_half_done_is_found(phase: str) -> None:
    rec = _rec(phase=phase, weights=Weights(0, 100) if phase == rl.PROMOTING else Weights(80, 20))
    assert why_abandoned(rec, 10**4, _never) is not None


def test_a_canaryrollouts_rollout_is_ended_only_when_the_api_says_it_is_gone() -> None:
    asked: list[str] = []

    def gone(answer: bool) -> Any:
        return lambda owner: asked.append(owner) or answer

    mine = _rec(CR)  # the controller's records are not timed: it may be down, and its CR says it runs
    assert why_abandoned(mine, None, gone(False)) is None
    why = why_abandoned(mine, None, gone(True))
    assert why is not None and why.startswith("orphaned: CanaryRollout ml/r0 no longer exists") and "#uid" not in why
    assert asked == [CR, CR]


def test_a_record_with_no_owner_is_left_alone() -> None:
    """Written by a version that did not record owners: nothing tells whether something runs it."""
    assert why_abandoned(_rec(""), 10**6, lambda owner: True) is None


def _vs(name: str, rec: rl.RolloutState | str | None, ns: str = "ml") -> dict[str, Any]:
    ann = {} if rec is None else {"modelcanary.dev/rollout": rec if isinstance(rec, str) else rec.to_json()}
    return {"metadata": {"namespace": ns, "name": name, "annotations": ann}, "spec": {}}


def _quiet(s: float | None) -> Any:
    return lambda vs, key, text: s


def test_scan_sorts_what_it_finds_and_asks_the_clock_only_of_a_promotes_rollout_in_progress() -> None:
    asked: list[str] = []

    def quiet(vs: Any, key: str, text: str) -> float:
        asked.append(key)
        return 10**4

    def gone(owner: str) -> bool:
        if owner.endswith("#unreadable"):
            raise OwnerUnknown("CanaryRollout ml/x could not be read: 403 Forbidden")
        return owner.endswith("#gone")

    vss = [_vs("a", _rec()), _vs("b", _rec(phase=rl.PAUSED)), _vs("c", None), _vs("d", "{not json"),
           _vs("e", json.dumps({"x": 1})), _vs("f", _rec(), ns="other"), _vs("g", _rec("CanaryRollout ml/x#gone")),
           _vs("h", _rec("CanaryRollout ml/x#here")), _vs("i", _rec("CanaryRollout ml/x#unreadable"))]
    found = scan(vss, quiet, gone)
    assert asked == ["ml/a", "other/f"]
    assert [(f.key, f.reason.split(":")[0]) for f in found.abandoned] == [
        ("ml/a", "abandoned"), ("other/f", "abandoned"), ("ml/g", "orphaned")]
    assert found.abandoned[0].text == _rec().to_json(), "the write must be guarded on the record as read"
    assert [(f.key, f.unknown.split(":")[0]) for f in found.unknown] == [("ml/i", "CanaryRollout ml/x could not be read")]
    assert scan(vss, _quiet(None), gone).watching[0].key == "ml/a"
    assert [f.key for f in scan(vss, quiet, gone, owns=lambda key: key.startswith("other/")).abandoned] == ["other/f"]


def test_the_target_is_the_recorded_route_and_destination_rule() -> None:
    rec = replace(_rec(), route="primary", destination_rule="m0-dr")
    t = scan([_vs("m0", rec)], _quiet(10**4), _never).abandoned[0].target()
    assert (t.namespace, t.virtual_service, t.route, t.dr_name, t.stable_version, t.canary_version) == \
        ("ml", "m0", "primary", "m0-dr", "v1", "v2")
    legacy = scan([_vs("m0", _rec())], _quiet(10**4), _never).abandoned[0].target()
    assert legacy.dr_name == "m0", "a record without its DestinationRule: the VirtualService's name"


class _ApiError(Exception):
    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"({status})")
        self.status, self.body = status, body


class _Custom:
    def __init__(self, exc: Exception | None = None, obj: dict[str, Any] | None = None) -> None:
        self.exc, self.obj = exc, obj

    def get_namespaced_custom_object(self, *a: Any, **kw: Any) -> Any:
        if self.exc is not None:
            raise self.exc
        return self.obj


def test_a_canaryrollout_is_gone_only_when_the_api_says_that_object_is() -> None:
    """A 404 for the object (its Status names it) is gone; a 404 for the API itself (a CRD version the
    server does not serve: "the server could not find the requested resource") is not known, never
    gone (it would end every live CanaryRollout's rollout); nor is a 403 or a 500."""
    from canary.sweep import crd_gone

    gone = json.dumps({"kind": "Status", "code": 404, "message": 'canaryrollouts.modelcanary.dev "r0" not found',
                       "details": {"name": "r0", "kind": "canaryrollouts"}})
    unserved = json.dumps({"kind": "Status", "code": 404, "message": "the server could not find the requested resource",
                           "details": {}})
    assert crd_gone(_Custom(_ApiError(404, gone)), CR) is True
    assert crd_gone(_Custom(obj={"metadata": {"uid": "uid-1"}}), CR) is False
    assert crd_gone(_Custom(obj={"metadata": {"uid": "uid-2"}}), CR) is True  # the name created again
    for exc in (_ApiError(404, unserved), _ApiError(404, "404 page not found"), _ApiError(403, "{}"),
                _ApiError(500, "{}"), TimeoutError("read timed out")):
        with pytest.raises(OwnerUnknown, match="CanaryRollout ml/r0 could not be read"):
            crd_gone(_Custom(exc), CR)


class _Noted:
    """A notifier (`notify` queues and returns) noting each post into `order`."""

    def __init__(self, order: list[tuple[str, str]]) -> None:
        self.order = order

    def notify(self, event: str, payload: Any) -> None:
        self.order.append(("notify", event))


def test_the_sweeps_end_is_posted_at_its_write_before_its_event_and_once() -> None:
    """The sweep's end (`canary sweep`, the controller's sweep, an orphan's claimant) was posted after `execute`
    returned: after its Event on the VirtualService and the glances after the write (3 s each against an API that
    hangs), where promote's and the controller's ends are posted as the write lands (decision 723). Posted at its
    write now, once; `rollout.abandoned` and the count after it, as before (decision 735, addendum). The same where
    the stable subset's pointing after the write fails (735): posted at the write, not again by `rollout.abandoned`."""
    import structlog

    from canary import sweep
    from canary.errors import NotFound, RollbackFailed
    from tests.fakes import FakeRouter

    for rule in ("there", "deleted"):
        order: list[tuple[str, str]] = []
        state = _rec(age_s=600.0)
        router = FakeRouter(weights=Weights(80, 20), state=state.to_json(), subsets={"stable": "v1", "canary": "v2"})
        router.record_event = lambda target, **kw: order.append(("vs-event", kw["reason"])) or True  # type: ignore
        if rule == "deleted":
            def deleted(*args: Any, **kw: Any) -> None:
                order.append(("subset", "refused"))
                raise NotFound('destinationrules.networking.istio.io "m0" not found')
            router.point_subset = deleted  # type: ignore[method-assign]
        found = sweep.Found("ml", "m0", state, state.to_json(), quiet_s=600.0)
        try:
            sweep.end(router, found, log=structlog.get_logger(), now=NOW, notifier=_Noted(order),
                      counted=lambda end: order.append(("counted", end.phase)))
        except RollbackFailed:
            assert rule == "deleted"
        assert router.weights == Weights(100, 0), rule
        after = ("vs-event", "RolloutAborted") if rule == "there" else ("subset", "refused")
        assert order.index(("notify", "aborted")) < order.index(after), (rule, order)
        assert [k for k, _ in order].count("notify") == 1 and order[-1] == ("counted", rl.ABORTED), (rule, order)


def test_the_sweeps_end_of_a_split_nobody_owns_is_posted_at_its_write_once() -> None:
    """`end_unowned` (an end typed over a split, `canary.unowned`) posted after its write returned: after its Event on
    the VirtualService and the glances after the write, where the sweep's other ends, promote's and the controller's
    are posted as the stable-100% write lands (decisions 723, 735). Posted at its write now, once, then counted."""
    import structlog

    from canary import sweep
    from tests.fakes import FakeRouter

    order: list[tuple[str, str]] = []
    state = _rec(phase=rl.ROLLED_BACK, weights=Weights(80, 20))  # typed by hand over the split
    router = FakeRouter(weights=Weights(80, 20), state=state.to_json(), subsets={"stable": "v1", "canary": "v2"})
    router.record_event = lambda target, **kw: order.append(("vs-event", kw["reason"])) or True  # type: ignore
    found = sweep.Found("ml", "m0", state, state.to_json(), quiet_s=600.0)
    assert sweep.end_unowned(router, found, log=structlog.get_logger(), now=NOW, notifier=_Noted(order),
                             counted=lambda end: order.append(("counted", end.phase))) == "ended"
    assert router.weights == Weights(100, 0)
    assert order.index(("notify", "aborted")) < order.index(("vs-event", "RolloutAborted")), order
    assert [k for k, _ in order].count("notify") == 1 and order[-1] == ("counted", rl.ABORTED), order


def test_the_sweeps_ends_are_posted_as_the_one_mapping_says() -> None:
    """The sweep mapped its ends to posts itself ("promotion", else "aborted"), beside the one mapping promote and the
    controller share (`notify_body.end_events`, decision 739): an abandoned rollout whose last verdict failed a
    prediction-shift check (its promote killed before it acted on it) was posted "aborted" alone, where the
    controller posts "prediction_shift" beside it for a retraining pipeline. One mapping now (decision 775)."""
    import structlog

    from canary import sweep
    from tests.fakes import FakeRouter

    shift = {"name": "predictions", "kind": "prediction_shift", "outcome": "fail", "reason": "psi 0.4"}
    raw = json.loads(_rec(age_s=600.0).to_json())
    raw["last_verdict"] = {"results": [shift]}
    state = rl.RolloutState.from_json(json.dumps(raw))
    order: list[tuple[str, str]] = []
    router = FakeRouter(weights=Weights(80, 20), state=state.to_json(), subsets={"stable": "v1", "canary": "v2"})
    sweep.end(router, sweep.Found("ml", "m0", state, state.to_json(), quiet_s=600.0), log=structlog.get_logger(),
              now=NOW, notifier=_Noted(order))
    assert [e for k, e in order if k == "notify"] == ["aborted", "prediction_shift"], order


def test_the_sweeps_end_of_a_split_nobody_owns_whose_rule_is_gone_is_counted() -> None:
    """`end_unowned`'s end landed (stable 100%, recorded aborted; posted at its write) and the stable subset's pointing
    after it failed (its DestinationRule deleted: RollbackFailed, paged by the executor): counted only on return, so
    `canary_rollbacks_total` never had it, and the next sweep finds the route ended. Counted as it raises now, as
    `sweep.end`'s ends are (decision 735's rule; 777)."""
    import structlog

    from canary import sweep
    from canary.errors import NotFound, RollbackFailed
    from tests.fakes import FakeRouter

    def deleted(*args: Any, **kw: Any) -> None:
        raise NotFound('destinationrules.networking.istio.io "m0" not found')

    order: list[tuple[str, str]] = []
    state = _rec(phase=rl.ROLLED_BACK, weights=Weights(80, 20))
    router = FakeRouter(weights=Weights(80, 20), state=state.to_json(), subsets={"stable": "v1", "canary": "v2"})
    router.point_subset = deleted  # type: ignore[method-assign]
    with pytest.raises(RollbackFailed):
        sweep.end_unowned(router, sweep.Found("ml", "m0", state, state.to_json(), quiet_s=600.0),
                          log=structlog.get_logger(), now=NOW, notifier=_Noted(order),
                          counted=lambda end: order.append(("counted", end.phase)))
    assert router.weights == Weights(100, 0)
    assert order == [("notify", "aborted"), ("counted", rl.ABORTED)], order


class _History:
    """A history ConfigMap store (`history_store.ConfigMapStore`'s `load`/`save`) holding `doc` (None: no history)."""

    def __init__(self, doc: dict[str, Any] | None) -> None:
        self.doc, self.saved = doc, []  # type: ignore[var-annotated]

    def load(self, namespace: str, virtual_service: str, *, model: str = "") -> tuple[Any, Any]:
        return (self.doc, "7") if self.doc is not None else (None, None)

    def save(self, namespace: str, virtual_service: str, doc: dict[str, Any], resource_version: Any, *,
             model: str = "") -> str:
        assert resource_version == "7" and model == "m0"
        self.saved.append(doc)
        self.doc = doc
        return "8"


def _history_of(state: rl.RolloutState) -> dict[str, Any]:
    """`state`'s rollout's history as its runner left it: progressing at its first step."""
    from canary import history as hist

    doc = hist.new_doc(rollout={"model": "m0", "namespace": "ml", "virtual_service": "m0", "route": "",
                                "stable_version": state.stable_version, "canary_version": state.canary_version,
                                "started_at": state.started_at, "source": "promote", "name": ""},
                       policy={"steps": [20, 50, 100], "checks": []})
    return {**doc, "phase": rl.PROGRESSING, "weights": [[state.started_at, 20]]}


def _put_history(core: Any, state: rl.RolloutState) -> None:
    """The history ConfigMap of `state`'s rollout (m0's, in ml), created through the API emulator's client `core`."""
    from canary import history as hist

    core.create_namespaced_config_map("ml", {"metadata": {"name": "m0-canary-history", "namespace": "ml"},
                                             "data": {"history.json": hist.dumps(_history_of(state))}})


@pytest.mark.parametrize("kind", ["abandoned", "split nobody owns"])
def test_the_sweeps_ends_are_in_the_rollouts_history(kind: str) -> None:
    """The sweeps' ends (an abandoned rollout sent to stable, a split nobody owns under an ended record) were posted
    and counted, and the rollout's history ConfigMap still said `progressing` at 20%: `canary report` showed the
    rollout running (decision 811). Its end is added to the history that holds that rollout, with its line's event."""
    import structlog

    from canary import sweep

    phase = rl.PROGRESSING if kind == "abandoned" else rl.ROLLED_BACK
    state = _rec(phase=phase, age_s=3600, weights=Weights(80, 20))
    router = FakeRouter(weights=Weights(80, 20), state=state.to_json(), subsets={"stable": "v1", "canary": "v2"})
    store = _History(_history_of(state))
    found = sweep.Found("ml", "m0", state, state.to_json(), quiet_s=600.0, reason="abandoned: its owner is gone")
    if kind == "abandoned":
        sweep.end(router, found, log=structlog.get_logger(), now=NOW, history=store)
    else:
        assert sweep.end_unowned(router, found, log=structlog.get_logger(), now=NOW, history=store) == "ended"
    assert router.weights == Weights(100, 0) and len(store.saved) == 1, store.saved
    doc = store.saved[0]
    assert doc["phase"] == rl.ABORTED and doc["weights"][-1][1] == 0 and doc["end_cause"], doc
    events = [e["event"] for e in doc["events"]]
    assert ("rollout.abandoned" if kind == "abandoned" else "rollout.split_unowned") in events, events
    assert doc["policy"] == {"steps": [20, 50, 100], "checks": []}  # the rollout's own, kept


def test_a_sweeps_end_with_no_history_of_its_rollout_writes_none_and_says_so() -> None:
    """Where the ConfigMap holds no history of the ended rollout (none written, a later rollout's), nothing is made up
    (a document with no policy, over another rollout's): one `history.end_unwritten` naming the model and the end."""
    import structlog

    from canary import sweep

    state = _rec(age_s=3600)
    later = _history_of(replace(state, canary_version="v9"))
    for doc in (None, later):
        router = FakeRouter(weights=Weights(80, 20), state=state.to_json(), subsets={"stable": "v1", "canary": "v2"})
        store = _History(doc)
        with structlog.testing.capture_logs() as logs:
            sweep.end(router, sweep.Found("ml", "m0", state, state.to_json(), quiet_s=600.0, reason="abandoned: gone"),
                      log=structlog.get_logger(), now=NOW, history=store)
        assert router.weights == Weights(100, 0) and not store.saved
        said = [e for e in logs if e["event"] == "history.end_unwritten"]
        assert len(said) == 1 and said[0]["model"] == "m0" and said[0]["phase"] == rl.ABORTED, said


def test_a_split_nobody_owns_whose_rule_went_as_its_end_landed_still_says_split_unowned_and_is_in_the_history() -> None:
    """`unowned.end`'s stable 100% recorded aborted landed and the stable subset's pointing after it failed (its
    DestinationRule deleted: RollbackFailed, paged): its `rollout.split_unowned` line, the one that says whose split
    it was and why it went to stable, was not said (777 left it), nor was the end in the history. Both are now."""
    import structlog

    from canary import sweep
    from canary.errors import NotFound, RollbackFailed

    def deleted(*args: Any, **kw: Any) -> None:
        raise NotFound('destinationrules.networking.istio.io "m0" not found')

    state = _rec(phase=rl.ROLLED_BACK, weights=Weights(80, 20))
    router = FakeRouter(weights=Weights(80, 20), state=state.to_json(), subsets={"stable": "v1", "canary": "v2"})
    router.point_subset = deleted  # type: ignore[method-assign]
    store = _History(_history_of(state))
    with structlog.testing.capture_logs() as logs, pytest.raises(RollbackFailed):
        sweep.end_unowned(router, sweep.Found("ml", "m0", state, state.to_json(), quiet_s=600.0),
                          log=structlog.get_logger(), now=NOW, history=store)
    said = [e for e in logs if e["event"] == "rollout.split_unowned"]
    assert len(said) == 1 and said[0]["model"] == "m0" and said[0]["by"] == "sweep", said
    assert said[0]["log_level"] == "warning" and "could not be pointed at v1" in said[0]["done"], said
    assert "DestinationRule" in said[0]["error"] or "not found" in said[0]["error"], said
    assert len(store.saved) == 1 and store.saved[0]["phase"] == rl.ABORTED


@pytest.mark.parametrize("code", [403, 401])
def test_a_sweeps_end_whose_history_read_is_refused_says_the_write_failed_not_that_there_is_no_history(
        code: int) -> None:
    """The sweep CronJob's Role of before decision 811 (no configmaps), or credentials refused: the history's read is
    refused (the API server's 403/401, which `translate` makes a ConfigError, as it makes an unreadable history).
    `record_end` took that as "no history of this rollout" and said `history.end_unwritten` "none written, or a later
    rollout's": on-call looked for a history that is there, and docs/deploy.md promises `history.write_failed`
    (decision 851). The real store against the API emulator, the rollout's history in it."""
    import kubernetes.client as kc
    import structlog

    from canary import history_store
    from tests import fleet

    state = _rec(phase=rl.ABORTED, weights=Weights(100, 0))
    api = fleet.start_api(1)
    try:
        core = kc.CoreV1Api(api.api_client())
        _put_history(core, state)
        api.fail_next(code, times=3, methods=("GET",), plural="configmaps")
        with structlog.testing.capture_logs() as logs:
            out = history_store.record_end(history_store.ConfigMapStore(core), state, namespace="ml",
                                           virtual_service="m0", events=[("rollout.abandoned", state.reason)],
                                           by="sweep", log=structlog.get_logger())
    finally:
        api.stop()
    assert out == "failed", logs
    assert not [e for e in logs if e["event"] == "history.end_unwritten"], logs
    [said] = [e for e in logs if e["event"] == "history.write_failed"]
    assert said["model"] == "m0" and said["by"] == "sweep" and str(code) in said["error"], said


def test_a_sweeps_end_of_a_split_under_an_unreadable_record_says_why_its_history_is_not_told() -> None:
    """A split under an unreadable record (garbage typed over it) ended by the sweep: which rollout it ended cannot be
    read, so no history is matched (the end stands in, started now). Its `history.end_unwritten` said "none written,
    or a later rollout's" while the ConfigMap held the history of the very rollout whose record was garbled, still
    `progressing` (decision 853): it says the record was unreadable now, and that `canary report` still shows that
    rollout as it last was."""
    import structlog

    from canary import sweep

    state = _rec(weights=Weights(80, 20))
    router = FakeRouter(weights=Weights(80, 20), state="{not json", subsets={"stable": "v1", "canary": "v2"})
    store = _History(_history_of(state))
    found = sweep.Found("ml", "m0", sweep._stand_in("m0"), "{not json", quiet_s=600.0,
                        unreadable="JSONDecodeError: Expecting property name")
    with structlog.testing.capture_logs() as logs:
        assert sweep.end_unowned(router, found, log=structlog.get_logger(), now=NOW, history=store) == "ended"
    assert router.weights == Weights(100, 0) and not store.saved
    [said] = [e for e in logs if e["event"] == "history.end_unwritten"]
    assert "unreadable" in said["note"] and "later rollout" not in said["note"], said
    assert said["model"] == "m0" and said["by"] == "sweep", said


def test_a_sweeps_end_and_a_write_between_its_read_and_its_write_both_stay_in_the_history() -> None:
    """`record_end` reads the history, and another writer (the rollout's own recorder appending a part) writes before
    its PUT: the PUT guarded on the version read is refused (409, the API emulator's), read again and written with
    both; neither write is lost (decision 811's guard, checked against the real store)."""
    import kubernetes.client as kc
    import structlog

    from canary import history as hist
    from canary import history_store
    from tests import fleet

    state = _rec(phase=rl.ABORTED, weights=Weights(100, 0))
    api = fleet.start_api(1)
    try:
        core = kc.CoreV1Api(api.api_client())
        _put_history(core, state)
        store = history_store.ConfigMapStore(core)
        load, raced, reads = store.load, [], []  # type: ignore[var-annotated]

        def load_then_another_writes(*args: Any, **kw: Any) -> Any:
            doc, rv = load(*args, **kw)
            reads.append(rv)
            if not raced:  # the rollout's recorder appends its gate between this read and the end's write
                raced.append(rv)
                part = {**_history_of(state), "gates": [hist.gate_record(at=NOW - 10, stage="probe", outcome="failed")]}
                store.append("ml", "m0", "part-1-1.json", part, rv, model="m0")
            return doc, rv
        store.load = load_then_another_writes  # type: ignore[method-assign]
        out = history_store.record_end(store, state, namespace="ml", virtual_service="m0",
                                       events=[("rollout.abandoned", "gone")], by="sweep", log=structlog.get_logger())
        doc, _ = load("ml", "m0", model="m0")
    finally:
        api.stop()
    assert out == "written" and raced and len(reads) == 2, reads  # refused once (409), read again
    assert doc["phase"] == rl.ABORTED and "rollout.abandoned" in [e["event"] for e in doc["events"]], doc
    assert [g["stage"] for g in doc["gates"]] == ["probe"], doc["gates"]  # the other write kept
