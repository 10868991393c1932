"""The rollout record's schema (decision 169): every record names its schema and its writer; a record with no
schema is this release's (and every older one's); a newer schema is never read as garbage, nor as a state."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest

from canary import rollout as rl
from canary import unowned
from canary.errors import RecordTooNew
from canary.reconcile import parse_record

# A record as the releases before decision 169 wrote it (no `schema`, no `writer`), field for field
OLD = ('{"canary_version":"v2","destination_rule":"m0","evidence":{},"failed_looks":0,"heartbeat_s":60.0,'
       '"history":[{"at":1000.0,"event":"rollout.started","phase":"progressing","step":0}],"judged":{},'
       '"last_look_requests":-1.0,'
       '"last_verdict":null,"look":0,"model":"m0","owner":"promote#abc","pass_anchor_requests":-1.0,'
       '"phase":"progressing","reason":"","route":"","stable_version":"v1","started_at":1000.0,"step":0,'
       '"step_looks":0,"step_started_at":1000.0,"step_window":0,"updated_at":1000.0,'
       '"weights":{"canary":20,"stable":80},"window_evidence":{},"window_from":null,"window_to":null}')


def _newer(**extra: object) -> str:
    d = {**json.loads(OLD), "schema": rl.SCHEMA + 1, "writer": "modelcanary 9.1.0",
         "weights": {"stable": 75, "canary": 20, "mirror": 5}, "step": "1/4"}
    d.update(extra)
    return json.dumps(d)


def test_every_record_written_names_its_schema_and_its_writer() -> None:
    state, _ = rl.new_rollout(model="m0", stable_version="v1", canary_version="v2", now=1000.0)
    d = json.loads(state.to_json())
    assert d["schema"] == rl.SCHEMA == 1 and d["writer"] == rl.WRITER
    assert rl.RolloutState.from_json(state.to_json()) == state


def test_the_writer_is_this_release() -> None:
    project = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert rl.WRITER == f"{project['name']} {project['version']}"


def test_a_record_with_no_schema_is_read_as_today_s() -> None:
    state = rl.RolloutState.from_json(OLD)
    assert state.phase == rl.PROGRESSING and state.weights.canary == 20 and state.owner == "promote#abc"
    assert parse_record(OLD) == state and unowned.newer(OLD) == ""
    assert json.loads(state.to_json())["schema"] == 1  # rewritten by this release: named from now on
    assert rl.RolloutState.from_json(json.dumps({**json.loads(OLD), "schema": 1})) == state


def test_a_newer_schema_is_never_read_as_garbage_whatever_its_shape() -> None:
    """A third weight key and a step of another type: garbage to this release's shape, but the record says it is
    a newer schema's. Read as such: NewerRecord (a ValueError, so no older path reads it as a state), which
    names the writer and the remedy; `unowned.newer` keeps every unasked end off it."""
    with pytest.raises(rl.NewerRecord, match="modelcanary 9.1.0 in record schema 2") as got:
        rl.RolloutState.from_json(_newer())
    assert "upgrade this canary" in str(got.value) and "`canary rollback`" in str(got.value)
    with pytest.raises(RecordTooNew, match="upgrade this canary"):
        parse_record(_newer())
    assert "modelcanary 9.1.0" in unowned.newer(_newer())
    assert "a newer canary" in unowned.newer(_newer(writer=None))  # no writer named: still left alone


@pytest.mark.parametrize("schema", [0, -1, "2", True, 1.5, None, {"v": 2}])
def test_a_schema_no_canary_writes_is_garbage(schema: object) -> None:
    text = _newer(schema=schema, weights={"stable": 80, "canary": 20}, step=0)
    with pytest.raises(ValueError, match="schema must be a positive integer") as got:
        rl.RolloutState.from_json(text)
    assert not isinstance(got.value, rl.NewerRecord) and unowned.newer(text) == ""
