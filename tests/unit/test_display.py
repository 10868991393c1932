"""What people see: the live panel and the evidence table render the recorded state."""

from __future__ import annotations

import pytest
from rich.console import Console

from canary import rollout as rl
from canary.display import evidence_table, state_panel
from canary.model import CheckResult, Verdict, Outcome, Weights


def render(renderable: object) -> str:
    console = Console(record=True, width=160)
    console.print(renderable)
    return console.export_text()


def test_panel_shows_weights_phase_step_and_last_verdict() -> None:
    j = Verdict.combine([CheckResult(check="latency-p95", kind="latency", outcome=Outcome.FAIL,
                                       reason="p95 312 ms vs 240 ms (+30%, limit +20%)", stable_value=240.0,
                                       canary_value=312.0, n_stable=9310, n_canary=1840, p_value=0.0004)])
    state = rl.RolloutState(model="rec-model", stable_version="v1", canary_version="v2", phase=rl.PROGRESSING,
                            weights=Weights(75, 25), step=1,
                            last_verdict={"outcome": "fail", "canary_requests": 1840,
                                          "results": [r.to_dict() for r in j.results]})
    text = render(state_panel(state, [10, 25, 100]))
    for needle in ("rec-model", "v1 → v2", "progressing", "step 2/3", "75/25", "latency-p95", "fail", "312", "+30%"):
        assert needle in text, needle


@pytest.mark.parametrize(("phase", "end_cause", "reason", "says"), [
    (rl.ROLLED_BACK, "deadline", "no verdict by the step's deadline", "phase rolled_back   end_cause deadline"),
    (rl.ABORTED, "foreign_edit", "the route was edited", "phase aborted   end_cause foreign_edit"),
    (rl.ROLLED_BACK, "", "operator: trying it", "phase rolled_back   end_cause operator"),  # a record before 607
])
def test_status_text_names_an_ended_rollouts_end_cause(phase: str, end_cause: str, reason: str, says: str) -> None:
    """`canary status`'s text said `phase rolled_back` only: whether a check or the step's deadline ended it (both
    exit 1) was in `-o json`'s `end_cause` alone (decision 653). A rollout not ended says none."""
    state = rl.RolloutState(model="m0", stable_version="v1", canary_version="v2", phase=phase, weights=Weights(100, 0),
                            step=1, reason=reason, end_cause=end_cause)
    assert says in render(state_panel(state, live=Weights(100, 0)))
    running = rl.RolloutState(model="m0", stable_version="v1", canary_version="v2", phase=rl.PROGRESSING,
                              weights=Weights(90, 10), step=0)
    assert "end_cause" not in render(state_panel(running, live=Weights(90, 10)))


def test_evidence_table_gives_n_canary_first_and_whole_as_reasons_do() -> None:
    """`increase()` extrapolates (65.3625 requests): the table shows whole requests, canary first as
    every reason's `n=canary/stable` does (a newcomer read 685/65.3625 beside n=65/685)."""
    text = render(evidence_table([{"check": "latency-p95", "outcome": "fail", "n_stable": 685.4, "n_canary": 65.3625,
                                   "reason": "p95 47.9 ms vs 6.08 ms (+688%, limit +50%), n=65/685, p=6.6e-11"}]))
    assert "n canary/stable" in text and "65/685 " in text and "65.36" not in text


def test_evidence_table_handles_unknown_values() -> None:
    text = render(evidence_table([{"check": "x", "outcome": "error", "stable_value": None, "reason": "could not measure"}]))
    assert "could not measure" in text and "-" in text


