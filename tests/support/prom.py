"""Prometheus fixtures: one real, backfilled Prometheus per session, plus a factory.

Fixtures:
  prometheus_binary   path of `prometheus` (skips the test, with the reason, if absent)
  prom_dataset        the `Dataset` backfilled into the session server (known answers)
  prom_server         session PromServer holding `prom_dataset`'s history
  prom_provider       PrometheusProvider on `prom_server`, evaluating at `prom_dataset.at`
  prom_server_factory start extra servers (live scrape, ...); all stopped at teardown
  history_pool        one backfilled server per distinct history per test process, shared by the modules
                      that read the same history (`HistoryPool.get`)

Every series is a linear counter (or a constant gauge), so `increase()` over a
window on the 15 s grid is exact: tests compare against `Dataset` numbers
with a small float tolerance only.
"""

from __future__ import annotations

import json
import math
import os
import re
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from canary.metrics.prometheus import PrometheusProvider
from canary.metrics.queries import PART_LABEL, escape
from canary.model import Target
from canary.sandbox.promserver import (
    PromServer, Series, counter, find_binary, gauge, histogram, history_window, openmetrics,
)

WINDOW_S = 60
TARGET = Target(namespace="ml", virtual_service="rec", model="rec", stable_version="v1", canary_version="v2")
EVIL_MODEL = 'rec"}or vector(1)#'  # a model name that tries to inject PromQL

MODEL_LATENCY_BOUNDS_S = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)  # the article's buckets
ISTIO_LATENCY_BOUNDS_MS = (5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0)
PREDICTION_BOUNDS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
# model "layouts": both arms have the same latency (30% <= 50 ms, 60% <= 100, 80% <= 150, 95% <= 250 ms,
# per 60 s window of 10,000 requests) but export different bucket bounds (issue 9, defect 4b)
LAYOUT_MODEL = "layouts"
LAYOUTS_S = {"v1": ((0.1, 0.15, 0.25), (6000, 2000, 1500, 500)), "v2": ((0.05, 0.1, 0.25), (3000, 3000, 3500, 500))}
# model "mixed-pods": the same latency again, but *within* one arm the pods export different layouts
# (pod -> version, bounds, per-window counts): stable's two busy pods share only 0.1 and 0.25, an idle
# pod exports a third layout, and the canary has the +Inf-only series of an empty native histogram
# (Prometheus < 2.47, decision 51) beside its classic pod. "no-shared": two pods, no shared finite bound.
MIXED_MODEL, NO_SHARED_MODEL = "mixed-pods", "no-shared"
MIXED_PODS = {
    (MIXED_MODEL, "a"): ("v1", *LAYOUTS_S["v1"]), (MIXED_MODEL, "b"): ("v1", *LAYOUTS_S["v2"]),
    (MIXED_MODEL, "idle"): ("v1", (0.2,), (0, 0)), (MIXED_MODEL, "c"): ("v2", (0.1, 0.25), (6000, 3500, 500)),
    (MIXED_MODEL, "ghost"): ("v2", (), (0,)),
    (NO_SHARED_MODEL, "a"): ("v1", (0.1,), (5000, 5000)), (NO_SHARED_MODEL, "b"): ("v1", (0.2,), (8000, 2000)),
    (NO_SHARED_MODEL, "c"): ("v2", (0.1, 0.2), (5000, 3000, 2000)),
    # "spelled-inf": the canary's second pod writes its top bucket le="Inf" (Python's str(inf) is
    # "inf", Rust's "inf", Java's "Infinity"; Prometheus's own parser reads them all as +Inf)
    (SPELLED_MODEL := "spelled-inf", "s"): ("v1", *LAYOUTS_S["v1"]), (SPELLED_MODEL, "a"): ("v2", *LAYOUTS_S["v1"]),
    (SPELLED_MODEL, "b"): ("v2", *LAYOUTS_S["v2"]),
}
INF_SPELLING = {(SPELLED_MODEL, "b"): "Inf"}
# what canary.drift.exporter exports for model "features", per 60 s window: v1 is stable, v2 a
# canary whose upstream pipeline sends `age` in months (and drops `plan`), v3 an A/A copy of v1
FEATURE_MODEL = "features"
AGE_BOUNDS = (20.0, 30.0, 40.0, 50.0)
FEATURES = {
    "v1": {"age": (100, 300, 300, 200, 100), "city": {"paris": 600, "lyon": 400}, "missing": {"age": 10, "city": 0},
           "plan": {"free": 700, "pro": 300}},
    "v2": {"age": (0, 0, 10, 90, 900), "city": {"paris": 600, "lyon": 400}, "missing": {"age": 10, "city": 0}},
    "v3": {"age": (100, 300, 300, 200, 100), "city": {"paris": 600, "lyon": 400}, "missing": {"age": 10, "city": 0},
           "plan": {"free": 700, "pro": 300}},
}
# the exporter's prediction column (role="prediction"): v3's scores moved a lot, which is prediction_shift's to judge
SCORES = {"v1": (800, 150, 50), "v2": (800, 150, 50), "v3": (50, 150, 800)}


