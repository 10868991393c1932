"""Decision 157 attacked (decision 167): a split whose record this canary cannot read is not always nobody's.

A newer canary (a rolling upgrade of the controller, a CI image ahead of the on-call's) may record a rollout in
a phase this version does not know. Its record is then "unreadable" here, and 157 took every unreadable record
over a split as garbage typed by hand: the sweeps ended it after 30 s unchanged (a live promote writes once a
look, 60 s apart here), and the next promote ended it at once, racing a live owner that had written nothing
wrong. Tried against the strict Kubernetes API emulator, beside the control (cut JSON is still ended)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import structlog.testing
import tenacity
from typer.testing import CliRunner

from canary import sweep
from canary.cli import app
from canary.errors import TargetError
from canary.routing.istio import IstioRouter
from tests import fleet
from tests.fakes import FakeClock
from tests.integration.test_promote_route_safety import api, runner  # noqa: F401 - the fixture
from tests.integration.test_sweep import _claim, _controller

pytestmark = pytest.mark.integration
GROUP, ANN = "networking.istio.io", "modelcanary.dev/rollout"


def _newer_promote(api: Any, *, at: float) -> str:
    """A newer canary's promote of v2, live, at step 1 (80/20): its record names a phase this version does not
    know and a field it does not read. Returns the record as written."""
    _claim(IstioRouter(api.api_client(), wait=tenacity.wait_none()), at=at, heartbeat_s=60.0)

    def edit(vs: dict[str, Any]) -> None:
        ann = vs["metadata"]["annotations"]
        ann[ANN] = json.dumps({**json.loads(ann[ANN]), "phase": "verifying", "verification": {"shadow": 0.2}})
    api.edit(GROUP, "virtualservices", "ml", "m0", edit)
    return _record(api)


def _record(api: Any) -> str:
    return str(api.get(GROUP, "virtualservices", "ml", "m0")["metadata"]["annotations"][ANN])


def _weights(api: Any) -> list[int]:
    return [d["weight"] for d in api.get(GROUP, "virtualservices", "ml", "m0")["spec"]["http"][0]["route"]]


def _unowned(logs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in logs if e["event"] == "rollout.split_unowned"]


def test_the_controllers_sweep_never_ends_a_newer_canarys_rollout_it_cannot_read(api: Any) -> None:
    """Seen unchanged for 31 s and 62 s (its owner writes every 60 s): left as it is, reported as not checked
    (`sweep.owner_unknown`, naming the phase). Without the fix: stable 100%, `aborted`, at 31 s."""
    clock = FakeClock(time.time())
    written = _newer_promote(api, at=clock.now())
    ctl = _controller(api.api_client(), clock, sweep_every=0.001)
    with structlog.testing.capture_logs() as logs:
        for _ in range(3):
            ctl.tick()
            clock.sleep(sweep.UNOWNED_AFTER_S + 1)
    assert _weights(api) == [80, 20] and _record(api) == written and not _unowned(logs), _unowned(logs)
    told = [e for e in logs if e["event"] == "sweep.owner_unknown"]
    assert told and "'verifying'" in told[0]["error"] and told[0]["owner"].startswith("promote#"), told


def test_the_next_promote_refuses_a_newer_canarys_rollout_instead_of_ending_it(api: Any) -> None:
    """An older promote of v2 run beside it: refused, the record named, nothing written (as before 157). Without
    the fix it ended the live rollout's split at once and claimed the route."""
    clock = FakeClock(time.time())
    written = _newer_promote(api, at=clock.now())
    writes = len(api.writes)
    with structlog.testing.capture_logs() as logs, pytest.raises(TargetError, match="verifying"):
        runner(api, "v2", clock).run()
    assert len(api.writes) == writes and _record(api) == written and not _unowned(logs)
    assert _weights(api) == [80, 20]


def test_status_and_its_watch_never_call_a_newer_canarys_rollout_nobodys(tmp_path: Path, api: Any) -> None:
    """`status` named it "no process drives this split" and `status --watch` exited 3 (aborted) while the newer
    promote ran. Now: no `split_unowned`, the record's phase named, and the watch waits (exit 4 at --timeout)."""
    kubeconfig = fleet.write_kubeconfig(tmp_path / "kubeconfig", api.url)
    _newer_promote(api, at=time.time())
    shown = CliRunner().invoke(app, ["status", "m0", "-n", "ml", "-o", "json", "--kubeconfig", str(kubeconfig)])
    got = json.loads(shown.stdout)
    assert "split_unowned" not in got and "verifying" in got["unreadable_state"], got
    watched = CliRunner().invoke(app, ["status", "m0", "-n", "ml", "-w", "--timeout", "1s",
                                       "--kubeconfig", str(kubeconfig)])
    assert watched.exit_code == 4, watched.output


def test_cut_json_over_a_split_is_still_ended_by_the_sweep(api: Any) -> None:
    """The control: garbage that is no JSON object at all is no canary's record; 157's end stands."""
    clock = FakeClock(time.time())
    _newer_promote(api, at=clock.now() - 1000)
    api.edit(GROUP, "virtualservices", "ml", "m0",
             lambda vs: vs["metadata"]["annotations"].update({ANN: '{"phase": "promoted", "model": '}))
    ctl = _controller(api.api_client(), clock, sweep_every=0.001)
    with structlog.testing.capture_logs() as logs:
        ctl.tick()
        clock.sleep(sweep.UNOWNED_AFTER_S + 1)
        ctl.tick()
    assert _weights(api) == [100, 0] and len(_unowned(logs)) == 1


