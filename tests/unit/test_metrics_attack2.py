"""Decision 100: answers a Prometheus-compatible API gives with HTTP 200 that are not (all) the data.

A loopback HTTP server plays the store in front of Prometheus (Thanos/Cortex with partial responses
on, or a proxy): before, the client read `data.result` of any 200, so an answer saying
`"status":"error"` or carrying a partial-response warning was judged as the whole of the arm's
series; a sum over some of them is a wrong number (a canary's error series on the store that did
not answer read as 0 errors)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterator

import pytest

from canary.errors import MetricsUnavailable
from canary.metrics.prometheus import PrometheusProvider

ZERO = [{"metric": {}, "value": [1700000000.0, "0"]}]


@pytest.fixture()
def store() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A server answering every GET with the next document of `answers` (the last one repeated)."""
    answers: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            body = json.dumps(answers.pop(0) if len(answers) > 1 else answers[0]).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", answers
    finally:
        server.shutdown()
        server.server_close()


def _provider(url: str) -> PrometheusProvider:
    return PrometheusProvider(url, retries=2, budget_s=2.0, backoff_s=0.01)


@pytest.mark.parametrize("doc", [
    {"status": "error", "errorType": "execution", "error": "store unavailable", "data": {"resultType": "vector",
                                                                                        "result": ZERO}},
    {"status": "success", "data": {"resultType": "vector", "result": ZERO},
     "warnings": ["No StoreAPIs matched for this query"]},
    {"status": "success", "data": {"resultType": "vector", "result": ZERO},
     "warnings": ["PromQL warning: encountered a mix of histograms and floats for aggregation"]},
])
def test_a_200_that_is_an_error_or_partial_is_unavailable_not_data(store: Any, doc: dict[str, Any]) -> None:
    url, answers = store
    answers.append(doc)
    with pytest.raises(MetricsUnavailable, match="status 'error'|partial answer"):
        _provider(url).scalar("sum(increase(errors_total[60s]))", check="errors", arm="canary")


def test_a_partial_answer_retried_into_a_whole_one_is_read(store: Any) -> None:
    url, answers = store
    answers += [{"status": "success", "data": {"resultType": "vector", "result": ZERO},
                 "warnings": ["receive: store 10.0.0.7:10901 timed out"]},
                {"status": "success", "data": {"resultType": "vector",
                                               "result": [{"metric": {}, "value": [1700000000.0, "7"]}]}}]
    assert _provider(url).scalar("sum(increase(errors_total[60s]))", check="errors", arm="canary") == 7.0


def test_promql_infos_are_not_partial_answers(store: Any) -> None:
    """Prometheus 2.45+ annotates `increase()` of a counter not named *_total (Triton's
    nv_inference_request_success) with an info: the answer is whole."""
    url, answers = store
    answers.append({"status": "success", "data": {"resultType": "vector",
                                                  "result": [{"metric": {}, "value": [1700000000.0, "3"]}]},
                    "warnings": ['PromQL info: metric might not be a counter, name does not end in '
                                 '_total/_sum/_count/_bucket: "nv_inference_request_success"']})
    assert _provider(url).scalar("sum(increase(nv_inference_request_success[60s]))", check="rps") == 3.0


# -- Istio's gRPC errors (decision 100 (a)): the labels they read are the queries' own -----------------

def test_every_errors_matcher_reads_a_label_metrics_labels_cannot_set() -> None:
    import re

    from canary.metrics import queries as q
    from canary.policy_metrics import SOURCE_LABELS

    for name, p in q.PRESETS.items():
        for matcher in (p.errors_matcher, *p.errors_also):
            if matcher:
                label = re.match(r"[A-Za-z_]\w*", matcher).group(0)  # type: ignore[union-attr]
                assert label in SOURCE_LABELS[name].matched, (name, matcher)
    assert q.PRESETS["istio"].errors_also == (q.GRPC_SERVER_ERRORS,)


def test_an_istio_policy_cannot_pin_grpc_response_status() -> None:
    """`metrics.labels: {grpc_response_status: "0"}` would put a `grpc_response_status="0"` beside the
    errors query's own matcher: every gRPC error left out again."""
    from tests.unit.test_policy_strict import GOOD, refused

    refused({**GOOD, "metrics": {"source": "istio", "labels": {"grpc_response_status": "0"}}},
            "metrics.labels.grpc_response_status", "match")
