"""The kubeconfig and the files it names are read bounded, strictly, never by a blocking open (decision 831).

The kubernetes client opened a user's `tokenFile`, a cluster's `certificate-authority`, a user's
`client-certificate`/`client-key` and every file of `$KUBECONFIG`'s list itself: a FIFO at any of them held the
command at the open, before any word (these tests' timeout without the fix); a file of any size was read whole;
a key written twice in the kubeconfig was read as the last one, where kubectl refuses it.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from canary.errors import ConfigError
from canary.kube import api_client, default_namespace


def _kubeconfig(where: Path, user: str, cluster: str = "", extra: str = "") -> Path:
    path = where / "config"
    path.write_text("apiVersion: v1\nkind: Config\n"
                    f"clusters: [{{name: c, cluster: {{server: 'https://127.0.0.1:1'{cluster}}}}}]\n"
                    f"users: [{{name: u, user: {user}}}]\n"
                    "contexts: [{name: x, context: {cluster: c, user: u, namespace: ns1}}]\n"
                    f"current-context: x\n{extra}")
    return path


FIELDS = {"tokenFile": ("{tokenFile: bad}", ""),
          "certificate-authority": ("{token: t}", ", certificate-authority: bad"),
          "client-key": ("{client-certificate: bad-cert, client-key: bad}", ""),
          "client-certificate": ("{client-certificate: bad, client-key: bad-key}", "")}


@pytest.mark.timeout(30)
@pytest.mark.parametrize("kind", ["fifo", "directory", "too large"])
@pytest.mark.parametrize("field", list(FIELDS))
def test_a_file_a_kubeconfig_names_that_is_no_bounded_regular_file_is_refused_naming_the_field(
        tmp_path: Path, field: str, kind: str) -> None:
    user, cluster = FIELDS[field]
    for other in ("bad-cert", "bad-key"):
        (tmp_path / other).write_text("-----BEGIN X-----\n")
    bad = tmp_path / "bad"
    if kind == "fifo":
        os.mkfifo(bad)
    elif kind == "directory":
        bad.mkdir()
    else:
        bad.write_bytes(b"a" * ((1 << 20) + 1))
    config = _kubeconfig(tmp_path, user, cluster)
    with pytest.raises(ConfigError) as err:
        api_client(kubeconfig=str(config))
    message = str(err.value)
    why = {"fifo": "not a regular file", "directory": "Is a directory", "too large": "too large: more than 1 MiB"}
    assert f"{field} {str(bad)!r}: " in message and why[kind] in message, message
    assert message.startswith(f"cannot use kubeconfig {str(config)!r}: "), message


@pytest.mark.timeout(30)
def test_every_file_of_a_kubeconfig_list_is_checked_not_only_the_first(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    config = _kubeconfig(tmp_path, "{token: t}")
    fifo = tmp_path / "second"
    os.mkfifo(fifo)
    monkeypatch.setenv("KUBECONFIG", f"{config}{os.pathsep}{fifo}")
    for load in (api_client, default_namespace):
        with pytest.raises(ConfigError, match=f"kubeconfig {str(fifo)!r}: cannot read: not a regular file"):
            load()


def test_a_kubeconfig_with_a_key_written_twice_is_refused_naming_the_line(tmp_path: Path) -> None:
    """kubectl v1.32.4 and PyYAML read the last one; refused, naming the line (decision 880)."""
    config = _kubeconfig(tmp_path, "{token: t}", extra="current-context: y\n")
    for load in (api_client, default_namespace):
        with pytest.raises(ConfigError, match="line 7, column 1: duplicate key 'current-context'"):
            load(kubeconfig=str(config))


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_a_client_certificate_is_handed_on_as_a_private_copy_of_the_bytes_read(tmp_path: Path) -> None:
    """urllib3 opened the kubeconfig's paths at each new connection: a FIFO put there later held that connection."""
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-keyout", str(tmp_path / "k.pem"), "-out", str(tmp_path / "c.pem"), "-days", "2", "-subj",
                    "/CN=u"], check=True, capture_output=True, timeout=60)
    config = _kubeconfig(tmp_path, "{client-certificate: c.pem, client-key: k.pem}", ", certificate-authority: c.pem")
    cfg = api_client(kubeconfig=str(config)).configuration
    assert Path(cfg.cert_file).read_bytes() == (tmp_path / "c.pem").read_bytes()
    assert Path(cfg.key_file).read_bytes() == (tmp_path / "k.pem").read_bytes()
    assert Path(cfg.ssl_ca_cert).read_bytes() == (tmp_path / "c.pem").read_bytes()
    assert str(tmp_path) not in cfg.cert_file + cfg.key_file + cfg.ssl_ca_cert


