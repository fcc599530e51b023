"""Scalar functions duckdb-kql lacks (or lacks an arity of), spelled with ones it has.

- `make_datetime(y, m, d, h, mi)`: the missing trailing parts are zero (duckdb-kql takes 3 or 6);
- `split(s, d, i)`: the i-th part, as a one-element array (as Kusto returns it);
- `strrep(s, n, delimiter)`: n copies joined by *delimiter*;
- `unixtime_seconds_todatetime`, `unixtime_milliseconds_todatetime`,
  `unixtime_microseconds_todatetime`: the epoch plus that many units.
"""

from __future__ import annotations

from telemetry.kql.tree import Edit, Tree, call_name, end, start

# (unit, factor) for datetime_add: `epoch + n * 1ms` overflows DuckDB's 32-bit interval multiply.
UNIXTIME = {
    "unixtime_seconds_todatetime": ("millisecond", " * 1000"),
    "unixtime_milliseconds_todatetime": ("microsecond", " * 1000"),
    "unixtime_microseconds_todatetime": ("microsecond", ""),
}
NAMES = ("make_datetime", "split", "strrep", *UNIXTIME)


def _expand(fn: str, a: list[str]) -> str | None:
    if fn == "make_datetime" and len(a) in (4, 5):
        return f"make_datetime({', '.join(a + ['0'] * (6 - len(a)))})"
    if fn == "split" and len(a) == 3:
        return f"pack_array(split({a[0]}, {a[1]})[{a[2]}])"
    if fn == "strrep" and len(a) == 3:
        unit = f"strcat({a[0]}, {a[2]})"
        return f"substring(strrep({unit}, {a[1]}), 0, ({a[1]}) * strlen({unit}) - strlen({a[2]}))"
    if fn in UNIXTIME and len(a) == 1:
        unit, factor = UNIXTIME[fn]
        return f"datetime_add('{unit}', tolong(({a[0]}){factor}), datetime(1970-01-01))"
    return None


def edits(tree: Tree) -> list[Edit]:
    out = []
    for call in tree.calls(*NAMES):
        text = _expand(call_name(call), tree.arg_texts(call))
        if text is not None:
            out.append(Edit(start(call), end(call), text))
    return out
