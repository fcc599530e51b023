"""`outpost group ...`: worker groups (created by worker registration, as on Azure)."""

from __future__ import annotations

from typing import Annotated

import typer

from outpost.commands.common import (
    CaFileOpt,
    JsonOpt,
    TokenOpt,
    UrlOpt,
    admin_client,
    console,
    fail,
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
    print_json(rows) if as_json else print_table(
        rows, ["name", "workers", "queued_jobs", "run_as_credential", "created_at"]
    )


@app.command("delete")
def delete(name: str, url: UrlOpt = None, token: TokenOpt = None, ca_file: CaFileOpt = None) -> None:
    """Delete a group that has no workers left."""
    with admin_client(url, token, ca_file) as client:
        request(client, "DELETE", f"/api/v1/groups/{name}")
    console.print(f"worker group {name} deleted", highlight=False)


@app.command("set-runas")
def set_runas(
    name: str,
    credential: Annotated[
        str | None, typer.Option("--credential", help="A credential asset; its user name is the RunAs user.")
    ] = None,
    clear: Annotated[bool, typer.Option("--clear", help="Run this group's jobs as the agent's user again.")] = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
    ca_file: CaFileOpt = None,
) -> None:
    """Run every job of a group as the local user named by a credential asset (agents running as root)."""
    if clear == (credential is not None):
        fail("pass either --credential NAME or --clear", 2)
    with admin_client(url, token, ca_file) as client:
        request(client, "PUT", f"/api/v1/groups/{name}/runas", json={"credential": credential})
    message = (
        f"group {name}: jobs run as the user of credential {credential}"
        if credential
        else f"group {name}: RunAs cleared"
    )
    console.print(message, highlight=False)
