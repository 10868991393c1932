"""How often one `canary drift check` reads dataset drift on unchanged traffic (docs/drift.md section 3).

A profile of 5,000 (or 800) training rows: one normal feature, or a normal and a 10-category one; 300
checks of same-distribution live windows of 150, 1,000 and 10,000 values each; printed, the share of
checks with dataset drift (exit 1). A cron of checks every 5 minutes pages that share x 288 times a day.

Usage: PYTHONPATH=. .venv/bin/python scripts/bench_drift_check_repeat.py     # about 1 min
"""

from __future__ import annotations

import numpy as np

from canary.drift.compare import compare
from canary.drift.profile import capture

CATS = list("abcdefghij")


def main(checks: int = 300, seed: int = 7) -> None:
    import pyarrow as pa

    rng = np.random.default_rng(seed)
    for n_ref in (5_000, 800):
        for n_features in (1, 2):
            cols: dict[str, object] = {"f0": rng.normal(0, 1, n_ref)}
            if n_features == 2:
                cols["f1"] = rng.choice(CATS, n_ref).tolist()
            prof = capture(pa.table(cols), model="m", version="v", file="t", sha256="0" * 64)
            for n in (150, 1_000, 10_000):
                hits = 0
                for _ in range(checks):
                    live: dict[str, dict[str, object]] = {}
                    for name, f in prof["features"].items():
                        if f["type"] == "numeric":
                            y, b = rng.normal(0, 1, n), np.asarray(f["bounds"])
                            live[name] = {"counts": np.bincount(np.searchsorted(b, y), minlength=len(b) + 1).tolist(),
                                          "sum": float(y.sum())}
                        else:
                            u, c = np.unique(rng.choice(CATS, n), return_counts=True)
                            live[name] = {"categories": dict(zip(u.tolist(), c.tolist()))}
                    r = compare(prof, live)
                    hits += r.share >= 0.5 and bool(r.drifted_features())
                print(f"reference {n_ref:,} rows, {n_features} feature(s), {n:,} live values: dataset drift in "
                      f"{hits}/{checks} checks ({hits / checks:.1%})", flush=True)


if __name__ == "__main__":
    main()
