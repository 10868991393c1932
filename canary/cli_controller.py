"""`canary controller run` (the long-running controller) and `canary promote --via-controller`.

Registered onto the main app by cli.py. The controller serves /metrics,
/healthz and /readyz, elects a leader on a Lease when asked, and stops
cleanly on SIGTERM (the lease is released so a standby takes over at once).
"""

from __future__ import annotations

import hashlib
import os
import re
import signal
import socket
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Optional

import typer

from canary import cli, crd, errors
from canary import cli_options as opts
from canary.interrupts import install_handlers, restore_handlers, setting
from canary import rollout as rl
from canary.model import check_object_name, check_versions

controller_app = typer.Typer(no_args_is_help=True, help="Run canary as a long-running controller of CanaryRollouts.")


@controller_app.command("run")
def run(
    namespace: Optional[str] = typer.Option(None, "--namespace", "-n", help="watch one namespace (default: all)"),
    kubeconfig: Optional[str] = cli.KubeconfigOpt,
    context: Optional[str] = cli.ContextOpt,
    prometheus_url: Optional[str] = opts.PromUrlOpt,
    prometheus_token: Optional[str] = opts.PromTokenOpt,
    prometheus_user: Optional[str] = opts.PromUserOpt,
    prometheus_password: Optional[str] = opts.PromPasswordOpt,
    prometheus_ca_file: Optional[str] = opts.PromCaOpt,
    insecure: bool = opts.InsecureOpt,
    leader_elect: bool = typer.Option(False, "--leader-elect", help="hold a coordination.k8s.io Lease; only the leader writes"),
    lease_namespace: str = typer.Option("", "--lease-namespace", envvar="POD_NAMESPACE", help="namespace of the Lease (default: canary-system)"),
    lease_name: str = typer.Option("canary-controller", "--lease-name", help="name of the Lease (with --shards N: "
                                   "<name>-shard-<i>-of-<N>, one per shard)"),
    lease_duration: float = opts.DurationOpt("15s", "--lease-duration", help="how long a Lease holds",
                                            most=opts.LEASE_BOUND),
    renew_deadline: float = opts.DurationOpt("10s", "--renew-deadline", help="must be below --lease-duration",
                                            most=opts.LEASE_BOUND),
    retry_period: float = opts.DurationOpt("2s", "--retry-period", help="between tries to take or renew the Lease",
                                         most=opts.LEASE_BOUND),
    identity: str = typer.Option("", "--identity", envvar="POD_NAME", help="default: hostname-pid"),
    metrics_addr: str = typer.Option("127.0.0.1:8080", "--metrics-addr", help="host:port for /metrics /healthz /readyz ('' to disable)"),
    tick: float = opts.DurationOpt("1s", "--tick", help="between passes over the rollouts that are due", most=(
        86400.0, "a pass less often than a day, the longest step (analysis.interval), leaves every rollout late")),
    sweep_every: float = opts.DurationOpt("1m", "--sweep-every", zero=True,
                                          help="between sweeps for abandoned rollouts: a killed `canary promote`, "
                                               "a CanaryRollout gone (`canary sweep`); 0 turns them off"),
    wait_ready: float = opts.DurationOpt("10m", "--wait-ready", zero=True,
                                         help="how long an unclaimed CanaryRollout waits for a Ready pod of its "
                                              "canary version and of its stable version before it ends unrun, "
                                              "aborted (nothing moved)"),
    workers: int = typer.Option(4, "--workers", min=1, max=64, help="rollouts reconciled at once (their writes run concurrently)"),
    shards: int = typer.Option(1, "--shards", min=1, max=1024, envvar="CANARY_SHARDS", help="split the rollouts into N shards, each led through its own Lease (run N+1 replicas)"),
    shard_index: Optional[int] = typer.Option(None, "--shard-index", min=0, help="lead only this shard (default: any, up to --max-shards-per-replica)"),
    max_shards: int = typer.Option(1, "--max-shards-per-replica", min=1, help="shards one replica leads at once"),
    webhook: list[str] = typer.Option([], "--webhook", help="generic JSON webhook URL (repeatable; also CANARY_WEBHOOK_URLS)"),
    slack_webhook: list[str] = typer.Option([], "--slack-webhook", help="Slack incoming-webhook URL (repeatable; also CANARY_SLACK_WEBHOOK_URLS)"),
    drift: bool = typer.Option(False, "--drift", help="also watch every baseline ConfigMap for data drift (docs/drift.md)"),
    drift_interval: float = opts.DurationOpt("5m", "--drift-interval", help="time between drift evaluations",
                                            most=opts.INTERVAL_BOUND),
    drift_window: float = opts.DurationOpt("1h", "--drift-window", help="live data each drift evaluation reads",
                                          most=opts.DRIFT_WINDOW_BOUND),
    drift_quiet: float = opts.DurationOpt("1h", "--drift-quiet", zero=True,
                                          help="no drift episode within this of a version first seen"),
    retrain_job: Optional[Path] = typer.Option(None, "--retrain-job", help="batch/v1 Job template created once per drift episode"),
    retrain_job_retries: Optional[int] = opts.RetrainRetriesOpt,
    retrain_job_retry_delay: Optional[float] = opts.RetrainRetryDelayOpt,
    drift_episode_unmeasured_after: float = opts.DurationOpt(
        "24h", "--drift-episode-unmeasured-after", help="an open drift episode whose evaluations have had no verdict "
                                                        "this long is said once: drift.episode_unmeasured"),
    log_format: str = cli.LogFormatOpt,
) -> None:
    """Drive every CanaryRollout until it is promoted or rolled back.

    -n watches one namespace; without it, all (unlike other commands, it does not default to the
    kubeconfig context's namespace: a controller serves the cluster).

    Example: canary controller run --leader-elect --prometheus-url http://prometheus:9090 --tick 2s --drift
    """
    from canary import logs, malloc

    malloc.configure()  # a long-running process: 2 malloc arenas, large blocks unmapped when freed
    logs.configure(fmt=log_format)
    log = logs.get(component="controller")

    def go() -> int:
        from canary.kube import api_client
        from canary.notify import Notifier
        from canary.telemetry import Telemetry

        if renew_deadline >= lease_duration:
            raise cli.ConfigError("--renew-deadline must be below --lease-duration (fencing)")
        from canary.drift import monitor as M

        # the drift monitor's settings, checked before the cluster is asked (a bad one is exit 2 naming its flag)
        drift_config = opts.monitor_config(M, retries=retrain_job_retries, retry_delay=retrain_job_retry_delay,
                                           unmeasured_after=drift_episode_unmeasured_after, retrain_job=retrain_job,
                                           quiet_s=drift_quiet)

        prom = cli._metrics(prometheus_url, prometheus_token, prometheus_user, prometheus_password, insecure,
                            prometheus_ca_file)  # flags first: a bad one is refused before the cluster is asked
        client = api_client(kubeconfig=kubeconfig, context=context)
        me = identity or f"{socket.gethostname()}-{os.getpid()}"
        stop = threading.Event()
        # no lock taken in the handler: `stop.set()` there could wait for the lock the main thread held at the
        # signal, for ever (decision 513)
        before.update(install_handlers(setting(stop), (signal.SIGINT, signal.SIGTERM)))
        telemetry = Telemetry()
        notifier = Notifier.from_env(webhooks=webhook, slack=slack_webhook)
        if shard_index is not None and shard_index >= shards:
            raise cli.ConfigError(f"--shard-index must be below --shards ({shards})")
        from canary import shards as sh

        def live() -> tuple[bool, str]:
            last = min(o.last_tick for o in ops)
            return time.monotonic() - last < stall, f"no tick for {time.monotonic() - last:.0f}s"

        def ready() -> tuple[bool, str]:
            bad = [o.health[1] for o in ops if not o.health[0]]
            return not bad, f"{'leader' if is_leader() else 'standby'}; {bad[0] if bad else 'ok'}"

        # bound before anything starts (informers, Leases, the drift thread): a port taken or an address that
        # is not one is exit 2 naming --metrics-addr. It came after them, as a bug's exit 3 ("unexpected error
        # (OSError: [Errno 98] ...)"), and the threads left running made the interpreter abort at exit (134)
        server = _health_server(metrics_addr, telemetry, ready=ready, live=live) if metrics_addr else None

        # watches + a local cache (no LIST per tick); one controller per shard this replica may lead
        ops, is_leader, release = sh.build(
            client, prom=prom, namespace=namespace, identity=me, telemetry=telemetry, notifier=notifier,
            workers=workers, shards=shards, shard_index=shard_index, max_shards=max_shards, leader_elect=leader_elect,
            lease_namespace=lease_namespace or "canary-system", lease_base=lease_name, lease_duration_s=lease_duration,
            renew_deadline_s=renew_deadline, retry_period_s=retry_period, stop=stop, sweep_every_s=sweep_every,
            wait_ready_s=wait_ready)
        stall = max(30.0, 10 * tick)
        looped = False
        try:
            if drift:
                _start_drift(client, prom, namespace=namespace, state_namespace=lease_namespace or "canary-system",
                             stop=stop, is_leader=sh.drift_leader(ops, shard_index=shard_index), notifier=notifier,
                             interval=drift_interval, shards=shards, window=drift_window, quiet=drift_quiet,
                             retrain_job=retrain_job, registry=telemetry.registry, config=drift_config)
            if server is not None:
                server.start()
                log.info("controller.serving", url=server.url)
            log.info("controller.started", identity=me, namespace=namespace or "(all)", leader_elect=leader_elect,
                     shards=shards, shard_index=shard_index, workers=workers)
            # the Leases are handed over once every shard's loop has ended its tick (none mid-write)
            looped = True
            sh.run_loops(ops, stop, tick_s=tick, release=release, join_s=renew_deadline, log=log)
        finally:
            stop.set()  # whatever ended the loop (a signal, a bad --retrain-job, a bug): the informers and Leases stop
            if not looped:  # the loops never ran: nothing is in flight
                release()
            notifier.close(5.0)
            if server is not None:
                server.stop()
            log.info("controller.stopped", identity=me)
        return 0

    before: dict[int, Any] = {}
    try:
        code = cli.run_guarded(go)
    finally:
        restore_handlers(before)
    raise typer.Exit(code)


