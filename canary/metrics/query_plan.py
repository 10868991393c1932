"""Which PromQL a look sends for each check, both arms: pure, so it can be checked before it runs.

`PrometheusProvider.measure` and `request_counts` send exactly these queries,
and `preflight` asks the same ones once before any traffic moves: one plan, so
what is checked is what runs.
"""

from __future__ import annotations

from dataclasses import dataclass

from canary.errors import ConfigError
from canary.metrics import queries as q
from canary.model import Target
from canary.policy import Check, Policy, identity_labels

HISTOGRAM = "histogram"  # the plan role read as buckets
FEATURE_ROLES = ("feature_buckets", "feature_categories", "feature_missing_counts")  # feature_drift: series per feature
# every other role is one number
Plan = dict[str, dict[str, str]]  # arm -> role -> PromQL, in the order `measure` sends them


def query_plan(policy: Policy, check: Check, target: Target, *, window_s: float) -> Plan:
    """Every query `measure` sends for one check: {arm: {role: PromQL}}, both arms.

    Roles: ``histogram`` (latency, prediction_shift), ``requests`` (every kind but latency, whose
    histogram counts requests), ``errors``,
    ``feature_missing``, ``custom``, and for feature_drift the per-feature roles of
    `FEATURE_ROLES` (many series per answer, grouped by feature). Pure; raises ConfigError for what is wrong
    before any request (an invalid label or metric name, a source without the
    metric, a misplaced placeholder, an unknown kind).
    """
    source = policy.source_of(check)
    p = q.preset(source)
    name = check.name
    out: Plan = {}
    for arm in q.ARMS:
        sel = q.selector(policy, target, arm, source)
        if check.kind == "latency":
            out[arm] = {HISTOGRAM: q.histogram_query(q.latency_metric(p, name)[0], sel, window_s)}
        elif check.kind == "prediction_shift":
            # requests too: a prediction histogram counts output rows, and min_canary_requests counts requests
            out[arm] = {HISTOGRAM: q.histogram_query(q.prediction_metric(p, name, check.metric), sel, window_s),
                        "requests": q.requests_query(p, sel, window_s)}
        elif check.kind == "error_rate":
            out[arm] = {"requests": q.requests_query(p, sel, window_s), "errors": q.errors_query(p, sel, window_s)}
        elif check.kind == "feature_missing":
            q.feature_metric(p, name)
            out[arm] = {"feature_missing": q.feature_missing_query(p, sel, window_s),
                        "requests": q.requests_query(p, sel, window_s)}
        elif check.kind == "feature_drift":
            out[arm] = {**q.feature_queries(sel, window_s), "requests": q.requests_query(p, sel, window_s)}
        elif check.kind == "custom":
            custom = q.render_custom(check.template(arm), check_name=name, model=target.model,  # type: ignore[union-attr]
                                     version=q.arm_version(target, arm), namespace=target.namespace, window_s=window_s,
                                     labels=policy.metrics.labels)
            out[arm] = {"custom": custom, "requests": q.requests_query(p, sel, window_s)}
        else:
            raise ConfigError(f"check {name!r}: unknown kind {check.kind!r}")
    return out


def request_plan(policy: Policy, target: Target, *, window_s: float) -> dict[str, str]:
    """The query `request_counts` sends per arm: {arm: PromQL} (source: `metrics.source`)."""
    source = policy.metrics.source
    p = q.preset(source)
    return {arm: q.requests_query(p, q.selector(policy, target, arm, source), window_s) for arm in q.ARMS}


