"""The bodies `canary.notify` posts: the generic webhook's JSON object and Slack's message.

Why a module of its own: what on-call reads (one line, escaped for Slack's mrkdwn, cut to Slack's
limits) and what a machine keys on (`id`, `at`) are pure functions of one payload, tested without a
thread or a socket; `canary.notify` is the delivery. The format is in `canary.notify`'s docstring.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

from canary.model import CheckResult, Verdict, Weights


def payload_for(state: Any, *, namespace: str, rollout: str, evidence: Sequence[Any] | None = None) -> dict[str, Any]:
    """A notify() payload from a RolloutState; evidence defaults to its last verdict's fail/error results."""
    if evidence is None:
        evidence = [r for r in state.verdict_results() if r.get("outcome") in ("fail", "error")]
    return {"model": state.model, "namespace": namespace, "rollout": rollout, "stable_version": state.stable_version,
            "canary_version": state.canary_version, "weights": state.weights, "reason": state.reason,
            "evidence": list(evidence), "at": state.updated_at or None,
            "virtual_service": rollout, "route": getattr(state, "route", "")}  # for the command to look (`next_command`)


# an end's phase (`rollout.ROLLED_BACK`, `ABORTED`, `PROMOTED`: spelled here, this module imports no rollout) -> its post
_END_EVENTS = {"rolled_back": "rollback", "aborted": "aborted", "promoted": "promotion"}


def end_events(state: Any) -> tuple[str, ...]:
    """The notification events the end `state` records is posted as, the one mapping of the controller's
    (`Controller._post_end`) and `canary promote`'s (`cli.announce`): "rollback", "aborted" or "promotion", and
    "prediction_shift" beside a rollback or an abort whose last verdict failed a prediction-shift check; none for a
    state that is no end."""
    event = _END_EVENTS.get(getattr(state, "phase", ""))
    if event is None:
        return ()
    shifted = event != "promotion" and any(r.get("kind") == "prediction_shift" and r.get("outcome") == "fail"
                                           for r in state.verdict_results())
    return (event, "prediction_shift") if shifted else (event,)



def announce(notifier: Any, state: Any, *, namespace: str, rollout: str) -> None:
    """Post the end `state` records as `end_events` maps it (`notifier.notify(event, payload_for(...))`): what
    `canary promote` (`cli`) and the sweeps (`sweep.posted`) post; nothing for a state that is no end. Never
    raises: an announcement never changes how the rollout ended, nor an exit code (`notify.internal_error`)."""
    events = end_events(state)
    if not events:
        return
    try:
        payload = payload_for(state, namespace=namespace, rollout=rollout)
        for event in events:
            notifier.notify(event, payload)
    except Exception as exc:  # noqa: BLE001
        from canary import logs

        logs.get().error("notify.internal_error", notify_event=events[0], error=type(exc).__name__)

def webhook_body(event: str, payload: Mapping[str, Any]) -> dict[str, Any]:
    """The generic webhook's JSON object (format in the module docstring)."""
    p = payload
    body = _json_safe({
        "event": event, "model": str(p.get("model", "")), "namespace": str(p.get("namespace", "")),
        "rollout": str(p.get("rollout", "")), "stable_version": str(p.get("stable_version", "")),
        "canary_version": str(p.get("canary_version", "")), "weights": _weights(p.get("weights")),
        "reason": str(p.get("reason", "")), "evidence": _evidence(p.get("evidence")), "at": _iso(p.get("at")),
    })
    return {"id": event_id(body), **body}


def event_id(body: Mapping[str, Any]) -> str:
    """The idempotency key of one event: the same for every retry and every URL, and for the same end
    announced again (same event, rollout, versions and time), so a receiver that keeps the keys it acted
    on acts once."""
    key = "\x1f".join(str(body.get(k, "")) for k in ("event", "namespace", "rollout", "stable_version",
                                                       "canary_version", "at"))
    return hashlib.sha256(key.encode()).hexdigest()[:32]


_ICONS = {"rollback": ":rotating_light:", "aborted": ":warning:", "promotion": ":white_check_mark:",
          "prediction_shift": ":chart_with_upwards_trend:",
          # the drift monitor's (`canary.drift.watch`): its warnings and their ends. Every one read
          # :information_source:, a drift episode and a failing retraining as much as their ends
          "drift_started": ":warning:", "drift_retrain_failed": ":warning:", "drift_retrain_superseded": ":warning:",
          "drift_retrain_job_failed": ":warning:",
          "drift_retrain_job_gone": ":warning:",
          "drift_features_missing": ":warning:", "drift_resolved": ":white_check_mark:",
          "drift_features_missing_resolved": ":white_check_mark:", "drift_retrain_recovered": ":white_check_mark:",
          "drift_prometheus_down": ":warning:", "drift_prometheus_back": ":white_check_mark:",
          "drift_live_data_unreadable": ":warning:", "drift_live_data_readable": ":white_check_mark:",
          "drift_episode_unmeasured": ":warning:", "drift_episode_measured": ":white_check_mark:"}


def slack_line(event: str, payload: Mapping[str, Any]) -> str:
    """One line on-call reads in the channel (and in a phone's notification), e.g.
    ':rotating_light: rollback ml/rec-model v2.1.0 -> stable 100%: ...': where, what, the weights now, why."""
    b = webhook_body(event, payload)
    model = f"{b['namespace']}/{b['model']}" if b["namespace"] else b["model"]
    canary, stable, w = b["canary_version"], b["stable_version"], b["weights"]
    now = "weights unknown" if w is None else f"stable {w['stable']}%" + (f" / canary {w['canary']}%" if w["canary"] else "")
    reason = _trim(b["reason"], 300)
    head = {"rollback": f"rollback {model} {canary} -> {now}",
            "aborted": f"aborted {model} {canary} -> {now}",
            "promotion": f"promoted {model} {canary} (replaces {stable})",
            "prediction_shift": f"prediction shift {model} {canary} vs {stable}"}.get(
                event, " ".join(x for x in (event, model, canary) if x))
    line = f"{_ICONS.get(event, ':information_source:')} {head}" + (f": {reason}" if reason else "")
    return _cut(_esc(line), 3000)


