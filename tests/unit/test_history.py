"""The rollout history behind `canary report`: what a rollout records, the bounds, merging,
reading back, and that recording never changes a rollout's outcome (fake clock, fake cluster)."""

from __future__ import annotations

import copy
import json
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from canary import history as hist
from canary import rollout as rl
from canary.errors import ConfigError, KubeUnavailable
from canary.history_store import KEY, Recorder, _Conflict, _Denied, _Gone, _TooBig, configmap_name, read
from canary.runner import Runner
from tests.fakes import FakeClock, FakeMetrics, FakeRouter
from tests.unit.test_runner import POLICY, TARGET


class MemoryStore:
    """The ConfigMapStore's three methods over a ConfigMap's data, with resourceVersion preconditions
    and the API server's size limit; reads merge the parts as the real store does (`history_store.read`)."""

    def __init__(self, limit: int = 1_048_576) -> None:
        self.data: dict[str, str] | None = None
        self.rv, self.limit = 0, limit
        self.saves = self.appends = self.loads = self.attempts = 0
        self.fail_next: list[Exception] = []

    @property
    def doc(self) -> dict[str, Any] | None:
        return read(self.data, where="test") if self.data else None

    def load(self, namespace: str, vs: str, *, model: str = "") -> tuple[dict[str, Any] | None, str | None]:
        self.loads += 1
        return (read(self.data, where="test"), str(self.rv)) if self.data else (None, None)

    def save(self, namespace: str, vs: str, doc: dict[str, Any], rv: str | None, *, model: str = "") -> str:
        if self.fail_next:
            raise self.fail_next.pop(0)
        if (str(self.rv) if self.data else None) != rv:
            raise _Conflict()
        self.data = {KEY: hist.dumps(doc)}  # a PUT: the parts are gone
        self.rv += 1
        self.saves += 1
        return str(self.rv)

    def append(self, namespace: str, vs: str, key: str, part: dict[str, Any], rv: str, *, model: str = "") -> str:
        self.attempts += 1
        if self.fail_next:
            raise self.fail_next.pop(0)
        if self.data is None:
            raise _Gone()
        if str(self.rv) != rv:
            raise _Conflict()
        data = {**self.data, key: hist.dumps(part)}
        if sum(len(v.encode()) for v in data.values()) > self.limit:
            raise _TooBig()
        self.data = data
        self.rv += 1
        self.appends += 1
        return str(self.rv)

    def foreign_write(self, data: dict[str, str]) -> None:
        """Someone else's write (another leader, another rollout, a person): a new resourceVersion."""
        self.data = data
        self.rv += 1


def run_rollout(*, slow: bool = False, store: MemoryStore | None = None, factor: float = 2.0) -> tuple[Any, MemoryStore]:
    """`slow`: the canary's latency `factor` times the stable's from t=1012 (100: its p95 past the fakes' last
    finite bucket bound, 1020 ms, in the open +Inf bucket)."""
    store = store or MemoryStore()
    clock, router = FakeClock(), FakeRouter()
    metrics = FakeMetrics(router, clock, **({"slowdown": lambda t: factor if t >= 1012 else 1.0} if slow else {}))
    rec = Recorder(store, namespace="ml", virtual_service="rec", policy=POLICY, source="promote")  # type: ignore[arg-type]
    res = Runner(policy=POLICY, target=TARGET, router=router, metrics=metrics, clock=clock, history=rec).run()
    return res, store


def fake_rollout(*, slow: bool = False, factor: float = 2.0) -> dict[str, Any]:
    """A whole rollout's history, driven by the real runner on a fake clock (also for the browser tests)."""
    _, store = run_rollout(slow=slow, factor=factor)
    assert store.doc is not None
    return store.doc


