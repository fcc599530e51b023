"""Outpost's KQL layer: the one module that knows which engine runs KQL.

Queries are translated by the duckdb-kql library (KQL -> DuckDB SQL) and run on
a private DuckDB cursor. Where the library lacks an operator that published
Azure Monitor queries use, this layer rewrites the query *text* before handing
it over (never patching the library):

- `make-series` (materialized into a temp table) and `series_stats`,
  `series_fit_line`, `series_fit_2lines` (computed in Python on that table);
- `bin_at`, `minif`/`maxif`, `pack_all`, `project-reorder`, `search`,
  `where * has|contains ...`, `ingestion_time()`, a scalar wrapped around an
  aggregate in `summarize` (`datetime_diff("hour", now(), max(T))`), and
  `hint.strategy=partitioned` (a performance hint, dropped).

Rewrites that need the columns flowing into an operator learn them by running
the query up to that operator with `| take 0` on the same cursor.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import duckdb
import duckdb_kql

from telemetry import kqlbudget as kb
from telemetry import kqltext as kt
from telemetry.kqlerrors import (
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
from telemetry.series import DEFAULT_NAMES, SERIES_FUNCTIONS

__all__ = [
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
    "run_query",
]

MAX_REWRITES = 64
DEFAULT_MAX_ROWS = 500_000  # Kusto's default result truncation


@dataclass
class QueryResult:
    columns: list[tuple[str, str]]  # (name, Kusto type)
    rows: list[list[Any]]  # JSON-ready values
    truncated: bool = False


# DuckDB type -> Kusto scalar type
def kusto_type(duck_type: str) -> str:
    t = duck_type.upper()
    if t.startswith("TIMESTAMP") or t == "DATE":
        return "datetime"
    if t in ("VARCHAR", "TEXT", "STRING") or t.startswith("VARCHAR"):
        return "string"
    if t in ("BIGINT", "HUGEINT", "UBIGINT", "UINTEGER"):
        return "long"
    if t in ("INTEGER", "SMALLINT", "TINYINT", "USMALLINT", "UTINYINT"):
        return "int"
    if t in ("DOUBLE", "FLOAT", "REAL"):
        return "real"
    if t.startswith("DECIMAL"):
        return "decimal"
    if t == "BOOLEAN":
        return "bool"
    if t == "INTERVAL":
        return "timespan"
    if t == "UUID":
        return "guid"
    return "dynamic"  # JSON, LIST, STRUCT, MAP


def format_timespan(td: timedelta) -> str:
    """Kusto's timespan text: [-][d.]hh:mm:ss[.fffffff]."""
    total_us = td.days * 86_400_000_000 + td.seconds * 1_000_000 + td.microseconds
    sign = "-" if total_us < 0 else ""
    total_us = abs(total_us)
    days, rem = divmod(total_us, 86_400_000_000)
    hours, rem = divmod(rem, 3_600_000_000)
    minutes, rem = divmod(rem, 60_000_000)
    seconds, micros = divmod(rem, 1_000_000)
    text = f"{sign}{days}." if days else sign
    text += f"{hours:02d}:{minutes:02d}:{seconds:02d}"
    if micros:
        text += f".{micros:06d}0"
    return text


def format_datetime(dt: datetime) -> str:
    if dt.tzinfo is not None:
        dt = dt.astimezone(UTC).replace(tzinfo=None)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.%f") + "0Z"