def _health_server(addr: str, telemetry: Any, *, ready: Any, live: Any) -> Any:
    """The /metrics, /healthz and /readyz server, bound (not yet serving) on `addr`, `host:port` (host
    optional: 127.0.0.1; port 0: the kernel's pick). ConfigError naming --metrics-addr for an address
    that is not one, a port out of range, or one that cannot be bound (taken, not this host's)."""
    from canary.telemetry import HealthServer

    host, sep, port = addr.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise cli.ConfigError(f"--metrics-addr {addr!r}: give host:port or :port (127.0.0.1; port 0-65535, 0 for "
                              "any free one), or '' for no metrics server")
    try:
        return HealthServer(telemetry, host=host, port=int(port), ready=ready, live=live)
    except (OSError, OverflowError, ValueError) as exc:
        raise cli.ConfigError(f"--metrics-addr {addr!r}: cannot listen on {host}:{port}: "
                              f"{getattr(exc, 'strerror', None) or exc}") from None


def _start_drift(client: Any, prom: Any, *, namespace: Optional[str], state_namespace: str, stop: Any,
                 is_leader: Any, notifier: Any, interval: float, window: float, quiet: float,
                 retrain_job: Optional[Path], registry: Any = None, shards: int = 1, config: Any = None) -> None:
    """The drift monitor beside the rollouts: a thread over the baseline ConfigMaps (leader only)."""
    import kubernetes.client as kc

    from canary.drift import monitor as M
    from canary.drift.store import ConfigMapStateStore
    from canary.drift.watch import DriftWatcher, load_job_template, watch_baselines

    interval_s, window_s, quiet_s = interval, window, quiet  # seconds, parsed by their options
    template = load_job_template(retrain_job) if retrain_job else None
    core = kc.CoreV1Api(client)
    # `config`: the flags' (`cli_options.monitor_config`), its quiet period `quiet`'s
    config = M.MonitorConfig(quiet_s=quiet_s) if config is None else config
    watcher = DriftWatcher([], client=prom, window_s=window_s, config=config,
                           store=ConfigMapStateStore(core, namespace=state_namespace), core_api=core,
                           batch_api=kc.BatchV1Api(client), job_template=template, notifier=notifier,
                           registry=registry,  # model_data_drift_* on the controller's /metrics
                           load=False)  # read by watch_baselines when it leads: a state it cannot use is said there
    threading.Thread(target=watch_baselines, args=(watcher, core),
                     kwargs={"namespace": namespace, "stop": stop, "interval_s": interval_s, "is_leader": is_leader,
                             "job_source": str(retrain_job or "--retrain-job")},
                     name="canary-drift", daemon=True).start()
    from canary import logs

    logs.get(component="controller").info("controller.drift_monitor", interval_s=interval_s, window_s=window_s,
                                          retrain_job=str(retrain_job or ""), retrain_job_retries=config.job_retries,
                                          retrain_job_retry_s=config.job_retry_s,
                                          episode_unmeasured_after_s=config.hold_tell_s,
                                          runs_on=f"the leader of shard 0/{shards}" if shards > 1 else "the leader")


