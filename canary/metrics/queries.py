"""PromQL for each check, built from presets: pure strings, no I/O.

Kept apart from the HTTP client so every query the controller will ever send
can be printed, reviewed and unit-tested without a Prometheus.

Three metric families are understood out of the box (``metrics.source``):

``model``  -- the article's ``prometheus_client`` metrics, labels
    ``model_name``/``model_version``: ``model_inference_duration_seconds``
    (histogram, SECONDS), ``model_prediction_value`` (histogram),
    ``model_feature_missing_rate`` (gauge, a 0..1 fraction, also labelled
    ``feature_name``). Our convention, not the article's: every ``model_*``
    metric carries ``model_version`` (the article's prediction histogram and
    gauges lack it; without it the arms cannot be told apart), and errors come
    from the counter ``model_requests_total{model_name, model_version,
    outcome="success"|"error"}``. Request counts fall back to the latency
    histogram's ``_count`` when that counter is absent.
``istio``  -- Envoy's standard metrics: ``istio_request_duration_milliseconds``
    (histogram, ms) and ``istio_requests_total`` (5xx are errors). The arm is
    ``destination_version`` (the pod's ``version`` label); the model is matched
    on ``destination_service_name`` (the Kubernetes Service, which we expect to
    be named after ``Target.model``; set ``metrics.model_label`` to e.g.
    ``destination_app`` otherwise, or ``""`` to match no model label and use
    ``metrics.labels``). ``reporter="destination"`` (as Flagger does: each
    request is reported by both proxies) and ``destination_service_namespace``
    are always matched. There is no prediction or feature metric.
``triton`` -- Triton's own counters, labels ``model``/``version``:
    ``nv_inference_request_success``/``_failure``. Triton 2.51 exports no
    latency histograms, only cumulative µs counters, so a latency check with
    source ``triton`` is a ConfigError; `triton_mean_latency_query` gives the
    mean for dashboards.

``metrics.arm_label`` and ``metrics.model_label`` override the label names for
every source (a wrong override gives a loud NoData, never a silent pass);
``metrics.labels`` adds equality matchers, replacing a preset's fixed one of the
same name but never an identity one (model, arm, namespace): the policy refuses
that at load time, and `selector` raises IdentityClash should one get through, so a
query always reads exactly the model and arm it names. Label names and metric
names are validated at load time and again here; label VALUES are escaped, so no
model or version name can change the shape of a query.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Iterable, Mapping, Sequence

from canary.errors import ConfigError
from canary.model import Histogram, Target
from canary.policy import SOURCE_LABELS, Policy, identity_labels, label_name, scan_promql, source_lacks
from canary.policy_promql import code_form, selector_insertions, selector_spans
from canary.policy_fields import METRIC_PATTERN

ARMS = ("stable", "canary")
_ROLE_FIELD = {"model label": "metrics.model_label", "arm label": "metrics.arm_label", "namespace label": "namespace label"}


class IdentityClash(ConfigError, ValueError):
    """A matcher would pick another model, another arm or both arms as one. The policy refuses this
    at load time; reaching it means a policy skipped validation (a bug), never a quiet misread."""


# gRPC's codes for what HTTP calls 5xx (UNKNOWN, DEADLINE_EXCEEDED, UNIMPLEMENTED, INTERNAL, UNAVAILABLE,
# DATA_LOSS: 500, 504, 501, 500, 503, 500 in gRPC's own HTTP mapping), as Envoy writes them (numbers) and
# by name; the client's own errors (INVALID_ARGUMENT, NOT_FOUND, ...) are not counted, as 4xx are not
GRPC_SERVER_ERRORS = ('grpc_response_status=~"2|4|12|13|14|15|UNKNOWN|DEADLINE_EXCEEDED|UNIMPLEMENTED|INTERNAL|'
                      'UNAVAILABLE|DATA_LOSS"')


@dataclass(frozen=True)
class Preset:
    """Where one metric family keeps each thing a check needs (None: it has none)."""

    name: str
    requests: tuple[str, ...]  # counters summed into the request count
    errors: str  # counter of failed requests
    errors_matcher: str = ""  # constant matcher narrowing `errors` to failures
    # further matchers, each marking failures on its own (a series matching several counts once): a gRPC
    # call that fails is an HTTP 200, its failure only in grpc_response_status
    errors_also: tuple[str, ...] = ()
    requests_fallback: str | None = None  # counter used when `requests` has no series
    latency: str | None = None  # histogram base name
    latency_to_ms: float = 1.0
    prediction: str | None = None
    feature_missing: str | None = None  # gauge, fraction 0..1
    fixed: tuple[tuple[str, str], ...] = field(default=())

    # which label is the arm, the model, the namespace: the policy's table (SOURCE_LABELS), read here
    @property
    def arm_label(self) -> str:
        return SOURCE_LABELS[self.name].arm

    @property
    def model_label(self) -> str:
        return SOURCE_LABELS[self.name].model

    @property
    def namespace_label(self) -> str | None:
        return SOURCE_LABELS[self.name].namespace


PRESETS: dict[str, Preset] = {
    "model": Preset(
        name="model",
        requests=("model_requests_total",), errors="model_requests_total", errors_matcher='outcome="error"',
        requests_fallback="model_inference_duration_seconds_count",
        latency="model_inference_duration_seconds", latency_to_ms=1000.0,
        prediction="model_prediction_value", feature_missing="model_feature_missing_rate",
    ),
    "istio": Preset(
        name="istio",
        requests=("istio_requests_total",), errors="istio_requests_total", errors_matcher='response_code=~"5.."',
        errors_also=(GRPC_SERVER_ERRORS,),
        latency="istio_request_duration_milliseconds",
        fixed=(("reporter", "destination"),),
    ),
    "triton": Preset(
        name="triton",
        requests=("nv_inference_request_success", "nv_inference_request_failure"),
        errors="nv_inference_request_failure",
    ),
}


def preset(source: str) -> Preset:
    try:
        return PRESETS[source]
    except KeyError:
        raise ConfigError(f"unknown metrics source {source!r} (use one of {', '.join(PRESETS)})") from None


def escape(value: str) -> str:
    """Escape a label value for a double-quoted PromQL (or OpenMetrics) string."""
    out = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return out.replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")


def duration(window_s: float) -> str:
    """PromQL duration: whole seconds as '60s', anything finer in ms (PromQL has no '1.5s')."""
    if window_s <= 0 or not math.isfinite(window_s):
        raise ConfigError(f"window must be a positive number of seconds, got {window_s!r}")
    if float(window_s).is_integer():
        return f"{int(window_s)}s"
    return f"{max(1, round(window_s * 1000))}ms"


def _label_name(name: str, what: str) -> str:
    """The policy's own rule (`policy.label_name`), as a ConfigError naming `what`."""
    try:
        return label_name(name)
    except ValueError:
        raise ConfigError(f"{what}: {name!r} is not a valid Prometheus label name") from None


