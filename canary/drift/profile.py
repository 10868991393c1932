"""The training baseline: a reference profile of features and predictions (issue 12).

`canary baseline capture --model M --version V FILE` reads the training (or
validation) data -- CSV or Parquet, through pyarrow (a maintained reader beats
our own: types, quoting, compression, nulls) -- and writes a profile:

    {"format": 1, "model": M, "version": V, "rows": N,
     "source": {"file": "train.parquet", "sha256": "..."},
     "schema": {"<column>": "<arrow type>"},
     "prediction": "<column>" | null,
     "features": {"<column>": NUMERIC | CATEGORICAL}}

    NUMERIC = {"type": "numeric", "bounds": [b1 < ... < bk], "counts": [k + 1 per-bucket counts, the last
               above bk], "missing": m, "min", "max", "mean", "std", "n_unique", "quantiles": {"0.5": ...}}
    CATEGORICAL = {"type": "categorical", "categories": {"value": count, ...}, "other": count of values
                   beyond the MAX_CATEGORIES most frequent, "missing": m, "n_unique"}

Bounds are chosen per feature at its own quantiles (equal-frequency buckets,
duplicates removed), so every bucket holds data and a live histogram exported
with the same bounds (`canary.drift.exporter`) compares bucket for bucket.
The prediction column is profiled like a feature. Every problem is a
ConfigError naming the file and the column.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from canary.errors import ConfigError

FORMAT = 1
MAX_CATEGORIES = 100
QUANTILES = (0.001, 0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99, 0.999)
FEW_VALUES = 6  # numeric features with fewer distinct values get a bucket per value
# A value equal to a bucket bound at float32 precision counts in that bound's bucket: training data are
# float64 (pandas, Parquet), while a model server often holds its inputs as float32 (Triton's FP32 tensors),
# and float32(0.1) is 0.10000000149 > 0.1. Counted exactly, every live 0.1, 0.2, 0.3 of a feature whose
# bounds are those values (a rate with a few values: a bucket per value) moved to the bucket above, one
# the training data left empty: a Jensen-Shannon distance of 0.4 on unchanged traffic, drift in every
# window and a retraining Job. One float32 step (2^-23, relative) above a bound still counts as the bound;
# on both sides (`bucket_edges`: the capture and the exporter), so a profile and its exporter agree
BOUND_RTOL = 2.0 ** -23


def bucket_edges(bounds: Any) -> np.ndarray:
    """The upper edge of each `le` bucket: its bound plus one float32 step (BOUND_RTOL, relative). A value
    x is in the first bucket whose edge is >= x (`np.searchsorted(edges, x, side="left")`). Increasing
    where the bounds are (b + |b| t is increasing in b for t < 1). An edge stops short of the next bound: above
    2^23 a float32 step is more than 1, and an integer feature's 20261202 counted as its bound 20261201 (both
    sides alike, so a move from one value to the next was no drift)."""
    b = np.asarray(bounds, float)
    edges = b + np.abs(b) * BOUND_RTOL
    if len(b) > 1:
        edges[:-1] = np.maximum(b[:-1], np.minimum(edges[:-1], np.nextafter(b[1:], -np.inf)))
    return edges


def read_table(path: str | Path) -> Any:
    """A pyarrow Table from a .csv or .parquet file. ConfigError naming the file on any problem."""
    path = Path(path)
    try:
        import pyarrow.csv as pacsv
        import pyarrow.parquet as pq
    except ImportError:  # pragma: no cover - the drift extra is part of the test install
        raise ConfigError("reading training data needs pyarrow: pip install 'modelcanary[drift]'") from None
    import pyarrow as pa

    if not path.is_file():  # a directory, a FIFO or a device exists: "no such file" sent the person looking for it
        raise ConfigError(f"{path}: no such file" if not path.exists() else
                          f"{path}: not a regular file (a directory, a FIFO or a device): give the training table, "
                          ".csv or .parquet")
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            table = pacsv.read_csv(path)
        elif suffix in (".parquet", ".pq"):
            table = pq.read_table(path)
        else:
            raise ConfigError(f"{path}: unknown format {suffix or '(no suffix)'}: use .csv or .parquet")
    except (pa.ArrowInvalid, pa.ArrowTypeError, OSError) as exc:
        raise ConfigError(f"{path}: cannot read: {str(exc).splitlines()[0][:200]}") from None
    if table.num_rows == 0:
        raise ConfigError(f"{path}: no rows (an empty file cannot be a baseline)")
    return table


PROFILE_HASH_CHARS = 16


def profile_hash(profile: Mapping[str, Any]) -> str:
    """The first PROFILE_HASH_CHARS hex digits of the SHA-256 of the profile's content: its JSON with keys
    sorted, no spaces and integral numbers as ints (`_canonical`: 20.0 and 20 are one bound), leaving out the
    top-level keys starting with "_" (what a baseline ConfigMap's annotations add when the watcher reads it:
    `_namespace`, `_window_s`, ...). The same profile hashes the same in the model server's exporter (`model_feature_profile_info`) and in the watcher, whatever the
    file's formatting; a re-capture (other rows, other counts) hashes differently even over the same bounds."""
    content = {k: _canonical(v) for k, v in profile.items() if not str(k).startswith("_")}
    text = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:PROFILE_HASH_CHARS]


