"""On-call commands through the real CLI: status, pause, resume, rollback (also --route, any weights), analyze."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

from canary import rollout as rl
from canary.kube import api_client
from canary.model import Target, Weights
from canary.routing.istio import IstioRouter
from canary.sandbox.kubeapi import KubeAPIServer
from canary.sandbox.promserver import PromServer
from tests import fleet
from tests.support import cli
from tests.support.kube import shipped_istio_objects

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
GROUP = "networking.istio.io"
TARGET = Target(namespace="ml", virtual_service="rec-model", model="rec-model", stable_version="v1", canary_version="v2")


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[KubeAPIServer, Path]]:
    api = KubeAPIServer(seed=shipped_istio_objects()).start()
    kubeconfig = fleet.write_kubeconfig(tmp_path / "kubeconfig", api.url)
    yield api, kubeconfig
    api.stop()


def canary(*args: str, kubeconfig: Path | None = None) -> subprocess.CompletedProcess[str]:
    """The real CLI in this process (tests/support/cli.py); the tests of what only a process shows (a watch
    followed through its pipe, a signal) start one."""
    extra = ["--kubeconfig", str(kubeconfig)] if kubeconfig else []
    return cli.run([*args, *extra], env={"KUBECONFIG": ""})


def in_progress(kubeconfig: Path, weights: Weights = Weights(75, 25)) -> None:
    router = IstioRouter(api_client(kubeconfig=str(kubeconfig)))
    state = rl.RolloutState(model="rec-model", stable_version="v1", canary_version="v2", phase=rl.PROGRESSING,
                            weights=weights, step=1, started_at=1.0, step_started_at=2.0)
    router.set_weights(TARGET, weights, state=state.to_json())


def vs(api: KubeAPIServer) -> tuple[list[int], dict[str, Any]]:
    obj = api.get(GROUP, "virtualservices", "ml", "rec-model")
    return [d["weight"] for d in obj["spec"]["http"][0]["route"]], json.loads(obj["metadata"]["annotations"]["modelcanary.dev/rollout"])


def test_status_pause_resume_rollback(cluster: Any) -> None:
    api, kc = cluster
    res = canary("status", "rec-model", "-n", "ml", "-o", "json", kubeconfig=kc)
    assert res.returncode == 0 and json.loads(res.stdout)["rollout"] is None
    in_progress(kc)
    st = json.loads(canary("status", "rec-model", "-n", "ml", "-o", "json", kubeconfig=kc).stdout)
    assert st["weights"] == {"stable": 75, "canary": 25} and st["rollout"]["phase"] == rl.PROGRESSING
    # the record's 0-based index beside the step as people count it (logs, CR status, the text below)
    assert st["rollout"]["step"] == 1 and st["rollout"]["step_number"] == 2
    human = canary("status", "rec-model", "-n", "ml", kubeconfig=kc)
    assert human.returncode == 0 and "progressing" in human.stdout and "75/25" in human.stdout

    assert canary("pause", "rec-model", "-n", "ml", kubeconfig=kc).returncode == 0
    assert vs(api) == ([75, 25], vs(api)[1]) and vs(api)[1]["phase"] == rl.PAUSED
    assert canary("pause", "rec-model", "-n", "ml", kubeconfig=kc).returncode == 2  # already paused
    resumed = canary("resume", "rec-model", "-n", "ml", kubeconfig=kc)
    assert resumed.returncode == 0 and vs(api)[1]["phase"] == rl.PROGRESSING
    # no reason recorded: the line ends at the weights, without a trailing space
    assert resumed.stdout.splitlines()[0] == "progressing: weights 75/25 (stable/canary)", resumed.stdout

    res = canary("rollback", "rec-model", "-n", "ml", "--reason", "pager says so", "-o", "json", kubeconfig=kc)
    assert res.returncode == 0, res.stderr
    weights, state = vs(api)
    assert weights == [100, 0] and state["phase"] == rl.ROLLED_BACK and "pager says so" in state["reason"]
    again = canary("rollback", "rec-model", "-n", "ml", "-o", "json", kubeconfig=kc)  # idempotent: stable has 100%
    assert again.returncode == 0 and json.loads(again.stdout)["weights"] == {"stable": 100, "canary": 0}
    assert "stable already serves 100%" in json.loads(again.stdout)["note"] and vs(api)[1] == state
    assert any(e.get("reason") == "RollbackCompleted" for e in api.list("", "events", "ml"))
    text = canary("rollback", "rec-model", "-n", "ml", kubeconfig=kc)  # said once, not twice
    assert text.returncode == 0 and text.stdout.startswith("stable 100% already, nothing written: ml/rec-model: no "
                                                           "rollout in progress"), text.stdout


def test_rollback_forces_stable_when_traffic_is_split_without_a_record(cluster: Any) -> None:
    api, kc = cluster
    api.edit(GROUP, "virtualservices", "ml", "rec-model",
             lambda o: [d.__setitem__("weight", w) for d, w in zip(o["spec"]["http"][0]["route"], (60, 40))])
    assert canary("rollback", "rec-model", "-n", "ml", kubeconfig=kc).returncode == 0
    assert vs(api)[0] == [100, 0]


@pytest.mark.parametrize(("command", "code"), [("rollback", 6), ("pause", 3), ("status", 3)])
def test_unreachable_cluster_exits_without_traceback(tmp_path: Path, command: str, code: int) -> None:
    """A rollback that cannot reach the API server wrote nothing and cannot tell whether a canary gets traffic:
    exit 6, as a rollback whose stable-100% write failed (it was 3, "could not complete", decision 309); a pause
    or a status that cannot reach it changes nothing: exit 3."""
    kc = fleet.write_kubeconfig(tmp_path / "kc", "http://127.0.0.1:9")
    res = canary(command, "rec-model", "-n", "ml", kubeconfig=kc)
    said = "\n".join(line for line in res.stderr.splitlines() if not line.startswith("{"))
    assert res.returncode == code and "Traceback" not in res.stderr and said.startswith("error:"), res.stderr
    if command == "rollback":
        assert "stable 100% could not be written: the route could not be read" in said, said
        assert "nothing was written" in said and "its canary may still get traffic" in said, said
        assert '"event": "traffic.unsafe"' in res.stderr and '"weights": "unknown"' in res.stderr, res.stderr
        # named as every line names it (a query on virtual_service="rec-model" missed it; decision 677's addendum)
        [unsafe] = [json.loads(line) for line in res.stderr.splitlines() if '"event": "traffic.unsafe"' in line]
        assert (unsafe["virtual_service"], unsafe["namespace"]) == ("rec-model", "ml"), unsafe


def test_a_rollback_that_cannot_read_the_route_is_exit_6_and_writes_nothing(cluster: Any) -> None:
    """The API server answering every read of the VirtualService 429 (overloaded) past the client's retries,
    a rollout in progress at 75/25: the rollback wrote nothing, the canary still gets its 25%, and it said
    "could not complete", exit 3, with no `traffic.unsafe` (decision 309). Now exit 6 and the critical line
    with the weights unknown; a later rollback, the API server back, lands stable 100%."""
    api, kc = cluster
    in_progress(kc)
    api.fail_next(429, times=10_000, methods=("GET",), plural="virtualservices")
    res = canary("rollback", "rec-model", "-n", "ml", kubeconfig=kc)
    assert res.returncode == 6, res.stderr
    assert '"event": "traffic.unsafe"' in res.stderr and "nothing was written" in res.stderr, res.stderr
    api.handler.faults.clear()
    assert vs(api)[0] == [75, 25] and vs(api)[1]["phase"] == rl.PROGRESSING
    assert canary("rollback", "rec-model", "-n", "ml", kubeconfig=kc).returncode == 0
    assert vs(api)[0] == [100, 0]


def test_analyze_compares_the_arms_now(prom_server: PromServer, tmp_path: Path) -> None:
    policy = tmp_path / "p.yaml"
    policy.write_text(yaml.safe_dump({
        "steps": [10, 100], "metrics": {"source": "model"},
        "checks": [{"name": "errors", "kind": "error_rate", "max_increase_points": 1},
                   {"name": "lat", "kind": "latency", "max_increase_pct": 20}]}))
    res = canary("analyze", "rec", "-n", "ml", "--policy", str(policy), "--stable-version", "v1",
                 "--canary-version", "v2", "--window", "5m", "--prometheus-url", prom_server.url, "-o", "json")
    out = json.loads(res.stdout)
    by = {r["check"]: r for r in out["results"]}
    assert res.returncode == 1 and out["outcome"] == "fail"  # the dataset's canary has 10% errors vs 1%
    assert by["errors"]["outcome"] == "fail" and by["errors"]["canary_value"] > by["errors"]["stable_value"]
    table = canary("analyze", "rec", "-n", "ml", "--policy", str(policy), "--stable-version", "v1",
                   "--canary-version", "v2", "--window", "5m", "--prometheus-url", prom_server.url)
    assert table.returncode == 1 and "errors" in table.stdout and "fail" in table.stdout


def test_analyze_with_prometheus_down_exits_3_not_inconclusive(prom_server_factory: Any, tmp_path: Path) -> None:
    """`canary analyze` against a Prometheus that does not answer exited 4, "inconclusive or could not measure",
    which a pipeline reads as "not enough data yet" and retries blindly; every other command that reads Prometheus
    (`plan`, `drift check`, `promote`) exits 3 for it, "Prometheus unavailable". Now 3 too, with Prometheus's
    words and what to check; the verdict's evidence is still printed (decision 571)."""
    server = prom_server_factory()
    url = server.url
    server.stop()  # a Prometheus that was there: its port now refuses every connection
    policy = tmp_path / "p.yaml"
    policy.write_text(yaml.safe_dump({"steps": [10, 100], "metrics": {"scrape_interval": "15s"},
                                      "checks": [{"name": "errors", "kind": "error_rate", "max_rate_pct": 5}]}))
    res = canary("analyze", "rec", "-n", "ml", "--policy", str(policy), "--stable-version", "v1",
                 "--canary-version", "v2", "--window", "5m", "--prometheus-url", url, "-o", "json")
    assert res.returncode == 3, res.stderr
    assert json.loads(res.stdout)["outcome"] == "error"  # the evidence as before
    err = " ".join(res.stderr.split())
    assert f"error: Prometheus unavailable: check 'errors': Prometheus at {url} could not be asked" in err, err
    assert "(connection failed) (not measured: errors)" in err and "is it up, is --prometheus-url right?" in err, err


