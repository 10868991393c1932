"""The long-running controller at scale: N concurrent CanaryRollouts (default 1,000).

Real Prometheus (backfilled, 15 s resolution) and the strict Kubernetes API
emulator (in this process); the controller runs as its own process
(`canary controller run`), so its CPU and RSS are measured alone (from /proc).
Prometheus queries per tick are counted from the controller's own /metrics;
Kubernetes calls (every request the emulator receives: GET, LIST, WATCH, PUT,
PATCH, POST) per look from the emulator's own counters and the looks recorded
in the VirtualServices' rollout annotations. Prints a table; exits 0.

    .venv/bin/python scripts/bench_controller.py --rollouts 1000 --seconds 120
    # the controller of another checkout (a "before" figure), against this emulator:
    .venv/bin/python scripts/bench_controller.py --rollouts 1000 --controller-root /tmp/before
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import yaml  # noqa: E402

from canary import logs  # noqa: E402
from canary.sandbox.promserver import PromServer, counter, free_port, histogram, history_window, openmetrics  # noqa: E402
from tests import fleet  # noqa: E402

# policies/default.yaml's steps, look period, interval and request floor (10 looks a step, 40 a
# rollout); its latency and error checks on the model source the backfill holds
POLICY = {
    "steps": [5, 10, 25, 50, 100],
    "analysis": {"interval": "5m", "look_every": "30s", "min_canary_requests": 500, "alpha": 0.01},
    "failure": {"max_failed_looks": 2, "no_data_deadline": "10m"},
    "metrics": {"source": "model"},
    "checks": [{"name": "latency-p95", "kind": "latency", "max_increase_pct": 20},
               {"name": "errors", "kind": "error_rate", "max_increase_points": 2}],
}
BOUNDS_S = (0.005, 0.01, 0.02, 0.03, 0.04, 0.05, 0.06, 0.08, 0.1, 0.15, 0.2, 0.3)


def history(n: int, after_s: float) -> str:
    start, end = history_window(before_s=300, after_s=after_s, step=15.0)
    lat = [2.0, 3.0, 6.0, 7.0, 6.0, 5.0, 4.0, 3.0, 2.0, 1.0, 0.6, 0.3, 0.1]
    series = []
    for i in range(n):
        for version in ("v1", "v2"):
            m = {"model_name": fleet.model(i), "model_version": version}
            series += histogram("model_inference_duration_seconds", m, BOUNDS_S, lat)
            series += counter("model_requests_total", {**m, "outcome": "success"}, 40.0)
            series += counter("model_requests_total", {**m, "outcome": "error"}, 0.2)
    return openmetrics(series, start=start, end=end, step=15.0)


def proc_stats(pid: int) -> tuple[float, float]:
    """(cpu seconds user+system, RSS MB) of one process, from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        parts = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(parts[11]) + int(parts[12])) / ticks
    with open(f"/proc/{pid}/status") as f:
        rss = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) / 1024
    return cpu, rss


def scrape(url: str) -> dict[str, float]:
    out: dict[str, float] = {}
    with urllib.request.urlopen(url, timeout=5) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(("canary_tick_duration_seconds_count", "canary_tick_duration_seconds_sum",
                                "canary_prometheus_queries_total", "canary_tick_rollouts")):
                name, value = line.rsplit(" ", 1)
                out[name.split("{")[0]] = float(value)
    return out


def looks(api: object, n: int) -> int:
    """Looks judged so far, summed over the rollouts' recorded states (whichever annotation key)."""
    total = 0
    for i in range(n):
        vs = api.get("networking.istio.io", "virtualservices", "ml", fleet.model(i)) or {}  # type: ignore[attr-defined]
        notes = (vs.get("metadata") or {}).get("annotations") or {}
        text = notes.get("modelcanary.dev/rollout") or notes.get("canary.ml/rollout")
        if text:
            total += int(json.loads(text).get("look", 0))
    return total


