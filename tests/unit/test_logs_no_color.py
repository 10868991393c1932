"""Log lines on a terminal are coloured unless NO_COLOR is set (https://no-color.org), as `rich` (the promote
panel, the status tables) already honours it: a CI runner that gives its steps a pseudo-terminal (Buildkite by
default, `docker run -t`) and sets NO_COLOR because its log viewer shows escape codes raw got colour codes in
every log line of `canary promote` all the same, while its panel had none (decision 358). A real pty."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from canary import logs


def _logged_on_a_terminal() -> str:
    master, slave = os.openpty()
    try:
        with open(slave, "w", encoding="utf-8", closefd=False) as stream:
            assert stream.isatty()
            logs.configure(fmt="auto", stream=stream)
            logs.get(model="rec-model").warning("rollout.aborted", reason="interrupted by SIGTERM")
            stream.flush()
        return os.read(master, 65536).decode("utf-8", "replace")
    finally:
        os.close(slave)
        os.close(master)


@pytest.fixture(autouse=True)
def _logs_reset() -> Iterator[None]:
    yield
    logs.configure(fmt="json")


def test_no_color_set_gives_log_lines_without_escape_codes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_COLOR", "1")
    out = _logged_on_a_terminal()
    assert "rollout.aborted" in out and "interrupted by SIGTERM" in out, out
    assert "\x1b[" not in out, repr(out)


@pytest.mark.parametrize("value", [None, ""])  # unset, or set empty: no-color.org's "present and not empty"
def test_without_no_color_a_terminal_still_gets_colours(monkeypatch: pytest.MonkeyPatch, value: str | None) -> None:
    if value is None:
        monkeypatch.delenv("NO_COLOR", raising=False)
    else:
        monkeypatch.setenv("NO_COLOR", value)
    out = _logged_on_a_terminal()
    assert "rollout.aborted" in out and "\x1b[" in out, repr(out)
