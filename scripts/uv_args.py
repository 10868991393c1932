"""pip's own index settings as `uv pip install` arguments, for scripts/setup.sh (decision 883).

uv reads neither pip.conf nor the PIP_* variables. setup.sh installs with uv (an install of ~90 packages in
about 10 s, against pip's 80-90 s with a warm cache), and a machine configured for pip (a mirror in pip.conf or
PIP_INDEX_URL, a wheel directory, a constraints file, a CA bundle) must get the same packages from the same
places. Run by the .venv's Python, whose `pip config list` prints every setting pip would use (environment
variables as `:env:.key`, files as `global.key`, `install.key`), one `section.key='value'` a line.

Output: NUL-separated arguments on stdout (`--index-url U`, `--extra-index-url U`..., `--find-links L`...,
`--constraint F`..., `--cert F`, always `--index-strategy unsafe-best-match`: pip takes the best version over
every index, uv by default the first index that has the package). A local location that does not exist is left
out, as pip warns and goes on where uv stops. Exit 0; a pip whose `config list` fails prints only the strategy."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from urllib.parse import unquote, urlparse

# pip's precedence: environment variables over the `install` section over `global`
SECTIONS = (":env:", "install", "global")
LISTS = {"extra-index-url": "--extra-index-url", "find-links": "--find-links", "constraint": "--constraint"}
ONE = {"index-url": "--index-url", "cert": "--cert"}


def settings(text: str) -> dict[str, str]:
    """`pip config list`'s lines as {key: value}, each key from the highest-precedence section that sets it."""
    found: dict[tuple[str, str], str] = {}
    for line in text.splitlines():
        name, sep, raw = line.partition("=")
        section, dot, key = name.rpartition(".")
        if not sep or not dot or section not in SECTIONS:
            continue
        try:
            value = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            continue
        if isinstance(value, str):
            found[(section, key)] = value
    out: dict[str, str] = {}
    for key in {k for _, k in found}:
        for section in SECTIONS:
            if (section, key) in found:
                out[key] = found[(section, key)]
                break
    return out


def _missing(location: str) -> bool:
    """A local path or file:// URL that is not there (pip skips it with a warning, uv stops)."""
    parsed = urlparse(location)
    if parsed.scheme == "file":
        return not os.path.exists(unquote(parsed.path))
    return not parsed.scheme and not os.path.exists(location)


def arguments(conf: dict[str, str]) -> list[str]:
    """uv's arguments for pip's settings `conf` (see `settings`)."""
    args = ["--index-strategy", "unsafe-best-match"]
    for key, flag in ONE.items():
        value = conf.get(key, "").strip()
        if value and not _missing(value):
            args += [flag, value]
    for key, flag in LISTS.items():
        for value in conf.get(key, "").split():
            if not _missing(value):
                args += [flag, value]
    return args


def main() -> int:
    r = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True)
    conf = settings(r.stdout) if r.returncode == 0 else {}
    sys.stdout.write("\0".join(arguments(conf)) + "\0")
    return 0


if __name__ == "__main__":
    sys.exit(main())
