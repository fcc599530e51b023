"""Scalar functions duckdb-kql lacks (or lacks an arity of), spelled with ones it has.

- `make_datetime(y, m, d, h, mi)`: the missing trailing parts are zero (duckdb-kql takes 3 or 6);
- `split(s, d, i)`: the i-th part, as a one-element array (as Kusto returns it);
- `strrep(s, n, delimiter)`: n copies joined by *delimiter*;
- `unixtime_seconds_todatetime`, `unixtime_milliseconds_todatetime`,
  `unixtime_microseconds_todatetime`: the epoch plus that many units;
- `isascii(s)`: every character below U+0080;
- `string_size(s)`: UTF-8 bytes, as the character count plus one per character past each
  encoding boundary (U+0080, U+0800, U+10000); base64_encode_tostring would count them, but
  duckdb-kql's refuses non-ASCII text;
- the aggregates `variancep(x)` and `stdevp(x)`: from the sample variance and the count.
"""

from __future__ import annotations

from telemetry.kql.tree import Edit, Node, Tree, bare_name, call_name, core, end, rule, start

# (unit, factor) for datetime_add: `epoch + n * 1ms` overflows DuckDB's 32-bit interval multiply.
UNIXTIME = {
    "unixtime_seconds_todatetime": ("millisecond", " * 1000"),
    "unixtime_milliseconds_todatetime": ("microsecond", " * 1000"),
    "unixtime_microseconds_todatetime": ("microsecond", ""),
}
NAMES = ("make_datetime", "split", "strrep", "isascii", "string_size", *UNIXTIME)
UTF8_BOUNDARIES = (r"\x7F", r"\x{7FF}", r"\x{FFFF}")  # past each, a character takes one more byte
POPULATION = ("variancep", "stdevp")  # aggregates: the sample statistic, rescaled


def _expand(fn: str, a: list[str]) -> str | None:
    if fn == "make_datetime" and len(a) in (4, 5):
        return f"make_datetime({', '.join(a + ['0'] * (6 - len(a)))})"
    if fn == "split" and len(a) == 3:
        return f"pack_array(split({a[0]}, {a[1]})[{a[2]}])"
    if fn == "strrep" and len(a) == 3:
        unit = f"strcat({a[0]}, {a[2]})"
        return f"substring(strrep({unit}, {a[1]}), 0, ({a[1]}) * strlen({unit}) - strlen({a[2]}))"
    if fn == "isascii" and len(a) == 1:
        return f'(tostring({a[0]}) matches regex @"^[\\x00-\\x7F]*$")'
    if fn == "string_size" and len(a) == 1:
        s = f"tostring({a[0]})"
        more = " + ".join(f'countof({s}, @"[^\\x00-{b}]", "regex")' for b in UTF8_BOUNDARIES)
        return f"(strlen({s}) + {more})"
    if fn in UNIXTIME and len(a) == 1:
        unit, factor = UNIXTIME[fn]
        return f"datetime_add('{unit}', tolong(({a[0]}){factor}), datetime(1970-01-01))"
    return None


def _population(tree: Tree, call: Node) -> str | None:
    """`variancep(x)` = variance(x) * (n - 1) / n over the non-null x; `stdevp` its square root.

    The result wraps aggregates in a scalar, which `summarize_lift` then lifts; an unnamed item
    keeps Kusto's name (`variancep_x`).
    """
    fn, args = call_name(call), tree.arg_texts(call)
    if len(args) != 1:
        return None
    x = args[0]
    n = f"countif(isnotnull({x}))"
    text = f"(variance({x}) * ({n} - 1) / {n})"
    text = f"sqrt{text}" if fn == "stdevp" else text
    item = call.parentCtx
    while item is not None and rule(item) != "NamedExpression":
        item = item.parentCtx
    column = bare_name(tree, tree.args(call)[0])
    if item is not None and core(item) is call and tree.named(item)[0] is None and column:
        text = f"{fn}_{column} = {text}"
    return text


def edits(tree: Tree) -> list[Edit]:
    out = []
    for call in tree.calls(*POPULATION):
        text = _population(tree, call)
        if text is not None:
            out.append(Edit(start(call), end(call), text))
    for call in tree.calls(*NAMES):
        text = _expand(call_name(call), tree.arg_texts(call))
        if text is not None:
            out.append(Edit(start(call), end(call), text))
    return out