def request_query(policy: Policy, target: Target, *, window_s: float, held: bool = True) -> tuple[str, dict[str, str]]:
    """What `request_counts` sends: both arms' `request_plan` queries ("<arm>/requests") and the parts naming an
    arm's targets read by two scrape jobs or down (`twice_parts` over the request counter of `metrics.source`), as
    ONE query (`queries.one_answer`), and its parts. The count is the pass floor (`min_canary_requests`) and the
    level a pass is judged at: summed over a pod read twice, a canary met it with half its requests (decision 380).
    Its `HELD` part says how far back Prometheus holds the counters counted (decision 574); `held=False` leaves it out
    (a store that refuses its subquery: decision 593)."""
    plan = request_plan(policy, target, window_s=window_s)
    names = _request_names(q.preset(policy.metrics.source))
    parts = {f"{arm}/requests": plan[arm] for arm in q.ARMS}
    for arm in q.ARMS:
        sel = q.selector(policy, target, arm, policy.metrics.source)
        parts[f"{arm}/{TWICE}"] = q.scraped_twice_query(names, sel)
        parts[f"{arm}/{UNSCRAPED}"] = q.unscraped_query(names, sel)
        parts[f"{arm}/{PUSHED}"] = q.pushed_of([q.arm_series(names, sel)], window_s=window_s)
        exported = _exported(policy, target, arm, policy.metrics.source)
        if exported:
            parts[f"{arm}/{RELABELLED}"] = q.relabelled_of([q.arm_series(names, sel)], exported)
    # how far back Prometheus holds these counters: a look judges no more than that (decision 574); the series the
    # count sums, a scrape target's or not (a recording rule's output is lost with the storage too: decision 613)
    if held:
        parts[HELD] = q.held_query([f"{name}{q.selector(policy, target, arm, policy.metrics.source)}"
                                    for arm in q.ARMS for name in names], window_s)  # one metric each (decision 586)
    return q.one_answer(parts), parts


def _exported(policy: Policy, target: Target, arm: str, source: str) -> dict[str, tuple[str, str]]:
    """{label: (the arm's value, the other arm's value or "")} of the model and arm labels, whose exporter's own
    values (`exported_<label>`) must not tell apart what the label merged (`queries.relabelled_of`)."""
    other = "canary" if arm == "stable" else "stable"
    values = {"model label": (target.model, ""), "arm label": (q.arm_version(target, arm), q.arm_version(target, other))}
    return {label: values[role] for role, label in identity_labels(policy.metrics, source).items() if role in values}


def _request_names(p: q.Preset) -> tuple[str, ...]:
    """The request counters of a source's preset, its fallback (a server without the first) included."""
    return p.requests + ((p.requests_fallback,) if p.requests_fallback else ())


# the kinds whose roles, both arms, a look asks as ONE query: a count and the count (or fraction) it is
# combined with must come from one Prometheus (behind a load balancer over replicas: decisions 175, 189)
ONE_QUERY_KINDS = {"error_rate": ("requests", "errors"), "feature_missing": ("feature_missing", "requests"),
                   "feature_drift": (*FEATURE_ROLES, "requests")}


TWICE = "scraped_twice"  # the one-query part, per arm, naming the arm's targets that two scrape jobs read
UNSCRAPED = "unscraped"  # ... naming the arm's targets that are down now, their series gone (`queries.unscraped_query`)
RELABELLED = "relabelled"  # ... naming the arm's targets whose exporter said another model or version (`exported_*`)
PUSHED = "pushed"  # ... naming the pushed jobs whose series of a metric the arm holds beside ones read otherwise
HELD = "held"  # the request count's part: seconds back Prometheus holds either arm's counters (`queries.held_query`)
TARGETS = "targets"  # a custom check's: how many targets its series come from (`queries.targets_of`; none: unchecked)