def follow(*, model: str, canary_version: str, policy_file: Path, namespace: str, stable_version: str,
           virtual_service: Optional[str], kubeconfig: Optional[str], context: Optional[str], name: Optional[str],
           triton: dict[str, str] | None, output: str, timeout_s: float, destination_rule: Optional[str] = None,
           route: Optional[str] = None, interrupted: Callable[[], None] = lambda: None,
           reporting: Callable[[], None] = lambda: None, retry: bool = False,
           seen: dict[str, Any] | None = None) -> int:
    """`promote --via-controller`: create/update the CanaryRollout, follow its status, same exit codes.
    A version the route records rolled back is reported (exit 1, nothing created) unless `retry`, as `promote`
    reports it (`_rolled_back_before`, decision 238).
    `interrupted()` raises when a signal came whose handler's raise was lost (`interrupts.Interrupt.check`): called
    before each write and read, and before any other error is reported. `reporting()` is called just before an
    outcome is printed (`Interrupt.disarm`): a signal then no longer cuts it. `seen["status"]`: this request's
    status as last read while its rollout ran (None otherwise), for the document of a follow that ends without
    its outcome (`--timeout`, a signal: decision 621), `seen["rollout"]` its CanaryRollout (namespace/name)."""
    import kubernetes.client as kc

    from canary.kube import an_object, api_client, translate
    from canary.policy import parse_policy
    from canary.policy_yaml import load_text, read_file
    from canary.reconcile import EXIT_CODES  # here, not at the top: the reconcile stack is promote's (decision 965)

    # read and parsed once, strictly: what is checked here (exit 2, nothing created) is what is sent
    raw = load_text(read_file(policy_file), file=str(policy_file))
    policy = parse_policy(raw, file=str(policy_file))
    gate = policy.gates.triton
    cli.warn_gate_off(gate, policy_file, (triton or {}).get("stableUrl"), (triton or {}).get("canaryUrl"))
    if gate is not None and gate.enabled and gate.sample_file:
        raise cli.ConfigError(f"{policy_file}: gates.triton.sample_file: --via-controller sends the policy inline, "
                              "and the controller cannot read a file on this machine; put the policy and the samples "
                              "in one ConfigMap and create a CanaryRollout with spec.policyRef "
                              "(docs/triton.md, \"Warm-up samples under the controller\")")
    if not (isinstance(timeout_s, (int, float)) and 0 < timeout_s < float("inf")):
        raise cli.ConfigError(f"--timeout must be a positive number of seconds, got {timeout_s}")
    # the flags named, as `promote` names them, and nothing created: it was the controller's refusal of the
    # CanaryRollout, naming spec.triton.canaryUrl, a field of an object the person never wrote. One not given is
    # refused once no earlier end of the version is found to report (decision 544)
    urls = ((triton or {}).get("stableUrl"), (triton or {}).get("canaryUrl"))
    missing = cli.gate_flags_missing(gate, policy_file, *urls)
    if missing is None:
        cli.check_gate_urls(gate, policy_file, *urls)
    check_versions(canary_version, stable_version)  # the controller's first-tick refusal, before any create
    cli._target(model, namespace, virtual_service, destination_rule, route=route)  # names checked: ConfigError, nothing sent
    if name:  # the default always is one (`rollout_name`, decision 742)
        check_object_name(name, "--rollout-name")
    named, name = bool(name), name or rollout_name(model, canary_version)
    body = crd.new_object(namespace=namespace, name=name,
                          model=model, canary_version=canary_version, policy_raw=raw, stable_version=stable_version,
                          virtual_service=virtual_service or "", triton=triton)
    body["spec"].update({k: v for k, v in (("destinationRule", destination_rule), ("route", route)) if v})
    from canary import ci_job

    # the CI job this follower runs in, for the controller to record as a promote records its own (decision 389)
    job = cli.ci_job_of_env(model=model, namespace=namespace)
    if job:
        body["metadata"].setdefault("annotations", {})[ci_job.ANNOTATION] = job
    # this request's own mark: a write whose answer was lost is read back as this request's only when the object
    # carries it (another request of the same spec, a CI job run twice, writes the same spec; decision 462)
    body["metadata"].setdefault("annotations", {})[REQUEST_ANNOTATION] = uuid.uuid4().hex
    api = kc.CustomObjectsApi(cli.unreadable_route_says(missing, lambda: api_client(kubeconfig=kubeconfig,
                                                                                   context=context)))
    meta = body["metadata"]
    created = False
    try:
        interrupted()
        legacy = legacy_rollout_name(model, canary_version)  # one no object could have had is never read (742)
        if not named and name != legacy and _object_name(legacy):
            meta["name"] = name = _named_before(api, namespace, body["spec"], model, canary_version,
                                                retry=retry) or name
            interrupted()  # a signal lost in that read: nothing created
        if not retry:
            ended = _rolled_back_before(api, namespace, name, model=model, canary_version=canary_version,
                                        virtual_service=virtual_service, destination_rule=destination_rule,
                                        route=route or policy.route, kubeconfig=kubeconfig, context=context,
                                        output=output, reporting=reporting)
            interrupted()  # a signal lost in those reads: nothing created
            if ended is not None:  # said before a Triton flag not given is asked for: nothing is created (decision 544)
                return ended
        if missing is not None:
            raise missing
        try:
            written = _answered(lambda: api.create_namespaced_custom_object(crd.GROUP, crd.VERSION, namespace,
                                                                            crd.PLURAL, body), api, body, "create")
            created = True
        except Exception as exc:
            interrupted()
            if getattr(exc, "status", None) != 409:
                raise
            current = an_object(api.get_namespaced_custom_object(crd.GROUP, crd.VERSION, namespace, crd.PLURAL,
                                                                 meta["name"]), f"CanaryRollout {namespace}/{meta['name']}")
            interrupted()  # a signal lost in that read: nothing more is read, and the replace below not sent
            old = current.get("status") or {}
            if (retry and old.get("phase") == rl.ROLLED_BACK
                    and (old.get("target") or {}).get("canaryVersion") == canary_version):
                # `--retry` asks for a new run of a rolled-back version: reporting this object's old end (decision
                # 116) ignored it. A promoted one is reported as before, as a plain `promote --retry` reports it
                raise cli.ConfigError(
                    f"CanaryRollout {namespace}/{meta['name']} already ran {canary_version} ({old['phase']}, "
                    f"{old.get('updatedAt') or 'earlier'}); --retry runs the version again only as a new "
                    "CanaryRollout: delete this one first, or give --rollout-name; nothing was started") from None
            if old.get("phase") in rl.TERMINAL and (old.get("target") or {}).get("canaryVersion") == canary_version:
                # a pipeline's step retried (its runner lost, or the first follower out of --timeout, exit 3,
                # while the controller went on): the end this very object reached, when the route still
                # shows it, is this request's outcome (0 promoted, 1 rolled back), as `promote` re-run
                # reports a promotion (decision 22); anything since on the route: refused as before
                ended = _still_routed(current, kubeconfig=kubeconfig, context=context, model=model, output=output,
                                      reporting=reporting)
                if ended is not None:
                    return ended
                raise cli.ConfigError(
                    f"CanaryRollout {namespace}/{meta['name']} already ran {canary_version} ({old['phase']}, "
                    f"{old.get('updatedAt') or 'earlier'}); nothing was started: delete it first to run that version "
                    "again, or give --rollout-name") from None
            deleting = (current.get("metadata") or {}).get("deletionTimestamp")
            if deleting:  # written into, it vanished with this request: "did not finish; it keeps running" was said
                held = ", ".join(map(str, (current.get("metadata") or {}).get("finalizers") or [])) or "none"
                raise cli.TransientError(
                    f"CanaryRollout {namespace}/{meta['name']} is being deleted (since {deleting}; finalizers: {held}, "
                    "the controller's sends a rollout it ran to stable first); nothing was written: run this request "
                    f"again once it is gone (`kubectl get canaryrollout {meta['name']} -n {namespace}`: NotFound)") from None
            held = held_by_another(current, body["spec"])
            if held:  # another request's rollout running under this name: never replaced by it (decision 701)
                from canary.reconcile import crd_owner

                raise errors.RolloutBusy(f"CanaryRollout {namespace}/{meta['name']} {held}", job=_request_job(current),
                                         holder=crd_owner(namespace, meta["name"], _uid(current)))
            body["metadata"] = kept_metadata(current, body["metadata"])
            body["spec"] = kept_spec(current, body["spec"])
            written = _answered(lambda: api.replace_namespaced_custom_object(crd.GROUP, crd.VERSION, namespace,
                                                                             crd.PLURAL, meta["name"], body),
                                api, body, "replace")
        generation = int((written.get("metadata") or {}).get("generation") or 0)
        deadline = time.monotonic() + timeout_s
        last: dict[str, Any] = {}
        said: dict[str, Any] = {}  # the last `follow.status` logged (decision 620)
        while time.monotonic() < deadline:
            interrupted()
            try:
                obj = _read_own(api, namespace, meta["name"], _uid(written))
            except cli.CanaryError:
                interrupted()  # a signal's own error: the status seen is still this request's
                if seen is not None:  # deleted, or created again: what was read of it says nothing of the route now
                    seen["status"] = None
                raise
            interrupted()  # a read whose signal came out as another error (read as the API down: None)
            last = obj or last
            if obj is None:  # a read failed for a while (the API down, a 5xx): the rollout goes on; read again
                time.sleep(1.0)
                continue
            st = obj.get("status") or {}
            # only an end of this request: the version asked for, judged at this generation (a status
            # left from the object's earlier version was reported as this request's outcome)
            ours = ((st.get("target") or {}).get("canaryVersion") == canary_version
                    and (st.get("target") or {}).get("model", model) == model  # not another model's (decision 617)
                    and int(st.get("observedGeneration") or 0) >= generation)
            if seen is not None:  # this request's rollout as it runs, for the document of a follow cut short (621)
                seen["status"] = st if ours and st.get("phase") and st["phase"] not in rl.TERMINAL else None
                seen["rollout"] = f"{namespace}/{meta['name']}"  # which CanaryRollout runs on, as an end's document
            refused = _refused(st, generation)
            if refused:  # the controller refused the request before claiming anything: exit 2, as promote does
                where = f"CanaryRollout {namespace}/{meta['name']}"
                said = refused.removeprefix(f"{namespace}/{meta['name']}: ")  # the controller's own words
                withdrawn = _withdrawn(api, namespace, meta['name'], _uid(written) if created else '',
                                       str((obj.get("metadata") or {}).get("resourceVersion") or ""))
                if withdrawn is None:  # written since it was read (a claim, once the route could be): read again
                    continue
                raise cli.ConfigError(nothing_moved(f"{'' if said.startswith(where) else where + ': '}{said}")
                                      + withdrawn)
            newer = _left_to_newer(st, generation)
            if newer:  # claimed, then recorded by a newer canary: not this controller's to finish (decision 172)
                raise cli.TransientError(left_to_newer_words(f"{namespace}/{meta['name']}", st, newer))
            if st.get("phase") in rl.TERMINAL and ours:
                # a request that waited on another owner's rollout of the same version ends unrun
                # (aborted); the version's outcome is that rollout's, judged by that owner's policy
                waited = st.get("waitedOnPhase") if st["phase"] == rl.ABORTED else None
                outcome = waited if waited in EXIT_CODES else st["phase"]
                code = EXIT_CODES[outcome]
                where = f"{namespace}/{meta['name']}"

                def text(wide: bool, st: dict[str, Any] = st) -> None:
                    split = weights_text(st)
                    extra = f" (CanaryRollout {where}, route {route or '-'})" if wide else ""
                    by = f" by the rollout this request waited on ({st['phase']} itself)" if outcome != st["phase"] else ""
                    weights = f" weights {split}" if split else ""  # none: it ran nothing
                    typer.echo(f"{outcome}{by}: {model} {canary_version}{weights}{extra} - {st.get('reason', '')}")

                reporting()
                opts.emit(follow_document(st, outcome=outcome, exit_code=code, rollout=where), output, text)
                return code
            asked = _asked_instead(obj, body["spec"], generation)
            if asked:  # its spec now asks for another version: this request's will never end there (decision 617)
                if seen is not None:
                    seen["status"] = None
                raise cli.CanaryError(f"CanaryRollout {namespace}/{meta['name']} {asked}")
            now = _progress(st, generation) if ours or not st.get("phase") else {}
            if now and now != said:  # the pipeline's log says where its rollout is, or why it waits (decision 620)
                from canary import logs

                logs.get(model=model, namespace=namespace, canary_version=canary_version).info(
                    "follow.status", rollout=f"{namespace}/{meta['name']}", **now)
                said = now
            time.sleep(1.0)
    except cli.CanaryError:
        interrupted()  # the signal's own error, or another's it came out as: the signal is what is said
        raise
    except Exception as exc:
        interrupted()
        raise translate(exc, f"CanaryRollout {namespace}/{meta['name']}") from exc
    waiting = _not_started(last.get("status") or {}, generation)
    if waiting:  # never claimed (its canary's pods not Ready, Prometheus down): say why, and that it may start later
        raise cli.TransientError(
            f"CanaryRollout {namespace}/{meta['name']} did not finish within {timeout_s:.0f}s; as of its last status "
            f"it has not started: {waiting}; the controller goes on trying, and starts it once that clears "
            f"(`canary status`; `kubectl delete canaryrollout {meta['name']} -n {namespace}` withdraws it)")
    if last and _unread(last.get("status") or {}, generation):  # no controller ever answered this request
        raise cli.TransientError(
            f"CanaryRollout {namespace}/{meta['name']} did not finish within {timeout_s:.0f}s; no controller has read "
            f"it: its status says nothing of this request (generation {generation}), and nothing was moved for it. "
            f"Is a `canary controller run` running for namespace {namespace} (with --leader-elect, one leading)? It "
            f"starts once one reads it (`kubectl delete canaryrollout {meta['name']} -n {namespace}` withdraws it)")
    raise cli.TransientError(f"CanaryRollout {namespace}/{meta['name']} did not finish within {timeout_s:.0f}s; "
                             "it keeps running in the controller (`canary status`)")


