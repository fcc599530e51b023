"""Worker-group resource limits (memory, CPU quota, process count): set here, enforced by each agent.

A group's limits travel with every job claimed from it (`JobAssignment.limits`); the agent
enforces them or fails the job saying why (agent/limits.py), and reports what was in force
in the job's `resources`. Nothing is limited unless set here: there is no hidden cap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Depends
from sqlmodel import select

from automation.context import ControlPlane
from automation.errors import NotFound
from automation.models import WorkerGroup
from automation.roles import Role
from outpost import contract as c
from outpost.contract import JobLimits

if TYPE_CHECKING:  # automation.auth imports automation.workers, which imports this
    from automation.auth import RoleChecks


def of_group(group: WorkerGroup) -> dict[str, Any]:
    limits = JobLimits.model_validate_json(group.limits_json) if group.limits_json else JobLimits()
    return limits.model_dump()


def set_group_limits(cp: ControlPlane, group: str, limits: JobLimits) -> dict[str, Any]:
    with cp.session() as s:
        g = s.exec(select(WorkerGroup).where(WorkerGroup.name == group)).first()
        if g is None:
            raise NotFound(f"worker group {group!r} does not exist")
        g.limits_json = None if limits.is_empty() else limits.model_dump_json()
        s.add(g)
        s.commit()
        return {"group": group, "limits": of_group(g)}


def get_group_limits(cp: ControlPlane, group: str) -> dict[str, Any]:
    with cp.reading() as s:
        g = s.exec(select(WorkerGroup).where(WorkerGroup.name == group)).first()
    if g is None:
        raise NotFound(f"worker group {group!r} does not exist")
    return {"group": group, "limits": of_group(g)}


def router(cp: ControlPlane, roles: RoleChecks) -> APIRouter:
    r = APIRouter(prefix=c.API, tags=["workers"])

    @r.get("/groups/{name}/limits", dependencies=[Depends(roles[Role.READER])])
    def show(name: str) -> dict[str, Any]:
        return get_group_limits(cp, name)

    @r.put("/groups/{name}/limits", dependencies=[Depends(roles[Role.ADMIN])])
    def put(name: str, body: JobLimits) -> dict[str, Any]:
        """Replace the group's limits; fields left out (or null) are not limited."""
        return set_group_limits(cp, name, body)

    return r
