"""One rollout history per (VirtualService, model) (docs/decisions.md 127), against the strict API
emulator and the real `canary report` CLI: two models' rollouts on one VirtualService keep two
histories, each with only its own looks; the model named as the VirtualService keeps
`<vs>-canary-history`; an old history of another model in that ConfigMap is read for that model only,
saying so."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import kubernetes.client as kc
import pytest
import tenacity

from canary import rollout as rl
from canary.history_store import KEY, ConfigMapStore, Recorder, configmap_name
from canary.model import Target
from canary.policy import parse_policy
from canary.routing.istio import IstioRouter
from canary.runner import Runner
from canary.sandbox.kubeapi import KubeAPIServer
from tests import fleet
from tests.fakes import FakeClock, FakeMetrics
from tests.support.killpoints import LiveWeights

from tests.integration.test_vs_shapes import _shared
from tests.unit.test_history import MemoryStore, drive
from tests.unit.test_runner import POLICY

pytestmark = pytest.mark.integration


def report(api: KubeAPIServer, tmp: Path, model: str, *args: str) -> subprocess.CompletedProcess[str]:
    config = fleet.write_kubeconfig(tmp / "kubeconfig", api.url)
    from tests.support import cli  # the real CLI in this process

    return cli.run(["report", model, "-n", "ml", "--kubeconfig", str(config), "-o", "json", *args],
                   env={"KUBECONFIG": ""})


def looks(doc: dict[str, Any]) -> list[int]:
    return [lk["n"] for lk in doc["looks"]]


def configmaps(api: KubeAPIServer) -> set[str]:
    core = kc.CoreV1Api(api.api_client())
    return {cm.metadata.name for cm in core.list_namespaced_config_map("ml").items}


def test_two_models_interleaved_on_one_virtual_service_keep_two_histories(tmp_path: Path) -> None:
    """Model `rec` (named as the VirtualService) and model `m1` on VirtualService `rec`, their rollouts'
    flushes interleaved. One ConfigMap for both made each recorder's append meet the other's write (409)
    and rewrite the history with its own rollout: it alternated between the two, and `canary report rec`
    showed m1's rollout. Now two ConfigMaps, each with only its model's looks, each written by one
    create and then appends alone (no conflict, no rewrite)."""
    with KubeAPIServer() as api:
        core = kc.CoreV1Api(api.api_client())

        def recorder() -> Recorder:
            return Recorder(ConfigMapStore(core), namespace="ml", virtual_service="rec", policy=POLICY,
                            source="controller", flush_every=2)

        a, b = recorder(), recorder()
        for lo in range(1, 13, 2):  # two looks of rec's rollout, two of m1's, and again
            drive(a, range(lo, lo + 2), model="rec", canary="v2", started=900.0)
            drive(b, range(lo, lo + 2), model="m1", canary="v7", started=950.0)
        requests = {k: v for k, v in api.handler.requests.items() if k[1] == "configmaps"}
        assert requests.get(("PUT", "configmaps"), 0) == 0, requests  # never a conflict's rewrite

        legacy, own = "rec-canary-history", configmap_name("rec", "m1")
        assert configmaps(api) == {legacy, own} and own != legacy
        for name, model, version in [(legacy, "rec", "v2"), (own, "m1", "v7")]:
            cm = api.get("", "configmaps", "ml", name)
            assert cm["metadata"]["labels"]["modelcanary.dev/model"] == model
            assert len(cm["data"]) > 1 and KEY in cm["data"]  # history.json and the parts appended

        mine = report(api, tmp_path, "rec")
        assert mine.returncode == 0, mine.stderr[-3000:]
        doc = json.loads(mine.stdout)
        assert (doc["rollout"]["model"], doc["rollout"]["canary_version"]) == ("rec", "v2")
        assert looks(doc) == list(range(1, 13))
        theirs = report(api, tmp_path, "m1", "--virtual-service", "rec")
        assert theirs.returncode == 0, theirs.stderr[-3000:]
        doc = json.loads(theirs.stdout)
        assert (doc["rollout"]["model"], doc["rollout"]["canary_version"]) == ("m1", "v7")
        assert looks(doc) == list(range(1, 13))
        assert "report.legacy_history" not in mine.stderr + theirs.stderr


def _promote(api: Any, model: str, route: str, clock: FakeClock) -> Runner:
    """`canary promote MODEL --virtual-service shared --route ROUTE --destination-rule MODEL` of v2."""
    target = Target(namespace="ml", virtual_service="shared", model=model, stable_version="", canary_version="v2",
                    route=route, destination_rule=model)
    router = IstioRouter(api.api_client(), wait=tenacity.wait_none())
    metrics = FakeMetrics(LiveWeights(router, target), clock, slowdown=lambda t: 1.0, rps=1000.0)
    return Runner(policy=parse_policy(fleet.FAST_POLICY), target=target, router=router, metrics=metrics, clock=clock)


def test_a_later_rollout_of_another_model_keeps_the_first_models_history(tmp_path: Path) -> None:
    """`canary promote m0` on route `a` of VirtualService `shared`, then `canary promote m1` on route `b`:
    m1's rollout replaced m0's history ("the latest rollout of the VirtualService"). Now each model's
    report shows its own rollout, and neither is in `shared-canary-history`."""
    api = fleet.start_api(2)
    try:
        _shared(api)
        clock = FakeClock()
        first = _promote(api, "m0", "a", clock).run()
        assert first.state.phase == rl.PROMOTED
        second = _promote(api, "m1", "b", FakeClock(clock.now() + 60)).run()
        assert second.state.phase == rl.PROMOTED
        for model, res in [("m0", first), ("m1", second)]:
            out = report(api, tmp_path, model, "--virtual-service", "shared")
            assert out.returncode == 0, out.stderr[-3000:]
            doc = json.loads(out.stdout)
            assert doc["rollout"]["model"] == model and doc["rollout"]["route"] == ("a" if model == "m0" else "b")
            assert doc["phase"] == rl.PROMOTED and looks(doc) == list(range(1, res.state.look + 1))
        assert configmaps(api) >= {configmap_name("shared", "m0"), configmap_name("shared", "m1")}
        assert "shared-canary-history" not in configmaps(api)
    finally:
        api.stop()


def _old_history(core: Any, model: str) -> None:
    """A history of `model`'s rollout on VirtualService `rec` as every writer before decision 127 left it:
    in `rec-canary-history`, whatever the model."""
    memory = MemoryStore()
    drive(Recorder(memory, namespace="ml", virtual_service="rec", policy=POLICY, source="promote"),  # type: ignore[arg-type]
          range(1, 5), model=model, canary="v3")
    assert memory.doc is not None
    ConfigMapStore(core).save("ml", "rec", memory.doc, None)  # no model: the name of old


def test_an_old_history_of_another_model_is_read_for_that_model_only(tmp_path: Path) -> None:
    """Before decision 127 a model's history on a VirtualService named otherwise went into
    `<vs>-canary-history`. `canary report m1 --virtual-service rec` reads it there while m1 has no
    ConfigMap of its own, saying so; `canary report rec` (the model that name now belongs to) refuses
    it naming whose it is, and so does another model's report; once m1 records a rollout, its own."""
    with KubeAPIServer() as api:
        core = kc.CoreV1Api(api.api_client())
        _old_history(core, "m1")

        old = report(api, tmp_path, "m1", "--virtual-service", "rec")
        assert old.returncode == 0, old.stderr[-3000:]
        doc = json.loads(old.stdout)
        assert (doc["rollout"]["model"], looks(doc)) == ("m1", [1, 2, 3, 4])
        assert "report.legacy_history" in old.stderr and "ml/rec-canary-history" in old.stderr

        default = report(api, tmp_path, "rec")
        assert default.returncode == 2 and default.stdout == ""
        assert "ConfigMap ml/rec-canary-history holds the history of model 'm1', not of 'rec'" in default.stderr
        assert "canary report m1 --virtual-service rec" in default.stderr

        other = report(api, tmp_path, "m2", "--virtual-service", "rec")
        assert other.returncode == 2 and other.stdout == ""
        assert (f"no rollout history for ml/rec of model 'm2': ConfigMap ml/{configmap_name('rec', 'm2')} not "
                "found (no rollout recorded one yet); ConfigMap ml/rec-canary-history holds model 'm1''s") in other.stderr

        rec = Recorder(ConfigMapStore(core), namespace="ml", virtual_service="rec", policy=POLICY, source="controller")
        drive(rec, range(1, 3), model="m1", canary="v4", started=2000.0)  # m1's next rollout: its own ConfigMap
        new = report(api, tmp_path, "m1", "--virtual-service", "rec")
        assert new.returncode == 0, new.stderr[-3000:]
        doc = json.loads(new.stdout)
        assert (doc["rollout"]["canary_version"], looks(doc)) == ("v4", [1, 2])
        assert "report.legacy_history" not in new.stderr
        assert api.get("", "configmaps", "ml", "rec-canary-history") is not None  # left as it was