def _still_routed(obj: dict[str, Any], *, kubeconfig: Optional[str], context: Optional[str], model: str,
                  output: str, reporting: Callable[[], None] = lambda: None) -> int | None:
    """The exit code of the end the CanaryRollout `obj` reached (promoted 0, rolled back 1), reported
    as `follow` reports an end, when its route still shows that end: the route's record is this object's
    (its name and uid), in that phase, at stable 100%, the stable subset on the version that end serves
    (`end_disagreement`). None otherwise (aborted, another rollout recorded since, a read that failed):
    the caller refuses the request as it did."""
    from canary import logs
    from canary.errors import CanaryError
    from canary.reconcile import EXIT_CODES, crd_ref, end_disagreement, parse_record
    from canary.model import STABLE_ONLY

    meta, st = obj.get("metadata") or {}, obj.get("status") or {}
    phase, target = st.get("phase"), st.get("target") or {}
    if phase not in (rl.PROMOTED, rl.ROLLED_BACK):
        return None
    ns, name = str(meta.get("namespace") or ""), str(meta.get("name") or "")
    try:
        router = cli._oncall_router(kubeconfig, context)
        route = cli._target(model, ns, target.get("virtualService") or None, target.get("destinationRule") or None,
                            route=target.get("route") or None)
        status = router.inspect(route)
        recorded = parse_record(status.state)
    except CanaryError:
        return None
    ref, uid = crd_ref(recorded.owner) if recorded is not None else ("", "")
    if (recorded is None or recorded.phase != phase or recorded.canary_version != target.get("canaryVersion")
            or ref != f"{ns}/{name}" or (uid and uid != meta.get("uid")) or status.weights != STABLE_ONLY
            or end_disagreement(recorded, status)):
        return None
    code = EXIT_CODES[phase]
    where = f"{ns}/{name}"
    logs.get(model=model, namespace=ns).info("follow.already_ended", rollout=where, phase=phase,
                                             canary_version=recorded.canary_version, exit_code=code)

    def text(wide: bool) -> None:
        extra = f" (CanaryRollout {where}, route {target.get('route') or '-'})" if wide else ""
        typer.echo(f"{phase} already: {model} {recorded.canary_version} weights 100/0{extra} - "
                       f"{st.get('reason', '')}")

    reporting()
    opts.emit(follow_document(st, outcome=phase, exit_code=code, rollout=where, already_ended=True), output, text)
    return code


