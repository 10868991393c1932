"""The exact anytime tests pooled over the rollout's windows (docs/decisions.md 151).

Decisions 142 and 149 gave a ceiling (`max_ms`, `max_rate_pct`) and an error or missing rate increase an
exact anytime test, but on the current window's counts only: a canary failing every request against a few
stable requests a step, or a few requests a step far over a hard ceiling, stayed INCONCLUSIVE step after
step, each window too short to decide alone, while the normal mixture pooled its (S, I) over the steps but
reads little information as little evidence. Now a ceiling's exceedance counts add up over the windows and
an increase's windows' e-value factors multiply (`judge._pool`; the argument is in docs/judge.md, "The exact
tests pooled over windows"). Windows are folded as the rollout state folds them (`rollout._fold`: the pairs
of `Verdict.window_evidence()` summed key by key).

`.venv/bin/python tests/unit/test_judge_exact_pooled.py RUNS` prints the level figures of decision 151.
"""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest

from canary.analysis import judge as J
from canary.analysis import sequential as S
from canary.errors import ConfigError
from canary.model import Counts, Histogram, Outcome
from canary.offline import load_exported
from canary.policy import parse_policy

INC = {"name": "c", "kind": "error_rate", "max_increase_points": 1}


def _policy(check: dict, *, alpha: float = 0.01, min_canary: int = 0):
    return parse_policy({"steps": [5, 10, 25, 50, 100], "analysis": {"min_canary_requests": min_canary,
                                                                      "alpha": alpha}, "checks": [check]})


def _fold(prior: dict[str, tuple[float, float]], window: dict[str, tuple[float, float]]) -> None:
    """What `rollout._fold` does when a window closes: the window's pairs added to the prior's."""
    for key, (a, b) in window.items():
        a0, b0 = prior.get(key, (0.0, 0.0))
        prior[key] = (a0 + a, b0 + b)


def _steps(policy, windows: list[tuple]) -> list:
    """Each window (one look on its data) judged at its step with the earlier windows folded in."""
    prior: dict[str, tuple[float, float]] = {}
    out = []
    for step, m in enumerate(windows):
        v = J.judge(policy, {"c": m}, prior=prior, step=step)
        out.append(v.results[0])
        _fold(prior, v.window_evidence())
    return out


@pytest.mark.parametrize("kind", ["error_rate", "feature_missing"])
@pytest.mark.parametrize("n_s, n_c", [(3, 100), (10, 20), (5, 40)])
def test_a_canary_failing_every_request_against_few_stable_requests_over_short_steps_fails(
        kind: str, n_s: int, n_c: int) -> None:
    """A few stable requests (no errors) and a canary failing every request, in steps too short for the
    window's own exact test: INCONCLUSIVE at the first step, FAIL at the second on the pooled exact test. With
    each window's evidence alone it stayed INCONCLUSIVE at every step (0 of 3 stable requests needs 517
    failing canary requests in one window); the normal mixture never gets there (about 10 effective requests
    a step: at the fourth step for 10 and 20 requests a step, never for 3 and 100)."""
    results = _steps(_policy({**INC, "kind": kind}), [(Counts(0, n_s), Counts(n_c, n_c))] * 4)
    assert results[0].outcome is Outcome.INCONCLUSIVE, results[0].reason
    assert all(r.outcome is Outcome.FAIL for r in results[1:]), [r.reason for r in results]
    t = results[1].extra["tests"][0]
    assert t["p_exact_pooled"] <= 0.01 * S.EXACT_POOLED_SHARE < t["p_exact"] / S.exact_shares(S.window_share(1, 0))[0]


@pytest.mark.parametrize("hard", [True, False])
def test_a_few_requests_a_step_far_over_a_ceiling_fail_pooled(hard: bool) -> None:
    """3 requests a step all above 5 s against `max_ms: 1000` at p95 (below `min_canary_requests`: an absolute
    breach fails anyway), and 3 errors of 3 a step against a 10% ceiling: each window alone is INCONCLUSIVE
    (p_exact 4.8e-4 at the first step's share), the steps' exceedance counts added up fail at the second."""
    lat = {"name": "c", "kind": "latency", "quantile": 0.95, "max_ms": 1000, "hard": hard}
    slow = Histogram((250.0, 1000.0, 5000.0, math.inf), (0.0, 0.0, 0.0, 3.0))
    err = {"name": "c", "kind": "error_rate", "max_rate_pct": 10, "hard": hard}
    for check, m in ((lat, (None, slow)), (err, (Counts(0, 100), Counts(3, 3)))):
        results = _steps(_policy(check, min_canary=100), [m] * 3)
        assert [r.outcome for r in results] == [Outcome.INCONCLUSIVE, Outcome.FAIL, Outcome.FAIL], \
            [r.reason for r in results]


