"""serve_auth: which Authorization headers carry a token of the file, which files hold tokens, which
hosts are loopback (decision 105). The server itself: tests/integration/test_serve_auth.py."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from canary.errors import ConfigError
from canary.serve_auth import TokenFile, TokenUnavailable, is_loopback, parse_tokens

T1, T2 = "t" * 16, "0123456789abcdef0123456789abcdef"


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.mark.parametrize(("header", "why"), [
    (None, "missing"), ("", "missing"), (f"Bearer {T1}", None), (f"bearer  {T2} ", None),
    (basic("flagger", T1), None), (basic("", T2), None), (f"Bearer {T1}x", "wrong"), (f"Bearer {T1[:-1]}", "wrong"),
    (T1, "malformed"), ("Bearer", "malformed"), ("Basic !!!", "malformed"), (basic(T1, ""), "malformed"),
    ("Basic " + base64.b64encode(T1.encode()).decode(), "malformed"), (f"Token {T1}", "malformed"),
    (basic("flagger", "wrong-token-of-16+"), "wrong"),
])
def test_what_a_header_carries(tmp_path: Path, header: str | None, why: str | None) -> None:
    (tmp_path / "t").write_text(f"# two tokens while rotating\n{T1}\n\n{T2}\n")
    assert TokenFile(tmp_path / "t").check(header) == why


@pytest.mark.parametrize("text", ["", "# only a comment\n", "short\n", f"{T1} {T2}\n", "é" * 20])
def test_a_file_without_valid_tokens_is_refused_at_start_naming_no_token(tmp_path: Path, text: str) -> None:
    (tmp_path / "t").write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        TokenFile(tmp_path / "t")
    assert "--token-file" in str(err.value) and T1 not in str(err.value)


def test_a_file_that_becomes_unreadable_refuses_until_it_is_fixed(tmp_path: Path) -> None:
    path = tmp_path / "t"
    path.write_text(T1)
    auth = TokenFile(path)
    path.unlink()
    with pytest.raises(TokenUnavailable):
        auth.check(f"Bearer {T1}")
    path.write_text(T2)
    assert auth.check(f"Bearer {T2}") is None and auth.check(f"Bearer {T1}") == "wrong"


def test_parse_tokens_names_the_line_not_its_content() -> None:
    with pytest.raises(TokenUnavailable, match="f line 2: not a token") as err:
        parse_tokens(f"{T1}\nsecret but bad\n", "f")
    assert "secret" not in str(err.value)
    assert parse_tokens(f"{T1}==\n", "f") == (f"{T1}==".encode(),)


@pytest.mark.parametrize(("host", "loopback"), [
    ("127.0.0.1", True), ("127.1.2.3", True), ("::1", True), ("[::1]", True), ("localhost", True),
    ("0.0.0.0", False), ("::", False), ("", False), ("10.0.0.5", False), ("canary-serve", False),
])
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback
