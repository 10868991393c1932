"""The report's plots: matplotlib figures rendered to inline SVG strings.

Inline SVG keeps the page self-contained (no script, no font or CDN to fetch: it opens
offline, in a mail attachment, on paper) and its text searchable. Time is seconds since the
rollout started, so a page reads the same in every time zone. Each figure gets its own SVG
id salt: several inline SVGs on one page must not share clip-path ids.

Needs the `report` extra (`pip install 'modelcanary[report]'`).
"""

from __future__ import annotations

import html
import io
import math
from typing import Any

OUTCOME_COLORS = {"pass": "#2e7d32", "inconclusive": "#f9a825", "error": "#8e24aa", "fail": "#c62828"}
STABLE, CANARY, LIMIT = "#1565c0", "#ef6c00", "#616161"
# the unit of each kind's per-arm values (as the judge reports them)
UNITS = {"latency": "ms", "error_rate": "% of requests", "feature_missing": "% missing"}
# a value that is only a bound (a look's "b": a quantile in the open +Inf bucket) is drawn as an open triangle
# pointing to where the true value lies, never as a dot read as the value
BOUND_MARKERS = {">": "^", "<": "v"}
BOUND_LABELS = {">": "only a bound: the value is above", "<": "only a bound: the value is below"}


def _plt() -> Any:
    try:
        import matplotlib
    except ImportError:  # pragma: no cover - the extra is installed by scripts/setup.sh
        from canary.errors import ConfigError

        raise ConfigError("canary report needs matplotlib: pip install 'modelcanary[report]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _svg(fig: Any, salt: str, label: str) -> str:
    """The figure as inline SVG, one image to a screen reader (role="img") named by `label`: what the plot
    shows in words (unnamed, it was read as its tick labels, "0 2 4 6 8 ...", or skipped)."""
    plt = _plt()
    buf = io.StringIO()
    with plt.rc_context({"svg.fonttype": "none", "svg.hashsalt": salt}):
        fig.savefig(buf, format="svg", metadata={"Date": None}, bbox_inches="tight")
    plt.close(fig)
    text = buf.getvalue()
    text = text[text.index("<svg"):]  # inline: no XML declaration or DOCTYPE
    return f'<svg role="img" aria-label="{html.escape(label, quote=True)}"' + text[len("<svg"):]


def _last(xs: list[float], ys: list[float], unit: str, sides: list[str] | None = None) -> str:
    """The series' last point in words: "184.9 ms at 60 s", ">300 ms at 60 s" for a bound; with how many of
    its values are only bounds, when any is."""
    if not xs:
        return "no value"
    sides = sides or [""] * len(xs)
    text = f"{sides[-1]}{ys[-1]:.4g} {unit}".rstrip() + f" at {xs[-1]:.0f} s"
    n = sum(1 for side in sides if side)
    return text + (f" ({n} of its {len(xs)} values only bounds)" if n else "")


def _axes(title: str, ylabel: str) -> tuple[Any, Any]:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(9.5, 3.0), dpi=100)
    # parse_math=False: a check name is plain text; "$...$" in one (an edited export) was typeset as
    # math or, when not valid math, crashed the whole report (decision 288)
    ax.set_title(title, loc="left", fontsize=11, parse_math=False)
    ax.set_ylabel(ylabel)
    ax.set_xlabel("seconds since the rollout started")
    ax.grid(True, alpha=0.3)
    return fig, ax


def _legend(ax: Any) -> None:
    """Below the plot, so it never hides a line."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="upper left", bbox_to_anchor=(0.0, -0.22), fontsize=8, ncol=7, frameon=False)


def _step_edges(ax: Any, doc: dict[str, Any], t0: float) -> None:
    """A faint vertical line where each step began, and a red one at a rollback or abort."""
    for e in doc.get("events") or ():
        if e.get("event") == "step.advanced":
            ax.axvline(e["at"] - t0, color=LIMIT, alpha=0.25, lw=0.8)
        elif e.get("event") in ("rollback.started", "rollout.aborting"):
            ax.axvline(e["at"] - t0, color=OUTCOME_COLORS["fail"], alpha=0.7, lw=1.2)


def weights_svg(doc: dict[str, Any], t0: float, t_end: float) -> str:
    """Canary weight (%) over time as written, with each look's outcome as a dot at its weight."""
    fig, ax = _axes("Traffic to the canary", "canary weight (%)")
    pts = doc.get("weights") or []
    if pts:
        xs = [p[0] - t0 for p in pts] + [max(t_end - t0, pts[-1][0] - t0)]
        ys = [p[1] for p in pts] + [pts[-1][1]]
        ax.step(xs, ys, where="post", color=CANARY, lw=2, label="canary %")
    for outcome, color in OUTCOME_COLORS.items():
        # a look with no weight recorded ("w" is optional in a history) has no place on this plot
        looks = [lk for lk in doc.get("looks") or () if lk.get("o") == outcome and lk.get("w") is not None]
        if looks:
            ax.scatter([lk["at"] - t0 for lk in looks], [lk["w"] for lk in looks], s=18, color=color,
                       label=f"look: {outcome}", zorder=3)
    _step_edges(ax, doc, t0)
    ax.set_ylim(-5, 105)
    _legend(ax)
    counts = {o: sum(1 for lk in doc.get("looks") or () if lk.get("o") == o) for o in OUTCOME_COLORS}
    label = ("Traffic to the canary over time: canary weight " + (" → ".join(f"{p[1]:g}%" for p in pts) or "none written")
             + "; looks: " + (", ".join(f"{n} {o}" for o, n in counts.items() if n) or "none"))
    return _svg(fig, "weights", label)


