"""Deterministic interleavings of processes that share a cluster, one Kubernetes API call at a time.

Each actor (a promotion's finish, a rollback) runs in a thread with its own IstioRouter, whose
CustomObjectsApi passes a gate before every GET and PUT: the actor waits there until the
schedule gives it the next call. Between two gates an actor runs alone, so a schedule (a
string of actor names, one per API call) fixes the order of every read and write exactly; no
timing decides anything. An actor the schedule stops giving calls to is "killed": it stays at
its gate, nothing after it lands (what SIGKILL leaves), and it ends with `Killed` once the run is
over. Used by tests/integration/test_promotion_races.py.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Any

import tenacity

from canary.routing.istio import IstioRouter

GATED = {"get_namespaced_custom_object": "GET", "replace_namespaced_custom_object": "PUT"}
WAIT_S = 30.0  # a guard against a harness bug only: nothing waits for time to pass


class Killed(BaseException):
    """The actor was not scheduled again: simulated SIGKILL at its gate."""


class _Gated:
    def __init__(self, inner: Any, sched: "Schedule", name: str) -> None:
        self.inner, self.sched, self.name = inner, sched, name

    def __getattr__(self, attr: str) -> Any:
        fn = getattr(self.inner, attr)
        if attr not in GATED:
            return fn

        def call(*a: Any, **kw: Any) -> Any:
            plural = a[3] if len(a) > 3 else kw.get("plural", "?")
            self.sched.gate(self.name, f"{GATED[attr]} {'vs' if plural == 'virtualservices' else 'dr'}")
            return fn(*a, **kw)

        return call


class Schedule:
    def __init__(self) -> None:
        self.cv = threading.Condition()
        self.grant: str | None = None
        self.parked: set[str] = set()
        self.done: set[str] = set()
        self.over = False
        self.calls: list[tuple[str, str]] = []  # (actor, "GET vs" | "PUT dr" | ...), in the order served

    def router(self, client: Any, name: str) -> IstioRouter:
        r = IstioRouter(client, wait=tenacity.wait_none())
        r.custom = _Gated(r.custom, self, name)
        return r

    def gate(self, name: str, label: str) -> None:
        with self.cv:
            self.parked.add(name)
            self.cv.notify_all()
            if not self.cv.wait_for(lambda: self.over or self.grant == name, WAIT_S):
                raise AssertionError(f"{name} never scheduled")
            self.parked.discard(name)
            if self.over:
                raise Killed(f"{name} at {label}")
            self.grant = None
            self.calls.append((name, label))

    def run(self, actors: dict[str, Callable[[], Any]], steps: Iterable[Step], *,
            killed: Iterable[str] = ()) -> dict[str, Any]:
        """Run `actors`, giving API calls as `steps` say, in order; then each actor not in `killed` runs
        to its end (in the order of `actors`); those in `killed` are killed where the steps left them.
        A step is an actor's name (one call), or (name, n) for n calls, (name, "PUT dr") for calls up to
        and including the next one with that label, (name, None) for every call to its end. Steps of an
        actor that has ended are skipped. Returns each actor's result, or the exception it ended with."""
        results: dict[str, Any] = {}

        def body(name: str, fn: Callable[[], Any]) -> None:
            try:
                results[name] = fn()
            except BaseException as exc:  # noqa: BLE001 - the outcome of the actor
                results[name] = exc
            finally:
                with self.cv:
                    self.done.add(name)
                    self.cv.notify_all()

        threads = []
        for name, fn in actors.items():  # one at a time, each to its first gate: no two run together
            t = threading.Thread(target=body, args=(name, fn), daemon=True)
            threads.append(t)
            t.start()
            with self.cv:
                assert self.cv.wait_for(lambda: name in self.parked or name in self.done, WAIT_S)
        dead = set(killed)
        with self.cv:
            for step in [*steps, *((n, None) for n in actors if n not in dead)]:
                name, until = (step, 1) if isinstance(step, str) else step
                n = 0
                while name not in self.done:
                    if isinstance(until, int) and n >= until:
                        break
                    label = self._one(name)
                    n += 1
                    if isinstance(until, str) and label == until:
                        break
            self.over = True
            self.cv.notify_all()
        for t in threads:
            t.join(WAIT_S)
        return results

    def _one(self, name: str) -> str | None:
        """Give `name` its next call; wait until it is at its next gate or has ended. The call's label."""
        n_calls = len(self.calls)
        self.grant = name
        self.cv.notify_all()
        assert self.cv.wait_for(lambda: name in self.done or (len(self.calls) > n_calls and name in self.parked),
                                WAIT_S), f"{name} did not come back"
        self.grant = None
        return self.calls[n_calls][1] if len(self.calls) > n_calls else None

    def of(self, name: str) -> list[str]:
        """The labels of the calls `name` made, in order."""
        return [label for who, label in self.calls if who == name]


Step = str | tuple[str, int | str | None]