@dataclass(frozen=True)
class Arm:
    """Per-window (60 s) counts of one arm; every source reports the same traffic."""

    version: str
    latency: tuple[float, ...]  # per bucket incl. +Inf, non-cumulative
    predictions: tuple[float, ...]
    success: float
    errors: float
    missing: dict[str, float]  # feature -> missing fraction (gauge)
    duration_us: float  # Triton cumulative µs per window

    @property
    def requests(self) -> float:
        return self.success + self.errors

    @property
    def missing_rate(self) -> float:
        return sum(self.missing.values()) / len(self.missing)


@dataclass(frozen=True)
class Dataset:
    start: float
    end: float
    at: float  # evaluation time for deterministic queries (on the grid, about now)
    stable: Arm
    canary: Arm
    evil_requests: float = 42.0
    target: Target = TARGET
    extra: dict[str, Any] = field(default_factory=dict)

    def arm(self, name: str) -> Arm:
        return self.stable if name == "stable" else self.canary

    def series(self) -> list[Series]:
        out: list[Series] = []
        for arm in (self.stable, self.canary):
            out += _arm_series(arm, self.target)
        out += counter("model_requests_total", {"model_name": EVIL_MODEL, "model_version": "v1", "outcome": "success"},
                       self.evil_requests / WINDOW_S)
        for version, (bounds, counts) in LAYOUTS_S.items():
            out += histogram("model_inference_duration_seconds", {"model_name": LAYOUT_MODEL, "model_version": version},
                             bounds, _per_s(counts))
        for (model, pod), (version, bounds, counts) in MIXED_PODS.items():
            spelled = INF_SPELLING.get((model, pod))
            out += [Series(x.name, {**x.labels, "le": spelled}, x.per_s) if spelled and x.labels.get("le") == "+Inf"
                    else x for x in histogram("model_inference_duration_seconds",
                                              {"model_name": model, "model_version": version, "pod": pod}, bounds,
                                              _per_s(counts))]
            out += counter("model_requests_total", {"model_name": model, "model_version": version, "pod": pod,
                                                    "outcome": "success"}, sum(counts) / WINDOW_S)
        for version, f in FEATURES.items():
            out += _feature_series(version, f)
        return out

    def openmetrics(self) -> str:
        return openmetrics(self.series(), start=self.start, end=self.end)


def _per_s(counts: tuple[float, ...]) -> list[float]:
    return [c / WINDOW_S for c in counts]


def _arm_series(arm: Arm, t: Target) -> list[Series]:
    m = {"model_name": t.model, "model_version": arm.version}
    out = histogram("model_inference_duration_seconds", m, MODEL_LATENCY_BOUNDS_S, _per_s(arm.latency))
    out += histogram("model_prediction_value", m, PREDICTION_BOUNDS, _per_s(arm.predictions))
    out += counter("model_requests_total", {**m, "outcome": "success"}, arm.success / WINDOW_S)
    out += counter("model_requests_total", {**m, "outcome": "error"}, arm.errors / WINDOW_S)
    for feature, rate in arm.missing.items():
        out += gauge("model_feature_missing_rate", {**m, "feature_name": feature}, rate)
    for reporter in ("destination", "source"):  # both proxies report each request; we must count once
        i = {"reporter": reporter, "destination_service_name": t.model, "destination_service_namespace": t.namespace,
             "destination_version": arm.version}
        out += histogram("istio_request_duration_milliseconds", i, ISTIO_LATENCY_BOUNDS_MS, _per_s(arm.latency))
        out += counter("istio_requests_total", {**i, "response_code": "200"}, arm.success / WINDOW_S)
        out += counter("istio_requests_total", {**i, "response_code": "503"}, arm.errors / WINDOW_S)
    tr = {"model": t.model, "version": arm.version}
    out += counter("nv_inference_request_success", tr, arm.success / WINDOW_S)
    out += counter("nv_inference_request_failure", tr, arm.errors / WINDOW_S)
    out += counter("nv_inference_request_duration_us", tr, arm.duration_us / WINDOW_S)
    out += counter("nv_inference_queue_duration_us", tr, arm.duration_us / 10 / WINDOW_S)
    return out


