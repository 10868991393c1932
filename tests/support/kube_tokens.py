"""A kubeconfig whose credentials come from a real exec credential plugin, and the API emulator's check of them.

The plugin is a small Python script run by the kubernetes client as `aws eks get-token`,
`gke-gcloud-auth-plugin` or kubelogin are: each run hands out a new bearer token (`tok-1`, `tok-2`, ...),
with an `expirationTimestamp` when the test sets one, and exits 1 with a message on stderr while the test
makes it fail (an SSO session that expired). The emulator (`KubeAPIServer.handler.accept_tokens`) accepts a
token the plugin issued and the test has not revoked: `revoke()` is the API server ceasing to accept every
token handed out so far (expired or revoked), as happens mid-rollout to a CI job's token.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import yaml

PLUGIN = """#!{python} -S
import os
# A plugin that never answers (no network for the cloud's token service). Checked first, without `site` (-S: the
# script needs the standard library only) and with a bare fork for its helper: under load the plugin's Python
# start, imports and subprocess module outran the tests' 1 s bound, and the run was killed before it said its pids.
if os.path.exists(os.path.join({state!r}, "hang")):
    # a helper it started (a shell plugin's `curl`), in its process group; or in a session of its own (`setsid`)
    setsid = os.path.exists(os.path.join({state!r}, "setsid"))
    # the pids are written once the helper has left the group: the pipe's end closes at its exec (close-on-exec),
    # after its setsid; written before, a test could read the helper still in the plugin's group
    ready, told = os.pipe()
    helper = os.fork()
    if helper == 0:
        os.close(ready)
        if setsid:
            os.setsid()
        os.execvp("sleep", ["sleep", "600"])
    os.close(told)
    os.read(ready, 1)
    with open(os.path.join({state!r}, "hung"), "a") as f:
        f.write("%d %d\\n" % (os.getpid(), helper))
    import time
    time.sleep(600)
import datetime, json, pathlib, sys
state = pathlib.Path({state!r})
fail = state / "fail"
if fail.exists():
    with open(state / "failures", "a") as f:
        f.write("x")
    sys.stderr.write(fail.read_text())
    sys.exit(1)
n = int((state / "count").read_text() or "0") + 1 if (state / "count").exists() else 1
(state / "count").write_text(str(n))
token = "%s-%d" % ((state / "prefix").read_text() if (state / "prefix").exists() else "tok", n)
import time
with open(state / "issued", "a") as f:
    f.write("%s %r\\n" % (token, time.time()))
status = {{"token": token}}
if (state / "cert").exists():  # a plugin handing out a client certificate instead (`clientCertificateData`)
    status = {{"clientCertificateData": (state / "cert").read_text(), "clientKeyData": (state / "key").read_text()}}
if (state / "expires_in").exists():
    at = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=float((state / "expires_in").read_text()))
    status["expirationTimestamp"] = at.strftime("%Y-%m-%dT%H:%M:%SZ")
