"""`canary.resume_requests`: a `resume` cleared or changed, then asked again, between two ticks (decision 526)."""

from __future__ import annotations

from typing import Any

from canary import resume_requests as rr

GO = ("resume", "go")


def _v(generation: int, **spec: Any) -> dict[str, Any]:
    return {"metadata": {"generation": generation}, "spec": spec}


def _seen(*versions: dict[str, Any]) -> rr.Seen:
    seen: rr.Seen = {}
    for v in versions:
        rr.saw(seen, "ml/r0", v)
    return seen


def test_a_clearing_or_another_reason_between_the_used_request_and_now_is_seen() -> None:
    for between in (_v(3), _v(3, action="pause"), _v(3, action="resume", actionReason="other")):
        seen = _seen(_v(2, action="resume", actionReason="go"), between, _v(4, action="resume", actionReason="go"))
        assert rr.set_again(seen, "ml/r0", GO, used_at=2, generation=4)


def test_what_no_version_delivered_shows_is_not_a_request_asked_again() -> None:
    # an edit of another field: the same request at every version
    seen = _seen(_v(2, action="resume", actionReason="go"), _v(3, action="resume", actionReason="go", x=1),
                 _v(4, action="resume", actionReason="go"))
    assert not rr.set_again(seen, "ml/r0", GO, used_at=2, generation=4)
    # a process that saw only the latest version (started since, or a LIST after a watch expired)
    assert not rr.set_again(_seen(_v(4, action="resume", actionReason="go")), "ml/r0", GO, used_at=2, generation=4)
    assert not rr.set_again({}, "ml/r0", GO, used_at=2, generation=4)
    # the clearing was before the request was used (the status recorded it at 3)
    seen = _seen(_v(2), _v(3, action="resume", actionReason="go"), _v(4, action="resume", actionReason="go"))
    assert not rr.set_again(seen, "ml/r0", GO, used_at=3, generation=4)
    # the informers are ahead of the tick's version: a clearing after it is no request asked again at it
    seen = _seen(_v(2, action="resume", actionReason="go"), _v(3, action="resume", actionReason="go"), _v(5))
    assert not rr.set_again(seen, "ml/r0", GO, used_at=2, generation=4)


def test_a_version_without_a_generation_is_skipped() -> None:
    seen: rr.Seen = {}
    for obj in ({"metadata": ["not", "a", "mapping"]}, {"metadata": {"generation": "3"}}, {}):
        rr.saw(seen, "ml/r0", obj)  # from the informer's thread: never raises
    assert seen == {}
