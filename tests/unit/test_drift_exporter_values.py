"""The drift exporter never fails the request it counts (decision 529).

`FeatureExporter.observe` runs in the model server's request path, once per request. An int past a float's range
for a numeric feature (`float(10**400)`: OverflowError) or of over 4,300 digits for a categorical one (`str()`:
ValueError, Python's limit) raised out of it: the request failed, and the features counted before the bad one were
counted while the rest were not. Such a value counts as missing, as text sent for a number does.
"""

from __future__ import annotations

import numpy as np

from canary.drift.exporter import FeatureExporter
from canary.drift.profile import capture


def test_a_value_with_no_float_or_text_counts_as_missing_and_never_fails_the_request() -> None:
    import pyarrow as pa

    rng = np.random.default_rng(3)
    prof = capture(pa.table({"age": rng.normal(40, 10, 500), "city": rng.choice(["a", "b"], 500).tolist()}),
                   model="rec", version="v1", file="t.parquet", sha256="0" * 64)
    e = FeatureExporter(prof, registry=None)
    e.observe({"age": 10**400, "city": "a"})
    e.observe({"age": 41.0, "city": 10**5000})
    e.observe({"age": 42.0, "city": "b"})
    got = e.live_counts()
    assert sum(got["age"]["counts"]) == 2 and got["age"]["missing"] == 1
    assert got["city"]["categories"] == {"a": 1, "b": 1} and got["city"]["other"] == 0 and got["city"]["missing"] == 1


def test_a_triton_bytes_input_counts_under_its_text() -> None:
    """A Triton BYTES (TYPE_STRING) input reaches the model server as bytes (`as_numpy()`: np.bytes_ or bytes in an
    object array): `str(b"Lyon")` is "b'Lyon'", none of the profile's categories, so every value counted as
    `__other__` and the feature read drifted in every window, a retraining for nothing; a boolean's b"true" counted
    missing. Bytes count under their UTF-8 text (decision 529)."""
    import pyarrow as pa

    prof = capture(pa.table({"city": ["Lyon", "Paris"] * 100, "vip": [True, False] * 100}), model="rec",
                   version="v1", file="t.parquet", sha256="0" * 64)
    e = FeatureExporter(prof, registry=None)
    for city, vip in ((b"Lyon", b"true"), (np.bytes_(b"Paris"), b"0"), (bytearray(b"Lyon"), np.bytes_(b"FALSE"))):
        e.observe({"city": city, "vip": vip})
    got = e.live_counts()
    assert got["city"]["categories"] == {"Lyon": 2, "Paris": 1} and got["city"]["other"] == 0
    assert got["vip"]["categories"] == {"true": 1, "false": 2} and got["vip"]["missing"] == 0


def test_a_float32_nan_of_a_categorical_feature_counts_as_missing_not_as_a_new_category() -> None:
    """A category code sent as a Triton FP32 input (the training data's "1", "2", "3" as text) reaches the model
    server as np.float32, and its missing values as np.float32 NaN, which is no Python float: "nan" counted under
    `__other__`, a category the training never had, so a feature unchanged but for its 10% missing read drifted in
    every window (Jensen-Shannon 0.19, a retraining Job for nothing) and its missing rate read 0 (decision 622)."""
    import pyarrow as pa

    from canary.drift.compare import compare

    rng = np.random.default_rng(5)
    codes = [None if i % 10 == 0 else c for i, c in enumerate(rng.choice(["1", "2", "3"], 5000).tolist())]
    prof = capture(pa.table({"store": pa.array(codes, pa.string())}), model="rec", version="v1", file="t.parquet",
                   sha256="0" * 64)
    e = FeatureExporter(prof, registry=None)
    live = rng.choice([1, 2, 3], 5000).astype(np.float32)
    live[::10] = np.nan
    for v in live:
        e.observe({"store": v})
    for v in (np.float16("nan"), np.datetime64("NaT")):  # any NaN or NaT is a missing value too
        e.observe({"store": v})
    got = e.live_counts()["store"]
    assert got["other"] == 0 and got["missing"] == 502
    result = compare(prof, {"store": got})
    assert not result.drifted and not result.more_missing()


