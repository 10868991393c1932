"""A signal whose handler's exception native code lost still ends the command (decision 225).

The kubernetes client wraps every API method in pydantic's `validate_call`, built on its first call: a SIGTERM
landing while pydantic-core built or ran it came out as a `SchemaError` (read by `kube.translate` as the API
unreachable, so read again) or was printed "Exception ignored in: 'get_namespaced_custom_object'" and dropped.
A `promote --via-controller` follower cancelled by its CI job went on following until `--timeout`, and a
`promote` signalled while building its clients went on to begin the rollout. Each test below delivers a real
signal to this process inside a layer that swallows what the handler raises, as that native code did; the
strict Kubernetes API emulator answers."""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml
from typer.testing import CliRunner

from canary import crd
from canary.cli import app
from tests import fleet

pytestmark = pytest.mark.integration


@pytest.fixture
def api() -> Iterator[Any]:
    server = fleet.start_api(1)
    yield server
    server.stop()


def _swallowed(sig: int) -> None:
    """`sig` delivered to this process, its handler's exception lost as pydantic-core lost it."""
    try:
        signal.raise_signal(sig)
    except BaseException:  # noqa: BLE001 - what "Exception ignored in" does
        pass


def _args(api: Any, tmp_path: Path, *more: str) -> list[str]:
    kubeconfig = fleet.write_kubeconfig(tmp_path / "kubeconfig", api.url)
    policy = tmp_path / "policy.yaml"
    policy.write_text(yaml.safe_dump(fleet.FAST_POLICY))
    return ["promote", "m0", "--canary-version", "v2", "--policy", str(policy), "-n", "ml",
            "--kubeconfig", str(kubeconfig), "-o", "json", *more]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_follower_whose_signal_was_lost_in_a_read_exits_3_at_its_next_read(
        api: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sig: int) -> None:
    from canary import cli_controller

    real, reads = cli_controller._read_own, []

    def read_own(*args: Any) -> Any:
        reads.append(1)
        if len(reads) == 1:  # the first read: the signal lands in the client and its raise is lost
            _swallowed(sig)
            return None  # as `_read_own` answers a read that failed for a moment
        return real(*args)

    monkeypatch.setattr(cli_controller, "_read_own", read_own)
    handler = signal.getsignal(sig)
    r = CliRunner().invoke(app, _args(api, tmp_path, "--via-controller", "--timeout", "30s"))
    assert r.exit_code == 3, r.output
    doc = json.loads(r.stdout)
    assert f"interrupted ({signal.Signals(sig).name}) while following" in doc["error"], doc
    assert len(reads) == 1  # said at once, not after reading on until --timeout
    assert api.get(crd.GROUP, crd.PLURAL, "ml", "m0-v2") is not None  # left to the controller
    assert signal.getsignal(sig) is handler  # given back: an in-process caller goes on with its own


