"""The `feature_drift` check kind: policy, judge, offline input, answers parsing, and profiles that
share bounds (`canary baseline capture --bounds-from`)."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from canary import logs
from canary.analysis.judge import judge
from canary.analysis.sequential import sub_levels
from canary.cli import app
from canary.errors import MetricsUnavailable, NoData, PolicyError
from canary.metrics.features import feature_counts
from canary.metrics.query_plan import query_plan
from canary.model import FeatureCounts, Histogram, Outcome, Target
from canary.policy import parse_policy

INF = math.inf
BOUNDS = (-2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0, INF)


def policy(**check: Any) -> Any:
    return parse_policy({"steps": [10, 100], "analysis": {"min_canary_requests": 100},
                         "checks": [{"name": "inputs", "kind": "feature_drift", "max_psi": 0.2, **check}]})


def arm(shift: float = 0.0, n: int = 5_000, *, seed: int = 1, city: dict[str, float] | None = None,
        missing_x: float = 10.0) -> FeatureCounts:
    x = np.random.default_rng(seed).normal(shift, 1, n)
    cum = tuple(float((x <= b).sum()) for b in BOUNDS[:-1]) + (float(n),)
    cats = city if city is not None else {"a": 0.5 * n, "b": 0.3 * n, "c": 0.2 * n}
    return FeatureCounts(numeric={"x": Histogram(BOUNDS, cum)}, categorical={"city": cats},
                         missing={"x": missing_x, "city": 0.0})


def one(pol: Any, stable: Any, canary: Any, **kw: Any) -> Any:
    return judge(pol, {"inputs": (stable, canary)}, **kw).results[0]


# -- policy ------------------------------------------------------------------------------


def test_the_policy_needs_a_limit_and_refuses_a_feature_listed_twice() -> None:
    with pytest.raises(PolicyError, match="needs max_psi and/or max_js"):
        parse_policy({"steps": [10, 100], "checks": [{"name": "f", "kind": "feature_drift"}]})
    with pytest.raises(PolicyError, match=r"checks\[0\]\.features.*'age' is listed twice"):
        policy(features=["age", "age"])
    with pytest.raises(PolicyError, match=r"checks\[0\]\.source"):
        policy(source="istio")  # the exporter's metrics are the model server's
    p = policy(max_js=0.1, features=["age"])
    assert p.source_of(p.checks[0]) == "model"
    assert sub_levels(p) == {"inputs/psi": pytest.approx(0.005), "inputs/js": pytest.approx(0.005)}


def test_each_arm_sends_three_queries_whatever_the_number_of_features() -> None:
    t = Target(namespace="ml", virtual_service="rec", model="rec", stable_version="v1", canary_version="v2")
    plan = query_plan(policy(), policy().checks[0], t, window_s=300)
    # and the arm's requests: min_canary_requests counts requests, not feature rows
    assert set(plan["canary"]) == {"feature_buckets", "feature_categories", "feature_missing_counts", "requests"}
    assert plan["canary"]["feature_buckets"] == (  # inputs only: the exporter marks its prediction column
        'sum by (feature, le) (increase(model_feature_value_bucket{model_name="rec",model_version="v2",'
        'role!="prediction"}[300s]))')


# -- judge -------------------------------------------------------------------------------


def test_identical_arms_pass_and_a_shifted_feature_fails_by_name() -> None:
    p = policy(max_js=0.1)
    ok = one(p, arm(), arm(seed=2))
    assert ok.outcome is Outcome.PASS, ok.reason
    bad = one(p, arm(), arm(1.0, seed=2))
    assert bad.outcome is Outcome.FAIL and "beyond: x" in bad.reason
    rows = {r["feature"]: r for r in bad.extra["features"]}
    assert rows["x"]["breach"] and rows["city"]["within"] and not rows["city"]["breach"]


def test_a_feature_the_canary_sends_empty_fails_through_its_missing_cell() -> None:
    gone = FeatureCounts(numeric=arm().numeric, categorical={}, missing={"x": 10.0, "city": 5_000.0})
    r = one(policy(), arm(), gone)
    assert r.outcome is Outcome.FAIL and "beyond: city" in r.reason
    row = next(x for x in r.extra["features"] if x["feature"] == "city")
    assert row["missing_canary"] == 1.0 and row["missing_stable"] == 0.0


def test_a_new_category_in_the_canary_fails() -> None:
    r = one(policy(), arm(), arm(city={"a": 2_500, "b": 1_500, "c": 0, "zz": 1_000}))
    assert r.outcome is Outcome.FAIL and "city" in r.reason


def test_a_schema_change_fails_without_statistics_but_not_below_min_canary_requests() -> None:
    as_text = FeatureCounts(numeric={}, categorical={"x": {"1.5": 5_000.0}, "city": arm().categorical["city"]})
    r = one(policy(), arm(), as_text)
    assert r.outcome is Outcome.FAIL and "schema changed: x: numeric in stable, categorical in canary" in r.reason
    small = FeatureCounts(numeric={}, categorical={"x": {"1.5": 50.0}, "city": {"a": 50.0}})
    assert one(policy(), arm(), small).outcome is Outcome.INCONCLUSIVE
    dropped = FeatureCounts(numeric=arm().numeric, missing={"x": 1.0})
    r = one(policy(features=["x", "city"]), arm(), dropped)
    assert r.outcome is Outcome.FAIL and "city: the canary does not export it" in r.reason


def test_a_feature_the_canary_adds_is_reported_one_it_drops_fails_unless_the_list_leaves_it_out() -> None:
    more = FeatureCounts(numeric=arm(seed=3).numeric, categorical={**arm().categorical, "plan": {"free": 5_000.0}},
                         missing=arm().missing)
    r = one(policy(), arm(), more)
    assert r.outcome is Outcome.PASS and r.extra["only_canary"] == ["plan"]
    r = one(policy(), more, arm())  # the canary stopped sending `plan`: a schema change
    assert r.outcome is Outcome.FAIL and "plan: the canary does not export it" in r.reason
    assert one(policy(features=["x", "city"]), more, arm(seed=4)).outcome is Outcome.PASS  # dropped on purpose
    r = one(policy(features=["x", "plan"]), more, arm())
    assert r.outcome is Outcome.FAIL and "plan: the canary does not export it" in r.reason


def test_a_canary_that_exports_none_of_stables_inputs_fails() -> None:
    """An exporter that sends only other features (e.g. its prediction) must not pass by comparing nothing."""
    r = one(policy(), arm(), FeatureCounts(categorical={"q": {"a": 1_000.0}}))
    assert r.outcome is Outcome.FAIL and "schema changed" in r.reason
    assert "city: the canary does not export it" in r.reason and "x: the canary does not export it" in r.reason


def test_what_cannot_be_compared_is_an_error_never_a_pass() -> None:
    r = one(policy(features=["x", "age"]), arm(), arm(seed=2))
    assert r.outcome is Outcome.ERROR and "stable exports no feature 'age'" in r.reason
    other = FeatureCounts(numeric={"x": Histogram((-3.0, 3.0, INF), (10.0, 4_990.0, 5_000.0))},
                          categorical=arm().categorical)
    r = one(policy(), arm(), other)
    assert r.outcome is Outcome.ERROR and "--bounds-from" in r.reason
    r = one(policy(), FeatureCounts(), arm())
    assert r.outcome is Outcome.ERROR and "stable exports no feature" in r.reason


def test_alpha_is_split_over_the_features_and_evidence_is_kept_per_feature() -> None:
    p = policy()
    r = one(p, arm(), arm(seed=2))
    levels = {t["test"]: t["level"] for t in r.extra["tests"]}
    assert levels == {"psi:x": pytest.approx(0.005), "psi:city": pytest.approx(0.005)}  # alpha 0.01 over 2
    v = judge(p, {"inputs": (arm(), arm(seed=2))})
    assert set(v.window_evidence()) == {"inputs/psi:x", "inputs/psi:city"}


def test_windows_pool_a_drift_too_small_to_show_in_one() -> None:
    """A +0.25 sd shift on 600 requests a window: one window does not fail it, the pooled evidence of
    the earlier windows (`prior`, as the rollout state keeps it) does."""
    p = policy(max_psi=0.03)
    prior: dict[str, tuple[float, float]] = {}
    outcomes = []
    for w in range(8):
        v = judge(p, {"inputs": (arm(n=600, seed=10 + w), arm(0.25, n=600, seed=50 + w))}, prior=prior)
        outcomes.append(v.results[0].outcome)
        for k, (s, i) in v.window_evidence().items():
            s0, i0 = prior.get(k, (0.0, 0.0))
            prior[k] = (s0 + s, i0 + i)
    assert outcomes[:7] == [Outcome.INCONCLUSIVE] * 7 and outcomes[7] is Outcome.FAIL


def test_the_wrong_data_kind_is_an_error() -> None:
    r = one(policy(), Histogram((1.0, INF), (1.0, 2.0)), arm())
    assert r.outcome is Outcome.ERROR and "expected FeatureCounts" in r.reason


# -- answers from Prometheus ---------------------------------------------------------------


def _series(labels: dict[str, str], value: Any) -> dict[str, Any]:
    return {"metric": labels, "value": [0, str(value)]}


QUERIES = {"feature_buckets": "qb", "feature_categories": "qc", "feature_missing_counts": "qm"}


def test_answers_become_feature_counts_with_extrapolation_noise_clamped() -> None:
    answers = {
        "feature_buckets": [_series({"feature": "age", "le": "10"}, 5), _series({"feature": "age", "le": "+Inf"}, 9),
                            _series({"feature": "age", "le": "20"}, 4.9), _series({"feature": "bad"}, 3),
                            _series({"feature": "age", "le": "30"}, "NaN")],
        "feature_categories": [_series({"feature": "city", "category": "a"}, 3),
                               _series({"feature": "city", "category": "b"}, -0.2)],
        "feature_missing_counts": [_series({"feature": "age"}, 1)],
    }
    got = feature_counts(answers, queries=QUERIES, check="inputs", arm="canary", window_s=60)
    assert got.numeric["age"].counts[:2] == (5.0, 5.0) and got.numeric["age"].total == 9.0
    assert got.categorical == {"city": {"a": 3.0, "b": 0.0}} and got.missing == {"age": 1.0}
    assert got.observed("age") == 10.0


def test_arms_on_two_canary_versions_count_a_category_spelt_like_the_exporters_labels_alike() -> None:
    """A stable whose model server runs a canary from before decision 540 counts a training category "__other__"
    with the values its profile never saw, and "__empty__" with ""; the canary's newer exporter counts them apart
    ("___other__", "___empty__"). Read as they are, the same traffic differed in four cells: a drift, and a rollback
    of the upgrade itself. Both are read by the older's labels (decision 558)."""
    def read(cats: dict[str, float]) -> Any:
        answers = {"feature_categories": [_series({"feature": "bin", "category": k}, v) for k, v in cats.items()]}
        return feature_counts(answers, queries=QUERIES, check="inputs", arm="canary", window_s=60)

    # 30k "a", 30k training "__other__" and 2k values never seen, 5k texts "__empty__" and 4k ""
    older = read({"a": 30_000, "__other__": 32_000, "__empty__": 9_000})
    newer = read({"a": 30_000, "___other__": 30_000, "__other__": 2_000, "___empty__": 5_000, "__empty__": 4_000})
    assert older.categorical == newer.categorical == {"bin": {"a": 30_000, "__other__": 32_000, "__empty__": 9_000}}
    assert one(policy(max_js=0.1), older, newer).outcome is Outcome.PASS
    # a category escaped twice by the newer ("____other__", the text "___other__") was the older's "___other__"
    assert read({"____other__": 5}).categorical == {"bin": {"___other__": 5}}


