"""duckdb-kql's `make_list` yields a SQL list, which `has`/`contains` cannot read; KQL's is dynamic.

After a summarize with named `make_list` columns: `| extend N = todynamic(N)`.
"""

from __future__ import annotations

from telemetry.kql.tree import Edit, Tree, call_name, core, end, rule, rule_children


def edits(tree: Tree) -> list[Edit]:
    out: list[Edit] = []
    for op in tree.nodes("SummarizeOperator"):
        names = []
        for item in rule_children(op):
            if rule(item) != "NamedExpression":
                continue
            name, expr = tree.named(item)
            inner = core(expr)
            if name and rule(inner) == "NamedFunctionCallExpression" and call_name(inner) == "make_list":
                names.append(name)
        if names:
            wrap = ", ".join(f"{n} = todynamic({n})" for n in names)
            out.append(Edit(end(op), end(op), f"\n| extend {wrap}\n"))
    return out
