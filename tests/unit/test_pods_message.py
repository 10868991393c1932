"""The line that says which arm has no Ready pod (canary/routing/pods.py `not_ready_message`)."""

from __future__ import annotations

from canary.routing.pods import PodCount, not_ready_message


def test_a_first_check_is_not_said_to_have_waited_0s() -> None:
    """`promote --wait-ready`'s first count, 0.3 s in, said "no Ready pod after waiting 0s" (a newcomer's
    finding): a wait that has not happened is not named."""
    count = PodCount(selector="app=m0,version=v2", namespace="ml")
    first = not_ready_message([("canary", "v2", count)], 0.3)
    assert "canary v2 has no Ready pod: " in first and "after waiting" not in first
    assert "canary v2 has no Ready pod after waiting 60s: " in not_ready_message([("canary", "v2", count)], 60.0)
