"""`canary.interrupts.Interrupt`: a real signal delivered to this process (decisions 225, 230)."""

from __future__ import annotations

import math
import signal
import sys
import threading
import types
from typing import Any

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


def _nested_one(handler: Any, code: Any, k: int) -> Any:
    """Run `handler(SIGINT)` and, just before the k-th line of `code` (the handler's function) runs, call
    `handler(SIGTERM)` from inside it, as Python runs a second signal's handler between two bytecodes of the
    first's (sys.settrace makes the spot exact). Returns what the outer run raised, or "returned"; None when the
    handler ran fewer than k + 1 lines (every spot was tried)."""
    seen: list[int] = []
    fired: list[int] = []

    def local(frame: Any, event: str, _arg: Any) -> Any:
        if event == "line" and frame.f_code is code:
            seen.append(frame.f_lineno)
            if len(seen) == k + 1:
                fired.append(frame.f_lineno)
                sys.settrace(None)
                try:
                    handler(signal.SIGTERM, None)
                finally:
                    sys.settrace(tracer)
                    frame.f_trace = local
        return local

    def tracer(frame: Any, event: str, _arg: Any) -> Any:
        return local if frame.f_code is code else None

    before = sys.gettrace()
    outcome: Any = "returned"
    sys.settrace(tracer)
    try:
        handler(signal.SIGINT, None)
    except BaseException as e:  # noqa: BLE001 - what the outer run raised is the result
        outcome = e
    finally:
        sys.settrace(before)
    return outcome if fired else None

def test_a_second_signal_whose_handler_runs_inside_the_firsts_changes_nothing() -> None:
    """GitHub's cancel sends SIGINT then SIGTERM; sent back to back, the SIGTERM's handler can run between two
    bytecodes of the SIGINT's. Wherever it lands after the SIGINT's claim, the SIGINT is the one raised and
    recorded (decision 461); a
    test-then-set handler let a SIGTERM nested after its test raise instead (integration flake of
    test_promote_ci_cancel.py: the rollout recorded "interrupted by SIGTERM")."""
    k = 0
    while True:
        stop = Interrupt(lambda name: Stopped(name), (signal.SIGUSR1,))
        raised = _nested_one(stop.handler, Interrupt.handler.__code__, k)
        if raised is None:
            break
        first = "SIGTERM" if k == 0 else "SIGINT"  # nested before the claim, the first line: SIGTERM's came first
        assert isinstance(raised, Stopped) and str(raised) == first, (k, raised)
        assert stop.fired == first, k
        k += 1
    assert k >= 3  # every line of the handler was tried


def test_promotes_second_signal_inside_the_firsts_neither_renames_it_nor_starts_the_grace_again() -> None:
    """promote's handler (cli._on_promote_signal), a SIGTERM run inside the SIGINT's at each of its lines: the
    rollout is "interrupted by SIGINT" and the route's write is given the grace once (decision 461)."""
    from canary.cli import _on_promote_signal

    alarm = signal.getsignal(signal.SIGALRM)
    k = 0
    try:
        while True:
            ctl = types.SimpleNamespace(stop=threading.Event(), interrupted_by="")
            flying = types.SimpleNamespace(signalled_n=0, cut=lambda: None)
            flying.signalled = lambda f=flying: setattr(f, "signalled_n", f.signalled_n + 1)
            grace: list[float] = [math.inf]
            handler = _on_promote_signal(ctl, grace, 3600.0, flying)
            runs = _nested_one(handler, handler.__code__, k)
            if runs is None:
                break
            assert runs == "returned", (k, runs)
            first = "SIGTERM" if k == 0 else "SIGINT"  # nested before the claim: SIGTERM's came first
            assert ctl.interrupted_by == first and ctl.stop.is_set(), k
            assert flying.signalled_n == 1 and grace[0] < math.inf, k
            k += 1
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, alarm)
    assert k >= 4


def test_the_stop_handler_takes_no_lock_the_signalled_thread_may_hold() -> None:
    """A handler runs in the main thread between two of its bytecodes, whatever lock it holds then. The
    controller's, serve's, the demo's and drift's handlers called `Event.set()`, which takes the event's condition
    lock: a SIGTERM landing while the main thread held it (a few bytecodes of each `stop.wait()`) waited on its own
    thread for ever, and the controller was killed after saying nothing (decision 513). Here the "main thread"
    holds the lock when the handler runs; the handler must return, and the event be set once the lock is let go.
    The join's bound is reached only by the deadlock."""
    import signal as signal_mod
    import threading

    from canary.interrupts import setting

    stop = threading.Event()
    handler = setting(stop)
    returned = threading.Event()

    def signalled_main() -> None:
        with stop._cond:  # type: ignore[attr-defined]  # held as `stop.wait()` holds it between its bytecodes
            handler(signal_mod.SIGTERM, None)
            returned.set()

    thread = threading.Thread(target=signalled_main, daemon=True)
    thread.start()
    thread.join(30)
    assert returned.is_set(), "the handler waited for the lock its own thread held"
    assert stop.wait(30), "the event was never set"


def test_stop_handlers_share_one_relay_thread() -> None:
    """Each handler made used to start a relay thread of its own that never ended: a process that runs the
    controller or a drift watch several times (the tests, an embedding program) kept one idle thread per run.
    One thread serves every handler, and each handler still sets its own event."""
    import signal as signal_mod
    import threading

    from canary.interrupts import setting

    events = [threading.Event() for _ in range(5)]
    handlers = [setting(event) for event in events]
    relays = [t for t in threading.enumerate() if t.name == "signal-relay"]
    handlers[3](signal_mod.SIGTERM, None)
    assert events[3].wait(30) and not any(e.is_set() for i, e in enumerate(events) if i != 3)
    assert len(relays) == 1, relays


def test_a_forked_child_gets_a_relay_thread_of_its_own() -> None:
    """The relay thread is the process's one (`_RELAY`), but a forked child has no threads but the one that forked:
    its handlers put the signal on a queue nobody read, waited 0.5 s, and the stop was lost. The child's first
    `setting` now starts a relay of its own. The child's wait's bound is reached only by the fault."""
    import os
    import signal as signal_mod
    import threading

    from canary.interrupts import setting

    setting(threading.Event())  # the parent's relay, started
    pid = os.fork()
    if pid == 0:  # the child: exits 0 when its handler's event is set
        code = 1
        try:
            stop = threading.Event()
            setting(stop)(signal_mod.SIGTERM, None)
            code = 0 if stop.wait(30) else 1
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
