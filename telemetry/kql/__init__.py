"""Outpost's KQL layer: duckdb-kql translates KQL to DuckDB SQL; this package fills its gaps.

- `engine`: the facade, the one place that knows duckdb-kql and DuckDB (and their errors);
- `tree`: the parse tree with exact spans, which every rewrite reads;
- `rewrites/`: one module per construct duckdb-kql lacks (make-series and the series functions,
  bin_at, minif/maxif, pack_all, project-reorder, search / `where *`, the scalar-around-aggregate
  lift, strcat flattening, ...);
- `results`: Kusto types and value formatting; `errors`: what a query can end with;
- `budget`: what one query may cost (deadline, nesting, SQL size, range length);
- `run`: one query end to end (`run_query`).
"""

from __future__ import annotations

from telemetry.kql.engine import parse
from telemetry.kql.errors import (
    QueryBusyError,
    QueryError,
    QueryResourceError,
    QuerySyntaxError,
    QueryTimeoutError,
    QueryTooComplexError,
    QueryUnsupportedError,
    UnknownColumnError,
    UnknownTableError,
)
from telemetry.kql.results import DEFAULT_MAX_ROWS, QueryResult, kusto_type, parse_timespan_seconds
from telemetry.kql.run import run_query

__all__ = [
    "DEFAULT_MAX_ROWS",
    "QueryBusyError",
    "QueryError",
    "QueryResourceError",
    "QueryResult",
    "QuerySyntaxError",
    "QueryTimeoutError",
    "QueryTooComplexError",
    "QueryUnsupportedError",
    "UnknownColumnError",
    "UnknownTableError",
    "kusto_type",
    "parse",
    "parse_timespan_seconds",
    "run_query",
]
