"""`project-reorder a, b* asc`: the named (or wildcard-matched) columns first, the rest after.

Needs the input's columns: rewritten to a plain `project` of all of them in the new order.
"""

from __future__ import annotations

import fnmatch
from typing import TYPE_CHECKING

from telemetry.kql.errors import UnknownColumnError
from telemetry.kql.lexical import quote_ident
from telemetry.kql.tree import Node, Tree, rule, rule_children, tokens

if TYPE_CHECKING:
    from telemetry.kql.engine import Session

RULES = ("ProjectReorderOperator",)


def find(tree: Tree) -> Node | None:
    found = tree.nodes(*RULES)
    return found[0] if found else None


def apply(s: Session, tree: Tree, node: Node) -> str:
    op = tree.operator(node)
    cols = [c for c, _ in s.columns(op.lets, op.columns_prefix)]
    ordered: list[str] = []
    for spec in rule_children(node):
        if rule(spec) == "WildcardedName":
            name, order = tree.text(spec), ""
        else:
            parts = rule_children(spec)
            name = tree.text(parts[0]).strip() if parts else tree.text(spec)
            order = " ".join(tokens(spec) + [tree.text(p) for p in parts[1:]]).lower()
        name = name.strip().removeprefix("['").removesuffix("']").strip("[]'\"")
        if "*" in name:
            matched = [c for c in cols if fnmatch.fnmatchcase(c, name) and c not in ordered]
            if "asc" in order:
                matched.sort()
            elif "desc" in order:
                matched.sort(reverse=True)
            ordered += matched
        elif name in cols and name not in ordered:
            ordered.append(name)
        elif name not in cols:
            raise UnknownColumnError(f"project-reorder: unknown column '{name}' (its input has: {', '.join(cols)})")
    ordered += [c for c in cols if c not in ordered]
    q = tree.query
    return q[: op.op_start] + " project " + ", ".join(quote_ident(c) for c in ordered) + " " + q[op.op_end :]
