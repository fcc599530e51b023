"""The job queue's hot statements, built once.

Every job goes through these (create, claim, events, lease renewal). Built per call,
SQLAlchemy spent longer constructing each statement and computing its cache key than
SQLite spent running it; built once with bind parameters, a call only binds values.
They work on the tables, not through the ORM, for the same reason.
"""

from __future__ import annotations

from sqlalchemy import Insert, Update, bindparam, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite

from automation.models import Asset, Job, JobStream, Runbook, WorkerGroup
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
    select(_group.run_as_credential, _asset.public_json)
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

_JOB_BY_ID = select(_job).where(_job.id == bindparam("job_id"))
# PostgreSQL: lock the row for the batch, so a concurrent stop request waits for it, not the reverse.
JOB_FOR_EVENTS = {"postgresql": _JOB_BY_ID.with_for_update(), "sqlite": _JOB_BY_ID}

# Every column an event batch may change, set together (unchanged ones keep the value just read).
EVENT_COLUMNS = ("status", "started_at", "last_status_at", "ended_at", "lease_expires_at", "exit_code", "status_reason")
APPLY_EVENT = update(JOB).where(_job.id == bindparam("job_id")).values({c: bindparam(f"b_{c}") for c in EVENT_COLUMNS})


def _insert_streams(dialect_insert: type[Insert] | object) -> Insert:
    # Executed with one parameter set per record; RETURNING names the records that were new,
    # so a retried batch is counted as duplicates rather than inserted twice.
    stmt = dialect_insert(JobStream.__table__)  # type: ignore[operator, attr-defined]
    return stmt.on_conflict_do_nothing(index_elements=["job_id", "seq"]).returning(JobStream.__table__.c.seq)  # type: ignore[attr-defined, no-any-return]


INSERT_STREAMS = {"postgresql": _insert_streams(postgresql.insert), "sqlite": _insert_streams(sqlite.insert)}
