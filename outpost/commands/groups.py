"""`outpost group ...`: worker groups (created by worker registration, as on Azure)."""

from __future__ import annotations

from typing import Annotated

import typer

from outpost.commands import limits
from outpost.commands.client import request
from outpost.commands.common import (
    CaFileOpt,
    JsonOpt,
    TokenOpt,
    UrlOpt,
    admin_client,
    done,
    fail,
    name_path,
    print_json,
    print_table,
)
from outpost.commands.dependents import ForceOpt, note, settle_dependents

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
def delete(
    name: str,
    force: ForceOpt = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
    ca_file: CaFileOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Delete a group that has no workers left (refused while schedules or webhooks run on it)."""
    with admin_client(url, token, ca_file) as client:
        disabled = settle_dependents(client, "run_on", name, "worker group", force)
        request(client, "DELETE", f"/api/v1/groups/{name_path(name, 'group')}")
    done(as_json, {"name": name, "deleted": True, "disabled": disabled}, f"worker group {name} deleted{note(disabled)}")


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
    as_json: JsonOpt = False,
) -> None:
    """Run every job of a group as the local user named by a credential asset (agents running as root)."""
    if clear == (credential is not None):
        fail("pass either --credential NAME or --clear", 2)
    with admin_client(url, token, ca_file) as client:
        request(client, "PUT", f"/api/v1/groups/{name_path(name, 'group')}/runas", json={"credential": credential})
    message = (
        f"group {name}: jobs run as the user of credential {credential}"
        if credential
        else f"group {name}: RunAs cleared"
    )
    done(as_json, {"name": name, "run_as_credential": credential}, message)


@app.command("set-limits")
def set_limits(
    name: str,
    memory_mb: limits.MemoryOpt = None,
    cpu_percent: limits.CpuOpt = None,
    max_processes: limits.ProcessesOpt = None,
    clear: Annotated[bool, typer.Option("--clear", help="Remove every limit of the group.")] = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
    ca_file: CaFileOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Set the resource limits of a group's jobs; the options given replace all earlier ones."""
    given = {"memory_mb": memory_mb, "cpu_percent": cpu_percent, "max_processes": max_processes}
    limits.put("group", "groups", name, given, clear, (url, token, ca_file), as_json)
