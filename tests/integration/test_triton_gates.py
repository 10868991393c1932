"""The Triton gates against real Triton servers (PyTriton on CPU).

What must hold before a canary gets its first request: a compatible model
passes with a measured warm latency, over HTTP and gRPC; an incompatible schema
is refused with the tensor named; a model that loads but answers NaN is refused;
and once traffic flows, the readiness probe turns False when the server dies.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest

from canary.errors import GateError
from canary.policy import TritonGate
from canary.sandbox.tritonserver import TritonServer
from canary.triton import (ReadinessProbe, Signature, TensorSpec, TritonEndpoint, compare,
                           preflight)
from tests.support.refused import refused_port

pytestmark = pytest.mark.integration
MODEL = "rec-model"
GATE = TritonGate(warmup_requests=8, output_range=(0.0, 1.0))


def endpoint(server: TritonServer, protocol: str = "http") -> TritonEndpoint:
    url = server.http_url if protocol == "http" else server.grpc_url
    return TritonEndpoint(url=url, model=MODEL, protocol=protocol)  # type: ignore[arg-type]


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_compatible_pair_passes_with_warm_latency(triton_stable: TritonServer, triton_canary: TritonServer,
                                                  protocol: str, tmp_path: Path) -> None:
    report = preflight(endpoint(triton_stable, protocol), endpoint(triton_canary, protocol), GATE, base_dir=tmp_path)
    assert report.warmup_requests == 8
    assert report.sample_source == "generated"
    assert 0 < report.warm_p50_ms <= report.warm_max_ms < 5000
    assert report.signature.max_batch_size == 64
    assert [t.name for t in report.signature.outputs] == ["score"]
    assert len(report.checks) == 3
    assert report.to_dict()["warm_p50_ms"] == report.warm_p50_ms


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_bad_schema_is_refused_naming_the_tensor(triton_stable: TritonServer, triton_bad_schema: TritonServer,
                                                 protocol: str, tmp_path: Path) -> None:
    with pytest.raises(GateError) as err:
        preflight(endpoint(triton_stable, protocol), endpoint(triton_bad_schema, protocol), GATE, base_dir=tmp_path)
    assert "output 'score': datatype FP32 on stable, FP64 on canary" in str(err.value)


def test_model_answering_nan_fails_warmup(triton_stable: TritonServer, triton_nan: TritonServer,
                                          tmp_path: Path) -> None:
    with pytest.raises(GateError, match=r"output 'score' is not finite"):
        preflight(endpoint(triton_stable), endpoint(triton_nan), GATE, base_dir=tmp_path)


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_a_model_answering_nan_only_for_batches_fails_warmup_naming_the_batch(
        triton_stable: TritonServer, triton_canary: TritonServer, protocol: str, tmp_path: Path) -> None:
    """Clients send up to max_batch_size rows a request; a model may go wrong past the first row only (an
    engine built for batch 1). Every generated warm-up request was 1 row, so such a canary passed the gate
    and answered NaN to batched clients. Now requests 2 and 4 are batches, and the line says it."""
    from canary.sandbox.model import Behaviour

    triton_canary.set_behaviour(Behaviour(nan_from_rows=2))
    canary = endpoint(triton_canary, protocol)
    with pytest.raises(GateError) as err:
        preflight(endpoint(triton_stable, protocol), canary, GATE, base_dir=tmp_path)
    assert str(err.value).startswith(f"Triton {canary}: warm-up request 2 (8 rows): output 'score' is not finite"), \
        err.value


@pytest.mark.parametrize(("knobs", "which", "says"), [
    ({"score_columns": 2}, "warm-up request 1", "has shape [1, 2], the model declares [-1, 1]: expected [1, 1]"),
    ({"score_rows": 1}, "warm-up request 2 (8 rows)",
     "has shape [1, 1], the model declares [-1, 1]: expected [8, 1] (its first dim is the request's rows)"),
])
def test_an_answer_of_another_shape_than_declared_fails_warmup(triton_stable: TritonServer,
                                                              triton_canary: TritonServer, knobs: dict[str, int],
                                                              which: str, says: str, tmp_path: Path) -> None:
    """Triton's Python backend sends what the model hands it: a canary answering two score columns, or
    one row for a batch, where it declares (as stable does) one score per row passed the gate, which read
    the declarations only, and clients read garbage."""
    from canary.sandbox.model import Behaviour

    triton_canary.set_behaviour(Behaviour(**knobs))  # type: ignore[arg-type]
    canary = endpoint(triton_canary)
    with pytest.raises(GateError) as err:
        preflight(endpoint(triton_stable), canary, GATE, base_dir=tmp_path)
    assert str(err.value) == f"Triton {canary}: {which}: output 'score' {says}"


def test_output_outside_range_fails_warmup(triton_canary: TritonServer, tmp_path: Path) -> None:
    gate = TritonGate(warmup_requests=4, output_range=(2.0, 3.0))
    with pytest.raises(GateError, match=r"output 'score' outside \[2.0, 3.0\]"):
        preflight(None, endpoint(triton_canary), gate, base_dir=tmp_path)


def test_erroring_model_fails_warmup(triton_canary: TritonServer, tmp_path: Path) -> None:
    from canary.sandbox.model import Behaviour

    triton_canary.set_behaviour(Behaviour(error_share=1.0))
    with pytest.raises(GateError, match=r"warm-up request 1 failed: .*injected failure"):
        preflight(None, endpoint(triton_canary), GATE, base_dir=tmp_path)


def test_sample_file_with_missing_features(triton_stable: TritonServer, triton_canary: TritonServer,
                                           tmp_path: Path) -> None:
    samples = {"requests": [
        {"features": [[0.1, -1.2, None, 0.3, 0.0, 1.0, 0.5, -0.2]]},
        {"features": [[None] * 8, [1.0] * 8]},
    ]}
    (tmp_path / "warmup.json").write_text(json.dumps(samples))
    gate = TritonGate(warmup_requests=4, sample_file="warmup.json", output_range=(0.0, 1.0))
    report = preflight(endpoint(triton_stable), endpoint(triton_canary), gate, base_dir=tmp_path)
    assert report.sample_source == f"file:{tmp_path / 'warmup.json'}"
    assert report.warmup_requests == 4


def test_sample_file_naming_an_unknown_input_is_refused(triton_canary: TritonServer, tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_text(json.dumps({"requests": [{"feats": [[0.0] * 8]}]}))
    gate = TritonGate(warmup_requests=1, sample_file="bad.json")
    with pytest.raises(GateError, match=r"requests\[0\]: the model has no input 'feats'"):
        preflight(None, endpoint(triton_canary), gate, base_dir=tmp_path)


def test_unreachable_canary_is_a_gate_error(tmp_path: Path) -> None:
    dead = TritonEndpoint(url=f"127.0.0.1:{refused_port()}", model=MODEL)
    with pytest.raises(GateError, match="unreachable") as err:
        preflight(None, dead, GATE, base_dir=tmp_path)
    assert err.value.__cause__ is not None  # the tritonclient error is kept, not shown raw


@pytest.mark.parametrize("protocol", ["http", "grpc"])
@pytest.mark.parametrize(("model", "version", "what"), [("no-such-model", "", "model 'no-such-model'"),
                                                        (MODEL, "7", "model 'rec-model' version 7")])
def test_a_model_triton_does_not_serve_is_said_so_not_not_ready(triton_canary: TritonServer, protocol: str,
                                                                model: str, version: str, what: str,
                                                                tmp_path: Path) -> None:
    """It said "model 'no-such-model' version (default) is not ready": on-call looked for a load failure in
    the canary's logs, where the name asked for (the rollout's model) was not Triton's."""
    ep = TritonEndpoint(url=endpoint(triton_canary, protocol).url, model=model, version=version,
                        protocol=protocol, role="canary")  # type: ignore[arg-type]
    with pytest.raises(GateError) as err:
        preflight(None, ep, GATE, base_dir=tmp_path)
    assert str(err.value).startswith(f"canary Triton {ep}: this Triton serves no {what} (Request for unknown model: ")
    assert str(err.value).endswith("): the gates ask Triton for the rollout's model name; check that the model is "
                                   "deployed under that name"), err.value


