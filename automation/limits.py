"""Job resource limits (memory, CPU quota, process count) of worker groups and runbooks: set here,
enforced by each agent.

A job runs under its group's limits and its runbook's, the stricter of the two per resource
(`in_force`): a runbook can narrow what its group allows, never widen it, and a resource
only one of them limits is limited by that one. A job takes its runbook's limits when it is
created (like its content); its group's are read when it is claimed. They travel with the
job (`JobAssignment.limits`); the agent enforces them or fails the job saying why
(agent/limits.py), and reports what was in force in the job's `resources`. Nothing is
limited unless set here: there is no hidden cap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar

from fastapi import APIRouter, Depends
from sqlmodel import select

from automation.context import ControlPlane
from automation.errors import NotFound
from automation.models import Runbook, WorkerGroup
from automation.roles import Role
from outpost import contract as c
from outpost.contract import JobLimits

if TYPE_CHECKING:  # automation.auth imports automation.workers, which imports this
    from automation.auth import RoleChecks

N = TypeVar("N", int, float)


def _parse(limits_json: str | None) -> JobLimits:
    return JobLimits.model_validate_json(limits_json) if limits_json else JobLimits()


def of_group(group: WorkerGroup) -> dict[str, Any]:
    return _parse(group.limits_json).model_dump()


def of_runbook(runbook: Runbook) -> dict[str, Any]:
    return _parse(runbook.limits_json).model_dump()


def _stricter(a: N | None, b: N | None) -> N | None:
    return b if a is None else a if b is None else min(a, b)


def in_force(group_json: str | None, runbook_json: str | None) -> JobLimits | None:
    """The limits a job runs under: per resource, the stricter of its group's and its runbook's."""
    group, runbook = _parse(group_json), _parse(runbook_json)
    merged = JobLimits(
        memory_mb=_stricter(group.memory_mb, runbook.memory_mb),
        cpu_percent=_stricter(group.cpu_percent, runbook.cpu_percent),
        max_processes=_stricter(group.max_processes, runbook.max_processes),
    )
    return None if merged.is_empty() else merged


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


def set_runbook_limits(cp: ControlPlane, runbook: str, limits: JobLimits) -> dict[str, Any]:
    """Replace a runbook's limits; jobs created from now on take them (queued ones keep theirs)."""
    with cp.session() as s:
        rb = s.exec(select(Runbook).where(Runbook.name == runbook)).first()
        if rb is None:
            raise NotFound(f"runbook {runbook!r} does not exist")
        rb.limits_json = None if limits.is_empty() else limits.model_dump_json()
        s.add(rb)
        s.commit()
        return {"runbook": runbook, "limits": of_runbook(rb)}


def get_runbook_limits(cp: ControlPlane, runbook: str) -> dict[str, Any]:
    with cp.reading() as s:
        rb = s.exec(select(Runbook).where(Runbook.name == runbook)).first()
    if rb is None:
        raise NotFound(f"runbook {runbook!r} does not exist")
    return {"runbook": runbook, "limits": of_runbook(rb)}


def router(cp: ControlPlane, roles: RoleChecks) -> APIRouter:
    r = APIRouter(prefix=c.API, tags=["workers"])

    @r.get("/runbooks/{name}/limits", tags=["runbooks"], dependencies=[Depends(roles[Role.READER])])
    def show_runbook(name: str) -> dict[str, Any]:
        return get_runbook_limits(cp, name)

    @r.put("/runbooks/{name}/limits", tags=["runbooks"], dependencies=[Depends(roles[Role.AUTHOR])])
    def put_runbook(name: str, body: JobLimits) -> dict[str, Any]:
        """Replace the runbook's limits (they narrow its group's); fields left out (or null) are not limited."""
        return set_runbook_limits(cp, name, body)

    @r.get("/groups/{name}/limits", dependencies=[Depends(roles[Role.READER])])
    def show(name: str) -> dict[str, Any]:
        return get_group_limits(cp, name)

    @r.put("/groups/{name}/limits", dependencies=[Depends(roles[Role.ADMIN])])
    def put(name: str, body: JobLimits) -> dict[str, Any]:
        """Replace the group's limits; fields left out (or null) are not limited."""
        return set_group_limits(cp, name, body)

    return r
