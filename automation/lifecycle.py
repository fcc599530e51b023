"""The job lifecycle: every write to the job tables, and who may move a job where.

Three actors change a job's status (`TRANSITIONS` lists every move each may make):

- the API (REST, CLI, webhooks, schedules) creates jobs and stops them;
- the agent claims jobs in its polls, reports their progress in event batches, renews leases;
- the reaper applies the worker-loss outcome: when a lease expires, or at once when the worker's
  poll says its agent no longer holds a job it was running (the agent restarted).

Every write goes through the prebuilt statements of `automation.queue_sql` on a bare connection
(no ORM on the hot paths), returns `JobRecord`s, and each function takes `now` so the state
machine can be tested with an injected clock. Side effects after a commit (observer events,
wake-ups, trace spans) happen here too, so every caller gets them alike.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time
import uuid
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import Connection, Row

from automation import queue_sql, runtime_envs, tracing
from automation.context import ControlPlane
from automation.errors import STORE, BadRequest, Conflict, NotFound, is_store_outage
from automation.models import as_utc, utcnow
from automation.notify import group_topic, job_topic
from outpost.contract import FINAL_STATUSES, EventAck, EventBatch, JobStatus
from outpost.observer import JobEvent, WorkerIdentity
from outpost.settings import MAX_ACTIVATIONS

log = logging.getLogger("outpost.server")

S = JobStatus
IDEMPOTENCY_TTL = timedelta(hours=24)
PURGE_EVERY_S = 60.0


class Actor(StrEnum):
    API = "api"
    AGENT = "agent"
    REAPER = "reaper"


# actor -> from-status (None: the job does not exist yet) -> the statuses it may move the job to.
TRANSITIONS: Mapping[Actor, Mapping[JobStatus | None, frozenset[JobStatus]]] = {
    Actor.API: {
        None: frozenset({S.NEW}),  # create
        S.NEW: frozenset({S.STOPPED}),  # stop before it started
        S.ACTIVATING: frozenset({S.STOPPING}),  # stop: the agent learns it on its next renewal
        S.RUNNING: frozenset({S.STOPPING}),
    },
    Actor.AGENT: {
        S.NEW: frozenset({S.ACTIVATING}),  # claim
        S.ACTIVATING: frozenset({S.RUNNING, S.FAILED, S.STOPPED}),
        S.RUNNING: frozenset({S.COMPLETED, S.FAILED, S.STOPPED}),
        # A "Running" reported while Stopping keeps the job Stopping (the stop wins).
        S.STOPPING: frozenset({S.COMPLETED, S.FAILED, S.STOPPED}),
    },
    Actor.REAPER: {
        # Re-queued (retry on worker loss), Suspended after MAX_ACTIVATIONS, else Failed.
        S.ACTIVATING: frozenset({S.NEW, S.SUSPENDED, S.FAILED}),
        S.RUNNING: frozenset({S.NEW, S.SUSPENDED, S.FAILED}),
        S.STOPPING: frozenset({S.STOPPED}),
    },
}
# Not status changes, and so not in the table: a lease renewal, and the re-offer of a claimed job
# its worker never received (Activating stays Activating, activations unchanged).


def allowed(actor: Actor, before: str | None, after: str) -> bool:
    # A StrEnum hashes and compares as its value: a plain status string finds its row.
    return after in TRANSITIONS[actor].get(before, frozenset())  # type: ignore[call-overload]


@dataclass(frozen=True, slots=True)
class JobRecord:
    """A job row as every lifecycle function returns it."""

    id: str
    runbook_id: int
    runbook_name: str
    runbook_version: int
    runbook_type: str
    content: str
    group_id: int
    group_name: str
    params_json: str
    timeout_s: float | None
    retry_on_worker_loss: bool
    status: str
    status_reason: str | None
    worker_id: str | None
    worker_name: str | None
    activations: int
    stop_requested: bool
    exit_code: int | None
    lease_expires_at: datetime | None
    traceparent: str | None
    created_at: datetime
    started_at: datetime | None
    ended_at: datetime | None
    last_status_at: datetime
    resources_json: str | None = None
    runtime_json: str | None = None
    limits_json: str | None = None  # its runbook's JobLimits, when it was created

    @classmethod
    def of(cls, row: Row[Any]) -> JobRecord:
        return cls(**row._mapping)


def event_of(job: JobRecord, description: str | None = None) -> JobEvent:
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
        resources=json.loads(job.resources_json) if job.resources_json else None,
    )


# -- create (API) ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Idempotency:
    """A start that must happen once: `key` scoped by its door, `fingerprint` what was asked."""

    key: str
    fingerprint: str

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.fingerprint.encode()).hexdigest()


def fingerprint(**request: Any) -> str:
    return json.dumps(request, sort_keys=True, separators=(",", ":"), default=str)


def create(
    cp: ControlPlane,
    runbook: str,
    run_on: str,
    params_json: str,
    timeout_s: float | None = None,
    parent_traceparent: str | None = None,
    once: Idempotency | None = None,
    now: datetime | None = None,
    runtime: str | None = None,
) -> tuple[JobRecord, bool]:
    """Queue a job; with `once`, a repeat of the key returns the job it started. -> (job, replayed).

    `runtime` names a runtime environment for this job instead of its runbook's."""
    now = now or utcnow()
    job_id = str(uuid.uuid4())
    with cp.transaction() as conn:
        if once is not None:
            earlier = _take_key(cp, conn, once, job_id, now)
            if earlier is not None:
                return earlier, True
        rb = conn.execute(queue_sql.RUNBOOK_BY_NAME, {"name": runbook}).first()
        if rb is None:
            raise NotFound(f"runbook {runbook!r} does not exist")
        if not rb.published_version or rb.published_content is None:
            raise BadRequest(f"runbook {runbook} has no published version; publish it first")
        group = conn.execute(queue_sql.GROUP_BY_NAME, {"name": run_on}).first()
        if group is None:
            raise NotFound(f"worker group {run_on!r} does not exist; register a worker into it first")
        row = conn.execute(
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
                "params_json": params_json,
                "timeout_s": timeout_s,
                "retry_on_worker_loss": rb.retry_on_worker_loss,
                "traceparent": tracing.job_created(job_id, rb.name, run_on, parent_traceparent),
                "status": S.NEW,
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
                "resources_json": None,
                "runtime_json": runtime_envs.snapshot(conn, rb, runtime),
                "limits_json": rb.limits_json,
            },
        ).one()
        cp.notifier.notify_replicas(conn, group_topic(row.group_name))
    job = JobRecord.of(row)
    cp.notifier.wake(group_topic(job.group_name), replicas=False)
    cp.observer.on_job_status(event_of(job))
    return job, False


