"""A review of decisions 522 and 523 (decision 533): a VirtualService shared by two models (m0's route and m1's,
each to its own subsets), m0's rollout recorded at 80/20, and the edits that met the stable-100% write: m0's route
answering every request itself, m0's DestinationRule unreadable, the service note beside the record turned to
garbage or to another service, the service renamed. Real Kubernetes API emulator and CLI; no rollout is run."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from typer.testing import CliRunner

from canary.cli import app
from tests import fleet

pytestmark = pytest.mark.integration
GROUP = "networking.istio.io"
M0, M1 = "m0.ml.svc.cluster.local", "m1.ml.svc.cluster.local"


def _record(route: str, started: float = 1.0) -> str:
    return json.dumps({"model": "m0", "stable_version": "v1", "canary_version": "v2", "phase": "progressing",
                       "weights": {"stable": 80, "canary": 20}, "step": 1, "started_at": started,
                       "step_started_at": 2.0, "route": route})


def _note(service: str, started: float = 1.0, route: str = "") -> str:
    """The note beside the record, as canary writes it: with the driven route's name since decision 549."""
    return json.dumps({"service": service, "started_at": started, **({"route": route} if route else {})},
                      sort_keys=True, separators=(",", ":"))


def _m1_route(w: tuple[int, int]) -> dict[str, Any]:
    return {"name": "other-model", "match": [{"uri": {"prefix": "/v2/models/m1"}}],
            "route": [{"destination": {"host": M1, "subset": "stable"}, "weight": w[0]},
                      {"destination": {"host": M1, "subset": "canary"}, "weight": w[1]}]}


def _cli(api: Any, tmp_path: Any, *args: str) -> Any:
    kc = fleet.write_kubeconfig(tmp_path / "kubeconfig", api.url)
    return CliRunner().invoke(app, [*args, "m0", "-n", "ml", "--kubeconfig", str(kc)])


@pytest.fixture
def api() -> Any:
    server = fleet.start_api(2)
    yield server
    server.stop()


def _shared(api: Any, *, redirect: bool, note: str | None, route: str = "primary",
            theirs: tuple[int, int] = (80, 20)) -> dict[str, Any]:
    """VirtualService m0 shared with model m1 (its route at `theirs`); m0's rollout recorded at 80/20 on
    `route`; m0's route edited into a redirect when `redirect`."""
    def edit(vs: dict[str, Any]) -> None:
        ours = vs["spec"]["http"][0]
        if route:
            ours["name"] = route
        if redirect:
            del ours["route"]
            ours["redirect"] = {"uri": "/maintenance"}
        else:
            ours["route"][0]["weight"], ours["route"][1]["weight"] = 80, 20
        vs["spec"]["http"].insert(0, _m1_route(theirs))
        ann = vs["metadata"].setdefault("annotations", {})
        ann["modelcanary.dev/rollout"] = _record(route)
        if note is not None:
            ann["modelcanary.dev/service"] = note
    api.edit(GROUP, "virtualservices", "ml", "m0", edit)
    return copy.deepcopy(api.get(GROUP, "virtualservices", "ml", "m0")["spec"]["http"][0])


def _rehost_rule(api: Any, host: str) -> None:
    """m0's DestinationRule edited to name service `host`."""
    def edit(dr: dict[str, Any]) -> None:
        dr["spec"]["host"] = host
    api.edit(GROUP, "destinationrules", "ml", "m0", edit)


def _drop_canary_subset(dr: dict[str, Any]) -> None:
    dr["spec"]["subsets"] = [s for s in dr["spec"]["subsets"] if s["name"] != "canary"]


