"""`outpost server`: the control plane (and, by default, the telemetry collector) in one process."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from outpost.commands import startup
from outpost.commands.common import console, fail
from outpost.settings import DEFAULT_HOST, DEFAULT_PORT, ENV_DATA_DIR, ENV_DATABASE_URL, LEASE_SECONDS
from telemetry.cli_options import DEFAULT_MEMORY, DEFAULT_THREADS, QueryMemoryOpt, QueryThreadsOpt


def _shipped_rules() -> list[Path]:
    """The repository's alerts/kql, present in a source checkout (the supported install)."""
    shipped = Path(__file__).resolve().parents[2] / "alerts" / "kql"
    return [shipped] if shipped.is_dir() else []


def server(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = DEFAULT_HOST,
    port: Annotated[int, typer.Option(envvar=startup.ENV_PORT, help="Port to listen on.")] = DEFAULT_PORT,
    data_dir: Annotated[
        Path,
        typer.Option("--data-dir", envvar=ENV_DATA_DIR, help="Where the embedded stores and credentials live."),
    ] = Path("outpost-data"),
    database_url: Annotated[
        str | None,
        typer.Option(
            "--database-url",
            envvar=ENV_DATABASE_URL,
            help="Control-plane store; default SQLite in the data dir. postgresql+psycopg://... for replicas.",
        ),
    ] = None,
    tls_cert: Annotated[
        Path | None, typer.Option("--tls-cert", help="Serve HTTPS with this certificate (PEM).")
    ] = None,
    tls_key: Annotated[Path | None, typer.Option("--tls-key", help="Private key for --tls-cert (PEM).")] = None,
    public_url: Annotated[
        str | None,
        typer.Option("--public-url", help="URL workers use to reach this server, if not the listen address."),
    ] = None,
    region: Annotated[str | None, typer.Option(help="Region label published to workers and `diagnose`.")] = None,
    account_name: Annotated[
        str, typer.Option("--account-name", help="The Automation account name the Azure-compatible API answers to.")
    ] = "outpost",
    lease_seconds: Annotated[
        float,
        typer.Option("--lease-seconds", min=2, help="A job's lease; a lost worker's job ends after this."),
    ] = LEASE_SECONDS,
    retention_days: Annotated[
        int, typer.Option("--retention-days", min=1, help="Telemetry rows older than this are dropped.")
    ] = 30,
    stale_after: Annotated[
        float, typer.Option("--stale-after", min=1, help="Seconds without a heartbeat before a worker is down.")
    ] = 180.0,
    query_anonymous: Annotated[
        bool, typer.Option("--query-anonymous", help="Answer KQL/Kusto queries without a token, from loopback only.")
    ] = False,
    alert_rules: Annotated[
        list[Path] | None,
        typer.Option("--alert-rules", help="KQL alert rule files or directories (default: the shipped alerts/kql)."),
    ] = None,
    alertmanager_url: Annotated[
        str | None, typer.Option("--alertmanager-url", help="Send KQL alerts to this Alertmanager.")
    ] = None,
    alert_webhook_url: Annotated[
        str | None, typer.Option("--alert-webhook-url", help="POST KQL alert changes to this URL.")
    ] = None,
    alert_resend_interval: Annotated[
        float, typer.Option("--alert-resend-interval", min=1, help="Re-send firing alerts this often (s).")
    ] = 60.0,
    collector_url: Annotated[
        str | None,
        typer.Option(
            "--collector-url",
            envvar="OUTPOST_COLLECTOR_URL",
            help="Replica mode: forward all telemetry to this `outpost collector`, which answers queries and alerts.",
        ),
    ] = None,
    collector_token: Annotated[
        str | None,
        typer.Option(
            "--collector-token",
            envvar="OUTPOST_COLLECTOR_TOKEN",
            show_default=False,
            help="The collector's --replica-token (or admin token).",
        ),
    ] = None,
    collector_ca_file: Annotated[
        str | None,
        typer.Option(
            "--collector-ca-file", envvar="OUTPOST_COLLECTOR_CA_FILE", help="CA bundle for an HTTPS collector."
        ),
    ] = None,
    collector_buffer_mb: Annotated[
        int,
        typer.Option("--collector-buffer-mb", min=1, help="Telemetry kept on disk while the collector is unreachable."),
    ] = 256,
    log_level: Annotated[str, typer.Option("--log-level", help="debug, info, warning, error")] = "info",
    query_memory: QueryMemoryOpt = DEFAULT_MEMORY,
    query_threads: QueryThreadsOpt = DEFAULT_THREADS,
) -> None:
    """Start the Outpost service: REST API, long-poll dispatch, telemetry."""
    import uvicorn
    from sqlalchemy.exc import OperationalError

    from automation import liveness, secrets, tracing
    from automation.app import create_app, open_control_plane
    from automation.arm.envelope import account_name_problem
    from automation.roles import Role
    from outpost import http_server
    from telemetry.alert_rules import RuleError, load_rules
    from telemetry.alerting import AlertEvaluator, collector_query_runner
    from telemetry.alerting_api import build_alerting_router
    from telemetry.api import build_router, query_dependency
    from telemetry.collector import Collector
    from telemetry.tracing import server_tracer_provider

    problem = account_name_problem(account_name)
    if problem:
        fail(f"--account-name {account_name!r}: {problem}", 2)
    if (tls_cert is None) != (tls_key is None):
        fail("--tls-cert and --tls-key go together", 2)
    for path in (tls_cert, tls_key):
        if path is not None and not path.is_file():
            fail(f"{path} does not exist or is not a file", 2)
    if collector_url and not collector_url.startswith(("http://", "https://")):
        fail(f"--collector-url {collector_url!r}: expected http(s)://host:port", 2)
    # Everything that can refuse the start does so before a store is opened or a credential printed.
    lock = startup.lock_data_dir(data_dir)  # noqa: F841 (held until the process exits)
    if tls_cert is not None and tls_key is not None:
        startup.check_tls(tls_cert, tls_key)
    sock = startup.bind(host, port)
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    scheme = "https" if tls_cert else "http"
    url = public_url or f"{scheme}://{host if ':' not in host else f'[{host}]'}:{port}"
    try:
        cp = open_control_plane(
            data_dir,
            database_url,
            public_url=public_url,
            region=region,
            lease_seconds=lease_seconds,
            account_name=account_name,
        )
    except (OperationalError, ValueError) as exc:
        fail(f"cannot open the control-plane store: {str(exc).splitlines()[0]}")
    with cp.session() as s:
        creds = secrets.ensure_credentials(s, data_dir)

    if collector_url:
        collector_token = collector_token or creds.admin_token  # a collector started with this account's token
        if not collector_token:
            fail("--collector-url needs --collector-token (or OUTPOST_COLLECTOR_TOKEN): the replica token", 2)
        ignored = [f for f, v in (("--alert-rules", alert_rules), ("--alertmanager-url", alertmanager_url),
                                  ("--alert-webhook-url", alert_webhook_url)) if v]  # fmt: skip
        if ignored:
            console.print(
                f"warning: {', '.join(ignored)} ignored: with --collector-url the collector evaluates the fleet's "
                "KQL alerts (give it the --alert-* options)",
                highlight=False,
            )
    else:
        try:
            rules = load_rules(alert_rules if alert_rules is not None else _shipped_rules())
        except RuleError as exc:
            fail(f"alert rules: {exc}", 2)

    def on_heartbeat(worker, received):  # type: ignore[no-untyped-def]
        liveness.record_heartbeat(cp, worker.worker_id, received)

    def snapshot():  # type: ignore[no-untyped-def]
        return liveness.snapshot(cp)

    if collector_url:
        from telemetry.forwarding import Forwarder
        from telemetry.proxy import CollectorProxy, build_proxy_router

        collector = Forwarder(
            data_dir,
            collector_url,
            token=collector_token or "",
            ca_file=collector_ca_file,
            snapshot=snapshot,
            tls_cert_path=tls_cert,
            stale_after_s=stale_after,
            max_buffer_bytes=collector_buffer_mb * 1024 * 1024,
        )
        proxy = CollectorProxy(collector, collector_url, token=collector_token or "", ca_file=collector_ca_file)
        evaluator = None
    else:
        collector = Collector(
            data_dir,
            retention_days=retention_days,
            snapshot=snapshot,
            tls_cert_path=tls_cert,
            stale_after_s=stale_after,
            query_memory=query_memory,
            query_threads=query_threads,
        )
        evaluator = AlertEvaluator(
            rules,
            collector_query_runner(collector),
            alertmanager_url=alertmanager_url,
            webhook_url=alert_webhook_url,
            resend_interval_s=alert_resend_interval,
            maintenance_file=data_dir / "alert-maintenance.json",
            state_file=data_dir / "alert-state.json",
            generator_url=url,
        )
    try:
        cp.observer = collector.observer

        def routers(roles, require_worker):  # type: ignore[no-untyped-def]
            # Queries, Kusto REST and alerts are readers' business; silencing alerts is an operator's.
            read, change = roles[Role.READER], roles[Role.OPERATOR]
            telemetry = build_router(
                collector,
                require_admin=read,
                require_worker=require_worker,
                allow_anonymous_query=query_anonymous,
                on_heartbeat=on_heartbeat,
                queries=evaluator is not None,
            )
            if evaluator is None:  # a replica: queries and alerts are the collector's
                query_auth = query_dependency(read, query_anonymous)
                return [
                    telemetry,
                    build_proxy_router(proxy, query_auth=query_auth, require_read=read, require_change=change),
                ]
            return [telemetry, build_alerting_router(evaluator, read, change)]

        tracer_provider = server_tracer_provider(collector)
        tracing.use(tracer_provider)
        stops = [evaluator.stop] if evaluator is not None else []
        app = create_app(cp, extra_routers=routers, on_shutdown=[*stops, tracer_provider.shutdown, collector.close])
        collector.start()
        if evaluator is not None:
            evaluator.start()

        console.print(f"Outpost server listening on {url}", highlight=False, soft_wrap=True)
        console.print(f"url: {url}", highlight=False, soft_wrap=True)
        unknown = "(set by the replica that created this database; see its credentials.json)"
        console.print(f"admin token: {creds.admin_token or unknown}", highlight=False, soft_wrap=True)
        console.print(f"registration key: {creds.registration_key_primary or unknown}", highlight=False, soft_wrap=True)
        console.print(
            f"secondary registration key: {creds.registration_key_secondary or unknown}",
            highlight=False,
            soft_wrap=True,
        )
        if creds.admin_token:  # a replica joining an existing database never writes the file
            console.print(
                f"credentials kept in {data_dir / secrets.CREDENTIALS_FILE} (mode 0600)",
                highlight=False,
                soft_wrap=True,
            )
        console.file.flush()
        config = http_server.config(
            app,
            host=host,
            port=port,
            ssl_certfile=str(tls_cert) if tls_cert else None,
            ssl_keyfile=str(tls_key) if tls_key else None,
            log_level=log_level.lower(),
            access_log=False,
            timeout_graceful_shutdown=1,  # long-polls are retried by agents; do not hold a restart for them
        )
        http_server.settle_heap()
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        # Every exit path closes DuckDB: an open connection at interpreter exit prints nanobind leak warnings.
        if evaluator is not None:
            evaluator.stop()
        collector.close()
        sock.close()
