"""The heart: hand each job to exactly one worker, keep its lease, take its events.

Claim is one atomic UPDATE ... WHERE id = (oldest New job of the group) RETURNING:
on PostgreSQL the inner SELECT takes `FOR UPDATE SKIP LOCKED`, so concurrent
claimers skip each other's row instead of waiting; on SQLite the statement runs in
a BEGIN IMMEDIATE transaction, which serialises writers. Either way a job moves
New -> Activating for one worker only.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

from sqlalchemy import Connection, Row, func, select, update

from automation import queue_sql, tracing
from automation.context import ControlPlane
from automation.errors import BadRequest, Conflict
from automation.jobs import event_of
from automation.models import Job, Worker, WorkerGroup, utcnow
from automation.notify import group_topic, job_topic
from automation.queue_sql import HELD
from outpost.contract import (
    FINAL_STATUSES,
    EventAck,
    EventBatch,
    JobAssignment,
    JobParam,
    JobStatus,
    LeaseResponse,
    RunbookType,
)
from outpost.observer import GroupSnapshot, WorkerIdentity
from outpost.settings import MAX_ACTIVATIONS

# Status changes an agent may report, from -> allowed targets.
_AGENT_TRANSITIONS: dict[str, set[str]] = {
    JobStatus.ACTIVATING: {JobStatus.RUNNING, JobStatus.FAILED, JobStatus.STOPPED},
    JobStatus.RUNNING: {JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.STOPPED},
    JobStatus.STOPPING: {JobStatus.RUNNING, JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.STOPPED},
}


def claim(cp: ControlPlane, identity: WorkerIdentity, limit: int = 1) -> list[JobAssignment]:
    """Hand the oldest `limit` New jobs of the worker's group to it, oldest first.

    A worker asks for as many jobs as it has free slots, so a backlog drains in a few
    polls rather than one poll per job.
    """
    now = utcnow()
    with cp.transaction() as conn:
        claimed = conn.execute(
            queue_sql.CLAIM[cp.dialect],
            {
                "group": identity.group,
                "limit": limit,
                "b_worker_id": identity.worker_id,
                "b_worker_name": identity.name,
                "b_lease_expires_at": now + timedelta(seconds=cp.lease_seconds),
                "b_now": now,
            },
        ).all()
        if not claimed:
            return []
        run_as_row = conn.execute(queue_sql.RUN_AS, {"group_id": claimed[0].group_id}).first()
    run_as, run_as_credential = _run_as(run_as_row)
    out = []
    for job in sorted(claimed, key=lambda j: (j.created_at, j.id)):
        cp.observer.on_job_status(event_of(job))
        tracing.job_claimed(job.traceparent, job.id, identity.name, job.created_at, now, job.activations)
        out.append(
            JobAssignment(
                job_id=job.id,
                runbook=job.runbook_name,
                runbook_type=RunbookType(job.runbook_type),
                content=job.content,
                params=[JobParam(**p) for p in json.loads(job.params_json)],
                timeout_s=job.timeout_s,
                lease_seconds=cp.lease_seconds,
                activation=job.activations,
                traceparent=job.traceparent,
                run_as=run_as,
                run_as_credential=run_as_credential,
            )
        )
    return out


def _run_as(row: Row[Any] | None) -> tuple[str | None, str | None]:
    """(user name, credential name) of the group's RunAs account, or (None, None): the agent's user."""
    if row is None or not row.run_as_credential or row.public_json is None:
        return None, None
    return json.loads(row.public_json).get("username"), row.run_as_credential


def renew(cp: ControlPlane, identity: WorkerIdentity, job_id: str) -> LeaseResponse:
    expires = utcnow() + timedelta(seconds=cp.lease_seconds)
    with cp.transaction() as conn:
        row = conn.execute(
            queue_sql.RENEW, {"b_job_id": job_id, "holder": identity.worker_id, "b_expires": expires}
        ).first()
    if row is None:
        raise Conflict(f"job {job_id} is not held by this worker (lease lost, job ended, or never claimed)")
    return LeaseResponse(lease_expires_at=expires.isoformat(), actions=["stop"] if row[0] else [])


def _insert_streams(cp: ControlPlane, conn: Connection, job_id: str, batch: EventBatch) -> int:
    if not batch.records:
        return 0
    rows = [
        {"job_id": job_id, "seq": r.seq, "stream": r.stream.value, "time": _parse_time(r.time), "text": r.text}
        for r in batch.records
    ]
    return len(conn.execute(queue_sql.INSERT_STREAMS[cp.dialect], rows).all())


def _parse_time(value: str) -> Any:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise BadRequest(f"stream record time {value!r} is not ISO 8601") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _started_at(reported: str | None, claimed_at: datetime, now: datetime) -> datetime:
    """The agent's start time, kept between the claim and now (its clock may be skewed)."""
    if not reported:
        return now
    claimed = claimed_at if claimed_at.tzinfo else claimed_at.replace(tzinfo=UTC)
    return min(max(_parse_time(reported), claimed), now)


