"""`canary sweep` as on-call runs it after an incident (decisions 344-347): routes whose weights do not sum to
100, API faults mid-pass. Against the strict Kubernetes API emulator; the faults are its injected ones."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable

import pytest

from canary import sweep
from tests.integration.test_sweep import _age_mark, _claim, _sweep, cluster  # noqa: F401

pytestmark = pytest.mark.integration
GROUP, RECORD = "networking.istio.io", "modelcanary.dev/rollout"


def _route(api: Any, name: str) -> list[Any]:
    return [d.get("weight") for d in api.get(GROUP, "virtualservices", "ml", name)["spec"]["http"][0]["route"]]


def _edit(api: Any, name: str, *, weights: tuple[Any, Any], record: Callable[[str], str] | None = None) -> None:
    """A person's edit of route 0 (None: the weight deleted) and, with `record`, of the rollout record's text."""
    def edit(o: dict[str, Any]) -> None:
        r = o["spec"]["http"][0]["route"]
        for dest, w in zip(r, weights):
            dest.pop("weight", None)
            if w is not None:
                dest["weight"] = w
        if record is not None:
            o["metadata"]["annotations"][RECORD] = record(o["metadata"]["annotations"][RECORD])
    api.edit(GROUP, "virtualservices", "ml", name, edit)


def _typed_end(text: str) -> str:
    rec = json.loads(text)
    rec["phase"] = "aborted"  # an end typed in after its promote was killed, weights left at the step's
    return json.dumps(rec)


def test_a_split_whose_weights_do_not_sum_to_100_under_an_ended_or_unreadable_record_is_ended(
        tmp_path: Path, cluster: Any) -> None:
    """m0: an end typed over a split edited to 80/30 (27% to the canary); m1: garbage over a route whose stable
    weight was deleted (/20: every request to the canary); m2: garbage over 0/0 (Istio refuses it). The listing
    was read strictly (two weights summing to 100): none of them was a split, so both sweeps skipped them and
    `canary sweep` said "no rollouts in progress", exit 0, the canary keeping its traffic for good."""
    from tests import fleet

    api, client, router = cluster
    kubeconfig = fleet.write_kubeconfig(tmp_path / "kubeconfig", api.url)
    now = time.time()
    for i in range(3):
        _claim(router, at=now - 1000, vs_name=f"m{i}")
    _edit(api, "m0", weights=(80, 30), record=_typed_end)
    _edit(api, "m1", weights=(None, 20), record=lambda _: "{not json")
    _edit(api, "m2", weights=(0, 0), record=lambda _: "{not json")

    # the controller's sweep reads the same listing (`scan`): each is a split nobody drives
    found = sweep.scan(router.list_virtual_services("ml"), lambda vs, key, text: 60.0, lambda owner: False)
    assert [f.key for f in found.unowned] == ["ml/m0", "ml/m1", "ml/m2"]

    first = _sweep(kubeconfig, "-n", "ml")
    assert first.exit_code == 0, first.output
    assert first.stdout.count("split under an ended or unreadable record: first seen now") == 3, first.stdout
    for name in ("m0", "m1", "m2"):
        _age_mark(api, name, 31)
    done = _sweep(kubeconfig, "-n", "ml")
    assert done.exit_code == 0, done.output
    assert done.stdout.count("stable 100%, recorded aborted") == 3, done.stdout
    assert [_route(api, f"m{i}") for i in range(3)] == [[100, 0]] * 3


def test_each_line_says_the_split_the_route_was_at_not_the_records(tmp_path: Path, cluster: Any) -> None:
    """m0: a killed promote's record at 80/20 over a route edited to 80/30; m1: garbage over 70/20. Each line
    gave the record's weights as what the route was at: "ml/m1:  unreadable at 100/0: ... stable 100%" (the
    stand-in's), for a route that sent 22% to the canary until the sweep moved it; "v2 progressing at 80/20"
    for one at 73/27. Now the line says the route's split as Istio routed it (and the record's beside it when
    they differ); -o json has it as `routedWeights`."""
    from tests import fleet

    api, client, router = cluster
    kubeconfig = fleet.write_kubeconfig(tmp_path / "kubeconfig", api.url)
    now = time.time()
    for i in range(3):
        _claim(router, at=now - 1000, vs_name=f"m{i}")
    _edit(api, "m0", weights=(80, 30))
    _edit(api, "m1", weights=(70, 20), record=lambda _: "{not json")
    assert _sweep(kubeconfig, "-n", "ml").exit_code == 0  # marks
    for name in ("m0", "m1", "m2"):
        _age_mark(api, name, 200)
    dry = _sweep(kubeconfig, "-n", "ml", "--dry-run", "-o", "json")
    rows = {r["virtualService"]: r for group in ("abandoned", "unowned") for r in json.loads(dry.stdout)[group]}
    assert rows["ml/m0"]["routedWeights"] == {"stable": 73, "canary": 27}
    assert rows["ml/m0"]["weights"] == {"stable": 80, "canary": 20}  # the record's, as before
    assert rows["ml/m1"]["routedWeights"] == {"stable": 78, "canary": 22}
    assert rows["ml/m2"]["routedWeights"] == rows["ml/m2"]["weights"] == {"stable": 80, "canary": 20}
    done = _sweep(kubeconfig, "-n", "ml")
    assert done.exit_code == 0, done.output
    lines = {ln.split(":", 1)[0]: ln for ln in done.stdout.splitlines()}
    assert lines["ml/m0"].startswith("ml/m0: v2 progressing at 73/27 as routed (recorded 80/20): stable 100%, "
                                     "recorded aborted"), done.stdout
    assert lines["ml/m1"] == "ml/m1: (unreadable record) at routed 78/22: stable 100%, recorded aborted", done.stdout
    assert lines["ml/m2"].startswith("ml/m2: v2 progressing at 80/20: stable 100%, recorded aborted"), done.stdout
    assert [_route(api, f"m{i}") for i in range(3)] == [[100, 0]] * 3


def test_a_rollout_ended_by_another_sweeper_meanwhile_is_not_said_to_have_a_live_owner(
        tmp_path: Path, cluster: Any) -> None:
    """m0 and m1: killed promotes, marked and aged. Between `canary sweep`'s listing and its write, the controller's
    sweep ends m0 (stable 100%, recorded aborted) and m1's promote, alive after all, records a look. Both writes are
    refused (guarded on the record read), and both lines said "left alone: its owner wrote since it was read",
    beside "its process is gone or stalled": m0 read as a live promote holding traffic. m0's line now says it was
    already ended, not by this sweep, and how the route is; m1's that its owner wrote, and what it is at now."""
    from tests import fleet

    api, client, router = cluster
    kubeconfig = fleet.write_kubeconfig(tmp_path / "kubeconfig", api.url)
    now = time.time()
    for i in range(2):
        _claim(router, at=now - 1000, vs_name=f"m{i}")
    assert _sweep(kubeconfig, "-n", "ml").exit_code == 0  # marks
    for name in ("m0", "m1"):
        _age_mark(api, name, 200)

    def meanwhile() -> None:  # in the API server, just before canary sweep's first write lands
        def ended(o: dict[str, Any]) -> None:
            rec = json.loads(o["metadata"]["annotations"][RECORD])
            rec.update(phase="aborted", weights={"stable": 100, "canary": 0}, reason="abandoned (controller sweep)")
            o["metadata"]["annotations"][RECORD] = json.dumps(rec)
            route = o["spec"]["http"][0]["route"]
            route[0]["weight"], route[1]["weight"] = 100, 0

        def looked(o: dict[str, Any]) -> None:
            rec = json.loads(o["metadata"]["annotations"][RECORD])
            rec["look"] = rec.get("look", 0) + 1
            o["metadata"]["annotations"][RECORD] = json.dumps(rec)
        api.handler.edit_object(GROUP, "virtualservices", "ml", "m0", ended)
        api.handler.edit_object(GROUP, "virtualservices", "ml", "m1", looked)

    api.before_next_write(meanwhile)
    done = _sweep(kubeconfig, "-n", "ml")
    assert done.exit_code == 0, done.output
    lines = {ln.split(":", 1)[0]: ln for ln in done.stdout.splitlines()}
    assert ("ml/m0: v2 progressing at 80/20: already ended since it was read (not by this sweep): recorded aborted, "
            "the route at 100/0: abandoned (controller sweep)") in lines["ml/m0"], done.stdout
    assert "its owner wrote" not in lines["ml/m0"]
    assert ("ml/m1: v2 progressing at 80/20: left alone: its owner wrote since it was read (progressing at 80/20 "
            "now)") in lines["ml/m1"], done.stdout
    assert _route(api, "m0") == [100, 0] and _route(api, "m1") == [80, 20]


