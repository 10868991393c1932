"""A real headless browser for the report tests: Debian's `chromium`, run once per page.

  chromium        fixture: the binary's path (skips the test, with the reason, if absent)
  load(...)       the page's DOM after its scripts ran, and every console message or uncaught
                  error chromium logged while loading it (optionally at a window size)
  measure(...)    what a script added to the page measured in the laid-out page (JSON)
  screenshot(...) the page rendered to a PNG

Each run gets its own profile directory and no network: every request would go to a proxy on a
closed local port, so a page that needed the network could not render what it fetched. Chromium
is started in its own process group and that group is ended by its id if it outlives the timeout.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

_CONSOLE = re.compile(r":CONSOLE[:(]")


@pytest.fixture(scope="session")
def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        pytest.skip("chromium is not installed (Debian package `chromium`; scripts/setup.sh installs it)")
    return path


@dataclass(frozen=True)
class Page:
    dom: str  # the serialized DOM after the page's scripts ran
    console: list[str]  # chromium's log lines of console messages and uncaught errors


def _run(binary: str, args: list[str], *, profile: Path, timeout_s: float) -> subprocess.CompletedProcess[str]:
    cmd = [binary, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-extensions",
           f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0",
           "--proxy-server=http://127.0.0.1:9", "--proxy-bypass-list=<-loopback>", *args]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the group this call started, by its id
        proc.communicate()
        raise AssertionError(f"chromium did not finish within {timeout_s:.0f}s: {' '.join(cmd)}") from None
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def load(binary: str, page: Path, *, tmp: Path, timeout_s: float = 90, width: int = 0, height: int = 0,
         flags: tuple[str, ...] = ()) -> Page:
    """`width`/`height`: the window's size (chromium's default when 0). (With scripts disabled chromium's
    --dump-dom prints nothing: to see a page without its script, take the script out of the page.)"""
    args = [*flags, *([f"--window-size={width},{height}"] if width and height else [])]
    res = _run(binary, [*args, "--dump-dom", page.resolve().as_uri()], profile=tmp / "chromium-dom",
               timeout_s=timeout_s)
    assert res.returncode == 0, res.stderr[-3000:]
    return Page(dom=res.stdout, console=[line for line in res.stderr.splitlines() if _CONSOLE.search(line)])


def screenshot(binary: str, page: Path, png: Path, *, tmp: Path, width: int = 1200, height: int = 4000,
               timeout_s: float = 90) -> None:
    res = _run(binary, ["--hide-scrollbars", f"--window-size={width},{height}", f"--screenshot={png}",
                        page.resolve().as_uri()], profile=tmp / "chromium-shot", timeout_s=timeout_s)
    assert res.returncode == 0 and png.exists(), res.stderr[-3000:]


def measure(binary: str, page_html: str, script: str, *, tmp: Path, width: int = 1280, height: int = 800) -> object:
    """Load `page_html` with `script` appended (an expression whose value is JSON-encoded into the DOM after
    layout) at `width` x `height`, and return that value: sizes and positions as chromium laid them out, and
    what a screen reader is given (`el.computedRole`, `el.computedName`: chromium's accessibility tree)."""
    probe = ("<script>document.body.setAttribute('data-measured', JSON.stringify((function(){return "
             + script + "})()));</script></body>")
    page = tmp / "measured.html"
    page.write_text(page_html.replace("</body>", probe), encoding="utf-8")
    loaded = load(binary, page, tmp=tmp, width=width, height=height,
                  flags=("--enable-blink-features=ComputedAccessibilityInfo",))
    m = re.search(r'data-measured="([^"]*)"', loaded.dom)
    assert m, loaded.console
    import html
    import json

    return json.loads(html.unescape(m.group(1)))
