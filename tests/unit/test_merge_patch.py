"""The emulator's JSON merge patch (`canary.sandbox.jsonpatch.merge_patch`): RFC 7386's examples (its appendix A),
and a result that shares nothing with the document or the patch, now that the document is copied once and patched
in place (decision 1031)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from canary.sandbox.jsonpatch import merge_patch

RFC_7386 = [
    ({"a": "b"}, {"a": "c"}, {"a": "c"}),
    ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
    ({"a": "b"}, {"a": None}, {}),
    ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
    ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
    ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
    ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
    ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
    (["a", "b"], ["c", "d"], ["c", "d"]),
    ({"a": "b"}, ["c"], ["c"]),
    ({"a": "foo"}, None, None),
    ({"a": "foo"}, "bar", "bar"),
    ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
    ([1, 2], {"a": "b", "c": None}, {"a": "b"}),
    ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
]


@pytest.mark.parametrize("doc,patch,want", RFC_7386)
def test_rfc_7386s_examples(doc: Any, patch: Any, want: Any) -> None:
    assert merge_patch(doc, patch) == want


def test_the_result_shares_nothing_with_the_document_or_the_patch() -> None:
    doc = {"metadata": {"annotations": {"a": "1"}, "labels": {"x": "y"}}, "spec": {"hosts": ["m0"]},
           "status": {"phase": "progressing", "history": [{"at": 1}]}}
    patch = {"status": {"phase": "promoted", "history": [{"at": 2}], "new": {"deep": [1]}},
             "metadata": {"annotations": {"b": "2"}}}
    doc_was, patch_was = copy.deepcopy(doc), copy.deepcopy(patch)
    out = merge_patch(doc, patch)
    assert out == {"metadata": {"annotations": {"a": "1", "b": "2"}, "labels": {"x": "y"}}, "spec": {"hosts": ["m0"]},
                   "status": {"phase": "promoted", "history": [{"at": 2}], "new": {"deep": [1]}}}
    out["metadata"]["annotations"]["c"] = "3"
    out["metadata"]["labels"]["z"] = "w"
    out["spec"]["hosts"].append("m1")
    out["status"]["history"][0]["at"] = 9
    out["status"]["new"]["deep"].append(2)
    assert doc == doc_was and patch == patch_was
