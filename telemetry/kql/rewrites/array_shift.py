"""`array_rotate_left/right` and `array_shift_left/right`, spelled with array_slice and array_concat.

- rotate by k: the window of length L at offset k mod L in the array written twice;
- shift by a literal n with a fill value: the window of length L in the array padded with n
  copies of the fill (on the right for a left shift, on the left for a right shift); a negative
  n shifts the other way.

A shift without a fill pads with nulls, and duckdb-kql's array_concat breaks on null elements
(its JSON comes out as `NULL`), so that form, and a shift by a computed count, stay refused.
"""

from __future__ import annotations

from telemetry.kql.tree import Edit, Tree, call_name, end, start

ROTATE = ("array_rotate_left", "array_rotate_right")
SHIFT = ("array_shift_left", "array_shift_right")
MAX_SHIFT = 1_000  # copies of the fill written into the query text


def _rotate(fn: str, arr: str, k: str) -> str:
    n = f"array_length({arr})"
    k = f"({k})" if fn == "array_rotate_left" else f"(-({k}))"
    at = f"((({k} % {n}) + {n}) % {n})"
    return f"array_slice(array_concat({arr}, {arr}), {at}, {at} + {n} - 1)"


def _shift(fn: str, arr: str, count: str, fill: str) -> str | None:
    try:
        k = int(count.strip())
    except ValueError:
        return None
    if abs(k) > MAX_SHIFT:
        return None
    left = (fn == "array_shift_left") == (k >= 0)
    k = abs(k)
    if k == 0:
        return f"({arr})"
    pad = f"pack_array({', '.join([f'({fill})'] * k)})"
    last = f"array_length({arr}) - 1"
    if left:
        return f"array_slice(array_concat({arr}, {pad}), {k}, {k} + {last})"
    return f"array_slice(array_concat({pad}, {arr}), 0, {last})"


def edits(tree: Tree) -> list[Edit]:
    out = []
    for call in tree.calls(*ROTATE, *SHIFT):
        fn, args = call_name(call), tree.arg_texts(call)
        text = None
        if fn in ROTATE and len(args) == 2:
            text = _rotate(fn, args[0], args[1])
        elif fn in SHIFT and len(args) == 3:
            text = _shift(fn, *args)
        if text is not None:
            out.append(Edit(start(call), end(call), text))
    return out
