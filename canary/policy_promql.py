"""The PromQL-template lexer: what can be checked of a custom query without a server.

It lives beside the policy (not in metrics/) so that a policy is checked
without importing the metrics layer; `metrics.queries.render_custom` uses the
same lexer, so what the policy accepted is what gets rendered.
"""

from __future__ import annotations

import re

PLACEHOLDERS = ("model", "version", "namespace", "window")
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


def scan_promql(template: str) -> tuple[list[tuple[str, str, str | None]], str]:
    """Split a PromQL template into (text, context, placeholder) pieces, and the context at its end.

    context: "" in code, '"' / "'" / "`" inside that string (its quotes included),
    "#" in a comment (to the end of the line). A `{identifier}` outside comments
    is one piece, named by `placeholder`. Backslash escapes count inside "" and ''.
    """
    pieces: list[tuple[str, str, str | None]] = []
    ctx, i, n = "", 0, len(template)
    while i < n:
        ch = template[i]
        m = _PLACEHOLDER.match(template, i) if ctx != "#" else None
        if m:
            pieces.append((m.group(0), ctx, m.group(1)))
            i = m.end()
            continue
        if ctx in ('"', "'") and ch == "\\" and i + 1 < n:
            pieces.append((template[i : i + 2], ctx, None))
            i += 2
            continue
        if not ctx:
            ctx = ch if ch in "\"'`#" else ""
            pieces.append((ch, ctx, None))
        else:
            pieces.append((ch, ctx, None))
            if (ctx == "#" and ch == "\n") or (ctx != "#" and ch == ctx):
                ctx = ""
        i += 1
    return pieces, ctx


def check_promql(template: str) -> str:
    """What can be checked of a custom query without a server: balanced brackets, closed
    strings, known placeholders only, and name placeholders inside double quotes."""
    if not template.strip():
        raise ValueError("the query is empty")
    pieces, end = scan_promql(template)
    stack: list[tuple[str, int]] = []
    pos = 0
    for text, ctx, name in pieces:
        if name is not None and name not in PLACEHOLDERS:
            raise ValueError(f"unknown placeholder {{{name}}} at offset {pos} "
                             "(known: {model}, {version}, {namespace}, {window})")
        if name not in (None, "window") and ctx != '"':
            raise ValueError(f"placeholder {{{name}}} at offset {pos} must stand inside a double-quoted "
                             f'string, e.g. model_name="{{{name}}}" (only there are values escaped)')
        if name is None and ctx in ('"', "'") and text == "\n":
            raise ValueError(f"unterminated string at offset {pos}: a {ctx}-quoted string cannot span lines")
        if name is None and not ctx and text in "([{)]}":
            if text in "([{":
                stack.append((text, pos))
            elif not stack or "([{"[")]}".index(text)] != stack[-1][0]:
                raise ValueError(f"unbalanced {text!r} at offset {pos}")
            else:
                stack.pop()
        pos += len(text)
    if end in ('"', "'", "`"):
        raise ValueError(f"unterminated {end}-quoted string")
    if stack:
        raise ValueError(f"{stack[-1][0]!r} at offset {stack[-1][1]} is never closed")
    return template
