"""Lists as ARM serves them, `{"value": [...], "nextLink": ...}`, and the `$filter` subset clients send.

`nextLink` is this request's URL with an opaque `$skiptoken`; the SDK follows it as it is.
`$filter` takes `field op value` clauses joined by `and` (OData, as the SDK and the portal
write them: `properties/status eq 'Completed' and properties/startTime ge 2030-01-01T00:00:00Z`);
anything else is a 400 naming what is understood.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode, urlsplit

from fastapi import Request
from starlette.datastructures import URL

from automation.errors import BadRequest

DEFAULT_PAGE = 100
MAX_PAGE = 1000
_OPS = ("eq", "ne", "ge", "gt", "le", "lt")


def public_url(request: Request, url: URL) -> str:
    """`url` as clients reach this server: behind a TLS-terminating proxy the request says http, and
    azure-core refuses to follow an http link with a token. `--public-url` says what clients use."""
    base = getattr(request.app.state, "public_url", None)
    if base:
        parts = urlsplit(base)
        url = url.replace(scheme=parts.scheme, netloc=parts.netloc)
    return str(url)


def page_size(request: Request) -> int:
    raw = request.query_params.get("$top")
    if raw is None:
        return DEFAULT_PAGE
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_PAGE:
        raise BadRequest(f"$top must be a whole number from 1 to {MAX_PAGE}, not {raw!r}")
    return int(raw)


def skiptoken(request: Request) -> str | None:
    return request.query_params.get("$skiptoken") or None


def listing(request: Request, value: list[dict[str, Any]], token: str | None) -> dict[str, Any]:
    """One page; `token` (where the next page starts) makes the nextLink."""
    body: dict[str, Any] = {"value": value, "nextLink": None}
    if token is not None:
        params = [(k, v) for k, v in request.query_params.multi_items() if k != "$skiptoken"]
        params.append(("$skiptoken", token))
        body["nextLink"] = public_url(request, request.url.replace(query=urlencode(params)))
    return body


def page_in_memory(request: Request, items: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """For short lists read whole (runbooks, groups, assets): the token is an offset."""
    raw = skiptoken(request) or "0"
    if not raw.isdigit():
        raise BadRequest(f"$skiptoken {raw!r} is not one this server gave out; start the listing again")
    start, size = int(raw), page_size(request)
    rest = start + size
    return listing(request, list(items[start:rest]), str(rest) if rest < len(items) else None)


# -- $filter ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Clause:
    field: str  # as the client wrote it, e.g. properties/status
    op: str
    value: str | datetime


def _split_and(text: str) -> list[str]:
    """Split on ` and ` outside quoted strings."""
    parts, current, quoted, i = [], [], False, 0
    lower = text.lower()
    while i < len(text):
        ch = text[i]
        if ch == "'":
            quoted = not quoted
        if not quoted and lower.startswith(" and ", i):
            parts.append("".join(current))
            current = []
            i += 5
            continue
        current.append(ch)
        i += 1
    if quoted:
        raise BadRequest("$filter has an unterminated quoted string")
    parts.append("".join(current))
    return parts


_CLAUSE = re.compile(r"^\s*([A-Za-z][A-Za-z0-9/]*)\s+([A-Za-z]+)\s+(.+?)\s*$", re.S)


def _time(raw: str) -> datetime:
    text = raw[len("datetime") :] if raw.lower().startswith("datetime'") else raw
    text = text.strip("'")
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise BadRequest(f"$filter: {raw!r} is not an ISO 8601 time (e.g. 2030-01-31T08:00:00Z)") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def parse_filter(text: str | None, strings: Sequence[str], times: Sequence[str]) -> list[Clause]:
    """`strings` take `eq` with a quoted value; `times` take eq/ge/gt/le/lt with an ISO time."""
    if not text or not text.strip():
        return []
    if len(text) > 2000:
        raise BadRequest("$filter is longer than 2000 characters")
    known = {f.lower(): f for f in (*strings, *times)}
    clauses = []
    for part in _split_and(text):
        m = _CLAUSE.match(part)
        if not m or m.group(2).lower() not in _OPS:
            raise BadRequest(
                f"$filter clause {part.strip()!r} is not understood: use `field op value` clauses joined by `and`, "
                f"with fields {', '.join(known.values())}"
            )
        field, op, raw = known.get(m.group(1).lower()), m.group(2).lower(), m.group(3)
        if field is None:
            raise BadRequest(f"$filter field {m.group(1)!r} is not supported here; use {', '.join(known.values())}")
        if field in strings:
            if op != "eq" or len(raw) < 2 or raw[0] != "'" or raw[-1] != "'":
                raise BadRequest(f"$filter: {field} takes `eq 'value'`")
            clauses.append(Clause(field, op, raw[1:-1].replace("''", "'")))
        else:
            if op == "ne":
                raise BadRequest(f"$filter: {field} takes eq, ge, gt, le or lt")
            clauses.append(Clause(field, op, _time(raw)))
    return clauses


def compare(left: datetime | None, op: str, right: datetime) -> bool:
    """A time clause applied in Python (for records already read)."""
    if left is None:
        return False
    return {"eq": left == right, "ge": left >= right, "gt": left > right, "le": left <= right, "lt": left < right}[op]
