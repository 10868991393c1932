"""Shard failover: N shards over N+1 controller processes; one leader is SIGKILLed.

Real processes (`canary controller run --leader-elect --shards N`), the strict Kubernetes API
emulator and a real backfilled Prometheus in this process. Each shard's Lease is read from the
emulator every 20 ms. Reported: which replica led each shard before and after the kill, the
time from SIGKILL to another replica holding the killed one's shard (target: at most the lease
duration, plus a retry period), whether any other shard changed hands (must not), and double
writes: a status write of the killed replica's seen once a standby may lead (a lease duration
after the kill), or a rollout whose writer alternated between replicas (must be 0). Prints a table; exits 0.

    .venv/bin/python scripts/bench_shards.py --shards 2 --rollouts 20 --lease 3 --renew 2 --retry 0.5
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from canary import logs  # noqa: E402
from canary import shards as sh  # noqa: E402
from canary.sandbox.kubeapi import Resource  # noqa: E402
from canary.sandbox.promserver import PromServer  # noqa: E402
from tests import fleet  # noqa: E402


def holders(api: object, shards: int) -> dict[int, str]:
    out = {}
    for i in range(shards):
        lease = api.get("coordination.k8s.io", "leases", "canary-system", sh.lease_name("canary-controller", i, shards))  # type: ignore[attr-defined]
        out[i] = ((lease or {}).get("spec") or {}).get("holderIdentity") or ""
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shards", type=int, default=2)
    ap.add_argument("--rollouts", type=int, default=20)
    ap.add_argument("--lease", type=float, default=3.0)
    ap.add_argument("--renew", type=float, default=2.0)
    ap.add_argument("--retry", type=float, default=0.5)
    ap.add_argument("--after", type=float, default=20.0, help="seconds watched after the kill")
    args = ap.parse_args()
    logs.configure(fmt="console", level="warning")
    n = args.rollouts
    prom = PromServer(history=fleet.history(n, after_s=900), binary="prometheus").start()
    api = fleet.start_api(n)
    api.handler.register(Resource("coordination.k8s.io", "leases", "Lease", ("v1",)))
    for i in range(n):
        obj = fleet.rollout_object(i, "v2")
        obj["spec"]["policy"]["analysis"]["interval"] = "120s"  # still running when the replica dies
        api.handler.put_object(obj)
    tmp = Path(prom._workdir)  # noqa: SLF001 - removed with Prometheus
    kubeconfig = fleet.write_kubeconfig(tmp / "kubeconfig", api.url)
    names = [f"replica-{k}" for k in range(args.shards + 1)]
    procs = {name: subprocess.Popen(
        [sys.executable, "-m", "canary", "controller", "run", "--kubeconfig", str(kubeconfig), "-n", "ml",
         "--prometheus-url", prom.url, "--tick", "0.5", "--metrics-addr", "", "--leader-elect",
         "--lease-namespace", "canary-system", "--shards", str(args.shards), "--identity", name,
         "--lease-duration", f"{args.lease}s", "--renew-deadline", f"{args.renew}s", "--retry-period", f"{args.retry}s"],
        stdout=subprocess.DEVNULL, stderr=open(tmp / f"{name}.log", "wb"), cwd=ROOT, env={**os.environ, "KUBECONFIG": ""})
        for name in names}
    writers: dict[str, list[tuple[float, str]]] = {f"r{i}": [] for i in range(n)}

    def sample() -> None:
        now = time.monotonic()
        for name, seen in writers.items():
            st = (api.get("modelcanary.dev", "canaryrollouts", "ml", name) or {}).get("status") or {}
            who = st.get("leader", "")
            rv = (api.get("modelcanary.dev", "canaryrollouts", "ml", name) or {}).get("metadata", {}).get("resourceVersion")
            if who and (not seen or seen[-1][1] != f"{who}@{rv}"):
                seen.append((now, f"{who}@{rv}"))

    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # every shard led, every rollout started
            held = holders(api, args.shards)
            phases = [((api.get("modelcanary.dev", "canaryrollouts", "ml", f"r{i}") or {}).get("status") or {}).get("phase")
                      for i in range(n)]
            if all(held.values()) and all(p == "progressing" for p in phases):
                break
            time.sleep(0.2)
        before = holders(api, args.shards)
        time.sleep(3)
        for _ in range(10):
            sample()
            time.sleep(0.1)
        lost = 0
        victim = before[lost]
        procs[victim].send_signal(signal.SIGKILL)
        killed = time.monotonic()
        moved = None
        while time.monotonic() - killed < args.after:
            held = holders(api, args.shards)
            if moved is None and held[lost] not in ("", victim):
                moved = time.monotonic() - killed
            sample()
            time.sleep(0.02)
        after = holders(api, args.shards)
        # a write of the victim's may still land after the kill (sent before it), but never once a
        # standby may lead (the lease's duration after the kill, at the latest)
        late = sum(1 for seen in writers.values() for t, w in seen if t > killed + args.lease and w.startswith(victim + "@"))
        alternations = 0
        for seen in writers.values():
            who = [w.split("@")[0] for _, w in seen]
            changes = sum(1 for a, b in zip(who, who[1:]) if a != b)
            alternations += max(0, changes - 1)  # one hand-over is expected for the lost shard's rollouts
        others_moved = [i for i in range(args.shards) if i != lost and before[i] != after[i]]
        print(f"shards {args.shards}, replicas {len(names)}, rollouts {n}, lease {args.lease:g} s, renew deadline "
              f"{args.renew:g} s, retry {args.retry:g} s")
        print(f"{'metric':<44} {'value':>24}")
        print("-" * 69)
        print(f"{'leaders before':<44} {json.dumps(before):>24}")
        print(f"{'leaders after':<44} {json.dumps(after):>24}")
        print(f"{'SIGKILL -> shard led by another replica, s':<44} {moved if moved is None else round(moved, 2)!s:>24}")
        print(f"{'other shards that changed leader':<44} {len(others_moved):>24}")
        print(f"{'writes by the killed one after lease expiry':<44} {late:>24}")
        print(f"{'rollouts whose writer alternated':<44} {alternations:>24}")
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.terminate()
        for p in procs.values():
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
        api.stop()
        prom.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
