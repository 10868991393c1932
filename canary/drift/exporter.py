"""Live per-feature distributions for a model server to export (issue 12).

A model server adds three lines (the README shows them):

    from canary.drift.exporter import FeatureExporter
    drift = FeatureExporter.from_file("rec-model-v2.profile.json")  # registers with prometheus_client
    drift.observe({"age": 41, "city": "Lyon"}, prediction=0.83)      # once per request

and serves prometheus_client's registry as it already does. Exported, per model
version and feature, over the profile's own bounds (so `canary drift check`
compares bucket for bucket, never re-binning):

    model_feature_value_bucket{model_name, model_version, feature, role, le}   numeric features (a histogram)
    model_feature_category_total{model_name, model_version, feature, role, category}   categorical features
    model_feature_missing_total{model_name, model_version, feature, role}       missing values (None, NaN)
    model_feature_value_sum_by_sign_total{model_name, model_version, feature, role, sign}   numeric features:
        the sum of the positive values (sign="positive") and of the negatives' magnitudes (sign="negative")
    model_feature_value_summed_total{model_name, model_version, feature, role}   numeric features: how many
        values those sums are over (born with them, in the same scrape: the live mean's own count)
    model_feature_observations_total{model_name, model_version}                 observed requests
    model_feature_profile_info{model_name, model_version, profile_hash}          1: the profile it counts over
        (`profile.profile_hash`), so `drift watch` can tell a server still exporting an older profile's buckets

A value equal to a bound at float32 precision (a model server's FP32 input: float32(0.1) is a little
above the training data's 0.1) counts in that bound's bucket, as the capture counts it
(`profile.bucket_edges`): counted exactly, it read as drift into the bucket above.

The prediction column of the profile, when it has one, is exported as the
feature of that name with role="prediction" (every other feature: role="input"),
so a rollout's `feature_drift` check leaves it to `prediction_shift`.

Why a sum per sign: the live mean bounds the Wasserstein distance from below (mass beyond the last
bucket), so every numeric feature needs its live sum over the window. A histogram's `_sum` cannot
carry it: prometheus_client leaves `_sum` and `_count` out when a bucket bound is negative (a sum
that can fall is not a counter), and where it keeps them a negative value makes `_sum` fall, which
`increase()` reads as a counter reset. Two counters that only grow, the positive part and the
negative part, survive both; `canary.drift.live` reads their difference over `summed`, the count
exported with them. Not over the histogram's count: during a rolling upgrade the pods of an older
exporter count in the buckets but not in the sums, and a mean of one over the other is wrong by as
much as their share (a false drift). Memory is constant in the number of requests: counts
per bucket and per profiled category (values beyond them count as
category "__other__"; the empty category "" is exported as "__empty__", since Prometheus drops a label
whose value is empty). A category spelt like one of those two labels, with any number of "_" before it
("__other__", "___empty__"), is exported with one "_" more (`category_label`): a pipeline that already
binned its rare values as "__other__" counted them with the values the profile never saw, and the watch
read them as unseen (decision 540). Every other category is its own label, as before.

A categorical value sent as a number whose text is not the profile's spelling of it (1.0 where the
training data, read as text, said "1"; 1 where it said "1.0") counts under the profile's category of
the same number, never under "__other__" (a drift of the whole feature, and a retraining, for nothing).
Only a number does: a text is the category it spells ("01" is not "1"), and a number no category equals
is "__other__" as before.

A boolean feature (its profile's categories are "true"/"false") is counted under those two whatever
the spelling a request uses: True/False, 1/0, "True"/"false"/"1"/"0" (`profile.boolean_category`);
any other value counts as missing, a type mismatch like text sent for a number, not as drift.
A boolean (True/False, np.True_/np.False_) sent for a numeric feature counts as 1/0 where the feature
is one of 0s and 1s (its bounds are among 0 and 1), and as missing, a type mismatch, on any other
numeric feature: one rule for Python's and numpy's booleans (decision 543).
"""

