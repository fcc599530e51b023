"""How the control plane tells the telemetry collector what happened.

`automation` never imports `telemetry`; the server process passes an object that
satisfies `ControlPlaneObserver` into the control plane (see `automation.app`).
`NullObserver` is what runs when telemetry is switched off.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from outpost.contract import StreamRecord


@dataclass(frozen=True)
class WorkerIdentity:
    """The caller of a worker-authenticated endpoint."""

    worker_id: str
    name: str
    group: str


@dataclass(frozen=True)
class JobEvent:
    """A job's status change, with what a JobLogs row needs."""

    job_id: str
    runbook: str
    group: str
    worker: str | None  # worker name, None while queued
    status: str  # a contract.JobStatus value
    time: datetime  # UTC
    description: str | None = None
    created_at: datetime | None = None
    started_at: datetime | None = None  # when it became Running
    ended_at: datetime | None = None
    resources: dict[str, Any] | None = None  # a final job's contract.JobResources
    lost: bool = False  # the change is the worker-loss outcome (automation.lifecycle)


@dataclass(frozen=True)
class GroupSnapshot:
    """Per-group queue and fleet facts, read from the control-plane store."""

    group: str
    queue_depth: int
    oldest_queued_age_s: float
    workers: dict[str, int] = field(default_factory=dict)  # registered worker names -> 1
    # Worker name -> last heartbeat (unix s, as received by whichever replica) from the shared store;
    # None when the store does not keep liveness (then the receiving process's own memory is used).
    heartbeats: dict[str, float | None] | None = None


class ControlPlaneObserver(Protocol):
    def on_job_status(self, event: JobEvent) -> None: ...

    def on_job_streams(self, event: JobEvent, records: Sequence[StreamRecord]) -> None: ...

    def on_poll(self, worker: WorkerIdentity, got_job: bool) -> None: ...

    def on_worker_removed(self, name: str, group: str) -> None: ...

    def on_audit(self, operation: str, target: str, caller: str, result: str) -> None: ...


# Telemetry calls this to read queue depth and group membership at scrape time.
SnapshotProvider = Callable[[], list[GroupSnapshot]]


class NullObserver:
    def on_job_status(self, event: JobEvent) -> None:
        pass

    def on_job_streams(self, event: JobEvent, records: Sequence[StreamRecord]) -> None:
        pass

    def on_poll(self, worker: WorkerIdentity, got_job: bool) -> None:
        pass

    def on_worker_removed(self, name: str, group: str) -> None:
        pass

    def on_audit(self, operation: str, target: str, caller: str, result: str) -> None:
        pass
