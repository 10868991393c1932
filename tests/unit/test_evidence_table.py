"""The terminal's evidence table (`canary analyze`, `canary status`): a reason quoting a huge query stays short."""

from __future__ import annotations

from rich.console import Console

from canary.display import evidence_table

SMALL = 'sum by (le) (increase(model_inference_duration_seconds_bucket{model_name="rec",model_version="v1"}[300s]))'
BATCHED = " or ".join(f'label_replace(sum(increase(model_requests_total{{model_name="rec",part="{i}"}}[120s])), '
                      f'"canary_part", "stable/{i}", "", "")' for i in range(60))


def test_a_reason_quoting_the_batched_query_prints_its_cause_not_the_query() -> None:
    """Prometheus down: each check's reason quoted the look's batched query (~5,000 characters per arm), and
    `analyze` printed some 70 table lines per check around "connection failed"."""
    reason = (f"could not measure: check 'err': Prometheus at http://p:9090 could not be asked for the query "
              f"(connection failed); query: {BATCHED}; check 'err': no series for the canary arm; query: {SMALL}")
    assert len(BATCHED) > 5000
    console = Console(width=200, record=True)
    console.print(evidence_table([{"check": "err", "outcome": "error", "reason": reason}]))
    shown = console.export_text()
    assert len(shown.splitlines()) < 12 and "has it whole" in shown, shown[:2000]
    assert "(connection failed)" in shown


def test_each_quoted_query_is_cut_alone() -> None:
    from canary.display import QUERY_SHOWN, short_queries

    reason = (f"could not measure: check 'err': Prometheus at http://p:9090 could not be asked for the query "
              f"(connection failed); query: {BATCHED}; check 'err': no series for the canary arm; query: {SMALL}")
    short = short_queries(reason)
    assert short.startswith("could not measure: check 'err': Prometheus at http://p:9090 could not be asked")
    assert BATCHED[:QUERY_SHOWN] in short and BATCHED not in short and "-o json has it whole" in short
    assert short.endswith(f"; check 'err': no series for the canary arm; query: {SMALL}")  # a small one whole


def test_a_reason_without_a_query_is_unchanged() -> None:
    from canary.display import short_queries

    text = "canary errors 10% vs stable 1% (+9 points, limit +1), n=600/3,000, p=2.0e-13"
    assert short_queries(text) == text and short_queries("") == ""


def test_a_hard_check_is_marked_as_judge_and_the_report_mark_it() -> None:
    """`canary status` and `analyze` showed a hard check (rolled back at its first failed look) as any other,
    while `canary judge` and the report say `(hard)` beside its name."""
    console = Console(width=200, record=True)
    console.print(evidence_table([{"check": "errors", "outcome": "pass", "hard": True, "reason": "ok"},
                                  {"check": "latency", "outcome": "pass", "hard": False, "reason": "ok"}]))
    shown = console.export_text()
    assert "errors (hard)" in shown and "latency (hard)" not in shown, shown