def test_no_feature_series_is_no_data_and_a_bad_bound_is_unavailable() -> None:
    with pytest.raises(NoData, match="no feature observations for the canary arm"):
        feature_counts({"feature_buckets": []}, queries=QUERIES, check="inputs", arm="canary", window_s=60)
    with pytest.raises(MetricsUnavailable, match="malformed bucket bound"):
        feature_counts({"feature_buckets": [_series({"feature": "x", "le": "ten"}, 1)]}, queries=QUERIES,
                       check="inputs", arm="canary", window_s=60)


def test_a_feature_both_numeric_and_categorical_is_refused() -> None:
    with pytest.raises(ValueError, match="both numeric and categorical"):
        FeatureCounts(numeric={"x": Histogram((1.0, INF), (1.0, 2.0))}, categorical={"x": {"a": 1.0}})


# -- offline input -------------------------------------------------------------------------


def test_canary_judge_reads_feature_arms_and_names_a_bad_field(tmp_path: Any) -> None:
    pol = {"steps": [10, 100], "checks": [{"name": "inputs", "kind": "feature_drift", "max_psi": 0.2}]}
    stable = {"numeric": {"age": {"bounds": [20, 30, 40, 50, "+Inf"], "counts": [1000, 3000, 6000, 8000, 10000]}},
              "categorical": {"city": {"paris": 6000, "lyon": 4000}}, "missing": {"age": 50}}
    canary = {"numeric": {"age": {"bounds": [20, 30, 40, 50, "+Inf"], "counts": [100, 300, 600, 800, 1000]}},
              "categorical": {"city": {"paris": 20, "lyon": 980}}}
    path = tmp_path / "in.json"
    path.write_text(json.dumps({"policy": pol, "checks": {"inputs": {"stable": stable, "canary": canary}}}))
    try:
        out = CliRunner().invoke(app, ["judge", "--input", str(path), "-o", "json"])
        assert out.exit_code == 1, out.output
        assert "beyond: city" in json.loads(out.stdout)["results"][0]["reason"]
        canary["categorical"]["city"]["lyon"] = -1
        path.write_text(json.dumps({"policy": pol, "checks": {"inputs": {"stable": stable, "canary": canary}}}))
        out = CliRunner().invoke(app, ["judge", "--input", str(path)])
        assert out.exit_code == 2 and "checks.inputs.canary.categorical.city.lyon" in out.output
    finally:
        logs.configure()