def _take_key(cp: ControlPlane, conn: Connection, once: Idempotency, job_id: str, now: datetime) -> JobRecord | None:
    """Own the key for `job_id` (None), or return the job an earlier request with it started."""
    params = {"key": once.key, "hash": once.digest, "job_id": job_id, "now": now, "cutoff": now - IDEMPOTENCY_TTL}
    if conn.execute(queue_sql.TAKE_KEY[cp.dialect], params).first() is not None:
        return None
    held = conn.execute(queue_sql.KEY_BY_NAME, {"key": once.key}).one()
    shown = once.key.split(":", 1)[-1]
    if held.request_hash != once.digest:
        raise Conflict(
            f"idempotency key {shown!r} was already used for a different request (job {held.job_id}); "
            "send a new key for a new job"
        )
    row = conn.execute(queue_sql.JOB_BY_ID, {"job_id": held.job_id}).first()
    if row is None:
        raise Conflict(f"idempotency key {shown!r} names job {held.job_id}, which no longer exists; send a new key")
    return JobRecord.of(row)


def purge_keys(cp: ControlPlane, now: datetime | None = None) -> int:
    """Forget idempotency keys older than 24 h."""
    now = now or utcnow()
    with cp.transaction() as conn:
        return conn.execute(queue_sql.PURGE_KEYS, {"cutoff": now - IDEMPOTENCY_TTL}).rowcount


# -- claim, re-offer (agent) -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Claimed:
    """A poll's outcome: jobs to hand out (re-offers first, then new claims) and the group's RunAs."""

    jobs: list[JobRecord]
    reoffered: int
    run_as_credential: str | None
    run_as_public_json: str | None
    limits_json: str | None = None  # the group's JobLimits (a job's own narrow them: automation/limits.py)


def unsettled(cp: ControlPlane, identity: WorkerIdentity, held: Collection[str] | None) -> bool:
    """Does the worker hold jobs its agent does not list (see `claim`)? A read, no write lock.

    A poll whose group queue is known empty claims only when this says so (`automation.waiters`).
    """
    if held is None:
        return False
    mine = set(held)
    with cp.reading() as session:
        rows = session.connection().execute(queue_sql.HELD_BY, {"holder": identity.worker_id}).all()
    return any(row.id not in mine for row in rows)


