"""How `--help` reads, and where it goes when nobody reads it.

Typer (0.29) prints help through a rich Console of its own, not `streams.console()`. Two things followed:

- `canary --help | head -1`, and any subcommand's, exited 1: rich answers a broken pipe with
  SystemExit(1) (`Console.on_broken_pipe`), so `set -o pipefail` read a failure into a help page that
  changes nothing. Here typer's consoles go quiet on a broken pipe and silence that stream, as ours do
  (`streams.drop`), and the command ends as it would have: 0 for `--help`, 2 for a bare group.
  Nothing is said: help is no command's output, and a reader that stops after the first line is the
  usual reason.
- Its type column showed `<bool>` after every switch (`--help <bool>`, `--retry <bool>`), `<str>`,
  `<list[str]>` after a repeatable URL, and `{model}` for an argument in the usage line. `readable`
  gives each parameter without a metavar the one click has always shown (`TEXT`, `PATH`, `FLOAT`,
  `INTEGER`; `URL` and `FILE` where the option names one), none for a switch (`--retry`, `--x/--no-x`), and an argument its name in
  capitals (`MODEL`), once per command tree (`ReadableGroup.main`).
- Its description kept the docstring's own line breaks after the first paragraph (typer 0.29's rich
  mode joins only the first), so rich wrapped each source line on its own and a page read
  `... Slack URLs` / `given` / `(canary/notify.py's formats ...`, a word or two alone on a line at any
  width but the source's. `reflowed` joins each paragraph's lines (paragraphs, and a `\\b` one verbatim,
  kept), so rich wraps whole paragraphs at the terminal's width.
"""

from __future__ import annotations

import errno
import inspect
from typing import Any

from typer.core import TyperGroup

from canary import streams

# typer's `<type>` -> what click shows (and docs/reference/cli.md uses)
_BY_TYPE = {"str": "TEXT", "list[str]": "TEXT", "path": "PATH", "list[path]": "PATH", "list[Path]": "PATH",
            "float": "FLOAT", "int": "INTEGER", "list[int]": "INTEGER", "list[float]": "FLOAT",
            "int range": "INTEGER", "float range": "FLOAT"}  # (a range's bounds are shown beside it)


def _is_file(param: Any) -> bool:
    name = (param.name or "").lower()
    return name.endswith("file") or name == "kubeconfig"


def _is_url(param: Any) -> bool:
    name = (param.name or "").lower()
    return name.endswith("url") or name.endswith("urls") or "webhook" in name


def _metavar(param: Any) -> str | None:
    """The metavar `param` should show, or None to leave typer's own (a choice's `a|b`, a range)."""
    if getattr(param, "param_type_name", "") == "argument":
        return (param.name or "").upper() or None
    if getattr(param, "is_flag", False) or getattr(param, "count", False):
        return ""  # a switch takes no value: nothing after it
    shown = getattr(param, "display_type", None)
    if shown is None:  # an older typer: click's own metavars (TEXT, PATH ...) are right already
        return None
    try:
        label = str(shown(None)).strip("<>")
    except Exception:  # noqa: BLE001 - a type typer cannot show without a context: its own stays
        return None
    if label in ("str", "list[str]") and _is_url(param):
        return "URL"
    if label in ("str", "path") and _is_file(param):
        return "FILE"
    return _BY_TYPE.get(label)


def reflowed(text: str | None) -> str | None:
    """`text` (a command's help) with each paragraph's single line breaks made spaces.

    Paragraphs (split on a blank line, after `inspect.cleandoc`) stay apart; a paragraph that starts
    with `\\b` (click's "do not rewrap") and what follows a `\\f` line are left as they are. None stays None.
    """
    if not text:
        return text
    body, cut, rest = inspect.cleandoc(text).partition("\f")
    paragraphs = [p if p.startswith("\b") else " ".join(line.strip() for line in p.splitlines())
                  for p in body.split("\n\n")]
    return "\n\n".join(paragraphs) + cut + rest


def readable(command: Any) -> None:
    """Give every parameter of `command` and of its subcommands a metavar that reads as click's did,
    and each command's help whole paragraphs (`reflowed`)."""
    command.help = reflowed(command.help)
    for param in command.params:
        if param.metavar is None:
            param.metavar = _metavar(param)
        if getattr(param, "param_type_name", "") == "argument" and hasattr(param, "display_type_rich"):
            # the Arguments panel shows MODEL already in its name column: no `<str>` after it
            param.display_type_rich = lambda ctx: None
    if not getattr(command, "canary_readable", False):  # `--help` itself is made per context: no <bool>
        made = command.get_help_option

        def help_option(ctx: Any) -> Any:
            option = made(ctx)
            if option is not None and option.metavar is None:
                option.metavar = ""
            return option

        command.get_help_option, command.canary_readable = help_option, True
    for sub in (getattr(command, "commands", None) or {}).values():
        readable(sub)


class ReadableGroup(TyperGroup):
    """The root `canary` group: its whole tree is made `readable` before any help can be printed."""

    def main(self, *args: Any, **kwargs: Any) -> Any:
        readable(self)
        return super().main(*args, **kwargs)


def _quiet_on_broken_pipe(console: Any, name: str) -> None:
    """A help console whose reader went away: quiet from now on, the stream silenced; no SystemExit."""
    console.quiet = True
    streams.drop(name, BrokenPipeError(errno.EPIPE, "Broken pipe"))


def pipe_safe_help() -> None:
    """Typer's help (and usage-error) consoles answer a broken pipe as `_quiet_on_broken_pipe` does, from the moment
    typer loads `typer.rich_utils`: it does so only to print help or an error, and the module (rich's markdown,
    markdown-it) cost every command its import at start (decision 985)."""
    from canary.startup import after_import

    after_import("typer.rich_utils", _pipe_safe)


def _pipe_safe(rich_utils: Any) -> None:
    made = getattr(rich_utils, "_get_rich_console", None)
    if made is None or getattr(made, "canary_pipe_safe", False):
        return

    def console(stderr: bool = False) -> Any:
        out = made(stderr=stderr)
        out.on_broken_pipe = lambda: _quiet_on_broken_pipe(out, "stderr" if stderr else "stdout")
        return out

    console.canary_pipe_safe = True  # type: ignore[attr-defined]
    rich_utils._get_rich_console = console
