"""Decision 165's `status --watch` attacked (decision 167): what it takes as the awaited rollout's outcome when
the route carries another rollout's split nobody owns (157), and a read that fails for a moment while a pipeline
waits. The real CLI in a subprocess against the strict Kubernetes API emulator."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pytest

from canary import crd
from canary import rollout as rl
from canary.errors import KubeUnavailable
from canary.kube import api_client
from canary.model import Weights
from canary.routing.istio import IstioRouter
from tests.integration.test_cli_ops import ROOT, TARGET, _next_line, _rollout_cr, canary, cluster  # noqa: F401

pytestmark = pytest.mark.integration


def _typed_v2_split(kubeconfig: Any) -> None:
    """A promote of v2 killed at 75/25, its record then typed into `promoted`: a split nobody owns (157)."""
    router = IstioRouter(api_client(kubeconfig=str(kubeconfig)))
    router.point_subset(TARGET, "canary", "v2")
    state = rl.RolloutState(model="rec-model", stable_version="v1", canary_version="v2", phase=rl.PROMOTED,
                            weights=Weights(75, 25), step=0, started_at=1.0, reason="typed by hand")
    router.set_weights(TARGET, Weights(75, 25), state=state.to_json())


def test_a_watch_for_v3_is_never_answered_by_v2s_split_nobody_owns(cluster: Any) -> None:
    """The route carries v2's typed end over 75/25 (the next promote, of v3, ends it before its claim). A pipeline
    that started v3 and waits with `--canary-version v3` or `--rollout r` (r asks for v3) exited 3 at once,
    "aborted", by v2's split: v3 was then promoted with its pipeline failed. The split is v2's: the watch waits
    (exit 4 at --timeout). `--canary-version v2` and no flag still exit 3 (the control)."""
    api, kc = cluster
    _typed_v2_split(kc)
    _rollout_cr(api, "v3")
    watch = ("status", "rec-model", "-n", "ml", "-w", "--timeout", "1s")
    for flags in (("--canary-version", "v3"), ("--rollout", "r")):
        res = canary(*watch, *flags, kubeconfig=kc)
        assert res.returncode == 4, (flags, res.stderr)
    for flags in (("--canary-version", "v2"), ()):
        res = canary(*watch, *flags, kubeconfig=kc)
        assert res.returncode == 3 and "nobody driving it" in res.stderr, (flags, res.stderr)


def test_a_watch_reads_its_canaryrollout_again_after_a_503(cluster: Any) -> None:
    """`status -w --rollout r` while the API server answers one GET of the CanaryRollout with 503 (a restart,
    an overloaded apiserver): it exited 3, "could not complete", while the rollout went on, as `promote
    --via-controller` no longer does (it reads again until --timeout). It now says so on stderr and reads again;
    r's end is then its answer (1, rolled back)."""
    api, kc = cluster
    _rollout_cr(api, "v3", {"phase": rl.PROGRESSING, "observedGeneration": 1, "target": {"canaryVersion": "v3"}})
    follower = subprocess.Popen([sys.executable, "-m", "canary", "status", "rec-model", "-n", "ml", "-w",
                                 "--rollout", "r", "--timeout", "120s", "--kubeconfig", str(kc)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                                env={**os.environ, "KUBECONFIG": ""})
    try:
        err = ""
        while "watching until it ends" not in err and follower.poll() is None:
            err += _next_line(follower)
        assert follower.poll() is None, err
        api.fail_next(503, methods=("GET",), plural=crd.PLURAL)  # its next read of r fails, once
        _rollout_cr(api, "v3", {"phase": rl.ROLLED_BACK, "observedGeneration": 1, "target": {"canaryVersion": "v3"}})
        code = follower.wait(timeout=60)
        rest = follower.stderr.read() if follower.stderr else ""
        assert code == 1, err + rest
        assert "could not be read" in rest and "reading it again" in rest, rest
    finally:
        if follower.poll() is None:
            follower.kill()
            follower.wait()


def test_a_watch_reads_its_route_again_after_the_api_server_failed_past_its_retries(cluster: Any) -> None:
    """`status -w --canary-version v3` while the API server answers the VirtualService's GETs with 503 past the
    router's own retries: it exited 3 while v3's rollout went on. It now reads again; v3's end is its answer."""
    from tests.integration.test_cli_ops import _ended

    api, kc = cluster
    follower = subprocess.Popen([sys.executable, "-m", "canary", "status", "rec-model", "-n", "ml", "-w",
                                 "--canary-version", "v3", "--timeout", "120s", "--kubeconfig", str(kc)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                                env={**os.environ, "KUBECONFIG": ""})
    try:
        err = ""
        while "watching until one ends" not in err and follower.poll() is None:
            err += _next_line(follower)
        assert follower.poll() is None, err
        api.fail_next(503, methods=("GET",), plural="virtualservices", times=20)
        while "could not be read" not in err and follower.poll() is None:
            err += _next_line(follower)
        assert follower.poll() is None, err
        for _ in range(20):  # this writer meets the faults left too: each try uses some up
            try:
                _ended(kc, rl.ROLLED_BACK, "v3", started_at=5.0)
                break
            except KubeUnavailable:
                continue
        code = follower.wait(timeout=90)
        assert code == 1, err + (follower.stderr.read() if follower.stderr else "")
    finally:
        if follower.poll() is None:
            follower.kill()
            follower.wait()


@pytest.mark.parametrize("plural", ["virtualservices", "destinationrules"])
def test_a_watch_whose_route_is_deleted_under_it_says_so_instead_of_blaming_the_namespace(
        cluster: Any, monkeypatch: pytest.MonkeyPatch, plural: str) -> None:
    """`status -w` of v2's rollout in progress (75/25), then its VirtualService (or DestinationRule) deleted
    between two reads: the watch said "namespace 'ml' has no VirtualService: is -n right?", exit 2 (bad input),
    to a pipeline whose flags had just read the route; the rollout's outcome is not known and the mesh no longer
    routes as the rollout set it. It now says the object was deleted while it waited, exit 3 (as a CanaryRollout
    deleted under `--rollout`). The deletion lands in the watch's sleep between two passes: no timing."""
    import types

    import kubernetes.client as kcl

    from canary import cli as cli_module
    from tests.integration.test_cli_ops import in_progress

    api, kc = cluster
    in_progress(kc)

    def delete_then_go_on(_seconds: float) -> None:
        if api.get("networking.istio.io", plural, "ml", "rec-model") is not None:
            kcl.CustomObjectsApi(api.api_client()).delete_namespaced_custom_object(
                "networking.istio.io", "v1beta1", "ml", plural, "rec-model")

    real = cli_module.time
    monkeypatch.setattr(cli_module, "time", types.SimpleNamespace(
        time=real.time, monotonic=real.monotonic, sleep=delete_then_go_on))
    res = canary("status", "rec-model", "-n", "ml", "-w", "--timeout", "60s", kubeconfig=kc)
    assert res.returncode == 3, (res.returncode, res.stderr)
    assert "75/25" in res.stdout  # the first pass was shown
    what = {"virtualservices": "VirtualService", "destinationrules": "DestinationRule"}[plural]
    line = res.stderr.strip().splitlines()[-1]
    assert f"{what} ml/rec-model was deleted while this watch waited" in line, line
    assert "outcome is not known" in line and "is -n right" not in line, line
    # the first read still refuses a VirtualService not there as bad input (exit 2), with the names there; a
    # DestinationRule already gone at the first read is shown from the VirtualService and watched (decision 315)
    monkeypatch.undo()  # the real sleep: the watch waits out its --timeout
    res = canary("status", "rec-model", "-n", "ml", "-w", "--timeout", "1s", kubeconfig=kc)
    if plural == "virtualservices":
        assert res.returncode == 2 and "is -n right" in res.stderr, res.stderr
    else:
        assert res.returncode == 4 and "is -n right" not in res.stderr, res.stderr
        assert "75/25" in res.stdout and "note: DestinationRule ml/rec-model" in res.stdout, res.stdout
