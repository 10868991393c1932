"""Telemetry metric values (read back through the text exposition) and notification payload shapes."""

from __future__ import annotations

import math
import re
import threading
from dataclasses import replace

import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from structlog.testing import capture_logs

from canary import rollout as rl
from canary.errors import ConfigError
from canary.model import CheckResult, Outcome, Weights
from canary.notify import Notifier, payload_for, slack_body, slack_line, webhook_body
from canary.telemetry import ROLLBACK_REASONS, Telemetry, classify_reason


def samples(t: Telemetry) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    out = {}
    for fam in text_string_to_metric_families(t.render().decode()):
        for s in fam.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(t: Telemetry, name: str, **labels: str) -> float | None:
    return samples(t).get((name, frozenset(labels.items())))


def names(t: Telemetry, name: str) -> list[dict[str, str]]:
    return [dict(lbl) for (n, lbl) in samples(t) if n == name]


def state(phase: str = rl.PROGRESSING, canary: int = 10, step: int = 0, stable_v: str = "v1",
          canary_v: str = "v2", model: str = "rec") -> rl.RolloutState:
    return rl.RolloutState(model=model, stable_version=stable_v, canary_version=canary_v, phase=phase,
                           weights=Weights.canary_at(canary), step=step)


RO = {"namespace": "ml", "rollout": "rec-vs", "model": "rec"}


def test_own_registry_never_the_global_one():
    a, b = Telemetry(), Telemetry()
    a.record_promotion(model="m")
    assert value(a, "canary_promotions_total", model="m") == 1
    assert value(b, "canary_promotions_total", model="m") is None
    assert "canary_promotions_total" not in {m.name for m in REGISTRY.collect()}


def test_record_state_sets_weights_phase_and_step():
    t = Telemetry()
    t.record_state(namespace="ml", rollout="rec-vs", state=state(canary=25, step=1))
    w = dict(RO, stable_version="v1", canary_version="v2")
    assert value(t, "canary_rollout_weight", **w, arm="stable") == 75
    assert value(t, "canary_rollout_weight", **w, arm="canary") == 25
    assert value(t, "canary_rollout_step", **RO) == 2  # 1-based, as in the log lines
    phases = {lbl["phase"]: value(t, "canary_rollout_phase", **lbl) for lbl in names(t, "canary_rollout_phase")}
    assert phases == {p: (1.0 if p == rl.PROGRESSING else 0.0) for p in rl.PHASES}


def test_version_change_replaces_old_weight_series():
    t = Telemetry()
    t.record_state(namespace="ml", rollout="rec-vs", state=state(canary=50))
    t.record_state(namespace="ml", rollout="rec-vs", state=state(phase=rl.PENDING, canary=0, stable_v="v2",
                                                                 canary_v="v3", step=-1))
    series = names(t, "canary_rollout_weight")
    assert {(s["stable_version"], s["canary_version"]) for s in series} == {("v2", "v3")}
    assert value(t, "canary_rollout_step", **RO) == 0
    assert value(t, "canary_rollout_phase", **RO, phase=rl.PENDING) == 1


def test_forget_removes_every_series_of_the_rollout_only():
    t = Telemetry()
    t.record_state(namespace="ml", rollout="rec-vs", state=state())
    t.record_state(namespace="ml", rollout="other", state=state(model="other"))
    t.record_verdict(model="rec", results=[CheckResult("shift", "prediction_shift", Outcome.PASS, "ok",
                                                         effect_size=0.02)])
    t.record_rollback(model="rec", reason="gate: canary not ready", seconds=1.0)
    t.forget("ml", "rec-vs")
    t.forget("ml", "never-seen")  # harmless
    for metric in ("canary_rollout_weight", "canary_rollout_phase", "canary_rollout_step"):
        assert {s["rollout"] for s in names(t, metric)} == {"other"}, metric
    assert names(t, "canary_check_effect_size") == []
    assert value(t, "canary_rollbacks_total", model="rec", reason="gate") == 1  # history is kept


def test_a_models_counters_exist_at_zero_before_its_first_rollback_and_fail():
    """A counter child born at 1 has no sample before it: the dashboard's `increase(canary_rollbacks_total[...])`
    and its `changes(...) > 0` annotation read a model's first rollback of each class since the controller
    started as 0, and `increase(canary_verdicts_total{outcome="fail"})` its first failed look. Now a model's
    rollback and promotion counters are exported at 0 from its first recorded state, and a check's four
    outcomes from its first look."""
    t = Telemetry()
    t.record_state(namespace="ml", rollout="rec-vs", state=state())
    for reason in ROLLBACK_REASONS:
        assert value(t, "canary_rollbacks_total", model="rec", reason=reason) == 0, reason
    assert value(t, "canary_promotions_total", model="rec") == 0
    t.record_verdict(model="rec", results=[CheckResult("lat", "latency", Outcome.PASS, "ok", effect_size=1.0)])
    for o in Outcome:
        assert value(t, "canary_verdicts_total", model="rec", check="lat", outcome=o.label) == (o is Outcome.PASS), o
    t.record_rollback(model="rec", reason="lat: canary p95 185 ms vs stable 89.2 ms", seconds=1.0)
    assert value(t, "canary_rollbacks_total", model="rec", reason="check") == 1
    assert value(t, "canary_rollbacks_total", model="rec", reason="gate") == 0


