"""duckdb-kql's parse tree, read for rewriting: nodes by rule, exact character spans, edits by span.

`duckdb_kql.parse()` returns Microsoft's ANTLR grammar tree; every rule context knows its first
and last token, hence its exact span in the query text. Rewrites find their construct here (a
`MakeSeriesOperator`, a call named `bin_at`, ...) and replace spans; none reads the text with a
regex. This module is the only one that knows ANTLR's node classes.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import duckdb_kql
from antlr4.tree.Tree import TerminalNodeImpl

Node = Any  # an ANTLR ParserRuleContext (the runtime ships no types)


@dataclass(frozen=True)
class Edit:
    """Replace query[start:end] with text."""

    start: int
    end: int
    text: str


def apply_edits(query: str, edits: Iterable[Edit]) -> str:
    """Apply non-overlapping edits (outermost wins when one contains another)."""
    chosen: list[Edit] = []
    for e in sorted(edits, key=lambda e: (e.start, -e.end)):
        if chosen and e.start < chosen[-1].end:
            continue  # inside an edit already taken
        chosen.append(e)
    for e in reversed(chosen):
        query = query[: e.start] + e.text + query[e.end :]
    return query


def rule(node: Node) -> str:
    """`MakeSeriesOperator` for a MakeSeriesOperatorContext; '' for a token."""
    return "" if isinstance(node, TerminalNodeImpl) else type(node).__name__[:-7]


def start(node: Node) -> int:
    return node.symbol.start if isinstance(node, TerminalNodeImpl) else node.start.start


def end(node: Node) -> int:
    """Exclusive end of *node*'s span."""
    if isinstance(node, TerminalNodeImpl):
        return node.symbol.stop + 1
    stop = node.stop
    return (stop.stop + 1) if stop is not None and stop.stop >= node.start.start else node.start.start


def children(node: Node) -> list[Node]:
    return list(node.children or []) if not isinstance(node, TerminalNodeImpl) else []


def rule_children(node: Node) -> list[Node]:
    return [c for c in children(node) if not isinstance(c, TerminalNodeImpl)]


def tokens(node: Node) -> list[str]:
    """Texts of *node*'s direct token children (keywords, punctuation)."""
    return [c.getText() for c in children(node) if isinstance(c, TerminalNodeImpl)]


def core(node: Node) -> Node:
    """Down the chain of single-child wrappers (UnnamedExpression > LogicalOrExpression > ...)."""
    while True:
        kids = children(node)
        if len(kids) != 1 or isinstance(kids[0], TerminalNodeImpl):
            return node
        node = kids[0]


def walk(node: Node) -> Iterator[Node]:
    stack = [node]
    while stack:
        n = stack.pop()
        if isinstance(n, TerminalNodeImpl):
            continue
        yield n
        kids = n.children
        if kids:
            stack.extend(reversed(kids))


def ancestor(node: Node, *rules: str) -> Node | None:
    n = node.parentCtx
    while n is not None:
        if rule(n) in rules:
            return n
        n = n.parentCtx
    return None


class Tree:
    """One parse of *query*, indexed by rule name in text order."""

    def __init__(self, query: str) -> None:
        self.query = query
        self.root: Node = duckdb_kql.parse(query).tree  # raises KqlSyntaxError
        self.by_rule: dict[str, list[Node]] = defaultdict(list)
        if self.root is not None:
            for n in walk(self.root):
                self.by_rule[rule(n)].append(n)

    def text(self, node: Node) -> str:
        return self.query[start(node) : end(node)]

    def nodes(self, *rules: str) -> list[Node]:
        found = [n for r in rules for n in self.by_rule.get(r, ())]
        return sorted(found, key=start) if len(rules) > 1 else found

    # -- function calls ------------------------------------------------------------

    def calls(self, *names: str) -> list[Node]:
        """NamedFunctionCallExpression nodes calling one of *names* (KQL names are case-sensitive)."""
        wanted = set(names)
        return [n for n in self.by_rule.get("NamedFunctionCallExpression", ()) if call_name(n) in wanted]

    def args(self, call: Node) -> list[Node]:
        return [c for c in rule_children(call) if rule(c) == "ArgumentExpression"]

    def arg_texts(self, call: Node) -> list[str]:
        return [self.text(a).strip() for a in self.args(call)]

    # -- named expressions (`X = expr` in extend / summarize / project) -----------------

    def named(self, node: Node) -> tuple[str | None, Node]:
        """(the name, or None, and the expression node) of a NamedExpression."""
        kids = rule_children(node)
        if kids and rule(kids[0]) == "NamedExpressionNameClause":
            return self.text(kids[0]).rstrip("=").strip(), kids[-1]
        return None, node

    # -- pipelines -----------------------------------------------------------------

    def operator(self, node: Node) -> Operator:
        """The pipeline operator containing *node*, with its pipeline and the statements before it."""
        piped = node if rule(node) == "PipedOperator" else ancestor(node, "PipedOperator")
        if piped is None:
            raise ValueError("not inside a piped operator")
        pipe = piped.parentCtx
        stmt = ancestor(pipe, "Statement")
        # Operators that keep their input's columns can be skipped when asking for the columns.
        stages = rule_children(pipe)
        i = next(k for k, c in enumerate(stages) if c is piped)
        while i > 1 and rule(core(rule_children(stages[i - 1])[-1])) in KEEP_COLUMNS:
            i -= 1
        return Operator(
            query=self.query,
            pipe_start=start(pipe),
            bar=start(piped),
            op_start=start(piped) + 1,
            op_end=end(piped),
            statement_start=start(stmt) if stmt is not None else 0,
            columns_bar=start(stages[i]),
        )


KEEP_COLUMNS = frozenset({"WhereOperator", "TakeOperator", "SortOperator", "TopOperator", "SampleOperator"})


@dataclass(frozen=True)
class Operator:
    """`<pipe_start>source | ... |<bar> op ...<op_end>`: one operator in its pipeline."""

    query: str
    pipe_start: int
    bar: int  # the `|` introducing the operator
    op_start: int
    op_end: int
    statement_start: int  # the statements before this one (its `let`s) end here
    columns_bar: int  # where the stages before `bar` that keep their input's columns begin

    @property
    def columns_prefix(self) -> str:
        """The shortest pipeline before this operator with the same columns as `prefix`."""
        return self.query[self.pipe_start : self.columns_bar].rstrip()

    @property
    def lets(self) -> str:
        return self.query[: self.statement_start]

    @property
    def prefix(self) -> str:
        """The pipeline up to (not including) this operator's `|`."""
        return self.query[self.pipe_start : self.bar].rstrip()

    def replace_pipeline(self, source: str) -> str:
        """The query with everything up to and including this operator replaced by *source*."""
        return self.query[: self.pipe_start] + source + " " + self.query[self.op_end :]


def call_name(call: Node) -> str:
    kids = children(call)
    return kids[0].getText() if kids else ""


def bare_name(tree: Tree, node: Node) -> str | None:
    inner = core(node)
    if rule(inner) in ("IdentifierName", "KeywordName", "ExtendedKeywordName", "IdentifierOrKeywordName"):
        return tree.text(inner)
    return None


def line_col(text: str, pos: int) -> tuple[int, int]:
    """1-based line and column of *pos*."""
    line = text.count("\n", 0, pos) + 1
    return line, pos - (text.rfind("\n", 0, pos) + 1) + 1
