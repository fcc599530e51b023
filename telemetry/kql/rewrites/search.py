"""`search [kind=...] [in (T, ...)] predicate`: a union of the tables (all of them by default) and a where.

A bare string is `* has "..."`, which `star` then spells out over the union's columns.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from telemetry.kql.tree import Node, Tree, ancestor, core, end, rule, rule_children, start

if TYPE_CHECKING:
    from telemetry.kql.engine import Session

RULES = ("SearchOperator",)


def find(tree: Tree) -> Node | None:
    found = tree.nodes(*RULES)
    return found[0] if found else None


def apply(s: Session, tree: Tree, node: Node) -> str:
    tables = list(s.tables)
    pred_node = None
    for kid in rule_children(node):
        if rule(kid) == "SearchOperatorInClause":
            tables = [tree.text(t).strip() for t in rule_children(kid)]
        elif rule(kid) not in ("RelaxedQueryOperatorParameter", "StrictQueryOperatorParameter"):
            pred_node = kid
    pred = tree.text(pred_node).strip() if pred_node is not None else "true"
    if pred_node is not None and rule(core(pred_node)) == "StringLiteralExpression":
        pred = f"* has {pred}"
    if ancestor(node, "PipedOperator") is not None:  # `T | search ...` searches its input
        return tree.query[: start(node)] + f"where {pred}" + tree.query[end(node) :]
    source = f"union withsource=SourceTable kind=outer {', '.join(tables)}\n| where {pred}\n"
    return tree.query[: start(node)] + source + tree.query[end(node) :]