def test_a_promotion_records_every_look_with_both_arms_and_the_weights() -> None:
    res, store = run_rollout()
    doc = store.doc
    assert res.exit_code == 0 and doc is not None and doc["phase"] == rl.PROMOTED
    assert [lk["n"] for lk in doc["looks"]] == list(range(1, res.state.look + 1))  # every look, in order
    assert [p[1] for p in doc["weights"]] == [0, 10, 50, 100, 0]
    assert {lk["step"]: lk["w"] for lk in doc["looks"]} == {1: 10, 2: 50}  # the step each look judged
    lat = doc["looks"][-1]["c"]["lat"]
    assert lat["o"] == "pass" and lat["sv"] > 0 and lat["cv"] > 0 and lat["p"] is not None and lat["n"][1] > 0
    events = [e["event"] for e in doc["events"]]
    assert events == ["rollout.started", "step.advanced", "step.advanced", "rollout.promoting", "rollout.promoted"]
    assert doc["policy"]["checks"][0] == {"name": "lat", "kind": "latency", "hard": False,
                                          "limits": {"max_increase_pct": 20.0, "quantile": 0.95}}
    assert hist.parse(hist.dumps(doc), where="x") == doc


def test_a_canary_off_the_buckets_is_recorded_as_a_bound_not_a_value() -> None:
    """A canary whose p95 is in the open +Inf bucket has only a lower bound (the last finite bound, 1020 ms) for
    its value and its increase (`CheckResult.bounded`, decision 340); the look record kept `cv` and `e` as values,
    so the report printed the bound as the p95. Now "b" names them; a look of values has no "b"."""
    res, store = run_rollout(slow=True, factor=100.0)
    doc = store.doc
    assert res.exit_code == 1 and doc is not None and doc["phase"] == rl.ROLLED_BACK
    off = [lk for lk in doc["looks"] if lk["o"] == "fail"]
    assert len(off) == 2 and all(lk["c"]["lat"]["b"] == {"cv": ">", "e": ">"} for lk in off), off
    assert all(lk["c"]["lat"]["cv"] == 1020.0 for lk in off)  # the number stays: the bound
    assert [name for lk in doc["looks"] for name, rec in lk["c"].items() if "b" in rec] == ["lat", "lat"]
    assert hist.parse(hist.dumps(doc), where="x") == doc


@pytest.mark.parametrize("bounded, b", [
    ({"stable_value": ">", "effect_size": "<"}, {"sv": ">", "e": "<"}),
    ({"canary_value": ">"}, {}),  # no canary number recorded (NaN): nothing is a bound of it
    ({"canary_value": "?", "p_value": ">"}, {}),  # not a side, not a value the record keeps
    ({}, None), (None, None),  # every number a value; a result written before `bounded`
])
def test_the_record_names_only_recorded_numbers_as_bounds(bounded: Any, b: Any) -> None:
    rec = hist.check_record({"outcome": "fail", "stable_value": 300.0, "canary_value": None, "effect_size": -68.3,
                             **({"bounded": bounded} if bounded is not None else {})})
    assert rec.get("b") == (b or None), rec


def test_a_rollback_keeps_the_failed_looks_evidence() -> None:
    res, store = run_rollout(slow=True)
    doc = store.doc
    assert res.exit_code == 1 and doc is not None and doc["phase"] == rl.ROLLED_BACK
    failed = [lk for lk in doc["looks"] if lk["o"] == "fail"]
    assert len(failed) == POLICY.failure.max_failed_looks
    assert failed[-1]["c"]["lat"]["cv"] > 1.2 * failed[-1]["c"]["lat"]["sv"] and "limit +20%" in failed[-1]["r"]
    assert doc["reason"] == res.state.reason and doc["weights"][-1][1] == 0


def test_recording_never_changes_the_outcome_nor_fails_the_rollout() -> None:
    store = MemoryStore()
    store.fail_next = [KubeUnavailable("ConfigMap: 503")] * 3 + [_Conflict()]
    res, _ = run_rollout(slow=True, store=store)
    plain = Runner(policy=POLICY, target=TARGET, router=(r := FakeRouter()),
                   metrics=FakeMetrics(r, (c := FakeClock()), slowdown=lambda t: 2.0 if t >= 1012 else 1.0),
                   clock=c).run()
    assert (res.exit_code, res.state.phase, res.state.look) == (plain.exit_code, plain.state.phase, plain.state.look)
    # what the failed writes held was kept and written by a later flush
    assert store.doc is not None and [lk["n"] for lk in store.doc["looks"]] == list(range(1, res.state.look + 1))


