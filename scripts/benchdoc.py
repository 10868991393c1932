"""What every bench_*.py shares: where results go and the header each results page starts with
(the command that produced it, the machine, the date), so a page is always reproducible."""

from __future__ import annotations

import platform
import shlex
import sys
import time
from pathlib import Path

import structlog

ROOT = Path(__file__).resolve().parents[1]


def quiet() -> None:
    """Only the table on the terminal: the code under measurement logs critical lines only."""
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(50))


def command() -> str:
    """The command line this script was run with, as the README's users would type it."""
    return " ".join([".venv/bin/python", f"scripts/{Path(sys.argv[0]).name}", *map(shlex.quote, sys.argv[1:])])


def write(name: str, *, title: str, body: str, extra: str = "") -> Path:
    """Write docs/benchmarks/<name>.md: title, the command that produced it, machine/date line
    (+ `extra`), then `body`."""
    path = ROOT / "docs" / "benchmarks" / f"{name}.md"
    machine = f"Machine: {platform.machine()}, Python {platform.python_version()}, {time.strftime('%Y-%m-%d')}"
    path.write_text(f"# {title}\n\nCommand: `{command()}`  \n{machine}{extra}\n\n{body}\n", encoding="utf-8")
    return path
