"""Missing-value alerts at low traffic (decision 134, an attacker's finding).

`drift.features_missing` (a Kubernetes Event, the webhook and Slack notifications) starts at one evaluation,
with no hysteresis, when a feature's missing rate is above training's by 5 points at a one-sided p < 0.05.
Every 5 minutes over the last hour at 150 requests an hour, the noise of a feature missing in 10% of the
training rows crossed that 59-77 times in four weeks (118-151 at 30%), each an alert and its "resolved".
It starts now at p < 1e-5 (`stats.MISSING_SURE_P`) and stays while MORE MISSING at 0.05; a feature with too
few present values is NOT ARRIVING only at that p too (else too little traffic to judge). A real rise (10%
to 30%) and a feature that stops arriving are alerted at the first evaluation that reads them."""

from __future__ import annotations

import numpy as np
import pytest

from canary.drift import monitor as M
from canary.drift import stats as D

REF = 5_000  # training rows
F = D.FeatureDrift("f", "numeric", "wasserstein", 0.01, 0.1, False, 0.1, REF, 150)


def _evaluations(rates: list[float], per_h: float, seed: int, ref_rate: float = 0.1) -> list[list[str]]:
    """Every 5 minutes, the last hour's missing count of a feature missing at `rates[slot]` (one rate per
    5-minute slot) against `ref_rate` in training: the alerts each evaluation made."""
    rng = np.random.default_rng(seed)
    n = rng.poisson(per_h / 12, len(rates))
    miss = rng.binomial(n, rates)
    s, out = M.MonitorState("m", "v"), []
    for i in range(12, len(rates)):
        total, gone = float(n[i - 12:i].sum()), float(miss[i - 12:i].sum())
        m = D.missing_shift("f", ref_missing=REF * ref_rate, ref_present=REF * (1 - ref_rate), live_missing=gone,
                            live_present=total - gone)
        compared = (F,) if total - gone >= 100 else ()
        s, acts = M.step(s, D.DatasetDrift(compared, 0.0, False, (m,)), i * 300.0, M.MonitorConfig(quiet_s=0),
                         window_s=3_600)
        out.append([a.event for a in acts if isinstance(a, M.Alert)])
    return out


@pytest.mark.parametrize("seed", [0, 1])
def test_four_weeks_of_same_rate_traffic_make_no_missing_alert(seed: int) -> None:
    alerts = [e for ev in _evaluations([0.1] * 24 * 28 * 12, 150, seed) for e in ev]
    assert alerts == []  # 59 and 77 before


def test_a_real_rise_and_a_stop_are_alerted_at_once() -> None:
    day = 24 * 12
    for rate in (0.3, 1.0):  # MORE MISSING, NOT ARRIVING
        ev = _evaluations([0.1] * day + [rate] * day, 150, seed=2)
        first = next(i for i, e in enumerate(ev) if "drift.features_missing" in e)
        assert day - 12 <= first <= day - 12 + 12, (rate, first)  # within the hour the change is read
        assert sum(e.count("drift.features_missing") for e in ev) == 1, rate  # and once


def test_a_feature_with_too_few_present_values_is_not_arriving_only_beyond_doubt() -> None:
    noisy = D.missing_shift("f", ref_missing=500, ref_present=4_500, live_missing=18, live_present=92)
    assert noisy.shifted and noisy.p_value > D.MISSING_SURE_P  # 16% vs 10% in 110 values: MORE MISSING at 5%
    assert D.DatasetDrift((), 0.0, False, (noisy,)).not_arriving() == ()  # too little to judge, not gone
    stopped = D.missing_shift("f", ref_missing=500, ref_present=4_500, live_missing=110, live_present=0)
    assert D.DatasetDrift((), 0.0, False, (stopped,)).not_arriving() == ("f",)


@pytest.mark.parametrize("seed", range(5))
def test_a_feature_that_stops_arriving_at_modest_traffic_is_alerted_within_hours(seed: int) -> None:
    """Decision 136 (the review of 134). At 60 requests an hour a feature missing in 80% of training rows stops
    arriving (100%): the pooled normal approximation put 60 of 60 missing at p 5e-5, not beyond doubt, and the
    first alert came 2.8 to 20 hours later. Fisher's exact test gives 1.6e-6: alerted within about two hours."""
    day = 24 * 12
    ev = _evaluations([0.8] * day + [1.0] * day, 60, seed=seed, ref_rate=0.8)
    first = next(i for i, e in enumerate(ev) if "drift.features_missing" in e)
    assert day - 12 <= first <= day - 12 + 3 * 12, first  # within three hours of the change


def test_a_rare_missing_value_at_low_traffic_is_no_alert() -> None:
    """Decision 136. A feature missing in 0.1% of training rows, at 60 requests an hour: one missing value in
    an hour's 60 is p 0.06 exactly; the normal approximation said about 1e-15, beyond doubt, an alert."""
    one = D.missing_shift("f", ref_missing=5, ref_present=4_995, live_missing=1, live_present=59)
    assert one.p_value > D.MISSING_SURE_P
    assert [e for ev in _evaluations([0.001] * 24 * 28 * 12, 60, seed=0, ref_rate=0.001) for e in ev] == []
