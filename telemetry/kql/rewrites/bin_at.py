"""`bin_at(value, size, anchor)`: the bin of *value* on a grid of *size* through *anchor*.

Written as `anchor + size * floor((value - anchor) / size, 1)`; in `summarize ... by bin_at(T, ...)`
the group column keeps the name `T`, as Kusto names it.
"""

from __future__ import annotations

from telemetry.kql.errors import QueryError
from telemetry.kql.tree import Edit, Tree, bare_name, core, end, rule, start


def edits(tree: Tree) -> list[Edit]:
    out: list[Edit] = []
    for call in tree.calls("bin_at"):
        args = tree.args(call)
        if len(args) != 3:
            raise QueryError("bin_at() takes 3 arguments: bin_at(value, bin_size, fixed_point)")
        value, size, anchor = (tree.text(a).strip() for a in args)
        expr = f"(({anchor}) + ({size}) * floor((({value}) - ({anchor})) / ({size}), 1))"
        if bare_name(tree, args[0]) and _is_group_key(call):
            expr = f"{value} = {expr}"
        out.append(Edit(start(call), end(call), expr))
    return out


def _is_group_key(call: object) -> bool:
    """The call is a whole, unnamed `by` item of summarize."""
    item = call.parentCtx  # type: ignore[attr-defined]
    while item is not None and rule(item) != "NamedExpression":
        item = item.parentCtx
    return (
        item is not None
        and core(item) is call
        and item.parentCtx is not None
        and rule(item.parentCtx) == "SummarizeOperatorByClause"
    )
