"""IPv4 functions duckdb-kql lacks, spelled with the ones it has (`parse_ipv4`, shifts, `extract`).

An address may carry a `/N` suffix; comparisons use the shorter prefix of the two (and of an
explicit prefix argument), as Kusto does: `ipv4_compare`, `ipv4_is_match`, `ipv4_is_in_range`,
`ipv4_is_in_any_range` (ranges given as arguments or as one `dynamic([...])` literal),
`ipv4_is_private`, `ipv4_netmask_suffix`. (`format_ipv4` is left out: spelled this way its
SQL grows past the budget's size limit, as every `tostring` repeats its operand.)
"""

from __future__ import annotations

import json

from telemetry.kql.errors import QueryError
from telemetry.kql.lexical import string_literal
from telemetry.kql.tree import Edit, Node, Tree, call_name, core, end, rule, start

PRIVATE = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")


def _suffix(x: str) -> str:
    return f"coalesce(toint(extract('/([0-9]{{1,2}})$', 1, {x})), 32)"


def _net(x: str, bits: str) -> str:
    return f"binary_shift_right(parse_ipv4({x}), 32 - ({bits}))"


def _compare(a: str, b: str, prefix: str | None) -> str:
    bits = f"min_of({_suffix(a)}, {_suffix(b)}" + (f", {prefix})" if prefix else ")")
    return f"toint(sign({_net(a, bits)} - {_net(b, bits)}))"


def _in_range(ip: str, rng: str) -> str:
    bits = _suffix(rng)
    return f"({_net(ip, bits)} == {_net(rng, bits)})"


def _ranges(tree: Tree, args: list[Node]) -> list[str]:
    """Range arguments: each a string expression, or the elements of one `dynamic([...])` literal."""
    out: list[str] = []
    for arg in args:
        inner = core(arg)
        if rule(inner) == "DynamicLiteralExpression":
            text = tree.text(inner)
            try:
                values = json.loads(text[text.index("(") + 1 : text.rindex(")")])
            except ValueError:
                raise QueryError(f"ipv4_is_in_any_range: ranges must be strings ({text})") from None
            out += [string_literal(str(v)) for v in values] if isinstance(values, list) else []
        else:
            out.append(tree.text(arg).strip())
    return out


def _expand(tree: Tree, call: Node) -> str | None:
    fn, args = call_name(call), tree.args(call)
    a = [tree.text(x).strip() for x in args]
    if fn == "ipv4_compare" and len(a) in (2, 3):
        return _compare(a[0], a[1], a[2] if len(a) == 3 else None)
    if fn == "ipv4_is_match" and len(a) in (2, 3):
        return f"({_compare(a[0], a[1], a[2] if len(a) == 3 else None)} == 0)"
    if fn == "ipv4_is_in_range" and len(a) == 2:
        return _in_range(a[0], a[1])
    if fn == "ipv4_is_in_any_range" and len(a) >= 2:
        if any(rule(core(x)) not in ("DynamicLiteralExpression", "StringLiteralExpression") for x in args[1:]):
            return None  # a range list held in a column or let: not expandable here
        ranges = _ranges(tree, args[1:])
        return "(" + " or ".join(_in_range(a[0], r) for r in ranges) + ")" if ranges else "false"
    if fn == "ipv4_is_private" and len(a) == 1:
        return "(" + " or ".join(_in_range(a[0], string_literal(r)) for r in PRIVATE) + ")"
    if fn == "ipv4_netmask_suffix" and len(a) == 1:
        return f"iff(isnull(parse_ipv4({a[0]})), int(null), {_suffix(a[0])})"
    return None


NAMES = ("ipv4_compare", "ipv4_is_match", "ipv4_is_in_range", "ipv4_is_in_any_range", "ipv4_is_private")
NAMES += ("ipv4_netmask_suffix",)


def edits(tree: Tree) -> list[Edit]:
    out = []
    for call in tree.calls(*NAMES):
        text = _expand(tree, call)
        if text is not None:
            out.append(Edit(start(call), end(call), text))
    return out