def test_on_call_commands_take_route_and_any_weights(cluster: Any) -> None:
    """Issue 8 through the real CLI (in-process cases: test_oncall_any_vs.py)."""
    api, kc = cluster
    shadow = {"name": "shadow", "match": [{"headers": {"x-canary": {"exact": "1"}}}],
              "route": [{"destination": {"host": "rec-model", "subset": "stable"}, "weight": 0},
                        {"destination": {"host": "rec-model", "subset": "canary"}, "weight": 100}]}

    def setup(obj: dict[str, Any]) -> None:
        obj["spec"]["http"].append(shadow)
        for d, w in zip(obj["spec"]["http"][0]["route"], (1, 1)):  # Istio's 50/50
            d["weight"] = w

    api.edit(GROUP, "virtualservices", "ml", "rec-model", setup)
    res = canary("rollback", "rec-model", "-n", "ml", kubeconfig=kc)
    assert res.returncode == 2 and "['primary', 'shadow']" in res.stderr and "--route" in res.stderr
    st = json.loads(canary("status", "rec-model", "-n", "ml", "--route", "primary", "-o", "json", kubeconfig=kc).stdout)
    assert st["raw_weights"] == {"stable": 1, "canary": 1} and st["weights"] == {"stable": 50, "canary": 50}
    res = canary("rollback", "rec-model", "-n", "ml", "--route", "primary", "-o", "json", kubeconfig=kc)
    assert res.returncode == 0, res.stderr
    weights, state = vs(api)
    assert weights == [100, 0] and state["phase"] == rl.ROLLED_BACK
    assert api.get(GROUP, "virtualservices", "ml", "rec-model")["spec"]["http"][1] == shadow


