"""A GitOps tool that owns the VirtualService's manifest in git (100/0) and re-applies it on drift (decision 170).

Argo CD with `selfHeal`, or Flux's kustomize-controller, re-applies the route's manifest whenever the live
weights differ from git's. An apply (`kubectl apply`'s three-way merge, or a server-side apply) sets the
weights it owns and keeps canary's record annotation, which it never applied (`KubeAPIServer.gitops_apply`
models both; `replace=True` is `kubectl replace`, which drops it). Before decision 170 canary wrote its
weights again at every revert, for ever (`weights.reasserted`), and judged its looks over windows in which the
canary had had 0%. Now: the step's window starts over at every revert (no look judges the reverted stretch), and
the third revert in a row ends the rollout at stable 100%, `aborted`, with one line (`weights.reverted`) naming
the VirtualService, the field and the remedy.

Real Kubernetes API emulator and IstioRouter; promote on fake metrics that follow the live weights and a fake
clock (as test_promote_route_safety.py), the controller on the real backfilled Prometheus (as test_controller.py).
"""

from __future__ import annotations

import copy
import json
import time
from typing import Any, Callable

import pytest
import structlog.testing

from canary import crd
from canary import rollout as rl
from canary.sandbox.kubeapi import LAST_APPLIED
from tests import fleet
from tests.integration.test_controller import _progressing, prometheus, vs, world  # noqa: F401 - fixtures
from tests.integration.test_promote_route_safety import GROUP, HookClock, api, record, routes, runner  # noqa: F401

pytestmark = pytest.mark.integration
ANN = "modelcanary.dev/rollout"


def _git_manifest(api: Any, name: str = "m0") -> dict[str, Any]:
    """The VirtualService as its manifest in git says it: what was seeded, at 100/0, without canary's record."""
    live = api.get(GROUP, "virtualservices", "ml", name)
    meta = {k: live["metadata"][k] for k in ("name", "namespace")}
    manifest = {"apiVersion": live["apiVersion"], "kind": live["kind"], "metadata": meta,
                "spec": json.loads(json.dumps(live["spec"]))}
    for route in manifest["spec"]["http"]:
        for d in route["route"]:
            d["weight"] = 100 if d["destination"].get("subset") == "stable" else 0
    return manifest


def test_kmock_apply_keeps_an_annotation_it_never_applied_and_replace_drops_it(api: Any) -> None:
    """The model the tests below rest on: an apply of git's manifest reverts the weights and leaves canary's
    record; it removes what it applied before and no longer does; a replace drops the record too."""
    git = _git_manifest(api)
    assert api.gitops_apply(GROUP, "virtualservices", git)  # the first apply records last-applied
    api.edit(GROUP, "virtualservices", "ml", "m0", lambda o: (
        o["metadata"].setdefault("annotations", {}).update({ANN: '{"x": 1}', "by-hand": "y"}),
        [d.update(weight=w) for d, w in zip(o["spec"]["http"][0]["route"], (90, 10))]))
    git["metadata"]["annotations"] = {"team": "ml"}
    assert api.gitops_apply(GROUP, "virtualservices", git)
    live = api.get(GROUP, "virtualservices", "ml", "m0")
    assert routes(api)[0] == [("stable", 100), ("canary", 0)]
    assert live["metadata"]["annotations"][ANN] == '{"x": 1}' and live["metadata"]["annotations"]["team"] == "ml"
    del git["metadata"]["annotations"]  # dropped from git: the apply removes what it applied, nothing else
    assert api.gitops_apply(GROUP, "virtualservices", git)
    ann = api.get(GROUP, "virtualservices", "ml", "m0")["metadata"]["annotations"]
    assert "team" not in ann and ann[ANN] == '{"x": 1}' and ann["by-hand"] == "y" and LAST_APPLIED in ann
    assert not api.gitops_apply(GROUP, "virtualservices", git)  # in sync: no write
    assert api.gitops_apply(GROUP, "virtualservices", git, replace=True)
    assert ANN not in api.get(GROUP, "virtualservices", "ml", "m0")["metadata"]["annotations"]


class _SelfHeal(HookClock):
    """A fake clock under which a GitOps tool with selfHeal re-applies git's manifest at every sleep of
    `canary promote` once its rollout has moved traffic (as Argo CD does seconds after the drift)."""

    def __init__(self, api: Any, git: dict[str, Any]) -> None:
        super().__init__(api)
        self.git, self.reverts, self.promote_sleeps = git, 0, 0

    def sleep(self, seconds: float) -> None:
        super().sleep(seconds)
        self.promote_sleeps += 1
        assert self.promote_sleeps < 5000, "promote never ended: it fights the GitOps tool for ever"
        if record(self.api).get("phase") == rl.PROGRESSING and routes(self.api)[0][1][1] != 0:
            self.reverts += int(self.api.gitops_apply(GROUP, "virtualservices", self.git))