def _rolled_back_before(api: Any, namespace: str, name: str, *, model: str, canary_version: str,
                        virtual_service: Optional[str], destination_rule: Optional[str], route: Optional[str],
                        kubeconfig: Optional[str], context: Optional[str], output: str,
                        reporting: Callable[[], None]) -> int | None:
    """Exit 1, that rollback reported (`rollout.already_rolled_back`, `"already_ended": true`), when the route
    records `canary_version` rolled back (stable 100%, the stable subset on the version it serves:
    `end_disagreement`) and no CanaryRollout `name` exists (one that does is reported by its own end, or refused,
    as before). A plain `promote` re-run reports that rollback the same way, and runs the version again only
    with `--retry`; a new CanaryRollout put it back in front of users, whoever rolled it back: a plain
    `promote`, a CanaryRollout since deleted, one of another name (decision 238). None otherwise, and when the
    route cannot be read here (the controller then says why, as before)."""
    from canary import logs
    from canary.errors import CanaryError, NotFound
    from canary.kube import translate
    from canary.history_store import ConfigMapStore, rollback_reported
    from canary.reconcile import EXIT_CODES, parse_record

    try:
        router = cli._oncall_router(kubeconfig, context)
        target = router.resolve(cli._target(model, namespace, virtual_service, destination_rule, route=route))
        status = router.inspect(target)
        recorded = parse_record(status.state)
    except CanaryError:
        return None
    # the route as asked (the on-call router's `resolve` picks the recorded one when none is named); the model's own
    # history when another model's record on a shared VirtualService (or none left) hid it, as the plain promote
    # does (decision 253): `where` then names that ConfigMap (`recorded_in`)
    core = getattr(router, "core", None)
    found = rollback_reported(recorded, status, ConfigMapStore(core) if core is not None else None,
                              namespace=target.namespace, virtual_service=target.virtual_service, model=model,
                              canary_version=canary_version, route=route or "")
    if found is None:
        return None
    recorded, where = found
    try:
        api.get_namespaced_custom_object(crd.GROUP, crd.VERSION, namespace, crd.PLURAL, name)
        return None  # its own end, or a refusal naming it, is reported as before
    except Exception as exc:
        # not known to be absent (a 404 for the CRD not installed, not for the object, is one): the create below
        # says what it says, as before
        if not isinstance(translate(exc, f"CanaryRollout {namespace}/{name}"), NotFound):
            return None
    logs.get(model=model, namespace=namespace, route=target.route).info(
        "rollout.already_rolled_back", rolled_back_at=recorded.updated_at, reason=recorded.reason,
        owner=recorded.owner, note="nothing created; `--retry` runs this version again", **where)
    doc = cli.state_dict(recorded, exit_code=EXIT_CODES[rl.ROLLED_BACK])
    fields, tail = cli.earlier_rollback(recorded, created=True)  # when, why, how to run it again (decision 278)
    doc.update(outcome=rl.ROLLED_BACK, already_ended=True, rollout=None, **fields)

    def text(wide: bool) -> None:
        extra = f" (route {target.route or '-'}, {recorded.owner or 'no owner recorded'})" if wide else ""
        typer.echo(f"{rl.ROLLED_BACK} already: {model} {canary_version} weights 100/0{extra} - {recorded.reason}; "
                   f"{tail}")

    reporting()
    opts.emit(doc, output, text)
    return EXIT_CODES[rl.ROLLED_BACK]


def follow_document(st: dict[str, Any], **more: Any) -> dict[str, Any]:
    """The follower's `-o json` document: the CanaryRollout's status and `more` (outcome, exit_code, ...),
    with the two fields a plain `promote`'s document has that a pipeline reads: `step_number` (the status's
    `step`, already counted from 1) and, for a rolled-back or aborted end, `end_cause` (docs/reference/cli.md: "-o json's
    end_cause tells them apart"; it was absent, so `jq .end_cause` read null under `--via-controller`)."""
    doc = {**st, **more}
    if isinstance(st.get("step"), int):
        doc["step_number"] = st["step"]
    # the outcome reported: a request that waited on another owner's rollout of its version exits by that one's end
    # (`waitedOnPhase`), whose class the controller records (decision 648); a promotion has none
    ended = (rl.ROLLED_BACK, rl.ABORTED)
    if st.get("phase") in ended and more.get("outcome", st.get("phase")) in ended:
        # the class the controller recorded with the end (`status.endCause`, decision 609); a status written before
        # it, by the reason's words
        cause = st.get("endCause")
        doc["end_cause"] = rl.end_cause(cause if isinstance(cause, str) else "", str(st.get("reason") or ""))
    return doc


MAX_NAME = 253  # a CanaryRollout's metadata.name: a DNS-1123 subdomain, as the API server holds every object's


def rollout_name(model: str, canary_version: str) -> str:
    """The CanaryRollout `--via-controller` creates when not named: `<model>-<version>` as an object name
    (a version label may hold upper case, '.' and '_', an object name none of them). Where that changed a
    character, a hash of the exact model and version follows: `v2.1`, `v2_1`, `V2.1` and `v2-1` all read
    `m-v2-1`, and a second pipeline's request met the first one's rollout under its name (decision 701).
    Any other character no object name holds (a Triton model name given with --virtual-service may hold
    '+', '@', a space) is a '-' too, and a name past `MAX_NAME` (a 253-character model name and its version)
    is cut to fit, the hash kept: both were refused, "not a Kubernetes object name", of a name nobody typed
    (decision 742)."""
    name = legacy_rollout_name(model, canary_version)
    if name == f"{model}-{canary_version}" and _object_name(name):
        return name
    digest = hashlib.sha256(f'{model}/{canary_version}'.encode()).hexdigest()[:8]
    clean = re.sub(r"[^a-z0-9-]", "-", name).strip("-")[:MAX_NAME - len(digest) - 1].rstrip("-")
    return f"{clean or 'rollout'}-{digest}"


_OBJECT_NAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")  # as `rollout_name` writes one: no '.'


def _object_name(name: str) -> bool:
    """`name` is an object name as `rollout_name` writes one (a `legacy_rollout_name` holds no '.')."""
    return len(name) <= MAX_NAME and _OBJECT_NAME.fullmatch(name) is not None


