"""`canary report`: one rollout as a self-contained HTML page.

Input: a rollout history (`canary.history`, format 1) read from the cluster's history
ConfigMap or from a saved export. Output: one HTML file with everything inline (CSS, SVG
plots, a few lines of script that only filter the looks table), so it opens with no
network, is attached to a ticket as is, and prints. Sections: the outcome and why; the
weights over time with each look's outcome; each check's per-arm values against its limits;
the gates; the step and phase changes; every look's verdict with its evidence (reason,
values, n, p-value per check).
"""

from __future__ import annotations

import datetime
import html
import json
import math
from pathlib import Path
from typing import Any, Optional

from canary import report_plots as plots
from canary.analysis.shown import duration, whole
from canary.errors import ConfigError
from canary.model import unmeasured, with_unit

# Every text colour has a contrast of 4.5 or more on its background (WCAG AA); a phase without a colour of its
# own gets grey, never white on nothing.
# Free text (names, reasons) breaks anywhere rather than running off the window: `.txt` and each table's last
# column (its reason or detail); numbers and outcomes keep whole (a "14.0" split as "14 / .0" misreads). The looks
# table (a column per check) scrolls sideways in its own box, its reasons kept 20em wide, p-values on one line.
_CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:1.5rem auto;max-width:1100px;color:#212121;padding:0 1rem}
h1,.sub,dd,td:last-child,.txt{overflow-wrap:anywhere}
h1{font-size:1.4rem;margin-bottom:.2rem} h2{font-size:1.1rem;margin-top:2rem;border-bottom:1px solid #ddd}
.sub{color:#616161;margin:0 0 1rem 0}
.phase{font-weight:600;padding:.1rem .5rem;border-radius:.3rem;color:#fff;background:#616161}
.promoted{background:#2e7d32} .rolled_back,.aborted{background:#c62828} .progressing,.pending,.promoting{background:#1565c0}
.phase.paused{background:#f9a825;color:#212121}
table{border-collapse:collapse;width:100%;font-size:.85rem} th,td{border-bottom:1px solid #eee;padding:.25rem .4rem;
text-align:left;vertical-align:top} th{background:#fafafa}
.o-pass{color:#2e7d32} .o-inconclusive{color:#8a6a00} .o-error{color:#8e24aa} .o-fail{color:#c62828;font-weight:600}
figure{margin:.5rem 0} figure svg{width:100%;height:auto} details summary{cursor:pointer}
.note{color:#616161;font-size:.85rem} dl{display:grid;grid-template-columns:max-content 1fr;gap:.2rem 1rem}
dt{color:#616161} dd{margin:0}
.scroll{overflow-x:auto} #looks-table tr.look>td:last-child{min-width:20em} #looks-table td>.note{white-space:nowrap}
"""

# Only filters the looks table; the page reads the same without it. The filter's checkbox is shown by this
# script: with scripts off (a mail client, a locked-down browser) a box that did nothing was not shown.
_JS = """
(function(){
  var box=document.getElementById('only-problems');
  if(box){box.parentNode.hidden=false;}
  function apply(){
    var rows=document.querySelectorAll('tr.look');
    for(var i=0;i<rows.length;i++){
      rows[i].hidden=box.checked&&rows[i].getAttribute('data-outcome')==='pass';
    }
  }
  if(box){box.addEventListener('change',apply);apply();}
  document.body.setAttribute('data-ready','1');
})();
"""


def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _b(x: Any) -> str:
    """A name or other text from the history, escaped and isolated (`<bdi>`) where it shares a line with other
    text: a right-to-left override in a version name reversed the verdict after it ("kcab_dellor")."""
    return f"<bdi>{_e(x)}</bdi>"


# explicit bidi embeddings, overrides and isolates: removed from the page's <title> (no markup isolates there)
_BIDI_CONTROLS = dict.fromkeys(map(ord, "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"))


def _v(x: Any) -> str:
    """An optional field of the history, escaped: "-" when absent (a page said "None" and "None%")."""
    return "-" if x is None else _e(x)


def _iso(t: Any) -> str:
    if not isinstance(t, (int, float)) or not t:
        return "-"
    return datetime.datetime.fromtimestamp(float(t), datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _f(x: Any, digits: int = 4) -> str:
    return "-" if x is None else f"{x:.{digits}g}" if isinstance(x, float) else _e(x)


def _count(x: Any) -> str:
    """A request count as a whole number (`increase()` extrapolates: 65.3625 requests)."""
    return whole(x) if isinstance(x, (int, float)) and math.isfinite(x) else _f(x)


def _n(rec: dict[str, Any]) -> str:
    """A check record's "canary/stable" request counts; "-" for an ERROR with none (it could not measure:
    its 0.0 defaults are no count of either arm, as in the terminal's tables, `model.unmeasured`)."""
    stable, canary = ([*(rec.get("n") or [])][:2] + [None, None])[:2]
    return "-" if unmeasured(str(rec.get("o", "")), canary, stable) else f"{_count(canary)}/{_count(stable)}"


# the unit of a check's per-arm values ("sv", "cv") by its kind (`history`: ms for latency, % for rates), for
# `model.with_unit`; a kind not here (a custom check) prints its values bare
_VALUE_UNITS = {"latency": "ms", "error_rate": "%", "feature_missing": "%"}


def _value(x: Any, kind: Any, bound: Any = None) -> str:
    """A per-arm value with its unit: "89.19 ms", "0.5%" (the evidence table read "89.19" beside "+20%"); one that
    is only a bound (the look's "b", `history`) as one: ">2500 ms" (it printed the last bucket bound as the p95)."""
    unit = _VALUE_UNITS.get(kind) if isinstance(kind, str) else None
    side = bound if bound in (">", "<") else None
    if unit:
        return _e(with_unit(x, unit, bound=side))
    return _e(side) + _f(x) if side and x is not None else _f(x)


def _outcome(o: str) -> str:
    return f'<span class="o-{_e(o)}">{_e(o)}</span>'


def render(doc: dict[str, Any]) -> str:
    """The HTML page (a str) for a parsed history (`canary.history.parse`)."""
    ro, pol = doc["rollout"], doc["policy"]
    looks = doc.get("looks") or []
    t0 = float(ro.get("started_at") or (looks[0]["at"] if looks else 0.0))
    ends = [t0, float(doc.get("updated_at") or 0.0)] + [lk["at"] for lk in looks] + [p[0] for p in doc["weights"]]
    t_end = max(ends)
    checks = [c for c in pol.get("checks") or () if isinstance(c, dict) and "name" in c]
    figures = [("weights", plots.weights_svg(doc, t0, t_end))]
    figures += [(f"check-{c['name']}", plots.check_svg(doc, c, t0, i)) for i, c in enumerate(checks)]
    title = f"{ro['model']} {ro['stable_version']} → {ro['canary_version']}"
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>canary report: {_e(title.translate(_BIDI_CONTROLS))}</title><style>{_CSS}</style></head><body>",
        f"<h1>{_b(ro['model'])} {_b(ro['stable_version'])} → {_b(ro['canary_version'])} <span class=\"phase {_e(doc.get('phase') or '')}\">{_e(doc.get('phase') or 'unknown')}</span></h1>",
        _why(doc), _still_running(doc),
        _summary(doc, t0, t_end),
        '<h2 id="plots">Over time</h2>',
        *(f'<figure class="plot" id="{_e(fid)}">{svg}</figure>' for fid, svg in figures),
        _gates(doc, t0), _events(doc, t0), _looks(doc, checks, t0),
        f"<p class=\"note\">Rendered by canary report from history format {doc.get('format')}; times are seconds "
        f"since {_e(_iso(t0))}.</p>",
        f"<script>{_JS}</script></body></html>",
    ]
    return "\n".join(parts)


# an end's class (`rollout.classify_reason`, `end_cause` in `-o json`) in words, before its reason: "lat: canary
# p95 185 ms vs ..." did not say that a check failed, nor "failed: ..." that the canary was not to blame
_CAUSE_WORDS = {
    "check": "a check showed the canary beyond its limit", "gate": "a Triton gate refused the canary",
    "deadline": "no verdict by the step's deadline", "operator": "a person asked for it",
    "interrupted": "the run was interrupted", "infrastructure": "Prometheus or Kubernetes failed (not the canary)",
    # the route or its subsets edited, or (decision 602) a split with the canary made on another VirtualService: "the
    # route was changed" said the rollout's own route was, of a gateway's split that left it as it was
    "foreign_edit": "the routing was changed outside the rollout (its route or its subsets, or another "
                    "VirtualService split with the canary)",
    "abandoned": "its runner was gone (swept)",
    # a reason no rule classes (another canary version's words, a hand-written record): said as such (decision 572)
    "other": "ended for a reason canary does not class (not a check's verdict: read it, and the rollout's events "
             "below)",
}


# a gate's end the canary did not fail: the stable server, the warm-up sample file or the model name failed it
# (`end_words.NOT_THE_CANARY`); "a Triton gate refused the canary" blamed a canary nobody judged (decision 711)
_GATE_NOT_THE_CANARY = ("a Triton gate could not judge the canary (not the canary: the stable server, the warm-up "
                        "sample file or the model name failed)")


def _why(doc: dict[str, Any]) -> str:
    """The line under the title: for a rollback or an abort, what ended it in one line ("Rolled back: a check
    showed the canary beyond its limit — lat: canary p95 ..."); otherwise the recorded reason as it is. A rollback
    whose history kept no reason says so, with the last reason its events recorded."""
    from canary.end_words import not_the_canarys
    from canary.history import end_cause as recorded_cause
    from canary.rollout import ABORTED, ROLLED_BACK, end_cause

    phase, reason = doc.get("phase"), str(doc.get("reason") or "")
    if phase not in (ROLLED_BACK, ABORTED):
        return f'<p class="sub">{_e(reason)}</p>'
    if not reason:
        said = [str(e["reason"]) for e in doc.get("events") or () if e.get("reason")]
        reason = said[-1] if said else ""
    # the class recorded with the end (decision 607); a history from before it, by the reason's words
    recorded = recorded_cause(doc)
    cls = end_cause(recorded, reason)
    # a gate the canary did not fail, by its words (`end_words.not_the_canarys`, as an end's `next`; decision 711)
    words = _GATE_NOT_THE_CANARY if cls == "gate" and not_the_canarys(reason) else _CAUSE_WORDS.get(cls)
    cause = words if reason or recorded else "no reason was recorded"
    head = "Rolled back" if phase == ROLLED_BACK else "Aborted"
    text = " — ".join(x for x in (cause, reason) if x)
    return f'<p class="sub" id="why"><strong>{head}</strong>: {_e(text)}</p>'


def _still_running(doc: dict[str, Any]) -> str:
    """For a rollout not ended when its history was read: a line saying so, at what weight and step,
    so the page is not read as the whole story (empty for promoted / rolled_back / aborted)."""
    from canary.rollout import TERMINAL

    if doc.get("phase") in TERMINAL:
        return ""
    weights, looks, steps = doc.get("weights") or [], doc.get("looks") or [], doc["policy"].get("steps") or []
    where = f"canary at {weights[-1][1]:g}%" if weights else "no weight written yet"
    if looks and looks[-1].get("step") is not None:
        where += f", step {looks[-1]['step']} of {len(steps)}"
    return (f'<p class="sub" id="still-running"><strong>Still in progress</strong> at the last update '
            f"({_e(_iso(doc.get('updated_at')))}): {_e(where)}. This page shows the history up to then; render it "
            "again for what happened after.</p>")


def write(doc: dict[str, Any], path: Optional[Path] = None) -> Path:
    """Write the page (or, for a `.json` path, the history) and return where. Default path:
    `<virtual-service>-<canary version>.report.html`. Raises ConfigError when it cannot be written."""
    from canary import logs

    ro = doc["rollout"]
    path = path or Path(f"{ro.get('virtual_service') or ro['model']}-{ro['canary_version']}.report.html")
    if path.suffix.lower() == ".json":
        text = json.dumps(doc, indent=1, ensure_ascii=False)
    else:
        text = render(doc)
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot write ({exc.strerror})") from None
    logs.get().info("report.written", path=str(path), looks=len(doc["looks"]), phase=doc.get("phase"))
    return path


def _summary(doc: dict[str, Any], t0: float, t_end: float) -> str:
    ro, pol = doc["rollout"], doc["policy"]
    looks = doc.get("looks") or []
    by: dict[str, int] = {}
    for lk in looks:
        o = lk.get("o") or "with no outcome recorded"
        by[o] = by.get(o, 0) + 1
    numbers = [lk["n"] for lk in looks]
    missing = (max(numbers) - len(numbers)) if numbers else 0
    who = _b(ro["source"]) if ro.get("source") else ""
    if ro.get("name"):
        who += f" (CanaryRollout {_b(ro['name'])})"
    rows = [  # (label, HTML): each name from the history isolated (`_b`)
        ("where", f"{_b(ro.get('namespace') or '-')}/{_b(ro.get('virtual_service') or '-')}"
                  + (f" route {_b(ro['route'])}" if ro.get("route") else "")),
        ("run by", who or "-"), ("started", _e(_iso(t0))), ("last update", _e(_iso(doc.get("updated_at")))),
        ("duration", _duration(t_end - t0)),
        ("steps", _e(" → ".join(f"{s}%" for s in pol.get("steps") or []))),
        ("looks", (f"{len(looks)} recorded: " + ", ".join(f"{n} {_b(o)}" for o, n in sorted(by.items())) if looks
                   else "none recorded (the rollout ended, or was read, before its first look)")
                  + (f"; {missing} not kept (bounded history, or written by a process that stopped)" if missing else "")),
        ("analysis", _e(_analysis(pol))),
    ]
    return "<dl>" + "".join(f"<dt>{_e(k)}</dt><dd>{v}</dd>" for k, v in rows) + "</dl>"


def _duration(s: float) -> str:
    """A rollout's length as every length is said (`shown.duration`): "14s", "12m5s", "3h2m (10920s)" ("10920 s"
    had to be worked out; the plots' axes stay in seconds, hence the figure in brackets from an hour on)."""
    s = max(0, round(s))
    return f"{duration(s)} ({s}s)" if s >= 3600 else duration(s)


def _analysis(pol: dict[str, Any]) -> str:
    """The policy's timings, each "not recorded" when the history has none (a page said "alpha 0")."""
    def num(key: str, unit: str = "") -> str:
        return f"{pol[key]:g}{unit}" if key in pol else "not recorded"

    return (f"interval {num('interval_s', ' s')}, a look every {num('look_every_s', ' s')}, alpha {num('alpha')}, "
            f"{pol.get('max_failed_looks', 'not recorded')} failed looks to roll back")


def _gates(doc: dict[str, Any], t0: float) -> str:
    gates = doc.get("gates") or []
    if not gates:
        return '<h2 id="gates">Gates</h2><p class="note">No Triton gate ran for this rollout.</p>'
    rows = "".join(f"<tr><td>{e['at'] - t0:.1f}</td><td>{_e(e.get('stage'))}</td>"
                   f"<td>{_outcome('pass' if e.get('outcome') == 'passed' else 'fail')}</td>"
                   f"<td>{_v(e.get('detail'))}</td></tr>" for e in gates)
    return ('<h2 id="gates">Gates</h2><table><tr><th>t (s)</th><th>stage</th><th>outcome</th><th>detail</th></tr>'
            f"{rows}</table>")


def _events(doc: dict[str, Any], t0: float) -> str:
    rows = "".join(f"<tr><td>{e['at'] - t0:.1f}</td><td>{_e(e.get('event'))}</td><td>{_v(e.get('phase'))}</td>"
                   f"<td>{_v(e.get('weights'))}</td><td>{_e(e.get('reason') or '')}</td></tr>"
                   for e in doc.get("events") or ())
    if not rows:  # as the looks: a header row alone read as a table that failed to load
        return ('<h2 id="events">Steps and phase changes</h2>'
                '<p class="note" id="no-events">No step or phase change was recorded for this rollout.</p>')
    return ('<h2 id="events">Steps and phase changes</h2><table><tr><th>t (s)</th><th>event</th><th>phase</th>'
            f"<th>weights (stable/canary)</th><th>reason</th></tr>{rows}</table>")


def _looks(doc: dict[str, Any], checks: list[dict[str, Any]], t0: float) -> str:
    names = [c["name"] for c in checks]
    kinds = {c["name"]: c.get("kind") for c in checks}
    head = "".join(f'<th class="txt">{_e(n)}</th>' for n in names)
    rows = []
    for lk in doc.get("looks") or ():
        cells = "".join(_check_cell(lk["c"].get(n)) for n in names)
        detail = "".join(
            f"<tr><td class=\"txt\">{_e(n)}</td><td>{_outcome(r.get('o', ''))}</td>"
            f"<td>{_value(r.get('sv'), kinds.get(n), (r.get('b') or {}).get('sv'))}</td>"
            f"<td>{_value(r.get('cv'), kinds.get(n), (r.get('b') or {}).get('cv'))}"
            f"</td><td>{_n(r)}</td>"
            f"<td>{_e(with_unit(r.get('th'), r.get('u')) if r.get('th') is not None else _f(r.get('th')))}</td>"
            f"<td>{_f(r.get('p'), 3)}</td><td>{_e(r.get('r', ''))}</td></tr>"
            for n, r in lk["c"].items())
        rows.append(
            f'<tr class="look" data-outcome="{_e(lk.get("o") or "")}"><td>{lk["n"]}</td><td>{lk["at"] - t0:.1f}</td>'
            f"<td>{_v(lk.get('step'))}</td><td>{_v(lk.get('w'))}{'%' if lk.get('w') is not None else ''}</td>"
            f"<td>{_outcome(lk.get('o', ''))}</td>"
            f"<td>{_count(lk.get('cn'))}</td>{cells}<td><details><summary>{_e(lk.get('r') or 'per-check details')}</summary>"
            "<table><tr><th>check</th><th>outcome</th><th>stable</th><th>canary</th><th>n canary/stable</th>"
            f"<th>threshold</th><th>p</th><th>reason</th></tr>{detail}</table></details></td></tr>")
    thinned = doc.get("thinned") or 0
    note = (f'<p class="note">{thinned} ordinary looks were dropped to keep the history bounded; failed and '
            "error looks and each step's first and last look are always kept.</p>") if thinned else ""
    if not rows:  # a header row alone read as a table that failed to load
        note += '<p class="note" id="no-looks">No look was recorded for this rollout.</p>'
    return ('<h2 id="looks">Every look</h2>'
            '<label hidden><input type="checkbox" id="only-problems"> only looks that did not pass</label>'
            f'{note}<div class="scroll"><table id="looks-table"><tr><th>#</th><th>t (s)</th><th>step</th><th>canary</th><th>verdict</th>'
            f"<th>canary requests</th>{head}<th>reason (click for the evidence)</th></tr>{''.join(rows)}</table></div>")


def _check_cell(rec: dict[str, Any] | None) -> str:
    if not rec:
        return "<td>-</td>"
    return f"<td>{_outcome(rec.get('o', ''))}<br><span class=\"note\">p={_f(rec.get('p'), 2)}</span></td>"
