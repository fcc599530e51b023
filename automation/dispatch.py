"""The agent's side of dispatch: claims as assignments, leases, event acks; and the fleet snapshot.

The writes themselves (and the status rules) are `automation.lifecycle`'s. Claim is one atomic
UPDATE ... WHERE id IN (oldest New jobs of the group) RETURNING: on PostgreSQL the pick takes
`FOR UPDATE SKIP LOCKED`, so concurrent claimers skip each other's rows instead of waiting; on
SQLite the statement runs in a BEGIN IMMEDIATE transaction, which serialises writers. Either way
a job moves New -> Activating for one worker only.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from datetime import UTC

from sqlalchemy import func, select

from automation import lifecycle
from automation.context import ControlPlane
from automation.lifecycle import Claimed
from automation.models import Job, Worker, WorkerGroup, utcnow
from automation.queue_sql import HELD
from outpost.contract import EventAck, EventBatch, JobAssignment, JobParam, JobStatus, LeaseResponse, RunbookType
from outpost.observer import GroupSnapshot, WorkerIdentity

reap = lifecycle.reap  # the server's reaper loop calls dispatch.reap
__all__ = ["HELD", "apply_events", "claim", "reap", "renew", "snapshot"]


def claim(
    cp: ControlPlane, identity: WorkerIdentity, limit: int = 1, held: Collection[str] | None = None
) -> list[JobAssignment]:
    """Up to `limit` jobs for the worker (its free slots), oldest first; see `lifecycle.claim` for `held`.

    A worker asks for as many jobs as it has free slots, so a backlog drains in a few
    polls rather than one poll per job.
    """
    claimed = lifecycle.claim(cp, identity, limit, held)
    if not claimed.jobs:
        return []
    run_as, run_as_credential = _run_as(claimed)
    return [
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
        for job in claimed.jobs
    ]


def _run_as(claimed: Claimed) -> tuple[str | None, str | None]:
    """(user name, credential name) of the group's RunAs account, or (None, None): the agent's user."""
    if not claimed.run_as_credential or claimed.run_as_public_json is None:
        return None, None
    return json.loads(claimed.run_as_public_json).get("username"), claimed.run_as_credential


def renew(cp: ControlPlane, identity: WorkerIdentity, job_id: str) -> LeaseResponse:
    expires, stop = lifecycle.renew(cp, identity, job_id)
    return LeaseResponse(lease_expires_at=expires.isoformat(), actions=["stop"] if stop else [])


def apply_events(cp: ControlPlane, identity: WorkerIdentity, job_id: str, batch: EventBatch) -> EventAck:
    return lifecycle.apply_events(cp, identity, job_id, batch)


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
