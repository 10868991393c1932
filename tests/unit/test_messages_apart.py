"""A message that compares a value with its limit shows the two apart (decision 835).

`duration` keeps microseconds, so a duration over its bound by less (`600.0000001` seconds) was refused as
"10m is longer than 10m"; the same for a `:g` or `:.0f` number beside its limit.
"""

from __future__ import annotations

import pytest
import typer

from canary.analysis.shown import duration_beside
from canary.cli_options import bounded, duration, monitor_config
from canary.errors import ConfigError
from canary.policy_fields import parse_duration


@pytest.mark.parametrize(("seconds", "limit", "shown"), [
    (600.0000001, 600.0, "600.0000001s"), (599.9999999, 600.0, "599.9999999s"), (600.5, 600.0, "10m0.5s"),
    (600.0, 600.0, "10m"), (float("inf"), 600.0, "inf"), (0.0000001, 0.0, "1e-07s")])
def test_a_duration_beside_its_limit_reads_apart_from_it(seconds: float, limit: float, shown: str) -> None:
    assert duration_beside(seconds, limit) == shown


def test_a_flag_over_its_bound_by_less_than_a_microsecond_is_said_apart() -> None:
    with pytest.raises(typer.BadParameter) as err:  # seconds keep any digits; '10m0.0000001s' is read to the µs
        bounded(duration, 600.0, "why")("600.0000001")
    assert str(err.value).startswith("600.0000001s is longer than 10m, the most it takes"), err.value


def test_a_policy_duration_out_of_range_by_a_hair_is_said_apart() -> None:
    from pydantic import TypeAdapter

    from canary.policy_fields import ProbeDuration  # 0.1 s .. 10m

    with pytest.raises(Exception) as err:
        TypeAdapter(ProbeDuration).validate_python("600.0000001")
    assert "600.0000001s is out of range: use 100ms .. 10m" in str(err.value), err.value
    assert parse_duration("600.0000001") > 600


def test_a_retry_delay_under_a_minute_by_a_hair_is_said_apart() -> None:
    from canary.drift import monitor as M

    with pytest.raises(ConfigError) as err:
        monitor_config(M, retries=None, retry_delay=59.9999999, unmeasured_after=600.0, retrain_job="job.yaml")
    assert str(err.value).startswith("--retrain-job-retry-delay 59.9999999s: at least 1m"), err.value
