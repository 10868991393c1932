"""Abandoned rollouts go to stable (`canary.sweep`): a `canary promote` killed after any of its writes,
a CanaryRollout deleted with its finalizer removed by hand; by the controller's sweep (LIST and watch
modes) and by `canary sweep`. Against the strict Kubernetes API emulator; the kills are the
deterministic kill points of tests/support/killpoints.py."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Iterator

import kubernetes.client as kc
import pytest
import structlog.testing
import tenacity
from typer.testing import CliRunner

from canary import crd
from canary import rollout as rl
from canary.cli import app
from canary.controller import Controller
from canary.errors import RoutingConflict
from canary.logs import get as get_logger
from canary.model import Target, Weights
from canary.reconcile import execute, promote_owner
from canary.routing.istio import IstioRouter
from canary import sweep
from tests import fleet
from tests.fakes import FakeClock
from tests.integration.test_controller import _fresh, _progressing, prometheus, vs, world  # noqa: F401
from tests.integration.test_controller_review import _cr
from tests.support.killpoints import cluster_state, promote

pytestmark = pytest.mark.integration
OWNER = promote_owner("ci-runner:4026531836:4242:ab12")  # a promote on another machine: no /proc to read


@pytest.fixture
def cluster() -> Iterator[tuple[Any, Any, IstioRouter]]:
    """The strict API emulator with VirtualServices m0-m2 (DestinationRules alike), a client, and the
    router a `canary` command would use."""
    api = fleet.start_api(3)
    client = api.api_client()
    try:
        yield api, client, IstioRouter(client, wait=tenacity.wait_none())
    finally:
        client.close()
        api.stop()


def _controller(client: Any, clock: Any, **kw: Any) -> Controller:
    """A controller with no CanaryRollout to drive: only its sweep acts."""
    return Controller(custom=kc.CustomObjectsApi(client), core=kc.CoreV1Api(client),
                      router=IstioRouter(client, wait=tenacity.wait_none()), metrics=kw.pop("metrics", None),
                      namespace="ml", clock=clock, **kw)


def _left_safe(api: Any) -> list[str]:
    """What is wrong with route 0 once nobody drives it: traffic split, a record that disagrees with the
    weights, or a stable subset on another version than the record says serves."""
    weights, rec, stable, _ = cluster_state(api)
    out = []
    if weights != [100, 0]:
        out.append(f"traffic split {weights}")
    if [rec.get("weights", {}).get(k) for k in ("stable", "canary")] != weights:
        out.append(f"recorded weights {rec.get('weights')} vs {weights}")
    if rec.get("phase") not in (*rl.TERMINAL, rl.PENDING):
        out.append(f"recorded {rec.get('phase')}")
    if stable != (rec.get("canary_version") if rec.get("phase") == rl.PROMOTED else rec.get("stable_version")):
        out.append(f"stable subset selects {stable} while {rec.get('phase')}")
    return out


@pytest.mark.parametrize("version", ["v2", "v3"])
def test_a_promote_killed_after_any_write_and_never_run_again_ends_at_stable(version: str, cluster: Any) -> None:
    """A promote (looking every second) killed right after each of its writes in turn, and nobody runs it
    again: while the controller has seen its record unchanged for no more than 3 looks + 120 s it leaves
    it; after, every route is at 100/0 with a record and subsets that agree (a split rollout recorded
    aborted, its reason naming the gone process; one killed while promoting, every step passed,
    promoted). Before the sweep, a kill mid-rollout left the canary on 20-50% for good."""
    writes: list[str] = []
    api = fleet.start_api(1)
    try:
        promote(api.api_client(), version, FakeClock(), None, writes)
    finally:
        api.stop()
    split = 0
    for k in range(1, len(writes) + 1):
        api = fleet.start_api(1)
        client = api.api_client()
        try:
            clock = FakeClock()
            assert promote(client, version, clock, k, []) is None, f"not killed at write {k} ({writes[k - 1]})"
            before = cluster_state(api)
            rec = rl.RolloutState.from_json(json.dumps(before[1]))
            ctl = _controller(client, clock, sweep_every=0.001)
            ctl.tick()  # the sweep first sees the record now: its clock, never the record's, times it
            clock.sleep(sweep.abandoned_after(rec))  # seen unchanged exactly for the limit: not yet
            ctl.tick()
            assert cluster_state(api) == before, f"killed after write {k} ({writes[k - 1]}): swept too early"
            clock.sleep(1.0)
            with structlog.testing.capture_logs() as logs:
                ctl.tick()
            wrong = _left_safe(api)
            assert not wrong, f"killed after write {k} ({writes[k - 1]}), swept: {wrong}"
            after = cluster_state(api)[1]
            if before[1]["phase"] in (rl.PROGRESSING, rl.PROMOTING):
                split += 1
                if before[1]["phase"] == rl.PROMOTING:  # every step had passed: finished, as promote would
                    assert after["phase"] == rl.PROMOTED and "promotion finished by the sweep (abandoned: " in \
                        after["reason"], after
                else:
                    assert after["phase"] == rl.ABORTED and after["reason"].startswith(
                        "abandoned: run by `canary promote` (") and "its process is gone" in after["reason"], after
                    assert any(e["event"] == "rollout.aborted" and e["reason"] == after["reason"] for e in logs)
                abandoned = [e for e in logs if e["event"] == "rollout.abandoned"]
                assert abandoned and abandoned[0]["owner"] == rec.owner and abandoned[0]["seen_unchanged_s"] > 120
            else:
                assert after == before[1], f"killed after write {k} ({writes[k - 1]}): a {before[1]['phase']} rollout changed"
        finally:
            client.close()
            api.stop()
    assert split >= 2, f"only {split} kill points left a rollout in progress"
    print(f"\n{version}: {len(writes)} kill points, {split} left traffic split or a promotion half-done, "
          "never run again: all swept to a consistent end")


def _claim(router: IstioRouter, *, at: float, owner: str = OWNER, heartbeat_s: float = 10.0,
           vs_name: str = "m0", job: str = "") -> tuple[Target, rl.RolloutState]:
    """What a promote of v2 (in CI job `job`) writes to claim `vs_name` and move its first step, at time `at`."""
    t = Target(namespace="ml", virtual_service=vs_name, model=vs_name, stable_version="v1", canary_version="v2")
    log = get_logger(component="cli")
    s, actions = rl.new_rollout(model=vs_name, stable_version="v1", canary_version="v2", now=at, owner=owner,
                                heartbeat_s=heartbeat_s, job=job)
    s = execute(router, t, s, actions, log=log)
    begun, actions = rl.transition(s, rl.Begin(at), crd.parse(fleet.rollout_object(0, "v2")).policy)
    return t, execute(router, t, begun, actions, log=log, expect=s.to_json())


def test_an_owner_that_writes_between_the_scan_and_the_write_keeps_its_rollout(cluster: Any) -> None:
    """The promote was only slow: it records a look after the sweep read its stale record. The sweep's
    write is guarded on what it read: RoutingConflict, the live rollout stands."""
    api, client, router = cluster
    now = time.time()
    t, s = _claim(router, at=now - 1000)
    found = sweep.scan(router.list_virtual_services("ml"), lambda vs, key, text: 10**4, lambda owner: False).abandoned
    assert [f.key for f in found] == ["ml/m0"]
    looked = replace(s, look=1, updated_at=now)
    execute(router, t, looked, [rl.SetWeights(looked.weights)], log=get_logger(), expect=s.to_json())
    with pytest.raises(RoutingConflict):
        sweep.end(router, found[0], log=get_logger(), now=now)
    weights, rec = vs(api, 0)
    assert weights[1] > 0 and rec["phase"] == rl.PROGRESSING and rec["look"] == 1


def test_a_canaryrollout_deleted_without_its_finalizer_is_swept_with_no_claimant(world: Any, cluster: Any) -> None:
    """r0 runs v3 at 80/20; its finalizer is removed by hand and it is deleted. Nothing else names m0
    (the orphan used to be ended only by the next CanaryRollout that claimed m0): the next controller's
    sweep sends stable 100%, asking the API server first."""
    api, op, custom = world
    custom.create_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, fleet.rollout_object(0, "v3"))
    _progressing(op, custom, api)
    ctl = _fresh(op)
    ctl.tick()
    assert vs(api, 0)[1]["phase"] == rl.PROGRESSING, "a live CanaryRollout's rollout was swept"
    custom.patch_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, "r0", {"metadata": {"finalizers": None}})
    custom.delete_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, "r0")
    assert _cr(custom, "r0") is None and vs(api, 0)[0][1] > 0
    _fresh(op).tick()
    weights, rec = vs(api, 0)
    assert weights == [100, 0] and rec["phase"] == rl.ABORTED, (weights, rec)
    assert rec["reason"].startswith("orphaned: CanaryRollout ml/r0 no longer exists"), rec["reason"]


def test_a_shard_sweeps_only_its_own_routes_and_never_a_live_canaryrollouts(world: Any,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """r0 runs v3 on m0. A controller leading a shard that owns neither r0 nor m0 leaves it; one that owns
    m0 but not r0 sees r0 in its LIST (not only its own shard's CanaryRollouts) and leaves it too."""
    api, op, custom = world
    custom.create_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, fleet.rollout_object(0, "v3"))
    _progressing(op, custom, api)
    asked: list[str] = []
    monkeypatch.setattr(sweep, "crd_gone", lambda custom, owner: asked.append(owner) or True)
    for owns in (lambda obj: False, lambda obj: obj["metadata"]["name"] == "m0"):
        ctl = Controller(custom=op.custom, core=op.core, router=op.router, metrics=op.metrics, batch=op.batch,
                         namespace="ml", owns=owns)
        ctl.tick()
        assert vs(api, 0)[1]["phase"] == rl.PROGRESSING
    assert asked == [], "the API was asked about a CanaryRollout the LIST had just returned"


