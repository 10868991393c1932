"""`canary promote` posts the end of a split nobody owned that it writes before its claim, once (decisions 779, 784).

An end typed over a split (`canary.unowned`, decision 157) is ended by the next promote first: stable 100%, recorded
aborted. 779 told that end to `Runner.ended_other` as its write lands, and `cli.promote` wires it to `announce`; that
line had no test. Through the real CLI (in this process), the strict Kubernetes API emulator and a real receiver on
127.0.0.1; Prometheus refuses (nothing here reads it past the clock's look).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
import tenacity
import yaml

from canary.routing.istio import IstioRouter
from tests import fleet
from tests.integration.test_notify_attack import Server
from tests.integration.test_sweep import _claim
from tests.support import cli
from tests.support.refused import refused_port

pytestmark = pytest.mark.integration
GROUP, ANN = "networking.istio.io", "modelcanary.dev/rollout"


@pytest.fixture
def typed(tmp_path: Path) -> Iterator[tuple[Any, Server, Path, Path]]:
    """m0 split 80/20 by a promote of v2 long gone, its record typed into `promoted` by hand: nobody's split."""
    api, srv = fleet.start_api(1), Server()
    _claim(IstioRouter(api.api_client(), wait=tenacity.wait_none()), at=time.time() - 1000)
    api.edit(GROUP, "virtualservices", "ml", "m0", lambda vs: vs["metadata"]["annotations"].update(
        {ANN: json.dumps({**json.loads(vs["metadata"]["annotations"][ANN]), "phase": "promoted"})}))
    policy = tmp_path / "policy.yaml"
    policy.write_text(yaml.safe_dump(fleet.FAST_POLICY))
    yield api, srv, fleet.write_kubeconfig(tmp_path / "kubeconfig", api.url), policy
    srv.close()
    api.stop()


def _promote(kubeconfig: Path, policy: Path, version: str, hook: str) -> Any:
    return cli.run(["promote", "m0", "--canary-version", version, "--policy", str(policy), "--namespace", "ml",
                    "--kubeconfig", str(kubeconfig), "--webhook", hook, "--output", "json", "--log-format", "json"],
                   env={"KUBECONFIG": "", "CANARY_PROMETHEUS_URL": f"http://127.0.0.1:{refused_port()}"})


def _rule_deleted_at_next_write(api: Any) -> None:
    """m0's DestinationRule deleted right before the emulator serves the next write (the end's weights; its lock
    held): the weights land, the stable subset's pointing after them meets no rule (decision 168's case)."""
    def deleted() -> None:
        key = (GROUP, "destinationrules", "ml", "m0")
        api.handler._delete(key, api.handler.objects[key])

    api.before_next_write(deleted)


def _weights(api: Any) -> list[int]:
    return [d["weight"] for d in api.get(GROUP, "virtualservices", "ml", "m0")["spec"]["http"][0]["route"]]


def test_promote_posts_the_split_nobody_owned_that_it_ends_before_its_claim(typed: Any) -> None:
    """The promote (of v1, which the stable subset selects: refused, exit 2, after the end) ends the split and posts
    it: "aborted", 100/0, the record's claim in the reason. Fails without `cli.promote`'s `ctl.ended_other` line:
    nothing posted."""
    api, srv, kubeconfig, policy = typed
    res = _promote(kubeconfig, policy, "v1", srv.url + "/hook")
    assert res.returncode == 2 and "ended the split nobody owned" in res.stderr, res.stderr[-3000:]
    assert _weights(api) == [100, 0]
    got = [(b["event"], b["weights"], b["canary_version"]) for _, b in srv.got]  # delivered before it returned
    assert got == [("aborted", {"stable": 100, "canary": 0}, "v2")], srv.got
    assert "promoted (v2 serving)" in srv.got[0][1]["reason"]