def test_promote_under_a_selfheal_ends_at_stable_after_three_reverts_with_one_line(api: Any) -> None:
    api.gitops_apply(GROUP, "virtualservices", _git_manifest(api))  # git's manifest, applied before the rollout
    clock = _SelfHeal(api, _git_manifest(api))
    promote = runner(api, "v2", clock)
    with structlog.testing.capture_logs() as logs:
        res = promote.run()
    assert res.exit_code == 3 and res.state.phase == rl.ABORTED, (res.exit_code, res.state.reason)
    assert routes(api)[0] == [("stable", 100), ("canary", 0)] and record(api)["phase"] == rl.ABORTED
    assert clock.reverts == 3, clock.reverts  # three reverts, then no more writes of a split to revert
    lines = [e for e in logs if e["event"] == "weights.reverted"]
    assert len(lines) == 1, lines
    line = lines[0]
    # the VirtualService as every line names it: its name, and `namespace` beside it (decision 677's addendum)
    assert line["virtual_service"] == "m0" and line["namespace"] == "ml", line
    assert line["field"] == "spec.http[0].route[*].weight", line
    assert "ignoreDifferences" in line["remedy"] and "/spec/http/0/route/0/weight" in line["remedy"], line
    assert "/metadata/annotations/modelcanary.dev~1rollout" in line["remedy"] and "Flux" in line["remedy"], line
    assert "/metadata/annotations/modelcanary.dev~1service" in line["remedy"], line  # decision 523's note too
    assert "VirtualService ml/m0" in res.state.reason and "ignoreDifferences" in res.state.reason
    assert record(api)["reason"] == res.state.reason
    # never judged at a weight it did not have: no look judged, no step passed, nothing promoted
    assert not [e for e in logs if e["event"] in ("check.passed", "step.passed", "rollout.promoted")], \
        sorted({e["event"] for e in logs})
    assert record(api)["look"] == 0 and record(api)["step"] == 0
    reasserted = [e for e in logs if e["event"] == "weights.reasserted"]
    assert [e["reverts"] for e in reasserted] == [1, 2], reasserted


def test_a_revert_now_and_then_restarts_the_window_and_the_rollout_goes_on(api: Any) -> None:
    """One revert (a sync of an unrelated change) is reasserted, its window started over, and the count of
    reverts in a row ends at the next look judged: the good canary is promoted. (A second window's pass level
    is stricter, as after a resume: the step's deadline here leaves it time to show.)"""
    api.gitops_apply(GROUP, "virtualservices", _git_manifest(api))
    git = _git_manifest(api)
    clock = HookClock(api)
    done: list[int] = []

    def once_per_step() -> None:
        rec = record(api)
        if rec.get("phase") == rl.PROGRESSING and rec.get("step_looks") == 1 and rec.get("step") not in done:
            done.append(rec["step"])
            api.gitops_apply(GROUP, "virtualservices", git)
        clock.hooks.append((lambda rec: True, once_per_step))

    clock.hooks.append((lambda rec: True, once_per_step))
    policy = copy.deepcopy(fleet.FAST_POLICY)
    policy["failure"]["no_data_deadline"] = "60s"
    with structlog.testing.capture_logs() as logs:
        res = runner(api, "v2", clock, policy=policy).run()
    assert res.exit_code == 0 and res.state.phase == rl.PROMOTED, res.state.reason
    reasserted = [e for e in logs if e["event"] == "weights.reasserted"]
    assert reasserted and all(e["reverts"] == 1 for e in reasserted), reasserted
    assert not [e for e in logs if e["event"] == "weights.reverted"]
    assert any("the step's window starts over" in h["what"] for h in record(api)["history"]), record(api)["history"]


def test_promote_never_judges_a_look_whose_route_it_could_not_read_again(api: Any) -> None:
    """A revert lands while a look measures, and the API server answers the read after the look with 503s (its
    four tries): the look is discarded (`look.discarded`, weights unknown), the watch reads again and reasserts
    (one revert, counted), and the good canary is promoted on later looks. Before (decision 171), an unreadable
    route let the look be judged at 80/20 while the route said 100/0, and its write put 80/20 back over the
    revert: no `weights.reasserted`, the revert never seen."""
    api.gitops_apply(GROUP, "virtualservices", _git_manifest(api))
    git = _git_manifest(api)
    clock = HookClock(api)
    policy = copy.deepcopy(fleet.FAST_POLICY)
    policy["failure"]["no_data_deadline"] = "60s"
    promote = runner(api, "v2", clock, policy=policy)
    real = promote.metrics.request_counts  # the last query of a look (`measure_window`)
    fired: list[int] = []  # the count of looks judged when the revert landed
    logs: list[dict[str, Any]] = []

    def counts(*a: Any, **kw: Any) -> Any:
        out = real(*a, **kw)
        rec = record(api)
        if not fired and rec.get("phase") == rl.PROGRESSING and rec.get("step_looks") == 1:
            assert api.gitops_apply(GROUP, "virtualservices", git)
            api.fail_next(503, times=4, methods=("GET",), plural="virtualservices")
            fired.append(sum(e["event"] == "look.completed" for e in logs))
        return out

    promote.metrics.request_counts = counts  # type: ignore[method-assign]
    with structlog.testing.capture_logs() as captured:
        logs = captured
        res = promote.run()
    assert fired, "no look measured at the first step's second look"
    assert res.exit_code == 0 and res.state.phase == rl.PROMOTED, res.state.reason
    events = [e["event"] for e in logs]
    assert "weights.reasserted" in events, sorted(set(events))
    first = events.index("weights.reasserted")
    assert events[:first].count("look.completed") == fired[0], events[:first]  # the look that met the revert
    discarded = [e for e in logs[:first] if e["event"] == "look.discarded"]
    assert len(discarded) == 1 and discarded[0]["weights"] == "unknown", discarded
    assert [e["reverts"] for e in logs if e["event"] == "weights.reasserted"] == [1]