def test_an_end_typed_over_the_split_meanwhile_is_not_said_already_ended(tmp_path: Path, cluster: Any) -> None:
    """m0: a killed promote, marked and aged. Between `canary sweep`'s listing and its write, a person types
    `aborted` into its record and leaves the weights at 80/20. The write is refused (guarded on the record read),
    and the line said "already ended since it was read", exit 0, while 20% still went to the canary. It now says
    the route still splits and that nobody drives it, and the exit is 3 (the review of decision 345)."""
    from tests import fleet

    api, client, router = cluster
    kubeconfig = fleet.write_kubeconfig(tmp_path / "kubeconfig", api.url)
    _claim(router, at=time.time() - 1000, vs_name="m0")
    assert _sweep(kubeconfig, "-n", "ml").exit_code == 0  # marks
    _age_mark(api, "m0", 200)

    def meanwhile() -> None:  # in the API server, just before canary sweep's write lands
        def typed(o: dict[str, Any]) -> None:
            rec = json.loads(o["metadata"]["annotations"][RECORD])
            rec.update(phase="aborted", reason="typed in by hand")
            o["metadata"]["annotations"][RECORD] = json.dumps(rec)
        api.handler.edit_object(GROUP, "virtualservices", "ml", "m0", typed)

    api.before_next_write(meanwhile)
    done = _sweep(kubeconfig, "-n", "ml")
    line = next(ln for ln in done.stdout.splitlines() if ln.startswith("ml/m0:"))
    assert "already ended" not in line, done.stdout
    assert "recorded aborted since it was read (not by this sweep), but the route still splits 80/20: nobody " \
           "drives it" in line, done.stdout
    assert done.exit_code == 3, done.output
    assert _route(api, "m0") == [80, 20]