def metric_name(name: str, what: str) -> str:
    if not METRIC_PATTERN.fullmatch(name):
        raise ConfigError(f"{what}: {name!r} is not a valid Prometheus metric name")
    return name


def arm_version(target: Target, arm: str) -> str:
    if arm not in ARMS:
        raise ValueError(f"arm must be 'stable' or 'canary', got {arm!r}")
    return target.stable_version if arm == "stable" else target.canary_version


def identity(policy: Policy, target: Target, arm: str, source: str) -> dict[str, str]:
    """The matchers that pick the model, the arm and the namespace, in that order (the labels are
    the policy's `identity_labels`, the one table of which label plays which role)."""
    preset(source)  # an unknown source is a ConfigError here too
    values = {"model label": target.model, "arm label": arm_version(target, arm), "namespace label": target.namespace}
    pairs: dict[str, str] = {}
    for role, label in identity_labels(policy.metrics, source).items():
        if label in pairs:
            raise IdentityClash(f"source {source!r}: {label!r} is named for more than one of model, arm and namespace")
        pairs[_label_name(label, _ROLE_FIELD[role])] = values[role]
    return pairs


def selector(policy: Policy, target: Target, arm: str, source: str) -> str:
    """The label matchers that pick one arm of one model: '{model_name="m",model_version="2"}'.

    The identity matchers come first, then the preset's fixed matchers and
    metrics.labels; a name in both raises IdentityClash (the policy refuses it
    at load time, so reaching it is a bug, never a quiet read of the other arm
    or another model).
    """
    return _selector(policy, target, arm, source)


def _selector(policy: Policy, target: Target, arm: str, source: str, *, arm_regex: str | None = None) -> str:
    """`selector`; with `arm_regex`, the arm label matched by that regex (`=~`) instead of `arm`'s version."""
    extra = dict(preset(source).fixed)
    extra.update(policy.metrics.labels)
    extra = {_label_name(k, f"metrics.labels.{k}"): extra[k] for k in sorted(extra)}
    ident = identity(policy, target, arm, source)
    clash = sorted(set(extra) & set(ident))
    if clash:
        raise IdentityClash(f"source {source!r}: matcher(s) {clash} would override the model/arm/namespace labels")
    label = arm_label_of(policy, source) if arm_regex is not None else None
    return "{" + ",".join(f'{k}=~"{escape(arm_regex)}"' if k == label and arm_regex is not None else f'{k}="{escape(v)}"'
                          for k, v in {**ident, **extra}.items()) + "}"


def arm_label_of(policy: Policy, source: str) -> str:
    """The label that tells the arms apart (`metrics.arm_label`, else the source's: `model_version`,
    `destination_version`, `version`)."""
    return _label_name(identity_labels(policy.metrics, source)["arm label"], _ROLE_FIELD["arm label"])


def arms_selector(policy: Policy, target: Target, source: str) -> tuple[str, str, dict[str, str]]:
    """The matchers that pick BOTH arms of one model, the arm label, and {arm: its version}: `selector`'s
    matchers with the arm label's equality replaced by `=~"<stable>|<canary>"`, each version a regex
    literal (`regex_literal`: "v1.0" never matches "v1x0", "1.2+cu121" matches itself), once when both
    arms have the same version. Prometheus anchors `=~` at both ends, so no other version's series is
    picked. Grouped `by (<arm label>)`, a query over it answers one series per arm, told apart by the
    label's value; raises as `selector`."""
    versions = {arm: arm_version(target, arm) for arm in ARMS}
    regex = "|".join(regex_literal(v) for v in dict.fromkeys(versions.values()))
    return _selector(policy, target, ARMS[0], source, arm_regex=regex), arm_label_of(policy, source), versions


def _with(sel: str, matcher: str) -> str:
    return sel[:-1] + ("," if len(sel) > 2 else "") + matcher + "}" if matcher else sel


def _sum_increase(metric: str, sel: str, window_s: float) -> str:
    return f"sum(increase({metric}{sel}[{duration(window_s)}]))"


def histogram_query(base: str, sel: str, window_s: float) -> str:
    return f"sum by (le) (increase({base}_bucket{sel}[{duration(window_s)}]))"


def native_histogram_query(base: str, sel: str, window_s: float) -> str:
    """The same window of the same series read as a Prometheus *native* histogram (one sample, every
    bucket; a native histogram has no `_bucket` series): `canary.metrics.native` reads the answer."""
    return _native_query(base, sel, duration(window_s))


