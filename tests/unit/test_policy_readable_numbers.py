"""A policy's errors print a huge or tiny number at a few significant digits, never cut (decision 362).

`policy_fields.show` printed a value's repr cut to 40 characters: `steps[0]=1000000000000000000000000000000000000...`
for 10^40 (its size lost), `'0.0000000000000000000000000000000000...` for a quoted 1e-301 (read as 0). Numbers now
go through the judge's helper (`shown.integer`, decision 342): `1e+40 (41 digits)`.
"""

from __future__ import annotations

import json
import re

import pytest
from typer.testing import CliRunner

from canary.analysis.shown import integer, spelled
from canary.errors import PolicyError
from canary.policy import parse_policy, parse_policy_text

LONG = re.compile(r"\d{16,}|\d\.\.\.(?!')")  # a number printed with its digits, or cut (text cut says its number)
BASE = {"steps": [10, 100], "analysis": {"interval": "5m", "look_every": "1m"},
        "checks": [{"name": "c", "kind": "latency", "quantile": 0.95, "max_ms": 250}]}


def _with(path: tuple, value: object) -> dict:
    raw = json.loads(json.dumps(BASE))
    raw.setdefault("failure", {})
    raw.setdefault("gates", {"triton": {}})
    at = raw
    for p in path[:-1]:
        at = at[p]
    at[path[-1]] = value
    return raw


def _error(raw: dict) -> str:
    with pytest.raises(PolicyError) as exc:
        parse_policy(raw)
    return str(exc.value)


@pytest.mark.parametrize("path, field", [
    (("steps", 0), "steps"), (("analysis", "alpha"), "analysis.alpha"),
    (("analysis", "min_canary_requests"), "analysis.min_canary_requests"),
    (("failure", "max_failed_looks"), "failure.max_failed_looks"),     (("checks", 0, "quantile"), "checks[0].quantile"), (("checks", 0, "name"), "checks[0].name"),
    (("gates", "triton", "warmup_requests"), "gates.triton.warmup_requests"),
    (("gates", "triton", "probe_failures"), "gates.triton.probe_failures"),
])
@pytest.mark.parametrize("value, says", [(10 ** 40, "1e+40 (41 digits)"), (-(10 ** 40), "-1e+40 (41 digits)"),
                                         (10 ** 400, "1e+400 (401 digits)"), (2 ** 53 + 1, "9.007e+15 (16 digits)")])
def test_a_huge_integer_in_any_field_is_named_in_a_few_digits(path: tuple, field: str, value: int, says: str) -> None:
    msg = _error(_with(path, value))
    assert field in msg and says in msg and not LONG.search(msg), msg


def test_the_steps_message_gives_the_weight_readably() -> None:
    assert "steps[0]: must be within 1..100 (a weight in %), not 1e+40 (41 digits)" in _error(_with(("steps", 0), 10 ** 40))


def test_a_huge_duration_is_readable() -> None:
    msg = _error(_with(("gates", "triton", "probe_interval"), 10 ** 40))
    assert "gates.triton.probe_interval: 1e+40s is out of range" in msg and not LONG.search(msg), msg


def test_an_integer_past_a_float_in_a_number_field_says_so() -> None:
    """10^400 as alpha read "must be a number", of a number: it is one, past what a float holds."""
    msg = _error(_with(("analysis", "alpha"), 10 ** 400))
    assert "analysis.alpha: must be a number within a 64-bit float (about 1.8e308), not 1e+400 (401 digits)" in msg


@pytest.mark.parametrize("text, says", [("1" + "0" * 400, "(401 characters: the number 1e+400)"),
                                        ("0." + "0" * 300 + "1", "(303 characters: the number 1e-301)")])
def test_a_long_number_in_yaml_is_named_by_its_value(text: str, says: str) -> None:
    """The YAML loader's "too many digits" showed `'0.0000000000000000000000000000000000...`: a zero."""
    with pytest.raises(PolicyError) as exc:
        parse_policy_text(f"steps: [5, 100]\nanalysis:\n  alpha: {text}\nchecks: []\n")
    assert says in str(exc.value) and "too many digits" in str(exc.value) and not LONG.search(str(exc.value))


def test_a_long_number_quoted_as_text_is_named_by_its_value() -> None:
    msg = _error(_with(("analysis", "alpha"), "0." + "0" * 300 + "1"))
    assert "analysis.alpha: must be a number, not '0.000000000...' (303 characters: the number 1e-301)" in msg


def test_judge_input_with_a_huge_step_in_its_inline_policy(tmp_path) -> None:
    """`canary judge --input`: JSON keeps an integer of any size exact, so a policy there can hold 10^40."""
    from canary.cli import app

    f = tmp_path / "in.json"
    f.write_text(json.dumps({"policy": {**BASE, "steps": ["@@X@@", 100]}, "checks": {"c": {
        "canary": {"bounds": [100, 300, "+Inf"], "counts": [9, 10, 10]}}}}).replace('"@@X@@"', "1" + "0" * 40))
    res = CliRunner().invoke(app, ["judge", "--input", str(f)])
    assert res.exit_code == 2 and "steps[0]: must be within 1..100 (a weight in %), not 1e+40 (41 digits)" in res.output and not LONG.search(res.output), res.output


@pytest.mark.parametrize("n, text", [(0, "0"), (-7, "-7"), (10 ** 15 - 1, "999999999999999"), (10 ** 15, "1e+15 (16 digits)"),
                                     (12345678901234567890, "1.234e+19 (20 digits)"),
                                     (99999 * 10 ** 30, "9.999e+34 (35 digits)"),  # cut, never rounded to 1e+35
                                     ], ids=str)
def test_integer_prints_its_digits_or_four_significant_ones(n: int, text: str) -> None:
    assert integer(n) == text


def test_integer_past_pythons_limit_on_printing_one() -> None:
    assert integer(10 ** 5000) == "1e+5000 (5001 digits)"  # str() refuses past 4,300 digits


@pytest.mark.parametrize("text, number", [("1" + "0" * 400, "1e+400"), ("0." + "0" * 300 + "1", "1e-301"),
                                          ("0." + "0" * 300, "0"), ("0.5" + "0" * 50 + "1", "0.5"),
                                          ("123456.789", "1.234e+5"), ("5m", None), ("nan", None), ("1_000", None)])
def test_spelled_reads_the_number_a_text_writes(text: str, number: str | None) -> None:
    assert spelled(text) == number