def json_value(value: Any, ktype: str) -> Any:
    """A DuckDB value as Kusto's JSON shows it."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return format_datetime(value)
    if isinstance(value, date):
        return format_datetime(datetime(value.year, value.month, value.day))
    if isinstance(value, timedelta):
        return format_timespan(value)
    if isinstance(value, Decimal):
        return str(value) if ktype == "decimal" else float(value)
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if ktype == "dynamic" and isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    if isinstance(value, list | tuple):
        return [json_value(v, "dynamic") for v in value]
    if isinstance(value, dict):
        return {str(k): json_value(v, "dynamic") for k, v in value.items()}
    if isinstance(value, bytes):
        return value.hex()
    return value


def check_syntax(query: str) -> None:
    """Raise QuerySyntaxError naming the position (1-based line and column) of the first problem."""
    diagnostics = duckdb_kql.validate(query)
    if not diagnostics:
        return
    first = diagnostics[0]
    line, column = first.span.line, first.span.column
    # ANTLR reports an error at the token after the culprit; a lone `.` before a newline
    # (the classic `by JobId_g.` typo) is easier to find when we point at the dot itself.
    lines = query.split("\n")
    if 1 <= line <= len(lines) and column == 0 and line > 1 and "'.\\n'" in first.message:
        line -= 1
        column = len(lines[line - 1].rstrip()) - 1
    near = lines[line - 1].strip() if 1 <= line <= len(lines) else ""
    message = first.message
    if " expecting {" in message and len(message) > 200:  # ANTLR lists every token of the language
        message = message.split(" expecting {")[0]
    raise QuerySyntaxError(
        f"syntax error at line {line}, column {column + 1}: {message}" + (f" (in: {near[:120]})" if near else ""),
        line=line,
        column=column + 1,
    )


AGGREGATES = frozenset(
    {
        "count",
        "countif",
        "sum",
        "sumif",
        "avg",
        "avgif",
        "min",
        "max",
        "minif",
        "maxif",
        "arg_max",
        "arg_min",
        "stdev",
        "stdevif",
        "variance",
        "varianceif",
        "dcount",
        "dcountif",
        "make_list",
        "make_list_if",
        "make_set",
        "make_set_if",
        "makelist",
        "makeset",
        "any",
        "take_any",
        "take_anyif",
        "anyif",
        "percentile",
        "percentiles",
        "count_distinct",
        "hll",
        "tdigest",
        "make_bag",
    }
)


class _Session:
    """One query: a private cursor, a pinned clock, a budget (deadline and limits), its temp tables."""

    def __init__(
        self, cursor: duckdb.DuckDBPyConnection, tables: dict[str, list[str]], now: datetime, budget: kb.Budget
    ) -> None:
        self.cur = cursor
        self.tables = tables
        self.now = now
        self.budget = budget
        self.temp: dict[str, list[str]] = {}
        self.counter = 0
        self.probed = False

    # -- execution ---------------------------------------------------------

    def schema(self) -> dict[str, list[str]]:
        return {**self.tables, **self.temp}

    def _to_sql(self, query: str) -> Any:
        self.check_deadline()
        self.budget.begin_translation()
        try:
            return duckdb_kql.to_sql(query, schema=self.schema(), query_now=self.now, allow_write=False)
        finally:
            self.budget.end_translation()

    def translate(self, query: str) -> tuple[str, dict[str, Any]]:
        try:
            result = self._to_sql(query)
        except duckdb_kql.KqlSyntaxError as exc:
            raise QuerySyntaxError(f"syntax error: {exc}") from None
        except duckdb_kql.KqlUnsupportedError as exc:
            span = exc.span
            raise QueryUnsupportedError(
                str(exc), line=span.line if span else None, column=span.column + 1 if span else None
            ) from None
        except duckdb_kql.KqlSchemaError as exc:
            raise UnknownColumnError(str(exc)) from None
        except duckdb_kql.KqlError as exc:
            raise QueryError(str(exc)) from None
        if result.unbound:
            raise QueryError(f"query parameters without a value: {', '.join(result.unbound)}")
        sql = str(result)
        kb.check_sql_size(sql, query)
        return kb.guard_ranges(sql), dict(result.parameters)

    def sql_length(self, query: str) -> int | None:
        """Length of *query*'s SQL, or None when it does not translate on its own (a probe)."""
        try:
            return len(self._to_sql(query))
        except duckdb_kql.KqlError:
            return None

    def run_sql(self, sql: str, params: dict[str, Any] | list[Any] | None = None) -> duckdb.DuckDBPyConnection:
        self.check_deadline()
        try:
            return self.cur.execute(sql, params) if params else self.cur.execute(sql)
        except duckdb.Error as exc:
            raise self.duck_error(exc) from None

    def duck_error(self, exc: duckdb.Error) -> QueryError:
        """The QueryError a DuckDB failure means for the user."""
        text = str(exc)
        first = text.splitlines()[0] if text else type(exc).__name__
        if isinstance(exc, duckdb.InterruptException) or self.expired():
            return QueryTimeoutError(self.budget.timeout_message())
        if kb.RANGE_REFUSED in text:
            return QueryTooComplexError(kb.RANGE_REFUSED)
        if isinstance(exc, duckdb.OutOfMemoryException):
            return QueryResourceError(
                "query needs more memory (or temporary disk) than the collector allows (--query-memory);"
                f" narrow it with where, summarize or take ({first})"
            )
        if isinstance(exc, duckdb.CatalogException):
            m = re.search(r"Table with name (\S+) does not exist", text)
            if m:
                known = ", ".join(sorted(self.tables))
                return UnknownTableError(f"unknown table '{m.group(1)}' (Outpost has: {known})")
            m = re.search(r"Referenced column \"?([^\"\s]+)\"? not found", text)
            if m:
                return UnknownColumnError(f"unknown column '{m.group(1)}': {first}")
            return QueryError(first)
        if isinstance(exc, duckdb.BinderException):
            m = re.search(r"Referenced column \"?([^\"\s]+)\"? not found", first)
            if m:
                return UnknownColumnError(f"unknown column '{m.group(1)}'")
            return QueryError(f"query does not type-check: {first}")
        return QueryError(f"query failed: {first}")

    def expired(self) -> bool:
        return self.budget.expired()

    def check_deadline(self) -> None:
        if self.expired():
            raise QueryTimeoutError(self.budget.timeout_message())

    def execute(self, query: str) -> duckdb.DuckDBPyConnection:
        sql, params = self.translate(self.rewrite(query))
        return self.run_sql(sql, params)

    def columns(self, lets: str, prefix: str) -> list[tuple[str, str]]:
        """Names and DuckDB types of what *prefix* (a pipeline) produces."""
        cur = self.execute(f"{lets}{prefix}\n| take 0")
        desc = cur.description or []
        cur.fetchall()
        return [(d[0], str(d[1])) for d in desc]

    def materialize(self, query: str) -> str:
        """Run *query* into a temp table of this session; return its name."""
        sql, params = self.translate(self.rewrite(query))
        return self.table_from_sql(sql, params)

    def table_from_sql(self, sql: str, params: dict[str, Any] | list[Any] | None = None) -> str:
        self.counter += 1
        name = f"__outpost_t{self.counter}"
        self.run_sql(f'CREATE TEMP TABLE "{name}" AS {sql}', params)
        cols = [r[0] for r in self.cur.execute(f'DESCRIBE "{name}"').fetchall()]
        self.temp[name] = cols
        return name

    def scalars(self, lets: str, exprs: list[str]) -> list[Any]:
        items = ", ".join(f"__v{i} = {e}" for i, e in enumerate(exprs))
        row = self.execute(f"{lets}print {items}").fetchone()
        return list(row) if row else [None] * len(exprs)

    # -- rewriting -------------------------------------------------------

    def rewrite(self, query: str) -> str:
        query = _simple_rewrites(kt.strip_comments(query))
        if not self.probed:  # the user's query, once (rewrites re-enter with pieces of it)
            self.probed = True
            masked = kt.mask(query)
            kb.probe_calls(query, masked, self.sql_length, self.check_deadline)
            kb.probe_lets(query, masked, self.sql_length, self.check_deadline)
        for _ in range(MAX_REWRITES):
            masked = kt.mask(query)
            found = _first_gap(masked)
            if found is None:
                return _wrap_make_list(query)
            pos, handler = found
            query = handler(self, query, masked, pos)
        else:
            return _wrap_make_list(query)
        raise QueryUnsupportedError("query too complex to rewrite (too many unsupported constructs)")


# ---------------------------------------------------------------------------
# Rewrites that need no schema
# ---------------------------------------------------------------------------


