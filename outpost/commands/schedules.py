"""`outpost schedule ...`: start a runbook once or every N minutes/hours/days/weeks."""

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
    done,
    fail,
    name_path,
    parse_params,
    print_fields,
    print_json,
    print_table,
    set_enabled,
)

app = typer.Typer(help="Schedules that start runbooks (one-time or recurring, in a time zone).", no_args_is_help=True)
COLUMNS = ["name", "runbook", "run_on", "frequency", "interval", "next_run_at", "enabled"]
UNITS = {"minute": "Minute", "hour": "Hour", "day": "Day", "week": "Week"}


def _every(value: str) -> tuple[str, int]:
    """'15m', '2h', '1d', '1w', '30 minutes', '1 day' -> (frequency, interval)."""
    text = value.strip().lower().replace(" ", "")
    digits = "".join(ch for ch in text if ch.isdigit())
    unit = text[len(digits) :].rstrip("s")
    unit = {"m": "minute", "min": "minute", "h": "hour", "d": "day", "w": "week"}.get(unit, unit)
    if not digits or unit not in UNITS or not text.startswith(digits):
        fail(f"--every {value!r}: use a number and a unit, e.g. 15m, 2h, 1d, 1w (or '30 minutes')", 2)
    return UNITS[unit], int(digits)


@app.command("create")
def create(
    name: str,
    runbook: Annotated[str, typer.Option("--runbook", help="The (published) runbook to start.")],
    run_on: Annotated[str, typer.Option("--run-on", help="The worker group to run it on.")],
    every: Annotated[
        str | None, typer.Option("--every", help="Recurrence, e.g. 15m, 2h, 1d, 1w; omit for a one-time schedule.")
    ] = None,
    start: Annotated[
        str | None,
        typer.Option(
            "--start", help="First run, ISO 8601 (e.g. 2030-01-31T08:00); without an offset it is in --time-zone."
        ),
    ] = None,
    time_zone: Annotated[str, typer.Option("--time-zone", help="IANA time zone, e.g. Europe/Berlin.")] = "UTC",
    expiry: Annotated[str | None, typer.Option("--expiry", help="No runs after this time (ISO 8601).")] = None,
    param: Annotated[
        list[str] | None, typer.Option("--param", "-p", help="VALUE (positional) or NAME=VALUE; repeatable.")
    ] = None,
    description: Annotated[str, typer.Option("--description")] = "",
    disabled: Annotated[bool, typer.Option("--disabled", help="Create it disabled.")] = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
    ca_file: CaFileOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Create a schedule linked to a runbook, its parameters and a worker group."""
    if every is None:
        if start is None:
            fail("a one-time schedule needs --start (or pass --every for a recurring one)", 2)
        frequency, interval = "OneTime", 1
    else:
        frequency, interval = _every(every)
    body = {
        "runbook": runbook,
        "run_on": run_on,
        "frequency": frequency,
        "interval": interval,
        "start_time": start,
        "time_zone": time_zone,
        "expiry_time": expiry,
        "params": parse_params(param or []),
        "description": description,
        "enabled": not disabled,
    }
    with admin_client(url, token, ca_file) as client:
        view = request(client, "POST", f"/api/v1/schedules/{name_path(name, 'schedule')}", json=body).json()
    if as_json:
        print_json(view)
    else:
        console.print(f"schedule {name} created; next run at {view['next_run_at']}", highlight=False)


@app.command("list")
def list_(url: UrlOpt = None, token: TokenOpt = None, ca_file: CaFileOpt = None, as_json: JsonOpt = False) -> None:
    """List schedules with their next and last run."""
    with admin_client(url, token, ca_file) as client:
        rows = request(client, "GET", "/api/v1/schedules").json()
    print_json(rows) if as_json else print_table(rows, COLUMNS)


@app.command("show")
def show(
    name: str, url: UrlOpt = None, token: TokenOpt = None, ca_file: CaFileOpt = None, as_json: JsonOpt = False
) -> None:
    """Show a schedule."""
    with admin_client(url, token, ca_file) as client:
        view = request(client, "GET", f"/api/v1/schedules/{name_path(name, 'schedule')}").json()
    if as_json:
        print_json(view)
    else:
        print_fields(view, width=12)


@app.command("enable")
def enable(
    name: str, url: UrlOpt = None, token: TokenOpt = None, ca_file: CaFileOpt = None, as_json: JsonOpt = False
) -> None:
    """Enable a schedule (its next run is the next occurrence from now)."""
    set_enabled("schedule", name, True, url, token, ca_file, as_json)


@app.command("disable")
def disable(
    name: str, url: UrlOpt = None, token: TokenOpt = None, ca_file: CaFileOpt = None, as_json: JsonOpt = False
) -> None:
    """Disable a schedule."""
    set_enabled("schedule", name, False, url, token, ca_file, as_json)


@app.command("delete")
def delete(
    name: str, url: UrlOpt = None, token: TokenOpt = None, ca_file: CaFileOpt = None, as_json: JsonOpt = False
) -> None:
    """Delete a schedule (jobs it started are kept)."""
    with admin_client(url, token, ca_file) as client:
        request(client, "DELETE", f"/api/v1/schedules/{name_path(name, 'schedule')}")
    done(as_json, {"name": name, "deleted": True}, f"schedule {name} deleted")