def twice_parts(policy: Policy, check: Check, target: Target, *, window_s: float) -> dict[str, str]:
    """{"<arm>/scraped_twice": `queries.scraped_twice_query`, "<arm>/unscraped": `queries.unscraped_query`}
    over the series `check` counts: parts of the
    ONE query of an error_rate, feature_missing or feature_drift check and of a histogram check's both-arms
    queries, so a look asks nothing more, and preflight asks what a look sends; a custom check's are a query of
    their own (`twice_query_of`). A custom check's are over every selector of its PromQL (`queries.custom_selectors`)
    and the requests its `n` counts (decision 378). "<arm>/pushed" (`queries.pushed_of`): the pushed jobs beside
    series read otherwise, of those groups that changed within the look's `window_s` (s; decision 515). Not in
    `query_plan`: a plan's text is a rollout record's mark (`judged_marks`), and the arm's counts are the
    same whether or not this is asked."""
    p = q.preset(policy.source_of(check))
    if check.kind == "latency":
        base = q.latency_metric(p, check.name)[0]
        names: tuple[str, ...] = (f"{base}_bucket", base)
    elif check.kind == "prediction_shift":
        base = q.prediction_metric(p, check.name, check.metric)
        names = (f"{base}_bucket", base, *p.requests)
    elif check.kind == "feature_drift":  # counts of feature values per arm: a pod read twice weighs twice, one
        # down is out of the distribution (its requests too: the floor)
        names = (q.FEATURE_BUCKETS, q.FEATURE_CATEGORIES, q.FEATURE_MISSING, *p.requests)
    elif check.kind in ONE_QUERY_KINDS or check.kind == "custom":  # a custom check's: also its PromQL's selectors
        names = _request_names(p)
    else:
        return {}
    source = policy.source_of(check)
    out: dict[str, str] = {}
    for arm in q.ARMS:
        sel = q.selector(policy, target, arm, source)
        selectors = [q.arm_series(names, sel)]
        if check.kind == "custom":  # its arithmetic (a ratio, a max) is the author's, the series it reads are known
            selectors = [q.scrape_selector(x) for x in q.custom_selectors(
                check.template(arm), check_name=check.name, model=target.model,  # type: ignore[union-attr]
                version=q.arm_version(target, arm), namespace=target.namespace, window_s=60,  # no range in a selector
                labels=policy.metrics.labels)] + selectors
        out[f"{arm}/{TWICE}"] = q.scraped_twice_of(selectors)
        out[f"{arm}/{UNSCRAPED}"] = q.unscraped_of(selectors)
        # a pushed group that did not change in the window adds nothing to its `increase()`s (decision 515); a custom
        # check's own selectors: any pushed group (its arithmetic is the author's)
        out[f"{arm}/{PUSHED}"] = q.pushed_of(selectors[-1:], window_s=window_s, any_push=selectors[:-1])
        exported = _exported(policy, target, arm, source)
        if exported:
            out[f"{arm}/{RELABELLED}"] = q.relabelled_of(selectors, exported)
        if check.kind == "custom":
            out[f"{arm}/{TARGETS}"] = q.targets_of(selectors)
    return out


def arms_query(plan: Plan, roles: tuple[str, ...], twice: dict[str, str] | None = None) -> tuple[str, dict[str, str]]:
    """`roles` of both arms of a check's plan as ONE query (`queries.one_answer`) and its parts
    ({"<arm>/<role>": PromQL}), with `twice` (`twice_parts`) among them; every role's query answers one
    label-free series (`sum`, `avg`), or a feature role's series grouped `by (feature, ...)` (the part's marker
    keeps them apart: decision 631)."""
    parts = {f"{arm}/{role}": plan[arm][role] for arm in q.ARMS for role in roles}
    parts.update(twice or {})
    return q.one_answer(parts), parts


def one_query_of(policy: Policy, check: Check, target: Target, *, window_s: float) -> str | None:
    """The ONE query a look sends for `check` in place of its plan's queries (`ONE_QUERY_KINDS`: an
    error_rate check's requests and errors, a feature_missing check's fraction and requests, a feature_drift
    check's feature roles and requests, both arms); None for the other kinds. Preflight asks it."""
    roles = ONE_QUERY_KINDS.get(check.kind)
    return None if roles is None else arms_query(query_plan(policy, check, target, window_s=window_s), roles,
                                                 twice_parts(policy, check, target, window_s=window_s))[0]


def twice_query_of(policy: Policy, check: Check, target: Target, *, window_s: float) -> str | None:
    """The ONE query a look of a custom check sends for its `twice_parts` (its per-arm query is the author's
    PromQL: the parts travel alone); None for the other kinds, whose queries carry them (a feature_drift
    check's since decision 631). Preflight asks it."""
    if check.kind != "custom":
        return None
    parts = twice_parts(policy, check, target, window_s=window_s)
    return q.one_answer(parts) if parts else None


def classic_buckets_query(histogram: str) -> tuple[str, dict[str, str]] | None:
    """A classic histogram query (`queries.histogram_query`: `sum by (le)`) and its series count
    (`queries.series_count_query_of`: how many of the arm's histograms with observations export each bound)
    as ONE query (`queries.one_answer`) and its parts ({"buckets": sum, "count": count}): what a look sends
    for an arm's classic histogram, so that one Prometheus answers both at one instant. Asked one by one
    through a load balancer over replicas, a count from a replica restarted with empty storage does not see
    a pod whose observations all came before its restart, and keeps a bound that pod lacks while the other
    replica's sum holds its counts at the other bounds: a distribution nobody observed (decision 188).
    None for any other query (a custom one, a native histogram's); preflight asks it too."""
    counting = q.series_count_query_of(histogram)
    if counting is None:
        return None
    parts = {"buckets": histogram, "count": counting}
    return q.one_answer(parts), parts


HISTOGRAM_KINDS = ("latency", "prediction_shift")  # the kinds whose two arms' histograms a look asks together


