"""Tensor contracts the gate must read as clients see them, against real Triton (PyTriton on CPU).

A contract is what a client may send and read: names, datatypes, shapes and how many rows one request may
carry, which inputs it may leave out. Each case pairs the session's servers (max_batch_size 64) with one
that does not batch, or one that added an optional input, and shows with real requests what each server
takes, so the gate's verdict is checked against Triton's own.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from canary.errors import GateError
from canary.policy import TritonGate
from canary.sandbox.model import Behaviour
from canary.sandbox.tritonserver import TritonServer
from canary.triton import Signature, TensorSpec, TritonEndpoint, compare, preflight

pytestmark = pytest.mark.integration
MODEL = "rec-model"
GATE = TritonGate(warmup_requests=4, output_range=(0.0, 1.0))


def endpoint(server: TritonServer, protocol: str, role: str) -> TritonEndpoint:
    url = server.http_url if protocol == "http" else server.grpc_url
    return TritonEndpoint(url=url, model=MODEL, protocol=protocol, role=role)  # type: ignore[arg-type]


def takes(server: TritonServer, rows: int) -> bool:
    """Whether the server answers one request of `rows` rows (as a client sends it)."""
    import tritonclient.http as client_mod
    from tritonclient.utils import InferenceServerException

    client = client_mod.InferenceServerClient(url=server.http_url.removeprefix("http://"))
    tensor = client_mod.InferInput("features", [rows, 8], "FP32")
    tensor.set_data_from_numpy(np.zeros((rows, 8), dtype=np.float32))
    try:
        return client.infer(MODEL, [tensor]).as_numpy("score").shape == (rows, 1)
    except InferenceServerException:
        return False
    finally:
        client.close()


def _serving(server: TritonServer) -> Iterator[TritonServer]:
    """A module fixture's body: the server started, ready, yielded, stopped."""
    server.start()
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def triton_unbatched(triton_fleet: dict[str, TritonServer]) -> Iterator[TritonServer]:
    """The same model served without Triton's batching: max_batch_size 0, first dim -1 (as an ONNX
    export declares it). Used by this module only."""
    yield from _serving(TritonServer("unbatched", "v2.1.0", Behaviour(), max_batch_size=0))


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_a_canary_that_stops_batching_with_a_dynamic_first_dim_passes(
        triton_stable: TritonServer, triton_unbatched: TritonServer, protocol: str, tmp_path: Path) -> None:
    """It takes every request stable took (and more rows): it was refused, "max_batch_size 64 on stable,
    0 on canary (lower)", a good canary blocked for a number clients never see."""
    assert takes(triton_stable, 64) and takes(triton_unbatched, 64) and takes(triton_unbatched, 200)
    report = preflight(endpoint(triton_stable, protocol, "stable"), endpoint(triton_unbatched, protocol, "canary"),
                       GATE, base_dir=tmp_path)
    assert report.signature.max_batch_size == 0 and report.warmup_requests == 4


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_a_batching_canary_after_a_stable_that_did_not_batch_is_refused_naming_the_rows(
        triton_unbatched: TritonServer, triton_canary: TritonServer, protocol: str, tmp_path: Path) -> None:
    """Stable took [200, 8]; the canary refuses more than 64 rows. Both declare [-1, 8], so it passed
    (64 is not lower than 0) and clients' large requests failed under traffic."""
    assert takes(triton_unbatched, 200) and not takes(triton_canary, 200)
    stable, canary = endpoint(triton_unbatched, protocol, "stable"), endpoint(triton_canary, protocol, "canary")
    with pytest.raises(GateError) as err:
        preflight(stable, canary, GATE, base_dir=tmp_path)
    assert str(err.value) == (
        f"canary {canary} is not compatible with stable {stable}: input 'features': stable takes any number of "
        f"rows (max_batch_size 0, shape [-1, 8]), the canary at most 64 (max_batch_size 64)")


def _sig(shape: tuple[int, ...], mbs: int) -> Signature:
    out = (-1, 1) if len(shape) == 2 else (1,)
    return Signature((TensorSpec("features", "FP32", shape),), (TensorSpec("score", "FP32", out),), mbs)


