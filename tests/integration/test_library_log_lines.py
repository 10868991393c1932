"""A library's own log records reach on-call as event lines, never as plain `ERROR:root:` text (decision 403).

The kubernetes config loader logs a failed exec plugin with the module-level `logging.error`; the root logger
had no handler, so that call ran `logging.basicConfig()` and from then on printed it, and every later record
of any library, as a plain line among the JSON ones. The real CLI in a process of its own (what reaches its
stderr is the point), a real exec plugin that fails (tests/support/kube_tokens.py), the Kubernetes API
emulator checking bearer tokens."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.integration.test_kube_credentials import exec_cluster
from tests.integration.test_promote import CANARY, ROOT, cluster  # noqa: F401 - fixture

pytestmark = pytest.mark.integration


def test_a_failing_exec_plugins_error_is_a_library_log_event_and_every_stderr_line_is_json(
        cluster: Any, tmp_path: Path) -> None:
    api, _, _ = cluster
    tokens, kubeconfig = exec_cluster(api, tmp_path)
    tokens.fail("error: the SSO session has expired; run aws sso login")
    done = subprocess.run([*CANARY, "status", "rec-model", "-n", "ml", "--kubeconfig", str(kubeconfig)],
                          capture_output=True, text=True, timeout=120, cwd=ROOT,
                          env={**os.environ, "KUBECONFIG": "", "NO_COLOR": "1"})
    assert done.returncode != 0, done.stdout + done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    # the last line is the command's own `error: ...`; every line before it is an event
    plain = [line for line in lines[:-1] if not line.startswith("{")]
    assert plain == [], done.stderr
    assert lines[-1].startswith("error:"), done.stderr
    events = [json.loads(line) for line in lines[:-1]]
    library = [e for e in events if e["event"] == "library.log"]
    assert library and all(e["level"] == "error" for e in library), done.stderr
    assert any("SSO session has expired" in e["message"] for e in library), done.stderr
    # the renewal after the 401 says the same cause once, as its own event; the library line is not repeated within a minute
    assert len(library) == 1, done.stderr
    assert [e["event"] for e in events].count("kube.credentials_unrenewed") == 1, done.stderr