def _simple_rewrites(query: str) -> str:
    masked = kt.mask(query)
    # ingestion_time() reads the server receive time every Outpost table carries.
    query = _sub_masked(query, masked, r"(?<![\w.])ingestion_time\s*\(\s*\)", lambda m: "_TimeReceived")
    masked = kt.mask(query)
    # `partitioned` (and other strategies) are performance hints; the answer is the same without them.
    query = _sub_masked(query, masked, r"\bhint\.strategy\s*=\s*partitioned\b", lambda m: "")
    masked = kt.mask(query)
    # Deprecated aliases Kusto still accepts.
    renames = {
        "makelist": "make_list",
        "makeset": "make_set",
        "notempty": "isnotempty",
        "notnull": "isnotnull",
        "isnotnull": "isnotnull",
    }
    query = _sub_masked(
        query, masked, r"(?<![\w.])(makelist|makeset|notempty|notnull)(?=\s*\()", lambda m: renames[m.group(1)]
    )
    masked = kt.mask(query)
    query = _rewrite_bin_at(query, masked)
    query = _rewrite_strcat(query)
    masked = kt.mask(query)
    return _rewrite_named_call_in_extend(query, masked)


_SIMPLE_ARG = re.compile(r"\s*(?:\"[^\"]*\"|'[^']*'|[A-Za-z_]\w*|\[\s*(?:\"[^\"]*\"|'[^']*')\s*\]|-?\d+(?:\.\d+)?)\s*")
_CALL_ARG = re.compile(r"\s*(strcat|case|iff|iif)\s*\(")


def _whole_call(masked: str, a: int, b: int) -> tuple[str, int, int] | None:
    """(name, open, close) when masked[a:b] is exactly one strcat/case/iff/iif call."""
    m = _CALL_ARG.match(masked, a, b)
    if not m:
        return None
    close = kt.match_paren(masked, m.end() - 1)
    if close >= b or masked[close + 1 : b].strip():
        return None
    return m.group(1), m.end() - 1, close


def _rewrite_strcat(query: str) -> str:
    """Keep nested `strcat` small: flatten `strcat(a, strcat(b, c))` and push `strcat` into `case`/`iff` branches.

    duckdb-kql renders each strcat argument through a type dispatch that repeats the
    operand about eight times, so `strcat(case(..., strcat(toint(x), 's'), ...), ' ago')`
    (the workbooks' "time ago" column) grows geometrically: ~700 KB of SQL that DuckDB
    needs ~10 s to bind. `strcat(p, case(c, v, d), q)` is `case(c, strcat(p, v, q), strcat(p, d, q))`
    exactly, and flattening is exact too; distribution only happens when the other
    arguments are literals or column names, so nothing grows.
    """
    for _ in range(500):
        masked = kt.mask(query)
        edit: tuple[int, int, str] | None = None
        for start, open_pos, close in kt.find_calls(masked, "strcat"):
            spans = kt.split_top(masked, open_pos + 1, close)
            for i, (a, b) in enumerate(spans):
                inner = _whole_call(masked, a, b)
                if inner is None:
                    continue
                name, i_open, i_close = inner
                if name == "strcat":
                    edit = (a, b, query[i_open + 1 : i_close])
                    break
                others = spans[:i] + spans[i + 1 :]
                if not all(_SIMPLE_ARG.fullmatch(masked, x, y) for x, y in others):
                    continue
                parts = [query[x:y].strip() for x, y in kt.split_top(masked, i_open + 1, i_close)]
                if name == "case" and len(parts) >= 3 and len(parts) % 2 == 1:
                    values = {*range(1, len(parts) - 1, 2), len(parts) - 1}
                elif name in ("iff", "iif") and len(parts) == 3:
                    values = {1, 2}
                else:
                    continue
                pre = [query[x:y].strip() for x, y in spans[:i]]
                post = [query[x:y].strip() for x, y in spans[i + 1 :]]
                branches = [f"strcat({', '.join([*pre, p, *post])})" if k in values else p for k, p in enumerate(parts)]
                edit = (start, close + 1, f"{name}({', '.join(branches)})")
                break
            if edit:
                break
        if edit is None:
            return query
        a, b, text = edit
        query = query[:a] + text + query[b:]
    return query


def _wrap_make_list(query: str) -> str:
    """duckdb-kql's make_list yields a SQL list, which `has`/`contains` cannot read; KQL's is dynamic."""
    masked = kt.mask(query)
    edits: list[tuple[int, str]] = []
    for m in re.finditer(r"(?<![\w-])summarize\b", masked):
        a_start, a_end, op_end = _summarize_parts(masked, m.start())
        names = []
        for a, b in kt.split_top(masked, a_start, a_end):
            nm = _NAME_EQ.match(masked, a)
            if nm and nm.end() <= b and re.match(r"\s*make_list\s*\(", masked[nm.end() : b]):
                names.append(masked[a : nm.end() - 1].strip())
        if names:
            wrap = ", ".join(f"{n} = todynamic({n})" for n in names)
            edits.append((op_end, f"\n| extend {wrap}\n"))
    for pos, text in reversed(edits):
        query = query[:pos] + text + query[pos:]
    return query


def _rewrite_named_call_in_extend(query: str, masked: str) -> str:
    """`extend round(rate = a / b, 2)` names the column `rate`, as Kusto does: -> `extend rate = round(a / b, 2)`."""
    edits: list[tuple[int, int, str]] = []
    for m in re.finditer(r"(?<![\w-])extend\b", masked):
        end = kt.operator_end(masked, m.end())
        for a, b in kt.split_top(masked, m.end(), end):
            cm = re.compile(r"\s*([A-Za-z_]\w*)\s*\(\s*([A-Za-z_]\w*)\s*=(?!=)").match(masked, a)
            if not cm or cm.end() > b:
                continue
            close = kt.match_paren(masked, masked.index("(", a))
            if masked[close + 1 : b].strip():
                continue
            fn, name = cm.group(1), cm.group(2)
            edits.append((a, b, f" {name} = {fn}({query[cm.end() : close]})" + query[close + 1 : b]))
    for a, b, text in reversed(edits):
        query = query[:a] + text + query[b:]
    return query


def _sub_masked(query: str, masked: str, pattern: str, repl: Any) -> str:
    out = []
    last = 0
    for m in re.finditer(pattern, masked):
        out.append(query[last : m.start()])
        out.append(repl(m))
        last = m.end()
    out.append(query[last:])
    return "".join(out)


