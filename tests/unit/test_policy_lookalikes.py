"""Text that reads right and is not: a key, a choice or a duration holding a character past printable ASCII.

A key typed with a zero-width space, a Cyrillic letter pasted from a chat, or an escape sequence was named
in the error as it was (`analysis.alpha: unknown key (did you mean `alpha`?)`, the two spelled the same on
screen), and a choice or duration holding one was said back unchanged ('５m': did you mean '５m'?). The
field path shows such a key escaped, and the message names the first such character (decision 671).
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from canary.errors import PolicyError
from canary.policy import parse_policy

GOOD: dict[str, Any] = {"steps": [5, 50, 100], "checks": [{"name": "lat", "kind": "latency", "max_ms": 250}]}


def refused(raw: dict[str, Any]) -> PolicyError:
    with pytest.raises(PolicyError) as err:
        parse_policy(raw, file="p.yaml")
    return err.value


def with_(**sections: Any) -> dict[str, Any]:
    raw = copy.deepcopy(GOOD)
    raw.update(sections)
    return raw


@pytest.mark.parametrize(("raw", "field", "says"), [
    (with_(analysis={"alpha\u200b": 0.01}), "analysis.'alpha\\u200b'", "U+200B ZERO WIDTH SPACE"),
    (with_(analysis={"\u0430lpha": 0.01}), "analysis.'\\u0430lpha'", "U+0430 CYRILLIC SMALL LETTER A"),
    (with_(analysis={"alpha\x1b[2J": 0.01}), "analysis.'alpha\\x1b[2J'", "U+001B"),
    (with_(**{"\u0441hecks": []}), "'\\u0441hecks'", "U+0441 CYRILLIC SMALL LETTER ES"),
    (with_(metrics={"labels": {"cl\u00fcster": "eu-1"}}), "metrics.labels.'cl\\xfcster'", "not a valid Prometheus label"),
])
def test_a_key_past_printable_ascii_is_shown_escaped_with_its_character_named(raw: dict[str, Any], field: str,
                                                                              says: str) -> None:
    err = refused(raw)
    fields = [f for f, _ in err.problems]
    assert field in fields, str(err)
    message = dict(err.problems)[field]
    assert says in message, str(err)


def test_a_lookalike_key_still_says_which_field_was_meant() -> None:
    err = refused(with_(analysis={"\u0430lpha": 0.01}))
    assert "did you mean `alpha`?" in err.detail and "not ASCII" in err.detail, str(err)


@pytest.mark.parametrize(("raw", "field", "says"), [
    (with_(failure={"on_deadline": "r\u043ellback"}), "failure.on_deadline", "U+043E CYRILLIC SMALL LETTER O"),
    (with_(checks=[{"name": "lat", "kind": "l\u0430tency", "max_ms": 250}]), "checks[0].kind",
     "U+0430 CYRILLIC SMALL LETTER A"),
    (with_(metrics={"source": "isti\u043e"}), "metrics.source", "U+043E CYRILLIC SMALL LETTER O"),
])
def test_a_choice_holding_a_lookalike_names_the_character(raw: dict[str, Any], field: str, says: str) -> None:
    err = refused(raw)
    assert err.field == field and says in err.detail, str(err)


@pytest.mark.parametrize("value", ["\uff15m", "\uff15min", "5\u200bm"])
def test_a_duration_past_ascii_names_the_character_and_suggests_no_copy_of_it(value: str) -> None:
    err = refused(with_(analysis={"interval": value}))
    assert err.field == "analysis.interval", str(err)
    assert "did you mean" not in err.detail, str(err)  # it was "did you mean '５m'?", the value as written
    assert "not ASCII" in err.detail and "U+" in err.detail, str(err)
