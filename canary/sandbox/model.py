"""The sandbox's served model, "rec-model", and the metrics it exports.

A recommendation scorer small enough to start in seconds, yet real enough that
the canary analysis has something to judge: 8 FP32 features -> a score in
[0, 1] through the logistic of a fixed weight vector. Missing features arrive
as NaN and are imputed (with 0, the training mean), and the share of missing
features is reported the way the article's monitoring stack does.

Each arm runs the same code with different *behaviour knobs* (extra latency,
prediction shift, error share, NaN output, incompatible schema, device). The
knobs live in a small JSON file that the model re-reads at most every 200 ms,
so a scenario can inject a fault into a running server without a restart --
the way a bad model version behaves badly from its first request, while the
sandbox still decides *when* the canary starts misbehaving.

Metrics (prometheus_client, one registry per process, labelled with
model_name and model_version such as "v2.1.0"):

- ``model_inference_duration_seconds``   histogram, per request
- ``model_prediction_value``              histogram of scores, per row
- ``model_feature_missing_rate``          gauge, missing share over the last rows
- ``model_requests_total{outcome}``       counter, success | error, per request
- ``model_features_total{state}``         counter, missing | present feature values
  (a cumulative form of the gauge, so a window rate can be taken in PromQL)
"""

from __future__ import annotations

import collections
import json
import math
import os
import random
import threading
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

MODEL_NAME = "rec-model"
N_FEATURES = 8
INPUT_NAME = "features"
USER_INPUT = "user"  # schema "user": an optional INT64 input a new version added (stable's clients never send it)
OUTPUT_NAME = "score"
# Fixed "trained" parameters; the bias puts typical scores around 0.4..0.6.
WEIGHTS = np.array([0.8, -0.5, 0.3, 0.6, -0.9, 0.4, 0.2, -0.3], dtype=np.float32)
BIAS = np.float32(-0.1)
FEATURE_MEANS = np.zeros(N_FEATURES, dtype=np.float32)

# x1.1 per bucket from 0.5 ms to about 5 s: a quantile is known to within one bucket, so the
# judge can *show* a canary within a +50% tolerance (half the tolerance or finer near the quantile;
# x1.05 for +20%). The article's 1/2.5/5/10 ms layout puts the sandbox's p95 in (5, 10] ms, where
# no amount of traffic shows anything within +50% (docs/judge.md, "What it costs").
LATENCY_BUCKETS = tuple(round(0.0005 * 1.1**i, 7) for i in range(97))
PREDICTION_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
MISSING_WINDOW_ROWS = 500


@dataclass(frozen=True)
class Behaviour:
    """How one arm behaves. The defaults are a healthy model.

    ``schema`` is read only at start (Triton fixes the model config when the
    model loads); every other knob can change at run time.
    """

    base_latency_ms: float = 3.0  # median of a log-normal "compute time" (sigma 0.4), see RecModel
    extra_latency_ms: float = 0.0  # slow: added to every request
    prediction_shift: float = 0.0  # drift: added to the logit before the sigmoid
    error_share: float = 0.0  # errors: share of calls that raise
    output_nan: bool = False  # garbage: the model answers NaN
    nan_from_rows: int = 0  # garbage at batch sizes only: NaN for requests of this many rows or more (0: never)
    score_columns: int = 1  # the answer's shape changed, not the config: this many score columns (declared: 1)
    score_rows: int = 0  # this many score rows whatever the request's rows (0: one per row, as declared)
    schema: str = "ok"  # "ok" | "bad" (output score FP64 instead of FP32) | "user" (an added optional input)
    nan_without_user: bool = False  # schema "user": the model answers NaN when a request leaves "user" out
    device: str = "cpu"  # "cpu" | "cuda" (torch on the GPU)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> "Behaviour":
        return cls(**{k: v for k, v in raw.items() if k in cls.__dataclass_fields__})


# What each sandbox scenario does to the canary arm once the fault is injected.
SCENARIOS: dict[str, Behaviour] = {
    "good": Behaviour(),
    "slow": Behaviour(extra_latency_ms=40.0),
    "drift": Behaviour(prediction_shift=2.0),
    "errors": Behaviour(error_share=0.2),
    "crash": Behaviour(),  # the fault is a killed process, not a knob
    "bad-schema": Behaviour(schema="bad"),
    # no rollout: the *stable* arm's inputs move away from the training data (the load generator
    # shifts them); `canary drift watch` must alert and trigger retraining (issue 12)
    "data-drift": Behaviour(),
}
FEATURE_NAMES = tuple(f"f{i}" for i in range(N_FEATURES))
PREDICTION_NAME = "score"


