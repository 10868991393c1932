"""`metrics.labels` values: a blank one is an unset variable, not a matcher anyone means (decision 675)."""

from __future__ import annotations

import pytest

from canary.errors import PolicyError
from canary.policy import parse_policy

GOOD = {"steps": [5, 50, 100], "checks": [{"name": "lat", "kind": "latency", "max_ms": 250}]}


def refused(labels: dict[str, str]) -> PolicyError:
    with pytest.raises(PolicyError) as err:
        parse_policy({**GOOD, "metrics": {"labels": labels}}, file="p.yaml")
    return err.value


@pytest.mark.parametrize("value", ["", " ", "\t"])
def test_an_empty_extra_label_value_is_refused_as_an_unset_variable(value: str) -> None:
    """`labels: {cluster: ""}`, what a template renders for an unset `$CLUSTER`, was taken: the matcher
    `cluster=""` reads only the series without a `cluster` label, another cluster's or none (decision 675)."""
    err = refused({"cluster": value})
    assert err.field == "metrics.labels.cluster", str(err)
    assert "empty" in err.detail and "unset" in err.detail and 'cluster=""' in err.detail, str(err)


def test_a_label_value_with_text_is_taken() -> None:
    assert parse_policy({**GOOD, "metrics": {"labels": {"cluster": "eu-1"}}}).metrics.labels == {"cluster": "eu-1"}
