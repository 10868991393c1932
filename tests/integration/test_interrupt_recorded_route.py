"""After a signal, the route whose writes keep the grace is the route the rollout drives, as it drives it then
(decision 416).

Found (review of decision 407): `promote` told `kube.bound_by` the route's paths once, from its flags, before the
Runner read the record. A re-run without `--destination-rule` resuming a rollout that recorded another
DestinationRule (decision 147's `RolloutState.destination_rule`: the VirtualService's name names none) drives that
recorded one, but after a signal its reads and writes were not "the route's": held back as an Event is, never sent.
With `--on-interrupt pause` the pause's write reads the DestinationRule first: refused unsent, and the fail-safe
wrote stable 100% (`aborted`, exit 3) where the operator asked to hold the split (exit 130, paused at 80/20).

The real CLI process, a real Prometheus (test_promote's backfilled history) and the strict Kubernetes API emulator,
whose DestinationRule is `rec-model-dr` (none named `rec-model`). The signal is sent once the re-run has resumed
(the first request once its record says it runs again, by the proxy before it is forwarded), a condition, not a
guess.
"""

from __future__ import annotations

import copy
import json
import os
import signal
from typing import Any

import pytest

from canary.logs import parse_json_lines
from tests.integration.test_interrupt_grace import _promote_signalled, run_acting_at
from tests.integration.test_promote import CANARY, GROUP, ROOT, cluster, prometheus, vs_state  # noqa: F401 - fixtures

pytestmark = pytest.mark.integration


def _rename_destination_rule(api: Any) -> None:
    dr = copy.deepcopy(api.get(GROUP, "destinationrules", "ml", "rec-model"))
    dr["metadata"] = {"name": "rec-model-dr", "namespace": "ml"}
    api.handler.put_object(dr)
    with api.handler.lock:  # the VirtualService's own name names no DestinationRule
        key = (GROUP, "destinationrules", "ml", "rec-model")
        api.handler._delete(key, api.handler.objects[key])


def test_a_resumed_rollout_on_its_recorded_destination_rule_is_paused_at_the_signal(
        cluster: Any, prometheus: Any) -> None:
    api, kubeconfig, policy = cluster
    _rename_destination_rule(api)
    code, _out, err = _promote_signalled(kubeconfig, policy, prometheus.url, "--destination-rule", "rec-model-dr",
                                         "--on-interrupt", "pause", "--interrupt-grace", "5s", split_of=api)
    assert code == 130, err[-3000:]
    weights, rec = vs_state(api)
    assert weights == [80, 20] and rec["phase"] == "paused" and rec["destination_rule"] == "rec-model-dr", rec

    # the re-run, as a pipeline's retry types it: no --destination-rule; it resumes on rec-model-dr
    # signalled by a proxy at the first request read once the record says the rollout runs again (its resume
    # written), before it is forwarded: the step starts over at the resume, and a test's thread that woke 3 s
    # after the `rollout.resumed` line found step 2 written (50/50), not the resumed 80/20
    res = run_acting_at(
        api, kubeconfig, lambda kc: [*CANARY, "promote", "rec-model", "--canary-version", "v2", "--policy", str(policy),
                                     "--namespace", "ml", "--kubeconfig", str(kc), "-o", "json", "--log-format", "json",
                                     "--on-interrupt", "pause", "--interrupt-grace", "5s"],
        {**os.environ, "KUBECONFIG": "", "CANARY_PROMETHEUS_URL": prometheus.url},
        when=lambda: vs_state(api)[1]["phase"] == "progressing", act=lambda proc: proc.send_signal(signal.SIGTERM))
    out, err = res.stdout, res.stderr
    assert "rollout.resumed" in [e["event"] for e in parse_json_lines(err)], err[-3000:]
    weights, rec = vs_state(api)
    # before: the pause's read of rec-model-dr was held back as not the route's, and the fail-safe wrote 100/0
    assert res.returncode == 130, err[-4000:]
    assert weights == [80, 20] and rec["phase"] == "paused" and "SIGTERM" in rec["reason"], rec
    said = parse_json_lines(err)
    assert not [e for e in said if e["event"] in ("rollout.failed", "rollout.aborting", "traffic.unsafe")], err[-3000:]
    assert json.loads(out)["phase"] == "paused"
    assert api.get(GROUP, "destinationrules", "ml", "rec-model") is None  # nothing written elsewhere
