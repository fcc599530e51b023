"""Filling duckdb-kql's gaps on the parse tree, one module per construct.

Two kinds of rewrite:

- `SCHEMA_FREE` modules return span edits from one parse (`edits(tree)`); a pass applies them all
  and passes repeat until none applies (nested constructs resolve one level a pass);
- `WITH_SCHEMA` modules need what flows into their operator (columns, types, or a materialized
  temp table): `find(tree)` returns their first construct, `apply(session, tree, node)` the new
  query text. The construct earliest in the text goes first, so its input has no gaps left.

`FINAL` edits run once, at the end (they append to operators other rewrites may have replaced).
Every pass and every application is counted against the session's `MAX_REWRITES`: a query that
needs more is refused as too complex, with the construct and position where the budget ran out.
"""

from __future__ import annotations

from types import ModuleType
from typing import TYPE_CHECKING

from telemetry.kql.errors import QueryTooComplexError, QueryUnsupportedError
from telemetry.kql.rewrites import (
    aliases,
    bin_at,
    make_list_dynamic,
    make_series,
    minmaxif,
    named_call,
    pack_all,
    project_reorder,
    search,
    series_fns,
    star,
    strcat,
    summarize_lift,
)
from telemetry.kql.tree import Tree, apply_edits, line_col, start

if TYPE_CHECKING:
    from telemetry.kql.engine import Session

SCHEMA_FREE: tuple[ModuleType, ...] = (aliases, bin_at, strcat, named_call)
WITH_SCHEMA: tuple[ModuleType, ...] = (
    make_series,
    project_reorder,
    pack_all,
    minmaxif,
    star,
    search,
    series_fns,
    summarize_lift,
)
FINAL: tuple[ModuleType, ...] = (make_list_dynamic,)
MAX_REWRITES = 64  # passes + applications for one query, its sub-queries included


def name(module: ModuleType) -> str:
    return module.__name__.rsplit(".", 1)[-1]


class Rewriter:
    """Rewrites for one query (one session); `work` counts what was spent across re-entries."""

    def __init__(self, limit: int = MAX_REWRITES) -> None:
        self.limit = limit
        self.work = 0

    def spend(self, query: str, pos: int, what: str) -> None:
        self.work += 1
        if self.work > self.limit:
            line, col = line_col(query, pos)
            raise QueryTooComplexError(
                f"query too complex to rewrite: more than {self.limit} rewrite steps"
                f" (the budget ran out at {what}, line {line}, column {col})",
                line=line,
                column=col,
            )

    def reparse(self, query: str, after: str) -> Tree:
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


__all__ = ["MAX_REWRITES", "Rewriter"]
