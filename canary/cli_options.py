"""The options every command shares, and the one renderer: so that every command parses and prints alike.

kubectl habits, on every command (issue 11):

* `-o/--output text|wide|json|yaml` wherever a command prints: `json` one object per line, `yaml`
  the same data through PyYAML, `text` what a person reads, `wide` the same with more columns and no
  folding. Anything else is refused before the command runs (exit 2, naming the flag). `table`, the
  word `plan`, `judge` and `drift check` used before, still means `text`. Only the requested output
  goes to stdout; logs and errors go to stderr.
* `-n/--namespace` defaults to the kubeconfig context's namespace, as kubectl's does
  (`canary.kube.default_namespace`); an explicit `-n` wins.
* durations are Go-style (`1m30s`, `500ms`, `2h`) or plain seconds, one parser with the policy's
  (`policy_fields.parse_duration`); a bad one is refused naming the flag and the value.
* Prometheus: URL, bearer token, basic auth and a CA bundle, each with its CANARY_PROMETHEUS_* variable,
  built into a client in one place.
"""

from __future__ import annotations

import json
import math
from typing import Any, Callable, Optional

import typer

from canary.drift.store import MAX_WINDOW_S, WINDOW_WHY
from canary.errors import ConfigError

OUTPUTS = ("text", "wide", "json", "yaml")
_ALIASES = {"table": "text"}


def output_format(value: str) -> str:
    """Typer callback of --output: one of OUTPUTS, else a usage error (exit 2) naming the flag."""
    v = _ALIASES.get(value, value)
    if v not in OUTPUTS:
        raise typer.BadParameter(f"{value!r} is not an output format: use text, wide, json or yaml")
    return v


OutputOpt = typer.Option("text", "--output", "-o", callback=output_format, metavar="FORMAT",
                         help="text, wide (more columns), json or yaml")


def emit(data: Any, output: str, text: Optional[Callable[[bool], None]] = None, *, stream: bool = False) -> None:
    """Print `data` as asked: json/yaml from the data itself, text/wide by `text(wide)` (default: the
    data as JSON). `stream`: one of several documents (`status --watch`): yaml starts each with ---.

    A stdout nobody can read (closed, a pipe whose reader went away) loses the output, logged as
    `output.lost`, and nothing else: the command goes on to its own exit code (a promotion finished
    exits 0, not click's 1 for a broken pipe, which means "rolled back"; docs/decisions.md 116)."""
    from canary import streams

    def write() -> None:
        if output == "json" or (text is None and output in ("text", "wide")):
            typer.echo(json.dumps(data, default=str))
        elif output == "yaml":
            import yaml

            plain = json.loads(json.dumps(data, default=str))  # tuples, paths, enums: as JSON has them
            typer.echo(yaml.safe_dump(plain, sort_keys=False, allow_unicode=True, explicit_start=stream), nl=False)
        else:
            assert text is not None
            text(output == "wide")

    if not streams.guarded("stdout", write):
        from canary import logs

        logs.get().warning("output.lost", stream="stdout", output=output, error=streams.lost("stdout"),
                           note="the command's output could not be written; its exit code is unchanged")


def console(wide: bool = False) -> Any:
    """A rich Console on stdout; `wide`, or stdout not a terminal with no COLUMNS given (a CI log, a
    pipe: rich would assume 80 columns and fold numbers across lines): at least 200 columns. A
    COLUMNS set (`watch canary status` sets it to the terminal's width) is kept."""
    import os

    from canary import streams

    c = streams.console()
    fallback = not c.is_terminal and not os.environ.get("COLUMNS")
    return streams.console(width=200) if (wide or fallback) and c.width < 200 else c


# ---- durations -------------------------------------------------------------------------------


def _parse_duration(value: Any, *, zero: bool) -> float:
    from canary.policy_fields import parse_duration

    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(value)  # a default given as a number
    if zero and isinstance(value, str) and value.strip() in ("0", "0s"):
        return 0.0
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


def duration(value: Any) -> float:
    """Typer parser: a Go-style duration or seconds -> seconds (> 0)."""
    return _parse_duration(value, zero=False)


