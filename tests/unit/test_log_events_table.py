"""docs/reference/events.md (the README's "Log events (for on-call)" until decision 995), against the code, both
ways and by level (decision 115).

test_docs_examples checked one way only (a name logged must be in the table): a row could name an event no
code logs any more, or give a level the code never logs it at (an alert on `level` then misses it). Here the
AST of every module the rollout, the controller and `canary serve` run is read: each call that logs an event
(`log.<level>("name", ...)`, `rl.Emit("name", ..., warning=/level=)`) gives its name and level; an event
name built at run time (`f"{what}.retrying"`, an `Emit(start, ...)`) is still "logged" when its name is
spelled in the code, its level then unchecked. The drift monitor has its own table (docs/drift.md)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LEVELS = ("debug", "info", "warning", "error", "critical")
NAME = re.compile(r"[a-z_]+\.[a-z_]+$")


def event_rows(table: str) -> dict[str, str]:
    """event -> the row's level cell, for every event named in the first cell of a Markdown table's rows."""
    rows: dict[str, str] = {}
    for line in table.splitlines():
        if line.startswith("| `"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            for name in re.findall(r"`([a-z_]+\.[a-z_.]+)`", cells[0]):
                rows[name] = cells[1]
    return rows


def _table() -> dict[str, str]:
    """event -> the row's level cell, of docs/reference/events.md's table (the README's "Log events" until decision 995)."""
    return event_rows((ROOT / "docs" / "reference" / "events.md").read_text())


def _ours(rel: str) -> bool:
    return not rel.startswith(("sandbox/", "drift/")) and rel != "cli_drift.py"


def _logged() -> tuple[dict[str, set[str]], str]:
    """(event -> {level (module)}, the source text of our modules)."""
    logged: dict[str, set[str]] = {}
    text = []
    for path in sorted((ROOT / "canary").rglob("*.py")):
        rel = path.relative_to(ROOT / "canary").as_posix()
        if not _ours(rel):
            continue
        source = path.read_text()
        text.append(source)
        for node in ast.walk(ast.parse(source)):
            if not (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
                    and isinstance(node.args[0].value, str) and NAME.match(node.args[0].value)):
                continue
            name, func = node.args[0].value, node.func
            called = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
            if called in LEVELS:
                level = called
            elif called == "Emit":
                kw = {k.arg: k.value.value for k in node.keywords if isinstance(k.value, ast.Constant)}
                level = kw.get("level") or ("warning" if kw.get("warning") else "info")
            else:
                continue
            if level != "debug" and not name.startswith(("drift.", "controller.drift")):
                logged.setdefault(name, set()).add(f"{level} ({rel})")
    return logged, "\n".join(text)


def test_every_event_logged_is_in_the_table_at_the_level_it_is_logged() -> None:
    rows, (logged, _) = _table(), _logged()
    missing = {name: sorted(how) for name, how in logged.items() if name not in rows}
    assert not missing, f"logged but not in docs/reference/events.md: {missing}"
    wrong = {name: (sorted(how), rows[name]) for name, how in logged.items()
             if any(h.split()[0] not in rows[name] for h in how)}
    assert not wrong, f"logged at a level docs/reference/events.md does not give it: {wrong}"


def test_every_event_in_the_table_is_still_logged() -> None:
    rows, (logged, source) = _table(), _logged()
    # f"{what}.retrying" with what in ("promotion", ...): a row so built needs its suffix built that way and its
    # prefix spelled as a string of its own (a suffix alone let any prefix pass: `field.n`, `digest.json`)
    built = {suffix for _, suffix in re.findall(r'f"\{(\w+)\}\.([a-z_]+)"', source)}
    words = set(re.findall(r'"([a-z_]+)"', source))
    spelled = set(re.findall(r'"([a-z_]+\.[a-z_]+)"', source))  # every name logged is spelled so, too
    stale = sorted(name for name in rows if name not in spelled
                   and not (name.split(".", 1)[1] in built and name.split(".", 1)[0] in words))
    assert not stale, f"in docs/reference/events.md but logged nowhere: {stale}"


def test_the_decisive_line_of_a_rollback_is_one_error_and_an_unproven_ones_a_warning() -> None:
    """A rollback's `rollback.completed` is an error when the canary was shown bad (a check, a gate), a
    warning when it was not (an inconclusive deadline, an operator, a foreign edit); the row says both."""
    from canary import rollout as rl

    levels = set(re.findall(r"[a-z]+", _table()["rollback.completed"]))
    assert {"warning", "error"} <= levels
    # the levels `_end` gives it (an Emit whose name the AST above cannot read: `Emit(done, ...)`)
    progressing = rl.RolloutState(model="m", stable_version="v1", canary_version="v2", phase=rl.PROGRESSING,
                                  weights=rl.Weights(80, 20))
    for reason, level in (("lat: canary p95 90 ms vs stable 40 ms (+125%, limit +20%)", "error"),
                          ("gate: canary Triton not ready", "error"), ("operator: pager", "warning"),
                          ("no verdict after 30s at step 1 (inconclusive: ...)", "warning")):
        _, actions = rl._end(progressing, 1.0, reason=reason, phase=rl.ROLLED_BACK)
        done = [a for a in actions if isinstance(a, rl.Emit) and a.event == "rollback.completed"]
        assert [a.log_level for a in done] == [level], reason


def test_the_controllers_health_server_logs_no_event_the_table_lacks() -> None:
    """`canary controller run` logged `health.listening` (an f"{self.component}.listening" the AST above
    cannot read) beside its `controller.serving`: a line on-call found in no row. The health server now
    logs nothing of its own; `canary serve`'s `serve.listening` is spelled where it is logged."""
    import structlog

    from canary.telemetry import HealthServer, Telemetry

    rows = _table()
    with structlog.testing.capture_logs() as captured:
        server = HealthServer(Telemetry(), ready=lambda: (True, "")).start()
        server.stop()
    unlisted = sorted({line["event"] for line in captured} - set(rows))
    assert not unlisted, f"logged but not in docs/reference/events.md: {unlisted}"
    assert "serve.listening" in rows and "serve.listening" in _logged()[0]