def _feature_series(version: str, f: dict[str, Any]) -> list[Series]:
    m = {"model_name": FEATURE_MODEL, "model_version": version}
    i = {**m, "role": "input"}
    out = histogram("model_feature_value", {**i, "feature": "age"}, AGE_BOUNDS, _per_s(f["age"]))
    out += histogram("model_feature_value", {**m, "role": "prediction", "feature": "score"}, (0.3, 0.6),
                     _per_s(SCORES[version]))
    for feature in ("city", "plan"):
        for category, n in f.get(feature, {}).items():
            out += counter("model_feature_category_total", {**i, "feature": feature, "category": category}, n / WINDOW_S)
    for feature, n in f["missing"].items():
        out += counter("model_feature_missing_total", {**i, "feature": feature}, n / WINDOW_S)
    out += counter("model_requests_total", {**m, "outcome": "success"}, sum(f["age"]) / WINDOW_S)
    return out


def make_dataset(now: float | None = None) -> Dataset:
    # History reaches 3 h past now: a query "at now" must see it however slowly the suite reaches it
    # (300 s ahead failed a run whose tests reached it 11 min in, on a loaded machine).
    start, end = history_window(now, after_s=3 * 3600)
    return Dataset(
        start=start, end=end, at=start + 1800,
        stable=Arm("v1", latency=(10, 20, 30, 20, 10, 5, 3, 1, 1), predictions=(5, 10, 15, 20, 20, 10, 8, 6, 4, 2, 0),
                   success=594, errors=6, missing={"age": 0.01, "income": 0.03}, duration_us=600 * 40_000),
        canary=Arm("v2", latency=(5, 10, 20, 30, 20, 8, 4, 2, 1), predictions=(0, 2, 4, 6, 8, 10, 20, 20, 15, 10, 5),
                   success=108, errors=12, missing={"age": 0.1, "income": 0.2}, duration_us=120 * 60_000),
    )


def cumulative(counts: tuple[float, ...]) -> tuple[float, ...]:
    out, running = [], 0.0
    for c in counts:
        running += c
        out.append(running)
    return tuple(out)


@pytest.fixture(scope="session")
def prometheus_binary() -> str:
    path = find_binary("prometheus")
    if not path or not find_binary("promtool"):
        pytest.skip("prometheus/promtool not installed (Debian package `prometheus`; CI installs it)")
    return path


@pytest.fixture(scope="session")
def prom_dataset() -> Dataset:
    return make_dataset()


@pytest.fixture(scope="session")
def prom_server(prometheus_binary: str, prom_dataset: Dataset) -> Iterator[PromServer]:
    server = PromServer(history=prom_dataset.openmetrics(), binary=prometheus_binary)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def prom_provider(prom_server: PromServer, prom_dataset: Dataset) -> PrometheusProvider:
    return PrometheusProvider(prom_server.url, at=prom_dataset.at, retries=2, budget_s=3.0, backoff_s=0.05)