def test_unknown_model_is_not_ready_to_the_probe(triton_canary: TritonServer) -> None:
    ep = TritonEndpoint(url=triton_canary.http_url, model="no-such-model")
    probe = ReadinessProbe(ep)
    assert probe.ready() is False and probe.last_failure == "model 'no-such-model' not ready"


@pytest.mark.parametrize("protocol", ["http", "grpc"])
@pytest.mark.timeout(120)  # a hang guard, not a speed claim: bounds are measured in scripts/bench_*.py
def test_probe_is_false_quickly_on_a_closed_port(protocol: str) -> None:
    """...and says why, for the rollback's reason (`runner.probe_reason`): on-call reads one line."""
    from canary.runner import probe_reason

    probe = ReadinessProbe(TritonEndpoint(url=f"127.0.0.1:{refused_port()}", model=MODEL, protocol=protocol))
    assert probe.ready() is False and probe.last_failure.startswith("unreachable: ")
    assert probe_reason(probe, 3) == f"canary Triton not ready (3 probes in a row: {probe.last_failure})"


@pytest.mark.timeout(120)  # a hang guard, not a speed claim: bounds are measured in scripts/bench_*.py
def test_probe_turns_false_after_kill(triton_victim: TritonServer) -> None:
    # a generous timeout: on a loaded machine a fresh probe's first answer took 0.52 s (the default
    # is 0.5 s); after the kill the port refuses at once either way
    http = ReadinessProbe(endpoint(triton_victim), timeout=10)
    grpc = ReadinessProbe(endpoint(triton_victim, "grpc"), timeout=10)
    assert http.ready() and grpc.ready() and http.last_failure == grpc.last_failure == ""
    triton_victim.kill()
    assert http.ready() is False
    assert grpc.ready() is False


# -- compare(): the compatibility rules, without a server ---------------------------------

