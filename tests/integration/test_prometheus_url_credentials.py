"""The controller with `--prometheus-url http://user:pass@host` and that Prometheus gone (decision 970): the
password was in its log lines (`metrics.query_failed`, `look.completed`), and from the error in the
rollout's status, its Kubernetes Events and its webhook post. Greps every sink for the password, and checks
that the failure still names the host. Against the strict API emulator."""

from __future__ import annotations

import copy
import json
import time
from typing import Any

import pytest
import structlog.testing

from canary import crd
from canary import rollout as rl
from canary.metrics.batch import BatchMetrics
from canary.metrics.prometheus import PrometheusProvider
from canary.notify import Notifier
from tests import fleet
from tests.integration.test_controller import _progressing, prometheus, vs, world  # noqa: F401

pytestmark = pytest.mark.integration
SECRET = "hunter2-pw"


def test_a_rollback_for_prometheus_down_tells_no_sink_its_password(world: Any) -> None:
    api, op, custom = world
    pol = copy.deepcopy(fleet.FAST_POLICY)
    pol["failure"] = {"max_failed_looks": 1, "no_data_deadline": "1s", "on_deadline": "rollback"}
    obj = fleet.rollout_object(0, "v2")
    obj["spec"]["policy"] = pol
    custom.create_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, obj)
    _progressing(op, custom, api)
    posts: list[dict[str, Any]] = []
    op.notifier = Notifier(webhooks=["http://hooks.invalid/hook"], sender=lambda url, body, t: posts.append(body) or 200)
    dead = PrometheusProvider(f"http://ops:{SECRET}@127.0.0.1:9", retries=1, budget_s=0.5)
    op.metrics, op.batch = dead, BatchMetrics(dead)
    end, st = time.monotonic() + 60, {}
    with structlog.testing.capture_logs() as logs:
        while time.monotonic() < end and st.get("phase") not in rl.TERMINAL:
            op.tick()
            st = custom.get_namespaced_custom_object(crd.GROUP, crd.VERSION, "ml", crd.PLURAL, "r0").get("status") or {}
            time.sleep(0.2)
    assert st.get("phase") in (rl.ROLLED_BACK, rl.ABORTED) and vs(api, 0)[0] == [100, 0], (st.get("phase"), st.get("reason"))
    assert op.notifier.close(10.0) and posts, "the end was not posted"
    events = [e.to_dict() for e in op.core.list_namespaced_event("ml").items]
    said = {"logs": repr(logs), "status": json.dumps(st), "events": repr(events), "posts": json.dumps(posts)}
    assert not [sink for sink, text in said.items() if SECRET in text], {s: t for s, t in said.items() if SECRET in t}
    # the failure names the host it could not ask, in status and in the post as in the log
    assert "Prometheus at http://127.0.0.1:9 could not be asked" in st["reason"], st["reason"]
    assert any("http://127.0.0.1:9 " in p.get("reason", "") for p in posts), posts
