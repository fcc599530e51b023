"""`make-series Agg [default = v], ... on Axis [from A] [to B] step S | in range(A, B, S) [by G, ...]`.

Materialized in steps on the session's cursor: the input; its groups; the aggregates per
(bin, group) over the range; then one row per group with each aggregate as a JSON array over
all bins (missing bins take the default) and the axis as an array of bin starts. A missing
`from`/`to` is taken from the data (its min, and max + step), as Kusto does.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from telemetry.kql.errors import QueryError, QuerySyntaxError, QueryUnsupportedError
from telemetry.kql.lexical import quote_ident
from telemetry.kql.results import format_datetime
from telemetry.kql.tree import Node, Tree, bare_name, call_name, children, core, end, rule, rule_children, start, tokens

if TYPE_CHECKING:
    from telemetry.kql.engine import Session

RULES = ("MakeSeriesOperator",)
MAX_BINS = 100_000


def find(tree: Tree) -> Node | None:
    found = tree.nodes(*RULES)
    return found[0] if found else None


def _literal(value: Any) -> str:
    if isinstance(value, datetime):
        return f"datetime({format_datetime(value)})"
    if isinstance(value, timedelta):
        return f"{value.total_seconds()!r}s"
    if value is None:
        return "real(null)"
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value)


def _default_name(tree: Tree, expr: Node) -> str:
    call = core(expr)
    if rule(call) == "CountExpression":
        return "count_"
    if rule(call) != "NamedFunctionCallExpression":
        return "Column1"
    args = tree.args(call)
    return f"{call_name(call)}_{(bare_name(tree, args[0]) or '') if args else ''}"


def _range(tree: Tree, node: Node) -> tuple[str | None, str | None, str | None]:
    """(start, end, step) expression texts."""
    bounds: dict[str, str] = {}
    for clause in rule_children(node):
        if rule(clause) == "MakeSeriesOperatorInRangeClause":
            parts = [tree.text(c).strip() for c in rule_children(clause)]
            if len(parts) != 3:
                raise QuerySyntaxError("make-series: range() takes start, stop, step")
            bounds = dict(zip(("from", "to", "step"), parts, strict=True))
        elif rule(clause) == "MakeSeriesOperatorFromToStepClause":
            keyword = ""
            for c in children(clause):
                if rule(c) == "":
                    keyword = c.getText().lower()
                else:
                    bounds[keyword] = tree.text(c).strip()
    return bounds.get("from"), bounds.get("to"), bounds.get("step")


def _aggregations(tree: Tree, clauses: list[Node]) -> list[tuple[str, str, str]]:
    """(name, aggregate, default) of each aggregation.

    The grammar reads `make-series n=avg(x)` (no spaces) as an operator parameter `n=avg` followed
    by an aggregation `(x)`; that pair is put back together here.
    """
    q = tree.query
    aggs: list[tuple[str, str, str]] = []
    pending: Node | None = None  # a misread `name=fn` parameter
    for clause in clauses:
        if rule(clause) == "RelaxedQueryOperatorParameter" and tokens(clause)[0].lower() != "kind":
            pending = clause
            continue
        if rule(clause) != "MakeSeriesOperatorAggregation":
            continue
        parts = rule_children(clause)
        default = "0"
        for p in parts[1:]:
            if rule(p) == "MakeSeriesOperatorExpressionDefaultClause":
                default = tree.text(rule_children(p)[-1]).strip()
        if pending is not None and rule(core(parts[0])) == "ParenthesizedExpression":
            name, fn = tokens(pending)[0], rule_children(pending)[-1]
            aggs.append((name, q[start(fn) : end(parts[0])].strip(), default))
            pending = None
            continue
        name, expr = tree.named(parts[0])
        aggs.append(((name or _default_name(tree, expr)).strip("[]'\""), tree.text(expr).strip(), default))
    return aggs


def apply(s: Session, tree: Tree, node: Node) -> str:
    op = tree.operator(node)
    clauses = rule_children(node)
    on = [c for c in clauses if rule(c) == "MakeSeriesOperatorOnClause"]
    if not on:
        raise QuerySyntaxError("make-series needs 'on <datetime column>'")
    axis = tree.text(rule_children(on[0])[0]).strip()
    start_expr, end_expr, step_expr = _range(tree, node)
    if not step_expr:
        raise QuerySyntaxError("make-series needs 'step <timespan>'")
    aggs = _aggregations(tree, clauses)
    by = [c for c in clauses if rule(c) == "MakeSeriesOperatorByClause"]
    group_items = [tree.text(g).strip() for g in rule_children(by[0])] if by else []

    source = s.materialize(f"{op.lets}{op.prefix}")
    values = s.scalars(op.lets, [e for e in (start_expr, end_expr, step_expr) if e] + [d for _, _, d in aggs])
    it = iter(values)
    start_v = next(it) if start_expr else None
    end_v = next(it) if end_expr else None
    step_v = next(it)
    defaults = [next(it) for _ in aggs]
    if not isinstance(step_v, timedelta) or step_v.total_seconds() <= 0:
        raise QueryUnsupportedError("make-series: only a positive timespan step on a datetime axis is supported")
    qaxis = quote_ident(axis)
    if start_v is None or end_v is None:
        lo, hi = s.run_sql(f'SELECT min("{axis}"), max("{axis}") FROM "{source}"').fetchone() or (None, None)
        start_v = start_v if start_v is not None else lo
        end_v = end_v if end_v is not None else (hi + step_v if hi is not None else None)
    if start_v is None or end_v is None:
        start_v = end_v = s.now
    n_bins = max(0, math.ceil((end_v - start_v) / step_v))
    if n_bins > MAX_BINS:
        raise QueryError(f"make-series would create {n_bins} bins (at most {MAX_BINS:,}); use a larger step")
    s_lit, e_lit, st_lit = _literal(start_v), _literal(end_v), _literal(step_v)

    by_text = ", ".join(group_items)
    groups = s.materialize(f"{source} | summarize by {by_text}") if group_items else None
    agg_items = ", ".join(f"{quote_ident('__outpost_m' + str(i))} = {expr}" for i, (_, expr, _) in enumerate(aggs))
    binned = s.materialize(
        f"{source} | where {qaxis} >= {s_lit} and {qaxis} < {e_lit}"
        f" | summarize {agg_items} by __outpost_i = tolong(floor(({qaxis} - {s_lit}) / {st_lit}, 1))"
        + (f", {by_text}" if by_text else "")
    )
    gcols = s.temp[groups] if groups else []
    sel_groups = ", ".join(f'g."{c}"' for c in gcols)
    on_groups = " AND ".join(f'b."{c}" IS NOT DISTINCT FROM g."{c}"' for c in gcols)
    series_cols = []
    params: list[Any] = []
    for i, (name, _, _) in enumerate(aggs):
        params.append(defaults[i])
        series_cols.append(f'to_json(list(coalesce(b."__outpost_m{i}", ${len(params)}) ORDER BY x.i)) AS "{name}"')
    params += [start_v, step_v]
    p_start, p_step = len(params) - 1, len(params)
    axis_col = (
        f"to_json(list(strftime(${p_start}::TIMESTAMP + x.i * ${p_step}::INTERVAL, '%Y-%m-%dT%H:%M:%S.%f0Z')"
        f' ORDER BY x.i)) AS "{axis}"'
    )
    select = ", ".join(([sel_groups] if sel_groups else []) + series_cols + [axis_col])
    idx = f"(SELECT range AS i FROM range({n_bins}))"
    if groups:
        sql = (
            f'SELECT {select} FROM "{groups}" g CROSS JOIN {idx} x LEFT JOIN "{binned}" b'
            f" ON b.__outpost_i = x.i AND {on_groups} GROUP BY {sel_groups}"
        )
    else:
        sql = (
            f'SELECT {select} FROM {idx} x LEFT JOIN "{binned}" b ON b.__outpost_i = x.i'
            f' HAVING (SELECT count(*) FROM "{source}") > 0'
        )
    return op.replace_pipeline(s.table_from_sql(sql, params))
