"""Files a person names are loaded from the bytes read and checked, never opened again by path (decision 830).

A library that takes only a path (OpenSSL's `load_cert_chain`) opened the flag's own path after our checks: a
file swapped between the two (a rotation caught halfway, or someone else's) was loaded unchecked, and a FIFO put
there held the caller at OpenSSL's open. Each test swaps the file right after the checked read.
"""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

import pytest

from canary import filekind, serve_tls
from tests.integration.test_serve_tls import _pair

pytestmark = [pytest.mark.integration, pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")]


def _swap_after_read(monkeypatch: pytest.MonkeyPatch, module: object, target: Path, swap: object) -> None:
    """After `module`'s checked read of `target`, `swap()` replaces what is at the path."""
    real = filekind.read_regular

    def read(path: object, limit: int) -> bytes:
        data = real(path, limit)  # type: ignore[arg-type]
        if Path(str(path)) == target:
            swap()  # type: ignore[operator]
        return data

    monkeypatch.setattr(module, "read_regular", read)


@pytest.mark.timeout(60)
def test_a_tls_key_swapped_for_a_fifo_after_its_check_is_not_opened_again(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    cert, key = _pair(tmp_path, "a")

    def fifo() -> None:
        key.unlink()
        os.mkfifo(key)

    _swap_after_read(monkeypatch, serve_tls, key, fifo)
    ctx = serve_tls.load_context(cert, key)  # held at OpenSSL's open of the FIFO without the copy
    assert ctx.minimum_version >= serve_tls.ssl.TLSVersion.TLSv1_2
    assert stat.S_ISFIFO(os.stat(key).st_mode)


def test_a_tls_certificate_swapped_after_its_check_loads_the_one_checked(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    cert, key = _pair(tmp_path, "a")
    other, _ = _pair(tmp_path, "b")
    _swap_after_read(monkeypatch, serve_tls, key, lambda: shutil.copyfile(other, cert))
    serve_tls.load_context(cert, key)  # without the copy: "not the private key of --tls-cert-file" (b's loaded)


def test_a_private_copy_reads_its_bytes_and_is_gone_once_ended() -> None:
    path, end = filekind.private_copy(b"x" * 200_000, "t")
    assert Path(path).read_bytes() == b"x" * 200_000
    assert stat.S_IMODE(os.stat(path).st_mode) & 0o077 == 0 or path.startswith("/proc/self/fd/")
    end()
    assert not os.path.exists(path)


def test_a_tls_key_copy_that_cannot_be_made_ends_the_certificates_copy_too(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """The certificate's private copy was made, then the key's failed (no memory, a full temporary directory):
    the first was never ended, a memfd held for the process's life at each reload that failed so (decision 867)."""
    cert, key = _pair(tmp_path, "a")
    ended: list[str] = []
    real = filekind.private_copy

    def copy(data: bytes, name: str = "canary") -> object:
        if name == "tls-key":
            raise OSError(28, "No space left on device")
        path, end = real(data, name)

        def ending() -> None:
            ended.append(name)
            end()
        return path, ending

    monkeypatch.setattr(serve_tls, "private_copy", copy)
    with pytest.raises(serve_tls.ConfigError, match="cannot load them: No space left on device"):
        serve_tls.load_context(cert, key)
    assert ended == ["tls-cert"]
