"""One query, end to end: shape checks, parse, table names, rewrites, translation, execution, fetch.

One deadline (the `Budget`) covers every phase; every failure leaves as a QueryError subclass.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import duckdb

from telemetry.kql import budget as kb
from telemetry.kql import lexical
from telemetry.kql.engine import Session, locate_column, parse
from telemetry.kql.errors import (
    QueryError,
    QueryResourceError,
    QueryTimeoutError,
    QueryTooComplexError,
    QueryUnsupportedError,
    UnknownColumnError,
    UnknownTableError,
)
from telemetry.kql.results import DEFAULT_MAX_ROWS, QueryResult, json_value, kusto_type
from telemetry.kql.rewrites import Rewriter
from telemetry.kql.tree import Tree, ancestor, bare_name, children, end, line_col, rule, rule_children, start

FETCH_CHUNK = 10_000


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
        depth, pos = kb.nesting(lexical.mask(query))
        raise kb.too_complex(
            query, depth, pos, f"translating it needed more than {kb.MAX_TRANSLATION_GROWTH // 2**20} MB"
        ) from None
    except RecursionError:
        depth, pos = kb.nesting(lexical.mask(query))
        raise kb.too_complex(
            query, depth, pos, "it is nested too deeply to translate (long chains of operators count as nesting too)"
        ) from None
    except (ArithmeticError, OverflowError) as exc:  # decimal.InvalidOperation, a timespan beyond any range
        length, pos = kb.longest_number(lexical.mask(query))
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
        tree = parse(lexical.strip_comments(query))
    finally:
        budget.end_translation()
    if tree.root is None:
        raise QueryUnsupportedError("control commands are served by /v1/rest/mgmt, not as queries")
    check_tables(tree, tables)
    tree, visualization = take_render(tree)
    rewriter = Rewriter()
    rewriter.original = tree.query
    session = Session(cursor, tables, now or datetime.now(UTC).replace(tzinfo=None), budget, rewriter)
    user_tree, tree = tree, rewriter.simple(tree)
    changed = tree.query != user_tree.query
    try:
        masked = lexical.mask(tree.query)
        kb.probe_calls(tree.query, masked, session.sql_length, session.check_deadline)
        kb.probe_lets(tree.query, masked, session.sql_length, session.check_deadline)
        sql, params = session.translate(rewriter(session, tree.query, tree))
        cur = session.run_sql(sql, params)
    except UnknownColumnError as exc:
        raise explain_unknown_column(session, user_tree, exc) from None
    except QueryTooComplexError as exc:
        if not changed or exc.line is None:
            raise
        # Measured on the rewritten text: its position would point into text the user never wrote.
        why = exc.message.split(": ", 1)[-1]
        raise QueryTooComplexError(f"query too complex (after Outpost's rewrites of it): {why}") from None
    columns = [(d[0], kusto_type(str(d[1]))) for d in cur.description or []]
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
    return QueryResult(columns=columns, rows=rows, truncated=truncated, visualization=visualization)


# -- names ---------------------------------------------------------------------------

_DECLARATIONS = ("LetVariableDeclaration", "LetFunctionDeclaration", "LetViewDeclaration")
_DECLARATIONS += ("LetMaterializeDeclaration", "LetEntityGroupDeclaration", "TabularParameter", "ScalarParameter")


def check_tables(tree: Tree, tables: dict[str, list[str]]) -> None:
    """Name an unknown table up front (`Perf`, `Update`), before any other error could hide it."""
    known = set(tables)
    for decl in tree.nodes(*_DECLARATIONS):
        names = [c for c in rule_children(decl) if bare_name(tree, c)]
        if names:
            known.add(tree.text(names[0]))
    pipes = (rule_children(p) for p in tree.nodes("PipeExpression"))
    sources = [kids[0] for kids in pipes if len(kids) > 1]  # a pipeline's source, `T | ...`
    sources += [rule_children(s)[0] for s in tree.nodes("QueryStatement") if rule_children(s)]
    for source in sorted(sources, key=start):
        name = bare_name(tree, source)
        if name is not None and name not in known:
            line, col = line_col(tree.query, start(source))
            raise UnknownTableError(
                f"unknown table '{name}' at line {line}, column {col} (Outpost has: {', '.join(sorted(tables))})",
                line=line,
                column=col,
            )


def explain_unknown_column(session: Session, tree: Tree, exc: UnknownColumnError) -> UnknownColumnError:
    """`unknown column 'X' at line L, column C (table T has: ...)`, from the query's own tree."""
    name = exc.message.split("'")[1] if exc.message.count("'") >= 2 else ""
    found = locate_column(tree, name) if name else None
    if found is None:
        return exc
    pos, line, col = found
    node = next(n for n in tree.nodes("IdentifierName") if start(n) == pos)
    try:
        op = tree.operator(node)
    except ValueError:
        return UnknownColumnError(f"unknown column '{name}' at line {line}, column {col}", line=line, column=col)
    try:
        have = [c for c, _ in session.columns(op.lets, op.prefix)]
    except QueryError:
        have = []
    piped = ancestor(node, "PipedOperator")
    pipe_kids = rule_children(piped.parentCtx) if piped is not None else []
    table = bare_name(tree, pipe_kids[0]) if pipe_kids else None
    whose = f"table {table}" if table and len(pipe_kids) > 1 and pipe_kids[1] is piped else "its input"
    similar = [c for c in have if c.lower() == name.lower()]
    hint = f"; did you mean '{similar[0]}'? (names are case-sensitive)" if similar else ""
    listed = f" ({whose} has: {', '.join(have)})" if have else ""
    return UnknownColumnError(
        f"unknown column '{name}' at line {line}, column {col}{listed}{hint}", line=line, column=col
    )


# -- render: a visualization hint, returned beside the table -----------------------------


def take_render(tree: Tree) -> tuple[Tree, dict[str, Any] | None]:
    """Drop a final `| render kind [with (...)]` and return it as Kusto's `Visualization` properties."""
    renders = tree.nodes("RenderOperator")
    if not renders:
        return tree, None
    node = renders[-1]
    piped = node.parentCtx
    while piped is not None and rule(piped) != "PipedOperator":
        piped = piped.parentCtx
    if piped is None or end(piped) != len(tree.query.rstrip().rstrip(";")):
        raise QueryUnsupportedError("render must be the last operator of the query")
    words = [c.getText() for c in children(node)]
    props: dict[str, Any] = {"Visualization": words[1] if len(words) > 1 else "table"}
    for prop in (n for n in tree.nodes("RenderOperatorProperty") if start(node) <= start(n) < end(node)):
        kids = children(prop)
        if len(kids) >= 3 and kids[1].getText() == "=":
            key = kids[0].getText()
            value = tree.text(kids[2]).strip()
            props[_RENDER_KEYS.get(key.lower(), key[:1].upper() + key[1:])] = (
                [v.strip() for v in value.split(",")] if key.lower() == "ycolumns" else value.strip("'\"")
            )
    return Tree(tree.query[: start(piped)] + tree.query[end(piped) :]), props


# Kusto's spelling of the properties in @ExtendedProperties.
_RENDER_KEYS = {
    "title": "Title",
    "xcolumn": "XColumn",
    "ycolumns": "YColumns",
    "series": "Series",
    "kind": "Kind",
    "xtitle": "XTitle",
    "ytitle": "YTitle",
    "legend": "Legend",
    "ysplit": "YSplit",
    "accumulate": "Accumulate",
    "xaxis": "XAxis",
    "yaxis": "YAxis",
    "ymin": "Ymin",
    "ymax": "Ymax",
}