def test_status_watch_exits_by_phase_and_times_out(cluster: Any) -> None:
    """Issue 11, as `kubectl argo rollouts status`: --watch ends with the phase's exit code, and
    --timeout gives up on a rollout still running (exit 4) instead of polling forever. With no rollout
    recorded yet it waits too: it exited 0 at once, "promoted" to a pipeline that watched a CanaryRollout
    it had just applied (decision 161)."""
    api, kc = cluster
    res = canary("status", "rec-model", "-n", "ml", "--watch", "--timeout", "1s", "-o", "json", kubeconfig=kc)
    assert res.returncode == 4, res.stderr
    assert "timed out after 1s: no rollout is recorded on ml/rec-model" in res.stderr
    assert json.loads(res.stdout.splitlines()[0])["rollout"] is None
    in_progress(kc)
    res = canary("status", "rec-model", "-n", "ml", "--watch", "--timeout", "1s", "-o", "json", kubeconfig=kc)
    assert res.returncode == 4 and "timed out after 1s: the rollout is progressing" in res.stderr
    assert json.loads(res.stdout.splitlines()[0])["rollout"]["phase"] == rl.PROGRESSING
    assert canary("rollback", "rec-model", "-n", "ml", kubeconfig=kc).returncode == 0
    # the end of the version named is its outcome; without a name, an end already there is not (decision 165)
    res = canary("status", "rec-model", "-n", "ml", "--watch", "--canary-version", "v2", "-o", "json", kubeconfig=kc)
    assert res.returncode == 1 and json.loads(res.stdout)["rollout"]["phase"] == rl.ROLLED_BACK
    bad = canary("status", "rec-model", "-n", "ml", "--timeout", "5m", kubeconfig=kc)
    assert bad.returncode == 2 and "--timeout only applies with --watch" in bad.stderr
    bad = canary("status", "rec-model", "-n", "ml", "--watch", "--timeout", "soon", kubeconfig=kc)
    assert bad.returncode == 2 and "--timeout" in bad.stderr
    for flags in (["--canary-version", "v2"], ["--rollout", "r"]):
        bad = canary("status", "rec-model", "-n", "ml", *flags, kubeconfig=kc)
        assert bad.returncode == 2 and f"{flags[0]} only applies with --watch" in bad.stderr
    bad = canary("status", "rec-model", "-n", "ml", "-w", "--canary-version", "v2", "--rollout", "r", kubeconfig=kc)
    assert bad.returncode == 2 and "not both" in bad.stderr
    bad = canary("status", "rec-model", "-n", "ml", "-w", "--rollout", "nobody", kubeconfig=kc)
    assert bad.returncode == 2 and "CanaryRollout ml/nobody not found" in bad.stderr


def _ended(kubeconfig: Path, phase: str, version: str, started_at: float) -> None:
    """A rollout of `version` recorded ended in `phase` on ml/rec-model, stable 100% on the version that end
    serves."""
    router = IstioRouter(api_client(kubeconfig=str(kubeconfig)))
    router.point_subset(TARGET, "stable", version if phase == rl.PROMOTED else "v1")
    state = rl.RolloutState(model="rec-model", stable_version="v1", canary_version=version, phase=phase,
                            weights=Weights(100, 0), step=2, started_at=started_at, reason="done")
    router.set_weights(TARGET, Weights(100, 0), state=state.to_json())


def _rollout_cr(api: KubeAPIServer, version: str, status: dict[str, Any] | None = None) -> dict[str, Any]:
    """CanaryRollout ml/r for rec-model `version`, put as `kubectl apply` leaves it (a changed spec: a new
    generation), with `status` as the controller last wrote it (None: kept)."""
    from canary import crd
    from canary.sandbox.kubeapi import Resource

    if api.handler.kinds.get((crd.GROUP, crd.PLURAL)) is None:
        api.handler.register(Resource(crd.GROUP, crd.PLURAL, crd.KIND, (crd.VERSION,), status_subresource=True))
    old = api.get(crd.GROUP, crd.PLURAL, "ml", "r")
    obj = crd.new_object(namespace="ml", name="r", model="rec-model", canary_version=version,
                         policy_raw={"steps": [10, 100]})
    if status is not None or old is not None:
        obj["status"] = status if status is not None else old.get("status")
    return api.handler.put_object(obj)


