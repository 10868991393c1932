"""`canary report` from a saved history: the page's content, that it needs nothing from the
network, and the command's inputs and outputs (in-process, no cluster)."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from canary import history as hist
from canary.cli import app
from canary.report import _duration, _why, render
from tests.unit.test_history import fake_rollout

@pytest.fixture(scope="module")
def slow() -> dict[str, Any]:
    return fake_rollout(slow=True)


def external_references(page: str) -> list[str]:
    """Every src/href/url() that is not a fragment (#id) or inline data."""
    refs = re.findall(r"""(?:src|href)\s*=\s*["']([^"']*)["']""", page) + re.findall(r"url\(([^)]*)\)", page)
    return [r for r in refs if not r.strip("'\" ").startswith(("#", "data:"))]


def test_the_page_has_a_plot_per_check_and_every_look(slow: dict[str, Any]) -> None:
    page = render(slow)
    figures = re.findall(r'<figure class="plot" id="([^"]+)"><svg', page)
    assert figures == ["weights", "check-lat", "check-err"]
    assert page.count('<tr class="look"') == len(slow["looks"])
    assert page.count('data-outcome="fail"') == 2
    assert "rolled_back" in page and "limit +20%" in page and "No Triton gate ran" in page
    assert external_references(page) == []  # opens with no network
    assert render(slow) == page  # the same history, the same page


def test_text_from_the_cluster_is_escaped(slow: dict[str, Any]) -> None:
    doc = json.loads(json.dumps(slow))
    doc["reason"] = "<script>alert(1)</script>"
    doc["looks"][0]["c"]["lat"]["r"] = '"><img src=x onerror=alert(1)>'
    page = render(doc)
    assert "<script>alert(1)" not in page and "<img src=x" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_gates_and_a_prediction_shift_are_drawn(slow: dict[str, Any]) -> None:
    doc = json.loads(json.dumps(slow))
    doc["gates"] = [hist.gate_record(at=doc["rollout"]["started_at"], stage="preflight", outcome="passed",
                                     detail="warmup=20 ok")]
    doc["policy"]["checks"].append({"name": "pred", "kind": "prediction_shift", "hard": False,
                                    "limits": {"max_psi": 0.2, "max_js": 0.1}})
    for i, lk in enumerate(doc["looks"]):
        lk["c"]["pred"] = {"o": "pass", "p": 0.5, "n": [1, 1], "r": "",
                           "x": {"js_distance": 0.01 * i, "js_bound": 0.02 * i, "psi_bound": 0.03 * i}}
    page = render(doc)
    assert 'id="check-pred"><svg' in page and "warmup=20 ok" in page and "limit JS 0.1" in page


def test_report_from_a_saved_export(tmp_path: Path, slow: dict[str, Any]) -> None:
    saved = tmp_path / "rollout.json"
    saved.write_text(json.dumps(slow))
    out = tmp_path / "r.html"
    res = CliRunner().invoke(app, ["report", "--input", str(saved), "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert res.stdout.strip() == str(out) and out.read_text() == render(slow)
    again = CliRunner().invoke(app, ["report", "--input", str(saved), "-o", "json"])
    assert again.exit_code == 0 and json.loads(again.stdout) == slow  # an export reads back as it was


@pytest.mark.parametrize("args, needle", [
    (["report", "--input", "{missing}"], "cannot read"),
    (["report", "--input", "{bad}"], "bad.json: looks[0]"),
    (["report", "--input", "{good}", "-o", "text"], "FILE.html"),
    (["report"], "give MODEL, --rollout NAME or --input FILE"),
    # MODEL with --input was ignored: the page of the file's model, under the name asked for (a newcomer's finding)
    (["report", "--input", "{good}", "other-model"], "good.json is the history of model 'rec', not 'other-model'"),
    (["report", "--input", "{good}", "--rollout", "r1"], "give --input FILE or --rollout NAME, not both"),
])
def test_bad_input_exits_2_naming_it(tmp_path: Path, slow: dict[str, Any], args: list[str], needle: str) -> None:
    bad = json.loads(json.dumps(slow))
    bad["looks"][0] = {"n": "one"}
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    (tmp_path / "good.json").write_text(json.dumps(slow))
    paths = {"missing": str(tmp_path / "nope.json"), "bad": str(tmp_path / "bad.json"),
             "good": str(tmp_path / "good.json")}
    res = CliRunner().invoke(app, [a.format(**paths) for a in args])
    assert res.exit_code == 2, res.output
    assert needle in res.output


def test_input_takes_dash_i_as_judge_and_drift_check_do(tmp_path) -> None:
    """`-i` like `canary judge` and `canary drift check`; `-f` still works."""
    from typer.testing import CliRunner

    from canary import logs
    from canary.cli import app

    try:
        for flag in ("-i", "-f"):
            r = CliRunner().invoke(app, ["report", flag, str(tmp_path / "missing.json"), "-o", "json"])
            assert r.exit_code == 2 and "missing.json" in r.output, (flag, r.output)
    finally:
        logs.configure()


def test_a_saved_history_that_is_not_utf8_is_bad_input_exit_2(tmp_path: Path) -> None:
    """Not "unexpected error" (exit 3, a bug): the file is named and so is what to give instead."""
    bad = tmp_path / "h.json"
    bad.write_bytes(b"\xff\xfe{")
    res = CliRunner().invoke(app, ["report", "--input", str(bad), "-o", "json"])
    assert res.exit_code == 2 and f"{bad}: not UTF-8 text" in res.output, res.output


@pytest.mark.parametrize("content, what", [
    ('{"event": "rollout.started", "level": "info"}\n{"event": "look.done", "level": "info"}\n',
     "one JSON object per line, a JSON-lines log"),
    ("<!doctype html>\n<html><body>report</body></html>\n", "an HTML page"),
    ("format: 1\nrollout:\n  model: rec-model\n", "YAML (a command's `-o yaml` output is for reading; give its `-o json`)"),
    ("rollout: {model: m}\nformat: 1\n", "YAML"),
    ("not a history at all", "not JSON"),
])
def test_a_saved_history_that_is_not_json_says_what_it_is_and_what_to_give(
        tmp_path: Path, content: str, what: str) -> None:
    """The demo's `canary-demo.log`, its `canary-demo.report.html` or a `-o yaml` export given to --input
    said only `not JSON (Extra data: line 2 column 1 (char 162))`: what the file is, and which file to give."""
    bad = tmp_path / "given"
    bad.write_text(content, encoding="utf-8")
    res = CliRunner().invoke(app, ["report", "--input", str(bad), "-o", "json"])
    out = " ".join(res.output.split())
    assert res.exit_code == 2 and f"{bad}: not JSON (" in out and what in out, res.output
    assert "--input takes the JSON history `canary report MODEL -o FILE.json` writes" in out, res.output


def test_a_check_that_could_not_measure_shows_no_request_counts_in_the_report(slow: dict[str, Any]) -> None:
    """As in the terminal's tables (decision 190): an ERROR with no counts is "-", not "0/0" (arms with no
    traffic); a check that measured keeps its counts, 0 included."""
    doc = json.loads(json.dumps(slow))
    look = doc["looks"][0]
    look["c"]["lat"].update({"o": "error", "n": [0.0, 0.0], "r": "Prometheus could not be asked"})
    look["c"]["err"].update({"o": "pass", "n": [5000.0, 0.0]})
    detail = render(doc).split('<tr class="look"')[1].split("</details>")[0]
    cells = re.findall(r"<tr><td[^>]*>(\w+)</td><td><span[^>]*>\w+</span></td><td>[^<]*</td><td>[^<]*</td><td>([^<]*)</td>",
                       detail)
    assert dict(cells) == {"lat": "-", "err": "0/5,000"}, cells


@pytest.mark.parametrize("name", ["$\\foo$", "p$_{95}$-lat"])
def test_a_check_name_with_dollar_signs_is_plain_text_in_the_plot(slow: dict[str, Any], name: str) -> None:
    """Matplotlib reads "$...$" as math: "$\\foo$" crashed the report, "p$_{95}$" drew a subscript."""
    doc = json.loads(json.dumps(slow))
    doc["policy"]["checks"][0]["name"] = name
    for lk in doc["looks"]:
        lk["c"][name] = lk["c"].pop("lat")
    page = render(hist.parse(json.dumps(doc), where="t"))
    svg = page.split('id="check-' + name, 1)[1].split("</svg>", 1)[0]
    assert f">{name}: p95 latency</text>" in svg


def test_a_history_with_no_look_says_so(slow: dict[str, Any]) -> None:
    """A rollout rolled back by the pre-traffic gate (or read before its first look) has no look:
    the page said "looks: 0 recorded: " and showed a looks table of headers only."""
    doc = json.loads(json.dumps(slow))
    doc["looks"] = []
    page = render(hist.parse(json.dumps(doc), where="t"))
    assert "<dt>looks</dt><dd>none recorded" in page and "0 recorded" not in page
    assert 'id="no-looks">No look was recorded' in page


def test_a_history_with_no_step_or_phase_change_says_so(slow: dict[str, Any]) -> None:
    """An empty history (read before its first write landed, or its events lost): the events table was its
    header row alone."""
    doc = json.loads(json.dumps(slow))
    doc["events"] = []
    page = render(hist.parse(json.dumps(doc), where="t"))
    events = page.split('<h2 id="events">', 1)[1].split("<h2", 1)[0]
    assert "<table" not in events and 'id="no-events">No step or phase change was recorded' in events


def test_a_rollout_still_in_progress_says_so_at_the_top(slow: dict[str, Any]) -> None:
    """Read mid-rollout (phase progressing, no reason yet) the page had a blue badge and an empty line under
    the title: nothing said the story was unfinished. An ended rollout gets no such line."""
    doc = json.loads(json.dumps(slow))
    doc.update(phase="progressing", reason="", updated_at=1012.0, looks=doc["looks"][:6], weights=doc["weights"][:3],
               events=doc["events"][:3])
    page = render(hist.parse(json.dumps(doc), where="t"))
    head = page.split('<h2 id="plots">', 1)[0]
    assert "Still in progress</strong> at the last update (1970-01-01 00:16:52 UTC): canary at 50%, step 2 of 3" in head
    assert "Still in progress" not in render(slow)


def test_a_look_without_a_reason_still_has_a_summary_to_open(slow: dict[str, Any]) -> None:
    """A look recorded with no reason (a hand-made export, an older canary) rendered `<summary></summary>`: a
    bare disclosure triangle with no text, which on-call did not know to click for the per-check table."""
    doc = json.loads(json.dumps(slow))
    for lk in doc["looks"]:
        lk["r"] = ""
    page = render(hist.parse(json.dumps(doc), where="t"))
    assert "<summary></summary>" not in page
    assert page.count("<summary>per-check details</summary>") == len(doc["looks"])


def test_a_history_without_its_optional_fields_renders_them_as_not_recorded(slow: dict[str, Any]) -> None:
    """Every field `history.parse` lets a history leave out (an older canary's, a hand-made export): a look with
    an outcome and no weight crashed the report (KeyError 'w', exit 3); the others showed "None", "None%", a
    phase class "None" and "alpha 0" (an alpha never recorded, read as a policy that could fail nothing)."""
    doc = json.loads(json.dumps(slow))
    for k in ("phase", "reason", "updated_at", "thinned"):
        doc.pop(k)
    for k in ("namespace", "virtual_service", "route", "started_at", "source", "name"):
        doc["rollout"].pop(k)
    for k in ("interval_s", "look_every_s", "alpha", "max_failed_looks"):
        doc["policy"].pop(k)
    for e in doc["events"]:
        for k in ("phase", "weights", "reason"):
            e.pop(k)
    doc["gates"] = [{"at": 1000.0, "stage": "preflight", "outcome": "passed"}]
    for i, lk in enumerate(doc["looks"]):
        for k in ("step", "w", "r", "cn", *(("o",) if i % 2 else ())):
            lk.pop(k)
    page = render(hist.parse(json.dumps(doc), where="t"))
    text = re.sub(r"<svg.*?</svg>", "", page, flags=re.S)
    assert "None" not in text and "alpha 0" not in text and "interval 0 s" not in text
    assert "interval not recorded, a look every not recorded, alpha not recorded, not recorded failed looks" in text
    assert "3 <bdi>with no outcome recorded</bdi>" in text and 'data-outcome=""' in text
    assert "<dt>where</dt><dd><bdi>-</bdi>/<bdi>-</bdi></dd><dt>run by</dt><dd>-</dd>" in text


def test_a_check_name_with_markup_is_escaped_in_the_plot_and_its_name(slow: dict[str, Any]) -> None:
    """A check name reaches the SVG's text and its aria-label (what a screen reader is told the plot shows)."""
    doc = json.loads(json.dumps(slow))
    name = '"><script>alert(1)</script>'
    doc["policy"]["checks"][0]["name"] = name
    for lk in doc["looks"]:
        lk["c"][name] = lk["c"].pop("lat")
    page = render(hist.parse(json.dumps(doc), where="t"))
    assert page.count("<script") == 1 and "alert(1)</script>" not in page  # the page's own script only
    assert 'aria-label="&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;: latency per look' in page


def test_the_evidence_gives_each_arms_value_with_its_unit(slow: dict[str, Any]) -> None:
    """A look's per-check table printed "89.19" and "184.9" beside a threshold of "+20%": ms or %? Latency values
    are in ms and rates in %, as the history records them; a check of another kind keeps its bare number."""
    doc = json.loads(json.dumps(slow))
    doc["policy"]["checks"].append({"name": "custom", "kind": "custom", "hard": False, "limits": {}})
    doc["looks"][-1]["c"]["custom"] = {"o": "pass", "sv": 0.25, "cv": 0.5, "n": [1, 1], "r": ""}
    detail = render(hist.parse(json.dumps(doc), where="t")).split('<tr class="look"')[-1]
    rows = dict((name, (sv, cv)) for name, sv, cv in re.findall(
        r'<tr><td class="txt">(\w+)</td><td><span[^>]*>\w+</span></td><td>([^<]*)</td><td>([^<]*)</td>', detail))
    assert rows == {"lat": ("89.19 ms", "184.9 ms"), "err": ("0%", "0%"), "custom": ("0.25", "0.5")}, rows


_EVIDENCE = re.compile(r'<tr><td class="txt">(\w+)</td><td><span[^>]*>\w+</span></td><td>([^<]*)</td><td>([^<]*)</td>')


def _figure(page: str, fid: str) -> str:
    return re.search(rf'<figure class="plot" id="{fid}">(.*?)</figure>', page, re.S).group(1)  # type: ignore[union-attr]


@pytest.fixture(scope="module")
def off_scale() -> dict[str, Any]:
    """A rollback whose canary p95 ran past the last finite bucket bound (1020 ms): its failed looks' canary value
    and increase are only lower bounds (the real runner and judge, fake clock; `run_rollout`)."""
    return fake_rollout(slow=True, factor=100.0)


def test_a_value_known_only_as_a_bound_reads_as_one_in_the_evidence_and_the_plot(off_scale: dict[str, Any]) -> None:
    """The history kept no `bounded`, so the page printed the last finite bucket bound as the canary's p95
    ("1020 ms") and drew it as a value, beside a reason that says ">1020 ms" (decision 340's "not done")."""
    page = render(hist.parse(json.dumps(off_scale), where="t"))
    rows = dict((n, (sv, cv)) for n, sv, cv in _EVIDENCE.findall(page.split('<tr class="look"')[-1]))
    assert rows == {"lat": ("89.19 ms", "&gt;1020 ms"), "err": ("0%", "0%")}, rows
    lat, err = _figure(page, "check-lat"), _figure(page, "check-err")
    assert "canary, last &gt;1020 ms at 14 s (2 of its 7 values only bounds)" in lat
    # the two bounds as open triangles in their outcome's colour, named in the legend; no dot of a value there
    assert lat.count('style="fill: #ffffff; stroke: #c62828') == 2, lat
    assert ">only a bound: the value is above<" in lat and "only a bound" not in err
    # a history written before "b" (or by an older canary) reads as it always did: values, no bound claimed
    old = json.loads(json.dumps(off_scale))
    for lk in old["looks"]:
        for rec in lk["c"].values():
            rec.pop("b", None)
    page = render(hist.parse(json.dumps(old), where="t"))
    rows = dict((n, (sv, cv)) for n, sv, cv in _EVIDENCE.findall(page.split('<tr class="look"')[-1]))
    assert rows["lat"] == ("89.19 ms", "1020 ms") and "only a bound" not in page and "&gt;1020" not in page


def test_a_stable_bound_and_an_upper_bound_read_as_theirs(slow: dict[str, Any]) -> None:
    """A stable in the open bucket (`>`), and a side `<` on a kind without a unit (a custom check's bare number)."""
    doc = json.loads(json.dumps(slow))
    doc["policy"]["checks"].append({"name": "custom", "kind": "custom", "hard": False, "limits": {}})
    doc["looks"][-1]["c"]["lat"]["b"] = {"sv": ">"}
    doc["looks"][-1]["c"]["custom"] = {"o": "fail", "sv": 0.25, "cv": 0.5, "n": [1, 1], "r": "", "b": {"cv": "<"}}
    page = render(hist.parse(json.dumps(doc), where="t"))
    rows = dict((n, (sv, cv)) for n, sv, cv in _EVIDENCE.findall(page.split('<tr class="look"')[-1]))
    assert rows["lat"] == ("&gt;89.19 ms", "184.9 ms") and rows["custom"] == ("0.25", "&lt;0.5"), rows
    lat, custom = _figure(page, "check-lat"), _figure(page, "check-custom")
    assert "stable, last &gt;89.19 ms at 14 s (1 of its 7 values only bounds)" in lat
    assert ">only a bound: the value is above<" in lat and ">only a bound: the value is below<" in custom
    assert "canary, last &lt;0.5 at 14 s (1 of its 1 values only bounds)" in custom


@pytest.mark.parametrize("seconds, shown", [(14, "14s"), (725, "12m5s"), (10920, "3h2m (10920s)"),
                                            (3600, "1h (3600s)"), (10925, "3h2m5s (10925s)")])
def test_the_duration_reads_in_hours_and_minutes(slow: dict[str, Any], seconds: int, shown: str) -> None:
    """A three-hour rollout (hundreds of looks) said "duration 10920 s"; said as every length is (decision 495).
    Each length through `_duration`, which the page's summary calls with the history's span; one through the
    whole page (its plots are ~0.5 s of CPU a render, drawn here for a line of text: decision 806)."""
    assert _duration(seconds) == shown
    if seconds != 10920:
        return
    doc = json.loads(json.dumps(slow))
    doc["updated_at"] = doc["rollout"]["started_at"] + seconds
    for lk in doc["looks"]:
        lk["at"] = min(lk["at"], doc["updated_at"])
    doc["weights"] = [p for p in doc["weights"] if p[0] <= doc["updated_at"]]
    doc["events"] = [e for e in doc["events"] if e["at"] <= doc["updated_at"]]
    assert f"<dt>duration</dt><dd>{shown}</dd>" in render(hist.parse(json.dumps(doc), where="t"))


@pytest.mark.parametrize("phase, reason, line", [
    ("rolled_back", "lat: canary p95 185 ms vs stable 89.2 ms (+107%, limit +20%)",
     "Rolled back: a check showed the canary beyond its limit — lat: canary p95 185 ms"),
    ("rolled_back", "no verdict after 630s at step 1 (inconclusive: lat: ...)",
     "Rolled back: no verdict by the step's deadline — no verdict after 630s"),
    ("rolled_back", "operator: p99 alerts", "Rolled back: a person asked for it — operator: p99 alerts"),
    ("aborted", "failed: KubeUnavailable: the API server did not answer",
     "Aborted: Prometheus or Kubernetes failed (not the canary) — failed: KubeUnavailable"),
    ("rolled_back", "", "Rolled back: a check showed the canary beyond its limit — lat: canary p95 185 ms"),
    # a gate's end recorded aborted: the stable server (or the warm-up sample file, the model name) failed it, not the
    # canary; its class is `gate` as its words class it, and "a Triton gate refused the canary" blamed it (711)
    ("aborted", "gate: stable Triton http://s:8000: not ready",
     "Aborted: a Triton gate could not judge the canary (not the canary: the stable server, the warm-up sample file "
     "or the model name failed) — gate: stable Triton"),
    ("rolled_back", "gate: canary Triton http://c:8000: model rec v2 not ready",
     "Rolled back: a Triton gate refused the canary — gate: canary Triton"),
])
def test_an_ended_rollouts_page_says_why_in_one_line(tmp_path: Path, slow: dict[str, Any], phase: str, reason: str,
                                                     line: str) -> None:
    """The line under the title was the bare reason: "lat: canary p95 185 ms vs ..." did not say that a check
    failed (nor "failed: ..." that the canary was not to blame), and a history with no reason showed nothing.
    Now it opens with the end and its class in words; with no reason, the last one the events recorded."""
    doc = json.loads(json.dumps(slow))
    doc["phase"], doc["reason"] = phase, reason
    doc.pop("end_cause", None)  # a history written before decision 607: classed by its words
    text = _headline(doc)
    assert text.startswith(line), text
    if phase == "aborted" and reason.startswith("gate:"):  # one through the whole page, as `canary report` writes it
        assert _headline_of_input(tmp_path, doc) == text


def _headline(doc: dict[str, Any]) -> str:
    """The line under the title of the page of the history `doc`, as text: `_why`'s, the paragraph `render` puts
    under the title, without drawing the page's plots (~0.5 s of CPU a page, for a line of text: decision 806).
    `_headline_of_input` reads it from `canary report --input`'s page; the tests that vary only the reason check
    one of theirs so too, that the two are one."""
    (why,) = re.findall(r'<p class="sub" id="why">(.*?)</p>', _why(doc))
    return html.unescape(re.sub(r"<[^>]+>", "", why))


def _record_lost(lost: str) -> str:
    """The reason `canary promote` records when the route's record was removed or edited outside the rollout."""
    from types import SimpleNamespace

    from canary.model import Target, Weights
    from canary.runner import Runner

    me = SimpleNamespace(target=Target(namespace="ml", virtual_service="rec", model="rec", stable_version="v1",
                                       canary_version="v2"))
    return Runner._lost_reason(me, SimpleNamespace(weights=Weights(80, 20)), lost)  # type: ignore[arg-type]


def _record_not_ours() -> str:
    from canary.controller import _no_state

    return _no_state("step 3 of 2")


@pytest.mark.parametrize("reason", [
    pytest.param(_record_lost("removed"), id="promote: record removed"),
    pytest.param(_record_lost("edited"), id="promote: record edited"),
    pytest.param(_record_not_ours(), id="controller: record edited"),
    pytest.param("taken over: the route records another rollout of v3 (canary promote on ci-1, progressing); this "
                 "one ended, theirs is left alone", id="promote: taken over"),
    pytest.param("the route no longer records this CanaryRollout's rollout", id="controller: record gone"),
])
def test_an_end_by_a_record_changed_outside_the_rollout_says_so_in_the_headline(
        tmp_path: Path, slow: dict[str, Any], reason: str) -> None:
    """These ends were classed "other" (`end_cause`, `canary_rollbacks_total{reason}`), for which the report's
    headline had no words: "Aborted: the rollout's record ..." said neither that the canary was not to blame nor
    what happened. They are the route changed outside the rollout (its record removed, edited, or another
    rollout's now), as a foreign edit of the weights is (decision 572)."""
    doc = json.loads(json.dumps(slow))
    doc["phase"], doc["reason"] = "aborted", reason
    doc.pop("end_cause", None)  # a history written before decision 607: classed by its words
    text = _headline(hist.parse(json.dumps(doc), where="t"))  # read back as `--input` reads it
    assert text == f"Aborted: {_FOREIGN} — {reason}", text
    if reason.startswith("taken over:"):  # one through `canary report --input`'s page
        assert _headline_of_input(tmp_path, doc) == text


_FOREIGN = ("the routing was changed outside the rollout (its route or its subsets, or another VirtualService split "
            "with the canary)")


def test_a_split_on_another_virtual_service_is_not_headed_as_the_rollouts_route_changed(
        tmp_path: Path, slow: dict[str, Any]) -> None:
    """Decision 602's end (a gateway's VirtualService split with the canary subset after the claim) is a foreign
    edit, but the rollout's own route was never changed: the headline said "the route was changed outside the
    rollout" before a reason naming another VirtualService. Its words now name that case too (decision 646)."""
    from canary.routing.claims import OtherSplit

    reason = OtherSplit("ml/rec-gateway", "spec.http[0] (edge)", "90/10",
                        "ml/rec-gateway: spec.http[0] (edge) splits its traffic 90/10", "kubectl ...").reason
    doc = json.loads(json.dumps(slow))
    doc["phase"], doc["reason"], doc["end_cause"] = "rolled_back", reason, "foreign_edit"
    text = _headline_of_input(tmp_path, doc)
    assert text == f"Rolled back: {_FOREIGN} — {reason}", text
    assert "another VirtualService" in text.split(" — ")[0], text


def _headline_of_input(tmp_path: Path, doc: dict[str, Any]) -> str:
    """The line under the title of `canary report --input` of the history `doc`, as text."""
    saved, out = tmp_path / "h.json", tmp_path / "r.html"
    saved.write_text(json.dumps(doc))
    res = CliRunner().invoke(app, ["report", "--input", str(saved), "-o", str(out)])
    assert res.exit_code == 0, res.output
    (why,) = re.findall(r'<p class="sub" id="why">(.*?)</p>', out.read_text())
    return html.unescape(re.sub(r"<[^>]+>", "", why))


def test_an_end_canary_has_no_class_for_still_says_what_it_is(tmp_path: Path, slow: dict[str, Any]) -> None:
    """A reason no rule classes (written by another version of canary, or by hand) is "other": the headline said
    the reason alone, with nothing on whose end it was. Now it says so (decision 572)."""
    doc = json.loads(json.dumps(slow))
    doc["phase"], doc["reason"] = "rolled_back", "something else entirely"
    doc.pop("end_cause", None)  # a history written before decision 607: classed by its words
    text = _headline(doc)
    assert text.startswith("Rolled back: ended for a reason canary does not class (not a check's verdict: read "
                           "it, and the rollout's events below) — something else entirely"), text


def test_the_headline_says_the_class_recorded_with_the_end_not_the_words(tmp_path: Path,
                                                                          slow: dict[str, Any]) -> None:
    """The history keeps the end's class as recorded with it (`end_cause`, decision 607): the slow canary's
    rollback is a check's; a route re-shaped by hand mid-rollout whose reason reads "failed: ..." (infrastructure by
    its words) is headed as the foreign edit its producer recorded, through `canary report --input` too."""
    assert slow["end_cause"] == "check"  # written by the history recorder from the rollout's own end
    doc = json.loads(json.dumps(slow))
    reason = "failed: ml/rec: spec.http[0].route has 3 destinations, expected 2 (subsets stable, canary)"
    doc["phase"], doc["reason"], doc["end_cause"] = "aborted", reason, "foreign_edit"
    text = _headline_of_input(tmp_path, doc)
    assert text == f"Aborted: {_FOREIGN} — {reason}", text
