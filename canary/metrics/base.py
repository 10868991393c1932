"""The MetricsProvider protocol: one question, asked per check and arm pair.

After Flagger's two-method provider: an empty or NaN answer becomes a named
`NoData`, a failed request a `MetricsUnavailable` (after bounded retries) --
never a pass.
"""

from __future__ import annotations

from typing import Protocol

from canary.model import ArmData, Target
from canary.policy import Check, Policy


class MetricsProvider(Protocol):
    def measure(self, policy: Policy, check: Check, target: Target, *, window_s: int) -> tuple[ArmData, ArmData]:
        """(stable, canary) data for one check over the last window_s seconds.
        Histogram for latency (bounds in ms) and prediction_shift, Counts for
        error_rate and feature_missing, Scalar for custom."""

    def request_counts(self, policy: Policy, target: Target, *, window_s: int) -> tuple[float, float]:
        """(stable, canary) number of requests over the window."""