def test_the_rollouts_first_window_is_judged_as_before_and_the_shares_sum_to_the_exact_share() -> None:
    """Nothing pools in the rollout's first window: its own exact test keeps 0.025 of the level and no pooled
    test runs (the golden verdicts' window-0 looks are unchanged). The shares of every window's own exact test
    and of the pooled one sum to at most EXACT_SHARE."""
    own, pooled = S.exact_shares(S.window_share(0, 0))
    assert own == pytest.approx(0.025) and pooled == 0.0
    total = S.EXACT_POOLED_SHARE + sum(S.exact_shares(S.window_share(s, w))[0]
                                       for s, w in itertools.product(range(1_500), range(1_500)))
    assert total <= S.EXACT_SHARE + 1e-12 and total == pytest.approx(S.EXACT_SHARE, rel=3e-3)
    assert S.exact_shares(0.0) == (0.0, S.EXACT_POOLED_SHARE)  # a window not placed: the pooled test alone
    r = J.judge(_policy(INC), {"c": (Counts(0, 10), Counts(600, 600))}, step=0).results[0]
    t = r.extra["tests"][0]
    assert "p_exact_pooled" not in t and t["exact_window"][1] == 1.0
    assert r.p_value == pytest.approx(t["p_exact"] / 0.025)


def test_an_earlier_window_whose_exact_evidence_is_unknown_is_not_pooled() -> None:
    """A prior with a sub-test's (S, I) but without its ".exact" part (a state written before decision 151):
    the earlier windows' counts are unknown, so the pooled test does not run (reading them as none would test
    every such window afresh at the pooled share)."""
    prior = {"c/increase": (5.0, 10.0)}
    r = J.judge(_policy(INC), {"c": (Counts(0, 3), Counts(100, 100))}, prior=prior, step=1).results[0]
    assert "p_exact_pooled" not in r.extra["tests"][0]
    r = J.judge(_policy(INC), {"c": (Counts(0, 3), Counts(100, 100))}, prior={**prior, "c/increase.exact": (4.6, 1.0)},
                step=1).results[0]
    assert r.extra["tests"][0]["p_exact_pooled"] < 1e-3 and r.outcome is Outcome.FAIL


def test_equal_arms_never_fail_when_the_rates_differ_between_steps() -> None:
    """Simpson's paradox is what pooling counts of two arms would fall into: stable and canary equal in every
    step, 1% errors at a quiet step where the canary has 5% of the traffic and 30% at a busy one where it has
    50%: pooled counts read the canary 20 points worse. The increase's pooled test multiplies the windows'
    own factors (stratified by window), each at most 1/2 here: p = 1 at every look."""
    rng = np.random.default_rng(151)
    policy = _policy(INC)
    for _ in range(30):
        prior: dict[str, tuple[float, float]] = {}
        for step, (rate, n_s, n_c) in enumerate([(0.01, 1_900, 100), (0.3, 5_000, 5_000), (0.01, 1_500, 500),
                                                 (0.3, 20, 2_000)]):
            m = (Counts(float(rng.binomial(n_s, rate)), n_s), Counts(float(rng.binomial(n_c, rate)), n_c))
            v = J.judge(policy, {"c": m}, prior=prior, step=step)
            assert v.results[0].outcome is not Outcome.FAIL, v.results[0].reason
            assert v.results[0].extra["tests"][0].get("p_exact_pooled", 1.0) == 1.0
            _fold(prior, v.window_evidence())


def test_the_pooled_exact_tests_are_monotone_in_evidence() -> None:
    """More canary errors (or exceedances), in the current window or an earlier one, never raise the pooled
    p; more stable errors never lower it."""
    policy = _policy(INC)

    def pooled_p(first: tuple, now: tuple, check: dict = INC) -> float:
        p = _policy(check) if check is not INC else policy
        prior = J.judge(p, {"c": first}, step=0).window_evidence()
        return J.judge(p, {"c": now}, prior=prior, step=1).results[0].extra["tests"][0]["p_exact_pooled"]

    ps = [pooled_p((Counts(0, 5), Counts(x, 30)), (Counts(0, 5), Counts(30, 30))) for x in range(0, 31, 3)]
    assert ps == sorted(ps, reverse=True) and ps[-1] < ps[0]
    ps = [pooled_p((Counts(0, 5), Counts(30, 30)), (Counts(0, 5), Counts(x, 30))) for x in range(0, 31, 3)]
    assert ps == sorted(ps, reverse=True) and ps[-1] < ps[0]
    ps = [pooled_p((Counts(x, 5), Counts(30, 30)), (Counts(0, 5), Counts(30, 30))) for x in range(6)]
    assert ps == sorted(ps)
    ceiling = {"name": "c", "kind": "error_rate", "max_rate_pct": 10}
    ps = [pooled_p((Counts(0, 50), Counts(x, 20)), (Counts(0, 50), Counts(4, 20)), ceiling) for x in range(21)]
    assert ps == sorted(ps, reverse=True) and ps[-1] < 1e-6


# -- the level at the limit, over several windows, with the real judge ------------------------------------

# (stable rate, stable requests a look, canary requests a look) per step: the rates and the split differ
# between steps, as load and the step's weight make them
INCREASE_STEPS = [(0.0, 1, 20), (0.02, 10, 10), (0.3, 5, 20), (0.001, 2, 50)]
# a ceiling of 10% errors: the canary's rate at it in every step, its requests a look
CEILING_STEPS = [2, 10, 5, 40]


