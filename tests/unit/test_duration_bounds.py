"""Every duration flag has an upper bound, said naming the flag before anything is read (decision 769).

`drift watch --interval 10000000h` (past `threading.TIMEOUT_MAX`) ended in an OverflowError traceback at its
first wait, `promote --interrupt-grace` past 317 years at `setitimer`, and a month's `drift check --window`
asked Prometheus for every sample of a month at once; 741 bounded only `analyze --window`."""

from __future__ import annotations

from typing import Any, Iterator

import pytest
import typer
from typer.testing import CliRunner

from canary import logs
from canary.cli import app

# checked in its command with its own words (741): tests/unit/test_analyze_inputs.py
OWN_CHECK = {("analyze", "--window")}


def duration_params() -> Iterator[tuple[str, Any]]:
    def walk(cmd: Any, path: str) -> Iterator[tuple[str, Any]]:
        for name, sub in (getattr(cmd, "commands", None) or {}).items():
            yield from walk(sub, f"{path} {name}".strip())
        for param in cmd.params:
            if getattr(param, "metavar", None) == "DURATION":
                yield path, param

    return walk(typer.main.get_command(app), "")


def parsed(param: Any, value: str) -> float:
    return param.type_descriptor.parameter_info.parser(value)


def test_every_duration_flag_is_found() -> None:
    flags = {(path, p.opts[0]) for path, p in duration_params()}
    assert {("drift watch", "--interval"), ("promote", "--interrupt-grace"), ("serve", "--answer-within"),
            ("controller run", "--lease-duration"), ("drift check", "--window")} <= flags, flags


@pytest.mark.parametrize("value", ["10000000h", "10000000000"])
def test_every_duration_flag_refuses_a_value_past_its_bound(value: str) -> None:
    """10^10 s: past Python's longest wait (about 292 years) and `setitimer`'s (317)."""
    for path, param in duration_params():
        if (path, param.opts[0]) in OWN_CHECK:
            continue
        with pytest.raises(typer.BadParameter, match=r"is longer than .*, the most it takes: .*or less"):
            parsed(param, value)


def run(*args: str) -> Any:
    try:
        return CliRunner().invoke(app, list(args), env={"KUBECONFIG": "", "COLUMNS": "400"})
    finally:
        logs.configure()


@pytest.mark.parametrize(("args", "says"), [
    (["drift", "watch", "--baseline", "b.json", "--interval", "10000000h"], "is longer than 168h"),
    (["drift", "check", "--baseline", "b.json", "--input", "i.json", "--window", "169h"], "weekly cycle"),
    (["controller", "run", "--drift-window", "169h"], "is longer than 168h"),
    (["controller", "run", "--lease-duration", "2h"], "until its Lease runs out"),
    (["promote", "m", "--canary-version", "v2", "--policy", "p.yaml", "--interrupt-grace", "2h"], "SIGKILL"),
    (["promote", "m", "--canary-version", "v2", "--policy", "p.yaml", "--timeout", "169h"], "longer than 168h"),
    (["serve", "--policy", "p.yaml", "--state-dir", ".", "--answer-within", "1h"], "timeoutSeconds"),
    (["status", "m", "--watch", "--timeout", "100000h"], "give 168h or less"),
], ids=lambda a: " ".join(a[:2]) if isinstance(a, list) else None)
def test_a_duration_past_its_bound_is_exit_2_naming_the_flag(args: list[str], says: str) -> None:
    flag = next(a for a in reversed(args) if a.startswith("--"))
    res = run(*args)
    text = " ".join(res.stderr.replace("│", " ").split())
    assert res.exit_code == 2 and "Traceback" not in res.stderr, res.stderr
    assert f"Invalid value for '{flag}'" in text and says in text, text


def test_a_duration_at_its_bound_is_taken() -> None:
    bound = {"--tick": "24h", "--lease-duration": "1h", "--renew-deadline": "1h", "--retry-period": "1h",
             "--interrupt-grace": "1h", "--answer-within": "10m", "--notify-wait": "10m", "--state-ttl": "8784h"}
    for path, param in duration_params():
        flag = param.opts[0]
        assert parsed(param, bound.get(flag, "168h")) > 0, (path, flag)


@pytest.mark.parametrize("flag", ["--window", "--drift-window"])
def test_a_drift_window_of_a_week_is_taken(flag: str) -> None:
    """A week holds a weekly cycle as a day holds a daily one (docs/drift.md advises `--window 24h` for a model
    whose inputs follow the hour), and a low-traffic model's values: 769's day refused `--window 30h` (decision
    790). `analyze --window` keeps a rollout step's day (741)."""
    params = [(path, p) for path, p in duration_params() if p.opts[0] == flag and (path, flag) not in OWN_CHECK]
    assert params
    for path, param in params:
        assert parsed(param, "30h") == 30 * 3600 and parsed(param, "168h") == 7 * 86400, path


def test_a_baseline_configmaps_drift_window_has_the_flags_bound() -> None:
    """The annotation sets the window `--drift-window` would: `8760h` asked Prometheus for a year at once."""
    from canary.drift.store import monitor_settings

    with pytest.raises(ValueError, match=r"ConfigMap ml/cm: annotation modelcanary.dev/drift-window: 8760h is "
                                         r"longer than 168h, the most a drift window takes: .*max-samples"):
        monitor_settings({"modelcanary.dev/drift-window": "8760h"}, "ml/cm")
    # a baseline set to 48h before 769 (a low-traffic model) was skipped, its drift no longer watched (790)
    assert monitor_settings({"modelcanary.dev/drift-window": "48h"}, "ml/cm") == {"_window_s": 172800.0}
    assert monitor_settings({"modelcanary.dev/drift-window": "168h"}, "ml/cm") == {"_window_s": 604800.0}
