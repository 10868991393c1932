"""The report page in a real headless browser (Debian's chromium): it loads with no console
message or script error and no network, and its plots are drawn (pixels of each series' colour)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from canary.report import render
from canary.report_plots import CANARY, OUTCOME_COLORS, STABLE
from tests.support.browser import chromium, load, measure, screenshot  # noqa: F401  (chromium: a fixture)
from tests.unit.test_history import fake_rollout

pytestmark = pytest.mark.integration


def _rgb(hex_color: str) -> tuple[int, int, int]:
    return tuple(int(hex_color[i:i + 2], 16) for i in (1, 3, 5))  # type: ignore[return-value]


def assert_report_page(binary: str, page: Path, tmp: Path, *, checks: list[str], looks: int,
                       colours: tuple[str, ...] = (CANARY, STABLE)) -> str:
    """Load `page` in chromium and check it; returns the DOM after its script ran."""
    loaded = load(binary, page, tmp=tmp)
    assert loaded.console == [], loaded.console  # no console message, no uncaught error
    dom = loaded.dom
    assert 'data-ready="1"' in dom  # the page's script ran to its end
    figures = re.findall(r'<figure class="plot" id="([^"]+)"><svg[^>]*>(.*?)</svg>\s*</figure>', dom, re.S)
    assert [f[0] for f in figures] == ["weights", *(f"check-{c}" for c in checks)]
    assert all(svg.count("<path") >= 5 for _, svg in figures)  # axes, ticks and the series are in the DOM
    assert dom.count('<tr class="look"') == looks
    png = tmp / "page.png"
    screenshot(binary, page, png, tmp=tmp)
    from PIL import Image

    present = {rgb: n for n, rgb in Image.open(png).convert("RGB").getcolors(maxcolors=1 << 24)}
    counts = {c: present.get(_rgb(c), 0) for c in colours}
    assert all(n >= 50 for n in counts.values()), counts  # each series was drawn, not just declared
    return dom


def test_a_rollback_report_loads_without_errors_and_draws_its_plots(chromium: str, tmp_path: Path) -> None:
    doc = fake_rollout(slow=True)
    page = tmp_path / "rollback.html"
    page.write_text(render(doc), encoding="utf-8")
    dom = assert_report_page(chromium, page, tmp_path, checks=["lat", "err"], looks=len(doc["looks"]),
                             colours=(CANARY, STABLE, OUTCOME_COLORS["fail"]))
    assert dom.count('data-outcome="fail"') == 2 and "rolled_back" in dom


def test_a_promotion_report_loads_without_errors(chromium: str, tmp_path: Path) -> None:
    doc: dict[str, Any] = fake_rollout()
    page = tmp_path / "promoted.html"
    page.write_text(render(doc), encoding="utf-8")
    assert_report_page(chromium, page, tmp_path, checks=["lat", "err"], looks=len(doc["looks"]),
                       colours=(CANARY, STABLE, OUTCOME_COLORS["pass"]))


def test_the_browser_check_sees_a_script_error(chromium: str, tmp_path: Path) -> None:
    """The console check has teeth: a page whose script fails is caught."""
    page = tmp_path / "broken.html"
    page.write_text(render(fake_rollout()).replace("</body>", "<script>undefinedFunction();</script></body>"))
    loaded = load(chromium, page, tmp=tmp_path)
    assert any("undefinedFunction" in line for line in loaded.console), loaded.console


def _long_words(doc: dict[str, Any]) -> dict[str, Any]:
    """Every free text of a history as one long word (a 253-character name, a reason with no space): the widest
    a page can be asked to show."""
    doc = json.loads(json.dumps(doc))
    doc["rollout"].update(model="m" * 253, canary_version="v" * 63, stable_version="s" * 63,
                          namespace="n" * 63, virtual_service="r" * 253, name="c" * 253)
    doc["reason"] = "why" * 160
    for e in doc["events"]:
        e["reason"] = "e" * 240
    for lk in doc["looks"]:
        lk["r"] = "z" * 480
        for rec in lk["c"].values():
            rec["r"] = "q" * 240
    return doc


@pytest.mark.parametrize("width", [1280, 800])
def test_long_names_and_reasons_wrap_inside_the_window(chromium: str, tmp_path: Path, width: int) -> None:
    """A reason or a name with no space in it ran off the right edge: the rollback's reason, under the title,
    was cut at the window's edge (the rest behind a horizontal scroll nobody sees at 3 a.m.)."""
    doc = _long_words(fake_rollout(slow=True))
    got = measure(chromium, render(doc), "{page: document.documentElement.scrollWidth, window: window.innerWidth,"
                  " reason: document.querySelector('p.sub').getBoundingClientRect().right, split: " + _SPLIT + "}",
                  tmp=tmp_path, width=width, height=800)
    assert got["page"] <= got["window"] and got["reason"] <= got["window"], got  # type: ignore[index]
    assert got["split"] == [], got  # type: ignore[index]  # and no number or outcome was broken to make room


