"""The wire contract between agent, CLI and service.

Paths, status and stream names, and the JSON shapes of agent calls. The agent and
the CLI import only this (never `automation` or `telemetry`), so keeping it small
and explicit is what keeps the two sides in step.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field

API = "/api/v1"

# Public (no auth)
HEALTH = f"{API}/health"
ENDPOINTS = f"{API}/endpoints"
# Worker-authenticated (bearer = worker credential)
AGENT_REGISTER = f"{API}/agent/register"  # auth: registration key in the body
AGENT_SELF = f"{API}/agent/self"  # GET: authenticated no-op; DELETE: deregister
WHOAMI = f"{API}/whoami"  # GET with an API token: its name, role and groups
AGENT_POLL = f"{API}/agent/poll"
AGENT_LEASE = f"{API}/agent/jobs/{{job_id}}/lease"
AGENT_EVENTS = f"{API}/agent/events"  # event batches of one or more held jobs
AGENT_HEARTBEAT = f"{API}/agent/heartbeat"
AGENT_DIAGNOSTICS = f"{API}/agent/diagnostics"
# A held job's assets: GET reads one; PUT sets a variable (the runbook's set_automation_variable).
AGENT_ASSET = f"{API}/agent/jobs/{{job_id}}/assets/{{plural}}/{{name}}"
# Public: the token in the URL is the secret (POST /webhooks?token=... or /webhooks/{token}).
WEBHOOKS = "/webhooks"

# Response header every Outpost answer carries; `diagnose` uses it to tell Outpost
# from a proxy's error page.
SERVICE_HEADER = "X-Outpost-Version"
# Request header of `POST /api/v1/jobs`: a repeat with the same key returns the job the first
# call created (a retry after a lost answer never starts a second job).
IDEMPOTENCY_HEADER = "Idempotency-Key"


class JobStatus(StrEnum):
    NEW = "New"
    ACTIVATING = "Activating"
    RUNNING = "Running"
    COMPLETED = "Completed"
    FAILED = "Failed"
    STOPPING = "Stopping"
    STOPPED = "Stopped"
    SUSPENDED = "Suspended"


FINAL_STATUSES = frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.STOPPED, JobStatus.SUSPENDED})


class StreamType(StrEnum):
    OUTPUT = "Output"
    ERROR = "Error"
    WARNING = "Warning"
    VERBOSE = "Verbose"
    DEBUG = "Debug"
    PROGRESS = "Progress"


class RunbookType(StrEnum):
    PYTHON3 = "python3"
    BASH = "bash"
    PWSH = "pwsh"


# The one rule for names (runbooks, groups, workers, assets, schedules, webhooks, tokens).
# \Z, not $: `$` also matches before a trailing newline, so "linux\n" passed as a name
# that looked identical to "linux" in every listing.
PARAM_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,63}\Z")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}\Z")


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


MAX_HELD_PER_POLL = 1024


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


MAX_JOBS_PER_EVENTS_POST = 64
# One events request's body at most: a bigger one is refused with 413 before it is read (a
# 7 MiB batch held the SQLite server's loop for 2 s). Agents split what they send under it;
# one stream record (32 Ki characters, agent/classify.py) always fits.
MAX_EVENTS_POST_BYTES = 1024 * 1024


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


def error_detail(payload: Any) -> str:
    """Best readable message from an error body (FastAPI ``detail`` or plain text)."""
    if isinstance(payload, dict):
        detail = payload.get("detail", payload)
        if isinstance(detail, list):  # pydantic validation errors
            parts = []
            for item in detail:
                loc = ".".join(str(p) for p in item.get("loc", []) if p != "body")
                parts.append(f"{loc}: {item.get('msg')}" if loc else str(item.get("msg")))
            return "; ".join(parts)
        return str(detail)
    return str(payload)
