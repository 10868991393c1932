"""Decision 128: today's three changes (decisions 124, 126, 127) attacked as a demanding user would.

Real components: the Kubernetes API emulator (pods and Services registered) with the real IstioRouter, the
real Prometheus client (pointed at an address that is no Prometheus) and the real `kube.bound_by`; fake
clocks, never a timed wait. The CLI's parts are in tests/unit/test_sixth_attack_cli.py and
tests/integration/test_interrupt_grace.py.
"""

from __future__ import annotations

from typing import Any

import pytest

from canary.errors import ConfigError
from canary.metrics.prometheus import PrometheusProvider
from tests.fakes import FakeClock
from tests.integration.test_canary_pods import _dr_labels, _pod, api, blind_report  # noqa: F401 - the fixture
from tests.integration.test_promote_route_safety import record, runner

pytestmark = pytest.mark.integration


def test_a_prometheus_url_that_is_no_prometheus_is_bad_input_whatever_the_stables_pods(api: Any) -> None:
    """Decision 128 (a). Decision 124 turned the metrics preflight's refusal into StableNotReady (exit 3,
    "and so ...") whenever the stable had no Ready pod, meant for its blind refusal (no stable series: the
    pods' doing). Every other refusal is the flags' or the policy's: a --prometheus-url that is no
    Prometheus (here the Kubernetes API's own address: 404), credentials refused, a query rejected. Those
    came out as exit 3 blaming the pods ("and so ... check the path prefix"): a pipeline retried it, and
    scaling the stable up only led to the exit 2 it should have been. Now it is ConfigError (exit 2), as
    with the stable's pods Ready; nothing written either way."""
    _dr_labels(api)
    _pod(api, "m0-v2-0", "v2", ready=True)
    _pod(api, "m0-v1-0", "v1", ready=False)  # the stable crash-loops, and the URL is wrong as well
    clock = FakeClock()
    r = runner(api, "v2", clock, wait_ready_s=600)
    # the emulator answers 404 at once; its answer, not a timeout of a loaded host's, is the subject (1 s was)
    r.metrics = PrometheusProvider(api.url, retries=1, budget_s=120.0, timeout_s=60.0)
    before = record(api)
    with pytest.raises(ConfigError) as got:
        r.run()
    text = str(got.value)
    assert "does not look like a Prometheus HTTP API" in text and "has no Ready pod" not in text, text
    assert record(api) == before and clock.t == 1_000.0


def _grace_spent_during(r: Any, preflight: Any) -> None:
    """Bound `r`'s Kubernetes client as promote does (`kube.bound_by`, an 8 s grace after SIGTERM), and
    make its metrics preflight `preflight`, during which SIGTERM lands and the grace runs out."""
    import math

    from canary.kube import bound_by

    grace_until = [math.inf]
    bound_by(r.router.custom.api_client, lambda: grace_until[0],
             spent=lambda: "the 8 s after SIGTERM (--interrupt-grace) are spent")

    def spent(*args: Any, **kw: Any) -> Any:
        r.interrupted_by, grace_until[0] = "SIGTERM", 0.0
        r.stop.set()
        return preflight(*args, **kw)
    r.metrics.preflight = spent


def test_a_grace_spent_before_the_claim_says_nothing_was_moved(api: Any) -> None:
    """Decision 128. SIGTERM came while the metrics preflight waited on a slow Prometheus, and its grace
    (`--interrupt-grace`, `kube.bound_by` on the router's client) ran out before the pods were counted:
    the count's first read was not sent, and promote ended on that alone ("GET ...: not sent, the 8 s after
    SIGTERM ... are spent", exit 3), which reads like the fail-safe's failure. It now says it was
    interrupted before the rollout began and that it moved no traffic to the canary; nothing was written."""
    from canary.errors import GraceSpent

    _dr_labels(api)
    _pod(api, "m0-v2-0", "v2", ready=True)
    r = runner(api, "v2", FakeClock(), wait_ready_s=600)
    _grace_spent_during(r, r.metrics.preflight)  # Prometheus answers the preflight, slowly
    before = record(api)
    with pytest.raises(GraceSpent) as got:
        r.run()
    text = str(got.value)
    assert text.startswith("interrupted (SIGTERM) before the rollout began, and GET "), text
    assert "not sent, the 8 s after SIGTERM (--interrupt-grace) are spent; this promote moved no traffic to the " \
        "canary" in text, text
    assert record(api) == before


def test_a_grace_spent_during_a_blind_preflight_is_an_interrupt_not_bad_input(api: Any) -> None:
    """Review of decision 128. The preflight found no stable series (blind), and the signal's grace ran
    out while it ran: the pod count that explains a blind refusal was not sent, and its GraceSpent was
    turned back into the preflight's refusal (exit 2, "check policy metrics.labels") for a cancelled job.
    It is the interrupt now ("interrupted (SIGTERM) before the rollout began"); nothing written."""
    from canary.errors import GraceSpent

    _dr_labels(api)
    _pod(api, "m0-v2-0", "v2", ready=True)
    _pod(api, "m0-v1-0", "v1", ready=True)
    r = runner(api, "v2", FakeClock(), wait_ready_s=600)
    _grace_spent_during(r, blind_report)  # no stable series
    before = record(api)
    with pytest.raises(GraceSpent) as got:
        r.run()
    assert str(got.value).startswith("interrupted (SIGTERM) before the rollout began"), str(got.value)
    assert record(api) == before