def test_a_sweep_every_of_zero_turns_it_off_and_it_runs_once_a_period(cluster: Any) -> None:
    """A promote looking every 10 s (limit 150 s) is gone: with --sweep-every 0 nothing ever ends it; with
    60 s, a sweep at most once a minute, and the rollout ends once seen unchanged for more than 150 s."""
    api, client, router = cluster
    clock = FakeClock(time.time())
    _claim(IstioRouter(client, wait=tenacity.wait_none()), at=clock.now() - 1000)
    off = _controller(client, clock, sweep_every=0)
    ctl = _controller(client, clock, sweep_every=60)
    for dt in (0, 30, 100):  # sweeps at 0 and 130 (not at 30): seen unchanged 130 s, not yet 150
        clock.sleep(dt)
        off.tick()
        ctl.tick()
        assert vs(api, 0)[1]["phase"] == rl.PROGRESSING
    clock.sleep(60)  # the next sweep: seen unchanged 190 s
    off.tick()
    ctl.tick()
    assert vs(api, 0)[1]["phase"] == rl.ABORTED and vs(api, 0)[0] == [100, 0]


def test_the_controller_sweeps_from_its_informer_cache(prometheus: Any) -> None:  # noqa: F811
    """With watches (`canary controller run`): the VirtualServices come from the cache; the write is
    still guarded on the record the cache held."""
    from tests.integration.test_controller_watch import Clock, caught_up, make

    api = fleet.start_api(2)
    clock = Clock(time.time())
    op, stop, client = make(api, prometheus, clock)
    try:
        router = IstioRouter(api.api_client(), wait=tenacity.wait_none())
        _claim(router, at=clock.t - 1000)
        t1, s1 = _claim(router, at=clock.t - 10, vs_name="m1")
        caught_up(api, op)
        op.tick()  # both first seen
        clock.t += 200  # past the 150 s limit; m1's promote looked meanwhile (alive), m0's did not
        execute(router, t1, replace(s1, look=1, updated_at=clock.t), [rl.SetWeights(s1.weights)], log=get_logger(),
                expect=s1.to_json())
        caught_up(api, op)
        op.tick()
        assert vs(api, 0)[0] == [100, 0] and vs(api, 0)[1]["phase"] == rl.ABORTED
        assert vs(api, 1)[0][1] > 0 and vs(api, 1)[1]["phase"] == rl.PROGRESSING
    finally:
        stop.set()
        client.close()
        api.stop()