@pytest.mark.parametrize("stable, canary, expected", [
    (_sig((-1, 8), 64), _sig((-1, 8), 0), []),  # stops batching, first dim dynamic
    (_sig((16, 8), 0), _sig((-1, 8), 8),  # stable's fixed 16 rows, more than the canary's 8
     ["input 'features': stable takes 16 rows (max_batch_size 0, shape [16, 8]), the canary at most 8 "
      "(max_batch_size 8)"]),
    (_sig((4, 8), 0), _sig((-1, 8), 8), []),  # 4 rows fit in 8
    (_sig((-1, 8), 64), _sig((64, 8), 0),  # a fixed first dim: the shape rule says it
     ["input 'features': shape [-1, 8] on stable, [64, 8] on canary"]),
    (_sig((8,), 0), _sig((-1, 8), 8),  # no batch dim on stable: the shape rule says it
     ["input 'features': shape [8] on stable, [-1, 8] on canary", "output 'score': shape [1] on stable, [-1, 1] on canary"]),
    (_sig((-1, 8), 64), _sig((-1, 8), 8), ["max_batch_size 64 on stable, 8 on canary (lower)"]),
])
def test_rows_per_request_with_and_without_batching(stable: Signature, canary: Signature,
                                                    expected: list[str]) -> None:
    assert compare(stable, canary) == expected


@pytest.fixture(scope="module")
def triton_user(triton_fleet: dict[str, TritonServer]) -> Iterator[TritonServer]:
    """A new version that added an optional INT64 input "user" (stable's clients never send it). Used by
    this module only; a test that turns its knobs puts them back."""
    yield from _serving(TritonServer("user", "v2.2.0", Behaviour(schema="user")))


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_a_canary_that_added_an_optional_input_passes(triton_stable: TritonServer, triton_user: TritonServer,
                                                      protocol: str, tmp_path: Path) -> None:
    report = preflight(endpoint(triton_stable, protocol, "stable"), endpoint(triton_user, protocol, "canary"),
                       GATE, base_dir=tmp_path)
    assert [(t.name, t.optional) for t in report.signature.inputs] == [("features", False), ("user", True)]


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_a_canary_that_mishandles_its_new_optional_inputs_absence_fails_warmup(
        triton_stable: TritonServer, triton_user: TritonServer, protocol: str, tmp_path: Path) -> None:
    """Stable's clients call it without "user", and it answers them NaN. Every generated warm-up request
    carried every input, optional ones too, so it passed and got their traffic."""
    canary = endpoint(triton_user, protocol, "canary")
    triton_user.set_behaviour(Behaviour(schema="user", nan_without_user=True))
    try:
        with pytest.raises(GateError) as err:
            preflight(endpoint(triton_stable, protocol, "stable"), canary, GATE, base_dir=tmp_path)
    finally:
        triton_user.set_behaviour(Behaviour(schema="user"))
    assert str(err.value).startswith(f"canary Triton {canary}: warm-up request 1 (without optional input 'user'): "
                                     f"output 'score' is not finite"), err.value


