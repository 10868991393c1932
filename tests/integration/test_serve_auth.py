"""`canary serve --token-file` (decision 105): over real HTTP, measuring in the real Prometheus of
test_serve.py, and as the command itself.

A token is rotated as the kubelet rotates a mounted Secret (a new file renamed over the old one): the
next call sees it, with no wait of the test's.
"""

from __future__ import annotations

import base64
import io
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from canary import logs
from canary.sandbox.promserver import free_port
from canary.serve_auth import TokenFile
from tests.integration.test_serve import (POLICY, Clock, _event, call, clock, flagger, prom,  # noqa: F401
                                          serve)

pytestmark = pytest.mark.integration

A, B = "a" * 32, "b0" * 20


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".new")
    tmp.write_text(text)
    os.replace(tmp, path)  # as the kubelet swaps a Secret's files: never a half-written token


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_a_token_file_guards_every_call_but_healthz_and_a_rotation_takes_effect(serve: Any, clock: Clock,
                                                                               tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    _write(token_file, A + "\n")
    stream = io.StringIO()
    logs.configure(fmt="json", stream=stream)
    try:
        server = serve(auth=TokenFile(token_file))
        code, doc = flagger(server, "pre-rollout", "good")
        assert (code, doc["field"]) == (401, "Authorization"), "anyone who reaches the port opened a rollout"
        assert flagger(server, "rollout", "good", headers=bearer(B))[0] == 401
        assert flagger(server, "rollout", "good", headers={"Authorization": A})[0] == 401  # no scheme
        assert call(server.url + "/healthz") == (200, {"ok": True}), "a probe carries no token"
        assert flagger(server, "pre-rollout", "good", headers=bearer(A))[0] == 200
        # Flagger: a webhook URL http://flagger:<token>@host/... makes Go's client send Basic auth
        basic = {"Authorization": "Basic " + base64.b64encode(f"flagger:{A}".encode()).decode()}
        clock.t += 30
        code, doc = flagger(server, "rollout", "good", headers=basic)
        assert code == 200 and doc["result"]["look"] == 1
        _write(token_file, f"# rotating\n{A}\n{B}\n")  # both while the callers move
        assert flagger(server, "confirm-promotion", "good", headers=bearer(B))[0] == 412
        _write(token_file, B + "\n")
        assert flagger(server, "confirm-promotion", "good", headers=bearer(A))[0] == 401, "a rotated-out token"
        _write(token_file, "")  # a broken rotation: no call is let in, none with the old token either
        assert flagger(server, "confirm-promotion", "good", headers=bearer(B))[0] == 503
        assert flagger(server, "confirm-promotion", "good", headers=bearer(A))[0] == 503
    finally:
        logs.configure(fmt="console", stream=sys.__stderr__)
    text = stream.getvalue()
    assert A not in text and B not in text, "a token in the log"
    events = logs.parse_json_lines(text)
    refused = [e for e in events if e["event"] == "serve.unauthorized"]
    assert [e["reason"] for e in refused] == ["missing", "wrong", "malformed", "wrong"]
    assert len([e for e in events if e["event"] == "serve.token_unreadable"]) == 1, "once per cause"


def test_the_401_says_how_to_authenticate(serve: Any, tmp_path: Path) -> None:
    import urllib.error
    import urllib.request

    (tmp_path / "token").write_text(A)
    server = serve(auth=TokenFile(tmp_path / "token"))
    req = urllib.request.Request(server.url + "/api/v1/argo/measure?namespace=ml")
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req, timeout=30)
    assert err.value.code == 401 and err.value.headers["WWW-Authenticate"].startswith("Bearer")
    assert "Authorization: Bearer" in json.loads(err.value.read())["error"]


# ---- the command -------------------------------------------------------------------------


def _argv(tmp_path: Path, *extra: str) -> list[str]:
    policy = tmp_path / "ml.yaml"
    policy.write_text(json.dumps(POLICY))
    return [str(Path(sys.executable).with_name("canary")), "serve", "--policy", str(policy), "--state-dir",
            str(tmp_path / "s"), "--prometheus-url", f"http://127.0.0.1:{free_port()}", "--log-format", "json",
            *extra]


def test_a_non_loopback_host_without_a_token_is_refused(tmp_path: Path) -> None:
    # 192.0.2.1 (TEST-NET-1) is no address of this machine: without the refusal the bind fails too,
    # with another message, so nothing here ever listens beyond loopback
    res = subprocess.run(_argv(tmp_path, "--host", "192.0.2.1", "--port", "0"), capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 2 and "--token-file" in res.stderr and "--allow-unauthenticated" in res.stderr, \
        res.stderr


@pytest.mark.parametrize("content", ["", "short", "has space in it but long enough"])
def test_a_token_file_that_holds_no_valid_token_exits_2_without_showing_it(tmp_path: Path, content: str) -> None:
    (tmp_path / "token").write_text(content)
    res = subprocess.run(_argv(tmp_path, "--port", "0", "--token-file", str(tmp_path / "token")),
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and "--token-file" in res.stderr, res.stderr
    assert not content or content not in res.stderr


def test_canary_serve_with_a_token_file_asks_every_call_for_it(tmp_path: Path) -> None:
    (tmp_path / "token").write_text(A + "\n")
    proc = subprocess.Popen(_argv(tmp_path, "--port", "0", "--token-file", str(tmp_path / "token")),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, "NO_COLOR": "1"})
    try:
        url = _event(proc, "serve.listening")["url"]
        assert call(url + "/healthz")[0] == 200
        assert call(url + "/api/v1/flagger/rollout", method="POST", raw=b"[]")[0] == 401
        assert call(url + "/api/v1/flagger/rollout", method="POST", raw=b"[]", headers=bearer(A))[0] == 400
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 0 and A.encode() not in err
        assert A not in " ".join(proc.args), "the token is never on the command line"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