def legacy_rollout_name(model: str, canary_version: str) -> str:
    """The default name a CLI before decision 701 gave: `<model>-<version>` lower-cased, `.` and `_` as `-`."""
    return f"{model}-{canary_version}".lower().replace(".", "-").replace("_", "-")


def _named_before(api: Any, namespace: str, asked: dict[str, Any], model: str, canary_version: str, *,
                  retry: bool = False) -> str:
    """The CanaryRollout a CLI before decision 701 created for this very request (`legacy_rollout_name`, its spec
    driving what `asked` drives: `_drives`), else "": a request retried across the upgrade (a follower out of
    --timeout while its rollout ran, then the CLI image bumped) created a second object beside its own, held busy
    by it, and one that ended was run again or refused (701 addendum). Not one that rolled back when `retry` asks
    for a new run: under its old name that was refused (decision 248), the new name runs it."""
    from canary.kube import an_object

    legacy = legacy_rollout_name(model, canary_version)
    try:
        obj = an_object(api.get_namespaced_custom_object(crd.GROUP, crd.VERSION, namespace, crd.PLURAL, legacy),
                        f"CanaryRollout {namespace}/{legacy}")
    except Exception as exc:
        if getattr(exc, "status", None) == 404:
            return ""
        raise
    if retry and (obj.get("status") or {}).get("phase") == rl.ROLLED_BACK:
        return ""
    return legacy if _drives(obj.get("spec") or {}) == _drives(asked) else ""


def held_by_another(obj: dict[str, Any], asked: dict[str, Any]) -> str:
    """Why a request whose spec is `asked` must not replace the CanaryRollout `obj`: its spec has the controller
    drive another rollout (`_drives`: another model or version, or the same version on another VirtualService,
    route or DestinationRule) and that request has not ended (no end of its present generation in the status: it
    waits to be claimed, or runs). A replace re-targeted it: the controller sent what it ran to stable 100% and
    ran this request instead, and the other pipeline's follower exited 3 (decision 617), or, its model and version
    the same, took that end for its own - two requests whose default names met (`v2.1` and `v2-1`, `m-x` `v1` and
    `m` `x-v1`, one version to two VirtualServices) or one `--rollout-name` in two pipelines' template (decision
    701). "" when it drives what this request asks (a retry finds its own rollout), has ended, or was refused
    before any claim (its follower withdraws it)."""
    meta, spec, st = obj.get("metadata") or {}, obj.get("spec") or {}, obj.get("status") or {}
    generation = int(meta.get("generation") or 0)
    theirs, ours = _drives(spec), _drives(asked)
    if theirs == ours or _refused(st, generation):
        return ""
    if st.get("phase") in rl.TERMINAL and int(st.get("observedGeneration") or 0) >= generation:
        return ""
    from canary.reconcile import shown_owner as shown

    job = _request_job(obj)
    by = f", its request's CI job {shown(job)}" if job else ""
    where = f"{st['phase']}, weights {weights_text(st) or '?/?'}" if st.get("phase") else "waiting to be claimed"
    model, version = ours[:2]
    return (f"is another request's rollout of {shown(theirs[0])} {shown(theirs[1])}{_drives_elsewhere(theirs, ours)} "
            f"({where}{by}); nothing was written: {model} {version}{_drives_elsewhere(ours, theirs)} would have "
            "replaced it, its traffic sent to stable; run this request again once that one has ended, or give it "
            "its own --rollout-name")


def _drives_elsewhere(theirs: tuple[str, ...], ours: tuple[str, ...]) -> str:
    """' on VirtualService x, route y': where `theirs` (`_drives`) drives unlike `ours`, '' where the same (a
    DestinationRule said only under one VirtualService: unwritten, it is the VirtualService's name)."""
    from canary.reconcile import shown_owner as shown

    on = ", ".join(f"{what} {shown(a) if a else '(none)'}" for what, a, b in
                   zip(("VirtualService", "route", "DestinationRule"), theirs[2:], ours[2:])
                   if a != b and not (what == "DestinationRule" and theirs[2] != ours[2]))
    return f" on {on}" if on else ""


def _drives(spec: dict[str, Any]) -> tuple[str, str, str, str, str]:
    """(model, canary version, VirtualService, route, DestinationRule) a CanaryRollout's spec has the controller
    drive, each as the controller defaults it (the VirtualService the model's name, the route the inline policy's,
    the DestinationRule the VirtualService's name): an edit of any of them ends the rollout running (decision 617,
    `controller._drives`)."""
    policy = spec.get("policy") if isinstance(spec.get("policy"), dict) else {}
    vs = str(spec.get("virtualService") or spec.get("model") or "")
    return (str(spec.get("model") or ""), str(spec.get("canaryVersion") or ""), vs,
            str(spec.get("route") or policy.get("route") or ""), str(spec.get("destinationRule") or vs))


def _request_job(obj: dict[str, Any]) -> str:
    """The CI job the CanaryRollout `obj`'s request names (`ci_job.ANNOTATION`), "" when none or one that is no job's
    shape (`ci_job.readable`, as the controller's `_ci_job` reads it: the object is anyone's to edit, and the job
    reaches `-o json`'s `holder_job`, a pipeline's shell; decision 401)."""
    from canary import ci_job

    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    return ci_job.readable(annotations.get(ci_job.ANNOTATION) if isinstance(annotations, dict) else None)


# a request the controller refuses as bad input (docs/reference/cli.md, --via-controller)
BAD_INPUT_REASONS = crd.BAD_INPUT_REASONS
REFUSED_REASONS = crd.REFUSED_REASONS  # ... and, besides, a route whose record a newer canary wrote (decision 172)


def _ready_false(status: dict[str, Any], generation: int, reasons: tuple[str, ...]) -> dict[str, Any] | None:
    """The Ready condition when it is False for one of `reasons`, of this generation of the request, else None."""
    for cond in status.get("conditions") or []:
        if (isinstance(cond, dict) and cond.get("type") == "Ready" and cond.get("status") == "False"
                and cond.get("reason") in reasons
                and isinstance(cond.get("observedGeneration"), int) and cond["observedGeneration"] >= generation):
            return cond
    return None


def nothing_moved(said: str) -> str:
    """`said` (the controller's refusal) with "; nothing was moved" added, unless its words say so already (a
    preflight refusal does: the follower's line said it twice)."""
    return said if "nothing was moved" in said else f"{said}; nothing was moved"


# what a replace of a CanaryRollout keeps of the object it meets: a PUT replaces the whole of `metadata`, and the
# request's own carried none of these (decision 618)
KEPT_METADATA = ("labels", "annotations", "finalizers", "ownerReferences")


def kept_metadata(current: dict[str, Any], ours: dict[str, Any]) -> dict[str, Any]:
    """The metadata a request's replace sends over the CanaryRollout `current`: its labels, annotations (but the CI job
    of the request before: this one's or none), finalizers and owner references kept, this request's annotations
    (`ours`) over them, guarded on its resourceVersion. The
    request's own alone (a pipeline's retry over the object its first follower created) dropped the controller's
    finalizer, so a `kubectl delete` before the next tick removed the object with its rollout still split (the
    stable 100% the finalizer holds the deletion for never written), and a GitOps tool's labels with it."""
    from canary import ci_job

    have = current.get("metadata") or {}
    meta = {k: have[k] for k in KEPT_METADATA if have.get(k)}
    meta.update({k: v for k, v in ours.items() if k != "annotations"})
    # the CI job is the request's own, or none: an earlier request's job kept named it the holder of this one
    theirs = {k: v for k, v in (have.get("annotations") or {}).items() if k != ci_job.ANNOTATION}
    annotations = {**theirs, **(ours.get("annotations") or {})}
    if annotations:
        meta["annotations"] = annotations
    meta["resourceVersion"] = have["resourceVersion"]
    return meta


