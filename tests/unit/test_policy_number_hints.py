"""The hint for a number YAML read as text, followed, gives a policy that loads with that number.

`max_ms: 1.0e9` was answered "write it as 1.0e9, or 1000000000": PyYAML (YAML 1.1) needs a dot *and*
a signed exponent (1.0e+9), so the first suggestion was the text refused; an integer field got the
same float advice. Each hint is now built from what was written and checked with the loader.
"""

from __future__ import annotations

import re

import pytest

from canary.errors import PolicyError
from canary.policy import parse_policy_text

FLOAT = "steps: [10, 100]\nchecks: [{{name: l, kind: latency, max_ms: {v}}}]\n"
INT = "steps: [10, 100]\nanalysis: {{min_canary_requests: {v}}}\nchecks: [{{name: e, kind: error_rate, max_rate_pct: 5}}]\n"


def _hint(template: str, text: str, field: str) -> str:
    with pytest.raises(PolicyError) as err:
        parse_policy_text(template.format(v=text), file="p.yaml")
    assert err.value.field == field, str(err.value)
    return err.value.detail


@pytest.mark.parametrize("text", ["1e9", "1.0e9", "1.0E9", "1E9", "2.5e3", "1e-3", "2E-1", "+1e2", ".5e3", "1.0e308"])
def test_a_float_fields_hint_works_when_followed(text: str) -> None:
    detail = _hint(FLOAT, text, "checks[0].max_ms")
    suggested = re.search(r"write (\S+?)(?:,|$)", detail)
    assert suggested, detail
    pol = parse_policy_text(FLOAT.format(v=suggested.group(1)))
    assert pol.checks[0].max_ms == float(text)
    plain = re.search(r", or ([0-9]+)$", detail)
    if plain:  # the second suggestion works too
        assert parse_policy_text(FLOAT.format(v=plain.group(1))).checks[0].max_ms == float(text)


@pytest.mark.parametrize("text", ["1e3", "1.0e3", "2E2", "1.5e3"])
def test_an_integer_fields_hint_is_plain_decimal(text: str) -> None:
    detail = _hint(INT, text, "analysis.min_canary_requests")
    advice = detail.partition(": ")[2]
    assert "e+" not in advice and "." not in advice, detail  # a float is never an int
    digits = re.search(r"plain decimal digits: ([0-9]+)$", detail)
    assert digits, detail
    assert parse_policy_text(INT.format(v=digits.group(1))).analysis.min_canary_requests == float(text)


def test_a_fraction_for_an_integer_field_and_a_number_beyond_floats() -> None:
    assert "whole number" in _hint(INT, "1.5e-1", "analysis.min_canary_requests")
    assert "beyond a 64-bit float" in _hint(FLOAT, "1e400", "checks[0].max_ms")


RANGE = "steps: [10, 100]\ngates: {{triton: {{enabled: false, output_range: [{v}, 1.0]}}}}\n" \
        "checks: [{{name: e, kind: error_rate, max_rate_pct: 5}}]\n"


@pytest.mark.parametrize("text", ["-.5", "+.25", "-.0_5"])
def test_a_signed_fraction_without_a_leading_zero_is_explained_and_the_hint_works(text: str) -> None:
    """`output_range: [-.5, .5]`: YAML 1.1 reads `.5` as a number but `-.5` as text, and the answer was
    "must be a number, not '-.5'", which the author reads as a number. The hint says why and what to
    write, and what it says loads as the number meant."""
    detail = _hint(RANGE, text, "gates.triton.output_range[0]")
    suggested = re.search(r"write (\S+)$", detail)
    assert suggested and "digit before the dot" in detail, detail
    low = parse_policy_text(RANGE.format(v=suggested.group(1))).gates.triton.output_range[0]
    assert low == float(text.replace("_", ""))