def _canonical(v: Any) -> Any:
    """`v` with every number written one way: an integral number as an int (the bound 20.0 and 20 are one
    number; a JSON tool that keeps numbers as doubles, jq 1.6, Go, JavaScript, writes 20.0 as "20"), any other
    as a Python float (whose JSON is the shortest text that reads back the same double); numpy numbers as
    Python's; booleans stay booleans. Keys become strings, as JSON's are."""
    if isinstance(v, Mapping):
        return {str(k): _canonical(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_canonical(x) for x in v]
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        f = float(v)
        return int(f) if f.is_integer() else f
    return v


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def capture(table: Any, *, model: str, version: str, file: str, sha256: str, prediction: str | None = None,
            features: list[str] | None = None, buckets: int = 20,
            bounds_from: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The profile of `table` (see the module docstring). `features`: the columns to profile
    (default: every column but the prediction's); each must exist. `bounds_from`: another
    version's profile whose numeric bounds (and categories, first) this one reuses for the
    features of the same type, so that the two versions' exporters count over the same buckets
    and a rollout's `feature_drift` check compares them bucket for bucket. ConfigError names the
    file and column of every problem: a missing column, one whose values are all missing, one
    mixing numbers and text."""
    if buckets < 2 or buckets > 200:
        raise ConfigError(f"buckets must be from 2 to 200, got {buckets}")
    names = list(table.column_names)
    dup = sorted({c for c in names if names.count(c) > 1})
    if dup:
        raise ConfigError(f"{file}: column {dup[0]!r} appears {names.count(dup[0])} times; a baseline needs "
                          f"unique column names")
    wanted = features if features is not None else [c for c in names if c != prediction]
    missing = [c for c in [*wanted, *([prediction] if prediction else [])] if c not in names]
    if missing:
        raise ConfigError(f"{file}: no column {missing[0]!r} (columns: {', '.join(names)})")
    if not wanted:
        raise ConfigError(f"{file}: no feature columns to profile")
    out: dict[str, Any] = {}
    for col in [*wanted, *([prediction] if prediction and prediction not in wanted else [])]:
        like = (bounds_from or {}).get("features", {}).get(col)
        out[col] = profile_column(table.column(col), name=col, file=file, buckets=buckets, like=like)
    return {"format": FORMAT, "model": model, "version": version, "rows": int(table.num_rows),
            "source": {"file": Path(file).name, "sha256": sha256},
            "schema": {c: str(table.schema.field(c).type) for c in names},
            "prediction": prediction, "features": out}


END_BUCKET_SHARE = 0.05  # reused bounds must leave at most this share of the values in an open end bucket


def _bounds_cover(x: np.ndarray, bounds: np.ndarray, *, name: str, file: str) -> None:
    """ConfigError when another version's bounds (`--bounds-from`) do not cover this data: more than
    END_BUCKET_SHARE of its values below the first bound or above the last (in a bucket open on one
    side; a feature's own bounds leave 0.5% at each end). A change out there (a new scale, a spread
    that triples) is invisible to every test over the buckets, so a profile built so would hide
    drift: refused, naming the feature."""
    for share, where in ((float(np.mean(x < bounds[0])), f"below the first bound {bounds[0]:g}"),
                         (float(np.mean(x > bounds[-1])), f"above the last bound {bounds[-1]:g}")):
        if share > END_BUCKET_SHARE:
            raise ConfigError(f"{file}: column {name!r}: {share:.0%} of its values fall {where} of --bounds-from's "
                              f"buckets (at most {END_BUCKET_SHARE:.0%} may; this data runs from {x.min():g} to "
                              f"{x.max():g}): those bounds do not cover it and would hide its drift. Capture "
                              f"without --bounds-from, or leave the column out with --features")


def profile_column(values: Any, *, name: str, file: str, buckets: int = 20,
                   like: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """One column's profile. Numeric arrow types -> NUMERIC; strings, booleans, dictionaries ->
    CATEGORICAL, except a text column whose values are partly numbers (mixed types: an error).
    `like`: the same feature's profile in another version; of the same type, its bounds (numeric)
    or its categories (listed first) are reused."""
    import pyarrow as pa
    import pyarrow.compute as pc

    n_missing = int(values.null_count)
    present = pc.drop_null(values)
    if len(present) == 0:
        raise ConfigError(f"{file}: column {name!r}: all {len(values):,} values are missing")
    t = values.type
    if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t):
        x = np.asarray(present.cast(pa.float64()).to_numpy(zero_copy_only=False), float)
        bad = ~np.isfinite(x)
        if bad.any():
            raise ConfigError(f"{file}: column {name!r}: {int(bad.sum()):,} values are NaN or infinite")
        reused = like["bounds"] if like and like.get("type") == "numeric" else None
        if reused is not None:
            _bounds_cover(x, np.asarray(reused, float), name=name, file=file)
        return _numeric(x, n_missing, buckets, bounds=reused)
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_dictionary(t) or pa.types.is_boolean(t):
        texts = [str(v) for v in present.cast(pa.string()).to_pylist()]
        numeric = [_is_number(v) for v in texts]
        if pa.types.is_boolean(t):  # "true"/"false", as the exporter spells them
            texts = ["true" if v else "false" for v in present.to_pylist()]
        elif texts and {v.strip().lower() for v in set(texts)} <= set(BOOLEAN_CATEGORIES):
            texts = [v.strip().lower() for v in texts]  # "True"/"FALSE" as text: a boolean, spelled as live ones are
        elif any(numeric) and not all(numeric) and 2 * sum(numeric) >= len(numeric):
            row = next(i for i, v in enumerate(texts) if not numeric[i])
            num = next(v for i, v in enumerate(texts) if numeric[i])
            raise ConfigError(f"{file}: column {name!r} mixes numbers ({num!r}) and text ({texts[row]!r}); "
                              f"clean it or cast it before capturing a baseline")
        if not (like and like.get("type") == "categorical"):
            return _categorical(texts, n_missing)
        out = _categorical(texts, n_missing, first=list(like["categories"]))
        hidden = (out["other"] - _categorical(texts, n_missing)["other"]) / len(texts)
        if hidden > END_BUCKET_SHARE:  # the reused categories crowd this data's own out of the profile
            raise ConfigError(f"{file}: column {name!r}: with --bounds-from's {len(like['categories'])} categories "
                              f"first, {hidden:.0%} more of its values fall under \"other\" than with its own (at "
                              f"most {END_BUCKET_SHARE:.0%} may): a change among them would be invisible. Capture "
                              f"without --bounds-from, or leave the column out with --features")
        return out
    raise ConfigError(f"{file}: column {name!r}: type {t} is neither numeric nor categorical; leave it out "
                      f"with --features, or cast it")


BOOLEAN_CATEGORIES = ("false", "true")


def boolean_category(v: Any) -> str | None:
    """A boolean's category, "true" or "false", from any of its usual spellings: a bool, the numbers 1
    and 0, the texts true/false (any case) and "1"/"0" (pyarrow's CSV reader's spellings), as text or as
    UTF-8 bytes. None for anything else: for a boolean feature that is a value of the wrong type, counted
    as missing (as text sent for a number is), never a new category that reads as drift."""
    if isinstance(v, (bool, np.bool_)):
        return "true" if v else "false"
    if isinstance(v, (bytes, bytearray)):  # a Triton BYTES input's element: b"true" is the text "true"
        v = bytes(v).decode("utf-8", errors="replace")
    if isinstance(v, (int, float, np.integer, np.floating)):
        return "true" if v == 1 else "false" if v == 0 else None
    if isinstance(v, str):
        t = v.strip().lower()
        return "true" if t in ("true", "1") else "false" if t in ("false", "0") else None
    return None


def is_boolean(f: Mapping[str, Any]) -> bool:
    """A categorical profile entry of a boolean feature: its categories are "true" and/or "false"."""
    cats = f.get("categories")
    return (f.get("type") == "categorical" and isinstance(cats, Mapping) and bool(cats)
            and set(cats) <= set(BOOLEAN_CATEGORIES) and not f.get("other"))


def _is_number(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


def bucket_levels(buckets: int) -> np.ndarray:
    """The quantile levels of a numeric feature's bounds: `buckets - 1` evenly spaced ones plus finer
    ones in both tails (0.5%, 1%, 2.5% and their mirrors), so a tail shift shows, and the end buckets
    the Wasserstein distance must close are small."""
    even = np.arange(1, buckets) / buckets
    return np.unique(np.concatenate([even, [0.005, 0.01, 0.025, 0.975, 0.99, 0.995]]))


def _numeric(x: np.ndarray, n_missing: int, buckets: int, bounds: Any = None) -> dict[str, Any]:
    values = np.unique(x)
    if bounds is not None:
        bounds = np.asarray(bounds, float)
    elif len(values) < FEW_VALUES:  # a bucket per value: compared value by value, as categories are
        bounds = values
    else:
        bounds = np.unique(np.quantile(x, bucket_levels(buckets)))
    # `le` buckets, a value equal to a bound at float32 precision in that bound's (`bucket_edges`)
    counts = np.bincount(np.searchsorted(bucket_edges(bounds), x, side="left"), minlength=len(bounds) + 1)
    return {"type": "numeric", "bounds": [float(b) for b in bounds], "counts": [int(c) for c in counts],
            "missing": n_missing, "min": float(x.min()), "max": float(x.max()), "mean": float(x.mean()),
            "std": float(x.std(ddof=1)) if len(x) > 1 else 0.0, "n_unique": int(len(values)),
            "quantiles": {f"{q:g}": float(v) for q, v in zip(QUANTILES, np.quantile(x, QUANTILES))}}


def _categorical(texts: list[str], n_missing: int, first: Any = ()) -> dict[str, Any]:
    values, counts = np.unique(np.asarray(texts, dtype=object), return_counts=True)
    seen = {str(v): int(c) for v, c in zip(values, counts)}
    order = np.argsort(-counts, kind="stable")
    keep = list(dict.fromkeys([*(str(k) for k in first), *(str(values[i]) for i in order)]))[:MAX_CATEGORIES]
    cats = {k: seen.get(k, 0) for k in keep}
    return {"type": "categorical", "categories": cats, "other": int(len(texts) - sum(cats.values())),
            "missing": n_missing, "n_unique": int(len(values))}
