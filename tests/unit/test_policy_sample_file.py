"""`gates.triton.sample_file` is read within bounds: a regular file, at most `MAX_SAMPLE_BYTES`.

The policy file itself was read within `MAX_BYTES`, but the sample file it names was read whole, by
`load_policy` and again by the gate: `sample_file: /dev/zero` (or a multi-gigabyte file named by mistake)
filled the memory of `canary policy validate`, `plan` and `promote`, and a FIFO held them forever
(decision 670)."""

from __future__ import annotations

import os
import tracemalloc
from pathlib import Path

import pytest
import yaml

from canary.errors import PolicyError
from canary.policy import MAX_SAMPLE_BYTES, load_policy
from tests.unit.test_policy import with_


def policy_naming(tmp_path: Path, sample: str) -> Path:
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(with_(gates={"triton": {"warmup_requests": 4, "sample_file": sample}})))
    return path


def test_a_sample_file_that_is_no_regular_file_is_refused_unread(tmp_path: Path) -> None:
    with pytest.raises(PolicyError) as err:
        load_policy(policy_naming(tmp_path, os.devnull))  # a character device: /dev/zero never ends
    assert err.value.field == "gates.triton.sample_file", str(err.value)
    assert "not a regular file" in err.value.detail, str(err.value)


def test_a_sample_file_past_the_bound_is_refused_unread(tmp_path: Path) -> None:
    big = tmp_path / "samples.json"
    with big.open("wb") as f:
        f.truncate(MAX_SAMPLE_BYTES + 1)  # sparse: nothing written to disk
    policy = policy_naming(tmp_path, "samples.json")
    tracemalloc.start()
    try:
        with pytest.raises(PolicyError) as err:
            load_policy(policy)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert err.value.field == "gates.triton.sample_file", str(err.value)
    assert "too large" in err.value.detail and "samples.json" in err.value.detail, str(err.value)
    assert peak < MAX_SAMPLE_BYTES // 4, peak  # unread: its size refused it, no buffer of its bytes was taken


def test_a_sample_file_within_the_bound_is_read(tmp_path: Path) -> None:
    (tmp_path / "samples.json").write_text('{"requests": [{"x": [[1.0]]}]}')
    assert load_policy(policy_naming(tmp_path, "samples.json")).gates.triton.sample_file == "samples.json"