def _series(looks: list[dict[str, Any]], name: str, key: str, t0: float) -> tuple[list[float], list[float]]:
    xs, ys, _ = _sided(looks, name, key, t0)
    return xs, ys


def _sided(looks: list[dict[str, Any]], name: str, key: str, t0: float
           ) -> tuple[list[float], list[float], list[str]]:
    """A check's series of `key` ("sv", "cv", "e", "x.<extra>") and, for each point, ">" or "<" when the look
    recorded it as only a bound ("b"), "" for a value (and in a history written before "b" was)."""
    xs, ys, sides = [], [], []
    for lk in looks:
        rec = lk["c"].get(name) or {}
        v = (rec.get("x") or {}).get(key[2:]) if key.startswith("x.") else rec.get(key)
        if isinstance(v, (int, float)) and math.isfinite(v):
            xs.append(lk["at"] - t0)
            ys.append(float(v))
            sides.append((rec.get("b") or {}).get(key, ""))
    return xs, ys, sides


def _bound_marks(ax: Any, xs: list[float], ys: list[float], sides: list[str], color: str) -> set[str]:
    """Open triangles over the points of a series that are only bounds; the sides drawn."""
    for side, marker in BOUND_MARKERS.items():
        pts = [(x, y) for x, y, s in zip(xs, ys, sides) if s == side]
        if pts:
            ax.scatter([x for x, _ in pts], [y for _, y in pts], s=46, marker=marker, facecolors="white",
                       edgecolors=color, linewidths=1.5, zorder=4)
    return {s for s in sides if s}


def _bound_legend(ax: Any, sides: set[str]) -> None:
    """One legend entry per side drawn (a grey open triangle: the colour is its arm's or outcome's)."""
    for side in sorted(sides, reverse=True):
        ax.scatter([], [], s=46, marker=BOUND_MARKERS[side], facecolors="white", edgecolors=LIMIT, linewidths=1.5,
                   label=BOUND_LABELS[side])


def _plot(ax: Any, xs: list[float], ys: list[float], **kw: Any) -> None:
    """A series as a line; a series of one point (a rollback on its first look) as a mark, since a line of one
    point is drawn as nothing: a dash for a limit (dashed), a dot for a value."""
    if len(xs) == 1:
        kw.update(marker="_" if kw.get("ls") == "--" else "o", markersize=14 if kw.get("ls") == "--" else 5)
    ax.plot(xs, ys, **kw)


def _outcome_dots(ax: Any, looks: list[dict[str, Any]], name: str, key: str, t0: float) -> set[str]:
    """The canary's points coloured by the check's outcome at that look: a dot for a value, an open triangle for
    one that is only a bound (`_bound_marks`); the bound sides drawn."""
    drawn: set[str] = set()
    for outcome, color in OUTCOME_COLORS.items():
        sub = [lk for lk in looks if (lk["c"].get(name) or {}).get("o") == outcome]
        xs, ys, sides = _sided(sub, name, key, t0)
        values = [(x, y) for x, y, side in zip(xs, ys, sides) if not side]
        if xs:  # the legend names the outcome even when every point of it is a bound
            ax.scatter([x for x, _ in values], [y for _, y in values], s=16, color=color, zorder=3, label=f"{outcome}")
        drawn |= _bound_marks(ax, xs, ys, sides, color)
    return drawn


