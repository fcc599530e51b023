"""`outpost webhook ...`: secret URLs that start a runbook."""

from __future__ import annotations

from typing import Annotated

import typer

from outpost.commands.client import request
from outpost.commands.common import (
    CaFileOpt,
    JsonOpt,
    TokenOpt,
    UrlOpt,
    admin_client,
    done,
    err_console,
    fail,
    name_path,
    parse_params,
    print_fields,
    print_json,
    print_table,
    set_enabled,
)

app = typer.Typer(help="Webhooks: secret URLs that start a runbook (the URL is shown once).", no_args_is_help=True)
COLUMNS = ["name", "runbook", "run_on", "enabled", "expires_at", "expired", "last_used_at"]
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400, "y": 365 * 86400}


def _duration(value: str) -> float:
    text = value.strip().lower()
    if len(text) < 2 or text[-1] not in _UNIT_S or not text[:-1].isdigit():
        fail(f"--expires-in {value!r}: use a number and a unit s, m, h, d, w or y (e.g. 90d)", 2)
    return int(text[:-1]) * _UNIT_S[text[-1]]


@app.command("create")
def create(
    name: str,
    runbook: Annotated[str, typer.Option("--runbook", help="The (published) runbook to start.")],
    run_on: Annotated[str, typer.Option("--run-on", help="The worker group to run it on.")],
    param: Annotated[
        list[str] | None, typer.Option("--param", "-p", help="VALUE (positional) or NAME=VALUE; repeatable.")
    ] = None,
    expires_in: Annotated[str | None, typer.Option("--expires-in", help="e.g. 30d, 12h (default 1y).")] = None,
    expires: Annotated[str | None, typer.Option("--expires", help="Expiry time, ISO 8601.")] = None,
    url: UrlOpt = None,
    token: TokenOpt = None,
    ca_file: CaFileOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Create a webhook; prints its secret URL once — store it now, it cannot be shown again."""
    body = {
        "runbook": runbook,
        "run_on": run_on,
        "params": parse_params(param or []),
        "expires_at": expires,
        "expires_in_s": _duration(expires_in) if expires_in else None,
    }
    with admin_client(url, token, ca_file) as client:
        view = request(client, "POST", f"/api/v1/webhooks/{name_path(name, 'webhook')}", json=body).json()
    if as_json:
        print_json(view)
        return
    typer.echo(view["url"])
    err_console.print(
        f"webhook {name} created (expires {view['expires_at']}); the URL above is shown only once", highlight=False
    )


@app.command("list")
def list_(url: UrlOpt = None, token: TokenOpt = None, ca_file: CaFileOpt = None, as_json: JsonOpt = False) -> None:
    """List webhooks (never their URLs)."""
    with admin_client(url, token, ca_file) as client:
        rows = request(client, "GET", "/api/v1/webhooks").json()
    print_json(rows) if as_json else print_table(rows, COLUMNS)


@app.command("show")
def show(
    name: str, url: UrlOpt = None, token: TokenOpt = None, ca_file: CaFileOpt = None, as_json: JsonOpt = False
) -> None:
    """Show a webhook (not its URL)."""
    with admin_client(url, token, ca_file) as client:
        view = request(client, "GET", f"/api/v1/webhooks/{name_path(name, 'webhook')}").json()
    if as_json:
        print_json(view)
    else:
        print_fields(view, width=12)


@app.command("delete")
def delete(
    name: str, url: UrlOpt = None, token: TokenOpt = None, ca_file: CaFileOpt = None, as_json: JsonOpt = False
) -> None:
    """Delete a webhook; its URL stops working at once."""
    with admin_client(url, token, ca_file) as client:
        request(client, "DELETE", f"/api/v1/webhooks/{name_path(name, 'webhook')}")
    done(as_json, {"name": name, "deleted": True}, f"webhook {name} deleted")


@app.command("enable")
def enable(
    name: str, url: UrlOpt = None, token: TokenOpt = None, ca_file: CaFileOpt = None, as_json: JsonOpt = False
) -> None:
    """Enable a webhook: its URL starts jobs again."""
    set_enabled("webhook", name, True, url, token, ca_file, as_json)


@app.command("disable")
def disable(
    name: str, url: UrlOpt = None, token: TokenOpt = None, ca_file: CaFileOpt = None, as_json: JsonOpt = False
) -> None:
    """Disable a webhook: its URL is refused until enabled again."""
    set_enabled("webhook", name, False, url, token, ca_file, as_json)
