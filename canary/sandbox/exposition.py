"""The sandbox model's metrics in Prometheus's protobuf exposition, latency as a *native* histogram.

Prometheus reads native histograms only from its protobuf exposition format
(Prometheus 2.40+ with `--enable-feature=native-histograms`), which no Python
client library writes (prometheus_client writes text and OpenMetrics), so this
module builds the messages of io.prometheus.client (metrics.proto) with
protobuf's own descriptor and message classes, over the fields the sandbox
needs, and serves them length-delimited when the scraper asks for protobuf
(text otherwise, from prometheus_client). What it is for: `canary demo
--native-histograms` and the tests that run a rollout on native histograms end
to end; a model server in production uses its own client library (the Go and
Java clients export native histograms).

`NativeHistogram` counts observations by bucket index for one schema: bucket i
is (2^((i-1)/2^s), 2^(i/2^s)], the zero bucket [0, 2^-128] (a latency is never
negative), as the Go client does with its default zero threshold. The threshold
must be above 0: Prometheus before 2.47 takes a histogram with no observations,
a zero threshold of 0 and no deltas for a *classic* one (its `isNativeHistogram`
ignores spans), and ingests a `_bucket{le="+Inf"}` series for a model that has
had no traffic yet (a canary before its first step).
"""

from __future__ import annotations

import http.server
import math
import threading
from typing import Any, Callable, Iterable

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

CONTENT_TYPE = "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited"
COUNTER, GAUGE, HISTOGRAM = 0, 1, 4  # MetricType
SCHEMA = 3  # 2^(1/8) = 1.09 between bounds: the Go client's default NativeHistogramBucketFactor 1.1
ZERO_THRESHOLD = 2.0 ** -128  # the Go client's DefNativeHistogramZeroThreshold (a point of every schema's grid)


def _metric_family_class() -> Any:
    f = descriptor_pb2.FileDescriptorProto(name="canary_sandbox_metrics.proto", package="io.prometheus.client",
                                           syntax="proto2")
    t = descriptor_pb2.FieldDescriptorProto
    one, many = t.LABEL_OPTIONAL, t.LABEL_REPEATED

    def message(name: str, fields: list[tuple[str, int, int, int, str]]) -> None:
        m = f.message_type.add(name=name)
        for field_name, number, kind, label, type_name in fields:
            fd = m.field.add(name=field_name, number=number, type=kind, label=label)
            if type_name:
                fd.type_name = f".io.prometheus.client.{type_name}"

    # field numbers as in prometheus/client_model's metrics.proto
    message("LabelPair", [("name", 1, t.TYPE_STRING, one, ""), ("value", 2, t.TYPE_STRING, one, "")])
    message("Gauge", [("value", 1, t.TYPE_DOUBLE, one, "")])
    message("Counter", [("value", 1, t.TYPE_DOUBLE, one, "")])
    message("Bucket", [("cumulative_count", 1, t.TYPE_UINT64, one, ""), ("upper_bound", 2, t.TYPE_DOUBLE, one, ""),
                       ("cumulative_count_float", 4, t.TYPE_DOUBLE, one, "")])
    message("BucketSpan", [("offset", 1, t.TYPE_SINT32, one, ""), ("length", 2, t.TYPE_UINT32, one, "")])
    message("Histogram", [("sample_count", 1, t.TYPE_UINT64, one, ""), ("sample_sum", 2, t.TYPE_DOUBLE, one, ""),
                          ("bucket", 3, t.TYPE_MESSAGE, many, "Bucket"),
                          ("sample_count_float", 4, t.TYPE_DOUBLE, one, ""),
                          ("schema", 5, t.TYPE_SINT32, one, ""), ("zero_threshold", 6, t.TYPE_DOUBLE, one, ""),
                          ("zero_count", 7, t.TYPE_UINT64, one, ""),
                          ("positive_span", 12, t.TYPE_MESSAGE, many, "BucketSpan"),
                          ("positive_delta", 13, t.TYPE_SINT64, many, "")])
    message("Metric", [("label", 1, t.TYPE_MESSAGE, many, "LabelPair"),
                       ("gauge", 2, t.TYPE_MESSAGE, one, "Gauge"), ("counter", 3, t.TYPE_MESSAGE, one, "Counter"),
                       ("histogram", 7, t.TYPE_MESSAGE, one, "Histogram")])
    message("MetricFamily", [("name", 1, t.TYPE_STRING, one, ""), ("help", 2, t.TYPE_STRING, one, ""),
                             ("type", 3, t.TYPE_INT32, one, ""), ("metric", 4, t.TYPE_MESSAGE, many, "Metric")])
    pool = descriptor_pool.DescriptorPool()
    pool.Add(f)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("io.prometheus.client.MetricFamily"))


MetricFamily = _metric_family_class()


def bucket_index(value: float, schema: int = SCHEMA) -> int:
    """The bucket (2^((i-1)/2^s), 2^(i/2^s)] holding `value` > 0 (float edges settled exactly)."""
    i = math.ceil(math.log2(value) * 2 ** schema)
    while 2.0 ** ((i - 1) / 2 ** schema) >= value:
        i -= 1
    while 2.0 ** (i / 2 ** schema) < value:
        i += 1
    return i


