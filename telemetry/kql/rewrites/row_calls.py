"""Functions duckdb-kql lacks (`telemetry.kql.row_functions`: series_add, bag_zip, ...) computed per row.

In an `extend`, `project` or `where`, each such call whose arguments are columns or literals is
computed for every row of the operator's (materialized) input, joined back on the row's
position as a helper column, and the call is replaced by that column. The helper columns are
dropped after operators that keep their input's columns.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from telemetry.kql.errors import QueryUnsupportedError
from telemetry.kql.row_functions import FUNCTIONS
from telemetry.kql.tree import (
    Edit,
    Node,
    Tree,
    ancestor,
    apply_edits,
    bare_name,
    call_name,
    core,
    end,
    rule,
    rule_children,
    start,
)

if TYPE_CHECKING:
    from telemetry.kql.engine import Session

OPERATORS = ("ExtendOperator", "ProjectOperator", "WhereOperator")
KEEPS_COLUMNS = ("ExtendOperator", "WhereOperator")
SQL_TYPES = {"dynamic": "JSON", "real": "DOUBLE", "long": "BIGINT", "bool": "BOOLEAN", "string": "VARCHAR"}


def string_value(text: str) -> tuple[bool, Any]:
    """A plain or verbatim string literal's value; escapes are left to duckdb-kql (not a literal here)."""
    body = text[1:] if text[:1] == "@" else text
    if len(body) >= 2 and body[0] == body[-1] and body[0] in "'\"" and (text[:1] == "@" or "\\" not in body):
        return True, body[1:-1]
    return False, None


def _literal(tree: Tree, arg: Node) -> tuple[bool, Any]:
    """(True, value) for a string, number or dynamic literal (a leading minus allowed), else (False, None)."""
    text = tree.text(arg).strip()
    inner = core(arg)
    if rule(inner) == "StringLiteralExpression":
        return string_value(text)
    if rule(inner) == "DynamicLiteralExpression":
        try:
            body = text[text.index("(") + 1 : text.rindex(")")]
            return True, json.loads(body if '"' in body else body.replace("'", '"'))
        except ValueError:
            return False, None
    for parse in (int, float):
        try:
            return True, parse(text)
        except ValueError:
            pass
    m = text.removeprefix("double(").removeprefix("real(").removesuffix(")")
    if m != text and m.strip() == "null":
        return True, None
    return False, None


def call_args(tree: Tree, call: Node) -> list[tuple[str, Any]] | None:
    """Each argument as ("column", name) or ("value", literal); None when one is neither."""
    out: list[tuple[str, Any]] = []
    for arg in tree.args(call):
        name = bare_name(tree, arg)
        if name is not None and name not in ("true", "false", "null"):
            out.append(("column", name))
            continue
        ok, value = _literal(tree, arg)
        if not ok:
            return None
        out.append(("value", value))
    return out


def _unnamed_item(tree: Tree, call: Node) -> bool:
    """Whether *call* is a whole unnamed item of its extend or project (so it names a column)."""
    item = ancestor(call, "NamedExpression")
    op = ancestor(call, *OPERATORS)
    top = item is not None and op is not None and item.parentCtx is op and rule(op) != "WhereOperator"
    return bool(top and core(item) is call and tree.named(item)[0] is None)


def _column1(tree: Tree, call: Node) -> str | None:
    """`Column1 = `: Kusto's name for the one computed unnamed item of a project whose others are columns."""
    op = ancestor(call, *OPERATORS)
    if op is None or rule(op) != "ProjectOperator":
        return None
    items = [c for c in rule_children(op) if rule(c) == "NamedExpression"]
    others = [i for i in items if core(i) is not call]
    if all(tree.named(i)[0] is None and bare_name(tree, i) is not None for i in others):
        return "Column1 = "
    return None


def _calls(tree: Tree) -> list[Node]:
    found = []
    for call in tree.calls(*FUNCTIONS):
        op = ancestor(call, *OPERATORS, "PipedOperator")
        arity = FUNCTIONS[call_name(call)][2]
        if arity and len(tree.args(call)) not in arity:
            continue
        if op is None or rule(op) not in OPERATORS or call_args(tree, call) is None:
            continue
        if _unnamed_item(tree, call) and _column1(tree, call) is None:
            continue  # Kusto's name for this unnamed item is not known here: leave the call refused
        found.append(call)
    return found


def find(tree: Tree) -> Node | None:
    found = _calls(tree)
    return found[0] if found else None


def _cell(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def apply(s: Session, tree: Tree, node: Node) -> str:
    op = tree.operator(node)
    operator = ancestor(node, *OPERATORS)
    assert operator is not None  # find() only returns calls inside one
    calls = [c for c in _calls(tree) if ancestor(c, *OPERATORS) is operator]
    calls = [c for c in calls if not any(o is not c and start(o) <= start(c) and end(c) <= end(o) for o in calls)]
    source = s.materialize(f"{op.lets}{op.prefix}")
    numbered = s.table_from_sql(f'SELECT row_number() OVER () - 1 AS __outpost_rn, * FROM "{source}"')
    existing = s.temp[numbered]
    wanted = sorted({v for c in calls for kind, v in call_args(tree, c) or [] if kind == "column"})
    for name in wanted:
        if name not in existing:  # a let-bound value, say: only columns and literals are read per row
            raise QueryUnsupportedError(
                f"{call_name(node)}(): argument '{name}' must be a column of its input"
                f" ({', '.join(existing[1:])}) or a literal"
            )
    s.check_deadline()
    columns = ", ".join(["__outpost_rn", *(f'"{n}"' for n in wanted)])
    rows = s.run_sql(f'SELECT {columns} FROM "{numbered}" ORDER BY 1').fetchall()
    position = {n: i + 1 for i, n in enumerate(wanted)}
    sel, params, edits = [], [], []
    for k, call in enumerate(calls):
        fn, kind, _ = FUNCTIONS[call_name(call)]
        args = call_args(tree, call) or []
        values = [fn([_cell(r[position[v]]) if how == "column" else v for how, v in args]) for r in rows]
        params.append([json.dumps(v) for v in values] if kind == "dynamic" else values)
        helper = f"__outpost_call{k}"
        sel.append(f'UNNEST(${len(params)})::{SQL_TYPES[kind]} AS "{helper}"')
        name = _column1(tree, call) if _unnamed_item(tree, call) else None
        edits.append(Edit(start(call) - op.op_start, end(call) - op.op_start, f"{name or ''}{helper}"))
    params.append([r[0] for r in rows])
    values_sql = f"SELECT {', '.join(sel)}, UNNEST(${len(params)}) AS __outpost_rn2"
    table = s.table_from_sql(
        f'SELECT t.*, v.* EXCLUDE (__outpost_rn2) FROM "{numbered}" t JOIN ({values_sql}) v'
        " ON v.__outpost_rn2 = t.__outpost_rn ORDER BY t.__outpost_rn",
        params,
    )
    text = apply_edits(tree.query[op.op_start : op.op_end], edits)
    helpers = ", ".join(["__outpost_rn", *(f"__outpost_call{k}" for k in range(len(calls)))])
    after = f" | project-away {helpers}" if rule(operator) in KEEPS_COLUMNS else ""
    return tree.query[: op.pipe_start] + f"{table} |{text}{after} " + tree.query[op.op_end :]
