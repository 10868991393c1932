"""The backfill text (`promserver.openmetrics`) is the same text, sample by sample, whichever way it is written.

`openmetrics` writes the sample lines of series of one rate once and names them per series (the tests' histories
are 100-400 MB); this holds it to the plain sample-by-sample formatting it replaced, on every kind of series:
counters and gauges of one rate under different names and labels, -0.0 beside 0.0, NaN and infinities, label
values that need escaping, and a subclass with its own `value`."""

from __future__ import annotations

import math
from collections.abc import Iterable

from canary.metrics.queries import escape
from canary.sandbox.promserver import Series, counter, gauge, histogram, openmetrics
from tests import fleet


def _plain(series: Iterable[Series], *, start: float, end: float, step: float = 15.0) -> str:
    by_name: dict[str, list[Series]] = {}
    for s in series:
        by_name.setdefault(s.name, []).append(s)
    times = [start + k * step for k in range(int((end - start) // step) + 1)]
    lines: list[str] = []
    for name, group in by_name.items():
        lines.append(f"# TYPE {name} unknown")
        for s in group:
            labels = ",".join(f'{k}="{escape(v)}"' for k, v in s.labels.items())
            head = f"{name}{{{labels}}}" if labels else name
            lines.extend(f"{head} {s.value(t, start)!r} {t:.3f}" for t in times)
    lines.append("# EOF")
    return "\n".join(lines) + "\n"


class _Stepped(Series):
    def value(self, t: float, start: float) -> float:
        return self.per_s * ((t - start) // 7)


def test_every_kind_of_series_is_written_as_sample_by_sample_formatting_writes_it() -> None:
    series = [*counter("a_total", {"v": "1"}, 2.5), *counter("a_total", {"v": "2"}, 2.5),
              *counter("a_total", {"v": 'q"\\\n'}, 2.5), *gauge("a_total", {"v": "3"}, 2.5),
              *counter("b_total", {}, -0.0), *counter("b_total", {"x": "y"}, 0.0), *gauge("c", {}, math.nan),
              *gauge("c", {"i": "1"}, math.inf), *gauge("c", {"i": "2"}, -math.inf), *gauge("c", {"i": "3"}, 1e-300),
              *histogram("h", {"m": "x"}, [0.1, 0.25], [1.0, 2.0, 0.5]),
              *histogram("h", {"m": "y"}, [0.1, 0.25], [1.0, 2.0, 0.5]),
              _Stepped("d", {"k": "1"}, 3.0), _Stepped("d", {"k": "2"}, 3.0)]
    for start, end, step in ((1_700_000_000.0, 1_700_000_100.0, 1.0), (0.5, 47.0, 15.0), (10.0, 5.0, 1.0)):
        assert openmetrics(series, start=start, end=end, step=step) == _plain(series, start=start, end=end, step=step)


def test_a_fleet_history_is_the_same_text() -> None:
    start, end = 1_796_000_000.0, 1_796_000_300.0
    series = [s for i in range(3) for s in counter("model_requests_total", {"model_name": fleet.model(i)}, 40.0)]
    series += histogram("model_inference_duration_seconds", {"model_name": "m0"}, fleet.BOUNDS_S,
                        [1.0] * (len(fleet.BOUNDS_S) + 1))
    assert openmetrics(series, start=start, end=end, step=1.0) == _plain(series, start=start, end=end, step=1.0)
