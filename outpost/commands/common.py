"""What every client command shares: connection options, errors, tables, JSON."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Annotated, Any, NoReturn

import httpx
import typer
from rich.console import Console
from rich.table import Table

from outpost.http import ApiError, make_client
from outpost.settings import ENV_CA_FILE, ENV_TOKEN, ENV_URL

console = Console()
err_console = Console(stderr=True)

UrlOpt = Annotated[str | None, typer.Option("--url", envvar=ENV_URL, help="Server URL.", show_default=False)]
TokenOpt = Annotated[
    str | None,
    typer.Option("--token", envvar=ENV_TOKEN, help="Admin token.", show_default=False, show_envvar=True),
]
CaFileOpt = Annotated[
    str | None,
    typer.Option("--ca-file", envvar=ENV_CA_FILE, help="Trust this CA bundle (PEM) for the server."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]


def fail(message: str, code: int = 1) -> NoReturn:
    """One readable line on stderr, non-zero exit: how every CLI error ends."""
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


@contextmanager
def admin_client(url: str | None, token: str | None, ca_file: str | None) -> Iterator[httpx.Client]:
    if not url:
        fail(f"no server URL: pass --url or set {ENV_URL}", 2)
    if not token:
        fail(f"no admin token: pass --token or set {ENV_TOKEN} (printed by `outpost server`)", 2)
    try:
        with make_client(url, token=token, ca_file=ca_file) as client:
            yield client
    except ApiError as exc:
        fail(exc.message)
    except OSError as exc:  # e.g. an unreadable --ca-file
        fail(str(exc))


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def print_table(rows: Sequence[dict[str, Any]], columns: Sequence[str], title: str | None = None) -> None:
    table = Table(title=title, show_lines=False)
    for col in columns:
        table.add_column(col, overflow="fold")
    for row in rows:
        table.add_row(*("" if row.get(c) is None else str(row.get(c)) for c in columns))
    console.print(table)


def parse_params(values: Sequence[str]) -> list[dict[str, str | None]]:
    """`--param k=v` is named; `--param VALUE` (no '=', or a leading '=') is the next positional one."""
    params: list[dict[str, str | None]] = []
    for raw in values:
        if raw.startswith("="):  # "=VALUE": a positional value that itself contains '='
            params.append({"name": None, "value": raw[1:]})
            continue
        name, sep, value = raw.partition("=")
        azure_style = name.startswith("[") and name.endswith("]")  # "[PARAMETER 1]=v", as Azure's API names them
        if sep and name and (" " not in name or azure_style):
            params.append({"name": name, "value": value})
        else:
            params.append({"name": None, "value": raw})
    return params
