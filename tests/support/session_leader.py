"""A session leader with no controlling terminal opens a terminal the way the code under test does, then says whether
it took that terminal as its own (decision 914): canary as a container's PID 1, or started by `setsid`, that opened a
terminal without O_NOCTTY kept it, and a hangup there later sent it SIGHUP.

  HAS_PTY            whether this machine can run the child (a pty and /dev/tty)
  opens_a_terminal(imports, opens, typed=b"")
                     runs the child in a new session; its stdout starts with "no terminal" when it took none,
                     "took the terminal" when it did
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = str(Path(__file__).resolve().parents[2])
HAS_PTY = hasattr(os, "openpty") and os.path.exists("/dev/tty")


def child_script(imports: str, opens: str, *, typed: bytes = b"") -> str:
    """The child's Python: `imports`, then a pty whose slave's path is `name` (glibc opens the slave O_NOCTTY: the
    child has no terminal yet), `typed` written at the master (a read of the slave then returns at once), `opens`
    run with an OSError passed over (a refusal is fine: only what the open did to the session counts), and last
    an open of /dev/tty, which succeeds only for a process that has a controlling terminal."""
    return "\n".join([
        "import os",
        imports,
        "master, slave = os.openpty()",
        "name = os.ttyname(slave)",
        f"os.write(master, {typed!r})" if typed else "",
        "try:",
        f"    {opens}",
        "except OSError:",
        "    pass",
        "try:",
        "    os.close(os.open('/dev/tty', os.O_RDONLY))",
        "    print('took the terminal')",
        "except OSError as exc:",
        "    print('no terminal', exc.errno)",
        "",
    ])


def opens_a_terminal(imports: str, opens: str, *, typed: bytes = b"") -> subprocess.CompletedProcess[str]:
    """Runs `child_script(...)` as a session leader (`start_new_session`) with this checkout's `canary` importable."""
    return subprocess.run([sys.executable, "-c", child_script(imports, opens, typed=typed)], start_new_session=True,
                          capture_output=True, text=True, timeout=60, env={**os.environ, "PYTHONPATH": ROOT})
