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
    # 5,000 rollouts over two replicas, a shard each (the figures of the busiest replica, and each's)
    .venv/bin/python scripts/bench_controller.py --rollouts 5000 --replicas 2
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import yaml  # noqa: E402

from canary import logs  # noqa: E402
from canary.sandbox.promserver import PromServer, counter, free_port, gauge, histogram, history_window, openmetrics  # noqa: E402
from tests import fleet  # noqa: E402

# `--policy default` (the default): policies/default.yaml itself, its five checks (latency relative
# and absolute, error rate relative and a hard ceiling, prediction shift, missing features), steps,
# look period and look count, reading the model's own metrics (`metrics.source: model`), which the
# backfill below holds. `--policy two-checks`: the latency and error checks only, the policy of the
# rows measured before 2026-12-01 (docs/benchmarks/controller.md).
TWO_CHECKS = {
    "steps": [5, 10, 25, 50, 100],
    "analysis": {"interval": "5m", "look_every": "30s", "min_canary_requests": 500, "alpha": 0.01},
    "failure": {"max_failed_looks": 2, "no_data_deadline": "10m"},
    "metrics": {"source": "model"},
    "checks": [{"name": "latency-p95", "kind": "latency", "max_increase_pct": 20},
               {"name": "errors", "kind": "error_rate", "max_increase_points": 2}],
}
# x1.1 buckets from 10 ms to 310 ms, a layout that resolves the policy's tolerance (docs/reference/guarantees.md,
# `canary plan`): +20% can be shown (with the coarser layout of the rows before 2026-12-01, no step
# could pass, so every rollout stayed in its first step)
BOUNDS_S = tuple(round(0.01 * 1.1 ** k, 6) for k in range(37))
PREDICTION_BOUNDS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)  # the sandbox model's layout
FEATURES = 12  # feature values per request


def policy(name: str) -> dict:
    if name == "two-checks":
        return TWO_CHECKS
    from canary.policy_yaml import load_text

    raw = load_text((ROOT / "policies" / "default.yaml").read_text(), file="policies/default.yaml")
    raw["metrics"] = {**(raw.get("metrics") or {}), "source": "model"}
    return raw


def history(n: int, after_s: float) -> str:
    start, end = history_window(before_s=300, after_s=after_s, step=15.0)
    cdf = [0.5 * math.erfc(-math.log(b / 0.040) / 0.5 / math.sqrt(2)) for b in BOUNDS_S]  # lognormal, 40 ms median
    lat = [40.0 * (b - a) for a, b in zip([0.0, *cdf], [*cdf, 1.0])]  # 40 requests/s per version
    scores = [1.0, 2.0, 4.0, 6.0, 8.0, 8.0, 6.0, 3.0, 1.5, 0.5, 0.0]
    series = []
    for i in range(n):
        for version in ("v1", "v2"):
            m = {"model_name": fleet.model(i), "model_version": version}
            series += histogram("model_inference_duration_seconds", m, BOUNDS_S, lat)
            series += counter("model_requests_total", {**m, "outcome": "success"}, 40.0)
            series += counter("model_requests_total", {**m, "outcome": "error"}, 0.2)
            series += histogram("model_prediction_value", m, PREDICTION_BOUNDS, scores)
            series += gauge("model_feature_missing_rate", m, 0.01)
            series += counter("model_features_total", {**m, "state": "missing"}, 40.2 * FEATURES * 0.01)
            series += counter("model_features_total", {**m, "state": "present"}, 40.2 * FEATURES * 0.99)
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


def looks(api: object, n: int) -> tuple[int, int]:
    """(looks judged, steps and phases entered) so far, summed over the rollouts' recorded states
    (whichever annotation key): a state's `look` counts the whole rollout's looks, its `step` the
    steps begun, and a finished rollout counts its phase change once more."""
    total = moves = 0
    for i in range(n):
        vs = api.get("networking.istio.io", "virtualservices", "ml", fleet.model(i)) or {}  # type: ignore[attr-defined]
        notes = (vs.get("metadata") or {}).get("annotations") or {}
        text = notes.get("modelcanary.dev/rollout") or notes.get("canary.ml/rollout")
        if text:
            state = json.loads(text)
            total += int(state.get("look", 0))
            moves += int(state.get("step", 0)) + int(state.get("phase") in ("promoting", "promoted", "rolled_back", "aborted"))
    return total, moves


