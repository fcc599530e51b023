"""`outpost diagnose`: why can't this worker reach its service? Check by check."""

from __future__ import annotations

import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from diagnostics.model import exit_code
from diagnostics.options import DEFAULT_TIMEOUT_S, Options
from diagnostics.report import document, print_table
from diagnostics.runner import run_checks, validate
from outpost.settings import ENV_CA_FILE, ENV_STATE_DIR


def diagnose(
    state_dir: Annotated[
        Path | None,
        typer.Option("--state-dir", envvar=ENV_STATE_DIR, help="Agent state directory (default: the agent's)."),
    ] = None,
    url: Annotated[str | None, typer.Option("--url", help="Check this server instead of the registered one.")] = None,
    ca_file: Annotated[
        str | None, typer.Option("--ca-file", envvar=ENV_CA_FILE, help="Trust this CA bundle (PEM) for the server.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON (schema outpost.diagnose/v1).")] = False,
    check: Annotated[
        str | None, typer.Option("--check", help="Run one check (e.g. dns.resolve) or group (dns).")
    ] = None,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds each check may take.")] = DEFAULT_TIMEOUT_S,
    dns_server: Annotated[
        list[str] | None,
        typer.Option("--dns-server", help="Also resolve with this DNS server (IP or IP:PORT) and compare; repeatable."),
    ] = None,
    azure_region: Annotated[
        str | None,
        typer.Option(
            "--azure-region", help="Also check Azure Automation's endpoints for this region (code like 'we')."
        ),
    ] = None,
    account_id: Annotated[
        str | None, typer.Option("--account-id", help="Azure Automation account id (GUID) for account-scoped records.")
    ] = None,
    proxy: Annotated[
        str | None,
        typer.Option("--proxy", help="Use this proxy URL instead of the discovered one ('direct' for none)."),
    ] = None,
) -> None:
    """Check, step by step, why this worker can or cannot reach its server (exit 0 ok/warn, 1 fail, 2 usage)."""
    from outpost.commands.common import fail

    options = Options(
        state_dir=state_dir,
        url=url,
        ca_file=ca_file,
        check=check,
        timeout=timeout,
        dns_servers=list(dns_server or []),
        azure_region=azure_region,
        account_id=account_id,
        proxy=proxy,
    )
    try:
        validate(options)
    except ValueError as exc:
        fail(str(exc), 2)
    if ca_file and not Path(ca_file).is_file():
        fail(f"--ca-file {ca_file} is not a readable file", 2)

    started, t0 = datetime.now(UTC), time.monotonic()
    console = Console(stderr=False, highlight=False)
    if as_json:
        results = run_checks(options)
    else:
        with console.status("running checks…", spinner="dots") if console.is_terminal else _null():
            results = run_checks(options)
    seconds = time.monotonic() - t0

    from diagnostics.context import Context

    ctx = Context(options)
    reg = ctx.registration().registration
    worker = {"worker_id": reg.worker_id, "name": reg.name, "group": reg.group, "url": reg.url} if reg else None
    if as_json:
        doc = document(results, started=started, seconds=seconds, worker=worker, server=ctx.server_url)
        sys.stdout.write(json.dumps(doc, indent=2, default=str) + "\n")
    else:
        who = f"worker {reg.name} ({reg.worker_id}), group {reg.group}" if reg else "no registration"
        header = f"outpost diagnose — {who} → {ctx.server_url or 'no server'}"
        print_table(results, console, seconds, header)
    raise typer.Exit(exit_code(results))


class _null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None
