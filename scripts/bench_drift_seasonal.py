"""A feature with a daily cycle under a continuous `drift watch`: false drift episodes by `--window`.

The training data cover whole days, so the profile holds the day's mix; live traffic at any one hour
holds that hour's part of the cycle only. Each feature's value at hour h of the day is drawn from
N(A sin(2 pi h / 24), 1) (A = 0.5 or 1 std), the profile from 20,000 rows spread evenly over the day,
traffic Poisson at `per_hour` (its volume also follows the day: 0.5x at night to 1.5x at noon).
Every 5 minutes (the default --interval) the monitor (`canary.drift.monitor.step`, pure, as
`drift watch` runs it) reads the last `--window`; `--enter-after` and `--exit-after` 3, `--quiet` 1h.
Printed per window: the share of evaluations that read dataset drift, the episodes opened (each a
retraining Job) over the weeks run, and the hours until the first episode after every feature's
mean also moves by 0.5 std at day 8 (a real drift on top of the cycle).

Usage: PYTHONPATH=. .venv/bin/python scripts/bench_drift_seasonal.py [weeks]
"""

from __future__ import annotations

import sys

import numpy as np

from canary.drift import monitor as M
from canary.drift.compare import compare
from canary.drift.profile import capture

SLOT_S = 300.0  # the default --interval
PER_DAY = int(86_400 / SLOT_S)


def hour_of(slot: np.ndarray | int) -> np.ndarray | float:
    return (np.asarray(slot) * SLOT_S / 3600.0) % 24.0


def run(*, amplitude: float, window_h: float, per_hour: float, days: int, features: int = 2,
        shift: float = 0.0, shift_at_day: float = 0.0, enter_after: int = 3,
        seed: int = 5) -> tuple[int, int, int, float | None]:
    """(evaluations, drifted evaluations, episodes, hours from the shift to the first episode after it)."""
    import pyarrow as pa

    rng = np.random.default_rng(seed)
    train_h = rng.uniform(0, 24, 20_000)
    prof = capture(pa.table({f"f{i}": rng.normal(amplitude * np.sin(2 * np.pi * train_h / 24), 1)
                             for i in range(features)}), model="m", version="v", file="t.parquet", sha256="0" * 64)
    bounds = [np.asarray(prof["features"][f"f{i}"]["bounds"]) for i in range(features)]
    k, slots = len(bounds[0]) + 1, PER_DAY * days
    h = hour_of(np.arange(slots))
    n = rng.poisson(per_hour * SLOT_S / 3600 * (1 + 0.5 * np.sin(2 * np.pi * (h - 6) / 24)))
    counts, sums = np.zeros((slots, features, k)), np.zeros((slots, features))
    for s in range(slots):
        moved = shift if shift and s >= PER_DAY * shift_at_day else 0.0
        for i in range(features):
            y = rng.normal(amplitude * np.sin(2 * np.pi * h[s] / 24) + moved, 1, n[s])
            counts[s, i] = np.bincount(np.searchsorted(bounds[i], y, side="left"), minlength=k)
            sums[s, i] = y.sum()
    w = int(round(window_h * 3600 / SLOT_S))
    cfg, state = M.MonitorConfig(enter_after=enter_after), M.MonitorState("m", "v")
    evaluations = drifted = episodes = 0
    first: float | None = None
    cum_c, cum_s = np.cumsum(counts, 0), np.cumsum(sums, 0)
    for s in range(w, slots):
        c = cum_c[s - 1] - (cum_c[s - w - 1] if s - w - 1 >= 0 else 0)
        sm = cum_s[s - 1] - (cum_s[s - w - 1] if s - w - 1 >= 0 else 0)
        result = compare(prof, {f"f{i}": {"counts": c[i].tolist(), "sum": float(sm[i])} for i in range(features)})
        state, actions = M.step(state, result, s * SLOT_S, cfg, window_s=window_h * 3600)
        evaluations, drifted = evaluations + 1, drifted + int(result.drifted)
        if any(isinstance(a, M.Alert) and a.event == "drift.started" for a in actions):
            if shift and s >= PER_DAY * shift_at_day:
                if first is None:
                    first = (s - PER_DAY * shift_at_day) * SLOT_S / 3600
            else:
                episodes += 1
    return evaluations, drifted, episodes, first


def main() -> None:
    weeks = int(sys.argv[1]) if len(sys.argv) > 1 else 2
    days = 7 * weeks
    print(f"two features with a daily cycle, {weeks} week(s), every 5 min; episodes are false (the cycle is in "
          "the training data); 'alert' = hours to the first episode after a 0.5-std shift at day 8")
    print(f"| cycle amplitude | requests/h | --window | --enter-after | evaluations drifted | false episodes "
          f"in {days} days | alert after a 0.5-std shift |")
    print("|---|---:|---|---:|---:|---:|---:|")
    for amplitude in (0.0, 0.5, 1.0):  # 0: no cycle, the null of the windows themselves
        for per_hour in (150, 2_000):
            for window_h, enter in ((1, 3), (6, 3), (24, 3), (24, 1)):
                ev, dr, ep, _ = run(amplitude=amplitude, window_h=window_h, per_hour=per_hour, days=days,
                                    enter_after=enter)
                _, _, _, first = run(amplitude=amplitude, window_h=window_h, per_hour=per_hour, days=12,
                                     shift=0.5, shift_at_day=8, enter_after=enter, seed=6)
                alert = "none in 4 days" if first is None else f"{first:.1f} h"
                print(f"| {amplitude:g} std | {per_hour:,} | {window_h:g}h | {enter} | {dr}/{ev} ({dr / ev:.0%}) "
                      f"| {ep} | {alert} |", flush=True)


if __name__ == "__main__":
    main()
