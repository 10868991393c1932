"""structlog configuration: JSON lines for machines, console rendering for people.

Every decision is one event with a stable name (documented in docs/reference/events.md
for on-call) and flat, machine-readable fields. The rollout context (model,
versions, weights, step) is bound once per rollout so every line carries it.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from typing import Any, TextIO

import structlog


def configure(*, fmt: str = "auto", level: str = "info", stream: TextIO | None = None) -> None:
    """fmt: 'json', 'console' or 'auto' (JSON unless the stream is a TTY). Lines go through a
    `streams.Sink`: a log line that cannot be written (a closed stderr, a pipe whose reader went away)
    is dropped, never raised into the rollout that logs it."""
    from canary.streams import Sink

    sink = Sink(stream if stream is not None else sys.stderr)
    if fmt == "auto":
        fmt = "console" if sink.isatty() else "json"
    renderer: Any
    if fmt == "json":
        renderer = structlog.processors.JSONRenderer(sort_keys=False)
    else:
        # NO_COLOR (no-color.org: set and not empty) as `rich` honours it for the panel and tables: a CI runner that
        # gives its steps a terminal and sets it got colour codes in every log line all the same (decision 358)
        # fields in the order the code gives them, as in JSON (decision 679): sorted by name, a check's
        # `rollback.completed` printed its `evidence` (kilobytes of statistics) before `reason` and `weights`
        renderer = structlog.dev.ConsoleRenderer(colors=sink.isatty() and not os.environ.get("NO_COLOR"),
                                                 sort_keys=False, exception_formatter=structlog.dev.plain_traceback)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _DICT_TRACEBACKS,
            cut_owners,
            *([] if fmt == "json" else [escape_unprintable]),  # JSON escapes them itself
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level.upper(), logging.INFO)),
        logger_factory=structlog.PrintLoggerFactory(file=sink),  # type: ignore[arg-type]
        cache_logger_on_first_use=False,
    )
    _bridge_stdlib()


# an `exc_info` turned into an `exception` list, as `structlog.processors.dict_tracebacks` does, with locals shown by
# `repr` and not by rich's pretty printer; the console renderer never sees an `exc_info` after it, and is given the
# plain formatter all the same. No line canary logs carries `exc_info`: named here so that what a line would say never
# depends on whether rich was loaded before structlog (`startup.import_structlog` keeps it out: decision 985)
def dict_tracebacks(transformer: Any = None) -> Any:
    """`dict_tracebacks` with locals by `repr`. structlog 24.1 and 24.2 (pyproject takes >= 24.1) have no `use_rich`
    and never show locals with rich: there the transformer's defaults are that (decision 1026)."""
    transformer = transformer or structlog.tracebacks.ExceptionDictTransformer
    try:
        made = transformer(use_rich=False)
    except TypeError:  # structlog < 24.3: every command died at import naming `use_rich`
        made = transformer()
    return structlog.processors.ExceptionRenderer(made)


_DICT_TRACEBACKS = dict_tracebacks()

# fields that carry a record's `owner` as written (anyone's who may edit the VirtualService or a CanaryRollout);
# `holder` is said through `reconcile.shown_owner`/`describe_owner` already (bounded, and with its job, which a cut
# at 100 characters would lose)
OWNER_FIELDS = frozenset({"owner", "recorded_owner", "ended_owner"})
OWNER_LOGGED_MAX = 300  # characters (`reconcile.OWNER_SHOWN_MAX` too): every owner canary writes is under it
OWNER_CUT_TO = 100  # characters of a longer owner kept, here and in `reconcile.shown_owner`


def cut_owners(_logger: Any, _method: str, event: dict[str, Any]) -> dict[str, Any]:
    """An owner field longer than OWNER_LOGGED_MAX cut to its first OWNER_CUT_TO characters and `...`, as
    `reconcile.shown_owner` cuts it in messages and `-o json` (decision 401); then escaped as any field is
    (`escape_unprintable`, or JSON). A record's owner edited by hand to a megabyte made every line naming it
    (`rollout.abandoned`, `rollout.taken_over`, `sweep.left_alone`, `rollout.split_unrecorded`, `rollback.completed`'s
    `ended_owner`) a megabyte: a log shipper's line limit cut or dropped it (decision 457)."""
    for key in OWNER_FIELDS.intersection(event):
        value = event[key]
        if isinstance(value, str) and len(value) > OWNER_LOGGED_MAX:
            event[key] = value[:OWNER_CUT_TO] + "..."
    return event