@pytest.mark.parametrize("command", [".", "/"])
def test_an_exec_plugin_command_that_cannot_be_run_is_said_naming_it(tmp_path: Path, command: str) -> None:
    import kubernetes.client

    from canary.kube import _load_config
    from canary.kube_credentials import install_bounded_plugins, load_noting

    install_bounded_plugins()
    config = _kubeconfig(tmp_path, '{exec: {apiVersion: client.authentication.k8s.io/v1, command: "%s"}}' % command)
    said = load_noting(functools.partial(_load_config, kubeconfig=str(config), context=None),
                       kubernetes.client.Configuration())
    assert said == [f"exec: command {command!r} cannot be run: Permission denied"], said


@pytest.mark.parametrize(("user", "cluster", "said"), [
    ("{token: t}", ", insecure-skip-tls-verify: 'no'",
     "clusters[0] ('c').cluster.insecure-skip-tls-verify is 'no', not true or false (unquoted)"),
    ('{token: "a\\nb"}', "", "users[0] ('u').user.token holds a control character ('\\n' at 1)"),
    ("{token: 5}", "", "users[0] ('u').user.token is int 5, not a string"),
    ("{token: t}", ", certificate-authority-data: '!!!'",
     "clusters[0] ('c').cluster.certificate-authority-data is not base64"),
    ("{exec: {apiVersion: client.authentication.k8s.io/v1, command: aws, args: [eks, 5]}}", "",
     "users[0] ('u').user.exec.args is not a list of strings"),
    ("[token, t]", "", "users[0] ('u').user is not a mapping"),
    ('{exec: {apiVersion: client.authentication.k8s.io/v1, command: "a\\0b"}}', "",
     "users[0] ('u').user.exec.command holds a control character ('\\x00' at 1)"),
])
def test_a_kubeconfig_field_of_the_wrong_kind_is_refused_naming_it(tmp_path: Path, user: str, cluster: str,
                                                                   said: str) -> None:
    """kubectl refuses each; the client took a quoted "no" as true (TLS unverified), sent a newline into the
    Authorization header, decoded '!!!' as no CA at all (decision 836)."""
    config = _kubeconfig(tmp_path, user, cluster)
    for load in (api_client, default_namespace):
        with pytest.raises(ConfigError) as err:
            load(kubeconfig=str(config))
        assert said in str(err.value) and str(config) in str(err.value), err.value
    assert str(err.value).count(str(config)) == 1, err.value  # named once


def test_a_kubeconfig_that_is_a_link_loop_is_said_as_one(tmp_path: Path) -> None:
    loop = tmp_path / "kc"
    loop.symlink_to(loop)
    with pytest.raises(ConfigError, match="cannot be read: Too many levels of symbolic links"):
        default_namespace(kubeconfig=str(loop))


def test_a_token_file_with_a_line_break_inside_is_refused_naming_it(tmp_path: Path) -> None:
    """A trailing newline is trimmed, as kubectl trims it; one inside (two tokens, a file of other text) went into
    the Authorization header, refused by the HTTP client at the first request, far from the file (decision 836)."""
    (tmp_path / "bad").write_text("abc\ndef\n")
    config = _kubeconfig(tmp_path, "{tokenFile: bad}")
    with pytest.raises(ConfigError, match=r"tokenFile '.*/bad': the token holds a control character \('\\n' at 3\)"):
        api_client(kubeconfig=str(config))
    (tmp_path / "bad").write_text("abc\n")
    assert api_client(kubeconfig=str(config)).configuration.api_key["BearerToken"].strip() == "Bearer abc"


@pytest.mark.parametrize("user", [
    # as `kubectl config view --flatten` and `kubectl config set-credentials --exec-command` write an exec plugin
    "{exec: {apiVersion: client.authentication.k8s.io/v1beta1, command: gke-gcloud-auth-plugin, args: null, "
    "env: null, installHint: 'Install gke-gcloud-auth-plugin', provideClusterInfo: true, interactiveMode: IfAvailable}}",
    # `aws eks update-kubeconfig`'s, with a profile
    "{exec: {apiVersion: client.authentication.k8s.io/v1beta1, command: aws, args: [--region, us-east-1, eks, "
    "get-token, --cluster-name, c, --output, json], env: [{name: AWS_PROFILE, value: p}]}}",
    "{token: null, tokenFile: null, exec: {apiVersion: client.authentication.k8s.io/v1, command: c, args: null}}",
])
def test_the_kubeconfigs_kubectl_writes_for_exec_plugins_load(tmp_path: Path, user: str) -> None:
    """A null field is unset, as kubectl reads it: `args: null` was refused as "not a list of strings" (866)."""
    config = _kubeconfig(tmp_path, user)
    assert default_namespace(kubeconfig=str(config)) == "ns1"