def test_a_checks_outcomes_exist_at_zero_before_its_first_look():
    """Decision 553 made a check's four outcomes at 0 at its first look, so that look's own outcome was still born at
    1: `increase(canary_verdicts_total{outcome="fail"}[...])` read a canary failing its very first look (a bad
    canary's usual start) as no fail. The controller knows the checks from the rollout's first status, a look
    interval before that look: the outcomes are made at 0 there (553's addendum)."""
    t = Telemetry()
    op, obj, spec = _status_writer(t)
    op._status(obj, spec, rl.RolloutState(model=spec.target.model, stable_version="v1", canary_version="v2",
                                          phase=rl.PROGRESSING, weights=Weights.canary_at(20), step=0))
    checks = [c.name for c in spec.policy.checks]
    assert checks
    for check in checks:
        for o in Outcome:
            assert value(t, "canary_verdicts_total", model=spec.target.model, check=check, outcome=o.label) == 0, check


def test_metrics_carry_no_created_series():
    """prometheus_client wrote a `<name>_created` gauge (a unix time) beside every counter and histogram series:
    in the text format Prometheus stores them as series of their own (`canary_rollbacks_created{model, reason}`,
    `canary_verdicts_created{model, check, outcome}`: as many again as the counters), never as created
    timestamps."""
    t = Telemetry()
    t.record_state(namespace="ml", rollout="rec-vs", state=state())
    t.record_verdict(model="rec", results=[CheckResult("lat", "latency", Outcome.PASS, "ok", effect_size=1.0)])
    t.record_rollback(model="rec", reason="gate: canary not ready", seconds=1.0)
    t.observe_tick(0.1, 1)
    t.prometheus_query(True)
    t.kube_error("conflict")
    exported = {name for name, _ in samples(t)}
    assert not [n for n in exported if n.endswith("_created")], sorted(exported)
    assert {"canary_rollbacks_total", "canary_verdicts_total", "canary_tick_duration_seconds_count"} <= exported


def _controller(t: Telemetry, **kw):
    from canary.controller import Controller
    from tests.fakes import FakeClock

    return Controller(custom=None, core=None, router=None, metrics=None, telemetry=t, clock=FakeClock(), **kw)


def _status_writer(t: Telemetry):
    """A Controller on `t` whose CanaryRollout status writes land (`_Statuses`), and r0's object and spec."""
    from canary import crd
    from tests import fleet
    from tests.unit.test_errors_said import _Statuses

    op = _controller(t)
    op.custom = _Statuses()
    obj = fleet.rollout_object(0, "v2")
    obj["metadata"].update(generation=1, uid="u-1")
    return op, obj, crd.parse(obj)


def test_the_controller_drops_the_series_of_a_deleted_rollout():
    """`Telemetry.forget` was never called: a deleted CanaryRollout's weight, phase and step series stayed on
    /metrics until the controller restarted (its last weights on the dashboard, one row more per rollout ever
    run). A deletion the watch delivers, one only a tick's listing shows, and a deletion with no finalizer
    of ours each drop them; the other rollouts keep theirs."""
    from canary import crd

    t = Telemetry()
    op = _controller(t)
    for name in ("r0", "r1", "r2", "r3"):
        t.record_state(namespace="ml", rollout=name, state=state())
    op.changed(crd.PLURAL, "ml/r0", None)  # the informer saw it go
    op._forget_absent({"ml/r2", "ml/r3"})  # a tick's LIST no longer has r1
    op._deleted({"metadata": {"namespace": "ml", "name": "r2", "deletionTimestamp": "now", "finalizers": []}})
    assert {s["rollout"] for s in names(t, "canary_rollout_weight")} == {"r3"}
    assert {s["rollout"] for s in names(t, "canary_rollout_phase")} == {"r3"}


def test_a_sharded_replica_is_leader_while_it_leads_any_shard():
    """With `--shards N`, `canary_leader` stayed 0 on every replica (only the unsharded tick set it): the
    dashboard's "Leader (per controller pod)" panel showed no leader at all. It is now 1 while the replica leads
    any of its shards, as /readyz says "leader"."""
    from canary.shards import ShardGauges

    t = Telemetry()
    leads = {0: True, 1: False}
    ops = [_controller(t, is_leader=lambda i=i: leads[i], shard=ShardGauges(t.registry, i, 2)) for i in (0, 1)]
    for op in ops:
        op.informers = _NoInformers()
        op.tick()
    assert value(t, "canary_leader") == 1 and value(t, "canary_shard_leader", shard="0/2") == 1
    leads[0] = False
    for op in ops:
        op.tick()
    assert value(t, "canary_leader") == 0


def test_shard_gauges_are_never_another_registrys():
    """They were kept per id(registry): a registry collected and a new one made at its address got the gauges
    registered on the one gone, and its /metrics had no shard series (tests make hundreds of registries)."""
    import gc

    from canary.shards import ShardGauges

    for _ in range(50):
        t = Telemetry()
        ShardGauges(t.registry, 0, 2).observe(leading=True)
        assert value(t, "canary_shard_leader", shard="0/2") == 1
        del t
        gc.collect(0)  # the young generation: where the registry just dropped is (cheap)


