"""structlog configuration: JSON lines for machines, console rendering for people.

Every decision is one event with a stable name (documented in the README for
on-call) and flat, machine-readable fields. The rollout context (model,
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
        renderer = structlog.dev.ConsoleRenderer(colors=sink.isatty() and not os.environ.get("NO_COLOR"))
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.dict_tracebacks,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level.upper(), logging.INFO)),
        logger_factory=structlog.PrintLoggerFactory(file=sink),  # type: ignore[arg-type]
        cache_logger_on_first_use=False,
    )


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
