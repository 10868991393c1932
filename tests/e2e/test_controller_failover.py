"""Two controllers against one API: only the leader writes; the standby takes over
after the leader is SIGKILLed, and the rollouts finish correctly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest

from canary import crd
from canary import rollout as rl
from canary.logs import parse_json_lines
from tests import fleet
from tests.support.blackhole import BlackholeProxy, act_at_request, through

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]
ROOT = Path(__file__).resolve().parents[2]
N = 6
WRITES = {"subset.pointed", "rollout.started", "step.advanced", "rollout.promoting", "rollout.promoted",
          "rollback.completed", "weights.reasserted"}


def controller(identity: str, kubeconfig: Path, prom_url: str, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "canary", "controller", "run", "--kubeconfig", str(kubeconfig), "-n", "ml",
         "--prometheus-url", prom_url, "--tick", "0.3", "--metrics-addr", "", "--log-format", "json",
         "--leader-elect", "--lease-namespace", "ml", "--identity", identity,
         "--lease-duration", "3", "--renew-deadline", "2", "--retry-period", "0.3"],
        stdout=open(log, "wb"), stderr=subprocess.STDOUT, cwd=ROOT, env={**os.environ, "KUBECONFIG": ""})


def test_only_the_leader_writes_and_the_standby_takes_over(history_pool: Any, tmp_path: Path) -> None:
    prom = fleet.pooled_prometheus(history_pool, N)  # read only: shared, stopped with the run
    api = fleet.start_api(N)
    kubeconfig = fleet.write_kubeconfig(tmp_path / "kubeconfig", api.url)
    logs = {"a": tmp_path / "a.log", "b": tmp_path / "b.log"}
    # a reaches the API server through a proxy that kills it at a's first request once its log says a step
    # advanced, before that request is forwarded (`act_at_request`): a is then mid-rollout however loaded the
    # machine. Killed by the test's thread after polling the log, a could have ended every rollout first (a 5 s
    # interval a step): nothing left for b to write
    up = urlparse(api.url)
    tap = BlackholeProxy(up.hostname or "127.0.0.1", up.port or 80).start()
    procs = {"a": controller("a", through(tap, kubeconfig), prom.url, logs["a"])}
    killed_at: list[float] = []

    def kill_a() -> None:
        procs["a"].send_signal(signal.SIGKILL)
        killed_at.append(time.time())

    def wait_for(what: str, cond: Any) -> None:  # conditions, not sleeps: the test must not depend on timing
        deadline = time.monotonic() + 90
        while not cond():
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            time.sleep(0.1)

    def events(who: str) -> list[str]:
        return [e.get("event", "") for e in parse_json_lines(logs[who].read_text(errors="replace"))] \
            if logs[who].exists() else []

    try:
        wait_for("a to lead", lambda: "leader.acquired" in events("a"))
        mid_rollout = act_at_request(tap, lambda: "step.advanced" in events("a"), kill_a)
        procs["b"] = controller("b", kubeconfig, prom.url, logs["b"])
        wait_for("b to run as standby", lambda: "controller.started" in events("b"))
        for i in range(N):
            api.handler.put_object(fleet.rollout_object(i, "v2" if i % 2 == 0 else "v3"))
        mid_rollout(90)
        killed = killed_at[0]
        procs["a"].wait(10)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            sts = [(api.get(crd.GROUP, crd.PLURAL, "ml", f"r{i}") or {}).get("status") or {} for i in range(N)]
            if all(s.get("phase") in rl.TERMINAL for s in sts):
                break
            time.sleep(0.5)
        for i, s in enumerate(sts):
            assert s.get("phase") == fleet.expected_phase("v2" if i % 2 == 0 else "v3"), (i, s.get("phase"),
                                                                                          s.get("reason"))
        ev = {k: parse_json_lines(p.read_text(errors="replace")) for k, p in logs.items()}
        a_writes = [e for e in ev["a"] if e.get("event") in WRITES]
        b_writes = [e for e in ev["b"] if e.get("event") in WRITES]
        b_acquired = [e for e in ev["b"] if e.get("event") == "leader.acquired"]
        # on a failure, say what happened: both replicas' leadership changes and first/last writes
        story = "\n".join(f"{e.get('timestamp')} {who} {e.get('event')} {e.get('reason', '')}" for who in ("a", "b")
                          for e in ev[who] if str(e.get("event", "")).startswith("leader."))
        story += f"\nkilled a at {time.strftime('%H:%M:%S', time.gmtime(killed))}"
        for who, w in (("a", a_writes), ("b", b_writes)):
            if w:
                story += f"\n{who} writes: {len(w)}, first {w[0]['timestamp']}, last {w[-1]['timestamp']}"
        assert a_writes and b_writes and b_acquired, story
        first_b = min(e["timestamp"] for e in b_writes)
        assert first_b >= b_acquired[0]["timestamp"], story  # b wrote nothing while standby
        assert max(e["timestamp"] for e in a_writes) <= b_acquired[0]["timestamp"], story  # never both
        acquired_at = time.mktime(time.strptime(b_acquired[0]["timestamp"][:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone
        print(f"\nfailover: standby led {acquired_at - killed:.1f} s after the leader was SIGKILLed (lease 3 s)")
    finally:
        for p in procs.values():
            p.kill()
            p.wait(10)
        tap.stop()
        api.stop()
