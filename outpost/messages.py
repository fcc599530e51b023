"""The JSON shapes of the agent calls (outpost/contract.py names them; import them from there)."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, BeforeValidator, Field, Strict, StrictBool, StringConstraints

from outpost.contract import (
    MAX_HELD_PER_POLL,
    MAX_JOBS_PER_EVENTS_POST,
    NAME_PATTERN,
    PARAM_NAME_OR_POSITION,
    JobStatus,
    RunbookType,
    StreamType,
)

# A name of a runbook, group, worker, asset, schedule, webhook, token or runtime environment: the model
# says it, so the OpenAPI document shows the rule and a bad name is refused before a route runs.
Name = Annotated[str, StringConstraints(pattern=NAME_PATTERN)]
ParamName = Annotated[str, StringConstraints(pattern=PARAM_NAME_OR_POSITION)]


def _json_number(value: object) -> object:
    if isinstance(value, bool | str):
        raise ValueError("must be a JSON number")
    return value


# JSON's true is not 1 and "5" is not 5: request fields take the JSON type they publish, no coercion.
StrictFloat = Annotated[float, Strict()]  # an integer is still a number
JSON_NUMBER = BeforeValidator(_json_number)
JsonInt = Annotated[int, JSON_NUMBER]  # 5 or 5.0 (JSON Schema's integer), never true or "5"
NoNul = Annotated[str, StringConstraints(pattern=r"^[^\x00]*$")]  # argv strings cannot hold a NUL


class JobParam(BaseModel):
    """One `--param`: named (``k=v``) or positional (``VALUE``)."""

    name: str | None = None
    value: str


class JobParamBody(JobParam):
    """A `JobParam` in a request (POST /jobs, a schedule, a webhook), with the rules automation/jobs.py applies.

    JobParam itself stays loose: other doors (ARM) build it from their own input and refuse bad
    parameters with their own error shape (jobs.validate_params)."""

    name: ParamName | None = None
    value: NoNul


class RegisterRequest(BaseModel):
    key: str
    group: str
    name: str
    hostname: str = ""
    os_type: str = "Linux"
    os_name: str = ""
    os_version: str = ""
    agent_version: str = ""
    force: StrictBool = False


class RegisterResponse(BaseModel):
    worker_id: str
    name: str
    group: str
    credential: str


class JobLimits(BaseModel):
    """A job's resource limits (a worker group's, see automation/limits.py); None: not limited."""

    # Bounds ahead of the number check and inside the `| None`, or pydantic publishes them as "ge"/"le".
    memory_mb: Annotated[int, Field(ge=8, le=16 * 1024 * 1024), JSON_NUMBER] | None = None
    cpu_percent: Annotated[StrictFloat, Field(gt=0, le=100 * 1024)] | None = None  # of one CPU: 200 = two CPUs
    max_processes: Annotated[int, Field(ge=1, le=4 * 1024 * 1024), JSON_NUMBER] | None = None

    def is_empty(self) -> bool:
        return self.memory_mb is None and self.cpu_percent is None and self.max_processes is None


class JobResources(BaseModel):
    """What a job's runbook consumed, as its worker measured it (agent/resources.py), and the limits in force."""

    wall_s: float
    cpu_user_s: float
    cpu_system_s: float
    peak_rss_bytes: int  # the largest resident set of the runbook or a descendant it waited for
    exit_signal: int | None = None  # the signal that ended the runbook process
    measured_by: str = "rusage"  # rusage | cgroup v1
    memory_peak_bytes: int | None = None  # the job cgroup's peak (every process, page cache included)
    cpu_throttled_s: float | None = None  # time held back by the CPU quota
    oom_killed: bool = False  # killed by the kernel at the memory limit
    limits: JobLimits | None = None
    enforced_by: str | None = None  # cgroup v1 | rlimit


class RuntimeSpec(BaseModel):
    """A job's runtime environment, as it was when the job was created (automation/runtime_envs.py)."""

    name: str
    python: str | None = None  # "3.11"; None: the worker's python3
    requirements: list[str] = Field(default_factory=list)  # requirements.txt lines, no pip options


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
    limits: JobLimits | None = None  # its group's resource limits
    runtime: RuntimeSpec | None = None  # the Python environment it runs in (None: the worker's python3)


class PollRequest(BaseModel):
    """A poll's body: the jobs this agent process holds (starting or running).

    A job the service handed to this worker that is missing here never reached it (the
    poll's answer was lost) or died with an earlier agent process on the same state
    directory: the service offers it again or treats the worker as lost for it at once,
    instead of waiting out a lease. `held` omitted (older agents): nothing is re-offered.

    `settle: false` says the agent knows no answer was lost since its last poll (that poll was
    answered, 200 or 204, by this agent process): the service then skips the comparison,
    which saves a read on every re-poll of a parked fleet. Omitted: the service compares.
    """

    held: list[str] | None = Field(default=None, max_length=MAX_HELD_PER_POLL)
    settle: StrictBool = True


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
    resources: JobResources | None = None  # with a final status: what the runbook consumed


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
