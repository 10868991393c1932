"""What on-call does after an end, by its class: the `next` field of an end's lines.

An end's line (`rollback.completed`, `rollout.aborted`; not the `rollback.started` / `rollout.aborting` before the
write, where what follows depends on whether the write lands: decision 738) said which rollout, the weights now, why (`reason`) and the class (`end_cause`), and left the person paged to
know what follows from a class: whether the version may be rolled out again as it is, what to fix first, or that
nothing is to be done (decision 678). Pure words, one per class of `rollout.ROLLBACK_REASONS`; the entry point
(promote, the controller, the sweep) is not known here, so they name what to do, not the command. The controller's
lines of a failed tick, before any end, say it too, by the failure's kind (`failed_tick_next`, decision 911)."""

from __future__ import annotations

# {version}: the canary version the end sent away from
_NEXT = {
    "check": "do not ship {version} as it is: a check showed it beyond its limit (`reason`, `evidence`); fix it, "
             "then roll out a fixed version",
    # (the gate's preflight, or its probes while the canary served a share: `runner.probe_reason`)
    "gate": "do not ship {version} as it is: it failed a Triton gate (`reason`: it did not load, refused the "
            "warm-up, or stopped answering its readiness probes while it served traffic); fix it, then roll it out "
            "again",
    # (the deadline's reason may be too few requests, data too short, or evidence too weak: coarse buckets)
    "deadline": "nothing showed {version} bad, nor proved it within its limits, by the step's deadline (`reason` says "
                "what fell short: canary requests, data, or the evidence); roll it out again with more traffic or a "
                "longer `failure.no_data_deadline`",
    "operator": "nothing to do: a person asked for it (`reason`)",
    "interrupted": "not the canary: the run was stopped (`reason`); roll {version} out again to have it judged",
    # (`reconcile.failure_cause`'s class for every failure that carries none: input refused mid-rollout too, a
    # ConfigError: a policyRef ConfigMap gone, a query Prometheus no longer takes; 714. A spec edited mid-rollout
    # and refused is the operator's, `REFUSED_EDIT`: decision 801; so is a policyRef ConfigMap edited to a policy
    # refused, `REFUSED_POLICY_EDIT`: 822)
    "infrastructure": "not the canary: fix what failed (`reason`: Prometheus, the Kubernetes API, or the rollout's "
                      "input: its spec, policy or route), then roll {version} out again",
    "foreign_edit": "not the canary: the routing was changed outside the rollout (`reason`: a person, a GitOps "
                    "sync); stop that, then roll {version} out again",
    "abandoned": "not the canary: its runner is gone (a killed CI job or pod); roll {version} out again if it is "
                 "still wanted",
    "other": "read `reason`: canary does not class this end (not a check's verdict)",
}


# how a gate's reason opens when what failed is not the canary: the stable server (`TritonEndpoint.who`,
# `runner.probe_reason`), the warm-up samples (`triton.typed_samples`, checked against the canary's signature after it
# was found compatible with stable's: stable would refuse them too), or the model name neither server serves
# (`triton._require_ready`). Such a gate's end is recorded aborted, never a verdict on the canary
NOT_THE_CANARY = ("stable Triton ", "warm-up sample file ", "model name ")


def not_the_canarys(reason: str) -> bool:
    """Whether a gate's failure (its words, or an end's reason "gate: <its words>") was not the canary's. Read from
    the words, not from the phase: a gate's rollback of a failed canary ends aborted too where its VirtualService was
    deleted before its write (decision 712)."""
    return reason.removeprefix("gate: ").startswith(NOT_THE_CANARY)


# a gate's end that was not the canary's: its class is still `gate`, as its words class it
_GATE_NOT_THE_CANARY = ("not the canary: its gate could not judge it (`reason`: the stable server, the warm-up sample "
                        "file or the model name failed); fix that, then roll {version} out again")


# how the reason of an end opens when a spec edited mid-rollout is refused (the controller's `_failed`): its class
# is the operator's, the edit's (decision 801), never `infrastructure` as `failed: <error>` read; its `next` is not
# the operator's "nothing to do", which would leave the refused spec as it is
REFUSED_EDIT = "the spec edited mid-rollout is refused"
_REFUSED_EDIT_NEXT = ("not the canary: the CanaryRollout's spec was edited mid-rollout to one the controller refuses "
                      "(`reason`: the edit, then why); fix the spec, then roll {version} out again")


# ...and when the policyRef ConfigMap's policy is edited mid-rollout to one refused (the controller's `_failed`: its
# text at the key is not the one the rollout started from; decision 822): no CanaryRollout generation changed
REFUSED_POLICY_EDIT = "the policy edited mid-rollout is refused"
_REFUSED_POLICY_EDIT_NEXT = ("not the canary: the policy in the rollout's policyRef ConfigMap was edited mid-rollout "
                             "to one the controller refuses (`reason`: which ConfigMap, then why); fix that "
                             "ConfigMap, then roll {version} out again")

