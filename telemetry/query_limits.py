"""Defaults and size parsing for the query budget (stdlib only: the CLI imports it on every command)."""

from __future__ import annotations

import re

# What queries may use (`--query-memory`, `--query-threads`). DuckDB's limits are per database
# except `operator_memory_limit`, which is per connection: each query's cursor gets the query
# budget, the database as a whole twice that, and spilling to disk stops at four times that.
DEFAULT_QUERY_MEMORY = "1GiB"
DEFAULT_QUERY_THREADS = 2
_UNITS = {"": 1, "b": 1, "k": 2**10, "kb": 10**3, "kib": 2**10, "m": 2**20, "mb": 10**6, "mib": 2**20}
_UNITS |= {"g": 2**30, "gb": 10**9, "gib": 2**30, "t": 2**40, "tb": 10**12, "tib": 2**40}


def parse_size(text: str) -> int:
    """`512MiB`, `1GiB`, `2GB`, `1g` or a byte count -> bytes; raises ValueError."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*", str(text))
    unit = m.group(2).lower() if m else ""
    if not m or unit not in _UNITS:
        raise ValueError(f"not a size: {text!r} (use e.g. 512MiB or 2GiB)")
    value = int(float(m.group(1)) * _UNITS[unit])
    if value < 64 * 2**20:
        raise ValueError(f"{text!r} is too small for DuckDB (at least 64MiB)")
    return value
