"""A rollout ended because its owner is gone reaches people as any other end does: the webhooks and
Slack (`canary.notify`), the rollbacks counter, and log lines that name the rollout that ended. By
the controller's sweep, by a CanaryRollout that claims an orphan's route, and by `canary sweep`.
Against the strict Kubernetes API emulator and a real local HTTP receiver."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import structlog.testing
import tenacity

from canary import crd
from canary import rollout as rl
from canary.notify import Notifier
from canary.routing.istio import IstioRouter
from canary.telemetry import Telemetry
from tests import fleet
from tests.fakes import FakeClock
from tests.integration.test_controller import _progressing, prometheus, vs, world  # noqa: F401
from tests.integration.test_controller_owner import _twin
from tests.integration.test_controller_review import _cr
from tests.integration.test_notify_health import receiver  # noqa: F401
from tests.integration.test_sweep import _age_mark, _claim, _controller, _sweep, cluster  # noqa: F401
from tests.unit.test_telemetry import value as metric

pytestmark = pytest.mark.integration


def _hooks(receiver: Any, notifier: Notifier) -> list[dict[str, Any]]:
    """What the webhook received once `notifier` has delivered everything it queued."""
    assert notifier.close(10.0), "the notifier did not drain"
    return [body for path, body, _ in receiver.got if path == "/hook"]


def test_the_controllers_sweep_tells_the_webhooks_and_counts_an_abandoned_rollback(cluster: Any,
                                                                                   receiver: Any) -> None:
    api, client, router = cluster
    clock = FakeClock(time.time())
    _claim(IstioRouter(client, wait=tenacity.wait_none()), at=clock.now() - 1000)
    notifier, telemetry = Notifier(webhooks=[receiver.url + "/hook"]), Telemetry()
    ctl = _controller(client, clock, sweep_every=60, notifier=notifier, telemetry=telemetry)
    ctl.tick()  # first seen
    clock.sleep(200)  # seen unchanged past 3 x 10 s + 120 s
    ctl.tick()
    assert vs(api, 0)[0] == [100, 0] and vs(api, 0)[1]["phase"] == rl.ABORTED
    hooks = _hooks(receiver, notifier)
    assert len(hooks) == 1, hooks
    hook = hooks[0]
    assert (hook["event"], hook["namespace"], hook["rollout"], hook["model"]) == ("aborted", "ml", "m0", "m0")
    assert (hook["stable_version"], hook["canary_version"]) == ("v1", "v2")
    assert hook["weights"] == {"stable": 100, "canary": 0}
    assert hook["reason"].startswith("abandoned: run by `canary promote`") and "stable 100%" in hook["reason"], hook
    assert metric(telemetry, "canary_rollbacks_total", model="m0", reason="abandoned") == 1


def test_a_claimant_that_ends_an_orphan_tells_the_webhooks_and_logs_the_orphans_rollout(world: Any,
                                                                                       receiver: Any) -> None:
    """r0 runs v3 on m0 and is deleted with its finalizer removed by hand; `next` (v2) claims m0 and ends
    the orphan first. The end is posted (rollout m0, the orphan's versions), and `rollout.orphaned` /
    `rollout.abandoned` name r0's rollout and v3, with `next` as the claimant (they carried next's key)."""
    api, op, custom = world
    custom.create_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, fleet.rollout_object(0, "v3"))
    _progressing(op, custom, api)
    custom.patch_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, "r0", {"metadata": {"finalizers": None}})
    custom.delete_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, "r0")
    assert _cr(custom, "r0") is None and vs(api, 0)[0][1] > 0
    op.notifier, op.telemetry = Notifier(webhooks=[receiver.url + "/hook"]), Telemetry()
    custom.create_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, _twin("next", "v2"))
    with structlog.testing.capture_logs() as logs:
        op.tick()
    assert vs(api, 0)[1]["owner"].startswith("CanaryRollout ml/next#"), vs(api, 0)[1]
    hooks = _hooks(receiver, op.notifier)
    assert [(h["event"], h["rollout"], h["canary_version"]) for h in hooks] == [("aborted", "m0", "v3")], hooks
    assert hooks[0]["reason"].startswith("orphaned: CanaryRollout ml/r0 no longer exists"), hooks[0]
    assert metric(op.telemetry, "canary_rollbacks_total", model="m0", reason="abandoned") == 1
    lines = {e["event"]: e for e in logs if e["event"] in ("rollout.orphaned", "rollout.abandoned")}
    assert set(lines) == {"rollout.orphaned", "rollout.abandoned"}, [e["event"] for e in logs]
    for e in lines.values():
        assert (e["rollout"], e["claimant"], e["canary_version"]) == ("ml/r0", "ml/next", "v3"), e


def test_canary_sweep_tells_the_webhooks_from_the_environment_and_refuses_a_bad_url(tmp_path: Path, cluster: Any,
                                                                                   receiver: Any,
                                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    api, client, router = cluster
    kubeconfig = fleet.write_kubeconfig(tmp_path / "kubeconfig", api.url)
    _claim(IstioRouter(client, wait=tenacity.wait_none()), at=time.time() - 1000)
    bad = _sweep(kubeconfig, "-n", "ml", "--webhook", "hooks.example/no-scheme")
    assert bad.exit_code == 2 and "webhook URL #1 (CANARY_WEBHOOK_URLS / --webhook) is not an http(s) URL" in bad.output, bad.output
    assert "sweep-seen" not in str(api.get("networking.istio.io", "virtualservices", "ml", "m0")["metadata"])
    monkeypatch.setenv("CANARY_WEBHOOK_URLS", receiver.url + "/hook")
    assert _sweep(kubeconfig, "-n", "ml").exit_code == 0  # marks: nothing ended, nothing posted
    _age_mark(api, "m0", 151)
    assert _sweep(kubeconfig, "-n", "ml", "--dry-run").exit_code == 0  # names it, writes and posts nothing
    assert receiver.got == []
    done = _sweep(kubeconfig, "-n", "ml")
    assert done.exit_code == 0 and "stable 100%, recorded aborted" in done.stdout, done.output
    # the command waited for the delivery before it exited
    assert [(b["event"], b["rollout"]) for p, b, _ in receiver.got if p == "/hook"] == [("aborted", "m0")]
