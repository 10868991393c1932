"""`metrics.namespace_label` (decision 745): matched to the rollout's namespace on every preset query; a label
that already plays another role, or that the queries match themselves, is refused at load time."""

from __future__ import annotations

from typing import Any

import pytest

from canary.errors import PolicyError
from canary.metrics import queries as q
from canary.model import Target
from canary.policy import parse_policy

TARGET = Target(namespace="ml", virtual_service="rec", model="rec", stable_version="v1", canary_version="v2")


def _policy(**metrics: Any) -> Any:
    return parse_policy({"steps": [10, 100], "metrics": metrics,
                         "checks": [{"name": "e", "kind": "error_rate", "max_rate_pct": 5}]})


@pytest.mark.parametrize(("metrics", "selector"), [
    ({}, '{model_name="rec",model_version="v2"}'),  # unchanged where not set: the exporter has no such label
    ({"namespace_label": "namespace"}, '{model_name="rec",model_version="v2",namespace="ml"}'),
    ({"source": "triton", "namespace_label": "kubernetes_namespace"},
     '{model="rec",version="v2",kubernetes_namespace="ml"}'),
    ({"source": "istio", "namespace_label": "source_namespace"},  # an override of istio's own
     '{destination_service_name="rec",destination_version="v2",source_namespace="ml",reporter="destination"}'),
])
def test_the_namespace_label_is_matched_to_the_rollouts_namespace(metrics: dict[str, Any], selector: str) -> None:
    pol = _policy(**metrics)
    assert q.selector(pol, TARGET, "canary", pol.metrics.source) == selector


@pytest.mark.parametrize(("metrics", "says"), [
    ({"namespace_label": "model_name"}, "metrics.namespace_label: 'model_name' cannot be the namespace label: it is "
                                        "the model label too"),
    ({"namespace_label": "model_version"}, "it is the arm label too"),
    ({"namespace_label": "outcome"}, "a label the queries of source 'model' match or split on themselves"),
    ({"source": "istio", "namespace_label": "reporter"}, "a fixed matcher of source 'istio'"),
    ({"namespace_label": "namespace", "labels": {"namespace": "ml"}}, "metrics.labels.namespace: the namespace label"),
    ({"namespace_label": ""}, "metrics.namespace_label: '' is not a valid Prometheus label name"),
])
def test_a_namespace_label_that_would_misread_is_refused(metrics: dict[str, Any], says: str) -> None:
    with pytest.raises(PolicyError) as err:
        _policy(**metrics)
    assert says in str(err.value)
