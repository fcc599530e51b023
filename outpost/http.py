"""The httpx client for long-running processes that talk to an Outpost server (agent, servers, diagnose).

Policy from DESIGN.md (outpost/http_policy.py; CLI commands use the stdlib client in
outpost/commands/client.py with the same policy): 30 s timeout; up to 3 attempts with
jittered exponential backoff on connect errors, 408, 429 and 5xx, honouring ``Retry-After``;
proxies from ``HTTPS_PROXY``/``NO_PROXY`` (httpx's ``trust_env``); TLS always verified,
optionally against a private CA bundle.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx
from tenacity import (
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    wait_random_exponential,
)
from tenacity import Retrying as _Retrying

from outpost import __version__
from outpost.contract import IDEMPOTENCY_HEADER, error_detail
from outpost.http_policy import (  # noqa: F401  (ApiError and ssl_context are imported from here too)
    BACKOFF_MAX_S,
    BACKOFF_MULTIPLIER_S,
    RETRY_STATUSES,
    ApiError,
    retry_after_s,
    ssl_context,
)
from outpost.settings import REQUEST_ATTEMPTS, REQUEST_TIMEOUT_S


class _RetryableStatus(Exception):
    def __init__(self, response: httpx.Response) -> None:
        super().__init__(f"HTTP {response.status_code}")
        self.response = response


def _retryable(exc: BaseException) -> bool:
    return isinstance(exc, (_RetryableStatus, httpx.TransportError))


def _wait(state: RetryCallState) -> float:
    exc = state.outcome.exception() if state.outcome else None
    if isinstance(exc, _RetryableStatus):
        after = retry_after_s(exc.response.headers.get("Retry-After"))
        if after is not None:
            return after
    return wait_random_exponential(multiplier=BACKOFF_MULTIPLIER_S, max=BACKOFF_MAX_S)(state)


def make_client(
    url: str,
    *,
    token: str | None = None,
    ca_file: str | None = None,
    timeout: float = REQUEST_TIMEOUT_S,
) -> httpx.Client:
    headers = {"User-Agent": f"outpost/{__version__}"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return httpx.Client(
        base_url=url.rstrip("/"),
        headers=headers,
        timeout=timeout,
        verify=ssl_context(ca_file),
        trust_env=True,
    )


def _describe_transport_error(exc: httpx.TransportError, client: httpx.Client) -> str:
    base = str(client.base_url)
    if isinstance(exc, httpx.ConnectError) and "CERTIFICATE_VERIFY_FAILED" in str(exc):
        return f"TLS verification failed for {base}: {exc}; pass --ca-file with the server's CA"
    if isinstance(exc, httpx.TimeoutException):
        return f"no answer from {base} within the timeout ({type(exc).__name__})"
    return f"cannot reach {base}: {exc or type(exc).__name__}"


def request(
    client: httpx.Client,
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
) -> httpx.Response:
    """Send a request with the retry policy; return a 2xx response or raise ApiError.

    `idempotency_key` goes out as `Idempotency-Key` on the first attempt and on every retry, so
    a retry after an answer was lost (reset, timeout) finds what the first attempt did instead of
    doing it again. Callers make one key per user action (e.g. one `outpost job start`).
    """
    if idempotency_key is not None:
        headers = {**(headers or {}), IDEMPOTENCY_HEADER: idempotency_key}
    kwargs: dict[str, Any] = {"json": json, "params": params, "content": content, "headers": headers}
    if timeout is not None:
        kwargs["timeout"] = timeout

    def once() -> httpx.Response:
        response = client.request(method, path, **kwargs)
        if response.status_code in RETRY_STATUSES:
            raise _RetryableStatus(response)
        return response

    retrying = _Retrying(
        stop=stop_after_attempt(max(1, attempts)),
        wait=_wait,
        retry=retry_if_exception(_retryable),
        reraise=True,
    )
    try:
        response = retrying(once)
    except _RetryableStatus as exc:
        response = exc.response
    except httpx.TransportError as exc:
        raise ApiError(0, _describe_transport_error(exc, client)) from None
    if response.status_code >= 400:
        try:
            message = error_detail(response.json())
        except ValueError:
            message = response.text.strip()[:300] or response.reason_phrase
        raise ApiError(response.status_code, f"{message} (HTTP {response.status_code})")
    return response