# what a person asks of a CanaryRollout, never a request: a retry's replace dropped them (decision 706)
KEPT_SPEC = ("action", "actionReason", "onForeignEdit", "onPrometheusOutage")


def kept_spec(current: dict[str, Any], ours: dict[str, Any]) -> dict[str, Any]:
    """The spec a request's replace sends over the CanaryRollout `current`: its own, and where `current` drives what
    it asks (`_drives`: the same request again, a pipeline's retry) what a person asked of it since (`KEPT_SPEC`:
    an on-call's `action: pause`, a hold before the start among them, and how an outage is met), which the retry's
    spec names none of: dropped, the hold was gone and the controller claimed. Another request's (a re-target of
    an ended one, decision 617) starts from its own: an old `action: rollback` would end it unrun."""
    have = current.get("spec") or {}
    if _drives(have) != _drives(ours):
        return ours
    return {**{k: have[k] for k in KEPT_SPEC if k in have}, **ours}


def _asked_instead(obj: dict[str, Any], asked: dict[str, Any], generation: int) -> str:
    """What the CanaryRollout `obj` asks for instead of this request's spec `asked` when its spec was replaced since
    this request wrote it (`generation`) and drives another rollout (`_drives`: another version or model, or the
    same version on another VirtualService, route or DestinationRule): a second pipeline's `--via-controller` with
    the same `--rollout-name` (a template's fixed name; a monorepo's models all at one commit's version), or an
    apply. The controller ends what it ran of this request and runs that one, so no status of this request's comes:
    the follower waited out `--timeout` (1h) and said "it keeps running in the controller", or took another model's
    (or route's) end of the same version for its own (decision 617; 701 addendum). "" while the spec still asks
    for what this request asked."""
    meta, spec = obj.get("metadata") or {}, obj.get("spec") or {}
    theirs, ours = _drives(spec), _drives(asked)
    if theirs == ours or int(meta.get("generation") or 0) <= generation:
        return ""
    model, canary_version = ours[:2]
    from canary import ci_job
    from canary.reconcile import shown_owner as shown

    job = (meta.get("annotations") or {}).get(ci_job.ANNOTATION)
    by = f" (its request names the CI job {shown(str(job))})" if job else ""
    return (f"now asks for {shown(theirs[0])} {shown(theirs[1])}{_drives_elsewhere(theirs, ours)}: its spec was "
            f"replaced since this request wrote it{by}, by another `promote --via-controller` with the same --rollout-name or an apply; {model} "
            f"{canary_version} is no longer rolled out by it, and what the controller had run of it went to stable "
            "100%; this request's outcome is unknown (`canary status`); give each rollout its own --rollout-name")


def _refused(status: dict[str, Any], generation: int) -> str:
    """The controller's message when it refused this generation of the request before claiming anything (no
    phase in the status): bad input, or a route whose record a newer canary wrote (`RecordTooNew`: this
    controller never claims it, and a plain `promote` exits 2 for it too), else ""."""
    if status.get("phase"):
        return ""
    cond = _ready_false(status, generation, REFUSED_REASONS)
    if cond is None:
        return ""
    said = str(cond.get("message") or cond["reason"])
    return f"{crd.RECORD_TOO_NEW}: {said}" if cond["reason"] == crd.RECORD_TOO_NEW else said


def _left_to_newer(status: dict[str, Any], generation: int) -> str:
    """The controller's message when the rollout it claimed for this request (a phase in the status, not an end)
    is now recorded on the route in a record schema above its own (Ready False, `RecordTooNew`): a newer canary
    drives it (a newer replica led, mid rolling upgrade), and this controller will not, whatever it waits; else
    "" (decision 172)."""
    if not status.get("phase") or status.get("phase") in rl.TERMINAL:
        return ""
    cond = _ready_false(status, generation, (crd.RECORD_TOO_NEW,))
    return str(cond.get("message") or cond["reason"]) if cond is not None else ""


def left_to_newer_words(where: str, status: dict[str, Any], said: str) -> str:
    """What a follower (`promote --via-controller`, `status -w --rollout`) says, exit 3, of the CanaryRollout
    `where` ("ns/name") whose claimed rollout a newer canary recorded (`_left_to_newer`'s `said`)."""
    said = said.removeprefix(f"{where}: ")
    return (f"CanaryRollout {where} ({status.get('phase')}, weights {weights_text(status) or '?/?'}): "
            f"{crd.RECORD_TOO_NEW}: "
            f"{said}; its outcome is not known here: the newer canary drives it (`canary status`), this controller "
            "never will (upgrade it and this CLI to the writer's release); the CanaryRollout is left in place")


def weights_text(status: dict[str, Any]) -> str | None:
    """"<stable>/<canary>" of a CanaryRollout's `status.weights`, "?" for an arm it lacks (a status written in part:
    by hand, or by a controller of another release); None where it has none (not claimed yet, an end without a
    run). One function for every line a follower writes of it: `follow.status` and the end's line said "None" for
    an arm left out, and the end's line raised on weights that are no object."""
    w = status.get("weights")
    if not isinstance(w, dict) or not w:
        return None
    return f"{w.get('stable', '?')}/{w.get('canary', '?')}"


def _progress(status: dict[str, Any], generation: int) -> dict[str, Any]:
    """What a follower's `follow.status` says of this request's CanaryRollout `status` (this generation's): its
    `phase`, `step` (counted from 1) and `weights` once claimed, or why the controller has not claimed it (`phase`
    None, `waiting`: the Ready condition's reason and message: RolloutBusy naming the holder, CanaryNotReady, ...).
    {} when the status says neither (not yet read by the controller)."""
    if status.get("phase"):
        return {"phase": status["phase"], "step": status.get("step"), "weights": weights_text(status)}
    waiting = _not_started(status, generation)
    return {"phase": None, "waiting": waiting[:500]} if waiting else {}


def _unread(status: dict[str, Any], generation: int) -> bool:
    """No controller has written anything of this generation of the request: neither the status nor any of its
    conditions has observed it (a controller that reads it, claims or refuses or waits, writes one of them). The
    follower said "it keeps running in the controller" of a request no controller had seen (none running)."""
    if int(status.get("observedGeneration") or 0) >= generation:
        return False
    return not any(isinstance(c, dict) and isinstance(c.get("observedGeneration"), int)
                   and c["observedGeneration"] >= generation for c in status.get("conditions") or [])


def _not_started(status: dict[str, Any], generation: int) -> str:
    """Why the controller has not claimed this generation of the request yet (no phase in the status, its
    Ready condition False for a reason that is retried: CanaryNotReady, StableNotReady, MetricsUnavailable), else ""."""
    if status.get("phase"):
        return ""
    for cond in status.get("conditions") or []:
        if (isinstance(cond, dict) and cond.get("type") == "Ready" and cond.get("status") == "False"
                and isinstance(cond.get("observedGeneration"), int) and cond["observedGeneration"] >= generation):
            return f"{cond.get('reason') or 'not ready'}: {cond.get('message') or ''}".rstrip(": ")
    return ""