def duration_or_zero(value: Any) -> float:
    """Typer parser: as `duration`, and 0 allowed."""
    return _parse_duration(value, zero=True)


# The longest duration a flag takes unless it names its own bound (decision 769): a wait, a period or a quiet
# time longer than a week outlives any CI job or pod it runs in, a typo (`--timeout 10000000h`); and past about
# 292 years (`threading.TIMEOUT_MAX`) a wait raised OverflowError, a traceback, as `setitimer` does past 317.
MAX_DURATION_S = 7 * 86400.0
# The other bounds, each with why (said in the refusal): a drift evaluation's live window (a week, 790: a weekly
# cycle; `analyze --window` keeps a day, a rollout step's, 741); a Lease or a grace no controller or pod keeps
# that long.
DRIFT_WINDOW_BOUND = (MAX_WINDOW_S, WINDOW_WHY)
LEASE_BOUND = (3600.0, "a leader that died holds its rollouts undriven until its Lease runs out")
# --notify-wait's bound (promote, drift watch): a process held that long at its exit, on a receiver that does not
# answer, is a typo
NOTIFY_WAIT_BOUND = (600.0, "a job held that long at its exit, on a receiver that does not answer, is a typo")
INTERVAL_BOUND = (MAX_WINDOW_S, "the longest --window: the live data between two evaluations would never be read")


def bounded(parse: Callable[[Any], float], most: float, why: str) -> Callable[[Any], float]:
    """`parse`, refusing a value over `most` seconds with `why` (a usage error naming the flag, exit 2, before
    anything is read)."""

    def check(value: Any) -> float:
        seconds = parse(value)
        if seconds > most:
            raise typer.BadParameter(f"{_shown(seconds, most)} is longer than {_shown(most)}, the most it takes: {why}; "
                                     f"give {_shown(most)} or less")
        return seconds

    return check


def DurationOpt(default: Any, *names: str, help: str, zero: bool = False,  # noqa: N802
                most: tuple[float, str] = (MAX_DURATION_S, "longer is a typo, or outlives the job it runs in"),
                **kw: Any) -> Any:
    """An option holding a duration: '1m30s', '500ms', '2h', or seconds ('90'); at most `most` (seconds, why)."""
    bound = f"; at most {_shown(most[0])}" if math.isfinite(most[0]) else ""
    return typer.Option(default, *names, parser=bounded(duration_or_zero if zero else duration, *most),
                        metavar="DURATION", help=f"{help} (Go-style duration: 1m30s, 500ms, 2h; or seconds{bound})",
                        **kw)


def _shown(seconds: float, beside: float | None = None) -> str:
    """A duration in a message; `beside`: the limit it is compared with, from which it must read apart."""
    from canary.analysis.shown import duration, duration_beside

    return duration(seconds) if beside is None else duration_beside(seconds, beside)


def monitor_config(M: Any, *, retries: Optional[int], retry_delay: Optional[float], unmeasured_after: float,
                   retrain_job: Any, **kw: Any) -> Any:
    """The drift monitor's settings a user gives (`drift watch`, `controller run --drift`): `kw` (enter_after,
    exit_after, quiet_s), and the retraining Job's retries (`--retrain-job-retries`, `--retrain-job-retry-delay`:
    `MonitorConfig.job_retries`, `job_retry_s`) and the time before an open episode that cannot end is said
    (`MonitorConfig.hold_tell_s`; decision 450). ConfigError naming the flag: a retry setting without
    `--retrain-job` (a webhook's retraining is never read Failed: it would be ignored, silently), a delay under a
    minute (a Job a pass, while its cause is the one its pods' own backoff just met)."""
    for flag, given in (("--retrain-job-retries", retries), ("--retrain-job-retry-delay", retry_delay)):
        if given is not None and not retrain_job:
            raise ConfigError(f"{flag} sets how a failed retraining Job is replaced: it needs --retrain-job (a "
                              f"--retrain-webhook's retraining is never read as failed)")
    if retry_delay is not None and retry_delay < 60:
        raise ConfigError(f"--retrain-job-retry-delay {_shown(retry_delay, 60)}: at least 1m (a new Job that soon meets the "
                          f"cause its pods' own backoffLimit retries just met)")
    more = {} if retries is None else {"job_retries": retries}
    if retry_delay is not None:
        more["job_retry_s"] = retry_delay
    return M.MonitorConfig(hold_tell_s=unmeasured_after, **more, **kw)


