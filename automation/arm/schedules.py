"""Schedules and job schedules through ARM, onto Outpost schedules (automation.schedules does the work).

On Azure a schedule (when) and a job schedule (which runbook, where, with what) are separate
resources; an Outpost schedule is both. So `PUT schedules/{name}` keeps the definition in
`arm_schedule` (migration 0007), and `PUT jobSchedules/{id}` creates the Outpost schedule of that
name, which then fires as every schedule does. A schedule links one runbook (a second job schedule
for it is a 409). Schedules made by the CLI show up as schedules with a job schedule each, whose id
is derived from the name (uuid5), so it is stable on every replica.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import delete, select, update

from automation import jobs, schedules
from automation.arm.envelope import ACCOUNT_PATH, Account, AccountDependency, iso
from automation.arm.errors import ArmError
from automation.arm.paging import page_in_memory
from automation.context import ControlPlane
from automation.errors import BadRequest, Conflict, NotFound
from automation.models import ArmSchedule
from outpost.contract import NAME_RE, JobParam

TABLE = ArmSchedule.__table__  # type: ignore[attr-defined]
_s = TABLE.c
_DERIVED = uuid.UUID("6f9e4c1a-0b7d-4a55-9a51-3d2c0e6f7a10")  # the namespace of derived job schedule ids


class ScheduleBody(BaseModel):
    properties: dict[str, Any] = {}


class Ref(BaseModel):
    name: str


class JobScheduleProperties(BaseModel):
    schedule: Ref
    runbook: Ref
    runOn: str | None = None
    parameters: dict[str, str] | None = None


class JobScheduleBody(BaseModel):
    properties: JobScheduleProperties


# -- the definition a schedule waits with ---------------------------------------------------


def definition(props: dict[str, Any]) -> dict[str, Any]:
    """ARM's schedule properties, checked, in the form schedules.create takes."""
    if props.get("advancedSchedule") and any((props["advancedSchedule"] or {}).values()):
        raise ArmError(501, "NotImplemented", "advancedSchedule (week days, month days) is not supported")
    frequency = props.get("frequency")
    if not isinstance(frequency, str) or frequency.lower() == "month":
        raise BadRequest("properties.frequency must be OneTime, Minute, Hour, Day or Week (Month is not supported)")
    interval = props.get("interval", 1)
    if isinstance(interval, str) and interval.isdigit():
        interval = int(interval)
    if not isinstance(interval, int) or isinstance(interval, bool):
        raise BadRequest("properties.interval must be a whole number")
    start = props.get("startTime")
    if not isinstance(start, str):
        raise BadRequest("properties.startTime is required (ISO 8601)")
    time_zone = props.get("timeZone") or "UTC"
    tz = schedules._zone(time_zone)  # the same checks, and messages, as every other door
    schedules.parse_time(start, tz, "start time")
    if props.get("expiryTime"):
        schedules.parse_time(props["expiryTime"], tz, "expiry time")
    return {
        "frequency": frequency,
        "interval": interval,
        "startTime": start,
        "expiryTime": props.get("expiryTime"),
        "timeZone": time_zone,
        "description": str(props.get("description") or ""),
        "isEnabled": props.get("isEnabled", True) is not False,
    }


def _pending(cp: ControlPlane, name: str) -> Any:
    with cp.reading() as s:
        return s.execute(select(TABLE).where(_s.name == name)).first()


def _linked(cp: ControlPlane, name: str) -> dict[str, Any] | None:
    try:
        return schedules.show(cp, name)
    except NotFound:
        return None


def job_schedule_id(cp: ControlPlane, name: str) -> str:
    row = _pending(cp, name)
    if row is not None and row.job_schedule_id:
        return str(row.job_schedule_id)
    return str(uuid.uuid5(_DERIVED, name))


# -- views ----------------------------------------------------------------------------------