def test_docs_list_every_metric_with_its_type_and_labels():
    """docs/deploy.md's "The metrics" is what on-call reads to know a series: every metric the controller serves
    (shards and all), with its type and labels, and nothing it does not serve."""
    from pathlib import Path

    from canary.shards import ShardGauges

    t = Telemetry()
    ShardGauges(t.registry, 0, 2).observe(leading=True, rollouts=1, active=1)
    t.record_state(namespace="ml", rollout="rec-vs", state=state())
    t.record_verdict(model="rec", results=[CheckResult("lat", "latency", Outcome.PASS, "ok", effect_size=1.0)])
    served = {}
    for fam in t.registry.collect():
        labels = {k for s in fam.samples for k in s.labels} - {"le"}
        served[fam.name + ("_total" if fam.type == "counter" else "")] = (fam.type, labels)
    text = (Path(__file__).resolve().parents[2] / "docs" / "deploy.md").read_text(encoding="utf-8")
    section = text.split("\n## The metrics\n", 1)[1].split("\n## ", 1)[0]
    documented = {}
    for name, kind, labels in re.findall(r"^\| `(canary_[a-z_]+)` \| (\w+) \|([^|]*)\|", section, re.M):
        documented[name] = (kind, {x.strip() for x in labels.split(",") if x.strip()})
    assert documented == served


class _NoInformers:
    """A cache that has not synced yet: a leader's tick does nothing past its leadership."""

    def synced(self) -> bool:
        return False


def test_a_rollout_the_controller_only_reads_has_its_series(tmp_path):
    """`_record` set a rollout's series only for a step executed: after a controller restart or a change of
    leader, a paused rollout (no look, no step until someone resumes it) had no weight or phase series, and was
    not in the dashboard's model list, until it moved; a progressing one none until its next look. The status
    write (`_status`, every tick that reads the rollout, its write skipped when nothing changed) sets them now."""
    t = Telemetry()
    op, obj, spec = _status_writer(t)
    paused = rl.RolloutState(model=spec.target.model, stable_version="v1", canary_version="v2", phase=rl.PAUSED,
                             weights=Weights.canary_at(25), step=1, reason="paused by operator")
    for _ in range(2):  # the second write is skipped (nothing changed): the series stay
        op._status(obj, spec, paused)
        ro = {"namespace": "ml", "rollout": "r0", "model": spec.target.model}
        assert value(t, "canary_rollout_phase", **ro, phase=rl.PAUSED) == 1
        assert value(t, "canary_rollout_weight", **ro, stable_version="v1", canary_version="v2", arm="canary") == 25


def test_a_rollout_ended_with_no_state_of_its_own_says_its_end_on_metrics():
    """A rollout the controller ends by writing its status alone (`_ended_status`: its VirtualService applied back
    at 100/0 without the rollout's record, "stable already serves 100%"; the route run by another rollout now) kept
    its last series: `progressing` with the canary's 20% on the weight panel for as long as the CanaryRollout existed, and its model's effect sizes never
    left (their EFFECT_KEEP_S starts at an end the series see). The row says the end now: phase, 100/0; the effect
    sizes go EFFECT_KEEP_S later (decision 561)."""
    from canary.telemetry import EFFECT_KEEP_S

    now = [0.0]
    t = Telemetry(clock=lambda: now[0])
    op, obj, _ = _status_writer(t)
    t.record_state(namespace="ml", rollout="r0", state=state(canary=20, model="m0"))
    t.record_verdict(model="m0", results=[CheckResult("lat", "latency", Outcome.FAIL, "p95", effect_size=0.4)])
    op._ended_status(obj, phase=rl.ABORTED, reason="the route no longer records this CanaryRollout's rollout; "
                                                 "stable already serves 100%")
    ro = {"namespace": "ml", "rollout": "r0", "model": "m0"}
    assert value(t, "canary_rollout_phase", **ro, phase=rl.ABORTED) == 1
    assert value(t, "canary_rollout_weight", **ro, stable_version="v1", canary_version="v2", arm="canary") == 0
    assert value(t, "canary_rollout_weight", **ro, stable_version="v1", canary_version="v2", arm="stable") == 100
    now[0] += EFFECT_KEEP_S
    assert names(t, "canary_check_effect_size") == []
    op._ended_status({**obj, "metadata": {**obj["metadata"], "name": "r9"}}, phase=rl.ABORTED, reason="x")
    assert {s["rollout"] for s in names(t, "canary_rollout_phase")} == {"r0"}  # none made for a rollout never seen


def test_a_controller_that_loses_leadership_drops_the_series_of_its_rollouts():
    """An ex-leader kept exporting the rollouts the new leader now drives, frozen: the weight panel showed two
    pods' lines per arm, one of them stale. Only the rollouts it owns go (shards share one Telemetry)."""
    t = Telemetry()
    leading = [True]
    op = _controller(t, is_leader=lambda: leading[0], owns=lambda obj: obj["metadata"]["name"] != "other-shard")
    for name in ("r0", "other-shard"):
        t.record_state(namespace="ml", rollout=name, state=state())
    op._leading = True  # it led at the previous tick
    leading[0] = False
    assert op.tick() == 0
    assert {s["rollout"] for s in names(t, "canary_rollout_weight")} == {"other-shard"}
    assert value(t, "canary_leader") == 0


