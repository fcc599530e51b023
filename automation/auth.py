"""FastAPI dependencies: API tokens by role (automation.roles) and the per-worker credential."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials

from automation import workers
from automation.context import ControlPlane
from automation.errors import Unauthorized
from automation.roles import Role as Role
from automation.roles import RoleCheck, bearer
from automation.tokens import Authenticator
from outpost.observer import WorkerIdentity

RoleChecks = dict[Role, RoleCheck]


def role_checks(cp: ControlPlane) -> RoleChecks:
    """One dependency per role, sharing one authenticator."""
    authenticate = Authenticator(cp)
    return {role: RoleCheck(role, authenticate) for role in Role}


def worker_dependency(cp: ControlPlane) -> Callable[..., object]:
    async def require_worker(
        request: Request, creds: HTTPAuthorizationCredentials | None = Depends(bearer)
    ) -> WorkerIdentity:
        if creds is None or not creds.credentials:
            raise Unauthorized("missing bearer token: send 'Authorization: Bearer <token>'")
        token = creds.credentials
        identity = workers.cached_identity(token) or await cp.run(workers.authenticate, cp, token)
        request.state.worker = identity
        return identity

    return require_worker
