"""What a file given where JSON was expected most likely is, for the error that refuses it.

`canary report --input canary-demo.log`, `canary judge --input` of a log, `drift check --baseline` of a report
page: each said only `not JSON (Extra data: line 2 column 1 (char 162))`, which names no mistake. The caller
appends what it takes instead."""

from __future__ import annotations

import json
from pathlib import Path


def not_json(source: str | Path) -> str:
    """`: <what it is>` to append to a "not JSON" error about `source` (the file's text, or its path: its first
    64 KiB are read), or "" when it is none of the usual wrong files."""
    if isinstance(source, Path):
        try:
            with source.open("r", encoding="utf-8", errors="replace") as f:
                text = f.read(65536)
        except OSError:
            return ""
    else:
        text = source[:65536]
    head = text.lstrip("\ufeff \t\r\n")
    if head[:1] == "<":
        return ": an HTML page (a report canary wrote is the page itself: open it in a browser)"
    first = head.split("\n", 1)[0].strip()
    try:
        line = json.loads(first) if first else None
    except (ValueError, RecursionError):
        line = None
    if isinstance(line, dict) and "\n" in head.strip():
        return ": one JSON object per line, a JSON-lines log (`canary-demo.log`, `--log-file`)"
    if head.startswith(("format:", "---")) or "\nformat:" in head[:2000]:
        return ": YAML (a command's `-o yaml` output is for reading; give its `-o json`)"
    return ""


__all__ = ["not_json"]
