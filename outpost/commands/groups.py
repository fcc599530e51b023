"""`outpost group ...`: worker groups (created by worker registration, as on Azure)."""

from __future__ import annotations

import typer

from outpost.commands.common import (
    CaFileOpt,
    JsonOpt,
    TokenOpt,
    UrlOpt,
    admin_client,
    console,
    print_json,
    print_table,
)
from outpost.http import request

app = typer.Typer(help="List and delete worker groups.", no_args_is_help=True)


@app.command("list")
def list_(url: UrlOpt = None, token: TokenOpt = None, ca_file: CaFileOpt = None, as_json: JsonOpt = False) -> None:
    """List worker groups with their worker and queued-job counts."""
    with admin_client(url, token, ca_file) as client:
        rows = request(client, "GET", "/api/v1/groups").json()
    print_json(rows) if as_json else print_table(rows, ["name", "workers", "queued_jobs", "created_at"])


@app.command("delete")
def delete(name: str, url: UrlOpt = None, token: TokenOpt = None, ca_file: CaFileOpt = None) -> None:
    """Delete a group that has no workers left."""
    with admin_client(url, token, ca_file) as client:
        request(client, "DELETE", f"/api/v1/groups/{name}")
    console.print(f"worker group {name} deleted", highlight=False)