@pytest.fixture(scope="module")
def triton_user_stable(triton_fleet: dict[str, TritonServer]) -> Iterator[TritonServer]:
    """A stable that already takes the optional input "user" and answers well without it. Used by this module."""
    yield from _serving(TritonServer("user-stable", "v2.1.0", Behaviour(schema="user")))


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_a_canary_that_answers_as_stable_does_without_an_optional_input_they_share_passes(
        triton_user: TritonServer, protocol: str, tmp_path: Path) -> None:
    """Stable takes "user" as optional too and answers NaN without it, as the canary does (here: the same
    model). Every warm-up that left "user" out failed, so a canary identical to stable was refused."""
    triton_user.set_behaviour(Behaviour(schema="user", nan_without_user=True))
    try:
        report = preflight(endpoint(triton_user, protocol, "stable"), endpoint(triton_user, protocol, "canary"),
                           GATE, base_dir=tmp_path)
    finally:
        triton_user.set_behaviour(Behaviour(schema="user"))
    assert report.warmup_requests == 4
    assert ("4 warm-up inferences, outputs finite and within [0.0, 1.0]; 2 that left out optional inputs stable "
            "also takes as optional answered as stable answers them (warm-up request 1 (without optional input "
            "'user'): output 'score' is not finite, ...)") in report.checks


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_a_canary_that_mishandles_a_shared_optional_inputs_absence_stable_handles_fails_warmup(
        triton_user_stable: TritonServer, triton_user: TritonServer, protocol: str, tmp_path: Path) -> None:
    """Stable's clients may leave "user" out and stable answers them; the canary answers them NaN."""
    canary = endpoint(triton_user, protocol, "canary")
    triton_user.set_behaviour(Behaviour(schema="user", nan_without_user=True))
    try:
        with pytest.raises(GateError) as err:
            preflight(endpoint(triton_user_stable, protocol, "stable"), canary, GATE, base_dir=tmp_path)
    finally:
        triton_user.set_behaviour(Behaviour(schema="user"))
    assert str(err.value).startswith(f"canary Triton {canary}: warm-up request 1 (without optional input 'user'): "
                                     f"output 'score' is not finite"), err.value


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_a_canary_that_answers_nan_to_every_request_is_not_excused_by_stables_nan_without_the_input(
        triton_user_stable: TritonServer, triton_user: TritonServer, protocol: str, tmp_path: Path) -> None:
    """Stable answers NaN without the shared optional "user"; the canary answers NaN to every request, with
    "user" too. With 2 warm-up requests both leave "user" out, stable answered both as badly, and the gate
    passed a canary no client gets a number from (decision 145): an excuse stands only when the canary
    answers the same request well with the inputs it left out."""
    canary = endpoint(triton_user, protocol, "canary")
    triton_user_stable.set_behaviour(Behaviour(schema="user", nan_without_user=True))
    triton_user.set_behaviour(Behaviour(schema="user", output_nan=True))
    try:
        with pytest.raises(GateError) as err:
            preflight(endpoint(triton_user_stable, protocol, "stable"), canary,
                      TritonGate(warmup_requests=2, output_range=(0.0, 1.0)), base_dir=tmp_path)
    finally:
        triton_user.set_behaviour(Behaviour(schema="user"))
        triton_user_stable.set_behaviour(Behaviour(schema="user"))
    assert str(err.value).startswith(f"canary Triton {canary}: warm-up request 1 (without optional input 'user'), "
                                     "sent again with it: output 'score' is not finite"), err.value


def _user_sig(optional_on_stable: bool | None) -> tuple[Signature, Signature]:
    """(stable, canary): the canary takes "user" as optional; stable lacks it (None), requires it or not."""
    features, score = TensorSpec("features", "FP32", (-1, 8)), TensorSpec("score", "FP32", (-1, 1))
    canary = Signature((features, TensorSpec("user", "INT64", (-1, 1), optional=True)), (score,), 64)
    extra = () if optional_on_stable is None else (TensorSpec("user", "INT64", (-1, 1), optional=optional_on_stable),)
    return Signature((features, *extra), (score,), 64), canary


@pytest.mark.parametrize("optional_on_stable, left_out", [
    (None, {"user"}),  # the canary added it: stable's clients never send it
    (True, {"user"}),  # optional on both: stable's clients may leave it out
    (False, set()),  # stable requires it: every client sends it, a request without it is one nobody makes
])
def test_the_warm_up_leaves_out_only_what_stables_clients_may_leave_out(optional_on_stable: bool | None,
                                                                          left_out: set[str]) -> None:
    from canary.triton import omittable_inputs

    stable, canary = _user_sig(optional_on_stable)
    assert omittable_inputs(canary, stable) == left_out
    assert omittable_inputs(canary, None) == {"user"}  # no stable to ask: the model's own contract


@pytest.mark.parametrize("words, not_served", [
    ("Request for unknown model: 'rec-model' is not found", True),
    ("Request for unknown model: 'rec-model' version 3 is not found", True),
    ("Request for unknown model: 'rec-model' has no available versions", False),  # its load failed
    ("Request for unknown model: 'rec-model' version 1 is not at ready state", False),  # loading, unloaded
])
def test_a_model_triton_has_and_could_not_load_is_not_called_a_name_it_does_not_serve(words: str,
                                                                                      not_served: bool) -> None:
    """Triton's own words (tritonserver's model repository manager). "this Triton serves no model ... check
    that the model is deployed under that name" sent on-call to the deployment's name when the model was
    there and its load had failed. The client stands for tritonclient's: only its refusal is read."""
    from tritonclient.utils import InferenceServerException

    from canary.triton import _unknown_model

    class Refusing:
        def get_model_metadata(self, *args: object, **kwargs: object) -> None:
            raise InferenceServerException(msg=words)

    ep = TritonEndpoint(url="http://127.0.0.1:8000", model=MODEL, protocol="http", role="canary")
    said = _unknown_model(Refusing(), ep, {})
    assert said.startswith("this Triton serves no model 'rec-model'") if not_served else said == "", said


