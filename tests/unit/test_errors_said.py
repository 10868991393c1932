"""An error said in a reason is never empty and never "NoData: " (`errors.said`, decision 493).

`metrics.delta.canary_count` said an error with no message as "<type>: " ("the canary's requests could not be
counted (NoData: ): no pass"), and one whose message was a bare value as that value alone ("'x'" for a KeyError).
"""

from __future__ import annotations

from typing import Any

import pytest

from canary.errors import CanaryError, ConfigError, NoData, said
from canary.metrics import delta
from tests.unit.test_batch import T, both, policy, snap


class _Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no")


@pytest.mark.parametrize(("exc", "text"), [
    (NoData("no requests for the canary arm"), "no requests for the canary arm"),
    (ConfigError("bad field"), "bad field"),
    (KeyError("x"), "KeyError: 'x'"),
    (ValueError("multi\nline"), "ValueError: multi\nline"),
    (NoData(), "NoData, with no message"),
    (NoData(""), "NoData, with no message"),
    (NoData("  \n"), "NoData, with no message"),
    (NoData(None), "NoData, with no message"),
    (CanaryError(None, None), "CanaryError, with no message"),
    (KeyError(), "KeyError, with no message"),
    (RuntimeError(""), "RuntimeError, with no message"),
    (_Unprintable("x"), "_Unprintable, with no message"),
])
def test_an_error_is_said_by_its_message_or_as_having_none(exc: BaseException, text: str) -> None:
    assert said(exc) == text


def test_the_canarys_requests_uncounted_say_why_even_for_an_error_with_no_message(monkeypatch: Any) -> None:
    pol = policy()
    base = snap(both(lat=[1, 3, 4], ok=10, err=1), pol, at=100)
    now = snap(both(lat=[3, 9, 14], ok=30, err=4), pol, at=160)
    assert delta.canary_count(pol, T, now, base) == (43, "")  # counted: no cause
    n, why = delta.canary_count(pol, T, base, base)
    assert n == 0.0 and why.startswith("check 'request_counts': no requests"), why
    for raised, text in [(NoData(), "NoData, with no message"), (ZeroDivisionError(), "ZeroDivisionError, with "
                                                                                      "no message"),
                         (KeyError("x"), "KeyError: 'x'")]:
        def fail(*_: Any, exc: BaseException = raised) -> Any:
            raise exc

        monkeypatch.setattr(delta, "requests_delta", fail)  # no error of this module has an empty message
        assert delta.canary_count(pol, T, now, base) == (0.0, text)


class _Statuses:
    """The CanaryRollout status writes a Controller sends (the API server's answer: the object)."""

    def __init__(self) -> None:
        self.patches: list[dict[str, Any]] = []

    def patch_namespaced_custom_object_status(self, group: str, version: str, namespace: str, plural: str,
                                              name: str, body: dict[str, Any], **_: Any) -> dict[str, Any]:
        self.patches.append(body)
        return {"metadata": {"name": name, "namespace": namespace, "uid": "u-1"}, "status": body.get("status")}


@pytest.mark.parametrize(("exc", "text"), [(MemoryError(), "MemoryError, with no message"),
                                           (NoData(""), "NoData, with no message"),
                                           (RuntimeError("boom"), "RuntimeError: boom")])
def test_a_canaryrollouts_failed_tick_says_an_error_with_no_message_as_such(exc: BaseException, text: str) -> None:
    """The Ready condition's message of a tick that failed: "MemoryError: " before."""
    from canary.controller import Controller

    statuses = _Statuses()
    op = Controller(custom=statuses, core=None, router=None, metrics=None, identity="c-1")  # type: ignore[arg-type]
    obj = {"metadata": {"namespace": "ml", "name": "x", "generation": 1, "uid": "u-1"}, "spec": {"model": "m"}}
    op._fail_status(obj, exc)
    (ready,) = [c for p in statuses.patches for c in p["status"]["conditions"] if c["type"] == "Ready"]
    assert ready["message"] == text and ready["reason"] == type(exc).__name__, ready
