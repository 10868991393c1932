"""A small training reference against large live windows: how many captures read drifted for good
(decisions 74 and 86; docs/drift.md, section 1).

Per capture: a reference of `rows` values drawn from a distribution, then windows of `live` values
drawn from the *same* distribution, each compared through `compare.compare` as `drift check` does.
Over 200 seeded captures it prints the share of drifted windows and how many captures drifted in at
least half of their windows and in all of them. Averaged over captures the tests hold their 5%; one
capture is one fixed sample, and against windows far larger than it the test asks whether that
sample is typical. A reference of more than 1,000 values is judged by distances (threshold 0.1), far
above its own sampling noise. Prints one line per setting and exits 0:

    .venv/bin/python scripts/bench_drift_small_reference.py      # about 25 s
"""
import numpy as np
import pyarrow as pa

from canary.drift.compare import compare
from canary.drift.profile import capture


def categorical(rows: int, live: int, k: int = 10, captures: int = 200, windows: int = 6) -> str:
    rng = np.random.default_rng(6)
    p = rng.dirichlet(np.ones(k) * 2)
    cats = np.array([f"c{i}" for i in range(k)])
    per = []
    for _ in range(captures):
        prof = capture(pa.table({"f": rng.choice(cats, rows, p=p)}), model="m", version="v", file="t",
                       sha256="0" * 64)
        per.append(sum(compare(prof, {"f": {"categories": {cats[i]: int(c) for i, c in
                                                           enumerate(rng.multinomial(live, p))}}}).drifted
                       for _ in range(windows)))
    return _line(f"categorical, {k} categories", rows, live, np.array(per), windows)


def numeric(rows: int, live: int, captures: int = 200, windows: int = 8) -> str:
    rng = np.random.default_rng(5)
    per = []
    for _ in range(captures):
        prof = capture(pa.table({"f": rng.normal(0, 1, rows)}), model="m", version="v", file="t", sha256="0" * 64)
        b = np.asarray(prof["features"]["f"]["bounds"])
        hits = 0
        for _ in range(windows):
            y = rng.normal(0, 1, live)
            c = np.bincount(np.searchsorted(b, y, side="left"), minlength=len(b) + 1)
            hits += compare(prof, {"f": {"counts": c.tolist(), "sum": float(y.sum())}}).drifted
        per.append(hits)
    return _line("numeric, normal", rows, live, np.array(per), windows)


def _line(what: str, rows: int, live: int, per: np.ndarray, windows: int) -> str:
    return (f"{what:<27} reference {rows:>5,} rows, live {live:>7,}: windows drifted {per.mean() / windows:.3f}; "
            f"captures drifted in >= half of {windows} windows {int((per >= windows // 2).sum())}/{len(per)}, "
            f"in all {int((per == windows).sum())}/{len(per)}")


if __name__ == "__main__":
    for rows, live in ((1_000, 1_000), (1_000, 10_000), (1_000, 100_000), (1_001, 100_000)):
        print(categorical(rows, live), flush=True)
    for rows, live in ((1_000, 100_000), (1_001, 100_000)):
        print(numeric(rows, live), flush=True)
