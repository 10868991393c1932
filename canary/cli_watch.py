"""Which end `canary status --watch` takes as the outcome of the rollout a pipeline waits for (decision 165).

A CD step applies a CanaryRollout (or starts a rollout some other way) and runs `status -w` to learn how it
ended. Until the controller picks the new request up, the VirtualService still carries the previous
rollout's record, often ended: taken as the answer, a model never judged was reported promoted (exit 0).
`kubectl argo rollouts status` answers only once the Rollout's `status.observedGeneration` equals its
`metadata.generation` ("waiting for rollout spec update to be observed"); Flagger's `promoted` condition
has the same hole, which its users close by hand (fluxcd/flagger#830). Here:

- `--rollout NAME`: the CanaryRollout's own status, ended at the generation it has now (its
  `observedGeneration` at least `metadata.generation`) for the version its spec names, by the object read
  first (its uid): as `promote --via-controller` follows one.
- `--canary-version V`: an ended record of version V on the route (another version's end is not V's).
- neither: a record already ended at the watch's first read is not an answer (it may be the previous
  rollout's); the end of one recorded after it, or of the one in progress at the start, is.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from canary import rollout as rl
from canary.errors import CanaryError, ConfigError


def _identity(state: rl.RolloutState) -> tuple[str, str, float]:
    """A recorded rollout's identity: a new claim has another owner or start (a retry of the same version too)."""
    return state.canary_version, state.owner, state.started_at


@dataclass
class RecordWait:
    """Which ended record on the route is the awaited rollout's end (`--canary-version`, or neither flag)."""

    canary_version: str = ""
    stale: tuple[str, str, float] | None = None  # the ended record found at the first read, when not awaited
    _first: bool = True

    def end(self, state: rl.RolloutState | None) -> str | None:
        """The awaited rollout's terminal phase when `state` (this read's record) is its end, else None."""
        first, self._first = self._first, False
        if state is None or not state.terminal:
            return None
        if self.canary_version:
            return state.phase if state.canary_version == self.canary_version else None
        if first:
            self.stale = _identity(state)
            return None
        return state.phase if _identity(state) != self.stale else None

    def waiting(self, state: rl.RolloutState | None) -> str:
        """Why an ended `state` is not taken as the outcome (one stderr line), else ""."""
        if state is None or not state.terminal:
            return ""
        if self.canary_version and state.canary_version != self.canary_version:
            return (f"the rollout recorded is {state.canary_version}'s ({state.phase}), not "
                    f"{self.canary_version}'s: watching until {self.canary_version}'s ends")
        if not self.canary_version and self.stale == _identity(state):
            return (f"the rollout recorded ({state.canary_version}, {state.phase}) ended before this watch started, "
                    "and may be a previous rollout's: watching for the next one's end (--canary-version V or "
                    "--rollout NAME names the one to wait for)")
        return ""


def crd_end(obj: dict[str, Any] | None, *, where: str, uid: str) -> tuple[str | None, str]:
    """(the terminal phase, "") when the CanaryRollout `obj` has ended at its current generation for the
    version its spec names, else (None, why it is not over yet). Raises CanaryError (exit 3) when it is gone
    or another object took its name (its status is not the awaited request's), or when the rollout it claimed is
    now recorded by a newer canary (Ready False, RecordTooNew: this controller never drives it, decision 172),
    ConfigError (exit 2) when the controller refused this generation before claiming anything (bad input, or a
    route a newer canary recorded)."""
    from canary.cli_controller import _left_to_newer, _refused, left_to_newer_words, nothing_moved

    if obj is None or str((obj.get("metadata") or {}).get("uid") or "") != uid:
        raise CanaryError(f"CanaryRollout {where} was deleted{'' if obj is None else ' and created again'} while "
                          "this watch waited: its outcome is not known")
    meta, spec, st = obj.get("metadata") or {}, obj.get("spec") or {}, obj.get("status") or {}
    generation = int(meta.get("generation") or 0)
    observed = st.get("observedGeneration")
    refused = _refused(st, generation)
    if refused:
        raise ConfigError(nothing_moved(f"CanaryRollout {where}: {refused.removeprefix(where + ': ')}"))
    newer = _left_to_newer(st, generation)
    if newer:
        raise CanaryError(left_to_newer_words(where, st, newer))
    version = str(spec.get("canaryVersion") or "")
    ours = (isinstance(observed, int) and observed >= generation
            and (st.get("target") or {}).get("canaryVersion") == version)
    if ours and st.get("phase") in rl.TERMINAL:
        # a request that waited on another owner's rollout of the same version ends unrun (aborted): the
        # version's outcome is that rollout's, as `promote --via-controller` reports it
        waited = st.get("waitedOnPhase") if st["phase"] == rl.ABORTED else None
        return (waited if waited in (rl.PROMOTED, rl.ROLLED_BACK) else st["phase"]), ""
    if not ours:
        return None, (f"CanaryRollout {where} generation {generation} ({version}) not yet observed by the controller "
                      f"(its status is of generation {observed if isinstance(observed, int) else 'none'})")
    return None, f"CanaryRollout {where} is {st.get('phase') or 'not started'}"
