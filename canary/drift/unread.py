"""What one drift pass says of the baselines whose live data could not be read: once per cause, naming them.

A Prometheus (or a proxy before it) that refuses the watcher's access (a token rotated: HTTP 401 for every query)
refuses it for every baseline at once. Said per baseline, 30 baselines on one Prometheus were 30
`drift.prometheus_refused` lines for one cause, 30 `drift_live_data_unreadable` notifications an hour later and 30
`drift_live_data_readable` ones when the token was fixed (decision 384). So `DriftWatcher` adds each baseline's line
here (`add`), under its event and its cause (`cause`: the words that do not name the baseline), and the pass ends
with one line (and one notification, for the told events) per event and cause (`flush`): the line of one baseline
alone is the one it always was (its `model`, `version`, `namespace`); of several, one line with `baselines` (how
many) and their names (`namespace/model/version`, 20 at most), the cause's words and, in its `message`, what to do.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import structlog

from canary.analysis.shown import about

log = structlog.get_logger("canary.drift")

NAMED = 20  # baselines named on one line (the count says how many)


def cause(exc: BaseException, kind: tuple[str, str]) -> str:
    """The cause of a baseline's unreadable live data, in words that do not name the baseline: a refused access's
    is the client's own error (the URL, the status, Prometheus's or the proxy's words: `live.AccessRefused` adds the
    model version after it), any other's its kind (the exception's type and remedy, `DriftWatcher._unreadable`)."""
    from canary.drift.live import AccessRefused

    if isinstance(exc, AccessRefused) and exc.__cause__ is not None:
        return str(exc.__cause__)
    return " ".join(kind)


@dataclass
class Said:
    """One baseline's line, as it was logged on its own: its fields besides model, version and namespace."""

    model: str
    version: str
    namespace: str
    fields: dict[str, Any] = field(default_factory=dict)

    def name(self) -> str:
        return f"{self.namespace}/{self.model}/{self.version}"


@dataclass
class PassNews:
    """The lines of one pass, per (event, cause), in the order they first came (`add`), said by `flush`."""

    items: dict[tuple[str, str], list[Said]] = field(default_factory=dict)

    def add(self, event: str, cause: str, said: Said) -> None:
        self.items.setdefault((event, cause), []).append(said)

    def flush(self, tell: Callable[..., None], now: float) -> None:
        """Say every (event, cause) once (`tell`: the watcher's notification, for the told events), and forget."""
        items, self.items = self.items, {}
        for (event, why), said in items.items():
            one = said[0] if len(said) == 1 else None
            who = ({"model": one.model, "version": one.version, "namespace": one.namespace} if one else
                   {"baselines": len(said), "names": [s.name() for s in said[:NAMED]],
                    **({"namespace": said[0].namespace} if len({s.namespace for s in said}) == 1 else {})})
            names = _names(said)
            if event == "drift.prometheus_refused":
                if one:
                    log.error("drift.prometheus_refused", **who, **one.fields)
                else:
                    log.error("drift.prometheus_refused", **who, error=why, message=(
                        f"Prometheus refused the watcher's access to the live data of {len(said)} baselines, one "
                        f"cause: {why[:400]}; nothing decided for {names}"))
            elif event == "drift.unmeasured":
                if one:
                    log.warning("drift.unmeasured", **who, **one.fields)
                else:
                    log.warning("drift.unmeasured", **who, error=said[0].fields.get("error", why), message=(
                        f"the live data of {len(said)} baselines could not be read while Prometheus answers, one "
                        f"cause ({why[:200]}): nothing decided for {names}"))
            elif event == "drift.live_data_unreadable":
                if one:
                    log.warning("drift.live_data_unreadable", **who, **one.fields)
                    tell("drift.live_data_unreadable", one.fields["message"], now, model=one.model,
                         version=one.version, ns=one.namespace)
                    continue
                since = min(float(s.fields["since"]) for s in said)
                error = str(said[0].fields.get("error", why))
                message = (f"the live data of {len(said)} baselines could not be read for about "
                           f"{about(now - since)} (since {at(since)}, every evaluation failed) while Prometheus "
                           f"answers, one cause: their drift is not measured, so a drift now is not seen and no "
                           f"retraining starts: {names}; last error: {error[:400]}")
                log.warning("drift.live_data_unreadable", **who, since=since,
                            evaluations=max(int(s.fields["evaluations"]) for s in said), error=error, message=message)
                tell("drift.live_data_unreadable", message, now, ns=who.get("namespace", ""))
            elif event == "drift.live_data_readable":
                if one:
                    log.info("drift.live_data_readable", **who, **one.fields)
                    tell("drift.live_data_readable", one.fields["message"], now, model=one.model,
                         version=one.version, ns=one.namespace)
                    continue
                since = min(float(s.fields["since"]) for s in said)
                message = (f"the live data of {len(said)} baselines told unreadable are read again, after about "
                           f"{about(max(now - since, 0.0))}: drift is measured again for {names}")
                log.info("drift.live_data_readable", **who, since=since,
                         evaluations=max(int(s.fields["evaluations"]) for s in said), message=message)
                tell("drift.live_data_readable", message, now, ns=who.get("namespace", ""))
            elif event == "drift.readable_again":
                if one:
                    log.info("drift.readable_again", **who, **one.fields)
                    continue
                since = min(float(s.fields["since"]) for s in said)
                log.info("drift.readable_again", **who, since=since,
                         evaluations=max(int(s.fields["evaluations"]) for s in said), message=(
                             f"the live data of {len(said)} baselines are read again, after about "
                             f"{about(max(now - since, 0.0))} that could not read them (nothing was decided by "
                             f"those): {names}"))


def _names(said: list[Said]) -> str:
    shown = ", ".join(s.name() for s in said[:NAMED])
    return shown + (f" and {len(said) - NAMED} more" if len(said) > NAMED else "")


def at(t: float) -> str:
    """A time (seconds since the epoch) as the lines say it: "2026-12-05 21:16 UTC"."""
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(t))