print(json.dumps({{"apiVersion": "client.authentication.k8s.io/v1", "kind": "ExecCredential", "status": status}}))
"""


class ExecTokens:
    """The plugin's state (under `state`) and the emulator's view of which tokens are good."""

    def __init__(self, state: Path, prefix: str = "tok") -> None:
        self.state = state
        state.mkdir(parents=True, exist_ok=True)
        if prefix != "tok":  # its tokens are `<prefix>-1`, ...: two plugins' tokens told apart
            (state / "prefix").write_text(prefix)
        self.plugin = state / "token-plugin"
        self.plugin.write_text(PLUGIN.format(python=sys.executable, state=str(state)))
        self.plugin.chmod(0o755)
        self.revoked: set[str] = set()
        self.refuse_all = False  # the identity itself revoked: no token is accepted, new ones neither
        self.lifetime_s: float | None = None  # the API server refuses a token this long after it was handed out

    def issued_at(self) -> dict[str, float]:
        """Each token handed out, with when (time.time())."""
        path = self.state / "issued"
        lines = path.read_text().splitlines() if path.exists() else []
        return {token: float(at) for token, at in (line.split() for line in lines)}

    def issued(self) -> list[str]:
        return list(self.issued_at())

    def accept(self, token: str | None) -> bool:
        at = self.issued_at().get(token or "")
        if self.refuse_all or at is None or token in self.revoked:
            return False
        return self.lifetime_s is None or time.time() - at < self.lifetime_s

    def revoke(self) -> None:
        """Every token handed out so far is refused from now on (the plugin's next run gives a good one)."""
        self.revoked.update(self.issued())

    def failures(self) -> int:
        """How many times the plugin was run while failing."""
        path = self.state / "failures"
        return len(path.read_text()) if path.exists() else 0

    def hang(self) -> None:
        """The plugin's next runs never answer (each adds its pid to `hung`)."""
        (self.state / "hang").write_text("")

    def detach_helper(self) -> None:
        """The helper a hung run starts leaves its process group: a session of its own (`setsid curl ...`)."""
        (self.state / "setsid").write_text("")

    def hung_pids(self) -> list[int]:
        """The pids of each hung run: the plugin's, and its helper's."""
        pids = self.state / "hung"
        return [int(pid) for pid in pids.read_text().split()] if pids.exists() else []

    def end_hung(self) -> None:
        """Kill the plugin left hanging, if any (its process outlives the canary that ran it)."""
        import os
        import signal

        for pid in self.hung_pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def fail(self, message: str | None) -> None:
        """The plugin exits 1 with `message` on stderr (None: it works again)."""
        path = self.state / "fail"
        if message is None:
            path.unlink(missing_ok=True)
        else:
            path.write_text(message)

    def expire_in(self, seconds: float | None) -> None:
        """Tokens handed out from now on carry `expirationTimestamp` now + `seconds` (None: none)."""
        path = self.state / "expires_in"
        if seconds is None:
            path.unlink(missing_ok=True)
        else:
            path.write_text(str(seconds))

    def hand_out_certificate(self, cert: str, key: str) -> None:
        """The plugin's next runs give this client certificate and key (PEM) instead of a token."""
        (self.state / "cert").write_text(cert)
        (self.state / "key").write_text(key)

    def kubeconfig(self, path: Path, server: str, *, namespace: str = "ml", ca: Path | None = None) -> Path:
        cluster: dict[str, Any] = {"server": server}
        if ca is not None:
            cluster["certificate-authority"] = str(ca)
        user: dict[str, Any] = {"exec": {"apiVersion": "client.authentication.k8s.io/v1", "command": str(self.plugin),
                                         "interactiveMode": "Never"}}
        path.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "ci",
            "clusters": [{"name": "ci", "cluster": cluster}],
            "users": [{"name": "ci", "user": user}],
            "contexts": [{"name": "ci", "context": {"cluster": "ci", "user": "ci", "namespace": namespace}}],
        }))
        return path


def proc_state(pid: int) -> str:
    """Process `pid`'s state letter from `/proc/<pid>/stat` ("R", "S", "T", "Z", ...), or "" where it is gone.
    A process being reaped reads as no file, as ESRCH, or as an empty text, by when the read lands: all three
    are "gone" (a CI run met the empty text)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rpartition(")")[2].split()
    except OSError:
        return ""
    return fields[0] if fields else ""


def dead(pid: int) -> bool:
    """Whether process `pid` is gone (or a zombie: killed, not yet reaped by whoever adopted it)."""
    return proc_state(pid) in ("", "Z", "X")


def all_dead(pids: list[int], bound_s: float = 30.0) -> bool:
    """Whether every one of `pids` is dead, waiting for it up to `bound_s` (a SIGKILLed process is dead a moment
    after the kill, once it has run its exit: only a process nobody killed reaches the bound)."""
    import time

    end = time.monotonic() + bound_s
    while not all(dead(pid) for pid in pids):
        if time.monotonic() > end:
            return False
        time.sleep(0.05)
    return True
