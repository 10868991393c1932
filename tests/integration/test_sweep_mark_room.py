"""`canary sweep`'s mark beside other annotations that leave it no room (decision 569).

The mark (`sweep.SEEN_ANNOTATION`) is `canary sweep`'s memory between passes. The API server allows all of an
object's annotations 262,144 bytes together, and the strict emulator does the same: a mark over an object whose
other annotations (a `kubectl apply` last-applied-configuration grown huge) leave less than it needs was refused
(422) at every pass, "not marked: HTTP 422 ...", and a split nobody drives was never timed, never ended: the canary
kept its share for good. Against the strict Kubernetes API emulator, through the real CLI.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from canary import sweep
from canary.routing import patch
from canary.sandbox.kubeapi import ANNOTATIONS_LIMIT
from tests import fleet
from tests.integration.test_sweep import _claim, _sweep, cluster  # noqa: F401
from tests.integration.test_sweep_oncall import RECORD, _route, _typed_end

pytestmark = pytest.mark.integration
GROUP, KEY = "networking.istio.io", "kubectl.kubernetes.io/last-applied-configuration"


def _fill(api: Any, name: str, *, record: Any = None) -> None:
    """Another tool's annotation grown to leave 20 bytes: less than the mark needs. `record(text)`: the rollout
    record edited too (a long history, an end typed over the split)."""
    def edit(o: dict[str, Any]) -> None:
        notes = o["metadata"]["annotations"]
        if record is not None:
            notes[RECORD] = record(notes[RECORD])
        notes.pop(KEY, None)
        used = sum(len(k.encode()) + len(v.encode()) for k, v in notes.items())
        notes[KEY] = "x" * (ANNOTATIONS_LIMIT - used - len(KEY) - 20)
    api.edit(GROUP, "virtualservices", "ml", name, edit)


def _long_typed_end(text: str) -> str:
    """An end typed over the split (weights left at the step's), its history near the record's budget."""
    rec = json.loads(_typed_end(text))
    rec["history"] = [{"at": float(i), "phase": "paused", "weights": "80/20", "what": "paused: " + "p" * 400}
                      for i in range(20)]
    return json.dumps(rec)


def test_a_split_nobody_drives_that_cannot_be_marked_is_ended_at_once(tmp_path: Path, cluster: Any) -> None:
    """m0: an end typed over 80/20 (nobody drives it), beside another tool's annotation that leaves the mark 20
    bytes. Every pass said "not marked: HTTP 422 ... Too long", exit 3, and the split stayed for good. It cannot be
    timed, and it is nobody's: it gets stable 100% at once (its record cut to the room, decision 563), exit 0."""
    api, client, router = cluster
    kubeconfig = fleet.write_kubeconfig(tmp_path / "kubeconfig", api.url)
    _claim(router, at=time.time() - 1000)
    _fill(api, "m0", record=_long_typed_end)
    done = _sweep(kubeconfig, "-n", "ml")
    assert done.exit_code == 0, done.output
    assert _route(api, "m0") == [100, 0], done.output
    line = next(ln for ln in done.stdout.splitlines() if ln.startswith("ml/m0"))
    assert "cannot be marked" in line and f"{KEY}-" in line and "stable 100%, recorded aborted" in line, line
    notes = api.get(GROUP, "virtualservices", "ml", "m0")["metadata"]["annotations"]
    assert json.loads(notes[RECORD])["phase"] == "aborted" and sweep.SEEN_ANNOTATION not in notes


def test_a_rollout_that_cannot_be_marked_says_which_annotation_takes_the_room(tmp_path: Path, cluster: Any) -> None:
    """m0: a promote's rollout in progress (it may be alive: never ended unseen), beside the same annotation. The
    mark is not sent (the API server would refuse it): the row names the annotation that takes the room and the
    `kubectl annotate ... KEY-` that frees it, exit 3; the route is as it was."""
    api, client, router = cluster
    kubeconfig = fleet.write_kubeconfig(tmp_path / "kubeconfig", api.url)
    _claim(router, at=time.time() - 1000)
    _fill(api, "m0")
    writes = len(api.writes)
    done = _sweep(kubeconfig, "-n", "ml")
    assert done.exit_code == 3, done.output
    line = next(ln for ln in done.stdout.splitlines() if ln.startswith("ml/m0"))
    assert f"kubectl annotate virtualservice m0 -n ml {KEY}-" in line and "Too long" in line, line
    assert len(api.writes) == writes and _route(api, "m0") == [80, 20]
    assert patch.ANNOTATIONS_MAX_BYTES == ANNOTATIONS_LIMIT
