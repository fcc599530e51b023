"""The job lifecycle's statements, built once (executed only by automation/lifecycle.py).

Every job goes through these (create, claim, events, lease renewal). Built per call,
SQLAlchemy spent longer constructing each statement and computing its cache key than
SQLite spent running it; built once with bind parameters, a call only binds values.
They work on the tables, not through the ORM, for the same reason.
"""

from __future__ import annotations

from sqlalchemy import Insert, Update, bindparam, delete, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite

from automation.models import Asset, IdempotencyKey, Job, JobStream, Runbook, WorkerGroup
from outpost.contract import JobStatus

JOB = Job.__table__  # type: ignore[attr-defined]
_job = JOB.c
_group = WorkerGroup.__table__.c  # type: ignore[attr-defined]
_runbook = Runbook.__table__.c  # type: ignore[attr-defined]
_asset = Asset.__table__.c  # type: ignore[attr-defined]

# -- create ------------------------------------------------------------------------------

RUNBOOK_BY_NAME = select(_runbook).where(_runbook.name == bindparam("name"))
GROUP_BY_NAME = select(_group.id, _group.name).where(_group.name == bindparam("name"))
INSERT_JOB = insert(JOB).returning(*_job)  # values: a dict of every column
JOB_BY_ID = select(_job).where(_job.id == bindparam("job_id"))

# -- idempotency keys --------------------------------------------------------------------

KEY = IdempotencyKey.__table__  # type: ignore[attr-defined]
_key = KEY.c


def _take_key(dialect_insert: type[Insert] | object) -> Insert:
    # Insert the key, or take over an expired one; RETURNING says whether this transaction owns it.
    # On PostgreSQL a concurrent insert of the same key waits for the first transaction to end, then
    # finds the row (committed: not ours) or none (rolled back: ours), so two replicas start one job.
    stmt = dialect_insert(KEY).values(  # type: ignore[operator]
        key=bindparam("key"), request_hash=bindparam("hash"), job_id=bindparam("job_id"), created_at=bindparam("now")
    )
    return stmt.on_conflict_do_update(  # type: ignore[no-any-return]
        index_elements=[_key.key],
        set_={
            "request_hash": stmt.excluded.request_hash,
            "job_id": stmt.excluded.job_id,
            "created_at": stmt.excluded.created_at,
        },
        where=_key.created_at < bindparam("cutoff"),
    ).returning(_key.key)


TAKE_KEY = {"postgresql": _take_key(postgresql.insert), "sqlite": _take_key(sqlite.insert)}
KEY_BY_NAME = select(_key.request_hash, _key.job_id, _key.created_at).where(_key.key == bindparam("key"))
PURGE_KEYS = delete(KEY).where(_key.created_at < bindparam("cutoff"))


# -- claim -------------------------------------------------------------------------------


def _claim(skip_locked: bool) -> Update:
    # The group id by name inside the statement: one round trip per poll, and the queue index still applies.
    group_id = select(_group.id).where(_group.name == bindparam("group")).scalar_subquery()
    oldest = (
        select(_job.id)
        .where(_job.group_id == group_id, _job.status == JobStatus.NEW)
        .order_by(_job.created_at, _job.id)
        .limit(bindparam("limit"))
    )
    if skip_locked:
        # PostgreSQL: concurrent claimers skip each other's rows instead of waiting on them.
        oldest = oldest.with_for_update(skip_locked=True)
    # MATERIALIZED: the pick runs once. As a plain `id IN (subquery)`, PostgreSQL may run a
    # LIMIT ... SKIP LOCKED subquery again while rechecking rows and hand out more than `limit`
    # jobs (tests/control/test_end_to_end.py::test_concurrent_polls_never_get_more_than_they_ask).
    picked = oldest.cte("picked").prefix_with("MATERIALIZED")
    return (
        update(JOB)
        .where(_job.id.in_(select(picked.c.id)), _job.status == JobStatus.NEW)
        .values(
            status=JobStatus.ACTIVATING,
            worker_id=bindparam("b_worker_id"),
            worker_name=bindparam("b_worker_name"),
            activations=_job.activations + 1,
            lease_expires_at=bindparam("b_lease_expires_at"),
            last_status_at=bindparam("b_now"),
            status_reason=None,
        )
        .returning(*_job)
    )


CLAIM = {"postgresql": _claim(skip_locked=True), "sqlite": _claim(skip_locked=False)}

# A group's RunAs account: its credential asset's name and public part (the user name).
RUN_AS = (
    select(_group.run_as_credential, _asset.public_json, _group.limits_json)
    .select_from(
        WorkerGroup.__table__.outerjoin(  # type: ignore[attr-defined]
            Asset.__table__,  # type: ignore[attr-defined]
            (_asset.kind == "credential") & (_asset.name == _group.run_as_credential),
        )
    )
    .where(_group.id == bindparam("group_id"))
)

# -- lease and events --------------------------------------------------------------------