def _rewrite_bin_at(query: str, masked: str) -> str:
    calls = kt.find_calls(masked, "bin_at")
    for start, open_pos, close in reversed(calls):
        args = [query[a:b].strip() for a, b in kt.split_top(masked, open_pos + 1, close)]
        if len(args) != 3:
            raise QueryError("bin_at() takes 3 arguments: bin_at(value, bin_size, fixed_point)")
        value, size, anchor = args
        expr = f"(({anchor}) + ({size}) * floor((({value}) - ({anchor})) / ({size}), 1))"
        # `summarize ... by bin_at(T, ...)` names its column T, as Kusto does.
        before = masked[:start].rstrip()
        if re.fullmatch(r"[A-Za-z_]\w*", value) and (before.endswith(",") or re.search(r"\bby$", before)):
            op = kt.operator_at(masked, start)
            if re.match(r"\s*summarize\b", masked[op.start : op.end]) and kt.depth_at(masked, op.start, start) == 0:
                expr = f"{value} = {expr}"
        query = query[:start] + expr + query[close + 1 :]
    return query


# ---------------------------------------------------------------------------
# Rewrites that need the input's columns, applied first-in-text-order
# ---------------------------------------------------------------------------


def _first_gap(masked: str) -> tuple[int, Any] | None:
    candidates: list[tuple[int, Any]] = []
    for m in re.finditer(r"(?<![\w-])make-series\b", masked):
        candidates.append((m.start(), _handle_make_series))
        break
    for m in re.finditer(r"(?<![\w-])project-reorder\b", masked):
        candidates.append((m.start(), _handle_project_reorder))
        break
    for m in re.finditer(r"(?<![\w.])pack_all\s*\(", masked):
        candidates.append((m.start(), _handle_pack_all))
        break
    for m in re.finditer(r"(?<![\w.])(minif|maxif|make_list_if|make_set_if)\s*\(", masked):
        candidates.append((m.start(), _handle_minmaxif))
        break
    for m in re.finditer(r"(?:\bwhere|\band|\bor|\()\s*(\*)\s*(!?has|!?contains|has_cs|contains_cs|==|=~)", masked):
        candidates.append((m.start(1), _handle_star))
        break
    for m in re.finditer(r"(?<![\w-])search\b", masked):
        if kt.pipeline_start(masked, m.start()) == m.start():
            candidates.append((m.start(), _handle_search))
            break
    for m in re.finditer(r"(?<![\w.])(series_stats|series_fit_line|series_fit_2lines)\s*\(", masked):
        candidates.append((m.start(), _handle_series_fn))
        break
    for m in re.finditer(r"(?<![\w-])summarize\b", masked):
        if _summarize_lift_items(masked, m.start()):
            candidates.append((m.start(), _handle_summarize_lift))
            break
    return min(candidates, key=lambda c: c[0]) if candidates else None


def _prefix(query: str, masked: str, pos: int) -> tuple[str, str, kt.Operator]:
    """(let statements before, pipeline text before the operator at pos, the operator)."""
    op = kt.operator_at(masked, pos)
    lets = query[: op.statement_start]
    if op.start == op.pipeline_start:
        raise QueryUnsupportedError("this operator needs an input table")
    prefix = query[op.pipeline_start : op.start - 1]  # up to (not including) the `|`
    return lets, prefix, op


def _handle_project_reorder(s: _Session, query: str, masked: str, pos: int) -> str:
    lets, prefix, op = _prefix(query, masked, pos)
    cols = [c for c, _ in s.columns(lets, prefix)]
    body_start = pos + len("project-reorder")
    specs = [query[a:b].strip() for a, b in kt.split_top(masked, body_start, op.end) if query[a:b].strip()]
    ordered: list[str] = []
    for spec in specs:
        parts = spec.split()
        name = parts[0].strip("[]'\"")
        order = parts[1].lower() if len(parts) > 1 else ""
        if "*" in name:
            rx = re.compile("^" + ".*".join(re.escape(p) for p in name.split("*")) + "$")
            matched = [c for c in cols if rx.match(c) and c not in ordered]
            if order in ("asc", "granny-asc"):
                matched.sort()
            elif order in ("desc", "granny-desc"):
                matched.sort(reverse=True)
            ordered += matched
        elif name in cols and name not in ordered:
            ordered.append(name)
        elif name not in cols:
            raise UnknownColumnError(f"project-reorder: unknown column '{name}'")
    ordered += [c for c in cols if c not in ordered]
    return query[: op.start] + " project " + ", ".join(kt.quote_ident(c) for c in ordered) + " " + query[op.end :]


def _handle_pack_all(s: _Session, query: str, masked: str, pos: int) -> str:
    lets, prefix, op = _prefix(query, masked, pos)
    cols = [c for c, _ in s.columns(lets, prefix)]
    open_pos = masked.index("(", pos)
    close = kt.match_paren(masked, open_pos)
    args = ", ".join(f"{kt.string_literal(c)}, {kt.quote_ident(c)}" for c in cols)
    return query[:pos] + f"bag_pack({args})" + query[close + 1 :]


_TYPED_NULL = {
    "TIMESTAMP": "datetime(null)",
    "BIGINT": "long(null)",
    "INTEGER": "int(null)",
    "DOUBLE": "real(null)",
    "INTERVAL": "timespan(null)",
    "BOOLEAN": "bool(null)",
}


_IF_AGGREGATES = {"minif": "min", "maxif": "max", "make_list_if": "make_list", "make_set_if": "make_set"}


def _handle_minmaxif(s: _Session, query: str, masked: str, pos: int) -> str:
    """`minif(x, p)` -> `min(iff(p, x, <typed null>))`: the plain aggregate skips the nulls."""
    lets, prefix, op = _prefix(query, masked, pos)
    open_pos = masked.index("(", pos)
    close = kt.match_paren(masked, open_pos)
    fn = masked[pos:open_pos].strip()
    args = [query[a:b].strip() for a, b in kt.split_top(masked, open_pos + 1, close)]
    if len(args) not in (2, 3) or (len(args) == 3 and not fn.startswith("make_")):
        raise QueryError(f"{fn}() takes 2 arguments: {fn}(expr, predicate)")
    value, pred = args[0], args[1]
    types = s.columns(lets, f"{prefix}\n| project __outpost_probe = ({value})")
    duck = (types[0][1].upper() if types else "").split("(")[0]
    agg = _IF_AGGREGATES[fn]
    if duck == "VARCHAR" and agg.startswith("make_"):
        # No null string in KQL: collect the value as a dynamic string, which make_list renders the same.
        value, null = f"pack_array({value})[0]", "dynamic(null)"
    else:
        null = _TYPED_NULL.get(duck, "")
    if not null:
        raise QueryUnsupportedError(f"{fn}() over a {duck or 'unknown'} value is not supported")
    extra = f", {args[2]}" if len(args) == 3 else ""
    return query[:pos] + f"{agg}(iff(({pred}), ({value}), {null}){extra})" + query[close + 1 :]


