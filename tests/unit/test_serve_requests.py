"""serve_requests: Argo's and Flagger's request shapes, and a 400 naming the field for anything else."""

from __future__ import annotations

import pytest

from canary.serve_requests import BadRequest, argo_ask, flagger_ask, query_fields, read_json

ARGO = {"namespace": "ml", "rollout": "rec-model", "model": "rec-model", "stableVersion": "v1.0.0",
        "canaryVersion": "v2.1.0"}
# As Flagger marshals flaggerv1.CanaryWebhookPayload (pkg/apis/flagger/v1beta1/canary.go)
FLAGGER = {"name": "rec-model", "namespace": "ml", "phase": "Progressing", "checksum": "7b8f6d9c4",
           "metadata": {"model": "rec-model", "stableVersion": "rec-model-primary", "canaryVersion": "rec-model",
                        "policy": "default"}}


def test_argo_fields_and_defaults() -> None:
    a = argo_ask(ARGO)
    assert (a.key, a.revision, a.policy, a.step) == ("argo/ml/rec-model", "v2.1.0", "", "")
    b = argo_ask({**ARGO, "revision": "5d4f8b9c7", "step": "3", "policy": "default"})
    assert (b.revision, b.step, b.policy) == ("5d4f8b9c7", "3", "default")


def test_flagger_payload() -> None:
    f = flagger_ask(FLAGGER)
    assert (f.key, f.revision, f.phase, f.stable_version, f.policy) == (
        "flagger/ml/rec-model", "7b8f6d9c4", "Progressing", "rec-model-primary", "default")
    assert flagger_ask({**FLAGGER, "metadata": {**FLAGGER["metadata"], "tritonCanary": "rec:8000"}}).triton_canary


@pytest.mark.parametrize(("raw", "field"), [
    ({**ARGO, "rollout": ""}, "rollout"),
    ({**ARGO, "rollout": "Rec_Model"}, "rollout"),
    ({**ARGO, "model": "a\nb"}, "model"),
    ({**ARGO, "stableVersion": "-v1"}, "stableVersion"),
    ({**ARGO, "stableVersion": ["v1"]}, "stableVersion"),
    ({**ARGO, "policy": "a/b"}, "policy"),
    ({**ARGO, "step": "x" * 64}, "step"),
    ({**ARGO, "extra": "1"}, "extra"),
    ({**ARGO, "canaryVersion": ARGO["stableVersion"]}, "canaryVersion"),  # one series against itself
])
def test_argo_refusals_name_the_field(raw: dict, field: str) -> None:
    with pytest.raises(BadRequest) as err:
        argo_ask(raw)
    assert err.value.field == field and err.value.status == 400


@pytest.mark.parametrize(("raw", "field"), [
    ({k: v for k, v in FLAGGER.items() if k != "checksum"}, "checksum"),
    ({**FLAGGER, "namespace": "a" * 64}, "namespace"),
    ({**FLAGGER, "phase": 3}, "phase"),
    ({**FLAGGER, "metadata": {**FLAGGER["metadata"], "modle": "rec"}}, "metadata.modle"),  # the user's typo
    ({**FLAGGER, "metadata": "model=rec"}, "metadata"),
    ({**FLAGGER, "metadata": {**FLAGGER["metadata"], "model": 1}}, "metadata.model"),
    ({**FLAGGER, "metadata": {**FLAGGER["metadata"], "canaryVersion": FLAGGER["metadata"]["stableVersion"]}},
     "metadata.canaryVersion"),
])
def test_flagger_refusals_name_the_field(raw: dict, field: str) -> None:
    with pytest.raises(BadRequest) as err:
        flagger_ask(raw)
    assert err.value.field == field


def test_bodies_and_query_strings() -> None:
    assert read_json(b'{"a": "b"}', "application/json; charset=utf-8") == {"a": "b"}
    with pytest.raises(BadRequest) as err:
        read_json(b"{}", "text/plain")
    assert err.value.status == 415
    with pytest.raises(BadRequest):
        read_json(b"[" * 100_000, None)  # deep nesting: refused, not a RecursionError
    assert query_fields("namespace=ml&step=") == {"namespace": "ml", "step": ""}
    with pytest.raises(BadRequest) as err:
        query_fields("step=1&step=2")
    assert err.value.field == "step"


@pytest.mark.parametrize("body, field", [
    (b'{"namespace": "ml", "rollout": "r", "namespace": "prod"}', "namespace"),
    (b'{"metadata": {"model": "a", "model": "b"}}', "model"),
])
def test_a_json_field_given_twice_is_refused_as_in_a_query_string(body: bytes, field: str) -> None:
    """Decision 154: `json.loads` kept the last of two values while a proxy or an admission policy in
    front may have read the first; a query string's name given twice was already refused."""
    with pytest.raises(BadRequest) as err:
        read_json(body, "application/json")
    assert (err.value.field, err.value.status) == (field, 400) and "more than once" in str(err.value)


def test_a_field_flagger_adds_to_its_payload_is_ignored_and_named() -> None:
    """Decision 154 (g): `{"type": "rollout"}` beside Flagger's five fields was a 400, so a Flagger release that
    adds a field (as 1.34 added `checksum`) would fail every webhook of every Canary at the upgrade."""
    ask = flagger_ask({**FLAGGER, "type": "rollout", "canaryWeight": 10})
    assert ask.ignored == ("canaryWeight", "type") and ask.revision == FLAGGER["checksum"]
    assert flagger_ask(FLAGGER).ignored == ()