# the texts of the looks table's first six columns (#, t, step, canary %, verdict, requests) laid out on more
# than one line
_SPLIT = ("Array.from(document.querySelectorAll('#looks-table tr.look')).flatMap(function(tr){"
          "return Array.from(tr.children).slice(0, 6).filter(function(td){var r=document.createRange();"
          "r.selectNodeContents(td);return new Set(Array.from(r.getClientRects()).map(function(x){"
          "return Math.round(x.top)})).size>1}).map(function(td){return td.textContent})})")


# whether each element's last text reads left to right as laid out: its first character left of its last
_LTR = ("function(sel){return Array.from(document.querySelectorAll(sel)).map(function(el){"
        "var w=document.createTreeWalker(el,NodeFilter.SHOW_TEXT),t=null,n;while((n=w.nextNode()))t=n;"
        "var r=document.createRange();r.setStart(t,0);r.setEnd(t,1);var a=r.getBoundingClientRect().left;"
        "r.setStart(t,t.length-1);r.setEnd(t,t.length);return [t.data, a<r.getBoundingClientRect().left]})}")


def test_a_right_to_left_override_in_a_name_does_not_reverse_the_verdict(chromium: str, tmp_path: Path) -> None:
    """A U+202E (right-to-left override) in a canary version or a namespace ran on into the text after it: the
    badge read "kcab_dellor", the VirtualService "cer". Right-to-left names still show right to left, inside
    their own isolate; the tab's title drops the control."""
    doc = fake_rollout(slow=True)
    doc["rollout"].update(canary_version="v2\u202e", namespace="\u05de\u05dc\u202e")
    got = measure(chromium, render(doc), "{badge: (" + _LTR + ")('h1 .phase'), where: (" + _LTR + ")('dd:nth-of-type(1)')}",
                  tmp=tmp_path)
    assert got["badge"] == [["rolled_back", True]], got  # type: ignore[index]
    assert got["where"] == [["rec", True]], got  # type: ignore[index]
    assert "\u202e" not in render(doc).split("</title>")[0]


def test_with_scripts_off_the_page_shows_no_filter_that_does_nothing(chromium: str, tmp_path: Path) -> None:
    """The "only looks that did not pass" box is the page's one script; opened with scripts off (a mail client's
    viewer, a locked-down browser) it was shown and, ticked, hid nothing. Now the script shows it. (The page
    "with scripts off" is the page with its script taken out: chromium's --dump-dom needs scripts.)"""
    page = render(fake_rollout(slow=True))
    shown = "{box: document.getElementById('only-problems').getClientRects().length > 0}"
    without = re.sub(r"<script>.*?</script>", "", page, flags=re.S)
    assert measure(chromium, without, shown, tmp=tmp_path) == {"box": False}
    assert measure(chromium, page, shown, tmp=tmp_path) == {"box": True}


def test_a_screen_reader_gets_each_plot_as_one_image_named_in_words(chromium: str, tmp_path: Path) -> None:
    """The plots were unnamed SVG: chromium gave a screen reader no role and no name for them (their tick labels
    at best). Each is now one image whose name says what it shows: the weights, each arm's last value with its
    unit, the limits and how many looks failed."""
    got = measure(chromium, render(fake_rollout(slow=True)), "Array.from(document.querySelectorAll('figure.plot svg'))"
                  ".map(function(s){return [s.computedRole, s.computedName]})", tmp=tmp_path)
    assert [role for role, _ in got] == ["image"] * 3, got  # type: ignore[union-attr]
    weights, lat, err = (name for _, name in got)  # type: ignore[union-attr]
    assert weights == "Traffic to the canary over time: canary weight 0% → 10% → 50% → 0%; looks: 3 pass, " \
                      "2 inconclusive, 2 fail"
    assert lat.startswith("lat: latency per look over time, 7 looks, 2 failed; stable, last 89.19 ms at 14 s; "
                          "canary, last 184.9 ms at 14 s") and "max_increase_pct 20" in lat, lat
    assert "% of requests" in err and "0 failed" in err, err