from __future__ import annotations

import bisect
import json
import math
import re
import threading
import weakref
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, InfoMetricFamily

from canary.drift.profile import boolean_category, bucket_edges, is_boolean, profile_hash
from canary.feature_labels import OTHER, category_label, category_of_label

_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")  # a category's text that spells a number

# per registry, the exporter registered for each model version (`FeatureExporter.__init__`, `close`): a model server
# that loads a re-captured profile builds a new exporter, and the old one stayed registered beside it, so the feature
# the new profile dropped kept its `model_feature_*` series, at their last counts, and every other series was exported
# twice under the same labels (decision 383)
_REGISTERED: "weakref.WeakKeyDictionary[Any, dict[tuple[str, str], FeatureExporter]]" = weakref.WeakKeyDictionary()
_REGISTERING = threading.Lock()


class FeatureExporter:
    """A prometheus_client collector of live feature distributions over a profile's buckets."""

    def __init__(self, profile: Mapping[str, Any], *, model: str | None = None, version: str | None = None,
                 registry: CollectorRegistry | None = REGISTRY, where: str = "profile") -> None:
        """ConfigError naming `where` (the file, for `from_file`) and the field when `profile` is not one
        `canary baseline capture` writes: a KeyError from a model server's start says nothing of which file
        or field, and an exporter over bounds the watcher refuses only shows up as bad live data later."""
        from canary.drift.compare import validate_profile

        validate_profile(profile, where)
        self.model = model or str(profile["model"])
        self.version = version or str(profile["version"])
        self._prediction = profile.get("prediction")
        self.profile_hash = profile_hash(profile)
        self._lock = threading.Lock()
        # each bucket's upper edge (`profile.bucket_edges`: a float32 0.1 counts as the bound 0.1; a list: bisect
        # on it is ~10x faster than numpy for one value), counts, [sum]; the bounds themselves label the buckets
        self._numeric: dict[str, tuple[list[float], np.ndarray, list[float]]] = {}
        self._bounds: dict[str, list[float]] = {}
        # per categorical feature, the count of each category's label (`category_label`) and of OTHER
        self._categorical: dict[str, dict[str, int]] = {}
        # per categorical feature, the label of each category whose text spells a number, by that number: a live
        # number that is not the profile's spelling of it (1.0 for "1") counts there (`_spelt`)
        self._numbers: dict[str, dict[float, str]] = {}
        self._missing: dict[str, int] = {}
        self._boolean: set[str] = set()
        self._zero_one: set[str] = set()  # numeric features of 0s and 1s: a boolean sent for one counts as 1/0
        # per categorical feature whose profile has a NaN's text as a category: its label; and whose profile spelt
        # every missing value as text: the label a None counts as
        self._nan: dict[str, str] = {}
        self._none: dict[str, str] = {}
        self._observed = 0
        for name, f in profile["features"].items():
            self._missing[name] = 0
            if f["type"] == "numeric":
                self._bounds[name] = [float(b) for b in f["bounds"]]
                self._numeric[name] = ([float(e) for e in bucket_edges(f["bounds"])],
                                       np.zeros(len(f["bounds"]) + 1, np.int64),
                                       [0.0, 0.0])  # sums of the positive values and of the negatives' magnitudes
                if set(self._bounds[name]) <= {0.0, 1.0}:
                    self._zero_one.add(name)
            else:
                self._categorical[name] = {**{category_label(str(k)): 0 for k in f["categories"]}, OTHER: 0}
                if is_boolean(f):
                    self._boolean.add(name)
                else:
                    self._numbers[name] = _numbers(f["categories"])
                    # the training data's own text of a NaN (pandas' astype(str) of a missing value, Spark's "NaN"):
                    # a live NaN counts there, as the capture counted it, not as missing (decision 625)
                    nan = next((t for t in NAN_TEXTS if t in f["categories"]), None)
                    if not f.get("missing") and (nan is not None or NONE_TEXT in f["categories"]):
                        # no missing value at all: the training data's were all text ("None", pandas' of a None):
                        # a live None (JSON's null) or NaN counts there too, its own spelling first (decision 632)
                        self._none[name] = category_label(NONE_TEXT if NONE_TEXT in f["categories"] else nan)
                        nan = nan or NONE_TEXT
                    if nan is not None:
                        self._nan[name] = category_label(nan)
        self._registry = registry
        if registry is not None:
            with _REGISTERING:  # the model version's earlier exporter in this registry (its older profile) is replaced
                mine = _REGISTERED.setdefault(registry, {})
                old = mine.get((self.model, self.version))
                if old is not None:
                    _unregister(registry, old)
                registry.register(self)
                mine[(self.model, self.version)] = self

    def close(self) -> None:
        """Stop exporting: unregister from the registry (a model version the server no longer serves; its series
        leave /metrics, and Prometheus marks them stale). A later exporter of the model version replaces this one by
        itself (`__init__`): no close needed before it. Idempotent."""
        registry, self._registry = self._registry, None
        if registry is None:
            return
        with _REGISTERING:
            mine = _REGISTERED.get(registry, {})
            if mine.get((self.model, self.version)) is self:
                del mine[(self.model, self.version)]
            _unregister(registry, self)

    @classmethod
    def from_file(cls, path: str | Path, **kwargs: Any) -> "FeatureExporter":
        """The exporter of the profile in `path`; ConfigError naming the file when it cannot be read, is not
        JSON, or is not a profile (the field named)."""
        from canary.errors import ConfigError

        try:
            from canary.filekind import read_input

            profile = json.loads(read_input(path))  # bounded, a FIFO waited on as every input is (746, 759)
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read the profile: {exc.strerror or exc}") from None
        except (ValueError, UnicodeDecodeError) as exc:
            from canary.filekind import not_json

            raise ConfigError(f"{path}: the profile is not valid JSON: {str(exc)[:160]}{not_json(Path(path))}; "
                              "give the profile `canary baseline capture` wrote") from None
        return cls(profile, where=str(path), **kwargs)

    def observe(self, features: Mapping[str, Any], *, prediction: Any = None) -> None:
        """Count one request's features (and prediction). Features the profile does not know are
        ignored; a profiled feature absent from `features`, None or NaN counts as missing."""
        values = dict(features)
        if self._prediction and prediction is not None:
            values[self._prediction] = prediction
        with self._lock:
            self._observed += 1
            for name, (edges, counts, total) in self._numeric.items():
                v = values.get(name)
                if isinstance(v, (bool, np.bool_)):  # 1/0 of a 0/1 feature, else a type mismatch (decision 543)
                    x = float(v) if name in self._zero_one else None
                else:
                    x = _number(v)
                if x is None:
                    self._missing[name] += 1
                    continue
                # `le` buckets: the first bound >= x, at float32 precision (`profile.bucket_edges`)
                counts[bisect.bisect_left(edges, x)] += 1
                total[0 if x >= 0 else 1] += abs(x)  # each part only grows: a counter
            for name, cats in self._categorical.items():
                v = values.get(name)
                if v is None or (type(v) is not str and _absent(v)):  # text (most values): never absent, no checks
                    if v is None and name in self._none:
                        cats[self._none[name]] += 1
                    elif name in self._nan and isinstance(v, (float, np.floating)):
                        cats[self._nan[name]] += 1
                    else:
                        self._missing[name] += 1
                    continue
                key = boolean_category(v) if name in self._boolean else _category(v)
                if key is None:  # not a boolean's spelling: a value of the wrong type, as text for a number
                    self._missing[name] += 1
                    continue
                label = category_label(key)
                if label not in cats:
                    label = _spelt(v, self._numbers.get(name))
                cats[label] += 1

    def live_counts(self) -> dict[str, dict[str, Any]]:
        """The counts so far in `canary.drift.compare`'s live format (for tests and offline checks)."""
        with self._lock:
            out: dict[str, dict[str, Any]] = {n: {"counts": [int(c) for c in cs], "sum": total[0] - total[1],
                                                  "missing": self._missing[n]}
                                              for n, (_, cs, total) in self._numeric.items()}
            out.update({n: {"categories": {category_of_label(k): v for k, v in cats.items() if k != OTHER},
                            "other": cats[OTHER],
                            "missing": self._missing[n]} for n, cats in self._categorical.items()})
            return out

    def collect(self) -> Any:
        # `role`: "prediction" for the profile's prediction column, "input" for the features; a rollout's
        # feature_drift check compares inputs only (prediction_shift judges the prediction)
        labels = ["model_name", "model_version", "feature", "role"]
        hist = HistogramMetricFamily("model_feature_value", "Live feature values over the training profile's buckets",
                                     labels=labels)
        cats = CounterMetricFamily("model_feature_category", "Live categorical feature values",
                                   labels=[*labels, "category"])
        missing = CounterMetricFamily("model_feature_missing", "Requests with the feature missing", labels=labels)
        signed = CounterMetricFamily("model_feature_value_sum_by_sign",
                                     "Sum of a numeric feature's positive values, and of its negative values' "
                                     "magnitudes (the live mean is their difference over the count)",
                                     labels=[*labels, "sign"])
        summed = CounterMetricFamily("model_feature_value_summed",
                                     "Values in model_feature_value_sum_by_sign (the live mean's count: exported "
                                     "with the sums, so both cover the same pods and time)", labels=labels)
        observed = CounterMetricFamily("model_feature_observations", "Requests observed by the drift exporter",
                                       labels=labels[:2])
        built = InfoMetricFamily("model_feature_profile", "The training profile the drift exporter counts over "
                                 "(profile_hash: canary.drift.profile.profile_hash)", labels=labels[:2])
        built.add_metric([self.model, self.version], {"profile_hash": self.profile_hash})
        role = lambda name: "prediction" if name == self._prediction else "input"  # noqa: E731
        with self._lock:
            for name, (_, counts, total) in self._numeric.items():
                bounds = self._bounds[name]
                cum = np.cumsum(counts)
                buckets = [(_le(b), float(c)) for b, c in zip(bounds, cum[:-1])] + [("+Inf", float(cum[-1]))]
                hist.add_metric([self.model, self.version, name, role(name)], buckets, total[0] - total[1])
                signed.add_metric([self.model, self.version, name, role(name), "positive"], total[0])
                signed.add_metric([self.model, self.version, name, role(name), "negative"], total[1])
                summed.add_metric([self.model, self.version, name, role(name)], float(cum[-1]))
            for name, values in self._categorical.items():
                for key, n in values.items():
                    cats.add_metric([self.model, self.version, name, role(name), key], float(n))
            for name, n in self._missing.items():
                missing.add_metric([self.model, self.version, name, role(name)], float(n))
            observed.add_metric([self.model, self.version], float(self._observed))
        yield from (hist, cats, missing, signed, summed, observed, built)


