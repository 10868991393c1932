"""What every bench_*.py shares: where results go and the header each results page starts with
(the command that produced it, the machine, the date), so a page is always reproducible."""

from __future__ import annotations

import platform
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def write(name: str, *, title: str, command: str, body: str, extra: str = "") -> Path:
    """Write docs/benchmarks/<name>.md: title, command, machine/date line (+ `extra`), then `body`."""
    path = ROOT / "docs" / "benchmarks" / f"{name}.md"
    machine = f"Machine: {platform.machine()}, Python {platform.python_version()}, {time.strftime('%Y-%m-%d')}"
    path.write_text(f"# {title}\n\nCommand: `{command}`  \n{machine}{extra}\n\n{body}\n", encoding="utf-8")
    return path
