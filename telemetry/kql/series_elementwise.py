"""Element-wise series functions (`series_add`, `series_sin`, `series_fill_forward`, ...) in Python.

Each takes its arguments' values for one row (arrays as lists, scalars as numbers) and returns
the result cell. Arrays combine element by element up to the longer one; a scalar argument
applies to every element; an element that is not a number gives null, as in Kusto.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

Number = int | float


def _num(v: Any) -> Number | None:
    return v if isinstance(v, int | float) and not isinstance(v, bool) else None


def _elements(values: list[Any]) -> list[list[Number | None]] | None:
    """Every argument as a list of the same length (scalars repeated); None when none is an array."""
    arrays = [v for v in values if isinstance(v, list)]
    if not arrays:
        return None
    n = max(len(a) for a in arrays)
    out = []
    for v in values:
        if isinstance(v, list):
            out.append([_num(x) for x in v] + [None] * (n - len(v)))
        else:
            out.append([_num(v)] * n)
    return out


def _safe(fn: Callable[..., Any]) -> Callable[..., Any]:
    def call(*xs: Number | None) -> Any:
        if any(x is None for x in xs):
            return None
        try:
            return fn(*xs)
        except (ValueError, ZeroDivisionError, OverflowError):
            return None

    return call


def _sign(x: Number) -> int:
    return (x > 0) - (x < 0)


UNARY: dict[str, Callable[[Number], Any]] = {
    "series_abs": abs,
    "series_acos": math.acos,
    "series_asin": math.asin,
    "series_atan": math.atan,
    "series_ceiling": lambda x: float(math.ceil(x)),
    "series_cos": math.cos,
    "series_exp": math.exp,
    "series_floor": lambda x: float(math.floor(x)),
    "series_log": math.log,
    "series_sign": _sign,
    "series_sin": math.sin,
    "series_tan": math.tan,
}
BINARY: dict[str, Callable[[Number, Number], Any]] = {
    "series_add": lambda a, b: a + b,
    "series_subtract": lambda a, b: a - b,
    "series_multiply": lambda a, b: a * b,
    "series_divide": lambda a, b: a / b,  # Kusto's series_divide is real-valued
    "series_pow": lambda a, b: float(a) ** b,
    "series_equals": lambda a, b: a == b,
    "series_not_equals": lambda a, b: a != b,
    "series_greater": lambda a, b: a > b,
    "series_greater_equals": lambda a, b: a >= b,
    "series_less": lambda a, b: a < b,
    "series_less_equals": lambda a, b: a <= b,
}


def _elementwise(fn: Callable[..., Any], arity: int) -> Callable[[list[Any]], Any]:
    safe = _safe(fn)

    def run(values: list[Any]) -> Any:
        if len(values) != arity:
            return None
        cols = _elements(values)
        return None if cols is None else [safe(*xs) for xs in zip(*cols, strict=True)]

    return run


def _fill_const(values: list[Any]) -> Any:
    arr, const = values[0], values[1] if len(values) > 1 else 0.0
    return [const if x is None else x for x in arr] if isinstance(arr, list) else None


def _fill_forward(values: list[Any]) -> Any:
    arr = values[0]
    if not isinstance(arr, list):
        return None
    out, last = [], None
    for x in arr:
        last = x if x is not None else last
        out.append(last)
    return out


def _fill_backward(values: list[Any]) -> Any:
    arr = values[0]
    filled = _fill_forward([arr[::-1]]) if isinstance(arr, list) else None
    return filled[::-1] if filled is not None else None


def _pairs(values: list[Any]) -> list[tuple[Number, Number]] | None:
    cols = _elements(values[:2]) if len(values) == 2 else None
    if cols is None:
        return None
    return [(a, b) for a, b in zip(*cols, strict=True) if a is not None and b is not None]


def _dot(values: list[Any]) -> Any:
    pairs = _pairs(values)
    return None if pairs is None else float(sum(a * b for a, b in pairs))


def _cosine(values: list[Any]) -> Any:
    pairs = _pairs(values)
    if not pairs:
        return None
    na, nb = math.sqrt(sum(a * a for a, _ in pairs)), math.sqrt(sum(b * b for _, b in pairs))
    return sum(a * b for a, b in pairs) / (na * nb) if na and nb else None


def _pearson(values: list[Any]) -> Any:
    pairs = _pairs(values)
    if not pairs or len(pairs) < 2:
        return None
    n = len(pairs)
    ma, mb = sum(a for a, _ in pairs) / n, sum(b for _, b in pairs) / n
    cov = sum((a - ma) * (b - mb) for a, b in pairs)
    va, vb = sum((a - ma) ** 2 for a, _ in pairs), sum((b - mb) ** 2 for _, b in pairs)
    return cov / math.sqrt(va * vb) if va and vb else None


# name -> (function of the row's argument values, result kind: "array" or "num")
FUNCTIONS: dict[str, tuple[Callable[[list[Any]], Any], str]] = {
    **{name: (_elementwise(fn, 1), "array") for name, fn in UNARY.items()},
    **{name: (_elementwise(fn, 2), "array") for name, fn in BINARY.items()},
    "series_fill_const": (_fill_const, "array"),
    "series_fill_forward": (_fill_forward, "array"),
    "series_fill_backward": (_fill_backward, "array"),
    "series_dot_product": (_dot, "num"),
    "series_cosine_similarity": (_cosine, "num"),
    "series_pearson_correlation": (_pearson, "num"),
}
