"""Results for people (a coloured table and a summary line), for machines (JSON), for the collector."""

from __future__ import annotations

import socket
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table
from rich.text import Text

from diagnostics.model import CheckResult, Status, exit_code
from outpost import __version__, contract

SCHEMA = "outpost.diagnose/v1"
STYLE = {Status.PASS: "green", Status.WARN: "yellow", Status.FAIL: "bold red", Status.SKIP: "dim"}
LABEL = {Status.PASS: "PASS", Status.WARN: "WARN", Status.FAIL: "FAIL", Status.SKIP: "skip"}


def summary(results: Sequence[CheckResult]) -> dict[str, int]:
    counts = Counter(str(r.status) for r in results)
    return {s.value: counts.get(s.value, 0) for s in Status}


def summary_line(results: Sequence[CheckResult], seconds: float) -> str:
    s = summary(results)
    verdict = "FAILED" if s["fail"] else "OK with warnings" if s["warn"] else "OK"
    return (
        f"{verdict}: {s['pass']} passed, {s['warn']} warnings, {s['fail']} failed, {s['skip']} skipped "
        f"in {seconds:.1f} s"
    )


def print_table(results: Sequence[CheckResult], console: Console, seconds: float, header: str | None = None) -> None:
    table = Table(show_lines=False, title=header, title_justify="left", expand=False)
    table.add_column("status", no_wrap=True)
    table.add_column("check", no_wrap=True)
    table.add_column("target", overflow="fold")
    table.add_column("finding / what to do", overflow="fold")
    for r in results:
        cell = Text(r.finding)
        if r.remediation and r.status in (Status.FAIL, Status.WARN):
            cell.append("\n→ " + r.remediation, style="cyan")
        if r.command and r.status is Status.FAIL:
            cell.append("\n$ " + r.command, style="dim")
        table.add_row(Text(LABEL[r.status], style=STYLE[r.status]), r.id, r.target or "", cell)
    console.print(table)
    style = "bold red" if exit_code(list(results)) else "bold yellow" if summary(results)["warn"] else "bold green"
    console.print(Text(summary_line(results, seconds), style=style))


def document(
    results: Sequence[CheckResult],
    *,
    started: datetime,
    seconds: float,
    worker: dict[str, Any] | None,
    server: str | None,
) -> dict[str, Any]:
    """The --json output (schema "outpost.diagnose/v1"); stable: fields are only ever added."""
    return {
        "schema": SCHEMA,
        "time": started.isoformat(),
        "host": socket.gethostname(),
        "version": __version__,
        "server": server,
        "worker": worker,
        "duration_ms": round(seconds * 1000, 1),
        "summary": summary(results),
        "exit_code": exit_code(list(results)),
        "results": [r.to_dict() for r in results],
    }


def post_results(client: httpx.Client, results: Sequence[CheckResult], *, time: datetime | None = None) -> None:
    """POST results to the collector as the worker (the client carries its bearer credential).

    Body: {"time": ISO 8601 UTC, "results": [CheckResult.to_dict(), ...]}. Raises
    outpost.http.ApiError when the server refuses or cannot be reached, after the usual retries.
    """
    from outpost.http import request

    body = {"time": (time or datetime.now(UTC)).isoformat(), "results": [r.to_dict() for r in results]}
    request(client, "POST", contract.AGENT_DIAGNOSTICS, json=body)
