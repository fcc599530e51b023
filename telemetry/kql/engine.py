"""The engine facade: the one module that knows duckdb-kql (KQL -> SQL) and DuckDB (runs it).

A `Session` is one query: a private cursor, a pinned clock, the query's budget and the temp
tables its rewrites materialize. Every failure of either library leaves here as a QueryError
the user can act on (`explain_duckdb_error`), never as raw library text alone.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Protocol

import duckdb
import duckdb_kql

from telemetry.kql import budget as kb
from telemetry.kql.errors import (
    QueryError,
    QueryResourceError,
    QuerySyntaxError,
    QueryTimeoutError,
    QueryTooComplexError,
    QueryUnsupportedError,
    UnknownColumnError,
    UnknownTableError,
)
from telemetry.kql.tree import Tree, line_col

# What to write instead of a construct duckdb-kql refuses, where Kusto offers one.
ALTERNATIVES = {
    "evaluate": "most plugins have no equivalent here; compute with summarize/extend",
    "scan": "use serialize with prev()/next() or a join",
    "partition": "use summarize ... by, or top-nested",
    "externaldata": "ingest the data into an Outpost table",
    "take_any": "use min() or max() when any value will do",
}


class Rewriter(Protocol):
    def __call__(self, session: Session, query: str) -> str: ...

    def charge_sql(self, total: int) -> None: ...


def parse(query: str) -> Tree:
    """The query's parse tree; QuerySyntaxError naming the first problem's line and column."""
    try:
        return Tree(query)
    except duckdb_kql.KqlSyntaxError as exc:
        first = exc.diagnostics[0] if exc.diagnostics else None
        if first is None:
            raise QuerySyntaxError(f"syntax error: {exc}") from None
        raise syntax_error(query, first.span.line, first.span.column, first.message) from None


def syntax_error(query: str, line: int, column: int, message: str) -> QuerySyntaxError:
    # ANTLR reports an error at the token after the culprit; a lone `.` before a newline
    # (the classic `by JobId_g.` typo) is easier to find when we point at the dot itself.
    lines = query.split("\n")
    if 1 <= line <= len(lines) and column == 0 and line > 1 and "'.\\n'" in message:
        line -= 1
        column = len(lines[line - 1].rstrip()) - 1
    near = lines[line - 1].strip() if 1 <= line <= len(lines) else ""
    if " expecting {" in message and len(message) > 200:  # ANTLR lists every token of the language
        message = message.split(" expecting {")[0]
    return QuerySyntaxError(
        f"syntax error at line {line}, column {column + 1}: {message}" + (f" (in: {near[:120]})" if near else ""),
        line=line,
        column=column + 1,
    )


def unsupported(exc: duckdb_kql.KqlUnsupportedError) -> QueryUnsupportedError:
    """duckdb-kql's refusal, with the construct's name, its position and an alternative where one exists."""
    span = exc.span
    where = f" at line {span.line}, column {span.column + 1}" if span else ""
    construct = str(exc.construct)
    name = construct.split(":", 1)[-1].removesuffix("Operator").lower()
    hint = ALTERNATIVES.get(name) or exc.hint or ""
    message = f"unsupported: {construct}{where}" + (f" ({hint})" if hint else "")
    return QueryUnsupportedError(message, line=span.line if span else None, column=span.column + 1 if span else None)


class Session:
    """One query on a private cursor: translation, execution, temp tables."""

    def __init__(
        self,
        cursor: duckdb.DuckDBPyConnection,
        tables: dict[str, list[str]],
        now: datetime,
        budget: kb.Budget,
        rewriter: Rewriter,
    ) -> None:
        self.cur = cursor
        self.tables = tables
        self.now = now
        self.budget = budget
        self.rewriter = rewriter
        self.temp: dict[str, list[str]] = {}
        self.counter = 0
        self._columns: dict[str, list[tuple[str, str]]] = {}
        self.sql_total = 0  # SQL translated for this query, rewrites' sub-queries included

    def schema(self) -> dict[str, list[str]]:
        return {**self.tables, **self.temp}

    # -- translation -------------------------------------------------------------

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
            first = exc.diagnostics[0] if exc.diagnostics else None
            if first is None:
                raise QuerySyntaxError(f"syntax error: {exc}") from None
            raise syntax_error(query, first.span.line, first.span.column, first.message) from None
        except duckdb_kql.KqlUnsupportedError as exc:
            raise unsupported(exc) from None
        except duckdb_kql.KqlSchemaError as exc:
            if exc.hint:  # e.g. two columns that differ only in case, which DuckDB cannot keep apart
                raise QueryError(f"schema error at '{exc.name}': {exc.hint}") from None
            raise UnknownColumnError(f"unknown column '{exc.name}'") from None
        except duckdb_kql.KqlError as exc:
            raise QueryError(str(exc)) from None
        if result.unbound:
            raise QueryError(f"query parameters without a value: {', '.join(result.unbound)}")
        sql = str(result)
        kb.check_sql_size(sql, query)
        self.sql_total += len(sql)
        self.rewriter.charge_sql(self.sql_total)
        return kb.guard_ranges(sql), dict(result.parameters)

    def sql_length(self, query: str) -> int | None:
        """Length of *query*'s SQL, or None when it does not translate on its own (a budget probe)."""
        try:
            return len(self._to_sql(query))
        except duckdb_kql.KqlError:
            return None

    # -- execution ---------------------------------------------------------------

    def run_sql(self, sql: str, params: dict[str, Any] | list[Any] | None = None) -> duckdb.DuckDBPyConnection:
        self.check_deadline()
        try:
            return self.cur.execute(sql, params) if params else self.cur.execute(sql)
        except duckdb.Error as exc:
            raise self.duck_error(exc) from None

    def execute(self, query: str) -> duckdb.DuckDBPyConnection:
        """Rewrite, translate and run KQL (a rewrite's sub-query re-enters here)."""
        sql, params = self.translate(self.rewriter(self, query))
        return self.run_sql(sql, params)

    def columns(self, lets: str, prefix: str) -> list[tuple[str, str]]:
        """Names and DuckDB types of what *prefix* (a pipeline) produces (asked once per pipeline)."""
        key = f"{lets}{prefix}"
        if key not in self._columns:
            cur = self.execute(f"{lets}{prefix}\n| take 0")
            desc = cur.description or []
            cur.fetchall()
            self._columns[key] = [(d[0], str(d[1])) for d in desc]
        return self._columns[key]

    def materialize(self, query: str) -> str:
        """Run *query* into a temp table of this session; return its name."""
        sql, params = self.translate(self.rewriter(self, query))
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

    # -- deadline and errors -------------------------------------------------------

    def expired(self) -> bool:
        return self.budget.expired()

    def check_deadline(self) -> None:
        if self.expired():
            raise QueryTimeoutError(self.budget.timeout_message())

    def duck_error(self, exc: duckdb.Error) -> QueryError:
        """The QueryError a DuckDB failure means for the user."""
        if isinstance(exc, duckdb.InterruptException) or self.expired():
            return QueryTimeoutError(self.budget.timeout_message())
        return explain_duckdb_error(exc, self.tables)