def _native_query(base: str, sel: str, window: str) -> str:
    return f"sum(increase({base}{sel}[{window}]))"


def split_arms(result: object, arm_label: str, versions: Mapping[str, str], keys: Iterable[str] = ()
               ) -> tuple[dict[str, list[object]], dict[str, list[object]]]:
    """An answer holding both arms' series grouped by `arm_label` (`arms_native_query_of`), or'ed
    with `one_answer` parts (keys `keys`), as ({arm: its series}, {key: that part's series}): an arm's
    series are those whose arm label is its version ({arm: version} `versions`; both arms the same
    version: both get that series, as their own queries would answer), [] for an arm or a part with
    none (missing, never 0). A series of another version, or of no part, is left out."""
    series_list = result if isinstance(result, list) else []
    arms: dict[str, list[object]] = {arm: [] for arm in versions}
    for series in series_list:
        metric = (series.get("metric") or {}) if isinstance(series, dict) else {}
        if PART_LABEL in metric:
            continue
        for arm, version in versions.items():
            if metric.get(arm_label, "") == version:
                arms[arm].append(series)
    parts = split_answer(series_list, keys)
    return arms, parts


_HISTOGRAM_QUERY = re.compile(r"^sum by \(le\) \(increase\((?P<base>[a-zA-Z_:][a-zA-Z0-9_:]*)_bucket(?P<sel>\{.*\})"
                              r"\[(?P<window>[0-9a-z]+)\]\)\)$")


def native_query_of(query: str) -> str | None:
    """For a `histogram_query`, the `native_histogram_query` of the same series and window; None for
    any other query."""
    m = _HISTOGRAM_QUERY.match(query)
    return None if m is None else _native_query(m["base"], m["sel"], m["window"])


def arms_native_query_of(query: str, arms_sel: str, arm_label: str) -> str | None:
    """For one arm's `histogram_query`, both arms' native histograms over the same metric and window as
    ONE query, one sample per arm: `sum by (<arm label>) (increase(<base>{<arms_sel>}[w]))` (`arms_sel`:
    `arms_selector`'s). Each arm's sample is its own `native_query_of` (the two selectors differ only in
    the arm label's value). Not marked with `label_replace` as `one_answer`'s parts are: Prometheus 2.42
    answers `label_replace` of a native histogram sample as a float (decision 193); `sum by` keeps it
    native (decision 195). `split_arms` takes the answer apart. None for any other query."""
    m = _HISTOGRAM_QUERY.match(query)
    return None if m is None else f"sum by ({arm_label}) (increase({m['base']}{arms_sel}[{m['window']}]))"


def series_count_query_of(query: str) -> str | None:
    """For a `histogram_query`, how many of the arm's histograms with observations in the same window
    export each bound (`count by (le)` over the histograms whose largest bucket grew): `sum by (le)` over pods
    that export different layouts holds, at a bound only some export, only their counts; such a bound
    is left out, never filled in. None for any other query."""
    m = _HISTOGRAM_QUERY.match(query)
    if m is None:
        return None
    # a histogram's largest bucket is its +Inf one, however the exporter spells it ("+Inf", "Inf", "inf")
    series = f"{m['base']}_bucket{m['sel']}[{m['window']}]"
    buckets = f"increase({series})"
    # a bucket series with fewer samples in the window than its histogram's others was added or removed
    # within it (an exporter restarted in place with another layout): its increase covers part of the
    # window only, so it is not counted and its bound is left out (every bucket of a histogram is
    # written by the same scrapes, so in a healthy one they all have the same number of samples)
    samples = f"count_over_time({series})"
    whole = f"({samples} == ignoring(le) group_left max without (le) ({samples}))"
    return f"count by (le) ({buckets} and ignoring(le) (max without (le) ({buckets}) > 0) and {whole})"


def requests_query(p: Preset, sel: str, window_s: float) -> str:
    """Requests of one arm; extra counters count as 0 when absent, the first one may not be."""
    q = _sum_increase(p.requests[0], sel, window_s)
    for extra in p.requests[1:]:
        q += f" + ({_sum_increase(extra, sel, window_s)} or vector(0))"
    if p.requests_fallback:
        q = f"({q}) or {_sum_increase(p.requests_fallback, sel, window_s)}"
    return q


# a histogram's +Inf bucket, or a series with no `le` (a counter, a native histogram): one series per target and
# label set is all these two queries need, not every bucket (an hour of every bucket series at every look)
_ONE_PER_HISTOGRAM = 'le=~"([+]?[Ii]nf(inity)?)?"'


HOST_LABEL = "canary_host"  # `scraped_twice_query`'s answer: a target's host, its `instance` without the port
INSTANCE_HOST = r"(.+?)(:[0-9]+)?"  # an `instance`, its host the first group (a RE2 and a Python regex alike)


def scraped_twice_query(metrics: Iterable[str], sel: str) -> str:
    """The scrape targets of one arm, by host (`instance` without its port), that two or more scrape jobs read now:
    a pod scraped by a ServiceMonitor and by the `prometheus.io/scrape` annotation job is in Prometheus twice,
    its series the same but for `job`, and a `sum` over the arm counts its requests twice. By host, not by
    `instance`: under Istio's metrics merging the annotation job scrapes the sidecar's :15020 and a PodMonitor
    the app's port (or Envoy's :15090), one pod under two `instance`s (decision 352's review). Empty when none
    is (series without an `instance` are not compared: nothing says they are one target). A host is named where
    one metric of it comes from two jobs, not where two exporters of a pod (the server, its sidecar's :15090) are
    each read by a job of its own (decision 397). Two pods of one arm sharing a host (hostNetwork) read by two
    jobs would be named too."""
    return scraped_twice_of([arm_series(metrics, sel)])


