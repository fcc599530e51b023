"""`minif(x, p)` -> `min(iff(p, x, <typed null>))`, likewise maxif, make_list_if, make_set_if.

The plain aggregate skips nulls, so the answer is the conditional one. The typed null needs the
value's type, learned by running the input with the value projected (`| take 0`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from telemetry.kql.errors import QueryError, QueryUnsupportedError
from telemetry.kql.tree import Node, Tree, bare_name, call_name, core, end, rule, start

if TYPE_CHECKING:
    from telemetry.kql.engine import Session

DEFAULT_PREFIX = {"minif": "minif_", "maxif": "maxif_", "make_list_if": "list_", "make_set_if": "set_"}
PLAIN = {"minif": "min", "maxif": "max", "make_list_if": "make_list", "make_set_if": "make_set"}
TYPED_NULL = {
    "TIMESTAMP": "datetime(null)",
    "BIGINT": "long(null)",
    "INTEGER": "int(null)",
    "DOUBLE": "real(null)",
    "INTERVAL": "timespan(null)",
    "BOOLEAN": "bool(null)",
}


def find(tree: Tree) -> Node | None:
    found = tree.calls(*PLAIN)
    return found[0] if found else None


def apply(s: Session, tree: Tree, node: Node) -> str:
    fn = call_name(node)
    args = tree.arg_texts(node)
    if len(args) not in (2, 3) or (len(args) == 3 and not fn.startswith("make_")):
        raise QueryError(f"{fn}() takes 2 arguments: {fn}(expr, predicate)")
    value, pred = args[0], args[1]
    op = tree.operator(node)
    types = s.columns(op.lets, f"{op.prefix}\n| project __outpost_probe = ({value})")
    duck = (types[0][1].upper() if types else "").split("(")[0]
    agg = PLAIN[fn]
    if duck == "VARCHAR" and agg.startswith("make_"):
        # No null string in KQL: collect the value as a dynamic string, which make_list renders the same.
        value, null = f"pack_array({value})[0]", "dynamic(null)"
    else:
        null = TYPED_NULL.get(duck, "")
    if not null:
        raise QueryUnsupportedError(f"{fn}() over a {duck or 'unknown'} value is not supported")
    extra = f", {args[2]}" if len(args) == 3 else ""
    text = f"{agg}(iff(({pred}), ({value}), {null}){extra})"
    item = node.parentCtx
    while item is not None and rule(item) != "NamedExpression":
        item = item.parentCtx
    column = bare_name(tree, tree.args(node)[0])
    if item is not None and core(item) is node and tree.named(item)[0] is None and column:
        # Kusto names `summarize make_list_if(name, ...)` `list_name`: keep that name
        text = f"{DEFAULT_PREFIX[fn]}{column} = {text}"
    return tree.query[: start(node)] + text + tree.query[end(node) :]
