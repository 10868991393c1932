"""A Prometheus target that exports one metric as a *native* histogram only (issue 9).

Prometheus reads native histograms only in its protobuf exposition format
(Debian's Prometheus 2.42 with `--enable-feature=native-histograms`); the
messages, the native bucket counting and the HTTP server are the sandbox's own
(`canary.sandbox.exposition`). `NativeHistogramTarget(...)` starts it on
127.0.0.1; every scrape sees each series' list of values observed once more
(schema 3: buckets 2^(1/8) apart, the Go client's default factor 1.1).
"""

from __future__ import annotations

import threading
from typing import Any, Mapping

from canary.sandbox.exposition import CONTENT_TYPE, HISTOGRAM, MetricFamily, NativeHistogram, serve_bytes, varint


class NativeHistogramTarget:
    """Serves `name` as a native histogram per label set; each scrape adds the series' values to it."""

    def __init__(self, name: str, series: Mapping[tuple[tuple[str, str], ...], list[float]], *,
                 zero_threshold: float | None = None, classic_bounds: tuple[float, ...] = ()) -> None:
        """`zero_threshold`: every series' (default the Go client's 2^-128); 0 is what some clients
        write, and Prometheus before 2.47 then ingests a series with no observations as classic.
        `classic_bounds`: also export classic buckets in the same message (a client exporting both
        forms, as the Go client does with buckets and a native bucket factor)."""
        self.name, self.series = name, {k: list(v) for k, v in series.items()}
        self.classic_bounds = tuple(classic_bounds)
        self.classic = {k: [0] * len(self.classic_bounds) for k in self.series}  # cumulative counts
        self.histograms = {k: NativeHistogram() if zero_threshold is None else NativeHistogram(zero_threshold=zero_threshold)
                           for k in self.series}
        self.port = 0  # the kernel's pick at start(): no window for another worker to take it
        self._lock = threading.Lock()
        self._server: Any = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> "NativeHistogramTarget":
        self._server = serve_bytes(0, lambda accept: (self.scrape(), CONTENT_TYPE))
        self.port = int(self._server.server_address[1])
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def observe_each_scrape(self, labels: tuple[tuple[str, str], ...], values: list[float]) -> None:
        """From the next scrape on, the series `labels` observes `values` at each scrape."""
        with self._lock:
            self.series[labels] = list(values)
            self.classic.setdefault(labels, [0] * len(self.classic_bounds))

    def scrape(self) -> bytes:
        """One exposition: every series observes its values once more, then all are written."""
        with self._lock:
            self._observe_once_more()
            return self._exposition()

    def _observe_once_more(self) -> None:
        for labels, values in self.series.items():
            for v in values:
                self.histograms[labels].observe(v)
                self.classic[labels] = [c + (v <= b) for c, b in zip(self.classic[labels], self.classic_bounds)]

    def _exposition(self) -> bytes:
        family = MetricFamily(name=self.name, help="native histogram", type=HISTOGRAM)
        for labels in self.series:
            metric = family.metric.add()
            for k, v in labels:
                metric.label.add(name=k, value=v)
            self.histograms[labels].fill(metric.histogram)
            for b, c in zip(self.classic_bounds, self.classic.get(labels, ())):
                metric.histogram.bucket.add(cumulative_count=c, upper_bound=b)
        body = family.SerializeToString()
        return varint(len(body)) + body


class SteppedNativeTarget(NativeHistogramTarget):
    """`NativeHistogramTarget` whose series observe only when told (`step`), never at a scrape: its
    histograms are then the same whichever server scrapes it and how often (two replicas scraping one
    target; a test that must know what each holds)."""

    def step(self, values: Mapping[tuple[tuple[str, str], ...], list[float]]) -> None:
        """Every series of `values` observes its values once, seen from the next scrape on."""
        with self._lock:
            for labels, got in values.items():
                self.histograms.setdefault(labels, NativeHistogram())
                self.series.setdefault(labels, [])
                for v in got:
                    self.histograms[labels].observe(v)

    def _observe_once_more(self) -> None:
        """Nothing: a scrape only writes what `step` observed."""