def test_a_finished_rollouts_effect_sizes_leave_a_while_after_its_end():
    """The effect sizes stayed after the rollout ended, for as long as the CanaryRollout existed: an alert on
    `canary_check_effect_size > L` kept firing after the rollback that answered it. They go EFFECT_KEEP_S after no
    rollout of the model is unfinished (the failing look, counted after the end is written, is shown until
    then); a new rollout of the model keeps them; the rollout's weight and phase stay (phase rolled_back)."""
    from canary.telemetry import EFFECT_KEEP_S

    now = [0.0]
    t = Telemetry(clock=lambda: now[0])
    shift = [CheckResult("shift", "prediction_shift", Outcome.FAIL, "PSI 0.3", effect_size=0.31)]
    t.record_state(namespace="ml", rollout="rec-vs", state=state())
    t.record_state(namespace="other", rollout="rec-vs", state=state())  # the same model in another namespace
    t.record_state(namespace="ml", rollout="rec-vs", state=state(phase=rl.ROLLED_BACK, canary=0))
    t.record_verdict(model="rec", results=shift)  # the look that rolled it back is counted after its write
    now[0] += 2 * EFFECT_KEEP_S
    assert value(t, "canary_check_effect_size", model="rec", check="shift") == pytest.approx(0.31)  # other runs
    t.record_state(namespace="other", rollout="rec-vs", state=state(phase=rl.PROMOTED, canary=0))
    now[0] += EFFECT_KEEP_S - 1
    assert value(t, "canary_check_effect_size", model="rec", check="shift") == pytest.approx(0.31)
    now[0] += 1
    assert names(t, "canary_check_effect_size") == [] and names(t, "canary_check_effect_size_bounded") == []
    assert value(t, "canary_rollout_phase", **RO, phase=rl.ROLLED_BACK) == 1
    # a model rolled out again before the time is up keeps its effect sizes
    t.record_verdict(model="rec", results=shift)
    t.record_state(namespace="ml", rollout="rec-vs", state=state(phase=rl.ROLLED_BACK, canary=0))
    t.record_state(namespace="ml", rollout="rec-vs", state=state(canary_v="v3"))
    now[0] += 2 * EFFECT_KEEP_S
    assert value(t, "canary_check_effect_size", model="rec", check="shift") == pytest.approx(0.31)


def test_deleting_the_last_unfinished_rollout_of_a_model_starts_its_effect_sizes_clock():
    from canary.telemetry import EFFECT_KEEP_S

    now = [0.0]
    t = Telemetry(clock=lambda: now[0])
    t.record_state(namespace="a", rollout="rec-vs", state=state(phase=rl.PROMOTED, canary=0))
    t.record_state(namespace="b", rollout="rec-vs", state=state())
    t.record_verdict(model="rec", results=[CheckResult("lat", "latency", Outcome.PASS, "ok", effect_size=1.0)])
    t.forget("b", "rec-vs")  # a finished rollout of the model is left: the effects go as after an end
    assert value(t, "canary_check_effect_size", model="rec", check="lat") == 1.0
    now[0] += EFFECT_KEEP_S
    assert names(t, "canary_check_effect_size") == []


def test_record_verdict_counts_outcomes_and_keeps_last_finite_effect():
    t = Telemetry()
    r1 = [CheckResult("shift", "prediction_shift", Outcome.FAIL, "PSI 0.3", effect_size=0.31),
          CheckResult("latency-p95", "latency", Outcome.PASS, "fine", effect_size=1.02),
          CheckResult("errors", "error_rate", Outcome.ERROR, "no data")]  # NaN effect: not exported
    t.record_verdict(model="rec", results=r1)
    t.record_verdict(model="rec", results=[CheckResult("shift", "prediction_shift", Outcome.FAIL, "PSI 0.4",
                                                         effect_size=0.4)])
    assert value(t, "canary_verdicts_total", model="rec", check="shift", outcome="fail") == 2
    assert value(t, "canary_verdicts_total", model="rec", check="errors", outcome="error") == 1
    assert value(t, "canary_check_effect_size", model="rec", check="shift") == pytest.approx(0.4)
    assert value(t, "canary_check_effect_size", model="rec", check="errors") is None


def _judged(limit: dict, stable: list, canary: list) -> CheckResult:
    """A latency check judged by the real judge on bounds 100, 300, +Inf (`canary judge --input`'s reader)."""
    from canary.analysis.judge import judge
    from canary.offline import parse_exported

    bounds = [100, 300, "+Inf"]
    d = parse_exported({"policy": {"steps": [10, 100], "analysis": {"interval": "5m", "look_every": "1m"},
                                   "checks": [{"name": "lat", "kind": "latency", "quantile": 0.95, **limit}]},
                        "checks": {"lat": {"stable": {"bounds": bounds, "counts": stable},
                                           "canary": {"bounds": bounds, "counts": canary}}}})
    return judge(d.policy, d.measurements, prior=d.prior, window=d.window, pass_ratio=d.pass_ratio,
                 canary_weight=d.canary_weight, step=d.step).results[0]


