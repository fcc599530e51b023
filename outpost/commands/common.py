"""What every client command shares: connection options, errors, tables, JSON."""

from __future__ import annotations

import json
import os
import re
import ssl
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, NoReturn, TextIO
from urllib.parse import quote

import typer

from outpost.commands.client import Client, request
from outpost.commands.table import cell_len, fit_widths, render_records, render_table, terminal_width
from outpost.http_policy import ApiError
from outpost.names import name_problem
from outpost.settings import ENV_CA_FILE, ENV_TOKEN, ENV_URL

# The few rich-style markup tags the commands write ("[bold red]error:[/] ..."): ANSI on a terminal,
# dropped elsewhere. Any other bracketed text (a "[PARAMETER 1]", a KQL "[0]") is printed as it is.
_STYLES = {"bold": "1", "dim": "2", "italic": "3", "red": "31", "green": "32", "yellow": "33", "cyan": "36"}
_TAG = re.compile(r"\[(/?)([a-z ]*)\]")


class Console:
    """Lines to stdout (or stderr) without rich: its import was most of a short command's start-up.

    The stream is looked up on each print (a test runner swaps sys.stdout); the width is the
    terminal's (COLUMNS first) unless set, as a test that wants wide tables does.
    """

    def __init__(self, stderr: bool = False) -> None:
        self._stderr = stderr
        self._width: int | None = None

    @property
    def file(self) -> TextIO:
        return sys.stderr if self._stderr else sys.stdout

    @property
    def width(self) -> int:
        return self._width or terminal_width()

    @width.setter
    def width(self, value: int) -> None:
        self._width = value

    def color(self) -> bool:
        isatty = getattr(self.file, "isatty", None)
        return bool(isatty and isatty()) and "NO_COLOR" not in os.environ and os.environ.get("TERM") != "dumb"

    def _markup(self, text: str) -> str:
        color = self.color()
        open_codes: list[str] = []

        def tag(match: re.Match[str]) -> str:
            closing, names = match.group(1), match.group(2).split()
            if closing and not names:  # "[/]" closes the innermost style
                if not open_codes:
                    return match.group(0)
                open_codes.pop()
            elif names and all(n in _STYLES for n in names):
                if closing:
                    codes = ";".join(_STYLES[n] for n in names)
                    if codes in open_codes:
                        open_codes.remove(codes)
                else:
                    open_codes.append(";".join(_STYLES[n] for n in names))
            else:
                return match.group(0)
            if not color:
                return ""
            return "\x1b[0m" + "".join(f"\x1b[{c}m" for c in open_codes)

        shown = _TAG.sub(tag, text)
        return shown + "\x1b[0m" if color and open_codes else shown

    def print(self, text: object = "", *, markup: bool = True, **_rich_options: object) -> None:
        """One line as it is (never re-wrapped: a long token or URL stays whole for copy and paste)."""
        line = str(text)
        self.file.write((self._markup(line) if markup else line) + "\n")

    def rule(self, title: str = "") -> None:
        """A full-width line with `title` in the middle: ──── title ────."""
        middle = f" {title} " if title else ""
        side = max(0, self.width - cell_len(middle))
        self.file.write("─" * (side // 2) + middle + "─" * (side - side // 2) + "\n")


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


def print_records(columns: Sequence[str], rows: Sequence[Sequence[str]], hint: str) -> None:
    """One block per row (for results too wide for a table), and on stderr how to see every column."""
    for line in render_records(columns, rows):
        console.print(f"[bold]{line}[/]" if line.startswith("── row ") else line, markup=line.startswith("── row "))
    sys.stderr.write(f"({len(columns)} columns: too wide for a table here; {hint})\n")


def print_table(rows: Sequence[dict[str, Any]], columns: Sequence[str], title: str | None = None) -> None:
    """A table as wide as the terminal; ids are shown whole (never folded), timestamps as "5 min ago".

    Other cells fold to fit; when they would fold below readable, one block per row instead.
    """
    cells = [[table_cell(row.get(c)) for c in columns] for row in rows]
    natural = [max([len(c)] + [cell_len(ln) for r in cells for ln in r[i].split("\n")]) for i, c in enumerate(columns)]
    widths = fit_widths(natural, [_is_id(c) for c in columns], console.width)
    if widths is None:
        if title:
            console.print(title, markup=False)
        print_records(columns, cells, "--json prints every column")
        return
    lines = render_table(columns, cells, widths)
    if title:
        total = cell_len(lines[0])
        console.print(f"[italic]{title.center(total).rstrip()}[/]" if cell_len(title) < total else title)
    bold = console.color()
    in_header = True  # the header's lines (wrapped, it may take several) come before "┡━╇━┩"
    for line in lines:
        in_header = in_header and not line.startswith("┡")
        console.file.write(f"\x1b[1m{line}\x1b[0m\n" if bold and in_header and line.startswith("┃") else line + "\n")


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
