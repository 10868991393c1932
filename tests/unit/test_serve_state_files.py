"""`canary serve --state-dir`'s files are read bounded, never by a blocking open (decision 833).

A FIFO (or a device, a directory) put in the state directory under a state file's name held the call that read it
at its open, and every call of that revision after it (the read holds the revision's lock); the prune, every round
after it. These tests time out without the fix.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from canary.serve_session import new_session
from canary.serve_store import SessionStore, StoreError

T0 = 1_000_000.0


def _session(name: str, now: float = T0) -> object:
    return new_session(key=f"argo/ml/{name}", revision="v2", policy="ml", model=name, namespace="ml",
                       stable_version="v1", canary_version="v2", now=now)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("kind", ["fifo", "directory", "too large", "not UTF-8"])
def test_a_state_file_that_is_no_bounded_utf8_file_is_a_store_error_naming_it(tmp_path: Path, kind: str) -> None:
    store = SessionStore(tmp_path)
    p = store.path("argo/ml/a", "v2")
    if kind == "fifo":
        os.mkfifo(p)
    elif kind == "directory":
        p.mkdir()
    elif kind == "too large":
        with open(p, "wb") as f:
            f.truncate((16 << 20) + 1)
    else:
        p.write_bytes(b'{"key": "\xff"}')
    with pytest.raises(StoreError) as err:
        store.load("argo/ml/a", "v2")
    why = {"fifo": "not a regular file", "directory": "Is a directory", "too large": "too large: more than 16 MiB",
           "not UTF-8": "can't decode byte 0xff"}[kind]
    assert str(err.value).startswith(f"{p}: cannot read the stored state of argo/ml/a revision v2: "), err.value
    assert why in str(err.value), err.value


@pytest.mark.timeout(30)
def test_the_prune_and_the_revisions_files_pass_over_a_fifo(tmp_path: Path) -> None:
    store = SessionStore(tmp_path)
    store.save(_session("old"))  # type: ignore[arg-type]
    os.mkfifo(tmp_path / "zz-fifo.json")
    os.mkfifo(store.current.path("argo/ml/b"))
    os.utime(store.path("argo/ml/old", "v2"), (T0, T0))
    assert store.prune(older_than_s=60, now=T0 + 3600, host_now=T0 + 3600) == 1  # the FIFO kept, not waited on
    assert store.others_called("argo/ml/b", "v1", T0) == {}  # a FIFO revisions file is read as none, rewritten
    assert store.others_called("argo/ml/b", "v2", T0 + 1) == {"v1": T0}
