"""The sandbox's YAML inputs are read with the strict loader, as a policy is (decision 834).

`python -m canary.sandbox.kubeapi seed.yaml` and the sandbox's Istio manifests were read with `yaml.safe_load_all`:
a key written twice was read as its last value (a VirtualService's second `http:` silently replacing the first),
where kubectl and the real API server's decoding refuse it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from canary.errors import PolicyError
from canary.policy_yaml import load_documents
from canary.sandbox import kubeapi
from canary.sandbox.env import istio_objects

VS = """apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: {name: m, namespace: ml}
spec:
  hosts: [m]
  hosts: [other]
"""


def test_a_seed_with_a_key_written_twice_is_refused_naming_the_file_and_line(tmp_path: Path,
                                                                            capsys: pytest.CaptureFixture[str]) -> None:
    seed = tmp_path / "seed.yaml"
    seed.write_text(VS)
    with pytest.raises(SystemExit) as end:
        kubeapi.main([str(seed)])
    assert end.value.code == 2
    err = capsys.readouterr().err
    assert f"seed {seed}: not valid YAML: line 6, column 3: duplicate key 'hosts'" in err, err


def test_the_istio_manifests_are_read_strictly(tmp_path: Path) -> None:
    (tmp_path / "vs.yaml").write_text(VS)
    with pytest.raises(PolicyError, match="line 6, column 3: duplicate key 'hosts'"):
        istio_objects(tmp_path, stable_version="v1", canary_version="v2")


@pytest.mark.timeout(60)
def test_documents_bounded_per_object_not_per_file_and_no_device(tmp_path: Path) -> None:
    many = tmp_path / "many.yaml"
    many.write_text("---\n".join(f"kind: ConfigMap\nmetadata: {{name: c{i}}}\ndata: {{a: '1'}}\n" for i in range(3000)))
    assert len(load_documents(many)) == 3000  # 21,000 values in all, 7 each
    with pytest.raises(PolicyError, match="too large"):
        load_documents("/dev/zero")
    d = tmp_path / "dir.yaml"
    d.mkdir()
    with pytest.raises(PolicyError, match="cannot read: Is a directory"):
        load_documents(d)
    loop = tmp_path / "loop.yaml"
    os.symlink(loop, loop)
    with pytest.raises(PolicyError, match="cannot read: Too many levels of symbolic links"):
        load_documents(loop)