HELD = (JobStatus.ACTIVATING, JobStatus.RUNNING, JobStatus.STOPPING)

RENEW = (
    update(JOB)
    .where(_job.id == bindparam("b_job_id"), _job.worker_id == bindparam("holder"), _job.status.in_(HELD))
    .values(lease_expires_at=bindparam("b_expires"))
    .returning(_job.stop_requested)
)

# PostgreSQL: lock the row for the batch, so a concurrent stop request waits for it, not the reverse.
JOB_FOR_EVENTS = {"postgresql": JOB_BY_ID.with_for_update(), "sqlite": JOB_BY_ID}

# Every column an event batch may change, set together (unchanged ones keep the value just read).
EVENT_COLUMNS = (
    "status",
    "started_at",
    "last_status_at",
    "ended_at",
    "lease_expires_at",
    "exit_code",
    "status_reason",
    "resources_json",
)
APPLY_EVENT = update(JOB).where(_job.id == bindparam("job_id")).values({c: bindparam(f"b_{c}") for c in EVENT_COLUMNS})


def _insert_streams(dialect_insert: type[Insert] | object) -> Insert:
    # Executed with one parameter set per record; RETURNING names the records that were new,
    # so a retried batch is counted as duplicates rather than inserted twice.
    stmt = dialect_insert(JobStream.__table__)  # type: ignore[operator, attr-defined]
    return stmt.on_conflict_do_nothing(index_elements=["job_id", "seq"]).returning(JobStream.__table__.c.seq)  # type: ignore[attr-defined, no-any-return]


INSERT_STREAMS = {"postgresql": _insert_streams(postgresql.insert), "sqlite": _insert_streams(sqlite.insert)}

_stream = JobStream.__table__.c  # type: ignore[attr-defined]
# After a job ended: how many of a batch's seqs are already stored (a retried final batch: all of them).
STORED_SEQS = (
    select(func.count())
    .select_from(JobStream.__table__)  # type: ignore[attr-defined]
    .where(_stream.job_id == bindparam("job_id"), _stream.seq.in_(bindparam("seqs", expanding=True)))
)

# -- re-offer and worker loss ------------------------------------------------------------

# The jobs a worker holds, narrow: a poll that lists what the agent holds compares the two.
HELD_BY = (
    select(
        _job.id,
        _job.status,
        _job.lease_expires_at,
        _job.retry_on_worker_loss,
        _job.activations,
        _job.worker_name,
        _job.started_at,
    )
    .where(_job.worker_id == bindparam("holder"), _job.status.in_(HELD))
    .order_by(_job.created_at, _job.id)
)

# A claimed job the agent never got: offered again with a fresh lease; activations unchanged.
REOFFER = (
    update(JOB)
    .where(_job.id == bindparam("b_job_id"), _job.worker_id == bindparam("holder"), _job.status == JobStatus.ACTIVATING)
    .values(lease_expires_at=bindparam("b_expires"))
    .returning(*_job)
)

# Expired leases, narrow (the reaper's pass).
EXPIRED = select(
    _job.id, _job.status, _job.lease_expires_at, _job.retry_on_worker_loss, _job.activations, _job.worker_name
).where(_job.status.in_(HELD), _job.lease_expires_at < bindparam("now"))

# The worker-loss outcome, guarded by what was read: a renewal or another replica in between wins.
_LOSS_GUARD = (
    _job.id == bindparam("b_job_id"),
    _job.status == bindparam("b_from"),
    _job.lease_expires_at.is_not_distinct_from(bindparam("b_lease")),
)
_LOSS_END = ("status", "lease_expires_at", "ended_at", "status_reason", "last_status_at")
# Ended (Failed, Suspended, Stopped): the lost worker stays named on the job.
LOSE_END = update(JOB).where(*_LOSS_GUARD).values({c: bindparam(f"b_{c}") for c in _LOSS_END}).returning(*_job)
# Re-queued: back to New, held by no one.
LOSE_REQUEUE = (
    update(JOB)
    .where(*_LOSS_GUARD)
    .values({c: bindparam(f"b_{c}") for c in (*_LOSS_END, "worker_id", "worker_name")})
    .returning(*_job)
)

# -- stop ----------------------------------------------------------------------------------

STOP_NEW = (
    update(JOB)
    .where(_job.id == bindparam("b_job_id"), _job.status == JobStatus.NEW)
    .values(
        status=JobStatus.STOPPED,
        status_reason="stopped before it started",
        ended_at=bindparam("b_now"),
        last_status_at=bindparam("b_now"),
    )
    .returning(*_job)
)
STOP_HELD = (
    update(JOB)
    .where(_job.id == bindparam("b_job_id"), _job.status.in_([JobStatus.ACTIVATING, JobStatus.RUNNING]))
    .values(
        status=JobStatus.STOPPING,
        stop_requested=True,
        status_reason="stop requested",
        last_status_at=bindparam("b_now"),
    )
    .returning(*_job)
)