@pytest.mark.parametrize("limit, stable, canary, side", [
    ({"max_increase_pct": 20}, [100000, 100000, 100000], [0, 0, 20000], 1.0),  # the canary's p95 is above 300 ms
    ({"max_ms": 250}, [100000, 100000, 100000], [0, 0, 20000], 1.0),  # a ceiling: the canary's p95 is its effect
    ({"max_increase_pct": 20}, [0, 0, 100000], [20000, 20000, 20000], -1.0),  # the stable's: an upper bound
    ({"max_increase_pct": 20}, [100000, 100000, 100000], [20000, 20000, 20000], 0.0),  # both measured: a value
])
def test_an_effect_that_is_only_a_bound_is_exported_as_one(limit: dict, stable: list, canary: list,
                                                           side: float) -> None:
    """`canary_check_effect_size` exported a quantile in the open +Inf bucket's bound (the last finite bucket
    bound, `CheckResult.bounded`) as if it were the effect, with nothing saying so. The number stays (a lower
    bound over a limit is over it: an alert on the gauge keeps firing); `canary_check_effect_size_bounded` of the
    same labels says which side of it the true effect lies: 1 above, -1 below, 0 the value itself."""
    r = _judged(limit, stable, canary)
    assert r.bounded.get("effect_size", "") == {1.0: ">", -1.0: "<", 0.0: ""}[side], r.bounded  # the judge's view
    t = Telemetry()
    t.record_verdict(model="rec", results=[r])
    assert value(t, "canary_check_effect_size", model="rec", check="lat") == pytest.approx(r.effect_size)
    assert value(t, "canary_check_effect_size_bounded", model="rec", check="lat") == side
    # a later look measured (the effect a value) clears it; one with no effect (an ERROR) keeps both as they were
    t.record_verdict(model="rec", results=[CheckResult("lat", "latency", Outcome.ERROR, "no data")])
    assert value(t, "canary_check_effect_size_bounded", model="rec", check="lat") == side
    t.record_verdict(model="rec", results=[replace(r, bounded={}, effect_size=12.5)])
    assert value(t, "canary_check_effect_size", model="rec", check="lat") == 12.5
    assert value(t, "canary_check_effect_size_bounded", model="rec", check="lat") == 0.0


def test_the_bound_series_goes_with_its_effect() -> None:
    t = Telemetry()
    t.record_state(namespace="ml", rollout="rec-vs", state=state())
    t.record_verdict(model="rec", results=[_judged({"max_ms": 250}, [10, 10, 10], [0, 0, 20000])])
    assert value(t, "canary_check_effect_size_bounded", model="rec", check="lat") == 1.0
    t.forget("ml", "rec-vs")
    assert names(t, "canary_check_effect_size_bounded") == names(t, "canary_check_effect_size") == []


def test_rollbacks_promotions_and_time_to_rollback():
    t = Telemetry()
    t.record_rollback(model="rec", reason="latency-p95: p95 94 ms vs 61 ms", seconds=0.8)
    t.record_rollback(model="rec", reason="operator: bad deploy", seconds=None)
    t.record_rollback(model="rec", reason="interrupted", seconds=math.nan)
    t.record_promotion(model="rec")
    assert value(t, "canary_rollbacks_total", model="rec", reason="check") == 1
    assert value(t, "canary_rollbacks_total", model="rec", reason="operator") == 1
    assert value(t, "canary_promotions_total", model="rec") == 1
    assert value(t, "canary_time_to_rollback_seconds_count") == 1
    assert value(t, "canary_time_to_rollback_seconds_bucket", le="0.5") == 0
    assert value(t, "canary_time_to_rollback_seconds_bucket", le="1.0") == 1
    assert value(t, "canary_time_to_rollback_seconds_bucket", le="600.0") == 1


def test_controller_health_metrics():
    t = Telemetry()
    assert value(t, "canary_leader") == 0
    assert value(t, "canary_kube_errors_total", kind="conflict") == 0  # present before the first error
    t.observe_tick(0.03, 4)
    t.prometheus_query(True, n=5)
    t.prometheus_query(False)
    t.kube_error("conflict")
    t.kube_error("teapot")
    t.set_leader(True)
    assert value(t, "canary_tick_duration_seconds_count") == 1
    assert value(t, "canary_tick_duration_seconds_bucket", le="0.05") == 1
    assert value(t, "canary_tick_rollouts") == 4
    assert value(t, "canary_prometheus_queries_total") == 6
    assert value(t, "canary_prometheus_errors_total") == 1
    assert value(t, "canary_kube_errors_total", kind="conflict") == 1
    assert value(t, "canary_kube_errors_total", kind="other") == 1
    assert value(t, "canary_leader") == 1


