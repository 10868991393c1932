"""Rolling upgrades of canary itself (decision 169): a record in a record schema above this canary's.

A newer canary (a controller replica upgraded first, a CI image a release ahead) may record a rollout in a shape
this release cannot read: a third weight key, a field of another type. Decision 167 kept records in a phase this
canary does not know off every unasked end; a known phase in a new shape still read as garbage, and over a
split the sweeps ended it after 30 s, the next promote at once, the controller whose CanaryRollout it was at its
next tick. Every record now names its `schema` and `writer`; one above this canary's schema is left to the
canary that wrote it, by every reader, which names the writer and the remedy (upgrade this canary). Only `canary
rollback` ends it. Against the strict Kubernetes API emulator (kmock), with the real CLI and controller."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import structlog.testing
import tenacity
from typer.testing import CliRunner

from canary import crd, sweep
from canary import rollout as rl
from canary.cli import app
from canary.errors import RecordTooNew
from canary.routing.istio import IstioRouter
from tests import fleet
from tests.fakes import FakeClock
from tests.integration.test_controller import _progressing, prometheus, vs, world  # noqa: F401
from tests.integration.test_controller_review import _cr
from tests.integration.test_promote_route_safety import HookClock, _at_first_step, api, runner  # noqa: F401 - the fixture
from tests.integration.test_split_unowned_newer import _unowned, _weights
from tests.integration.test_sweep import _claim, _controller

pytestmark = pytest.mark.integration
GROUP, ANN = "networking.istio.io", "modelcanary.dev/rollout"
WRITER = "modelcanary 9.1.0"


def _to_newer_schema(api: Any, name: str = "m0") -> str:
    """The record on `name` rewritten as a newer canary writes it: schema 2, its writer, the phase it had, and a
    shape this release's parser refuses (a third weight key, a step of another type). Returns it as written."""
    def edit(obj: dict[str, Any]) -> None:
        ann = obj["metadata"]["annotations"]
        d = json.loads(ann[ANN])
        ann[ANN] = json.dumps({**d, "schema": 2, "writer": WRITER, "step": {"index": d["step"]},
                               "weights": {**d["weights"], "mirror": 5}})
    api.edit(GROUP, "virtualservices", "ml", name, edit)
    return _record(api)


def _newer_promote(api: Any, *, at: float) -> str:
    """A newer canary's promote of v2, live at step 1 (80/20), in a phase this canary knows."""
    _claim(IstioRouter(api.api_client(), wait=tenacity.wait_none()), at=at, heartbeat_s=60.0)
    return _to_newer_schema(api)


def _record(api: Any, name: str = "m0") -> str:
    return str(api.get(GROUP, "virtualservices", "ml", name)["metadata"]["annotations"][ANN])


def test_the_controllers_sweep_never_ends_a_rollout_in_a_newer_record_schema(api: Any) -> None:
    """Seen unchanged for 31 s and 62 s (its owner writes every 60 s): left, reported as not checked, naming the
    writer and the remedy. Without the fix: garbage, stable 100% recorded `aborted` at 31 s."""
    clock = FakeClock(time.time())
    written = _newer_promote(api, at=clock.now())
    ctl = _controller(api.api_client(), clock, sweep_every=0.001)
    with structlog.testing.capture_logs() as logs:
        for _ in range(3):
            ctl.tick()
            clock.sleep(sweep.UNOWNED_AFTER_S + 1)
    assert _weights(api) == [80, 20] and _record(api) == written and not _unowned(logs), _unowned(logs)
    told = [e for e in logs if e["event"] == "sweep.owner_unknown"]
    assert told and WRITER in told[0]["error"] and "upgrade this canary" in told[0]["error"], told


def test_canary_sweep_leaves_it_and_says_so(tmp_path: Path, api: Any) -> None:
    """`canary sweep` (the CLI an older CronJob image runs): exit 3 (not checked), no mark, nothing written."""
    kubeconfig = fleet.write_kubeconfig(tmp_path / "kubeconfig", api.url)
    written = _newer_promote(api, at=time.time() - 1000)
    for _ in range(2):  # no mark is set: nothing here times it
        got = CliRunner().invoke(app, ["sweep", "-n", "ml", "--kubeconfig", str(kubeconfig)])
        marks = api.get(GROUP, "virtualservices", "ml", "m0")["metadata"]["annotations"]
        assert "modelcanary.dev/sweep-seen" not in marks
    assert got.exit_code == 3 and WRITER in got.output, got.output
    assert _weights(api) == [80, 20] and _record(api) == written


def test_the_next_promote_refuses_it_naming_the_writer_and_the_remedy(api: Any) -> None:
    """An older promote of v2 run beside it: refused (exit 2, RecordTooNew), nothing written. Without the fix it
    ended the live rollout's split at once and claimed the route."""
    clock = FakeClock(time.time())
    written = _newer_promote(api, at=clock.now())
    writes = len(api.writes)
    with structlog.testing.capture_logs() as logs, pytest.raises(RecordTooNew, match=WRITER) as got:
        runner(api, "v2", clock).run()
    assert "upgrade this canary" in str(got.value)
    assert len(api.writes) == writes and _record(api) == written and not _unowned(logs)
    assert _weights(api) == [80, 20]


