"""`canary.interrupts.Interrupt`: a real signal delivered to this process (decisions 225, 230)."""

from __future__ import annotations

import signal

import pytest

from canary.interrupts import Interrupt


class Stopped(Exception):
    pass


@pytest.mark.parametrize("repeat", [False, True])
def test_the_first_signal_raises_and_is_recorded_and_later_ones_raise_only_with_repeat(repeat: bool) -> None:
    """Without `repeat` (promote's: a second signal must not cut the first one's report) the second does
    nothing; with it (status -w, drift watch, the sandbox: Ctrl-C as Python's own) it raises too, so a second
    Ctrl-C still cuts a read that blocks when the first one's raise was lost. `check()` raises the first."""
    before = signal.getsignal(signal.SIGUSR1)
    stop = Interrupt(lambda name: Stopped(name), (signal.SIGUSR1,), repeat=repeat).install()
    try:
        stop.check()  # nothing came
        with pytest.raises(Stopped, match="SIGUSR1"):
            signal.raise_signal(signal.SIGUSR1)
        assert stop.fired == "SIGUSR1"
        if repeat:
            with pytest.raises(Stopped):
                signal.raise_signal(signal.SIGUSR1)
        else:
            signal.raise_signal(signal.SIGUSR1)  # nothing
        with pytest.raises(Stopped, match="SIGUSR1"):
            stop.check()
    finally:
        stop.restore()
    assert signal.getsignal(signal.SIGUSR1) is before
