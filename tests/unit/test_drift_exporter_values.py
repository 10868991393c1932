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