def test_a_rollout_in_progress_across_the_upgrade_keeps_its_earlier_looks(tmp_path: Path) -> None:
    """Decision 128. m1's rollout on VirtualService `rec` recorded looks 1-4 into `rec-canary-history`
    (every writer before decision 127), then the controller (or promote) was upgraded and went on with
    the same rollout: its looks 5-8 went into m1's own new ConfigMap, started empty, and `canary report m1
    --virtual-service rec` (which reads the own one once it exists) lost looks 1-4. Now the own ConfigMap
    starts from the old records of that very rollout; the old ConfigMap is left as it was."""
    with KubeAPIServer() as api:
        core = kc.CoreV1Api(api.api_client())
        _old_history(core, "m1")  # m1's v3 rollout, started at 900, looks 1-4
        rec = Recorder(ConfigMapStore(core), namespace="ml", virtual_service="rec", policy=POLICY, source="promote")
        drive(rec, range(5, 9), model="m1", canary="v3")  # the same rollout, after the upgrade
        out = report(api, tmp_path, "m1", "--virtual-service", "rec")
        assert out.returncode == 0, out.stderr[-3000:]
        doc = json.loads(out.stdout)
        assert (doc["rollout"]["canary_version"], looks(doc)) == ("v3", list(range(1, 9)))
        assert "report.legacy_history" not in out.stderr  # its own ConfigMap, read
        assert api.get("", "configmaps", "ml", "rec-canary-history") is not None

        # another model's rollout of the same version and start does not take m1's old looks
        rec = Recorder(ConfigMapStore(core), namespace="ml", virtual_service="rec", policy=POLICY, source="promote")
        drive(rec, range(1, 3), model="m2", canary="v3")
        out = report(api, tmp_path, "m2", "--virtual-service", "rec")
        assert out.returncode == 0 and looks(json.loads(out.stdout)) == [1, 2], out.stderr[-3000:]


