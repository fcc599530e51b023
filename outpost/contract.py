"""The wire contract between agent, CLI and service.

Paths, status and stream names, and the JSON shapes of agent calls. The agent and
the CLI import only this (never `automation` or `telemetry`), so keeping it small
and explicit is what keeps the two sides in step.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import TYPE_CHECKING, Any

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
# The *_PATTERN strings are what the OpenAPI models publish (JSON Schema and pydantic's regex engine:
# `$` is the end of the text there); the *_RE are the same rules for Python's re.
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"
PARAM_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$"
JOB_ID_PATTERN = r"^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$"  # a UUID
# A parameter's name, or Azure's positional `[PARAMETER n]` (automation/jobs.py turns those into positions).
PARAM_NAME_OR_POSITION = "^(?:" + PARAM_NAME_PATTERN[1:-1] + r"|\[[Pp][Aa][Rr][Aa][Mm][Ee][Tt][Ee][Rr] [0-9]{1,6}\])$"
PARAM_NAME_RE = re.compile(PARAM_NAME_PATTERN[:-1] + r"\Z")
NAME_RE = re.compile(NAME_PATTERN[:-1] + r"\Z")
# What a user reads when a value does not match one of the patterns (automation/middleware.py);
# a module with patterns of its own adds them (automation/runtime_envs.py).
PATTERN_HINTS = {
    NAME_PATTERN: "use 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit",
    PARAM_NAME_OR_POSITION: "start with a letter or '_', then up to 63 letters, digits, '_' or '-' (or [PARAMETER n])",
    JOB_ID_PATTERN: "a job id is a UUID",
}


MAX_HELD_PER_POLL = 1024
MAX_JOBS_PER_EVENTS_POST = 64
# One events request's body at most: a bigger one is refused with 413 before it is read (a
# 7 MiB batch held the SQLite server's loop for 2 s). Agents split what they send under it;
# one stream record (32 Ki characters, agent/classify.py) always fits.
MAX_EVENTS_POST_BYTES = 1024 * 1024

# The JSON shapes (pydantic models) live in outpost/messages.py and load on first use, so the
# CLI, which needs only the names above, never imports pydantic (a tenth of a second).
_MESSAGES = frozenset(
    {
        "JobParam",
        "RegisterRequest",
        "RegisterResponse",
        "JobAssignment",
        "PollRequest",
        "PollResponse",
        "LeaseResponse",
        "StreamRecord",
        "StatusEvent",
        "EventBatch",
        "JobEvents",
        "EventsPost",
        "EventAck",
        "EventsResult",
        "EventsAnswer",
        "JobLimits",
        "JobResources",
        "RuntimeSpec",
    }
)

if TYPE_CHECKING:  # what type checkers see of the lazy names
    from outpost.messages import (  # noqa: F401
        EventAck,
        EventBatch,
        EventsAnswer,
        EventsPost,
        EventsResult,
        JobAssignment,
        JobEvents,
        JobLimits,
        JobParam,
        JobResources,
        LeaseResponse,
        PollRequest,
        PollResponse,
        RegisterRequest,
        RegisterResponse,
        RuntimeSpec,
        StatusEvent,
        StreamRecord,
    )


def __getattr__(name: str) -> Any:
    if name in _MESSAGES:
        from outpost import messages

        return getattr(messages, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