_NEGATED = {"!has": "has", "!contains": "contains"}


def _handle_star(s: _Session, query: str, masked: str, pos: int) -> str:
    lets, prefix, op = _prefix(query, masked, pos)
    m = re.compile(r"\*\s*(!?has|!?contains|has_cs|contains_cs|==|=~)\s*").match(masked, pos)
    assert m is not None
    operator = m.group(1)
    rhs_start = m.end()
    rhs_end = _term_end(masked, rhs_start)
    rhs = query[rhs_start:rhs_end].strip()
    if not rhs:
        raise QuerySyntaxError(f"'* {operator}' needs a value to look for")
    cols = [c for c, t in s.columns(lets, prefix)]
    if not cols:
        return query[:pos] + "false" + query[rhs_end:]
    positive = _NEGATED.get(operator, operator)
    terms = [f"tostring({kt.quote_ident(c)}) {positive} {rhs}" for c in cols]
    expr = "(" + " or ".join(terms) + ")"
    if operator in _NEGATED:
        expr = f"not{expr}"
    return query[:pos] + expr + " " + query[rhs_end:]


def _term_end(masked: str, start: int) -> int:
    """End of one primary term: a literal, identifier or call (with balanced brackets)."""
    i = start
    n = len(masked)
    if i < n and masked[i] in "'\"":
        q = masked[i]
        j = masked.find(q, i + 1)
        return n if j == -1 else j + 1
    m = re.compile(r"[@hH]?['\"]").match(masked, i)
    if m:
        j = masked.find(masked[m.end() - 1], m.end())
        return n if j == -1 else j + 1
    m = re.compile(r"[A-Za-z_][\w.]*").match(masked, i)
    if m:
        i = m.end()
        while i < n and masked[i] == " ":
            i += 1
        if i < n and masked[i] in "([":
            return kt.match_paren(masked, i) + 1
        return m.end()
    m = re.compile(r"-?[\d.]+\w*").match(masked, i)
    if m:
        return m.end()
    if i < n and masked[i] == "(":
        return kt.match_paren(masked, i) + 1
    return i


def _handle_search(s: _Session, query: str, masked: str, pos: int) -> str:
    op_end = kt.operator_end(masked, pos)
    body = query[pos + len("search") : op_end]
    mbody = masked[pos + len("search") : op_end]
    m = re.match(r"\s*kind\s*=\s*\w+\s*", mbody)
    offset = m.end() if m else 0
    tables = list(s.tables)
    m = re.compile(r"\s*in\s*\(").match(mbody, offset)
    if m:
        close = kt.match_paren(mbody, m.end() - 1)
        tables = [t.strip() for t in body[m.end() : close].split(",") if t.strip()]
        offset = close + 1
    pred = body[offset:].strip()
    if re.fullmatch(r"[@hH]?(['\"]).*\1", pred, flags=re.S):
        pred = f"* has {pred}"
    source = f"union withsource=SourceTable kind=outer {', '.join(tables)}"
    return query[:pos] + f"{source}\n| where {pred}\n" + query[op_end:]


# -- summarize: scalar around an aggregate ----------------------------------------


def _summarize_parts(masked: str, pos: int) -> tuple[int, int, int] | None:
    """(aggregates start, aggregates end, operator end) of the summarize at pos."""
    end = kt.operator_end(masked, pos)
    i = pos + len("summarize")
    m = re.compile(r"(\s*hint\.\w+\s*=\s*[\w.]+)*\s*").match(masked, i)
    if m:
        i = m.end()
    by = None
    for bm in re.finditer(r"\bby\b", masked[i:end]):
        if kt.depth_at(masked, i, i + bm.start()) == 0:
            by = i + bm.start()
            break
    return i, by if by is not None else end, end


def _agg_calls(masked: str, start: int, end: int) -> list[tuple[int, int]]:
    """Spans of aggregate calls at any depth in masked[start:end], outermost only."""
    spans: list[tuple[int, int]] = []
    for m in re.finditer(r"(?<![\w.])([A-Za-z_]\w*)\s*\(", masked[start:end]):
        if m.group(1) not in AGGREGATES:
            continue
        s0 = start + m.start()
        if any(a <= s0 < b for a, b in spans):
            continue
        close = kt.match_paren(masked, start + m.end() - 1)
        spans.append((s0, close + 1))
    return spans


_NAME_EQ = re.compile(r"\s*(\(.*?\)|\[.*?\]|[A-Za-z_]\w*)\s*=(?!=)")


def _summarize_lift_items(masked: str, pos: int) -> list[tuple[int, int, int]]:
    """Aggregate items that wrap an aggregate in a scalar: (item start, expr start, item end)."""
    parts = _summarize_parts(masked, pos)
    if parts is None:
        return []
    a_start, a_end, _ = parts
    found = []
    for s0, e0 in kt.split_top(masked, a_start, a_end):
        if not masked[s0:e0].strip():
            continue
        m = _NAME_EQ.match(masked, s0)
        expr_start = m.end() if m and m.end() <= e0 else s0
        expr = masked[expr_start:e0].strip()
        head = re.match(r"([A-Za-z_]\w*)\s*\(", expr)
        if head and head.group(1) in AGGREGATES:
            expr_at = masked.index(expr, expr_start)
            close = kt.match_paren(masked, expr_at + head.end() - 1)
            if close == expr_at + len(expr) - 1:
                continue  # the whole item is one aggregate call
        if _agg_calls(masked, expr_start, e0):
            found.append((s0, expr_start, e0))
    return found


