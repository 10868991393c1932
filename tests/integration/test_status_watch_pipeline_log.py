"""`canary status -w` in a pipeline's log (stdout no terminal) prints a pass only when it differs from the last one
printed (decision 358): it printed the same block every 2 s, 900 of them while a pipeline waited 30 minutes for its
rollout. The strict Kubernetes API emulator; the route is changed at given reads of the VirtualService (one per
pass), so what each pass sees is fixed, whatever the time between passes."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.support import cli
from tests.support.kube import PROGRESSING_RECORD, istio_cluster  # noqa: F401 - fixture

pytestmark = pytest.mark.integration
GROUP, ANNOTATION = "networking.istio.io", "modelcanary.dev/rollout"


def _at(weights: tuple[int, int], **record: Any) -> Any:
    def edit(vs: dict[str, Any]) -> None:
        route = vs["spec"]["http"][0]["route"]
        route[0]["weight"], route[1]["weight"] = weights
        vs["metadata"].setdefault("annotations", {})[ANNOTATION] = json.dumps(
            {**json.loads(PROGRESSING_RECORD), "weights": {"stable": weights[0], "canary": weights[1]}, **record})
    return edit


@pytest.mark.parametrize("output", ["text", "json"])
def test_a_watch_whose_stdout_is_no_terminal_prints_each_change_once(istio_cluster: Any, output: str) -> None:
    api, kubeconfig = istio_cluster
    api.edit(GROUP, "virtualservices", "ml", "rec-model", _at((75, 25)))
    # the reads of the VirtualService: the first resolves the route, then one per pass; passes 1-2 see 75/25,
    # 3-5 see step 2 at 50/50, the 6th the rollback (the watch's end, exit 1)
    edits = {4: _at((50, 50), step=1), 7: _at((100, 0), phase="rolled_back", reason="latency-p95: canary slower")}
    real, reads = api.handler._serve, [0]

    def serve(method: str, request: Any, kind: Any) -> Any:
        if method == "GET" and request.url.path.endswith("/virtualservices/rec-model"):
            reads[0] += 1
            if reads[0] in edits:
                api.edit(GROUP, "virtualservices", "ml", "rec-model", edits[reads[0]])
        return real(method, request, kind)

    api.handler._serve = serve  # type: ignore[method-assign]
    res = cli.run(["status", "rec-model", "-n", "ml", "--kubeconfig", str(kubeconfig), "-w", "-o", output],
                  env={"KUBECONFIG": ""})
    assert res.returncode == 1, (res.stdout[-2000:], res.stderr[-2000:])
    assert reads[0] >= 7
    if output == "json":
        shown = [json.loads(line)["weights"] for line in res.stdout.splitlines()]
        assert shown == [{"stable": 75, "canary": 25}, {"stable": 50, "canary": 50}, {"stable": 100, "canary": 0}]
    else:
        phases = [line for line in res.stdout.splitlines() if "phase " in line]
        assert len(phases) == 3, res.stdout
        assert "progressing" in phases[0] and "progressing" in phases[1] and "rolled_back" in phases[2], phases
