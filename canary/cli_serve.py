"""`canary serve`: the judge as an HTTP service for Argo Rollouts and Flagger (canary/serve.py).

Thin on purpose: parse flags, load every policy and open the state directory (a bad one exits
2 before anything listens), then serve until SIGINT/SIGTERM (exit 0). Registered onto the main
app by `register`.
"""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path
from typing import Optional

import typer

from canary import cli
from canary import cli_options as opts
from canary.interrupts import install_handlers, restore_handlers, setting


def serve(
    policy: list[Path] = typer.Option([], "--policy", "-p", help="policy file, named by its file name without "
                                      ".yaml (repeatable)"),
    policy_dir: Optional[Path] = typer.Option(None, "--policy-dir", help="load every *.yaml / *.yml policy in it"),
    state_dir: Path = typer.Option(..., "--state-dir", envvar="CANARY_SERVE_STATE_DIR",
                                   help="where each rollout revision's sequential state is kept (a volume)"),
    host: str = typer.Option("127.0.0.1", "--host", help="address to bind (0.0.0.0 in a pod behind a Service)"),
    port: int = typer.Option(8090, "--port", help="TCP port (0: any free one, logged in serve.listening)"),
    state_ttl: float = opts.DurationOpt("168h", "--state-ttl", help="forget revisions not looked at for this long "
                                        "(at start-up, then every quarter of it while serving, an hour apart at most)",
                                        most=(366 * 86400.0, "a revision not looked at for a year is no rollout's")),
    max_revisions: int = typer.Option(1000, "--max-revisions", min=1, help="revisions kept in --state-dir at most: a "
                                      "new one makes room by dropping the oldest finished one (failed, or no longer "
                                      "called), and is refused (503) when every one is still in progress"),
    token_file: Optional[Path] = typer.Option(None, "--token-file", envvar="CANARY_SERVE_TOKEN_FILE",
                                              help="file of accepted tokens, one a line (a mounted Secret; read again "
                                              "when it changes): every call but /healthz must carry one "
                                              "(Authorization: Bearer, or Basic with it as the password)"),
    tls_cert_file: Optional[Path] = typer.Option(None, "--tls-cert-file", envvar="CANARY_SERVE_TLS_CERT_FILE",
                                                 help="serve HTTPS with this PEM certificate chain (a mounted "
                                                 "Secret's tls.crt; read again when it changes)"),
    tls_private_key_file: Optional[Path] = typer.Option(None, "--tls-private-key-file",
                                                        envvar="CANARY_SERVE_TLS_PRIVATE_KEY_FILE",
                                                        help="the PEM private key of --tls-cert-file (tls.key)"),
    allow_unauthenticated: bool = typer.Option(False, "--allow-unauthenticated", help="serve on a non-loopback "
                                               "--host without --token-file (refused otherwise): anyone who "
                                               "reaches the port can then pass or fail a rollout"),
    answer_within: float = opts.DurationOpt("8s", "--answer-within", help="answer every call within this (keep it "
                                            "under the webhook's timeout / Argo's timeoutSeconds, 10s by default): "
                                            "Prometheus not answered by then is 'could not measure', never a pass",
                                            most=(600.0, "a caller's timeout is seconds (Argo's timeoutSeconds, a "
                                                  "webhook's): a later answer is never read, and SIGTERM waits "
                                                  "this long for the calls in flight")),
    prometheus_url: Optional[str] = opts.PromUrlOpt,
    prometheus_token: Optional[str] = opts.PromTokenOpt,
    prometheus_user: Optional[str] = opts.PromUserOpt,
    prometheus_password: Optional[str] = opts.PromPasswordOpt,
    prometheus_ca_file: Optional[str] = opts.PromCaOpt,
    insecure: bool = opts.InsecureOpt,
    log_format: str = cli.LogFormatOpt,
) -> None:
    """Serve the judge to Argo Rollouts (web metric) and Flagger (webhooks); docs/integrations.md.

    Endpoints: GET|POST /api/v1/argo/measure; POST /api/v1/flagger/{pre-rollout, rollout, confirm-traffic-increase, confirm-promotion}; GET /healthz.

    One JSON log line per decision on stderr. Exit 0 on SIGINT/SIGTERM, 2 on bad flags or policies.

    Without --token-file the service serves on a loopback --host only, unless --allow-unauthenticated.

    Example: canary serve --policy policies/default.yaml --state-dir /var/lib/canary-serve --prometheus-url http://prometheus:9090
    """
    from canary import logs

    logs.configure(fmt=log_format)
    log = logs.get(component="serve")

    # SIGTERM/SIGINT from the first moment: start-up asks Prometheus's time (up to 2 s) and prunes the state
    # directory, and a rolling restart's SIGTERM there killed the process with the signal's default (exit 143,
    # no `serve.stopped`), where docs/reference/cli.md promises exit 0 (decision 159)
    stop = threading.Event()
    before = install_handlers(setting(stop), (signal.SIGINT, signal.SIGTERM))  # no lock in the handler (decision 513)

    def go() -> int:
        from canary.serve import Service, load_policies
        from canary.serve_auth import TokenFile, is_loopback
        from canary.serve_http import ServeServer
        from canary.serve_prune import StatePruner
        from canary.serve_store import SessionStore, StoreError
        from canary.serve_tls import TlsFiles

        if not 0 <= port <= 65535:
            raise cli.ConfigError(f"--port must be 0..65535, got {port}")
        if (tls_cert_file is None) != (tls_private_key_file is None):
            given, missing = (("--tls-cert-file", "--tls-private-key-file") if tls_private_key_file is None
                              else ("--tls-private-key-file", "--tls-cert-file"))
            raise cli.ConfigError(f"{given} is given without {missing}: TLS needs both")
        tls = TlsFiles(tls_cert_file, tls_private_key_file) if tls_cert_file and tls_private_key_file else None
        auth = TokenFile(token_file) if token_file is not None else None
        if auth is not None and tls is None and not is_loopback(host):
            log.warning("serve.plaintext_token", host=host,
                        why="tokens cross the network in clear over plain HTTP: give --tls-cert-file and "
                            "--tls-private-key-file, unless a mesh's mTLS already carries the calls")
        if auth is None and not is_loopback(host):
            if not allow_unauthenticated:
                raise cli.ConfigError(f"--host {host} is not a loopback address and no --token-file is given: anyone "
                                      "who reaches the port could pass or fail a rollout. Give --token-file FILE "
                                      "(docs/integrations.md), or --allow-unauthenticated when something in front "
                                      "(a mesh policy) already lets only your controller in")
            log.warning("serve.unauthenticated", host=host, why="--allow-unauthenticated: no token is asked")
        files = list(policy)
        if policy_dir is not None:
            if not policy_dir.is_dir():
                raise cli.ConfigError(f"--policy-dir {policy_dir}: not a directory")
            files += sorted(p for p in policy_dir.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())
        policies = load_policies(files)
        metrics = opts.prometheus(prometheus_url, prometheus_token, prometheus_user, prometheus_password,
                                  prometheus_ca_file, insecure)
        try:
            store = SessionStore(state_dir, max_revisions=max_revisions)
        except StoreError as exc:
            raise cli.ConfigError(str(exc)) from None
        try:
            store.hold()  # the only writer of the state directory, or exit 2 naming who is
        except StoreError as exc:
            raise cli.ConfigError(str(exc)) from None
        service = Service(policies=policies, metrics=metrics, store=store, answer_within_s=answer_within, auth=auth)
        # pruned after Prometheus's time is asked (the Service's clock), on it and on the host's: by the host's
        # alone, a host clock ahead by more than --state-ttl deleted every live session (decision 166). Not
        # known (Prometheus not answering at start-up): pruned once it first answers (`serve.state_pruned`,
        # decision 174). Then again every `every_s(--state-ttl)` while serving: once per process, a service up
        # for months forgot nothing idle past the TTL between restarts (decision 202)
        settled = service.settled_now()
        pruned = store.prune(older_than_s=state_ttl, now=settled) if settled is not None else None
        pruner = StatePruner(store, ttl_s=state_ttl, settled_now=service.settled_now, log=log, began=time.monotonic())
        if settled is None:
            service.when_settled(lambda _now: pruner.prometheus_answered())
        try:
            server = ServeServer(service, host=host, port=port, tls=tls)
        except OSError as exc:
            raise cli.ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
        log.info("serve.started", policies=sorted(policies), state_dir=str(state_dir),
                 state_dir_created=store.created, pruned=pruned,
                 prune_every_s=pruner.every_s, auth="token" if auth else "none", max_revisions=max_revisions,
                 tls=tls is not None)
        if not stop.is_set():  # stopped while starting: nothing served, nothing pruned, the port closed, exit 0
            server.start()
            pruner.start()
        try:
            # a bounded wait: the kernel may hand SIGTERM to a server thread, and a main thread
            # blocked in an unbounded wait would never run the Python handler (a stop that hung)
            while not stop.wait(0.25):
                pass
        finally:
            pruner.stop()  # no prune after the stop (decision 180): the round running, if any, ends first
            server.stop()  # the calls in flight answered first (SIGTERM mid-look cut them)
            in_flight, cut = server.stopped
            (log.warning if cut else log.info)("serve.stopped", in_flight=in_flight, cut=cut)
        return 0

    try:
        code = cli.run_guarded(go)
    finally:
        restore_handlers(before)
    raise typer.Exit(code)


def register(app: typer.Typer) -> None:
    """Add `serve` to the main app (called by canary/cli.py)."""
    app.command("serve")(serve)