def test_a_split_nobody_owned_whose_rule_went_as_promote_ended_it_is_posted_once(typed: Any) -> None:
    """The DestinationRule deleted as the end's weights write lands (decision 168's case): stable 100% and the end are
    on the route, the stable subset's pointing fails (RollbackFailed, exit 3, `rollout.destination_rule_deleted`).
    The end was posted at its write, 100/0; `announce_failed` then posted "aborted, weights unknown, stable 100% not
    confirmed" for the same end, as 728 had stopped for the run's own end (decision 784; fails without: two
    posts, the second with `weights` null)."""
    api, srv, kubeconfig, policy = typed
    _rule_deleted_at_next_write(api)
    res = _promote(kubeconfig, policy, "v3", srv.url + "/hook")
    assert res.returncode == 3 and "DestinationRule ml/m0 is gone" in res.stderr, res.stderr[-3000:]
    assert _weights(api) == [100, 0]
    got = [(b["event"], b["weights"]) for _, b in srv.got]
    assert got == [("aborted", {"stable": 100, "canary": 0})], [(b["event"], b["weights"], b["reason"][:200])
                                                                 for _, b in srv.got]


def test_a_promote_whose_end_of_a_split_nobody_owned_failed_says_its_own_version_never_started(typed: Any) -> None:
    """The same failure, read in the log of a pipeline's `promote v3`: the error said "stable has 100% of the weights,
    but the stable subset could not be re-pointed at v1 ... (the end is recorded)", every line of it v2's, and nothing
    that said whose end that was or that v3 never ran; 167's "before that, this promote ended the split nobody owned"
    is said only where the end landed whole. Now it says so (decision 785; fails without: not said)."""
    api, srv, kubeconfig, policy = typed
    _rule_deleted_at_next_write(api)
    res = _promote(kubeconfig, policy, "v3", srv.url + "/hook")
    assert res.returncode == 3, res.stderr[-3000:]
    [error] = [line for line in res.stderr.splitlines() if line.startswith("error:")]
    assert "this was the end of the split nobody owned under the route's record (promoted (v2 serving))" in error, error
    assert "v3 was not started (no traffic moved to it)" in error, error


def _v2_history(api: Any) -> None:
    """The history ConfigMap of the rollout of v2 whose record was typed into `promoted`: progressing at 20%."""
    import kubernetes.client as kc

    from canary import history as hist
    from canary.history_store import configmap_name

    rec = json.loads(api.get(GROUP, "virtualservices", "ml", "m0")["metadata"]["annotations"][ANN])
    doc = {**hist.new_doc(rollout={"model": "m0", "namespace": "ml", "virtual_service": "m0", "route": "",
                                   "stable_version": "v1", "canary_version": "v2", "started_at": rec["started_at"],
                                   "source": "promote", "name": ""}, policy={"steps": [20, 100], "checks": []}),
           "phase": "progressing", "weights": [[rec["started_at"], 20]]}
    kc.CoreV1Api(api.api_client()).create_namespaced_config_map("ml", {
        "metadata": {"name": configmap_name("m0", "m0"), "namespace": "ml"}, "data": {"history.json": hist.dumps(doc)}})


@pytest.mark.parametrize("rule", ["kept", "deleted as the end lands"])
def test_the_split_nobody_owned_that_promote_ends_before_its_claim_is_in_that_rollouts_history(typed: Any,
                                                                                               rule: str) -> None:
    """The end promote writes of a split nobody owned was posted (779) and on the route's record, while the history of
    the rollout it ended still said `progressing` at 20% (`canary report`: still running). It is added to that history
    now (decision 811), also where the stable subset's pointing after it failed, which now says its
    `rollout.split_unowned` line as well (decision 812; fail without: the history unchanged, no line)."""
    from canary import history_store
    from canary.logs import parse_json_lines

    api, srv, kubeconfig, policy = typed
    _v2_history(api)
    if rule != "kept":
        _rule_deleted_at_next_write(api)
    res = _promote(kubeconfig, policy, "v1", srv.url + "/hook")  # v1: refused after the end (the stable's version)
    assert res.returncode == (2 if rule == "kept" else 3), res.stderr[-3000:]
    assert _weights(api) == [100, 0]
    cm = api.get("", "configmaps", "ml", "m0-canary-history")
    doc = history_store.read(cm["data"], where="m0-canary-history")
    assert doc["rollout"]["canary_version"] == "v2" and doc["phase"] == "aborted", doc
    assert "promoted (v2 serving)" in doc["reason"] and doc["end_cause"] == "foreign_edit", doc
    assert "rollout.split_unowned" in [e["event"] for e in doc["events"]] and doc["weights"][-1][1] == 0, doc
    said = [line for line in parse_json_lines(res.stderr) if line.get("event") == "rollout.split_unowned"]
    assert len(said) == 1 and said[0]["by"] == "promote" and said[0]["model"] == "m0", said
