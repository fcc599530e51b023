"""REST routes of named API tokens: create, list, revoke (admin); who am I (any token)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field

from automation import tokens
from automation.auth import Role, RoleChecks
from automation.context import ControlPlane
from automation.params import NamePath
from automation.roles import principal_of
from outpost import contract as c
from outpost.messages import Name


class _TokenBase(BaseModel):
    expires_in: str | None = Field(
        default=None, pattern=tokens.DURATION_PATTERN, description="e.g. 90d, 12h; default: never"
    )


class OperatorTokenBody(_TokenBase):
    role: Literal["operator"]
    groups: list[Name] | None = Field(default=None, description="the worker groups it may act on; default: all")


class TokenBody(_TokenBase):
    role: Literal["reader", "author", "admin"]
    groups: Annotated[list[Name], Field(max_length=0)] | None = Field(
        default=None, description="only an operator token is limited to groups"
    )


# Which fields a token takes depends on its role: the union says so, so a body the API refuses is one its
# OpenAPI document rules out (reader/author/admin with groups is refused by the model, not by tokens.create).
AnyTokenBody = Annotated[OperatorTokenBody | TokenBody, Field(discriminator="role")]


class WhoAmI(BaseModel):
    name: str
    role: str
    groups: list[str] | None = None


def router(cp: ControlPlane, roles: RoleChecks) -> APIRouter:
    r = APIRouter(prefix=f"{c.API}/tokens", tags=["tokens"], dependencies=[Depends(roles[Role.ADMIN])])
    me = APIRouter(tags=["tokens"])

    @me.get(c.WHOAMI, dependencies=[Depends(roles[Role.READER])])
    def whoami(request: Request) -> WhoAmI:
        """The calling token's name, role and groups (how `outpost collector` checks named tokens)."""
        caller = principal_of(request)
        return WhoAmI(name=caller.name, role=str(caller.role), groups=sorted(caller.groups) if caller.groups else None)

    @r.post("/{name}", status_code=201)
    def create(name: NamePath, body: AnyTokenBody, request: Request) -> dict[str, Any]:
        """The answer's `token` is the only time the secret is shown."""
        return tokens.create(cp, name, body.role, body.groups, body.expires_in, principal_of(request).name)

    @r.get("")
    def list_tokens() -> list[dict[str, Any]]:
        return tokens.list_all(cp)

    @r.delete("/{name}")
    def revoke(name: NamePath) -> dict[str, Any]:
        return tokens.revoke(cp, name)

    both = APIRouter()
    both.include_router(me)
    both.include_router(r)
    return both