def test_a_restarted_process_continues_the_same_history() -> None:
    store = MemoryStore()
    clock, router = FakeClock(), FakeRouter()
    first = Runner(policy=POLICY, target=TARGET, router=router, metrics=FakeMetrics(router, clock), clock=clock,
                   history=Recorder(store, namespace="ml", virtual_service="rec", policy=POLICY,  # type: ignore[arg-type]
                                    source="promote"), on_interrupt="pause")
    first.on_update = lambda s: first.stop.set() if s.look >= 3 else None
    assert first.run().state.phase == rl.PAUSED
    second = Runner(policy=POLICY, target=TARGET, router=router, metrics=FakeMetrics(router, clock), clock=clock,
                    history=Recorder(store, namespace="ml", virtual_service="rec", policy=POLICY,  # type: ignore[arg-type]
                                     source="promote"))
    res = second.run()
    assert res.state.phase == rl.PROMOTED and store.doc is not None
    assert [lk["n"] for lk in store.doc["looks"]] == list(range(1, res.state.look + 1))
    assert {"rollout.paused", "rollout.resumed", "rollout.promoted"} <= {e["event"] for e in store.doc["events"]}


def test_a_new_rollout_replaces_the_previous_history() -> None:
    store = MemoryStore()
    run_rollout(store=store)
    old = store.doc
    clock, router = FakeClock(start=5_000.0), FakeRouter()
    router.subsets = {"stable": "v2", "canary": "v2"}
    target = TARGET.__class__(**{**TARGET.__dict__, "canary_version": "v3"})
    Runner(policy=POLICY, target=target, router=router, metrics=FakeMetrics(router, clock), clock=clock,
           history=Recorder(store, namespace="ml", virtual_service="rec", policy=POLICY,  # type: ignore[arg-type]
                            source="promote")).run()
    assert old is not None and store.doc is not None
    assert store.doc["rollout"]["canary_version"] == "v3" and store.doc["rollout"]["stable_version"] == "v2"
    assert store.doc["looks"][0]["at"] >= 5_000.0


def _look(n: int, step: int, outcome: str = "pass", reason_len: int = 50) -> dict[str, Any]:
    return {"n": n, "at": 1000.0 + n, "step": step, "w": 10 * step, "o": outcome, "r": "x" * reason_len, "cn": 1.0,
            "c": {"lat": {"o": outcome, "sv": 1.0, "cv": 1.0, "r": "y" * reason_len}}}