def training_profile(version: str, *, rows: int = 20_000, seed: int = 0) -> dict[str, Any]:
    """The profile of the sandbox model's "training data": the inputs the load generator sends when
    nothing drifts (standard normal features) and their scores (`canary baseline capture` on them)."""
    import pyarrow as pa

    from canary.drift.profile import capture

    x = np.random.default_rng(seed).standard_normal((rows, N_FEATURES)).astype(np.float32)
    table = pa.table({**{n: x[:, i].astype(float) for i, n in enumerate(FEATURE_NAMES)},
                      PREDICTION_NAME: score(x).ravel().astype(float)})
    return capture(table, model=MODEL_NAME, version=version, file="sandbox-training-data", sha256="-",
                   prediction=PREDICTION_NAME)


def write_behaviour(path: Path, behaviour: Behaviour) -> None:
    """Atomically replace the knob file (the server never reads half a file)."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(behaviour.to_json(), encoding="utf-8")
    os.replace(tmp, path)


class ModelMetrics:
    """The article's model metrics, in a private registry served on its own port."""

    def __init__(self, *, model_name: str, model_version: str, drift_profile: dict[str, Any] | None = None,
                 native_histograms: bool = False) -> None:
        self.registry = CollectorRegistry()
        self.drift: Any = None
        if drift_profile is not None:  # live feature distributions over the training profile's buckets
            from canary.drift.exporter import FeatureExporter

            self.drift = FeatureExporter(drift_profile, model=model_name, version=model_version,
                                         registry=self.registry)
        labels = ["model_name", "model_version"]
        self._lv = {"model_name": model_name, "model_version": model_version}
        self.latency = Histogram(
            "model_inference_duration_seconds", "Time spent on model inference", labels,
            buckets=LATENCY_BUCKETS, registry=self.registry,
        ).labels(**self._lv)
        self.prediction = Histogram(
            "model_prediction_value", "Distribution of prediction values", labels,
            buckets=PREDICTION_BUCKETS, registry=self.registry,
        ).labels(**self._lv)
        self.missing_rate = Gauge(
            "model_feature_missing_rate", "Rate of missing features in recent inference requests", labels,
            registry=self.registry,
        ).labels(**self._lv)
        requests = Counter(
            "model_requests", "Inference requests by outcome", [*labels, "outcome"], registry=self.registry
        )
        self.success = requests.labels(**self._lv, outcome="success")
        self.error = requests.labels(**self._lv, outcome="error")
        features = Counter(
            "model_features", "Feature values received, missing or present", [*labels, "state"],
            registry=self.registry,
        )
        self.features_missing = features.labels(**self._lv, state="missing")
        self.features_present = features.labels(**self._lv, state="present")
        # native_histograms: the latency is also counted as a Prometheus native histogram, which the
        # protobuf exposition writes in place of its classic buckets (`canary.sandbox.exposition`)
        self.native_latency: Any = None
        if native_histograms:
            from canary.sandbox.exposition import NativeHistogram

            self.native_latency = NativeHistogram()
        self._recent: collections.deque[float] = collections.deque(maxlen=MISSING_WINDOW_ROWS)
        self.success.inc(0)
        self.error.inc(0)

    def observe_latency(self, seconds: float) -> None:
        self.latency.observe(seconds)
        if self.native_latency is not None:
            self.native_latency.observe(seconds)

    def native(self) -> dict[str, Any]:
        """{family name: (labels, NativeHistogram)} for `exposition.serve` ({} without native histograms)."""
        if self.native_latency is None:
            return {}
        return {"model_inference_duration_seconds": (dict(self._lv), self.native_latency)}

    def observe_drift(self, features: np.ndarray, scores: np.ndarray) -> None:
        """Each row's features and score, for the drift exporter (NaN counts as missing)."""
        if self.drift is None:
            return
        for row, s in zip(features, np.asarray(scores).ravel()):
            self.drift.observe(dict(zip(FEATURE_NAMES, row.tolist())), prediction=float(s))

    def observe_inputs(self, features: np.ndarray) -> None:
        missing = np.isnan(features)
        n_missing = int(missing.sum())
        self.features_missing.inc(n_missing)
        self.features_present.inc(missing.size - n_missing)
        self._recent.extend(missing.mean(axis=1).tolist())
        self.missing_rate.set(float(np.mean(self._recent)) if self._recent else 0.0)