class NativeHistogram:
    """One series' native histogram at `schema`: counts by bucket index, thread-safe."""

    def __init__(self, schema: int = SCHEMA, zero_threshold: float = ZERO_THRESHOLD) -> None:
        self.schema, self.zero_threshold = schema, zero_threshold
        self.counts: dict[int, int] = {}
        self.zero = 0
        self.total = 0
        self.sum = 0.0
        self._lock = threading.Lock()

    def observe(self, value: float) -> None:
        with self._lock:
            if value <= self.zero_threshold:
                self.zero += 1
            else:
                i = bucket_index(value, self.schema)
                self.counts[i] = self.counts.get(i, 0) + 1
            self.total += 1
            self.sum += value

    def fill(self, h: Any) -> None:
        """Write this histogram into a protobuf Histogram message (spans and deltas, as metrics.proto)."""
        with self._lock:
            counts, zero, total, total_sum = dict(self.counts), self.zero, self.total, self.sum
        h.sample_count, h.sample_sum, h.schema = total, total_sum, self.schema
        h.zero_threshold, h.zero_count = self.zero_threshold, zero
        previous_index, previous_count = None, 0
        for i in sorted(counts):
            if previous_index is not None and i == previous_index + 1:
                h.positive_span[-1].length += 1
            else:
                h.positive_span.add(offset=i if previous_index is None else i - previous_index - 1, length=1)
            h.positive_delta.append(counts[i] - previous_count)
            previous_index, previous_count = i, counts[i]
        if not counts:
            # marks it native although nothing is observed yet (Prometheus 2.47+; older ones go by
            # the zero threshold above 0)
            h.positive_span.add(offset=0, length=0)


def families(collected: Iterable[Any], native: dict[str, tuple[dict[str, str], NativeHistogram]]) -> bytes:
    """Delimited protobuf MetricFamily messages for prometheus_client's `registry.collect()`; a family
    named in `native` ({name: (labels, histogram)}) is written as that native histogram instead of
    its classic buckets. Counters, gauges and classic histograms as prometheus_client holds them."""
    out = bytearray()
    for fam in collected:
        if fam.type == "counter":
            msg = MetricFamily(name=fam.name + "_total", help=fam.documentation, type=COUNTER)
            for s in fam.samples:
                if s.name.endswith("_total"):
                    _labels(msg.metric.add(), s.labels).counter.value = s.value
        elif fam.type == "gauge":
            msg = MetricFamily(name=fam.name, help=fam.documentation, type=GAUGE)
            for s in fam.samples:
                _labels(msg.metric.add(), s.labels).gauge.value = s.value
        elif fam.type == "histogram" and fam.name in native:
            msg = MetricFamily(name=fam.name, help=fam.documentation, type=HISTOGRAM)
            labels, hist = native[fam.name]
            hist.fill(_labels(msg.metric.add(), labels).histogram)
        elif fam.type == "histogram":
            msg = MetricFamily(name=fam.name, help=fam.documentation, type=HISTOGRAM)
            per: dict[tuple[tuple[str, str], ...], Any] = {}
            for s in fam.samples:
                labels = {k: v for k, v in s.labels.items() if k != "le"}
                key = tuple(sorted(labels.items()))
                if key not in per:
                    per[key] = _labels(msg.metric.add(), labels).histogram
                h = per[key]
                if s.name.endswith("_bucket") and s.labels["le"] != "+Inf":
                    h.bucket.add(cumulative_count=int(s.value), upper_bound=float(s.labels["le"]))
                elif s.name.endswith("_count"):
                    h.sample_count = int(s.value)
                elif s.name.endswith("_sum"):
                    h.sample_sum = s.value
        else:
            continue  # the sandbox exports no other type
        body = msg.SerializeToString()
        out += varint(len(body)) + body
    return bytes(out)


def _labels(metric: Any, labels: dict[str, str]) -> Any:
    for k, v in sorted(labels.items()):
        metric.label.add(name=k, value=v)
    return metric


def varint(n: int) -> bytes:
    """The base-128 length prefix of a delimited protobuf message."""
    out = bytearray()
    while True:
        low, n = n & 0x7F, n >> 7
        out.append(low | (0x80 if n else 0))
        if not n:
            return bytes(out)


def serve(port: int, registry: Any, native: dict[str, tuple[dict[str, str], NativeHistogram]]) -> Any:
    """Serve `registry` on 127.0.0.1:`port`/metrics: protobuf (with `native`) to a scraper that accepts
    it, prometheus_client's text format otherwise. Returns the server (daemon thread)."""
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    def render(accept: str) -> tuple[bytes, str]:
        if "application/vnd.google.protobuf" in accept:
            return families(registry.collect(), native), CONTENT_TYPE
        return generate_latest(registry), CONTENT_TYPE_LATEST

    return serve_bytes(port, render)


def serve_bytes(port: int, render: Callable[[str], tuple[bytes, str]]) -> Any:
    """An HTTP server on 127.0.0.1:`port` answering every GET with `render(Accept header)`'s
    (body, content type), on a daemon thread; returns it (`shutdown()`, `server_close()` stop it)."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            body, kind = render(self.headers.get("Accept", ""))
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True, name="metrics-http").start()
    return server
