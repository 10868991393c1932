"""`library.log`: the standard library's records as event lines, one handler, repeats throttled (decision 403)."""

from __future__ import annotations

import io
import json
import logging

from canary import logs


def lines(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_records_of_warning_and_above_are_events_once_per_message_a_minute() -> None:
    stream = io.StringIO()
    logs.configure(fmt="json", stream=stream)
    lib = logging.getLogger("some.library")
    lib.info("not an event")
    for _ in range(3):
        lib.warning("Retrying after %s", "a reset")
    lib.error("another")
    try:
        raise ValueError("bad")
    except ValueError:
        lib.exception("failed")
    got = lines(stream)
    assert [(e["event"], e["level"], e["logger"], e["message"]) for e in got] == [
        ("library.log", "warning", "some.library", "Retrying after a reset"),
        ("library.log", "error", "some.library", "another"),
        ("library.log", "error", "some.library", "failed")]
    assert "ValueError: bad" in got[2]["exception"]


def test_configure_again_replaces_the_handler_and_no_basic_config_is_made() -> None:
    first, second = io.StringIO(), io.StringIO()
    logs.configure(fmt="json", stream=first)
    logs.configure(fmt="json", stream=second)
    root = logging.getLogger()
    assert sum(isinstance(h, logs._StdlibRecords) for h in root.handlers) == 1
    logging.error("module level, as the kubernetes config loader logs")  # basicConfig() when root had no handler
    assert not any(type(h) is logging.StreamHandler for h in root.handlers)
    assert first.getvalue() == ""
    assert lines(second)[0]["message"] == "module level, as the kubernetes config loader logs"


def test_a_long_message_is_cut() -> None:
    stream = io.StringIO()
    logs.configure(fmt="json", stream=stream)
    logging.getLogger("body").warning("x" * 10_000)
    assert len(lines(stream)[0]["message"]) == logs.MAX_LIBRARY_MESSAGE
