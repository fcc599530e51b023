"""The CLI's HTTP client: the standard library's http.client, with the policy of outpost/http_policy.py.

A command such as `outpost job list` does one or two requests in a few milliseconds; importing
httpx (and what it pulls in) cost it more than everything else together. So client commands
use this small client: one keep-alive connection, proxies from HTTPS_PROXY / HTTP_PROXY /
NO_PROXY, TLS always verified (optionally against --ca-file), a 30 s timeout, and up to 3
attempts with jittered backoff on connection errors, 408, 429 and 5xx, honouring Retry-After.
The agent and the servers keep httpx (outpost/http.py): they live long and use its pooling.
"""

from __future__ import annotations

import base64
import http.client
import json as jsonlib
import os
import ssl
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote, urlencode, urlsplit

from outpost import __version__
from outpost.contract import IDEMPOTENCY_HEADER, error_detail
from outpost.http_policy import RETRY_STATUSES, ApiError, backoff_s, retry_after_s, ssl_context
from outpost.settings import REQUEST_ATTEMPTS, REQUEST_TIMEOUT_S

# A reused keep-alive connection the server already closed fails like this before any answer.
_STALE = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)


class Response:
    """What the commands read of an answer (the same names as httpx's Response)."""

    def __init__(self, status_code: int, reason: str, headers: http.client.HTTPMessage, content: bytes) -> None:
        self.status_code = status_code
        self.reason_phrase = reason
        self.headers = headers  # case-insensitive .get()
        self.content = content

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")

    def json(self) -> Any:
        return jsonlib.loads(self.content)


def _proxy_for(scheme: str, host: str) -> str | None:
    """The proxy URL from the environment for this scheme and host, or None (NO_PROXY, or none set)."""
    for name in ("NO_PROXY", "no_proxy"):
        for entry in (os.environ.get(name) or "").split(","):
            entry = entry.strip().lower().lstrip(".")
            if entry == "*" or (entry and (host.lower() == entry or host.lower().endswith("." + entry))):
                return None
    for name in (f"{scheme.upper()}_PROXY", f"{scheme}_proxy", "ALL_PROXY", "all_proxy"):
        if os.environ.get(name):
            return os.environ[name]
    return None


def _query_value(value: Any) -> Any:
    """As httpx encodes query values: true/false for booleans, empty for None."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else value


class Client:
    """One server: base URL, bearer token, TLS context; one connection, re-opened when it drops."""

    def __init__(
        self, url: str, *, token: str | None = None, ca_file: str | None = None, timeout: float = REQUEST_TIMEOUT_S
    ) -> None:
        self.base_url = url.rstrip("/")
        parts = urlsplit(self.base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ApiError(0, f"invalid server URL {url!r}: use http(s)://HOST[:PORT]")
        self._scheme, self._host = parts.scheme, parts.hostname
        try:
            self._port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            raise ApiError(0, f"invalid port in server URL {url!r}") from None
        self._prefix = parts.path
        self._tls = ssl_context(ca_file) if parts.scheme == "https" else None
        self.timeout = timeout
        self.headers = {"User-Agent": f"outpost/{__version__}"}
        if token:
            self.headers["Authorization"] = f"Bearer {token}"
        self._proxy = _proxy_for(parts.scheme, parts.hostname)
        self.proxy = self._proxy is not None
        self._conn: http.client.HTTPConnection | None = None

    @property
    def proxy_shown(self) -> str:
        """The proxy's URL without its password (for messages)."""
        if self._proxy is None:
            return ""
        proxy = urlsplit(self._proxy if "://" in self._proxy else f"http://{self._proxy}")
        return f"{proxy.scheme}://{proxy.hostname}:{proxy.port or 8080}"

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _connect(self, timeout: float) -> http.client.HTTPConnection:
        if self._proxy is None:
            if self._tls is not None:
                return http.client.HTTPSConnection(self._host, self._port, timeout=timeout, context=self._tls)
            return http.client.HTTPConnection(self._host, self._port, timeout=timeout)
        proxy = urlsplit(self._proxy if "://" in self._proxy else f"http://{self._proxy}")
        proxy_port = proxy.port or 8080
        if self._tls is not None:  # CONNECT through the proxy, TLS to the server end to end
            conn = http.client.HTTPSConnection(proxy.hostname or "", proxy_port, timeout=timeout, context=self._tls)
            conn.set_tunnel(self._host, self._port, headers=self._proxy_auth())
            return conn
        return http.client.HTTPConnection(proxy.hostname or "", proxy_port, timeout=timeout)

    def _proxy_auth(self) -> dict[str, str]:
        """Proxy-Authorization from the user and password in the proxy's URL, if any."""
        proxy = urlsplit(self._proxy if self._proxy and "://" in self._proxy else f"http://{self._proxy}")
        if not proxy.username:
            return {}
        pair = f"{unquote(proxy.username)}:{unquote(proxy.password or '')}".encode()
        return {"Proxy-Authorization": "Basic " + base64.b64encode(pair).decode()}

    def _target(self, path: str, params: Mapping[str, Any] | None) -> str:
        target = self._prefix + path
        if params:
            target += "?" + urlencode({k: _query_value(v) for k, v in params.items()})
        if self._proxy is not None and self._tls is None:  # a plain-HTTP proxy takes the absolute URL
            target = f"http://{self._host}:{self._port}{target}"
        return target

    def send(
        self,
        method: str,
        path: str,
        *,
        body: bytes | None,
        headers: Mapping[str, str],
        params: Mapping[str, Any] | None,
        timeout: float | None,
    ) -> Response:
        """One attempt (a stale keep-alive connection is re-opened once, as no answer was read on it)."""
        target = self._target(path, params)
        all_headers = {**self.headers, **headers}
        if self._proxy is not None and self._tls is None:  # a plain-HTTP proxy reads it on every request
            all_headers.update(self._proxy_auth())
        seconds = timeout or self.timeout
        for reuse in (True, False):
            reused = self._conn is not None and reuse
            if self._conn is None:
                self._conn = self._connect(seconds)
            elif self._conn.sock is not None:
                self._conn.sock.settimeout(seconds)
            try:
                self._conn.request(method, target, body=body, headers=all_headers)
                answer = self._conn.getresponse()
                content = answer.read()
            except _STALE:
                self.close()
                if reused:
                    continue
                raise
            except BaseException:
                self.close()
                raise
            if answer.will_close:
                self.close()
            return Response(answer.status, answer.reason, answer.headers, content)
        raise AssertionError("unreachable")  # the loop returns or raises

    def describe(self, exc: BaseException) -> str:
        if isinstance(exc, ssl.SSLCertVerificationError):
            return f"TLS verification failed for {self.base_url}: {exc}; pass --ca-file with the server's CA"
        if isinstance(exc, TimeoutError):
            return f"no answer from {self.base_url} within the timeout ({type(exc).__name__})"
        return f"cannot reach {self.base_url}: {exc or type(exc).__name__}"


