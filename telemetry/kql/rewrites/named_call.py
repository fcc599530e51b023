"""`extend round(rate = a / b, 2)` names the column `rate`, as Kusto does: -> `extend rate = round(a / b, 2)`."""

from __future__ import annotations

from telemetry.kql.tree import Edit, Tree, core, end, rule, rule_children, start


def edits(tree: Tree) -> list[Edit]:
    out: list[Edit] = []
    for op in tree.nodes("ExtendOperator"):
        for item in rule_children(op):
            if rule(item) != "NamedExpression" or tree.named(item)[0] is not None:
                continue
            call = core(item)
            if rule(call) != "NamedFunctionCallExpression":
                continue
            args = tree.args(call)
            first = rule_children(args[0]) if args else []
            if not first or rule(first[0]) != "NamedExpression":
                continue
            name, expr = tree.named(first[0])
            if name is None:
                continue
            q = tree.query
            text = f"{name} = {q[start(call) : start(args[0])]}{tree.text(expr)}{q[end(args[0]) : end(call)]}"
            out.append(Edit(start(item), end(item), text))
    return out
