"""`outpost asset ...`: variables, credentials, certificates and connections (Azure Automation's shared assets)."""

from __future__ import annotations

import base64
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from outpost.commands.client import request
from outpost.commands.common import (
    CaFileOpt,
    JsonOpt,
    TokenOpt,
    UrlOpt,
    admin_client,
    console,
    done,
    fail,
    name_path,
    print_fields,
    print_json,
    print_table,
)

app = typer.Typer(
    help="Shared assets that runbooks read with `import automationassets`: variables, credentials, "
    "certificates, connections.",
    no_args_is_help=True,
)

DescOpt = Annotated[str | None, typer.Option("--description", help="A one-line description.")]
COLUMNS = {
    "variables": ["name", "type", "encrypted", "value", "description", "updated_at"],
    "credentials": ["name", "username", "description", "updated_at"],
    "certificates": ["name", "thumbprint", "expires_at", "subject", "exportable"],
    "connections": ["name", "connection_type", "fields", "encrypted_fields", "updated_at"],
}


def _read_stdin_secret(what: str) -> str:
    data = sys.stdin.readline()
    if not data:
        fail(f"--{what}-stdin: nothing on standard input", 2)
    return data.rstrip("\r\n")


def _put(plural: str, name: str, body: dict[str, Any], url: str | None, token: str | None, ca: str | None) -> dict:
    with admin_client(url, token, ca) as client:
        return request(client, "PUT", f"/api/v1/assets/{plural}/{name_path(name, plural[:-1])}", json=body).json()


def _done(kind: str, view: dict[str, Any], as_json: bool, facts: tuple[str, ...] = ()) -> None:
    """`KIND NAME saved`, with the `facts` of the saved asset the user should check (a thumbprint, an expiry)."""
    if as_json:
        print_json(view)
        return
    shown = ", ".join(f"{key.replace('_', ' ')} {view[key]}" for key in facts if view.get(key))
    console.print(f"{kind} {view['name']} saved" + (f": {shown}" if shown else ""), highlight=False, soft_wrap=True)


def _add_common(sub: typer.Typer, plural: str, kind: str) -> None:
    @sub.command("show")
    def show(
        name: str, url: UrlOpt = None, token: TokenOpt = None, ca_file: CaFileOpt = None, as_json: JsonOpt = False
    ) -> None:
        """Show one (never its secret parts)."""
        with admin_client(url, token, ca_file) as client:
            view = request(client, "GET", f"/api/v1/assets/{plural}/{name_path(name, plural[:-1])}").json()
        if as_json:
            print_json(view)
        else:
            print_fields(view)

    @sub.command("list")
    def list_(url: UrlOpt = None, token: TokenOpt = None, ca_file: CaFileOpt = None, as_json: JsonOpt = False) -> None:
        """List them (encrypted values and passwords are never listed)."""
        with admin_client(url, token, ca_file) as client:
            rows = request(client, "GET", f"/api/v1/assets/{plural}").json()
        if as_json:
            print_json(rows)
        else:
            for row in rows:
                for key in ("value", "fields", "encrypted_fields"):
                    if isinstance(row.get(key), dict | list):
                        row[key] = json.dumps(row[key])
            print_table(rows, COLUMNS[plural])

    @sub.command("delete")
    def delete(
        name: str, url: UrlOpt = None, token: TokenOpt = None, ca_file: CaFileOpt = None, as_json: JsonOpt = False
    ) -> None:
        """Delete one."""
        with admin_client(url, token, ca_file) as client:
            request(client, "DELETE", f"/api/v1/assets/{plural}/{name_path(name, plural[:-1])}")
        done(as_json, {"kind": kind, "name": name, "deleted": True}, f"{kind} {name} deleted")


variable_app = typer.Typer(help="Variables: any JSON value, plain or encrypted.", no_args_is_help=True)
credential_app = typer.Typer(help="Credentials: a user name and a password.", no_args_is_help=True)
certificate_app = typer.Typer(help="Certificates: PFX files, with thumbprint and expiry.", no_args_is_help=True)
connection_app = typer.Typer(help="Connections: a connection type and its fields.", no_args_is_help=True)