def test_a_nan_counts_under_the_category_the_training_data_spelt_it_as() -> None:
    """Training data whose missing values were turned into the text "nan" (pandas' `astype(str)`) hold "nan" as a
    category. A live NaN (a Python float's or a float32's) counted as missing: the category emptied live and the
    feature read drifted, a retraining for nothing, beside a false MORE MISSING. It counts under "nan", as the
    capture counted it (decision 625); with no such category, it is missing (decision 622)."""
    import pyarrow as pa

    from canary.drift.compare import compare

    rng = np.random.default_rng(7)
    texts = rng.choice(["a", "b", "nan"], 3000, p=[0.45, 0.45, 0.1]).tolist()
    prof = capture(pa.table({"city": pa.array(texts, pa.string())}), model="rec", version="v1", file="t.parquet",
                   sha256="0" * 64)
    assert "nan" in prof["features"]["city"]["categories"] and not prof["features"]["city"]["missing"]
    e = FeatureExporter(prof, registry=None)
    for i, c in enumerate(rng.choice(["a", "b", "nan"], 3000, p=[0.45, 0.45, 0.1]).tolist()):
        e.observe({"city": (float("nan") if i % 2 else np.float32("nan")) if c == "nan" else c})
    got = e.live_counts()["city"]
    assert got["missing"] == 0 and got["other"] == 0 and got["categories"]["nan"] > 250
    result = compare(prof, {"city": got})
    assert not result.drifted and not result.more_missing()


def test_a_none_counts_under_the_category_the_training_data_spelt_its_missing_values_as() -> None:
    """pandas' `astype(str)` spells a missing None "None" (and a NaN "nan"); a profile so captured holds the text as
    a category and no missing value. A live None (JSON's null: a JSON request carries no NaN) counted as missing, so
    the category emptied live: drifted in every window beside a false MORE MISSING, the case decision 625 fixed for
    a NaN only. Where the profile has no missing value at all, a live None or NaN counts under its text, "None"
    first for a None, "nan" first for a NaN (decision 632); where the training data had missing values too, a None
    stays missing."""
    import pyarrow as pa

    from canary.drift.compare import compare

    rng = np.random.default_rng(8)
    for text in ("None", "nan"):
        texts = rng.choice(["a", "b", text], 3000, p=[0.45, 0.45, 0.1]).tolist()
        prof = capture(pa.table({"city": pa.array(texts, pa.string())}), model="rec", version="v1", file="t.parquet",
                       sha256="0" * 64)
        assert text in prof["features"]["city"]["categories"] and not prof["features"]["city"]["missing"]
        e = FeatureExporter(prof, registry=None)
        for i, c in enumerate(rng.choice(["a", "b", "-"], 3000, p=[0.45, 0.45, 0.1]).tolist()):
            e.observe({"city": (None if i % 2 else float("nan")) if c == "-" else c})
        got = e.live_counts()["city"]
        assert got["missing"] == 0 and got["other"] == 0 and got["categories"][text] > 250, (text, got)
        result = compare(prof, {"city": got})
        assert not result.drifted and not result.more_missing(), text
    both = capture(pa.table({"city": pa.array(["a", "None", "nan", "b"] * 100, pa.string())}), model="rec",
                   version="v1", file="t.parquet", sha256="0" * 64)
    e = FeatureExporter(both, registry=None)
    e.observe({"city": None})
    e.observe({"city": np.float32("nan")})
    assert e.live_counts()["city"]["categories"] == {"a": 0, "b": 0, "None": 1, "nan": 1}
    real = capture(pa.table({"city": pa.array(["a", "None", None, "b"] * 100, pa.string())}), model="rec",
                   version="v1", file="t.parquet", sha256="0" * 64)  # real missing values beside the text
    e = FeatureExporter(real, registry=None)
    e.observe({"city": None})
    assert e.live_counts()["city"]["missing"] == 1