def test_a_promote_whose_signal_was_lost_before_the_rollout_began_moves_nothing(
        api: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from canary import cli

    real = cli._router

    def router(*args: Any) -> Any:  # the clients being built when the signal lands
        _swallowed(signal.SIGTERM)
        return real(*args)

    monkeypatch.setattr(cli, "_router", router)
    before = api.get("networking.istio.io", "virtualservices", "ml", "m0")
    r = CliRunner().invoke(app, _args(api, tmp_path, "--prometheus-url", "http://127.0.0.1:9"))
    assert r.exit_code == 3, r.output
    assert "interrupted (SIGTERM) before the rollout began; nothing was read or written" in r.output
    assert api.get("networking.istio.io", "virtualservices", "ml", "m0") == before
    assert not [k for k in api.handler.requests if k[0] in ("PUT", "PATCH", "POST")]


def test_a_status_watch_whose_ctrl_c_was_lost_in_a_read_stops_at_once(
        api: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`status -w` Ctrl-C'd while it reads the route: the KeyboardInterrupt lost in the client came out as the
    API unreachable (`kube.translate`: KubeUnavailable), and the watch said "reading it again" and read on until
    --timeout (exit 4; for ever without one). Now it stops there, as a Ctrl-C that was not lost (decision 230)."""
    from canary import cli
    from canary.errors import KubeUnavailable

    real, reads = cli._oncall_router, []

    def oncall_router(*args: Any) -> Any:
        router = real(*args)
        inspect = router.inspect

        def inspecting(*a: Any, **kw: Any) -> Any:
            reads.append(1)
            if len(reads) == 1:  # SIGINT lands in the client; its raise comes out as the API unreachable
                _swallowed(signal.SIGINT)
                raise KubeUnavailable("SchemaError: the validator of get_namespaced_custom_object")
            return inspect(*a, **kw)

        router.inspect = inspecting
        return router

    monkeypatch.setattr(cli, "_oncall_router", oncall_router)
    handler = signal.getsignal(signal.SIGINT)
    kubeconfig = fleet.write_kubeconfig(tmp_path / "kubeconfig", api.url)
    r = CliRunner().invoke(app, ["status", "m0", "-n", "ml", "--kubeconfig", str(kubeconfig), "-w", "--timeout", "3s"])
    assert r.exit_code not in (0, 4), r.output  # not "promoted", not "still running when --timeout ran out"
    assert isinstance(r.exception, (KeyboardInterrupt, SystemExit)) and "reading it again" not in r.output, r.output
    assert len(reads) == 1
    assert signal.getsignal(signal.SIGINT) is handler


def test_a_drift_watch_whose_ctrl_c_was_lost_stops_before_the_next_baseline(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`drift watch` Ctrl-C'd while it evaluates a baseline: the KeyboardInterrupt lost in the client (an Event's
    create, logged and gone on from as any error there) left the watch going on, to the next baseline and the
    next pass, for ever. Now the pass stops before the next baseline, as for SIGTERM, and the watch says
    "stopped", exit 0, as a Ctrl-C that was not lost (decision 231)."""
    import pyarrow as pa

    from canary.drift import watch as W
    from canary.drift.profile import capture

    reads: list[int] = []

    def live(*_a: Any, **_k: Any) -> dict[str, Any]:
        reads.append(1)
        if len(reads) > 1:  # the next baseline read: the watch went on (a real Ctrl-C ends this test then)
            raise KeyboardInterrupt
        _swallowed(signal.SIGINT)  # lands while the first baseline is evaluated; its raise is lost
        return {"c": {"categories": {"a": 1_000, "b": 0}, "other": 0, "missing": 0}}

    monkeypatch.setattr(W, "live_counts", live)
    baselines = []
    for v in ("v1", "v2"):
        prof = capture(pa.table({"c": ["a", "b"] * 1_000}), model="rec", version=v, file="t.csv", sha256="0" * 64)
        (path := tmp_path / f"{v}.json").write_text(json.dumps(prof))
        baselines += ["--baseline", str(path)]
    handler = signal.getsignal(signal.SIGINT)
    r = CliRunner().invoke(app, ["drift", "watch", *baselines, "--prometheus-url", "http://127.0.0.1:9", "--no-kube",
                                 "--interval", "1h", "--state-file", str(tmp_path / "s.json")])
    assert len(reads) == 1, r.output  # the second baseline is not read
    assert r.exit_code == 0 and r.output.rstrip().endswith("stopped"), r.output
    assert "stopping (SIGINT)" in r.output  # drift.pass_cut's reason
    assert signal.getsignal(signal.SIGINT) is handler


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_sandbox_whose_signal_was_lost_while_starting_stops_before_its_next_part(
        monkeypatch: pytest.MonkeyPatch, sig: int) -> None:
    """`canary demo` SIGTERMed or Ctrl-C'd while its sandbox starts: the KeyboardInterrupt lost in the client
    (the watcher's first read of the VirtualService builds its validators) left the sandbox starting on, and the
    demo then ran its whole rollout. Now the next part is not started: KeyboardInterrupt, what was started is
    stopped (the real API emulator here) and the handlers are given back (decision 232)."""
    from canary.sandbox.env import Sandbox

    started: list[str] = []
    monkeypatch.setattr(Sandbox, "_start_tritons", lambda self: _swallowed(sig))  # the signal lands, lost
    monkeypatch.setattr(Sandbox, "_start_data_plane", lambda self: started.append("data plane"))
    # the demo's: nobody else handles them (an earlier test in this process may have left its own)
    before = {signal.SIGTERM: signal.signal(signal.SIGTERM, signal.SIG_DFL),
              signal.SIGINT: signal.signal(signal.SIGINT, signal.default_int_handler)}
    handlers = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    sb = Sandbox("good", prometheus=False, load=False)
    try:
        with pytest.raises(KeyboardInterrupt):
            sb.start()
        assert started == [] and sb._stops == []  # the data plane never started; the API emulator stopped
        assert {s: signal.getsignal(s) for s in handlers} == handlers
    finally:
        sb.stop()
        for s, handler in before.items():
            signal.signal(s, handler)
def _follow_with_sigterm_lost_reading(api: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, plural: str) -> Any:
    """`promote --via-controller` in-process, a SIGTERM delivered and lost in each read of a `plural` object
    (`get_namespaced_custom_object`): exit 3 "interrupted (SIGTERM) while following" all the same."""
    import kubernetes.client as kc

    real = kc.CustomObjectsApi.get_namespaced_custom_object

    def get(self: Any, *args: Any, **kwargs: Any) -> Any:
        got = real(self, *args, **kwargs)
        if plural in args:
            _swallowed(signal.SIGTERM)
        return got

    monkeypatch.setattr(kc.CustomObjectsApi, "get_namespaced_custom_object", get)
    r = CliRunner().invoke(app, _args(api, tmp_path, "--via-controller", "--timeout", "30s"))
    assert r.exit_code == 3, r.output
    assert "interrupted (SIGTERM) while following" in json.loads(r.stdout)["error"]
    return r


def test_a_follower_whose_signal_was_lost_reading_the_rollout_it_met_writes_nothing_after_it(
        api: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # the CanaryRollout exists (a create answered 409): the follower reads it, then replaces its spec with this
    # request. A signal whose raise was lost in that read let the replace go on: the request written after the
    # cancel came (the signal was said at the next read, after it). Checked before that write too (decision 229).
    # Only the CanaryRollout's reads lose it, not the route's before the create (decision 238).
    api.handler.put_object(crd.new_object(namespace="ml", name="m0-v2", model="m0", canary_version="v2",
                                          policy_raw=fleet.FAST_POLICY, stable_version="v0"))
    _follow_with_sigterm_lost_reading(api, tmp_path, monkeypatch, crd.PLURAL)
    assert api.handler.requests.get(("POST", crd.PLURAL)) == 1  # the create, answered 409
    assert not api.handler.requests.get(("PUT", crd.PLURAL))  # nothing written after the signal
    assert api.get(crd.GROUP, crd.PLURAL, "ml", "m0-v2")["spec"]["stableVersion"] == "v0"


def test_a_follower_whose_signal_was_lost_reading_the_route_creates_nothing(
        api: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # before its create the follower reads the route (a version it records rolled back is reported, decision 238):
    # a signal lost in that read ends the follower there, the CanaryRollout never created
    _follow_with_sigterm_lost_reading(api, tmp_path, monkeypatch, "virtualservices")
    assert not api.handler.requests.get(("POST", crd.PLURAL))
    assert api.get(crd.GROUP, crd.PLURAL, "ml", "m0-v2") is None


def test_a_signal_while_the_outcome_is_printed_does_not_cut_it(
        api: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # the follower's handler stayed armed while it printed its outcome: a SIGTERM then raised in the middle of the
    # report, and stdout carried the promotion's document and then an "interrupted" one, exit 3 (decision 237)
    from canary import cli_controller
    from canary import rollout as rl

    real_emit = cli_controller.opts.emit

    def emit(*args: Any, **kw: Any) -> None:
        real_emit(*args, **kw)
        signal.raise_signal(signal.SIGTERM)  # the CI job cancelled just as the outcome came

    def read_own(*_args: Any) -> Any:  # the controller promoted it: this generation, this version
        return {"metadata": {"resourceVersion": "1"},
                "status": {"phase": rl.PROMOTED, "target": {"canaryVersion": "v2"}, "observedGeneration": 99,
                           "weights": {"stable": 100, "canary": 0}, "reason": "all steps passed"}}

    monkeypatch.setattr(cli_controller.opts, "emit", emit)
    monkeypatch.setattr(cli_controller, "_read_own", read_own)
    r = CliRunner().invoke(app, _args(api, tmp_path, "--via-controller", "--timeout", "30s"))
    assert r.exit_code == 0, r.output
    docs = [line for line in r.stdout.splitlines() if line.startswith("{")]
    assert len(docs) == 1 and json.loads(docs[0])["exit_code"] == 0, r.stdout


def test_a_promote_signalled_after_its_end_leaves_no_grace_alarm_behind(
        api: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A SIGTERM after the Runner returned (its end being printed) started the --interrupt-grace alarm
    (`setitimer`, 25 s), which nothing cancelled once `promote` ended: decision 241 gives the SIGALRM handler
    found back, so the alarm went to it 25 s later (the default's kills the process, exit 142; in-process, a
    test's pytest-timeout handler failed whatever test ran then). Cancelled when promote ends."""
    from canary import cli
    from canary import rollout as rl
    from tests.support import cli as in_process

    fleet.record(api, "m0", fleet.rolled_back())
    real = cli.state_dict

    def state_dict(*args: Any, **kwargs: Any) -> Any:  # the end being printed when the signal comes
        signal.raise_signal(signal.SIGTERM)
        return real(*args, **kwargs)

    monkeypatch.setattr(cli, "state_dict", state_dict)
    paused = signal.setitimer(signal.ITIMER_REAL, 0)  # pytest-timeout's own alarm, given back below
    try:
        r = in_process.run([*_args(api, tmp_path), "--prometheus-url", "http://127.0.0.1:9"])
        left = signal.setitimer(signal.ITIMER_REAL, 0)
    finally:
        signal.setitimer(signal.ITIMER_REAL, *paused)
    assert r.returncode == 1 and json.loads(r.stdout)["phase"] == rl.ROLLED_BACK, (r.stdout, r.stderr[-2000:])
    assert left == (0.0, 0.0), f"an alarm in {left[0]:.1f} s was left behind"
