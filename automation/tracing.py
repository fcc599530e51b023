"""One trace per job (documented in README "Traces").

- `job create` (root, kind Server): the API call that queued the job; its context is
  stored with the job as a W3C `traceparent` and handed to the worker with the job.
- `job queued` (child of create, kind Consumer): spans created -> claimed, so the
  queue wait is visible on the trace; attributes name the worker that claimed it.
- `job run` (agent, child of create): the run on the worker; the runbook process gets
  its context as TRACEPARENT, so spans the runbook emits join the same trace.

Spans go to the TracerProvider given to `use()` (the server passes one that writes into
the collector); until then this is all no-op. No global provider is installed, so
libraries that trace whatever is global (FastAPI's native telemetry would add spans
to every poll) stay quiet.
"""

from __future__ import annotations

from datetime import datetime

from opentelemetry import trace
from opentelemetry.trace import SpanKind
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

_tracer: trace.Tracer = trace.NoOpTracer()


def use(provider: trace.TracerProvider) -> None:
    global _tracer
    _tracer = provider.get_tracer("outpost.control-plane")


_propagator = TraceContextTextMapPropagator()


def _ns(t: datetime) -> int:
    return int(t.timestamp() * 1e9)


def job_created(job_id: str, runbook: str, group: str, parent: str | None = None) -> str | None:
    """Record the `job create` span (under the caller's trace, if it sent one); return its traceparent."""
    ctx = _propagator.extract({"traceparent": parent}) if parent else None
    with _tracer.start_as_current_span(
        "job create",
        context=ctx,
        kind=SpanKind.SERVER,
        attributes={"outpost.job.id": job_id, "outpost.runbook": runbook, "outpost.group": group},
    ):
        carrier: dict[str, str] = {}
        _propagator.inject(carrier)
    return carrier.get("traceparent")


def job_claimed(
    traceparent: str | None, job_id: str, worker: str, created_at: datetime, claimed_at: datetime, activation: int
) -> None:
    if not traceparent:
        return
    ctx = _propagator.extract({"traceparent": traceparent})
    span = _tracer.start_span(
        "job queued",
        context=ctx,
        kind=SpanKind.CONSUMER,
        start_time=_ns(created_at),
        attributes={"outpost.job.id": job_id, "outpost.worker": worker, "outpost.activation": activation},
    )
    span.end(end_time=_ns(claimed_at))