def _progressing_under_git(api: Any, op: Any, custom: Any) -> dict[str, Any]:
    """The fleet's first route applied by a GitOps tool, and a CanaryRollout for v2 on it taken to its first
    step by the controller `op`; returns the manifest the tool re-applies (its git state) to revert it."""
    name = fleet.model(0)
    api.gitops_apply(GROUP, "virtualservices", _git_manifest(api, name))
    git = _git_manifest(api, name)
    custom.create_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, fleet.rollout_object(0, "v2"))
    _progressing(op, custom, api)
    return git


def test_the_controller_under_a_selfheal_ends_at_stable_after_three_reverts(world: Any) -> None:
    api, op, custom = world
    git = _progressing_under_git(api, op, custom)
    reverts = 0
    with structlog.testing.capture_logs() as logs:
        for _ in range(10):
            if vs(api, 0)[0][1]:
                reverts += int(api.gitops_apply(GROUP, "virtualservices", git))
            op.tick()
            time.sleep(0.2)
    weights, rec = vs(api, 0)
    st = custom.get_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, "r0")["status"]
    assert weights == [100, 0] and rec["phase"] == rl.ABORTED and reverts == 3, (weights, rec["phase"], reverts)
    assert st["phase"] == rl.ABORTED and f"VirtualService ml/{fleet.model(0)}" in st["reason"], st
    lines = [e for e in logs if e["event"] == "weights.reverted"]
    assert len(lines) == 1 and lines[0]["virtual_service"] == fleet.model(0) and lines[0]["namespace"] == "ml", lines
    assert "/spec/http/0/route/1/weight" in lines[0]["remedy"], lines


class _RevertAsTheLookMeasures:
    """The controller's batched snapshot (a look's measurement) with a GitOps apply of git's manifest landing just
    before it is taken: after the tick read the route (and found our weights), before the look is judged. Armed,
    it fires once, at the first snapshot that serves a due look of `key` (its step-start snapshot is held: a tick
    takes a snapshot then only for a look). `act`, when given, is the foreign write instead (True: it landed)."""

    def __init__(self, api: Any, op: Any, git: dict[str, Any] | None, key: str = "ml/r0",
                 act: Callable[[], bool] | None = None) -> None:
        self.api, self.op, self.git, self.key = api, op, git, key
        self.act = act or (lambda: bool(self.api.gitops_apply(GROUP, "virtualservices", self.git)))
        self.real, self.armed, self.fired = op.batch.snapshot, False, 0

    def __call__(self, wants: Any, **kw: Any) -> Any:
        if self.armed and self.op._step_starts.get(self.key) is not None:
            self.armed = False
            self.fired += int(self.act())
        return self.real(wants, **kw)


def test_the_controller_never_judges_a_look_measured_after_a_revert_it_had_not_read(world: Any) -> None:
    """A revert landing between the tick's read of the route and the look's measurement: the look is discarded
    (`look.discarded`), the revert handled at once as a tick handles one (reasserted, the window started over,
    counted). Before, the look was judged at a weight the canary did not have, and its write put our weights
    back over the revert with no `weights.reasserted` and no count: the revert was never seen."""
    api, op, custom = world
    name = fleet.model(0)
    api.gitops_apply(GROUP, "virtualservices", _git_manifest(api, name))
    hook = _RevertAsTheLookMeasures(api, op, _git_manifest(api, name))
    op.batch.snapshot = hook
    custom.create_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, fleet.rollout_object(0, "v2"))
    _progressing(op, custom, api)
    before = vs(api, 0)[1]
    hook.armed = True
    with structlog.testing.capture_logs() as logs:
        for _ in range(100):
            op.tick()
            if hook.fired:
                break
            time.sleep(0.1)
    assert hook.fired == 1, "no look was due within 100 ticks"
    weights, rec = vs(api, 0)
    events = [e["event"] for e in logs]
    assert "look.completed" not in events and rec.get("look") == before.get("look"), (events, rec)
    discarded = [e for e in logs if e["event"] == "look.discarded"]
    assert len(discarded) == 1 and discarded[0]["weights"] == str(rl.Weights(100, 0)), discarded
    reasserted = [e for e in logs if e["event"] == "weights.reasserted"]
    assert [e["reverts"] for e in reasserted] == [1], reasserted
    assert weights == [80, 20] and rec["phase"] == rl.PROGRESSING and rec.get("reverts") == 1, (weights, rec)
