"""Found by an adversarial review of the evidence judge; each case stands for a kind (issue 9).

- merging sparse prediction buckets must not hide a shift into a bucket one arm never uses, and
  more stable data must not turn a FAIL into a PASS;
- a limit shown within cannot FAIL on a breach test that coarse buckets moved to another quantile;
- `canary judge` never crashes on numbers out of float range, and refuses -Infinity and negative
  latency bounds with the file and field named;
- a custom ratio of values of different signs is never a pass.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

from canary.analysis import judge as J
from canary.model import Histogram, Outcome, Scalar
from canary.policy import parse_policy

INF = math.inf
PRED_BOUNDS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, INF)


def _policy(check: dict) -> object:
    return parse_policy({"steps": [10, 100], "analysis": {"interval": "5m", "look_every": "30s",
                         "min_canary_requests": 100}, "checks": [check]})


@pytest.mark.parametrize("stable_scale", [1, 4, 16])
def test_a_shift_into_a_bucket_stable_never_uses_is_never_a_pass(stable_scale: int) -> None:
    p = _policy({"name": "pred", "kind": "prediction_shift", "max_psi": 0.2, "max_js": 0.1})
    stable = Histogram((0.1, 0.2, INF), (0.0, 1000.0 * stable_scale, 10000.0 * stable_scale))
    canary = Histogram((0.1, 0.2, INF), (100.0, 100.0, 1000.0))  # 10% where stable has nothing
    r = J.judge(p, {"pred": (stable, canary)}).results[0]
    assert r.outcome is not Outcome.PASS, r.reason


def test_a_spike_into_a_rare_bucket_is_not_shown_within() -> None:
    p = _policy({"name": "pred", "kind": "prediction_shift", "max_psi": 0.2})
    stable = Histogram(PRED_BOUNDS, (571, 1723, 2899, 3833, 4453, 4795, 4945, 4992, 5000, 5000))
    canary = Histogram(PRED_BOUNDS, (54, 163, 275, 364, 423, 456, 470, 475, 476, 500))  # 24 above 0.9
    r = J.judge(p, {"pred": (stable, canary)}).results[0]
    assert r.outcome is Outcome.INCONCLUSIVE and "as exported" in r.reason, r.reason


def test_identical_predictions_still_pass() -> None:
    p = _policy({"name": "pred", "kind": "prediction_shift", "max_psi": 0.25, "max_js": 0.15})
    shares = (0.02, 0.07, 0.17, 0.32, 0.5, 0.68, 0.83, 0.93, 0.98, 1.0)
    r = J.judge(p, {"pred": (Histogram(PRED_BOUNDS, tuple(9000 * x for x in shares)),
                             Histogram(PRED_BOUNDS, tuple(1000 * x for x in shares)))}).results[0]
    assert r.outcome is Outcome.PASS, r.reason


def test_a_canary_shown_faster_is_not_failed_by_an_interpolated_quantile() -> None:
    p = _policy({"name": "lat", "kind": "latency", "quantile": 0.95, "max_increase_pct": 20})
    b = (5, 10, 25, 50, 100, 250, 500, 1000, 2500, INF)
    stable = Histogram(b, (100, 500, 2000, 5000, 9300, 9900, 9990, 10000, 10000, 10000))
    canary = Histogram(b, (30, 150, 600, 1500, 2880, 2880, 3000, 3000, 3000, 3000))  # p95 <= 100 < stable's
    r = J.judge(p, {"lat": (stable, canary)}).results[0]
    assert r.outcome is not Outcome.FAIL, r.reason
    assert "stable p97.3" in r.reason  # the reason names the quantile the breach test used


@pytest.mark.parametrize(("stable", "canary", "hib"), [(-1.0, 100.0, False), (-1.0, -1000.0, True),
                                                        (0.0, 5.0, False), (2.0, -3.0, True)])
def test_a_ratio_of_values_of_other_signs_is_never_a_pass(stable: float, canary: float, hib: bool) -> None:
    p = _policy({"name": "c", "kind": "custom", "query": "q", "max_ratio": 2, "higher_is_better": hib})
    r = J.judge(p, {"c": (Scalar(stable, 5000), Scalar(canary, 5000))}).results[0]
    assert r.outcome is not Outcome.PASS, r.reason


def _cli(tmp_path: Path, text: str) -> object:
    from tests.unit.test_plan_offline import _app

    f = tmp_path / "in.json"
    f.write_text(text)
    return CliRunner().invoke(_app(), ["judge", "--input", str(f), "--output", "json"])


LAT = '{"policy":{"steps":[10,100],"checks":[{"name":"lat","kind":"latency","max_ms":250}]},"look":LOOK,' \
      '"checks":{"lat":{"stable":{"bounds":[100,300,"+Inf"],"counts":[9,10,10]},"canary":CANARY}}}'
OK = '{"bounds":[100,300,"+Inf"],"counts":[900,1000,1000]}'


@pytest.mark.parametrize(("look", "canary", "field"), [
    ("1" + "0" * 400, OK, "look"),
    ("0", '{"bounds":[100,300,"+Inf"],"counts":[900,1' + "0" * 400 + ',1000]}', "checks.lat.canary.counts[1]"),
    ("0", '{"bounds":[-Infinity,300,"+Inf"],"counts":[900,1000,1000]}', "checks.lat.canary.bounds[0]"),
    ("0", '{"bounds":[-5,300,"+Inf"],"counts":[900,1000,1000]}', "checks.lat.canary.bounds[0]"),
])
def test_out_of_range_numbers_and_impossible_bounds_are_bad_input(tmp_path: Path, look: str, canary: str,
                                                                   field: str) -> None:
    res = _cli(tmp_path, LAT.replace("LOOK", look).replace("CANARY", canary))
    assert res.exit_code == 2, res.output  # type: ignore[attr-defined]
    assert f"in.json: {field}" in res.output and "Traceback" not in res.output  # type: ignore[attr-defined]


def test_a_valid_input_still_judges(tmp_path: Path) -> None:
    res = _cli(tmp_path, LAT.replace("LOOK", "3").replace("CANARY", OK))
    assert res.exit_code in (0, 1, 4), res.output  # type: ignore[attr-defined]
    assert json.loads(res.stdout)["look"] == 3  # type: ignore[attr-defined]


# -- a canary exporting a coarser prediction layout (thirteenth session's attack) -----------------------


def _deciles(per_cell: list[float]) -> Histogram:
    cum, total = [], 0.0
    for x in per_cell:
        total += x
        cum.append(total)
    return Histogram(PRED_BOUNDS, tuple(cum))


@pytest.mark.parametrize("canary_bounds", [(0.5, INF), (0.3, 0.6, INF), (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, INF)])
def test_a_shift_the_canarys_coarser_layout_hides_is_never_a_pass(canary_bounds: tuple[float, ...]) -> None:
    """Stable on deciles, the canary on fewer bounds: on the shared bounds PSI and JS only shrink (cells
    merge), so the canary can look equal where its predictions moved inside a merged cell. It used to
    PASS at PSI 0; a shift the shared cells do show still FAILs, and the same layouts pass."""
    p = _policy({"name": "pred", "kind": "prediction_shift", "max_psi": 0.2, "max_js": 0.1})
    stable = _deciles([10_000.0] * 10)
    fine = [0.0, 0.0, 0.0, 0.0, 5_000.0, 5_000.0, 0.0, 0.0, 0.0, 0.0]  # the canary's mass around 0.5
    at = {b: sum(fine[:i + 1]) for i, b in enumerate(PRED_BOUNDS)}
    canary = Histogram(canary_bounds, tuple(at[b] for b in canary_bounds))
    r = J.judge(p, {"pred": (stable, canary)}).results[0]
    if canary_bounds == (0.5, INF):  # the shared cells are [0, 0.5] and (0.5, inf): 50/50 both
        assert r.outcome is Outcome.INCONCLUSIVE and "different bucket bounds" in r.reason, r.reason
    else:
        assert r.outcome is Outcome.FAIL, r.reason
    same = J.judge(p, {"pred": (stable, _deciles([1_000.0] * 10))}).results[0]
    assert same.outcome is Outcome.PASS, same.reason
