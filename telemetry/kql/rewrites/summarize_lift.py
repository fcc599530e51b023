"""A scalar around an aggregate in summarize: `summarize X = f(agg(..))` -> compute the aggregate, then f.

`summarize X = datetime_diff("hour", now(), max(T)) by C` becomes
`summarize __outpost_agg0_0 = max(T) by C | extend X = datetime_diff("hour", now(), __outpost_agg0_0)
| project-away __outpost_agg0_0`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from telemetry.kql.tree import Node, Tree, call_name, core, end, rule, rule_children, start, walk

if TYPE_CHECKING:
    from telemetry.kql.engine import Session

AGGREGATES = frozenset(
    {"count", "countif", "sum", "sumif", "avg", "avgif", "min", "max", "minif", "maxif", "arg_max", "arg_min"}
    | {"stdev", "stdevif", "variance", "varianceif", "dcount", "dcountif", "make_list", "make_list_if"}
    | {"make_set", "make_set_if", "any", "take_any", "take_anyif", "anyif", "percentile", "percentiles"}
    | {"count_distinct", "hll", "tdigest", "make_bag", "make_bag_if", "dcount_hll", "hll_merge", "tdigest_merge"}
    | {"percentilew", "percentilesw", "stdevp", "variancep", "binary_all_and", "binary_all_or", "binary_all_xor"}
)


def is_aggregate(node: Node) -> bool:
    inner = core(node)
    if rule(inner) == "CountExpression":
        return True
    return rule(inner) == "NamedFunctionCallExpression" and call_name(inner) in AGGREGATES


def _aggregate_calls(item_expr: Node) -> list[Node]:
    """Aggregate calls inside an expression, outermost only, in text order."""
    found: list[Node] = []
    for n in walk(item_expr):
        inside = any(start(f) <= start(n) < end(f) for f in found)
        if rule(n) in ("CountExpression", "NamedFunctionCallExpression") and is_aggregate(n) and not inside:
            found.append(n)
    return found


def _lifted(tree: Tree, op: Node) -> list[tuple[Node, str | None, Node]]:
    """The aggregate items (item, name, expression) whose expression wraps an aggregate in a scalar."""
    out = []
    for item in rule_children(op):
        if rule(item) != "NamedExpression":
            continue
        name, expr = tree.named(item)
        if not is_aggregate(expr) and _aggregate_calls(expr):
            out.append((item, name, expr))
    return out


def find(tree: Tree) -> Node | None:
    for op in tree.nodes("SummarizeOperator"):
        if _lifted(tree, op):
            return op
    return None


def apply(s: Session, tree: Tree, node: Node) -> str:
    q = tree.query
    items = _lifted(tree, node)
    lifted = {start(item) for item, _, _ in items}
    new_aggs: list[str] = []
    extends: list[str] = []
    temps: list[str] = []
    for k, (_, name, expr) in enumerate(items):
        pieces, last = [], start(expr)
        for j, call in enumerate(_aggregate_calls(expr)):
            tmp = f"__outpost_agg{k}_{j}"
            temps.append(tmp)
            new_aggs.append(f"{tmp} = {tree.text(call)}")
            pieces.append(q[last : start(call)] + tmp)
            last = end(call)
        pieces.append(q[last : end(expr)])
        extends.append(f"{name or f'Column{k + 1}'} = {''.join(pieces).strip()}")
    kids = rule_children(node)
    aggs = [c for c in kids if rule(c) == "NamedExpression"]
    kept = [tree.text(c).strip() for c in aggs if start(c) not in lifted]
    head = q[start(node) : start(aggs[0])]  # `summarize` and its parameters
    by = [c for c in kids if rule(c) == "SummarizeOperatorByClause"]
    by_text = (" " + tree.text(by[0])) if by else ""
    new_op = f"{head}{', '.join(kept + new_aggs)}{by_text}"
    new_op += f"\n| extend {', '.join(extends)}\n| project-away {', '.join(temps)}\n"
    return q[: start(node)] + new_op + q[end(node) :]