def _schedule_props(d: dict[str, Any], next_run: str | None, created: Any) -> dict[str, Any]:
    return {
        "startTime": iso(schedules.parse_time(d["startTime"], schedules._zone(d["timeZone"]), "start time")),
        "startTimeOffsetMinutes": 0,
        "expiryTime": d.get("expiryTime"),
        "expiryTimeOffsetMinutes": 0,
        "isEnabled": d["isEnabled"],
        "nextRun": next_run,
        "nextRunOffsetMinutes": 0,
        "interval": d["interval"],
        "frequency": d["frequency"],
        "timeZone": d["timeZone"],
        "advancedSchedule": {},
        "creationTime": iso(created),
        "lastModifiedTime": iso(created),
        "description": d["description"],
    }


def schedule_resource(cp: ControlPlane, acct: Account, name: str) -> dict[str, Any]:
    view = _linked(cp, name)
    if view is not None:
        d = {
            "frequency": view["frequency"],
            "interval": view["interval"],
            "startTime": view["start_time"],
            "expiryTime": view["expiry_time"],
            "timeZone": view["time_zone"],
            "description": view["description"],
            "isEnabled": view["enabled"],
        }
        return acct.resource("schedules", name, _schedule_props(d, view["next_run_at"], view["created_at"]))
    row = _pending(cp, name)
    if row is None:
        raise ArmError(404, "NotFound", f"schedule {name!r} does not exist")
    return acct.resource("schedules", name, _schedule_props(json.loads(row.definition_json), None, row.created_at))


def job_schedule_resource(cp: ControlPlane, acct: Account, view: dict[str, Any]) -> dict[str, Any]:
    params: dict[str, str] = {}
    for p in view["params"]:
        params[p["name"] or f"[PARAMETER {len(params) + 1}]"] = p["value"]
    jid = job_schedule_id(cp, view["name"])
    props = {
        "jobScheduleId": jid,
        "schedule": {"name": view["name"]},
        "runbook": {"name": view["runbook"]},
        "runOn": view["run_on"],
        "parameters": params,
    }
    return acct.resource("jobSchedules", jid, props)


def _by_job_schedule_id(cp: ControlPlane, jid: str) -> dict[str, Any]:
    for view in schedules.list_all(cp):
        if job_schedule_id(cp, view["name"]) == jid:
            return view
    raise ArmError(404, "NotFound", f"job schedule {jid!r} does not exist")


# -- routes ---------------------------------------------------------------------------------