def _samples(tmp_path: Path, *requests: dict[str, object]) -> TritonGate:
    """A gate whose warm-up is the user's sample file of `requests` (one warm-up request each)."""
    (tmp_path / "samples.json").write_text(json.dumps({"requests": list(requests)}), encoding="utf-8")
    return TritonGate(warmup_requests=len(requests), output_range=(0.0, 1.0), sample_file="samples.json")


def _canary_counts(server: TritonServer) -> tuple[float, float]:
    """(requests answered, finite predictions observed) by the sandbox model so far."""
    with urllib.request.urlopen(server.model_metrics_url, timeout=30) as r:
        text = r.read().decode()

    def get(name: str, **labels: str) -> float:
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()))
    return get("model_requests_total", outcome="success"), get("model_prediction_value_count")


ROW = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_a_users_sample_file_is_sent_as_written_with_nothing_invented_for_what_it_leaves_out(
        triton_user_stable: TritonServer, triton_user: TritonServer, protocol: str, tmp_path: Path) -> None:
    """Both versions answer NaN without the shared optional "user", and the user's samples never send it. The
    excuse's proof (decision 145) re-sent each request to the canary with a generated "user": values no client
    of the user's sends, answered into the canary's own metrics. Now the canary gets the file's requests only,
    as written (no finite answer: "user" never reached it), and the excuse says the file never sends it."""
    for server in (triton_user_stable, triton_user):
        server.set_behaviour(Behaviour(schema="user", nan_without_user=True))
    before = _canary_counts(triton_user)
    try:
        report = preflight(endpoint(triton_user_stable, protocol, "stable"), endpoint(triton_user, protocol, "canary"),
                           _samples(tmp_path, {"features": [ROW]}, {"features": [ROW, ROW]}), base_dir=tmp_path)
    finally:
        for server in (triton_user_stable, triton_user):
            server.set_behaviour(Behaviour(schema="user"))
    after = _canary_counts(triton_user)
    assert (after[0] - before[0], after[1] - before[1]) == (2, 0)
    assert report.sample_source.startswith("file:")
    assert ("warm-up request 1 (without optional input 'user'): output 'score' is not finite (the sample file "
            "never sends 'user')") in report.checks[-1]


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_a_users_request_left_out_an_input_is_proved_by_the_users_request_that_sends_it(
        triton_user_stable: TritonServer, triton_user: TritonServer, protocol: str, tmp_path: Path) -> None:
    """The file's request 1 leaves "user" out, request 2 sends it with the user's value. A canary that answers
    NaN to every request is refused at the user's request 2, as the user wrote it, not at a request 1 sent again
    with a made-up "user"; a canary that answers as stable does passes on the user's requests alone."""
    canary = endpoint(triton_user, protocol, "canary")
    gate = _samples(tmp_path, {"features": [ROW]}, {"features": [ROW], "user": [[7]]})
    triton_user_stable.set_behaviour(Behaviour(schema="user", nan_without_user=True))
    try:
        triton_user.set_behaviour(Behaviour(schema="user", output_nan=True))
        with pytest.raises(GateError) as err:
            preflight(endpoint(triton_user_stable, protocol, "stable"), canary, gate, base_dir=tmp_path)
        triton_user.set_behaviour(Behaviour(schema="user", nan_without_user=True))
        before = _canary_counts(triton_user)
        report = preflight(endpoint(triton_user_stable, protocol, "stable"), canary, gate, base_dir=tmp_path)
        after = _canary_counts(triton_user)
    finally:
        triton_user.set_behaviour(Behaviour(schema="user"))
        triton_user_stable.set_behaviour(Behaviour(schema="user"))
    assert str(err.value).startswith(f"canary Triton {canary}: warm-up request 2: output 'score' is not finite"), \
        err.value
    assert (after[0] - before[0], after[1] - before[1]) == (2, 1)  # one finite answer: the user's request 2
    assert report.warmup_requests == 2 and "never sends" not in report.checks[-1]