def series_per_pod(profile: Mapping[str, Any]) -> int:
    """The series the exporter of `profile` adds to each model-server pod's scrape (every family `collect` yields):
    what a Prometheus `sample_limit` on that scrape must leave room for, beside the server's own (decision 626)."""
    return sum(len(family.samples) for family in FeatureExporter(profile, registry=None).collect())


def _unregister(registry: Any, exporter: "FeatureExporter") -> None:
    try:
        registry.unregister(exporter)
    except KeyError:  # unregistered already (by hand)
        pass


def _numbers(categories: Mapping[str, Any]) -> dict[float, str]:
    """The label of each category whose text spells a number (`_NUMBER`: "1", "-2.50", "1e3"; not "1_000" nor
    " 1"), by its number: an int for an integer's text (exact past 2^53), else a float. Two texts of one number
    ("1" and "01"): the one Python spells it with ("1"; "2.5" for a float), else the first listed (the more
    frequent)."""
    out: dict[float, str] = {}
    for text in categories:
        text = str(text)
        if _NUMBER.fullmatch(text):
            try:
                number = int(text) if text.lstrip("+-").isdigit() else float(text)
            except ValueError:  # an integer of over 4,300 digits (Python's limit on text-to-int)
                continue
            if math.isfinite(number) and (number not in out or text == str(number)):
                out[number] = category_label(text)
    return out