def scraped_twice_of(selectors: Sequence[str]) -> str:
    """`scraped_twice_query` over the series of any of `selectors` (vector selectors that match only series with an
    `instance`, `scrape_selector`'s): a custom check's are the selectors of its own PromQL (decision 378)."""
    # the host into a label of its own: written over `instance`, two targets of one host (two containers of a pod
    # on two ports, hostNetwork pods) made two series with one label set, which Prometheus refuses (422: "vector
    # cannot contain metrics with the same labelset"), and the whole look's query with it
    # by metric name too: a pod's model server and its sidecar (Envoy's :15090) are one host that two jobs read
    # (a ServiceMonitor's, Istio's envoy-stats PodMonitor), no series of it twice; a check whose series are of both
    # (a custom query or feature_drift beside `metrics.source: istio`'s requests) was no verdict on every rollout.
    # A metric of one host that two jobs read is what a sum counts twice; the answer's value: the most jobs of one
    # metric of the host.
    # A series re-exported by a target with `honor_labels: false` (another Prometheus's /federate, a Pushgateway) has
    # the federating target's `instance` and `job`, the pod's own renamed `exported_instance`/`exported_job`: its host
    # is the pod's, and each re-exporting target (job, instance, the job it was read by there) is one reading of it. A
    # pod scraped here and federated in, or federated from a Prometheus that read it twice, or through two federating
    # targets, is summed twice (12,000 read where 6,000 were served: decision 434)
    # Re-exported only with the source's job too (`exported_job`: a federated or pushed series always has one): an
    # exporter writing one `instance` on every pod (hard-coded) has it kept as `exported_instance` beside each pod's
    # own target `instance`, and two healthy pods read as one host read twice (decision 484)
    jobs = " or ".join(
        f'count by ({HOST_LABEL}, __name__, job) (label_replace({_add_matcher(inner, EXPORTED_NONE)} or '
        f'{_add_matcher(inner, JOBLESS)}, "{HOST_LABEL}", '
        f'"$1", "instance", "{INSTANCE_HOST}")) or count by ({HOST_LABEL}, __name__, job, instance, exported_job) '
        f'(label_replace({_add_matcher(inner, EXPORTED_SOME)}, "{HOST_LABEL}", "$1", "exported_instance", '
        f'"{INSTANCE_HOST}"))' for inner in selectors)
    return f"max by ({HOST_LABEL}) (count by ({HOST_LABEL}, __name__) ({jobs})) > 1"


# a target's own series (an exporter's own `instance` with no `exported_job` is the exporter's label: decision 484);
# re-exported by a federating target or a Pushgateway (`honor_labels: false`: the source's `instance` and `job` kept
# as `exported_instance`/`exported_job`)
EXPORTED_NONE, EXPORTED_SOME = 'exported_instance=""', 'exported_instance!="",exported_job!=""'
JOBLESS = 'exported_job=""'  # with an `exported_instance`: the exporter's own label, the series its target's own


PUSH_GROUP = "push_time_seconds"  # the Pushgateway's own series, one per pushed group, with its grouping labels
_PUSH_KEY = "job, instance, exported_job"  # a pushed group: its `job` and `instance` (`honor_labels: true`), or
# the Pushgateway's target and the pushed job (`honor_labels: false`)
_PUSH_ON = f"on ({_PUSH_KEY})"


def pushed_in(window_s: float) -> str:
    """The pushed groups (`PUSH_GROUP` series) that may have changed within the window ending at the evaluation time:
    every group but those whose `push_time_seconds` Prometheus read at the window's start (`offset`: its last
    sample then) is the one it reads now. A push sets its group's series and its push time together, each
    scrape reads both, and push times only grow, so such a group's every sample in the window is one push's:
    flat, it adds nothing to an `increase()` over the window, whatever its extrapolation, and has no reset
    (decision 515). Both times are Prometheus's samples: no clock of the Pushgateway's is compared with
    Prometheus's. A group with no sample at the window's start (first pushed within it) is counted as changed."""
    return f"({PUSH_GROUP} unless ({PUSH_GROUP} == {PUSH_GROUP} offset {duration(window_s)}))"


def _mixed_terms(selectors: Sequence[str], keep: str, pushed: str) -> list[str]:
    """Per selector: {`keep` labels, job, exported_job} of its series that `pushed` (push groups) names, where the
    same `keep` labels hold series no push group names (read otherwise)."""
    return [f"(count by ({keep}, job, exported_job) ({x} and {_PUSH_ON} {pushed}) and on ({keep}) "
            f"count by ({keep}) ({x} unless {_PUSH_ON} {PUSH_GROUP}))"
            for x in (_any_instance(inner) for inner in selectors)]


def _as_host(query: str) -> str:
    """`query`'s rows with the pushed job in `HOST_LABEL` (`exported_job` where the Pushgateway's own `job` is)."""
    return (f'label_replace(label_replace({query}, "{HOST_LABEL}", "$1", "job", "(.+)"), "{HOST_LABEL}", "$1", '
            f'"exported_job", "(.+)")')