def slack_body(event: str, payload: Mapping[str, Any]) -> dict[str, Any]:
    """Slack incoming-webhook body: the line as `text` (notifications) and blocks with the details."""
    b = webhook_body(event, payload)
    line = slack_line(event, payload)
    w = b["weights"]
    if event.startswith("drift_"):  # a model version's drift, no rollout: no canary, no weights ("unknown" read
        # as a traffic split gone wrong), the version as what it is
        fields = [(k, v) for k, v in (("Model", b["model"]), ("Namespace", b["namespace"]),  # watcher-wide: no model
                                      ("Version", b["stable_version"]), ("Event", event)) if v]
    else:
        fields = [("Model", b["model"]), ("Rollout", f"{b['namespace']}/{b['rollout']}"),
                  ("Stable", b["stable_version"]), ("Canary", b["canary_version"]),
                  ("Weights", f"stable {w['stable']}% / canary {w['canary']}%" if w else "unknown"), ("Event", event)]
    for ev in b["evidence"][:4]:  # Slack allows 10 fields per section
        if isinstance(ev, dict) and "check" in ev:  # a rollout's CheckResult
            fields.append((str(ev["check"]), f"{ev.get('outcome', '')}: {ev.get('reason', '')}"))
        elif isinstance(ev, dict) and "feature" in ev:  # a drift alert's feature
            fields.append((str(ev["feature"]), f"{ev.get('test', '')} {_num(ev.get('value'))} (threshold "
                                               f"{_num(ev.get('threshold'))})" + (" drifted" if ev.get("drifted") else "")))
        elif isinstance(ev, str) and ev:  # a missing-values alert's line per feature
            fields.append(("Feature", ev))
    # Slack refuses the whole message (400 invalid_blocks) past 3000 characters a section text and 2000 a
    # field: the lengths are counted after escaping, which makes one "&" five characters
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": _cut(line, 3000)}},
              {"type": "section", "fields": [{"type": "mrkdwn", "text": f"*{_cut(_esc(k), 100)}*\n{_cut(_esc(v), 1800)}"}
                                             for k, v in fields]}]
    look = next_command(event, payload)
    if look:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": _cut(f"Next: `{_esc(look)}`", 3000)}})
    return {"text": line, "blocks": blocks}


def next_command(event: str, payload: Mapping[str, Any]) -> str:
    """The command on-call runs first after a rollout's end: its weights, phase, the verdict with its
    evidence and its history (`canary status`). "" for news that is not a rollout's (drift), or when the
    payload does not name its VirtualService."""
    vs = str(payload.get("virtual_service") or "")
    if event not in ("rollback", "aborted", "promotion", "prediction_shift") or not vs:
        return ""
    model, ns, route = str(payload.get("model", "")), str(payload.get("namespace", "")), str(payload.get("route") or "")
    return (f"canary status {model}" + (f" -n {ns}" if ns else "") + (f" --virtual-service {vs}" if vs != model else "")
            + (f" --route {route}" if route else ""))


def _weights(w: Any) -> dict[str, int] | None:
    if isinstance(w, Weights):
        return {"stable": w.stable, "canary": w.canary}
    if isinstance(w, Mapping) and "stable" in w and "canary" in w:
        return {"stable": int(w["stable"]), "canary": int(w["canary"])}
    if isinstance(w, str) and "/" in w:  # the "90/10" form the log lines use
        s, c = w.split("/", 1)
        return {"stable": int(s), "canary": int(c)}
    return None


def _evidence(ev: Any) -> list[Any]:
    if ev is None:
        return []
    if isinstance(ev, Verdict):
        ev = ev.results
    if isinstance(ev, (CheckResult, Mapping)):
        ev = [ev]
    return [e.to_dict() if isinstance(e, CheckResult) else e for e in ev]


def _iso(at: Any) -> str:
    if isinstance(at, str) and at:
        return at
    t = datetime.fromtimestamp(at, tz=timezone.utc) if isinstance(at, (int, float)) else datetime.now(timezone.utc)
    return t.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _json_safe(v: Any) -> Any:
    """NaN/inf -> None; anything JSON cannot hold -> its str()."""
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if v is None or isinstance(v, (str, int, bool)):
        return v
    if isinstance(v, Mapping):
        return {str(k): _json_safe(x) for k, x in v.items()}
    if isinstance(v, (list, tuple, set, frozenset)):
        return [_json_safe(x) for x in v]
    return str(v)


def _esc(text: str) -> str:
    """Slack mrkdwn control characters ('p < 0.05' must not open a link)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _cut(escaped: str, n: int) -> str:
    """`escaped` (mrkdwn) in at most n characters, never cutting an entity such as `&amp;` in two."""
    if len(escaped) <= n:
        return escaped
    head = escaped[: n - 1]
    amp = head.rfind("&")
    if amp >= 0 and ";" not in head[amp:]:
        head = head[:amp]
    return head + "…"


def _num(v: Any) -> str:
    return f"{v:.3g}" if isinstance(v, (int, float)) and not isinstance(v, bool) else str(v)


def _trim(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


__all__ = ["payload_for", "end_events", "webhook_body", "event_id", "slack_line", "slack_body", "next_command"]
