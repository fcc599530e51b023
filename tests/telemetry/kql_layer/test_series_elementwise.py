"""The element-wise series functions (telemetry.kql.series_elementwise), value by value."""

from __future__ import annotations

import math
from typing import Any

import pytest

from telemetry.kql.series_elementwise import FUNCTIONS

CASES: list[tuple[str, list[Any], Any]] = [
    ("series_add", [[1, 2, 4], [4, 2, 1]], [5, 4, 5]),
    ("series_add", [[1, 2, 3], [10]], [11, None, None]),  # the shorter array is padded with nulls
    ("series_subtract", [[1, 2], 1], [0, 1]),  # a scalar applies to every element
    ("series_multiply", [[1, "x", None], 2], [2, None, None]),  # non-numbers give null
    ("series_divide", [[1, 2], [0, 4]], [None, 0.5]),
    ("series_greater_equals", [[1, 2, 4], [4, 2, 1]], [False, True, True]),
    ("series_sign", [[-6, 0, 8]], [-1, 0, 1]),
    ("series_ceiling", [[-1.5, 1, 2.5]], [-1.0, 1.0, 3.0]),
    ("series_log", [[1, 0]], [0.0, None]),
    ("series_fill_const", [[111, None, 36], 0.0], [111, 0.0, 36]),
    ("series_fill_forward", [[None, 36, None, None, 16]], [None, 36, 36, 36, 16]),
    ("series_fill_backward", [[111, None, 36, None]], [111, 36, 36, None]),
    ("series_dot_product", [[1, 2, 4], [4, 2, 1]], 12.0),
    ("series_dot_product", [[1, 2, 4], 2], 14.0),
    ("series_pearson_correlation", [[1, 2, 3, 4, 5], [2, 4, 6, 8, 10]], 1.0),
    ("series_cosine_similarity", [[0.1, 0.2, 0.1, 0.2], [1, 2, 3, 4]], 0.923760430703401),
    ("series_sin", ["not an array"], None),
]


@pytest.mark.parametrize(("name", "args", "want"), CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_series_function(name: str, args: list[Any], want: Any) -> None:
    fn, kind = FUNCTIONS[name]
    got = fn(args)
    if isinstance(want, float):
        assert kind == "num"
        assert math.isclose(got, want, rel_tol=1e-12)
    else:
        assert got == want