def _handle_summarize_lift(s: _Session, query: str, masked: str, pos: int) -> str:
    """`summarize X = f(agg(..))` -> `summarize __a = agg(..) | extend X = f(__a) | project-away __a`."""
    items = _summarize_lift_items(masked, pos)
    a_start, a_end, op_end = _summarize_parts(masked, pos)
    lifted = {s0 for s0, _, _ in items}
    new_aggs: list[str] = []
    extends: list[str] = []
    temps: list[str] = []
    for k, (s0, expr_start, e0) in enumerate(items):
        m = _NAME_EQ.match(masked, s0)
        name = query[s0 : m.end() - 1].strip() if m and m.end() <= e0 else f"Column{k + 1}"
        pieces = []
        last = expr_start
        for j, (c0, c1) in enumerate(_agg_calls(masked, expr_start, e0)):
            tmp = f"__outpost_agg{k}_{j}"
            temps.append(tmp)
            new_aggs.append(f"{tmp} = {query[c0:c1]}")
            pieces.append(query[last:c0] + tmp)
            last = c1
        pieces.append(query[last:e0])
        extends.append(f"{name} = {''.join(pieces).strip()}")
    kept = [query[a:b].strip() for a, b in kt.split_top(masked, a_start, a_end) if a not in lifted]
    kept = [k for k in kept if k]
    new_op = f"{query[pos:a_start]}{', '.join(kept + new_aggs)} {query[a_end:op_end]}".rstrip()
    new_op += f"\n| extend {', '.join(extends)}\n| project-away {', '.join(temps)}\n"
    return query[:pos] + new_op + query[op_end:]


# -- make-series -------------------------------------------------------------------


def _keyword_positions(masked: str, start: int, end: int, words: tuple[str, ...]) -> dict[str, int]:
    found: dict[str, int] = {}
    for m in re.finditer(r"\b(" + "|".join(words) + r")\b", masked[start:end]):
        p = start + m.start()
        if kt.depth_at(masked, start, p) == 0 and m.group(1) not in found:
            found[m.group(1)] = p
    return found


def _default_agg_name(expr: str) -> str:
    m = re.match(r"\s*([A-Za-z_]\w*)\s*\(\s*([A-Za-z_]\w*)?", expr)
    if not m:
        return "Column1"
    return f"{m.group(1)}_{m.group(2) or ''}"


def _literal(value: Any) -> str:
    if isinstance(value, datetime):
        return f"datetime({format_datetime(value)})"
    if isinstance(value, timedelta):
        return f"{value.total_seconds()!r}s"
    if value is None:
        return "real(null)"
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value)


def _handle_make_series(s: _Session, query: str, masked: str, pos: int) -> str:
    lets, prefix, op = _prefix(query, masked, pos)
    body_start = pos + len("make-series")
    m = re.compile(r"\s*kind\s*=\s*\w+").match(masked, body_start)
    if m:
        body_start = m.end()
    kw = _keyword_positions(masked, body_start, op.end, ("on", "from", "to", "step", "by", "in"))
    if "on" not in kw:
        raise QuerySyntaxError("make-series needs 'on <datetime column>'")
    on_end = kw["on"] + 2
    axis_end = min([p for k, p in kw.items() if k != "on" and p > on_end] + [op.end])
    axis = query[on_end:axis_end].strip()
    group_text = query[kw["by"] + 2 : op.end].strip() if "by" in kw else ""
    range_end = kw.get("by", op.end)
    start_expr = end_expr = step_expr = None
    if "in" in kw and kw["in"] < range_end:
        rm = re.compile(r"in\s*range\s*\(").match(masked, kw["in"])
        if not rm:
            raise QuerySyntaxError("make-series: expected 'in range(start, stop, step)'")
        close = kt.match_paren(masked, rm.end() - 1)
        parts = [query[a:b].strip() for a, b in kt.split_top(masked, rm.end(), close)]
        if len(parts) != 3:
            raise QuerySyntaxError("make-series: range() takes start, stop, step")
        start_expr, end_expr, step_expr = parts
    else:
        order = sorted((p, k) for k, p in kw.items() if k in ("from", "to", "step") and p < range_end)
        for idx, (p, k) in enumerate(order):
            nxt = order[idx + 1][0] if idx + 1 < len(order) else range_end
            text = query[p + len(k) : nxt].strip()
            if k == "from":
                start_expr = text
            elif k == "to":
                end_expr = text
            else:
                step_expr = text
    if not step_expr:
        raise QuerySyntaxError("make-series needs 'step <timespan>'")

    # aggregations: [Name =] Agg [default = value], ...
    aggs: list[tuple[str, str, str]] = []
    for a, b in kt.split_top(masked, body_start, kw["on"]):
        if not masked[a:b].strip():
            continue
        dm = None
        for dmm in re.finditer(r"\bdefault\s*=", masked[a:b]):
            if kt.depth_at(masked, a, a + dmm.start()) == 0:
                dm = dmm
        default = query[a + dm.end() : b].strip() if dm else "0"
        item_end = a + dm.start() if dm else b
        nm = _NAME_EQ.match(masked, a)
        if nm and nm.end() <= item_end:
            name, expr = query[a : nm.end() - 1].strip(), query[nm.end() : item_end].strip()
        else:
            expr = query[a:item_end].strip()
            name = _default_agg_name(expr)
        aggs.append((name.strip("[]'\""), expr, default))

    source = s.materialize(f"{lets}{prefix}")
    values = s.scalars(lets, [e for e in (start_expr, end_expr, step_expr) if e] + [d for _, _, d in aggs])
    it = iter(values)
    start_v = next(it) if start_expr else None
    end_v = next(it) if end_expr else None
    step_v = next(it)
    defaults = [next(it) for _ in aggs]
    if not isinstance(step_v, timedelta) or step_v.total_seconds() <= 0:
        raise QueryUnsupportedError("make-series: only a positive timespan step on a datetime axis is supported")
    qaxis = kt.quote_ident(axis)
    if start_v is None or end_v is None:
        lo, hi = s.run_sql(f'SELECT min("{axis}"), max("{axis}") FROM "{source}"').fetchone() or (None, None)
        start_v = start_v if start_v is not None else lo
        end_v = end_v if end_v is not None else (hi + step_v if hi is not None else None)
    if start_v is None or end_v is None:
        start_v = end_v = s.now
    n_bins = max(0, math.ceil((end_v - start_v) / step_v))
    if n_bins > 100_000:
        raise QueryError(f"make-series would create {n_bins} bins; use a larger step")
    s_lit, e_lit, st_lit = _literal(start_v), _literal(end_v), _literal(step_v)

    group_items = [query[a:b].strip() for a, b in kt.split_top(masked, kw["by"] + 2, op.end)] if group_text else []
    by = ", ".join(group_items)
    groups = s.materialize(f"{source} | summarize by {by}") if group_items else None
    agg_items = ", ".join(f"{kt.quote_ident('__outpost_m' + str(i))} = {expr}" for i, (_, expr, _) in enumerate(aggs))
    binned = s.materialize(
        f"{source} | where {qaxis} >= {s_lit} and {qaxis} < {e_lit}"
        f" | summarize {agg_items} by __outpost_i = tolong(floor(({qaxis} - {s_lit}) / {st_lit}, 1))"
        + (f", {by}" if by else "")
    )
    gcols = s.temp[groups] if groups else []
    sel_groups = ", ".join(f'g."{c}"' for c in gcols)
    on_groups = " AND ".join(f'b."{c}" IS NOT DISTINCT FROM g."{c}"' for c in gcols)
    series_cols = []
    params: list[Any] = []
    for i, (name, _, _) in enumerate(aggs):
        params.append(defaults[i])
        series_cols.append(f'to_json(list(coalesce(b."__outpost_m{i}", ${len(params)}) ORDER BY x.i)) AS "{name}"')
    params += [start_v, step_v]
    p_start, p_step = len(params) - 1, len(params)
    axis_col = (
        f"to_json(list(strftime(${p_start}::TIMESTAMP + x.i * ${p_step}::INTERVAL, '%Y-%m-%dT%H:%M:%S.%f0Z')"
        f' ORDER BY x.i)) AS "{axis}"'
    )
    select = ", ".join(([sel_groups] if sel_groups else []) + series_cols + [axis_col])
    idx = f"(SELECT range AS i FROM range({n_bins}))"
    if groups:
        sql = (
            f'SELECT {select} FROM "{groups}" g CROSS JOIN {idx} x LEFT JOIN "{binned}" b'
            f" ON b.__outpost_i = x.i AND {on_groups} GROUP BY {sel_groups}"
        )
    else:
        sql = (
            f'SELECT {select} FROM {idx} x LEFT JOIN "{binned}" b ON b.__outpost_i = x.i'
            f' HAVING (SELECT count(*) FROM "{source}") > 0'
        )
    table = s.table_from_sql(sql, params)
    return query[: op.pipeline_start] + table + " " + query[op.end :]