@pytest.mark.parametrize(("cluster", "key"), [(", insecure-skip-tls-verify: yes", "insecure-skip-tls-verify"),
                                              (", insecure-skip-tls-verify: off", "insecure-skip-tls-verify")])
def test_a_yaml_1_1_boolean_kubectl_takes_is_refused_naming_its_field_and_what_to_write(
        tmp_path: Path, cluster: str, key: str) -> None:
    config = _kubeconfig(tmp_path, "{token: t}", cluster)
    for load in (api_client, default_namespace):
        with pytest.raises(ConfigError) as err:
            load(kubeconfig=str(config))
        said = str(err.value)
        assert str(config) in said and "write true or false" in said and f"(the value of {key})" in said, said


def test_a_client_certificate_rotated_on_disk_keeps_one_private_copy_at_one_path(tmp_path: Path) -> None:
    """A copy per content was a descriptor more per rotation for the process's life (a controller renewing an
    hourly certificate ran out of descriptors); the copy's path now reads the rotated content (865)."""
    config = _kubeconfig(tmp_path, "{client-certificate: c.pem, client-key: k.pem}")
    paths, fds = set(), []
    for i in range(40):
        (tmp_path / "c.pem").write_text(f"-----BEGIN CERTIFICATE-----\n{i}\n")
        (tmp_path / "k.pem").write_text(f"-----BEGIN PRIVATE KEY-----\n{i}\n")
        cfg = api_client(kubeconfig=str(config)).configuration
        assert Path(cfg.cert_file).read_text() == f"-----BEGIN CERTIFICATE-----\n{i}\n"
        assert Path(cfg.key_file).read_text() == f"-----BEGIN PRIVATE KEY-----\n{i}\n"
        paths.add((cfg.cert_file, cfg.key_file))
        fds.append(len(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else 0)
    assert len(paths) == 1, paths
    assert fds[-1] - fds[0] < 10, fds  # 78 more without (one a file a rotation)


def test_a_private_copy_that_cannot_be_written_leaves_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Where there is no memfd, the 0600 copy is removed when writing it fails, as when it is ended (867)."""
    import tempfile

    from canary.filekind import private_copy

    monkeypatch.delattr(os, "memfd_create", raising=False)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    with pytest.raises(TypeError):
        private_copy("not bytes", "key")  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []
    path, end = private_copy(b"k", "key")
    assert Path(path).read_bytes() == b"k" and oct(Path(path).stat().st_mode & 0o777) == "0o600"
    end()
    assert list(tmp_path.iterdir()) == []


def test_a_data_field_broken_over_lines_loads_as_kubectl_loads_it(tmp_path: Path) -> None:
    """A `|` block keeps its line breaks; kubectl's base64 decoder skips them, the client's too (decision 868)."""
    import base64

    pem = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    lines = base64.encodebytes(pem * 3).decode().replace("\n", "\n      ")
    config = _kubeconfig(tmp_path, "{token: t}")
    text = config.read_text().replace("clusters: [{name: c, cluster: {server: 'https://127.0.0.1:1'}}]",
                                      "clusters:\n- name: c\n  cluster:\n    server: https://127.0.0.1:1\n"
                                      f"    certificate-authority-data: |\n      {lines.rstrip()}\n")
    config.write_text(text)
    cfg = api_client(kubeconfig=str(config)).configuration
    assert Path(cfg.ssl_ca_cert).read_bytes() == pem * 3
    config.write_text(text.replace("certificate-authority-data: |\n      ", "certificate-authority-data: |\n      !"))
    with pytest.raises(ConfigError, match=r"clusters\[0\] \('c'\)\.cluster\.certificate-authority-data is not base64"):
        api_client(kubeconfig=str(config))


def test_a_kubeconfig_of_hundreds_of_clusters_loads(tmp_path: Path) -> None:
    """A policy's bound of 10,000 values refused a kubeconfig of 450 clusters, contexts and users (decision 866)."""
    import yaml

    n = 600
    config = tmp_path / "config"
    config.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "x7",
        "clusters": [{"name": f"c{i}", "cluster": {"server": f"https://10.0.{i // 250}.{i % 250}:6443"}} for i in range(n)],
        "contexts": [{"name": f"x{i}", "context": {"cluster": f"c{i}", "user": f"u{i}", "namespace": f"n{i}"}}
                     for i in range(n)],
        "users": [{"name": f"u{i}", "user": {"token": f"t{i}"}} for i in range(n)]}))
    assert default_namespace(kubeconfig=str(config)) == "n7"


