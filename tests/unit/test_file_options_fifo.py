"""A file option never holds the command at a FIFO's open (decision 771; 746 and 759 for the inputs read whole).

`serve --token-file` of a FIFO no process writes to held the start for ever before any word (read with
`read_text`), and a token file replaced by a FIFO while serving held the call that read it, and every call after
(the read holds the file's lock); `drift watch --state-file` of one held its start; `FeatureExporter.from_file`
of one held the model server's."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from canary import filekind
from canary.errors import ConfigError

TOKEN = "0123456789abcdef0123456789abcdef"


@pytest.mark.timeout(30)  # without the fix: held at the open
def test_a_token_file_that_is_a_fifo_is_refused_at_start(tmp_path: Path) -> None:
    from canary.serve_auth import TokenFile

    fifo = tmp_path / "tokens"
    os.mkfifo(fifo)
    with pytest.raises(ConfigError) as err:
        TokenFile(fifo)
    assert str(err.value).startswith(f"--token-file: {fifo}: cannot be read") and "not a regular file" in str(err.value)


@pytest.mark.timeout(30)
def test_a_token_file_replaced_by_a_fifo_while_serving_refuses_the_call(tmp_path: Path) -> None:
    from canary.serve_auth import TokenFile, TokenUnavailable

    path = tmp_path / "tokens"
    path.write_text(TOKEN + "\n")
    tokens = TokenFile(path)
    assert tokens.check(f"Bearer {TOKEN}") is None
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    os.replace(fifo, path)
    with pytest.raises(TokenUnavailable, match="not a regular file"):
        tokens.check(f"Bearer {TOKEN}")


@pytest.mark.timeout(30)
def test_a_drift_state_file_that_is_a_fifo_is_refused(tmp_path: Path) -> None:
    from canary.drift.watch import FileStateStore

    fifo = tmp_path / "state.json"
    os.mkfifo(fifo)
    with pytest.raises(ConfigError, match="cannot read the drift monitor state: .*not a regular file"):
        FileStateStore(fifo).load()


@pytest.mark.timeout(30)
def test_an_exporters_profile_that_is_a_fifo_is_waited_on_within_bounds(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """As every input read whole (759): its writer waited on, at most FIFO_WAIT_S (here 0.2 s: none comes)."""
    from canary.drift.exporter import FeatureExporter

    monkeypatch.setattr(filekind, "FIFO_WAIT_S", 0.2)
    fifo = tmp_path / "p.profile.json"
    os.mkfifo(fifo)
    with pytest.raises(ConfigError, match="cannot read the profile: a FIFO .named pipe. no process wrote to within 0.2 s"):
        FeatureExporter.from_file(fifo)


def test_a_kubeconfig_that_is_a_fifo_is_said_as_such_not_as_missing(tmp_path: Path) -> None:
    from canary.kube import default_namespace

    fifo = tmp_path / "kc"
    os.mkfifo(fifo)
    with pytest.raises(ConfigError) as err:
        default_namespace(kubeconfig=str(fifo))
    assert str(err.value).startswith(f"kubeconfig {str(fifo)!r} is not a regular file: a FIFO or a pipe"), err.value
    with pytest.raises(ConfigError, match="does not exist"):
        default_namespace(kubeconfig=str(tmp_path / "none"))
    with pytest.raises(ConfigError, match="is not a regular file: a directory"):
        default_namespace(kubeconfig=str(tmp_path))


def test_a_kubeconfig_given_by_process_substitution_says_why_and_what_to_do() -> None:
    """`--kubeconfig <(sops -d kc.enc)` (kubectl takes it) is /dev/fd/N, a pipe: it was said as "a directory, a
    FIFO or a device", no word of the process substitution nor what to do. A pipe reads once, and the kubeconfig is
    read more than once (its contexts for the namespace, then the client's load); review r-ag, 771 addendum."""
    from canary.kube import default_namespace

    r, w = os.pipe()
    try:
        os.write(w, b"apiVersion: v1\nkind: Config\n")
        with pytest.raises(ConfigError) as err:
            default_namespace(kubeconfig=f"/dev/fd/{r}")
    finally:
        os.close(r)
        os.close(w)
    message = str(err.value)
    assert "a process substitution" in message and "write it to a file" in message, message


def test_a_token_file_and_a_kubeconfig_read_through_a_symlink(tmp_path: Path) -> None:
    """Checked with 771 (a regular file told on the descriptor, after the link): a mounted Secret's token is
    `token -> ..data/token`, `..data` swapped on rotation; `~/.kube/config` is often a link elsewhere."""
    from canary.kube import default_namespace
    from canary.serve_auth import TokenFile

    (tmp_path / "..v1").mkdir()
    (tmp_path / "..v1" / "token").write_text(TOKEN + "\n")
    (tmp_path / "..data").symlink_to("..v1")
    (tmp_path / "token").symlink_to("..data/token")
    tokens = TokenFile(tmp_path / "token")
    assert tokens.check(f"Bearer {TOKEN}") is None
    (tmp_path / "..v2").mkdir()
    (tmp_path / "..v2" / "token").write_text(TOKEN[::-1] + "\n")
    (tmp_path / "..new").symlink_to("..v2")
    os.replace(tmp_path / "..new", tmp_path / "..data")
    assert tokens.check(f"Bearer {TOKEN[::-1]}") is None
    assert tokens.check(f"Bearer {TOKEN}") is not None, "the rotated-out token is refused"
    real = tmp_path / "elsewhere"
    real.write_text("apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: 'https://127.0.0.1:1'}}]\n"
                    "users: [{name: u, user: {token: t}}]\n"
                    "contexts: [{name: x, context: {cluster: c, user: u, namespace: ns1}}]\ncurrent-context: x\n")
    (tmp_path / "config").symlink_to(real)
    assert default_namespace(kubeconfig=str(tmp_path / "config")) == "ns1"
