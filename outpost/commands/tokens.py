"""`outpost token ...`: named API tokens with roles (reader, operator, author, admin)."""

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
    console,
    print_json,
    print_table,
)

app = typer.Typer(
    help="Create, list and revoke named API tokens (roles: reader, operator, author, admin).", no_args_is_help=True
)


@app.command("create")
def create(
    name: str,
    role: Annotated[str, typer.Option("--role", help="reader, operator, author or admin.")],
    group: Annotated[
        list[str] | None, typer.Option("--group", help="Operator only: the worker groups it may act on (repeat).")
    ] = None,
    expires_in: Annotated[str | None, typer.Option("--expires-in", help="e.g. 90d, 12h, 2w; default never.")] = None,
    url: UrlOpt = None,
    token: TokenOpt = None,
    ca_file: CaFileOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Create a token; its secret is printed once (JSON field `token`) and never again."""
    body = {"role": role.strip().lower(), "groups": group or None, "expires_in": expires_in}
    with admin_client(url, token, ca_file) as client:
        created = request(client, "POST", f"/api/v1/tokens/{name}", json=body).json()
    if as_json:
        print_json(created)
        return
    scope = f" on groups {', '.join(created['groups'])}" if created.get("groups") else ""
    expiry = f", expires {created['expires_at']}" if created.get("expires_at") else ""
    console.print(f"token {created['name']}: role {created['role']}{scope}{expiry}", highlight=False)
    console.print(f"token: {created['token']}", highlight=False)
    console.print("(shown once: store it now)", highlight=False)


@app.command("list")
def list_(url: UrlOpt = None, token: TokenOpt = None, ca_file: CaFileOpt = None, as_json: JsonOpt = False) -> None:
    """List tokens (never their secrets)."""
    with admin_client(url, token, ca_file) as client:
        rows = request(client, "GET", "/api/v1/tokens").json()
    if as_json:
        print_json(rows)
        return
    for r in rows:
        r["groups"] = ", ".join(r["groups"]) if r.get("groups") else "all"
        r["expires_at"] = ("expired " if r.get("expired") else "") + (r.get("expires_at") or "never")
    print_table(rows, ["name", "role", "groups", "expires_at", "created_by"])


@app.command("revoke")
def revoke(
    name: str, url: UrlOpt = None, token: TokenOpt = None, ca_file: CaFileOpt = None, as_json: JsonOpt = False
) -> None:
    """Revoke a token: every replica refuses it from now on."""
    with admin_client(url, token, ca_file) as client:
        revoked = request(client, "DELETE", f"/api/v1/tokens/{name}").json()
    print_json(revoked) if as_json else console.print(f"token {name} revoked", highlight=False)
