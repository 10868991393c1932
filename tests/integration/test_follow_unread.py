"""`promote --via-controller` with no controller running (a newcomer's finding, decision 716): the follower waited
out `--timeout` and said "it keeps running in the controller (`canary status`)" of a CanaryRollout no controller had
ever read, while `canary status` showed the route's previous rollout. It now says that no controller has read the
request and asks whether one runs for the namespace. The follower's clock is a counter: no wall-clock wait."""

from __future__ import annotations

import types
from typing import Any

import pytest
import yaml

from tests import fleet


def _follow(tmp_path: Any, monkeypatch: Any, api: Any, tick: Any = lambda: None) -> str:
    import importlib

    importlib.import_module("canary.cli")  # registers the commands; cli_controller imports it
    from canary import cli_controller
    from canary.errors import TransientError

    now = [0.0]

    def sleep(seconds: float) -> None:
        tick()
        now[0] += seconds
    monkeypatch.setattr(cli_controller, "time", types.SimpleNamespace(monotonic=lambda: now[0], sleep=sleep))
    kubeconfig = fleet.write_kubeconfig(tmp_path / "kubeconfig", api.url)
    policy = tmp_path / "policy.yaml"
    policy.write_text(yaml.safe_dump(fleet.FAST_POLICY))
    with pytest.raises(TransientError) as got:
        cli_controller.follow(model="m0", canary_version="v2", policy_file=policy, namespace="ml", stable_version="",
                              virtual_service=None, kubeconfig=str(kubeconfig), context=None, name="r0", triton=None,
                              output="json", timeout_s=3)
    return str(got.value)


def test_a_follower_that_no_controller_answered_says_so(tmp_path: Any, monkeypatch: Any) -> None:
    api = fleet.start_api(1)
    try:
        text = _follow(tmp_path, monkeypatch, api)
        assert "did not finish within 3s; no controller has read it" in text, text
        assert "canary controller run` running for namespace ml" in text and "keeps running" not in text, text
        assert "kubectl delete canaryrollout r0 -n ml" in text, text
    finally:
        api.stop()


def test_a_follower_whose_request_a_controller_read_says_it_keeps_running(tmp_path: Any, monkeypatch: Any) -> None:
    """A status written for this generation (here by hand, as a claim writes it): the words as before."""
    from canary import crd

    api = fleet.start_api(1)
    try:
        def claim() -> None:
            obj = api.get(crd.GROUP, crd.PLURAL, "ml", "r0")
            generation = obj["metadata"].get("generation", 1)
            if (obj.get("status") or {}).get("observedGeneration") != generation:
                api.handler.put_object({**obj, "status": {"phase": "progressing", "step": 1,
                                                          "observedGeneration": generation,
                                                          "target": {"canaryVersion": "v2", "model": "m0"}}})
        text = _follow(tmp_path, monkeypatch, api, tick=claim)
        assert "did not finish within 3s; it keeps running in the controller" in text, text
    finally:
        api.stop()
