"""The JSON shapes of the agent calls (outpost/contract.py names them; import them from there)."""

from __future__ import annotations

from pydantic import BaseModel, Field

from outpost.contract import MAX_HELD_PER_POLL, MAX_JOBS_PER_EVENTS_POST, JobStatus, RunbookType, StreamType


class JobParam(BaseModel):
    """One `--param`: named (``k=v``) or positional (``VALUE``)."""

    name: str | None = None
    value: str


class RegisterRequest(BaseModel):
    key: str
    group: str
    name: str
    hostname: str = ""
    os_type: str = "Linux"
    os_name: str = ""
    os_version: str = ""
    agent_version: str = ""
    force: bool = False


class RegisterResponse(BaseModel):
    worker_id: str
    name: str
    group: str
    credential: str


class JobAssignment(BaseModel):
    """What a poll answers with: everything the agent needs to run the job."""

    job_id: str
    runbook: str
    runbook_type: RunbookType
    content: str
    params: list[JobParam] = Field(default_factory=list)
    timeout_s: float | None = None
    lease_seconds: float
    activation: int = 1
    traceparent: str | None = None
    run_as: str | None = None  # RunAs: the local user the job runs as (its group's credential asset)
    run_as_credential: str | None = None  # that asset's name, for messages


class PollRequest(BaseModel):
    """A poll's body: the jobs this agent process holds (starting or running).

    A job the service handed to this worker that is missing here never reached it (the
    poll's answer was lost) or died with an earlier agent process on the same state
    directory: the service offers it again or treats the worker as lost for it at once,
    instead of waiting out a lease. `held` omitted (older agents): nothing is re-offered.
    """

    held: list[str] | None = Field(default=None, max_length=MAX_HELD_PER_POLL)


class PollResponse(BaseModel):
    """A poll's answer: up to `max` jobs (the worker's free slots), oldest first; 204 when none came."""

    jobs: list[JobAssignment]


class LeaseResponse(BaseModel):
    lease_expires_at: str
    actions: list[str] = Field(default_factory=list)  # "stop"


class StreamRecord(BaseModel):
    seq: int = Field(ge=0)
    stream: StreamType
    time: str
    text: str


class StatusEvent(BaseModel):
    status: JobStatus
    reason: str | None = None
    exit_code: int | None = None
    # When the runbook process started (agent clock). A job that ends within one batch
    # window sends its end with this instead of a separate Running: one request, not two.
    started_at: str | None = None


class EventBatch(BaseModel):
    """Stream records (idempotent by ``seq``) and an optional status change."""

    records: list[StreamRecord] = Field(default_factory=list)
    status: StatusEvent | None = None


class JobEvents(EventBatch):
    job_id: str


class EventsPost(BaseModel):
    """The event batches of every job whose batch was ready at once: one request, not one per job.

    Each batch is applied on its own; one refused batch (a job no longer held) does not
    refuse the others, so the answer has one result per batch, in order.
    """

    batches: list[JobEvents] = Field(min_length=1, max_length=MAX_JOBS_PER_EVENTS_POST)


class EventAck(BaseModel):
    accepted: int
    duplicates: int
    status: JobStatus


class EventsResult(BaseModel):
    """One batch's outcome: its ack, or the HTTP status and message it would have got on its own."""

    job_id: str
    ack: EventAck | None = None
    error_status: int | None = None
    error: str | None = None


class EventsAnswer(BaseModel):
    results: list[EventsResult]
