"""What every client command shares: connection options, errors, tables, JSON."""

from __future__ import annotations

import json
import ssl
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn
from urllib.parse import quote

import typer

from outpost.commands.client import Client, request
from outpost.http_policy import ApiError
from outpost.names import name_problem
from outpost.settings import ENV_CA_FILE, ENV_TOKEN, ENV_URL

if TYPE_CHECKING:
    from rich.console import Console


class _LazyConsole:
    """A rich Console made on first use: a command that prints only JSON, or one line, never imports rich."""

    def __init__(self, stderr: bool = False) -> None:
        self._stderr = stderr
        self._console: Console | None = None

    def _real(self) -> Console:
        if self._console is None:
            from rich.console import Console

            self._console = Console(stderr=self._stderr)
        return self._console

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real(), name)

    @property
    def width(self) -> int:
        return self._real().width

    @width.setter
    def width(self, value: int) -> None:  # e.g. a test that wants wide tables
        self._real().width = value


console = _LazyConsole()
err_console = _LazyConsole(stderr=True)

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


def _check_ca_file(ca_file: str | None) -> None:
    if ca_file is None:
        return
    if not Path(ca_file).is_file():
        fail(f"--ca-file {ca_file}: no such file", 2)
    try:
        ssl.create_default_context(cafile=ca_file)
    except (ssl.SSLError, ValueError) as exc:
        fail(f"--ca-file {ca_file} is not a PEM CA bundle ({getattr(exc, 'reason', None) or exc})", 2)
    except OSError as exc:
        fail(f"--ca-file {ca_file}: {exc.strerror}", 2)


@contextmanager
def admin_client(url: str | None, token: str | None, ca_file: str | None) -> Iterator[Client]:
    if not url:
        fail(f"no server URL: pass --url or set {ENV_URL}", 2)
    if not token:
        fail(f"no admin token: pass --token or set {ENV_TOKEN} (printed by `outpost server`)", 2)
    _check_ca_file(ca_file)
    try:
        with Client(url, token=token, ca_file=ca_file) as client:
            yield client
    except ApiError as exc:
        fail(exc.message)
    except OSError as exc:
        fail(f"{exc.filename}: {exc.strerror}" if exc.filename else str(exc))


def name_path(name: str, kind: str = "") -> str:
    """`name` checked with the server's rule, escaped as one URL path segment (a `?`, `#` or `/` stays in it)."""
    problem = name_problem(kind or "a", name)
    if problem:
        fail(problem.replace("invalid a name", "invalid name"), 2)
    return quote(name, safe="")


def id_path(value: str) -> str:
    """An id (or id prefix) as one URL path segment."""
    return quote(value, safe="")


def human(value: Any) -> str:
    """A value as people read it: never a Python list or dict."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, dict):
        if set(value) <= {"name", "value"} and "value" in value:  # a job parameter
            return str(value["value"]) if value.get("name") is None else f"{value['name']}={value['value']}"
        return ", ".join(f"{k}={human(v)}" for k, v in value.items())
    if isinstance(value, list | tuple):
        if value and all(isinstance(v, dict) and set(v) <= {"name", "value"} for v in value):
            return " ".join(human(v) for v in value)
        return ", ".join(human(v) for v in value)
    return str(value)


def print_fields(view: dict[str, Any], keys: Sequence[str] | None = None, width: int = 16) -> None:
    """`key  value` lines for one object (show commands)."""
    for key in keys or list(view):
        console.print(f"[bold]{key:>{width}}[/] {human(view.get(key))}", highlight=False, soft_wrap=True)


def set_enabled(
    kind: str, name: str, enabled: bool, url: str | None, token: str | None, ca_file: str | None, as_json: bool
) -> None:
    """`outpost schedule|webhook enable|disable NAME`: one PATCH of `{"enabled": ...}` to /api/v1/<kind>s/NAME."""
    with admin_client(url, token, ca_file) as client:
        path = f"/api/v1/{kind}s/{name_path(name, kind)}"
        response = request(client, "PATCH", path, json={"enabled": enabled})
    view = response.json() if response.content else {"name": name, "enabled": enabled}
    done(as_json, view, f"{kind} {name} {'enabled' if enabled else 'disabled'}")


def done(as_json: bool, document: dict[str, Any], message: str) -> None:
    """The end of a command that changes something: a JSON document, or one line for people."""
    if as_json:
        print_json(document)
    else:
        console.print(message, highlight=False, soft_wrap=True)


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def table_cell(value: Any) -> str:
    """A cell for people: an ISO timestamp as how long ago (`--json` keeps the exact time), else human()."""
    if isinstance(value, str) and len(value) >= 19 and value[4] == "-" and value[10] == "T":
        try:
            datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return value
        from outpost.commands.waiting import ago

        return ago(value)
    return human(value)


def _is_id(column: str) -> bool:
    return column == "id" or column.endswith("_id")


def print_table(rows: Sequence[dict[str, Any]], columns: Sequence[str], title: str | None = None) -> None:
    """A table; ids are shown whole (never folded), timestamps as "5 min ago"."""
    from rich.table import Table

    table = Table(title=title, show_lines=False)
    cells = [[table_cell(row.get(c)) for c in columns] for row in rows]
    for i, col in enumerate(columns):
        if _is_id(col):
            table.add_column(col, no_wrap=True, min_width=max([len(r[i]) for r in cells] + [len(col)]))
        else:
            table.add_column(col, overflow="fold")
    for row_cells in cells:
        table.add_row(*row_cells)
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