def test_a_canary_off_the_buckets_is_read_and_drawn_as_a_bound(chromium: str, tmp_path: Path) -> None:
    """A canary p95 past the last finite bucket bound (1020 ms) is only known as ">1020 ms": a screen reader was
    told "canary, last 1020 ms" and the plot drew the bound as a value. Now the plot's name says the bound, and the
    two failed looks' points are open triangles (white inside, the fail colour round them) laid out inside the
    plot, with their legend entry shown."""
    got = measure(chromium, render(fake_rollout(slow=True, factor=100.0)), """(function(){
      var fig=document.getElementById('check-lat'), svg=fig.querySelector('svg'), box=svg.getBoundingClientRect();
      var marks=Array.from(fig.querySelectorAll('use')).filter(function(u){
        var s=getComputedStyle(u); return s.fill==='rgb(255, 255, 255)' && s.stroke==='rgb(198, 40, 40)'});
      var legend=Array.from(fig.querySelectorAll('text')).filter(function(t){
        return t.textContent==='only a bound: the value is above'});
      return {name: svg.computedName, marks: marks.map(function(u){var r=u.getBoundingClientRect();
                return r.width>3 && r.height>3 && r.left>=box.left && r.right<=box.right}),
              legend: legend.map(function(t){return t.getClientRects().length>0})};
    })()""", tmp=tmp_path)
    assert "canary, last >1020 ms at 14 s (2 of its 7 values only bounds)" in got["name"], got  # type: ignore[index]
    assert got["marks"] == [True, True] and got["legend"] == [True], got  # type: ignore[index]


# the contrast ratio (WCAG 2) of each element's text against its background, as chromium computed their colours;
# a transparent background is the page's (white)
_CONTRAST = ("function(els){function lum(c){var v=c.match(/[\\d.]+/g).slice(0,3).map(function(x){x=x/255;"
             "return x<=0.03928?x/12.92:Math.pow((x+0.055)/1.055,2.4)});return 0.2126*v[0]+0.7152*v[1]+0.0722*v[2]}"
             "return els.map(function(el){var s=getComputedStyle(el),bg=s.backgroundColor;"
             "if(/rgba\\(.*, 0\\)$/.test(bg))bg='rgb(255,255,255)';var a=lum(s.color),b=lum(bg);"
             "return [el.className, Math.round((Math.max(a,b)+0.05)/(Math.min(a,b)+0.05)*100)/100]})}")


def test_every_verdict_badge_and_outcome_is_readable(chromium: str, tmp_path: Path) -> None:
    """The verdict is the page's first word: a paused rollout's badge was white on yellow (contrast 1.97), one
    with no phase recorded ("unknown") or another phase white on no background at all (invisible), and
    "inconclusive" in the tables #b28704 on white (3.3). WCAG's 4.5 for text, for every phase and outcome."""
    from canary import rollout as rl

    phases = [rl.PENDING, rl.PROGRESSING, rl.PAUSED, rl.PROMOTING, rl.PROMOTED, rl.ROLLED_BACK, rl.ABORTED, "", "x"]
    spans = "".join(f'<span class="phase {p}">{p or "unknown"}</span>' for p in phases) + "".join(
        f'<span class="o-{o}">{o}</span>' for o in ["pass", "inconclusive", "error", "fail", "", "x"])
    script = ("(function(){var d=document.createElement('div');d.id='probe';d.innerHTML=" + json.dumps(spans)
              + ";document.body.appendChild(d);return (" + _CONTRAST + ")(Array.from(d.children))})()")
    got = measure(chromium, render(fake_rollout(slow=True)), script, tmp=tmp_path)
    assert len(got) == 15 and [x for x in got if x[1] < 4.5] == [], got  # type: ignore[arg-type, index, misc]


def _many_checks(doc: dict[str, Any], count: int) -> dict[str, Any]:
    """`doc` judged by `count` latency checks (copies of its "lat"), as a policy with a check per model output."""
    doc = json.loads(json.dumps(doc))
    lat = next(c for c in doc["policy"]["checks"] if c["name"] == "lat")
    doc["policy"]["checks"] = [{**lat, "name": f"output_{i}_p99"} for i in range(count)]
    for lk in doc["looks"]:  # the others passing with a tiny p-value: the narrowest columns, the longest p
        lk["c"] = {f"output_{i}_p99": lk["c"]["lat"] if not i else {**lk["c"]["lat"], "o": "pass", "p": 4.8e-111}
                   for i in range(count)}
    return doc


