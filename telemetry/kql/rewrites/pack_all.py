"""`pack_all()`: a bag of every input column, spelled out as `bag_pack('a', a, 'b', b, ...)`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from telemetry.kql.lexical import quote_ident, string_literal
from telemetry.kql.tree import Node, Tree, end, start

if TYPE_CHECKING:
    from telemetry.kql.engine import Session


def find(tree: Tree) -> Node | None:
    found = tree.calls("pack_all")
    return found[0] if found else None


def apply(s: Session, tree: Tree, node: Node) -> str:
    op = tree.operator(node)
    cols = [c for c, _ in s.columns(op.lets, op.columns_prefix)]
    args = ", ".join(f"{string_literal(c)}, {quote_ident(c)}" for c in cols)
    return tree.query[: start(node)] + f"bag_pack({args})" + tree.query[end(node) :]