def calls(api: object) -> dict[str, int]:
    handler = api.handler  # type: ignore[attr-defined]
    with handler.lock:
        got = dict(getattr(handler, "requests", {}))
    out: dict[str, int] = {}
    for (verb, _), count in got.items():
        out[verb] = out.get(verb, 0) + count
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rollouts", type=int, default=1000)
    ap.add_argument("--seconds", type=float, default=120.0)
    ap.add_argument("--tick", type=float, default=5.0)
    ap.add_argument("--warmup", type=float, default=0.0, help="seconds before measuring (default: 2 ticks)")
    ap.add_argument("--controller-root", type=Path, default=ROOT, help="checkout whose controller runs")
    ap.add_argument("--controller-arg", action="append", default=[], help="extra argument for controller run")
    ap.add_argument("--profile", type=Path, help="record the controller with py-spy over the window: raw stacks of the thread holding the GIL (its CPU)")
    args = ap.parse_args()
    logs.configure(fmt="console", level="warning")
    n = args.rollouts
    t = time.monotonic()
    prom = PromServer(history=history(n, after_s=max(900.0, args.seconds * 2 + 300)), binary="prometheus").start()
    setup_prom = time.monotonic() - t
    api = fleet.start_api(n)
    for i in range(n):
        obj = fleet.rollout_object(i, "v2")
        obj["spec"]["policy"] = POLICY
        api.handler.put_object(obj)
    tmp = Path(prom._workdir)  # noqa: SLF001 - a scratch folder that is removed with Prometheus
    kubeconfig = tmp / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "c", "cluster": {"server": api.url}}], "users": [{"name": "u", "user": {}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}]}))
    port = free_port()
    root = args.controller_root.resolve()
    ctl = subprocess.Popen(
        [sys.executable, "-m", "canary", "controller", "run", "--kubeconfig", str(kubeconfig), "-n", "ml",
         "--prometheus-url", prom.url, "--tick", str(args.tick), "--metrics-addr", f"127.0.0.1:{port}",
         "--log-format", "json", *args.controller_arg], stdout=subprocess.DEVNULL,
        stderr=open(tmp / "controller.log", "wb"), cwd=root, env={"MALLOC_ARENA_MAX": "2", **os.environ, "KUBECONFIG": "", "PYTHONPATH": str(root)})  # as the Deployment sets it
    metrics_url = f"http://127.0.0.1:{port}/metrics"
    try:
        for _ in range(200):
            try:
                scrape(metrics_url)
                break
            except OSError:
                time.sleep(0.2)
        time.sleep(args.warmup or args.tick * 2)  # warm-up: first claims and first step-start snapshots
        cpu0, _ = proc_stats(ctl.pid)
        own0, prom0 = time.process_time(), proc_stats(prom.pid)[0] if prom.pid else 0.0
        spy = None
        if args.profile:
            spy = subprocess.Popen(["py-spy", "record", "--pid", str(ctl.pid), "--duration", str(int(args.seconds)),
                                    "--rate", "50", "--nonblocking", "--gil", "--format", "raw", "--output", str(args.profile)],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        m0, t0, k0, l0 = scrape(metrics_url), time.monotonic(), calls(api), looks(api, n)
        rss = []
        while time.monotonic() - t0 < args.seconds:
            time.sleep(2)
            rss.append(proc_stats(ctl.pid)[1])
        cpu1, _ = proc_stats(ctl.pid)
        own1, prom1 = time.process_time(), proc_stats(prom.pid)[0] if prom.pid else 0.0
        if spy is not None:
            spy.wait(60)
        m1, t1, k1, l1 = scrape(metrics_url), time.monotonic(), calls(api), looks(api, n)
        looked = l1 - l0
        kube = {verb: k1.get(verb, 0) - k0.get(verb, 0) for verb in sorted(k1)}
        ticks = m1["canary_tick_duration_seconds_count"] - m0["canary_tick_duration_seconds_count"]
        tick_s = (m1["canary_tick_duration_seconds_sum"] - m0["canary_tick_duration_seconds_sum"]) / max(ticks, 1)
        queries = (m1.get("canary_prometheus_queries_total", 0) - m0.get("canary_prometheus_queries_total", 0)) / max(ticks, 1)
        phases: dict[str, int] = {}
        for i in range(n):
            st = (api.get("modelcanary.dev", "canaryrollouts", "ml", f"r{i}") or {}).get("status") or {}
            phases[st.get("phase", "none")] = phases.get(st.get("phase", "none"), 0) + 1
        print(f"rollouts {n}, tick every {args.tick:g} s, measured {t1 - t0:.0f} s (Prometheus backfill + start {setup_prom:.1f} s)")
        print(f"{'metric':<38} {'value':>12}")
        print("-" * 51)
        print(f"{'controller CPU (cores, average)':<38} {(cpu1 - cpu0) / (t1 - t0):>12.2f}")
        print(f"{'controller RSS MB (max)':<38} {max(rss):>12.0f}")
        print(f"{'emulator + this script CPU (cores)':<38} {(own1 - own0) / (t1 - t0):>12.2f}")
        print(f"{'Prometheus CPU (cores)':<38} {(prom1 - prom0) / (t1 - t0):>12.2f}")
        print(f"{'load average (1 min) at the end':<38} {os.getloadavg()[0]:>12.2f}")
        print(f"{'ticks':<38} {ticks:>12.0f}")
        print(f"{'tick duration s (mean)':<38} {tick_s:>12.2f}")
        print(f"{'Prometheus queries per tick (mean)':<38} {queries:>12.1f}")
        print(f"{'looks judged per second':<38} {looked / (t1 - t0):>12.1f}")
        print(f"{'Kubernetes calls per look':<38} {sum(kube.values()) / max(looked, 1):>12.2f}")
        print(f"{'  of which writes (PUT/PATCH/POST)':<38} "
              f"{sum(kube.get(v, 0) for v in ('PUT', 'PATCH', 'POST')) / max(looked, 1):>12.2f}")
        print(f"{'Kubernetes calls by verb':<38} {json.dumps(kube):>12}")
        print(f"{'rollouts by phase at the end':<38} {json.dumps(phases):>12}")
    finally:
        ctl.terminate()
        try:
            ctl.wait(15)
        except subprocess.TimeoutExpired:
            ctl.kill()
        api.stop()
        prom.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