@pytest.mark.parametrize("note", [_note(M0), None], ids=["noted", "no note"])
def test_redirect_on_a_shared_vs_with_the_rule_unreadable_never_writes_the_other_models_route(
        api: Any, tmp_path: Any, note: str | None) -> None:
    """m0's route redirected mid-rollout; m0's DestinationRule loses its canary subset (or is unreadable);
    m1's route sits at 80/20 (the weights m0 recorded: the same policy's step). The rollback must not set
    m1's route to 100/0: it is another model's object."""
    theirs = _shared(api, redirect=True, note=note)
    api.edit(GROUP, "destinationrules", "ml", "m0", _drop_canary_subset)
    r = _cli(api, tmp_path, "rollback", "--reason", "pager")
    vs = api.get(GROUP, "virtualservices", "ml", "m0")
    assert vs["spec"]["http"][0] == theirs, (r.exit_code, r.output[-2000:])  # was written 100/0, exit 0
    phase = json.loads(vs["metadata"]["annotations"]["modelcanary.dev/rollout"])["phase"]
    if note:  # the note tells m1's route from a copy of m0's split: the rollback ends, nothing to the canary
        assert r.exit_code == 0 and phase == "rolled_back", r.output
    else:  # neither rule nor note says whose the 80/20 is: when in doubt, said (exit 6), not written
        assert r.exit_code == 6 and "traffic.unsafe" in r.output and phase == "progressing", r.output


def test_redirect_on_a_shared_vs_with_the_rule_intact_leaves_the_other_models_route(api: Any, tmp_path: Any) -> None:
    theirs = _shared(api, redirect=True, note=_note(M0))
    r = _cli(api, tmp_path, "rollback", "--reason", "pager")
    assert r.exit_code == 0, r.output
    assert api.get(GROUP, "virtualservices", "ml", "m0")["spec"]["http"][0] == theirs



def _third_destination(vs: dict[str, Any]) -> None:  # a shape no rollout starts from: the stable-100% path
    ours = vs["spec"]["http"][1]
    ours["route"].append({"destination": {"host": M0, "subset": "shadow"}, "weight": 0})


@pytest.mark.parametrize("garbage", ["note", "record"])
def test_a_note_or_record_of_garbage_is_unread_and_stable_100_still_written(api: Any, tmp_path: Any,
                                                                           garbage: str) -> None:
    """The note is documented "unread when it cannot be read", yet the stable-100% write's read of it raised past
    `except ValueError`: JSON nested past the recursion limit (RecursionError), and a record whose `started_at` is
    an integer too large for a float (OverflowError from math.isfinite). `canary rollback` died with exit 3
    ("unexpected error"), nothing written, the canary still at 20%, no traffic.unsafe."""
    theirs = _shared(api, redirect=False, note="[" * 100000 if garbage == "note" else _note(M0))
    api.edit(GROUP, "virtualservices", "ml", "m0", _third_destination)
    if garbage == "record":
        def huge(vs: dict[str, Any]) -> None:
            rec = vs["metadata"]["annotations"]["modelcanary.dev/rollout"]
            vs["metadata"]["annotations"]["modelcanary.dev/rollout"] = rec.replace('"started_at": 1.0',
                                                                                   '"started_at": 1' + "0" * 400)
        api.edit(GROUP, "virtualservices", "ml", "m0", huge)
    r = _cli(api, tmp_path, "rollback", "--reason", "pager", "--route", "primary")
    assert "unexpected error" not in r.output, r.output[-1500:]
    http = api.get(GROUP, "virtualservices", "ml", "m0")["spec"]["http"]
    assert http[0] == theirs and [d["weight"] for d in http[1]["route"]] == [100, 0, 0], (r.exit_code, r.output[-1500:])


@pytest.mark.parametrize("noted", ["route", "service only"])
def test_a_service_renamed_in_route_and_rule_together_still_gets_stable_100(api: Any, tmp_path: Any,
                                                                           noted: str) -> None:
    """Decision 523 says a rule and route re-pointed together to another service are written as before. On a
    route the rollout claimed as the only one, with m1's route added since (so no record's route name tells them
    apart), the note still names the old service: the rule (m0b) was neither the route set's nor the note's, and
    the rollback refused (exit 6) where it wrote stable 100% before 523, the canary left at 20%. The note now names
    the route written (decision 549): `primary`, to m0b as its rule says, is the rollout's, written stable 100%.
    An older canary's note (the service only) cannot tell this from decision 523's attack with the rollout's route
    redirected (m0 routed nowhere, the rule naming a service one route sends to): refused, nothing written."""
    theirs = _shared(api, redirect=False, note=_note(M0, route="primary" if noted == "route" else ""), route="",
                     theirs=(50, 50))

    def renamed(vs: dict[str, Any]) -> None:
        for d in vs["spec"]["http"][1]["route"]:
            d["destination"]["host"] = "m0b"
    api.edit(GROUP, "virtualservices", "ml", "m0", renamed)
    _rehost_rule(api, "m0b")
    r = _cli(api, tmp_path, "rollback", "--reason", "pager")
    http = api.get(GROUP, "virtualservices", "ml", "m0")["spec"]["http"]
    assert http[0] == theirs
    if noted == "route":  # was exit 6, the canary at 20%
        assert r.exit_code == 0 and [d["weight"] for d in http[1]["route"]] == [100, 0], (r.exit_code, r.output[-1500:])
    else:
        assert r.exit_code == 6 and "traffic.unsafe" in r.output, (r.exit_code, r.output[-1500:])
        assert [d["weight"] for d in http[1]["route"]] == [80, 20]


