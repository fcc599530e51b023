"""`outpost server`: the control plane (and, by default, the telemetry collector) in one process."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from outpost.commands.common import console, fail
from outpost.settings import DEFAULT_HOST, DEFAULT_PORT, ENV_DATA_DIR, ENV_DATABASE_URL, LEASE_SECONDS


def server(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = DEFAULT_HOST,
    port: Annotated[int, typer.Option(help="Port to listen on.")] = DEFAULT_PORT,
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
    log_level: Annotated[str, typer.Option("--log-level", help="debug, info, warning, error")] = "info",
) -> None:
    """Start the Outpost service: REST API, long-poll dispatch, telemetry."""
    import uvicorn
    from sqlalchemy.exc import OperationalError

    from automation import secrets
    from automation.app import create_app, open_control_plane

    if (tls_cert is None) != (tls_key is None):
        fail("--tls-cert and --tls-key go together", 2)
    for path in (tls_cert, tls_key):
        if path is not None and not path.is_file():
            fail(f"{path} does not exist or is not a file", 2)
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
    app = create_app(cp)

    console.print(f"Outpost server listening on {url}", highlight=False)
    console.print(f"url: {url}", highlight=False)
    unknown = "(set by the replica that created this database; see its credentials.json)"
    console.print(f"admin token: {creds.admin_token or unknown}", highlight=False)
    console.print(f"registration key: {creds.registration_key_primary or unknown}", highlight=False)
    console.print(f"secondary registration key: {creds.registration_key_secondary or unknown}", highlight=False)
    console.print(f"credentials kept in {data_dir / secrets.CREDENTIALS_FILE} (mode 0600)", highlight=False)
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
    try:
        uvicorn.Server(config).run()
    except OSError as exc:
        fail(f"cannot listen on {host}:{port}: {exc}")
