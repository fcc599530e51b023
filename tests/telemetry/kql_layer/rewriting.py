"""Run one query's rewrites on a real DuckDB cursor and report the KQL handed to duckdb-kql."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import duckdb

from telemetry import kql
from telemetry.kql import budget as kb
from telemetry.kql.engine import Session, parse
from telemetry.kql.rewrites import Rewriter

NOW = datetime(2024, 1, 2, 12, 0, 0)

# The small table every case reads (as a let, so no store is needed).
T = (
    "let T = datatable(Name: string, N: long, Ts: datetime, Ok: bool) [\n"
    "  'a', 1, datetime(2024-01-01 00:10), true,\n"
    "  'b', 5, datetime(2024-01-01 01:20), false,\n"
    "  'a', 3, datetime(2024-01-01 02:30), true,\n"
    "];\n"
)


def rewritten(query: str, tables: dict[str, list[str]] | None = None) -> str:
    """The KQL the rewrites produce for *query* (temp tables live on a throwaway connection)."""
    con = duckdb.connect()
    budget = kb.Budget(30.0)
    budget.start(con)
    try:
        rewriter = Rewriter()
        session = Session(con.cursor(), tables or {}, NOW, budget, rewriter)
        return rewriter(session, query, parse(query))
    finally:
        budget.stop()
        con.close()


def rows(query: str, tables: dict[str, list[str]] | None = None) -> list[list[Any]]:
    con = duckdb.connect()
    try:
        return kql.run_query(con.cursor(), query, tables=tables or {}, now=NOW).rows
    finally:
        con.close()


def after_lets(text: str) -> str:
    """The last statement (the cases' own query, after the shared `let T = ...;`)."""
    return text[len(T) :] if text.startswith(T) else text
