"""One HTTP client over several server URLs: when the current replica is unreachable, use the next.

Every agent call (poll, lease, events, heartbeat, assets, diagnostics) goes through
`outpost.http.request(client, ...)`, so failing over here covers them all at once.

- A connect error (refused, unreachable, connect timeout) or a 502/503/504 answer moves
  to the next URL and tries it at once, within the same call: the request never reached
  that replica's application, so sending it elsewhere cannot run anything twice.
- Any other transport error (a reset mid-answer, a read timeout: the replica died while
  holding the request) is raised as before, for `request`'s own retry, but the next
  attempt goes to the next URL.
- With one URL (a single server, or a load balancer) it behaves as a plain client.

The replicas share one store, so a job's lease, events and assets answer the same on
any of them; the service's idempotency (event seqs, the poll's `held` list) makes a
retry on another replica safe.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import httpx

from outpost.http import make_client

log = logging.getLogger("outpost.agent")

FAILOVER_STATUSES = frozenset({502, 503, 504})


class FailoverClient(httpx.Client):
    """An `httpx.Client` whose requests go to the current one of several servers."""

    def __init__(
        self, urls: list[str], *, token: str | None = None, ca_file: str | None = None, timeout: float
    ) -> None:
        if not urls:
            raise ValueError("at least one server URL is needed")
        super().__init__(base_url=urls[0].rstrip("/"))  # never used to send; keeps httpx.Client's interface
        self.urls = [u.rstrip("/") for u in urls]
        self._clients = [make_client(u, token=token, ca_file=ca_file, timeout=timeout) for u in self.urls]
        self._current = 0
        self._lock = threading.Lock()
        self._answered = True  # since the last switch: one warning per switch away from a working server
        # Told of each attempt that failed: (path, HTTP status >= 400, or None: no answer). agent/telemetry.py.
        self.on_error: Callable[[str, int | None], None] | None = None

    @property  # type: ignore[override]
    def base_url(self) -> httpx.URL:
        return self._clients[self._current].base_url

    @base_url.setter
    def base_url(self, value: object) -> None:  # httpx.Client.__init__ assigns it
        pass

    @property
    def current_url(self) -> str:
        return self.urls[self._current]

    def _advance(self, from_index: int, why: str) -> int:
        """Move past `from_index` (unless another thread already did); return the index to use now."""
        with self._lock:
            if self._current == from_index and len(self.urls) > 1:
                self._current = (from_index + 1) % len(self.urls)
                # While every replica is down the agent's outage log line says so, once; not each switch.
                level = logging.WARNING if self._answered else logging.DEBUG
                log.log(level, "server %s %s; switching to %s", self.urls[from_index], why, self.urls[self._current])
                self._answered = False
            return self._current

    def request(self, method: str, url: Any, **kwargs: Any) -> httpx.Response:  # type: ignore[override]
        index = self._current
        for tried in range(len(self._clients)):
            last = tried == len(self._clients) - 1
            try:
                response = self._send(index, method, url, **kwargs)
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                if last:
                    self._advance(index, "is unreachable")
                    raise
                index = self._advance(index, f"is unreachable ({exc or type(exc).__name__})")
                continue
            except httpx.TransportError:
                self._advance(index, "dropped a request")
                raise
            if response.status_code in FAILOVER_STATUSES and not last:
                response.close()
                index = self._advance(index, f"answered HTTP {response.status_code}")
                continue
            self._answered = True
            return response
        raise AssertionError("unreachable")  # the loop returns or raises

    def _send(self, index: int, method: str, url: Any, **kwargs: Any) -> httpx.Response:
        try:
            response = self._clients[index].request(method, url, **kwargs)
        except httpx.TransportError:
            self._failed(url, None)
            raise
        if response.status_code >= 400:
            self._failed(url, response.status_code)
        return response

    def _failed(self, url: Any, status: int | None) -> None:
        if self.on_error is not None:
            try:
                self.on_error(str(httpx.URL(url).path), status)
            except Exception:  # counting an error must never become one
                log.debug("request error not counted", exc_info=True)

    def close(self) -> None:
        for client in self._clients:
            client.close()
        super().close()