# -- series_* functions ---------------------------------------------------------------


def _handle_series_fn(s: _Session, query: str, masked: str, pos: int) -> str:
    lets, prefix, op = _prefix(query, masked, pos)
    mm = re.match(r"\s*extend\b", masked[op.start : op.end])
    if not mm:
        raise QueryUnsupportedError("series_* functions are supported in 'extend' only")
    items_start = op.start + mm.end()
    source = s.materialize(f"{lets}{prefix}")
    s.check_deadline()
    existing = s.temp[source]
    new_cols: dict[str, tuple[str, list[Any]]] = {}
    rows = s.run_sql(f'SELECT * FROM "{source}"').fetchall()
    index = {c: i for i, c in enumerate(existing)}
    for a, b in kt.split_top(masked, items_start, op.end):
        item_m = masked[a:b]
        nm = _NAME_EQ.match(masked, a)
        if nm and nm.end() <= b:
            target = query[a : nm.end() - 1].strip()
            expr = query[nm.end() : b].strip()
        else:
            target, expr = "", query[a:b].strip()
        fm = re.fullmatch(r"(series_\w+)\s*\(\s*([A-Za-z_]\w*)\s*\)", expr)
        if not fm or fm.group(1) not in SERIES_FUNCTIONS:
            raise QueryUnsupportedError(
                f"in an extend with series_* functions, each item must be series_fn(column); got {item_m.strip()!r}"
            )
        fn, arg = fm.group(1), fm.group(2)
        if arg not in index:
            raise UnknownColumnError(f"unknown column '{arg}'")
        func, kinds = SERIES_FUNCTIONS[fn]
        if target.startswith("("):
            names = [t.strip() for t in target[1:-1].split(",")]
        elif target:
            names = [target]
        else:
            names = [f"{fn}_{arg}_{d}" for d in DEFAULT_NAMES[fn]]
        results = [func(_json_list(r[index[arg]])) for r in rows]
        for k, name in enumerate(names[: len(kinds)]):
            new_cols[name] = (kinds[k], [res[k] for res in results])
    # Rebuild the table with the new columns, matched on row position.
    rn_table = s.table_from_sql(f'SELECT row_number() OVER () - 1 AS __outpost_rn, * FROM "{source}"')
    n = len(rows)
    rows2 = s.run_sql(f'SELECT __outpost_rn FROM "{rn_table}" ORDER BY __outpost_rn').fetchall()
    assert len(rows2) == n
    sel, params = [], []
    for name, (kind, vals) in new_cols.items():
        params.append([json.dumps(v) if kind == "array" else v for v in vals])
        typ = {"num": "DOUBLE", "int": "BIGINT", "array": "JSON"}[kind]
        sel.append(f'UNNEST(${len(params)})::{typ} AS "{name}"')
    params.append(list(range(n)))
    values_sql = f"SELECT {', '.join(sel)}, UNNEST(${len(params)}) AS __outpost_rn2"
    # The original row order is kept: the renumbering and the Python pass read the same table.
    replace = [c for c in new_cols if c in existing]
    excl = f" EXCLUDE ({', '.join(chr(34) + c + chr(34) for c in replace + ['__outpost_rn'])})"
    table = s.table_from_sql(
        f'SELECT t.*{excl}, v.* EXCLUDE (__outpost_rn2) FROM "{rn_table}" t JOIN ({values_sql}) v'
        f" ON v.__outpost_rn2 = t.__outpost_rn ORDER BY t.__outpost_rn",
        params,
    )
    return query[: op.pipeline_start] + table + " " + query[op.end :]