def _spelt(v: Any, numbers: Mapping[float, str] | None) -> str:
    """The label of the profile's category of the same number as `v` when `v` is a number (not a boolean) whose
    own text is no category (1.0 where the training data said "1", 1 where they said "1.0"); else OTHER. A
    number's text was its category: a float sent for a code captured as text counted every value under
    "__other__", a drift of the whole feature (decision 540)."""
    if not numbers or isinstance(v, (bool, np.bool_)):
        return OTHER
    if isinstance(v, (int, np.integer)):
        return numbers.get(int(v), OTHER)
    if isinstance(v, (float, np.floating)) and math.isfinite(v):
        return numbers.get(float(v), OTHER)
    return OTHER


NAN_TEXTS = ("nan", "NaN")  # a NaN as text: pandas' and pyarrow's str(), Spark's and Java's
NONE_TEXT = "None"  # a None as text: pandas' astype(str) of an object column


def _absent(v: Any) -> bool:
    """A categorical feature's missing value: None, a NaN of any float type (numpy's float32 and float16 are no
    Python float: a Triton FP32 input's NaN), pandas' NA and NaT, numpy's NaT. Only None and a Python float's NaN
    were: a float32 NaN's text "nan" is no category, so it counted under "__other__", a category the training data
    never had, and the feature read drifted in every window (a retraining for nothing) while its missing rate read
    0 (decision 622)."""
    if v is None:
        return True
    t = type(v)
    if t is float:  # a Python float, an int: np.isnan and the isinstance checks cost ~0.7 us per feature and request
        return math.isnan(v)
    if t is int or t is bool or t is bytes or t is np.bytes_ or t is np.str_:  # a Triton BYTES input's values
        return False
    if isinstance(v, (np.floating, float)):  # numpy's float64 is a float subclass, float32 and float16 are not
        return bool(v != v)  # a NaN only: np.isnan is 8x slower on a numpy scalar
    if isinstance(v, (np.datetime64, np.timedelta64)):
        return bool(np.isnat(v))
    # pandas' missing-value singletons, without importing pandas into the model server
    return t.__module__.startswith("pandas") and t.__name__ in ("NAType", "NaTType")


