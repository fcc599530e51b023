"""`extend (a, b) = series_fit_line(y)`, `series_stats`, `series_fit_2lines`: computed in Python.

The input is materialized, each row's array is read, `telemetry.series` computes the function,
and the values are joined back on the row's position (the input's order is kept).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from telemetry.kql.errors import QueryUnsupportedError, UnknownColumnError
from telemetry.kql.tree import Node, Tree, ancestor, bare_name, call_name, core, rule, rule_children
from telemetry.series import DEFAULT_NAMES, SERIES_FUNCTIONS

if TYPE_CHECKING:
    from telemetry.kql.engine import Session


def find(tree: Tree) -> Node | None:
    found = tree.calls(*SERIES_FUNCTIONS)
    return found[0] if found else None


def _json_list(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return None
    return value


def apply(s: Session, tree: Tree, node: Node) -> str:
    extend = ancestor(node, "ExtendOperator", "PipedOperator")
    if extend is None or rule(extend) != "ExtendOperator":
        raise QueryUnsupportedError(f"{call_name(node)}() is supported in 'extend' only (extend x = fn(column))")
    op = tree.operator(node)
    source = s.materialize(f"{op.lets}{op.prefix}")
    s.check_deadline()
    existing = s.temp[source]
    index = {c: i for i, c in enumerate(existing)}
    rows = s.run_sql(f'SELECT * FROM "{source}"').fetchall()
    new_cols: dict[str, tuple[str, list[Any]]] = {}
    for item in rule_children(extend):
        if rule(item) != "NamedExpression":
            continue
        target, expr = tree.named(item)
        call = core(expr)
        args = tree.args(call) if rule(call) == "NamedFunctionCallExpression" else []
        fn = call_name(call) if args else ""
        arg = bare_name(tree, args[0]) if len(args) == 1 else None
        if fn not in SERIES_FUNCTIONS or arg is None:
            raise QueryUnsupportedError(
                "in an extend with series_* functions, each item must be series_fn(column);"
                f" got {tree.text(item).strip()!r}"
            )
        if arg not in index:
            raise UnknownColumnError(f"unknown column '{arg}' (its input has: {', '.join(existing)})")
        func, kinds = SERIES_FUNCTIONS[fn]
        if target and target.startswith("("):
            names = [t.strip() for t in target[1:-1].split(",")]
        elif target:
            names = [target]
        else:
            names = [f"{fn}_{arg}_{d}" for d in DEFAULT_NAMES[fn]]
        results = [func(_json_list(r[index[arg]])) for r in rows]
        for k, name in enumerate(names[: len(kinds)]):
            new_cols[name] = (kinds[k], [res[k] for res in results])
    # Rebuild the table with the new columns, matched on row position.
    rn_table = s.table_from_sql(f'SELECT row_number() OVER () - 1 AS __outpost_rn, * FROM "{source}"')
    sel, params = [], []
    for name, (kind, vals) in new_cols.items():
        params.append([json.dumps(v) if kind == "array" else v for v in vals])
        typ = {"num": "DOUBLE", "int": "BIGINT", "array": "JSON"}[kind]
        sel.append(f'UNNEST(${len(params)})::{typ} AS "{name}"')
    params.append(list(range(len(rows))))
    values_sql = f"SELECT {', '.join(sel)}, UNNEST(${len(params)}) AS __outpost_rn2"
    replace = [c for c in new_cols if c in existing]
    excl = ", ".join(f'"{c}"' for c in [*replace, "__outpost_rn"])
    table = s.table_from_sql(
        f'SELECT t.* EXCLUDE ({excl}), v.* EXCLUDE (__outpost_rn2) FROM "{rn_table}" t JOIN ({values_sql}) v'
        f" ON v.__outpost_rn2 = t.__outpost_rn ORDER BY t.__outpost_rn",
        params,
    )
    return op.replace_pipeline(table)
