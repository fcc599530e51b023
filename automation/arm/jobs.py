"""Jobs through ARM: start by name, read, list with $filter, output, streams, stop.

ARM clients name a job (`PUT jobs/{jobName}`, usually a GUID). The name is kept in the store
(`arm_job_name`, migration 0007), so it resolves on every replica and after restarts; a job
started through another door (CLI, /api/v1, schedules, webhooks) is named by its id. Starting,
stopping and reading go through automation.jobs, as every other door does.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel
from sqlalchemy import and_, or_, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from automation import jobs, lifecycle, queue_sql
from automation.arm.envelope import ACCOUNT_PATH, Account, AccountDependency, iso
from automation.arm.errors import ArmError
from automation.arm.paging import Clause, compare, listing, page_size, parse_filter, skiptoken
from automation.context import ControlPlane
from automation.errors import BadRequest, Conflict
from automation.lifecycle import JobRecord
from automation.models import ArmJobName, as_utc, utcnow
from outpost.contract import NAME_RE, JobParam, JobStatus, StreamType

NAMES = ArmJobName.__table__  # type: ignore[attr-defined]
_n = NAMES.c
_job = queue_sql.JOB.c
MAX_OUTPUT_BYTES = 8 * 1024 * 1024  # one output answer; the streams listing pages through the rest
STREAM_PAGE = 10000
_PROVISIONING = {"Completed": "Succeeded", "Stopped": "Succeeded", "Failed": "Failed", "Suspended": "Suspended"}
JOB_FILTER_STRINGS = ("properties/status", "properties/runbook/name", "properties/runOn")
JOB_FILTER_TIMES = (
    "properties/creationTime",
    "properties/startTime",
    "properties/endTime",
    "properties/lastModifiedTime",
)
_COLUMN = {
    "properties/status": _job.status,
    "properties/runbook/name": _job.runbook_name,
    "properties/runOn": _job.group_name,
    "properties/creationTime": _job.created_at,
    "properties/startTime": _job.started_at,
    "properties/endTime": _job.ended_at,
    "properties/lastModifiedTime": _job.last_status_at,
}


class RunbookRef(BaseModel):
    name: str


class JobProperties(BaseModel):
    runbook: RunbookRef
    parameters: dict[str, Any] | None = None
    runOn: str | None = None


class JobBody(BaseModel):
    properties: JobProperties


# -- names ---------------------------------------------------------------------------------


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


def resolve(cp: ControlPlane, name: str) -> tuple[str, JobRecord]:
    """ARM job name -> (name, job). A name nobody gave is taken as a job id."""
    with cp.reading() as s:
        row = s.execute(select(_n.job_id).where(_n.name == name)).first()
    if row is not None:
        return name, jobs.get(cp, row.job_id)
    if _is_uuid(name):
        return name, jobs.get(cp, name)
    raise ArmError(404, "NotFound", f"job {name!r} does not exist")


def names_of(cp: ControlPlane, job_ids: list[str]) -> dict[str, str]:
    if not job_ids:
        return {}
    with cp.reading() as s:
        rows = s.execute(select(_n.job_id, _n.name).where(_n.job_id.in_(job_ids))).all()
    return {r.job_id: r.name for r in rows}


def _as_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)  # Azure takes JSON-serialised values


def start(cp: ControlPlane, name: str, body: JobProperties, traceparent: str | None) -> JobRecord:
    """Start once per name: a repeated PUT returns the job it started; the name for another job is a 409."""
    if not NAME_RE.match(name):
        raise BadRequest(f"invalid job name {name!r}: use 1-128 letters, digits, '.', '_' or '-' (a GUID is usual)")
    if not body.runOn:
        raise BadRequest("properties.runOn must name a hybrid worker group: Outpost runs every job on a hybrid worker")
    params = {k: _as_text(v) for k, v in (body.parameters or {}).items()}
    once = lifecycle.Idempotency(
        key=f"arm:{name}",
        fingerprint=lifecycle.fingerprint(runbook=body.runbook.name, run_on=body.runOn, params=params),
    )
    with cp.reading() as s:
        known = s.execute(select(_n.job_id, _n.request_hash).where(_n.name == name)).first()
    if known is not None:
        if known.request_hash != once.digest:
            raise Conflict(f"job name {name!r} is taken by job {known.job_id}; a new job needs a new name")
        return jobs.get(cp, known.job_id)
    view, _ = jobs.create(
        cp,
        body.runbook.name,
        body.runOn,
        [JobParam(name=k, value=v) for k, v in params.items()],
        parent_traceparent=traceparent,
        once=once,
    )
    insert = sqlite_insert if cp.dialect == "sqlite" else pg_insert
    with cp.transaction() as conn:  # a retry after a crash right here replays the key and writes the name
        conn.execute(
            insert(NAMES)
            .values(name=name, job_id=view["id"], request_hash=once.digest, created_at=utcnow())
            .on_conflict_do_nothing(index_elements=["name"])
        )
    return jobs.get(cp, view["id"])


# -- views ---------------------------------------------------------------------------------


def _parameters(params_json: str) -> dict[str, str]:
    out: dict[str, str] = {}
    position = 0
    for p in json.loads(params_json):
        if p.get("name") is None:
            position += 1
            out[f"[PARAMETER {position}]"] = p["value"]
        else:
            out[p["name"]] = p["value"]
    return out


def resource(acct: Account, name: str, job: JobRecord, full: bool = True) -> dict[str, Any]:
    props: dict[str, Any] = {
        "runbook": {"name": job.runbook_name},
        "runOn": job.group_name,
        "jobId": job.id,
        "creationTime": iso(job.created_at),
        "status": job.status,
        "startTime": iso(job.started_at),
        "endTime": iso(job.ended_at),
        "lastModifiedTime": iso(job.last_status_at),
        "provisioningState": _PROVISIONING.get(job.status, "Processing"),
    }
    if full:
        failed = job.status in (JobStatus.FAILED, JobStatus.SUSPENDED)
        props.update(
            statusDetails=job.status_reason or "None",
            exception=job.status_reason if failed else None,
            lastStatusModifiedTime=iso(job.last_status_at),
            parameters=_parameters(job.params_json),
            startedBy=None,
        )
    return acct.resource("jobs", name, props)


def list_page(cp: ControlPlane, acct: Account, request: Request) -> dict[str, Any]:
    """Newest first, keyset-paged by (creationTime, id): pages stay right while jobs are added."""
    clauses = parse_filter(request.query_params.get("$filter"), JOB_FILTER_STRINGS, JOB_FILTER_TIMES)
    size = page_size(request)
    query = select(queue_sql.JOB).order_by(_job.created_at.desc(), _job.id.desc()).limit(size + 1)
    for c in clauses:
        query = query.where(_condition(c))
    token = skiptoken(request)
    if token:
        created, _, job_id = token.partition("|")
        try:
            after = as_utc(datetime.fromisoformat(created))
        except ValueError:
            raise BadRequest(f"$skiptoken {token!r} is not one this server gave out; start the listing again") from None
        query = query.where(or_(_job.created_at < after, and_(_job.created_at == after, _job.id < job_id)))
    with cp.reading() as s:
        rows = [JobRecord.of(r) for r in s.execute(query).all()]
    more, rows = len(rows) > size, rows[:size]
    names = names_of(cp, [j.id for j in rows])
    value = [resource(acct, names.get(j.id, j.id), j, full=False) for j in rows]
    next_token = f"{iso(rows[-1].created_at)}|{rows[-1].id}" if more else None
    return listing(request, value, next_token)


def _condition(c: Clause) -> Any:
    column = _COLUMN[c.field]
    if c.field == "properties/status":
        try:
            JobStatus(c.value)
        except ValueError:
            raise BadRequest(
                f"$filter: unknown status {c.value!r}; use one of {', '.join(s.value for s in JobStatus)}"
            ) from None
    return {
        "eq": column == c.value,
        "ge": column >= c.value,
        "gt": column > c.value,
        "le": column <= c.value,
        "lt": column < c.value,
    }[c.op]


def output(cp: ControlPlane, job: JobRecord) -> tuple[str, bool]:
    """The Output stream as text, one record a line, up to MAX_OUTPUT_BYTES. -> (text, truncated)."""
    lines: list[str] = []
    size, after = 0, -1
    while True:
        page = jobs.streams(cp, job.id, after, STREAM_PAGE, StreamType.OUTPUT.value)
        for record in page:
            size += len(record["text"].encode()) + 1
            if size > MAX_OUTPUT_BYTES:
                return "\n".join(lines) + "\n", True
            lines.append(record["text"])
        if len(page) < STREAM_PAGE:
            return ("\n".join(lines) + "\n") if lines else "", False
        after = page[-1]["seq"]


def _stream(job_path: str, record: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": f"{job_path}/streams/{record['seq']}",
        "properties": {
            "jobStreamId": str(record["seq"]),
            "time": iso(record["time"]),
            "streamType": record["type"],
            "streamText": record["text"],
            "summary": record["text"][:512],
            "value": {},
        },
    }


def _stream_type(clauses: list[Clause]) -> str | None:
    for c in clauses:
        if c.field == "properties/streamType":
            if c.value == "Any":
                return None
            try:
                return StreamType(c.value).value
            except ValueError:
                allowed = ", ".join([*(s.value for s in StreamType), "Any"])
                raise BadRequest(f"$filter: unknown streamType {c.value!r}; use one of {allowed}") from None
    return None


def streams_page(cp: ControlPlane, job_path: str, job: JobRecord, request: Request) -> dict[str, Any]:
    clauses = parse_filter(request.query_params.get("$filter"), ("properties/streamType",), ("properties/time",))
    stream = _stream_type(clauses)
    times = [c for c in clauses if c.field == "properties/time"]
    token = skiptoken(request)
    if token is not None and not token.lstrip("-").isdigit():
        raise BadRequest(f"$skiptoken {token!r} is not one this server gave out; start the listing again")
    size = page_size(request)
    page = jobs.streams(cp, job.id, int(token) if token else -1, size, stream)

    def wanted(record: dict[str, Any]) -> bool:
        at = as_utc(datetime.fromisoformat(record["time"]))
        return all(compare(at, c.op, c.value) for c in times)  # type: ignore[arg-type]

    kept = [r for r in page if wanted(r)]
    more = len(page) == size
    return listing(request, [_stream(job_path, r) for r in kept], str(page[-1]["seq"]) if more else None)


# -- routes --------------------------------------------------------------------------------


def router(cp: ControlPlane, read: AccountDependency, operate: AccountDependency) -> APIRouter:
    r = APIRouter(prefix=ACCOUNT_PATH + "/jobs")

    def job_for(acct: Account, name: str, what: str) -> tuple[str, JobRecord]:
        found, job = resolve(cp, name)
        if what:
            acct.principal.require_group(job.group_name, what)
        return found, job

    @r.get("")
    def list_jobs(request: Request, acct: Account = Depends(read)) -> dict[str, Any]:
        return list_page(cp, acct, request)

    @r.put("/{jobName}", status_code=201)
    def create_job(jobName: str, body: JobBody, request: Request, acct: Account = Depends(operate)) -> JSONResponse:
        if body.properties.runOn:
            acct.principal.require_group(body.properties.runOn, "start jobs")
        job = start(cp, jobName, body.properties, request.headers.get("traceparent"))
        # 201 for a repeat too: the SDK takes only 201 from this call, and a retry must not fail.
        return JSONResponse(resource(acct, jobName, job), status_code=201)

    @r.get("/{jobName}")
    def get_job(jobName: str, acct: Account = Depends(read)) -> dict[str, Any]:
        return resource(acct, *job_for(acct, jobName, ""))

    @r.post("/{jobName}/stop")
    def stop_job(jobName: str, acct: Account = Depends(operate)) -> Response:
        _, job = job_for(acct, jobName, "stop jobs")
        jobs.stop(cp, job.id)
        return Response(status_code=200)

    @r.get("/{jobName}/runbookContent")
    def job_runbook_content(jobName: str, acct: Account = Depends(read)) -> PlainTextResponse:
        return PlainTextResponse(job_for(acct, jobName, "")[1].content)  # the version the job ran

    @r.get("/{jobName}/output")
    def job_output(jobName: str, acct: Account = Depends(operate)) -> PlainTextResponse:
        _, job = job_for(acct, jobName, "read job output")
        text, truncated = output(cp, job)
        headers = {"x-outpost-truncated": f"over {MAX_OUTPUT_BYTES} bytes; page the streams"} if truncated else None
        return PlainTextResponse(text, headers=headers)

    @r.get("/{jobName}/streams")
    def list_streams(jobName: str, request: Request, acct: Account = Depends(operate)) -> dict[str, Any]:
        name, job = job_for(acct, jobName, "read job output")
        return streams_page(cp, f"{acct.id}/jobs/{name}", job, request)

    @r.get("/{jobName}/streams/{jobStreamId}")
    def get_stream(jobName: str, jobStreamId: str, acct: Account = Depends(operate)) -> dict[str, Any]:
        name, job = job_for(acct, jobName, "read job output")
        if not jobStreamId.isdigit():
            raise ArmError(404, "NotFound", f"job {name} has no stream record {jobStreamId!r}")
        found = jobs.streams(cp, job.id, int(jobStreamId) - 1, 1)
        if not found or found[0]["seq"] != int(jobStreamId):
            raise ArmError(404, "NotFound", f"job {name} has no stream record {jobStreamId!r}")
        return _stream(f"{acct.id}/jobs/{name}", found[0])

    return r
