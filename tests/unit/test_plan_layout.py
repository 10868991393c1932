"""`canary plan` on a real latency bucket layout (`analysis.plan_layout`): every latency claim is
checked against the judge itself on that layout (simulated looks), not against a geometric one."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as st

from canary.analysis import evidence
from canary.analysis.judge import judge
from canary.analysis.plan import layout_report, pass_ceiling_ratio, plan
from canary.analysis.plan_layout import LatencyLayout, fit_layout, layout_ceiling_ms, layout_pass_pct
from canary.model import Histogram, Outcome
from canary.policy import parse_policy

SIGMA, Z95 = 0.5, float(st.norm.ppf(0.95))
ISTIO = (1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0)  # the sandbox's and Istio's buckets
NONGEO = (50.0, 60.0, 70.0, 80.0, 90.0, 100.0, 110.0, 120.0, 130.0, 250.0, 500.0)  # 10 ms steps, then thin
POLICY = {"steps": [5, 10, 25, 50, 100],
          "analysis": {"interval": "5m", "look_every": "30s", "min_canary_requests": 500, "alpha": 0.01},
          "failure": {"max_failed_looks": 1, "no_data_deadline": "10m"},
          "checks": [{"name": "lat", "kind": "latency", "quantile": 0.95, "max_increase_pct": 20}]}


def _layout(bounds: tuple[float, ...], p95: float) -> LatencyLayout:
    return LatencyLayout(bounds, p95 / math.exp(SIGMA * Z95))


def _probs(bounds: tuple[float, ...], median: float) -> np.ndarray:
    cdf = [float(st.norm.cdf(math.log(b / median) / SIGMA)) for b in bounds] + [1.0]
    return np.diff([0.0, *cdf])


def _hist(bounds: tuple[float, ...], counts: np.ndarray) -> Histogram:
    return Histogram((*bounds, math.inf), tuple(float(x) for x in np.cumsum(counts)))


def _rolled_back(pol, bounds, median_s, median_c, rate_s, rate_c, rng, *, weight: int, looks: int = 10) -> bool:
    """One step of Poisson traffic judged every 30 s by the judge itself: did a look FAIL?"""
    ps, pc = _probs(bounds, median_s), _probs(bounds, median_c)
    cs, cc = np.zeros(len(ps)), np.zeros(len(pc))
    for _ in range(looks):
        cs += rng.multinomial(rng.poisson(rate_s * 30), ps)
        cc += rng.multinomial(rng.poisson(rate_c * 30), pc)
        v = judge(pol, {"lat": (_hist(bounds, cs), _hist(bounds, cc))}, canary_weight=weight)
        if v.results[0].outcome is Outcome.FAIL:
            return True
    return False


def test_fit_places_the_stable_quantile_where_the_counts_say_not_where_interpolation_does():
    """Prometheus' interpolation puts a p95 of 114 ms inside (100, 250] at about 157 ms; the fit at the
    bound nearest the quantile gives 114 back (lognormal counts)."""
    x = _layout(ISTIO, 114.0)
    cum = np.cumsum(_probs(ISTIO, x.median_ms)) * 100_000
    fit = fit_layout((*ISTIO, math.inf), tuple(cum), q=0.95, sigma=SIGMA)
    assert fit is not None and fit.quantile_ms(0.95, SIGMA) == pytest.approx(114.0, rel=1e-6)
    assert fit.bucket_ratio(0.95, SIGMA) == pytest.approx(2.5)
    assert fit_layout((50.0, math.inf), (0.0, 0.0), q=0.95, sigma=SIGMA) is None


def test_detection_on_a_layout_that_cannot_resolve_the_limit_is_what_the_judge_catches():
    """Istio buckets, stable p95 114 ms in (100, 250]: the plan claimed +44% rolled back by the end of
    the 5% step (fine buckets) where the judge caught 0 of 200. On the layout the judge can only
    compare above 250 ms with stable above ~208 ms: the claim is far larger, and it holds."""
    pol = parse_policy(POLICY)
    x = _layout(ISTIO, 114.0)
    fine = plan(pol, rps=50).steps[0].p95_increase_pct
    real = plan(pol, rps=50, layouts={"lat": x})
    claim = real.steps[0].p95_increase_pct
    assert fine is not None and claim is not None and claim > 2 * fine, (fine, claim)
    assert real.steps[0].latency_by_check == {"lat": claim}
    assert "above 250 ms" in real.layout_detection["lat"] and real.bucket_ratio == pytest.approx(2.5)
    rng = np.random.default_rng(7)
    caught = sum(_rolled_back(pol, ISTIO, x.median_ms, x.median_ms * (1 + claim / 100), 47.5, 2.5, rng, weight=5)
                 for _ in range(150))
    assert caught >= 0.9 * 150, (claim, caught)


def test_detection_on_a_fine_layout_holds_and_is_near_the_geometric_claim():
    """Buckets x1.05 apart: the claim on the real bounds holds with the judge, and lies between the
    fine-bucket claim and the worst case of x1.05."""
    bounds = tuple(round(10 * 1.05 ** i, 6) for i in range(120))
    pol = parse_policy(POLICY)
    x = _layout(bounds, 114.0)
    claim = plan(pol, rps=50, layouts={"lat": x}).steps[0].p95_increase_pct
    fine, worst = (plan(pol, rps=50, bucket_ratio=r).steps[0].p95_increase_pct for r in (1.0, 1.05))
    assert claim is not None and fine * 0.9 <= claim <= worst * 1.05, (fine, claim, worst)
    rng = np.random.default_rng(8)
    caught = sum(_rolled_back(pol, bounds, x.median_ms, x.median_ms * (1 + claim / 100), 47.5, 2.5, rng, weight=5)
                 for _ in range(100))
    assert caught >= 90, (claim, caught)


def test_two_relative_checks_each_are_planned_on_their_own_layout():
    """One check's fine layout must not size the other's coarse one (the plan used the resolving
    layout's ratio for the first check): each check's column is its own; the step's is the smaller
    (a rollback needs either to fail)."""
    pol = parse_policy({**POLICY, "checks": [
        {"name": "coarse", "kind": "latency", "quantile": 0.95, "max_increase_pct": 20},
        {"name": "fine", "kind": "latency", "quantile": 0.95, "max_increase_pct": 20}]})
    fine_bounds = tuple(round(10 * 1.05 ** i, 6) for i in range(120))
    both = plan(pol, rps=50, layouts={"coarse": _layout(ISTIO, 114.0), "fine": _layout(fine_bounds, 114.0)})
    alone = plan(pol, rps=50, layouts={"coarse": _layout(ISTIO, 114.0)}, bucket_ratio=10.0)
    for s, a in zip(both.steps, alone.steps):
        assert s.latency_by_check["coarse"] == pytest.approx(a.latency_by_check["coarse"])
        assert s.latency_by_check["fine"] < s.latency_by_check["coarse"]
        assert s.p95_increase_pct == pytest.approx(s.latency_by_check["fine"])


@pytest.mark.parametrize(("bounds", "p95", "n_c"), [(NONGEO, 128.0, 11_250), (NONGEO, 128.0, 2_000_000),
                                                    (NONGEO, 104.0, 3_000),
                                                    (tuple(round(10 * 1.1 ** i, 6) for i in range(70)), 114.0, 3_000)])
def test_the_relative_pass_value_on_a_layout_is_what_the_judge_shows(bounds, p95, n_c):
    """layout_pass_pct: an equal canary is shown within the claim in >= 93% of looks of the judge's own
    bound (evidence.relative_within) on those very bounds. Bounds 50..130 by 10 ms then 250, 500, p95
    128 ms: the plan claimed +17% (a geometric x1.083 layout) where the judge showed +20% in 19-39% of
    steps; the canary's bound is 250 ms in most looks: +108%."""
    level, q = 0.0085, 0.95
    x = _layout(bounds, p95)
    claim = layout_pass_pct(3 * n_c, n_c, layout=x, q=q, sigma=SIGMA, level=level)
    assert claim is not None
    if (bounds, p95, n_c) == (NONGEO, 128.0, 11_250):
        assert claim == pytest.approx((250 / 120 - 1) * 100)
    rng = np.random.default_rng(n_c)
    p = _probs(bounds, x.median_ms)
    edges = np.array([*bounds, math.inf])
    shown = [evidence.relative_within(edges, np.cumsum(rng.multinomial(3 * n_c, p)), np.cumsum(rng.multinomial(n_c, p)),
                                      q=q, tol=claim / 100, level=level)[0] for _ in range(400)]
    assert np.mean(shown) >= 0.93, (claim, np.mean(shown))


def test_a_good_canary_on_thin_top_buckets_is_late_where_the_judge_does_not_pass_it():
    pol = parse_policy(POLICY)
    p = plan(pol, rps=50, layouts={"lat": _layout(NONGEO, 128.0)})
    [rel] = p.pass_checks
    assert rel["late_steps"] == [5, 10, 25, 50], rel
    assert all(s.pass_by_check["lat/relative"] > 100 for s in p.steps)


def test_a_ceiling_is_planned_on_the_bound_at_or_below_it():
    """max_ms 200 on Istio buckets: the judge can show the canary's p95 only <= 100 or <= 250 ms, so a
    canary at 114 ms is never shown below 200 ms (the plan said it was, at every step, with fine
    buckets). The value is what the judge shows (evidence.ceiling_within), at the bound 100 ms."""
    pol = parse_policy({**POLICY, "steps": [10, 50, 100],
                        "checks": [{"name": "lat", "kind": "latency", "quantile": 0.95, "max_ms": 200}]})
    x = _layout(ISTIO, 114.0)
    p = plan(pol, rps=50, layouts={"lat": x})
    [c] = p.pass_checks
    assert c["late_steps"] == [10, 50] and not c["depends_on_latency"], c
    assert c["canary_quantile_ms"] == pytest.approx(114.0)
    assert all(s.pass_by_check["lat/ceiling"] < 100 for s in p.steps)
    assert plan(pol, rps=50, p95_ms=114).pass_checks[0]["late_steps"] == []  # without the layout: fine buckets
    # the value itself: a canary at it is shown below 200 ms in >= 93% of looks
    n_c, level = 3000, 0.0085
    at = layout_ceiling_ms(n_c, layout=x, max_ms=200, q=0.95, sigma=SIGMA, level=level, ratio=pass_ceiling_ratio)
    assert at is not None and at < 100
    rng = np.random.default_rng(2)
    p_c = _probs(ISTIO, at / math.exp(SIGMA * Z95))
    edges = np.array([*ISTIO, math.inf])
    shown = [evidence.ceiling_within(edges, np.cumsum(rng.multinomial(n_c, p_c)), q=0.95, max_value=200,
                                     level=level)[0] for _ in range(1000)]
    assert np.mean(shown) >= 0.93
    assert layout_ceiling_ms(n_c, layout=x, max_ms=0.5, q=0.95, sigma=SIGMA, level=level,
                             ratio=pass_ceiling_ratio) is None  # no bound at or below it


def test_layout_report_covers_ceilings_and_names_what_no_traffic_can_show():
    pol = parse_policy({**POLICY, "checks": [
        {"name": "both", "kind": "latency", "quantile": 0.95, "max_increase_pct": 20, "max_ms": 250},
        {"name": "ceil", "kind": "latency", "quantile": 0.95, "max_ms": 200},
        {"name": "ok", "kind": "latency", "quantile": 0.95, "max_ms": 100}]})
    x = _layout(ISTIO, 114.0)
    counts = tuple(np.cumsum(_probs(ISTIO, x.median_ms)) * 100_000)
    fast = tuple(np.cumsum(_probs(ISTIO, 60 / math.exp(SIGMA * Z95))) * 100_000)
    got = {r.check: r for r in layout_report(pol, {"both": Histogram((*ISTIO, math.inf), counts),
                                                   "ceil": Histogram((*ISTIO, math.inf), counts),
                                                   "ok": Histogram((*ISTIO, math.inf), fast)})}
    assert got["both"].resolves is False and got["both"].unresolved == ("both/relative",)
    assert got["ceil"].resolves is False and got["ceil"].unresolved == ("ceil/ceiling",)
    assert "only one faster than the bound 100 ms" in got["ceil"].detail
    assert got["ok"].resolves is True and "can be shown below 100 ms" in got["ok"].detail
    assert got["ceil"].quantile_ms == pytest.approx(114.0) and got["ceil"].layout is not None


def _cli(*args: str, env: dict[str, str] | None = None):
    from typer.testing import CliRunner

    from canary.cli import app

    return CliRunner().invoke(app, ["plan", *args], env=env or {})


def test_plan_asked_to_read_a_layout_never_exits_0_without_reading_it(tmp_path):
    """docs/reference/cli.md, "Commands" (`canary plan`): exit 3 after the plan when the layout could not be read. A
    ceiling-only policy was not read at all (exit 0, nothing said); `--prometheus-url ""` (an unset variable in a CI
    line) was dropped."""
    f = tmp_path / "ceil.yaml"
    f.write_text("steps: [10, 50, 100]\nchecks:\n  - {name: lat, kind: latency, quantile: 0.95, max_ms: 200}\n")
    down = _cli("-p", str(f), "--rps", "50", "--prometheus-url", "http://127.0.0.1:9", "--model", "m",
                "--stable-version", "v1", "-n", "ml")
    assert down.exit_code == 3, down.output
    said = " ".join(down.output.split())
    assert "could not read the stable's latency buckets of lat" in said
    assert said.count("could not be asked") == 1, said  # once, on the layout line: not again in the error
    assert "the canary arm" not in said and "the stable version 'v1' of 'm'" in said
    for extra in ((), ("--model", "m", "--stable-version", "v1")):
        empty = _cli("-p", str(f), "--rps", "50", "--prometheus-url", "", *extra)
        assert empty.exit_code == 2 and "--prometheus-url is empty" in empty.output, empty.output
    fine = _cli("-p", str(f), "--rps", "50", env={"CANARY_PROMETHEUS_URL": ""})
    assert fine.exit_code == 0, fine.output  # an empty environment variable is no request to read


def test_plan_told_whose_layout_to_read_without_a_prometheus_exits_2(tmp_path):
    """Decision 264: `--model m --stable-version v1` with CANARY_PROMETHEUS_URL unset (a CI job's variable) planned on
    fine buckets, exit 0, nothing said: the plan that README's Istio-buckets warning sends one to read them with."""
    f = tmp_path / "rel.yaml"
    f.write_text("steps: [10, 50, 100]\nchecks:\n  - {name: lat, kind: latency, quantile: 0.95, max_increase_pct: 20}\n")
    for extra, said in ((("--model", "m", "--stable-version", "v1", "-n", "ml"), "--model and --stable-version say"),
                        (("--model", "m"), "--model says"), (("--stable-version", "v1"), "--stable-version says")):
        res = _cli("-p", str(f), "--rps", "50", *extra, env={"CANARY_PROMETHEUS_URL": ""})
        assert res.exit_code == 2, res.output
        text = " ".join(res.output.split())
        assert f"{said} whose latency buckets to read, but no Prometheus is given" in text and "rollout at" not in text
    fine = _cli("-p", str(f), "--rps", "50", "-n", "ml", env={"CANARY_PROMETHEUS_URL": ""})
    assert fine.exit_code == 0, fine.output  # nothing asked to be read: the plan on --bucket-ratio


def test_pass_values_never_read_equal_to_a_limit_they_are_not_on():
    """At 4 rps under the default policy the 50% step's JS value is 0.1011: late, and it printed "0.1"
    beside the limit "JS 0.1". docs/judge.md says what the plan says: within JS 0.1 at no step."""
    import json
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    pol = str(root / "policies" / "default.yaml")
    doc = json.loads(_cli("-p", pol, "--rps", "4", "-o", "json").output)
    late = {c["key"]: c["late_steps"] for c in doc["pass_checks"]}
    assert late["predictions/psi"] == [5, 10] and late["predictions/js"] == [5, 10, 25, 50]
    js = doc["steps"][3]["pass_by_check"]["predictions/js"]
    assert 0.1 < js < 0.1015
    row = next(line for line in _cli("-p", pol, "--rps", "4").output.splitlines() if "predictions/js" in line
               and "│" in line)
    assert row.split("│")[-2].strip() == "0.101", row
    text = " ".join((root / "docs" / "judge.md").read_text().split())
    assert "within JS 0.1 at no step" in text and "only from the 50% step on" not in text