def _json_list(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return None
    return value


_SOURCE_WORDS = frozenset(
    {
        "datatable",
        "print",
        "range",
        "union",
        "search",
        "materialize",
        "find",
        "evaluate",
        "externaldata",
        "database",
        "cluster",
        "table",
        "toscalar",
        "view",
        "let",
        "set",
        "declare",
        "alias",
        "pattern",
        "restrict",
        "getschema",
    }
)


MAX_RANGE_ROWS = kb.MAX_RANGE_ROWS


def _check_tables(query: str, tables: dict[str, list[str]]) -> None:
    """Name an unknown table up front (`Perf`, `Update`), before any other error could hide it."""
    masked = kt.mask(query)
    lets = set(re.findall(r"(?<![\w-])let\s+([A-Za-z_]\w*)", masked))
    known = set(tables) | lets
    for m in re.finditer(r"[A-Za-z_]\w*", masked):
        name = m.group(0)
        if name in known or name in _SOURCE_WORDS or kt.pipeline_start(masked, m.start()) != m.start():
            continue
        after = masked[m.end() :].lstrip()
        before = masked[: m.start()].rstrip()
        statement_level = not before or before.endswith(";") or re.search(r"(?<![\w-])let\s+\w+\s*=$", before)
        if after[:1] == "|" or (statement_level and after[:1] in (";", "")):
            line = masked.count("\n", 0, m.start()) + 1
            col = m.start() - (masked.rfind("\n", 0, m.start()) + 1) + 1
            raise UnknownTableError(
                f"unknown table '{name}' at line {line}, column {col} (Outpost has: {', '.join(sorted(tables))})",
                line=line,
                column=col,
            )


# ---------------------------------------------------------------------------
# Public entry point
# ---------------------------------------------------------------------------


def run_query(
    cursor: duckdb.DuckDBPyConnection,
    query: str,
    *,
    tables: dict[str, list[str]],
    timeout_s: float = 30.0,
    max_rows: int = DEFAULT_MAX_ROWS,
    now: datetime | None = None,
    deadline: float | None = None,
) -> QueryResult:
    """Run KQL on a private cursor; raise QueryError (or a subclass) for anything the user must fix.

    One deadline (*deadline*, a `time.monotonic()` instant, else *timeout_s* from now)
    covers parsing, rewriting, translation, execution and fetching: past it the cursor is
    interrupted and Python work is stopped, and the answer is QueryTimeoutError.
    Results stop at *max_rows* rows or about MAX_RESULT_BYTES, whichever comes first
    (`truncated`).
    """
    if not isinstance(query, str) or not query.strip():
        raise QueryError("empty query")
    budget = kb.Budget(timeout_s, deadline=deadline)
    try:
        budget.start(cursor)
        try:
            return _run(cursor, query, tables, budget, max_rows, now)
        finally:
            budget.stop()
    except kb.DeadlinePassed:
        raise QueryTimeoutError(budget.timeout_message()) from None
    except kb.TranslationTooLarge:
        depth, pos = kb.nesting(kt.mask(query))
        raise kb.too_complex(
            query, depth, pos, f"translating it needed more than {kb.MAX_TRANSLATION_GROWTH // 2**20} MB"
        ) from None
    except RecursionError:
        depth, pos = kb.nesting(kt.mask(query))
        raise kb.too_complex(
            query, depth, pos, "it is nested too deeply to translate (long chains of operators count as nesting too)"
        ) from None
    except (ArithmeticError, OverflowError) as exc:  # decimal.InvalidOperation, a timespan beyond any range
        length, pos = kb.longest_number(kt.mask(query))
        line, col = kb.line_col(query, pos) if length else (None, None)
        where = f" at line {line}, column {col}" if line else ""
        raise QueryError(f"number out of range{where} ({type(exc).__name__})", line=line, column=col) from None
    except MemoryError:
        raise QueryResourceError("query needs more memory than the collector has; narrow it") from None


def _run(
    cursor: duckdb.DuckDBPyConnection,
    query: str,
    tables: dict[str, list[str]],
    budget: kb.Budget,
    max_rows: int,
    now: datetime | None,
) -> QueryResult:
    kb.check_shape(query)
    budget.begin_translation()  # the parser is Python too
    try:
        check_syntax(query)
    finally:
        budget.end_translation()
    if re.match(r"\s*\.", kt.mask(query)):
        raise QueryUnsupportedError("control commands are served by /v1/rest/mgmt, not as queries")
    _check_tables(query, tables)
    now = now or datetime.now(UTC).replace(tzinfo=None)
    session = _Session(cursor, tables, now, budget)
    cur = session.execute(query)
    desc = cur.description or []
    columns = [(d[0], kusto_type(str(d[1]))) for d in desc]
    rows: list[list[Any]] = []
    size = 0
    truncated = False
    while not truncated:
        try:
            chunk = cur.fetchmany(min(FETCH_CHUNK, max_rows + 1 - len(rows)))
        except duckdb.Error as exc:
            raise session.duck_error(exc) from None
        if not chunk:
            break
        for r in chunk:
            if len(rows) >= max_rows or size > kb.MAX_RESULT_BYTES:
                truncated = True
                break
            row = [json_value(v, columns[i][1]) for i, v in enumerate(r)]
            size += sum(len(v) + 3 if type(v) is str else 8 for v in row)
            rows.append(row)
        session.check_deadline()
    return QueryResult(columns=columns, rows=rows, truncated=truncated)


FETCH_CHUNK = 10_000


def parse_timespan_seconds(text: str) -> float:
    """Kusto timespan text (`[d.]hh:mm:ss[.f]`) -> seconds; raises ValueError."""
    m = re.fullmatch(r"\s*(?:(\d+)\.)?(\d{1,2}):(\d{1,2}):(\d{1,2}(?:\.\d+)?)\s*", text)
    if not m:
        raise ValueError(f"not a timespan: {text!r}")
    days, hours, minutes, seconds = m.groups()
    return int(days or 0) * 86400 + int(hours) * 3600 + int(minutes) * 60 + float(seconds)
