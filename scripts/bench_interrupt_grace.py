"""Time from SIGTERM to the process's exit while the Kubernetes API fails, by `--interrupt-grace`.

A real `canary promote` process (real Prometheus with a backfilled history, the strict Kubernetes API
emulator behind a proxy, tests/support/blackhole.py). Once the canary has traffic (the
`step.advanced` line to 80/20), the proxy turns the API server into one that accepts and never
answers (`hung`) or answers every request 503 (`503`), SIGTERM arrives, and the time until the
process exits is measured from outside it, with its exit code (6: stable 100% could not be written,
`traffic.unsafe` said) and how many requests the hung server held. A grace of 1h stands for the
behaviour before the flag (decision 126). Prints a table, exits 0; with --write, writes
docs/benchmarks/interrupt_grace.md.

    .venv/bin/python scripts/bench_interrupt_grace.py --trials 2 --write
"""

from __future__ import annotations

import argparse
import math
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

import benchdoc  # noqa: E402

import yaml  # noqa: E402

from canary.sandbox.kubeapi import KubeAPIServer  # noqa: E402
from canary.sandbox.promserver import PromServer, history_window, openmetrics  # noqa: E402
from tests import fleet  # noqa: E402
from tests.integration.test_promote import POLICY, arm_series  # noqa: E402
from tests.support.blackhole import BlackholeProxy  # noqa: E402
from tests.support.kube import shipped_istio_objects  # noqa: E402

CASES = [("hung", "25s"), ("hung", "10s"), ("503", "25s"), ("503", "10s"), ("hung", "1h"), ("503", "1h")]
KILL_AFTER_S = 90.0  # SIGKILL this long after SIGTERM, as a CI with a generous grace would


def trial(fault: str, grace: str, policy: Path, prom_url: str, tmp: Path) -> dict[str, Any]:
    api = KubeAPIServer(seed=shipped_istio_objects()).start()
    up = urlparse(api.url)
    proxy = BlackholeProxy(up.hostname or "127.0.0.1", up.port or 80).start()
    proxy.answer = 503 if fault == "503" else None
    try:
        kubeconfig = fleet.write_kubeconfig(tmp / "kubeconfig", proxy.url)
        argv = [sys.executable, "-m", "canary", "promote", "rec-model", "--canary-version", "v2", "--policy",
                str(policy), "--namespace", "ml", "--kubeconfig", str(kubeconfig), "--output", "json",
                "--log-format", "json", "--interrupt-grace", grace]
        proc = subprocess.Popen(argv, cwd=ROOT, env={**os.environ, "KUBECONFIG": "", "CANARY_PROMETHEUS_URL": prom_url},
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            assert proc.stderr is not None
            for line in proc.stderr:
                if '"step.advanced"' in line and '"weights": "80/20"' in line:
                    break
            else:
                raise SystemExit(f"promote never split traffic: exit {proc.wait()}")
            proxy.blackhole = True
            proc.send_signal(signal.SIGTERM)
            t0 = time.monotonic()
            try:
                _, err = proc.communicate(timeout=KILL_AFTER_S)
            except subprocess.TimeoutExpired:  # as a CI with a generous grace would: SIGKILL, nothing said
                proc.kill()
                _, err = proc.communicate()
                return {"seconds": math.inf, "exit": "killed", "held": proxy.requests_held, "said": False}
            seconds = time.monotonic() - t0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        return {"seconds": seconds, "exit": proc.returncode, "held": proxy.requests_held,
                "said": '"traffic.unsafe"' in err}
    finally:
        proxy.stop()
        api.stop()


def _secs(value: float) -> str:
    return f"> {KILL_AFTER_S:.0f} (SIGKILL)" if math.isinf(value) else f"{value:.1f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--trials", type=int, default=2)
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()
    start, end = history_window(before_s=120, after_s=600 + 200 * args.trials * len(CASES), step=1.0)
    series = arm_series("v1", scale_s=0.040) + arm_series("v2", scale_s=0.040)
    prom = PromServer(history=openmetrics(series, start=start, end=end, step=1.0)).start()
    rows = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            policy = Path(tmp) / "policy.yaml"
            policy.write_text(yaml.safe_dump(POLICY))
            for fault, grace in CASES:
                got = [trial(fault, grace, policy, prom.url, Path(tmp)) for _ in range(args.trials)]
                for g in got:
                    print(f"{fault} {grace}: {g['seconds']:.1f} s exit {g['exit']} held {g['held']} "
                          f"traffic.unsafe said {g['said']}", flush=True)
                secs = [float(g["seconds"]) for g in got]
                rows.append(f"| {fault} | {grace} | {len(got)} | {_secs(statistics.median(secs))} | {_secs(max(secs))} | "
                            f"{', '.join(sorted({str(g['exit']) for g in got}))} | "
                            f"{sum(bool(g['said']) for g in got)} of {len(got)} | "
                            f"{max(int(g['held']) for g in got) if fault == 'hung' else '-'} |")
    finally:
        prom.stop()
    table = ("| Kubernetes API after the signal | --interrupt-grace | trials | median s to exit | max s | exit | "
             "`traffic.unsafe` said | requests held (max) |\n|---|---|---:|---:|---:|---|---|---:|\n" + "\n".join(rows))
    print(table)
    if args.write:
        benchdoc.write("interrupt_grace", title="SIGTERM to exit with a failing Kubernetes API, by --interrupt-grace",
                       body=("`canary promote` has split traffic (80/20) when the Kubernetes API server stops "
                             "answering (`hung`: it accepts connections and never answers) or answers every "
                             "request 503, and SIGTERM arrives. Seconds from SIGTERM to the process's exit, "
                             "measured outside it; exit 6 is `traffic.unsafe` said with the weights last known. "
                             "`1h` stands for the behaviour before the flag (decision 126): each request waited "
                             "out its 10 s timeout, retried; the process is killed 90 s after SIGTERM, as a CI "
                             "with a generous grace would (a pod's default is 30 s).\n\n"
                             + table))


if __name__ == "__main__":
    main()