def score(features: np.ndarray, *, shift: float = 0.0, device: str = "cpu") -> np.ndarray:
    """Impute NaN with the feature mean, then logistic(x.w + b + shift); shape (n, 1)."""
    x = np.where(np.isnan(features), FEATURE_MEANS, features).astype(np.float32)
    if device == "cuda":
        import torch  # only on the GPU machine; the CPU sandbox never imports torch

        t = torch.from_numpy(x).to("cuda")
        w = torch.from_numpy(WEIGHTS).to("cuda")
        out = torch.sigmoid(t @ w + float(BIAS) + shift)
        return out.cpu().numpy().astype(np.float32).reshape(-1, 1)
    logit = x @ WEIGHTS + BIAS + np.float32(shift)
    return (1.0 / (1.0 + np.exp(-logit))).astype(np.float32).reshape(-1, 1)


class RecModel:
    """The Triton inference callable: a list of requests in, a list of responses out.

    Requests are handled one by one (not with PyTriton's @batch) so that the
    request counter and the latency histogram count client requests, which is
    what the canary analysis compares. The numpy scorer itself takes ~50 µs, all
    inside the first latency bucket, which no quantile test can resolve; a
    log-normal wait (median ``base_latency_ms``) stands in for a real model's
    compute time, so latency spreads over several buckets as in production.
    """

    def __init__(self, *, metrics: ModelMetrics, knob_file: Path | None, initial: Behaviour) -> None:
        self.metrics = metrics
        self._knob_file = knob_file
        self._behaviour = initial
        self._checked_at = 0.0
        self._mtime = 0.0
        self._lock = threading.Lock()

    def behaviour(self) -> Behaviour:
        now = time.monotonic()
        if self._knob_file is None or now - self._checked_at < 0.2:
            return self._behaviour
        with self._lock:
            self._checked_at = now
            try:
                mtime = self._knob_file.stat().st_mtime
                if mtime != self._mtime:
                    raw = json.loads(self._knob_file.read_text(encoding="utf-8"))
                    # the schema is fixed at load time; never let a knob file change it
                    self._behaviour = replace(Behaviour.from_dict(raw), schema=self._behaviour.schema)
                    self._mtime = mtime
            except (OSError, ValueError, TypeError):
                pass  # keep the last good knobs; a torn or missing file is not a model error
        return self._behaviour

    def __call__(self, requests: list[Any]) -> list[dict[str, np.ndarray]]:
        b = self.behaviour()
        started = time.perf_counter()
        fail = b.error_share > 0 and random.random() < b.error_share
        try:
            out_dtype = np.float64 if b.schema == "bad" else np.float32
            responses, observed = [], []
            for request in requests:
                features = np.asarray(request[INPUT_NAME], dtype=np.float32)
                self.metrics.observe_inputs(features)
                scores = score(features, shift=b.prediction_shift, device=b.device)
                if b.nan_without_user and USER_INPUT not in request.keys():  # the new input's absence mishandled
                    scores = np.full_like(scores, np.nan)
                observed.append((features, scores))
                if b.output_nan or 0 < b.nan_from_rows <= len(features):
                    scores = np.full_like(scores, np.nan)
                if b.score_columns != 1 or b.score_rows:  # Triton's Python backend sends what it is given
                    scores = np.resize(scores, (b.score_rows or len(scores), b.score_columns))
                responses.append({OUTPUT_NAME: scores.astype(out_dtype)})
            wait_ms = b.extra_latency_ms
            if b.base_latency_ms > 0:
                wait_ms += random.lognormvariate(math.log(b.base_latency_ms), 0.4)
            if wait_ms > 0:
                time.sleep(wait_ms / 1000.0)
            if fail:
                raise RuntimeError("injected failure (sandbox scenario 'errors')")
        except Exception:
            self.metrics.error.inc(len(requests))
            raise
        elapsed = time.perf_counter() - started
        for features, scores in observed:  # outside the timed part: the exporter is not the model's latency
            self.metrics.observe_drift(features, scores)
        for response in responses:
            self.metrics.observe_latency(elapsed)
            self.metrics.success.inc()
            for value in response[OUTPUT_NAME].ravel():
                if np.isfinite(value):
                    self.metrics.prediction.observe(float(value))
        return responses