def apply_events(cp: ControlPlane, identity: WorkerIdentity, job_id: str, batch: EventBatch) -> EventAck:
    """Store stream records (idempotent by seq) and apply an optional status change."""
    now = utcnow()
    changes: dict[str, Any] = {}
    started: dict[str, Any] | None = None
    with cp.transaction() as conn:
        job = conn.execute(queue_sql.JOB_FOR_EVENTS[cp.dialect], {"job_id": job_id}).first()
        if job is None or job.worker_id != identity.worker_id:
            raise Conflict(f"job {job_id} is not held by this worker")
        inserted = _insert_streams(cp, conn, job_id, batch)
        status = job.status
        # A retried final batch after success: its records are taken idempotently, nothing else changes.
        if batch.status is not None and batch.status.status != status and status not in FINAL_STATUSES:
            target = batch.status.status
            started_at = _started_at(batch.status.started_at, job.last_status_at, now)
            if status == JobStatus.ACTIVATING and target in FINAL_STATUSES and batch.status.started_at:
                # Start and end in one batch: record the Running it went through.
                status = JobStatus.RUNNING
                started = {"status": status, "started_at": started_at, "last_status_at": started_at}
                changes.update(started)
            if target not in _AGENT_TRANSITIONS.get(status, set()):
                raise Conflict(f"job {job_id} cannot go from {status} to {target}")
            if status == JobStatus.STOPPING and target == JobStatus.RUNNING:
                target = JobStatus.STOPPING  # a stop already requested wins over a late "Running"
            if target != status:
                changes.update(status=target, last_status_at=now)
            if target == JobStatus.RUNNING:
                changes["started_at"] = started_at
            if target in FINAL_STATUSES:
                changes.update(
                    ended_at=now,
                    lease_expires_at=None,
                    exit_code=batch.status.exit_code,
                    status_reason=batch.status.reason,
                )
        if changes:
            values = {f"b_{c}": changes.get(c, getattr(job, c)) for c in queue_sql.EVENT_COLUMNS}
            conn.execute(queue_sql.APPLY_EVENT, {"job_id": job_id, **values})
        if inserted or changes:
            cp.notifier.notify_replicas(conn, job_topic(job_id))
    after = SimpleNamespace(**{**job._mapping, **changes})
    if started is not None:
        cp.observer.on_job_status(event_of(SimpleNamespace(**{**job._mapping, **started})))
    if batch.records:
        cp.observer.on_job_streams(event_of(after), batch.records)
    changed = after.status != job.status
    if changed:
        cp.observer.on_job_status(event_of(after))
    if inserted or changes:
        cp.notifier.wake(job_topic(job_id), replicas=False)
    return EventAck(accepted=inserted, duplicates=len(batch.records) - inserted, status=after.status)


def reap(cp: ControlPlane) -> int:
    """End or re-queue jobs whose worker stopped renewing the lease (e.g. killed -9)."""
    now = utcnow()
    with cp.reading() as s:
        expired = (
            s.execute(
                select(Job).where(Job.status.in_(HELD), Job.lease_expires_at < now)  # type: ignore[attr-defined]
            )
            .scalars()
            .all()
        )
    handled = 0
    for job in expired:
        expired_at = job.lease_expires_at.isoformat() if job.lease_expires_at else "?"
        lost = f"worker {job.worker_name} lost: its lease expired at {expired_at}"
        if job.retry_on_worker_loss and job.activations < MAX_ACTIVATIONS and job.status != JobStatus.STOPPING:
            values: dict[str, Any] = {
                "status": JobStatus.NEW,
                "worker_id": None,
                "worker_name": None,
                "lease_expires_at": None,
                "status_reason": f"re-queued: {lost}",
            }
        elif job.retry_on_worker_loss and job.status != JobStatus.STOPPING:
            values = {
                "status": JobStatus.SUSPENDED,
                "lease_expires_at": None,
                "ended_at": now,
                "status_reason": f"suspended after {job.activations} failed activations; last: {lost}",
            }
        elif job.status == JobStatus.STOPPING:
            values = {
                "status": JobStatus.STOPPED,
                "lease_expires_at": None,
                "ended_at": now,
                "status_reason": f"stopped; {lost}",
            }
        else:
            values = {
                "status": JobStatus.FAILED,
                "lease_expires_at": None,
                "ended_at": now,
                "status_reason": lost,
            }
        values["last_status_at"] = now
        with cp.session() as s:
            result = s.execute(
                update(Job)
                .where(Job.id == job.id, Job.status == job.status, Job.lease_expires_at == job.lease_expires_at)
                .values(**values)
                .execution_options(synchronize_session=False)
            )
            s.commit()
            if not result.rowcount:  # type: ignore[attr-defined]
                continue  # renewed meanwhile, or another replica got there first
            fresh = s.get(Job, job.id)
        handled += 1
        assert fresh is not None
        cp.observer.on_job_status(event_of(fresh))
        cp.notifier.wake(job_topic(job.id))
        if fresh.status == JobStatus.NEW:
            cp.notifier.wake(group_topic(fresh.group_name))
    return handled


def snapshot(cp: ControlPlane) -> list[GroupSnapshot]:
    now = utcnow()
    with cp.reading() as s:
        groups = s.execute(select(WorkerGroup.id, WorkerGroup.name)).all()
        queued = {
            gid: (count, oldest)
            for gid, count, oldest in s.execute(
                select(Job.group_id, func.count(), func.min(Job.created_at))
                .where(Job.status == JobStatus.NEW)
                .group_by(Job.group_id)
            ).all()
        }
        members: dict[int, dict[str, int]] = {}
        for gid, name in s.execute(select(Worker.group_id, Worker.name)).all():
            members.setdefault(gid, {})[name] = 1
    out = []
    for gid, name in groups:
        count, oldest = queued.get(gid, (0, None))
        if oldest is not None and oldest.tzinfo is None:
            oldest = oldest.replace(tzinfo=UTC)
        age = (now - oldest).total_seconds() if oldest else 0.0
        out.append(
            GroupSnapshot(
                group=name,
                queue_depth=int(count),
                oldest_queued_age_s=max(0.0, age),
                workers=members.get(gid, {}),
            )
        )
    return out
