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


def test_keyboard_raises_keyboardinterrupt_for_each_signal_and_installs_only_on_the_main_thread() -> None:
    """`Interrupt.keyboard` is Ctrl-C as Python's own handler, recorded (status -w, drift watch, the sandbox).
    Off the main thread, where `signal.signal` raises ValueError, `install` leaves the handlers alone."""
    import threading

    before = signal.getsignal(signal.SIGUSR1)
    elsewhere: list[object] = []
    other = Interrupt.keyboard((signal.SIGUSR1,))
    thread = threading.Thread(target=lambda: elsewhere.append(other.install()))
    thread.start()
    thread.join()
    assert elsewhere == [other] and signal.getsignal(signal.SIGUSR1) is before
    other.restore()  # nothing to give back
    assert signal.getsignal(signal.SIGUSR1) is before

    ctrl_c = Interrupt.keyboard((signal.SIGUSR1,)).install()
    try:
        for _ in range(2):
            with pytest.raises(KeyboardInterrupt):
                signal.raise_signal(signal.SIGUSR1)
        with pytest.raises(KeyboardInterrupt):
            ctrl_c.check()
    finally:
        ctrl_c.restore()
    assert signal.getsignal(signal.SIGUSR1) is before


def test_restore_leaves_a_handler_installed_outside_python_alone() -> None:
    """`signal.getsignal` answers None for a handler installed outside Python (a C library, an embedding program):
    it cannot be put back, and `signal.signal(sig, None)` raised TypeError from `restore`."""
    before = signal.getsignal(signal.SIGUSR1)
    stop = Interrupt(lambda name: Stopped(name), (signal.SIGUSR1,)).install()
    stop._before = {signal.SIGUSR1: None}  # as `install` records such a handler
    stop.restore()
    assert not stop.armed
    signal.signal(signal.SIGUSR1, before)


def test_guarded_reports_the_signal_an_error_came_out_as() -> None:
    """An error raised after a signal came is that signal's (the SchemaError pydantic-core made of a lost
    KeyboardInterrupt); before one came it is itself; a result is returned as is."""
    def failing() -> None:
        raise RuntimeError("SchemaError: the validator of get_namespaced_custom_object")

    stop = Interrupt(lambda name: Stopped(name), (signal.SIGUSR1,)).install()
    try:
        assert stop.guarded(lambda: 7) == 7
        with pytest.raises(RuntimeError):
            stop.guarded(failing)
        try:
            signal.raise_signal(signal.SIGUSR1)
        except Stopped:
            pass  # lost, as native code loses it
        with pytest.raises(Stopped, match="SIGUSR1"):
            stop.guarded(failing)
    finally:
        stop.restore()
