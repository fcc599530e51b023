"""Result typing and formatting: DuckDB values as Kusto's v1/v2 JSON shows them.

Kusto types come from DuckDB's column types; a value is formatted by its column's Kusto type
(a `datetime` as `2024-01-01T00:00:00.0000000Z`, a `timespan` as `[-][d.]hh:mm:ss[.fffffff]`,
a `dynamic` as parsed JSON, a non-finite `real` by name), so clients that read cells by their
column type (the Kusto SDKs) get back the values the query computed.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

DEFAULT_MAX_ROWS = 500_000  # Kusto's default result truncation


@dataclass
class QueryResult:
    columns: list[tuple[str, str]]  # (name, Kusto type)
    rows: list[list[Any]]  # JSON-ready values
    truncated: bool = False
    # Kusto REST carries `render` in @ExtendedProperties: {"Visualization": "timechart", ...}
    visualization: dict[str, Any] | None = field(default=None)


def kusto_type(duck_type: str) -> str:
    """DuckDB type -> Kusto scalar type."""
    t = duck_type.upper()
    if t.startswith("TIMESTAMP") or t == "DATE":
        return "datetime"
    if t in ("VARCHAR", "TEXT", "STRING") or t.startswith("VARCHAR"):
        return "string"
    if t in ("BIGINT", "HUGEINT", "UBIGINT", "UINTEGER"):
        return "long"
    if t in ("INTEGER", "SMALLINT", "TINYINT", "USMALLINT", "UTINYINT"):
        return "int"
    if t in ("DOUBLE", "FLOAT", "REAL"):
        return "real"
    if t.startswith("DECIMAL"):
        return "decimal"
    if t == "BOOLEAN":
        return "bool"
    if t == "INTERVAL":
        return "timespan"
    if t == "UUID":
        return "guid"
    return "dynamic"  # JSON, LIST, STRUCT, MAP


def format_timespan(td: timedelta) -> str:
    """Kusto's timespan text: [-][d.]hh:mm:ss[.fffffff]."""
    total_us = td.days * 86_400_000_000 + td.seconds * 1_000_000 + td.microseconds
    sign = "-" if total_us < 0 else ""
    total_us = abs(total_us)
    days, rem = divmod(total_us, 86_400_000_000)
    hours, rem = divmod(rem, 3_600_000_000)
    minutes, rem = divmod(rem, 60_000_000)
    seconds, micros = divmod(rem, 1_000_000)
    text = f"{sign}{days}." if days else sign
    text += f"{hours:02d}:{minutes:02d}:{seconds:02d}"
    if micros:
        text += f".{micros:06d}0"
    return text


def format_datetime(dt: datetime) -> str:
    if dt.tzinfo is not None:
        dt = dt.astimezone(UTC).replace(tzinfo=None)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.%f") + "0Z"


def _nested(value: Any) -> Any:
    """An element inside a dynamic value: datetimes and timespans as Kusto's JSON spells them."""
    if isinstance(value, datetime):
        return format_datetime(value)
    if isinstance(value, date):
        return format_datetime(datetime(value.year, value.month, value.day))
    if isinstance(value, timedelta):
        return format_timespan(value)
    if isinstance(value, time):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, list | tuple):
        return [_nested(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _nested(v) for k, v in value.items()}
    if isinstance(value, bytes):
        return value.hex()
    return value


def json_value(value: Any, ktype: str) -> Any:
    """A DuckDB value as Kusto's JSON shows it, for a column of Kusto type *ktype*."""
    if value is None:
        return None
    if ktype == "dynamic" and isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    if isinstance(value, Decimal):
        return str(value) if ktype == "decimal" else float(value)
    return _nested(value)


def parse_timespan_seconds(text: str) -> float:
    """Kusto timespan text (`[d.]hh:mm:ss[.f]`) -> seconds; raises ValueError."""
    m = re.fullmatch(r"\s*(?:(\d+)\.)?(\d{1,2}):(\d{1,2}):(\d{1,2}(?:\.\d+)?)\s*", text)
    if not m:
        raise ValueError(f"not a timespan: {text!r}")
    days, hours, minutes, seconds = m.groups()
    return int(days or 0) * 86400 + int(hours) * 3600 + int(minutes) * 60 + float(seconds)