def check_svg(doc: dict[str, Any], check: dict[str, Any], t0: float, index: int) -> str:
    """One check over time: both arms' values against the policy's limits (per kind), or, for a
    prediction shift, each statistic's upper bound and the JS distance against their limits."""
    name, kind, lim = check["name"], check["kind"], check.get("limits") or {}
    looks = [lk for lk in doc.get("looks") or () if name in (lk.get("c") or {})]
    hard = " (hard)" if check.get("hard") else ""
    if kind == "prediction_shift":
        fig, ax = _axes(f"{name}{hard}: prediction shift, canary vs stable", "statistic")
        for key, label, color in (("x.js_distance", "JS distance", CANARY), ("x.js_bound", "JS upper bound", "#ffb74d"),
                                  ("x.psi_bound", "PSI upper bound", "#6d4c41")):
            xs, ys = _series(looks, name, key, t0)
            if xs:
                _plot(ax, xs, ys, color=color, lw=1.5, label=label)
        for key, label in (("max_js", "limit JS"), ("max_psi", "limit PSI")):
            if key in lim:
                ax.axhline(lim[key], color=LIMIT, ls="--" if key == "max_js" else ":", lw=1.2,
                           label=f"{label} {lim[key]:g}")
        bounds = _outcome_dots(ax, looks, name, "x.js_distance" if "max_js" in lim else "x.psi_bound", t0)
    else:
        q = lim.get("quantile")
        what = f"p{q * 100:g} latency" if kind == "latency" and q else kind.replace("_", " ")
        fig, ax = _axes(f"{name}{hard}: {what}", UNITS.get(kind, "value"))
        xs_s, ys_s, sides_s = _sided(looks, name, "sv", t0)
        xs_c, ys_c = _series(looks, name, "cv", t0)
        if xs_s:
            _plot(ax, xs_s, ys_s, color=STABLE, lw=1.5, label="stable")
        if xs_c:
            _plot(ax, xs_c, ys_c, color=CANARY, lw=1.5, label="canary")
        bounds = _bound_marks(ax, xs_s, ys_s, sides_s, STABLE)
        rel = lim.get("max_increase_pct") if kind == "latency" else lim.get("max_increase_points")
        if rel is not None and xs_s:
            ys = [v * (1 + rel / 100) for v in ys_s] if kind == "latency" else [v + rel for v in ys_s]
            _plot(ax, xs_s, ys, color=LIMIT, ls="--", lw=1.2,
                    label=f"limit stable +{rel:g}{'%' if kind == 'latency' else ' points'}")
            bounds |= _bound_marks(ax, xs_s, ys, sides_s, LIMIT)  # a limit from a stable known as a bound is one
        for key in ("max_ms", "max_rate_pct", "max_value"):
            if key in lim:
                ax.axhline(lim[key], color=LIMIT, ls=":", lw=1.2, label=f"limit {lim[key]:g}")
        if not xs_c:  # a custom check without per-arm values: its effect against its threshold
            xs, ys = _series(looks, name, "e", t0)
            if xs:
                _plot(ax, xs, ys, color=CANARY, lw=1.5, label="effect")
            bounds |= _outcome_dots(ax, looks, name, "e", t0)
        else:
            bounds |= _outcome_dots(ax, looks, name, "cv", t0)
    _bound_legend(ax, bounds)
    _step_edges(ax, doc, t0)
    if not looks:
        ax.text(0.5, 0.5, "no look recorded a value for this check", transform=ax.transAxes, ha="center",
                color=LIMIT)
    _legend(ax)
    return _svg(fig, f"check{index}", _check_label(looks, check, t0))


def _check_label(looks: list[dict[str, Any]], check: dict[str, Any], t0: float) -> str:
    """The check's plot in words: what it plots, each arm's last value with its unit, its limits, its fails."""
    name, kind, lim = check["name"], check["kind"], check.get("limits") or {}
    fails = sum(1 for lk in looks if (lk["c"].get(name) or {}).get("o") == "fail")
    limits = ", ".join(f"{k} {v:g}" for k, v in lim.items()) or "none recorded"
    if kind == "prediction_shift":
        arms = "JS distance, last " + _last(*_series(looks, name, "x.js_distance", t0), "")
    else:
        unit = UNITS.get(kind, "")

        def last(key: str) -> str:  # a bound as one: ">300 ms at 60 s"
            xs, ys, sides = _sided(looks, name, key, t0)
            return _last(xs, ys, unit, sides)

        arms = f"stable, last {last('sv')}; canary, last {last('cv')}"
    return (f"{name}: {kind.replace('_', ' ')} per look over time, {len(looks)} looks, {fails} failed; {arms}; "
            f"limits: {limits}")