# ---- `canary sweep` ---------------------------------------------------------------------------------


def _sweep(kubeconfig: Path, *args: str) -> Any:
    return CliRunner().invoke(app, ["sweep", "--kubeconfig", str(kubeconfig), *args])


def _age_mark(api: Any, name: str, seconds: float) -> None:
    """As if `canary sweep` had first seen the record on `name` `seconds` earlier (its memory between
    passes is the mark on the VirtualService, on the API server's clock)."""
    def edit(o: dict[str, Any]) -> None:
        mark = json.loads(o["metadata"]["annotations"][sweep.SEEN_ANNOTATION])
        mark["since"] -= seconds
        o["metadata"]["annotations"][sweep.SEEN_ANNOTATION] = json.dumps(mark)

    api.edit("networking.istio.io", "virtualservices", "ml", name, edit)


def test_the_sweeps_json_names_the_ci_job_of_each_rollouts_holder(tmp_path: Path, cluster: Any) -> None:
    """`canary sweep -o json` named each rollout's owner (a runner's host and pid) but not its CI job, which
    `canary status -o json` (`rollout.job`), the busy refusal's document (`holder_job`) and the sweep's own
    `rollout.abandoned` (`job`) name: a CronJob's report could not say which pipeline's job left the split. Each
    row now has `job` (null when none is recorded), and its `owner` shown as `holder` is (decision 456)."""
    api, client, router = cluster
    kubeconfig = fleet.write_kubeconfig(tmp_path / "kubeconfig", api.url)
    router = IstioRouter(client, wait=tenacity.wait_none())
    job = "https://github.com/acme/models/actions/runs/9876543210/attempts/1"
    now = time.time()
    _claim(router, at=now - 1000, job=job)
    _claim(router, at=now - 1000, vs_name="m1", owner="promote#" + "h" * 5000)
    first = _sweep(kubeconfig, "-n", "ml", "-o", "json")  # marks both: first seen now
    rows = {r["virtualService"]: r for r in json.loads(first.stdout)["watching"]}
    assert rows["ml/m0"]["job"] == job and rows["ml/m1"]["job"] is None, rows
    assert len(rows["ml/m1"]["owner"]) < 400 and rows["ml/m0"]["owner"] == OWNER
    _age_mark(api, "m0", 151)
    done = _sweep(kubeconfig, "-n", "ml", "-o", "json")  # the row of the rollout it ended, as on-call reads it
    rows = {r["virtualService"]: r for r in json.loads(done.stdout)["abandoned"]}
    assert rows["ml/m0"]["job"] == job and rows["ml/m0"]["result"] == "stable 100%, recorded aborted", done.stdout


