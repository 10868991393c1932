"""A real Prometheus on loopback, for the sandbox and integration tests.

Tests that fake Prometheus's HTTP answers would miss what matters most:
`increase()` extrapolation, `le` label formatting, empty vs NaN answers, PromQL
parsing of escaped label values. So we run Debian's `prometheus` binary by
hand -- never its systemd unit or /etc/default/prometheus -- on 127.0.0.1
with a private config and data dir, and stop it by PID.

Deterministic history comes from `promtool tsdb create-blocks-from
openmetrics`, written into the data dir before start (`history=` or
`backfill()`). Counters here grow linearly, so `increase()` over any window
inside the history is exact even with extrapolation, and tests can assert
known numbers. For queries "at now" the history must extend past now (the
helpers default to now-30m .. now+5m); or query with an explicit time.

Live scraping also works (`targets=`); the first scrape lands about 6 s after
start (Prometheus's fixed service-discovery delay).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import yaml

from canary.metrics.queries import escape
from canary.sandbox.ports import free_port


class PromServerError(RuntimeError):
    """Prometheus or promtool could not be started or run."""


def find_binary(name: str) -> str | None:
    """Path of `prometheus`/`promtool` on PATH or in /usr/bin, else None."""
    return shutil.which(name) or shutil.which(name, path="/usr/bin:/usr/local/bin")


def backfill(data_dir: str | Path, openmetrics_text: str, *, promtool: str | None = None) -> None:
    """Write OpenMetrics history as TSDB blocks into `data_dir` (before Prometheus starts)."""
    tool = promtool or find_binary("promtool")
    if not tool:
        raise PromServerError("promtool not found (Debian: apt-get install prometheus)")
    Path(data_dir).mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", suffix=".om", delete=False, encoding="utf-8") as f:
        f.write(openmetrics_text if openmetrics_text.endswith("# EOF\n") else openmetrics_text + "# EOF\n")
        path = f.name
    try:
        proc = subprocess.run(
            [tool, "tsdb", "create-blocks-from", "openmetrics", path, str(data_dir)],
            # a hang guard, not a speed bound: 60 s (>= 2 MB/s) was run out by a 143 MB history on a loaded host,
            # which failed a test module's setup (decision 804)
            capture_output=True, text=True, timeout=max(600.0, len(openmetrics_text) / 2e5),  # >= 200 kB/s
        )
    finally:
        Path(path).unlink(missing_ok=True)
    if proc.returncode != 0:
        raise PromServerError(f"promtool backfill failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")



class PromServer:
    """Context manager running one private Prometheus on 127.0.0.1:<free port>."""

    def __init__(
        self,
        *,
        targets: Sequence[str] = (),
        labelled: Sequence[tuple[Mapping[str, str], Sequence[str]]] = (),
        scrape_interval: str = "1s",
        data_dir: str | Path | None = None,
        port: int | None = None,
        history: str | None = None,
        binary: str | None = None,
        extra_args: Sequence[str] = (),
    ) -> None:
        self.targets = list(targets)
        # (labels, targets) pairs: static-config labels stand in for Kubernetes SD relabelling
        self.labelled = [(dict(labels), list(ts)) for labels, ts in labelled]
        self.scrape_interval = scrape_interval
        self._own_data = data_dir is None
        self.data_dir = Path(data_dir) if data_dir else Path(tempfile.mkdtemp(prefix="canary-prom-data-"))
        self.port = port
        self.history = history
        self.binary = binary or find_binary("prometheus")
        self.extra_args = list(extra_args)
        self._proc: subprocess.Popen[bytes] | None = None
        self._workdir: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def config(self) -> dict[str, object]:
        cfg: dict[str, object] = {"global": {"scrape_interval": self.scrape_interval,
                                             "evaluation_interval": self.scrape_interval}}
        static: list[dict[str, object]] = [{"targets": self.targets}] if self.targets else []
        static += [{"targets": ts, "labels": labels} for labels, ts in self.labelled]
        if static:
            cfg["scrape_configs"] = [{
                "job_name": "sandbox", "scrape_interval": self.scrape_interval,
                "scrape_timeout": self.scrape_interval, "static_configs": static,
            }]
        return cfg

    def start(self, *, timeout_s: float = 30.0) -> "PromServer":
        if not self.binary:
            raise PromServerError("prometheus binary not found (Debian: apt-get install prometheus)")
        if self.history:
            backfill(self.data_dir, self.history)
        self._workdir = Path(tempfile.mkdtemp(prefix="canary-prom-"))
        (self._workdir / "prometheus.yml").write_text(yaml.safe_dump(self.config()), encoding="utf-8")
        fixed_port = self.port is not None
        for _ in range(3):  # a free port can be taken between probing and binding
            self.port = self.port if fixed_port else free_port()
            self._spawn()
            if self._wait_ready(timeout_s):
                return self
            log = self.log_tail()
            self.stop(keep_files=True)
            if fixed_port or "address already in use" not in log:
                break
        self._cleanup()
        raise PromServerError(f"prometheus did not become ready on {self.url}: {log}")

    def _spawn(self) -> None:
        assert self._workdir is not None and self.binary is not None
        args = [
            self.binary,
            f"--config.file={self._workdir / 'prometheus.yml'}",
            f"--storage.tsdb.path={self.data_dir}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--storage.tsdb.retention.time=3650d",
            "--log.level=info",
            *self.extra_args,
        ]
        log = open(self._workdir / "prometheus.log", "wb")
        with log:
            from canary.sandbox.tritonserver import spawn  # PR_SET_PDEATHSIG by setpriv, not a preexec_fn (330)

            self._proc = spawn(args, new_group=False, cwd=self._workdir, stdout=log, stderr=subprocess.STDOUT,
                               stdin=subprocess.DEVNULL)

    def _wait_ready(self, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._proc is None or self._proc.poll() is not None:
                return False
            try:
                with urllib.request.urlopen(self.url + "/-/ready", timeout=1) as resp:
                    if resp.status == 200:
                        return True
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.05)
        return False

    def wait_targets_up(self, *, timeout_s: float = 30.0) -> float:
        """Block until every configured target has been scraped healthy; returns seconds waited."""
        want = len(self.targets) + sum(len(ts) for _, ts in self.labelled)
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout_s:
            try:
                with urllib.request.urlopen(self.url + "/api/v1/targets?state=active", timeout=1) as resp:
                    active = json.load(resp)["data"]["activeTargets"]
                if sum(1 for t in active if t.get("health") == "up") >= want:
                    return time.monotonic() - t0
            except (OSError, ValueError, KeyError):
                pass
            time.sleep(0.2)
        raise PromServerError(f"prometheus targets not all up after {timeout_s}s: {self.log_tail(500)}")

    def log_tail(self, chars: int = 2000) -> str:
        if not self._workdir or not (self._workdir / "prometheus.log").exists():
            return ""
        return (self._workdir / "prometheus.log").read_text(errors="replace")[-chars:]

    def stop(self, *, keep_files: bool = False, timeout_s: float = 5.0) -> None:
        """Terminate our own process by PID, kill it if it lingers; remove temp dirs."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=timeout_s)
        if not keep_files:
            self._cleanup()

    def _cleanup(self) -> None:
        if self._workdir:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None
        if self._own_data:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> "PromServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# -- deterministic history ------------------------------------------------------------


