"""Judge speed: milliseconds per `judge(policy, measurements)` and per check (issue 9: <= 0.2 ms a check).

The controller judges every rollout at every look, so a judgement must stay cheap. This times one
look of realistic data for each check kind on its own, and for policies/default.yaml's five checks:

* latency (the default policy's `latency-p95`: p95, +20% and 250 ms) on x1.1 buckets from 1 ms
  (85 finite bounds: the layout a fine quantile needs) and on Istio's 19 default buckets;
* error rate (+1 point and a 10% ceiling);
* prediction shift (PSI 0.2 and JS 0.1 on 10 score buckets);
* the default policy, latency on Istio's buckets (its `source: istio`);
* latency on a Prometheus native histogram's schema-4 grid (188 bounds from 1 ms to 3.3 s).

Data as in bench_pass.py: latency lognormal (median 50 ms, sigma 0.5), stable 20,000 requests and
the canary 1,000 (5%), bucket counts Multinomial(n, bucket probabilities); 0.5% errors and 1%
missing features in both arms; predictions in 10 buckets of Beta(2, 5) in both arms. One window
(no prior), window 0; the pass-level boundary (cached per policy) is computed once before timing.

Timing: each case runs `--reps` batches of `--batch` judgements after a warm-up; a batch's time
over its size is one sample, and the tables show the median (and the 10th-90th percentile spread)
over samples: CPU time of the process (the cost of a judgement; a busy shared machine inflates it
least) and wall time.

`--baseline DIR` times the same cases on the `canary` package found in DIR as well (a copy of the
code before a change, e.g. `git archive HEAD canary | tar -x -C DIR` before committing it) and
adds its columns. The two run in subprocesses taking turns, `--rounds` times each with
reps/rounds batches, so that a load that comes and goes hits both alike. `--code DIR` times
DIR's package instead of this checkout's.

Usage: .venv/bin/python scripts/bench_judge.py [--reps 60] [--batch 20] [--baseline DIR [--rounds 6]] [--write]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve()
ISTIO_MS = (0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000, 600000,
            1800000, 3600000)  # envoy source/common/stats/histogram_impl.cc defaultBuckets
X11_MS = tuple(1.1 ** i for i in range(85))  # x1.1 from 1 ms to 3.3 s
# a Prometheus native histogram's schema-4 grid, 2^(i/16) s, from 1 ms to 3.3 s: 188 finite bounds,
# as `canary.metrics.native` hands it to the judge (every bound of the grid)
NATIVE4_MS = tuple(1000 * 2 ** (i / 16) for i in range(-160, 28))
N_STABLE, N_CANARY = 20_000, 1_000
CASES = ("latency, x1.1 buckets", "latency, Istio buckets", "error rate", "prediction shift",
         "default policy (5 checks)", "latency, native schema 4 grid")


def _arm_histogram(bounds: tuple[float, ...], probs: np.ndarray, n: int, rng: np.random.Generator):
    """A cumulative Prometheus histogram of n draws: bounds in ms (then +Inf), bucket probabilities."""
    from canary.model import Histogram

    cum = np.cumsum(rng.multinomial(n, probs))
    return Histogram((*map(float, bounds), math.inf), tuple(float(x) for x in cum))


def _latency(bounds: tuple[float, ...], rng: np.random.Generator) -> tuple:
    """(stable, canary) latency histograms: lognormal, median 50 ms, sigma 0.5, same in both arms."""
    from scipy import special

    cdf = special.ndtr(np.log(np.asarray(bounds) / 50.0) / 0.5)
    probs = np.diff(np.concatenate([[0.0], cdf, [1.0]]))
    return _arm_histogram(bounds, probs, N_STABLE, rng), _arm_histogram(bounds, probs, N_CANARY, rng)


def _predictions(rng: np.random.Generator) -> tuple:
    """(stable, canary) prediction histograms: 10 score buckets of Beta(2, 5), same in both arms."""
    from scipy import special

    edges = np.linspace(0.1, 0.9, 9)
    probs = np.diff(np.concatenate([[0.0], special.betainc(2, 5, edges), [1.0]]))
    return _arm_histogram(tuple(edges), probs, N_STABLE, rng), _arm_histogram(tuple(edges), probs, N_CANARY, rng)


def _counts(rate: float, rng: np.random.Generator) -> tuple:
    from canary.model import Counts

    return (Counts(float(rng.binomial(N_STABLE, rate)), float(N_STABLE)),
            Counts(float(rng.binomial(N_CANARY, rate)), float(N_CANARY)))


def cases(seed: int) -> dict[str, tuple]:
    """Case name -> (policy, measurements, checks judged)."""
    from canary.policy import load_policy

    rng = np.random.default_rng(seed)
    default = load_policy(HERE.parents[1] / "policies" / "default.yaml")
    by_name = {c.name: c for c in default.checks}

    def only(*checks) -> object:
        return default.model_copy(update={"checks": list(checks)})

    lat_x11, lat_istio = _latency(X11_MS, rng), _latency(ISTIO_MS, rng)
    err, miss, pred = _counts(0.005, rng), _counts(0.01, rng), _predictions(rng)
    error_check = by_name["errors"].model_copy(update={"max_rate_pct": 10.0})
    full = {"latency-p95": lat_istio, "errors": err, "errors-hard": err, "predictions": pred,
            "missing-features": miss}
    return {
        CASES[0]: (only(by_name["latency-p95"]), {"latency-p95": lat_x11}, 1),
        CASES[1]: (only(by_name["latency-p95"]), {"latency-p95": lat_istio}, 1),
        CASES[2]: (only(error_check), {"errors": err}, 1),
        CASES[3]: (only(by_name["predictions"]), {"predictions": pred}, 1),
        CASES[4]: (default, full, len(default.checks)),
        CASES[5]: (only(by_name["latency-p95"]), {"latency-p95": _latency(NATIVE4_MS, rng)}, 1),
    }


def measure(reps: int, batch: int, seed: int) -> dict[str, dict[str, list[float]]]:
    """Case name -> {"cpu": [...], "wall": [...]}: ms per judgement, one sample per batch of `batch`.

    "cpu" is this process's CPU time (time.process_time): what a judgement costs, and what a busy
    shared machine distorts least (not the time spent waiting for a core); "wall" the elapsed time.
    """
    from canary.analysis.judge import judge

    out = {}
    for name, (policy, measurements, _) in cases(seed).items():
        for _ in range(max(3, batch // 4)):  # warm-up: caches, first-call imports
            judge(policy, measurements)
        cpu, wall = [], []
        for _ in range(reps):
            c0, w0 = time.process_time(), time.perf_counter()
            for _ in range(batch):
                judge(policy, measurements)
            cpu.append((time.process_time() - c0) / batch * 1e3)
            wall.append((time.perf_counter() - w0) / batch * 1e3)
        out[name] = {"cpu": cpu, "wall": wall}
    return out


def measure_in_turns(codes: list[Path], args: argparse.Namespace) -> list[dict[str, dict[str, list[float]]]]:
    """`measure` for each code folder, in subprocesses taking turns `args.rounds` times; samples pooled."""
    pooled = [{name: {"cpu": [], "wall": []} for name in CASES} for _ in codes]
    reps = max(1, math.ceil(args.reps / args.rounds))
    for _ in range(args.rounds):
        for code, into in zip(codes, pooled):
            cmd = [sys.executable, str(HERE), "--code", str(code), "--json", "--reps", str(reps),
                   "--batch", str(args.batch), "--seed", str(args.seed)]
            got = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
            timed = Path(got.pop("code"))
            if not timed.is_relative_to(code):  # another canary package was found first
                raise SystemExit(f"timed {timed}, not the canary package in {code}")
            for name in CASES:
                for clock in ("cpu", "wall"):
                    into[name][clock] += got[name][clock]
    return pooled


def _cell(samples: list[float], checks: int) -> list[str]:
    """'median (p10-p90)' per judgement, and the median per check."""
    med, p10, p90 = np.median(samples), np.percentile(samples, 10), np.percentile(samples, 90)
    return [f"{med:.3f} ({p10:.3f}-{p90:.3f})", f"{med / checks:.3f}"]


def table(now: dict, before: dict | None, clock: str, seed: int) -> str:
    """Markdown table of one clock ("cpu" or "wall"): per case, ms per judgement and per check."""
    checks = {name: c for name, (_, _, c) in cases(seed).items()}
    head, rule = ["case", "checks"], ["---", "---:"]
    if before:
        head += ["before: ms/judge (p10-p90)", "before: ms/check"]
    head += ["ms/judge (p10-p90)", "ms/check"] + (["speed-up (medians)"] if before else [])
    rule += ["---:"] * (len(head) - 2)
    rows = ["| " + " | ".join(head) + " |", "|" + "|".join(rule) + "|"]
    for name in CASES:
        cells = [name, str(checks[name])]
        if before:
            cells += _cell(before[name][clock], checks[name])
        cells += _cell(now[name][clock], checks[name])
        if before:
            cells.append(f"{np.median(before[name][clock]) / np.median(now[name][clock]):.1f}x")
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=60, help="timed batches per case (the median is over these)")
    ap.add_argument("--batch", type=int, default=20, help="judgements per timed batch")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--baseline", type=Path, help="also time the canary package in this folder (before a change)")
    ap.add_argument("--rounds", type=int, default=6, help="with --baseline: turns each side takes")
    ap.add_argument("--code", type=Path, help="time the canary package in this folder instead of this checkout")
    ap.add_argument("--json", action="store_true", help="print the samples as JSON (for --baseline)")
    ap.add_argument("--write", action="store_true", help="write docs/benchmarks/judge_speed.md")
    args = ap.parse_args()
    sys.path.insert(0, str(args.code.resolve() if args.code else HERE.parents[1]))
    sys.path.insert(1, str(HERE.parent))
    import benchdoc

    from canary.analysis import stats

    benchdoc.quiet()
    if args.json:
        print(json.dumps({**measure(args.reps, args.batch, args.seed), "code": stats.__file__}))
        return 0
    t0, load0 = time.time(), os.getloadavg()[0]
    before = None
    if args.baseline:
        before, now = measure_in_turns([args.baseline.resolve(), HERE.parents[1]], args)
        reps = math.ceil(args.reps / args.rounds) * args.rounds
    else:
        now, reps = measure(args.reps, args.batch, args.seed), args.reps
    source = Path(stats.__file__).resolve().parents[2]
    intro = (f"Median over {reps} batches of {args.batch} judgements per case (p10-p90 of the batch means in "
             f"brackets), seed {args.seed}; code: {source}"
             + (f", before: {args.baseline} (taking turns, {args.rounds} rounds)" if before else "")
             + f". {time.time() - t0:.0f} s; load average {load0:.1f} at the start, "
             f"{os.getloadavg()[0]:.1f} at the end, {os.cpu_count()} CPUs.")
    body = (f"{intro}\n\nCPU time (what a judgement costs):\n\n{table(now, before, 'cpu', args.seed)}\n\n"
            f"Wall time (what it took here, waits for a core included):\n\n{table(now, before, 'wall', args.seed)}")
    print(body)
    if args.write:
        doc = __doc__.split("\n\n", 1)[1].rsplit("\n\nUsage:", 1)[0]
        print("wrote", benchdoc.write("judge_speed", title="Judge speed: ms per judgement and per check",
                                      body=f"{doc}\n\n{body}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