def test_the_rule_re_hosted_to_the_other_models_service_beside_a_redirect_is_still_refused(
        api: Any, tmp_path: Any) -> None:
    """Decision 523's attack (m0's rule edited to m1's service) with m0's claimed route redirected: the route's name
    noted (decision 549) finds a route that sends to no service, and the rule names m1, whose route is m1's own:
    nothing written (not m1's route, not the rule), exit 6."""
    theirs = _shared(api, redirect=True, note=_note(M0, route="primary"), route="", theirs=(50, 50))
    rule = api.get(GROUP, "destinationrules", "ml", "m0")
    _rehost_rule(api, "m1")
    r = _cli(api, tmp_path, "rollback", "--reason", "pager")
    assert api.get(GROUP, "virtualservices", "ml", "m0")["spec"]["http"][0] == theirs, (r.exit_code, r.output[-800:])
    assert r.exit_code == 6 and "traffic.unsafe" in r.output, (r.exit_code, r.output[-800:])
    assert api.get(GROUP, "destinationrules", "ml", "m0")["spec"]["subsets"] == rule["spec"]["subsets"]


@pytest.mark.parametrize("noted", ["route", "service only"])
def test_a_note_edited_by_hand_to_the_other_models_service_never_writes_that_models_route(
        api: Any, tmp_path: Any, noted: str) -> None:
    """The note (same `started_at`) edited to name m1's service, on a route the rollout claimed as the only one with
    m1's route added since: `route_for` trusted the note over the rule and named m1's route; nothing was written
    (the rule disagrees), but m0's route stayed at 80/20 (exit 6) and `canary status` showed m1's route at 50/50 as
    the rollout's. Either note is the mirror of decision 523's attack (the rule edited to m1, the note right; with
    the name noted, m0's route renamed and m1's given its name: the test below), which no object tells apart:
    nothing is written, exit 6, said (`traffic.unsafe`). With the route's name noted, both are said as what they
    are (the name and the rule agree on one route, another sends to the noted service; decision 555), and status
    no longer shows m1's route as the rollout's (decision 549 wrote `primary` stable 100% here, which in the mirror
    case was m1's route)."""
    theirs = _shared(api, redirect=False, note=_note(M1, route="primary" if noted == "route" else ""), route="",
                     theirs=(50, 50))
    shown = _cli(api, tmp_path, "status", "-o", "json")
    r = _cli(api, tmp_path, "rollback", "--reason", "pager")
    http = api.get(GROUP, "virtualservices", "ml", "m0")["spec"]["http"]
    assert http[0] == theirs, (r.exit_code, r.output[-1500:])
    if noted == "route":  # was exit 6 naming m1's route, and status showed m1's route at 50/50 (533, left)
        said = "names route 'primary' and service m1.ml.svc.cluster.local, but route 'primary' sends to m0"
        assert r.exit_code == 6 and "traffic.unsafe" in r.output and said in r.output, (r.exit_code, r.output[-800:])
        assert [d["weight"] for d in http[1]["route"]] == [80, 20]
        assert shown.exit_code == 2 and said in shown.output, shown.output
    else:
        assert r.exit_code == 6 and "traffic.unsafe" in r.output, (r.exit_code, r.output[-800:])
        assert [d["weight"] for d in http[1]["route"]] == [80, 20]