# the annotation a follower's create or replace carries, unique to that request (decision 462)
REQUEST_ANNOTATION = "modelcanary.dev/request"


def _answered(send: Callable[[], Any], api: Any, body: dict[str, Any], verb: str) -> dict[str, Any]:
    """The CanaryRollout a create or replace of `body` wrote: its answer, or, when the answer is a 200 with no object
    (empty, cut, a proxy's page, `{}`, `null`: `kube.BadAnswer`, decision 420) or a 5xx or timeout that may hide a
    write that landed, the object read back when its spec is `body`'s and it carries this request's own mark
    (`REQUEST_ANNOTATION`: the write landed; its uid and generation are this request's; another request of the same
    spec is not this one, decision 462). Taken as the object, such an answer
    gave generation 0 and no uid: an earlier spec's refusal read as this request's, a refusal leaving the object
    this request created in place. Read back as another spec or request's, or not found: KubeUnavailable (nothing known
    written; exit 3), as a 5xx answer is."""
    from canary.kube import an_object, is_transient, translate

    meta = body["metadata"]
    where = f"CanaryRollout {meta['namespace']}/{meta['name']}"
    try:
        return an_object(send(), f"the {verb} of {where}")
    except ValueError as bad:  # `kube.BadAnswer`, or JSON cut short (the client's JSONDecodeError)
        answer: BaseException = bad
    except Exception as exc:
        if not is_transient(exc):  # a 409, a refusal: the caller's
            raise
        answer = exc  # a 5xx (etcd's `request timed out`), a timeout: it may have landed
    try:
        current = an_object(api.get_namespaced_custom_object(crd.GROUP, crd.VERSION, meta["namespace"], crd.PLURAL,
                                                             meta["name"]), where)
    except Exception:  # noqa: BLE001 - not known written: the answer's error is said
        raise translate(answer, f"the {verb} of {where}") from None
    spec = current.get("spec") or {}
    if any(spec.get(k) != v for k, v in body["spec"].items()):
        raise translate(answer, f"the {verb} of {where} (read back, it holds another spec)") from None
    mark = (meta.get("annotations") or {}).get(REQUEST_ANNOTATION)
    if ((current.get("metadata") or {}).get("annotations") or {}).get(REQUEST_ANNOTATION) != mark:
        raise translate(answer, f"the {verb} of {where} (read back, it is another request's: its "
                                f"{REQUEST_ANNOTATION} is not this one's)") from None
    return current


def _uid(obj: Any) -> str:
    return str(((obj or {}).get("metadata") or {}).get("uid") or "") if isinstance(obj, dict) else ""


def _read_own(api: Any, namespace: str, name: str, uid: str) -> dict[str, Any] | None:
    """The CanaryRollout this request created or replaced (`uid`, when the API gave one); None when the
    read failed in a way the next read may not (KubeUnavailable: 5xx, 429, the network), so a follower
    outlives an API server restart as the controller does.

    Raises CanaryError (exit 3: the request's outcome is unknown; nothing of it is left to run) when
    the object is gone (deleted by someone while this request waited: the controller sent a rollout it
    was running to stable) or the name now holds another object (deleted and created again by someone
    else: its status, refusal or end is not this request's, and was reported as this request's). Other
    API errors are raised translated (`kube.translate`)."""
    from canary import logs
    from canary.errors import KubeUnavailable, NotFound
    from canary.kube import an_object, translate

    where = f"CanaryRollout {namespace}/{name}"
    try:
        # a 200 whose body is no object (a proxy's): a read that failed (`follow.read_failed`), not another object
        obj = an_object(api.get_namespaced_custom_object(crd.GROUP, crd.VERSION, namespace, crd.PLURAL, name), where)
    except Exception as exc:
        err = translate(exc, where)
        if isinstance(err, NotFound):
            raise cli.CanaryError(f"{where} was deleted while this request waited for it; its outcome is "
                                  "unknown (a rollout it was running went to stable: `canary status`, the "
                                  "controller's log)") from None
        if isinstance(err, KubeUnavailable):
            logs.get().warning("follow.read_failed", rollout=f"{namespace}/{name}", error=str(err))
            return None
        raise err from exc
    if uid and _uid(obj) and _uid(obj) != uid:
        raise cli.CanaryError(f"{where} was deleted and created again by someone else (uid {_uid(obj)}) while "
                              "this request waited; this request's outcome is unknown, and the new object is "
                              "left as it is")
    return obj


def _withdrawn(api: Any, namespace: str, name: str, uid: str, resource_version: str = "") -> str | None:
    """Delete the CanaryRollout this request created, `uid` (it would start unattended once its input is
    fixed); one that existed before, or one of this name created again by someone else since (uid ""), is
    left as it is: the delete carries the uid as a precondition, so it never lands on another object of the
    name, and the refusal's `resource_version`, so it never lands on a request the controller claimed since
    the refusal was read (the route's record readable again: a `canary rollback` of the newer canary's
    rollout). The words to add to the error; None when that precondition failed (409): the request was written
    since, and the caller reads it again (decision 182: it was deleted mid-claim, its first step at
    20%, the finalizer's stable 100% ended it, and the follower said "nothing was moved", exit 2)."""
    if not uid:
        return (" (the CanaryRollout is not one this request created: left in place, with its Ready "
                "condition)")
    pre = {"uid": uid, **({"resourceVersion": resource_version} if resource_version else {})}
    try:
        api.delete_namespaced_custom_object(crd.GROUP, crd.VERSION, namespace, crd.PLURAL, name,
                                            body={"preconditions": pre})
    except Exception as exc:  # noqa: BLE001 - the refusal is what the caller must see
        if resource_version and getattr(exc, "status", None) == 409:
            return None
        if not _deleted(api, namespace, name, uid, exc):
            return f" (deleting the CanaryRollout failed: {type(exc).__name__}; delete it by hand)"
    return " (the CanaryRollout created for it was deleted)"


def _deleted(api: Any, namespace: str, name: str, uid: str, exc: BaseException) -> bool:
    """After the withdrawal's DELETE failed so that it may have landed (a 5xx such as etcd's `request timed out`, a
    timeout, a 200 with no object: `kube.is_transient`), whether the CanaryRollout `uid` is deleted: read back, gone,
    another object of the name, or ours with its deletionTimestamp set (its finalizer's release pending). It said
    "deleting the CanaryRollout failed ...; delete it by hand" of one that was gone (decision 425)."""
    from canary.kube import an_object, is_transient

    if not is_transient(exc):
        return False
    try:
        obj = an_object(api.get_namespaced_custom_object(crd.GROUP, crd.VERSION, namespace, crd.PLURAL, name),
                        f"CanaryRollout {namespace}/{name}")
    except Exception as read:  # noqa: BLE001 - only a 404 says it is gone
        return getattr(read, "status", None) == 404
    meta = obj.get("metadata") or {}
    return meta.get("uid") != uid or bool(meta.get("deletionTimestamp"))


def register(app: typer.Typer) -> None:
    app.add_typer(controller_app, name="controller")