def pushed_of(selectors: Sequence[str], *, window_s: float | None, by: Iterable[str] = (),
              any_push: Sequence[str] = ()) -> str:
    """The pushed jobs (in `HOST_LABEL`) whose series of one metric the series of `selectors` (`scraped_twice_of`'s)
    hold beside series of that metric read otherwise (a scrape target's, a federated pod's): a pod pushing its
    counters to a Pushgateway and scraped too is summed twice, and nothing ties the pushed group (its `instance` a pod
    name, or none at all; or the Pushgateway's own under `honor_labels: false`) to the pod, so neither host nor job
    tells them apart (decision 483). A series is pushed where the Pushgateway's `push_time_seconds` names its group.
    Series without an `instance` are looked at here (a push without one in its grouping key has none).
    `window_s`: the window an `increase()` reads these series over, in the same query; a group that did not change
    within it (`pushed_in`: its push time the same at the window's start and now) adds nothing to it and is not
    named (decision 515). None: every group (the controller's snapshots, whose window starts at another snapshot,
    read by other queries at another moment: a push time read apart from the counters could hide a push, decision
    515's review). `by`: further labels the answer keeps (the snapshots: the rollout labels). `any_push`: more
    selectors whose every pushed group is named (a custom check's own PromQL, whose arithmetic may read a flat series
    as much as any: a gauge's `avg`)."""
    keep = ", ".join((*by, "__name__"))
    pushed = PUSH_GROUP if window_s is None else pushed_in(window_s)
    terms = _mixed_terms(selectors, keep, pushed) + _mixed_terms(any_push, keep, PUSH_GROUP)
    return _as_host(f"count by ({', '.join((*by, 'job', 'exported_job'))}) ({' or '.join(terms)})")


def _any_instance(selector: str) -> str:
    """`selector` (`scrape_selector`'s) without its `instance!=""` matcher."""
    return selector.replace('{instance!=""}', "{}").replace('{instance!="",', "{").replace(',instance!=""', "")


def unscraped_query(metrics: Iterable[str], sel: str, *, seen_s: float = 3600, by: Iterable[str] = ()) -> str:
    """The scrape targets (`instance`) of one arm whose series Prometheus held within `seen_s` while the target is
    down now (`up == 0`; its series gone, or held at their last sample where they carry their own timestamps and
    get no staleness marker: decision 436): a pod whose scrape fails,
    so whatever it serves, errors included, is in no sum (`prometheus._not_twice` asks it of the canary arm
    only). A pod deleted is no target any more (its `up` goes stale): not named. Blind where a proxy answers
    the scrape (Istio's metrics merging: the sidecar's :15020 answers 200 without the app's series). `by`:
    further labels the answer keeps (the controller's batched snapshot asks for many rollouts at once: their
    model and version)."""
    return unscraped_of([arm_series(metrics, sel)], seen_s=seen_s, by=by)


def targets_of(selectors: Sequence[str]) -> str:
    """How many scrape targets (`instance`s) the series of `selectors` (`scraped_twice_of`'s) come from now: none
    (an empty answer) where they are a recording rule's output or any series without an `instance`, which the
    two other parts cannot look at (decision 381)."""
    return "count(" + " or ".join(f"count by (instance) ({inner})" for inner in selectors) + ")"


def unscraped_of(selectors: Sequence[str], *, seen_s: float = 3600, by: Iterable[str] = ()) -> str:
    """`unscraped_query` over the series of any of `selectors` (`scraped_twice_of`'s)."""
    # not `unless on (instance) <series>` (their sample now) any more: a series that carries its own timestamps (a
    # federated one, `honor_timestamps`) gets no staleness marker when its target goes down, so Prometheus answers its
    # last sample for 5 minutes, and a canary pod down 2 minutes, failing half its requests, was read as live from
    # its older samples (decision 436). A target down now names its series whether or not they are still answered
    w = duration(seen_s)
    held = " or ".join(f"last_over_time({inner}[{w}])" for inner in selectors)
    # a target's own `up` only: a federated `up` (of a pod at the source) carries the federating target's `instance`,
    # and any pod down there named every arm federated through it (decision 436)
    # joined on the job too: a target is a (job, instance), and another job failing on the same instance (the
    # annotation job over a port that wants TLS) holds none of these series (decision 470)
    own = (f"count by ({', '.join((*by, 'instance', 'job'))}) ({held}) and on (instance, job) "
           f"(up{{{EXPORTED_NONE}}} == 0)")
    # a series re-exported under `honor_labels: false` (/federate) is its pod's `exported_instance`, and that pod's
    # `up` is the federated one (`up{exported_instance=...}`), not the federating target's: named by `HOST_LABEL`
    # (written over `instance`, two federating targets' series of one pod made one label set twice: 422)
    fed_held = " or ".join(f'label_replace(last_over_time({_add_matcher(inner, EXPORTED_SOME)}[{w}]), "{HOST_LABEL}", '
                           f'"$1", "exported_instance", "(.+)")' for inner in selectors)
    fed = (f"count by ({', '.join((*by, HOST_LABEL, 'exported_job'))}) ({fed_held}) and on ({HOST_LABEL}, exported_job) "
           f'label_replace(up{{{EXPORTED_SOME}}} == 0, "{HOST_LABEL}", "$1", "exported_instance", "(.+)")')
    return f"{own} or ({fed})"  # (`and` binds before `or`)


def relabelled_of(selectors: Sequence[str], exported: Mapping[str, tuple[str, str]]) -> str:
    """The scrape targets (`instance`) of the series of `selectors` (`scraped_twice_of`'s) whose exporter tells apart
    what a target label of the same name merged: `exported` is {label: (the arm's value, the other arm's value or
    "")} (its model and arm labels). Under `honor_labels: false` a target label of that name (a pod label copied by
    `labelmap`) overrides the exporter's, which Prometheus keeps as `exported_<label>`: a stable pod labelled with
    the canary's version was read as the canary, its requests diluting the canary's errors (decision 435). Named:
    a series whose exporter says the other arm's value, and the arm's series with an `exported_<label>` where they
    hold two values or more of it (two servers' series under one arm's value). Not an exporter's value that is
    merely another name for what the arm's pods serve, the same on all of them (Triton's own `version` "1" beside
    the pod label `version` docs/triton.md attaches: the pod label is what Istio routes by; decision 468). Not the
    namespace: the target's is the pod's, which is what is meant."""
    terms = []
    for label, (value, other) in exported.items():
        name = f"exported_{label}"
        some = " or ".join(_add_matcher(inner, f'{name}!=""') for inner in selectors)
        terms.append(f"(({some}) and on () (count(count by ({name}) ({some})) > 1))")
        if other and other != value:
            terms += [_add_matcher(inner, f'{name}="{escape(other)}"') for inner in selectors]
    return "count by (instance) (" + " or ".join(terms) + ")"


