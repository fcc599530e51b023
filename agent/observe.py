"""The agent's side of a job's trace, and its job metrics (exported over OTLP).

`job run` is a child of the control plane's `job create` span (its context arrives
with the job as `traceparent`); the runbook process gets `job run`'s context as
TRACEPARENT. With no tracer configured the OpenTelemetry API is a no-op and the
runbook still gets the job's own traceparent.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from outpost.contract import JobAssignment, JobResources, JobStatus

_propagator = TraceContextTextMapPropagator()


class JobMetrics:
    """`outpost.agent.jobs` (counter), `outpost.agent.job.duration`, `.cpu` (s) and `.peak_rss` (By) histograms,
    per runbook and status."""

    def __init__(self, meter_provider: Any, group: str) -> None:
        meter = meter_provider.get_meter("outpost.agent")
        self.group = group
        self.jobs = meter.create_counter("outpost.agent.jobs", unit="{job}", description="Jobs run by this worker")
        self.duration = meter.create_histogram(
            "outpost.agent.job.duration", unit="s", description="Runbook process run time on this worker"
        )
        self.cpu = meter.create_histogram(
            "outpost.agent.job.cpu", unit="s", description="CPU time (user + system) of a job's runbook processes"
        )
        self.peak_rss = meter.create_histogram(
            "outpost.agent.job.peak_rss", unit="By", description="Peak resident memory of a job's largest process"
        )

    def record(
        self, job: JobAssignment, status: JobStatus, seconds: float, resources: JobResources | None = None
    ) -> None:
        attrs = {"runbook": job.runbook, "status": status.value, "group": self.group}
        self.jobs.add(1, attrs)
        self.duration.record(seconds, attrs)
        if resources is not None:
            self.cpu.record(resources.cpu_user_s + resources.cpu_system_s, attrs)
            self.peak_rss.record(resources.peak_rss_bytes, attrs)


@contextmanager
def job_span(tracer: Any, job: JobAssignment, worker: str) -> Iterator[Any]:
    tracer = tracer or trace.NoOpTracer()
    parent = _propagator.extract({"traceparent": job.traceparent}) if job.traceparent else None
    attrs = {
        "outpost.job.id": job.job_id,
        "outpost.runbook": job.runbook,
        "outpost.worker": worker,
        "outpost.activation": job.activation,
    }
    with tracer.start_as_current_span("job run", context=parent, kind=SpanKind.CONSUMER, attributes=attrs) as span:
        yield span


def finish_span(span: Any, status: JobStatus, reason: str | None) -> None:
    span.set_attribute("outpost.job.status", status.value)
    if status != JobStatus.COMPLETED:
        span.set_status(Status(StatusCode.ERROR, reason or status.value))


def current_traceparent(fallback: str | None) -> str | None:
    """The traceparent of the current span (`job run`), or the job's own when not tracing."""
    carrier: dict[str, str] = {}
    _propagator.inject(carrier)
    return carrier.get("traceparent") or fallback