@pytest.mark.parametrize("reason,cls", [
    ("latency-p95: p95 94.1 ms vs 61.2 ms (+54%, limit +20%)", "check"),
    ("shift: PSI 0.31; errors: 2.1% vs 0.4%", "check"),
    ("gate: canary Triton not ready (3 probes in a row)", "gate"),
    ("no verdict after 900s at step 2 (inconclusive: latency-p95: too few requests)", "deadline"),
    ("deadline passed", "deadline"),
    ("operator: rolled back by alice", "operator"),
    ("interrupted", "interrupted"),
    ("infrastructure: kubernetes unreachable", "infrastructure"),
    ("foreign edit of the weights", "foreign_edit"),
    ("abandoned: canary promote on ci-1 (pid 42) has not written this rollout for 400s (...); stable 100%", "abandoned"),
    ("orphaned: CanaryRollout ml/r0 no longer exists (deleted with its finalizer removed by hand); stable 100%",
     "abandoned"),
    ("superseded: canaryVersion v3 -> v4 mid-rollout", "operator"),
    # the route's record removed, edited, or another rollout's now: "other" until decision 572
    ("the rollout's record (annotation modelcanary.dev/rollout-state) was removed from VirtualService ml/rec "
     "outside the rollout, at 80/20 (...); stable 100%", "foreign_edit"),
    ("taken over: the route records another rollout of v3 (...); this one ended, theirs is left alone", "foreign_edit"),
    ("the route no longer records this CanaryRollout's rollout", "foreign_edit"),
    ("", "other"),
    ("something else entirely", "other"),
    ("interrupted by SIGTERM", "interrupted"),
    ("weights.foreign_edit: expected 80/20, found 50/50", "foreign_edit"),
    # a breach of a check whose name starts with a class's word is the check's (decision 582): it was a foreign
    # edit, infrastructure ("not the canary", the report's headline), an interruption, a gate, ...
    ("foreign_calls: canary 5.0% vs 0.4% (limit +1%)", "check"),
    ("kube-latency: p95 94.1 ms vs 61.2 ms (+54%, limit +20%)", "check"),
    ("prometheus.scrape_errors: 2.1% vs 0.4%", "check"),
    ("interrupts: 3.0% vs 0.1%", "check"),
    ("gate-latency: p95 94.1 ms vs 61.2 ms", "check"),
    ("operator_errors: 2.1% vs 0.4%", "check"),
    ("deadline-miss: 2.1% vs 0.4%", "check"),
    ("abandoned-sessions: 2.1% vs 0.4%", "check"),
])
def test_classify_reason(reason, cls):
    assert classify_reason(reason) == cls
    assert cls in ROLLBACK_REASONS


def test_concurrent_record_and_render_do_not_break():
    t = Telemetry()

    def writer(i: int) -> None:
        for k in range(200):
            t.record_state(namespace="ml", rollout=f"r{i}", state=state(canary_v=f"v{k % 3}"))
            if k % 50 == 0:
                t.forget("ml", f"r{i}")

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(4)]
    for th in threads:
        th.start()
    for _ in range(20):
        text_string_to_metric_families(t.render().decode())
    for th in threads:
        th.join()
    assert len(names(t, "canary_rollout_weight")) == 8  # 4 rollouts x 2 arms, one version pair each


# ---- notification payloads (fake sender) ----------------------------------------------------------


class FakeSender:
    """Answers each URL from its own list (each URL is posted to by its own thread), then 200."""

    def __init__(self, statuses: dict[str, list[int | Exception]] | None = None) -> None:
        self.calls: list[tuple[str, dict]] = []
        self.statuses = {u: list(s) for u, s in (statuses or {}).items()}
        self.lock = threading.Lock()

    def __call__(self, url: str, body: dict, timeout: float) -> int:
        with self.lock:
            self.calls.append((url, body))
            left = self.statuses.get(url, [])
            nxt = left.pop(0) if left else 200
        if isinstance(nxt, Exception):
            raise nxt
        return nxt


EVIDENCE = CheckResult("latency-p95", "latency", Outcome.FAIL, "p95 94 ms vs 61 ms, p < 0.001", p_value=3e-9)
PAYLOAD = {"model": "rec-model", "namespace": "ml", "rollout": "rec-vs", "stable_version": "v2.0.0",
           "canary_version": "v2.1.0", "weights": Weights(100, 0), "reason": "latency-p95: p95 94 ms vs 61 ms",
           "evidence": [EVIDENCE], "at": 1700000000.0}


def test_generic_webhook_body_shape():
    b = webhook_body("rollback", PAYLOAD)
    assert set(b) == {"id", "event", "model", "namespace", "rollout", "stable_version", "canary_version", "weights",
                      "reason", "evidence", "at"}
    assert b["weights"] == {"stable": 100, "canary": 0}
    assert b["at"] == "2023-11-14T22:13:20.000Z"
    assert b["evidence"][0]["check"] == "latency-p95" and b["evidence"][0]["stable_value"] is None  # NaN -> null
    assert webhook_body("rollback", dict(PAYLOAD, weights="90/10"))["weights"] == {"stable": 90, "canary": 10}


def test_slack_body_shape_and_escaping():
    b = slack_body("rollback", PAYLOAD)
    assert b["text"] == ":rotating_light: rollback ml/rec-model v2.1.0 -&gt; stable 100%: latency-p95: p95 94 ms vs 61 ms"
    assert b["blocks"][0] == {"type": "section", "text": {"type": "mrkdwn", "text": b["text"]}}
    fields = [f["text"] for f in b["blocks"][1]["fields"]]
    assert "*Model*\nrec-model" in fields and "*Weights*\nstable 100% / canary 0%" in fields
    assert any(f.startswith("*latency-p95*\nfail:") and "&lt; 0.001" in f for f in fields)
    assert len(fields) <= 10
    assert slack_body("promotion", PAYLOAD)["text"].startswith(":white_check_mark: promoted ml/rec-model v2.1.0")
    assert "prediction shift" in slack_body("prediction_shift", PAYLOAD)["text"]