def test_the_controllers_sweep_counts_the_split_it_ended_as_a_foreign_edit(api: Any) -> None:
    """`promoted` typed into a dead promote's record at 80/20, ended by the controller's sweep: counted in
    `canary_rollbacks_total{reason="foreign_edit"}` (a record edited by hand), as the sweep's abandoned ends are
    counted. Without the fix the end was in no counter: a dashboard of ends missed it, and its `end_cause` was
    `other`."""
    from canary.telemetry import Telemetry
    from tests.unit.test_telemetry import value as metric

    clock = FakeClock(time.time())
    _claim(IstioRouter(api.api_client(), wait=tenacity.wait_none()), at=clock.now() - 1000)
    api.edit(GROUP, "virtualservices", "ml", "m0", lambda vs: vs["metadata"]["annotations"].update(
        {ANN: json.dumps({**json.loads(vs["metadata"]["annotations"][ANN]), "phase": "promoted"})}))
    telemetry = Telemetry()
    ctl = _controller(api.api_client(), clock, sweep_every=0.001, telemetry=telemetry)
    with structlog.testing.capture_logs() as logs:
        ctl.tick()
        clock.sleep(sweep.UNOWNED_AFTER_S + 1)
        ctl.tick()
    assert _weights(api) == [100, 0] and len(_unowned(logs)) == 1
    assert metric(telemetry, "canary_rollbacks_total", model="m0", reason="foreign_edit") == 1
    aborted = [e for e in logs if e["event"] == "rollout.aborted"]
    assert aborted and aborted[0]["end_cause"] == "foreign_edit", aborted


def test_a_promote_refused_after_it_ended_the_split_nobody_owned_says_it_wrote_stable_100(api: Any) -> None:
    """The next promote ends the split under a typed `promoted` first (157), then is refused as bad input (here:
    v1, the version the stable subset selects, asked as the canary). Its error said only the refusal, exit 2, which
    docs/reference/cli.md, "Exit codes" calls untouched: the on-call read 80/20 still standing. The error now says
    the split was ended at stable 100% by this promote."""
    from canary.errors import ConfigError

    clock = FakeClock(time.time())
    _claim(IstioRouter(api.api_client(), wait=tenacity.wait_none()), at=clock.now() - 1000)
    api.edit(GROUP, "virtualservices", "ml", "m0", lambda vs: vs["metadata"]["annotations"].update(
        {ANN: json.dumps({**json.loads(vs["metadata"]["annotations"][ANN]), "phase": "promoted"})}))
    with pytest.raises(ConfigError) as refused:
        runner(api, "v1", clock).run()
    assert _weights(api) == [100, 0]
    assert "this promote ended the split nobody owned under the route's record (promoted (v2 serving)) at stable " \
           "100%" in str(refused.value), str(refused.value)


def _own_ab_after_a_real_end(api: Any, clock: FakeClock) -> None:
    """v2 promoted by a real promote (its end recorded at 100/0), then a person's own A/B test on the route: the
    canary subset pointed at v3 by hand and 90/10 set, with canary's record left as it was."""
    assert runner(api, "v2", clock).run().state.phase == "promoted"

    def dr(obj: dict[str, Any]) -> None:
        for s in obj["spec"]["subsets"]:
            if s["name"] == "canary":
                s["labels"]["version"] = "v3"
    api.edit(GROUP, "destinationrules", "ml", "m0", dr)
    api.edit(GROUP, "virtualservices", "ml", "m0",
             lambda vs: [d.update(weight=w) for d, w in zip(vs["spec"]["http"][0]["route"], (90, 10))])


def test_a_persons_own_split_after_a_real_end_is_never_ended_by_the_sweep_or_the_next_promote(api: Any) -> None:
    """The record is canary's genuine end (recorded 100/0: every end canary writes is), and a person split the
    route afterwards, by hand, for their own reasons. Nothing of canary's drives it and nothing of canary's made
    it: the sweep leaves it (157 ended it after 30 s), and the next promote refuses as it did before 157 ("set it
    to 100/0 first"), nothing written (157 ended it and claimed). `status` still names it."""
    from canary.errors import ConfigError

    clock = FakeClock(time.time())
    _own_ab_after_a_real_end(api, clock)
    record = _record(api)
    ctl = _controller(api.api_client(), clock, sweep_every=0.001)
    with structlog.testing.capture_logs() as logs:
        for _ in range(3):
            ctl.tick()
            clock.sleep(sweep.UNOWNED_AFTER_S + 1)
        writes = len(api.writes)
        with pytest.raises(ConfigError, match="already split 90/10"):
            runner(api, "v4", clock).run()
    assert len(api.writes) == writes and _record(api) == record and not _unowned(logs), _unowned(logs)
    assert _weights(api) == [90, 10]


def test_status_names_a_persons_split_after_a_real_end_without_promising_the_sweep_ends_it(tmp_path: Path,
                                                                                          api: Any) -> None:
    kubeconfig = fleet.write_kubeconfig(tmp_path / "kubeconfig", api.url)
    _own_ab_after_a_real_end(api, FakeClock(time.time()))
    text = CliRunner().invoke(app, ["status", "m0", "-n", "ml", "--kubeconfig", str(kubeconfig)]).stdout
    assert "the weights moved by hand after that end" in text and "nothing of canary's ends" in text, text
    assert "controller's sweep" not in text, text
