"""A local stand-in for a cluster, for `canary demo` and the end-to-end tests.

Everything runs for real on 127.0.0.1 and is stopped by PID: a strict Kubernetes
API emulator (kubeapi), two PyTriton servers (tritonserver, serving model.py's
rec-model), Prometheus (promserver), HAProxy as the data plane (haproxy) with a
watcher playing istiod (watcher), and client load (loadgen). `env.Sandbox`
assembles them. Nothing here is imported by the controller.

``from canary.sandbox import Sandbox`` is lazy, so importing the package costs nothing.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Sandbox"]


def __getattr__(name: str) -> Any:
    if name == "Sandbox":
        from canary.sandbox.env import Sandbox

        return Sandbox
    raise AttributeError(name)
