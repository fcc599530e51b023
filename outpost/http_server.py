"""Server-side HTTP settings every Outpost listener shares (`outpost server`, `outpost collector`).

uvicorn times out idle keep-alive connections, but not a request that never finishes: a
client that sends its headers a byte at a time, or announces a body and stops, would hold
a connection (and the app's task waiting for the body) forever. `TimedHttp` closes them:
- the request line and headers must arrive within HEADER_TIMEOUT_S of the request's first
  byte (or of the connection's opening): else `408` and the connection is closed;
- the body must arrive within BODY_TIMEOUT_S of the headers: else the connection is closed
  (the route sees the client disconnect).
"""

from __future__ import annotations

import asyncio
import atexit
import gc
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

HEADER_TIMEOUT_S = 10.0
BODY_TIMEOUT_S = 60.0  # 8 MiB (the largest body) at about 140 KB/s
KEEP_ALIVE_S = 5  # uvicorn's default idle timeout between requests on a connection

_TIMEOUT_408 = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\nconnection: close\r\ncontent-length: "
)


# CPython's default is (700, 10, 10): a young-generation pass every 700 net container allocations.
GC_THRESHOLDS = (50_000, 20, 10)


def settle_heap() -> None:
    """Right before serving: freeze what start-up built, and collect garbage less often.

    A server holding thousands of parked polls has a large live heap, and the collector's
    older-generation passes walk all of it: with the default thresholds, per-job CPU grew with
    the fleet. Freezing takes start-up's objects (modules, the app, its schemas) out of every
    later pass; a larger first threshold makes passes rarer (the reference cycles they free wait
    a little longer). `bench/fleet.py`, 4,000 parked polls,
    three alternating pairs: per-job CPU x1.44-1.84 of a 10-worker group -> x1.23-1.24, idle
    5.3-7.1 % -> 3.8-4.3 % of a core.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    # At exit the frozen objects must be collectable again: the interpreter's last collection
    # skips frozen ones, and DuckDB's bindings (nanobind) then report them as leaked.
    atexit.register(gc.unfreeze)


class TimedHttp(HttpToolsProtocol):
    """uvicorn's httptools protocol with a deadline on each request's headers and body."""

    header_timeout_s = HEADER_TIMEOUT_S
    body_timeout_s = BODY_TIMEOUT_S
    _deadline: asyncio.TimerHandle | None = None
    _phase = "headers"

    def _arm(self, phase: str, seconds: float) -> None:
        self._disarm()
        self._phase = phase
        self._deadline = self.loop.call_later(seconds, self._expired)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        if self._phase == "headers":
            body = f'{{"detail": "request headers not received within {self.header_timeout_s:g} s"}}'.encode()
            self.transport.write(_TIMEOUT_408 + str(len(body)).encode() + b"\r\n\r\n" + body)
        self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm("headers", self.header_timeout_s)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm("headers", self.header_timeout_s)

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        self._arm("body", self.body_timeout_s)

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._disarm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)


def config(
    app: Any, *, header_timeout_s: float = HEADER_TIMEOUT_S, body_timeout_s: float = BODY_TIMEOUT_S, **options: Any
) -> uvicorn.Config:
    """A uvicorn.Config with Outpost's HTTP settings; `options` are uvicorn's (host, port, ssl_*, ...)."""
    protocol = TimedHttp
    if (header_timeout_s, body_timeout_s) != (HEADER_TIMEOUT_S, BODY_TIMEOUT_S):
        protocol = type("TimedHttp", (TimedHttp,), {"header_timeout_s": header_timeout_s,
                                                    "body_timeout_s": body_timeout_s})  # fmt: skip
    return uvicorn.Config(app, http=protocol, timeout_keep_alive=KEEP_ALIVE_S, **options)
