"""`promote --via-controller` with no controller running (a newcomer's finding, decision 716): the follower waited
out `--timeout` and said "it keeps running in the controller (`canary status`)" of a CanaryRollout no controller had
ever read, while `canary status` showed the route's previous rollout. It now says that no controller has read the
request and asks whether one runs for the namespace. The follower's clock is a counter: no wall-clock wait."""

from __future__ import annotations

from typing import Any

from tests import fleet


def test_a_follower_that_no_controller_answered_says_so(tmp_path: Any, monkeypatch: Any) -> None:
    api = fleet.start_api(1)
    try:
        text = fleet.follow_out_of_time(tmp_path, monkeypatch, api, timeout_s=3)
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
        text = fleet.follow_out_of_time(tmp_path, monkeypatch, api, tick=claim, timeout_s=3)
        assert "did not finish within 3s; it keeps running in the controller" in text, text
    finally:
        api.stop()
