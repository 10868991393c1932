"""Read live feature counts from Prometheus: what `canary.drift.exporter` exports, over a window.

One query per profile, whatever the number of features (constant in features and in requests), of
five parts (`queries.one_answer`: one Prometheus answers them all, one instant, `time=`: each query at
its own "now" read windows that slid apart, and a mean of one answer over another was off by their
difference; each its own query, behind a load balancer over Prometheus replicas, a sum and its count
came from two of them, decision 623):

    sum by (feature, le) (increase(model_feature_value_bucket{model_name="M", model_version="V", namespace=~"N|"}[W]))
    sum by (feature, category) (increase(model_feature_category_total{...}[W]))
    sum by (feature, sign) (increase(model_feature_value_sum_by_sign_total{...}[W])
                            and ignoring(sign) increase(model_feature_value_summed_total{...}[W]))
    sum by (feature) (increase(model_feature_value_summed_total{...}[W]))
    sum by (feature) (increase(model_feature_missing_total{...}[W]))

The live mean is (positive - negative) / summed: a sum and the count it is over, exported together by
the same exporter, so both cover the same pods over the same time. Never the sums over the buckets'
count: during a rolling upgrade the pods of an older exporter count in the buckets but not in the sums
(a mean wrong by their share: a false drift). Pods of an older exporter then still count in the
buckets; the mean is read from the others (`sum_n` in the live format says over how many values).

When no pod exports the per-sign sums (older exporters only), the histogram's own `_sum` over its own
`_count`, series by series, leaving out every series whose `_sum` fell without its `_count` falling
(`resets()` differ): a negative value makes `_sum` fall, which `increase()` reads as a restart and
turns into a wrong sum. prometheus_client leaves both out when a bound is negative. A feature without
a sound live sum is compared from its buckets alone, with a note saying its mean was not checked
(`compare`), never silently.

Every query selects the baseline's namespace (`NAMESPACE_LABEL`, the label the usual Kubernetes pod
discovery relabelling and a PodMonitor or ServiceMonitor attach to every series they scrape): one model
version served in two namespaces (prod and staging) is two live distributions, and read as one mixture,
a drift in one read as drift in both (or hidden by the other's traffic). A series without the label (a
scrape that attaches none) still matches, as before: where no series carries it nothing can tell the
namespaces apart, and requiring it would read no live data at all.

The answer is turned into `canary.drift.compare`'s live format. Buckets whose
bounds are not the profile's (an exporter built from another profile) are a
ConfigError naming the feature: comparing them would re-bin, which drift
checks never do. So are category series that are not the profile's categories
(the exporter creates one per category of its own profile; the empty category
arrives as "__empty__", since Prometheus keeps no empty label value; one spelt like either of those labels
with one "_" more: `feature_labels.category_of_label`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
import time
from typing import Any

import numpy as np

from canary.analysis.shown import duration
from canary.feature_labels import EMPTY, OTHER, category_of_label
from canary.errors import CanaryError, ConfigError, MetricsUnavailable
from canary.metrics.answers import arm_name
from canary.metrics import queries as q
from canary.metrics.features import series_by
from canary.metrics.client import PrometheusClient, Rejected


class QueryRefused(MetricsUnavailable):
    """Prometheus refused to run a live-data query (HTTP 400/422: most often more samples than its
    `--query.max-samples` over a long window, a 24h one over many pods). The live data could not be read,
    so nothing is measured (`drift check` exit 3, `drift watch`'s `drift.unmeasured`); it is not live data
    that do not fit the profile (`drift.bad_live_data`, exit 2), which it was reported as, sending on-call to
    look for an exporter built from another profile."""


class AccessRefused(ConfigError):
    """Prometheus (or a proxy before it) refused canary's access to the live data: its credentials (HTTP 401/403), or
    the URL is not a Prometheus API (a 404: a path prefix). A setup fault of the watcher's access, not live data
    that do not fit the profile: it was `drift.bad_live_data`, "the exporter counts over another profile's
    buckets", at every evaluation of every baseline, and on-call went looking for an exporter (decision 339)."""


REFUSED_HINT = ("the live data could not be read (not drift, not a profile fault): a shorter --window (or "
                "the baseline ConfigMap's modelcanary.dev/drift-window), or a higher --query.max-samples in "
                "Prometheus for a query over many pods")
# any other refusal (HTTP 400 bad_data, a 422 that is not about samples): the window is not the cure
BAD_QUERY_HINT = ("the live data could not be read (not drift, not a profile fault): the API at --prometheus-url "
                  "cannot run the query canary built, for the reason it gives above; ask it that query (a "
                  "Prometheus-compatible store without a PromQL feature it uses, a proxy that limits or rewrites "
                  "queries?)")


def said_before_query(exc: BaseException, more: str) -> str:
    """`exc`'s text with `more` (what happened to the live data, what to do) before the query it quotes last
    (`; query: ...`): the live data's one query is over 1 KB of PromQL (decision 623), and what to change came a
    kilobyte past the failure in `drift.unmeasured`'s line and `drift check`'s error (addendum to 623)."""
    head, sep, query = str(exc).partition("; query: ")
    return f"{head}{more}{sep}{query}"


def remedy(exc: BaseException) -> str:
    """What to do about live data that could not be read while Prometheus answers a trivial query (`unavailable`
    is None): appended to `drift.unmeasured`'s and `drift check`'s error. A refused query carries its own
    (`QueryRefused`). Never "drift" nor "no drift": nothing was measured, and the next evaluation asks again."""
    from canary.metrics.client import PartialAnswer

    text = str(exc)
    if isinstance(exc, QueryRefused):
        return ""
    if isinstance(exc, PartialAnswer):
        return ("; nothing measured (not drift, not no drift): Prometheus, or a store behind it (Thanos, Cortex, "
                "Mimir, a remote read), answered in part, and a sum over the series that came is a wrong number; "
                "see why in its warnings above; the next evaluation asks again")
    if "timed out" in text or "timeout" in text:
        return ("; nothing measured (not drift, not no drift): these queries took longer than Prometheus's "
                "--query.timeout or the client's budget while a trivial query is answered: a shorter --window (or "
                "the baseline ConfigMap's modelcanary.dev/drift-window) reads fewer samples; the next evaluation "
                "asks again")
    return ("; nothing measured (not drift, not no drift): Prometheus answers a trivial query but failed these "
            "queries (its error above; its own log says more); the next evaluation asks again")
SIGNED_SUMS = "model_feature_value_sum_by_sign_total"
NAMESPACE_LABEL = "namespace"  # what Kubernetes service discovery's relabelling names a scraped pod's namespace
SUMMED = "model_feature_value_summed_total"


def live_counts(client: PrometheusClient, profile: Mapping[str, Any], *, model: str, version: str,
                window_s: float, namespace: str | None = None) -> dict[str, dict[str, Any]]:
    """Per feature of the profile with live data: {"counts": [k + 1 counts over the profile's bounds], "sum",
    "sum_n", "missing"} or {"categories": {value: count}, "other", "missing"} (counts of values in the last
    `window_s` seconds, `compare`'s live format). `namespace`: only series of that namespace
    (`NAMESPACE_LABEL`) or without the label; None: every namespace. Raises MetricsUnavailable when
    Prometheus cannot be read, ConfigError when the live series are not the profile's (or Prometheus
    refuses the query or the credentials)."""
    sel = _selector(model, version, namespace)
    w = q.duration(window_s)

    # one evaluation, one instant: the client's own (replays, tests) or this machine's now
    at = getattr(client, "at", None)
    at = time.time() if at is None else at

    what = f"{model} {version}" + (f" in namespace {namespace}" if namespace is not None else "")

    def ask(parts: dict[str, tuple[str, str]]) -> dict[str, list[tuple[dict[str, str], float]]]:
        """{key: (labels, value) of `sum by (by) (expr)`} for `parts` ({key: (expr, by)}), series without a value
        left out, all of them asked as ONE query (`queries.one_answer`): one Prometheus answers every part at one
        instant. Asked apart, behind a load balancer over Prometheus replicas (kube-prometheus-stack's `replicas: 2`
        behind its Service) a sum and the count it is divided by came from two replicas, one restarted with empty
        storage: the live mean read as 2x or 0.5x the true one, a false drift of every numeric feature, and the
        missing count over another replica's present values a false MORE MISSING (decision 623; 175 for rollouts)."""
        query = q.one_answer({key: f"sum by ({by}) ({expr})" for key, (expr, by) in parts.items()})
        try:
            got = client.ask(query, check="drift", arm="", at=at, who=f"drift of {what}", strict=False, deadline=None)
        except Rejected as exc:  # Prometheus refused to run it: not live data that do not fit the profile
            many = "too many samples" in str(exc) or "max-samples" in str(exc)
            raise QueryRefused(said_before_query(exc, f"; {REFUSED_HINT if many else BAD_QUERY_HINT}")) from exc
        except ConfigError as exc:  # credentials refused, not a Prometheus API: the watcher's access, not the data
            raise AccessRefused(f"{exc} (reading the live data of {what}: nothing measured)") from exc
        except CanaryError as exc:  # the client speaks of a rollout's arms; drift reads one model's live data
            raise type(exc)(str(exc).replace(f"for {arm_name('')}", f"for the live data of {what}")) from exc
        split = q.split_answer(got, parts)
        return {key: series_by(split[key], [k.strip() for k in by.split(",")]) for key, (_, by) in parts.items()}

    def inc(metric: str) -> str:
        return f"increase({metric}{{{sel}}}[{w}])"

    answer = ask({"buckets": (inc(q.FEATURE_BUCKETS), "feature, le"),
                  "categories": (inc(q.FEATURE_CATEGORIES), "feature, category"),
                  "signs": (f"{inc(SIGNED_SUMS)} and ignoring(sign) {inc(SUMMED)}", "feature, sign"),
                  "summed": (inc(SUMMED), "feature"),
                  "missing": (inc(q.FEATURE_MISSING), "feature")})
    buckets: dict[str, dict[float, float]] = defaultdict(dict)
    for m, v in answer["buckets"]:
        # one bound, one bucket: pods whose client libraries spell it two ways ("20.0" and "20", "+Inf" and
        # "Inf") are two series of `sum by (le)`, each with its own pods' observations: summed, as
        # `queries.normalise` sums them (keeping the last dropped the other pods' counts)
        got = buckets[m["feature"]]
        le = q.parse_le(m["le"])
        got[le] = got.get(le, 0.0) + max(v, 0.0)
    categories: dict[str, dict[str, float]] = defaultdict(dict)
    others: dict[str, float] = defaultdict(float)  # OTHER apart: a category may be spelt "__other__" (decision 540)
    for m, v in answer["categories"]:
        if m["category"] == OTHER:
            others[m["feature"]] += max(v, 0.0)
            continue
        cat = category_of_label(m["category"])  # "" for EMPTY: Prometheus keeps no empty label value
        categories[m["feature"]][cat] = categories[m["feature"]].get(cat, 0.0) + max(v, 0.0)
    parts: dict[str, dict[str, float]] = defaultdict(dict)
    for m, v in answer["signs"]:
        parts[m["feature"]][m["sign"]] = max(v, 0.0)
    summed = {m["feature"]: max(v, 0.0) for m, v in answer["summed"]}
    # (sum, count) per feature, each pair from the same series. Both signs or no mean: the exporter sends both,
    # so one missing is a sum that is no number: a counter that overflowed to +Inf (a sentinel such as
    # 1.8e308 sent twice) has an increase of Inf, then NaN (left out), and the other sign alone made a mean
    # of 0 (a false drift, every window until the pod restarted)
    mean_of = {name: (p["positive"] - p["negative"], summed[name])
               for name, p in parts.items() if summed.get(name, 0.0) > 0 and {"positive", "negative"} <= p.keys()
               and np.isfinite(p["positive"] - p["negative"])}
    if not summed:  # older exporters only: each histogram's `_sum` over its `_count`, where `_sum` never fell
        fell = f"(resets(model_feature_value_sum{{{sel}}}[{w}]) != resets(model_feature_value_count{{{sel}}}[{w}]))"
        old = ask({"sum": (f"{inc('model_feature_value_sum')} unless {fell}", "feature"),
                   "count": (f"{inc('model_feature_value_count')} unless {fell}", "feature")})
        sums = {m["feature"]: v for m, v in old["sum"]}
        for m, v in old["count"]:
            if m["feature"] in sums and v > 0:
                mean_of[m["feature"]] = (sums[m["feature"]], v)
    gone = {m["feature"]: max(v, 0.0) for m, v in answer["missing"]}
    out: dict[str, dict[str, Any]] = {}
    for name, f in profile["features"].items():
        if f["type"] == "numeric" and name in buckets:
            got, want = buckets[name], [float(b) for b in f["bounds"]]
            les = sorted(got)
            if (len(les) != len(want) + 1 or les[-1] != float("inf")
                    or not np.allclose(les[:-1], want, rtol=1e-9, atol=0.0)):
                raise ConfigError(_other_bounds(name, want, les))
            cum = np.array([got[b] for b in les])
            cum = np.maximum.accumulate(cum)  # increase() of each bucket may round differently
            out[name] = {"counts": [float(x) for x in np.diff(cum, prepend=0.0)]}
            if name in mean_of and cum[-1] > 0:  # the live mean: a lower bound on the Wasserstein distance
                out[name]["sum"], out[name]["sum_n"] = mean_of[name]
        elif f["type"] == "categorical" and (name in categories or name in others):
            _same_categories(name, f, categories.get(name, {}))
            out[name] = {"categories": dict(categories.get(name, {})), "other": others.get(name, 0.0)}
    for name in out:
        if name in gone:
            out[name]["missing"] = gone[name]
    return out


def _selector(model: str, version: str | None, namespace: str | None) -> str:
    """The label matchers of one model version's live series (`version` None: every version of the model), in
    `namespace` (its `NAMESPACE_LABEL`, or none) or in every namespace (None)."""
    sel = f'model_name="{q.escape(model)}"' + ("" if version is None else f',model_version="{q.escape(version)}"')
    if namespace is not None:
        sel += f',{NAMESPACE_LABEL}=~"{q.escape(q.regex_literal(namespace))}|"'
    return sel


def why_no_live_data(client: PrometheusClient, *, model: str, version: str, window_s: float,
                     namespace: str | None = None, series: int | None = None) -> str:
    """Why the live queries of a model version found no values at all in the window, as far as Prometheus can
    tell (asked only then: one query, two when the window holds fewer than two scrapes of the version): its series
    are there and counted nothing (no traffic), the window holds fewer than two scrapes of series that exist
    (`increase()` needs two: a window shorter than twice the scrape interval, or a target no longer scraped), or
    the model's series carry other versions (the version the server labels is
    not the profile's), or the model has none (an exporter not deployed, another model name). "" when it cannot
    tell (the questions failed): the caller's general hint stands. Never a verdict: nothing was measured either
    way. The versions are looked for over the window, or the last hour when the window is shorter."""
    at = getattr(client, "at", None)
    at = time.time() if at is None else at
    w = q.duration(window_s)
    what = f"{model} {version}" + (f" in namespace {namespace}" if namespace is not None else "")

    def ask(expr: str, by: str) -> list[tuple[dict[str, str], float]]:
        got = client.ask(expr, check="drift", arm="", at=at, who=f"why no live data of {what}", strict=False,
                         deadline=None)
        return series_by(got, [k.strip() for k in by.split(",") if k.strip()])

    def young(back: float) -> str:
        """A note when Prometheus itself holds less than `back` seconds of data (its oldest `up` sample, any target):
        restarted without its storage, new, or with a retention shorter than `back`. Its model series are then not scraped yet, or were lost with it, and
        "is the exporter deployed?" sent on-call to an exporter that was there (decision 339). "" when it holds
        more, or cannot tell (no `up` at all: a store fed by remote write or a backfill)."""
        step = q.duration(max(15.0, back / 240))
        try:
            # the subquery's steps are aligned to its step: `up` younger than the last one is read as it is now
            got = ask(f"max(time() - (min_over_time(timestamp(up)[{q.duration(back)}:{step}]) or timestamp(up)))", "")
        except Exception:  # noqa: BLE001 - a hint only
            return ""
        if not got or not got[0][1] < 0.9 * back:
            return ""
        return (f"; but Prometheus itself holds only about {duration(round(got[0][1] / 60) * 60 or 60)} of data (the "
                f"oldest sample of any target's `up`): restarted without its storage or new (these series not "
                f"scraped yet, or lost with it: the next evaluations read them as scrapes come), or its retention "
                f"is that short (then a window this long is never filled: shorten `--window`, the controller's `--drift-window`)")

    def rejected() -> str:
        """A note when Prometheus scrapes targets that answer and rejects what they send (`up` 0 with samples
        scraped: a `sample_limit`, a label limit or a body-size limit exceeded): a model server's whole scrape,
        its own metrics with the exporter's, is then lost, and "is the exporter deployed?" sent on-call to an
        exporter that was there (decision 626). With `namespace`, only its targets (`up` carries the target labels
        the model's series would carry, the same matcher): a rejected target of another team's namespace was said of
        every model with no live data (decision 630). "" when none, or when Prometheus cannot tell."""
        scope = "" if namespace is None else f'{{{NAMESPACE_LABEL}=~"{q.escape(q.regex_literal(namespace))}|"}}'
        try:
            got = ask(f"count(up{scope} == 0 and on(job, instance) scrape_samples_scraped > 0)", "")
        except Exception:  # noqa: BLE001 - a hint only
            return ""
        n = int(got[0][1]) if got else 0
        if n < 1:
            return ""
        per_pod = f" (the drift exporter of this profile adds {series:,} series to each model-server pod's)" \
            if series else " (the drift exporter adds a series per bucket and per category of every profiled feature)"
        where = "" if namespace is None else f" in namespace {namespace}"
        return (f"; but {n} scrape target{'s' if n > 1 else ''}{where} answer{'' if n > 1 else 's'} and Prometheus "
                f"rejects what {'they send' if n > 1 else 'it sends'} (`up` 0 with samples scraped: over a `sample_limit`, "
                f"a label limit or a body-size limit; its targets page says which){per_pod}: a rejected scrape loses "
                f"every metric of the pod, the model server's own too; raise the limit (a ServiceMonitor's "
                f"`sampleLimit`, prometheus-operator's `enforcedSampleLimit`) or profile fewer features (`canary "
                f"baseline capture --features`)")

    try:
        samples = ask(f"max(count_over_time({q.FEATURE_MISSING}{{{_selector(model, version, namespace)}}}[{w}]))", "")
        n = int(samples[0][1]) if samples else 0
        if n >= 2:
            return (f"its exporter's series are in Prometheus ({n} scrapes in the window) and counted no request: "
                    f"{model} {version} got no traffic in the window (or none of its requests reached the "
                    f"exporter's observe())")
        back = max(window_s, 3600.0)
        lookback = q.duration(back)
        others = ask(f"count by (model_version) (count_over_time({q.FEATURE_MISSING}"
                     f"{{{_selector(model, None, namespace)}}}[{lookback}]))", "model_version")
        versions = sorted({m["model_version"] for m, _ in others})
        if version in versions:
            return (f"the window of {duration(window_s)} holds {n} scrape{'' if n == 1 else 's'} of its series, and "
                    f"increase() needs two (they are there in the last {duration(back)}): a window shorter than twice "
                    f"Prometheus's scrape interval, or a target no longer scraped (its `up`)" + young(window_s))
        if versions:
            shown = ", ".join(versions[:10]) + (f" and {len(versions) - 10} more" if len(versions) > 10 else "")
            return (f"no series of version {version}, but {model}'s exporter exports version"
                    f"{'s' if len(versions) > 1 else ''} {shown} (in the last {duration(back)}): is the version the "
                    f"server labels (model_version) the profile's (or --version)?")
        return (f"no series of model {model} at all in the last {duration(back)}"
                + (f" in namespace {namespace}" if namespace is not None else "")
                + ": is the exporter deployed and scraped, is the model name the one it exports (a model renamed in "
                  "the server exports under its new name)?" + rejected() + young(back))
    except Exception:  # noqa: BLE001 - a hint only: the general one stands
        return ""


PROFILE_INFO = "model_feature_profile_info"


def exported_profiles(client: PrometheusClient, *, model: str, version: str, window_s: float,
                      namespace: str | None = None) -> set[str]:
    """The `profile_hash` labels (`profile.profile_hash`) that the exporters of one model version exported in
    the last `window_s` seconds (`PROFILE_INFO`, one query at the client's instant): the profiles whose buckets
    the live counts are over. Empty when none says (exporters from before the label). Raises what the
    client raises (MetricsUnavailable, ConfigError)."""
    at = getattr(client, "at", None)
    at = time.time() if at is None else at
    got = client.ask(f"max by (profile_hash) (last_over_time({PROFILE_INFO}{{{_selector(model, version, namespace)}}}"
                     f"[{q.duration(window_s)}]))", check="drift", arm="", at=at,
                     who=f"the profiles exported for {model} {version}", strict=False, deadline=None)
    return {m["profile_hash"] for m, _ in series_by(got, ["profile_hash"]) if m["profile_hash"]}


def _other_bounds(name: str, want: list[float], les: list[float]) -> str:
    """Why a numeric feature's live buckets (`les`, sorted, +Inf included) are not the profile's bounds (`want`): the
    bounds one side has and the other lacks, by value. It showed the first four of each, which are the same when the
    two differ further on (a few-valued feature re-captured with one more value: `[1.0, 2.0, 3.0, 4.0]... are not the
    profile's [1.0, 2.0, 3.0, 4.0]...`), so on-call could not see what differed (decision 624)."""
    def among(x: float, values: list[float]) -> bool:
        return any(np.isclose(x, v, rtol=1e-9, atol=0.0) for v in values)

    exported = [b for b in les if b != float("inf")]
    lacking = [b for b in want if not among(b, exported)]
    extra = [b for b in exported if not among(b, want)]
    def text(b: float) -> str:  # six digits where they say it, else all: a float32's 0.1 is not "0.1"
        return f"{b:g}" if float(f"{b:g}") == b else repr(float(b))

    shown = lambda bs: ", ".join(map(text, bs[:5])) + (f" and {len(bs) - 5} more" if len(bs) > 5 else "")  # noqa: E731
    said = [f"{len(exported)} bounds exported, {len(want)} in the profile"]
    if lacking:
        said.append(f"the profile's bound{'s' if len(lacking) > 1 else ''} {shown(lacking)} not exported")
    if extra:
        said.append(f"bound{'s' if len(extra) > 1 else ''} {shown(extra)} exported, not in the profile")
    if float("inf") not in les:
        said.append("no +Inf bucket")
    return (f"feature {name!r}: the exporter's buckets are not the profile's ({'; '.join(said)}): an exporter built "
            f"from another profile of this version (re-captured?), or, in a rolling upgrade of the exporter, its pods "
            f"of both profiles in the window (it passes once the older series are older than the window); export "
            f"with the same profile (canary.drift.exporter)")


def _same_categories(name: str, f: Mapping[str, Any], live: Mapping[str, float]) -> None:
    """ConfigError naming the feature when the live category series are not the profile's categories plus
    "__other__": the exporter creates a series for each category of its own profile (at 0) and counts any
    other value under "__other__", so a series set that differs is an exporter built from another profile
    (a re-capture, another version's). Read as they were, the profile's categories the exporter lacks count
    under "__other__" live, a cell the reference may not have: a false drift, and a retraining Job, from a
    setup fault (numeric features over another profile's buckets were refused already)."""
    known = set(f["categories"])
    lacking = sorted(known - set(live))
    extra = sorted(set(live) - known)
    if not lacking and not extra:
        return
    if lacking == [""] and not extra:  # an exporter from before "__empty__": its "" series were dropped
        raise ConfigError(f"feature {name!r}: the exporter's empty category \"\" never reaches Prometheus (it drops "
                          f"empty label values); upgrade canary in the model server (it exports it as {EMPTY})")
    if lacking and set(lacking) <= {OTHER, EMPTY} and set(extra) <= {""}:  # an exporter from before decision 540
        raise ConfigError(f"feature {name!r}: the profile's category {lacking[0]!r} is exported under the exporter's "
                          f"own label of that name (counted with the values the profile never saw, or with \"\"); "
                          f"upgrade canary in the model server (it exports such a category as _{lacking[0]})")
    raise ConfigError(f"feature {name!r}: the exporter's categories are not the profile's ("
                      + "; ".join(part for part in (
                          f"the profile's {', '.join(map(repr, lacking[:5]))} not exported" if lacking else "",
                          f"{', '.join(map(repr, extra[:5]))} exported, not in the profile" if extra else "") if part)
                      + "); export with the same profile (canary.drift.exporter)")


def unavailable(client: PrometheusClient) -> str | None:
    """Why Prometheus itself cannot be read now, or None when it answers: one trivial query (`vector(1)`,
    the client's own retries and budget, at most `client.query_bound_s` seconds). Asked after a
    baseline's queries failed as unavailable, to tell a Prometheus that is down (every other baseline's
    queries would fail the same way, each after the whole retry budget) from one baseline's queries
    failing on their own (too heavy for the timeout: the others are still read)."""
    try:
        client.ask("vector(1)", check="drift", arm="", at=None, who="drift (is Prometheus up?)", strict=False,
                   deadline=None)
    except CanaryError as exc:
        return str(exc)
    except Exception as exc:  # noqa: BLE001 - any failure to answer says the same: not now
        return f"{type(exc).__name__}: {exc}"[:300]
    return None