def test_canary_sweep_marks_then_ends_only_what_stayed_unchanged(tmp_path: Path, cluster: Any) -> None:
    """m0: a promote (looks every 10 s: 150 s) that never writes again; m1: one that writes between the
    passes; m2: a paused one. A dry run writes nothing, not even marks; the first pass marks m0 and m1
    (the API server's time) and ends nothing, whatever the records' own times say; once m0's mark is
    older than 150 s a dry run names it and writes nothing; the pass after ends m0 only and marks m1
    again (it wrote); a last pass finds m0 ended and watches m1."""
    api, client, router = cluster
    kubeconfig = fleet.write_kubeconfig(tmp_path / "kubeconfig", api.url)
    router = IstioRouter(client, wait=tenacity.wait_none())
    now = time.time()
    _claim(router, at=now - 1000)
    t1, s1 = _claim(router, at=now - 10, vs_name="m1")
    t2, s2 = _claim(router, at=now - 86400, vs_name="m2")
    p, actions = rl.transition(s2, rl.Pause(now - 86400, "a person holds it"), None)  # type: ignore[arg-type]
    execute(router, t2, p, actions, log=get_logger(), expect=s2.to_json())
    before = [api.get("networking.istio.io", "virtualservices", "ml", f"m{i}") for i in range(3)]

    dry = _sweep(kubeconfig, "-n", "ml", "--dry-run", "-o", "json")
    assert dry.exit_code == 0, dry.output
    got = json.loads(dry.stdout)
    assert got["abandoned"] == [] and [r["virtualService"] for r in got["watching"]] == ["ml/m0", "ml/m1"]
    assert all("dry run: not marked" in r["result"] for r in got["watching"])
    assert [api.get("networking.istio.io", "virtualservices", "ml", f"m{i}") for i in range(3)] == before

    first = _sweep(kubeconfig, "-n", "ml")
    assert first.exit_code == 0, first.output
    assert "ml/m0: v2 progressing at 80/20: watching: first seen now; ended if still unchanged after 150s" in first.stdout
    assert vs(api, 0)[1]["phase"] == rl.PROGRESSING, "a record's own old time must not end it"
    _age_mark(api, "m0", 151)
    _age_mark(api, "m1", 151)
    execute(router, t1, replace(s1, look=1, updated_at=now), [rl.SetWeights(s1.weights)], log=get_logger(),
            expect=s1.to_json())  # m1's promote looks: alive

    dry = _sweep(kubeconfig, "-n", "ml", "--dry-run", "-o", "json")
    rows = json.loads(dry.stdout)["abandoned"]
    assert [r["virtualService"] for r in rows] == ["ml/m0"] and rows[0]["owner"] == OWNER, dry.stdout
    assert rows[0]["seenUnchangedS"] >= 151 and rows[0]["result"].startswith("dry-run")
    assert vs(api, 0)[1]["phase"] == rl.PROGRESSING

    done = _sweep(kubeconfig, "-n", "ml")
    assert done.exit_code == 0, done.output
    assert "ml/m0: v2 progressing at 80/20: stable 100%, recorded aborted" in done.stdout
    assert "ml/m1: v2 progressing at 80/20: watching: first seen now" in done.stdout
    weights, rec = vs(api, 0)
    assert weights == [100, 0] and rec["phase"] == rl.ABORTED and "has not written this rollout for" in rec["reason"]
    assert vs(api, 1)[1]["look"] == 1 and vs(api, 1)[0][1] > 0
    assert api.get("networking.istio.io", "virtualservices", "ml", "m2")["spec"] == before[2]["spec"]

    again = _sweep(kubeconfig, "-A")
    assert again.exit_code == 0
    assert again.stdout.strip().startswith("ml/m1: v2 progressing at 80/20: watching: unchanged for "), again.stdout