def arm_series(metrics: Iterable[str], sel: str) -> str:
    """The series of `metrics` that `sel` (an arm's `selector`) picks, as `scrape_selector` narrows them."""
    return scrape_selector(_with(sel, f'__name__=~"{"|".join(metrics)}"'))


HELD_REACH_S = 60.0  # how far before a window `held_query` looks for a sample (at least one of its subquery's steps)
HELD_STEPS = 30  # its subquery's steps over the window, about (`held_step`)
HELD_LABEL = "canary_held"  # `held_query`'s term of each selector


def held_query(selectors: Sequence[str], window_s: float) -> str:
    """Seconds back from the query's instant to the oldest sample Prometheus holds of any series of `selectors`
    (each a plain vector selector: `timestamp()` reads a sample's own time only of one), looked for over the window
    and `HELD_REACH_S` before it: at least `window_s` where the data reach the window's start. Less where they do not:
    a Prometheus restarted without its storage (an emptyDir, a pod rescheduled) answers `increase()` over the
    window from its first scrapes on, so a look "over the step" judged only what came after the restart (decision
    574). At most one subquery step (`held_step`) short of the first sample: never more than is held.
    Empty where no series matches. Each selector must name ONE metric: `timestamp()` drops the name, and two
    counters of one selector with the same other labels (Triton's `nv_inference_request_success` and `_failure`)
    made Prometheus refuse the whole look's query ("vector cannot contain metrics with the same labelset"); each
    term carries its own `HELD_LABEL` value, so `or` keeps every term's series (decision 586)."""
    step = held_step(window_s)
    reach = f"[{duration(window_s + max(HELD_REACH_S, step))}:{duration(step)}]"  # a step at or before its start
    return "time() - min(" + " or ".join(
        f'label_replace(min_over_time(timestamp({sel}){reach}), "{HELD_LABEL}", "{i}", "", "")'
        for i, sel in enumerate(selectors)) + ")"


def held_step(window_s: float) -> float:
    """`held_query`'s subquery resolution: 1/`HELD_STEPS` of the window, in whole seconds (10 s at 300 s). Prometheus
    evaluates `timestamp()` of every series at every step: at a fixed 10 s over a 25-minute window the request
    count's query took 6 times as long (50 rollouts, 3 pods an arm), and a 10 s window (the sandbox's interval)
    was judged up to 10 s short where data began inside it (a Prometheus just started: decision 587). Held data
    are judged up to a step shorter (3% of the window), never longer."""
    return float(max(1, math.ceil(window_s / HELD_STEPS)))


def scrape_selector(selector: str) -> str:
    """A vector selector (`x`, `x{...}`, `{...}`) narrowed to series with an `instance` (a target's; a recording
    rule's output has none, and is never compared) and, where it does not match `le` itself, to a histogram's +Inf
    bucket or series with no `le` (one series per target and label set)."""
    narrowed = _add_matcher(selector, 'instance!=""')
    return narrowed if _MATCHES_LE.search(selector) else _add_matcher(narrowed, _ONE_PER_HISTOGRAM)


_MATCHES_LE = re.compile(r"[{,]\s*le\s*[=!]")


def _add_matcher(selector: str, matcher: str) -> str:
    """`selector` with `matcher` among its matchers: `x` -> `x{m}`, `x{}` -> `x{m}`, `x{a="b"}` -> `x{a="b",m}`."""
    body = selector.rstrip()
    if not body.endswith("}"):
        return body + "{" + matcher + "}"
    inner = body[:-1].rstrip()
    return inner + ("" if inner.endswith(("{", ",")) else ",") + matcher + "}"


def errors_query(p: Preset, sel: str, window_s: float) -> str:
    """Failed requests; absent series mean none (a 5xx series exists only after a 5xx), but only where
    the arm exports the request counter that would carry them: an arm counted by the fallback (a
    histogram's `_count`) has no error count at all, and reading it as 0 errors passed a canary
    that exports no request counter (an empty answer: NoData). A preset's `errors_also` matchers are
    or'ed in, series by series (`or` keeps one copy of a series two matchers pick): Istio's gRPC calls
    that fail are HTTP 200 with a grpc_response_status, and read as 0 errors on response_code alone."""
    w = duration(window_s)
    failed = " or ".join(f"increase({p.errors}{_with(sel, m)}[{w}])" for m in (p.errors_matcher, *p.errors_also))
    errors = f"sum({failed})"
    return f"({errors} or ({_sum_increase(p.requests[0], sel, window_s)} * 0))"


PART_LABEL = "canary_part"  # the label `one_answer` marks each part's series with


