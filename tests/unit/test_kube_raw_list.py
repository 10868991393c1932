"""A LIST's raw answer (`_preload_content=False`) read by one function, `kube.raw_list` (decision 494).

The informer's relist, the retraining trigger's LIST of Jobs and the pod check's LIST of pods each parsed the
body by hand: the informer raised a bare JSONDecodeError for a proxy's page and an AttributeError for an item or
a `metadata` that is not an object, the retraining trigger said "null" for that page, and none checked the items.
The answers here are real urllib3 responses, as the client hands them back.
"""

from __future__ import annotations

from typing import Any

import pytest
import urllib3

from canary.kube import BadAnswer, is_transient, list_items, raw_list, raw_object

WHAT = "Jobs of m v2 in ml"


class _Answer(urllib3.HTTPResponse):
    """A 200 whose connection's release is counted."""

    def __init__(self, body: bytes) -> None:
        super().__init__(body=body, status=200, preload_content=True)
        self.released = 0

    def release_conn(self) -> None:
        self.released += 1
        super().release_conn()


@pytest.mark.parametrize(("body", "said"), [
    (b"", "not a list (an empty body)"),
    (b"{}", "not a list ('{}')"),
    (b"null", "not a list ('null')"),
    (b"<html><body>upstream connect error</body></html>", "not a list ('<html><body>upstream connect error"),
    (b'{"apiVersion":"v1","items":[{"metadata":', """not a list ('{"apiVersion":"v1","items":[{"metadata":')"""),
    (b'"items"', "not a list ('items')"),
    (b"[]", "not a list ('[]')"),
    (b'{"items": {"a": 1}}', """`items` that is not a list ('{"a": 1}')"""),
    (b'{"items": "x"}', "`items` that is not a list ('\"x\"')"),
    (b'{"items": [{"metadata": {"name": "a"}}, "b"]}', "item 1 that is not an object ('\"b\"')"),
    (b'{"items": [null]}', "item 0 that is not an object ('null')"),
    (b'{"items": [[1]]}', "item 0 that is not an object ('[1]')"),
    (b'{"items": [], "metadata": "x"}', "`metadata` that is not an object ('\"x\"')"),
])
def test_a_list_answer_that_is_no_list_of_objects_is_a_bad_answer_naming_the_resource(body: bytes, said: str) -> None:
    resp = _Answer(body)
    with pytest.raises(BadAnswer) as err:
        raw_list(resp, WHAT)
    assert str(err.value).startswith(f"the LIST of {WHAT} was answered with ") and said in str(err.value), err.value
    assert is_transient(err.value) and resp.released == 1  # asked again; the connection back in its pool


@pytest.mark.parametrize(("body", "items", "rv"), [
    (b'{"items": [], "metadata": {"resourceVersion": "12"}}', [], "12"),
    (b'{"items": null, "metadata": {}}', [], ""),  # what an API server sends for none
    (b'{"kind": "JobList", "items": [{"metadata": {"name": "a"}}]}', [{"metadata": {"name": "a"}}], ""),
])
def test_a_list_answer_gives_its_items_and_resource_version(body: bytes, items: list[Any], rv: str) -> None:
    resp = _Answer(body)
    assert raw_list(resp, WHAT) == (items, rv) and resp.released == 1


def test_a_preloaded_list_answer_with_an_item_that_is_not_an_object_is_a_bad_answer() -> None:
    """The same check for the lists the client parsed (the router's LIST of VirtualServices, the controller's of
    CanaryRollouts: `list_items`)."""
    assert list_items({"items": [{"a": 1}]}, "CanaryRollouts") == [{"a": 1}]
    with pytest.raises(BadAnswer, match=r"^the LIST of CanaryRollouts was answered with item 0 that is not an object"):
        list_items({"items": ["ml/x"]}, "CanaryRollouts")


@pytest.mark.parametrize("body", [b"", b"{}", b"null", b"<html></html>", b'{"metadata": {}}'])
def test_an_object_answer_that_is_no_object_is_a_bad_answer_too(body: bytes) -> None:
    """`raw_object`, the single object's counterpart: a response with no body at all (`data` None) raised a
    TypeError out of `json.loads`, not retried."""
    resp = _Answer(body)
    with pytest.raises(BadAnswer, match="^Job ml/x was answered with a body that is not the object"):
        raw_object(resp, "Job ml/x")
    assert resp.released == 1