def _category(v: Any) -> str | None:
    """A value as the profile spells categories: booleans "true"/"false" (Arrow's cast), bytes decoded as UTF-8 (what
    a Triton BYTES/TYPE_STRING input holds: `str(b"Lyon")` is "b'Lyon'", none of the profile's categories, so every
    value counted as `__other__`, a drift of the whole feature; decision 529), else str(); None (counted
    missing) for a value that has no text: an int of over 4,300 digits (Python's limit on int-to-text: ValueError),
    an object whose str() fails. It raised out of `observe`, failing the model server's request (decision 529)."""
    if isinstance(v, (bool, np.bool_)):
        return "true" if v else "false"
    if isinstance(v, (bytes, bytearray)):  # a Triton BYTES tensor's element (np.bytes_ too): its text, not "b'Lyon'"
        return bytes(v).decode("utf-8", errors="replace")
    try:
        return str(v)
    except Exception:  # noqa: BLE001 - a request's value never fails the request it came with
        return None


def _le(bound: float) -> str:
    return repr(float(bound))


def _number(v: Any) -> float | None:
    if v is None or isinstance(v, bool):
        return None
    try:
        x = float(v)
    except (TypeError, ValueError, ArithmeticError):  # an int past a float's range: OverflowError (decision 529)
        return None
    return x if math.isfinite(x) else None