@variable_app.command("set")
def variable_set(
    name: str,
    value: Annotated[str, typer.Option("--value", help="A JSON value: 42, true, null, '\"text\"', '{\"a\": 1}'.")],
    encrypted: Annotated[
        bool, typer.Option("--encrypted", help="Encrypt at rest; only runbooks can read it back.")
    ] = False,
    description: DescOpt = None,
    url: UrlOpt = None,
    token: TokenOpt = None,
    ca_file: CaFileOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Create or update a variable."""
    try:
        parsed = json.loads(value)
    except ValueError:
        fail(f"--value must be JSON; for the string {value!r} pass --value '{json.dumps(value)}'", 2)
    body = {"value": parsed, "encrypted": encrypted, "description": description}
    _done("variable", _put("variables", name, body, url, token, ca_file), as_json)


@credential_app.command("set")
def credential_set(
    name: str,
    username: Annotated[str, typer.Option("--username", help="The user name.")],
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from standard input (one line).")
    ] = False,
    description: DescOpt = None,
    url: UrlOpt = None,
    token: TokenOpt = None,
    ca_file: CaFileOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Create or update a credential; the password is read from stdin, never from the command line."""
    if password_stdin:
        password = _read_stdin_secret("password")
    elif sys.stdin.isatty():
        password = typer.prompt("password", hide_input=True, confirmation_prompt=True)
    else:
        fail("pass --password-stdin and the password on standard input", 2)
    body = {"username": username, "password": password, "description": description}
    _done("credential", _put("credentials", name, body, url, token, ca_file), as_json)


@certificate_app.command("set")
def certificate_set(
    name: str,
    file: Annotated[Path, typer.Option("--file", "-f", help="A .pfx/.p12 file (or a PEM/DER certificate).")],
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the PFX password from standard input.")
    ] = False,
    exportable: Annotated[bool, typer.Option("--exportable", help="Mark the certificate exportable.")] = False,
    description: DescOpt = None,
    url: UrlOpt = None,
    token: TokenOpt = None,
    ca_file: CaFileOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Upload a certificate; runbooks get it as PFX bytes from get_automation_certificate."""
    try:
        data = file.read_bytes()
    except OSError as exc:
        fail(f"cannot read {file}: {exc}", 2)
    body = {
        "data": base64.b64encode(data).decode(),
        "password": _read_stdin_secret("password") if password_stdin else None,
        "exportable": exportable,
        "description": description,
    }
    view = _put("certificates", name, body, url, token, ca_file)
    _done("certificate", view, as_json, ("thumbprint", "subject", "expires_at"))


@connection_app.command("set")
def connection_set(
    name: str,
    connection_type: Annotated[
        str, typer.Option("--type", help="Connection type, e.g. AzureServicePrincipal, or your own type name.")
    ],
    field: Annotated[list[str] | None, typer.Option("--field", help="NAME=VALUE; repeat for each field.")] = None,
    encrypted_field: Annotated[
        list[str] | None, typer.Option("--encrypted-field", help="Encrypt this field's value at rest; repeatable.")
    ] = None,
    description: DescOpt = None,
    url: UrlOpt = None,
    token: TokenOpt = None,
    ca_file: CaFileOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Create or update a connection."""
    fields: dict[str, str] = {}
    for raw in field or []:
        key, sep, value = raw.partition("=")
        if not sep or not key:
            fail(f"--field {raw!r}: use NAME=VALUE", 2)
        fields[key] = value
    body = {
        "connection_type": connection_type,
        "fields": fields,
        "encrypted_fields": encrypted_field or [],
        "description": description,
    }
    _done("connection", _put("connections", name, body, url, token, ca_file), as_json)


for _sub, _plural, _kind in (
    (variable_app, "variables", "variable"),
    (credential_app, "credentials", "credential"),
    (certificate_app, "certificates", "certificate"),
    (connection_app, "connections", "connection"),
):
    _add_common(_sub, _plural, _kind)
    app.add_typer(_sub, name=_kind)
