"""Drift benchmark (issue 12): agreement with Evidently's data-drift preset, false alerts, time to alert, cost.

Runs in parts so that our code runs in the project venv and Evidently in a venv of its own (Evidently is
never a dependency of canary; this file imports nothing from canary in the `evidently` part):

    python3 -m venv /tmp/evenv && /tmp/evenv/bin/pip install evidently "pandas<3" pyarrow
    .venv/bin/python scripts/bench_drift.py generate --dir /tmp/drift_scen   # data + our verdicts
    /tmp/evenv/bin/python scripts/bench_drift.py evidently --dir /tmp/drift_scen   # Evidently's verdicts
    .venv/bin/python scripts/bench_drift.py compare --dir /tmp/drift_scen    # agreement tables
    .venv/bin/python scripts/bench_drift.py monitor                          # A/A week, time to alert
    .venv/bin/python scripts/bench_drift.py cost                             # compare() and observe() cost

or all of it: `.venv/bin/python scripts/bench_drift.py all --evidently-python /tmp/evenv/bin/python`.

generate: every scenario is a reference and a current table of seven features drawn from one
generator (deterministic seeds), written as Parquet. Our verdicts follow production exactly:
`canary.drift.profile.capture` on the reference Parquet; every current row through
`FeatureExporter.observe`; the exporter's own Prometheus families (`collect()`) answered to
`canary.drift.live.live_counts` by a stand-in Prometheus client (increase() over a window that holds
every observation = the counters); `canary.drift.compare.compare`. The offline path
(`FeatureExporter.live_counts()` -> compare) is recorded too.

evidently: `Report([DataDriftPreset()], include_tests=True).run(current, reference)` with default
settings (column types inferred by Evidently from the frames); a column drifts when its "Value Drift"
test fails. The legacy `DataDriftTable()` (`drift_detected`) is recorded as a second opinion.

monitor: the pure monitor (`canary.drift.monitor.step`, default MonitorConfig) evaluated every 5 min
over a 1 h window of live counts; requests per minute ~ Poisson(rps * 60), per-feature bucket counts
~ Multinomial over the population's probabilities of the profile's buckets (the generator's exact
CDFs, so the reference sample's own noise is part of the test).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DIR = Path("/tmp/drift_scen")
FEATURES = ("num_a", "num_b", "num_c", "cat", "bin", "low", "cnt")
CATS = ("a", "b", "c", "d", "e")
Z95 = 1.6448536269514722  # standard normal 95th percentile
Z80 = 0.8416212335729143


# ---------------------------------------------------------------------------------------------- data
@dataclass(frozen=True)
class Mods:
    """How a population differs from the base one (the reference is always the base)."""

    mean_a: float = 0.0  # num_a ~ Normal(50 + 10 mean_a, 10 scale_a)
    scale_a: float = 1.0
    mult_b: float = 1.0  # num_b ~ mult_b * LogNormal(3, 0.6)
    tail_c: float = 0.0  # num_c ~ Normal(100, 15); values above its 95th percentile move by + 15 tail_c
    cat_p: tuple[float, ...] = (0.35, 0.25, 0.2, 0.12, 0.08)  # a..e (a sixth share: new category "f")
    bin_p: float = 0.3  # bin: "yes" with this probability, else "no"
    low_p: tuple[float, ...] = (0.4, 0.3, 0.2, 0.1)  # low: int 0..3
    cnt_lam: float = 3.0  # cnt: min(Poisson(cnt_lam), 7): an integer with 8 values
    missing: tuple[tuple[str, float], ...] = ()  # (feature, share) missing completely at random
    mnar_a: bool = False  # num_a missing when above the base population's 80th percentile


BASE = Mods()


@dataclass(frozen=True)
class Scenario:
    name: str
    n_ref: int
    n_cur: int
    seed: int
    mods: Mods = BASE
    what: str = "no shift"
    changed: tuple[str, ...] = ()  # features whose present (non-missing) values change distribution

    @property
    def regime(self) -> str:
        return "small" if self.n_ref <= 1000 else "large"


def scenarios() -> list[Scenario]:
    L, S = 50_000, 500
    share = (0.2, 0.25, 0.2, 0.2, 0.15)
    new5 = (0.3325, 0.2375, 0.19, 0.114, 0.076, 0.05)
    new30 = tuple(p * 0.7 for p in BASE.cat_p) + (0.3,)
    mcar = (("num_a", 0.3), ("num_b", 0.1), ("cat", 0.3))
    s = [
        Scenario("aa_large_1", L, 10_000, 1),
        Scenario("aa_large_2", L, L, 2),
        Scenario("aa_large_3", 5_000, 2_000, 3),
        Scenario("mean_0.05sd", L, 10_000, 4, Mods(mean_a=0.05), "num_a mean +0.05 sd", ("num_a",)),
        Scenario("mean_0.08sd", L, 10_000, 5, Mods(mean_a=0.08), "num_a mean +0.08 sd (near 0.1)", ("num_a",)),
        Scenario("mean_0.12sd", L, 10_000, 6, Mods(mean_a=0.12), "num_a mean +0.12 sd (near 0.1)", ("num_a",)),
        Scenario("mean_small", L, 10_000, 7, Mods(mean_a=0.25, mult_b=1.1), "num_a +0.25 sd, num_b x1.1",
                 ("num_a", "num_b")),
        Scenario("mean_large", L, 10_000, 8, Mods(mean_a=1.0, mult_b=1.5), "num_a +1 sd, num_b x1.5",
                 ("num_a", "num_b")),
        Scenario("skew_x1.05", L, 10_000, 34, Mods(mult_b=1.05), "num_b (lognormal) x1.05 (exact 0.076)", ("num_b",)),
        Scenario("skew_x1.06", L, L, 35, Mods(mult_b=1.06), "num_b (lognormal) x1.06 (exact 0.091)", ("num_b",)),
        Scenario("var_wide", L, 10_000, 9, Mods(scale_a=1.5), "num_a sd x1.5", ("num_a",)),
        Scenario("var_narrow", L, 10_000, 10, Mods(scale_a=0.7), "num_a sd x0.7", ("num_a",)),
        Scenario("new_cat_5pct", L, 10_000, 11, Mods(cat_p=new5), "cat: new value f, 5%", ("cat",)),
        Scenario("new_cat_30pct", L, 10_000, 12, Mods(cat_p=new30), "cat: new value f, 30%", ("cat",)),
        Scenario("cat_share", L, 10_000, 13, Mods(cat_p=share), "cat shares move", ("cat",)),
        Scenario("missing_mcar", L, 10_000, 14, Mods(missing=mcar), "30% of num_a, cat, 10% num_b missing (MCAR)"),
        Scenario("missing_mnar", L, 10_000, 15, Mods(mnar_a=True), "num_a missing above its p80", ("num_a",)),
        Scenario("tail_4sd", L, 10_000, 16, Mods(tail_c=4.0), "num_c top 5% +4 sd", ("num_c",)),
        Scenario("tail_1sd", L, 10_000, 17, Mods(tail_c=1.0), "num_c top 5% +1 sd", ("num_c",)),
        Scenario("binary", L, 10_000, 18, Mods(bin_p=0.45), "bin yes 30% -> 45%", ("bin",)),
        Scenario("lowcard", L, 10_000, 19, Mods(low_p=(0.25, 0.25, 0.25, 0.25)), "low 4 values -> uniform", ("low",)),
        Scenario("int8_shift", L, 10_000, 20, Mods(cnt_lam=3.5), "cnt Poisson 3 -> 3.5 (8 values)", ("cnt",)),
        Scenario("aa_small_1", S, 500, 21),
        Scenario("aa_small_2", S, 500, 22),
        Scenario("aa_small_3", 800, 300, 23),
        Scenario("aa_small_4", 1_000, 1_000, 24),
        Scenario("s_mean", S, 500, 25, Mods(mean_a=0.3), "num_a +0.3 sd", ("num_a",)),
        Scenario("s_mean_large", S, 500, 26, Mods(mean_a=1.0, mult_b=1.5), "num_a +1 sd, num_b x1.5",
                 ("num_a", "num_b")),
        Scenario("s_var_wide", S, 500, 27, Mods(scale_a=1.5), "num_a sd x1.5", ("num_a",)),
        Scenario("s_new_cat", S, 500, 28, Mods(cat_p=new5), "cat: new value f, 5%", ("cat",)),
        Scenario("s_cat_share", S, 500, 29, Mods(cat_p=share), "cat shares move", ("cat",)),
        Scenario("s_binary", S, 500, 30, Mods(bin_p=0.45), "bin yes 30% -> 45% (z-test)", ("bin",)),
        Scenario("s_lowcard", S, 500, 31, Mods(low_p=(0.25, 0.25, 0.25, 0.25)), "low -> uniform (chi-square)",
                 ("low",)),
        Scenario("s_tail_4sd", S, 500, 32, Mods(tail_c=4.0), "num_c top 5% +4 sd", ("num_c",)),
        Scenario("s_missing", S, 500, 33, Mods(missing=mcar), "30% of num_a, cat, 10% num_b missing (MCAR)"),
    ]
    assert len({x.name for x in s}) == len(s)
    return s


def draw(n: int, rng: np.random.Generator, m: Mods) -> dict[str, tuple[np.ndarray, np.ndarray | None]]:
    """n rows of the population `m`: {feature: (values, missing mask or None)}."""
    z = rng.standard_normal(n)
    a = 50 + 10 * m.mean_a + 10 * m.scale_a * z
    b = m.mult_b * np.exp(3 + 0.6 * rng.standard_normal(n))
    c = 100 + 15 * rng.standard_normal(n)
    c = np.where(c > 100 + 15 * Z95, c + 15 * m.tail_c, c)
    keys = np.array(CATS + (("f",) if len(m.cat_p) == 6 else ()), dtype=object)
    cat = keys[rng.choice(len(keys), n, p=np.asarray(m.cat_p) / sum(m.cat_p))]
    binv = np.where(rng.random(n) < m.bin_p, "yes", "no").astype(object)
    low = rng.choice(4, n, p=np.asarray(m.low_p) / sum(m.low_p)).astype(np.int64)
    cnt = np.minimum(rng.poisson(m.cnt_lam, n), 7).astype(np.int64)
    out: dict[str, tuple[np.ndarray, np.ndarray | None]] = {
        "num_a": (a, None), "num_b": (b, None), "num_c": (c, None), "cat": (cat, None), "bin": (binv, None),
        "low": (low, None), "cnt": (cnt, None)}
    for name, q in m.missing:
        out[name] = (out[name][0], rng.random(n) < q)
    if m.mnar_a:
        out["num_a"] = (a, a > 50 + 10 * Z80)
    return out


def to_table(cols: dict[str, tuple[np.ndarray, np.ndarray | None]]) -> Any:
    import pyarrow as pa

    arrays = {}
    for name in FEATURES:
        values, mask = cols[name]
        if values.dtype == object:
            arrays[name] = pa.array(values.tolist(), type=pa.string(), mask=mask)
        else:
            arrays[name] = pa.array(values, mask=mask)
    return pa.table(arrays)


# ------------------------------------------------------------------------------------ our verdicts
class _Prometheus:
    """Answers live.live_counts' four queries from an exporter's own metric families: increase() over a
    window holding every observation since the exporter started is the counter itself. Each query
    gets the series of the metric it names, `sum by` the labels it groups by (the bucket, category,
    value-sum and missing counters), as Prometheus would answer them."""

    def __init__(self, exporter: Any) -> None:
        self.samples = [s for f in exporter.collect() for s in f.samples]

    def ask(self, query: str, **_: Any) -> list[dict[str, Any]]:
        import re

        metric = re.search(r"increase\((\w+)\{", query).group(1)  # type: ignore[union-attr]
        by = [b.strip() for b in re.search(r"sum by \(([^)]*)\)", query).group(1).split(",")]  # type: ignore[union-attr]
        return [{"metric": {k: s.labels[k] for k in by}, "value": [0, repr(s.value)]}
                for s in self.samples if s.name == metric and all(k in s.labels for k in by)]


def _verdicts(result: Any) -> dict[str, dict[str, Any]]:
    return {f.feature: {"test": f.test, "value": f.value, "threshold": f.threshold, "drifted": bool(f.drifted),
                        "psi": f.psi, "n_ref": f.n_reference, "n_cur": f.n_current} for f in result.features}


def generate(out: Path) -> None:
    import pyarrow.parquet as pq

    sys.path.insert(0, str(ROOT))
    from canary.drift.compare import compare
    from canary.drift.exporter import FeatureExporter
    from canary.drift.live import live_counts
    from canary.drift.profile import capture, file_sha256, read_table

    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    manifest, ours = [], {}
    print("| scenario | rows ref / cur | what changes | our drifted features (production path) |")
    print("|---|---:|---|---|")
    for sc in scenarios():
        d = out / sc.name
        d.mkdir(exist_ok=True)
        ref_p, cur_p = d / "reference.parquet", d / "current.parquet"
        pq.write_table(to_table(draw(sc.n_ref, np.random.default_rng([sc.seed, 0]), BASE)), ref_p)
        pq.write_table(to_table(draw(sc.n_cur, np.random.default_rng([sc.seed, 1]), sc.mods)), cur_p)
        prof = capture(read_table(ref_p), model="bench", version=sc.name, file=str(ref_p), sha256=file_sha256(ref_p))
        (d / "profile.json").write_text(json.dumps(prof), encoding="utf-8")
        ex = FeatureExporter(prof, registry=None)
        for row in read_table(cur_p).to_pylist():
            ex.observe(row)
        prod = compare(prof, live_counts(_Prometheus(ex), prof, model="bench", version=sc.name, window_s=3600))
        offline = compare(prof, ex.live_counts())
        ours[sc.name] = {"production": _verdicts(prod), "offline": _verdicts(offline),
                         "dataset_drift": bool(prod.drifted), "share": prod.share}
        manifest.append({"name": sc.name, "regime": sc.regime, "n_ref": sc.n_ref, "n_cur": sc.n_cur,
                         "seed": sc.seed, "what": sc.what, "changed": list(sc.changed)})
        print(f"| {sc.name} | {sc.n_ref:,} / {sc.n_cur:,} | {sc.what} | "
              f"{', '.join(prod.drifted_features()) or '-'} |", flush=True)
    (out / "manifest.json").write_text(json.dumps({"features": FEATURES, "scenarios": manifest}, indent=1))
    (out / "ours.json").write_text(json.dumps(ours, indent=1))
    print(f"\n{len(manifest)} scenarios x {len(FEATURES)} features written to {out} in {time.time() - t0:.1f} s")


# --------------------------------------------------------------------------------------- Evidently
_METHODS = {"Wasserstein distance (normed)": "wasserstein", "Jensen-Shannon distance": "jensenshannon",
            "K-S p_value": "ks", "chi-square p_value": "chisquare", "Z-test p_value": "z"}


def evidently(src: Path) -> None:
    """Run in Evidently's venv: imports nothing from canary."""
    import warnings

    import evidently as ev
    import pandas as pd
    from evidently import Report
    from evidently.legacy.metrics import DataDriftTable
    from evidently.legacy.report import Report as LegacyReport
    from evidently.presets import DataDriftPreset

    warnings.filterwarnings("ignore")
    manifest = json.loads((src / "manifest.json").read_text())
    t0 = time.time()
    res: dict[str, Any] = {"version": ev.__version__, "pandas": pd.__version__, "numpy": np.__version__,
                           "scenarios": {}}
    for sc in manifest["scenarios"]:
        ref = pd.read_parquet(src / sc["name"] / "reference.parquet")
        cur = pd.read_parquet(src / sc["name"] / "current.parquet")
        snap = Report([DataDriftPreset()], include_tests=True).run(cur, ref).dict()
        per: dict[str, dict[str, Any]] = {}
        for m in snap["metrics"]:
            cfg = m["config"]
            if cfg.get("type", "").endswith("ValueDrift"):
                per[cfg["column"]] = {"method": _METHODS.get(cfg["method"], cfg["method"]), "score": m["value"],
                                      "threshold": cfg["threshold"]}
        for t in snap["tests"]:
            col = t.get("metric_config", {}).get("params", {}).get("column")
            if t.get("id") == "drift" and col in per:
                per[col]["drifted"] = t["status"] == "FAIL"
        legacy = LegacyReport(metrics=[DataDriftTable()])
        legacy.run(reference_data=ref, current_data=cur)
        table = legacy.as_dict()["metrics"][0]["result"]["drift_by_columns"]
        for col, v in table.items():
            per.setdefault(col, {})["legacy"] = {"method": _METHODS.get(v["stattest_name"], v["stattest_name"]),
                                                 "score": float(v["drift_score"]), "drifted": bool(v["drift_detected"]),
                                                 "type": v["column_type"]}
        res["scenarios"][sc["name"]] = per
        print(f"{sc['name']}: " + ", ".join(c for c, v in per.items() if v.get("drifted")), flush=True)
    res["seconds"] = time.time() - t0
    (src / "evidently.json").write_text(json.dumps(res, indent=1))
    print(f"Evidently {ev.__version__}: {len(manifest['scenarios'])} scenarios in {res['seconds']:.1f} s")