class HistoryPool:
    """Backfilled Prometheus servers shared by the test modules of one process (an xdist worker) that read the
    same history, instead of one per module; their TSDB blocks shared by every worker of the run.

    A module's history (tests/fleet.py's, test_promote's) is 70-400 MB of OpenMetrics text at a 1 s step whose
    `promtool` backfill costs about 4 s of CPU quiet and tens of seconds of wall on a loaded machine; 37 test
    modules read the controller's and 13 the promote's, and they re-made the same history each. The servers
    hold read-only data (no scrape targets), so sharing them between modules changes nothing a module can see
    but how much history lies before its start. `get` returns the running server of `key` while its data reach
    at least `need_s` past now (what each module's own server gave it: it outlasts a module on a loaded
    machine), else stops it and starts a new one on a copy of the run's blocks of `key` (`_blocks`), which the
    first worker to need them backfills from `make(after_s)`, whose series must end `after_s` after the time it
    is called (`history_window`'s `after_s`). With `shared` None (no directory the workers share) each process
    backfills its own."""

    def __init__(self, binary: str, shared: Path | None = None) -> None:
        self.binary = binary
        self.shared = shared
        self._servers: dict[Any, tuple[PromServer, float]] = {}

    def get(self, key: Any, make: Callable[[float], str], *, need_s: float = 1800.0,
            after_s: float = 3600.0) -> PromServer:
        running = self._servers.get(key)
        if running is not None and running[1] - time.time() >= need_s:
            return running[0]
        if running is not None:
            running[0].stop()
            del self._servers[key]
        if self.shared is None:
            ends = time.time() + after_s - 2.0  # history_window's end is on its step grid below now + after_s
            server = PromServer(history=make(after_s), binary=self.binary)
        else:
            server = PromServer(binary=self.binary)  # its own data directory, removed when it stops
            ends = self._blocks(key, make, need_s=need_s, after_s=after_s, into=server.data_dir)
        server.start()
        self._servers[key] = (server, ends)
        return server

    def _blocks(self, key: Any, make: Callable[[float], str], *, need_s: float, after_s: float, into: Path) -> float:
        """Copy the run's TSDB blocks of `key` into `into` (backfilled first, under a lock every worker takes, when
        none are there or they end less than `need_s` from now) and return when their data end (epoch s)."""
        import fcntl
        import hashlib
        import shutil

        from canary.sandbox.promserver import backfill

        name = hashlib.sha256(repr(key).encode()).hexdigest()[:16]
        self.shared.mkdir(parents=True, exist_ok=True)
        meta = self.shared / f"{name}.json"
        with open(self.shared / f"{name}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, or the process dies
            known = json.loads(meta.read_text()) if meta.exists() else None
            if known is None or known["ends"] - time.time() < need_s:
                if known is not None:
                    shutil.rmtree(self.shared / known["dir"], ignore_errors=True)
                ends = time.time() + after_s - 2.0  # history_window's end is on its step grid below now + after_s
                blocks = f"{name}-{time.time_ns()}"
                backfill(self.shared / blocks, make(after_s))
                known = {"ends": ends, "dir": blocks}
                meta.write_text(json.dumps(known))
            shutil.copytree(self.shared / known["dir"], into, dirs_exist_ok=True)
            return float(known["ends"])

    def stop(self) -> None:
        for server, _ in self._servers.values():
            server.stop()
        self._servers.clear()


@pytest.fixture(scope="session")
def history_pool(prometheus_binary: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HistoryPool]:
    # the workers of one xdist run share their base temporary directory's parent (pytest-N/popen-gwK); a run
    # without xdist has its own base (pytest-N), removed with it by pytest's cleanup of old runs
    base = tmp_path_factory.getbasetemp()
    pool = HistoryPool(prometheus_binary, (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base)
                       / "prom-history")
    try:
        yield pool
    finally:
        pool.stop()


@pytest.fixture
def prom_server_factory(prometheus_binary: str) -> Iterator[Callable[..., PromServer]]:
    started: list[PromServer] = []

    def start(**kwargs: Any) -> PromServer:
        server = PromServer(binary=prometheus_binary, **kwargs)
        server.start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def series_counts(answer: str) -> str:
    """For a scripted Prometheus: the answer to a `count by (le)` bucket count query
    (`queries.series_count_query_of`) when one series exports each `le` of the classic answer."""
    body = json.loads(answer)
    for series in body["data"]["result"]:
        series["value"] = [series["value"][0], "1"]
    return json.dumps(body)


def close(a: float, b: float, rel: float = 1e-6) -> bool:
    return math.isclose(a, b, rel_tol=rel, abs_tol=1e-6)


_PART = re.compile(r'label_replace\(\((?P<query>.*?)\), "' + PART_LABEL + r'", "(?P<key>[^"]*)", "", ""\)')


def one_answer_parts(query: str) -> dict[str, str] | None:
    """For a scripted Prometheus: the parts of a `queries.one_answer` query ({key: PromQL}); None for any
    other query."""
    if not query.startswith("label_replace(("):
        return None
    return {m["key"]: m["query"] for m in _PART.finditer(query)}


_ARMS_NATIVE = re.compile(r'^sum by \((?P<label>[a-zA-Z_][a-zA-Z0-9_]*)\) \(increase\((?P<base>[a-zA-Z_:][a-zA-Z0-9_:]*)'
                          r'(?P<sel>\{.*?\})\[(?P<window>[0-9a-z]+)\]\)\)(?: or (?P<rest>label_replace\(\(.*))?$')


def arms_native_parts(query: str) -> tuple[str, dict[str, str], str] | None:
    """For a scripted Prometheus: a `query_plan.arms_native_query` query as (the arm label, {version: that
    arm's own native query}, the `one_answer` parts or'ed after it, "" for none); None for any other query."""
    m = _ARMS_NATIVE.match(query)
    if m is None:
        return None
    label, sel = m["label"], m["sel"]
    matcher = re.search(label + r'=~"((?:[^"\\]|\\.)*)"', sel)
    if matcher is None:
        return None
    regex = re.sub(r"\\(.)", r"\1", matcher[1])  # the PromQL string's escapes
    versions = [re.sub(r"\\(.)", r"\1", v) for v in re.split(r"(?<!\\)\|", regex)]  # RE2's
    arms = {v: f"sum(increase({m['base']}{sel[:matcher.start()]}{label}=\"{escape(v)}\""
               f"{sel[matcher.end():]}[{m['window']}]))" for v in versions}
    return label, arms, m["rest"] or ""


def answering_parts(reply: Callable[[str, dict[str, str]], tuple[int, str, str]]
                    ) -> Callable[[str, dict[str, str]], tuple[int, str, str]]:
    """A scripted Prometheus's `reply` (path, headers) -> (status, content type, body), which answers each
    query alone, made to answer a `queries.one_answer` query as Prometheus does: every part's answer, each
    series marked with its part's key; and a `query_plan.arms_native_query` query (`arms_native_parts`):
    each arm's own native query's answer, marked with its version. A part answered with anything but a 200
    vector is the answer."""
    from urllib.parse import parse_qs, urlencode, urlparse

    def answer(path: str, headers: dict[str, str]) -> tuple[int, str, str]:
        url = urlparse(path)
        params = {k: v[0] for k, v in parse_qs(url.query).items()}
        query = params.get("query", "")
        arms = arms_native_parts(query)  # (both arms' native histograms, grouped by the arm label: decision 195)
        parts = one_answer_parts(arms[2] if arms else query)
        if not parts and not arms:
            return reply(path, headers)
        # each part's series marked as Prometheus marks them: an arm's by its arm label, a part by PART_LABEL
        asked = [({arms[0]: version}, part) for version, part in arms[1].items()] if arms else []
        asked += [({PART_LABEL: key}, part) for key, part in (parts or {}).items()]
        merged: list[Any] = []
        body: dict[str, Any] = {}
        for mark, part in asked:
            status, ctype, text = reply(url._replace(query=urlencode({**params, "query": part})).geturl(), headers)
            try:
                body = json.loads(text)
                result = body["data"]["result"]
            except (ValueError, KeyError, TypeError):
                return status, ctype, text
            if status != 200 or body["data"].get("resultType") != "vector":
                return status, ctype, text
            merged += [{**s, "metric": {**s.get("metric", {}), **mark}} for s in result]
        body["data"]["result"] = merged
        return 200, "application/json", json.dumps(body)

    return answer


def until_value(prom: Any, query: str, at_least: float, what: str, *, timeout_s: float = 60.0) -> None:
    """Return once the first sample `query` answers on the real Prometheus `prom` (a PromServer) is at least
    `at_least`: a scrape that test code waits for (a count of observations, a generation, a timestamp), asked
    every 50 ms. AssertionError naming `what` and the server's log tail after `timeout_s`."""
    url = f"{prom.url}/api/v1/query?" + urllib.parse.urlencode({"query": query})
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with urllib.request.urlopen(url, timeout=5) as answer:  # noqa: S310 - 127.0.0.1 only
            got = json.load(answer)["data"]["result"]
        if got and float(got[0]["value"][1]) >= at_least:
            return
        time.sleep(0.05)
    raise AssertionError(f"Prometheus never scraped {what}: {prom.log_tail(500)}")
