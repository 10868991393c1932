"""What canary writes into an object's metadata is what the API server takes (decision 840).

The emulator now refuses the keys and label values an API server refuses (`canary.sandbox.objectmeta`); these are
the product's own makers of them, checked against the same rules for any input: the label values made of a model
or version name (`drift.store.label_value`: a baseline's, a history ConfigMap's, a retraining Job's labels), and
every annotation key canary writes."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from canary import ci_job, leader, sweep
from canary.drift import retrain, store
from canary.routing import patch
from canary.sandbox import objectmeta


@given(st.text(max_size=200))
def test_a_label_value_made_of_any_name_is_one_the_api_server_takes(name: str) -> None:
    made = store.label_value(name)
    assert objectmeta.value_problems(made) == [], (name, made)


def test_every_annotation_key_canary_writes_is_a_qualified_name() -> None:
    keys = [patch.STATE_ANNOTATION, patch.SUBSETS_ANNOTATION, patch.SERVICE_ANNOTATION, ci_job.ANNOTATION,
            leader.DURATION_ANNOTATION, sweep.SEEN_ANNOTATION, retrain.START, retrain.MODEL,
            retrain.VERSION, retrain.RETRAINING, store.WINDOW_ANNOTATION, store.ENTER_AFTER_ANNOTATION]
    assert {k: objectmeta.key_problems(k) for k in keys if objectmeta.key_problems(k)} == {}
