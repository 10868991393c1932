"""A Prometheus target that exports latency as a *native* histogram only (issue 9).

Prometheus reads native histograms only in its protobuf exposition format
(Debian's Prometheus 2.42 with `--enable-feature=native-histograms`), which no
Python client library writes, so this builds the messages of
io.prometheus.client (metrics.proto) with protobuf's own descriptor and message
classes, over the few fields a native histogram needs, and serves them
length-delimited. `NativeHistogramTarget(...)` starts it on 127.0.0.1; every
scrape sees `observations` more observations per version (schema 3: buckets
2^(1/8) apart, the Go client's default factor 1.1).
"""

from __future__ import annotations

import http.server
import math
import threading
from typing import Any, Mapping

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from canary.sandbox.ports import free_port

CONTENT_TYPE = "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited"
HISTOGRAM = 4  # MetricType.HISTOGRAM
SCHEMA = 3


def _metric_family_class() -> Any:
    f = descriptor_pb2.FileDescriptorProto(name="canary_test_metrics.proto", package="io.prometheus.client",
                                           syntax="proto2")
    t = descriptor_pb2.FieldDescriptorProto
    one, many = t.LABEL_OPTIONAL, t.LABEL_REPEATED

    def message(name: str, fields: list[tuple[str, int, int, int, str]]) -> None:
        m = f.message_type.add(name=name)
        for field_name, number, kind, label, type_name in fields:
            fd = m.field.add(name=field_name, number=number, type=kind, label=label)
            if type_name:
                fd.type_name = f".io.prometheus.client.{type_name}"

    message("LabelPair", [("name", 1, t.TYPE_STRING, one, ""), ("value", 2, t.TYPE_STRING, one, "")])
    message("BucketSpan", [("offset", 1, t.TYPE_SINT32, one, ""), ("length", 2, t.TYPE_UINT32, one, "")])
    message("Histogram", [("sample_count", 1, t.TYPE_UINT64, one, ""), ("sample_sum", 2, t.TYPE_DOUBLE, one, ""),
                          ("schema", 5, t.TYPE_SINT32, one, ""), ("zero_threshold", 6, t.TYPE_DOUBLE, one, ""),
                          ("zero_count", 7, t.TYPE_UINT64, one, ""),
                          ("positive_span", 12, t.TYPE_MESSAGE, many, "BucketSpan"),
                          ("positive_delta", 13, t.TYPE_SINT64, many, "")])
    message("Metric", [("label", 1, t.TYPE_MESSAGE, many, "LabelPair"),
                       ("histogram", 7, t.TYPE_MESSAGE, one, "Histogram")])
    message("MetricFamily", [("name", 1, t.TYPE_STRING, one, ""), ("help", 2, t.TYPE_STRING, one, ""),
                             ("type", 3, t.TYPE_INT32, one, ""), ("metric", 4, t.TYPE_MESSAGE, many, "Metric")])
    pool = descriptor_pool.DescriptorPool()
    pool.Add(f)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("io.prometheus.client.MetricFamily"))


MetricFamily = _metric_family_class()


def bucket_index(value: float) -> int:
    """The schema-3 bucket (2^((i-1)/8), 2^(i/8)] holding `value` > 0."""
    return math.ceil(math.log2(value) * 2 ** SCHEMA - 1e-9)


class NativeHistogramTarget:
    """Serves `name` as a native histogram per label set; each scrape adds `per_scrape` (values) to each."""

    def __init__(self, name: str, series: Mapping[tuple[tuple[str, str], ...], list[float]]) -> None:
        self.name, self.series = name, {k: list(v) for k, v in series.items()}
        self.counts: dict[tuple[tuple[str, str], ...], dict[int, int]] = {k: {} for k in self.series}
        self.totals = {k: 0 for k in self.series}
        self.sums = {k: 0.0 for k in self.series}
        self.port = free_port()
        self._lock = threading.Lock()
        target = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                body = target.scrape()
                self.send_response(200)
                self.send_header("Content-Type", CONTENT_TYPE)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> "NativeHistogramTarget":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def scrape(self) -> bytes:
        """One exposition: every series observes its values once more, then all are written."""
        family = MetricFamily(name=self.name, help="latency, native histogram", type=HISTOGRAM)
        with self._lock:
            for labels, values in self.series.items():
                for v in values:
                    i = bucket_index(v)
                    self.counts[labels][i] = self.counts[labels].get(i, 0) + 1
                    self.totals[labels] += 1
                    self.sums[labels] += v
                metric = family.metric.add()
                for k, v in labels:
                    metric.label.add(name=k, value=v)
                h = metric.histogram
                h.sample_count, h.sample_sum, h.schema = self.totals[labels], self.sums[labels], SCHEMA
                h.zero_threshold, h.zero_count = 0.0, 0
                previous_index, previous_count = None, 0
                for i in sorted(self.counts[labels]):
                    if previous_index is not None and i == previous_index + 1:
                        h.positive_span[-1].length += 1
                    else:
                        h.positive_span.add(offset=i if previous_index is None else i - previous_index - 1, length=1)
                    h.positive_delta.append(self.counts[labels][i] - previous_count)
                    previous_index, previous_count = i, self.counts[labels][i]
                if not self.counts[labels]:
                    h.positive_span.add(offset=0, length=0)  # a native histogram without observations yet
        body = family.SerializeToString()
        return _varint(len(body)) + body


def _varint(n: int) -> bytes:
    """The base-128 length prefix of a delimited protobuf message."""
    out = bytearray()
    while True:
        low, n = n & 0x7F, n >> 7
        out.append(low | (0x80 if n else 0))
        if not n:
            return bytes(out)