RetrainRetriesOpt = typer.Option(None, "--retrain-job-retries", min=0, max=10, show_default=False,
                                 help="new Jobs made for a drift episode after its retraining Job failed, one after "
                                      "another (default 1; 0: none, for a training too costly to try twice)")
RetrainRetryDelayOpt = DurationOpt(None, "--retrain-job-retry-delay", show_default=False,
                                   help="how long after a retraining Job was read Failed its new Job is made "
                                        "(default 1h, at least 1m)")


# ---- Kubernetes ------------------------------------------------------------------------------

NamespaceOpt = typer.Option(None, "--namespace", "-n", show_default=False,
                            help="namespace (default: the kubeconfig context's, as kubectl's; in a pod its own)")


def not_blank(default: str) -> Callable[[Optional[str]], Optional[str]]:
    """A click callback refusing an object flag given empty or blank (a usage error, exit 2, before anything is
    read): `--virtual-service "$VS"` with the variable unset was read as "not given", and `rollback`, `pause` or
    `promote` acted on `default` (the VirtualService named as the model: another route's) without a word, as
    `-n ""` acted on the context's namespace before decision 116 (decision 743)."""

    def check(value: Optional[str]) -> Optional[str]:
        if value is not None and not value.strip():
            raise typer.BadParameter(f"given empty ({value!r}: an unset variable in a pipeline?); name it, or leave "
                                     f"the flag out for {default}")
        return value

    return check


KubeconfigOpt = typer.Option(None, "--kubeconfig", envvar="KUBECONFIG",
                             help="kubeconfig file (default: ~/.kube/config, else in-cluster)",
                             callback=not_blank("$KUBECONFIG, else ~/.kube/config: maybe another cluster"))
ContextOpt = typer.Option(None, "--context", help="kubeconfig context (default: the current context)",
                          callback=not_blank("the current context: maybe another cluster"))


def namespace(explicit: Optional[str], kubeconfig: Optional[str], context: Optional[str]) -> str:
    """`-n` if given, else the context's namespace (ConfigError for an unreadable kubeconfig or context).
    `-n ""` is refused, not read as "not given": a pipeline's `-n "$NAMESPACE"` with the variable unset
    acted on the kubeconfig context's namespace -- another environment's rollout (decision 116)."""
    if explicit is not None and not explicit.strip():
        from canary.errors import ConfigError

        raise ConfigError(f"-n/--namespace was given empty ({explicit!r}: an unset variable in a pipeline?); name "
                          "the namespace, or leave the flag out to use the kubeconfig context's")
    if explicit:
        return explicit
    from canary.kube import default_namespace

    return default_namespace(kubeconfig=kubeconfig, context=context)


# ---- Prometheus ------------------------------------------------------------------------------

PromUrlOpt = typer.Option(None, "--prometheus-url", envvar="CANARY_PROMETHEUS_URL",
                          help="Prometheus HTTP API base URL, e.g. http://prometheus:9090")
PromTokenOpt = typer.Option(None, "--prometheus-token", envvar="CANARY_PROMETHEUS_TOKEN", show_default=False,
                            help="bearer token for Prometheus")
PromUserOpt = typer.Option(None, "--prometheus-user", envvar="CANARY_PROMETHEUS_USER",
                           help="basic-auth user for Prometheus")
PromPasswordOpt = typer.Option(None, "--prometheus-password", envvar="CANARY_PROMETHEUS_PASSWORD",
                               show_default=False, help="basic-auth password (with --prometheus-user)")
PromCaOpt = typer.Option(None, "--prometheus-ca-file", envvar="CANARY_PROMETHEUS_CA_FILE",
                         help="CA bundle (PEM) that signed Prometheus's certificate")
