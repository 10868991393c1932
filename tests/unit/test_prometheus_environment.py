"""What `requests` takes from the environment for Prometheus (proxies, `NO_PROXY`, `~/.netrc`) is taken once per
client, when it is made, and honoured as before (decision 1033): it was read again at every query."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
import requests.sessions

from canary.metrics.client import PrometheusClient
from tests.support.forward_proxy import ForwardProxy
from tests.support.http import ScriptedHTTP

EMPTY = json.dumps({"status": "success", "data": {"resultType": "vector", "result": []}})
PROXY_VARS = ("NO_PROXY", "no_proxy", "HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY",
              "all_proxy")


@pytest.fixture
def prom() -> Any:
    seen: list[dict[str, str]] = []

    def answer(path: str, headers: dict[str, str]) -> tuple[int, str, str]:
        seen.append(headers)
        return 200, "application/json", EMPTY

    srv = ScriptedHTTP(answer)
    srv.seen = seen  # type: ignore[attr-defined]
    yield srv
    srv.close()


@pytest.fixture
def no_proxies(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in PROXY_VARS:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_the_environment_is_read_once_per_client_not_per_query(prom: Any, no_proxies: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    real = requests.sessions.get_environ_proxies

    def counted(url: str, no_proxy: Any = None) -> Any:
        calls.append(url)
        return real(url, no_proxy=no_proxy)

    no_proxies.setattr(requests.sessions, "get_environ_proxies", counted)
    client = PrometheusClient(prom.url)
    for _ in range(5):
        assert client.query("up") == []
    assert len(calls) == 1 and len(prom.paths) == 5


@pytest.mark.parametrize("bypass", [False, True])
def test_http_proxy_and_no_proxy_are_honoured(prom: Any, no_proxies: pytest.MonkeyPatch, bypass: bool) -> None:
    proxy = ForwardProxy().start()
    try:
        no_proxies.setenv("HTTP_PROXY", proxy.url)
        if bypass:
            no_proxies.setenv("NO_PROXY", "127.0.0.1")
        client = PrometheusClient(prom.url)
        assert client.query("up") == [] and client.query("up") == []
        through = [line for line in proxy.seen if "/api/v1/query" in line]
        assert len(through) == (0 if bypass else 2), proxy.seen
        assert len(prom.paths) == 2
    finally:
        proxy.stop()


def test_netrc_credentials_are_sent_unless_credentials_are_given(prom: Any, no_proxies: pytest.MonkeyPatch,
                                                                 tmp_path: Any) -> None:
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login ops password s3cret\n")
    netrc.chmod(0o600)
    no_proxies.setenv("NETRC", str(netrc))
    PrometheusClient(prom.url).query("up")
    PrometheusClient(prom.url, basic_auth=("other", "pw")).query("up")
    sent = [h.get("Authorization") for h in prom.seen]
    assert sent == ["Basic " + base64.b64encode(b"ops:s3cret").decode(),
                    "Basic " + base64.b64encode(b"other:pw").decode()]


def test_a_token_given_is_sent_not_replaced_by_a_netrc_entry(prom: Any, no_proxies: pytest.MonkeyPatch,
                                                             tmp_path: Any) -> None:
    """docs/reference/cluster.md: `~/.netrc` is read "where no credentials are given". A token is given credentials,
    but requests applies netrc's basic auth where the request has no `auth` of its own, and basic auth replaces the
    `Authorization: Bearer` header: Prometheus got the netrc's user, and a 401 said "check --prometheus-token"
    about a token that was never sent (so before decision 1033 too, at every request). Decision 1036."""
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login ops password s3cret\n")
    netrc.chmod(0o600)
    no_proxies.setenv("NETRC", str(netrc))
    PrometheusClient(prom.url, token="t0ken").query("up")
    assert [h.get("Authorization") for h in prom.seen] == ["Bearer t0ken"]
