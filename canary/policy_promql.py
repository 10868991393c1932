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
        raise ValueError("must not be empty")
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


def reads_version(template: str) -> bool:
    """Whether `template` selects by `{version}` in its code: a `{version}` in a comment is rendered as
    written, so both arms read what the rest of the query reads."""
    return any(name == "version" for _, _, name in scan_promql(template)[0])


def code_form(template: str) -> str:
    """`template` as Prometheus reads it, for telling whether two templates are one query: comments
    dropped and each run of whitespace outside strings one space (a YAML `|` block's trailing newline,
    a re-indented line, a comment apart)."""
    out: list[str] = []
    gap = False  # whitespace or a comment of the code since the last piece kept
    for text, ctx, name in scan_promql(template)[0]:
        if ctx == "#" or (not ctx and name is None and text.isspace()):
            gap = True
            continue
        out.append((" " if gap and out else "") + text)
        gap = False
    return "".join(out)


# PromQL's keywords (its lexer reads them case-insensitively); most are also metric names where an operand stands
KEYWORDS = frozenset({
    "and", "or", "unless", "atan2", "bool", "offset", "by", "without", "on", "ignoring", "group_left",
    "group_right", "inf", "nan", "sum", "avg", "count", "min", "max", "group", "stddev", "stdvar", "topk",
    "bottomk", "count_values", "quantile", "limitk", "limit_ratio", "smoothed", "anchored",
})
# keywords followed by a parenthesised list of label names, not of expressions
_GROUPING = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right"})
# keywords that are never a metric name (not in Prometheus's `metric_identifier`); every other keyword
# is one where an operand stands (`sum(by)`, `offset[5m]`, `x + sum`, `x or on(job) unless`)
_NEVER_METRIC = frozenset({"on", "ignoring", "group_left", "group_right", "bool", "atan2", "inf", "nan"})
_AGGREGATIONS = frozenset({"sum", "avg", "count", "min", "max", "group", "stddev", "stdvar", "topk", "bottomk",
                           "count_values", "quantile", "limitk", "limit_ratio"})
_OPERATOR_CHARS = frozenset("+-*/%^=!<>~@,(")
_WORD_START = re.compile(r"[A-Za-z_:]")
_WORD = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
_NUMBER = re.compile(r"\.?[0-9][0-9A-Za-z_.]*")


def selector_insertions(template: str) -> list[tuple[int, str]]:
    """Where extra label matchers go so that they apply to every vector selector of a PromQL template.

    Returns (offset, form) pairs in increasing offset: form "braces" after a bare metric name
    (`x[5m]` -> `x{M}[5m]`), "first" before the `}` of an empty or comma-ended matcher list
    (`x{}` -> `x{M}`), "append" before the `}` of any other (`x{a="b"}` -> `x{a="b",M}`).
    Lexical, on `scan_promql`'s contexts: strings, comments and placeholders are never read as code;
    `[...]` (ranges, subqueries) holds no selector; a word followed by `(` is a function or
    aggregation; nor are the label lists after by/without/on/ignoring/group_left/group_right. A keyword
    is a metric name where an operand stands, as Prometheus's grammar reads it (`sum(by)`,
    `x + offset`, `x or on(job) unless`), and an operator or modifier after an operand
    (`x offset 5m`, `sum(x) by (job)`, `x and y`). `template` must pass `check_promql`.
    """
    return [(at, form) for _, _, at, form in _scan_selectors(template)]


def selector_spans(template: str) -> list[tuple[int, int]]:
    """The (start, end) offsets of every vector selector of a PromQL template, `selector_insertions`'s
    selectors: `x`, `x{a="b"}`, `{__name__="x"}` (a range's `[5m]`, an `offset` left out). Each span is a
    template of its own (its placeholders stand in its strings), so it renders as the whole query does."""
    return [(start, end) for start, end, _, _ in _scan_selectors(template)]


def _scan_selectors(template: str) -> list[tuple[int, int, int, str]]:
    """(start, end, insertion offset, form) of each vector selector (`selector_insertions`)."""
    code: list[str] = []  # the template's code: a comment as spaces, a string or placeholder as NULs, same offsets
    for text, ctx, name in scan_promql(template)[0]:
        code.append(" " * len(text) if ctx == "#" else text if not ctx and name is None else "\0" * len(text))
    s = "".join(code)
    out: list[tuple[int, int, int, str]] = []
    i, n = 0, len(s)
    named = -1  # where the metric name of the `{` reached next starts (-1: none)
    operand = True  # an operand (a selector, a number, a call) may stand here; else an operator or modifier
    while i < n:
        ch = s[i]
        if ch == "[":  # a range or subquery: no selector inside
            i, operand = _closing(s, i, "[", "]") + 1, False
        elif ch == "{":
            end = _closing(s, i, "{", "}")
            inner = s[i + 1 : end].rstrip(" \t\r\n")
            out.append((named if named >= 0 else i, end + 1, end,
                        "first" if not inner or inner.endswith(",") else "append"))
            i, operand, named = end + 1, False, -1
        elif _NUMBER.match(s, i) and (ch.isdigit() or ch == "."):
            i, operand = _NUMBER.match(s, i).end(), False  # type: ignore[union-attr]
        elif _WORD_START.match(ch):
            word = _WORD.match(s, i).group(0)  # type: ignore[union-attr]
            low, end = word.lower(), i + len(word)
            nxt, at = _next_code(s, end)
            if low in _GROUPING and nxt == "(":  # a label list (a metric name is never followed by `(`)
                i = _closing(s, at, "(", ")") + 1
                operand = low not in ("by", "without")  # after on(...)/group_left(...) an operand follows
            elif low in _NEVER_METRIC:
                i, operand = end, low not in ("inf", "nan")
            elif nxt == "(" or (low in _AGGREGATIONS and _word_at(s, at) in ("by", "without")):
                i, operand = end, True  # a function or an aggregation: its arguments follow
            elif operand or low not in KEYWORDS:  # where an operand stands, any other word is a metric name
                if nxt != "{":  # a named selector's `{` is reached next
                    out.append((i, end, end, "braces"))
                i, operand, named = end, nxt == "{", i if nxt == "{" else -1
            else:  # after an operand: and/or/unless, offset, by/without, smoothed/anchored
                i, operand = end, low in ("and", "or", "unless")
        else:
            if ch == ")" or ch == "\0":
                operand = False
            elif ch in _OPERATOR_CHARS:
                operand = True
            i += 1
    return out


def _word_at(s: str, i: int) -> str:
    """The lower-cased word at offset i ("" when none starts there)."""
    m = _WORD.match(s, i)
    return m.group(0).lower() if m else ""


def _next_code(s: str, i: int) -> tuple[str, int]:
    """The next code character from offset i past whitespace and comments, and its offset ("" at the end)."""
    n = len(s)
    while i < n and s[i] in " \t\r\n":
        i += 1
    return (s[i], i) if i < n else ("", n)


def _closing(s: str, i: int, opening: str, closing: str) -> int:
    """Offset of the bracket that closes the one at i (code characters only; `check_promql` balanced them)."""
    depth = 0
    for j in range(i, len(s)):
        if s[j] == opening:
            depth += 1
        elif s[j] == closing:
            depth -= 1
            if depth == 0:
                return j
    return len(s) - 1
