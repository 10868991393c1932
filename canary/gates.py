"""Adapts the Triton checks (canary/triton.py) to the controller's Gate protocol.

The controller only asks two things of a gate: may the canary get traffic
(`preflight`, raising GateError), and is it still up (`ready`, never raising).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from canary.policy import TritonGate
from canary.triton import ReadinessProbe, TritonEndpoint, preflight, require_client


class TritonGates:
    def __init__(self, cfg: TritonGate, *, model: str, stable_url: str | None, canary_url: str, base_dir: Path,
                 samples: tuple[str, Any] | None = None) -> None:
        """`samples`: the warm-up samples already read (where from, parsed JSON), else `cfg.sample_file`
        relative to `base_dir` (`triton.preflight`)."""
        require_client(cfg.protocol)  # ConfigError without the `triton` extra: refused before traffic moves
        self.cfg = cfg
        self.base_dir = base_dir
        self.samples = samples
        self.canary = TritonEndpoint(url=canary_url, model=model, protocol=cfg.protocol)
        self.stable = TritonEndpoint(url=stable_url, model=model, protocol=cfg.protocol) if stable_url else None
        self._probe: ReadinessProbe | None = None

    @property
    def probe_interval(self) -> float:
        return self.cfg.probe_interval

    @property
    def probe_failures(self) -> int:
        return self.cfg.probe_failures

    def preflight(self) -> dict[str, Any]:
        return preflight(self.stable, self.canary, self.cfg, base_dir=self.base_dir, samples=self.samples).to_dict()

    def ready(self) -> bool:
        if self._probe is None:
            self._probe = ReadinessProbe(self.canary)
        return self._probe.ready()

    @property
    def last_failure(self) -> str:
        """Why the last probe failed ("" when it answered ready): for the rollback's reason."""
        return self._probe.last_failure if self._probe is not None else ""
