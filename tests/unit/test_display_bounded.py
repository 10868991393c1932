"""`canary status` / `canary analyze`'s evidence table prints a value only known as a bound as one
(`>300 ms`), as `canary judge`'s table does (docs/decisions.md 340), and a count of 1e300 as `1e+300`
(decision 342). It printed `300 ms`, `216` and 301 digits."""

from __future__ import annotations

from rich.console import Console

from canary.analysis.judge import judge
from canary.display import evidence_table
from canary.model import Histogram
from canary.policy import parse_policy


def _render(rows: list[dict]) -> str:
    console = Console(record=True, width=300)
    console.print(evidence_table(rows))
    return console.export_text()


def test_the_evidence_table_prints_an_open_bucket_quantile_as_a_bound() -> None:
    pol = parse_policy({"steps": [10, 100], "analysis": {"interval": "5m", "look_every": "1m"},
                        "checks": [{"name": "lat", "kind": "latency", "quantile": 0.95, "max_increase_pct": 20}]})
    b = (100.0, 300.0, float("inf"))
    v = judge(pol, {"lat": (Histogram(b, (100000.0, 100000.0, 100000.0)), Histogram(b, (0.0, 0.0, 20000.0)))})
    row = next(line for line in _render([r.to_dict() for r in v.results]).splitlines() if line.startswith("│ lat"))
    cells = [c.strip() for c in row.strip("│").split("│")]
    assert cells[2:4] == ["95 ms", ">300 ms"], row
    assert cells[7] == ">+216%", row  # the effect: the increase the bound allows, a lower bound


def test_the_evidence_table_prints_a_huge_count_in_a_few_digits() -> None:
    text = _render([{"check": "c", "outcome": "pass", "n_stable": 1e300, "n_canary": 1000.0, "reason": "r"}])
    assert "1,000/1e+300" in text, text
