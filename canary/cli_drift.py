"""`canary baseline capture` and `canary drift check`: drift against the training baseline (issue 12).

Thin: parse flags, call canary.drift, print a table or JSON (only the requested
output on stdout), exit with a documented code:

    baseline capture: 0 written, 2 bad input (the message names the file and column)
    drift check:      0 no dataset drift, every profiled feature compared; 1 dataset drift; 5 no dataset
                      drift among the features compared, but a profiled feature was not compared (it does
                      not arrive: missing in live data, or text for a number; or it has no live data);
                      4 no live data to compare; 2 bad input; 3 Prometheus could not be asked
    drift watch:      0 stopped (or --once: every profile measured in full, no episode open), 1 --once: an
                      episode is open, 2 bad input or it could not start (--metrics-port in use...), or
                      --once: live data that do not fit a profile (the exporter's buckets are another
                      profile's), 3 --once: Prometheus could not be asked, 4 --once: a profile had no live
                      data, 5 --once: a profile's features were not all compared. The first that applies
                      in this order: 1, 2, 3, 4, 5; never 1 for an error, never a traceback
"""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any, Optional

import typer

from canary import cli_options as opts
from canary.errors import CanaryError, ConfigError, TransientError
from canary.filekind import read_input

baseline_app = typer.Typer(no_args_is_help=True, help="Training baselines: capture a reference profile of features.")
drift_app = typer.Typer(no_args_is_help=True, help="Drift of live data against the training baseline.")
EXIT_OK, EXIT_DRIFT, EXIT_BAD, EXIT_UNAVAILABLE, EXIT_NO_DATA, EXIT_NOT_ARRIVING = 0, 1, 2, 3, 4, 5


def _fail(message: str, code: int = EXIT_BAD) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def _logs() -> None:
    from canary import logs

    logs.configure()  # on stderr: stdout carries only the requested output


@baseline_app.command("capture")
def capture_cmd(
    file: Path = typer.Argument(..., help="training or validation data: .csv or .parquet"),
    model: str = typer.Option(..., "--model", help="model name, as the model server labels it"),
    version: str = typer.Option(..., "--version", help="model version the data trained"),
    prediction: Optional[str] = typer.Option(None, "--prediction", help="column holding the model's prediction"),
    features: Optional[str] = typer.Option(None, "--features", help="comma-separated columns (default: all)"),
    buckets: int = typer.Option(20, "--buckets",
                                help="equal-frequency buckets per numeric feature, at its quantiles; the outer ones "
                                     "are split again at the 0.5%, 1% and 2.5% quantiles and their mirrors "
                                     "(20: 26 buckets)"),
    bounds_from: Optional[Path] = typer.Option(None, "--bounds-from",
                                               help="another version's profile: reuse its bounds and categories, so "
                                                    "a rollout's feature_drift check compares the two bucket for bucket"),
    output_file: Optional[Path] = typer.Option(None, "--output-file", "-f",
                                               help="where to write the profile (default MODEL-VERSION.profile.json)"),
    output: str = opts.OutputOpt,
    configmap: Optional[str] = typer.Option(None, "--configmap",
                                            help="also store it as this baseline ConfigMap (for the controller)"),
    namespace: Optional[str] = typer.Option(None, "--namespace", "-n", show_default=False,
                                            help="namespace of --configmap (default: the kubeconfig context's)"),
    kubeconfig: Optional[str] = opts.KubeconfigOpt,
    context: Optional[str] = opts.ContextOpt,
) -> None:
    """Profile the training data (CSV or Parquet) of a model version, for drift checks.

    The profile: per-feature histograms, category shares, missing rates, the prediction distribution,
    row count, schema and the file's hash; written to MODEL-VERSION.profile.json unless -f names a file.

    Warns when a feature has 1,000 values or fewer: it may read drifted for good; capture more rows (docs/drift.md).

    Example: canary baseline capture train.parquet --model rec-model --version v2 --prediction score

    Example: canary baseline capture train.csv --model rec-model --version v2 --configmap rec-model-v2 -n ml -o json
    """
    from canary.drift.profile import capture, file_sha256, read_table

    _logs()
    names = [c.strip() for c in features.split(",") if c.strip()] if features else None
    try:
        if configmap:  # before the data is read or the file written: the ConfigMap must be nameable
            from canary.model import check_namespace, check_object_name

            check_object_name(configmap, "--configmap")
            if namespace:
                check_namespace(namespace, "--namespace")
        like = None
        if bounds_from is not None:
            from canary.drift.compare import validate_profile

            like = _load_json(bounds_from, "--bounds-from")
            validate_profile(like, str(bounds_from))
            if like["model"] != model:
                raise ConfigError(f"--bounds-from {bounds_from}: a profile of model {like['model']!r}, not {model!r}")
        table = read_table(file)
        prof = capture(table, model=model, version=version, file=str(file), sha256=file_sha256(file),
                       prediction=prediction, features=names, buckets=buckets, bounds_from=like)
    except CanaryError as exc:
        _fail(str(exc))
    if like is not None:  # features of this version the older profile lacks got bounds of their own
        own = sorted(set(prof["features"]) - set(like["features"]))
        if own:
            typer.echo(f"warning: --bounds-from {bounds_from} has no {', '.join(own)}: their buckets are this "
                       "data's own, so a rollout's feature_drift check cannot compare them with that version",
                       err=True)
    target = output_file or Path(f"{model}-{version}.profile.json")
    warnings = [small] if (small := _small_reference_warning(prof, target)) else []
    for w in warnings:
        typer.echo(f"warning: {w}", err=True)
    try:
        target.write_text(json.dumps(prof, indent=1, allow_nan=False) + "\n", encoding="utf-8")
    except OSError as exc:
        _fail(f"{target}: cannot write: {exc.strerror or exc}")
    stored = ""
    if configmap:
        import kubernetes

        from canary.drift.store import save_profile
        from canary.kube import api_client

        try:
            namespace = opts.namespace(namespace, kubeconfig, context)
            core = kubernetes.client.CoreV1Api(api_client(kubeconfig=kubeconfig, context=context))
            stored = f"ConfigMap {namespace}/{configmap} " + save_profile(core, namespace=namespace, name=configmap,
                                                                          profile=prof)
        except CanaryError as exc:  # the file is written: say so, as for an unreachable cluster below
            _fail(f"{target} written, but not stored: {exc}")
        except Exception as exc:  # the cluster could not be reached: the file is written, say so
            _fail(f"{target} written, but ConfigMap {namespace}/{configmap} not: {type(exc).__name__}: "
                  f"{str(exc)[:200]}", EXIT_UNAVAILABLE)
    from canary.drift.exporter import series_per_pod

    # what a Prometheus `sample_limit` on the model server's scrape must leave room for: over it, the whole scrape is
    # rejected, the server's own metrics too (decision 626)
    series = series_per_pod(prof)
    summary = {"file": str(target), "model": model, "version": version, "rows": prof["rows"], "stored": stored,
               "features": {n: f["type"] for n, f in prof["features"].items()}, "sha256": prof["source"]["sha256"],
               "series_per_pod": series, "warnings": warnings}

    def text(wide: bool) -> None:
        typer.echo(f"{target}: {prof['rows']:,} rows, {len(prof['features'])} features "
                   f"({', '.join(f'{n} {t}' for n, t in summary['features'].items())})"
                   + (f"; {stored}" if stored else ""))
        typer.echo(f"  its exporter adds {series:,} series to each model-server pod's scrape: a Prometheus "
                   f"sample_limit on that scrape (a ServiceMonitor's sampleLimit) must leave room for them, or the "
                   f"whole scrape is rejected, the server's own metrics too")
        if wide:
            typer.echo(f"  model {model} version {version}, source {file} sha256 {summary['sha256']}")

    opts.emit(summary, output, text)