def test_canary_sweep_exits_6_when_the_stable_write_fails_and_2_on_bad_flags(tmp_path: Path, cluster: Any) -> None:
    """A stable-100% write refused (403) leaves the route split: exit 6 and the critical `traffic.unsafe`,
    as promote and rollback say it (it was exit 3, which reads "otherwise 100% stable")."""
    api, client, router = cluster
    kubeconfig = fleet.write_kubeconfig(tmp_path / "kubeconfig", api.url)
    _claim(IstioRouter(client, wait=tenacity.wait_none()), at=time.time() - 1000)
    both = _sweep(kubeconfig, "-n", "ml", "-A")
    assert both.exit_code == 2 and "not both" in both.output
    assert _sweep(kubeconfig, "-n", "ml").exit_code == 0  # marks
    _age_mark(api, "m0", 151)
    api.fail_next(403, times=100, methods=("PUT", "PATCH"), plural="virtualservices")
    failed = _sweep(kubeconfig, "-n", "ml")
    api.handler.faults.clear()
    assert failed.exit_code == 6, failed.output
    assert "ml/m0: v2 progressing at 80/20: failed:" in failed.stdout
    assert "traffic may still be split on ml/m0" in failed.stdout
    assert vs(api, 0)[1]["phase"] == rl.PROGRESSING
    assert _sweep(kubeconfig, "-n", "ml").exit_code == 0 and vs(api, 0)[0] == [100, 0]