# -------------------------------------------------------------------------------------- agreement
def _fmt(test: str, v: float) -> str:
    return f"{test} {v:.3g}"


def _hint(o: dict[str, Any], e: dict[str, Any], sc: dict[str, Any], feature: str) -> str:
    if o["test"] != e["method"]:
        return f"different test: ours {o['test']}, Evidently {e['method']} (column type)"
    if feature == "num_c" and "tail" in sc["name"]:
        return "tail moved inside the top bucket (binning)"
    if o["test"] in ("wasserstein", "jensenshannon"):
        near = max(abs(o["value"] - 0.1), abs(e["score"] - 0.1)) < 0.03
    else:
        near = all(0.005 <= p <= 0.2 for p in (o["value"], e["score"]))
    return "both scores near the threshold" if near else "binned statistic vs raw data"


def agreement(src: Path) -> dict[str, Any]:
    manifest = json.loads((src / "manifest.json").read_text())
    ours = json.loads((src / "ours.json").read_text())
    evd = json.loads((src / "evidently.json").read_text())
    rows, dis = [], []
    n = {"all": [0, 0, 0, 0], "large": [0, 0, 0, 0], "small": [0, 0, 0, 0]}  # compared, agree preset, legacy, offline
    for sc in manifest["scenarios"]:
        for f in manifest["features"]:
            o, oo = ours[sc["name"]]["production"].get(f), ours[sc["name"]]["offline"].get(f)
            e = evd["scenarios"][sc["name"]].get(f)
            if o is None or e is None or "drifted" not in e:
                continue
            agree, lg = o["drifted"] == e["drifted"], o["drifted"] == e["legacy"]["drifted"]
            off = oo is not None and oo["drifted"] == e["drifted"]
            for k in ("all", sc["regime"]):
                n[k][0] += 1
                n[k][1] += agree
                n[k][2] += lg
                n[k][3] += off
            rows.append((sc, f, o, e, agree))
            if not agree:
                dis.append((sc, f, o, e))
    print("### Per-feature verdicts (D = drift)\n")
    print("| scenario | feature | ours | Evidently preset | Evidently legacy table | agree |")
    print("|---|---|---|---|---|:-:|")
    for sc, f, o, e, agree in rows:
        if not (o["drifted"] or e["drifted"] or e["legacy"]["drifted"] or not agree or f in sc["changed"]):
            continue  # quiet rows (no drift anywhere, feature not changed) are counted, not listed
        lg = e["legacy"]
        print(f"| {sc['name']} | {f} | {_fmt(o['test'], o['value'])} {'D' if o['drifted'] else '-'} | "
              f"{_fmt(e['method'], e['score'])} {'D' if e['drifted'] else '-'} | "
              f"{_fmt(lg['method'], lg['score'])} {'D' if lg['drifted'] else '-'} | {'yes' if agree else '**no**'} |")
    print("\n(rows where nobody saw drift and the scenario did not change the feature are counted but not listed)\n")
    print("### Agreement\n")
    print("| scenarios | per-feature verdicts | agree with the preset | rate | agree with the legacy DataDriftTable "
          "| rate | offline path (exporter.live_counts) agrees with the preset |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for k, label in (("large", "reference > 1,000 rows"), ("small", "reference <= 1,000 rows"), ("all", "all")):
        c, a, lg, off = n[k]
        print(f"| {label} | {c} | {a} | {a / max(c, 1):.1%} | {lg} | {lg / max(c, 1):.1%} | {off} ({off / max(c, 1):.1%}) |")
    print("\n### Disagreements with the preset\n")
    print("| scenario | feature | ours | Evidently | first guess (the page explains each) |")
    print("|---|---|---|---|---|")
    for sc, f, o, e in dis:
        print(f"| {sc['name']} | {f} | {_fmt(o['test'], o['value'])} {'D' if o['drifted'] else '-'} | "
              f"{_fmt(e['method'], e['score'])} {'D' if e['drifted'] else '-'} | {_hint(o, e, sc, f)} |")
    off_dis = [(sc["name"], f) for sc, f, o, e, _ in rows
               if ours[sc["name"]]["offline"].get(f, {}).get("drifted") != o["drifted"]]
    if off_dis:
        print("\nOffline path (FeatureExporter.live_counts -> compare) differs from the production path (Prometheus "
              "-> live.live_counts -> compare) on: " + ", ".join(f"{s}/{f}" for s, f in off_dis))
    binning_bias()
    print(f"\nEvidently {evd['version']} (pandas {evd['pandas']}, numpy {evd['numpy']}), its part took "
          f"{evd['seconds']:.0f} s")
    return {"counts": n, "disagreements": len(dis)}


def _exact_wasserstein(feature: str, m: Mods) -> float:
    """Population W1(base, m) / population sd of the base, by integrating |F_base - F_m| on a fine grid."""
    grid = {"num_a": np.linspace(-50, 150, 400_001), "num_b": np.linspace(0, 5_000, 2_000_001),
            "num_c": np.linspace(0, 400, 400_001)}[feature]
    sd = {"num_a": 10.0, "num_b": math.exp(3.18) * math.sqrt(math.exp(0.36) - 1), "num_c": 15.0}[feature]
    d = np.abs(_cdf(feature, grid, BASE) - _cdf(feature, grid, m))
    return float(np.sum((d[1:] + d[:-1]) / 2 * np.diff(grid))) / sd


def binning_bias() -> None:
    """Our Wasserstein over the profile's 20 buckets against the exact one, both on populations (no
    sampling noise on either side): what binning alone changes."""
    sys.path.insert(0, str(ROOT))
    from canary.drift.stats import numeric_drift

    prof = _profile_from(50_000, 1)
    cases = [("num_a", "mean +0.05 sd", Mods(mean_a=0.05)), ("num_a", "mean +0.1 sd", Mods(mean_a=0.1)),
             ("num_a", "mean +0.25 sd", Mods(mean_a=0.25)), ("num_a", "mean +1 sd", Mods(mean_a=1.0)),
             ("num_a", "sd x1.2", Mods(scale_a=1.2)), ("num_a", "sd x1.5", Mods(scale_a=1.5)),
             ("num_a", "sd x0.7", Mods(scale_a=0.7)), ("num_b", "x1.05", Mods(mult_b=1.05)),
             ("num_b", "x1.1", Mods(mult_b=1.1)), ("num_b", "x1.5", Mods(mult_b=1.5)),
             ("num_c", "top 5% +1 sd", Mods(tail_c=1.0)), ("num_c", "top 5% +4 sd", Mods(tail_c=4.0))]
    print("\n### Binning alone: Wasserstein / sd over the profile's buckets vs exact (populations, no noise)\n")
    print("| feature | change | exact (Evidently on infinite data) | ours over the profile's buckets | ratio | verdicts |")
    print("|---|---|---:|---:|---:|---|")
    for feat, what, m in cases:
        f = prof["features"][feat]
        ref, cur = bucket_probs(prof, BASE)[feat][2], bucket_probs(prof, m)[feat][2]
        ours = numeric_drift(feat, np.asarray(f["bounds"]), ref * 1e6, cur * 1e6, lo=f["min"], hi=f["max"],
                             std=f["std"], n_unique=f["n_unique"]).value
        exact = _exact_wasserstein(feat, m)
        v = ("same" if (ours >= 0.1) == (exact >= 0.1)
             else f"**differ** (ours {'drift' if ours >= 0.1 else 'none'})")
        print(f"| {feat} | {what} | {exact:.3f} | {ours:.3f} | {ours / exact:.2f} | {v} |")


# ---------------------------------------------------------------------------------------- monitor
def _cdf(feature: str, x: np.ndarray, m: Mods) -> np.ndarray:
    """P(X <= x) in the population `m` (exact)."""
    from scipy import stats as st

    x = np.asarray(x, float)
    if feature == "num_a":
        return st.norm.cdf(x, 50 + 10 * m.mean_a, 10 * m.scale_a)
    if feature == "num_b":
        return np.where(x > 0, st.norm.cdf((np.log(np.maximum(x, 1e-300) / m.mult_b) - 3) / 0.6), 0.0)
    if feature == "num_c":
        q = 100 + 15 * Z95
        below = st.norm.cdf(x, 100, 15)
        above = 0.95 + np.maximum(st.norm.cdf(x - 15 * m.tail_c, 100, 15) - 0.95, 0.0)
        return np.where(x < q, below, above) if m.tail_c > 0 else below
    if feature == "low":
        p = np.asarray(m.low_p) / sum(m.low_p)
        return np.array([p[: int(math.floor(v)) + 1].sum() if v >= 0 else 0.0 for v in x])
    if feature == "cnt":
        pmf = st.poisson.pmf(np.arange(7), m.cnt_lam)
        pmf = np.append(pmf, 1 - pmf.sum())
        return np.array([pmf[: min(int(math.floor(v)), 7) + 1].sum() if v >= 0 else 0.0 for v in x])
    raise KeyError(feature)


def bucket_probs(prof: dict[str, Any], m: Mods) -> dict[str, tuple[str, list[str], np.ndarray]]:
    """Per profiled feature: kind, the category keys (categorical), and the population's probability of
    each bucket the exporter counts (numeric: `le` buckets; categorical: the profile's categories + other)."""
    out = {}
    for name, f in prof["features"].items():
        if f["type"] == "numeric":
            cdf = _cdf(name, np.asarray(f["bounds"]), m)
            p = np.diff(np.concatenate([[0.0], cdf, [1.0]]))
            out[name] = ("numeric", [], np.maximum(p, 0) / np.maximum(p, 0).sum())
        else:
            keys = list(f["categories"])
            if name == "cat":
                pop = dict(zip(CATS + ("f",), np.asarray(m.cat_p) / sum(m.cat_p)))
            else:
                pop = {"yes": m.bin_p, "no": 1 - m.bin_p}
            known = [pop.get(k, 0.0) for k in keys]
            out[name] = ("categorical", keys, np.array(known + [max(1 - sum(known), 0.0)]))
    return out


def simulate(prof: dict[str, Any], *, rps: float, minutes: int, seed: int, shift_at_s: float | None = None,
             shift: Mods = BASE, stop_on_alert: bool = False, window_s: float = 3600, every_s: float = 300
             ) -> dict[str, Any]:
    """Minutes of traffic, evaluated every `every_s` over the last `window_s` by compare + monitor.step."""
    from canary.drift import monitor as M
    from canary.drift.compare import compare

    rng = np.random.default_rng(seed)
    base, shifted = bucket_probs(prof, BASE), bucket_probs(prof, shift)
    per_min = rng.poisson(rps * 60, minutes)
    counts = {}
    for name, (kind, keys, p) in base.items():
        c = np.zeros((minutes, len(p)), np.int64)
        for i in range(minutes):
            shifted_min = shift_at_s is not None and (i + 1) * 60 > shift_at_s
            if shifted_min and i * 60 < shift_at_s:  # the minute the shift starts in: part before, part after
                frac = ((i + 1) * 60 - shift_at_s) / 60
                k = rng.binomial(per_min[i], frac)
                c[i] = rng.multinomial(per_min[i] - k, p) + rng.multinomial(k, shifted[name][2])
            else:
                c[i] = rng.multinomial(per_min[i], shifted[name][2] if shifted_min else p)
        counts[name] = np.vstack([np.zeros((1, len(p)), np.int64), np.cumsum(c, axis=0)])
    cfg = M.MonitorConfig()
    state = M.MonitorState("bench", "v1", quiet_until=cfg.quiet_s)  # the version started serving at t = 0
    w, e = int(window_s // 60), int(every_s // 60)
    alerts, drifted_evals, evals, max_share = [], 0, 0, 0.0
    feat_drift = {n: 0 for n in base}
    for end in range(w, minutes + 1, e):
        now = end * 60.0
        live: dict[str, Any] = {}
        for name, (kind, keys, _) in base.items():
            win = counts[name][end] - counts[name][end - w]
            if kind == "numeric":
                live[name] = {"counts": [int(v) for v in win]}
            else:
                live[name] = {"categories": dict(zip(keys, (int(v) for v in win[:-1]))), "other": int(win[-1])}
        result = compare(prof, live)
        evals += 1
        drifted_evals += result.drifted
        max_share = max(max_share, result.share)
        for f in result.features:
            feat_drift[f.feature] += f.drifted
        state, actions = M.step(state, result, now, cfg, window_s=window_s)
        for a in actions:
            if isinstance(a, M.Alert) and a.event == "drift.started":
                alerts.append(now)
        if stop_on_alert and alerts:
            break
    return {"alerts": alerts, "evaluations": evals, "drifted_evaluations": drifted_evals, "max_share": max_share,
            "feature_drift_share": {k: v / max(evals, 1) for k, v in feat_drift.items()}}


def _profile_from(n: int, seed: int) -> dict[str, Any]:
    from canary.drift.profile import capture

    return capture(to_table(draw(n, np.random.default_rng([seed, 0]), BASE)), model="bench", version="v1",
                   file="generated", sha256="-")


SHIFT_STRONG = Mods(mean_a=1.0, mult_b=1.5, cat_p=tuple(p * 0.7 for p in BASE.cat_p) + (0.3,),
                    low_p=(0.1, 0.2, 0.3, 0.4))
SHIFT_MODERATE = Mods(mean_a=0.3, mult_b=1.2, cnt_lam=3.5, low_p=(0.25, 0.25, 0.25, 0.25))


def monitor(days: float, reps: int) -> dict[str, Any]:
    sys.path.insert(0, str(ROOT))
    from canary.drift.compare import compare

    t0 = time.time()
    out: dict[str, Any] = {"aa": [], "tta": []}
    profiles = {"50,000-row reference (distance tests)": _profile_from(50_000, 1),
                "500-row reference (p-value tests)": _profile_from(500, 21)}
    minutes = int(days * 24 * 60)
    print(f"### A/A: {days:g} days, an evaluation every 5 min over the last 1 h, default MonitorConfig\n")
    print("| profile | rps | evaluations | with dataset drift | max share | drift.started episodes | "
          "per feature: share of evaluations drifted |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for label, prof in profiles.items():
        for rps in (10, 100):
            r = simulate(prof, rps=rps, minutes=minutes, seed=1000 + rps)
            out["aa"].append({"profile": label, "rps": rps, **r})
            fd = ", ".join(f"{k} {v:.0%}" for k, v in r["feature_drift_share"].items() if v > 0) or "none"
            print(f"| {label} | {rps} | {r['evaluations']:,} | {r['drifted_evaluations']:,} | {r['max_share']:.2f} | "
                  f"**{len(r['alerts'])}** | {fd} |", flush=True)
    prof = profiles["50,000-row reference (distance tests)"]
    print(f"\n### Time from a shift's start to drift.started ({reps} runs each; shift at 3 h + a random second "
          f"of a 5-min evaluation interval)\n")
    for label, shift in (("strong", SHIFT_STRONG), ("moderate", SHIFT_MODERATE)):
        full = {f.feature: f"{f.test} {f.value:.2f}" for f in compare(prof, {
            n: ({"counts": list(p * 1e6)} if k == "numeric" else {"categories": dict(zip(keys, p[:-1] * 1e6)),
                                                                   "other": p[-1] * 1e6})
            for n, (k, keys, p) in bucket_probs(prof, shift).items()}).features if f.drifted}
        print(f"- {label} shift: {shift_text(shift)}; on a window full of shifted traffic: "
              + ", ".join(f"{k} {v}" for k, v in full.items()) + f" ({len(full)} of 7 features)")
    print("\n| shift | rps | median min | min | max | runs alerted |")
    print("|---|---:|---:|---:|---:|---:|")
    rng = np.random.default_rng(7)
    for label, shift in (("strong", SHIFT_STRONG), ("moderate", SHIFT_MODERATE)):
        for rps in (10, 100):
            ttas = []
            for r in range(reps):
                at = 3 * 3600 + float(rng.uniform(0, 300))
                res = simulate(prof, rps=rps, minutes=int(at // 60) + 180, seed=5000 + 100 * rps + r,
                               shift_at_s=at, shift=shift, stop_on_alert=True)
                after = [a for a in res["alerts"] if a >= at]
                if res["alerts"] and not after:
                    raise AssertionError("an alert before the shift")
                if after:
                    ttas.append((after[0] - at) / 60)
            out["tta"].append({"shift": label, "rps": rps, "minutes": ttas})
            q = (f"{np.median(ttas):.1f} | {min(ttas):.1f} | {max(ttas):.1f}" if ttas else "- | - | -")
            print(f"| {label} | {rps} | {q} | {len(ttas)}/{reps} |", flush=True)
    out["seconds"] = time.time() - t0
    print(f"\nmonitor part: {out['seconds']:.0f} s")
    return out


def shift_text(m: Mods) -> str:
    parts = []
    if m.mean_a:
        parts.append(f"num_a +{m.mean_a:g} sd")
    if m.mult_b != 1:
        parts.append(f"num_b x{m.mult_b:g}")
    if m.cat_p != BASE.cat_p:
        parts.append("cat shares " + "/".join(f"{p:.3g}" for p in m.cat_p)
                     + (" (f new)" if len(m.cat_p) == 6 else ""))
    if m.low_p != BASE.low_p:
        parts.append("low shares " + "/".join(f"{p:g}" for p in m.low_p))
    if m.cnt_lam != BASE.cnt_lam:
        parts.append(f"cnt Poisson {BASE.cnt_lam:g} -> {m.cnt_lam:g}")
    return ", ".join(parts)


# ------------------------------------------------------------------------------------------- cost
def cost(reps: int) -> dict[str, Any]:
    import gc
    import tracemalloc

    import pyarrow as pa

    sys.path.insert(0, str(ROOT))
    from canary.drift.compare import compare
    from canary.drift.exporter import FeatureExporter
    from canary.drift.profile import capture

    rng = np.random.default_rng(11)
    res: dict[str, Any] = {}

    def timed(fn: Any, n: int) -> tuple[float, float, float, float]:
        """Wall-clock median, p90 and fastest, and the median CPU time of this process (what a call costs
        when the machine is not shared: wall time on a loaded machine includes waiting for a core)."""
        for _ in range(5):
            fn()
        ts, cpu = [], []
        for _ in range(n):
            c, t = time.process_time(), time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t)
            cpu.append(time.process_time() - c)
        return float(np.median(ts)), float(np.percentile(ts, 90)), float(np.min(ts)), float(np.median(cpu))

    load = Path("/proc/loadavg").read_text().split()[:3] if Path("/proc/loadavg").exists() else ["?"] * 3
    print(f"### Cost of one drift evaluation (`compare`), {reps} timed calls each (load average {' '.join(load)} "
          f"on {os.cpu_count()} CPUs)\n")
    print("| profile | reference rows | tests | median ms | p90 ms | fastest ms | median CPU ms |")
    print("|---|---:|---|---:|---:|---:|---:|")
    try:  # the profile may add tail levels to the `buckets - 1` even ones: ask for what makes 20 buckets
        from canary.drift.profile import bucket_levels
        b20 = next(b for b in range(20, 1, -1) if len(bucket_levels(b)) == 19)
    except ImportError:
        b20 = 20
    for rows, buckets in ((50_000, b20), (500, b20), (50_000, 20)):
        cols = {f"f{i:02d}": rng.gamma(2.0 + i % 5, 1.0, rows) for i in range(50)}
        prof = capture(pa.table(cols), model="bench", version="v1", file="generated", sha256="-", buckets=buckets)
        k = {len(f["counts"]) for f in prof["features"].values()}
        if buckets == b20:
            assert k == {20}, k
        live = {n: {"counts": rng.multinomial(36_000, np.asarray(f["counts"]) / sum(f["counts"])).tolist()}
                for n, f in prof["features"].items()}
        med, p90, fast, cpu = timed(lambda: compare(prof, live), reps)
        tests = sorted({f.test for f in compare(prof, live).features})
        what = "x 20 buckets" if buckets == b20 else f"x {max(k)} buckets (capture's default, --buckets 20)"
        res[f"compare_50_{max(k)}_{rows}"] = med * 1e3
        print(f"| 50 numeric features {what} | {rows:,} | {', '.join(tests)} | {med * 1e3:.2f} | {p90 * 1e3:.2f} "
              f"| {fast * 1e3:.2f} | {cpu * 1e3:.2f} |")
        if rows == 50_000 and buckets == b20:  # what live.live_counts hands over: increase() floats, sum, missing
            prom = {n: {"counts": [float(x) * 1.0001 for x in c["counts"]],
                        "sum": float(prof["features"][n]["mean"]) * 36_000 * 1.01, "missing": 120.0}
                    for n, c in live.items()}
            med, p90, fast, cpu = timed(lambda: compare(prof, prom), reps)
            res["compare_50_20_prometheus"] = med * 1e3
            print(f"| 50 numeric features x 20 buckets, live as Prometheus answers (float counts, sum, missing) "
                  f"| {rows:,} | {', '.join(tests)} | {med * 1e3:.2f} | {p90 * 1e3:.2f} | {fast * 1e3:.2f} "
                  f"| {cpu * 1e3:.2f} |")
    cats = {f"c{i:02d}": rng.choice([f"v{j}" for j in range(19)], 50_000, p=rng.dirichlet(np.ones(19))).tolist()
            for i in range(50)}
    prof_c = capture(pa.table(cats), model="bench", version="v1", file="generated", sha256="-")
    live_c = {}
    for n, f in prof_c["features"].items():
        keys = list(f["categories"])
        c = rng.multinomial(36_000, np.array([f["categories"][k] for k in keys] + [f.get("other", 0)], float) / 50_000)
        live_c[n] = {"categories": dict(zip(keys, c[:-1].astype(float).tolist())), "other": float(c[-1]),
                     "missing": 10.0}
    med, p90, fast, cpu = timed(lambda: compare(prof_c, live_c), reps)
    tests = sorted({f.test for f in compare(prof_c, live_c).features})
    res["compare_50_categorical"] = med * 1e3
    print(f"| 50 categorical features x 19 values + other (with missing) | 50,000 | {', '.join(tests)} "
          f"| {med * 1e3:.2f} | {p90 * 1e3:.2f} | {fast * 1e3:.2f} | {cpu * 1e3:.2f} |")
    prof7 = _profile_from(50_000, 1)
    live7 = {}
    for n, (kind, keys, p) in bucket_probs(prof7, BASE).items():
        c = rng.multinomial(36_000, p)
        live7[n] = {"counts": c.tolist()} if kind == "numeric" else {"categories": dict(zip(keys, c[:-1].tolist())),
                                                                       "other": int(c[-1])}
    med, p90, fast, cpu = timed(lambda: compare(prof7, live7), reps)
    print(f"| the benchmark's 7 mixed features | 50,000 | wasserstein, jensenshannon | {med * 1e3:.2f} | {p90 * 1e3:.2f} "
          f"| {fast * 1e3:.2f} | {cpu * 1e3:.2f} |")

    print("\n### Exporter: cost per request and memory\n")
    print("| profile | observe() us per request: median (fastest) of batches of 2,000 | exporter arrays (bytes) | "
          "traced memory after 1e3 requests | after more | growth |")
    print("|---|---:|---:|---:|---:|---:|")
    cols = {f"f{i:02d}": rng.gamma(2.0 + i % 5, 1.0, 20_000) for i in range(50)}
    prof50 = capture(pa.table(cols), model="bench", version="v1", file="generated", sha256="-")
    for label, prof, gen in (("50 numeric features", prof50, lambda i: {k: float(v[i % 20_000]) for k, v in cols.items()}),
                             ("7 mixed features", prof7, None)):
        if gen is None:
            d = draw(20_000, np.random.default_rng(3), BASE)
            vals = {k: v.tolist() for k, (v, _) in d.items()}
            gen = lambda i, vals=vals: {k: v[i % 20_000] for k, v in vals.items()}  # noqa: E731
        ex = FeatureExporter(prof, registry=None)
        reqs = [gen(i) for i in range(2_000)]
        batch = []
        for _ in range(max(3, reps // 40)):
            t = time.perf_counter()
            for r in reqs:
                ex.observe(r)
            batch.append((time.perf_counter() - t) / len(reqs))
        us, us_min = float(np.median(batch)) * 1e6, float(np.min(batch)) * 1e6
        # bounds: a list of floats since the exporter bisects (8 B a value as float64), counts: an int64 array
        arrays = sum(8 * len(b) + c.nbytes for b, c, _ in ex._numeric.values())
        ncat = sum(len(c) for c in ex._categorical.values())
        del reqs
        gc.collect()
        ex = FeatureExporter(prof, registry=None)
        tracemalloc.start()
        n_small, n_big = 1_000, 100_000 if label.startswith("7") else 20_000
        for i in range(n_small):
            ex.observe(gen(i))
        gc.collect()
        m1 = tracemalloc.get_traced_memory()[0]
        for i in range(n_small, n_big):
            ex.observe(gen(i))
        gc.collect()
        m2 = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        res[f"observe_us_{label}"] = us
        res[f"mem_growth_{label}"] = m2 - m1
        print(f"| {label} | {us:.1f} ({us_min:.1f}) | {arrays:,} (+ {ncat} category counters) | {m1:,} B | {m2:,} B "
              f"(after {n_big:,}) | {m2 - m1:+,} B |", flush=True)
    return res


# ------------------------------------------------------------------------------------------- main
def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in ("generate", "evidently", "compare", "all"):
        p = sub.add_parser(name)
        p.add_argument("--dir", "--out", "--in", dest="dir", type=Path, default=DEFAULT_DIR)
        if name == "all":
            p.add_argument("--evidently-python", default="/tmp/evenv/bin/python")
            p.add_argument("--days", type=float, default=7.0)
            p.add_argument("--reps", type=int, default=20)
    pm = sub.add_parser("monitor")
    pm.add_argument("--days", type=float, default=7.0)
    pm.add_argument("--reps", type=int, default=20, help="runs per time-to-alert case")
    pc = sub.add_parser("cost")
    pc.add_argument("--reps", type=int, default=400)
    args = ap.parse_args()
    print(f"<!-- {platform.machine()}, Python {platform.python_version()}, {time.strftime('%Y-%m-%d %H:%M')}, "
          f"{' '.join(sys.argv[1:])} -->\n")
    t0 = time.time()
    if args.cmd == "generate":
        generate(args.dir)
    elif args.cmd == "evidently":
        evidently(args.dir)
    elif args.cmd == "compare":
        agreement(args.dir)
    elif args.cmd == "monitor":
        monitor(args.days, args.reps)
    elif args.cmd == "cost":
        cost(args.reps)
    else:
        generate(args.dir)
        subprocess.run([args.evidently_python, str(Path(__file__).resolve()), "evidently", "--dir", str(args.dir)],
                       check=True)
        agreement(args.dir)
        monitor(args.days, args.reps)
        cost(400)
    print(f"\nwall time: {time.time() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