def router(cp: ControlPlane, read: AccountDependency, author: AccountDependency) -> APIRouter:
    r = APIRouter(prefix=ACCOUNT_PATH)

    @r.get("/schedules")
    def list_schedules(request: Request, acct: Account = Depends(read)) -> dict[str, Any]:
        with cp.reading() as s:
            pending = set(s.execute(select(_s.name)).scalars())
        names = sorted(pending | {v["name"] for v in schedules.list_all(cp)})
        return page_in_memory(request, [schedule_resource(cp, acct, n) for n in names])

    @r.get("/schedules/{scheduleName}")
    def get_schedule(scheduleName: str, acct: Account = Depends(read)) -> dict[str, Any]:
        return schedule_resource(cp, acct, scheduleName)

    @r.put("/schedules/{scheduleName}")
    def put_schedule(scheduleName: str, body: ScheduleBody, acct: Account = Depends(author)) -> JSONResponse:
        if not NAME_RE.match(scheduleName):
            raise BadRequest(f"invalid schedule name {scheduleName!r}: use 1-128 letters, digits, '.', '_' or '-'")
        d = definition(body.properties)
        if _linked(cp, scheduleName) is not None or _pending(cp, scheduleName) is not None:
            raise Conflict(f"schedule {scheduleName!r} already exists; delete it first or pick another name")
        with cp.session() as s:
            s.add(ArmSchedule(name=scheduleName, definition_json=json.dumps(d)))
            s.commit()
        return JSONResponse(schedule_resource(cp, acct, scheduleName), status_code=201)

    @r.patch("/schedules/{scheduleName}")
    def patch_schedule(scheduleName: str, body: ScheduleBody, acct: Account = Depends(author)) -> dict[str, Any]:
        enabled = body.properties.get("isEnabled")
        if set(body.properties) - {"isEnabled", "name"}:
            raise ArmError(501, "NotImplemented", "a schedule update changes isEnabled only")
        if isinstance(enabled, bool):
            if _linked(cp, scheduleName) is not None:
                schedules.set_enabled(cp, scheduleName, enabled)
            else:
                row = _pending(cp, scheduleName)
                if row is None:
                    raise ArmError(404, "NotFound", f"schedule {scheduleName!r} does not exist")
                d = {**json.loads(row.definition_json), "isEnabled": enabled}
                with cp.session() as s:
                    s.execute(update(TABLE).where(_s.name == scheduleName).values(definition_json=json.dumps(d)))
                    s.commit()
        return schedule_resource(cp, acct, scheduleName)

    @r.delete("/schedules/{scheduleName}")
    def delete_schedule(scheduleName: str, acct: Account = Depends(author)) -> Response:
        linked = _linked(cp, scheduleName) is not None
        with cp.session() as s:
            gone = s.execute(delete(TABLE).where(_s.name == scheduleName)).rowcount  # type: ignore[attr-defined]
            s.commit()
        if linked:
            schedules.delete(cp, scheduleName)
        elif not gone:
            raise ArmError(404, "NotFound", f"schedule {scheduleName!r} does not exist")
        return Response(status_code=200)

    @r.get("/jobSchedules")
    def list_job_schedules(request: Request, acct: Account = Depends(read)) -> dict[str, Any]:
        return page_in_memory(request, [job_schedule_resource(cp, acct, v) for v in schedules.list_all(cp)])

    @r.get("/jobSchedules/{jobScheduleId}")
    def get_job_schedule(jobScheduleId: str, acct: Account = Depends(read)) -> dict[str, Any]:
        return job_schedule_resource(cp, acct, _by_job_schedule_id(cp, jobScheduleId))

    @r.put("/jobSchedules/{jobScheduleId}", status_code=201)
    def put_job_schedule(jobScheduleId: str, body: JobScheduleBody, acct: Account = Depends(author)) -> JSONResponse:
        try:
            jid = str(uuid.UUID(jobScheduleId))
        except ValueError:
            raise BadRequest(f"a job schedule id is a GUID, not {jobScheduleId!r}") from None
        props, name = body.properties, body.properties.schedule.name
        if not props.runOn:
            raise BadRequest("properties.runOn must name a hybrid worker group: Outpost runs every job on one")
        if _linked(cp, name) is not None:
            raise Conflict(f"schedule {name!r} already starts a runbook; on Outpost a schedule starts one runbook")
        row = _pending(cp, name)
        if row is None:
            raise ArmError(404, "NotFound", f"schedule {name!r} does not exist; PUT .../schedules/{name} first")
        with cp.reading() as s:
            if s.execute(select(_s.name).where(_s.job_schedule_id == jid)).first() is not None:
                raise Conflict(f"job schedule {jid} already exists")
        d = json.loads(row.definition_json)
        view = schedules.create(
            cp,
            name,
            props.runbook.name,
            props.runOn,
            d["frequency"],
            d["interval"],
            d["startTime"],
            d["timeZone"],
            d.get("expiryTime"),
            jobs.azure_positional([JobParam(name=k, value=v) for k, v in (props.parameters or {}).items()]),
            d["description"],
            d["isEnabled"],
        )
        with cp.session() as s:
            s.execute(update(TABLE).where(_s.name == name).values(job_schedule_id=jid))
            s.commit()
        return JSONResponse(job_schedule_resource(cp, acct, view), status_code=201)

    @r.delete("/jobSchedules/{jobScheduleId}")
    def delete_job_schedule(jobScheduleId: str, acct: Account = Depends(author)) -> Response:
        view = _by_job_schedule_id(cp, jobScheduleId)
        schedules.delete(cp, view["name"])  # the ARM schedule's definition stays, unlinked, as on Azure
        with cp.session() as s:
            s.execute(update(TABLE).where(_s.name == view["name"]).values(job_schedule_id=None))
            s.commit()
        return Response(status_code=200)

    return r
