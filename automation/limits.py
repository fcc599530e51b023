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
from automation.params import NamePath
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


# The two kinds of owner of limits: (model, the key and the noun the answers and errors use).
_OWNERS: dict[type[WorkerGroup] | type[Runbook], tuple[str, str]] = {
    WorkerGroup: ("group", "worker group"),
    Runbook: ("runbook", "runbook"),
}


def _answer(model: type[WorkerGroup] | type[Runbook], name: str, row: WorkerGroup | Runbook) -> dict[str, Any]:
    return {_OWNERS[model][0]: name, "limits": _parse(row.limits_json).model_dump()}


def _missing(model: type[WorkerGroup] | type[Runbook], name: str) -> NotFound:
    return NotFound(f"{_OWNERS[model][1]} {name!r} does not exist")


def set_limits(
    cp: ControlPlane, model: type[WorkerGroup] | type[Runbook], name: str, limits: JobLimits
) -> dict[str, Any]:
    """Replace a group's or runbook's limits. A runbook's go to jobs created from now on (queued ones keep theirs)."""
    with cp.session() as s:
        row = s.exec(select(model).where(model.name == name)).first()
        if row is None:
            raise _missing(model, name)
        row.limits_json = None if limits.is_empty() else limits.model_dump_json()
        s.add(row)
        s.commit()
        return _answer(model, name, row)


def get_limits(cp: ControlPlane, model: type[WorkerGroup] | type[Runbook], name: str) -> dict[str, Any]:
    with cp.reading() as s:
        row = s.exec(select(model).where(model.name == name)).first()
    if row is None:
        raise _missing(model, name)
    return _answer(model, name, row)


def router(cp: ControlPlane, roles: RoleChecks) -> APIRouter:
    r = APIRouter(prefix=c.API, tags=["workers"])

    @r.get("/runbooks/{name}/limits", tags=["runbooks"], dependencies=[Depends(roles[Role.READER])])
    def show_runbook(name: NamePath) -> dict[str, Any]:
        return get_limits(cp, Runbook, name)

    @r.put("/runbooks/{name}/limits", tags=["runbooks"], dependencies=[Depends(roles[Role.AUTHOR])])
    def put_runbook(name: NamePath, body: JobLimits) -> dict[str, Any]:
        """Replace the runbook's limits (they narrow its group's); fields left out (or null) are not limited."""
        return set_limits(cp, Runbook, name, body)

    @r.get("/groups/{name}/limits", dependencies=[Depends(roles[Role.READER])])
    def show(name: NamePath) -> dict[str, Any]:
        return get_limits(cp, WorkerGroup, name)

    @r.put("/groups/{name}/limits", dependencies=[Depends(roles[Role.ADMIN])])
    def put(name: NamePath, body: JobLimits) -> dict[str, Any]:
        """Replace the group's limits; fields left out (or null) are not limited."""
        return set_limits(cp, WorkerGroup, name, body)

    return r
