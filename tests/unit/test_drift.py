"""Drift against the training baseline: the statistics (known answers from scipy) and the profile."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from scipy import stats as st
from scipy.spatial import distance

from canary.drift import stats as D
from canary.drift.profile import capture, file_sha256, read_table
from canary.errors import ConfigError


def _counts(x: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    return np.bincount(np.searchsorted(bounds, x, side="left"), minlength=len(bounds) + 1)


def test_binned_statistics_agree_with_scipy_on_the_raw_data():
    rng = np.random.default_rng(1)
    ref, cur = rng.normal(0, 1, 20_000), rng.normal(0.3, 1.2, 5_000)
    bounds = np.unique(np.quantile(ref, np.arange(1, 20) / 20))
    r, c = _counts(ref, bounds), _counts(cur, bounds)
    d, p = D.ks_binned(r, c)
    exact = st.ks_2samp(ref, cur)
    assert d <= exact.statistic + 1e-12 and d > 0.8 * exact.statistic  # read at bounds: a lower bound
    edges = np.concatenate([[ref.min()], bounds, [ref.max()]])
    w = D.wasserstein_binned(edges, r, c)
    assert w == pytest.approx(st.wasserstein_distance(ref, cur), rel=0.15)
    shares_r, shares_c = r / r.sum(), c / c.sum()
    assert D.js_distance(r, c) == pytest.approx(distance.jensenshannon(shares_r, shares_c), rel=1e-9)


def test_tests_are_chosen_as_evidently_chooses_them():
    rng = np.random.default_rng(2)
    ref = rng.normal(0, 1, 50_000)
    bounds = np.unique(np.quantile(ref, np.arange(1, 20) / 20))
    kw = dict(lo=float(ref.min()), hi=float(ref.max()), std=float(ref.std()), n_unique=50_000)
    same = D.numeric_drift("x", bounds, _counts(ref, bounds), _counts(rng.normal(0, 1, 2_000), bounds), **kw)
    moved = D.numeric_drift("x", bounds, _counts(ref, bounds), _counts(rng.normal(0.5, 1, 2_000), bounds), **kw)
    assert same.test == moved.test == "wasserstein" and not same.drifted and moved.drifted
    assert moved.value == pytest.approx(0.5, rel=0.15) and "drift when >= 0.1" in moved.reason()
    small = ref[:800]
    sb = np.unique(np.quantile(small, np.arange(1, 20) / 20))
    r = D.numeric_drift("x", sb, _counts(small, sb), _counts(rng.normal(0.5, 1, 800), sb),
                        lo=float(small.min()), hi=float(small.max()), std=1.0, n_unique=800)
    assert r.test == "ks" and r.drifted and r.value < 0.05
    cats = D.categorical_drift("c", np.array([500, 300, 200]), np.array([480, 330, 190]))
    assert cats.test == "chisquare" and not cats.drifted
    # both are samples: the test of homogeneity of the 2 x k table, not goodness of fit to the reference
    assert cats.value == pytest.approx(st.chi2_contingency([[500, 300, 200], [480, 330, 190]],
                                                           correction=False).pvalue)
    new = D.categorical_drift("c", np.array([500, 300, 0]), np.array([400, 300, 300]))
    assert new.drifted and "absent from the reference" in new.note
    binary = D.categorical_drift("b", np.array([600, 400]), np.array([300, 700]))
    assert binary.test == "z" and binary.drifted
    big = D.categorical_drift("c", np.array([5000, 3000, 2000]), np.array([100, 100, 800]))
    assert big.test == "jensenshannon" and big.drifted


def test_dataset_drift_is_the_share_of_drifted_features():
    f = lambda d: D.FeatureDrift("x", "numeric", "ks", 0.01 if d else 0.5, 0.05, d, 0.0, 1, 1)  # noqa: E731
    assert D.dataset_drift([f(True), f(False)]).drifted
    assert not D.dataset_drift([f(True), f(False), f(False)]).drifted
    assert D.dataset_drift([]).share == 0.0


def _write(tmp_path, name: str, text: str):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_capture_profiles_csv_and_parquet_alike(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(3)
    n = 2_000
    data = {"age": rng.integers(18, 90, n).astype(float), "city": rng.choice(["a", "b", "c"], n).tolist(),
            "score": rng.random(n)}
    data["age"][:10] = np.nan
    table = pa.table({"age": pa.array(data["age"], from_pandas=True), "city": data["city"], "score": data["score"]})
    pq.write_table(table, tmp_path / "train.parquet")
    csv = tmp_path / "train.csv"
    import pyarrow.csv as pacsv

    pacsv.write_csv(table, csv)
    profiles = []
    for path in (tmp_path / "train.parquet", csv):
        prof = capture(read_table(path), model="m", version="v1", file=str(path), sha256=file_sha256(path),
                       prediction="score", buckets=10)
        json.dumps(prof, allow_nan=False)
        profiles.append(prof)
    for prof in profiles:
        age = prof["features"]["age"]
        assert prof["rows"] == n and prof["prediction"] == "score" and age["missing"] == 10
        assert age["type"] == "numeric" and sum(age["counts"]) == n - 10 and len(age["counts"]) == len(age["bounds"]) + 1
        assert prof["features"]["city"]["type"] == "categorical" and sum(prof["features"]["city"]["categories"].values()) == n
        assert "score" in prof["features"]
    assert profiles[0]["features"]["age"]["bounds"] == profiles[1]["features"]["age"]["bounds"]


@pytest.mark.parametrize(("name", "text", "kwargs", "message"), [
    ("empty.csv", "a,b\n", {}, "no rows"),
    ("x.csv", "a,b\n1,2\n", {"features": ["a", "zz"]}, "no column 'zz'"),
    ("x.csv", "a,b\n,2\n,3\n", {}, "column 'a': all 2 values are missing"),
    ("x.csv", "a,b\n1,2\nx,3\n", {}, "column 'a' mixes numbers ('1') and text ('x')"),
    ("x.txt", "a\n1\n", {}, "unknown format .txt"),
    ("x.csv", "a,b\n1,2\n", {"prediction": "p"}, "no column 'p'"),
])
def test_bad_training_data_is_refused_naming_file_and_column(tmp_path, name, text, kwargs, message):
    path = _write(tmp_path, name, text)
    with pytest.raises(ConfigError, match=re.escape(message)) as info:
        capture(read_table(path), model="m", version="v", file=str(path), sha256="0", **kwargs)
    assert str(path) in str(info.value)
    with pytest.raises(ConfigError, match="no such file"):
        read_table(tmp_path / "absent.csv")


def _profile(tmp_path, n: int = 5_000):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(4)
    table = pa.table({"age": rng.normal(40, 10, n), "city": rng.choice(["a", "b", "c"], n, p=[0.5, 0.3, 0.2]).tolist(),
                      "score": rng.random(n)})
    path = tmp_path / "train.parquet"
    pq.write_table(table, path)
    return path, capture(read_table(path), model="rec", version="v1", file=str(path), sha256=file_sha256(path),
                         prediction="score")


def test_exporter_counts_over_the_profiles_buckets_and_exports_them(tmp_path):
    from prometheus_client import CollectorRegistry, generate_latest

    from canary.drift.compare import compare
    from canary.drift.exporter import FeatureExporter

    _, prof = _profile(tmp_path)
    reg = CollectorRegistry()
    ex = FeatureExporter(prof, registry=reg)
    rng = np.random.default_rng(5)
    for age, city in zip(rng.normal(55, 10, 3_000), rng.choice(["a", "b", "c", "zz"], 3_000, p=[0.5, 0.3, 0.19, 0.01])):
        ex.observe({"age": age, "city": city}, prediction=0.5)
    ex.observe({"city": None})
    live = ex.live_counts()
    assert sum(live["age"]["counts"]) == 3_000 and live["age"]["missing"] == 1 and live["city"]["missing"] == 1
    result = compare(prof, live)
    by = {f.feature: f for f in result.features}
    assert by["age"].drifted and not by["city"].drifted and by["score"].drifted  # all predictions 0.5
    text = generate_latest(reg).decode()
    assert ('model_feature_value_bucket{feature="age",le="+Inf",model_name="rec",model_version="v1",role="input"} '
            '3000.0') in text
    assert 'model_feature_category_total{category="__other__",feature="city"' in text
    assert 'model_feature_missing_total{feature="age",model_name="rec",model_version="v1",role="input"} 1.0' in text
    # the prediction column is marked, so a rollout's feature_drift check leaves it to prediction_shift
    assert 'model_feature_value_bucket{feature="score",le="+Inf",model_name="rec",model_version="v1",' \
           'role="prediction"}' in text


def test_drift_check_cli_offline(tmp_path):
    from typer.testing import CliRunner

    from canary.cli import app

    src, _ = _profile(tmp_path)
    out = tmp_path / "rec-v1.profile.json"
    r = CliRunner().invoke(app, ["baseline", "capture", str(src), "--model", "rec", "--version", "v1",
                                 "--prediction", "score", "-f", str(out), "-o", "json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["features"] == {"age": "numeric", "city": "categorical", "score": "numeric"}
    prof = json.loads(out.read_text())
    same = {"features": {"age": {"counts": prof["features"]["age"]["counts"]},
                         "city": {"categories": prof["features"]["city"]["categories"]}}}
    shifted = {"features": {"age": {"counts": list(reversed(prof["features"]["age"]["counts"]))},
                            "city": {"categories": {"a": 10, "b": 10, "c": 980}}}}
    # the prediction "score" moved to its top bucket: with age and city, 2 of 3 profiled features drifted
    n = sum(prof["features"]["score"]["counts"])
    scored = {"features": {**shifted["features"], "score": {
        "counts": [0] * (len(prof["features"]["score"]["counts"]) - 1) + [n]}}}
    # 5: the prediction "score" was not compared (no live data); shifted: only city drifted, 1 of the 2 compared,
    # and "score" decides the verdict over the 3 profiled: no verdict (null), never "dataset drift" (decision 382)
    for live, code, verdict, unseen in ((same, 5, False, ["score"]), (shifted, 5, None, ["score"]),
                                        (scored, 1, True, [])):
        f = tmp_path / "live.json"
        f.write_text(json.dumps(live))
        r = CliRunner().invoke(app, ["drift", "check", "--baseline", str(out), "--input", str(f), "-o", "json"])
        assert r.exit_code == code, r.output
        d = json.loads(r.output)
        assert d["dataset_drift"] is verdict and d["no_live_data"] == unseen, d
    r = CliRunner().invoke(app, ["drift", "check", "--baseline", str(out), "--input", str(tmp_path / "live.json")])
    assert r.exit_code == 1 and "DATASET DRIFT" in r.output
    f.write_text(json.dumps(shifted))
    r = CliRunner().invoke(app, ["drift", "check", "--baseline", str(out), "--input", str(f)])
    title = " ".join(r.output.split())  # the title wraps at the terminal's width
    assert r.exit_code == 5 and "NO VERDICT" in title and "the 1 not compared decides it" in title, r.output
    # the share of the profile, bounded, not "1 of 2 features drifted, 50%" of three profiled (decision 411)
    assert "1 of 2 features compared drifted: 33% to 67% of all 3 profiled, 1 not compared" in title, r.output
    r = CliRunner().invoke(app, ["drift", "check", "--baseline", str(out), "--input", str(f), "-o", "json"])
    d = json.loads(r.output)
    assert d["dataset_drift"] is None and (d["share"], d["share_max"]) == (1 / 3, 2 / 3), d
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"features": {"age": {"counts": [1, 2]}}}))
    r = CliRunner().invoke(app, ["drift", "check", "--baseline", str(out), "--input", str(bad)])
    assert r.exit_code == 2 and "feature 'age'" in r.output and str(bad) in r.output  # the file named too
    # a feature the profile does not have (a typo of "age") was ignored, and "age" reported as no live data
    typo = tmp_path / "typo.json"
    typo.write_text(json.dumps({"features": {"agee": same["features"]["age"], "city": same["features"]["city"]}}))
    r = CliRunner().invoke(app, ["drift", "check", "--baseline", str(out), "--input", str(typo)])
    assert r.exit_code == 2 and f"{typo}: features.agee: not a feature of {out}" in r.output
    assert "age, city, score" in r.output
    r = CliRunner().invoke(app, ["drift", "check", "--baseline", str(out)])
    assert r.exit_code == 2 and "exactly one of --input" in r.output
    # CANARY_PROMETHEUS_URL exported for the other commands (as `canary demo --keep` says): the --input named on
    # the command line is read; it was refused as if both had been given
    f.write_text(json.dumps(same))
    r = CliRunner().invoke(app, ["drift", "check", "--baseline", str(out), "--input", str(f), "-o", "json"],
                           env={"CANARY_PROMETHEUS_URL": "http://127.0.0.1:9"})
    assert r.exit_code == 5, r.output
    r = CliRunner().invoke(app, ["drift", "check", "--baseline", str(out), "--input", str(f),
                                 "--prometheus-url", "http://127.0.0.1:9"])
    assert r.exit_code == 2 and "exactly one of --input" in r.output  # both on the command line: refused


def _result(drifted: bool) -> "D.DatasetDrift":
    f = D.FeatureDrift("age", "numeric", "wasserstein", 0.3 if drifted else 0.01, 0.1, drifted, 0.2, 5000, 900)
    return D.dataset_drift([f])


def test_monitor_hysteresis_quiet_period_and_one_trigger_per_episode():
    from canary.drift import monitor as M

    cfg = M.MonitorConfig(enter_after=2, exit_after=2, quiet_s=100, retry_s=10, retry_max_s=40)
    s = M.MonitorState("rec", "v1", quiet_until=100)
    seq = [(t, True) for t in (10, 20, 30, 110)]  # drift inside the quiet period starts nothing
    for t, d in seq[:3]:
        s, acts = M.step(s, _result(d), t, cfg, window_s=10)
        assert acts == [] and s.phase == M.OK
    s, acts = M.step(s, _result(True), 110, cfg, window_s=10)
    assert s.phase == M.DRIFTING and s.episode == 1
    assert [type(a).__name__ for a in acts] == ["Alert", "Trigger"] and acts[0].event == "drift.started"
    assert acts[1].evidence["drifted_features"] == ["age"] and acts[1].evidence["window_s"] == 10
    s, acts = M.trigger_result(s, False, 111, cfg, error="HTTP 503")
    assert acts[0].event == "drift.retrain_failed" and "503" in acts[0].message and s.trigger_due == 121
    s, acts = M.step(s, _result(True), 115, cfg, window_s=10)
    assert acts == []  # not due yet: no second trigger
    s, acts = M.step(s, _result(False), 125, cfg, window_s=10)  # one clean look: still drifting, trigger due
    assert s.phase == M.DRIFTING and [type(a).__name__ for a in acts] == ["Trigger"]
    s, _ = M.trigger_result(s, True, 126, cfg)
    s, acts = M.step(s, _result(True), 130, cfg, window_s=10)  # hovering: no flap, no new trigger
    assert acts == [] and s.trigger == "done"
    for t in (140, 150):
        s, acts = M.step(s, _result(False), t, cfg, window_s=10)
    assert s.phase == M.OK and acts[0].event == "drift.resolved"
    assert M.MonitorState.from_dict(s.to_dict()) == s
    for t in (160, 170):
        s, acts = M.step(s, _result(True), t, cfg, window_s=10)
    assert s.episode == 2 and any(isinstance(a, M.Trigger) and a.episode == 2 for a in acts)
    with pytest.raises(ValueError, match="phase must be"):
        M.MonitorState.from_dict({**s.to_dict(), "phase": "weird"})


# -- defects found by an adversarial review, each as a kind -------------------------------------------


def test_booleans_and_few_valued_numbers_are_compared_value_by_value(tmp_path):
    import pyarrow as pa
    from prometheus_client import CollectorRegistry

    from canary.drift.compare import compare
    from canary.drift.exporter import FeatureExporter

    rng = np.random.default_rng(6)
    n = 900  # <= 1,000 reference rows: p-value tests (chi-square per value, z for the boolean), as Evidently
    flags, levels = rng.random(n) < 0.3, rng.choice([0, 1, 2], n, p=[0.97, 0.02, 0.01]).astype(float)
    prof = capture(pa.table({"flag": flags, "level": levels}), model="m", version="v", file="f", sha256="-")
    assert prof["features"]["level"]["bounds"] == [0.0, 1.0, 2.0]  # a bucket per value
    ex = FeatureExporter(prof, registry=CollectorRegistry())
    for f, lv in zip(rng.random(2_000) < 0.3, rng.choice([0, 1, 2], 2_000, p=[0.97, 0.02, 0.01])):
        ex.observe({"flag": bool(f), "level": float(lv)})
    same = {f.feature: f for f in compare(prof, ex.live_counts()).features}
    assert not same["flag"].drifted and not same["level"].drifted, [f.reason() for f in same.values()]
    ex2 = FeatureExporter(prof, registry=CollectorRegistry())
    for lv in rng.choice([0, 1, 2], 2_000, p=[0.97, 0.0, 0.03]):  # the 1s became 2s
        ex2.observe({"flag": True, "level": float(lv)})
    moved = {f.feature: f for f in compare(prof, ex2.live_counts()).features}
    assert moved["level"].drifted and moved["flag"].drifted


def test_a_value_folded_into_other_is_not_a_new_category_and_tiny_samples_are_not_compared():
    from canary.drift.compare import compare

    prof = {"format": 1, "model": "m", "version": "v", "features": {
        "c": {"type": "categorical", "categories": {f"c{i}": 100 for i in range(100)}, "other": 500, "missing": 0}}}
    live = {"c": {"categories": {**{f"c{i}": 10 for i in range(100)}, "c149": 50}}}
    [f] = compare(prof, live).features
    assert "absent from the reference" not in f.note and not f.drifted
    assert compare(prof, {"c": {"categories": {"c1": 5}}}).features == ()  # 5 requests: not a distribution


@pytest.mark.parametrize(("live", "message"), [
    ({"age": [1, 2, 3]}, "feature 'age': live data must be an object"),
    ({"age": "x"}, "feature 'age': live data must be an object"),
    ({"age": {"counts": ["5"] * 3}}, "feature 'age'"),
    ({"age": {"counts": [True]}}, "feature 'age'"),
])
def test_bad_live_data_is_a_clear_error(tmp_path, live, message):
    from canary.drift.compare import compare

    _, prof = _profile(tmp_path)
    with pytest.raises(ConfigError, match=re.escape(message)):
        compare(prof, live)


@pytest.mark.parametrize(("edit", "field"), [
    (lambda p: p["features"]["age"].pop("std"), "features.age.std"),
    (lambda p: p.pop("model"), "model"),
    (lambda p: p["features"]["age"]["counts"].pop(), "features.age"),
    (lambda p: p.update(format=2), "format: 2: not a profile written by `canary baseline capture` (format 1)"),
    # a missing `format` said only "not a profile ...", naming no field (a newcomer review, decision 478)
    (lambda p: p.pop("format"), "format: missing: not a profile written by `canary baseline capture` (format 1)"),
    (lambda p: p.update(format="1"), 'format: "1": not a profile'),
    # what would otherwise crash, or compare nonsense without a word (a newcomer review)
    (lambda p: p["features"]["age"]["bounds"].__setitem__(0, "x"), "features.age.bounds[0]"),
    (lambda p: p["features"]["age"]["bounds"].__setitem__(1, float("nan")), "features.age.bounds[1]"),
    (lambda p: p["features"]["age"]["bounds"].reverse(), "features.age.bounds[1]: bounds must increase"),
    (lambda p: p["features"]["age"]["counts"].__setitem__(0, -5), "features.age.counts[0]"),
    (lambda p: p["features"]["age"].__setitem__("std", float("nan")), "features.age.std"),
    (lambda p: p["features"]["city"]["categories"].__setitem__("a", "many"), "features.city.categories.a"),
])
def test_a_profile_edited_by_hand_is_refused_naming_the_field(tmp_path, edit, field):
    from canary.drift.compare import compare

    _, prof = _profile(tmp_path)
    edit(prof)
    with pytest.raises(ConfigError, match=re.escape(field)):
        compare(prof, {})


def test_duplicate_columns_are_refused(tmp_path):
    path = _write(tmp_path, "dup.csv", "a,a,b\n1,2,3\n")
    with pytest.raises(ConfigError, match="column 'a' appears 2 times"):
        capture(read_table(path), model="m", version="v", file=str(path), sha256="-")


def test_job_names_keep_the_episode_and_stay_unique():
    from canary.drift.watch import job_name

    long = dict(model="recommendation-ranker-large", version="v2.1.0-2024-06-01")
    a = job_name("retrain-recommendation-ranker-", episode=1, **long)
    b = job_name("retrain-recommendation-ranker-", episode=2, **long)
    assert a != b and a.endswith("-e1") and b.endswith("-e2") and len(a) <= 63 and len(b) <= 63
    assert job_name("r", model="m", version="v2.1", episode=1) != job_name("r", model="m", version="v2-1", episode=1)
    assert job_name("retrain-", model="rec", version="v1", episode=3) == "retrain-rec-v1-e3"


@pytest.mark.parametrize(("yaml_text", "field"), [
    ("apiVersion: batch/v1\nkind: Job\nmetadata: null\nspec: {template: {spec: {containers: [{name: a}]}}}\n",
     "metadata"),
    ("apiVersion: batch/v1\nkind: Job\nspec: foo\n", "spec"),
    ("apiVersion: batch/v1\nkind: Job\nspec: {template: {spec: {containers: [{name: a, env: null}]}}}\n",
     "containers[0].env"),
    ("apiVersion: v1\nkind: Pod\n", "kind/apiVersion"),
])
def test_bad_job_templates_are_refused_before_anything_runs(tmp_path, yaml_text, field):
    from canary.drift.watch import load_job_template

    path = _write(tmp_path, "job.yaml", yaml_text)
    with pytest.raises(ConfigError, match=re.escape(field)):
        load_job_template(path)


def test_a_corrupt_monitor_state_is_refused_naming_the_field():
    from canary.drift import monitor as M

    with pytest.raises(ValueError, match="drifted_in_row"):
        M.MonitorState.from_dict({"model": "m", "version": "v", "drifted_in_row": "2"})


def test_watch_once_without_prometheus_exits_3(tmp_path):
    from typer.testing import CliRunner

    from canary.cli import app
    from tests.support.refused import refused_port

    src, prof = _profile(tmp_path)
    p = tmp_path / "p.json"
    p.write_text(json.dumps(prof))
    r = CliRunner().invoke(app, ["drift", "watch", "--baseline", str(p), "--once", "--no-kube",
                                 "--state-file", str(tmp_path / "s.json"),
                                 "--prometheus-url", f"http://127.0.0.1:{refused_port()}"])
    assert r.exit_code == 3, r.output


def test_mass_moved_beyond_the_last_bucket_still_counts_and_verdicts_are_plain_json():
    """The top 5% moved by 4 standard deviations, past the reference's maximum: the buckets cannot
    say how far, the live mean can (W1 >= |difference of means|)."""
    import pyarrow as pa
    from prometheus_client import CollectorRegistry

    from canary.drift.compare import compare
    from canary.drift.exporter import FeatureExporter

    rng = np.random.default_rng(0)
    ref, cur = rng.normal(0, 1, 20_000), rng.normal(0, 1, 5_000)
    cur[cur > np.quantile(cur, 0.95)] += 4
    prof = capture(pa.table({"x": ref}), model="m", version="v", file="f", sha256="-")
    ex = FeatureExporter(prof, registry=CollectorRegistry())
    for v in cur:
        ex.observe({"x": float(v)})
    [f] = compare(prof, ex.live_counts()).features
    assert f.drifted and f.value == pytest.approx(st.wasserstein_distance(ref, cur) / ref.std(ddof=1), rel=0.1)
    json.dumps(f.__dict__)


def test_a_rise_in_missing_values_is_reported_beside_the_drift_tests(tmp_path):
    from prometheus_client import CollectorRegistry

    from canary.drift.compare import compare
    from canary.drift.exporter import FeatureExporter

    _, prof = _profile(tmp_path)  # no missing values in training
    ex = FeatureExporter(prof, registry=CollectorRegistry())
    rng = np.random.default_rng(8)
    for i, (age, city) in enumerate(zip(rng.normal(40, 10, 2_000), rng.choice(["a", "b", "c"], 2_000, p=[0.5, 0.3, 0.2]))):
        ex.observe({"age": None if i % 5 == 0 else age, "city": city})  # 20% of ages missing
    result = compare(prof, ex.live_counts())
    by = {m.feature: m for m in result.missing}
    assert by["age"].shifted and by["age"].live_rate == pytest.approx(0.2) and by["age"].reference_rate == 0.0
    assert not by["city"].shifted and "MORE MISSING" in by["age"].reason()
    assert not any(f.drifted for f in result.features if f.feature == "age")  # the values themselves did not move


def test_an_episode_without_a_retraining_trigger_is_never_logged_as_retrained():
    """No Job template, no webhook (e.g. `drift watch --no-kube`): the episode is alerted only, and the
    log says that nothing was started (a newcomer review found drift.retrain_triggered logged)."""
    from structlog.testing import capture_logs

    from canary.drift import monitor as M
    from canary.drift.watch import DriftWatcher

    w = DriftWatcher([], client=None, window_s=300, config=M.MonitorConfig())
    state = M.MonitorState("rec", "v1", phase=M.DRIFTING, episode=1, trigger="pending")
    done: list = []
    with capture_logs() as logs:
        w._act(state, [M.Trigger(episode=1, evidence={"drifted_features": ["age"]})], done, "ml")
    events = [e["event"] for e in logs]
    assert "drift.retrain_not_configured" in events and "drift.retrain_triggered" not in events
    assert done == [{"model": "rec", "version": "v1", "trigger": 1, "ok": True, "error": "", "configured": False}]


def test_a_retraining_trigger_failing_for_weeks_is_still_retried_at_its_cap():
    """`retry_s * 2 ** (attempts - 1)` overflowed a float after 1,025 failed attempts (three weeks at the 30 min
    cap: a webhook misconfigured that long): OverflowError at every evaluation of that model, before and
    after a restart (the attempts are in its stored state), and its retraining never retried again."""
    from canary.drift import monitor as M

    cfg = M.MonitorConfig()  # the defaults every command uses: 30.0 s, doubling, up to 1,800.0 s
    s = M.MonitorState("rec", "v1", phase=M.DRIFTING, episode=1, trigger="pending", trigger_attempts=1_500)
    s, acts = M.trigger_result(s, False, 1_000.0, cfg, error="HTTP 503")
    assert s.trigger_attempts == 1_501 and s.trigger_due == 2_800.0 and "retrying in 1800s" in acts[0].message
    s, acts = M.step(s, _result(True), 1_100.0, cfg, window_s=10)  # an evaluation before it is due: no raise
    assert s.trigger_due == 2_800.0 and acts == []


def test_capture_says_how_many_series_its_exporter_adds_to_each_pod(tmp_path):
    """Over a Prometheus `sample_limit` on the model server's scrape the whole scrape is rejected, the server's own
    metrics too: capture says how many series the profile's exporter adds, where the limit can be checked before
    the exporter is deployed (decision 626)."""
    from typer.testing import CliRunner

    from canary.cli import app
    from canary.drift.exporter import series_per_pod

    src, _ = _profile(tmp_path)
    out = tmp_path / "rec-v1.profile.json"
    r = CliRunner().invoke(app, ["baseline", "capture", str(src), "--model", "rec", "--version", "v1", "-f", str(out),
                                 "-o", "json"])
    assert r.exit_code == 0, r.output
    n = series_per_pod(json.loads(out.read_text()))
    assert json.loads(r.stdout)["series_per_pod"] == n > 0
    r = CliRunner().invoke(app, ["baseline", "capture", str(src), "--model", "rec", "--version", "v1", "-f", str(out)])
    assert f"its exporter adds {n:,} series to each model-server pod's scrape" in r.output
