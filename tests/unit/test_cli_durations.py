"""Issue 11: Go-style durations everywhere, in flags and in policies, one parser.

'1m30s', '500ms', '2h', '90s' as Go writes them, and plain numbers as seconds (what the flags and
policies took before); refused values name the flag or the field, and the value.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from canary import logs
from canary.cli import app
from canary.errors import PolicyError
from canary.policy import parse_policy
from canary.policy_fields import parse_duration

BASE = {"steps": [10, 100], "checks": [{"name": "e", "kind": "error_rate", "max_rate_pct": 1}]}


@pytest.mark.parametrize(("text", "seconds"), [
    ("1m30s", 90.0), ("500ms", 0.5), ("2h", 7200.0), ("90s", 90.0), ("1h2m3s4ms", 3723.004), ("1.5h", 5400.0),
    (".5s", 0.5), ("1500us", 0.0015), ("2000000ns", 0.002), ("+1m", 60.0), (" 5m ", 300.0),
    ("90", 90.0), ("2.5", 2.5), (90, 90.0), (0.25, 0.25),
])
def test_go_durations_and_plain_seconds(text: Any, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds, rel=1e-12)


@pytest.mark.parametrize(("text", "why"), [
    ("1d", "not a duration"),       # not a Go unit (durationpy would take days, weeks, 'mm' months, years)
    ("5mm", "not a duration"), ("1y", "not a duration"), ("5 m", "not a duration"), ("1e5", "not a duration"),
    ("-1s", "not a duration"), ("0s", "positive"), ("0", "positive"), ("3s\n", "not a duration"),
    ("\u0661\u0660s", "not a duration"), ("1m30", "not a duration"), ("", "not a duration"),
    ("9" * 30 + "h", "too long"),
])
def test_refused_durations_quote_the_value(text: str, why: str) -> None:
    with pytest.raises(ValueError) as err:
        parse_duration(text)
    assert why in str(err.value) and repr(text)[:20].rstrip("'") in str(err.value)


def test_policies_take_go_durations_and_errors_name_field_and_value() -> None:
    p = parse_policy({**BASE, "analysis": {"interval": "1m30s", "look_every": "15s"},
                      "failure": {"no_data_deadline": "1h30m"}}, file="p.yaml")
    assert (p.analysis.interval, p.analysis.look_every, p.failure.no_data_deadline) == (90.0, 15.0, 5400.0)
    legacy = parse_policy({**BASE, "analysis": {"interval": "5m", "look_every": 30}}, file="p.yaml")
    assert (legacy.analysis.interval, legacy.analysis.look_every) == (300.0, 30.0)
    with pytest.raises(PolicyError) as err:
        parse_policy({**BASE, "analysis": {"interval": "1m30x"}}, file="p.yaml")
    assert err.value.field == "analysis.interval" and "'1m30x'" in str(err.value)


def test_shipped_policies_stay_valid() -> None:
    from canary.policy import load_policy

    for f in sorted((Path(__file__).resolve().parents[2] / "policies").glob("*.yaml")):
        load_policy(f)


def run(*args: str) -> Any:
    try:
        return CliRunner().invoke(app, list(args), env={"KUBECONFIG": ""})
    finally:
        logs.configure()


@pytest.mark.parametrize("args", [
    ["status", "m", "--watch", "--timeout", "{bad}"],
    ["promote", "m", "--canary-version", "v2", "--policy", "p.yaml", "--timeout", "{bad}"],
    ["analyze", "m", "--policy", "p.yaml", "--window", "{bad}"],
    ["controller", "run", "--tick", "{bad}"],
    ["controller", "run", "--lease-duration", "{bad}"],
    ["controller", "run", "--drift-interval", "{bad}"],
    ["drift", "check", "--baseline", "b.json", "--input", "i.json", "--window", "{bad}"],
    ["drift", "watch", "--baseline", "b.json", "--interval", "{bad}"],
    ["drift", "watch", "--baseline", "b.json", "--quiet", "{bad}"],
], ids=lambda a: " ".join(a[:2]) + " " + next(x for x in a if x.startswith("--") and a[a.index(x) + 1] == "{bad}"))
def test_duration_flags_refuse_bad_values_naming_flag_and_value(args: list[str]) -> None:
    flag = args[args.index("{bad}") - 1]
    res = run(*[("1d2x" if a == "{bad}" else a) for a in args])
    text = " ".join(res.stderr.replace("│", " ").split())
    assert res.exit_code == 2 and res.stdout == ""
    assert f"'{flag}'" in text and "'1d2x'" in text and "Traceback" not in res.stderr


def test_duration_flags_take_go_durations_and_seconds(tmp_path: Path) -> None:
    from canary import cli_options

    assert cli_options.duration("1m30s") == 90.0 and cli_options.duration("90") == 90.0
    assert cli_options.duration_or_zero("0") == 0.0 and cli_options.duration_or_zero("0s") == 0.0
    # the old seconds-only flags keep working with plain numbers: --tick 1, --lease-duration 15
    res = run("controller", "run", "--tick", "0.5", "--lease-duration", "15", "--renew-deadline", "20s",
              "--prometheus-url", "http://127.0.0.1:9")
    assert res.exit_code == 2 and "--renew-deadline must be below --lease-duration" in res.stderr
    prof = tmp_path / "b.json"
    prof.write_text("{}")
    res = run("drift", "watch", "--baseline", str(prof), "--quiet", "0", "--interval", "1m30s", "--no-kube",
              "--prometheus-url", "http://127.0.0.1:9", "--once")
    assert res.exit_code == 2 and "--quiet" not in res.stderr and "b.json" in res.stderr  # got to the profile


def test_help_says_how_to_write_a_duration() -> None:
    res = run("status", "--help")
    assert res.exit_code == 0 and "1m30s" in res.stdout
