"""`outpost alerts ...`: the built-in (KQL) alerts and their maintenance windows."""

from __future__ import annotations

import difflib
from typing import Annotated

import typer

from outpost.commands.client import Client, request
from outpost.commands.common import (
    CaFileOpt,
    JsonOpt,
    TokenOpt,
    UrlOpt,
    admin_client,
    console,
    done,
    fail,
    id_path,
    print_json,
    print_table,
)
from outpost.http_policy import ApiError

app = typer.Typer(help="Show built-in alerts; silence workers or groups for maintenance.", no_args_is_help=True)
maintenance = typer.Typer(help="Maintenance windows: silence a worker's or group's alerts.", no_args_is_help=True)
app.add_typer(maintenance, name="maintenance")

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _seconds(text: str) -> float:
    unit = text[-1:].lower()
    try:
        return float(text[:-1]) * _UNITS[unit] if unit in _UNITS else float(text)
    except ValueError:
        fail(f"--for {text!r}: expected a duration like 30m, 2h or 1d", 2)


@app.command("list")
def list_(
    state: Annotated[str | None, typer.Option(help="Only firing, suppressed or resolved alerts.")] = None,
    url: UrlOpt = None,
    token: TokenOpt = None,
    ca_file: CaFileOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List alerts of the built-in evaluator: firing, suppressed (maintenance) and recently resolved."""
    if state not in (None, "firing", "suppressed", "resolved"):
        fail("--state must be firing, suppressed or resolved", 2)
    with admin_client(url, token, ca_file) as client:
        body = request(client, "GET", "/api/v1/alerts", params={"state": state} if state else None).json()
    if as_json:
        print_json(body["alerts"])
        return
    rows = [{**a, "summary": a["annotations"].get("summary", ""), "value": f"{a['value']:g}"} for a in body["alerts"]]
    columns = ["state", "name", "severity", "worker", "group", "value", "starts_at", "ends_at", "summary"]
    print_table(rows, columns, title="Alerts" if rows else "Alerts: none")
    if body.get("delivery_error"):
        console.print(f"[yellow]delivery failing:[/] {body['delivery_error']}", highlight=False)


@app.command("rules")
def rules(url: UrlOpt = None, token: TokenOpt = None, ca_file: CaFileOpt = None, as_json: JsonOpt = False) -> None:
    """List the KQL alert rules with their last evaluation."""
    with admin_client(url, token, ca_file) as client:
        items = request(client, "GET", "/api/v1/alerts/rules").json()
    if as_json:
        print_json(items)
        return
    rows = [{**r, "condition": f"{r['metric_column'] or 'rows'} {r['operator']} {r['threshold']:g}"} for r in items]
    print_table(rows, ["name", "severity", "frequency_seconds", "condition", "last_evaluated", "last_error"])


def _refuse_unknown(client: Client, kind: str, name: str) -> None:
    """A typo must not silence nothing for an hour: refuse a worker or group that is not registered.

    A standalone collector has no worker registry (404): then the name cannot be checked here.
    """
    try:
        known = [row["name"] for row in request(client, "GET", f"/api/v1/{kind}s").json()]
    except ApiError as exc:
        if exc.status == 404:
            return
        raise
    if name in known:
        return
    near = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
    hint = f"; did you mean {' or '.join(near)}?" if near else f"; see `outpost {kind} list`"
    fail(f"no {kind} named {name!r} is registered{hint}", 2)


@maintenance.command("add")
def maintenance_add(
    worker: Annotated[str | None, typer.Option(help="Worker to silence.")] = None,
    group: Annotated[str | None, typer.Option(help="Worker group to silence.")] = None,
    for_: Annotated[str, typer.Option("--for", help="How long, e.g. 30m, 2h, 1d.")] = "1h",
    comment: Annotated[str, typer.Option(help="Why (shown in listings).")] = "",
    url: UrlOpt = None,
    token: TokenOpt = None,
    ca_file: CaFileOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Silence a worker's or a group's alerts from now on, for a while."""
    if not worker and not group:
        fail("give --worker or --group", 2)
    body = {"worker": worker, "group": group, "duration_seconds": _seconds(for_), "comment": comment}
    with admin_client(url, token, ca_file) as client:
        if worker:
            _refuse_unknown(client, "worker", worker)
        if group:
            _refuse_unknown(client, "group", group)
        window = request(client, "POST", "/api/v1/alerts/maintenance", json=body).json()
    if as_json:
        print_json(window)
    else:
        target = f"worker {worker}" if worker else f"group {group}"
        console.print(
            f"maintenance window {window['id']}: {target} silenced until {window['ends_at']}", highlight=False
        )


@maintenance.command("list")
def maintenance_list(
    url: UrlOpt = None, token: TokenOpt = None, ca_file: CaFileOpt = None, as_json: JsonOpt = False
) -> None:
    """List current and upcoming maintenance windows."""
    with admin_client(url, token, ca_file) as client:
        items = request(client, "GET", "/api/v1/alerts/maintenance").json()
    if as_json:
        print_json(items)
    else:
        print_table(items, ["id", "worker", "group", "starts_at", "ends_at", "active", "comment"])


@maintenance.command("remove")
def maintenance_remove(
    window_id: str, url: UrlOpt = None, token: TokenOpt = None, ca_file: CaFileOpt = None, as_json: JsonOpt = False
) -> None:
    """End a maintenance window now."""
    with admin_client(url, token, ca_file) as client:
        request(client, "DELETE", f"/api/v1/alerts/maintenance/{id_path(window_id)}")
    done(as_json, {"id": window_id, "removed": True}, f"maintenance window {window_id} removed")