def test_the_default_models_first_write_moves_another_models_old_history_to_its_own(tmp_path: Path) -> None:
    """Decision 131 (d). m1's rollout recorded looks 1-4 into `rec-canary-history` before the upgrade. After
    it, model `rec` (the one that name now belongs to) wrote its first rollout there before m1's next flush:
    m1's looks 1-4 were written over, and its report after the upgrade showed looks 5-8 alone. Now `rec`'s
    first write moves m1's history into m1's own ConfigMap first (`history.legacy_moved`), and m1's rollout
    goes on from there."""
    import structlog.testing

    with KubeAPIServer() as api:
        core = kc.CoreV1Api(api.api_client())
        _old_history(core, "m1")  # m1's v3 rollout, started at 900, looks 1-4
        rec = Recorder(ConfigMapStore(core), namespace="ml", virtual_service="rec", policy=POLICY, source="promote")
        with structlog.testing.capture_logs() as logs:
            drive(rec, range(1, 3), model="rec", canary="v7", started=3000.0)
        moved = [e for e in logs if e["event"] == "history.legacy_moved"]
        assert len(moved) == 1 and moved[0]["to_configmap"] == configmap_name("rec", "m1"), logs
        assert configmaps(api) == {"rec-canary-history", configmap_name("rec", "m1")}

        mine = report(api, tmp_path, "rec")
        assert mine.returncode == 0, mine.stderr[-3000:]
        assert (json.loads(mine.stdout)["rollout"]["canary_version"], looks(json.loads(mine.stdout))) == ("v7", [1, 2])
        before = report(api, tmp_path, "m1", "--virtual-service", "rec")
        assert before.returncode == 0, before.stderr[-3000:]
        assert looks(json.loads(before.stdout)) == [1, 2, 3, 4]

        m1 = Recorder(ConfigMapStore(core), namespace="ml", virtual_service="rec", policy=POLICY, source="promote")
        drive(m1, range(5, 9), model="m1", canary="v3")  # the same rollout goes on after the upgrade
        after = report(api, tmp_path, "m1", "--virtual-service", "rec")
        assert after.returncode == 0, after.stderr[-3000:]
        assert (json.loads(after.stdout)["rollout"]["canary_version"], looks(json.loads(after.stdout))) == \
            ("v3", list(range(1, 9)))

        # a second rollout of `rec` finds its own history there now: nothing more is moved
        again = Recorder(ConfigMapStore(core), namespace="ml", virtual_service="rec", policy=POLICY, source="promote")
        with structlog.testing.capture_logs() as logs:
            drive(again, range(1, 2), model="rec", canary="v8", started=5000.0)
        assert not [e for e in logs if e["event"] == "history.legacy_moved"]


