"""`outpost query 'KQL'`: run a Kusto query against the collector and print the rows."""

from __future__ import annotations

import csv
import json
import sys
from datetime import datetime
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
    fail,
    print_records,
    print_table,
)
from outpost.http_policy import ApiError

QUERY_PATH = "/api/v1/query"


def _cell(value: Any) -> str:
    """A value as --csv writes it: exact."""
    if value is None:
        return ""
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def _shown(value: Any) -> str:
    """A value for people: timestamps to the second (UTC), floats to 6 significant digits."""
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, str) and len(value) >= 19 and value[4] == "-" and value[10] == "T":
        try:
            when = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return value
        return when.strftime("%Y-%m-%d %H:%M:%S")
    return _cell(value)


def _too_wide(columns: list[str], rows: list[dict[str, str]], width: int) -> bool:
    """Whether a table would squeeze cells below readable: each column wants its header or up to 20 characters."""
    wanted = sum(min(20, max([len(c)] + [len(r[c]) for r in rows])) + 3 for c in columns) + 1
    return wanted > width


def query(
    kql: Annotated[str, typer.Argument(help="KQL, e.g. 'Heartbeat | summarize max(TimeGenerated) by Computer'.")],
    url: UrlOpt = None,
    token: TokenOpt = None,
    ca_file: CaFileOpt = None,
    as_json: JsonOpt = False,
    as_csv: Annotated[bool, typer.Option("--csv", help="Print CSV with a header row.")] = False,
    timeout: Annotated[float | None, typer.Option("--timeout", min=0.1, help="Query time limit in seconds.")] = None,
) -> None:
    """Run a KQL query on the collector's tables (Heartbeat, AzureDiagnostics, OTelSpans, ...)."""
    if as_json and as_csv:
        fail("choose one of --json and --csv", 2)
    if kql == "-":
        kql = sys.stdin.read()
    body: dict[str, Any] = {"query": kql}
    if timeout:
        body["timeout_s"] = timeout
    with admin_client(url, token, ca_file) as client:
        try:
            # A query is not idempotent in cost: one attempt, and wait as long as the server may run it.
            response = request(client, "POST", QUERY_PATH, json=body, attempts=1, timeout=(timeout or 30.0) + 10.0)
        except ApiError as exc:
            fail(exc.message)
        data = response.json()
    columns = [c["name"] for c in data.get("columns", [])]
    rows = data.get("rows", [])
    if as_json:
        sys.stdout.write(json.dumps([dict(zip(columns, r, strict=False)) for r in rows], indent=2) + "\n")
    elif as_csv:
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(columns)
        for r in rows:
            writer.writerow([_cell(v) for v in r])
    else:
        shown = [{c: _shown(v) for c, v in zip(columns, r, strict=False)} for r in rows]
        if columns and _too_wide(columns, shown, console.width):
            print_records(columns, [[r[c] for c in columns] for r in shown], "--json or --csv print every column")
        else:
            print_table(shown, columns)
        if data.get("truncated"):
            typer.echo(f"(truncated to {len(rows)} rows)", err=True)
