"""What people see: a live progress panel for `promote`, tables for `status`/`analyze`.

Rendering only; everything shown comes from the recorded state or a Verdict.
Machines read `--output json` and the JSON logs instead.
"""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING, Any, Iterable

from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from canary import rollout as rl
from canary import streams
from canary.analysis.shown import whole
from canary.model import Weights, unmeasured, with_unit
from canary.routing.base import RouteStatus
from canary.reconcile import describe_owner

if TYPE_CHECKING:  # annotations only: the policy models (pydantic) load where a policy is read (decision 965)
    from canary.policy import Policy


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def _count(value: Any) -> str:
    """A request count as a whole number (`increase()` extrapolates: 65.3625 requests)."""
    return whole(value) if isinstance(value, (int, float)) and math.isfinite(value) else _fmt(value)


QUERY_SHOWN = 240  # characters of a query a table's reason shows (a simple one whole; `-o json` has every one whole)
_QUERY = re.compile(r"(query: )(.+?)(?=; check '|$)", re.S)


def short_queries(reason: str, *, limit: int = QUERY_SHOWN) -> str:
    """A reason with each query it quotes cut to `limit` characters. A check that could not ask Prometheus
    quotes the look's batched query, ~5,000 characters per arm: `analyze` printed some 70 table lines per check
    for "connection failed", the cause lost among them."""
    return _QUERY.sub(lambda m: m.group(1) + (m.group(2) if len(m.group(2)) <= limit else
                                              f"{m.group(2)[:limit]}... ({len(m.group(2)):,} characters: -o json "
                                              "has it whole)"), reason or "")


def evidence_table(results: Iterable[dict[str, Any]], title: str = "checks") -> Table:
    t = Table(title=title, show_lines=False)
    for col in ("check", "verdict", "stable", "canary", "n canary/stable", "threshold", "p", "effect", "reason"):
        t.add_column(col, overflow="fold")
    colors = {"pass": "green", "inconclusive": "yellow", "error": "magenta", "fail": "red"}
    for r in results:
        outcome = r.get("outcome", "")
        # a value only known as a bound (a quantile in the open +Inf bucket) prints as one: '>300 ms'
        bound = r.get("bounded") if isinstance(r.get("bounded"), dict) else {}
        t.add_row(
            # a hard check rolls back at its first failed look, whatever max_failed_looks says: marked as
            # `canary judge` and the report mark it
            r.get("check", "") + (" (hard)" if r.get("hard") is True else ""),
            Text(outcome, style=colors.get(outcome, "")),
            with_unit(r.get("stable_value"), r.get("value_unit"), bound=bound.get("stable_value")),
            with_unit(r.get("canary_value"), r.get("value_unit"), bound=bound.get("canary_value")),
            "-" if unmeasured(outcome, r.get("n_canary"), r.get("n_stable"))
            else f"{_count(r.get('n_canary'))}/{_count(r.get('n_stable'))}",  # as reasons
            # a state recorded before units were: the bare number
            with_unit(r.get("threshold"), r.get("threshold_unit")), _fmt(r.get("p_value"), 2),
            with_unit(r.get("effect_size"), r.get("threshold_unit"), 3, bound=bound.get("effect_size")),
            short_queries(r.get("reason", "")),
        )
    return t


def _weights_bar(stable: int, canary: int, width: int = 40) -> Text:
    c = round(width * canary / 100)
    bar = Text("stable ")
    bar.append("█" * (width - c), style="blue")
    bar.append("░" * c, style="yellow")  # another glyph, not only another colour: a log or pipe has no colour
    bar.append(f" canary   {stable}/{canary}")
    return bar


_ROUTES_NOTHING = "nothing"