def test_a_link_to_nothing_in_a_kubeconfig_list_is_skipped_as_kubectl_skips_it(tmp_path: Path,
                                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """kubectl (v1.32.4: `KUBECONFIG=kc:gone kubectl config view`) and the Python client skip a file of the list that
    does not exist, a link to nothing included; canary refused the link (`cannot read: No such file`). A link loop
    there is still refused naming it (decision 881)."""
    config = _kubeconfig(tmp_path, "{token: t}")
    gone = tmp_path / "gone"
    gone.symlink_to(tmp_path / "removed")
    monkeypatch.setenv("KUBECONFIG", f"{config}{os.pathsep}{gone}")
    assert default_namespace() == "ns1"
    api_client()
    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    monkeypatch.setenv("KUBECONFIG", f"{config}{os.pathsep}{loop}")
    with pytest.raises(ConfigError, match=f"kubeconfig {str(loop)!r}: cannot read: Too many levels"):
        api_client()


@pytest.mark.parametrize("place", ["first", "middle", "last", "first, as a link to nothing"])
def test_a_kubeconfig_of_the_list_that_does_not_exist_is_skipped_at_any_place_as_kubectl_skips_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, place: str) -> None:
    """client-go's loader skips a file of `$KUBECONFIG`'s list whose load says `os.IsNotExist`, wherever it is, and
    so does the Python client (`os.path.exists`); canary skipped one past the first (881) but refused a missing
    first one, exit 2 "does not exist" (decision 910)."""
    config = _kubeconfig(tmp_path, "{token: t}")
    gone = tmp_path / "gone"
    if "link" in place:
        gone.symlink_to(tmp_path / "removed")
    other = tmp_path / "other"
    other.write_text("apiVersion: v1\nkind: Config\n")
    files = {"first": [gone, config, other], "middle": [config, gone, other], "last": [config, other, gone]}
    monkeypatch.setenv("KUBECONFIG", os.pathsep.join(str(p) for p in files[place.split(",")[0]]))
    assert default_namespace() == "ns1"
    assert api_client().configuration.host == "https://127.0.0.1:1"


