"""A drift watcher's state file, hand-edited or written by a newer canary (decisions 210 and 211).

210: a state whose times are not finite (Python's json reads NaN and Infinity) or are negative was read as
any other: `"trigger": "pending", "trigger_due": NaN` was a retraining never retried (`now >= NaN` is never
true), and `rebase` skipped it too, all silently. It is refused, exit 2, naming the file, the entry and the field.

211: the state carried no schema, and `from_dict` dropped the fields it did not know: the next save wrote a newer
canary's state back without them. Every state written now names `schema` and `writer`; a newer schema is refused
(exit 2, the file left byte for byte); a state without `schema` (every older release's) reads as before.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from typer.testing import CliRunner

from canary.cli import app
from canary.drift import monitor as M
from canary.drift import watch as W
from canary.rollout import WRITER
from tests.unit.test_drift_watch_config import _profile


def _watch(tmp_path: Any, state: Any) -> Any:
    prof = tmp_path / "p.json"
    prof.write_text(json.dumps(_profile()))
    return CliRunner().invoke(app, ["drift", "watch", "--baseline", str(prof), "--prometheus-url",
                                    "http://127.0.0.1:9", "--no-kube", "--once", "--state-file", str(state)])


PENDING = '{"rec/v1": {"model": "rec", "version": "v1", "phase": "drifting", "episode": 1, "trigger": "pending", ' \
          '"trigger_attempts": 1, "%s": %s}}'


@pytest.mark.parametrize("name,value", [("trigger_due", "NaN"), ("trigger_due", "Infinity"),
                                        ("trigger_due", "-Infinity"), ("trigger_due", "-5"),
                                        ("quiet_until", "NaN"), ("drifted_at", "Infinity"),
                                        ("traffic_since", "-1.5"), ("clean_at", "NaN"), ("drifted_from", "NaN"),
                                        ("trigger_asked", "NaN"), ("trigger_asked", "-5")])
def test_a_state_whose_time_is_not_a_finite_number_is_refused_naming_file_entry_and_field(
        tmp_path: Any, name: str, value: str) -> None:
    state = tmp_path / "state.json"
    state.write_text(PENDING % (name, value))
    before = state.read_bytes()
    r = _watch(tmp_path, state)
    assert r.exit_code == 2, r.output
    assert f"{state}: rec/v1: " in r.stderr and f"{name} must be a finite number" in r.stderr, r.stderr
    assert state.read_bytes() == before


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-1", "\"soon\""])
def test_an_undelivered_alert_whose_time_is_not_a_finite_number_is_refused_naming_it(tmp_path: Any, value: str) -> None:
    """An alert waiting in the state's outbox carries its evaluation's time (`at`: its webhook id and its body's
    `at` when delivered again). `"at": NaN` was read, and unsent() sent a body with NaN, which is no JSON a
    receiver parses (decision 223, of 210's kind)."""
    state = tmp_path / "state.json"
    state.write_text('{"rec/v1": {"model": "rec", "version": "v1", "outbox": [{"event": "drift.started", '
                     f'"message": "drift", "at": {value}}}]}}}}')
    before = state.read_bytes()
    r = _watch(tmp_path, state)
    assert r.exit_code == 2, r.output
    assert f"{state}: rec/v1: " in r.stderr and "outbox[0].at must be a finite number" in r.stderr, r.stderr
    assert state.read_bytes() == before


def test_a_state_of_a_newer_schema_is_refused_and_left_as_it_is(tmp_path: Any) -> None:
    """A newer canary's state, a field this one does not know (`cooldown`): read as today's, the field was
    dropped and the next save wrote the state back without it."""
    state = tmp_path / "state.json"
    state.write_text(json.dumps({"rec/v1": {"schema": 2, "writer": "modelcanary 9.0.0", "model": "rec",
                                            "version": "v1", "phase": "drifting", "episode": 3,
                                            "cooldown": {"until": 5e9}}}))
    before = state.read_bytes()
    r = _watch(tmp_path, state)
    assert r.exit_code == 2, r.output
    assert f"{state}: rec/v1: " in r.stderr and "written by modelcanary 9.0.0 in drift state schema 2" in r.stderr
    assert f"({WRITER}, drift state schema 1)" in r.stderr and "upgrade this canary" in r.stderr, r.stderr
    assert state.read_bytes() == before


@pytest.mark.parametrize("schema", [0, -1, "2", 1.5, True, None])
def test_a_schema_no_canary_writes_is_refused_naming_the_field(schema: Any) -> None:
    with pytest.raises(ValueError, match="schema must be a positive integer") as got:
        M.MonitorState.from_dict({"schema": schema, "model": "m", "version": "v"})
    assert not isinstance(got.value, M.NewerState)


def test_every_state_written_names_its_schema_and_writer_and_an_older_one_reads_as_before(tmp_path: Any) -> None:
    old = {"model": "rec", "version": "v1", "phase": "drifting", "drifted_in_row": 4, "episode": 2,
           "trigger": "pending", "trigger_attempts": 2, "trigger_due": 1_700_000_000.5, "quiet_until": 1_600_000_000}
    path = tmp_path / "state.json"
    path.write_text(json.dumps({"rec/v1": old}))
    watcher = W.DriftWatcher([], client=None, window_s=3600, config=M.MonitorConfig(), state_file=path)
    watcher.reload()
    got = watcher.states["rec/v1"]
    assert got == M.MonitorState(**old, traffic_since=1_600_000_000)  # as before: no field lost nor changed
    watcher._save("rec/v1", M.MonitorState("rec", "v1", trigger_due=1.0, trigger="pending"))
    stored = json.loads(path.read_text())["rec/v1"]
    assert stored["schema"] == M.STATE_SCHEMA == 1 and stored["writer"] == WRITER
    assert M.MonitorState.from_dict(stored) == M.MonitorState("rec", "v1", trigger_due=1.0, trigger="pending")


def test_what_a_newer_canary_stored_in_this_schema_survives_this_ones_read_modify_write(tmp_path: Any) -> None:
    """A controller's older replica leads for a while in a rolling upgrade: it read the newer release's states and
    wrote them back without the fields it did not know (`held_since` and `held_told` were such fields before
    decision 410's release, `job_retries` before 385's: a told run told again, a failed Job retried twice). Every
    field this canary does not know is kept as read now, in a state, in the outage record and as a record of its
    own, through a real pass of `drift watch --once` that writes the file (Prometheus down: the outage is stored)
    and through a state this canary changes (decision 448)."""
    newer = {"rec/v1": {"schema": 1, "writer": "modelcanary 9.0.0", "model": "rec", "version": "v1",
                        "phase": "drifting", "episode": 2, "trigger": "done", "held_reason": {"kind": "night"},
                        "unknown": [1, 2]},
             "prometheus": {"unreadable": {"rec/v1": 1000.0}, "flaps": 3},
             "fleet": {"leader": "r2", "since": 5.0}}
    state = tmp_path / "state.json"
    state.write_text(json.dumps(newer))
    r = _watch(tmp_path, state)
    assert r.exit_code == 1, r.output  # the episode open (Prometheus down: nothing measured)
    stored = json.loads(state.read_text())
    assert stored["prometheus"]["flaps"] == 3 and "down_since" in stored["prometheus"], stored  # written, and kept
    assert stored["fleet"] == newer["fleet"], stored
    got = stored["rec/v1"]
    assert got["held_reason"] == {"kind": "night"} and got["unknown"] == [1, 2] and got["writer"] == WRITER, got
    watcher = W.DriftWatcher([], client=None, window_s=3600, config=M.MonitorConfig(), state_file=state)
    from dataclasses import replace

    watcher._save("rec/v1", replace(watcher.states["rec/v1"], phase="ok", clean_in_row=3))  # changed here
    again = json.loads(state.read_text())
    assert again["rec/v1"]["held_reason"] == {"kind": "night"} and again["rec/v1"]["phase"] == "ok", again
    assert again["fleet"] == newer["fleet"] and again["prometheus"]["flaps"] == 3, again
    assert M.MonitorState.from_dict(again["rec/v1"]).to_dict() == again["rec/v1"]  # read as written


def test_the_state_file_is_on_disk_before_it_replaces_the_last_one(tmp_path: Any, monkeypatch: Any) -> None:
    """The state is fsynced under its temporary name before the rename: a node that lost power after a rename of
    unsynced data could leave an empty state file, which the next watch refused (exit 2) until a person deleted
    it, and the open episode with it (decision 530). The synced file is the one renamed, holding the states."""
    import os

    from canary.drift.watch import FileStateStore

    synced: list[str] = []
    real = os.fsync

    def fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    store = FileStateStore(tmp_path / "s.json")
    store.save({"rec/v1": {"model": "rec", "version": "v1"}})
    assert synced == [str(tmp_path / "s.json.tmp")]
    assert store.load() == {"rec/v1": {"model": "rec", "version": "v1"}} and not (tmp_path / "s.json.tmp").exists()
