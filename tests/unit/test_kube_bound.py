"""`kube.bound_by`'s timeout arithmetic (decision 126); the whole path runs against the emulator in
tests/integration/test_interrupt_grace.py."""

from __future__ import annotations

import math
import time

import pytest

from canary.errors import GraceSpent, TransientError
from canary.kube import _cut_timeout, bound_by, is_transient


@pytest.mark.parametrize(("timeout", "left", "cut"), [
    (None, 3.0, 3.0),  # no timeout of its own: the grace is one
    (10, 3.0, 3.0),
    (2, 3.0, 2.0),
    ((5, 10), 3.0, (3.0, 3.0)),
    ((1, None), 3.0, (1.0, 3.0)),
    (10, math.inf, 10),  # not signalled: untouched
    (None, math.inf, None),
])
def test_a_request_timeout_is_cut_to_the_time_left(timeout: object, left: float, cut: object) -> None:
    assert _cut_timeout(timeout, left) == cut


def test_no_request_is_sent_once_the_grace_is_spent(tmp_path: object) -> None:
    """The refusal comes before any connection (nothing listens on the address) and is not a retry's
    kind of error: the fail-safe gives up at once and says how traffic stands."""
    import kubernetes.client

    cfg = kubernetes.client.Configuration()
    cfg.host = "http://127.0.0.1:9"
    client = kubernetes.client.ApiClient(cfg)
    bound_by(client, lambda: time.monotonic() - 1)
    with pytest.raises(GraceSpent, match=r"GET /api/v1/namespaces/ml/configmaps/x: not sent"):
        kubernetes.client.CoreV1Api(client).read_namespaced_config_map("x", "ml", _request_timeout=10)
    assert not isinstance(GraceSpent("x"), TransientError) and not is_transient(GraceSpent("x"))


def test_cut_abandons_the_request_the_main_thread_waits_on_and_nothing_else() -> None:
    """Decision 128: `bound_by` returns what the main thread waits on; `cut()` (promote's SIGALRM at the
    grace's end) raises GraceSpent naming it, and does nothing when no request is in flight."""
    import kubernetes.client

    from canary.kube import InFlight

    cfg = kubernetes.client.Configuration()
    cfg.host = "http://127.0.0.1:9"
    client = kubernetes.client.ApiClient(cfg)
    flying = bound_by(client, lambda: math.inf, spent=lambda: "the 8 s after SIGINT (--interrupt-grace) are spent")
    assert isinstance(flying, InFlight) and flying.request == ""
    flying.cut()  # nothing in flight: nothing raised
    seen: list[str] = []

    def waiting(*_: object, **__: object) -> None:  # the signal lands while urllib3 waits for the answer
        seen.append(flying.request)
        flying.cut()

    client.rest_client.pool_manager.request = waiting  # type: ignore[method-assign]
    with pytest.raises(GraceSpent, match=r"^GET /api/v1/namespaces/ml/configmaps/x: still unanswered; the 8 s after "
                                         r"SIGINT \(--interrupt-grace\) are spent$"):
        kubernetes.client.CoreV1Api(client).read_namespaced_config_map("x", "ml", _request_timeout=10)
    assert seen == ["GET /api/v1/namespaces/ml/configmaps/x"] and flying.request == ""


def test_a_write_cut_unanswered_may_have_landed_and_one_not_sent_did_not() -> None:
    """Decision 128: the cut request was sent; had it been the stable-100% PUT, `rollback.failed` said
    `write_landed: no: the write was refused`, and the route may read stable 100% already."""
    from canary.kube import InFlight
    from canary.reconcile import write_landed

    flying = InFlight(lambda: "the 8 s after SIGINT (--interrupt-grace) are spent")
    flying.request = "PUT /apis/networking.istio.io/v1beta1/namespaces/ml/virtualservices/m0"
    with pytest.raises(GraceSpent) as got:
        flying.cut()
    assert write_landed(got.value).startswith("unknown: no answer came back")
    # one not sent reached nothing, and was not refused either (decision 131)
    assert write_landed(GraceSpent("PUT /x: not sent, the 8 s ...")) == "no: not sent, the grace after the signal is spent"
    # a read cut so changed nothing (review of 128: a cut GET was said to have maybe landed a write)
    flying.request = "GET /apis/networking.istio.io/v1beta1/namespaces/ml/virtualservices/m0"
    with pytest.raises(GraceSpent) as read:
        flying.cut()
    assert write_landed(read.value).startswith("no: ")


def test_a_write_refused_after_one_with_no_answer_may_have_landed() -> None:
    """Decision 131 (b), from the review. A stable-100% PUT sent after the signal got no answer (its timeout
    cut to the grace), and the router's retry was then refused as not sent: the page said `write_landed:
    no: not sent` though the first PUT may be in place. The refusal now names that write and is `sent`:
    `write_landed` says unknown. A write answered since clears it."""
    import kubernetes.client
    import urllib3.exceptions

    from canary.reconcile import write_landed

    cfg = kubernetes.client.Configuration()
    cfg.host = "http://127.0.0.1:9"
    client = kubernetes.client.ApiClient(cfg)
    until = [time.monotonic() + 600.0]  # signalled: a grace is running
    flying = bound_by(client, lambda: until[0], spent=lambda: "the grace is spent")

    def no_answer(*_: object, **__: object) -> None:
        until[0] = time.monotonic() - 1.0  # the grace ends while the PUT waits
        raise urllib3.exceptions.ReadTimeoutError(None, "/x", "read timed out")  # type: ignore[arg-type]

    client.rest_client.pool_manager.request = no_answer  # type: ignore[method-assign]
    core = kubernetes.client.CoreV1Api(client)
    body = {"metadata": {"name": "x"}}
    with pytest.raises(urllib3.exceptions.ReadTimeoutError):
        core.replace_namespaced_config_map("x", "ml", body)
    assert flying.unanswered == "PUT /api/v1/namespaces/ml/configmaps/x"
    with pytest.raises(GraceSpent) as got:
        core.replace_namespaced_config_map("x", "ml", body)  # the router's retry
    assert "not sent" in str(got.value) and "PUT /api/v1/namespaces/ml/configmaps/x before it had no answer" in str(got.value)
    assert write_landed(got.value).startswith("unknown")
    with pytest.raises(GraceSpent) as read:
        core.read_namespaced_config_map("x", "ml")
    assert write_landed(read.value).startswith("unknown")  # still: nothing was answered since
