"""Jobs as users see them: create, list, show, stop, read streams."""

from __future__ import annotations

import json
import re
import uuid
from datetime import datetime
from types import SimpleNamespace
from typing import Any

from sqlalchemy import Row, func, update
from sqlmodel import select

from automation import queue_sql, tracing
from automation.context import ControlPlane
from automation.errors import BadRequest, NotFound
from automation.models import Job, JobStream, utcnow
from automation.notify import group_topic, job_topic
from outpost.contract import PARAM_NAME_RE, JobParam, JobStatus
from outpost.observer import JobEvent

MAX_PARAMS = 64
MAX_PARAM_VALUE_BYTES = 64 * 1024
MAX_TIMEOUT_S = 7 * 24 * 3600


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def view(job: Job | Row[Any] | SimpleNamespace) -> dict[str, Any]:
    return {
        "id": job.id,
        "runbook": job.runbook_name,
        "runbook_version": job.runbook_version,
        "run_on": job.group_name,
        "status": job.status,
        "status_reason": job.status_reason,
        "worker": job.worker_name,
        "params": json.loads(job.params_json),
        "timeout_s": job.timeout_s,
        "activations": job.activations,
        "exit_code": job.exit_code,
        "created_at": _iso(job.created_at),
        "started_at": _iso(job.started_at),
        "ended_at": _iso(job.ended_at),
        "last_status_at": _iso(job.last_status_at),
    }


def event_of(job: Job | Row[Any] | SimpleNamespace, description: str | None = None) -> JobEvent:
    return JobEvent(
        job_id=job.id,
        runbook=job.runbook_name,
        group=job.group_name,
        worker=job.worker_name,
        status=job.status,
        time=job.last_status_at,
        description=description if description is not None else job.status_reason,
        created_at=job.created_at,
        started_at=job.started_at,
        ended_at=job.ended_at,
    )


# Azure's REST API names a Python runbook's positional values "[PARAMETER 1]", "[PARAMETER 2]", ...
_AZURE_POSITIONAL = re.compile(r"^\[PARAMETER (\d+)\]$", re.IGNORECASE)


def azure_positional(params: list[JobParam]) -> list[JobParam]:
    """Turn Azure-style `[PARAMETER n]=v` into positional values, ordered by n, ahead of plain ones."""
    numbered: list[tuple[int, JobParam]] = []
    rest: list[JobParam] = []
    for p in params:
        m = _AZURE_POSITIONAL.match(p.name or "")
        if m:
            numbered.append((int(m.group(1)), JobParam(name=None, value=p.value)))
        else:
            rest.append(p)
    if not numbered:
        return params
    numbers = [n for n, _ in numbered]
    if len(set(numbers)) != len(numbers):
        raise BadRequest("a [PARAMETER n] is given twice")
    return [p for _, p in sorted(numbered, key=lambda x: x[0])] + rest


def validate_params(params: list[JobParam]) -> None:
    if len(params) > MAX_PARAMS:
        raise BadRequest(f"too many parameters ({len(params)}); at most {MAX_PARAMS}")
    seen: set[str] = set()
    for p in params:
        if p.name is not None:
            if not PARAM_NAME_RE.match(p.name):
                raise BadRequest(
                    f"invalid parameter name {p.name!r}: start with a letter or '_', then letters, digits, '_' or '-'"
                )
            if p.name in seen:
                raise BadRequest(f"parameter {p.name!r} given twice")
            seen.add(p.name)
        if len(p.value.encode()) > MAX_PARAM_VALUE_BYTES:
            raise BadRequest(f"parameter value too large (over {MAX_PARAM_VALUE_BYTES // 1024} KiB)")
        if "\x00" in p.value:
            raise BadRequest("parameter values cannot contain NUL characters")


