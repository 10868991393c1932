"""Pure statistics for canary analysis: no I/O, no clocks, no cluster clients.

`judge.judge(policy, measurements, prior=...)` turns one look's measurements
into a `Verdict`, pooling the failure evidence of earlier windows
anytime-validly (`sequential`); `plan` sizes a rollout before it starts. The
layering test (tests/unit/test_layering.py) keeps this package free of I/O.

Nothing is re-exported here on purpose: `canary.analysis.judge` must stay the
module (a re-exported function of the same name would shadow it).
"""