def test_a_check_that_could_not_measure_shows_no_request_counts() -> None:
    """Decision 190: `canary analyze` on the sandbox before any rollout (stable at 150 rps, the canary
    at 0%) printed `n canary/stable` 0/0 on every ERROR row, as if stable had served nothing; and
    `canary judge`'s example printed n 0 and 0 for a `predictions` row whose canary arm held counts.
    An ERROR carries no counts (CheckResult's 0.0 defaults): both tables show "-" there. Counts an
    ERROR does carry (a unit slip's) and a real 0 on a judged row are shown as they are."""
    import io

    from canary.cli_analysis import render_verdict

    unmeasured = CheckResult(check="errors", kind="error_rate", outcome=Outcome.ERROR,
                             reason="could not measure canary: no requests for the canary arm in 300s")
    slip = CheckResult(check="latency-p95", kind="latency", outcome=Outcome.ERROR, reason="unit slip",
                       n_stable=540, n_canary=52)
    judged = CheckResult(check="missing", kind="feature_missing", outcome=Outcome.INCONCLUSIVE, reason="few",
                         n_stable=120, n_canary=0)
    text = render(evidence_table([unmeasured.to_dict(), slip.to_dict(), judged.to_dict()]))
    rows = {line.split()[1]: line for line in text.splitlines() if line.split()[1:2] in (["errors"], ["latency-p95"], ["missing"])}
    assert "0/0" not in rows["errors"] and " - " in rows["errors"], rows["errors"]
    assert "52/540" in rows["latency-p95"] and "0/120" in rows["missing"], text

    out = io.StringIO()
    render_verdict(Verdict.combine([unmeasured, slip, judged]), Console(file=out, width=200))
    lines = {line.split()[1]: line for line in out.getvalue().splitlines() if line.startswith("│")}
    assert [c.strip() for c in lines["errors"].split("│")[5:7]] == ["-", "-"], lines["errors"]
    assert [c.strip() for c in lines["latency-p95"].split("│")[5:7]] == ["540", "52"], lines["latency-p95"]
    assert [c.strip() for c in lines["missing"].split("│")[5:7]] == ["120", "0"], lines["missing"]


def test_json_gives_no_request_counts_for_a_check_that_could_not_measure() -> None:
    """`canary judge -o json` (and every `CheckResult.to_dict` reader: history, the evidence) said
    `"n_stable": 0.0, "n_canary": 0.0` for an ERROR that counted neither arm, the arms-with-no-traffic
    reading decision 190 took out of the tables. Such an ERROR now says null; counts an ERROR does carry
    and a real 0 on a judged row stay numbers."""
    unmeasured = CheckResult(check="errors", kind="error_rate", outcome=Outcome.ERROR, reason="could not measure canary: boom")
    slip = CheckResult(check="latency-p95", kind="latency", outcome=Outcome.ERROR, reason="unit slip",
                       n_stable=540, n_canary=52)
    judged = CheckResult(check="missing", kind="feature_missing", outcome=Outcome.INCONCLUSIVE, reason="few",
                         n_stable=120, n_canary=0)
    assert (unmeasured.to_dict()["n_stable"], unmeasured.to_dict()["n_canary"]) == (None, None)
    assert (slip.to_dict()["n_stable"], slip.to_dict()["n_canary"]) == (540, 52)
    assert (judged.to_dict()["n_stable"], judged.to_dict()["n_canary"]) == (120, 0)
    from canary.history import check_record
    assert check_record(unmeasured.to_dict())["n"] == [None, None]
    assert "0/0" not in render(evidence_table([unmeasured.to_dict()]))


def test_status_wide_does_not_fold_the_verdict_table() -> None:
    """`status -o wide` renders on a console of at least 200 columns (cli_options.console): the
    check names and reasons stay on one line even when stdout is a narrow pipe."""
    from canary import cli_options as opts
    from canary.display import render_status
    from canary.routing.base import RouteStatus

    j = Verdict.combine([CheckResult(check="latency-p95", kind="latency", outcome=Outcome.FAIL,
                                     reason="p95 312 ms vs 240 ms (+30%, limit +20%), n=1,840/9,310",
                                     stable_value=240.0, canary_value=312.0, n_stable=9310, n_canary=1840)])
    state = rl.RolloutState(model="rec-model", stable_version="v1", canary_version="v2", phase=rl.PROGRESSING,
                            weights=Weights(75, 25), step=1,
                            last_verdict={"outcome": "fail", "results": [r.to_dict() for r in j.results]})
    status = RouteStatus(weights=Weights(75, 25), state=None, stable_subset_version="v1", canary_subset_version="v2")
    wide = opts.console(True)
    narrow = Console(width=80)
    with wide.capture() as w, narrow.capture() as n:
        render_status(status, state, console=wide)
        render_status(status, state, console=narrow)
    assert "p95 312 ms vs 240 ms (+30%, limit +20%), n=1,840/9,310" in w.get()
    assert "p95 312 ms vs 240 ms (+30%, limit +20%), n=1,840/9,310" not in n.get()  # folded at 80


def test_text_output_to_a_pipe_is_not_folded_at_80_columns(monkeypatch: pytest.MonkeyPatch) -> None:
    """A CI log or a pipe is no terminal: rich would assume 80 columns and fold `3.5e-05` into `3.5e-0`
    and `5` on two lines (a newcomer's `canary plan` in a pipe); text output gets 200 there too. A
    COLUMNS given is kept: `watch canary status` sets it to the terminal's width (a reviewer's case)."""
    from canary import cli_options as opts

    monkeypatch.delenv("COLUMNS", raising=False)
    c = opts.console(False)  # pytest captures stdout: not a terminal
    assert not c.is_terminal and c.width >= 200
    monkeypatch.setenv("COLUMNS", "100")
    assert opts.console(False).width == 100 and opts.console(True).width >= 200