def test_a_kubeconfig_list_of_which_no_file_exists_is_refused_naming_each(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """kubectl warns "Config not found: a, b" and goes on with an empty configuration (its own localhost:8080 error,
    or the pod's service account); canary says the list and each file, and takes no other credentials (decision
    910). One file alone is still "does not exist"."""
    gone = [tmp_path / "a", tmp_path / "b"]
    gone[1].symlink_to(tmp_path / "removed")
    listed = os.pathsep.join(str(p) for p in gone)
    monkeypatch.setenv("KUBECONFIG", listed)
    for load in (api_client, default_namespace):
        with pytest.raises(ConfigError) as err:
            load()
        said = str(err.value)
        assert said.startswith(f"kubeconfig list {listed!r}: none of its files exists (named: {str(gone[0])!r}, "
                               f"{str(gone[1])!r})"), said
        assert "unset KUBECONFIG" in said, said
    monkeypatch.setenv("KUBECONFIG", str(gone[0]))
    with pytest.raises(ConfigError, match=f"^kubeconfig {str(gone[0])!r} does not exist$"):
        api_client()


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_a_kubeconfigs_ca_rotated_on_disk_is_taken_at_the_next_check_and_a_broken_one_is_not(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The `certificate-authority` copy was read again only at a credentials renewal (865), which our own refusal of
    the API server's certificate never starts: an API server's CA rotated on disk failed every new connection of a
    running controller until a restart. Now it is read again at a request, at most every `CA_CHECK_EVERY_S`, as
    client-go's CA rotation reads it; a file that is no PEM bundle keeps the copy (decision 913)."""
    import kubernetes.client
    import structlog.testing

    from canary import kube_files

    pems = {}
    for name in ("old", "new"):
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                        "-nodes", "-keyout", str(tmp_path / f"{name}.key"), "-out", str(tmp_path / f"{name}.pem"),
                        "-days", "2", "-subj", f"/CN={name}"], check=True, capture_output=True, timeout=60)
        pems[name] = (tmp_path / f"{name}.pem").read_bytes()
    ca = tmp_path / "ca.pem"
    ca.write_bytes(pems["old"])
    client = api_client(kubeconfig=str(_kubeconfig(tmp_path, "{token: t}", ", certificate-authority: ca.pem")))
    copy = client.configuration.ssl_ca_cert

    def request() -> None:  # the API server is not there: the check comes before the connection
        with pytest.raises(Exception):
            kubernetes.client.CoreV1Api(client).list_namespace(_request_timeout=2)

    def swap(data: bytes) -> None:  # as the kubelet swaps a mounted Secret's file
        (tmp_path / "next").write_bytes(data)
        os.replace(tmp_path / "next", ca)

    monkeypatch.setattr(kube_files, "CA_CHECK_EVERY_S", 1e9)
    swap(pems["new"])
    request()
    assert Path(copy).read_bytes() == pems["old"]  # not before its period
    monkeypatch.setattr(kube_files, "CA_CHECK_EVERY_S", 0.0)
    with structlog.testing.capture_logs() as logs:
        swap(b"-----BEGIN CERTIFICATE-----\nMIIB\n")  # caught mid-write
        request()
        assert Path(copy).read_bytes() == pems["old"]
        swap(pems["new"])
        request()
    assert Path(copy).read_bytes() == pems["new"] and client.configuration.ssl_ca_cert == copy
    assert [e["event"] for e in logs if e["event"].startswith("kube.ca_")] == ["kube.ca_reload_failed",
                                                                              "kube.ca_reloaded"], logs


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_a_kubeconfigs_ca_caught_empty_mid_write_keeps_the_ca_loaded(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A writer that rewrites the file in place truncates it first: an empty file passed `follow_ca`'s check
    (Python's `ssl` loads nothing for `cadata=""`, no error) and was put in the copy, so every new connection to
    the API server was refused until the next look, 5 minutes on, where client-go keeps the CA loaded for an
    empty file (decision 952)."""
    from canary import kube_files

    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-keyout", str(tmp_path / "ca.key"), "-out", str(tmp_path / "ca.pem"), "-days", "2",
                    "-subj", "/CN=ca"], check=True, capture_output=True, timeout=60)
    pem = (tmp_path / "ca.pem").read_bytes()
    client = api_client(kubeconfig=str(_kubeconfig(tmp_path, "{token: t}", ", certificate-authority: ca.pem")))
    copy = client.configuration.ssl_ca_cert
    monkeypatch.setattr(kube_files, "CA_CHECK_EVERY_S", 0.0)
    for caught in (b"", b"\n"):
        (tmp_path / "ca.pem").write_bytes(caught)  # truncated, in place
        kube_files.follow_ca()
        assert Path(copy).read_bytes() == pem, caught


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_a_load_that_meets_the_ca_mid_write_keeps_the_ca_every_client_shares(tmp_path: Path) -> None:
    """A load of the kubeconfig (a credentials renewal after a 401, 865; another client made in the process) read
    the `certificate-authority` file again and put what it read into the one copy every client of the process
    uses: a file caught mid-write (empty, or a certificate cut short) left every new connection to the API server
    refused until `follow_ca`'s next look, 5 minutes on. It keeps the CA loaded now, as `follow_ca` does (decision
    954)."""
    import structlog.testing

    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-keyout", str(tmp_path / "ca.key"), "-out", str(tmp_path / "ca.pem"), "-days", "2",
                    "-subj", "/CN=ca"], check=True, capture_output=True, timeout=60)
    pem = (tmp_path / "ca.pem").read_bytes()
    config = str(_kubeconfig(tmp_path, "{token: t}", ", certificate-authority: ca.pem"))
    copy = api_client(kubeconfig=config).configuration.ssl_ca_cert
    for caught in (b"", b"-----BEGIN CERTIFICATE-----\nMIIB\n"):
        (tmp_path / "ca.pem").write_bytes(caught)  # in place, caught mid-write
        with structlog.testing.capture_logs() as logs:
            again = api_client(kubeconfig=config).configuration.ssl_ca_cert
        assert again == copy and Path(copy).read_bytes() == pem, caught
        assert [e["event"] for e in logs if e["event"].startswith("kube.ca_")] == ["kube.ca_reload_failed"], logs
    (tmp_path / "ca.pem").write_bytes(pem + pem)  # the write ended: a bundle that checks is taken
    assert api_client(kubeconfig=config).configuration.ssl_ca_cert == copy and Path(copy).read_bytes() == pem + pem