@pytest.mark.parametrize("rule", ["intact", "unread"])
def test_a_claimed_only_route_redirected_beside_an_added_route_ends_without_a_page(api: Any, tmp_path: Any,
                                                                                   rule: str) -> None:
    """Decision 522 reads a redirect as "nothing to the canary" on the route named, or the only one. m0's rollout
    claimed the only route (unnamed in its record); m1's route was added since, then m0's route redirected: no
    route of the VirtualService sends anything to m0's subsets (the rule and the note both say m0), yet the
    rollback finds "none of its 2 HTTP routes has a 'stable' destination beside others": exit 6, `traffic.unsafe`."""
    theirs = _shared(api, redirect=True, note=_note(M0), route="", theirs=(50, 50))
    if rule == "unread":  # every route with a `stable` destination was a candidate: m1's was written 100/0, exit 0
        api.edit(GROUP, "destinationrules", "ml", "m0", _drop_canary_subset)
    r = _cli(api, tmp_path, "rollback", "--reason", "pager")
    vs = api.get(GROUP, "virtualservices", "ml", "m0")
    assert vs["spec"]["http"][0] == theirs, (r.exit_code, r.output[-700:])
    assert r.exit_code == 0 and "traffic.unsafe" not in r.output, (r.exit_code, r.output[-700:])
    assert json.loads(vs["metadata"]["annotations"]["modelcanary.dev/rollout"])["phase"] == "rolled_back"


def test_the_other_models_route_carrying_the_noted_name_is_never_the_claimed_one(api: Any, tmp_path: Any) -> None:
    """A review of decision 549 (decision 555): the note names the route m0's rollout claimed (`primary`); since
    then m0's route was renamed (`m0-route`, still at 80/20 to m0) and m1's route carries the name `primary`, and
    m0's rule was edited to m1's service (decision 523's attack). The name found m1's route, the rule "agreeing"
    with it: the rollback wrote m1's route 100/0 and pointed m0's rule (now naming m1), exit 0 "rolled back", m0's
    canary left at 20%. A route found by the rule alone is the rollout's only while no other route sends to the
    noted service: refused here, nothing written, exit 6, as before 549."""
    theirs = _shared(api, redirect=False, note=_note(M0, route="primary"), route="", theirs=(50, 50))

    def names(vs: dict[str, Any]) -> None:
        vs["spec"]["http"][0]["name"], vs["spec"]["http"][1]["name"] = "primary", "m0-route"
    api.edit(GROUP, "virtualservices", "ml", "m0", names)
    _rehost_rule(api, "m1")
    r = _cli(api, tmp_path, "rollback", "--reason", "pager")
    http = api.get(GROUP, "virtualservices", "ml", "m0")["spec"]["http"]
    assert http[0] == {**theirs, "name": "primary"}, (r.exit_code, r.output[-800:])  # was 100/0
    assert [d["weight"] for d in http[1]["route"]] == [80, 20]
    assert r.exit_code == 6 and "traffic.unsafe" in r.output, (r.exit_code, r.output[-800:])


def test_a_claimed_only_route_redirected_with_the_rule_unread_still_ends_a_tcp_split(api: Any, tmp_path: Any) -> None:
    """A review of decision 548 (decision 556): m0's claimed route redirected beside m1's route, m0's rule unread
    (its canary subset gone, or a read that failed), and a TCP route of m0's service splitting 80/20 with its
    canary subset. 548 ends the rollback (exit 0, "rolled back": nothing to the canary by any HTTP route), and the
    rollback's clean-up of other routes splitting with the canary (decision 129) knew the service only from the rule
    or the driven route, neither there: the TCP route kept sending 20% to the rolled-back canary. The service noted
    at the rollout's writes names it."""
    theirs = _shared(api, redirect=True, note=_note(M0), route="", theirs=(50, 50))

    def tcp(vs: dict[str, Any]) -> None:
        vs["spec"]["tcp"] = [{"match": [{"port": 9000}],
                              "route": [{"destination": {"host": "m0", "subset": "stable"}, "weight": 80},
                                        {"destination": {"host": "m0", "subset": "canary"}, "weight": 20}]}]
    api.edit(GROUP, "virtualservices", "ml", "m0", tcp)
    api.edit(GROUP, "destinationrules", "ml", "m0", _drop_canary_subset)
    r = _cli(api, tmp_path, "rollback", "--reason", "pager")
    vs = api.get(GROUP, "virtualservices", "ml", "m0")
    assert r.exit_code == 0 and vs["spec"]["http"][0] == theirs, (r.exit_code, r.output[-800:])
    assert [d["weight"] for d in vs["spec"]["tcp"][0]["route"]] == [100, 0], (r.exit_code, r.output[-800:])
    # and on-call reads that the rollback changed another route than its own (r-g's review: it was silent)
    assert "rollback.other_routes" in r.output and "tcp[0]: its split with the canary ended" in r.output, r.output


