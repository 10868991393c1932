"""The DestinationRule deleted between a promotion's 0/100 and its stable subset's pointing (decision 842).

Every step passed; the route went to 0/100 (`promoting`); then the rule was deleted (a person, a GitOps prune) just
before the promotion pointed its stable subset at the new version. The pointing's 404 sent the fail-safe to stable
100%, whose rollback from PROMOTING points the stable subset back at the old version *before* its weights (the
promotion's first pointing may have landed); that 404 too stopped it, nothing was written: 0/100 left recorded
`promoting`, exit 6, `traffic.unsafe` saying to set the weights by hand. With the rule gone the route's subsets
resolve under no rule at all, so no request reaches the new version by it, whatever the rule's stable subset had
selected: stable 100% is written and the end recorded, as for a rule re-hosted (662) and as for a rule deleted
mid-rollout (168: `rollout.destination_rule_deleted` pages to restore it, exit 3). The real CLI, the strict API
emulator and a real Prometheus, as tests/integration/test_promote.py."""

from __future__ import annotations

import json
from typing import Any

import pytest

from canary import rollout as rl
from canary.logs import parse_json_lines
from canary.sandbox.promserver import PromServer
from tests.integration.test_promote import GROUP, cluster, prometheus, promote, vs_state  # noqa: F401  (fixtures)

pytestmark = pytest.mark.integration


def delete_rule_at_promoting(api: Any) -> list[str]:
    """The first write of DestinationRule ml/rec-model made while the route records `promoting` finds it deleted
    just before it lands (as a `kubectl delete` would); returns the list of such writes."""
    real, seen = api.handler._serve, []

    def serve(method: str, request: Any, kind: Any) -> Any:
        if method in ("PUT", "PATCH") and request.url.path.endswith("/destinationrules/rec-model") and not seen:
            vs = api.get(GROUP, "virtualservices", "ml", "rec-model")
            rec = json.loads(vs["metadata"].get("annotations", {}).get("modelcanary.dev/rollout") or "{}")
            if rec.get("phase") == rl.PROMOTING:
                seen.append(f"{method} {request.url.path}")
                api.delete(GROUP, "destinationrules", "ml", "rec-model")
        return real(method, request, kind)

    api.handler._serve = serve  # type: ignore[method-assign]
    return seen


def test_a_rule_deleted_before_the_promotions_pointing_ends_at_stable_100_and_pages_to_restore_it(
        cluster: Any, prometheus: PromServer) -> None:  # noqa: F811
    api, kubeconfig, policy = cluster
    seen = delete_rule_at_promoting(api)
    res = promote(kubeconfig, policy, prometheus.url, "v2")
    assert seen, "the promotion never pointed its stable subset"
    assert res.returncode == 3, res.stderr[-3000:]  # was 6: 0/100 left, `traffic.unsafe`
    weights, state = vs_state(api)
    assert weights == [100, 0] and state["phase"] == rl.ABORTED and state["stable_version"] == "v1"
    assert api.get(GROUP, "destinationrules", "ml", "rec-model") is None  # nothing re-created it
    lines = parse_json_lines(res.stderr)
    names = [e["event"] for e in lines]
    assert "traffic.unsafe" not in names and "rollout.aborting" in names
    page = [e for e in lines if e["event"] == "rollout.destination_rule_deleted"]
    assert len(page) == 1 and page[0]["destination_rule"] == "ml/rec-model" and page[0]["version"] == "v1", page
    assert "restore DestinationRule ml/rec-model" in page[0]["hint"]
    failed = [e for e in lines if e["event"] == "rollback.failed"]
    assert len(failed) == 1 and failed[0]["weights"] == "100/0" and failed[0]["end_cause"] == "foreign_edit"
    out = json.loads(res.stdout)
    assert out["phase"] == rl.ABORTED and out["exit_code"] == 3

