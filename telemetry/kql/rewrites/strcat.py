"""Keep nested `strcat` small: flatten `strcat(a, strcat(b, c))`, push `strcat` into `case`/`iff` branches.

duckdb-kql renders each strcat argument through a type dispatch that repeats the operand about
eight times, so `strcat(case(..., strcat(toint(x), 's'), ...), ' ago')` (the workbooks' "time ago"
column) grows geometrically: ~700 KB of SQL that DuckDB needs ~10 s to bind.
`strcat(p, case(c, v, d), q)` is `case(c, strcat(p, v, q), strcat(p, d, q))` exactly, and flattening
is exact too; distribution only happens when the other arguments are literals or column names,
so nothing grows. One edit per strcat call per pass; the rewriter repeats passes until none applies.
"""

from __future__ import annotations

from telemetry.kql.tree import Edit, Node, Tree, call_name, core, end, rule, start

_SIMPLE = {"StringLiteralExpression", "IdentifierName", "LongLiteralExpression", "RealLiteralExpression"}
_SIMPLE |= {"EscapedName", "IntLiteralExpression", "BooleanLiteralExpression"}
_BRANCHING = {"case", "iff", "iif"}


def edits(tree: Tree) -> list[Edit]:
    out: list[Edit] = []
    for call in tree.calls("strcat"):
        edit = _one(tree, call)
        if edit is not None:
            out.append(edit)
    return out


def _inner_call(arg: Node) -> Node | None:
    inner = core(arg)
    if rule(inner) == "NamedFunctionCallExpression" and call_name(inner) in _BRANCHING | {"strcat"}:
        return inner
    return None


def _one(tree: Tree, call: Node) -> Edit | None:
    args = tree.args(call)
    for i, arg in enumerate(args):
        inner = _inner_call(arg)
        if inner is None:
            continue
        name = call_name(inner)
        if name == "strcat":  # flatten: the inner arguments take the inner call's place
            return Edit(start(arg), end(arg), ", ".join(tree.arg_texts(inner)))
        others = args[:i] + args[i + 1 :]
        if not all(rule(core(o)) in _SIMPLE for o in others):
            continue
        parts = tree.arg_texts(inner)
        if name == "case" and len(parts) >= 3 and len(parts) % 2 == 1:
            values = {*range(1, len(parts) - 1, 2), len(parts) - 1}
        elif name in ("iff", "iif") and len(parts) == 3:
            values = {1, 2}
        else:
            continue
        pre = [tree.text(a).strip() for a in args[:i]]
        post = [tree.text(a).strip() for a in args[i + 1 :]]
        branches = [f"strcat({', '.join([*pre, p, *post])})" if k in values else p for k, p in enumerate(parts)]
        return Edit(start(call), end(call), f"{name}({', '.join(branches)})")
    return None
