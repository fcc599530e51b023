"""The functions computed in Python (telemetry.kql.row_functions, series ones included), value by value."""

from __future__ import annotations

import math
from typing import Any

import pytest

from telemetry.kql.row_functions import FUNCTIONS

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
    ("bag_zip", [["a", 8, "b"], 1], {"a": None, "b": None}),  # non-string keys dropped; no values
    ("bag_zip", [["a", "b"], [1, "2", 2.5]], {"a": 1, "b": "2"}),
    ("set_union", [[1, 2, 1, 4], [1, 2], [8]], [1, 2, 4, 8]),
    ("set_intersect", [[1, 2, 1, 4], [1, 2], [8, 1]], [1]),
    ("array_iff", [[True, True, True], [1, 2], [3, 4]], [1, 2, None]),
    ("array_iff", [[1, 0, "x"], "yes", "no"], ["yes", "no", None]),
    ("bag_merge", [{"A1": 12, "B1": 2}, {"A2": 81, "A1": 1}], {"A1": 12, "B1": 2, "A2": 81}),
    ("bag_set_key", [{"k": 1}, "k", 3], {"k": 3}),
    ("bag_set_key", [{"k": 1}, "$.k.p", 3], None),  # a JSONPath key is not handled
    ("bag_remove_keys", [{"k1": 1, "k2": 2}, ["k2", "k4"]], {"k1": 1}),
    ("unicode_codepoints_to_string", [75, 117], "Ku"),
    ("unicode_codepoints_to_string", [[75, 117]], "Ku"),
    ("unicode_codepoints_from_string", ["Kö"], [75, 246]),
    ("zlib_decompress_from_base64_string", ["eJwLSS0uUSguKcrMS1cwNDIGACxqBQ4="], "Test string 123"),
    ("zlib_decompress_from_base64_string", ["not base64!"], ""),
    ("url_encode", ["https://x.com/a b"], "https%3a%2f%2fx.com%2fa+b"),
    ("url_encode_component", ["a b/"], "a%20b%2f"),
    ("erfc", [0], 1.0),
    ("ipv6_compare", ["192.168.1.1", "192.168.1.0", 31], 0),  # an IPv4 pair's prefix counts IPv4 bits
    ("ipv6_compare", ["192.168.1.1/24", "192.168.1.255"], 0),  # the shorter suffix is used
    ("ipv6_compare", ["fe80::1", "fe80::2"], -1),
    ("ipv6_compare", ["fe80::1", "not an address"], None),
    ("ipv6_is_match", ["fe80::85d:e82c:9446:7994", "fe80::85d:e82c:9446:7995", 127], True),
    (
        "ipv6_is_in_range",
        ["a5e:f127:8a9d:146d:e102:b5d3:c755:abcd", "a5e:f127:8a9d:146d:e102:b5d3:c755:0000/112"],
        True,
    ),
    ("ipv6_is_in_range", ["a5e:f127:8a9d:146d:e102:b5d3:c755:abcd", "0:0:0:0:0:ffff:c0a8:ac/60"], False),
    ("punycode_to_string", ["acadmie-franaise-npb1a"], "académie-française"),
    ("range", [1, 8, 3], [1, 4, 7]),
    ("range", [1.0, 3], [1.0, 2.0, 3.0]),
    ("range", [5, 1], []),
    ("range", [10, 1, -4], [10, 6, 2]),
]


@pytest.mark.parametrize(("name", "args", "want"), CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_series_function(name: str, args: list[Any], want: Any) -> None:
    fn, kind, _ = FUNCTIONS[name]
    got = fn(args)
    if isinstance(want, float):
        assert kind == "real"
        assert math.isclose(got, want, rel_tol=1e-12)
    else:
        assert got == want


def test_range_is_bounded() -> None:
    from telemetry.kql.errors import QueryTooComplexError

    with pytest.raises(QueryTooComplexError, match="range"):
        FUNCTIONS["range"][0]([1, 1_000_000_000])