# DuckDB binder messages that all mean "this name is not a column here".
_COLUMN_MISSING = (
    re.compile(r'Referenced column "?([^"\s]+)"? not found'),
    re.compile(r'Column "([^"]+)" referenced that exists in the SELECT clause'),
    re.compile(r'Alias with name ""?([^"]+?)""? exists, but aliases cannot be used'),
    re.compile(r'Column "([^"]+)" in EXCLUDE list not found'),
    re.compile(r'Column "([^"]+)" in REPLACE list not found'),
)


def missing_column(text: str) -> str | None:
    for rx in _COLUMN_MISSING:
        m = rx.search(text)
        if m:
            return m.group(1)
    return None


def explain_duckdb_error(exc: duckdb.Error, tables: dict[str, list[str]]) -> QueryError:
    text = str(exc)
    first = text.splitlines()[0] if text else type(exc).__name__
    if kb.RANGE_REFUSED in text:
        return QueryTooComplexError(kb.RANGE_REFUSED)
    if isinstance(exc, duckdb.OutOfMemoryException):
        return QueryResourceError(
            "query needs more memory (or temporary disk) than the collector allows (--query-memory);"
            f" narrow it with where, summarize or take ({first})"
        )
    m = re.search(r"Table with name (\S+) does not exist", text)
    if m:
        known = ", ".join(sorted(tables))
        return UnknownTableError(f"unknown table '{m.group(1)}' (Outpost has: {known})")
    column = missing_column(text)
    if column is not None:
        return UnknownColumnError(f"unknown column '{column}'")
    if isinstance(exc, duckdb.BinderException):
        m = re.search(r"No function matches the given name and argument types '([^']*)'", text)
        if m:
            return QueryError(f"a function is called with arguments of the wrong type: {m.group(1)}")
        return QueryError(f"the query's types do not fit together (DuckDB: {first.removeprefix('Binder Error: ')})")
    if isinstance(exc, duckdb.ConversionException | duckdb.InvalidInputException):
        return QueryError(f"a value could not be converted while running the query (DuckDB: {first})")
    return QueryError(f"query failed while running (DuckDB: {first})")


def locate_column(tree: Tree, name: str) -> tuple[int, int, int] | None:
    """(position, line, column) of the first reference to column *name* in the query."""
    for node in tree.nodes("IdentifierName"):
        if tree.text(node) == name:
            pos = node.start.start
            line, col = line_col(tree.query, pos)
            return pos, line, col
    return None