def _rollout(rng: np.random.Generator, policy, steps: list, draw) -> tuple[bool, float]:
    """One rollout at the limit: each step 5-15 looks at its cumulative counts, the real judge at each, windows
    folded. (any look failed, the smallest pooled exact p seen)."""
    prior: dict[str, tuple[float, float]] = {}
    failed, least = False, 1.0
    for step, spec in enumerate(steps):
        looks = int(rng.integers(5, 16))
        data = draw(rng, spec, looks)
        last: dict[str, tuple[float, float]] = {}
        for m in data:
            v = J.judge(policy, {"c": m}, prior=prior, step=step)
            failed |= v.outcome is Outcome.FAIL
            least = min(least, v.results[0].extra["tests"][0].get("p_exact_pooled", 1.0))
            last = v.window_evidence()
        _fold(prior, last)
    return failed, least


def _increase_draw(rng: np.random.Generator, spec: tuple, looks: int) -> list:
    p_s, per_s, per_c = spec
    xs, xc = np.cumsum(rng.binomial(per_s, p_s, looks)), np.cumsum(rng.binomial(per_c, p_s + 0.01, looks))
    return [(Counts(float(xs[j]), float(per_s * (j + 1))), Counts(float(xc[j]), float(per_c * (j + 1))))
            for j in range(looks)]


def _ceiling_draw(rng: np.random.Generator, per_c: int, looks: int) -> list:
    xc = np.cumsum(rng.binomial(per_c, 0.1, looks))
    return [(Counts(0.0, 100.0), Counts(float(xc[j]), float(per_c * (j + 1)))) for j in range(looks)]


def level_figures(runs: int, seed: int = 151) -> dict[str, tuple[float, float, float]]:
    """Per scenario: (share of rollouts failed by the whole test at `analysis.alpha` 0.2, share whose pooled
    exact p ever reached 0.2, and 0.05): all at most their level."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, check, steps, draw in [
            ("increase", INC, INCREASE_STEPS, _increase_draw),
            ("ceiling", {"name": "c", "kind": "error_rate", "max_rate_pct": 10}, CEILING_STEPS, _ceiling_draw)]:
        policy = _policy(check, alpha=0.2)
        got = [_rollout(rng, policy, steps, draw) for _ in range(runs)]
        out[name] = (sum(f for f, _ in got) / runs, sum(p <= 0.2 for _, p in got) / runs,
                     sum(p <= 0.05 for _, p in got) / runs)
    return out


def test_the_pooled_exact_tests_at_the_limit_fail_at_most_their_level_over_several_windows() -> None:
    """At the limit (the canary +1 point over a stable whose rate and share change between steps; a canary at
    its 10% ceiling), 4 steps of 5-15 looks, the real judge, windows folded as the state folds them: the
    whole test fails at most `analysis.alpha` (0.2, so that a breach of it would show), and the pooled exact
    test's p, read as a test of its own, reaches a level at most that often."""
    for name, (failed, pooled_02, pooled_005) in level_figures(150).items():
        assert failed <= 0.2 and pooled_02 <= 0.2 and pooled_005 <= 0.05, (name, failed, pooled_02, pooled_005)


# -- `canary judge --input`: the prior as the rollout state records it -------------------------------------


def _exported(tmp_path, prior: dict) -> object:
    doc = {"policy": {"steps": [10, 100], "analysis": {"min_canary_requests": 0},
                      "checks": [{**INC, "max_rate_pct": 10}]},
           "step": 1, "prior": prior,
           "checks": {"c": {"stable": {"events": 0, "total": 3}, "canary": {"events": 100, "total": 100}}}}
    f = tmp_path / "look.json"
    f.write_text(json.dumps(doc))
    return load_exported(f)


def test_an_exported_look_reads_the_exact_parts_of_a_prior(tmp_path) -> None:
    ex = _exported(tmp_path, {"c/increase": [5.0, 10.0], "c/increase.exact": [4.6, 1.0],
                              "c/ceiling": [20.0, 100.0], "c/ceiling.exact": [100.0, 100.0]})
    assert ex.prior["c/increase.exact"] == (4.6, 1.0) and ex.prior["c/ceiling.exact"] == (100.0, 100.0)
    r = J.judge(ex.policy, ex.measurements, prior=ex.prior, step=ex.step).results[0]
    assert r.outcome is Outcome.FAIL
    for key, bad in [("c/ceiling.exact", [5.0, 3.0]), ("c/ceiling.exact", [-1.0, 3.0]),
                     ("c/increase.exact", [-5.0, 1.0]), ("c/increase.exact", [1.0, -1.0]),
                     ("c/relative.exact", [1.0, 1.0])]:
        with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
            _exported(tmp_path, {key: bad})


if __name__ == "__main__":
    import sys

    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 3_000
    for name, (failed, p02, p005) in level_figures(runs).items():
        print(f"{name}: {runs} rollouts at the limit, 4 steps: whole test failed {failed:.4f} (alpha 0.2); "
              f"pooled exact p <= 0.2 in {p02:.4f}, <= 0.05 in {p005:.4f}")