def claim(
    cp: ControlPlane,
    identity: WorkerIdentity,
    limit: int = 1,
    held: Collection[str] | None = None,
    now: datetime | None = None,
) -> Claimed:
    """Up to `limit` jobs for the worker, oldest first.

    With `held` (the jobs the polling agent process holds), this worker's jobs missing from
    it are settled first: an Activating one never reached the agent (the answer that carried it
    was lost) and is offered again, counting against `limit`, activations unchanged; a Running or
    Stopping one died with an earlier agent process: the worker-loss outcome applies at once,
    as when its lease expires. `held=None` (an agent that does not say): neither happens.
    """
    now = now or utcnow()
    lease = now + timedelta(seconds=cp.lease_seconds)
    offered: list[JobRecord] = []
    lost: list[JobRecord] = []
    claimed: list[JobRecord] = []
    run_as = None
    with cp.transaction() as conn:
        if held is not None:
            mine = set(held)
            for row in conn.execute(queue_sql.HELD_BY, {"holder": identity.worker_id}).all():
                if row.id in mine:
                    continue
                if row.status == S.ACTIVATING:
                    if len(offered) < limit:
                        again = conn.execute(
                            queue_sql.REOFFER, {"b_job_id": row.id, "holder": identity.worker_id, "b_expires": lease}
                        ).first()
                        if again is not None:
                            offered.append(JobRecord.of(again))
                    continue
                # (Stopping without a start: a stop came for a claim that never reached the agent.)
                how = "its agent restarted without this job" if row.started_at else "the claim never reached its agent"
                after = _lose(conn, row, f"worker {row.worker_name} lost: {how}", now)
                if after is not None:
                    lost.append(after)
                    _notify_lost(cp, conn, after)
        room = limit - len(offered)
        if room > 0:
            rows = conn.execute(
                queue_sql.CLAIM[cp.dialect],
                {
                    "group": identity.group,
                    "limit": room,
                    "b_worker_id": identity.worker_id,
                    "b_worker_name": identity.name,
                    "b_lease_expires_at": lease,
                    "b_now": now,
                },
            ).all()
            claimed = sorted((JobRecord.of(r) for r in rows), key=lambda j: (j.created_at, j.id))
        if offered or claimed:
            run_as = conn.execute(queue_sql.RUN_AS, {"group_id": (offered or claimed)[0].group_id}).first()
    _after_loss(cp, lost)
    for job in claimed:
        cp.observer.on_job_status(event_of(job))
        tracing.job_claimed(job.traceparent, job.id, identity.name, job.created_at, now, job.activations)
    for job in offered:
        log.info(
            "job %s re-offered to worker %s: its poll did not list it (the answer was lost)", job.id, job.worker_name
        )
    return Claimed(
        jobs=offered + claimed,
        reoffered=len(offered),
        run_as_credential=run_as.run_as_credential if run_as is not None else None,
        run_as_public_json=run_as.public_json if run_as is not None else None,
        limits_json=run_as.limits_json if run_as is not None else None,
    )


# -- lease (agent) -----------------------------------------------------------------------


def renew(
    cp: ControlPlane, identity: WorkerIdentity, job_id: str, now: datetime | None = None
) -> tuple[datetime, bool]:
    """Extend a held job's lease. -> (new expiry, stop requested)."""
    expires = (now or utcnow()) + timedelta(seconds=cp.lease_seconds)
    with cp.transaction() as conn:
        row = conn.execute(
            queue_sql.RENEW, {"b_job_id": job_id, "holder": identity.worker_id, "b_expires": expires}
        ).first()
    if row is None:
        raise Conflict(f"job {job_id} is not held by this worker (lease lost, job ended, or never claimed)")
    return expires, bool(row[0])


# -- events (agent) ----------------------------------------------------------------------


