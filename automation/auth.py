"""FastAPI dependencies: the admin token and the per-worker credential."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from automation import secrets, workers
from automation.context import ControlPlane
from automation.errors import Forbidden, Unauthorized
from outpost.observer import WorkerIdentity

bearer = HTTPBearer(auto_error=False, description="Admin token, or a worker credential on /agent routes")


def _token(creds: HTTPAuthorizationCredentials | None) -> str:
    if creds is None or not creds.credentials:
        raise Unauthorized("missing bearer token: send 'Authorization: Bearer <token>'")
    return creds.credentials


def admin_dependency(cp: ControlPlane, admin_digest: str) -> Callable[..., None]:
    # async: a hash comparison, not worth a trip to a worker thread (FastAPI runs sync dependencies there)
    async def require_admin(creds: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:
        token = _token(creds)
        if not secrets.matches(token, admin_digest):
            if token.count(".") == 1 and token.split(".")[1].startswith("opw_"):
                raise Forbidden("a worker credential cannot call admin endpoints; use the admin token")
            raise Unauthorized("admin token rejected: use the token printed by `outpost server`")

    return require_admin


def worker_dependency(cp: ControlPlane) -> Callable[..., object]:
    async def require_worker(
        request: Request, creds: HTTPAuthorizationCredentials | None = Depends(bearer)
    ) -> WorkerIdentity:
        token = _token(creds)
        identity = workers.cached_identity(token) or await cp.run(workers.authenticate, cp, token)
        request.state.worker = identity
        return identity

    return require_worker
