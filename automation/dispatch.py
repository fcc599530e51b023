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

from automation import lifecycle, limits
from automation.context import ControlPlane
from automation.lifecycle import Claimed
from automation.queue_sql import HELD
from outpost.contract import (
    EventAck,
    EventBatch,
    JobAssignment,
    JobParam,
    LeaseResponse,
    RunbookType,
    RuntimeSpec,
)
from outpost.observer import WorkerIdentity

__all__ = ["HELD", "apply_events", "claim", "renew", "unsettled"]

unsettled = lifecycle.unsettled  # may a poll skip its claim when the queue is known empty?


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
            limits=limits.in_force(claimed.limits_json, job.limits_json),
            runtime=RuntimeSpec.model_validate_json(job.runtime_json) if job.runtime_json else None,
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