InsecureOpt = typer.Option(False, "--insecure-skip-tls-verify", envvar="CANARY_PROMETHEUS_INSECURE",
                           help="do not verify Prometheus's TLS certificate")


def prometheus(url: Optional[str], token: Optional[str] = None, user: Optional[str] = None,
               password: Optional[str] = None, ca_file: Optional[str] = None, insecure: bool = False, *,
               provider: bool = True) -> Any:
    """A PrometheusProvider (or, `provider=False`, the bare PrometheusClient) from the shared options.
    ConfigError naming the flag for a missing URL, a password without a user, a token with a user,
    an unreadable CA file."""
    from canary.metrics.client import PrometheusClient
    from canary.metrics.prometheus import PrometheusProvider

    if not url:
        raise ConfigError("no Prometheus address: pass --prometheus-url or set CANARY_PROMETHEUS_URL")
    if password and not user:
        raise ConfigError("--prometheus-password needs --prometheus-user (CANARY_PROMETHEUS_USER)")
    if token and user:  # both would set Authorization: which one the server sees is not for us to guess
        raise ConfigError("give --prometheus-token or --prometheus-user/--prometheus-password, not both "
                          "(check CANARY_PROMETHEUS_TOKEN and CANARY_PROMETHEUS_USER)")
    verify: bool | str = True
    if ca_file:
        if insecure:
            raise ConfigError("give at most one of --prometheus-ca-file and --insecure-skip-tls-verify")
        verify = _ca_bundle(ca_file)
    elif insecure:
        verify = False
    cls = PrometheusProvider if provider else PrometheusClient
    return cls(url, token=token or None, basic_auth=(user, password or "") if user else None, verify_tls=verify)


def _ca_bundle(path: str, name: str = "--prometheus-ca-file") -> Any:
    """The bundle at `path`, checked now (ConfigError naming `name`), handed to requests as a private copy of the
    bytes checked (decision 832) and read again when the file changes (`ca_bundle.CaBundle`, decision 912)."""
    from canary.ca_bundle import CaBundle

    return CaBundle(path, name)


def given(ctx: typer.Context, param: str) -> bool:
    """Whether option `param` was given (on the command line or through its variable), not defaulted."""
    source = ctx.get_parameter_source(param)
    return source is not None and getattr(source, "name", "") != "DEFAULT"


def typed(ctx: typer.Context, param: str) -> bool:
    """Whether option `param` was given on the command line: not defaulted, and not filled by its variable."""
    source = ctx.get_parameter_source(param)
    return getattr(source, "name", "") == "COMMANDLINE"


def check_window(window_s: float, prometheus: Any, *, policy_scrape: tuple[float, str] | None = None,
                 unset: str = "", hint: str = "") -> None:
    """ConfigError (exit 2, before any query) when `--window` is under twice the scrape interval: `increase()` needs
    two samples in its window, which one under two intervals holds only at some evaluations (under one, at none),
    the others reading no series for both arms (on-call went looking for a broken exporter; decisions 542, 552).
    The interval is `policy_scrape` ((seconds, where it is set): a policy's `metrics.scrape_interval` its file
    sets), else `prometheus`'s own, the shortest in its configuration (`unset`: said beside it, why no policy's);
    where Prometheus cannot tell (Thanos, Mimir, a remote-write receiver, an unreadable configuration), nothing is
    checked: a refusal must never be wrong (decisions 557, 562). `canary analyze` and `drift watch` share it."""
    import math

    from canary.analysis.shown import duration

    if policy_scrape is not None:
        scrape, source = policy_scrape
    else:
        told = prometheus.shortest_scrape_interval_s() if prometheus is not None else None
        if told is None:
            return
        scrape = told
        source = f"Prometheus's scrape interval ({duration(told)}, the shortest in its configuration{unset})"
    if window_s < 2 * scrape:
        which = "every" if window_s <= scrape else "many an"
        raise ConfigError(f"--window {_shown(window_s, 2 * scrape)} is shorter than two scrapes, under twice {source}: "
                          f"increase() needs two scrapes in the window, so {which} evaluation would read no live "
                          f"data; give --window {math.ceil(2 * scrape)}s or more{hint}")
