"""Time-series functions duckdb-kql lacks, computed in Python over small arrays.

`make-series` output is small (one array per group), so the query layer
materializes it and computes `series_stats`, `series_fit_line` and
`series_fit_2lines` here, with Kusto's output order (positional, as KQL binds
`extend (a, b, ...) = series_fn(x)`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any


def _clean(values: Any) -> list[float]:
    if not isinstance(values, list):
        return []
    out = []
    for v in values:
        try:
            out.append(float(v) if v is not None else 0.0)
        except (TypeError, ValueError):
            out.append(0.0)
    return out


def _variance(xs: Sequence[float]) -> float:
    n = len(xs)
    if n < 2:
        return 0.0
    mean = sum(xs) / n
    return sum((x - mean) ** 2 for x in xs) / (n - 1)


def _fit(ys: Sequence[float], offset: int = 0) -> tuple[float, float, list[float], float]:
    """Least squares over x = offset..offset+n-1: (slope, intercept, fitted, sum of squared residuals)."""
    n = len(ys)
    if n == 0:
        return 0.0, 0.0, [], 0.0
    xs = [offset + i for i in range(n)]
    mx = sum(xs) / n
    my = sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx if sxx else 0.0
    intercept = my - slope * mx
    fitted = [intercept + slope * x for x in xs]
    ssr = sum((y - f) ** 2 for y, f in zip(ys, fitted, strict=True))
    return slope, intercept, fitted, ssr


def _rsquare(ys: Sequence[float], ssr: float) -> float:
    n = len(ys)
    if n == 0:
        return 0.0
    my = sum(ys) / n
    sst = sum((y - my) ** 2 for y in ys)
    if sst == 0:
        return 1.0 if ssr == 0 else 0.0
    return 1.0 - ssr / sst


def series_stats(values: Any) -> list[Any]:
    """(min, min_idx, max, max_idx, avg, variance, stdev)."""
    xs = _clean(values)
    if not xs:
        return [None, None, None, None, None, None, None]
    lo = min(xs)
    hi = max(xs)
    var = _variance(xs)
    return [lo, xs.index(lo), hi, xs.index(hi), sum(xs) / len(xs), var, math.sqrt(var)]


def series_fit_line(values: Any) -> list[Any]:
    """(rsquare, slope, variance, rvariance, interception, line_fit)."""
    ys = _clean(values)
    slope, intercept, fitted, ssr = _fit(ys)
    n = len(ys)
    rvar = ssr / (n - 1) if n > 1 else 0.0
    return [_rsquare(ys, ssr), slope, _variance(ys), rvar, intercept, fitted]


def series_fit_2lines(values: Any) -> list[Any]:
    """(rsquare, split_idx, variance, rvariance, line_fit, right_rsquare, right_slope,
    right_interception, right_variance, right_rvariance, left_rsquare, left_slope,
    left_interception, left_variance, left_rvariance)."""
    ys = _clean(values)
    n = len(ys)
    if n < 4:  # two lines need two points each
        r = series_fit_line(ys)
        return [r[0], 0, r[2], r[3], r[5], r[0], r[1], r[4], r[2], r[3], r[0], r[1], r[4], r[2], r[3]]
    best: tuple[float, int] | None = None
    for k in range(2, n - 1):
        ssr = _fit(ys[:k])[3] + _fit(ys[k:], k)[3]
        if best is None or ssr < best[0]:
            best = (ssr, k)
    assert best is not None
    ssr, k = best
    ls, li, lf, lssr = _fit(ys[:k])
    rs, ri, rf, rssr = _fit(ys[k:], k)
    left, right = ys[:k], ys[k:]
    return [
        _rsquare(ys, ssr),
        k,
        _variance(ys),
        ssr / (n - 1),
        lf + rf,
        _rsquare(right, rssr),
        rs,
        ri,
        _variance(right),
        rssr / max(1, len(right) - 1),
        _rsquare(left, lssr),
        ls,
        li,
        _variance(left),
        lssr / max(1, len(left) - 1),
    ]


# name -> (function, output kinds: "num" | "int" | "array")
SERIES_FUNCTIONS: dict[str, tuple[Callable[[Any], list[Any]], list[str]]] = {
    "series_stats": (series_stats, ["num", "int", "num", "int", "num", "num", "num"]),
    "series_fit_line": (series_fit_line, ["num", "num", "num", "num", "num", "array"]),
    "series_fit_2lines": (
        series_fit_2lines,
        ["num", "int", "num", "num", "array"] + ["num"] * 10,
    ),
}

# Kusto's default output names for `extend series_fn(x)` without a tuple
DEFAULT_NAMES: dict[str, list[str]] = {
    "series_stats": ["min", "min_idx", "max", "max_idx", "avg", "variance", "stdev"],
    "series_fit_line": ["rsquare", "slope", "variance", "rvariance", "interception", "line_fit"],
    "series_fit_2lines": [
        "rsquare",
        "split_idx",
        "variance",
        "rvariance",
        "line_fit",
        "right_rsquare",
        "right_slope",
        "right_interception",
        "right_variance",
        "right_rvariance",
        "left_rsquare",
        "left_slope",
        "left_interception",
        "left_variance",
        "left_rvariance",
    ],
}
