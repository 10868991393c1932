"""Every URL this tool sends to reads its host one way: a URL whose request could go to a host other than the one
a person reading it sees is refused, at start, by each input alike, never quoted (docs/decisions.md 1003).

Before: `--webhook`/`--slack-webhook` (and CANARY_WEBHOOK_URLS) took `http://ops:1234/s3cret@hooks.example/x`
and posted to host `ops`, port 1234 (975 refused it for Prometheus and `--retrain-webhook` only), and every input
but Triton's took `http://hooks.example@evil.example/x`, sending to evil.example with `hooks.example` as a user
name. A `user:password@` stays credentials, honoured where it was (basic auth)."""

from __future__ import annotations

import pytest

from canary.errors import ConfigError
from canary.metrics.client import PrometheusClient
from canary.notify import Notifier, _bad_url
from canary.redact import unseen_host
from canary.triton import check_url

UNSEEN = [
    ("http://hooks.example@evil.example/x", "no password (name@host)"),
    ("https://hooks.example.com@10.0.0.9:8443/x", "no password (name@host)"),
    ("http://ops:1234/s3cret@hooks.example/x", "'@' after its host"),
    ("http://hooks.example/x?to=ops@evil.example", "'@' after its host"),
    # a user:password that reads as host:port: posted to evil.example as user hooks.example (decision 1018)
    ("http://hooks.example:443@evil.example/x", "host:port and an '@' before its host"),
    ("https://10.0.0.9:8443@evil.example/x", "host:port and an '@' before its host"),
    ("http://localhost:8080@evil.example/x", "host:port and an '@' before its host"),
    ("http://[::1]:8080@evil.example/x", "host:port and an '@' before its host"),
]
SEEN = ["http://hooks.example/x", "http://ops:pw@hooks.example/x", "http://ops:p@ss@hooks.example/x",
        "http://hooks.example/x%40y", "https://[::1]:8443/hook?token=abc", "http://ops:1234@hooks.example/x",
        "http://first.last:pw1234@hooks.example/x", "http://first%2Elast:1234@hooks.example/x"]


@pytest.mark.parametrize("url,says", UNSEEN)
def test_unseen_host_names_each_way_a_request_leaves_for_another_host(url: str, says: str) -> None:
    assert says in unseen_host(url)


@pytest.mark.parametrize("url", SEEN)
def test_a_url_whose_host_is_the_one_shown_is_no_unseen_host(url: str) -> None:
    assert unseen_host(url) == ""


@pytest.mark.parametrize("url,says", UNSEEN)
@pytest.mark.parametrize("sink", ["webhooks", "slack"])
def test_a_notify_url_with_an_unseen_host_is_refused_unquoted(url: str, says: str, sink: str) -> None:
    """`--webhook`, `--slack-webhook`, CANARY_WEBHOOK_URLS and CANARY_SLACK_WEBHOOK_URLS all build a Notifier."""
    with pytest.raises(ConfigError, match=r"URL #1 .*" + says.replace("(", r"\(").replace(")", r"\)")) as err:
        Notifier(**{sink: [url]})
    assert "evil" not in str(err.value) and "s3cret" not in str(err.value) and "hooks.example" not in str(err.value)


def test_the_environments_notify_urls_are_refused_alike() -> None:
    with pytest.raises(ConfigError, match="webhook URL #2 .*no password"):
        Notifier.from_env({"CANARY_WEBHOOK_URLS": "http://hooks.example/a,http://hooks.example@evil.example/x"})


@pytest.mark.parametrize("url,says", UNSEEN)
def test_a_prometheus_url_with_an_unseen_host_is_refused_unquoted(url: str, says: str) -> None:
    with pytest.raises(ConfigError, match="Prometheus URL \\(not shown: it may hold a password\\)") as err:
        PrometheusClient(url)
    assert says in str(err.value) and "evil" not in str(err.value) and "s3cret" not in str(err.value)


def test_the_retraining_webhook_is_checked_as_the_notify_urls_are() -> None:
    """`drift watch --retrain-webhook` refuses with `_bad_url` (its CLI test: test_drift_retrain_reports.py)."""
    for url, says in UNSEEN:
        assert says in _bad_url(url)


@pytest.mark.parametrize("url", ["http://hooks.example@evil.example:8000", "evil.example:8000/x@hooks.example"])
def test_a_triton_url_refuses_them_too(url: str) -> None:
    with pytest.raises(ConfigError):
        check_url(url, "http")


@pytest.mark.parametrize("url", SEEN)
def test_credentials_and_plain_urls_are_taken_as_before(url: str) -> None:
    Notifier(webhooks=[url], slack=[url])
    assert _bad_url(url) == ""
    if "?" not in url and "%40" not in url:  # Prometheus takes no query; the %40 one is a path prefix
        client = PrometheusClient(url)
        assert "@" not in client.url and "ops" not in client.url  # user:password@ sent as basic auth, never shown


def test_each_refusal_says_how_to_write_what_the_user_meant() -> None:
    """A webhook URL with an e-mail address in its query was posted to its host on main; refused now (1003), the
    message says first how to write it (%40), not only the password case; a name@ says name:@ (decision 1016)."""
    at_data = unseen_host("https://hooks.example/x?to=ops@example.com")
    assert "an '@' that is data there (an e-mail address" in at_data and "is written %40" in at_data
    assert "name:@ for a name alone" in unseen_host("https://token@hooks.example/x")
    assert unseen_host("https://hooks.example/x?to=ops%40example.com") == ""
    assert unseen_host("https://token:@hooks.example/x") == ""
