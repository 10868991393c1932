"""The sandbox's reads and tools that nothing retries get hang guards, not speed bounds (decision 804): a loaded
CI host failed a sandbox's start on the watcher's 2 s first read, and a test module's setup on promtool's 60 s."""
from __future__ import annotations

import subprocess
from typing import Any

from canary.sandbox import promserver
from canary.sandbox.watcher import RESYNC_TIMEOUT_S, Watcher


def test_the_watchers_first_read_of_the_route_waits_a_loaded_api_out() -> None:
    asked: list[float] = []

    class Api:
        def get_namespaced_custom_object(self, *args: Any, _request_timeout: float) -> dict[str, Any]:
            asked.append(_request_timeout)
            return {"metadata": {"resourceVersion": "1"}, "spec": {}}

    class HAProxy:
        def set_weights(self, weights: dict[str, int]) -> None:
            pass

    w = Watcher(None, HAProxy(), namespace="ml", name="m", servers={"stable": "127.0.0.1:1"})  # type: ignore[arg-type]
    w.api = Api()
    w.resync()
    assert asked == [RESYNC_TIMEOUT_S, RESYNC_TIMEOUT_S] and RESYNC_TIMEOUT_S >= 60.0


def test_promtools_backfill_gets_minutes_whatever_the_history(monkeypatch: Any, tmp_path: Any) -> None:
    given: list[float] = []

    def run(*args: Any, timeout: float, **kw: Any) -> subprocess.CompletedProcess[str]:
        given.append(timeout)
        return subprocess.CompletedProcess(args, 0, "", "")

    monkeypatch.setattr(promserver.subprocess, "run", run)
    promserver.backfill(tmp_path / "small", "# EOF\n", promtool="/bin/true")
    promserver.backfill(tmp_path / "big", "x" * 150_000_000, promtool="/bin/true")
    assert given[0] >= 600.0 and given[1] >= 750.0, given  # 150 MB: at 200 kB/s at least