def test_slack_line_says_where_and_the_weights_it_knows():
    """Two namespaces (staging, prod) with one model name: the line said `rollback rec-model`, not which;
    and `-> stable 100%` whatever the weights were (an abort whose weights were not known)."""
    assert slack_line("rollback", PAYLOAD).startswith(":rotating_light: rollback ml/rec-model v2.1.0 -&gt; stable 100%:")
    assert "-&gt; weights unknown:" in slack_line("aborted", dict(PAYLOAD, weights=None))
    assert "-&gt; stable 80% / canary 20%:" in slack_line("aborted", dict(PAYLOAD, weights="80/20"))
    drift = slack_line("drift_started", dict(PAYLOAD, canary_version="", reason="age drifted"))
    assert drift == ":warning: drift_started ml/rec-model: age drifted"


@pytest.mark.parametrize("event,icon", [("drift_started", ":warning:"), ("drift_retrain_failed", ":warning:"),
                                        ("drift_features_missing", ":warning:"), ("drift_resolved", ":white_check_mark:"),
                                        ("drift_retrain_recovered", ":white_check_mark:")])
def test_a_drift_alert_in_slack_speaks_of_a_version_not_a_rollout(event: str, icon: str) -> None:
    """Decision 153: a drift alert's Slack message had a rollout's fields, `Canary` empty and `Weights:
    unknown` (read as a traffic split gone wrong), and every drift event the same :information_source:,
    an episode opened as much as one ended."""
    drift = dict(PAYLOAD, stable_version="v2", canary_version="", weights=None, reason="age drifted",
                 evidence=[{"feature": "age", "test": "wasserstein", "value": 0.3, "threshold": 0.1, "drifted": True}])
    b = slack_body(event, drift)
    assert b["text"].startswith(f"{icon} {event} ml/rec-model:")
    fields = [f["text"] for f in b["blocks"][1]["fields"]]
    assert fields[:4] == ["*Model*\nrec-model", "*Namespace*\nml", "*Version*\nv2", f"*Event*\n{event}"]
    assert not any(f.startswith(("*Canary*", "*Weights*", "*Rollout*", "*Stable*")) for f in fields), fields
    assert "*age*\nwasserstein 0.3 (threshold 0.1) drifted" in fields


def test_slack_says_the_command_to_look_at_the_rollout():
    """The message said what happened and why, not where to look next: on-call had to work out the
    VirtualService (not always the model's name) and the route of a rollout ended at 3 a.m."""
    s = rl.RolloutState(model="rec", stable_version="v1", canary_version="v2", phase=rl.ROLLED_BACK,
                        weights=Weights(100, 0), reason="latency", updated_at=1700000000.0, route="primary")
    blocks = slack_body("rollback", payload_for(s, namespace="ml", rollout="rec-vs"))["blocks"]
    assert blocks[-1]["text"]["text"] == "Next: `canary status rec -n ml --virtual-service rec-vs --route primary`"
    assert len(blocks[1]["fields"]) <= 10
    plain = payload_for(replace(s, route=""), namespace="ml", rollout="rec")
    assert slack_body("promotion", plain)["blocks"][-1]["text"]["text"] == "Next: `canary status rec -n ml`"
    assert len(slack_body("drift_started", dict(PAYLOAD, virtual_service="rec"))["blocks"]) == 2  # not a rollout's end


def test_slack_body_stays_within_slacks_limits_after_escaping():
    """A field was trimmed to 500 characters and then escaped: a reason of `<`, `>` and `&` grew five-fold
    past Slack's 2000 a field, and Slack refused the whole rollback message (400 invalid_blocks); a
    check's name was not trimmed at all."""
    ev = {"check": "c" * 5000, "outcome": "fail", "reason": "p < 0.001 & " * 400}
    b = slack_body("rollback", dict(PAYLOAD, model="m" * 4000, evidence=[ev], reason="é" * 5000))
    assert len(b["text"]) <= 3000 and len(b["blocks"][0]["text"]["text"]) <= 3000
    texts = [f["text"] for f in b["blocks"][1]["fields"]]
    assert all(len(t) <= 2000 for t in texts) and len(texts) <= 10
    check = texts[-1]
    assert check.startswith("*" + "c" * 99 + "…*\nfail: p &lt; 0.001 &amp; ") and check.endswith("…")
    assert not re.search(r"&[a-z]*…", check)  # no entity cut in two


def test_slack_fields_of_a_drift_alert_name_the_features():
    """A drift alert's features showed as four fields reading `check` and `: ` (they have no `check`)."""
    ev = [{"feature": "age", "test": "ks", "value": 0.31234, "threshold": 0.1, "drifted": True},
          "income: 40% missing vs 1% in training; MORE MISSING"]
    texts = [f["text"] for f in slack_body("drift_started", dict(PAYLOAD, evidence=ev))["blocks"][1]["fields"]]
    assert texts[-2:] == ["*age*\nks 0.312 (threshold 0.1) drifted",
                          "*Feature*\nincome: 40% missing vs 1% in training; MORE MISSING"]


def test_notifier_sends_both_formats_and_retries_5xx_not_4xx():
    hook, slack = "http://hooks.example/a", "https://hooks.slack.com/services/T/B/SECRET"
    fake = FakeSender({hook: [503, 200], slack: [400]})
    n = Notifier(webhooks=[hook], slack=[slack], sender=fake, backoff_s=0.001)
    with capture_logs() as logs:
        n.notify("rollback", PAYLOAD)
        assert n.close(5)
    assert sorted(u for u, _ in fake.calls) == [hook, hook, slack]
    assert {u: b.get("event", "blocks" in b) for u, b in fake.calls} == {hook: "rollback", slack: True}
    assert (n.sent, n.failed) == (1, 1)
    assert not any("SECRET" in repr(line) or "/services" in repr(line) for line in logs)
    assert {line["event"] for line in logs} == {"notify.sent", "notify.rejected"}
    assert "SECRET" not in repr(n)


