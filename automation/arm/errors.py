"""ARM's error shape, `{"error": {"code", "message"}}`, for every answer of the Microsoft.Automation door.

Domain errors (automation.errors) keep their status and message and get ARM's code for it;
`ArmError` names a specific code (ResourceNotFound, NoRegisteredProviderFound, ...). The
SDK turns 401 into ClientAuthenticationError, 404 into ResourceNotFoundError, 409 into
ResourceExistsError, anything else into HttpResponseError carrying `error.code`.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy import exc as sa_exc
from starlette.exceptions import HTTPException as StarletteHTTPException

from automation import errors
from automation.errors import RETRY_AFTER_S, STORE, ControlPlaneError, is_store_outage

log = logging.getLogger("outpost.server")

# ARM's code for each status a domain error carries.
CODES = {
    400: "BadRequest",
    401: "InvalidAuthenticationToken",
    403: "AuthorizationFailed",
    404: "NotFound",
    405: "MethodNotAllowed",
    409: "Conflict",
    413: "RequestEntityTooLarge",
    429: "TooManyRequests",
    501: "NotImplemented",
    503: "ServiceUnavailable",
}
_MISSING_TOKEN = "missing bearer token"


class ArmError(ControlPlaneError):
    """An error with ARM's own code, e.g. ArmError(404, "ResourceNotFound", "...")."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


def answer(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


def code_of(exc: ControlPlaneError) -> str:
    if isinstance(exc, ArmError):
        return exc.code
    if exc.status == 401 and exc.message.startswith(_MISSING_TOKEN):
        return "AuthenticationFailed"  # ARM's code when the Authorization header is missing
    return CODES.get(exc.status, "BadRequest" if exc.status < 500 else "InternalServerError")


def install(app: FastAPI) -> None:
    """Error handlers of the ARM sub-application: no answer leaves it in another shape."""

    @app.exception_handler(ControlPlaneError)
    async def _domain(_: Request, exc: ControlPlaneError) -> JSONResponse:
        return answer(exc.status, code_of(exc), exc.message)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = []
        for e in exc.errors():
            if e.get("type") == "json_invalid":
                detail = e.get("ctx", {}).get("error", "")
                return answer(
                    400, "InvalidRequestContent", f"the request body is not valid JSON: {detail}".rstrip(": ")
                )
            where = ".".join(str(p) for p in e.get("loc", ()) if p != "body")
            problems.append(f"{where}: {e.get('msg', '')}" if where else str(e.get("msg", "")))
        return answer(400, "InvalidRequestContent", "the request content is invalid: " + "; ".join(problems))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return answer(exc.status_code, CODES.get(exc.status_code, "BadRequest"), str(exc.detail), exc.headers)

    async def _store(request: Request, exc: Exception) -> JSONResponse:
        if not is_store_outage(exc):
            return await _unexpected(request, exc)
        STORE.failed(exc)
        return answer(
            503,
            "ServiceUnavailable",
            f"the control-plane store is unavailable right now; retry in {RETRY_AFTER_S} s",
            {"Retry-After": str(RETRY_AFTER_S)},
        )

    for kind in (sa_exc.DBAPIError, sa_exc.TimeoutError, sa_exc.DisconnectionError, *errors.DRIVER_OUTAGES):
        app.add_exception_handler(kind, _store)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return answer(500, "InternalServerError", "internal server error; the server log has the details")
