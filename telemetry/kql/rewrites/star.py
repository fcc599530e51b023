"""`where * has "x"` (and `!has`, `contains`, `==`, ...): the test over every input column, or-ed."""

from __future__ import annotations

from typing import TYPE_CHECKING

from telemetry.kql.lexical import quote_ident
from telemetry.kql.tree import Node, Tree, end, rule, rule_children, start, tokens

if TYPE_CHECKING:
    from telemetry.kql.engine import Session

RULES = ("StringStarOperatorExpression", "StarEqualityExpression")
NEGATED = {"!has": "has", "!contains": "contains", "!has_cs": "has_cs", "!contains_cs": "contains_cs", "!=": "=="}


def find(tree: Tree) -> Node | None:
    found = tree.nodes(*RULES)
    return found[0] if found else None


def apply(s: Session, tree: Tree, node: Node) -> str:
    kids = rule_children(node)
    if rule(node) == "StringStarOperatorExpression":
        operator, rhs = tree.text(kids[0]).strip(), tree.text(kids[-1]).strip()
    else:
        operator, rhs = [t for t in tokens(node) if t != "*"][0], tree.text(kids[-1]).strip()
    op = tree.operator(node)
    cols = [c for c, _ in s.columns(op.lets, op.columns_prefix)]
    if not cols:
        expr = "false"
    else:
        positive = NEGATED.get(operator, operator)
        expr = "(" + " or ".join(f"tostring({quote_ident(c)}) {positive} {rhs}" for c in cols) + ")"
        if operator in NEGATED:
            expr = f"not{expr}"
    return tree.query[: start(node)] + expr + tree.query[end(node) :]