def test_status_history_times_are_dates_not_seconds_since_1970() -> None:
    """`canary status`'s history printed `1796282993.864` in its `at` column; on-call reads a UTC time."""
    from canary.display import render_status
    from canary.routing.base import RouteStatus

    state = rl.RolloutState(model="rec-model", stable_version="v1", canary_version="v2", phase=rl.ROLLED_BACK,
                            weights=Weights(100, 0), step=0,
                            history=({"at": 1796282993.864, "phase": "progressing", "weights": "90/10",
                                      "what": "step 1/4 canary 10%"},))
    status = RouteStatus(weights=Weights(100, 0), state=None, stable_subset_version="v1", canary_subset_version="v2")
    console = Console(record=True, width=160)
    render_status(status, state, console=console)
    text = console.export_text()
    assert "2026-12-03 07:29:53Z" in text and "1796282993" not in text


def test_the_weights_bar_shows_the_split_without_colour() -> None:
    """`canary status | tee` (or a Slack paste, a log) showed "stable ████...████ canary 90/10": both arms the
    same glyph, told apart only by colour, so 90/10 drew as 100/0. The canary's share now has its own glyph."""
    from canary.display import _weights_bar

    bar = _weights_bar(90, 10).plain
    assert bar.count("░") == 4 and bar.count("█") == 36 and bar.endswith("90/10")
    assert "░" not in _weights_bar(100, 0).plain


def test_status_says_the_panels_bar_is_the_record_when_the_route_holds_other_weights() -> None:
    """`canary status` on a route emptied by hand (or whose weights were edited under a rollout) printed the
    live line and then the record's bar, 90/10, unlabelled: read as the split Istio applies, which it was not.
    The record's bar now says it is the record's and what the route holds now (equal weights: decision 957's test)."""
    from canary.display import render_status
    from canary.routing.base import RouteStatus

    state = rl.RolloutState(model="rec-model", stable_version="v1", canary_version="v2", phase=rl.PROGRESSING,
                            weights=Weights(90, 10), step=0)

    def shown(live: Weights, nothing: bool = False) -> str:
        status = RouteStatus(weights=live, state=None, stable_subset_version="v1", canary_subset_version="v2")
        console = Console(record=True, width=200)
        render_status(status, state, console=console, routes_nothing=nothing)
        return console.export_text()

    emptied = shown(Weights(50, 50), nothing=True)
    assert "weights: none" in emptied
    assert "as recorded: stable" in emptied and "(the route has no destination now)" in emptied
    edited = shown(Weights(100, 0))
    assert "as recorded: stable" in edited and "canary   90/10   (the route holds 100/0 now)" in edited
    same = shown(Weights(90, 10))
    assert "the route holds 90/10" not in same and "(the route has no destination now)" not in same


def test_status_after_an_end_draws_the_weights_bar_once_and_names_the_records_line() -> None:
    """A newcomer's `canary status` after a rollout ended printed the route's bar and then the record's, the same
    `stable ████ canary   100/0` twice, neither saying which it was. With the route's weights the record's, the
    panel says so in one line in place of a second bar; `promote`'s own panel keeps its bar (decision 957)."""
    from canary.display import render_status, state_panel
    from canary.routing.base import RouteStatus

    for phase, weights in ((rl.ROLLED_BACK, Weights(100, 0)), (rl.PROMOTED, Weights(100, 0)),
                           (rl.PROGRESSING, Weights(90, 10))):
        state = rl.RolloutState(model="rec-model", stable_version="v1", canary_version="v2", phase=phase,
                                weights=weights, step=0)
        status = RouteStatus(weights=weights, state=None, stable_subset_version="v1", canary_subset_version="v2")
        console = Console(record=True, width=200)
        render_status(status, state, console=console)
        text = console.export_text()
        split = f"{weights.stable}/{weights.canary}"
        assert text.count("█") == 40 - round(40 * weights.canary / 100), text  # one bar: the route's
        assert text.splitlines()[0].startswith("stable █") and text.splitlines()[0].endswith(split), text
        assert f"as recorded: {split}, the weights the route holds (above)" in text, text
        own = Console(record=True, width=200)
        own.print(state_panel(state))
        assert own.export_text().count("█") == 40 - round(40 * weights.canary / 100)