# a gate's end that is the canary's pods never Ready by their own failure (`routing.pods.canary_failing`, decision 843):
# no Triton gate was asked, the cluster's own readiness refused it
POD_GATE = "no Ready pod of"
_GATE_PODS = ("do not ship {version} as it is: its pods never became Ready by their own fault (`reason`: they crash, "
              "cannot start, or fail their readiness probe); read their logs, fix it, then roll it out again")


def next_step(cause: str, version: str, *, reason: str = "") -> str:
    """What to do after an end of class `cause` (one of `rollout.ROLLBACK_REASONS`) of canary `version`; `reason`:
    the end's, which tells a gate the canary did not fail (`not_the_canarys`) and an operator's end a refused edit
    (of the spec, or of its policyRef ConfigMap)."""
    words = _GATE_NOT_THE_CANARY if cause == "gate" and not_the_canarys(reason) else \
        _GATE_PODS if cause == "gate" and POD_GATE in reason else \
        _REFUSED_EDIT_NEXT if cause == "operator" and reason.startswith(REFUSED_EDIT) else \
        _REFUSED_POLICY_EDIT_NEXT if cause == "operator" and reason.startswith(REFUSED_POLICY_EDIT) else \
        _NEXT.get(cause, _NEXT["other"])
    return words.format(version=version or "the canary version")


# what on-call does on a failed tick's line (`rollout.invalid`, `rollout.api_refused`, `rollout.tick_failed`: the
# controller's `_fail_status`, decision 911). No end yet, so no class: where the rollout's traffic is split the same
# failure ends it at stable 100% (at once, or past the failure budget for one that may pass; `Controller._failed`),
# and that end's own line carries its `next`
# a stable-100% write can fail as the tick did (the API unreachable; RBAC refusing the VirtualService's patch): the
# split then stays, said by its own lines, never "sent" (decision 953)
_UNSENT = ("; where that write fails too (the same cause: the API unreachable, the VirtualService's write refused) "
           "the split stays: `rollback.retrying` at each try, `rollback.failed` (a page) once its budget is spent; "
           "`rescue.failed` where this process had not driven it, with the command that sends stable 100% now")
_ENDED_NOW = " A rollout whose traffic is split is sent to stable 100% at once; its end's own line says what then" + _UNSENT
_FAILED_TICK = {
    "invalid": "fix what `error` names (the CanaryRollout's spec, its policy or policyRef ConfigMap, its route's "
               "VirtualService or DestinationRule, a query Prometheus refuses); the controller reads it again at "
               "each tick, its Ready condition False until it reads." + _ENDED_NOW,
    "record_newer": "upgrade this canary (controller and CLI) to the release of the canary that wrote the route's "
                    "record (a newer one, mid rolling upgrade: `error` says): its rollout is left to it, never "
                    "ended, resumed or rewritten here; `canary rollback` sends stable 100% now",
    "api_refused": "let the controller's request through (`request`, `http_status`; `error` says who refused it: "
                   "RBAC of its service account, an admission check's policy, a CRD older than this canary; a 400 "
                   "of a status write is canary's own bug: report it with this line); the controller tries again "
                   "at each tick." + _ENDED_NOW,
    "transient": "nothing while it passes: the controller tries again at each tick (`repeated`: the lines left out "
                 "since the last); if it lasts, fix what `error` names (Prometheus, the Kubernetes API, pods not "
                 "Ready). A rollout whose traffic is split is ended at stable 100% once its ticks have failed for "
                 "{budget:g} s; its end's own line says what then" + _UNSENT,
    "other_writer": "nothing to undo here: another writer decided (an operator's `canary rollback`, another "
                    "process's write, a GitOps sync: `error` says what was found); the controller follows the route "
                    "as it is at its next tick",
    "not_leader": "nothing to do on this replica: it does not hold the lease (lost, or too little of it left); the "
                  "leader drives the rollout",
    "other": "read `error`: canary does not class this failure (a gate, a stable-100% write that failed, a bug: "
             "report it with this line); the controller tries again at each tick." + _ENDED_NOW,
}


def failed_tick_next(exc: BaseException, *, budget_s: float) -> str:
    """What to do on the line of a tick that failed with `exc` (`budget_s`: how long failures that may pass are
    waited out before a split is ended). Its event is `rollout.api_refused` for an ApiRefused, `rollout.invalid`
    for any other ConfigError, else `rollout.tick_failed`, whose words follow what `Controller._failed` does with
    it."""
    from canary.errors import (ApiRefused, ConfigError, ConflictStorm, NotLeader, RecordTooNew, TransientError,
                               others_decision)

    # a newer canary's record: a ConfigError, but `_failed` never ends it (decision 169): not "fix it", not "sent to
    # stable 100%" (decision 951)
    kind = ("api_refused" if isinstance(exc, ApiRefused) else "record_newer" if isinstance(exc, RecordTooNew)
            else "invalid" if isinstance(exc, ConfigError)
            else "not_leader" if isinstance(exc, NotLeader) else "other_writer" if others_decision(exc)
            else "transient" if isinstance(exc, (TransientError, ConflictStorm)) else "other")
    return _FAILED_TICK[kind].format(budget=budget_s)
