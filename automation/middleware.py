"""HTTP edges every route shares: body size limit, error shapes, store outages, service header."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy import exc as sa_exc
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from automation import errors
from automation.errors import RETRY_AFTER_S, STORE, ControlPlaneError, is_store_outage
from outpost import __version__
from outpost.contract import PATTERN_HINTS, SERVICE_HEADER, error_detail

log = logging.getLogger("outpost.server")


class BodyLimit:
    """Refuse bodies over `limit` bytes (or a path's own limit in `paths`) with 413, announced or streamed.

    A streamed (chunked) body is counted as it is read; once it passes the limit, whatever the
    route would answer (FastAPI turns a failed body read into 400) is replaced by the 413.
    """

    def __init__(self, app: ASGIApp, limit: int, paths: dict[str, int] | None = None) -> None:
        self.app = app
        self.limit = limit
        self.paths = paths or {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.paths.get(scope.get("path", ""), self.limit)
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await _too_large(send, limit, scope)
            return
        seen = 0
        over = False
        answered = False

        async def limited_receive() -> Message:
            nonlocal seen, over
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    over = True
                    raise _BodyTooLarge()
            return message

        async def checked_send(message: Message) -> None:
            nonlocal answered
            if over:  # the route's answer to a body it could not read: the 413 goes instead
                if not answered:
                    answered = True
                    await _too_large(send, limit, scope)
                return
            answered = answered or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, checked_send)
        except _BodyTooLarge:
            if not answered:
                await _too_large(send, limit, scope)


class _BodyTooLarge(Exception):
    pass


async def _too_large(send: Send, limit: int, scope: Scope) -> None:
    message = f"request body too large: the limit is {limit} bytes"
    if scope.get("path", "").startswith("/subscriptions/"):  # the ARM door answers in ARM's shape (automation/arm)
        body = json.dumps({"error": {"code": "RequestEntityTooLarge", "message": message}}).encode()
    else:
        body = json.dumps({"detail": message}).encode()
    await send({"type": "http.response.start", "status": 413, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})


class ServiceHeader:
    """Every answer says it comes from Outpost (`diagnose` tells Outpost from a proxy's page by it).

    Plain ASGI rather than `@app.middleware("http")`: that wrapper costs a task and a
    stream per request, which long-polls and event batches pay thousands of times a minute.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.header = (SERVICE_HEADER.lower().encode(), __version__.encode())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        started = False

        async def send_with_header(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message["headers"] = [*message.get("headers", []), self.header]
            await send(message)

        try:
            await self.app(scope, receive, send_with_header)
        except asyncio.CancelledError:
            # Only the server cancels a request: at shutdown, once the grace period is over (held
            # long-polls). Answer 503 "retry" instead of letting a traceback per request reach the log.
            if not started:
                with contextlib.suppress(Exception):
                    await send_with_header(_shutting_down[0])
                    await send_with_header(_shutting_down[1])


_shutting_down: tuple[Message, Message] = (
    {
        "type": "http.response.start",
        "status": 503,
        "headers": [(b"content-type", b"application/json"), (b"retry-after", b"1"), (b"connection", b"close")],
    },
    {"type": "http.response.body", "body": json.dumps({"detail": "the server is shutting down; retry"}).encode()},
)


def _store_unavailable() -> JSONResponse:
    return JSONResponse(
        {"detail": f"the control-plane store is unavailable right now; retry in {RETRY_AFTER_S} s"},
        status_code=503,
        headers={"Retry-After": str(RETRY_AFTER_S)},
    )


def error_response(exc: Exception) -> JSONResponse | None:
    """The API's answer to a known failure: a domain error, or a store outage (503 + Retry-After,
    logged once per outage by STORE). None: an unexpected error (`Unexpected` answers 500)."""
    if isinstance(exc, ControlPlaneError):
        return JSONResponse({"detail": exc.message}, status_code=exc.status)
    if is_store_outage(exc):
        STORE.failed(exc)
        return _store_unavailable()
    return None


def install(app: FastAPI) -> None:
    @app.exception_handler(ControlPlaneError)
    async def _domain(_: Request, exc: ControlPlaneError) -> JSONResponse:
        return error_response(exc) or _internal_error()

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        if any(e.get("type") == "json_invalid" for e in errors):
            msg = next(e for e in errors if e.get("type") == "json_invalid").get("ctx", {}).get("error", "")
            return JSONResponse({"detail": f"malformed JSON body: {msg}".rstrip(": ")}, status_code=400)
        clean = [{"loc": e.get("loc", []), "msg": _readable(e)} for e in errors]
        return JSONResponse({"detail": f"invalid request: {error_detail({'detail': clean})}"}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        headers = exc.headers
        if exc.status_code == 405:  # Starlette's Allow names only the first route on the path, not all of them
            headers = {**(headers or {}), "Allow": ", ".join(_allowed_methods(app, request.scope))}
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=headers)

    # A store outage (down, disconnected, locked, pool exhausted) is 503 + Retry-After, logged once
    # per outage by STORE; registered per class so Starlette does not re-raise them to the server's log.
    async def _store(request: Request, exc: Exception) -> JSONResponse:
        return error_response(exc) or await _unexpected(request, exc)

    for kind in (sa_exc.DBAPIError, sa_exc.TimeoutError, sa_exc.DisconnectionError, *errors.DRIVER_OUTAGES):
        app.add_exception_handler(kind, _store)
    errors.install_outage_log_filter()

    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
        return _internal_error()

    app.add_middleware(Unexpected)  # type: ignore[arg-type]


def _readable(error: Any) -> str:
    """pydantic's message, or for a value off one of Outpost's patterns the value and the rule in words."""
    hint = PATTERN_HINTS.get((error.get("ctx") or {}).get("pattern", ""))
    if error.get("type") == "string_pattern_mismatch" and hint:
        shown = repr(error.get("input"))
        return f"{shown[:80]}{'...' if len(shown) > 80 else ''} is not valid: {hint}"
    return str(error.get("msg", ""))


_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def _allowed_methods(app: FastAPI, scope: Scope) -> list[str]:
    """Every method some route serves on this request's path (RFC 9110: a 405's Allow lists them all).

    Asked of the router itself, one method at a time: included routers are nested, not flattened.
    """
    routes = app.router.routes
    return [m for m in _METHODS if any(r.matches({**scope, "method": m})[0] == Match.FULL for r in routes)]


def _internal_error() -> JSONResponse:
    return JSONResponse({"detail": "internal server error; the server log has the details"}, status_code=500)


class Unexpected:
    """An unexpected exception is answered 500 here, and the connection stays open.

    Starlette's own catch-all answers and then re-raises, and uvicorn closes the keep-alive
    connection on any exception that reaches it: a client's next request on it would fail.
    Installed first, so it sits inside every other middleware (they see the 500).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except _BodyTooLarge:  # BodyLimit's own signal: it answers 413
            raise
        except Exception:
            if started:  # half an answer went out: only closing the connection ends it cleanly
                raise
            log.exception("unhandled error on %s %s", scope.get("method"), scope.get("path"))
            await _internal_error()(scope, receive, send)


# -- the errors in the OpenAPI document -------------------------------------------------------------

_ERROR = {
    "type": "object",
    "description": "What went wrong and what to fix",
    "properties": {"detail": {"type": "string"}},
    "required": ["detail"],
}
_KUSTO_ERROR = {
    "type": "object",
    "description": "A Kusto service error, as Azure Data Explorer answers it",
    "properties": {"error": {"type": "object"}},
    "required": ["error"],
}
_ERRORS = {
    "400": "Bad input: the message says what to fix",
    "401": "No token, or one that is unknown, revoked or expired",
    "403": "The token's role (or worker groups) does not allow this",
    "404": "No such object",
    "408": "The query ran out of its time budget",
    "409": "Conflicts with the current state",
    "413": "The request body is over the limit (given in the message)",
    "422": "The body or parameters do not have the documented shape",
    "429": "Too busy for this query right now; retry later",
    "503": "The store or the collector is unavailable right now; retry (Retry-After)",
}
_KUSTO_PATHS = ("/v1/rest/", "/v2/rest/")


def document_errors(app: FastAPI) -> None:
    """Every operation documents the error answers routes give, with the body they really have.

    FastAPI documents only 422, with its own list-shaped body; Outpost's errors are one readable
    `detail` string (`install`), and the Kusto routes answer as Kusto does.
    """
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = build()
        schemas = schema.setdefault("components", {}).setdefault("schemas", {})
        schemas["Error"], schemas["KustoError"] = _ERROR, _KUSTO_ERROR
        for name in ("HTTPValidationError", "ValidationError"):
            schemas.pop(name, None)
        for path, operations in schema.get("paths", {}).items():
            error: dict[str, Any] = {"$ref": "#/components/schemas/Error"}
            if path.startswith(_KUSTO_PATHS):  # Kusto's shape, or ours for a body that is not a Kusto request
                error = {"anyOf": [{"$ref": "#/components/schemas/KustoError"}, error]}
            for op in operations.values():
                responses = op.setdefault("responses", {})
                for code, text in _ERRORS.items():
                    responses[code] = {"description": text, "content": {"application/json": {"schema": error}}}
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