def request(
    client: Client,
    method: str,
    path: str,
    *,
    attempts: int = REQUEST_ATTEMPTS,
    timeout: float | None = None,
    json: Any = None,
    params: Mapping[str, Any] | None = None,
    content: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    idempotency_key: str | None = None,
) -> Response:
    """Send with the retry policy; return a 2xx answer or raise ApiError (a 3xx is an error too: none is followed).

    `idempotency_key` goes out on every attempt, so a retry after a lost answer finds what the
    first attempt did instead of doing it again (one key per user action).
    """
    extra = dict(headers or {})
    if idempotency_key is not None:
        extra[IDEMPOTENCY_HEADER] = idempotency_key
    if json is not None:
        content = jsonlib.dumps(json).encode()
        extra.setdefault("Content-Type", "application/json")
    attempts = max(1, attempts)
    for attempt in range(1, attempts + 1):
        try:
            response = client.send(method, path, body=content, headers=extra, params=params, timeout=timeout)
        except ssl.SSLCertVerificationError as exc:  # retrying cannot make a certificate trusted
            raise ApiError(0, client.describe(exc)) from None
        except (OSError, http.client.HTTPException) as exc:
            if attempt == attempts:
                raise ApiError(0, client.describe(exc)) from None
            time.sleep(backoff_s(attempt))
            continue
        if response.status_code in RETRY_STATUSES and attempt < attempts:
            wait = retry_after_s(response.headers.get("Retry-After"))
            time.sleep(backoff_s(attempt) if wait is None else wait)
            continue
        break
    status = response.status_code
    if 300 <= status < 400:
        where = response.headers.get("location") or "?"
        raise ApiError(status, f"unexpected redirect to {where} (HTTP {status}); check --url")
    if status >= 400:
        raise ApiError(status, f"{_error_message(client, response)} (HTTP {status})")
    return response


def _error_message(client: Client, response: Response) -> str:
    """One line: the server's `detail`, or for a page not from Outpost (a proxy's HTML) its status reason."""
    try:
        return error_detail(response.json())
    except ValueError:
        pass
    if response.status_code == 407 and client.proxy:
        return f"the proxy {client.proxy_shown} wants a user and password: put them in its URL (http://USER:PASS@HOST:PORT)"
    text = response.text.strip()
    if not text or text.startswith("<"):
        return response.reason_phrase or "error"
    return text.splitlines()[0][:300]