def test_status_names_the_writer_and_its_watch_waits(tmp_path: Path, api: Any) -> None:
    """`status` called it "no process drives this split" and `status -w` exited 3 (aborted). Now: the writer and
    the remedy named, no `split_unowned`, and the watch waits (exit 4 at --timeout)."""
    kubeconfig = fleet.write_kubeconfig(tmp_path / "kubeconfig", api.url)
    _newer_promote(api, at=time.time())
    shown = CliRunner().invoke(app, ["status", "m0", "-n", "ml", "-o", "json", "--kubeconfig", str(kubeconfig)])
    got = json.loads(shown.stdout)
    assert "split_unowned" not in got and WRITER in got["unreadable_state"], got
    assert "upgrade this canary" in got["unreadable_state"], got
    watched = CliRunner().invoke(app, ["status", "m0", "-n", "ml", "-w", "--timeout", "1s",
                                       "--kubeconfig", str(kubeconfig)])
    assert watched.exit_code == 4, watched.output


def test_canary_rollback_ends_it_when_asked(tmp_path: Path, api: Any) -> None:
    """The one writer that may: a person's `canary rollback` sends stable 100%, whatever the record's schema."""
    kubeconfig = fleet.write_kubeconfig(tmp_path / "kubeconfig", api.url)
    _newer_promote(api, at=time.time())
    res = CliRunner().invoke(app, ["rollback", "m0", "-n", "ml", "--kubeconfig", str(kubeconfig), "--reason", "pager"])
    assert res.exit_code == 0, res.output
    assert _weights(api) == [100, 0]
    rec = json.loads(_record(api))
    assert rec["phase"] in rl.TERMINAL and rec["schema"] == rl.SCHEMA and rec["writer"] == rl.WRITER


def test_an_old_record_with_no_schema_is_still_read_as_todays(api: Any) -> None:
    """Back-compat: a record an older release wrote (no `schema`, no `writer`) is this schema's. Its typed end
    over a split is still 157's garbage, ended by the sweep after 30 s; not left as a newer canary's."""
    clock = FakeClock(time.time())
    _claim(IstioRouter(api.api_client(), wait=tenacity.wait_none()), at=clock.now() - 1000)

    def old_end(obj: dict[str, Any]) -> None:
        ann = obj["metadata"]["annotations"]
        d = json.loads(ann[ANN])
        assert d.pop("schema") == 1 and d.pop("writer") == rl.WRITER  # written by this release, named
        ann[ANN] = json.dumps({**d, "phase": "promoted"})
    api.edit(GROUP, "virtualservices", "ml", "m0", old_end)
    ctl = _controller(api.api_client(), clock, sweep_every=0.001)
    with structlog.testing.capture_logs() as logs:
        ctl.tick()
        clock.sleep(sweep.UNOWNED_AFTER_S + 1)
        ctl.tick()
    assert _weights(api) == [100, 0] and len(_unowned(logs)) == 1


def test_an_older_controller_never_ends_its_crs_rollout_a_newer_replica_recorded(world: Any) -> None:
    """Mid rolling upgrade, a newer controller replica drives r0 and records it in its schema; this older one
    (leader again: the new pod crashed, the upgrade was paused) reads it at its next ticks. It ended it as an
    unreadable record: stable 100%. Now: left as it is; Ready False, reason RecordTooNew, naming the writer."""
    api, op, custom = world
    custom.create_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, fleet.rollout_object(0, "v3"))
    _progressing(op, custom, api)
    written = _to_newer_schema(api, fleet.model(0))
    split = vs(api, 0)[0]
    with structlog.testing.capture_logs() as logs:
        for _ in range(3):
            op.tick()
    assert vs(api, 0)[0] == split and _record(api, fleet.model(0)) == written
    ready = next(c for c in (_cr(custom, "r0") or {})["status"]["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "False" and ready["reason"] == "RecordTooNew" and WRITER in ready["message"], ready
    said = [e for e in logs if e["event"] == "rollout.record_newer"]
    assert said and "upgrade this canary" in said[0]["hint"], said


@pytest.mark.parametrize("seen_by", ["watch", "fail-safe"])
def test_a_running_promote_whose_rollout_a_newer_canary_took_over_writes_nothing(api: Any, seen_by: str) -> None:
    """promote v2 (this release) runs at 80/20; a newer canary's promote takes the rollout over and records it in
    its schema. This one's next read of the route (its watch, or its fail-safe after an exception of any type)
    found the record "unreadable": it wrote stable 100% (`record.lost`) under the newer canary's live rollout.
    Now it is taken over: exit 3, nothing written, the writer named."""
    clock = HookClock(api)
    v2 = runner(api, "v2", clock)
    newer: list[str] = []
    if seen_by == "watch":
        clock.hooks.append((_at_first_step("v2"), lambda: newer.append(_to_newer_schema(api))))
    else:
        def update(state: rl.RolloutState) -> None:
            if state.phase == rl.PROGRESSING and not newer:
                newer.append(_to_newer_schema(api))
                raise RuntimeError("a display bug")
        v2.on_update = update
    with structlog.testing.capture_logs() as logs:
        res = v2.run()
    assert res.exit_code == 3 and res.state.reason.startswith("taken over: the record was written by " + WRITER), \
        res.state.reason
    assert newer and _record(api) == newer[0] and _weights(api)[1] > 0
    assert [e for e in logs if e["event"] == "rollout.taken_over" and e.get("holder") == "a newer canary"]
