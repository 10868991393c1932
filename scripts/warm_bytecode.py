"""Write the bytecode of the libraries the suite's processes import only once they run (decision 1040).

scripts/test.sh compiles canary/, tests/ and scripts/ and collects the tests with bytecode writing on before its
workers start (decision 505), because CI's environment sets PYTHONDONTWRITEBYTECODE: no process of the run writes
a `.pyc`. The collection writes the bytecode of every library module a test module imports, but not of those the
product imports lazily, on first use, and uv installs the venv without bytecode (pip compiled it): in CI every
`canary` process that reaches the cluster compiled the kubernetes client's CoreV1Api from its 4.5 MB of source
(about 7.6 MB of source in all, 0.9 s of CPU a process), and every sandbox Triton child PyTriton, ZeroMQ, gRPC and
tritonclient (1.2 MB). This imports them once, with bytecode writing on, so that every later process reads them.

A module left out of the list costs only CPU (it is compiled from source where it is imported, as before), never
a result; a library that is not installed (an extra left out) is skipped, and so is one whose import fails in any
other way (tritonclient's `http` and `grpc` raise RuntimeError where their extra is left out), the rest of the list
still imported (tests/unit/test_warm_bytecode.py also checks that every kubernetes API class canary/ names is in the
list). Compiling all of the venv's
site-packages instead took 40 s of CPU, most of it for modules nothing imports.
"""

from __future__ import annotations

import importlib
import sys

# what `canary` processes (promote, controller, status, rollback, drift, report, serve) and the sandbox's servers
# import lazily, found by running the e2e and promote tests with an empty PYTHONPYCACHEPREFIX and bytecode writing
# on, less what `pytest --collect-only` writes (docs/benchmarks/suite.md, thirty-fifth session, h-suite2)
MODULES = (
    "kubernetes.client:CoreV1Api", "kubernetes.client:CustomObjectsApi", "kubernetes.client:CoordinationV1Api",
    "kubernetes.client:BatchV1Api",
    "typer.rich_utils",  # help and usage errors (rich's markdown, markdown-it)
    "pydantic.type_adapter", "pydantic.validate_call_decorator",
    "pyarrow.compute", "pyarrow.ipc",  # drift profiles
    "scipy.stats",
    "tritonclient.http", "tritonclient.http.aio", "tritonclient.grpc", "tritonclient.grpc.aio",  # the Triton gates
    "gevent.threadpool", "gevent.resolver.thread",  # tritonclient.http's, at its first request
    "pytriton.triton", "pytriton.model_config", "pytriton.decorators", "pytriton.client",  # the sandbox's Triton
    "zmq", "zmq.asyncio", "wrapt", "grpc", "grpc.aio", "sh", "typing_inspect",
)


def warm(modules: tuple[str, ...] = MODULES) -> list[str]:
    """Import each `module[:attribute]`; the specs that could not be (not installed, gone from the library, or an
    import that failed otherwise: tritonclient.grpc without its extra raises RuntimeError), each skipped, the rest
    still imported (decision 1035)."""
    missed = []
    for spec in modules:
        name, _, attr = spec.partition(":")
        try:
            module = importlib.import_module(name)
            if attr:
                getattr(module, attr)
        except Exception:  # noqa: BLE001 - not installed, a library without it, an extra left out (RuntimeError)
            missed.append(spec)
    return missed


if __name__ == "__main__":
    if sys.dont_write_bytecode:
        sys.exit("warm_bytecode: bytecode writing is off (PYTHONDONTWRITEBYTECODE): run it with it unset")
    for spec in warm():
        print(f"warm_bytecode: {spec} could not be imported; skipped", file=sys.stderr)
