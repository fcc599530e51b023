"""The errors a KQL query can end with, each with the HTTP status the API answers.

`kql` re-exports them (`kql.QueryError`, ...). Messages are shortened so a query
that embeds a 400-digit literal or a megabyte of text never makes a huge answer
or log line.
"""

from __future__ import annotations

from typing import Any

MAX_MESSAGE_CHARS = 600


def shorten(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


class QueryError(Exception):
    """A query the user must fix (HTTP 400); `line`/`column` locate it when known (1-based)."""

    kind = "error"
    status = 400

    def __init__(self, message: str, *, line: int | None = None, column: int | None = None) -> None:
        message = shorten(message)
        super().__init__(message)
        self.message = message
        self.line = line
        self.column = column

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"error": self.kind, "message": self.message}
        if self.line is not None:
            out["line"] = self.line
            out["column"] = self.column
        return out


class QuerySyntaxError(QueryError):
    kind = "syntax_error"


class QueryUnsupportedError(QueryError):
    kind = "unsupported"


class UnknownTableError(QueryError):
    kind = "unknown_table"


class UnknownColumnError(QueryError):
    kind = "unknown_column"


class QueryTooComplexError(QueryError):
    """Refused before it is built: nesting, SQL size or a `range` too large to be worth running."""

    kind = "too_complex"


class QueryResourceError(QueryError):
    """The query needed more memory or temporary disk than `--query-memory` allows."""

    kind = "resource_limit"


class QueryTimeoutError(QueryError):
    """Ran past its deadline (parse, rewrite, translation and execution together): 408."""

    kind = "timeout"
    status = 408


class QueryBusyError(QueryError):
    """Every query slot stayed taken until the deadline: 429, try again."""

    kind = "busy"
    status = 429