def test_a_ctrl_c_lost_in_a_routes_write_stops_the_sweep_before_the_next_route(
        tmp_path: Path, cluster: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C landing inside the Kubernetes client (pydantic's `validate_call`) was lost or came out as the API
    unreachable: the pass wrote the next abandoned route too and ended exit 3 "could not complete". It now stops
    before the next route, as a Ctrl-C that was not lost (exit 130, decision 240)."""
    import signal

    from canary.errors import KubeUnavailable

    api, client, router = cluster
    kubeconfig = fleet.write_kubeconfig(tmp_path / "kubeconfig", api.url)
    for name in ("m0", "m1"):
        _claim(IstioRouter(client, wait=tenacity.wait_none()), at=time.time() - 1000, vs_name=name)
    assert _sweep(kubeconfig, "-n", "ml").exit_code == 0  # marks both
    for name in ("m0", "m1"):
        _age_mark(api, name, 151)
    ended: list[str] = []

    def end(_router: Any, found: Any, **_kw: Any) -> Any:
        ended.append(found.key)
        try:
            signal.raise_signal(signal.SIGINT)
        except BaseException:  # noqa: BLE001 - lost, as "Exception ignored in" loses it
            pass
        raise KubeUnavailable("SchemaError: the validator of replace_namespaced_custom_object")

    monkeypatch.setattr(sweep, "end", end)
    handler = signal.getsignal(signal.SIGINT)
    out = _sweep(kubeconfig, "-n", "ml")
    assert out.exit_code == 130 and ended == ["ml/m0"], (out.exit_code, ended, out.output)
    assert "could not complete" not in out.output
    # what the pass did is still reported: the route whose write the Ctrl-C cut, and the one never reached
    assert "ml/m0: v2 progressing at 80/20: interrupted during its write: it may have landed" in out.stdout
    assert "ml/m1: v2 progressing at 80/20: interrupted before it was answered: nothing written" in out.stdout
    assert signal.getsignal(signal.SIGINT) is handler
    assert vs(api, 1)[1]["phase"] == rl.PROGRESSING  # nothing written after the Ctrl-C

    ended.clear()  # -o json promises a document: one, naming the interruption, and the same rows
    doc = _sweep(kubeconfig, "-n", "ml", "-o", "json")
    assert doc.exit_code == 130 and ended == ["ml/m0"], (doc.exit_code, ended, doc.output)
    report = json.loads(doc.stdout)
    assert report["interrupted"] is True and report["dryRun"] is False
    assert [(r["virtualService"], r["result"].split(":")[0]) for r in report["abandoned"]] == [
        ("ml/m0", "interrupted during its write"), ("ml/m1", "interrupted before it was answered")]
    assert json.loads(_sweep(kubeconfig, "-n", "ml", "-o", "json", "--dry-run").stdout)["interrupted"] is False


def test_a_live_promote_whose_rollout_was_swept_stops_with_the_sweeps_reason() -> None:
    """A sweeper that judged a live promote gone (one that timed it wrongly) ends its rollout
    between two looks. The promote adopts the ended record (its own, same owner and start), writes
    nothing more and ends `aborted` with the sweep's reason: exit 3, never a promotion."""
    from canary.policy import parse_policy
    from canary.runner import Runner
    from tests.fakes import FakeMetrics
    from tests.support.killpoints import LiveWeights

    api = fleet.start_api(1)
    client = api.api_client()
    try:
        clock = FakeClock(time.time())
        real = IstioRouter(client, wait=tenacity.wait_none())
        target = Target(namespace="ml", virtual_service="m0", model="m0", stable_version="", canary_version="v2")
        swept: list[str] = []

        class SweptAfterFirstStep:
            """The promote's router; once 80/20 is written, a sweeper 10,000 s ahead ends the rollout."""

            def __getattr__(self, name: str) -> Any:
                return getattr(real, name)

            def set_weights(self, t: Target, weights: Weights, **kw: Any) -> Any:
                out = real.set_weights(t, weights, **kw)
                if weights.canary > 0 and not swept:
                    found = sweep.scan(real.list_virtual_services("ml"), lambda vs, key, text: 10**4,
                                       lambda o: False).abandoned
                    swept.append(sweep.end(real, found[0], log=get_logger(), now=clock.now()).reason)
                return out

        metrics = FakeMetrics(LiveWeights(real, target), clock, slowdown=lambda t: 1.0, rps=1000.0)  # type: ignore[arg-type]
        runner = Runner(policy=parse_policy(fleet.FAST_POLICY), target=target, router=SweptAfterFirstStep(),
                        metrics=metrics, clock=clock)
        writes_before = sum(n for (verb, plural), n in api.handler.requests.items()
                            if verb in ("PUT", "PATCH") and plural == "virtualservices")
        result = runner.run()
        assert swept and result.state.phase == rl.ABORTED and result.state.reason == swept[0], result.state
        assert result.exit_code == 3
        weights, rec = vs(api, 0)
        assert weights == [100, 0] and rec["phase"] == rl.ABORTED and rec["reason"] == swept[0]
        assert cluster_state(api)[2] == "v1", "the stable subset must still select the stable version"
        writes = sum(n for (verb, plural), n in api.handler.requests.items()
                     if verb in ("PUT", "PATCH") and plural == "virtualservices") - writes_before
        # the claim, the first step, the sweep's stable 100%: nothing of the promote's after it
        assert writes == 3, f"{writes} VirtualService writes: the promote kept writing after its rollout was swept"
    finally:
        client.close()
        api.stop()