@pytest.mark.parametrize("width", [1280, 800])
def test_a_looks_table_of_many_checks_scrolls_in_its_box_and_keeps_reasons_readable(chromium: str, tmp_path: Path,
                                                                                    width: int) -> None:
    """Ten checks: the looks table ran past the window at 800 px (the page scrolled sideways, the reasons off
    screen), the reason column was squeezed to a few letters a line (a row 370 px high), and a p-value broke at
    its exponent ("p=4.8e-" over "111"). The table now scrolls inside its own box, the reason keeps a readable
    width and a p-value stays on one line."""
    doc = _many_checks(fake_rollout(slow=True), 10)
    probe = ("{page: document.documentElement.scrollWidth, window: window.innerWidth,"
             " reason: Math.min.apply(null, Array.from(document.querySelectorAll('#looks-table tr.look > td:last-child'))"
             ".map(function(td){return td.getBoundingClientRect().width})),"
             " split: Array.from(document.querySelectorAll('#looks-table tr.look > td > span.note')).filter(function(s){"
             "return new Set(Array.from(s.getClientRects()).map(function(x){return Math.round(x.top)})).size>1})"
             ".map(function(s){return s.textContent})}")
    got = measure(chromium, render(doc), probe, tmp=tmp_path, width=width, height=800)
    assert got["page"] <= got["window"], got  # type: ignore[index]
    assert got["reason"] >= 240 and got["split"] == [], got  # type: ignore[index]


def _first_look_rollback(doc: dict[str, Any]) -> dict[str, Any]:
    """`doc` (a rollback) as if its first look had failed a hard check: one look, one value per series."""
    doc = json.loads(json.dumps(doc))
    last = doc["looks"][-1]
    last.update(n=1, at=1002.0, step=1, w=10)
    doc["looks"] = [last]
    doc["policy"]["checks"][0]["hard"] = True
    doc["weights"] = [[1000.0, 0], [1000.0, 10], [1002.0, 0]]
    doc["events"] = [e for e in doc["events"] if e["weights"] != "50/50"]
    for e in doc["events"]:
        e["at"] = min(e["at"], 1002.0)
    doc["updated_at"] = 1002.0
    return doc


# for each of a plot's series (by its colour), the largest width + height chromium laid any of its marks out at,
# outside the legend and the faint step edges (stroke-opacity): 0 is a series drawn as nothing
_DRAWN = ("function(fig, series){var out={};Object.keys(series).forEach(function(k){out[k]=0;"
          "document.querySelectorAll('#'+fig+' svg [style*=\"'+series[k]+'\"]').forEach(function(el){"
          "if(el.closest('[id^=legend]')||el.getAttribute('style').indexOf('stroke-opacity')>=0)return;"
          "var r=el.getBoundingClientRect();out[k]=Math.max(out[k],r.width+r.height)})});return out}")


def test_a_rollback_on_the_first_look_draws_both_arms_and_the_limit(chromium: str, tmp_path: Path) -> None:
    """One look, one value per series: a line of one point is drawn as nothing, so the plot of a rollback on
    its first look showed the canary's red dot alone, no stable value and no limit to hold it against."""
    from canary.report_plots import LIMIT

    doc = _first_look_rollback(fake_rollout(slow=True))
    series = {"stable": STABLE, "canary": CANARY, "limit": LIMIT}
    got = measure(chromium, render(doc), "(" + _DRAWN + ")('check-lat', " + json.dumps(series) + ")", tmp=tmp_path)
    assert all(size >= 4 for size in got.values()), got  # type: ignore[union-attr]


@pytest.mark.parametrize("width, height", [(1280, 720), (390, 844)])
def test_the_verdict_and_the_reason_are_on_the_first_screen(chromium: str, tmp_path: Path, width: int,
                                                            height: int) -> None:
    """At 3 a.m., on a laptop or a phone: the verdict badge and the whole reason (the longest a history keeps,
    one long word in it) are inside the first screen, before any scrolling, down or sideways."""
    doc = fake_rollout(slow=True)
    doc["reason"] = ("lat: canary p95 185 ms vs stable 89.2 ms (+107%, limit +20%) " * 8)[:400] + "x" * 80
    probe = ("[document.querySelector('h1 .phase'), document.querySelector('p.sub')].map(function(el){"
             "var r=el.getBoundingClientRect();return r.left>=0&&r.top>=0&&r.right<=window.innerWidth"
             "&&r.bottom<=window.innerHeight&&document.documentElement.scrollWidth<=window.innerWidth})")
    assert measure(chromium, render(doc), probe, tmp=tmp_path, width=width, height=height) == [True, True]