def _small_reference_warning(prof: dict[str, Any], target: Path) -> str:
    """"" or the warning for a reference of 1,000 values or fewer (the whole profile, or features with
    many values missing): what it does to `drift check` / `drift watch`, and how many rows to capture."""
    from canary.drift.compare import profile_rows, small_references

    small = small_references(prof)
    if not small:
        return ""
    rows = profile_rows(prof)
    need = max(1_000 * rows // max(n, 1) + 1 for n in small.values())  # at the same missing rates
    if rows <= 1_000:
        what = f"{rows:,} training rows (1,000 or fewer)"
    else:
        what = ", ".join(f"feature {name} has {n:,} values ({rows - n:,} of {rows:,} rows missing)"
                         for name, n in sorted(small.items())) + ", 1,000 or fewer"
    return (f"{target}: {what}: drift is then judged by two-sample tests (KS, chi-square), which against live "
            f"windows of many more values (10,000 and up) ask whether the captured values are a typical sample: "
            f"in about 1 capture in 20 they are not, and a feature then reads drifted in nearly every window, for "
            f"good (a drift episode, a retraining Job). Capture at least {need:,} rows (more of the training "
            f"data){' at these missing rates' if rows > 1_000 or need > 1_001 else ''}; docs/drift.md, section 1")


@drift_app.command("check")
def check_cmd(
    ctx: typer.Context,
    baseline: Path = typer.Option(..., "--baseline", help="profile written by `canary baseline capture`"),
    input: Optional[Path] = typer.Option(None, "--input", "-i", help="live counts as JSON (see docs/drift.md)"),
    prometheus_url: Optional[str] = opts.PromUrlOpt,
    prometheus_token: Optional[str] = opts.PromTokenOpt,
    prometheus_user: Optional[str] = opts.PromUserOpt,
    prometheus_password: Optional[str] = opts.PromPasswordOpt,
    prometheus_ca_file: Optional[str] = opts.PromCaOpt,
    insecure: bool = opts.InsecureOpt,
    version: Optional[str] = typer.Option(None, "--version", help="live version to check (default: the profile's)"),
    namespace: Optional[str] = typer.Option(None, "--namespace", "-n", show_default=False,
                                            help="read only the live series of this namespace (their `namespace` "
                                                 "label; series without it too); default: every namespace"),
    window: float = opts.DurationOpt("1h", "--window", help="how far back to read live data",
                                   most=opts.DRIFT_WINDOW_BOUND),
    output: str = opts.OutputOpt,
) -> None:
    """Compare live feature distributions with the training profile, once (for scripts).

    Exit 0 no dataset drift, 1 dataset drift, 5 a profiled feature was not compared (it does not
    arrive, or has no live data: the verdict leaves it out), 4 no live data, 2 bad input,
    3 Prometheus unavailable.

    Example: canary drift check --baseline rec-model-v2.profile.json --prometheus-url http://prometheus:9090

    Example: canary drift check --baseline rec-model-v2.profile.json --input live.json --window 1h30m -o yaml
    """
    from canary.drift.compare import compare, too_few, validate_profile

    _logs()
    source = ctx.get_parameter_source("prometheus_url")
    if input is not None and prometheus_url is not None and getattr(source, "name", "") == "ENVIRONMENT":
        # CANARY_PROMETHEUS_URL exported for the other commands (as `demo --keep` says): the file named on
        # this command line is what is asked for; it was refused as if both had been given
        prometheus_url = None
    if (input is None) == (prometheus_url is None):
        _fail("give exactly one of --input (a JSON file) or --prometheus-url (or CANARY_PROMETHEUS_URL)")
    try:
        client = (opts.prometheus(prometheus_url, prometheus_token, prometheus_user, prometheus_password,
                                  prometheus_ca_file, insecure, provider=False) if prometheus_url else None)
        if namespace is not None:  # "" read only unlabelled series, "prod|staging" none: exit 4, "no live data"
            from canary.model import check_namespace

            check_namespace(namespace, "--namespace")
        prof = _load_json(baseline, "baseline")
        validate_profile(prof, str(baseline))
        if small := _small_reference_warning(prof, baseline):  # a profile captured before capture warned
            typer.echo(f"warning: {small}", err=True)
        if client is None:
            raw = _load_json(input, "input")
            live = raw.get("features") if isinstance(raw, dict) else None
            if not isinstance(live, dict):
                raise ConfigError(f"{input}: features: must be an object mapping feature names to live counts")
            unknown = sorted(set(live) - set(prof["features"]))
            if unknown:  # a typo, or another model's counts: never silently "no live data" for the real name
                raise ConfigError(f"{input}: features.{unknown[0]}: not a feature of {baseline} (its features: "
                                  f"{', '.join(prof['features'])})")
            try:
                result = compare(prof, live)
            except ConfigError as exc:  # the live counts do not fit the profile: name the file they came from
                raise ConfigError(f"{input}: {exc}") from None
        else:
            live = _from_prometheus(client, prof, version or str(prof["version"]), window, namespace)
            result = compare(prof, live)
        few = too_few(prof, live)
        other = _other_profiles(client, prof, version, window, namespace)
    except TransientError as exc:
        from canary.drift.live import said_before_query

        _fail(said_before_query(exc, _unmeasured_remedy(client, exc)), EXIT_UNAVAILABLE)
    except (CanaryError, ValueError) as exc:
        _fail(str(exc))
    except Exception as exc:  # noqa: BLE001 - never a traceback, and never exit 1 (which means drift)
        _fail(f"{baseline}: the comparison failed ({type(exc).__name__}: {str(exc)[:200]}); "
              f"check the baseline and the live data")
    gone = sorted(result.not_arriving())
    quiet = sorted(set(prof["features"]) - {f.feature for f in result.features} - set(gone))
    few = {name: n for name, n in few.items() if name in quiet}  # low traffic: inconclusive, not "no series"
    why = ""
    if client is not None and not result.features and not few:  # nothing at all: what Prometheus can tell of why
        from canary.drift.exporter import series_per_pod
        from canary.drift.live import why_no_live_data

        why = why_no_live_data(client, model=str(prof["model"]), version=version or str(prof["version"]),
                               window_s=window, namespace=namespace, series=series_per_pod(prof))
    if other:  # the fact `drift watch` says as drift.profile_mismatch (decision 320); the verdict stands
        from canary.drift.watch import profile_mismatch_message

        typer.echo(f"warning: {profile_mismatch_message(prof, other['exported'], some=other['some_pods'])}",
                   err=True)
    from canary.drift.stats import over_profile, profile_share

    unmeasured = len(quiet) + len(gone)  # profiled features not compared
    # over the whole profile: features not compared can make it neither drift nor its absence (decision 382)
    verdict = over_profile(result, unmeasured)
    # the share of the whole profile, at least and at most (null with nothing compared): the compared features'
    # alone read 1.0 beside `"dataset_drift": null` for 1 of 1 compared of four (decision 411)
    shares = profile_share(result, unmeasured) or (None, None)
    opts.emit({
        # nothing compared, or features not compared that decide it: no verdict (null), never a `false` read as "no
        # drift", nor a `true` of "1 of 1 features drifted" when nine other features were not compared
        "model": prof["model"], "version": version or prof["version"],
        "dataset_drift": verdict, "measured": bool(result.features),
        "share": shares[0], "share_max": shares[1], "drifted_features": list(result.drifted_features()),
        "no_live_data": quiet,
        "too_few": few, "not_arriving": gone, **({"no_live_data_reason": why} if why else {}),
        "features": [{**f.__dict__, "score": f.score, "reason": f.reason()} for f in result.features],
        "missing": [{**m.__dict__, "reason": m.reason()} for m in result.missing],
        **({"profile_mismatch": other} if other else {})},
        output, lambda wide: _table(prof, result, quiet, few, None if client is None else window, wide=wide, why=why,
                                    live_version=version or str(prof["version"]), verdict=verdict,
                                    unmeasured=unmeasured))
    if verdict:
        raise typer.Exit(EXIT_DRIFT)
    if not result.features:
        raise typer.Exit(EXIT_NO_DATA)
    if gone or quiet:  # "no dataset drift" would be read as covering features that were never compared
        raise typer.Exit(EXIT_NOT_ARRIVING)
    raise typer.Exit(EXIT_OK)


@drift_app.command("watch")
def watch_cmd(
    baselines: list[Path] = typer.Option(..., "--baseline", help="a profile per model version to watch (repeat)"),
    prometheus_url: Optional[str] = opts.PromUrlOpt,
    prometheus_token: Optional[str] = opts.PromTokenOpt,
    prometheus_user: Optional[str] = opts.PromUserOpt,
    prometheus_password: Optional[str] = opts.PromPasswordOpt,
    prometheus_ca_file: Optional[str] = opts.PromCaOpt,
    insecure: bool = opts.InsecureOpt,
    window: float = opts.DurationOpt("1h", "--window", help="live data each evaluation reads", most=opts.DRIFT_WINDOW_BOUND),
    interval: float = opts.DurationOpt("5m", "--interval", help="time between evaluations", most=opts.INTERVAL_BOUND),
    enter_after: int = typer.Option(3, "--enter-after", help="drifted evaluations in a row to start an episode"),
    exit_after: int = typer.Option(3, "--exit-after", help="clean evaluations in a row to end one"),
    quiet: float = opts.DurationOpt("1h", "--quiet", zero=True,
                                    help="after a version's first evaluation with live data, no episode "
                                         "starts for this long"),
    state_file: Optional[Path] = typer.Option(None, "--state-file", help="keeps episodes across restarts"),
    retrain_job: Optional[Path] = typer.Option(None, "--retrain-job", help="batch/v1 Job template (YAML) to create "
                                                                           "once per drift episode"),
    retrain_webhook: Optional[str] = typer.Option(None, "--retrain-webhook", help="or POST the evidence here"),
    notify_wait: float = opts.DurationOpt(
        "5s", "--notify-wait", zero=True, most=opts.NOTIFY_WAIT_BOUND,
        help="at exit, wait this long for the last pass's alerts to the webhooks and Slack (a slow receiver: "
             "more); what is still undelivered then is logged, `notify.undelivered` (0: do not wait)"),
    retrain_job_retries: Optional[int] = opts.RetrainRetriesOpt,
    retrain_job_retry_delay: Optional[float] = opts.RetrainRetryDelayOpt,
    episode_unmeasured_after: float = opts.DurationOpt("24h", "--episode-unmeasured-after",
                                                       help="an open episode whose evaluations have had no verdict "
                                                            "this long (features not compared, no live data) is "
                                                            "said once: drift.episode_unmeasured"),
    namespace: Optional[str] = typer.Option(None, "--namespace", "-n", show_default=False,
                                            help="namespace of the model: its Events and Job go there, and only "
                                                 "its live series are read (their `namespace` label; series "
                                                 "without it too); default: the kubeconfig context's (with "
                                                 "--no-kube: every namespace's series)"),
    kubeconfig: Optional[str] = opts.KubeconfigOpt,
    context: Optional[str] = opts.ContextOpt,
    no_kube: bool = typer.Option(False, "--no-kube", help="no Kubernetes Events (and no Job)"),
    once: bool = typer.Option(False, "--once", help="one evaluation (needs --state-file), then exit: 1 an "
                                                    "episode is open, 2 live data that do not fit a profile, 3 "
                                                    "Prometheus could not be read, 4 no live data, 5 not every "
                                                    "feature compared, else 0"),
    metrics_port: int = typer.Option(0, "--metrics-port", help="serve model_data_drift_* on 127.0.0.1:PORT (0: not served)"),
    output: str = opts.OutputOpt,
) -> None:
    """Watch live feature distributions against their training profiles, continuously.

    Alerts with hysteresis, a quiet period after a version starts, and one retraining trigger per drift
    episode.
    With --once, -o prints each profile's evaluation (logs go to stderr either way).

    Example: canary drift watch --baseline rec-model-v2.profile.json --retrain-job job.yaml -n ml --state-file s.json

    Example: canary drift watch --baseline rec-model-v2.profile.json --no-kube --state-file s.json --once -o json
    """
    import threading

    from canary.drift import monitor as M
    from canary.drift.watch import DriftWatcher, load_job_template
    from canary.drift.compare import validate_profile
    from canary.notify import Notifier

    _logs()
    store = None
    try:
        client = opts.prometheus(prometheus_url, prometheus_token, prometheus_user, prometheus_password,
                                 prometheus_ca_file, insecure, provider=False)
        if retrain_job and retrain_webhook:
            raise ConfigError("give at most one of --retrain-job and --retrain-webhook")
        if retrain_job and no_kube:
            raise ConfigError("--retrain-job creates a Kubernetes Job: it cannot go with --no-kube")
        if retrain_webhook is not None:  # checked now, not at the first drift (weeks later: retried for ever)
            from canary.notify import _bad_url

            why = _bad_url(retrain_webhook)  # an '@' after its host, or a name@ before it, too (975, 1003)
            if why:  # the URL may hold a token: named by its flag, never shown
                raise ConfigError(f"--retrain-webhook {why}: it is only POSTed to when a drift episode opens, "
                                  f"so a bad one would be found then")
        if (retrain_job or retrain_webhook) and state_file is None:  # a restart would retrain again
            raise ConfigError(f"{'--retrain-job' if retrain_job else '--retrain-webhook'} needs --state-file: "
                              "the open drift episode and its retraining live there, so without it a restarted "
                              "watch (a pod rescheduled, a crash) forgets them and, once the drift is read again, "
                              "opens a new episode and starts another retraining for the same drift, one per "
                              "restart")
        profiles = [_load_json(p, "baseline") for p in baselines]
        first: dict[tuple[str, str], Path] = {}
        for p, prof in zip(baselines, profiles):
            validate_profile(prof, str(p))
            if small := _small_reference_warning(prof, p):  # a profile captured before capture warned
                typer.echo(f"warning: {small}", err=True)
            key = (str(prof["model"]), str(prof["version"]))
            if key in first:  # one monitor per model version: two profiles would step it twice per pass
                raise ConfigError(f"{first[key]} and {p} are both baselines of {key[0]} {key[1]}: give one per "
                                  f"model version (two would count every evaluation twice, halving --enter-after "
                                  f"and --exit-after)")
            first[key] = p
        template = load_job_template(retrain_job) if retrain_job else None
        window_s, interval_s, quiet_s = window, interval, quiet  # seconds, parsed by their options
        if enter_after < 1 or exit_after < 1:
            raise ConfigError("--enter-after and --exit-after must be at least 1")
        config = opts.monitor_config(M, retries=retrain_job_retries, retry_delay=retrain_job_retry_delay,
                                     unmeasured_after=episode_unmeasured_after, retrain_job=retrain_job,
                                     enter_after=enter_after, exit_after=exit_after, quiet_s=quiet_s)
        if once and state_file is None:  # each run would be a monitor's first evaluation, forgotten after it
            raise ConfigError("--once needs --state-file: the streak of drifted evaluations (--enter-after), the "
                              "quiet period (--quiet) and the episode's one retraining Job live in that file, so "
                              "without it each run starts afresh: with a quiet period it can never alert, without "
                              "one it would open a new episode, and a new Job, on every drifted run. For a one-off "
                              "verdict use `canary drift check`")
        opts.check_window(window_s, client)
        core = batch = None
        if not no_kube:
            import kubernetes

            from canary.kube import api_client

            from canary.model import check_namespace

            try:
                namespace = opts.namespace(namespace, kubeconfig, context)
                check_namespace(namespace, "--namespace")
                api = api_client(kubeconfig=kubeconfig, context=context)
            except ConfigError as exc:  # the watch needs the cluster only for its Events and Job: say how to go without
                raise ConfigError(f"{exc}; the watch posts Kubernetes Events (and a --retrain-job Job) there: "
                                  "pass --no-kube to watch without a cluster") from None
            core, batch = kubernetes.client.CoreV1Api(api), kubernetes.client.BatchV1Api(api)
            if template is not None:  # asked now, not when an episode opens (weeks later: refused, retried for ever)
                from canary.drift.retrain import check_job_template

                unchecked = check_job_template(batch, template, source=str(retrain_job), namespace=namespace,
                                               versions=list(first))
                if unchecked:  # no answer about the template: the watch goes on, the episode's create will tell
                    import structlog

                    structlog.get_logger("canary.drift").warning(
                        "drift.retrain_unchecked", template=str(retrain_job), namespace=namespace, error=unchecked,
                        message=f"{retrain_job}: the retraining Job could not be checked at start ({unchecked}); "
                                "the watch goes on, and an episode's create says what the API server answers")
        from prometheus_client import CollectorRegistry

        registry = CollectorRegistry()
        if state_file is not None:  # the only watcher of this state file, or exit 2 naming who is
            from canary.drift.watch import FileStateStore

            store = FileStateStore(state_file)
            store.hold()
        watcher = DriftWatcher(profiles, client=client, window_s=window_s, namespace=namespace, store=store,
                               core_api=core, batch_api=batch, job_template=template, retrain_webhook=retrain_webhook,
                               notifier=(notifier := Notifier.from_env()), registry=registry,
                               config=config)
        if metrics_port:
            from prometheus_client import start_http_server

            try:
                start_http_server(metrics_port, addr="127.0.0.1", registry=registry)
            except OSError as exc:
                raise ConfigError(f"--metrics-port {metrics_port}: cannot serve on 127.0.0.1: "
                                  f"{exc.strerror or exc}") from None
    except BaseException as exc:  # the state file's lock goes with a watcher that does not start
        if store is not None:
            store.release()
        if isinstance(exc, TransientError):
            _fail(str(exc), EXIT_UNAVAILABLE)
        if isinstance(exc, (CanaryError, ValueError)):
            _fail(str(exc))
        if not isinstance(exc, Exception):
            raise
        # never a traceback, and never exit 1 (which means an open episode)
        _fail(f"drift watch could not start: {type(exc).__name__}: {str(exc)[:200]}")
    from canary.interrupts import Interrupt, install_handlers, restore_handlers

    stop = threading.Event()
    before: dict[int, Any] = {}
    if not once:
        # SIGTERM (a pod deleted, a rollout of the watcher, `docker stop`) killed the watch wherever it was: an
        # alert delivered and not yet marked so in the state was delivered again by the next watcher (a second
        # DriftDetected, Slack message), a webhook answered and not yet stored was POSTed again (a second
        # retraining at a receiver that keeps no keys), and nothing said it stopped. Now the evaluation under
        # way is finished and stored, the pass stops at the next baseline (`drift.pass_cut`), "stopped", exit 0
        # as Ctrl-C; a second SIGTERM stops at once.
        from canary.interrupts import setting

        relay, came = setting(stop), []  # no lock taken in the handler: `stop.set()` there could wait for ever

        def on_term(signum: int, frame: Any) -> None:  # for the lock its own thread held at the signal (decision 513)
            if came:
                raise KeyboardInterrupt
            came.append(signum)
            relay(signum, frame)

        before = install_handlers(on_term, (signal.SIGTERM,))
    # Ctrl-C's KeyboardInterrupt landing in the Kubernetes client (pydantic's `validate_call`: an Event, a Job) was
    # lost, or came out as an error the pass logs and goes on from: the watch went on for ever. It is recorded too:
    # the pass stops before the next baseline, as for SIGTERM, and the watch then stops as Ctrl-C (decision 231).
    ctrl_c = Interrupt.keyboard().install()

    def keep_going() -> str:
        return "stopping (SIGTERM)" if stop.is_set() else "stopping (SIGINT)" if ctrl_c.fired else ""

    try:
        while True:
            # an error the Ctrl-C came out as: the Ctrl-C is what stops the watch
            done = ctrl_c.guarded(lambda: watcher.once(interval_s=None if once else interval_s, keep_going=keep_going,
                                                       act_stored=True))
            ctrl_c.check()
            if once or stop.is_set() or stop.wait(interval_s):
                break
            ctrl_c.check()
    except KeyboardInterrupt:  # stopped by hand: not an open episode, not an error
        typer.echo("stopped", err=True)
        raise typer.Exit(EXIT_OK) from None
    finally:  # the process ending releases the lock too; an in-process run (tests, embedding) must as well
        ctrl_c.restore()
        restore_handlers(before)
        if store is not None:
            store.release()
        # the alerts of the last pass are queued on daemon threads the process's end killed: a DriftDetected
        # Slack message was lost unsaid. Up to --notify-wait to deliver them, then `notify.undelivered` names
        # what is left.
        notifier.close(notify_wait)
    if stop.is_set():  # SIGTERM: the evaluation under way finished and stored
        typer.echo("stopped", err=True)
        raise typer.Exit(EXIT_OK)
    if once:
        _print_evaluations(watcher, done, output)
    raise typer.Exit(_watch_exit(watcher, done, M.DRIFTING))


def _watched(watcher: Any) -> dict[str, Any]:
    """The monitor states of the baselines this run watches: a state file may hold others (a version no
    longer watched, with its episode still open), which are kept, never reported or exited on."""
    from canary.drift.watch import _key

    keys = {_key(p, watcher.namespace) for p in watcher.profiles}
    return {k: s for k, s in watcher.states.items() if k in keys}


def _watch_exit(watcher: Any, done: list[dict[str, Any]], drifting: str) -> int:
    """`drift watch`'s exit code (module docstring): what was not measured is never 0."""
    errors = [d for d in done if "error" in d and "trigger" not in d]
    if any(s.phase == drifting for s in _watched(watcher).values()):
        return EXIT_DRIFT
    if any(d.get("config_error") for d in errors):
        return EXIT_BAD
    if errors:
        return EXIT_UNAVAILABLE
    if any("no_live_data" in d for d in done):
        return EXIT_NO_DATA
    if any("unmeasured" in d for d in done):
        return EXIT_NOT_ARRIVING
    return EXIT_OK


def _print_evaluations(watcher: Any, done: list[dict[str, Any]], output: str) -> None:
    """`drift watch --once`: per profile, the monitor's state after this evaluation and what it did."""
    from canary.drift.stats import profile_share
    from canary.drift.unread import at
    from canary.drift.watch import _key

    profiled = {_key(p, watcher.namespace): len(p["features"]) for p in watcher.profiles}
    rows = []
    for key, st in _watched(watcher).items():
        res = watcher.last.get(key)
        # the share of the whole profile, at least and at most: the compared features' alone read "drifted share
        # 1.00" beside "no episode (NOT every feature compared)" (decision 411)
        shares = (None if res is None else profile_share(res, profiled.get(key, 0) - len(res.features))) or (None, None)
        mine = [d for d in done if d.get("model") == st.model and d.get("version") == st.version]
        measured = ("none" if res is None or any("no_live_data" in d for d in mine) else
                    "partial" if any("unmeasured" in d for d in mine) else "all")
        rows.append({"model": st.model, "version": st.version, "phase": st.phase, "measured": measured,
                     "episode": st.episode,
                     "drifted_in_row": st.drifted_in_row, "clean_in_row": st.clean_in_row,
                     "share": None if measured == "none" else shares[0],
                     "share_max": None if measured == "none" else shares[1],
                     "drifted_features": [] if res is None else list(res.drifted_features()),
                     # the open episode's retraining Job, and why it failed when it did (null: not seen failed)
                     "retraining_job": (st.job or None) if st.phase != "ok" else None,
                     "retraining_failed": (st.job_failed or None) if st.phase != "ok" else None,
                     # when the new Job after the failed one is made (decision 385); null: none will be
                     "retraining_retry_due": (st.trigger_due if st.phase != "ok" and st.job_failed
                                              and st.trigger == "pending" else None),
                     # true: the Job was deleted before it was read ended (decision 285): its outcome is unknown
                     "retraining_gone": bool(st.job_gone) if st.phase != "ok" else False,
                     "actions": [{k: v for k, v in d.items() if k not in ("model", "version")} for d in mine]})

    def text(wide: bool) -> None:
        for r in rows:
            share = ("-" if r["share"] is None else f"{r['share']:.2f}" if r["share"] == r["share_max"]
                     else f"{r['share']:.2f} to {r['share_max']:.2f} (not every feature compared)")
            acts = "; ".join(str(a.get("alert") or (f"trigger episode {a['trigger']}" if "trigger" in a else "")
                                 or a.get("error", "") or _unmeasured_text(a)) for a in r["actions"])
            phase = r["phase"] if r["measured"] == "all" or r["phase"] != "ok" else f"NOT MEASURED ({r['measured']})"
            if r["measured"] == "partial" and r["phase"] == "ok":
                # "ok for the features compared" read as a clean pass while the features compared had drifted
                # (no verdict over the profile: decision 382)
                phase = "no episode (NOT every feature compared)"
            if r["measured"] == "none" and r["phase"] == "ok":
                phase = "NOT MEASURED (no feature compared)"  # it read "NOT MEASURED (none)"
            # nothing compared: no list of drifted features, whose "[none]" read as a clean pass
            drifted = "" if r["share"] is None else f" [{', '.join(r['drifted_features']) or 'none'}]"
            typer.echo(f"{r['model']} {r['version']}: {phase} (episode {r['episode']}), drifted share {share}"
                       + drifted + (f"; {acts}" if acts else "")
                       + (f"; retraining Job {r['retraining_job']} FAILED ({r['retraining_failed']}): "
                          + ("nothing is retraining this episode" if r["retraining_retry_due"] is None else
                             f"a new Job is created after {at(r['retraining_retry_due'])}")
                          if r["retraining_failed"] else "")
                       + (f"; retraining Job {r['retraining_job']} GONE (deleted before its outcome was read): "
                          f"UNKNOWN whether it succeeded" if r["retraining_gone"] else "")
                       + (f"; in a row: drifted {r['drifted_in_row']}, clean {r['clean_in_row']}" if wide else ""))

    opts.emit({"profiles": rows}, output, text)


def _unmeasured_text(a: dict[str, Any]) -> str:
    few = a.get("too_few") or {}
    low = "too little live data to judge (inconclusive): " + ", ".join(f"{k} ({n} values)" for k, n in few.items())
    if "no_live_data" in a:
        unseen = [name for name in a["no_live_data"] if name not in few]
        return "NOT MEASURED: " + "; ".join((["no live data" + (f" for {', '.join(unseen)}" if few else "")]
                                             if unseen else []) + ([low] if few else []))
    if "unmeasured" in a:
        unseen = [name for name in a["unmeasured"] if name not in few]
        parts = ([f"no live data for {', '.join(unseen)}"] if unseen else []) + ([low] if few else []) + \
                ([f"not arriving: {', '.join(a['not_arriving'])}"] if a.get("not_arriving") else [])
        return "NOT ALL MEASURED: " + "; ".join(parts)
    return ""


def _load_json(path: Path, what: str) -> Any:
    try:
        return json.loads(read_input(path))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the {what}: {exc.strerror or exc}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        from canary.filekind import not_json

        takes = "live counts as JSON (docs/drift.md)" if what == "input" else \
            "a profile `canary baseline capture` wrote"
        raise ConfigError(f"{path}: the {what} is not valid JSON: {str(exc)[:160]}{not_json(path)}; "
                          f"{'--' + what if what != '--bounds-from' else what} takes {takes}") from None


def _unmeasured_remedy(client: Any, exc: BaseException) -> str:
    """`drift check`'s remedy for live data that could not be read (exit 3): by its cause when Prometheus answers a
    trivial query (`live.remedy`), else that it does not answer at all. A refused connection is not asked again."""
    from canary.drift.live import remedy, unavailable
    from canary.errors import MetricsUnavailable
    from canary.metrics.client import TLS_REFUSED, TLS_REMEDY

    if client is None or not isinstance(exc, MetricsUnavailable):
        return ""
    if TLS_REFUSED in str(exc):  # not down: refused by us (decision 950)
        return "; " + TLS_REMEDY
    if "connection failed" in str(exc) or unavailable(client) is not None:
        return "; Prometheus does not answer at all (is it up, is --prometheus-url right?): nothing measured"
    return remedy(exc)


def _other_profiles(client: Any, prof: dict, version: str | None, window_s: float,
                    namespace: str | None) -> dict[str, Any] | None:
    """{"profile_hash": the baseline's, "exported": [other hashes], "some_pods": bool} when the live version's
    exporters said in the window (`model_feature_profile_info`) that they count over another profile than the
    baseline (`drift watch`'s drift.profile_mismatch); None when they all say the baseline's, none says (older
    exporters), the answers came from --input, `--version` names another version than the profile's (its
    server counts over its own profile, by design), or the query failed (a hint: the verdict stands)."""
    from canary.drift.live import exported_profiles
    from canary.drift.profile import profile_hash

    if client is None or (version is not None and version != str(prof["version"])):
        return None
    try:
        seen = exported_profiles(client, model=str(prof["model"]), version=str(prof["version"]), window_s=window_s,
                                 namespace=namespace)
    except Exception:  # noqa: BLE001 - a hint only, as in drift watch (drift.profiles_unread)
        return None
    mine = profile_hash(prof)
    other = sorted(seen - {mine})
    return {"profile_hash": mine, "exported": other, "some_pods": mine in seen} if other else None


def _from_prometheus(client: Any, prof: dict, version: str, window_s: float, namespace: str | None) -> dict:
    from canary.drift.live import live_counts

    return live_counts(client, prof, model=str(prof["model"]), version=version, window_s=window_s,
                       namespace=namespace)


def _bounds(result: Any, unmeasured: int) -> str:
    """ "25% to 100%": the share of the whole profile drifted, at least and at most (`stats.profile_share`)."""
    from canary.drift.stats import profile_share

    low, high = profile_share(result, unmeasured) or (0.0, 1.0)
    return f"{low:.0%}" if low == high else f"{low:.0%} to {high:.0%}"


def _table(prof: dict, result: Any, quiet: list[str], few: dict[str, int], window_s: float | None, *,
           wide: bool = False, why: str = "", live_version: str = "", verdict: bool | None = None,
           unmeasured: int = 0) -> None:
    from rich.table import Table  # here, where a table is drawn (decision 985)

    from canary.drift.stats import DRIFT_SHARE

    # the version whose live data were checked: `--version v3` against v2's profile titled its table "v2" (the
    # version it was trained as), and an on-call person read the verdict as v2's (decision 257)
    live_version = live_version or str(prof["version"])
    against = "" if live_version == str(prof["version"]) else f" (against the profile of {prof['version']})"
    # nothing compared (a model renamed in the server, an exporter not deployed): no verdict, never "no dataset drift"
    t = Table(title=f"{prof['model']} {live_version}{against}: "
                    + (f"{'DATASET DRIFT' if verdict else 'no dataset drift' if verdict is False else 'NO VERDICT'} "
                       + (f"({sum(1 for f in result.features if f.drifted)} of {len(result.features)} features "
                          f"drifted, {result.share:.0%}; dataset drift at {DRIFT_SHARE:.0%} or more)" if not unmeasured
                          # the share of the profile, bounded: "2 of 2 features drifted, 100%" of four profiled read
                          # as the whole input (decision 411)
                          else f"({sum(1 for f in result.features if f.drifted)} of {len(result.features)} "
                               f"features compared drifted: {_bounds(result, unmeasured)} of all "
                               f"{len(result.features) + unmeasured} profiled, {unmeasured} not compared; dataset "
                               f"drift at {DRIFT_SHARE:.0%} or more of them"
                               + (f": the {unmeasured} not compared {'decide' if unmeasured > 1 else 'decides'} it"
                                  if verdict is None else f": {'drift' if verdict else 'none'} whatever "
                                  f"{'they are' if unmeasured > 1 else 'it is'}") + ")")
                       if result.features else
                       "NOT MEASURED (no feature compared: no verdict)"))
    cols = ("feature", "kind", "test", "value", "threshold", "PSI", "live n", "drift")
    for col in cols + (("p (distance)", "training n", "score", "note") if wide else ()):
        t.add_column(col, justify="left" if col in ("feature", "kind", "test", "note") else "right")
    for f in result.features:
        row = [f.feature, f.kind, f.test, f"{f.value:.3g}", f"{f.threshold:g}", f"{f.psi:.3g}",
               f"{f.n_current:,.0f}", "[red]yes[/red]" if f.drifted else "no"]
        if wide:
            row += ["-" if f.p_value is None else f"{f.p_value:.3g}", f"{f.n_reference:,.0f}", f"{f.score:.3g}",
                    f.note or ""]
        t.add_row(*row)
    console = opts.console(wide)
    console.print(t)
    if unseen := [name for name in quiet if name not in few]:
        console.print(f"no live data for: {', '.join(unseen)}"
                      + ("" if window_s is None else f" ({why})" if why else
                         f" (no series of {prof['model']} {prof['version']} in the window: "
                         "is the exporter deployed, are the model name and version those it exports (a model renamed "
                         "in the server exports under its new name), does the version get traffic?)"), highlight=False)
    if few:
        from canary.drift.compare import MIN_LIVE

        console.print(f"too little live data to judge (inconclusive: fewer than {MIN_LIVE} values in the "
                      f"{'input' if window_s is None else 'window'}; a longer --window holds more): "
                      + ", ".join(f"{k} ({n} values)" for k, n in few.items()), highlight=False)
    gone = set(result.not_arriving())
    for m in result.missing:
        if m.feature in gone:
            console.print(f"[red]NOT ARRIVING (left out of the verdict): {m.reason()}[/red]", highlight=False)
        elif m.shifted:
            console.print(f"[yellow]{m.reason()}[/yellow]", highlight=False)


def register(app: typer.Typer) -> None:
    """Add `baseline` and `drift` to the main app (called by canary/cli.py)."""
    app.add_typer(baseline_app, name="baseline")
    app.add_typer(drift_app, name="drift")
