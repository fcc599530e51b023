"""Control-plane tables (SQLModel). Schema changes go through `automation/migrations`."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import overload

from sqlalchemy import BigInteger, Column, Index, Text, UniqueConstraint
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    return datetime.now(UTC)


@overload
def as_utc(value: datetime) -> datetime: ...
@overload
def as_utc(value: None) -> None: ...
def as_utc(value: datetime | None) -> datetime | None:
    """A stored time as an aware UTC datetime (SQLite hands back naive ones)."""
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


class Setting(SQLModel, table=True):
    """Account-wide secrets and settings (hashed registration keys, admin token hash)."""

    key: str = Field(primary_key=True, max_length=64)
    value: str = Field(sa_column=Column(Text, nullable=False))


class WorkerGroup(SQLModel, table=True):
    __tablename__ = "worker_group"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(index=True, unique=True, max_length=128)
    created_at: datetime = Field(default_factory=utcnow)
    run_as_credential: str | None = Field(default=None, max_length=128)  # RunAs: a credential asset's name
    # Its jobs' resource limits, a contract.JobLimits as JSON (migration 0006); None: none.
    limits_json: str | None = Field(default=None, sa_column=Column(Text, nullable=True))


class Worker(SQLModel, table=True):
    id: str = Field(primary_key=True, max_length=36)
    name: str = Field(max_length=128)
    group_id: int = Field(foreign_key="worker_group.id", index=True)
    credential_hash: str = Field(max_length=128)
    hostname: str = Field(default="", max_length=255)
    os_type: str = Field(default="", max_length=32)
    os_name: str = Field(default="", max_length=128)
    os_version: str = Field(default="", max_length=64)
    agent_version: str = Field(default="", max_length=32)
    registered_at: datetime = Field(default_factory=utcnow)
    last_seen_at: datetime | None = None
    # Receive time of the latest heartbeat, written by whichever replica got it (migration 0004):
    # every replica's /metrics reads liveness from here, so they all agree.
    last_heartbeat_at: datetime | None = None

    __table_args__ = (UniqueConstraint("group_id", "name", name="uq_worker_group_name"),)


class Runbook(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(index=True, unique=True, max_length=128)
    runbook_type: str = Field(max_length=16)
    description: str = Field(default="", max_length=512)
    draft_content: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    draft_updated_at: datetime | None = None
    published_content: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    published_type: str | None = Field(default=None, max_length=16)
    published_version: int = 0
    published_at: datetime | None = None
    retry_on_worker_loss: bool = False
    created_at: datetime = Field(default_factory=utcnow)
    runtime_environment: str | None = Field(default=None, max_length=128)  # its jobs' Python environment (0006)
    # Its jobs' resource limits, a contract.JobLimits as JSON, narrowing its group's (migration 0008).
    limits_json: str | None = Field(default=None, sa_column=Column(Text, nullable=True))


class RuntimeEnvironment(SQLModel, table=True):
    """A named Python environment (automation/runtime_envs.py): workers build it on first use (migration 0006)."""

    __tablename__ = "runtime_environment"
    name: str = Field(primary_key=True, max_length=128)
    python: str | None = Field(default=None, max_length=16)  # "3.11"; None: the worker's python3
    requirements: str = Field(default="", sa_column=Column(Text, nullable=False))  # requirements.txt lines
    description: str = Field(default="", max_length=512)
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class Job(SQLModel, table=True):
    id: str = Field(primary_key=True, max_length=36)
    runbook_id: int = Field(index=True)  # no FK: job history outlives a deleted runbook
    runbook_name: str = Field(max_length=128)
    runbook_version: int
    runbook_type: str = Field(max_length=16)
    content: str = Field(sa_column=Column(Text, nullable=False))
    group_id: int  # no FK: job history outlives a deleted group
    group_name: str = Field(max_length=128)
    params_json: str = Field(default="[]", sa_column=Column(Text, nullable=False))
    timeout_s: float | None = None
    retry_on_worker_loss: bool = False
    status: str = Field(default="New", max_length=16)
    status_reason: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    worker_id: str | None = Field(default=None, max_length=36)
    worker_name: str | None = Field(default=None, max_length=128)
    activations: int = 0
    stop_requested: bool = False
    exit_code: int | None = None
    lease_expires_at: datetime | None = None
    traceparent: str | None = Field(default=None, max_length=64)
    created_at: datetime = Field(default_factory=utcnow)
    started_at: datetime | None = None
    ended_at: datetime | None = None
    last_status_at: datetime = Field(default_factory=utcnow)
    # What the runbook consumed and the limits in force, a contract.JobResources as JSON (migration 0006).
    resources_json: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    # The runtime environment it runs in, as it was when the job was created: a contract.RuntimeSpec (0006).
    runtime_json: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    # Its runbook's limits as they were when the job was created; the group's apply too (0008).
    limits_json: str | None = Field(default=None, sa_column=Column(Text, nullable=True))

    __table_args__ = (
        Index("ix_job_queue", "group_id", "status", "created_at"),
        Index("ix_job_lease", "status", "lease_expires_at"),
        Index("ix_job_worker", "worker_id", "status"),  # a poll's "which of mine did it not get?" (0003)
    )


class IdempotencyKey(SQLModel, table=True):
    """One job start per key (migration 0003): POST /jobs's `Idempotency-Key`, a webhook request, a schedule run.

    ``key`` is scoped by its door ("api:KEY", "webhook:ID:KEY", "schedule:ID:TIME"); ``request_hash`` is the
    SHA-256 of what was asked, so a reused key with a different request is told apart from a retry.
    """

    __tablename__ = "idempotency_key"

    key: str = Field(primary_key=True, max_length=300)
    request_hash: str = Field(max_length=64)
    job_id: str = Field(max_length=36)
    created_at: datetime = Field(default_factory=utcnow, index=True)


class JobStream(SQLModel, table=True):
    __tablename__ = "job_stream"

    id: int | None = Field(default=None, primary_key=True)
    job_id: str = Field(foreign_key="job.id", max_length=36)
    seq: int = Field(sa_column=Column(BigInteger, nullable=False))  # (activation << 32) + n
    stream: str = Field(max_length=16)
    time: datetime
    text: str = Field(sa_column=Column(Text, nullable=False))

    __table_args__ = (UniqueConstraint("job_id", "seq", name="uq_job_stream_seq"),)


class Asset(SQLModel, table=True):
    """Variables, credentials, certificates and connections (migration 0002).

    ``public_json`` holds what admins may see (a plain variable's value, a credential's
    user name, a certificate's thumbprint and expiry, a connection's plain fields);
    ``secret`` the Fernet ciphertext of the rest (automation/crypto.py).
    """

    id: int | None = Field(default=None, primary_key=True)
    kind: str = Field(max_length=16)  # variable | credential | certificate | connection
    name: str = Field(max_length=128)
    description: str = Field(default="", max_length=512)
    encrypted: bool = False
    public_json: str = Field(default="{}", sa_column=Column(Text, nullable=False))
    secret: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)

    __table_args__ = (UniqueConstraint("kind", "name", name="uq_asset_kind_name"),)


class Schedule(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(index=True, unique=True, max_length=128)
    description: str = Field(default="", max_length=512)
    runbook_name: str = Field(max_length=128)
    run_on: str = Field(max_length=128)
    params_json: str = Field(default="[]", sa_column=Column(Text, nullable=False))
    frequency: str = Field(max_length=16)  # OneTime | Minute | Hour | Day | Week
    interval: int = 1
    start_time: datetime
    time_zone: str = Field(default="UTC", max_length=64)
    expiry_time: datetime | None = None
    enabled: bool = True
    next_run_at: datetime | None = Field(default=None, index=True)
    last_run_at: datetime | None = None
    last_job_id: str | None = Field(default=None, max_length=36)
    last_error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    created_at: datetime = Field(default_factory=utcnow)


class Webhook(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(index=True, unique=True, max_length=128)
    runbook_name: str = Field(max_length=128)
    run_on: str = Field(max_length=128)
    params_json: str = Field(default="[]", sa_column=Column(Text, nullable=False))
    token_hash: str = Field(index=True, unique=True, max_length=128)
    enabled: bool = True
    expires_at: datetime
    created_at: datetime = Field(default_factory=utcnow)
    last_used_at: datetime | None = None


class ApiToken(SQLModel, table=True):
    """A named API token with a role (automation.roles); only its SHA-256 digest is stored."""

    __tablename__ = "api_token"
    name: str = Field(primary_key=True, max_length=128)
    role: str = Field(max_length=16)
    groups_json: str | None = Field(default=None, sa_column=Column(Text, nullable=True))  # operator: these groups only
    token_hash: str = Field(max_length=64, index=True, unique=True)
    created_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime | None = None
    created_by: str = Field(default="", max_length=128)


class ArmJobName(SQLModel, table=True):
    """The name an ARM client gave a job in `PUT .../jobs/{jobName}` (migration 0007; automation/arm).

    In the store, not in memory: a script that started a job on one replica reads it by name on
    another, or after a restart. Jobs started through other doors are named by their id.
    """

    __tablename__ = "arm_job_name"
    name: str = Field(primary_key=True, max_length=128)
    job_id: str = Field(max_length=36, index=True, unique=True)  # no FK: as job_stream's readers, history only
    request_hash: str = Field(max_length=64)  # what was asked: a repeated PUT is told from a reused name
    created_at: datetime = Field(default_factory=utcnow)


class ArmSchedule(SQLModel, table=True):
    """An ARM schedule (`PUT .../schedules/{name}`; migration 0007; automation/arm).

    On Azure a schedule exists before a job schedule links it to a runbook; an Outpost schedule
    always names its runbook. The definition waits here until `PUT jobSchedules/{id}` makes the
    Outpost schedule of the same name, and records the job schedule's id, which the client chose.
    """

    __tablename__ = "arm_schedule"
    name: str = Field(primary_key=True, max_length=128)
    definition_json: str = Field(sa_column=Column(Text, nullable=False))
    job_schedule_id: str | None = Field(default=None, max_length=36, index=True, unique=True)
    created_at: datetime = Field(default_factory=utcnow)