@pytest.mark.parametrize("ours", ["redirected", "deleted"])
@pytest.mark.parametrize("recorded", ["claimed", "named"])
def test_the_other_models_route_given_the_noted_name_beside_the_rollouts_route_gone_is_never_written(
        api: Any, tmp_path: Any, ours: str, recorded: str) -> None:
    """Decision 555's left case (decision 570): the note names `primary` and m0 (the rollout claimed the only route,
    its record naming none; or its record names `primary`); m0's route renamed and then redirected (or deleted),
    m1's route given the name `primary`, m0's rule edited to m1's service. No route sends to m0 any more, so to the
    name and the rule this was 549's case (1) (route and rule re-pointed together): the rollback wrote m1's route
    100/0, pointed m0's rule (now naming m1) and exited 0. The note now carries the route's match too: a route that
    sends to none of the noted service and takes other requests than the noted match is not the rollout's; nothing
    is written, exit 6. (549's case (1) keeps its match: still written, `test_a_service_renamed_...`.)"""
    from canary.routing import patch

    if recorded == "named":
        _shared(api, redirect=False, note=None, route="primary", theirs=(50, 50))
        _cli(api, tmp_path, "pause")  # a write of this canary: the note as it writes it (the route's name and match)
    else:
        _shared(api, redirect=False, note=None, route="", theirs=(50, 50))

        def claimed(vs: dict[str, Any]) -> None:
            vs["spec"]["http"][1]["name"] = "primary"
            vs["metadata"]["annotations"]["modelcanary.dev/service"] = json.dumps(
                {"match": patch.route_match(vs["spec"]["http"][1]), "route": "primary", "service": M0,
                 "started_at": 1.0}, sort_keys=True, separators=(",", ":"))
        api.edit(GROUP, "virtualservices", "ml", "m0", claimed)
    theirs = copy.deepcopy(api.get(GROUP, "virtualservices", "ml", "m0")["spec"]["http"][0])

    def edit(vs: dict[str, Any]) -> None:
        http = vs["spec"]["http"]
        http[0]["name"], http[1]["name"] = "primary", "m0-route"
        if ours == "deleted":
            del http[1]
        else:
            del http[1]["route"]
            http[1]["redirect"] = {"uri": "/maintenance"}
    api.edit(GROUP, "virtualservices", "ml", "m0", edit)
    _rehost_rule(api, "m1")
    r = _cli(api, tmp_path, "rollback", "--reason", "pager")
    vs = api.get(GROUP, "virtualservices", "ml", "m0")
    assert vs["spec"]["http"][0] == {**theirs, "name": "primary"}, (r.exit_code, r.output[-800:])  # was 100/0
    assert api.get(GROUP, "destinationrules", "ml", "m0")["spec"]["host"] == "m1"
    assert r.exit_code == 6 and "traffic.unsafe" in r.output, (r.exit_code, r.output[-800:])


def _claimed_with_match(vs: dict[str, Any]) -> None:
    """The rollout's claimed route (http[1]) given two match blocks, and the note as this canary writes it at a step:
    the route's name, service and match."""
    from canary.routing import patch

    vs["spec"]["http"][1]["name"] = "primary"
    vs["spec"]["http"][1]["match"] = [{"uri": {"prefix": "/v2/models/m0"}}, {"headers": {"x-model": {"exact": "m0"}}}]
    vs["metadata"]["annotations"]["modelcanary.dev/service"] = json.dumps(
        {"match": patch.route_match(vs["spec"]["http"][1]), "route": "primary", "service": M0, "started_at": 1.0},
        sort_keys=True, separators=(",", ":"))