def test_the_history_is_bounded_and_keeps_what_explains_the_outcome() -> None:
    looks = [_look(n, 1 + n // 400, "fail" if n in (77, 901) else "pass") for n in range(1, 1201)]
    doc = hist.merge(hist.new_doc(rollout={"model": "m", "canary_version": "v2", "stable_version": "v1",
                                           "started_at": 1000.0}, policy={"steps": [10, 20, 30, 100], "checks": []}),
                     looks=looks)
    kept = {lk["n"] for lk in doc["looks"]}
    assert len(kept) <= hist.MAX_LOOKS and doc["thinned"] == 1200 - len(kept)
    assert {77, 901, 1, 399, 400, 799, 800, 1200} <= kept  # failures, each step's first and last, the end
    assert hist.size(doc) <= hist.MAX_BYTES
    big = hist.bound({**doc, "looks": [_look(n, 1, reason_len=2000) for n in range(1, 200)]})
    assert hist.size(big) <= hist.MAX_BYTES and big["looks"][-1]["n"] == 199


def test_merging_twice_keeps_each_look_once() -> None:
    doc = hist.new_doc(rollout={"model": "m", "canary_version": "v2", "stable_version": "v1", "started_at": 1.0},
                       policy={"steps": [50, 100], "checks": []})
    once = hist.merge(doc, looks=[_look(1, 1), _look(2, 1)], weights=[[1.0, 0], [1.0, 50], [3.0, 50]])
    twice = hist.merge(once, looks=[_look(2, 1)], weights=[[3.0, 50]])
    assert twice == once and once["weights"] == [[1.0, 0], [1.0, 50]]


@pytest.mark.parametrize("edit, field", [
    (lambda d: d.__setitem__("format", 2), "format"),
    (lambda d: d.__setitem__("looks", {}), "looks"),
    (lambda d: d["looks"][0].pop("n"), "looks[0]"),
    (lambda d: d["looks"][0].__setitem__("at", "noon"), "looks[0].at"),
    (lambda d: d["rollout"].__setitem__("canary_version", 3), "rollout.canary_version"),
    (lambda d: d["weights"].append([1.0]), "weights[2]"),
    # every field a report reads has its type (a newcomer review found these crash with exit 3)
    (lambda d: d["looks"][0].__setitem__("c", {"lat": [1, 2]}), "looks[0].c.lat"),
    (lambda d: d["looks"][0].__setitem__("c", {"lat": {"sv": "abc"}}), "looks[0].c.lat.sv"),
    (lambda d: d["looks"][0].__setitem__("c", {"lat": {"n": "abc"}}), "looks[0].c.lat.n"),
    (lambda d: d["looks"][0].__setitem__("o", 5), "looks[0].o"),
    (lambda d: d["looks"][0].__setitem__("w", "ten"), "looks[0].w"),
    (lambda d: d["looks"][0].__setitem__("n", True), "looks[0].n"),
    (lambda d: d["looks"][0].__setitem__("c", {"lat": {"b": ">"}}), "looks[0].c.lat.b: must be an object"),
    (lambda d: d["looks"][0].__setitem__("c", {"lat": {"b": {"cv": "="}}}), 'looks[0].c.lat.b.cv: must name sv, cv or e'),
    (lambda d: d["looks"][0].__setitem__("c", {"lat": {"b": {"p": ">"}}}), 'looks[0].c.lat.b.p: must name sv, cv or e'),
    (lambda d: d["events"].append("boom"), "events[0]"),
    (lambda d: d["events"].append({"event": "x"}), "events[0].at"),
    (lambda d: d["gates"].append(7), "gates[0]"),
    (lambda d: d["policy"]["checks"].append({"name": "c", "kind": "latency", "limits": "x"}),
     "policy.checks[0].limits"),
    (lambda d: d["policy"].__setitem__("interval_s", "5m"), "policy.interval_s"),
    (lambda d: d["rollout"].__setitem__("started_at", "yesterday"), "rollout.started_at"),
    (lambda d: d.__setitem__("updated_at", "x"), "updated_at"),
    # times a page cannot draw: `canary report` said "unexpected error" (exit 3) on them
    (lambda d: d["rollout"].__setitem__("started_at", 1e308), "rollout.started_at: must be a Unix time"),
    (lambda d: d.__setitem__("updated_at", -1e308), "updated_at: must be a Unix time"),
    (lambda d: d["looks"][0].__setitem__("at", 1e300), "looks[0].at: must be a Unix time"),
    (lambda d: d["weights"][0].__setitem__(0, -5.0), "weights[0]: must be [at (a Unix time)"),
    # weights a page cannot draw (a line off the chart) and two checks under one name (decision 259)
    (lambda d: d["weights"][1].__setitem__(1, 1e308), "weights[1]: must be [at (a Unix time), canary % (0 to 100)]"),
    (lambda d: d["weights"][1].__setitem__(1, -10), "weights[1]: must be [at (a Unix time), canary % (0 to 100)]"),
    (lambda d: d["looks"][0].__setitem__("w", 250), "looks[0].w: must be a percentage of traffic (0 to 100)"),
    (lambda d: d["policy"]["steps"].__setitem__(0, 1000), "policy.steps[0]: must be a percentage"),
    (lambda d: d["policy"].__setitem__("checks", [{"name": "lat", "kind": "latency"}, {"name": "lat", "kind": "error_rate"}]),
     'policy.checks[1].name: "lat" names an earlier check too'),
    # another file given (a `judge --input` file): it said "format: expected 1, got 'None'"
    (lambda d: d.pop("format"), "not a rollout history (no `format` field): give a file `canary report -o json`"),
])
def test_a_bad_export_is_refused_naming_the_field(edit: Any, field: str) -> None:
    doc = json.loads(json.dumps(fake_rollout_small()))
    edit(doc)
    with pytest.raises(ConfigError, match="saved\\.json: " + re.escape(field)):
        hist.parse(json.dumps(doc), where="saved.json")


def fake_rollout_small() -> dict[str, Any]:
    doc = hist.new_doc(rollout={"model": "m", "canary_version": "v2", "stable_version": "v1", "started_at": 1.0},
                       policy={"steps": [50, 100], "checks": []})
    return hist.merge(doc, looks=[_look(1, 1)], weights=[[1.0, 0], [1.0, 50]])


def test_the_recorded_state_completes_a_history_written_a_few_looks_ago() -> None:
    res, store = run_rollout(slow=True)
    doc = store.doc
    assert doc is not None
    behind = {**doc, "looks": doc["looks"][:-1], "phase": rl.PROGRESSING, "updated_at": doc["looks"][-2]["at"]}
    full = hist.with_state(behind, json.loads(res.state.to_json()))
    assert full["phase"] == rl.ROLLED_BACK and full["looks"][-1]["n"] == res.state.look
    assert full["looks"][-1]["step"] == doc["looks"][-1]["step"] and full["looks"][-1]["o"] == "fail"
    other = json.loads(res.state.to_json()) | {"canary_version": "v9"}
    assert hist.with_state(behind, other) == behind  # another rollout's state adds nothing


def test_configmap_names_fit_kubernetes() -> None:
    assert configmap_name("rec-model") == "rec-model-canary-history"
    long = configmap_name("a" * 253)
    assert len(long) <= 253 and long.endswith("-canary-history")


def test_each_model_of_a_virtual_service_has_its_own_history_name() -> None:
    """Decision 127: the model named as its VirtualService keeps `<vs>-canary-history` (every history
    written before); another gets a name of its own, unambiguous and a DNS subdomain of at most 253."""
    from canary.model import check_object_name

    assert configmap_name("shared", "shared") == configmap_name("shared", "") == "shared-canary-history"
    m1 = configmap_name("shared", "m1")
    assert re.fullmatch(r"shared-m1-[0-9a-f]{10}-canary-history", m1)
    assert configmap_name("a-b", "c") != configmap_name("a", "b-c")  # one readable part, two pairs
    assert configmap_name("shared", "Rec_1") != configmap_name("shared", "rec-1")
    names = [configmap_name(vs, model) for vs, model in [("shared", "m1"), ("shared", "m2"), ("a" * 253, "m1"),
                                                        ("a" * 200, "x" * 200), ("v.s", "Big_Model.v2"), ("vs", "__"),
                                                        ("a" * 253, "a" * 253 + "b")]]
    assert len(set(names)) == len(names)
    for name in names:
        check_object_name(name, "history ConfigMap")  # a DNS-1123 subdomain, at most 253
        assert name.endswith("-canary-history")


def test_pending_looks_are_kept_compressed_and_written_as_they_were() -> None:
    """A controller holds up to `flush_every` looks per rollout between flushes: compressed, each a
    fraction of its JSON; the flush writes exactly the records the looks made."""
    from canary.model import Weights

    store = MemoryStore()
    rec = Recorder(store, namespace="ml", virtual_service="rec", policy=POLICY, source="controller",  # type: ignore[arg-type]
                   flush_every=5)
    verdict = {"at": 1000.0, "outcome": "pass", "reason": "every check within its limit", "canary_requests": 812.0,
               "results": [{"check": f"check-{i}", "kind": "latency", "outcome": "pass", "p_value": 0.5,
                            "stable": 41.25, "canary": 42.5, "reason": "canary p95 42.5 ms vs stable 41.25 ms"}
                           for i in range(5)]}
    made = []
    for n in range(1, 5):
        state = rl.RolloutState(model="rec", stable_version="v1", canary_version="v2", phase=rl.PROGRESSING,
                                weights=Weights(90, 10), step=0, look=n, started_at=900.0, updated_at=1000.0 + n,
                                last_verdict={**verdict, "at": 1000.0 + n})
        rec.observe(state, [rl.Emit("look.completed", {"look": n - 1})])
        made.append(hist.look_record(state.last_verdict, n=n, step=1, canary_weight=10))
    assert store.doc is None and len(rec._looks) == 4  # noqa: SLF001 - pending, not written yet
    assert all(isinstance(p, bytes) and len(p) < len(json.dumps(m)) / 2 for p, m in zip(rec._looks, made))  # noqa: SLF001
    rec.flush()
    assert store.doc is not None and store.doc["looks"] == json.loads(json.dumps(made)) and rec.pending == 0


def test_a_flush_after_the_first_appends_a_part_without_reading_and_the_last_folds_them_in() -> None:
    """The runner flushes at every look: one rewrite (read + write) at the start, one part per flush
    after it (one write, no read), and a rewrite at the end that leaves history.json alone."""
    store = MemoryStore()
    seen: list[tuple[int, int, int, list[int]]] = []
    clock, router = FakeClock(), FakeRouter()
    runner = Runner(policy=POLICY, target=TARGET, router=router, metrics=FakeMetrics(router, clock), clock=clock,
                    history=Recorder(store, namespace="ml", virtual_service="rec", policy=POLICY,  # type: ignore[arg-type]
                                     source="promote"))
    runner.on_update = lambda s: seen.append((store.loads, store.saves, store.appends,
                                              [lk["n"] for lk in store.doc["looks"]] if store.data else []))
    res = runner.run()
    assert res.state.phase == rl.PROMOTED and store.appends >= 3
    # the first flush and the last: the only reads, with the claim's, of a rollback of this version its own
    # history records where the route has no record of it (decision 253)
    assert store.saves == 2 and store.loads == 3
    assert store.data is not None and set(store.data) == {KEY}  # the parts are folded in
    assert [lk["n"] for lk in store.doc["looks"]] == list(range(1, res.state.look + 1))
    mid = [s for s in seen if s[2] and s[1] == 1]  # read while parts were being added
    assert mid and all(s[3] == list(range(1, len(s[3]) + 1)) for s in mid)  # every look so far, merged
    assert any(s[3] for s in mid)


def test_parts_never_outgrow_the_configmap_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    """Past `1 MiB - size(history.json)` of parts, a flush rewrites instead of appending."""
    from canary import history_store
    from canary.model import Weights

    monkeypatch.setattr(history_store, "CONFIGMAP_LIMIT", 40_000)
    monkeypatch.setattr(history_store, "_MARGIN", 0)
    store = MemoryStore()
    rec = Recorder(store, namespace="ml", virtual_service="rec", policy=POLICY, source="controller",  # type: ignore[arg-type]
                   flush_every=2)
    verdict = {"at": 1000.0, "outcome": "pass", "reason": "r" * 200, "canary_requests": 812.0,
               "results": [{"check": f"c{i}", "kind": "latency", "outcome": "pass", "p_value": 0.5, "reason": "x" * 200}
                           for i in range(3)]}
    for n in range(1, 31):  # history.json alone stays under the limit (as MAX_BYTES keeps it under 1 MiB)
        state = rl.RolloutState(model="rec", stable_version="v1", canary_version="v2", phase=rl.PROGRESSING,
                                weights=Weights(90, 10), step=0, look=n, started_at=900.0, updated_at=1000.0 + n,
                                last_verdict={**verdict, "at": 1000.0 + n})
        rec.observe(state, [rl.Emit("look.completed", {"look": n - 1})])
        assert store.data is None or sum(len(v.encode()) for v in store.data.values()) <= 40_000
    assert store.saves > 1 and store.appends > store.saves  # rewrites only when the parts would not fit
    assert [lk["n"] for lk in store.doc["looks"]] == list(range(1, 31))


def test_a_bounded_history_and_its_margin_fit_a_configmap() -> None:
    from canary import history_store
    from canary.sandbox.kubeapi import CONFIGMAP_LIMIT

    assert history_store.CONFIGMAP_LIMIT == CONFIGMAP_LIMIT
    assert hist.MAX_BYTES + history_store._MARGIN < CONFIGMAP_LIMIT  # noqa: SLF001


def test_a_reader_takes_the_latest_rollouts_records_and_leaves_out_an_unreadable_part() -> None:
    from structlog.testing import capture_logs

    store = MemoryStore()
    run_rollout(store=store)
    assert store.data is not None
    base = json.loads(store.data[KEY])
    earlier = {**base, "rollout": {**base["rollout"], "canary_version": "v0", "started_at": 1.0},
               "phase": "rolled_back", "updated_at": base["updated_at"] + 100, "looks": [{**base["looks"][0], "n": 999}]}
    data = {**store.data, "part-1-1.json": hist.dumps(earlier)}
    assert read(data, where="ConfigMap ml/rec-canary-history") == store.doc  # an earlier rollout's part: ignored
    later = {**base, "phase": "rolled_back", "reason": "by hand", "updated_at": base["updated_at"] + 100,
             "looks": [{**base["looks"][-1], "n": 999}], "events": [], "gates": [], "weights": []}
    merged = read({**data, "part-2-1.json": hist.dumps(later)}, where="x")
    assert merged["phase"] == "rolled_back" and merged["looks"][-1]["n"] == 999  # the newest part's phase
    # parts in write order (numbers, not strings): on equal times the later part's phase wins
    tie = [{**later, "phase": ph, "updated_at": base["updated_at"] + 200, "looks": []} for ph in ("paused", "progressing")]
    assert read({**data, "part-5-9.json": hist.dumps(tie[0]), "part-5-10.json": hist.dumps(tie[1])},
                where="x")["phase"] == "progressing"
    # a later rollout's parts over an earlier rollout's history.json: that later rollout's records
    newer = {**base, "rollout": {**base["rollout"], "canary_version": "v9", "started_at": base["updated_at"] + 50},
             "looks": [{**base["looks"][0], "n": 1}], "events": [], "gates": [], "weights": []}
    got = read({**data, "part-3-1.json": hist.dumps(newer), "part-3-2.json": hist.dumps({**newer, "looks": [{**base["looks"][0], "n": 2}]})},
               where="x")
    assert got["rollout"]["canary_version"] == "v9" and [lk["n"] for lk in got["looks"]] == [1, 2]
    with capture_logs() as logs:
        assert read({**data, "part-4-1.json": "{"}, where="ConfigMap ml/rec-canary-history") == store.doc
    assert [(e["event"], e["key"]) for e in logs] == [("history.part_unreadable", "part-4-1.json")]


def test_without_rbac_to_patch_every_flush_rewrites_and_nothing_is_lost() -> None:
    """A Role from before parts (configmaps create/update only): the first refused PATCH turns the
    recorder to rewriting for good (one refused PATCH in the whole rollout)."""
    store = MemoryStore()

    def denied(*args: Any, **kw: Any) -> str:
        store.attempts += 1
        raise _Denied()

    store.append = denied  # type: ignore[method-assign]
    res, _ = run_rollout(store=store)
    assert store.attempts == 1 and store.appends == 0 and store.saves > 3
    assert [lk["n"] for lk in store.doc["looks"]] == list(range(1, res.state.look + 1))


def test_under_the_default_policy_a_step_costs_one_history_write_even_when_it_runs_long() -> None:
    """The controller flushes every `history_flush_every` looks and at each step change: with 10-look
    steps that ended on their 11th to 14th look, a count of 10 (or 12) wrote twice per step (at the
    count, then at the step change); twice a step's looks leaves the step change's write alone."""
    from canary.controller import history_flush_every
    from canary.model import Weights
    from canary.policy import load_policy

    policy = load_policy(Path(__file__).resolve().parents[2] / "policies" / "default.yaml")
    store = MemoryStore()
    rec = Recorder(store, namespace="ml", virtual_service="rec", policy=policy, source="controller",  # type: ignore[arg-type]
                   flush_every=history_flush_every(policy))
    verdict = {"at": 1000.0, "outcome": "pass", "reason": "ok", "canary_requests": 900.0, "results": []}
    base = rl.RolloutState(model="rec", stable_version="v1", canary_version="v2", phase=rl.PROGRESSING,
                           weights=Weights(95, 5), step=0, look=0, started_at=900.0, updated_at=900.0)
    rec.observe(base, [rl.Emit("rollout.started", {})])  # the first flush: a rewrite
    n = 0
    assert history_flush_every(policy) == 20
    for step, looks in enumerate((11, 10, 14)):
        for k in range(looks):
            n += 1
            moved = k == looks - 1
            state = replace(base, step=step + int(moved), look=n, updated_at=1000.0 + n,
                            last_verdict={**verdict, "at": 1000.0 + n})
            actions = [rl.Emit("look.completed", {"look": n - 1})] + ([rl.Emit("step.advanced", {})] if moved else [])
            rec.observe(state, actions)
    assert (store.saves, store.appends) == (1, 3)  # one part per step
    assert [lk["n"] for lk in store.doc["looks"]] == list(range(1, n + 1))


def drive(rec: Recorder, looks: range, *, canary: str = "v2", started: float = 900.0, model: str = "rec") -> None:
    """Feed `rec` one passed look per number in `looks` (step 1, 90/10), as a controller would."""
    from canary.model import Weights

    verdict = {"at": 1000.0, "outcome": "pass", "reason": "ok", "canary_requests": 900.0, "results": []}
    for n in looks:
        state = rl.RolloutState(model=model, stable_version="v1", canary_version=canary, phase=rl.PROGRESSING,
                                weights=Weights(90, 10), step=0, look=n, started_at=started, updated_at=started + 100 + n,
                                last_verdict={**verdict, "at": started + 100 + n})
        rec.observe(state, [rl.Emit("look.completed", {"look": n - 1})])


def _recorder(store: MemoryStore) -> Recorder:
    return Recorder(store, namespace="ml", virtual_service="rec", policy=POLICY, source="controller",  # type: ignore[arg-type]
                    flush_every=2)


def test_a_part_is_never_added_over_someone_elses_write() -> None:
    """Appends are guarded on the recorder's own last write: after another rollout's rewrite (or a
    hand edit leaving a corrupt part), the next flush rewrites, and the ConfigMap shows this
    rollout again with every look recorded since."""
    store = MemoryStore()
    rec = _recorder(store)
    drive(rec, range(1, 5))  # a rewrite, then a part
    assert (store.saves, store.appends) == (1, 1)
    other = hist.new_doc(rollout={"model": "rec", "canary_version": "v1", "stable_version": "v0",
                                  "started_at": 500.0}, policy=hist.policy_summary(POLICY))
    store.foreign_write({KEY: hist.dumps(other), "part-1-1.json": "{not json"})  # a late writer of an earlier rollout
    drive(rec, range(5, 9))
    assert store.saves == 2 and store.doc is not None and store.doc["rollout"]["canary_version"] == "v2"
    assert [lk["n"] for lk in store.doc["looks"]] == [5, 6, 7, 8] and set(store.data or {}) >= {KEY}
    assert "part-1-1.json" not in (store.data or {})  # the rewrite dropped the corrupt part


def test_a_deleted_configmap_a_failed_write_or_a_full_one_make_the_next_write_a_rewrite() -> None:
    store = MemoryStore(limit=12_000)
    rec = _recorder(store)
    drive(rec, range(1, 3))
    store.data = None  # deleted by someone: the append gets 404 and the same flush rewrites
    drive(rec, range(3, 5))
    assert store.saves == 2 and [lk["n"] for lk in store.doc["looks"]] == [3, 4]  # type: ignore[index]
    store.fail_next = [KubeUnavailable("ConfigMap: 503")]
    drive(rec, range(5, 7))  # failed: kept; the next flush reads and rewrites
    drive(rec, range(7, 8))
    assert store.saves == 3 and [lk["n"] for lk in store.doc["looks"]] == [3, 4, 5, 6, 7]  # type: ignore[index]
    for n in range(8, 40, 2):  # parts until the API server refuses one (over the limit): a rewrite, same flush
        drive(rec, range(n, n + 2))
        assert [lk["n"] for lk in store.doc["looks"]][-1] == n + 1  # type: ignore[index]
    assert store.saves > 3 and store.appends > 4


def test_a_new_rollout_on_the_same_recorder_starts_with_a_rewrite() -> None:
    store = MemoryStore()
    rec = _recorder(store)
    drive(rec, range(1, 5))
    saves = store.saves
    drive(rec, range(1, 3), canary="v3", started=5_000.0)
    assert store.saves == saves + 1 and store.doc["rollout"]["canary_version"] == "v3"  # type: ignore[index]
    assert [lk["n"] for lk in store.doc["looks"]] == [1, 2]  # type: ignore[index]