def arms_histograms_query(plan: Plan, twice: dict[str, str] | None = None) -> tuple[str, dict[str, str]] | None:
    """A histogram check's classic histograms, both arms, as ONE query (`queries.one_answer`) and its parts:
    "<arm>/buckets" and "<arm>/count" (`classic_buckets_query`'s sum and series count) and, where the plan
    has them (prediction_shift), "<arm>/requests". What a look sends for a latency or prediction_shift
    check, so that one Prometheus answers both arms over one window at one instant: asked one arm at a time
    through a load balancer over replicas, one arm came from a replica restarted with empty storage (its
    last minutes) and the other from one holding the whole window, and two arms that served alike read
    apart (decision 193). None when an arm's query is no classic histogram query."""
    parts: dict[str, str] = {}
    for arm in q.ARMS:
        combined = classic_buckets_query(plan[arm][HISTOGRAM])
        if combined is None:
            return None
        parts.update({f"{arm}/{key}": part for key, part in combined[1].items()})
    parts.update({f"{arm}/requests": plan[arm]["requests"] for arm in q.ARMS if "requests" in plan[arm]})
    parts.update(twice or {})  # `twice_parts`
    return q.one_answer(parts), parts


@dataclass(frozen=True)
class ArmsNative:
    """What a look sends for a histogram check's NATIVE histograms, both arms, as ONE query (`query`), and
    how to read it: the arms' samples grouped by `arm_label`, each arm's the one whose label is its
    version (`versions`: {arm: version}; `queries.split_arms`); each arm's own native query
    (`arm_queries`: {arm: PromQL}, what an error about that arm names); and, for a prediction_shift check,
    both arms' request counts as `one_answer` parts or'ed in (`parts`: {"<arm>/requests": PromQL})."""

    query: str
    arm_label: str
    versions: dict[str, str]
    arm_queries: dict[str, str]
    parts: dict[str, str]


def arms_native_query(policy: Policy, check: Check, target: Target, *, window_s: float) -> ArmsNative | None:
    """A latency or prediction_shift check's native histograms, both arms, as ONE query (`ArmsNative`):
    `sum by (<arm label>) (increase(<metric>{<both arms>}[w]))` (`queries.arms_native_query_of`
    over `queries.arms_selector`), or'ed, for prediction_shift, with both arms' request counts marked as
    `one_answer` parts. Asked one arm at a time through a load balancer over replicas, the two arms came
    from two replicas' windows (decisions 193, 195); `label_replace` cannot mark a native sample (2.42
    answers a float), the arm label's own value tells the arms apart. None for the other kinds, and when
    the arm label is `queries.PART_LABEL` (the arms could not be told from the parts)."""
    if check.kind not in HISTOGRAM_KINDS:
        return None
    plan = query_plan(policy, check, target, window_s=window_s)
    sel, label, versions = q.arms_selector(policy, target, policy.source_of(check))
    arm_queries = {arm: q.native_query_of(plan[arm][HISTOGRAM]) for arm in q.ARMS}
    query = q.arms_native_query_of(plan[q.ARMS[0]][HISTOGRAM], sel, label)
    if label == q.PART_LABEL or query is None or None in arm_queries.values():
        return None
    parts = {f"{arm}/requests": plan[arm]["requests"] for arm in q.ARMS if "requests" in plan[arm]}
    parts.update(twice_parts(policy, check, target, window_s=window_s))
    if parts:
        query = f"{query} or {q.one_answer(parts)}"
    return ArmsNative(query=query, arm_label=label, versions=versions,
                      arm_queries={arm: x for arm, x in arm_queries.items() if x is not None}, parts=parts)


def histogram_query_of(policy: Policy, check: Check, target: Target, *, window_s: float) -> str | None:
    """The ONE query a look sends for a latency or prediction_shift check's classic histograms, both arms
    (`arms_histograms_query`); None for the other kinds and for a histogram query of no classic form.
    Preflight asks it. A native histogram's both arms are another query (`arms_native_query`): Prometheus
    2.42 (the one tested) answers `label_replace` of a native histogram sample as a float, so it cannot be
    marked as a part of one answer (decisions 193, 195)."""
    if check.kind not in HISTOGRAM_KINDS:
        return None
    got = arms_histograms_query(query_plan(policy, check, target, window_s=window_s),
                                twice_parts(policy, check, target, window_s=window_s))
    return None if got is None else got[0]
