"""`canary plan`'s assumption flags describe what a policy's checks read: one typed for a metric no check reads
is refused (exit 2) naming the flag and the file, not folded into a plan it changes nothing of.

`--error-rate 5` on a policy with no error_rate check printed the same plan as without it, so a person who
planned a model with a high error rate read a plan that had never used it (decision 673)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from canary.cli import app

LATENCY_ONLY = "steps: [10, 100]\nchecks:\n  - {name: lat, kind: latency, max_increase_pct: 20}\n"
CEILING = "steps: [10, 100]\nchecks:\n  - {name: lat, kind: latency, max_increase_pct: 20, max_ms: 250}\n"
ERRORS_ONLY = "steps: [10, 100]\nchecks:\n  - {name: err, kind: error_rate, max_increase_points: 1}\n"


def plan(tmp_path: Path, text: str, *flags: str) -> tuple[int, str]:
    f = tmp_path / "p.yaml"
    f.write_text(text)
    res = CliRunner().invoke(app, ["plan", "-p", str(f), "--rps", "100", *flags])
    return res.exit_code, " ".join(res.output.split())


@pytest.mark.parametrize(("text", "flag", "value", "reads"), [
    (LATENCY_ONLY, "--error-rate", "5", "error_rate"),
    (LATENCY_ONLY, "--missing-rate", "2", "feature_missing"),
    (LATENCY_ONLY, "--bins", "20", "prediction_shift"),
    (ERRORS_ONLY, "--p95-ms", "100", "latency"),
    (ERRORS_ONLY, "--latency-sigma", "0.8", "latency"),
    (ERRORS_ONLY, "--bucket-ratio", "1.1", "latency"),
])
def test_a_flag_no_check_reads_is_refused_naming_it(tmp_path: Path, text: str, flag: str, value: str,
                                                    reads: str) -> None:
    code, out = plan(tmp_path, text, flag, value)
    assert code == 2, out
    assert f"{flag} describes" in out and f"only {'an' if reads[0] in 'aeiou' else 'a'} {reads} check reads" in out and "p.yaml" in out, out


def test_a_flag_a_check_reads_is_taken(tmp_path: Path) -> None:
    code, out = plan(tmp_path, ERRORS_ONLY, "--error-rate", "5")
    assert code == 0 and "baseline error rate 5%" in out, out
    code, out = plan(tmp_path, CEILING, "--p95-ms", "100", "--latency-sigma", "0.8", "--bucket-ratio", "1.1")
    assert code == 0 and "stable p95 100 ms" in out, out


def test_p95_ms_without_a_latency_ceiling_is_refused(tmp_path: Path) -> None:
    """A relative limit is a ratio of the two arms, the same at any latency: `--p95-ms 100` on a policy whose
    latency check has no `max_ms` printed the plan it printed without it, but for "stable p95 100 ms" in its
    assumptions, as if it had been used (decision 694)."""
    code, out = plan(tmp_path, LATENCY_ONLY, "--p95-ms", "100")
    assert code == 2, out
    assert "--p95-ms describes the stable's latency, which only a latency check's ceiling (max_ms) reads" in out, out
    assert "p.yaml has none (checks: lat (latency))" in out, out
    code, out = plan(tmp_path, LATENCY_ONLY, "--latency-sigma", "0.8", "--bucket-ratio", "1.1")
    assert code == 0, out  # the relative limit reads these two
