"""`outpost query 'KQL'`: run a Kusto query against the collector and print the rows."""

from __future__ import annotations

import csv
import json
import sys
from typing import Annotated, Any

import typer

from outpost.commands.client import request
from outpost.commands.common import CaFileOpt, JsonOpt, TokenOpt, UrlOpt, admin_client, fail, print_table
from outpost.http_policy import ApiError

QUERY_PATH = "/api/v1/query"


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


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
        print_table([{c: _cell(v) for c, v in zip(columns, r, strict=False)} for r in rows], columns)
        if data.get("truncated"):
            typer.echo(f"(truncated to {len(rows)} rows)", err=True)
