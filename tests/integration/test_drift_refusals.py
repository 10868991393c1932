"""A Prometheus (or a Prometheus-compatible API) that answers a trivial query and fails the drift queries, each way
it can (decision 160): `drift check` and `drift watch --once` exit 3, nothing measured, with Prometheus's own words
and what to do; never exit 0 ("no drift"), 1 ("drift") or 2 (`drift.bad_live_data`, a setup fault). The server is a
scripted HTTP peer on 127.0.0.1 (a real Prometheus refusing too many samples is in test_drift_unmeasured.py)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from canary.cli import app
from canary.drift.profile import capture
from tests.support.http import ScriptedHTTP

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

UP = json.dumps({"status": "success", "data": {"resultType": "vector", "result": [{"metric": {}, "value": [1, "1"]}]}})


def _error(kind: str, error: str) -> str:
    return json.dumps({"status": "error", "errorType": kind, "error": error})


CASES = {  # name: (status, body, what the error must say)
    "bad query": (400, _error("bad_data", 'invalid parameter "query": 1:50: parse error: unexpected "and"'),
                  ["HTTP 400 bad_data: invalid parameter", "cannot run the query canary built"]),
    "query timeout": (503, _error("timeout", "query timed out in expression evaluation"),
                      ["HTTP 503 timeout: query timed out in expression evaluation", "a shorter --window"]),
    "internal error": (500, _error("internal", "read chunk: input/output error"),
                       ["HTTP 500 internal: read chunk: input/output error", "its own log says more"]),
    "partial": (200, json.dumps({"status": "success", "warnings": ["partial response: store-gateway-2 unreachable"],
                                 "data": {"resultType": "vector", "result": []}}),
                ["store-gateway-2 unreachable", "answered in part"]),
    "no answer": (0, "", ["timed out", "a shorter --window"]),
}


@pytest.fixture()
def profile_file(tmp_path: Any) -> Any:
    import pyarrow as pa

    rng = np.random.default_rng(160)
    path = tmp_path / "p.json"
    path.write_text(json.dumps(capture(pa.table({"a": rng.normal(0, 1, 2_000)}), model="rec", version="v1",
                                       file="t.parquet", sha256="0" * 64)))
    return path


@pytest.fixture()
def failing(request: pytest.FixtureRequest) -> Iterator[tuple[str, list[str]]]:
    status, body, says = CASES[request.param]
    released = threading.Event()

    def answer(path: str, headers: dict[str, str]) -> tuple[int, str, str]:
        if "vector%281%29" in path:  # Prometheus itself answers
            return 200, "application/json", UP
        if status == 0:  # accepts and never answers (until the test ends): the client's timeout
            released.wait(60)
        return status or 200, "application/json", body

    server = ScriptedHTTP(answer)
    try:
        yield server.url, says
    finally:
        released.set()
        server.close()


@pytest.mark.parametrize("failing", list(CASES), indirect=True)
def test_every_way_prometheus_fails_the_drift_queries_is_unmeasured_with_a_remedy(
        failing: tuple[str, list[str]], profile_file: Any, tmp_path: Any) -> None:
    url, says = failing
    env = {"COLUMNS": "400"}
    check = CliRunner().invoke(app, ["drift", "check", "--baseline", str(profile_file), "--prometheus-url", url],
                               env=env)
    assert check.exit_code == 3, check.output
    text = " ".join(check.output.split())
    assert all(s in text for s in says), text
    assert "no dataset drift" not in text and "not drift" in text, text
    watch = CliRunner().invoke(app, ["drift", "watch", "--baseline", str(profile_file), "--prometheus-url", url,
                                     "--no-kube", "--once", "--state-file", str(tmp_path / "s.json"), "-o", "json"],
                               env=env)
    assert watch.exit_code == 3, watch.output
    logs = [json.loads(line) for line in watch.stderr.splitlines() if line.startswith("{")]
    events = [e["event"] for e in logs if e["event"].startswith("drift.")]
    assert events == ["drift.unmeasured"], events  # not bad_live_data (a setup fault), not prometheus_unavailable
    (ev,) = [e for e in logs if e["event"] == "drift.unmeasured"]
    assert all(s in ev["error"] for s in says), ev["error"]


def test_baselines_refused_for_one_cause_are_one_line(tmp_path: Any) -> None:
    """Two baselines whose live-data query Prometheus refuses alike (422, too many samples): one `drift.unmeasured`
    line naming both, one cause (decision 384). The refusal's remedy now comes before the query it quotes (an
    addendum to 623), and the cause was read as the text's last words: the query, which names each model, so each
    baseline was a line of its own."""
    import pyarrow as pa

    paths = []
    for model in ("rec", "ads"):
        path = tmp_path / f"{model}.json"
        path.write_text(json.dumps(capture(pa.table({"a": np.arange(2_000.0)}), model=model, version="v1",
                                           file="t.parquet", sha256="0" * 64)))
        paths += ["--baseline", str(path)]
    body = _error("execution", "query processing would load too many samples into memory in query execution")
    server = ScriptedHTTP(lambda path, headers: (200, "application/json", UP) if "vector%281%29" in path
                          else (422, "application/json", body))
    try:
        watch = CliRunner().invoke(app, ["drift", "watch", *paths, "--prometheus-url", server.url, "--no-kube",
                                         "--once", "--state-file", str(tmp_path / "s.json"), "-o", "json"])
    finally:
        server.close()
    assert watch.exit_code == 3, watch.output
    logs = [json.loads(line) for line in watch.stderr.splitlines() if line.startswith("{")]
    said = [e for e in logs if e["event"] == "drift.unmeasured"]
    assert len(said) == 1 and said[0]["baselines"] == 2, said
    assert "a shorter --window" in said[0]["message"], said

