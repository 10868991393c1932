"""crd.parse shares one parsed Policy between rollouts that carry the same policy text."""

from __future__ import annotations

import copy

import pytest

from canary import crd
from canary.errors import ConfigError
from tests import fleet


def test_rollouts_with_the_same_policy_share_one_parsed_policy() -> None:
    a, b = fleet.rollout_object(0, "v2"), fleet.rollout_object(1, "v2")
    b["spec"]["policy"] = copy.deepcopy(a["spec"]["policy"])
    pa, pb = crd.parse(a).policy, crd.parse(b).policy
    assert pa is pb
    b["spec"]["policy"]["analysis"]["alpha"] = 0.02
    pc = crd.parse(b).policy
    assert pc is not pa and pc.analysis.alpha == 0.02 and pa.analysis.alpha != 0.02


def test_an_invalid_policy_is_refused_for_each_rollout_with_its_own_location() -> None:
    bad = []
    for i in range(2):
        obj = fleet.rollout_object(i, "v2")
        obj["spec"]["policy"]["analysis"]["alpha"] = "0.01"  # a string: strict policies refuse it
        bad.append(obj)
    for i, obj in enumerate(bad):
        with pytest.raises(ConfigError) as err:
            crd.parse(obj)
        assert f"r{i}" in str(err.value) and "alpha" in str(err.value)


def test_the_same_values_in_another_type_are_another_policy() -> None:
    a = fleet.rollout_object(0, "v2")
    a["spec"]["policy"].setdefault("failure", {})["max_failed_looks"] = 1
    b = copy.deepcopy(a)
    b["spec"]["policy"]["failure"]["max_failed_looks"] = True  # == 1 in Python, `true` in JSON: strict refuses it
    assert crd.parse(a).policy.failure.max_failed_looks == 1  # cached; an equality-keyed cache would serve b from it
    with pytest.raises(ConfigError):
        crd.parse(b)


def test_the_cache_is_bounded() -> None:
    cache = crd._Parsed(size=3)  # noqa: SLF001
    made = []
    for i in range(5):
        cache.get(f"k{i}", lambda i=i: made.append(i) or object())  # type: ignore[func-returns-value]
    assert len(cache._items) == 3 and list(cache._items) == ["k2", "k3", "k4"]  # noqa: SLF001
    cache.get("k2", lambda: made.append(99))  # a hit: not parsed again
    assert 99 not in made
    cache.get(None, lambda: made.append(100))  # no key: always parsed
    assert 100 in made