def test_status_watch_never_reports_the_previous_rollouts_end_as_this_ones(cluster: Any) -> None:
    """Decision 165: a pipeline applies a CanaryRollout for v3 and runs `status -w`; the controller has not
    picked it up, and the route still records the previous rollout (v2) promoted. Each form waited for
    nothing and exited 0 by that old end: "promoted", for a v3 never judged. Now `--rollout` waits for the
    CanaryRollout's status at its current generation (as `kubectl argo rollouts status` waits for
    observedGeneration), `--canary-version` for that version's end, and with neither an end already there
    when the watch starts is not an answer: the next rollout's end is."""
    api, kc = cluster
    _ended(kc, rl.PROMOTED, "v2", started_at=1.0)
    # r ran v2 (its status promoted at generation 1); the pipeline applies v3 over it: generation 2
    _rollout_cr(api, "v2", {"phase": rl.PROMOTED, "observedGeneration": 1, "target": {"canaryVersion": "v2"}})
    assert _rollout_cr(api, "v3")["metadata"]["generation"] == 2
    watch = ("status", "rec-model", "-n", "ml", "-w", "--timeout", "1s", "-o", "json")
    res = canary(*watch, kubeconfig=kc)
    assert res.returncode == 4 and "(v2, promoted) ended before this watch started" in res.stderr, res.stderr
    assert json.loads(res.stdout.splitlines()[0])["rollout"]["phase"] == rl.PROMOTED  # shown, not taken as the end
    res = canary(*watch, "--canary-version", "v3", kubeconfig=kc)
    assert res.returncode == 4 and "the rollout recorded is v2's (promoted), not v3's" in res.stderr, res.stderr
    res = canary(*watch, "--rollout", "r", kubeconfig=kc)
    assert res.returncode == 4, res.stderr
    assert ("CanaryRollout ml/r generation 2 (v3) not yet observed by the controller (its status is of generation 1)"
            ": watching until it ends") in res.stderr

    # without a flag, the end of a rollout recorded after the watch started is the answer
    # (its --timeout only bounds a broken run: the test waits for the line, then for the exit)
    follower = subprocess.Popen([sys.executable, "-m", "canary", *watch[:-3], "120s", "-o", "json",
                                 "--kubeconfig", str(kc)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, cwd=ROOT, env={**os.environ, "KUBECONFIG": ""})
    try:
        err = ""
        while "ended before this watch started" not in err and follower.poll() is None:
            err += _next_line(follower)
        assert follower.poll() is None, err
        _ended(kc, rl.ROLLED_BACK, "v3", started_at=5.0)
        assert follower.wait(timeout=60) == 1
    finally:
        if follower.poll() is None:
            follower.kill()
            follower.wait()
    # the controller claims v3 (generation 2) and rolls it back: now that is r's outcome, and v3's
    _rollout_cr(api, "v3", {"phase": rl.PROGRESSING, "observedGeneration": 2, "target": {"canaryVersion": "v3"}})
    assert canary(*watch, "--rollout", "r", kubeconfig=kc).returncode == 4
    _rollout_cr(api, "v3", {"phase": rl.ROLLED_BACK, "observedGeneration": 2, "target": {"canaryVersion": "v3"}})
    res = canary(*watch, "--rollout", "r", kubeconfig=kc)
    assert res.returncode == 1 and "CanaryRollout ml/r: rolled_back" in res.stderr, res.stderr
    assert canary(*watch, "--canary-version", "v3", kubeconfig=kc).returncode == 1


def _next_line(proc: subprocess.Popen[str]) -> str:
    """The next line the process writes on stderr ("" once it is closed)."""
    assert proc.stderr is not None
    return proc.stderr.readline()


def _ended_on(kubeconfig: Path, phase: str, stable_subset: str) -> None:
    """An ended rollout whose stable subset was left on `stable_subset` (a process killed between its 100/0
    and its pointing, nobody following it)."""
    router = IstioRouter(api_client(kubeconfig=str(kubeconfig)))
    state = rl.RolloutState(model="rec-model", stable_version="v1", canary_version="v2", phase=phase,
                            weights=Weights(100, 0), step=1, started_at=1.0, reason="p95 breach")
    router.point_subset(TARGET, "canary", "v2")
    router.point_subset(TARGET, "stable", stable_subset)
    router.set_weights(TARGET, Weights(100, 0), state=state.to_json())


def test_status_names_and_rollback_repairs_a_rolled_back_record_on_the_new_version(cluster: Any) -> None:
    """Rolled back recorded, every request on v2: `canary status` says so (exit 0, `route_disagrees`),
    and `canary rollback` points the stable subset back at v1, guarded on that record, instead of
    answering "stable 100% already" (docs/decisions.md 94)."""
    api, kc = cluster
    _ended_on(kc, rl.ROLLED_BACK, "v2")
    res = canary("status", "rec-model", "-n", "ml", "-o", "json", kubeconfig=kc)
    assert res.returncode == 0, res.stderr
    assert "stable subset selects v2: every request is served by v2" in json.loads(res.stdout)["route_disagrees"]
    assert "rollout.route_disagrees" in res.stderr
    res = canary("rollback", "rec-model", "-n", "ml", "-o", "json", kubeconfig=kc)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["phase"] == rl.ROLLED_BACK and "subset.repaired" in res.stderr
    status = IstioRouter(api_client(kubeconfig=str(kc))).inspect(TARGET)
    assert status.stable_subset_version == "v1" and vs(api)[0] == [100, 0]
    res = canary("status", "rec-model", "-n", "ml", "-o", "json", kubeconfig=kc)
    assert "route_disagrees" not in json.loads(res.stdout)


def test_rollback_over_a_promotion_undoes_nothing_and_says_so(cluster: Any) -> None:
    """A promoted rollout is ended: `canary rollback` writes nothing (exit 0, stable 100% already) and says
    the new version was promoted and how to go back; when the stable subset was left on the old
    version, it says every request is served by it."""
    api, kc = cluster
    _ended_on(kc, rl.PROMOTED, "v2")
    res = canary("rollback", "rec-model", "-n", "ml", kubeconfig=kc)
    assert res.returncode == 0 and "v2 is the stable version now and was not rolled back" in res.stdout, res.stdout
    assert "--canary-version v1" in res.stdout and "note:" not in res.stdout
    _ended_on(kc, rl.PROMOTED, "v1")
    res = canary("rollback", "rec-model", "-n", "ml", kubeconfig=kc)
    assert res.returncode == 0 and "every request is served by v1" in res.stdout, res.stdout
    assert IstioRouter(api_client(kubeconfig=str(kc))).inspect(TARGET).stable_subset_version == "v1"


def test_a_rollback_naming_a_route_that_does_not_exist_rolls_back_the_rollouts_and_names_that_one(cluster: Any) -> None:
    """`canary rollback --route nosuch` mid-rollout sent the real route to stable (as it must: on-call's
    button never fails on a typo) but printed "(route nosuch)" and logged route=nosuch on every line: the
    incident's log named a route that does not exist. Now one warning names the route given, and the
    output and the lines after it name the route written."""
    api, kc = cluster
    in_progress(kc)
    res = canary("rollback", "rec-model", "-n", "ml", "--route", "nosuch", "--reason", "test", kubeconfig=kc)
    assert res.returncode == 0, res.stderr
    assert vs(api)[0] == [100, 0] and vs(api)[1]["phase"] == rl.ROLLED_BACK
    assert "(route nosuch)" not in res.stdout and "rolled_back" in res.stdout, res.stdout
    lines = [json.loads(x) for x in res.stderr.splitlines() if x.startswith("{")]
    warned = [x for x in lines if x.get("event") == "rollback.route_not_found"]
    assert len(warned) == 1 and warned[0]["route_given"] == "nosuch", lines
    assert not [x for x in lines if x.get("route") == "nosuch"], lines


def test_status_of_a_rollout_in_progress_says_which_commands_end_or_hold_it(cluster: Any) -> None:
    """On-call at night read a split (75/25, progressing) and no word of what to do about it: the text
    status of a rollout in progress now ends with the rollback and pause (paused: resume) commands, as
    pasted, with the --virtual-service and --route it was asked with; -o json is unchanged."""
    import shlex

    api, kc = cluster
    in_progress(kc)
    human = canary("status", "rec-model", "-n", "ml", kubeconfig=kc)
    assert human.returncode == 0
    hint = human.stdout.strip().splitlines()[-1]
    assert hint.startswith("to act: `canary rollback rec-model -n ml --reason")
    assert "`canary pause rec-model -n ml` holds this split" in hint
    assert "to act" not in canary("status", "rec-model", "-n", "ml", "-o", "json", kubeconfig=kc).stdout
    assert canary("pause", "rec-model", "-n", "ml", kubeconfig=kc).returncode == 0
    paused = canary("status", "rec-model", "-n", "ml", "--virtual-service", "rec-model", kubeconfig=kc).stdout
    assert "`canary resume rec-model -n ml --virtual-service rec-model` goes on" in paused
    rollback = paused.split("`")[1]  # the command as shown runs: stable 100%
    argv = shlex.split(rollback.replace('"..."', '"from the hint"'))[1:]
    assert canary(*argv, kubeconfig=kc).returncode == 0
    assert vs(api)[0] == [100, 0] and vs(api)[1]["phase"] == rl.ROLLED_BACK
    assert "to act" not in canary("status", "rec-model", "-n", "ml", kubeconfig=kc).stdout  # ended: nothing to do


def _delete_destination_rule(api: KubeAPIServer) -> None:
    """The route's DestinationRule deleted (a person, a GitOps sync), as the API server deletes it."""
    key = (GROUP, "destinationrules", "ml", "rec-model")
    with api.handler.lock:
        api.handler._delete(key, api.handler.objects[key])


def test_status_of_a_rollout_whose_destination_rule_was_deleted_shows_the_weights(cluster: Any) -> None:
    """A rollout at 75/25 and its DestinationRule deleted: on-call's first command, `canary status`, said
    "namespace 'ml' has no DestinationRule: is -n right?", exit 2, no weights, and `pause` the same, while
    `canary rollback` acted. Status now shows the weights from the VirtualService alone with a note naming the
    DestinationRule, what Istio does (503, NR) and what the rollback writes, exit 0 (`destination_rule_missing` in
    -o json); pause refuses naming it, exit 3, nothing written. A wrong -n is still "is -n right?" (decision 315)."""
    api, kc = cluster
    in_progress(kc)
    _delete_destination_rule(api)
    human = canary("status", "rec-model", "-n", "ml", kubeconfig=kc)
    assert human.returncode == 0 and "75/25" in human.stdout and "is -n right?" not in human.stderr, human.stderr
    note = next(line for line in human.stdout.splitlines() if line.startswith("note: DestinationRule ml/rec-model"))
    assert "is gone (not found)" in note and "fails (503, NR)" in note, note
    assert "`canary rollback rec-model -n ml` writes stable 100% (canary 0) on the VirtualService alone" in note
    assert "canary pause" not in human.stdout  # it refuses here: only the rollback is offered
    shown = json.loads(canary("status", "rec-model", "-n", "ml", "-o", "json", kubeconfig=kc).stdout)
    assert shown["weights"] == {"stable": 75, "canary": 25} and shown["rollout"]["phase"] == rl.PROGRESSING
    assert shown["destination_rule_missing"].startswith("DestinationRule ml/rec-model ")

    paused = canary("pause", "rec-model", "-n", "ml", kubeconfig=kc)
    assert paused.returncode == 3 and "is -n right?" not in paused.stderr, paused.stderr
    assert "pause refused, nothing written" in paused.stderr and "DestinationRule ml/rec-model is gone" in paused.stderr
    assert vs(api)[0] == [75, 25] and vs(api)[1]["phase"] == rl.PROGRESSING  # nothing written

    # what the note says the rollback writes: stable 100% and the end recorded, then exit 3 (the subset not pointed)
    assert canary("rollback", "rec-model", "-n", "ml", kubeconfig=kc).returncode == 3
    assert vs(api)[0] == [100, 0] and vs(api)[1]["phase"] == rl.ROLLED_BACK
    ended = canary("status", "rec-model", "-n", "ml", "-o", "json", kubeconfig=kc)
    assert ended.returncode == 0 and json.loads(ended.stdout)["weights"] == {"stable": 100, "canary": 0}
    assert "DestinationRule ml/rec-model" in json.loads(ended.stdout)["destination_rule_missing"]

    # a --destination-rule given that is not there may be a typo: refused, exit 2, but never "is -n right?"
    typo = canary("status", "rec-model", "-n", "ml", "--destination-rule", "rec-modl", kubeconfig=kc)
    assert typo.returncode == 2 and "is -n right?" not in typo.stderr, typo.stderr
    assert "namespace 'ml' has no DestinationRule, though VirtualService ml/rec-model is there" in typo.stderr
    wrong = canary("status", "rec-model", "-n", "prod", kubeconfig=kc)  # no VirtualService there: -n is wrong
    assert wrong.returncode == 2 and "namespace 'prod' has no VirtualService: is -n right?" in wrong.stderr


def test_an_oncall_rollback_whose_destination_rule_was_deleted_pages_once_and_says_so_on_stderr(
        cluster: Any) -> None:
    """A rollout at 75/25, its DestinationRule deleted: `canary rollback` writes 100/0, records `rolled_back`
    and exits 3 (the stable subset cannot be pointed). It logs the page `rollout.destination_rule_deleted` once,
    as the controller and promote do, and its stderr error line said only "could not be re-pointed at v1: ...
    not found": it now says in words that every request fails (503, NR) until the DestinationRule is restored,
    and how to restore it (decision 325)."""
    api, kc = cluster
    in_progress(kc)
    _delete_destination_rule(api)
    res = canary("rollback", "rec-model", "-n", "ml", kubeconfig=kc)
    assert res.returncode == 3, res.stderr
    assert vs(api)[0] == [100, 0] and vs(api)[1]["phase"] == rl.ROLLED_BACK
    lines = [json.loads(line) for line in res.stderr.splitlines() if line.startswith("{")]
    [page] = [e for e in lines if e["event"] == "rollout.destination_rule_deleted"]
    assert page["level"] == "error" and page["destination_rule"] == "ml/rec-model" and page["traffic"] == "failing"
    assert page["subset"] == "stable" and page["version"] == "v1", page
    assert "every request to it fails (503, NR) until the DestinationRule is restored" in page["impact"], page
    [error] = [line for line in res.stderr.splitlines() if line.startswith("error: ")]
    assert "DestinationRule ml/rec-model is gone (deleted mid-rollout)" in error, error
    assert "every request to VirtualService ml/rec-model fails (503, NR) until it is restored" in error, error
    assert ("re-apply DestinationRule ml/rec-model from your manifests now, with its stable subset selecting "
            "version v1") in error, error


def test_a_model_name_that_is_no_virtual_service_names_the_ones_there(cluster: Any) -> None:
    """`canary status rec-modl -n ml` at night said only "ml/rec-modl (virtualservices): not found": nothing
    said whether the name or the namespace was wrong. It now names the namespace's VirtualServices (or says it
    has none), for status and rollback alike; exit 2, nothing written."""
    api, kc = cluster
    for cmd in (["status", "rec-modl", "-n", "ml"], ["rollback", "rec-modl", "-n", "ml"]):
        res = canary(*cmd, kubeconfig=kc)
        assert res.returncode == 2, res.stderr
        assert "ml/rec-modl (virtualservices): not found" in res.stderr
        assert "VirtualServices in 'ml': rec-model" in res.stderr
    res = canary("status", "rec-model", "-n", "prod", kubeconfig=kc)
    assert res.returncode == 2 and "namespace 'prod' has no VirtualService: is -n right?" in res.stderr
    assert "annotations" not in api.get(GROUP, "virtualservices", "ml", "rec-model")["metadata"]  # nothing written


def test_promote_of_a_model_or_destination_rule_not_there_names_the_ones_there(cluster: Any) -> None:
    """`canary promote rec-modl` said only "ml/rec-modl (virtualservices): not found", where `canary status
    rec-modl` names the namespace's VirtualServices (decision 147); a mistyped --destination-rule likewise named
    no flag. Both now say what the namespace holds and which flag names it; exit 2, nothing written."""
    api, kc = cluster
    common = ["--canary-version", "v2", "--policy", str(ROOT / "policies" / "default.yaml"),
              "--prometheus-url", "http://127.0.0.1:9", "-n", "ml"]
    res = canary("promote", "rec-modl", *common, kubeconfig=kc)
    assert res.returncode == 2, res.stderr
    assert ("ml/rec-modl (virtualservices): not found" in res.stderr
            and "VirtualServices in 'ml': rec-model (a model not named as its VirtualService: --virtual-service VS)"
            in res.stderr), res.stderr
    res = canary("promote", "rec-model", *common, "--destination-rule", "rec-modl", kubeconfig=kc)
    assert res.returncode == 2, res.stderr
    assert "ml/rec-modl (destinationrules): not found" in res.stderr, res.stderr
    assert "DestinationRules in 'ml': rec-model (--destination-rule DR)" in res.stderr, res.stderr
    res = canary("promote", "rec-model", *common[:-1], "prod", kubeconfig=kc)
    assert res.returncode == 2 and "namespace 'prod' has no VirtualService: is -n right?" in res.stderr, res.stderr
    assert "annotations" not in api.get(GROUP, "virtualservices", "ml", "rec-model")["metadata"]  # nothing written


def test_status_and_analyze_of_a_destination_rule_not_there_name_the_ones_there(cluster: Any) -> None:
    """`canary status rec-model --destination-rule rec-modl` said only "ml/rec-modl (destinationrules): not found",
    where promote names the namespace's DestinationRules and the flag (decision 147); status and analyze now say
    it too, and every such message the name closest to the one given (decision 161). Exit 2, nothing written."""
    api, kc = cluster
    for cmd in (["status", "rec-model"], ["analyze", "rec-model", "--policy", str(ROOT / "policies" / "default.yaml"),
                                          "--prometheus-url", "http://127.0.0.1:9"]):
        res = canary(*cmd, "-n", "ml", "--destination-rule", "rec-modl", kubeconfig=kc)
        assert res.returncode == 2, res.stderr
        assert "ml/rec-modl (destinationrules): not found" in res.stderr, res.stderr
        assert "DestinationRules in 'ml': rec-model (--destination-rule DR); did you mean 'rec-model'?" in res.stderr
    res = canary("status", "rec-modl", "-n", "ml", kubeconfig=kc)  # the close name last: a list of 10 may cut it
    assert res.returncode == 2 and "--virtual-service VS); did you mean 'rec-model'?" in res.stderr, res.stderr
    res = canary("status", "ranker", "-n", "ml", kubeconfig=kc)
    assert res.returncode == 2 and "did you mean" not in res.stderr, res.stderr
    assert "annotations" not in api.get(GROUP, "virtualservices", "ml", "rec-model")["metadata"]  # nothing written


def _promote_here(pid: object) -> str:
    import socket

    from canary.runner import _pid_namespace

    return f"promote#{socket.gethostname()}:{_pid_namespace()}:{pid}:ab12cd34"


@pytest.mark.parametrize(("owner", "age_s", "phase", "says"), [
    ("gone-here", 5, rl.PROGRESSING, "its `canary promote` (pid 99999999999 on this machine) is no longer running"),
    ("promote#ci-runner-7:4026531836:41:ab12cd34", 1000, rl.PROGRESSING, "its record has not changed for "),
    ("promote#ci-runner-7:4026531836:41:ab12cd34", 5, rl.PROGRESSING, ""),
    ("alive-here", 1000, rl.PROGRESSING, ""),
    ("gone-here", 5, rl.PAUSED, ""),
    ("gone-here", 5, rl.PROMOTING, "its `canary promote` (pid 99999999999 on this machine) is no longer running"),
], ids=["gone here", "stale elsewhere", "fresh elsewhere", "alive here", "paused by a person", "promoting"])
def test_status_says_when_nothing_drives_a_rollout_in_progress(cluster: Any, owner: str, age_s: float, phase: str,
                                                               says: str, request: Any) -> None:
    """A `canary promote` killed (or interrupted with --on-interrupt pause, then `canary resume`d) left a record
    "progressing at 75/25, run by `canary promote` (...)": `canary status` showed it as running, while nothing
    judged or moved the split until a sweep ended it, or never where no sweep runs (decision 205). Said when its
    process is gone from this machine, or its record has not changed for the sweeps' abandonment time (3 looks
    + 120 s); not for a live or fresh one, nor a rollout a person paused."""
    import time

    # a live process of this machine, not this one (the CLI runs in this process: its own pid reads as gone)
    alive = subprocess.Popen(["sleep", "120"])
    request.addfinalizer(lambda: (alive.kill(), alive.wait()))
    owner = {"gone-here": _promote_here(99999999999), "alive-here": _promote_here(alive.pid)}.get(owner, owner)
    router = IstioRouter(api_client(kubeconfig=str(cluster[1])))
    state = rl.RolloutState(model="rec-model", stable_version="v1", canary_version="v2", phase=phase,
                            weights=Weights(75, 25), step=1, started_at=1.0, step_started_at=2.0, owner=owner,
                            heartbeat_s=2.0, updated_at=time.time() - age_s)
    router.set_weights(TARGET, Weights(75, 25), state=state.to_json())
    st = json.loads(canary("status", "rec-model", "-n", "ml", "-o", "json", kubeconfig=cluster[1]).stdout)
    human = canary("status", "rec-model", "-n", "ml", kubeconfig=cluster[1])
    assert human.returncode == 0, human.stderr
    if not says:
        assert "undriven" not in st and "nothing drives" not in human.stdout, human.stdout
        return
    assert st["undriven"].startswith(says), st["undriven"]
    note = next(line for line in human.stdout.splitlines() if line.startswith("note: nothing drives this rollout now"))
    keeps = ("Its promotion is unfinished (every step passed; the canary has 25%) until `canary promote rec-model "
             "--canary-version v2 ...` is run again (it finishes it)" if phase == rl.PROMOTING else
             "The canary keeps 25% unjudged until `canary promote rec-model --canary-version v2")
    assert says in note and keeps in note, note
    assert "`canary rollback rec-model -n ml` sends stable 100%" in note, note
    # a watch says it once on stderr and waits on (a re-run resumes it): a pipeline reading -o json saw nothing
    from typer.testing import CliRunner

    from canary.cli import app

    watched = CliRunner().invoke(app, ["status", "rec-model", "-n", "ml", "-w", "--timeout", "1s", "-o", "json",
                                       "--kubeconfig", str(cluster[1])])
    assert watched.exit_code == 4, watched.output
    said = [line for line in watched.stderr.splitlines() if line.startswith("nothing drives this rollout now: ")]
    assert len(said) == 1 and says in said[0] and "a re-run of its promote resumes it" in said[0], watched.stderr


def test_status_says_a_stopped_promote_drives_nothing_until_continued(cluster: Any) -> None:
    """A `canary promote` stopped with Ctrl-Z (state T) read as alive: `canary status` said nothing, while the
    split stayed unjudged for as long as it stayed stopped (decision 222). It is now said, with how to continue
    it; a second promote still refuses to take over from it (it can be continued)."""
    import signal
    import time

    from canary.runner import _here

    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        os.kill(proc.pid, signal.SIGSTOP)
        for _ in range(500):  # until the kernel shows it stopped (a condition, not a sleep's end)
            with open(f"/proc/{proc.pid}/stat", encoding="ascii") as f:
                if f.read().rpartition(")")[2].split()[0] == "T":
                    break
            time.sleep(0.01)
        owner = _promote_here(proc.pid)
        assert _here(owner) == "alive"  # a take-over still refuses
        router = IstioRouter(api_client(kubeconfig=str(cluster[1])))
        state = rl.RolloutState(model="rec-model", stable_version="v1", canary_version="v2", phase=rl.PROGRESSING,
                                weights=Weights(75, 25), step=1, started_at=1.0, step_started_at=2.0, owner=owner,
                                heartbeat_s=2.0, updated_at=time.time())
        router.set_weights(TARGET, Weights(75, 25), state=state.to_json())
        st = json.loads(canary("status", "rec-model", "-n", "ml", "-o", "json", kubeconfig=cluster[1]).stdout)
        assert st["undriven"] == (f"its `canary promote` (pid {proc.pid} on this machine) is stopped (Ctrl-Z or "
                                  f"SIGSTOP) and judges nothing until it is continued (`fg` in its terminal, or "
                                  f"`kill -CONT {proc.pid}`)"), st
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.parametrize("skew_s", [1000.0, -1000.0], ids=["this host ahead", "this host behind"])
def test_the_undriven_note_times_a_record_from_elsewhere_by_the_api_servers_clock(cluster: Any,
                                                                                 monkeypatch: pytest.MonkeyPatch,
                                                                                 skew_s: float) -> None:
    """A promote run elsewhere records `updated_at` on Prometheus's clock; `canary status` read its age against
    the host it ran on: a laptop 1,000 s ahead said "nothing drives this rollout now ... gone or stalled" of a
    promote that wrote 5 s ago, and one 1,000 s behind never said it of a record 1,000 s old. The age is now
    read against the API server's clock (its `Date`), a clock of the cluster as Prometheus's is (decision 216).
    Here the API server's and Prometheus's are this machine's; only `canary status`'s own clock is moved."""
    import time as real_time

    from typer.testing import CliRunner

    from canary import cli

    class Shifted:  # the `time` module as canary.cli sees it, its wall clock `skew_s` off
        def __getattr__(self, name: str) -> Any:
            return getattr(real_time, name)

        @staticmethod
        def time() -> float:
            return real_time.time() + skew_s

    monkeypatch.setattr(cli, "time", Shifted())
    router = IstioRouter(api_client(kubeconfig=str(cluster[1])))
    for age_s, says in ((5.0, False), (1000.0, True)):
        state = rl.RolloutState(model="rec-model", stable_version="v1", canary_version="v2", phase=rl.PROGRESSING,
                                weights=Weights(75, 25), step=1, started_at=1.0, step_started_at=2.0,
                                owner="promote#ci-runner-7:4026531836:41:ab12cd34", heartbeat_s=2.0,
                                updated_at=real_time.time() - age_s)
        router.set_weights(TARGET, Weights(75, 25), state=state.to_json())
        res = CliRunner().invoke(cli.app, ["status", "rec-model", "-n", "ml", "-o", "json", "--kubeconfig",
                                           str(cluster[1])])
        assert res.exit_code == 0, res.output
        shown = json.loads(res.stdout)
        assert ("undriven" in shown) is says, (age_s, shown.get("undriven"))
        if says:
            age = float(shown["undriven"].removeprefix("its record has not changed for ").partition("s ")[0])
            assert 998 <= age < 1100, shown["undriven"]  # the Date header's second cut off; no bound on the run's pace
            assert "the API server's clock against its promote's, Prometheus's" in shown["undriven"]


def test_a_route_the_policy_names_and_the_virtual_service_lacks_names_the_policys_field(cluster: Any, tmp_path: Path) -> None:
    """A policy's `route: nope` made `canary promote` and `canary analyze` say only "ml/rec-model: spec.http has
    no route named 'nope'", naming no file: the user looked for the typo in the command line. Now the policy file
    and its `route:` field are named (decision 214); a `--route` given names none (the flag was the user's).
    Exit 2, nothing written."""
    api, kc = cluster
    policy = tmp_path / "p.yaml"
    policy.write_text((ROOT / "policies" / "default.yaml").read_text().replace(
        "# route: triton-http       #", "route: nope                 #"))
    common = ["--policy", str(policy), "--prometheus-url", "http://127.0.0.1:9", "-n", "ml"]
    for cmd in (["promote", "rec-model", "--canary-version", "v2"], ["analyze", "rec-model"]):
        res = canary(*cmd, *common, kubeconfig=kc)
        assert res.returncode == 2, res.stderr
        assert "spec.http has no route named 'nope'" in res.stderr, res.stderr
        assert f"the route named is the policy's: {policy}: route: 'nope' (--route overrides it)" in res.stderr, res.stderr
        res = canary(*cmd, *common, "--route", "typo", kubeconfig=kc)
        assert res.returncode == 2 and "no route named 'typo'" in res.stderr and "policy's" not in res.stderr, res.stderr
    assert "annotations" not in api.get(GROUP, "virtualservices", "ml", "rec-model")["metadata"]  # nothing written


def test_serve_and_controller_run_give_back_the_signal_handlers_they_found(tmp_path: Path) -> None:
    """`canary serve` and `canary controller run` set SIGINT and SIGTERM to stop their loop from their first
    moment and never gave the handlers found back: in-process (a test, a program embedding the CLI), the
    caller's next Ctrl-C set a finished command's stop event and was otherwise ignored, as promote's were
    (decision 241). Their exit 2 on a bad flag read after the handlers are set shows it: tests/support/cli.py's
    `run` fails a command that leaves a handler behind (decision 244)."""
    kubeconfig = fleet.write_kubeconfig(tmp_path / "kubeconfig", "http://127.0.0.1:9")
    res = cli.run(["serve", "--port", "70000", "--policy", str(ROOT / "policies" / "default.yaml"),
                   "--state-dir", str(tmp_path / "state")])
    assert res.returncode == 2 and "--port must be 0..65535" in res.stderr, res.stderr
    res = cli.run(["controller", "run", "--shards", "1", "--shard-index", "3", "--kubeconfig", str(kubeconfig),
                   "--prometheus-url", "http://127.0.0.1:9"])
    assert res.returncode == 2 and "--shard-index must be below --shards" in res.stderr, res.stderr


@pytest.mark.parametrize(("owner", "code", "says"), [
    ("gone-here", 2, "its `canary promote` (pid 99999999999 on this machine) no longer runs, so nothing would judge"),
    ("alive-here", 0, "note: its `canary promote` (pid {pid} on this machine) goes on with it"),
    ("promote#ci-runner-7:4026531836:41:ab12cd34", 0,
     "note: its `canary promote` (ci-runner-7:4026531836:41:ab12cd34) goes on with it if it still runs"),
], ids=["gone here", "alive here", "elsewhere"])
def test_resume_says_which_promote_acts_on_it_and_refuses_when_none_can(cluster: Any, owner: str, code: int, says: str,
                                                                        request: Any) -> None:
    """`canary resume` of a rollout a `canary promote` paused wrote `progressing` and said "judged only while a
    `canary promote` ... runs": with that promote killed, nothing judged the step, the canary kept its share, and
    a re-run elsewhere was refused as busy for 2 looks + 60 s (the resume had just written the record). Now
    (decision 546) a promote gone from this machine makes it refuse, nothing written, naming the promote to run
    again (it takes a paused rollout over at once); a live one here is named as the one that goes on; one
    elsewhere, which cannot be told alive from here, is named with what happens if it is gone."""
    alive = subprocess.Popen(["sleep", "120"])
    request.addfinalizer(lambda: (alive.kill(), alive.wait()))
    owner = {"gone-here": _promote_here(99999999999), "alive-here": _promote_here(alive.pid)}.get(owner, owner)
    api, kc = cluster
    router = IstioRouter(api_client(kubeconfig=str(kc)))
    state = rl.RolloutState(model="rec-model", stable_version="v1", canary_version="v2", phase=rl.PAUSED,
                            weights=Weights(75, 25), step=1, started_at=1.0, step_started_at=2.0, owner=owner,
                            heartbeat_s=10.0, updated_at=1.0)
    router.set_weights(TARGET, Weights(75, 25), state=state.to_json())
    before = api.get(GROUP, "virtualservices", "ml", "rec-model")["metadata"]["resourceVersion"]
    res = canary("resume", "rec-model", "-n", "ml", kubeconfig=kc)
    out = " ".join((res.stdout + res.stderr).split())
    assert res.returncode == code and says.format(pid=alive.pid) in out, out
    if code:
        assert "`canary promote rec-model --canary-version v2 ...` again: it takes the paused rollout over" in out
        assert api.get(GROUP, "virtualservices", "ml", "rec-model")["metadata"]["resourceVersion"] == before
        return
    assert vs(api)[1]["phase"] == rl.PROGRESSING
    if "elsewhere" not in request.node.name:
        return
    assert ("if it no longer runs, nothing judges the step: the canary keeps 25% unjudged until `canary promote "
            "rec-model --canary-version v2 ...` is run again (it takes the rollout over once the record is 80s old: "
            "give it --wait-busy 80s)") in out, out