def one_answer(parts: Mapping[str, str]) -> str:
    """ONE query whose answer holds every query of `parts` ({key: PromQL}), each part's series marked with
    `PART_LABEL`=key (`split_answer` takes them apart). One query is one HTTP request, so one Prometheus
    answers every part at one instant: behind a load balancer over replicas (kube-prometheus-stack's
    `replicas: 2` behind its Service) separate queries may each reach another replica, whose samples are
    another scrape's (up to an interval apart) and whose history may have a gap (a replica restarted with
    empty storage): a count and the count it is divided by, read from two of them, are no count of one
    window (decision 175). Each part must answer label-free series (`sum(...)`), which every query of the
    presets' requests and errors roles does; a key must be a valid label value (any text)."""
    return " or ".join(f'label_replace(({query}), "{PART_LABEL}", "{escape(key)}", "", "")'
                       for key, query in parts.items())


def split_answer(result: object, keys: Iterable[str]) -> dict[str, list[object]]:
    """`one_answer`'s answer as {key: that part's series (marker removed)}: [] for a part with no series,
    as its own query would have answered. A series of no part (not a vector) is left out."""
    out: dict[str, list[object]] = {key: [] for key in keys}
    for series in result if isinstance(result, list) else []:
        metric = dict(series.get("metric") or {}) if isinstance(series, dict) else {}
        key = metric.pop(PART_LABEL, None)
        if key in out:
            out[key].append({**series, "metric": metric})
    return out


def feature_missing_query(p: Preset, sel: str, window_s: float) -> str:
    """Mean missing fraction over the window and over all features (each feature weighs the same)."""
    return f"avg(avg_over_time({p.feature_missing}{sel}[{duration(window_s)}]))"


# What `canary.drift.exporter` exports, read by the `feature_drift` check (and `canary drift check`)
FEATURE_BUCKETS = "model_feature_value_bucket"
FEATURE_CATEGORIES = "model_feature_category_total"
FEATURE_MISSING = "model_feature_missing_total"


def feature_queries(sel: str, window_s: float) -> dict[str, str]:
    """One arm's per-feature distributions over the window: {role: PromQL}, one query per role
    whatever the number of features (grouped `by (feature, ...)`). Inputs only: the exporter marks
    the prediction column role="prediction" (series without the label are inputs)."""
    w = duration(window_s)
    sel = _with(sel, 'role!="prediction"')
    return {"feature_buckets": f"sum by (feature, le) (increase({FEATURE_BUCKETS}{sel}[{w}]))",
            "feature_categories": f"sum by (feature, category) (increase({FEATURE_CATEGORIES}{sel}[{w}]))",
            "feature_missing_counts": f"sum by (feature) (increase({FEATURE_MISSING}{sel}[{w}]))"}


def triton_mean_latency_query(sel: str, window_s: float, *, include_queue: bool = False) -> str:
    """Mean request latency in ms from Triton's cumulative µs counters (no quantiles possible)."""
    w = duration(window_s)
    num = f"sum(increase(nv_inference_request_duration_us{sel}[{w}]))"
    if include_queue:
        num = f"({num} + sum(increase(nv_inference_queue_duration_us{sel}[{w}])))"
    den = f"(sum(increase(nv_inference_request_success{sel}[{w}])) + sum(increase(nv_inference_request_failure{sel}[{w}])))"
    return f"{num} / {den} / 1000"


def latency_metric(p: Preset, check_name: str) -> tuple[str, float]:
    if p.latency is None:
        raise ConfigError(f"check {check_name!r}: source {p.name!r} has {_lacks(p, 'latency')}")
    return p.latency, p.latency_to_ms


def prediction_metric(p: Preset, check_name: str, metric: str | None) -> str:
    if metric:
        base = metric[: -len("_bucket")] if metric.endswith("_bucket") else metric
        return metric_name(base, f"check {check_name!r}: metric")
    if p.prediction is None:
        raise ConfigError(f"check {check_name!r}: source {p.name!r} has {_lacks(p, 'prediction_shift')}")
    return p.prediction


def feature_metric(p: Preset, check_name: str) -> None:
    if p.feature_missing is None:
        raise ConfigError(f"check {check_name!r}: source {p.name!r} has {_lacks(p, 'feature_missing')}")


def _lacks(p: Preset, kind: str) -> str:
    """The policy's words for what `p` lacks (`policy.source_lacks`, which refuses such a check at load
    time: reaching this means a policy skipped validation)."""
    return source_lacks(p.name, kind) or f"no metric for a {kind} check"


def render_custom(template: str, *, check_name: str, model: str, version: str, namespace: str, window_s: float,
                  labels: Mapping[str, str] | None = None) -> str:
    """Substitute {model} {version} {namespace} {window} into a custom check's PromQL, and add `labels`
    (the policy's `metrics.labels`) as equality matchers to every vector selector in it.

    Values are escaped for a double-quoted string (and, in a string after `=~` or `!~`, as a regex
    literal: `regex_literal`), and a name placeholder found
    anywhere else (bare, or in '...' or `...`) is refused: escaping only protects
    inside double quotes, and a model name must never become PromQL. Comments
    and unknown {names} are left as written (the policy refuses the latter).
    Where the matchers go is `policy_promql.selector_insertions`'s (`x[5m]` -> `x{cluster="eu-1"}[5m]`,
    `x{a="b"}` -> `x{a="b",cluster="eu-1"}`): a custom check read every cluster while the policy's
    other queries read one.
    """
    values = {"model": model, "version": version, "namespace": namespace}
    matchers = ",".join(f'{_label_name(k, f"metrics.labels.{k}")}="{escape(v)}"' for k, v in sorted((labels or {}).items()))
    inserts = {at: {"braces": "{" + matchers + "}", "first": matchers, "append": "," + matchers}[form]
               for at, form in (selector_insertions(template) if matchers else ())}
    out: list[str] = []
    pos = 0
    code, regex, was = "", False, ""  # the code before the current string; is that string a regex?
    for text, ctx, name in scan_promql(template)[0]:
        out.append(inserts.get(pos, ""))
        pos += len(text)
        if ctx == '"' and was != '"':  # a double-quoted string opens: after =~ or !~ it is a regex
            regex = code.rstrip().endswith(("=~", "!~"))
        if not ctx:
            code = (code + text)[-16:]
        was = ctx
        if name == "window":
            out.append(duration(window_s))
        elif name not in values:
            out.append(text)
        elif ctx == '"':  # in a regex matcher the value is a literal too: "v2.1.0" never matches "v2x1y0"
            out.append(escape(regex_literal(values[name]) if regex else values[name]))
        else:
            raise ConfigError(
                f"check {check_name!r}: placeholder {{{name}}} must stand inside a double-quoted "
                f'string, e.g. model_name="{{{name}}}"; query: {template}'
            )
    out.append(inserts.get(pos, ""))
    return "".join(out)


