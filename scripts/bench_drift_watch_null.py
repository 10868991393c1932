"""A continuous `drift watch` on same-distribution traffic: false drift episodes (each a retraining Job).

Every 5 minutes over the last hour (the defaults: --interval 5m, --window 1h, --enter-after 3,
--exit-after 3, --quiet 1h), Poisson traffic drawn from the training distribution itself, a
20,000-row profile of N(0, 1) features. Printed: the share of evaluations that read dataset drift
(each at most the tests' 5%) and the episodes opened, with the monitor as it is
(`canary.drift.monitor.step`). Also: how long after a real shift of every feature the first episode
opens, and how many episodes (retraining Jobs) a lasting drift near the threshold opens, and how long
its episode lasts after the drift stops (decision 97 (a)). Usage: PYTHONPATH=. .venv/bin/python scripts/bench_drift_watch_null.py [weeks]
"""

from __future__ import annotations

import sys

import numpy as np

from canary.drift import monitor as M
from canary.drift.compare import compare
from canary.drift.profile import capture


def run(features: int, per_hour: float, hours: int, *, shift: float = 0.0, shift_at_h: float = 0.0,
        shift_until_h: float = float("inf"), seed: int = 11,
        ended: list[float] | None = None) -> tuple[int, int, int, float | None]:
    """(evaluations, drifted evaluations, episodes, hours from the shift to the first episode). The
    shift lasts from `shift_at_h` to `shift_until_h`; `ended`, when given, gets the hours from then to
    each `drift.resolved` after it."""
    import pyarrow as pa

    rng = np.random.default_rng(seed)
    prof = capture(pa.table({f"f{i}": rng.normal(0, 1, 20_000) for i in range(features)}), model="m",
                   version="v", file="t.parquet", sha256="0" * 64)
    bounds = [np.asarray(prof["features"][f"f{i}"]["bounds"]) for i in range(features)]
    k, slots = len(bounds[0]) + 1, 12 * hours
    n = rng.poisson(per_hour / 12, slots)
    counts, sums = np.zeros((slots, features, k)), np.zeros((slots, features))
    for s in range(slots):
        for i in range(features):
            shifted = shift and 12 * shift_at_h <= s < 12 * shift_until_h
            y = rng.normal(shift if shifted else 0.0, 1, n[s])
            counts[s, i] = np.bincount(np.searchsorted(bounds[i], y, side="left"), minlength=k)
            sums[s, i] = y.sum()
    cfg, state = M.MonitorConfig(), M.MonitorState("m", "v")
    evaluations = drifted = episodes = 0
    first: float | None = None
    for s in range(12, slots):
        c, sm = counts[s - 12:s].sum(0), sums[s - 12:s].sum(0)
        result = compare(prof, {f"f{i}": {"counts": c[i].tolist(), "sum": float(sm[i])} for i in range(features)})
        state, actions = M.step(state, result, s * 300.0, cfg, window_s=3600)
        evaluations, drifted = evaluations + 1, drifted + int(result.drifted)
        if any(isinstance(a, M.Alert) and a.event == "drift.started" for a in actions):
            episodes += 1
            if first is None and shift:
                first = s / 12 - shift_at_h
        if ended is not None and s >= 12 * shift_until_h and any(
                isinstance(a, M.Alert) and a.event == "drift.resolved" for a in actions):
            ended.append(s / 12 - shift_until_h)
    return evaluations, drifted, episodes, first


def main() -> None:
    weeks = int(sys.argv[1]) if len(sys.argv) > 1 else 4
    print(f"same-distribution traffic, {weeks} weeks, every 5 min over the last hour")
    for features, per_hour in ((1, 150), (2, 150), (4, 150), (1, 400), (1, 2_000)):
        ev, dr, ep, _ = run(features, per_hour, 24 * 7 * weeks)
        print(f"  {features} feature(s), {per_hour:,} requests/h: {dr}/{ev} evaluations drifted ({dr / ev:.1%}); "
              f"{ep} false episodes")
    for features, shift in ((1, 0.5), (2, 0.3)):
        _, _, _, first = run(features, 150, 48, shift=shift, shift_at_h=24)
        print(f"  {features} feature(s), 150 requests/h, every feature shifted by {shift} std: first episode "
              f"{first:.1f} h after the shift" if first is not None else "no episode")
    print(f"a lasting drift near the threshold, {weeks} weeks (episodes: each a retraining Job; 1 is right), "
          "then a day after it stops")
    for per_hour, shift in ((150, 0.3), (400, 0.2), (2_000, 0.12)):
        ended: list[float] = []
        ev, dr, ep, _ = run(1, per_hour, 24 * 7 * weeks + 24, shift=shift, shift_until_h=24 * 7 * weeks,
                            ended=ended)
        print(f"  1 feature, {per_hour:,} requests/h, shifted by {shift} std: {dr}/{ev} evaluations drifted; "
              f"{ep} episode(s); " + (f"it ended {ended[0]:.1f} h after the drift stopped" if ended else "none ended"))


if __name__ == "__main__":
    main()