def create(
    cp: ControlPlane,
    runbook: str,
    run_on: str,
    params: list[JobParam],
    timeout_s: float | None = None,
    parent_traceparent: str | None = None,
) -> dict[str, Any]:
    params = azure_positional(params)
    validate_params(params)
    if timeout_s is not None and not (0 < timeout_s <= MAX_TIMEOUT_S):
        raise BadRequest(f"timeout must be between 0 and {MAX_TIMEOUT_S} seconds")
    job_id = str(uuid.uuid4())
    now = utcnow()
    with cp.transaction() as conn:
        rb = conn.execute(queue_sql.RUNBOOK_BY_NAME, {"name": runbook}).first()
        if rb is None:
            raise NotFound(f"runbook {runbook!r} does not exist")
        if not rb.published_version or rb.published_content is None:
            raise BadRequest(f"runbook {runbook} has no published version; publish it first")
        group = conn.execute(queue_sql.GROUP_BY_NAME, {"name": run_on}).first()
        if group is None:
            raise NotFound(f"worker group {run_on!r} does not exist; register a worker into it first")
        job = conn.execute(
            queue_sql.INSERT_JOB,
            {
                "id": job_id,
                "runbook_id": rb.id,
                "runbook_name": rb.name,
                "runbook_version": rb.published_version,
                "runbook_type": rb.published_type or rb.runbook_type,
                "content": rb.published_content,
                "group_id": group.id,
                "group_name": group.name,
                "params_json": json.dumps([p.model_dump() for p in params]),
                "timeout_s": timeout_s,
                "retry_on_worker_loss": rb.retry_on_worker_loss,
                "traceparent": tracing.job_created(job_id, rb.name, run_on, parent_traceparent),
                "status": JobStatus.NEW,
                "status_reason": None,
                "worker_id": None,
                "worker_name": None,
                "activations": 0,
                "stop_requested": False,
                "exit_code": None,
                "lease_expires_at": None,
                "created_at": now,
                "started_at": None,
                "ended_at": None,
                "last_status_at": now,
            },
        ).one()
        cp.notifier.notify_replicas(conn, group_topic(job.group_name))
    cp.notifier.wake(group_topic(job.group_name), replicas=False)
    cp.observer.on_job_status(event_of(job))
    return view(job)


def get(cp: ControlPlane, job_id: str) -> Job:
    try:
        uuid.UUID(job_id)
    except ValueError:
        raise BadRequest(f"{job_id!r} is not a job id (a UUID)") from None
    with cp.reading() as s:
        job = s.get(Job, job_id)
    if job is None:
        raise NotFound(f"job {job_id} does not exist")
    return job


def list_jobs(
    cp: ControlPlane,
    status: str | None = None,
    runbook: str | None = None,
    group: str | None = None,
    limit: int = 50,
) -> list[dict[str, Any]]:
    if status is not None:
        try:
            JobStatus(status)
        except ValueError:
            raise BadRequest(f"unknown status {status!r}: use one of {', '.join(s.value for s in JobStatus)}") from None
    query = select(Job).order_by(Job.created_at.desc()).limit(max(1, min(limit, 1000)))  # type: ignore[attr-defined]
    if status:
        query = query.where(Job.status == status)
    if runbook:
        query = query.where(Job.runbook_name == runbook)
    if group:
        query = query.where(Job.group_name == group)
    with cp.reading() as s:
        return [view(j) for j in s.exec(query).all()]


def stop(cp: ControlPlane, job_id: str) -> dict[str, Any]:
    """New jobs stop at once; held jobs go to Stopping and the agent learns it on lease renewal."""
    job = get(cp, job_id)
    now = utcnow()
    with cp.session() as s:
        result = s.execute(
            update(Job)
            .where(Job.id == job.id, Job.status == JobStatus.NEW)
            .values(
                status=JobStatus.STOPPED,
                status_reason="stopped before it started",
                ended_at=now,
                last_status_at=now,
            )
        )
        if result.rowcount == 0:  # type: ignore[attr-defined]
            s.execute(
                update(Job)
                .where(Job.id == job.id, Job.status.in_([JobStatus.ACTIVATING, JobStatus.RUNNING]))  # type: ignore[attr-defined]
                .values(
                    status=JobStatus.STOPPING,
                    stop_requested=True,
                    status_reason="stop requested",
                    last_status_at=now,
                )
            )
        s.commit()
    job = get(cp, job_id)
    if job.status in (JobStatus.STOPPED, JobStatus.STOPPING) and job.last_status_at == now:
        cp.observer.on_job_status(event_of(job))
    cp.notifier.wake(job_topic(job.id))
    return view(job)


def streams(
    cp: ControlPlane, job_id: str, after: int = -1, limit: int = 1000, stream: str | None = None
) -> list[dict[str, Any]]:
    query = (
        select(JobStream)
        .where(JobStream.job_id == job_id, JobStream.seq > after)
        .order_by(JobStream.seq)  # type: ignore[arg-type]
        .limit(max(1, min(limit, 10000)))
    )
    if stream:
        query = query.where(JobStream.stream == stream)
    with cp.reading() as s:
        rows = s.exec(query).all()
    return [{"seq": r.seq, "type": r.stream, "time": r.time.isoformat(), "text": r.text} for r in rows]


def stream_count(cp: ControlPlane, job_id: str) -> int:
    with cp.reading() as s:
        return s.exec(select(func.count()).select_from(JobStream).where(JobStream.job_id == job_id)).one()
