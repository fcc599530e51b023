"""Roles, after Azure Automation's built-in ones, and the FastAPI dependency that enforces them.

| role     | may                                                                              |
| -------- | -------------------------------------------------------------------------------- |
| reader   | queries, Kusto REST, every listing and `show`; never a secret                      |
| operator | reader + start and stop jobs and read their output (optionally only some groups)   |
| author   | operator + runbooks, schedules, webhooks and non-secret assets                     |
| admin    | everything: credentials, certificates, encrypted values, keys, tokens, groups      |

Each role includes the ones before it. Every route declares the least role it needs by
its dependency (`RoleCheck`); `annotate_openapi` copies that onto the route as
`x-outpost-role`, so the OpenAPI document is the authorisation matrix tests walk.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from automation.errors import Forbidden, Unauthorized

bearer = HTTPBearer(auto_error=False, description="An Outpost API token (or a worker credential on /agent routes)")


class Role(StrEnum):
    READER = "reader"
    OPERATOR = "operator"
    AUTHOR = "author"
    ADMIN = "admin"


RANK = {Role.READER: 0, Role.OPERATOR: 1, Role.AUTHOR: 2, Role.ADMIN: 3}


def parse_role(value: str) -> Role:
    try:
        return Role(value.strip().lower())
    except ValueError:
        raise ValueError(f"unknown role {value!r}: use reader, operator, author or admin") from None


@dataclass(frozen=True)
class Principal:
    """Who called: a named token and its role. `groups` (operators only): the groups it may run jobs on."""

    name: str
    role: Role
    groups: frozenset[str] | None = None

    def has(self, role: Role) -> bool:
        return RANK[self.role] >= RANK[role]

    def require(self, role: Role, what: str) -> None:
        if not self.has(role):
            raise Forbidden(f"token {self.name!r} has role {self.role}; {what} needs role {role} or higher")

    def require_group(self, group: str, what: str) -> None:
        """Operators limited to named groups act only on jobs of those groups."""
        if self.groups is not None and not self.has(Role.AUTHOR) and group not in self.groups:
            allowed = ", ".join(sorted(self.groups)) or "none"
            raise Forbidden(f"token {self.name!r} may {what} only on worker groups {allowed}, not {group!r}")


Authenticate = Callable[[str], Any]  # async: token -> Principal (raises Unauthorized)


class RoleCheck:
    """FastAPI dependency: a bearer token with at least `role`. Sets `request.state.principal`."""

    def __init__(self, role: Role, authenticate: Authenticate) -> None:
        self.role = role
        self._authenticate = authenticate

    async def __call__(
        self, request: Request, creds: HTTPAuthorizationCredentials | None = Depends(bearer)
    ) -> Principal:
        if creds is None or not creds.credentials:
            raise Unauthorized("missing bearer token: send 'Authorization: Bearer <token>'")
        principal: Principal = await self._authenticate(creds.credentials)
        request.state.principal = principal
        principal.require(self.role, f"{request.method} {request.url.path}")
        return principal


def principal_of(request: Request) -> Principal:
    """The caller of a role-checked route (set by its RoleCheck)."""
    principal = getattr(request.state, "principal", None)
    if principal is None:
        raise Unauthorized("missing bearer token: send 'Authorization: Bearer <token>'")
    return principal  # type: ignore[no-any-return]


def _checks(dependant: Any) -> Iterator[Any]:
    for dep in dependant.dependencies:
        yield dep.call
        yield from _checks(dep)


def _routes(routes: list[Any]) -> Iterator[APIRoute]:
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        nested = getattr(route, "original_router", None)  # an included router (FastAPI keeps them nested)
        if nested is not None:
            yield from _routes(nested.routes)


def annotate_openapi(app: FastAPI, worker_dependency: Callable[..., Any] | None = None) -> None:
    """Copy each route's role (or worker authentication) into its OpenAPI operation."""
    for route in _routes(app.routes):
        roles = [c.role for c in _checks(route.dependant) if isinstance(c, RoleCheck)]
        extra = dict(route.openapi_extra or {})
        if roles:
            extra["x-outpost-role"] = str(max(roles, key=lambda r: RANK[r]))
        elif worker_dependency is not None and worker_dependency in set(_checks(route.dependant)):
            extra["x-outpost-role"] = "worker"
        else:
            extra.setdefault("x-outpost-role", "public")
        route.openapi_extra = extra