def test_an_older_own_history_is_replaced_by_the_newer_one_being_moved() -> None:
    """Decision 131 (d), from the review. m1 has its own ConfigMap with an older rollout (v2, started 500), and
    an older promote wrote m1's later rollout (v3, started 900) into `rec-canary-history`. The hand-over's
    create met 409 and was skipped without a word: `rec` wrote over v3, and m1's report showed v2. Now the
    newer history replaces the older one (guarded on its resourceVersion); an own ConfigMap with a later
    rollout is kept, and the line says the older one was dropped."""
    import structlog.testing

    from canary.history_store import load_history

    with KubeAPIServer() as api:
        core = kc.CoreV1Api(api.api_client())
        own = Recorder(ConfigMapStore(core), namespace="ml", virtual_service="rec", policy=POLICY, source="promote")
        drive(own, range(1, 3), model="m1", canary="v2", started=500.0)
        _old_history(core, "m1")  # m1's v3 rollout, started 900, looks 1-4
        rec = Recorder(ConfigMapStore(core), namespace="ml", virtual_service="rec", policy=POLICY, source="promote")
        with structlog.testing.capture_logs() as logs:
            drive(rec, range(1, 3), model="rec", canary="v7", started=3000.0)
        m1 = load_history(core, "ml", "rec", "m1")
        assert (m1["rollout"]["canary_version"], looks(m1)) == ("v3", [1, 2, 3, 4])
        assert [e["moved"] for e in logs if e["event"] == "history.legacy_moved"] == [True]

    with KubeAPIServer() as api:  # the other way round: the own ConfigMap's rollout is the later one
        core = kc.CoreV1Api(api.api_client())
        _old_history(core, "m1")  # v3, started 900
        own = Recorder(ConfigMapStore(core), namespace="ml", virtual_service="rec", policy=POLICY, source="promote")
        drive(own, range(1, 3), model="m1", canary="v5", started=2000.0)
        rec = Recorder(ConfigMapStore(core), namespace="ml", virtual_service="rec", policy=POLICY, source="promote")
        with structlog.testing.capture_logs() as logs:
            drive(rec, range(1, 3), model="rec", canary="v7", started=3000.0)
        m1 = load_history(core, "ml", "rec", "m1")
        assert (m1["rollout"]["canary_version"], looks(m1)) == ("v5", [1, 2])
        assert [e["moved"] for e in logs if e["event"] == "history.legacy_moved"] == [False]


def test_a_hand_over_refused_for_good_does_not_block_the_default_models_history() -> None:
    """Decision 131 (d), from the review. A namespace at its ConfigMap quota refuses the hand-over's create
    (403): every flush of `rec` failed at it, and `rec` had no history for any rollout to come. Now the
    refusal is said once per flush that meets it (`history.legacy_dropped`, naming both ConfigMaps) and
    `rec`'s history is written."""
    import structlog.testing

    from canary.history_store import load_history
    from canary.sandbox.kubeapi import Fault

    with KubeAPIServer() as api:
        core = kc.CoreV1Api(api.api_client())
        _old_history(core, "m1")
        api.handler.faults.append(Fault(403, 10_000, frozenset({"POST"}), "configmaps"))
        rec = Recorder(ConfigMapStore(core), namespace="ml", virtual_service="rec", policy=POLICY, source="promote")
        with structlog.testing.capture_logs() as logs:
            drive(rec, range(1, 4), model="rec", canary="v7", started=3000.0)
        dropped = [e for e in logs if e["event"] == "history.legacy_dropped"]
        assert len(dropped) == 1 and dropped[0]["to_configmap"] == configmap_name("rec", "m1"), logs
        assert not [e for e in logs if e["event"] == "history.write_failed"]
        doc = load_history(core, "ml", "rec", "rec")
        assert (doc["rollout"]["canary_version"], looks(doc)) == ("v7", [1, 2, 3])
