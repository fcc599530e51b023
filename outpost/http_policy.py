"""The policy every Outpost HTTP client follows (DESIGN.md "Wire contract"), with no HTTP library imported.

Two clients apply it: `outpost.http` (httpx: the agent and long-running processes) and
`outpost.commands.client` (the standard library's http.client: CLI commands, which would
otherwise spend most of their run importing httpx). Both answer with `ApiError` on failure.
"""

from __future__ import annotations

import random
import ssl

RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
MAX_RETRY_AFTER_S = 30.0
BACKOFF_MULTIPLIER_S = 0.5
BACKOFF_MAX_S = 8.0


class ApiError(Exception):
    """A request that failed for good: ``status`` is the HTTP status, or 0 when no answer came."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def retry_after_s(header: str | None) -> float | None:
    """A `Retry-After: N` header as seconds (capped), or None when absent or not a number of seconds."""
    if header and header.strip().isdigit():
        return min(float(header), MAX_RETRY_AFTER_S)
    return None


def backoff_s(attempt: int) -> float:
    """Full-jitter exponential backoff after failed attempt number `attempt` (1, 2, ...): 0-0.5 s, 0-1 s, ..."""
    return random.uniform(0, min(BACKOFF_MAX_S, BACKOFF_MULTIPLIER_S * 2 ** (attempt - 1)))


def ssl_context(ca_file: str | None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=ca_file) if ca_file else ssl.create_default_context()
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx
