"""The drift statistics say an empty side as a value, not as numpy's RuntimeWarning (docs/decisions.md 1001).

`pytest -W error::RuntimeWarning tests/unit -k drift` failed three tests: `ks_binned` divided by an empty
reference's 0 ("invalid value encountered in divide", D NaN, p 1, as `ks_rows` says it under `errstate`) and
`_z_test` by a reference that saw none of the categories ("invalid value encountered in scalar divide", p NaN).
The values are what they were; the warnings, printed into every run's output, are gone."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from canary.drift import stats as D


@pytest.fixture(autouse=True)
def _warnings_are_errors():  # type: ignore[no-untyped-def]
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        yield


@pytest.mark.parametrize("ref,cur", [([0.0] * 4, [1.0] * 4), ([1.0] * 4, [0.0] * 4), ([0.0] * 4, [0.0] * 4)])
def test_ks_of_an_empty_side_is_no_distance_and_no_evidence(ref: list[float], cur: list[float]) -> None:
    d, p = D.ks_binned(np.array(ref), np.array(cur))
    assert math.isnan(d) and p == 1.0
    rd, rp = D.ks_rows(np.array([ref]), np.array([cur]))
    assert math.isnan(rd[0]) and rp[0] == p


def test_a_categorical_reference_that_saw_none_of_two_categories_is_no_test_never_drift() -> None:
    r = D.categorical_drift("c", np.array([0.0, 0.0]), np.array([150.0, 1.0]))
    assert r.test == "z" and math.isnan(r.value) and not r.drifted
