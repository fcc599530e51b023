"""Scalar functions duckdb-kql lacks and KQL cannot spell with the ones it has, in Python.

Each takes one row's argument values (arrays and bags as lists and dicts) and returns the cell;
`rewrites/row_calls.py` computes them per row, `rewrites/const_calls.py` folds them when every
argument is a literal. Wrong input gives null (or an empty string), as in Kusto.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import ipaddress
import math
import urllib.parse
import zlib
from collections.abc import Callable
from typing import Any

from telemetry.kql.errors import QueryTooComplexError
from telemetry.kql.series_elementwise import FUNCTIONS as SERIES

Kind = str  # "dynamic", "real", "long", "bool", "string"


def _bag_zip(a: list[Any]) -> Any:
    keys, values = a[0], a[1]
    if not isinstance(keys, list):
        return None
    values = values if isinstance(values, list) else []
    return {k: (values[i] if i < len(values) else None) for i, k in enumerate(keys) if isinstance(k, str)}


def _distinct(items: list[Any]) -> list[Any]:
    out: list[Any] = []
    for x in items:
        if x not in out:
            out.append(x)
    return out


def _arrays(a: list[Any]) -> list[list[Any]] | None:
    return a if all(isinstance(x, list) for x in a) and a else None


def _set_union(a: list[Any]) -> Any:
    arrays = _arrays(a)
    return None if arrays is None else _distinct([x for arr in arrays for x in arr])


def _set_intersect(a: list[Any]) -> Any:
    arrays = _arrays(a)
    return None if arrays is None else [x for x in _distinct(arrays[0]) if all(x in o for o in arrays[1:])]


def _set_difference(a: list[Any]) -> Any:
    arrays = _arrays(a)
    return None if arrays is None else [x for x in _distinct(arrays[0]) if not any(x in o for o in arrays[1:])]


def _truthy(x: Any) -> bool | None:
    if isinstance(x, bool):
        return x
    if isinstance(x, int | float):
        return x != 0
    return None


def _array_iff(a: list[Any]) -> Any:
    cond, yes, no = a
    if not isinstance(cond, list):
        return None

    def pick(src: Any, i: int) -> Any:
        if isinstance(src, list):
            return src[i] if i < len(src) else None
        return src

    out = []
    for i, c in enumerate(cond):
        t = _truthy(c)
        out.append(None if t is None else pick(yes if t else no, i))
    return out


def _bag_merge(a: list[Any]) -> Any:
    out: dict[str, Any] = {}
    for bag in a:
        if isinstance(bag, dict):
            for k, v in bag.items():
                out.setdefault(k, v)  # the first bag that has a key wins
    return out


def _bag_remove_keys(a: list[Any]) -> Any:
    bag, keys = a
    if not isinstance(bag, dict) or not isinstance(keys, list):
        return None
    return {k: v for k, v in bag.items() if k not in keys}


def _bag_set_key(a: list[Any]) -> Any:
    bag, key, value = a
    if not isinstance(bag, dict) or not isinstance(key, str) or key.startswith("$"):
        return None  # JSONPath keys are not handled here
    return {**bag, key: value}


def _codepoints_to_string(a: list[Any]) -> Any:
    points = a[0] if len(a) == 1 and isinstance(a[0], list) else a
    try:
        return "".join(chr(p) for p in points)
    except (TypeError, ValueError):
        return None


def _codepoints_from_string(a: list[Any]) -> Any:
    return [ord(c) for c in a[0]] if isinstance(a[0], str) else None


def _decompress(unpack: Callable[[bytes], bytes]) -> Callable[[list[Any]], Any]:
    def run(a: list[Any]) -> Any:
        try:
            return unpack(base64.b64decode(a[0], validate=True)).decode("utf-8")
        except (TypeError, ValueError, binascii.Error, zlib.error, OSError, EOFError):
            return ""

    return run


def _lower_escapes(text: str) -> str:
    parts = text.split("%")
    return parts[0] + "".join("%" + p[:2].lower() + p[2:] for p in parts[1:])


def _encoder(plus: bool) -> Callable[[list[Any]], Any]:
    quote = urllib.parse.quote_plus if plus else urllib.parse.quote

    def run(a: list[Any]) -> Any:
        return _lower_escapes(quote(a[0], safe="")) if isinstance(a[0], str) else None

    return run


def _ipv6(text: Any) -> tuple[int, int, bool] | None:
    """(address as a 128-bit integer, its prefix bits, whether it was IPv4) or None when invalid."""
    if not isinstance(text, str):
        return None
    addr, _, bits = text.strip().partition("/")
    try:
        ip = ipaddress.ip_address(addr)
        v4 = ip.version == 4
        width = 32 if v4 else 128
        n = int(bits) if bits else width
        if not 0 <= n <= width:
            return None
    except ValueError:
        return None
    value = int(ipaddress.IPv6Address(f"::ffff:{ip}")) if v4 else int(ip)
    return value, n + 96 if v4 else n, v4


def _ipv6_compare(a: list[Any]) -> Any:
    x, y = _ipv6(a[0]), _ipv6(a[1])
    if x is None or y is None:
        return None
    bits = min(x[1], y[1])
    if len(a) == 3:
        if not isinstance(a[2], int) or isinstance(a[2], bool):
            return None
        bits = min(bits, a[2] + 96 if x[2] and y[2] else a[2])  # an IPv4 pair's prefix counts IPv4 bits
    mask = ((1 << 128) - 1) ^ ((1 << (128 - bits)) - 1)
    p, q = x[0] & mask, y[0] & mask
    return (p > q) - (p < q)


def _ipv6_is_match(a: list[Any]) -> Any:
    c = _ipv6_compare(a)
    return None if c is None else c == 0


def _ipv6_is_in_range(a: list[Any]) -> Any:
    ip, rng = _ipv6(a[0]), _ipv6(a[1])
    if ip is None or rng is None:
        return None
    shift = 128 - rng[1]
    return ip[0] >> shift == rng[0] >> shift


def _punycode_to_string(a: list[Any]) -> Any:
    try:
        return a[0].encode("ascii").decode("punycode") if isinstance(a[0], str) else None
    except (UnicodeError, ValueError):
        return ""


MAX_RANGE = 100_000  # elements of one range() array


def _range(a: list[Any]) -> Any:
    """`range(start, stop[, step])` over numbers: the inclusive sequence, as Kusto builds it."""
    first, stop, step = a[0], a[1], a[2] if len(a) == 3 else 1
    if not all(isinstance(x, int | float) and not isinstance(x, bool) for x in (first, stop, step)) or step == 0:
        return None
    count = math.floor((stop - first) / step) + 1
    if count > MAX_RANGE:
        raise QueryTooComplexError(f"range(): {count} elements is more than the {MAX_RANGE} allowed here")
    real = any(isinstance(x, float) for x in (first, stop, step))
    return [first + i * step if not real else float(first + i * step) for i in range(max(count, 0))]


def _erfc(a: list[Any]) -> Any:
    x = a[0]
    return math.erfc(x) if isinstance(x, int | float) and not isinstance(x, bool) else None


# name -> (function of the row's argument values, result kind, accepted argument counts)
FUNCTIONS: dict[str, tuple[Callable[[list[Any]], Any], Kind, tuple[int, ...]]] = {
    "bag_zip": (_bag_zip, "dynamic", (2,)),
    "set_union": (_set_union, "dynamic", ()),
    "set_intersect": (_set_intersect, "dynamic", ()),
    "set_difference": (_set_difference, "dynamic", ()),
    "array_iff": (_array_iff, "dynamic", (3,)),
    "array_iif": (_array_iff, "dynamic", (3,)),
    "bag_merge": (_bag_merge, "dynamic", ()),
    "bag_remove_keys": (_bag_remove_keys, "dynamic", (2,)),
    "bag_set_key": (_bag_set_key, "dynamic", (3,)),
    "unicode_codepoints_to_string": (_codepoints_to_string, "string", ()),
    "unicode_codepoints_from_string": (_codepoints_from_string, "dynamic", (1,)),
    "zlib_decompress_from_base64_string": (_decompress(zlib.decompress), "string", (1,)),
    "gzip_decompress_from_base64_string": (_decompress(gzip.decompress), "string", (1,)),
    "url_encode": (_encoder(plus=True), "string", (1,)),
    "url_encode_component": (_encoder(plus=False), "string", (1,)),
    "erfc": (_erfc, "real", (1,)),
    "ipv6_compare": (_ipv6_compare, "long", (2, 3)),
    "ipv6_is_match": (_ipv6_is_match, "bool", (2, 3)),
    "ipv6_is_in_range": (_ipv6_is_in_range, "bool", (2,)),
    "punycode_to_string": (_punycode_to_string, "string", (1,)),
    "range": (_range, "dynamic", (2, 3)),  # numbers only: datetimes and timespans stay refused
}
FUNCTIONS |= {name: (fn, "dynamic" if kind == "array" else "real", ()) for name, (fn, kind) in SERIES.items()}