@dataclass(frozen=True)
class Series:
    """One series: a counter growing `per_s` per second from `start`, or a constant gauge."""

    name: str
    labels: Mapping[str, str] = field(default_factory=dict)
    per_s: float = 0.0
    gauge: bool = False

    def value(self, t: float, start: float) -> float:
        return self.per_s if self.gauge else self.per_s * (t - start)


def counter(name: str, labels: Mapping[str, str], per_s: float) -> list[Series]:
    return [Series(name, dict(labels), per_s)]


def gauge(name: str, labels: Mapping[str, str], value: float) -> list[Series]:
    return [Series(name, dict(labels), value, gauge=True)]


def histogram(name: str, labels: Mapping[str, str], bounds: Sequence[float], per_s: Sequence[float]) -> list[Series]:
    """`<name>_bucket/_count/_sum` series; `per_s[i]` observations per second fall in bucket i.

    `per_s` has one entry per bound plus one for the +Inf bucket (non-cumulative).
    `_sum` assumes observations at each bucket's upper bound (the +Inf bucket at
    the last finite bound): good enough for a mean, never used by the checks.
    """
    if len(per_s) != len(bounds) + 1:
        raise ValueError("histogram needs one rate per bound plus one for +Inf")
    out: list[Series] = []
    cumulative = 0.0
    for le, rate in zip([*bounds, float("inf")], per_s):
        cumulative += rate
        out.append(Series(f"{name}_bucket", {**labels, "le": _fmt_le(le)}, cumulative))
    out.append(Series(f"{name}_count", dict(labels), cumulative))
    uppers = [*bounds, bounds[-1] if bounds else 0.0]
    out.append(Series(f"{name}_sum", dict(labels), sum(u * r for u, r in zip(uppers, per_s))))
    return out


def _fmt_le(le: float) -> str:
    return "+Inf" if le == float("inf") else repr(float(le))


def openmetrics(series: Iterable[Series], *, start: float, end: float, step: float = 15.0) -> str:
    """OpenMetrics text for promtool: one family per sample name, samples every `step` s.

    A plain `Series`'s samples depend only on its rate and kind, so series of one rate (every model's and arm's
    bucket of one share, say) share one block of "value timestamp" lines, written once and given each series'
    name and labels by `str.replace`: the tests' histories are 100-400 MB of text, and formatting every sample
    anew cost seconds of CPU per history. A subclass (its own `value`) is formatted sample by sample."""
    by_name: dict[str, list[Series]] = {}
    for s in series:
        by_name.setdefault(s.name, []).append(s)
    times = [start + k * step for k in range(int((end - start) // step) + 1)]
    stamps = [f"{t:.3f}" for t in times]
    blocks: dict[tuple[str, bool], str] = {}  # (repr of the rate: -0.0 is not 0.0, kind) -> lines, name left "\0"
    parts: list[str] = []
    for name, group in by_name.items():
        parts.append(f"# TYPE {name} unknown\n")
        for s in group:
            labels = ",".join(f'{k}="{escape(v)}"' for k, v in s.labels.items())
            head = f"{name}{{{labels}}}" if labels else name
            if type(s) is not Series:
                parts.append("".join(f"{head} {s.value(t, start)!r} {stamp}\n" for t, stamp in zip(times, stamps)))
                continue
            key = (repr(s.per_s), s.gauge)
            block = blocks.get(key)
            if block is None:
                block = blocks[key] = "".join(f"\0 {s.value(t, start)!r} {stamp}\n" for t, stamp in zip(times, stamps))
            parts.append(block.replace("\0", head))
    parts.append("# EOF\n")
    return "".join(parts)


def history_window(now: float | None = None, *, before_s: float = 1800, after_s: float = 300,
                   step: float = 15.0) -> tuple[float, float]:
    """(start, end) on the step grid, from `before_s` ago to `after_s` ahead of now."""
    now = time.time() if now is None else now
    start = (now - before_s) // step * step
    return start, start + ((before_s + after_s) // step) * step