# -- profiles on shared bounds -------------------------------------------------------------


def test_bounds_from_makes_a_new_version_count_over_the_old_buckets(tmp_path: Any) -> None:
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    rng = np.random.default_rng(4)
    pq.write_table(pa.table({"age": rng.normal(40, 10, 3_000), "city": rng.choice(["a", "b"], 3_000).tolist()}),
                   tmp_path / "v1.parquet")
    pq.write_table(pa.table({"age": rng.normal(42, 11, 3_000), "city": rng.choice(["c", "b"], 3_000).tolist()}),
                   tmp_path / "v2.parquet")
    try:
        for version, extra in (("v1", []), ("v2", ["--bounds-from", str(tmp_path / "rec-v1.json")])):
            out = CliRunner().invoke(app, ["baseline", "capture", str(tmp_path / f"{version}.parquet"), "--model",
                                           "rec", "--version", version, "-f", str(tmp_path / f"rec-{version}.json"),
                                           *extra])
            assert out.exit_code == 0, out.output
        bad = CliRunner().invoke(app, ["baseline", "capture", str(tmp_path / "v2.parquet"), "--model", "rec",
                                       "--version", "v2", "--bounds-from", str(tmp_path / "nope.json")])
        assert bad.exit_code == 2 and "nope.json" in bad.output
        other = CliRunner().invoke(app, ["baseline", "capture", str(tmp_path / "v2.parquet"), "--model", "fraud",
                                         "--version", "v2", "--bounds-from", str(tmp_path / "rec-v1.json")])
        assert other.exit_code == 2 and "a profile of model 'rec', not 'fraud'" in other.output
        broken = json.loads((tmp_path / "rec-v1.json").read_text())
        broken["features"]["age"]["bounds"].reverse()
        (tmp_path / "broken.json").write_text(json.dumps(broken))
        out = CliRunner().invoke(app, ["baseline", "capture", str(tmp_path / "v2.parquet"), "--model", "rec",
                                       "--version", "v2", "--bounds-from", str(tmp_path / "broken.json")])
        assert out.exit_code == 2 and "features.age.bounds[1]: bounds must increase" in out.output
    finally:
        logs.configure()
    v1, v2 = (json.loads((tmp_path / f"rec-{v}.json").read_text())["features"] for v in ("v1", "v2"))
    assert v2["age"]["bounds"] == v1["age"]["bounds"]
    assert list(v2["city"]["categories"])[:2] == list(v1["city"]["categories"])  # stable's first, then its own
    assert "c" in v2["city"]["categories"] and v2["city"]["categories"]["a"] == 0


def test_a_feature_on_a_coarser_canary_layout_is_never_shown_within() -> None:
    """As for predictions: a numeric feature the canary buckets on fewer bounds than stable is compared
    on the shared bounds, which can hide a shift inside merged cells; it is never a pass."""
    s = arm()
    coarse = Histogram((0.0, INF), (s.numeric["x"].counts[3], s.numeric["x"].counts[-1]))
    c = FeatureCounts(numeric={"x": coarse}, categorical=dict(s.categorical), missing=dict(s.missing))
    r = one(policy(features=["x"]), s, c)
    assert r.outcome is Outcome.INCONCLUSIVE and "different bucket bounds" in r.reason, r.reason
    assert one(policy(features=["x"]), s, arm(seed=2)).outcome is Outcome.PASS
