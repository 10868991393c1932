"""A signal whose handler raises, made to hold where native code would lose the exception.

A Python signal handler runs between two bytecodes of the main thread and its exception is raised there. When
that is inside native code calling back into Python, the exception can be lost: the kubernetes client wraps
every API method in pydantic's `validate_call` (built on first call, `defer_build`), and a signal landing
while pydantic-core builds or runs that validator came out as a `SchemaError` (which `kube.translate` read as
the API unreachable: read again) or was printed "Exception ignored in: 'get_namespaced_custom_object'" and
dropped. A `promote --via-controller` follower SIGTERMed by its CI job then went on following until
`--timeout` (decision 225). `Interrupt` also records the signal, and `check()`, called by the loop at its
safe points, raises it there.
"""

from __future__ import annotations

import os
import signal
import threading
from typing import Any, Callable, TypeVar

T = TypeVar("T")


class FirstSignal:
    """Which of several signals came first, decided in one step a handler nested in another cannot split.

    A Python signal handler runs between two bytecodes of the main thread, and so does a second signal's handler
    inside the first one's run: a handler that tests "first?" and records its name in two statements let a
    SIGTERM sent right after a SIGINT (GitHub's cancel, a CI's `kill -INT; kill -TERM`) land between them, both
    were "first" (the grace started twice) and the rollout was recorded "interrupted by SIGTERM" (decision 461).
    `claim` is one `dict.setdefault`, a single native call no handler runs inside."""

    def __init__(self) -> None:
        self._first: dict[str, tuple[str, object]] = {}

    def claim(self, signum: int) -> tuple[bool, str]:
        """(whether `signum` is the first signal claimed here, the first signal's name: `SIGINT`...)."""
        token = object()
        name, got = self._first.setdefault("first", (signal.Signals(signum).name, token))
        return got is token, name