# what the console renderer prints as it is, not as a field's value: a traceback's lines
_MULTILINE_FIELDS = frozenset({"exception", "stack"})


class _Escaped:
    """A string field shown as `ascii()` shows it: quoted, every character that is not printable ASCII escaped
    once (the console renderer prints what is no `str` by its `repr`)."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return ascii(self.text)


def escape_unprintable(_logger: Any, _method: str, event: dict[str, Any]) -> dict[str, Any]:
    """Every string field holding a character that is not printable (ESC, a C0 or C1 control such as U+0085, a
    bidi override) shown escaped (`'...\\x1b[2J...'`). The console renderer prints a string field raw unless it
    holds a space, a quote, `=`, a tab or a line break (then its `repr`), and many fields carry what anyone who
    may edit a cluster object wrote (the record's `owner` in `rollout.abandoned`, `rollout.taken_over`,
    `sweep.left_alone`; a CanaryRollout's fields; an API server's or a proxy's error text): an escape sequence
    there cleared or rewrote on-call's terminal, U+0085 broke the line where a viewer reads it as one (decision
    405). JSON lines escape them already."""
    for key, value in event.items():
        if isinstance(value, str) and key not in _MULTILINE_FIELDS and not value.isprintable():
            event[key] = _Escaped(value)
    return event


class _StdlibRecords(logging.Handler):
    """The standard library's log records of warning and above (the kubernetes client, urllib3, any library's
    `logging.warning`/`error`) as `library.log` events in this process's event log, rendered as every other line.

    Without it the root logger has no handler, so the first module-level `logging.error(...)` of a library (the
    kubernetes config loader's, for an exec plugin that failed) calls `logging.basicConfig()`: from then on that
    record and every later one printed as a plain `ERROR:root:...` line among the JSON ones, which a log
    pipeline parsing JSON dropped or flagged, and on-call never saw (decision 376 (d); decision 403)."""

    def __init__(self) -> None:
        from canary.throttle import Throttle

        super().__init__(logging.WARNING)
        # one line per logger and message, then at most one a minute with `repeated`: a library logs at every
        # request (the client's refresh of an expired token whose plugin fails), and a controller sends many
        self.throttle = Throttle(max_keys=256)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()[:MAX_LIBRARY_MESSAGE]
            repeated = self.throttle.due((record.name, record.levelno, message), "")
            if repeated is None:
                return
            fields: dict[str, Any] = {"logger": record.name, "message": message}
            if repeated:
                fields["repeated"] = repeated
            if record.exc_info and record.exc_info[0] is not None:
                fields["exception"] = logging.Formatter().formatException(record.exc_info)[-MAX_LIBRARY_MESSAGE:]
            log = structlog.get_logger("canary")
            if record.levelno >= logging.ERROR:
                log.error("library.log", **fields)
            else:
                log.warning("library.log", **fields)
        except Exception:  # a log line never raises into the code that logged it
            self.handleError(record)


# the longest library message kept in a `library.log` line (a library that logs a whole response body)
MAX_LIBRARY_MESSAGE = 2000


def _bridge_stdlib() -> None:
    """One `_StdlibRecords` handler on the root logger (`configure` runs again per command in one process, the
    tests': the previous one is replaced, never added twice)."""
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, _StdlibRecords)]:
        root.removeHandler(handler)
    root.addHandler(_StdlibRecords())


def get(**context: Any) -> Any:
    return structlog.get_logger("canary").bind(**context)


def parse_json_lines(text: str | None) -> list[dict[str, Any]]:
    """The JSON log events in a captured stream (other lines, e.g. a traceback, are skipped)."""
    out = []
    for line in (text or "").splitlines():
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                pass
    return out
