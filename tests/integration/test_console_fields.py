"""A field read from a cluster object, printed by the console renderer (a person's terminal, `--log-format
console`), is one escaped value, never a line of its own (decision 405). The record's `owner` is anyone's who may
edit the VirtualService; decision 401 escaped it in messages and `-o json`, but the log lines that carry it as a
field (`rollout.abandoned`, `sweep.left_alone`, `rollout.taken_over`) printed it raw unless it held a space, a
quote or a line break (structlog's ConsoleRenderer then shows its `repr`): an escape sequence in it cleared or
rewrote the terminal, U+0085 and a bidi override went out raw. A newline and a CR were already shown by `repr`
(kept here as guards). Against the strict Kubernetes API emulator, the
controller's own sweep, the real renderer."""

from __future__ import annotations

import io
import sys
import time
from typing import Any, Iterator

import pytest
import tenacity

from canary import logs
from canary import rollout as rl
from canary.routing.istio import IstioRouter
from tests.fakes import FakeClock
from tests.integration.test_controller import vs
from tests.integration.test_sweep import OWNER, _claim, _controller, cluster  # noqa: F401

pytestmark = pytest.mark.integration

FORGED = [OWNER + "\nerror: the canary v2 was promoted by on-call", OWNER + "\x1b[2J\x1b[H\x1b[32mPROMOTED",
          OWNER + "\r2026-12-05T00:00:00Z [info     ] rollout.promoted", OWNER + "\u202e\u0085forged"]


@pytest.fixture
def console() -> Iterator[io.StringIO]:
    out = io.StringIO()
    logs.configure(fmt="console", stream=out)
    yield out
    logs.configure(fmt="console", stream=sys.__stderr__)  # as tests/conftest.py has it


@pytest.mark.parametrize("owner", FORGED, ids=["newline", "escape", "carriage-return", "bidi-c1"])
def test_a_hand_edited_owner_in_a_sweeps_log_line_is_one_escaped_field(cluster: Any, console: io.StringIO,
                                                                          owner: str) -> None:
    """A promote of another machine, its record's owner edited by hand, gone: the controller's sweep ends it and
    says `rollout.abandoned` with `owner=`: one line, the owner's newline, ESC, CR, U+202E and U+0085 escaped."""
    api, client, router = cluster
    clock = FakeClock(time.time())
    _claim(IstioRouter(client, wait=tenacity.wait_none()), at=clock.now() - 1000, owner=owner)
    ctl = _controller(client, clock, sweep_every=60)
    for dt in (0, 200):  # first seen, then unchanged for 200 s: ended
        clock.sleep(dt)
        ctl.tick()
    assert vs(api, 0)[1]["phase"] == rl.ABORTED and vs(api, 0)[0] == [100, 0]
    text = console.getvalue()
    lines = text.splitlines()
    abandoned = [line for line in lines if "rollout.abandoned" in line]
    assert len(abandoned) == 1, text
    assert f"owner={ascii(owner)}" in abandoned[0], abandoned[0]  # escaped once
    assert not any(line.startswith(("error:", "2026-12-05T00:00:00Z", "all clear")) for line in lines), text
    assert "\x1b" not in text and "\r" not in text and "\u202e" not in text and "\u0085" not in text, repr(text)
    assert len(text.split("\n")) == len(lines) + 1  # no other line break (str.splitlines splits on U+0085 too)