def sig(inputs: list[tuple[str, str, tuple[int, ...]]], outputs: list[tuple[str, str, tuple[int, ...]]],
        mbs: int = 64) -> Signature:
    return Signature(tuple(TensorSpec(*t) for t in inputs), tuple(TensorSpec(*t) for t in outputs), mbs)


STABLE = sig([("features", "FP32", (-1, 8))], [("score", "FP32", (-1, 1))])


@pytest.mark.parametrize("canary, expected", [
    (STABLE, []),
    (sig([("features", "FP32", (-1, -1))], [("score", "FP32", (-1, 1)), ("extra", "FP32", (-1, 2))], 128), []),
    (sig([("features", "FP32", (-1, 9))], [("score", "FP32", (-1, 1))]),
     ["input 'features': shape [-1, 8] on stable, [-1, 9] on canary"]),
    (sig([("features", "FP16", (-1, 8))], [("score", "FP32", (-1, 1))]),
     ["input 'features': datatype FP32 on stable, FP16 on canary"]),
    (sig([("features", "FP32", (-1, 8))], [("prob", "FP32", (-1, 1))]),
     ["output 'score': present on stable, missing on canary"]),
    (sig([("features", "FP32", (-1, 8)), ("user", "INT64", (-1, 1))], [("score", "FP32", (-1, 1))]),
     ["input 'user': required on canary, unknown to stable's clients"]),
    (sig([("features", "FP32", (-1, 8))], [("score", "FP32", (-1, -1))]),
     ["output 'score': shape [-1, 1] on stable, [-1, -1] on canary"]),
    (sig([("features", "FP32", (-1, 8))], [("score", "FP32", (-1, 1))], 8),
     ["max_batch_size 64 on stable, 8 on canary (lower)"]),
])
def test_compare_rules(canary: Signature, expected: list[str]) -> None:
    assert compare(STABLE, canary) == expected


def test_an_input_optional_on_stable_and_required_on_the_canary_is_incompatible() -> None:
    """Clients that leave out an input stable takes as optional are refused by such a canary. It passed the
    gate, and a sample file without that input then ended the rollout ABORTED as the samples' fault
    (`reconcile.not_the_canarys`): the canary was the one that changed."""
    optional = Signature(STABLE.inputs + (TensorSpec("user", "INT64", (-1, 1), True),), STABLE.outputs, 64)
    required = Signature(STABLE.inputs + (TensorSpec("user", "INT64", (-1, 1), False),), STABLE.outputs, 64)
    assert compare(optional, required) == ["input 'user': optional on stable, required on canary"]
    assert compare(optional, optional) == [] and compare(required, optional) == []


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_a_probe_answers_from_any_thread(triton_canary: TritonServer, protocol: str) -> None:
    """promote probes from a new thread each time (`Runner._bounded`), the controller from its worker
    pool: a healthy canary is ready from every one. tritonclient's HTTP client (gevent) cannot be used
    from another thread than its own, and reusing one failed every second or third probe
    ("cannot switch to a different thread"): with probe_failures 1, a good canary was rolled back."""
    probe = ReadinessProbe(endpoint(triton_canary, protocol))
    answers: list[tuple[bool, str]] = []
    for _ in range(8):
        t = threading.Thread(target=lambda: answers.append((probe.ready(), probe.last_failure)))
        t.start()
        t.join(30)
    probe.close()
    assert answers == [(True, "")] * 8


@pytest.mark.parametrize("value", [10**30, 1e300, float("inf")])
def test_sample_values_an_integer_input_cannot_hold_are_a_gate_error_naming_them(value: float) -> None:
    """Not an OverflowError out of the gate (a CanaryRollout stayed pending, failing every tick)."""
    from canary.triton import typed_samples

    sig = Signature(inputs=(TensorSpec("ids", "INT64", (-1, 2)),), outputs=(), max_batch_size=8)
    with pytest.raises(GateError, match=r"warm-up sample file cm\[w\]: requests\[0\]\.ids: "):
        typed_samples({"requests": [{"ids": [[1, value]]}]}, sig, "cm[w]")


@pytest.mark.parametrize("datatype", ["FP16", "BF16", "FP32", "FP64"])
def test_a_sample_null_is_nan_in_every_floating_datatype(datatype: str) -> None:
    """BF16 arrays are ml_dtypes.bfloat16, not a np.floating: a BF16 model's sample with a missing feature
    (null) was refused, "requests[0].x: expected number, got NoneType", and its generated inputs were
    integers where every other float input gets standard-normal values."""
    from canary.triton import generate_inputs, typed_samples

    sig = Signature(inputs=(TensorSpec("x", datatype, (-1, 3)),), outputs=(), max_batch_size=8)
    [request] = typed_samples({"requests": [{"x": [[0.5, None, -1.0]]}]}, sig, "warmup.json")
    assert request["x"].dtype.name == datatype.lower().replace("fp", "float").replace("bf16", "bfloat16")
    assert np.isnan(request["x"].astype(np.float32)).tolist() == [[False, True, False]]
    generated = generate_inputs(sig, seed=0)["x"].astype(np.float32)
    assert not np.array_equal(generated, np.round(generated)), generated
