"""Domain errors; the API maps each to its HTTP status with the message as `detail`.

Also what a store outage is (`is_store_outage`) and how it is reported: one WARNING when the
control-plane store becomes unreachable, one when it is back (`STORE`), never a traceback per
request; clients get 503 with `Retry-After` meanwhile (automation/middleware.py).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time

from sqlalchemy import exc as sa_exc

log = logging.getLogger("outpost.server")

RETRY_AFTER_S = 2  # what a 503 for a store outage tells clients to wait


class ControlPlaneError(Exception):
    status = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequest(ControlPlaneError):
    status = 400


class Unauthorized(ControlPlaneError):
    status = 401


class Forbidden(ControlPlaneError):
    status = 403


class NotFound(ControlPlaneError):
    status = 404


class Conflict(ControlPlaneError):
    status = 409


def _driver_outage_types() -> tuple[type[BaseException], ...]:
    types: list[type[BaseException]] = [sqlite3.OperationalError]
    try:
        import psycopg

        types += [psycopg.OperationalError, psycopg.InterfaceError]
    except ImportError:  # psycopg is only needed for PostgreSQL
        pass
    return tuple(types)


DRIVER_OUTAGES = _driver_outage_types()


def is_store_outage(exc: BaseException) -> bool:
    """The store could not be reached or used right now (down, disconnected, locked, pool exhausted)."""
    if isinstance(exc, (sa_exc.TimeoutError, sa_exc.DisconnectionError)):
        return True
    if isinstance(exc, sa_exc.DBAPIError):
        return exc.connection_invalidated or isinstance(exc, (sa_exc.OperationalError, sa_exc.InterfaceError))
    return isinstance(exc, DRIVER_OUTAGES)


def outage_cause(exc: BaseException) -> str:
    """One line naming the cause: the driver's message, never SQLAlchemy's statement and parameters."""
    inner = getattr(exc, "orig", None) or exc
    text = " ".join(str(inner).split())  # psycopg spreads one message over lines
    return f"{type(inner).__name__}: {text[:300]}" if text else type(inner).__name__


class StoreHealth:
    """Logs an outage once when it starts and once when it ends, however many requests hit it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._down_since: float | None = None

    @property
    def down(self) -> bool:
        return self._down_since is not None

    def failed(self, exc: BaseException) -> None:
        with self._lock:
            if self._down_since is not None:
                return
            self._down_since = time.monotonic()
        log.warning(
            "control-plane store unreachable (%s); answering 503 with Retry-After until it is back", outage_cause(exc)
        )

    def ok(self) -> None:
        if self._down_since is None:  # the common case: no lock
            return
        with self._lock:
            since, self._down_since = self._down_since, None
        if since is not None:
            log.warning("control-plane store reachable again after %.1f s", time.monotonic() - since)


STORE = StoreHealth()


class OutageLogFilter(logging.Filter):
    """Turn any log record that carries a store-outage exception into the one outage warning.

    The listener thread, the pool and the background loops may each notice an outage; the
    operator reads one line with its cause instead of a traceback per attempt.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[1] is not None and is_store_outage(record.exc_info[1]):
            STORE.failed(record.exc_info[1])
            return False
        return True


def install_outage_log_filter() -> None:
    """On every handler of the root logger (set up by `outpost server` before the app is built)."""
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, OutageLogFilter) for f in handler.filters):
            handler.addFilter(OutageLogFilter())