def calls(api: object) -> dict[str, int]:
    """Requests the emulator has answered, by "VERB resource" (e.g. "PUT virtualservices")."""
    handler = api.handler  # type: ignore[attr-defined]
    with handler.lock:
        got = dict(getattr(handler, "requests", {}))
    out: dict[str, int] = {}
    for (verb, plural), count in got.items():
        out[f"{verb} {plural}"] = out.get(f"{verb} {plural}", 0) + count
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rollouts", type=int, default=1000)
    ap.add_argument("--policy", choices=("default", "two-checks"), default="default",
                    help="default: policies/default.yaml's five checks; two-checks: latency and errors only")
    ap.add_argument("--seconds", type=float, default=120.0)
    ap.add_argument("--tick", type=float, default=5.0)
    ap.add_argument("--warmup", type=float, default=0.0, help="seconds before measuring (default: 2 ticks)")
    ap.add_argument("--replicas", type=int, default=1,
                    help="controller processes, --shards N --shard-index i each (one shard of the rollouts each)")
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
        obj["spec"]["policy"] = policy(args.policy)
        api.handler.put_object(obj)
    tmp = Path(prom._workdir)  # noqa: SLF001 - a scratch folder that is removed with Prometheus
    kubeconfig = tmp / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "c", "cluster": {"server": api.url}}], "users": [{"name": "u", "user": {}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}]}))
    root = args.controller_root.resolve()
    replicas = args.replicas
    ports = [free_port() for _ in range(replicas)]
    shard_args = lambda i: ["--shards", str(replicas), "--shard-index", str(i)] if replicas > 1 else []  # noqa: E731
    ctls = [subprocess.Popen(
        [sys.executable, "-m", "canary", "controller", "run", "--kubeconfig", str(kubeconfig), "-n", "ml",
         "--prometheus-url", prom.url, "--tick", str(args.tick), "--metrics-addr", f"127.0.0.1:{ports[i]}",
         "--log-format", "json", *shard_args(i), *args.controller_arg], stdout=subprocess.DEVNULL,
        stderr=open(tmp / f"controller-{i}.log", "wb"), cwd=root,
        env={"MALLOC_ARENA_MAX": "2", "MALLOC_MMAP_THRESHOLD_": "65536", **os.environ, "KUBECONFIG": "", "PYTHONPATH": str(root)})  # as the Deployment sets it
        for i in range(replicas)]
    urls = [f"http://127.0.0.1:{port}/metrics" for port in ports]
    try:
        for url in urls:
            for _ in range(200):
                try:
                    scrape(url)
                    break
                except OSError:
                    time.sleep(0.2)
        time.sleep(args.warmup or args.tick * 2)  # warm-up: first claims and first step-start snapshots
        cpu0 = [proc_stats(c.pid)[0] for c in ctls]
        own0, prom0 = time.process_time(), proc_stats(prom.pid)[0] if prom.pid else 0.0
        spy = None
        if args.profile:
            spy = subprocess.Popen(["py-spy", "record", "--pid", str(ctls[0].pid), "--duration", str(int(args.seconds)),
                                    "--rate", "50", "--nonblocking", "--gil", "--format", "raw", "--output", str(args.profile)],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        m0, t0, k0, (l0, s0) = [scrape(u) for u in urls], time.monotonic(), calls(api), looks(api, n)
        rss: list[list[float]] = [[] for _ in ctls]
        while time.monotonic() - t0 < args.seconds:
            time.sleep(2)
            for i, c in enumerate(ctls):
                rss[i].append(proc_stats(c.pid)[1])
        cpu1 = [proc_stats(c.pid)[0] for c in ctls]
        own1, prom1 = time.process_time(), proc_stats(prom.pid)[0] if prom.pid else 0.0
        if spy is not None:
            spy.wait(60)
        m1, t1, k1, (l1, s1) = [scrape(u) for u in urls], time.monotonic(), calls(api), looks(api, n)
        looked, moved, wall = l1 - l0, s1 - s0, t1 - t0
        kube = {call: k1.get(call, 0) - k0.get(call, 0) for call in sorted(k1) if k1.get(call, 0) != k0.get(call, 0)}

        def delta(i: int, name: str) -> float:
            return m1[i].get(name, 0.0) - m0[i].get(name, 0.0)

        ticks = [delta(i, "canary_tick_duration_seconds_count") for i in range(replicas)]
        tick_s = [delta(i, "canary_tick_duration_seconds_sum") / max(ticks[i], 1) for i in range(replicas)]
        queries = [delta(i, "canary_prometheus_queries_total") / max(ticks[i], 1) for i in range(replicas)]
        cores = [(cpu1[i] - cpu0[i]) / wall for i in range(replicas)]
        phases: dict[str, int] = {}
        for i in range(n):
            st = (api.get("modelcanary.dev", "canaryrollouts", "ml", f"r{i}") or {}).get("status") or {}
            phases[st.get("phase", "none")] = phases.get(st.get("phase", "none"), 0) + 1
        each = f", {replicas} replicas (--shards {replicas}, one shard each): worst replica" if replicas > 1 else ""
        print(f"rollouts {n}, policy {args.policy}, tick every {args.tick:g} s, measured {wall:.0f} s "
              f"(Prometheus backfill + start {setup_prom:.1f} s){each}")
        print(f"{'metric':<38} {'value':>12}")
        print("-" * 51)
        print(f"{'controller CPU (cores, average)':<38} {max(cores):>12.2f}")
        print(f"{'controller RSS MB (max)':<38} {max(max(r) for r in rss):>12.0f}")
        print(f"{'  RSS MB (median over the window)':<38} {max(statistics.median(r) for r in rss):>12.0f}")
        if replicas > 1:
            print(f"{'  per replica: cores':<38} {json.dumps([round(c, 2) for c in cores]):>12}")
            print(f"{'  per replica: RSS MB (max)':<38} {json.dumps([round(max(r)) for r in rss]):>12}")
        print(f"{'emulator + this script CPU (cores)':<38} {(own1 - own0) / wall:>12.2f}")
        print(f"{'Prometheus CPU (cores)':<38} {(prom1 - prom0) / wall:>12.2f}")
        print(f"{'load average (1 min) at the end':<38} {os.getloadavg()[0]:>12.2f}")
        print(f"{'ticks':<38} {min(ticks):>12.0f}")
        print(f"{'tick duration s (mean)':<38} {max(tick_s):>12.2f}")
        print(f"{'Prometheus queries per tick (mean)':<38} {max(queries):>12.1f}")
        print(f"{'looks judged per second':<38} {looked / wall:>12.1f}")
        per_look = f"{1000 * sum(cores) * wall / looked:.1f}" if looked else "-"
        print(f"{'  CPU per look (ms, all replicas)':<38} {per_look:>12}")
        total = sum(kube.values())
        print(f"{'Kubernetes calls per look':<38} {total / max(looked, 1):>12.2f}")
        print(f"{'  of which writes (PUT/PATCH/POST)':<38} "
              f"{sum(v for k, v in kube.items() if k.split()[0] in ('PUT', 'PATCH', 'POST')) / max(looked, 1):>12.2f}")
        for call, count in kube.items():
            print(f"{'  ' + call + ' per look':<38} {count / max(looked, 1):>12.3f}")
        # a look that changes nothing else writes its VirtualService and its status (2 calls): what is
        # above 2 per look is the cost of the steps and phases entered in the window (and of retries)
        print(f"{'steps/phases entered per look':<38} {moved / max(looked, 1):>12.3f}")
        if moved:
            print(f"{'  calls above 2/look per step entered':<38} {(total - 2 * looked) / moved:>12.2f}")
        print(f"{'rollouts by phase at the end':<38} {json.dumps(phases):>12}")
    finally:
        for c in ctls:
            c.terminate()
        for c in ctls:
            try:
                c.wait(15)
            except subprocess.TimeoutExpired:
                c.kill()
        api.stop()
        prom.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
