"""`outpost server`: the control plane (and, by default, the telemetry collector) in one process."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from outpost.commands import startup
from outpost.commands.common import console, fail
from outpost.settings import DEFAULT_HOST, DEFAULT_PORT, ENV_DATA_DIR, ENV_DATABASE_URL, LEASE_SECONDS


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
    log_level: Annotated[str, typer.Option("--log-level", help="debug, info, warning, error")] = "info",
) -> None:
    """Start the Outpost service: REST API, long-poll dispatch, telemetry."""
    import uvicorn
    from sqlalchemy.exc import OperationalError

    from automation import dispatch, secrets, tracing
    from automation.app import create_app, open_control_plane
    from telemetry.alert_rules import RuleError, load_rules
    from telemetry.alerting import AlertEvaluator, collector_query_runner
    from telemetry.alerting_api import build_alerting_router
    from telemetry.api import build_router
    from telemetry.collector import Collector
    from telemetry.tracing import server_tracer_provider

    if (tls_cert is None) != (tls_key is None):
        fail("--tls-cert and --tls-key go together", 2)
    for path in (tls_cert, tls_key):
        if path is not None and not path.is_file():
            fail(f"{path} does not exist or is not a file", 2)
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
            data_dir, database_url, public_url=public_url, region=region, lease_seconds=lease_seconds
        )
    except (OperationalError, ValueError) as exc:
        fail(f"cannot open the control-plane store: {str(exc).splitlines()[0]}")
    with cp.session() as s:
        creds = secrets.ensure_credentials(s, data_dir)

    try:
        rules = load_rules(alert_rules if alert_rules is not None else _shipped_rules())
    except RuleError as exc:
        fail(f"alert rules: {exc}", 2)
    collector = Collector(
        data_dir,
        retention_days=retention_days,
        snapshot=lambda: dispatch.snapshot(cp),
        tls_cert_path=tls_cert,
        stale_after_s=stale_after,
    )
    evaluator: AlertEvaluator | None = None
    try:
        cp.observer = collector.observer
        evaluator = AlertEvaluator(
            rules,
            collector_query_runner(collector),
            alertmanager_url=alertmanager_url,
            webhook_url=alert_webhook_url,
            resend_interval_s=alert_resend_interval,
            maintenance_file=data_dir / "alert-maintenance.json",
            generator_url=url,
        )

        def routers(require_admin, require_worker):  # type: ignore[no-untyped-def]
            return [
                build_router(
                    collector,
                    require_admin=require_admin,
                    require_worker=require_worker,
                    allow_anonymous_query=query_anonymous,
                ),
                build_alerting_router(evaluator, require_admin),
            ]

        tracer_provider = server_tracer_provider(collector)
        tracing.use(tracer_provider)
        app = create_app(
            cp, extra_routers=routers, on_shutdown=[evaluator.stop, tracer_provider.shutdown, collector.close]
        )
        collector.start()
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
        config = uvicorn.Config(
            app,
            host=host,
            port=port,
            ssl_certfile=str(tls_cert) if tls_cert else None,
            ssl_keyfile=str(tls_key) if tls_key else None,
            log_level=log_level.lower(),
            access_log=False,
            timeout_graceful_shutdown=1,  # long-polls are retried by agents; do not hold a restart for them
        )
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        # Every exit path closes DuckDB: an open connection at interpreter exit prints nanobind leak warnings.
        if evaluator is not None:
            evaluator.stop()
        collector.close()
        sock.close()
