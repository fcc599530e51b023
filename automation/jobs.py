"""Jobs as users see them: create, list, show, stop, read streams (writes: automation.lifecycle)."""

from __future__ import annotations

import json
import re
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import func, select

from automation import lifecycle, queue_sql
from automation.context import ControlPlane
from automation.errors import BadRequest, NotFound
from automation.lifecycle import JobRecord
from automation.models import JobStream
from outpost.contract import IDEMPOTENCY_HEADER, PARAM_NAME_RE, PATTERN_HINTS, JobParam, JobStatus
from outpost.names import params_problem

MAX_PARAMS = 64
MAX_PARAM_VALUE_BYTES = 64 * 1024
MAX_TIMEOUT_S = 7 * 24 * 3600


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def view(job: JobRecord) -> dict[str, Any]:
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
        "resources": json.loads(job.resources_json) if job.resources_json else None,
        "runtime_environment": json.loads(job.runtime_json)["name"] if job.runtime_json else None,
    }


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
    # Together they must fit the argv a worker can exec, or the job would fail there ("Argument list too long").
    problem = params_problem([{"name": p.name, "value": p.value} for p in params])
    if problem:
        raise BadRequest(problem)


# Printable ASCII without spaces, as HTTP header values of this kind usually are (UUIDs, ULIDs, hashes).
IDEMPOTENCY_KEY_PATTERN = r"^[\x21-\x7e]{1,200}$"  # POST /jobs publishes it; webhooks check _KEY_RE
_KEY_RE = re.compile(IDEMPOTENCY_KEY_PATTERN[:-1] + r"\Z")
PATTERN_HINTS[IDEMPOTENCY_KEY_PATTERN] = "1-200 printable ASCII characters without spaces (e.g. a UUID)"


def check_idempotency_key(key: str) -> str:
    if not _KEY_RE.match(key):
        raise BadRequest(f"{IDEMPOTENCY_HEADER} must be 1-200 printable ASCII characters without spaces (e.g. a UUID)")
    return key


def create(
    cp: ControlPlane,
    runbook: str,
    run_on: str,
    params: list[JobParam],
    timeout_s: float | None = None,
    parent_traceparent: str | None = None,
    idempotency_key: str | None = None,
    once: lifecycle.Idempotency | None = None,
    runtime: str | None = None,
) -> tuple[dict[str, Any], bool]:
    """Queue a job. -> (its view, replayed): replayed when `idempotency_key` (a client's, from
    POST /jobs) or `once` (a webhook request's or schedule occurrence's) started it before."""
    raw = [p.model_dump() for p in params]
    params = azure_positional(params)
    validate_params(params)
    if timeout_s is not None and not (0 < timeout_s <= MAX_TIMEOUT_S):
        raise BadRequest(f"timeout must be between 0 and {MAX_TIMEOUT_S} seconds")
    if idempotency_key is not None:
        check_idempotency_key(idempotency_key)
        asked = lifecycle.fingerprint(
            runbook=runbook, run_on=run_on, params=raw, timeout_s=timeout_s, **({"runtime": runtime} if runtime else {})
        )
        once = lifecycle.Idempotency(key=f"api:{idempotency_key}", fingerprint=asked)
    job, replayed = lifecycle.create(
        cp,
        runbook,
        run_on,
        json.dumps([p.model_dump() for p in params]),
        timeout_s,
        parent_traceparent,
        once,
        runtime=runtime,
    )
    return view(job), replayed


def get(cp: ControlPlane, job_id: str) -> JobRecord:
    try:
        uuid.UUID(job_id)
    except ValueError:
        raise BadRequest(f"{job_id!r} is not a job id (a UUID)") from None
    with cp.reading() as s:
        row = s.execute(queue_sql.JOB_BY_ID, {"job_id": job_id}).first()
    if row is None:
        raise NotFound(f"job {job_id} does not exist")
    return JobRecord.of(row)


def list_jobs(
    cp: ControlPlane,
    status: JobStatus | None = None,  # the route's model keeps it one of JobStatus
    runbook: str | None = None,
    group: str | None = None,
    limit: int = 50,
) -> list[dict[str, Any]]:
    job = queue_sql.JOB.c
    query = select(queue_sql.JOB).order_by(job.created_at.desc()).limit(max(1, min(limit, 1000)))
    if status:
        query = query.where(job.status == status)
    if runbook:
        query = query.where(job.runbook_name == runbook)
    if group:
        query = query.where(job.group_name == group)
    with cp.reading() as s:
        return [view(JobRecord.of(r)) for r in s.execute(query).all()]


def stop(cp: ControlPlane, job_id: str) -> dict[str, Any]:
    """New jobs stop at once; held jobs go to Stopping and the agent learns it on lease renewal."""
    get(cp, job_id)  # a clear 400 for a malformed id
    return view(lifecycle.stop(cp, job_id))


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
        rows = s.execute(query).scalars().all()
    return [{"seq": r.seq, "type": r.stream, "time": r.time.isoformat(), "text": r.text} for r in rows]


def stream_count(cp: ControlPlane, job_id: str) -> int:
    with cp.reading() as s:
        return s.execute(select(func.count()).select_from(JobStream).where(JobStream.job_id == job_id)).scalar_one()