def _repointed(edit_match: Any) -> Any:
    def edit(vs: dict[str, Any]) -> None:
        ours = vs["spec"]["http"][1]
        for d in ours["route"]:
            d["destination"]["host"] = "m0b"
        edit_match(ours)
    return edit


def test_a_route_re_pointed_with_its_rule_and_its_match_blocks_reordered_still_gets_stable_100(
        api: Any, tmp_path: Any) -> None:
    """A review of decision 570 (decision 580): 549's case (1), m0's claimed route and its rule re-pointed together
    to m0b, by a GitOps tool that re-rendered the route with its two (OR-ed) match blocks in the other order: the
    same requests taken. The fingerprint was of the text: another match, so the route was "another model's", the
    rollback refused (exit 6, 80/20 left to the canary) where before 570 it wrote stable 100%."""
    theirs = _shared(api, redirect=False, note=None, route="", theirs=(50, 50))
    api.edit(GROUP, "virtualservices", "ml", "m0", _claimed_with_match)
    api.edit(GROUP, "virtualservices", "ml", "m0", _repointed(lambda route: route["match"].reverse()))
    _rehost_rule(api, "m0b")
    r = _cli(api, tmp_path, "rollback", "--reason", "pager")
    http = api.get(GROUP, "virtualservices", "ml", "m0")["spec"]["http"]
    assert http[0] == theirs, (r.exit_code, r.output[-1500:])
    assert r.exit_code == 0 and [d["weight"] for d in http[1]["route"]] == [100, 0], (r.exit_code, r.output[-1500:])


@pytest.mark.parametrize("route", ["", "primary"], ids=["found", "named"])
def test_a_route_re_pointed_with_its_rule_and_its_match_edited_says_the_way_out(api: Any, tmp_path: Any,
                                                                               route: str) -> None:
    """A review of decision 570 (decision 580): 549's case (1) with a header added to the route's match at the same
    edit is, to the objects, 570's attack (another model's route given the name, the rule edited to its service):
    refused, exit 6, as 570 decided. But the words were a dead end: named (`--route primary`), "find the rollout's
    route, then `canary rollback MODEL --route ROUTE`", which refuses the same again; found (no `--route`), 523's
    "the rollout's route sends to m0 ... mend the rule's host", where no route sends to m0 and the rule is right.
    They now name both readings and each way out; removing the note, the way out for the rollout's own, writes
    stable 100% on it."""
    theirs = _shared(api, redirect=False, note=None, route="", theirs=(50, 50))
    api.edit(GROUP, "virtualservices", "ml", "m0", _claimed_with_match)

    def header(ours: dict[str, Any]) -> None:
        ours["match"][0]["headers"] = {"x-tenant": {"exact": "a"}}
    api.edit(GROUP, "virtualservices", "ml", "m0", _repointed(header))
    _rehost_rule(api, "m0b")
    r = _cli(api, tmp_path, "rollback", "--reason", "pager", *(["--route", route] if route else []))
    http = api.get(GROUP, "virtualservices", "ml", "m0")["spec"]["http"]
    assert r.exit_code == 6 and "traffic.unsafe" in r.output, (r.exit_code, r.output[-1500:])
    assert [d["weight"] for d in http[1]["route"]] == [80, 20] and http[0] == theirs
    said = ("route primary of ml/m0 sends to m0b.ml.svc.cluster.local, but it takes other requests (its match) than "
            "the route noted")
    way_out = "kubectl annotate virtualservice m0 -n ml modelcanary.dev/service-"
    assert said in r.output and way_out in r.output and "--route ROUTE" not in r.output, r.output[-1500:]

    def unnote(vs: dict[str, Any]) -> None:
        del vs["metadata"]["annotations"]["modelcanary.dev/service"]
    api.edit(GROUP, "virtualservices", "ml", "m0", unnote)
    r = _cli(api, tmp_path, "rollback", "--reason", "pager")
    http = api.get(GROUP, "virtualservices", "ml", "m0")["spec"]["http"]
    assert r.exit_code == 0 and [d["weight"] for d in http[1]["route"]] == [100, 0] and http[0] == theirs, r.output