def state_panel(state: rl.RolloutState, steps: list[int] | None = None, *,
                live: Weights | str | None = None) -> Panel:
    """The recorded rollout as a rich Panel: phase, step of `steps`, the record's weights, owner, reason and
    the last look's evidence. `live`: the route's weights now (`status`), or "nothing" for a route with no
    destination; when they are not the record's, the record's bar says it is the record's and what the
    route holds now, so a bar never reads as the live split it is not; when they are, one line says so in place of a
    second bar (decision 957). None: `promote`'s own panel."""
    head = Text(f"{state.model}: {state.stable_version} → {state.canary_version}   phase ")
    head.append(state.phase, style="bold red" if state.phase in (rl.ROLLED_BACK, rl.ABORTED) else "bold")
    if state.phase in (rl.ROLLED_BACK, rl.ABORTED):  # why it ended, as `-o json`'s `end_cause` (decision 653)
        head.append(f"   end_cause {rl.cause_of(state)}")
    if steps and state.step >= 0:
        head.append(f"   step {state.step + 1}/{len(steps)} of {steps}")
    bar = _weights_bar(state.weights.stable, state.weights.canary)
    if live == _ROUTES_NOTHING:
        bar = Text("as recorded: ").append(bar).append("   (the route has no destination now)")
    elif isinstance(live, Weights) and (live.stable, live.canary) != (state.weights.stable, state.weights.canary):
        bar = Text("as recorded: ").append(bar).append(f"   (the route holds {live.stable}/{live.canary} now)")
    elif isinstance(live, Weights):  # `status` drew the route's bar just above: the same bar again, unlabelled,
        # read as two things nobody named (a newcomer after a rollout ended); one line says they agree (decision 957)
        bar = Text(f"as recorded: {state.weights.stable}/{state.weights.canary}, the weights the route holds (above)")
    parts: list[Any] = [head, bar]
    if state.owner:
        parts.append(Text(describe_owner(state.owner, state.job)))
    if state.reason:
        parts.append(Text(f"reason: {state.reason}"))
    if state.last_verdict:
        v = state.last_verdict
        parts.append(evidence_table(v.get("results", []), title=f"last look: {v.get('outcome')} "
                                    f"(canary requests {_count(v.get('canary_requests'))})"))
    return Panel(Group(*parts), title="canary")


class LiveDisplay:
    """A refreshing panel on the terminal while `promote` runs."""

    def __init__(self, policy: Policy) -> None:
        self.steps = list(policy.steps)
        self.live: Live | None = Live(console=streams.console(), refresh_per_second=4, transient=False)
        self._write(self.live.start)

    # the panel is a view: a terminal that went away (EIO after a hang-up, EPIPE) ends the panel, never the
    # rollout. `update` runs inside promote's loop, where an exception is a failure that the fail-safe
    # answers with a rollback, and `close` runs after the outcome is known, where one replaced its exit code
    def update(self, state: rl.RolloutState) -> None:
        if self.live is not None:
            live = self.live
            self._write(lambda: live.update(state_panel(state, self.steps)))

    def close(self) -> None:
        if self.live is not None:
            self._write(self.live.stop)
            self.live = None

    def _write(self, write: Any) -> None:
        if not streams.guarded("stdout", write):
            live, self.live = self.live, None
            if live is not None:
                live.console.quiet = True
                try:
                    live.stop()  # its refresh thread; the console is quiet, so nothing more is written
                except Exception:  # noqa: BLE001 - already failing to write: nothing more to say on stdout
                    pass


def render_status(status: RouteStatus, state: rl.RolloutState | None, *, console: Console | None = None,
                  routes_nothing: bool = False) -> None:
    """Weights, subsets, the recorded rollout and its history; `console`: where (default stdout, as
    wide as the terminal; `-o wide` passes one of at least 200 columns, so nothing is folded).
    `routes_nothing`: the route has no destination, and a line says so instead of the weights' bar."""
    console = console or streams.console()
    console.print("weights: none (the route has no destination: Istio routes nothing by it)" if routes_nothing
                  else _weights_bar(status.weights.stable, status.weights.canary))
    if status.stable_subset_version or status.canary_subset_version:
        console.print(f"subsets: stable → version={status.stable_subset_version}, canary → version={status.canary_subset_version}")
    else:  # the DestinationRule could not be read, or lacks a subset (`inspect_any(for_stable=True)`)
        console.print("subsets: unknown (the DestinationRule could not be read, or lacks the stable or canary subset)")
    if state is None:
        console.print("no rollout recorded on this VirtualService")
        return
    console.print(state_panel(state, live=_ROUTES_NOTHING if routes_nothing else status.weights))
    if state.history:
        t = Table(title="history")
        for col in ("at", "phase", "weights", "what"):
            t.add_column(col)
        for h in state.history:
            t.add_row(_when(h.get("at")), str(h.get("phase")), str(h.get("weights")), str(h.get("what")))
        console.print(t)


def _when(at: Any) -> str:
    """A history entry's time as on-call reads it (UTC, to the second), not seconds since 1970; `-o json` keeps
    the number."""
    import datetime as dt

    try:
        return dt.datetime.fromtimestamp(float(at), dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")
    except (TypeError, ValueError, OverflowError, OSError):
        return str(at)
