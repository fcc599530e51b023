"""Filling duckdb-kql's gaps on the parse tree, one module per construct.

Two kinds of rewrite:

- `SCHEMA_FREE` modules return span edits from one parse (`edits(tree)`); a pass applies them all
  and passes repeat until none applies (nested constructs resolve one level a pass);
- `WITH_SCHEMA` modules need what flows into their operator (columns, types, or a materialized
  temp table): `find(tree)` returns their first construct, `apply(session, tree, node)` the new
  query text. The construct earliest in the text goes first, so its input has no gaps left.

`FINAL` edits run once, at the end (they append to operators other rewrites may have replaced).
Every pass and every application is counted against `MAX_REWRITES`, and every re-parse against
`MAX_PARSED_CHARS` (sub-queries included): a query that needs more is refused as too complex,
with the construct and position where the budget ran out.
"""

from __future__ import annotations

from types import ModuleType
from typing import TYPE_CHECKING

from telemetry.kql.errors import QueryTooComplexError, QueryUnsupportedError
from telemetry.kql.rewrites import (
    aliases,
    array_shift,
    bin_at,
    const_calls,
    functions,
    ipv4,
    ipv4_search,
    make_list_dynamic,
    make_series,
    minmaxif,
    named_call,
    pack_all,
    project_reorder,
    row_calls,
    search,
    series_fns,
    star,
    strcat,
    summarize_lift,
)
from telemetry.kql.tree import Tree, apply_edits, line_col, start

if TYPE_CHECKING:
    from telemetry.kql.engine import Session

SCHEMA_FREE: tuple[ModuleType, ...] = (
    aliases,
    array_shift,
    bin_at,
    const_calls,
    functions,
    ipv4,
    ipv4_search,
    strcat,
    named_call,
)
WITH_SCHEMA: tuple[ModuleType, ...] = (
    make_series,
    project_reorder,
    pack_all,
    minmaxif,
    star,
    search,
    series_fns,
    row_calls,
    summarize_lift,
)
FINAL: tuple[ModuleType, ...] = (make_list_dynamic,)
MAX_REWRITES = 32  # passes + applications for one query, its sub-queries included
# Each step re-parses its query (ANTLR in Python: ~35 µs a character once warm), so the budget
# counts characters parsed too (the published queries need at most 6 steps and 19 K characters).
MAX_PARSED_CHARS = 60_000
# DuckDB binds the SQL of every sub-query a rewrite runs (`| take 0` for columns, materialized
# inputs): ~30 µs a character for `has`-heavy SQL, so the sum is bounded too (the largest published
# query needs 142 K: 10.kql).
MAX_SESSION_SQL = 600_000


def name(module: ModuleType) -> str:
    return module.__name__.rsplit(".", 1)[-1]


class Rewriter:
    """Rewrites for one query (one session); what was spent is counted across re-entries."""

    def __init__(self, limit: int = MAX_REWRITES, max_chars: int = MAX_PARSED_CHARS) -> None:
        self.limit = limit
        self.max_chars = max_chars
        self.steps = 0
        self.parsed = 0
        self.original = ""  # the user's query (after comments are blanked)
        self._at: tuple[str, int, str] = ("", 0, "the query")  # (query, position, construct) of the last step

    def spend(self, query: str, pos: int, what: str) -> None:
        self.steps += 1
        self._at = (query, pos, what)
        if self.steps > self.limit:
            raise self._too_complex(f"more than {self.limit} rewrite steps")

    def _too_complex(self, why: str) -> QueryTooComplexError:
        query, pos, what = self._at
        if query != self.original:  # positions in rewritten text mean nothing to the user
            return QueryTooComplexError(
                f"query too complex to rewrite: {why} (the budget ran out at {what}, after {self.steps} steps);"
                " split it into smaller queries"
            )
        line, col = line_col(query, pos)
        return QueryTooComplexError(
            f"query too complex to rewrite: {why} (the budget ran out at {what}, line {line}, column {col});"
            " split it into smaller queries",
            line=line,
            column=col,
        )

    def charge_sql(self, total: int) -> None:
        if total > MAX_SESSION_SQL:
            raise self._too_complex(f"its rewrites translated more than {MAX_SESSION_SQL // 1000} K characters of SQL")

    def reparse(self, query: str, after: str) -> Tree:
        self.parsed += len(query)
        if self.parsed > self.max_chars:
            raise self._too_complex(f"rewriting needed more than {self.max_chars // 1000} K characters of parsing")
        try:
            return Tree(query)
        except Exception as exc:  # noqa: BLE001 - the rewrite's own output must parse; say whose it was
            raise QueryUnsupportedError(f"{after} could not be rewritten for this engine ({exc})") from None

    def simple(self, tree: Tree) -> Tree:
        while True:
            edits = [e for m in SCHEMA_FREE for e in m.edits(tree)]
            if not edits:
                return tree
            first = min(edits, key=lambda e: e.start)
            self.spend(tree.query, first.start, "a nested call")
            tree = self.reparse(apply_edits(tree.query, edits), "a call")

    def __call__(self, session: Session, query: str, tree: Tree | None = None) -> str:
        self.original = self.original or query
        tree = self.simple(tree or self.reparse(query, "the query"))
        while True:
            found = [(start(n), m, n) for m in WITH_SCHEMA if (n := m.find(tree)) is not None]
            if not found:
                break
            pos, module, node = min(found, key=lambda f: f[0])
            self.spend(tree.query, pos, name(module).replace("_", "-"))
            tree = self.simple(self.reparse(module.apply(session, tree, node), name(module)))
        edits = [e for m in FINAL for e in m.edits(tree)]
        return apply_edits(tree.query, edits) if edits else tree.query


__all__ = ["MAX_PARSED_CHARS", "MAX_REWRITES", "Rewriter"]
