"""A URL with credentials in it is never quoted whole (decision 970).

`--prometheus-url http://user:pass@host:9090` (or CANARY_PROMETHEUS_URL) was quoted as given in every
message about Prometheus: `metrics.query_failed`'s `url` and `error`, the MetricsUnavailable that becomes
`look.completed`'s reason, the rollout's reason in status, its Kubernetes Event and its webhook and Slack
posts, the preflight report, a refused URL's ConfigError. Each test greps all of a sink's output for the
password and checks that the host is still named: on-call must see which server failed.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
import structlog.testing

from canary.errors import ConfigError, MetricsUnavailable
from canary.metrics.client import PrometheusClient
from canary.metrics.prometheus import PrometheusProvider
from canary.model import Target
from canary.redact import bare_url, redact_url, scrub, secret_param, split_userinfo
from tests.unit.test_cli_prometheus import FakeProm, analyze, prom  # noqa: F401  (fixture)

SECRET = "hunter2-pw"
DEAD = f"http://ops:{SECRET}@127.0.0.1:9"  # nothing listens: connection refused at once
REC = Target(namespace="ml", virtual_service="rec-vs", model="rec", stable_version="v1", canary_version="v2")


@pytest.mark.parametrize("url, shown", [
    (f"http://ops:{SECRET}@prom:9090", "http://***@prom:9090"),
    (f"https://{SECRET}@prom/prefix", "https://***@prom/prefix"),  # a token as the user: all of it hidden
    ("http://prom:9090/api", "http://prom:9090/api"),  # nothing to hide: as given
    (f"https://hooks/x?channel=ops&token={SECRET}&X-Amz-Signature={SECRET}#top",
     "https://hooks/x?channel=ops&token=***&X-Amz-Signature=***#top"),
    (f"https://a/b?api_key={SECRET}&query=up", "https://a/b?api_key=***&query=up"),
    (f"http://ops:{SECRET}@prom:port", "http://***@prom:port"),  # no URL urlsplit can read: cut all the same
    (f"http://ops:pa@{SECRET}@prom:9090", "http://***@prom:9090"),  # an `@` in the password: to the last (975)
    (f"http://ops:{SECRET}@[::1]:9090/x", "http://***@[::1]:9090/x"),
])
def test_a_url_is_shown_without_its_credentials(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_secret_looking_parameters() -> None:
    assert all(secret_param(n) for n in ("token", "access_token", "X-Amz-Signature", "sig", "password", "apikey",
                                         "client_secret", "private-key"))
    assert not any(secret_param(n) for n in ("query", "channel", "time", "monkey", "keyboard"))


def test_scrub_cuts_the_password_wherever_an_exception_quotes_it() -> None:
    url = f"http://ops:{SECRET}@prom:9090/p?token=t0ken-value"
    text = f"GET {url} failed; auth ('ops', '{SECRET}') to //x:y@z; token t0ken-value"
    out = scrub(text, url)
    assert SECRET not in out and "t0ken-value" not in out and "//x:y@" not in out and "prom:9090" in out, out
    assert scrub(f"POST {url} failed", url, whole_query=True) == "POST http://***@prom:9090/p?... failed"
    assert bare_url(url) == "http://prom:9090/p"


def test_bare_url_keeps_an_ipv6_hosts_brackets() -> None:
    """`http://::1:9090/x` was shown for `http://[::1]:9090/x` (decision 975): no URL, and no telling the port."""
    assert bare_url(f"http://ops:{SECRET}@[::1]:9090/hook?t=x") == "http://[::1]:9090/hook"


@pytest.mark.parametrize("sep", ["/", "#", "?"])
def test_a_password_with_an_unencoded_delimiter_is_refused_unquoted(sep: str) -> None:
    """`http://ops:ab/cd@prom` is host `ops`, port `ab` and a path to urlsplit and requests: the refusal
    quoted it whole, password and all (decision 975); and with a port of digits it was taken, the password
    in every message naming Prometheus. Refused before anything is asked, the URL not quoted."""
    for url in (f"http://ops:{SECRET}{sep}x@127.0.0.1:9090", f"http://ops:1234{sep}{SECRET}@127.0.0.1:9090"):
        with pytest.raises(ConfigError, match="'@' after its host") as err:
            PrometheusClient(url)
        assert SECRET not in str(err.value) and "%2F, %3F, %23" in str(err.value), err.value


def test_a_password_with_an_at_sign_is_sent_whole_and_shown_nowhere() -> None:
    """`ops:pa@<secret>@host`: requests reads the password up to the last `@`; the conflict's refusal
    showed `http://***@<secret>@...` (decision 975)."""
    url = f"http://ops:pa@{SECRET}@127.0.0.1:9"
    assert PrometheusClient(url)._client.auth == ("ops", f"pa@{SECRET}")  # noqa: SLF001
    with pytest.raises(ConfigError, match="give the credentials one way") as err:
        PrometheusClient(url, token="t")
    assert SECRET not in str(err.value) and "127.0.0.1:9" in str(err.value), err.value


def test_split_userinfo_reads_the_credentials_as_requests_does() -> None:
    assert split_userinfo("http://ops:p%40ss@prom:9090/x") == ("http://prom:9090/x", ("ops", "p@ss"))
    assert split_userinfo("http://prom:9090") == ("http://prom:9090", None)
    assert split_userinfo("http://:@prom:9090/x") == ("http://prom:9090/x", None)  # requests sends no auth (975)
    assert split_userinfo("http://ops@prom") == ("http://prom", ("ops", ""))


def test_a_failed_query_says_nothing_of_the_urls_password() -> None:
    """The log line (`metrics.query_failed`, `metrics.query_retry`) and the error (what becomes
    `look.completed`'s reason, the rollout's reason, its Event, its posts)."""
    from canary.policy import parse_policy

    pol = parse_policy({"steps": [10, 100], "checks": [{"name": "err", "kind": "error_rate",
                                                        "max_increase_points": 1}]})
    dead = PrometheusProvider(DEAD, retries=2, budget_s=0.5, backoff_s=0.01)
    with structlog.testing.capture_logs() as logs, pytest.raises(MetricsUnavailable) as err:
        dead.measure(pol, pol.checks[0], REC, window_s=60)
    said = [e for e in logs if e["event"] in ("metrics.query_failed", "metrics.query_retry")]
    assert said and SECRET not in repr(logs), logs
    assert SECRET not in str(err.value) and "Prometheus at http://127.0.0.1:9 " in str(err.value), err.value
    assert [e["url"] for e in logs if e["event"] == "metrics.query_failed"] == ["http://127.0.0.1:9"]


@pytest.mark.parametrize("url, why", [
    (f"http://ops:{SECRET}@127.0.0.1:notaport", "is not a URL"),
    (f"ftp://ops:{SECRET}@127.0.0.1:9090", "must be http(s)://host[:port][/prefix]"),
    (f"http://127.0.0.1:9090/?token={SECRET}", "without a query or fragment"),
])
def test_a_refused_prometheus_url_is_quoted_without_its_secrets(url: str, why: str) -> None:
    with pytest.raises(ConfigError, match=r"127\.0\.0\.1") as err:
        PrometheusClient(url)
    assert why in str(err.value) and SECRET not in str(err.value), err.value


def test_credentials_in_the_url_and_in_the_flags_are_refused() -> None:
    """Which of two would reach Prometheus is not for us to guess (as --prometheus-token with --prometheus-user)."""
    for kw in ({"token": "t"}, {"basic_auth": ("u", "p")}):
        with pytest.raises(ConfigError, match="give the credentials one way") as err:
            PrometheusClient(DEAD, **kw)
        assert SECRET not in str(err.value) and "127.0.0.1:9" in str(err.value)


def test_a_urls_user_and_password_reach_prometheus_as_basic_auth_and_no_output(prom: FakeProm,  # noqa: F811
                                                                              tmp_path: Path) -> None:
    """`canary analyze` (its JSON report, its stderr) with the credentials in --prometheus-url: still sent,
    as requests sent them, never printed."""
    url = prom.url.replace("http://", f"http://ops:{SECRET}@")
    res = analyze(tmp_path, url)
    assert res.exit_code == 4, res.stderr  # no data: inconclusive, but every query was asked
    assert prom.auth and set(prom.auth) == {"Basic " + base64.b64encode(f"ops:{SECRET}".encode()).decode()}
    assert SECRET not in res.stdout + res.stderr
    client = PrometheusClient(url)
    assert client.url == prom.url and client._client.auth == ("ops", SECRET)  # noqa: SLF001


def test_the_preflight_names_prometheus_without_its_password(prom: FakeProm) -> None:  # noqa: F811
    """Its report (`metrics.preflight_passed`'s `url`), or, against this stand-in that answers every query
    with an empty vector, its refusal: "... does not look like a Prometheus HTTP API"."""
    from canary.policy import parse_policy

    pol = parse_policy({"steps": [10, 100], "checks": [{"name": "err", "kind": "error_rate",
                                                        "max_increase_points": 1}]})
    provider = PrometheusProvider(prom.url.replace("http://", f"http://ops:{SECRET}@"))
    try:
        report = provider.preflight(pol, REC)
        shown = json.dumps(report.to_dict())
    except Exception as exc:  # noqa: BLE001 - an empty Prometheus may fail the preflight: its words are the sink
        shown = str(exc)
    assert SECRET not in shown and "127.0.0.1" in shown, shown


@pytest.mark.parametrize("url", [f"http://ops:{SECRET}@triton:8000", f"triton:8000/v2?token={SECRET}"])
def test_a_refused_triton_url_is_quoted_without_its_secrets(url: str) -> None:
    """tritonclient takes host:port only, so a user:password@ or a query is refused (`check_url`); the refusal
    quoted the URL whole, in the CLI's error, the CanaryRollout's Ready condition and its Event."""
    from canary.triton import check_url

    with pytest.raises(ConfigError, match="triton:8000") as err:
        check_url(url, "http", field="spec.triton.canary")
    assert SECRET not in str(err.value) and "spec.triton.canary" in str(err.value), err.value


def test_plans_refusal_for_a_prometheus_down_names_it_without_its_password(tmp_path: Path) -> None:
    """`canary plan --prometheus-url http://ops:<pw>@...` that cannot be asked: exit 3 quoting the flag's URL
    (decision 970's cli_analysis change, untested until decision 976)."""
    import typer
    import yaml
    from typer.testing import CliRunner

    from canary.cli_analysis import register
    from tests.unit.test_plan_offline import DEFAULT

    app = typer.Typer()
    register(app)
    f = tmp_path / "p.yaml"
    f.write_text(yaml.safe_dump({**DEFAULT, "checks": [{"name": "lat", "kind": "latency", "max_increase_pct": 20}]}))
    down = CliRunner().invoke(app, ["plan", "-p", str(f), "--rps", "400", "--prometheus-url", DEAD, "--model", "m",
                                    "--stable-version", "v1", "-n", "ml", "-o", "json"])
    said = " ".join(down.output.split())
    assert down.exit_code == 3 and "could not read the stable's latency buckets" in said, down.output
    assert SECRET not in down.output and "from http://***@127.0.0.1:9 in namespace" in said, down.output