def install_handlers(handler: Any, signals: tuple[int, ...]) -> dict[int, Any]:
    """Put `handler` on each of `signals` and return the handlers found, for `restore_handlers`. Handlers exist
    on the main thread only (`signal.signal`): elsewhere nothing is installed and {} is returned."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    return {sig: signal.signal(sig, handler) for sig in signals}


# the one relay thread's queue (`setting`), made with its thread on the first call: (the event to set, the event the
# handler waits on); one thread for the process, not one per handler made (a process that runs the controller or a
# watch several times, as the tests do, kept one idle thread for each)
_RELAY: Any = None
_RELAY_LOCK = threading.Lock()


def _relay() -> Any:
    global _RELAY
    with _RELAY_LOCK:
        if _RELAY is None:
            import queue

            relay: queue.SimpleQueue[tuple[threading.Event, threading.Event]] = queue.SimpleQueue()

            def relay_to_event() -> None:
                while True:
                    event, done = relay.get()
                    event.set()
                    done.set()

            threading.Thread(target=relay_to_event, name="signal-relay", daemon=True).start()
            _RELAY = relay
        return _RELAY


def _forget_relay() -> None:  # a forked child has no relay thread: its first `setting` starts one of its own
    global _RELAY, _RELAY_LOCK
    _RELAY, _RELAY_LOCK = None, threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_relay)


def setting(event: threading.Event) -> Callable[[int, Any], None]:
    """A signal handler that sets `event` without ever waiting on a lock its own thread may hold (decision 513).

    A handler runs in the main thread between two of its bytecodes, whatever lock that thread holds then.
    `Event.set()` takes the event's condition lock, which the main thread holds for a few bytecodes at each of its
    own `event.wait()`: a SIGTERM landing there waited for a lock its own thread held, for ever (the controller
    said nothing more, its informers kept watching, until it was killed). The handler puts the signal on a
    `queue.SimpleQueue` (its `put` is reentrant: made to be called from a handler) for a daemon thread, one for
    the process, started by the first call here (never in a handler), which sets the event; the handler waits for
    that at most 0.5 s on an event of its own, so the event is set when the handler returns, as before, except where
    the main thread held its lock (then just after). Shape: `handler(signum, frame) -> None`."""
    relay = _relay()

    def handler(_signum: int, _frame: Any) -> None:
        done = threading.Event()  # its own: a signal nested in this wait waits on another one
        relay.put((event, done))
        done.wait(0.5)

    return handler


def restore_handlers(before: dict[int, Any]) -> None:
    """Put back the handlers `install_handlers` found: an in-process caller (a test, a program embedding the CLI)
    gets its own. A None (`signal.getsignal`'s answer for a handler installed outside Python) cannot be put back
    and is left: `signal.signal(sig, None)` raises TypeError."""
    for sig, handler in before.items():
        if handler is not None:
            signal.signal(sig, handler)


class Interrupt:
    """The first of `signals` raises `error(signal name)` from the handler and is recorded; later ones do
    nothing (a second signal must not cut the report the first one's exception makes). `check()` raises it
    again, from ordinary Python code, when the handler's raise was lost. `install()` / `restore()` put the
    handler on and give the previous ones back (an in-process caller, a test, gets its own). `repeat=True`: every
    signal raises until `restore` (Ctrl-C as Python's own handler: a second one still cuts a blocked read when
    the first's raise was lost, for a command with no report to protect). Handlers exist on the main thread only
    (`signal.signal`): elsewhere `install` does nothing and `check` never raises."""

    def __init__(self, error: Callable[[str], BaseException],
                 signals: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP), *,
                 repeat: bool = False) -> None:
        self.error, self.signals, self.repeat = error, signals, repeat
        self.fired: str | None = None  # the signal's name once one came
        self.armed = True
        self._before: dict[int, Any] = {}
        self._first = FirstSignal()

    @classmethod
    def keyboard(cls, signals: tuple[int, ...] = (signal.SIGINT,)) -> "Interrupt":
        """Every one of `signals` raises KeyboardInterrupt, as Python's own Ctrl-C handler does, and is recorded
        (`repeat`): for a command that stops as Ctrl-C stops it, with no report to protect."""
        return cls(lambda _name: KeyboardInterrupt(), signals, repeat=True)

    def handler(self, signum: int, _frame: Any) -> None:
        first, _ = self._first.claim(signum)  # before anything else: a second signal nested here is not first
        if not self.armed or not (first or self.repeat):
            return
        self.armed = self.repeat
        self.fired = signal.Signals(signum).name  # the first's own (a later one's only with repeat)
        raise self.error(self.fired)

    def check(self) -> None:
        """Raise the recorded signal's error (nothing when none came)."""
        if self.fired is not None:
            raise self.error(self.fired)

    def disarm(self) -> None:
        """The outcome is being reported: later signals do nothing, and one whose raise was lost is not raised by
        `check` (the outcome found wins over a signal that came as it was found). A signal in the middle of the
        report raised there, and stdout carried the outcome's document and then the interrupt's, exit 3 under a
        promotion's exit 0 (decision 237)."""
        self.armed = False
        self.fired = None

    def install(self) -> "Interrupt":
        """Put the handler on for `signals` (on the main thread; elsewhere nothing happens). Returns self."""
        self._before = install_handlers(self.handler, self.signals)
        return self

    def guarded(self, fn: Callable[[], T]) -> T:
        """`fn()`; an exception it raises after a signal came is that signal's error instead (`check`): the
        error a signal lost in native code came out as (a SchemaError read as the API unreachable) is not what
        the command reports."""
        try:
            return fn()
        except Exception:
            self.check()
            raise

    def restore(self) -> None:
        """Later signals do nothing here; the handlers from before `install` are put back."""
        self.armed = False
        restore_handlers(self._before)
        self._before = {}


# ---- a signal before the command's own handlers (decision 619) ---------------------------------------------------
# `canary` spends most of a second importing its modules (typer, the CLI) before `promote` puts on its handlers: a CI
# cancel then (a SIGTERM with Python's default action) killed it, exit 143, with no `-o json` document and no line on
# stderr, which no row of docs/reference/cli.md's exit codes says. The entry point (`canary.__main__.main`) holds those signals from
# its first line: recorded, not acted on. `promote` takes the one held and reports it as its own interrupt (exit 3,
# nothing read or written); every other command gets the default actions back at its start, the held signal sent
# again then, so it acts as it always did.
EARLY_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_held: dict[str, Any] = {}


def _hold(signum: int, _frame: Any) -> None:
    _held.setdefault("signum", signum)  # one native call: a signal nested here cannot split it (decision 461)


def hold_early() -> None:
    """Record EARLY_SIGNALS instead of acting on them, where their action is Python's default (a signal ignored by
    the job, `nohup`'s SIGHUP, stays ignored). Main thread only."""
    if threading.current_thread() is not threading.main_thread():
        return
    for sig in EARLY_SIGNALS:
        if signal.getsignal(sig) in (signal.SIG_DFL, signal.default_int_handler):
            _held.setdefault("before", {})[sig] = signal.signal(sig, _hold)


def take_early() -> str | None:
    """The name of the signal held since the process began (`SIGTERM`...), taken: `release_early` does not send it
    again. None when none came, or nothing was held (an in-process caller)."""
    signum = _held.pop("signum", None)
    return None if signum is None else signal.Signals(signum).name


def release_early(*, deliver: bool = True) -> None:
    """The actions from before `hold_early` put back where the holding handler is still on; with `deliver`, a signal
    held and not taken is sent again, acted on as it would have been when it came."""
    for sig, before in _held.pop("before", {}).items():
        if signal.getsignal(sig) is _hold:
            signal.signal(sig, before)
    signum = _held.pop("signum", None)
    if deliver and signum is not None:
        os.kill(os.getpid(), signum)