def custom_selectors(template: str, *, check_name: str, model: str, version: str, namespace: str, window_s: float,
                     labels: Mapping[str, str] | None = None) -> list[str]:
    """Every vector selector of a custom check's PromQL as `render_custom` renders it for one arm (`metrics.labels`
    added), each once, comments dropped: the series the author's query reads, whatever it makes of them (decision
    378)."""
    out = [render_custom(code_form(template[start:end]), check_name=check_name, model=model, version=version,
                         namespace=namespace, window_s=window_s, labels=labels)
           for start, end in selector_spans(template)]
    return list(dict.fromkeys(out))


_RE2_META = frozenset("\\.+*?()|[]{}^$")


def regex_literal(value: str) -> str:
    """`value` with RE2's metacharacters escaped, so a regex matches it and nothing else (before the
    PromQL string escaping): a version "v1.0+cpu" in `model_version=~"{version}"` matched no series of
    its own ('+' a quantifier), and "v1.0" matched "v100"."""
    return "".join("\\" + c if c in _RE2_META else c for c in value)


def parse_le(value: str) -> float:
    """A bucket's `le` label as a float ('+Inf', '0.25', '1e+06')."""
    return float(value)  # Python reads '+Inf', 'Inf' and '1e+06' as Prometheus writes them


# `increase()` extrapolates each bucket series on its own (a young series by up to half a scrape
# interval), so neighbouring buckets of a healthy histogram can disagree by a few percent over a short
# window; more than this share (and more than NOT_CUMULATIVE_MIN requests) is a broken exporter or rule
NOT_CUMULATIVE_SHARE = 0.1
NOT_CUMULATIVE_MIN = 10.0


def not_cumulative(pairs: Iterable[tuple[float, float]], *, share: float = NOT_CUMULATIVE_SHARE) -> str:
    """Why (le, count) pairs of one histogram answer are not cumulative counts ("" when they are, up to
    `share` of a lower bucket's count): a NaN count, or a higher bucket (+Inf included) that counts
    materially fewer than a lower one. `normalise` would repair such an answer into another
    distribution (a canary whose le="0.01" counted every request read as p95 9.5 ms, and passed)."""
    by_le: dict[float, float] = {}
    for le, count in pairs:
        if math.isnan(count):
            return f"le={le:g} counts NaN"
        by_le[le] = by_le.get(le, 0.0) + count
    top_le, top = math.nan, 0.0
    for le in sorted(by_le):
        count = by_le[le]
        if top - count > max(NOT_CUMULATIVE_MIN, share * top):
            return f"le={top_le:g} counts {top:.6g} but le={le:g} only {count:.6g}"
        if count > top:
            top_le, top = le, count
    return ""


def normalise(raw: Iterable[tuple[float, float]], bounds: Sequence[float], *, scale: float = 1.0,
              nan_unknown: bool = False) -> Histogram:
    """Turn `sum by (le) (increase(...))` samples into a valid cumulative Histogram.

    `increase()` extrapolates each bucket series separately, so neighbouring
    buckets can disagree by a little (a lower bucket slightly above a higher
    one), and a bucket may be absent or NaN. We sum samples with the same
    bound ('1' and '1.0' from different exporters), sort numerically with
    +Inf last, treat absent/NaN as "no more observations than the bucket
    below", and clamp to a running maximum so the counts never decrease.
    `bounds` are the bounds to give counts at: the callers pass the arm's own,
    and the judge compares two arms only on the bounds both have (a bound one
    arm lacks is never filled in); `scale` converts bounds (1000 for seconds -> ms). `nan_unknown`: a bound
    below +Inf that counts NaN (one Prometheus could not compute) stays NaN, not carried from the one below (a
    count invented for it): the judge leaves that bound out and names it (`judge.countable_buckets`, decision 1053).
    """
    by_le: dict[float, float] = {}
    unknown: set[float] = set()
    for le, count in raw:
        if math.isnan(count) or math.isnan(le):
            if nan_unknown and math.isnan(count) and not math.isnan(le) and not math.isinf(le):
                unknown.add(le)
            continue
        by_le[le] = by_le.get(le, 0.0) + max(0.0, count)
    ordered = sorted({b for b in bounds if not math.isnan(b)} | set(by_le) | unknown | {math.inf})
    counts: list[float] = []
    running = 0.0
    for le in ordered:
        if le in unknown:  # one series' NaN makes the bound's sum unknown, whatever another series counted
            counts.append(math.nan)
            continue
        running = max(running, by_le.get(le, running))
        counts.append(running)
    scaled = tuple(b if math.isinf(b) else _scale(b, scale) for b in ordered)
    return Histogram(bounds=scaled, counts=tuple(counts))


def _scale(bound: float, scale: float) -> float:
    # round away binary noise (0.025 * 1000 = 25.000000000000004) without merging real bounds
    return float(f"{bound * scale:.12g}")