def _parse_time(value: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise BadRequest(f"stream record time {value!r} is not ISO 8601") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _started_at(reported: str | None, claimed_at: datetime, now: datetime) -> datetime:
    """The agent's start time, kept between the claim and now (its clock may be skewed)."""
    if not reported:
        return now
    return min(max(_parse_time(reported), as_utc(claimed_at)), now)


def _insert_streams(cp: ControlPlane, conn: Connection, job_id: str, batch: EventBatch) -> int:
    if not batch.records:
        return 0
    rows = [
        {"job_id": job_id, "seq": r.seq, "stream": r.stream.value, "time": _parse_time(r.time), "text": r.text}
        for r in batch.records
    ]
    return len(conn.execute(queue_sql.INSERT_STREAMS[cp.dialect], rows).all())


def _after_end(conn: Connection, job: JobRecord, batch: EventBatch) -> EventAck:
    """A batch for a job that has ended: only a retry of what was already taken is accepted."""
    if batch.records:
        seqs = sorted({r.seq for r in batch.records})
        stored = conn.execute(queue_sql.STORED_SEQS, {"job_id": job.id, "seqs": seqs}).scalar_one()
        if stored < len(seqs):
            raise Conflict(f"job {job.id} has ended ({job.status}); it takes no new stream records")
    if batch.status is not None and batch.status.status != job.status:
        reason = f": {job.status_reason}" if job.status_reason else ""
        raise Conflict(f"job {job.id} has already ended {job.status}{reason}")
    return EventAck(accepted=0, duplicates=len(batch.records), status=S(job.status))


def apply_events(
    cp: ControlPlane, identity: WorkerIdentity, job_id: str, batch: EventBatch, now: datetime | None = None
) -> EventAck:
    """Store stream records (idempotent by seq) and apply an optional status change."""
    now = now or utcnow()
    changes: dict[str, Any] = {}
    started: dict[str, Any] | None = None
    with cp.transaction() as conn:
        row = conn.execute(queue_sql.JOB_FOR_EVENTS[cp.dialect], {"job_id": job_id}).first()
        if row is None or row.worker_id != identity.worker_id:
            raise Conflict(f"job {job_id} is not held by this worker")
        job = JobRecord.of(row)
        if job.status in FINAL_STATUSES:
            return _after_end(conn, job, batch)
        inserted = _insert_streams(cp, conn, job_id, batch)
        status = job.status
        if batch.status is not None and batch.status.status != status:
            target = batch.status.status
            started_at = _started_at(batch.status.started_at, job.last_status_at, now)
            if status == S.ACTIVATING and target in FINAL_STATUSES and batch.status.started_at:
                # Start and end in one batch: record the Running it went through.
                status = S.RUNNING
                started = {"status": status, "started_at": started_at, "last_status_at": started_at}
                changes.update(started)
            if not allowed(Actor.AGENT, status, target) and not (status == S.STOPPING and target == S.RUNNING):
                raise Conflict(f"job {job_id} cannot go from {status} to {target}")
            if status == S.STOPPING and target == S.RUNNING:
                target = S.STOPPING  # a stop already requested wins over a late "Running"
            if target != status:
                changes.update(status=target, last_status_at=now)
            if target == S.RUNNING:
                changes["started_at"] = started_at
            if target in FINAL_STATUSES:
                changes.update(
                    ended_at=now,
                    lease_expires_at=None,
                    exit_code=batch.status.exit_code,
                    status_reason=batch.status.reason,
                    resources_json=batch.status.resources.model_dump_json() if batch.status.resources else None,
                )
        if changes:
            values = {f"b_{c}": changes.get(c, getattr(job, c)) for c in queue_sql.EVENT_COLUMNS}
            conn.execute(queue_sql.APPLY_EVENT, {"job_id": job_id, **values})
        if inserted or changes:
            cp.notifier.notify_replicas(conn, job_topic(job_id))
    # (From the row's mapping, not dataclasses.replace: this runs for every batch.)
    after = JobRecord(**{**row._mapping, **changes}) if changes else job
    if started is not None:
        cp.observer.on_job_status(event_of(JobRecord(**{**row._mapping, **started})))
    if batch.records:
        cp.observer.on_job_streams(event_of(after), batch.records)
    if after.status != job.status:
        cp.observer.on_job_status(event_of(after))
    if inserted or changes:
        cp.notifier.wake(job_topic(job_id), replicas=False)
    return EventAck(accepted=inserted, duplicates=len(batch.records) - inserted, status=S(after.status))


# -- stop (API) --------------------------------------------------------------------------


def stop(cp: ControlPlane, job_id: str, now: datetime | None = None) -> JobRecord:
    """New jobs stop at once; held jobs go to Stopping and the agent learns it on lease renewal."""
    now = now or utcnow()
    with cp.transaction() as conn:
        row = conn.execute(queue_sql.STOP_NEW, {"b_job_id": job_id, "b_now": now}).first()
        if row is None:
            row = conn.execute(queue_sql.STOP_HELD, {"b_job_id": job_id, "b_now": now}).first()
        changed = row is not None
        if row is None:
            row = conn.execute(queue_sql.JOB_BY_ID, {"job_id": job_id}).first()
            if row is None:
                raise NotFound(f"job {job_id} does not exist")
        else:
            cp.notifier.notify_replicas(conn, job_topic(job_id))
    job = JobRecord.of(row)
    if changed:
        cp.observer.on_job_status(event_of(job))
        cp.notifier.wake(job_topic(job.id), replicas=False)
    return job


# -- worker loss (reaper) ----------------------------------------------------------------


def loss_outcome(status: str, retry_on_worker_loss: bool, activations: int, lost: str) -> dict[str, Any]:
    """What worker loss does to a held job: re-queue, Suspended, Stopped or Failed (and why)."""
    if status == S.STOPPING:
        return {"status": S.STOPPED, "status_reason": f"stopped; {lost}"}
    if retry_on_worker_loss and activations < MAX_ACTIVATIONS:
        return {"status": S.NEW, "status_reason": f"re-queued: {lost}", "requeue": True}
    if retry_on_worker_loss:
        return {
            "status": S.SUSPENDED,
            "status_reason": f"suspended after {activations} failed activations; last: {lost}",
        }
    return {"status": S.FAILED, "status_reason": lost}


def _lose(conn: Connection, held: Row[Any], lost: str, now: datetime) -> JobRecord | None:
    """Apply the worker-loss outcome to `held` (a narrow row), unless it changed since it was read."""
    outcome = loss_outcome(held.status, held.retry_on_worker_loss, held.activations, lost)
    requeue = outcome.pop("requeue", False)
    values = {
        "b_job_id": held.id,
        "b_from": held.status,
        "b_lease": held.lease_expires_at,
        "b_status": outcome["status"],
        "b_status_reason": outcome["status_reason"],
        "b_lease_expires_at": None,
        "b_last_status_at": now,
        "b_ended_at": None if requeue else now,
    }
    if requeue:
        values.update(b_worker_id=None, b_worker_name=None)
    row = conn.execute(queue_sql.LOSE_REQUEUE if requeue else queue_sql.LOSE_END, values).first()
    return JobRecord.of(row) if row is not None else None


def _notify_lost(cp: ControlPlane, conn: Connection, job: JobRecord) -> None:
    cp.notifier.notify_replicas(conn, job_topic(job.id))
    if job.status == S.NEW:
        cp.notifier.notify_replicas(conn, group_topic(job.group_name))


def _after_loss(cp: ControlPlane, lost: list[JobRecord]) -> None:
    for job in lost:
        log.info("job %s: %s", job.id, job.status_reason)
        cp.observer.on_job_status(dataclasses.replace(event_of(job), lost=True))
        cp.notifier.wake(job_topic(job.id), replicas=False)
        if job.status == S.NEW:
            cp.notifier.wake(group_topic(job.group_name), replicas=False)


_last_purge = 0.0


def reap(cp: ControlPlane, now: datetime | None = None) -> int:
    """End or re-queue jobs whose worker stopped renewing the lease (e.g. killed -9).

    Also the store's heartbeat: it runs every second, so it reports the end of an outage, and
    during one it reports it (once) instead of raising a traceback per pass.
    """
    global _last_purge
    now = now or utcnow()
    lost: list[JobRecord] = []
    try:
        with cp.reading() as s:
            expired = s.execute(queue_sql.EXPIRED, {"now": now}).all()
        if expired:
            with cp.transaction() as conn:
                for held in expired:
                    expired_at = as_utc(held.lease_expires_at).isoformat()
                    reason = f"worker {held.worker_name} lost: its lease expired at {expired_at}"
                    after = _lose(conn, held, reason, now)
                    if after is not None:  # else renewed meanwhile, or another replica got there first
                        lost.append(after)
                        _notify_lost(cp, conn, after)
        if time.monotonic() - _last_purge > PURGE_EVERY_S:
            _last_purge = time.monotonic()
            purge_keys(cp, now)
    except Exception as exc:
        if not is_store_outage(exc):
            raise
        STORE.failed(exc)
        return 0
    STORE.ok()
    _after_loss(cp, lost)
    return len(lost)
