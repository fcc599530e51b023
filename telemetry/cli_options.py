"""The query-budget options `outpost server` and `outpost collector` share."""

from __future__ import annotations

from typing import Annotated

import typer

from telemetry.query_limits import DEFAULT_QUERY_MEMORY, DEFAULT_QUERY_THREADS, parse_size


def _size(value: str) -> str:
    try:
        parse_size(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    return value


QueryMemoryOpt = Annotated[
    str,
    typer.Option(
        "--query-memory",
        callback=_size,
        help="Memory one KQL query may use (DuckDB sorts, joins, aggregates); beyond it, it spills to disk"
        " up to 4x this, then fails. The telemetry database as a whole is capped at 2x this.",
    ),
]
QueryThreadsOpt = Annotated[
    int, typer.Option("--query-threads", min=1, max=256, help="DuckDB threads for queries (and ingest).")
]

DEFAULT_MEMORY = DEFAULT_QUERY_MEMORY
DEFAULT_THREADS = DEFAULT_QUERY_THREADS
