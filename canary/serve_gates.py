"""`pre-rollout`'s Triton gates for `canary serve`, answered within the caller's timeout.

Why a module of its own: a gate run (ready, tensor contract, a warm-up of `warmup_requests`
calls of up to 5 s each) can take far longer than Flagger waits for a webhook (10 s unless
set), and the call answered only when the run ended: past the caller's timeout, holding the
revision's lock, and a run that ended after Flagger gave up was recorded for nobody. As the
checks' queries do (serve_measure.py, decision 99), a run goes on a thread of its own and the
call waits until `--answer-within`: a run not ended by then is "could not check yet" (503,
never a pass). The run goes on; the revision's next `pre-rollout` (Flagger asks again at its
next interval) joins it, or reads its result if it ended meanwhile, instead of starting over,
so a gate longer than one call still ends. A result is used once, and only for the same gate
inputs (policy, model, URLs) within `fresh_s` of its end: an older one says little about the
canary now.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from canary.errors import CanaryError, GateError

Result = tuple[int, str]  # (200 passed | 409 refused | 503 could not run, why)


def run_gates(gates: Callable[..., Any], cfg: Any, *, model: str, stable_url: str | None, canary_url: str,
              base_dir: Path) -> Result:
    """One gate run, to its end: (200, what passed) | (409, why refused) | (503, why they could not be run)."""
    try:
        report = gates(cfg, model=model, stable_url=stable_url, canary_url=canary_url, base_dir=base_dir).preflight()
        return 200, "gates passed: " + "; ".join(report.get("checks", ()))
    except GateError as exc:
        from canary.end_words import not_the_canarys

        if not_the_canarys(str(exc)):  # stable down, samples Triton refuses: no verdict on the canary
            return 503, f"could not run the gates: {exc}"
        return 409, str(exc)
    except CanaryError as exc:
        return 503, f"could not run the gates: {exc}"
    except ImportError as exc:
        return 503, f"could not run the gates: tritonclient is not installed ({exc})"


@dataclass
class GateRun:
    """One run on its thread: `done` once `result` (or `error`, an unexpected exception) is set."""

    inputs: tuple[str, ...]
    started_at: float
    fresh_s: float = 0.0  # how long its result is used after its end: its own policy's (`join`)
    done: threading.Event = field(default_factory=threading.Event)
    result: Result | None = None
    error: BaseException | None = None
    ended_at: float = 0.0


class GateRuns:
    """The runs of every revision (`key`), at most one each; `clock` gives Unix seconds."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self._guard = threading.Lock()
        self._runs: dict[str, GateRun] = {}

    def join(self, key: str, inputs: tuple[str, ...], fn: Callable[[], Result], *,
             fresh_s: float, started_after: float | None = None) -> tuple[GateRun, bool]:
        """(the revision's run for `inputs`, True when started by this call): the one running or ended
        within `fresh_s`, else a new one of `fn` on a daemon thread (a RuntimeError when the thread
        cannot start keeps nothing). A run of other inputs, or ended earlier, is dropped. Each run is kept
        for its own `fresh_s` (its policy's): another policy's shorter one dropped it, and a revision whose
        gates outlast a call started them over at each of its calls while the other's came between. A run started
        before `started_after` is dropped too: another revision of the Canary was analysed since (its pods behind the
        canary's URL while the run went on), and this revision's analysis starts over (decision 441)."""
        with self._guard:
            now = self.clock()
            for k, r in list(self._runs.items()):  # ended and unread for too long: never used, dropped
                if r.done.is_set() and now - r.ended_at > r.fresh_s:
                    del self._runs[k]
            run = self._runs.get(key)
            if run is not None and run.inputs == inputs and (started_after is None or run.started_at > started_after):
                return run, False
            run = GateRun(inputs=inputs, started_at=now, fresh_s=fresh_s)
            threading.Thread(target=self._work, args=(run, fn), name="canary-serve-gates", daemon=True).start()
            self._runs[key] = run
            return run, True

    def _work(self, run: GateRun, fn: Callable[[], Result]) -> None:
        try:
            run.result = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the call that reads the run
            run.error = exc
        run.ended_at = self.clock()
        run.done.set()

    def take(self, key: str, run: GateRun) -> Result:
        """An ended run's result, used once (the run forgotten); its unexpected exception raised."""
        with self._guard:
            if self._runs.get(key) is run:
                del self._runs[key]
        if run.error is not None:
            raise run.error
        assert run.result is not None
        return run.result