def test_notifier_gives_up_after_bounded_retries_on_connection_errors():
    fake = FakeSender({"http://h/secret-path": [ConnectionError("http://h/secret-path refused")] * 5})
    n = Notifier(webhooks=["http://h/secret-path"], retries=2, sender=fake, backoff_s=0.001)
    with capture_logs() as logs:
        n.notify("aborted", PAYLOAD)
        assert n.close(5)
    assert len(fake.calls) == 3 and n.failed == 1
    assert "secret-path" not in repr(logs)


def test_notify_never_raises_and_drops_oldest_when_full():
    gate, entered = threading.Event(), threading.Event()

    def slow(url: str, body: dict, timeout: float) -> int:
        entered.set()
        gate.wait(60)  # the test's release: the later events must queue behind this one (5 s: a loaded machine's race)
        seen.append(body["reason"])
        return 200

    seen: list[str] = []
    n = Notifier(webhooks=["http://h/x"], sender=slow, max_queue=2)
    n.notify("rollback", dict(PAYLOAD, reason="r0"))  # taken by the worker, blocks in the sender
    assert entered.wait(60)
    for i in range(1, 5):
        n.notify("rollback", dict(PAYLOAD, reason=f"r{i}"))
    n.notify("rollback", {"weights": object()})  # nonsense payload: no exception here
    gate.set()
    assert n.close(60)
    assert n.dropped == 3  # r1, r2, r3: the newest two were kept
    assert seen == ["r0", "r4", ""]


def test_from_env_and_url_validation():
    env = {"CANARY_WEBHOOK_URLS": "http://a/x, http://b/y", "CANARY_SLACK_WEBHOOK_URLS": "https://hooks.slack.com/s"}
    n = Notifier.from_env(env, slack=["https://c/z"], timeout_s=1.0)
    assert n.webhooks == ["http://a/x", "http://b/y"] and n.slack == ["https://hooks.slack.com/s", "https://c/z"]
    assert not Notifier.from_env({}).enabled
    with pytest.raises(ConfigError) as err:
        Notifier(slack=["hooks.slack.com/services/SECRET"])
    assert "SECRET" not in str(err.value)


def test_payload_for_a_rolled_back_state():
    s = rl.RolloutState(model="rec", stable_version="v1", canary_version="v2", phase=rl.ROLLED_BACK,
                        weights=Weights(100, 0), reason="shift: PSI 0.3", updated_at=1700000000.0,
                        last_verdict={"results": [{"check": "shift", "outcome": "fail"}, {"check": "x", "outcome": "pass"}]})
    p = payload_for(s, namespace="ml", rollout="rec-vs")
    b = webhook_body("rollback", p)
    assert b["evidence"] == [{"check": "shift", "outcome": "fail"}] and b["weights"] == {"stable": 100, "canary": 0}
    assert b["reason"] == "shift: PSI 0.3" and b["rollout"] == "rec-vs"


def test_a_drift_alert_delivered_again_from_the_outbox_carries_the_same_webhook_id():
    """The drift outbox delivers an alert at least once (again by the next evaluation when the process
    died before storing it delivered): the webhook's copies had no time of their own, so each copy got a
    new `at`, and nothing told a receiver it was the same alert."""
    from canary.drift import monitor as M
    from canary.drift.watch import DriftWatcher

    fake = FakeSender()
    n = Notifier(webhooks=["http://hooks.example/drift"], sender=fake)
    w = DriftWatcher([], client=None, window_s=3600, config=M.MonitorConfig(), notifier=n)
    state = M.MonitorState(model="rec", version="v1", episode=1)
    alert = M.Alert("drift.started", "rec v1: age drifted", {"at": 1700000000.0, "features": []})
    w._alert(state, alert, "ml")
    w._alert(state, M.unsent(M.hold(state, [alert]))[0], "ml")  # the same alert, from the stored outbox
    assert n.close(5)
    (_, a), (_, b) = fake.calls
    assert a["id"] == b["id"] and a["at"] == b["at"] == "2023-11-14T22:13:20.000Z"


def test_a_rollback_is_counted_under_the_class_recorded_with_its_end():
    """`canary_rollbacks_total{reason}` counts an end under the class its producer recorded (decision 607), not
    its words: a route re-shaped by hand mid-rollout says "failed: ..." (read as infrastructure) and is a foreign
    edit; with no class given (a caller without a record), the words still class it."""
    t = Telemetry()
    t.record_rollback(model="rec", reason="failed: ml/rec: spec.http[0].route has 3 destinations, expected 2",
                      seconds=None, cause="foreign_edit")
    assert value(t, "canary_rollbacks_total", model="rec", reason="foreign_edit") == 1
    assert value(t, "canary_rollbacks_total", model="rec", reason="infrastructure") == 0
    t.record_rollback(model="rec", reason="failed: KubeUnavailable", seconds=None)
    assert value(t, "canary_rollbacks_total", model="rec", reason="infrastructure") == 1
