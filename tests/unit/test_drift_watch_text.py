"""`drift watch --once`'s text line when nothing was compared (nineteenth session, decision 322).

With Prometheus down it read `rec v1: NOT MEASURED (none) (episode 0), drifted share - [none]`: "(none)" said
nothing a reader could use, and "[none]", the list of drifted features, read as a clean pass on a pass that
measured no feature at all (exit 3). The line now names what was missing and lists no drifted features."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from canary.cli import app
from canary.drift.profile import capture


def test_a_pass_that_compared_nothing_says_so_and_lists_no_drifted_features(tmp_path: Path) -> None:
    import pyarrow as pa

    ages = np.random.default_rng(5).normal(40, 10, 1_500)
    path = tmp_path / "p.json"
    path.write_text(json.dumps(capture(pa.table({"age": ages}), model="rec", version="v1", file="t.parquet",
                                       sha256="0" * 64)))
    with socket.socket() as s:  # a port nothing listens on: connection refused, at once
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}"
    r = CliRunner().invoke(app, ["drift", "watch", "--baseline", str(path), "--prometheus-url", url,
                                 "--no-kube", "--once", "--state-file", str(tmp_path / "s.json")])
    assert r.exit_code == 3, (r.exit_code, r.output)
    [line] = [x for x in r.output.splitlines() if x.startswith("rec v1: ")]
    assert line.startswith("rec v1: NOT MEASURED (no feature compared) (episode 0), drifted share -;"), line
    assert "[none]" not in line and "(none)" not in line, line
