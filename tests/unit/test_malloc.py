"""canary/malloc.py: freed heap pages go back to the OS, rate-limited, never raising."""

from __future__ import annotations

import threading

import pytest

from canary import malloc


@pytest.mark.skipif(not malloc.available(), reason="not glibc: trim is a no-op")
def test_trims_at_most_once_per_interval_whichever_thread_asks() -> None:
    assert malloc.trim(min_interval_s=0.0) is True
    results: list[bool] = []
    threads = [threading.Thread(target=lambda: results.append(malloc.trim(min_interval_s=3600.0))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [False] * 8  # trimmed a moment ago: no thread trims again within the interval
    assert malloc.trim(min_interval_s=3600.0) is False


def test_without_malloc_trim_it_is_a_no_op(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(malloc, "_trim", None)
    assert malloc.available() is False and malloc.trim(min_interval_s=0.0) is False


def test_a_failing_trim_never_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(_: int) -> int:
        raise OSError("no")
    monkeypatch.setattr(malloc, "_trim", boom)
    assert malloc.trim(min_interval_s=0.0) is False
