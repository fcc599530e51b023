"""Build Log-Analytics rows from what the control plane and agents report.

Shapes follow what Azure Automation sends to Log Analytics: one `JobLogs` row per
status change and one `JobStreams` row per stream record, in `AzureDiagnostics`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from outpost.contract import StreamRecord
from outpost.observer import JobEvent
from telemetry.store import HEARTBEAT_COLUMNS, TABLES, to_naive_utc, utcnow

# The Azure resource the rows claim to come from: one self-hosted "automation account".
ACCOUNT = "OUTPOST"
SUBSCRIPTION = "00000000-0000-0000-0000-000000000000"
RESOURCE_GROUP = "OUTPOST"
RESOURCE_ID = (
    f"/SUBSCRIPTIONS/{SUBSCRIPTION}/RESOURCEGROUPS/{RESOURCE_GROUP}"
    f"/PROVIDERS/MICROSOFT.AUTOMATION/AUTOMATIONACCOUNTS/{ACCOUNT}"
)

# Job status -> JobLogs ResultType as Azure writes it (Running is logged as "Started").
RESULT_TYPES = {"Running": "Started"}

DIAGNOSE_STATUSES = ("pass", "warn", "fail", "skip")

# Numbers an agent reports about its capacity and load, checked as numbers.
CAPACITY_COLUMNS = frozenset(
    {"SlotsTotal_d", "SlotsBusy_d", "LoadAverage1m_d", "CpuCount_d", "AgentCpuQuotaPercent_d", "AgentMemoryLimitMB_d"}
)

# What an agent may send (the receive time is the server's to set).
_HEARTBEAT_NAMES = frozenset(c for c, _ in HEARTBEAT_COLUMNS if not c.startswith("_Time"))


def _account_columns() -> dict[str, Any]:
    return {
        "ResourceId": RESOURCE_ID,
        "_ResourceId": RESOURCE_ID.lower(),
        "Resource": ACCOUNT,
        "ResourceGroup": RESOURCE_GROUP,
        "SubscriptionId": SUBSCRIPTION,
        "OperationName": "Job",
    }


def joblog_row(event: JobEvent) -> dict[str, Any]:
    status = str(event.status)
    return {
        **_account_columns(),
        "TimeGenerated": to_naive_utc(event.time),
        "Category": "JobLogs",
        "ResultType": RESULT_TYPES.get(status, status),
        "ResultDescription": event.description or f"Job is {status}",
        "CorrelationId": event.job_id,
        "JobId_g": event.job_id,
        "RunbookName_s": event.runbook,
        "RunOn_s": event.group,
        "HybridWorker_s": event.worker,
        "Level": "Error" if status in ("Failed", "Suspended") else "Informational",
        "Caller_s": "Outpost",
        **_resource_columns(event.resources),
    }


def _resource_columns(res: Mapping[str, Any] | None) -> dict[str, Any]:
    """A final job's resources (contract.JobResources) as JobLogs columns (docs/telemetry.md)."""
    if not res:
        return {}
    limits = res.get("limits") or {}
    values = {
        "WallSeconds_d": res.get("wall_s"),
        "CpuUserSeconds_d": res.get("cpu_user_s"),
        "CpuSystemSeconds_d": res.get("cpu_system_s"),
        "PeakRssBytes_d": res.get("peak_rss_bytes"),
        "MemoryPeakBytes_d": res.get("memory_peak_bytes"),
        "CpuThrottledSeconds_d": res.get("cpu_throttled_s"),
        "ExitSignal_d": res.get("exit_signal"),
        "MemoryLimitMB_d": limits.get("memory_mb"),
        "CpuQuotaPercent_d": limits.get("cpu_percent"),
        "MaxProcesses_d": limits.get("max_processes"),
    }
    out: dict[str, Any] = {k: float(v) for k, v in values.items() if v is not None}
    if res.get("enforced_by"):
        out["LimitsEnforcedBy_s"] = res["enforced_by"]
    return out


def stream_rows(event: JobEvent, records: Sequence[StreamRecord]) -> list[dict[str, Any]]:
    base = {
        **_account_columns(),
        "Category": "JobStreams",
        "ResultType": "In Progress",
        "CorrelationId": event.job_id,
        "JobId_g": event.job_id,
        "RunbookName_s": event.runbook,
        "RunOn_s": event.group,
        "HybridWorker_s": event.worker,
        "Caller_s": "Outpost",
    }
    rows = []
    for rec in records:
        stream = str(rec.stream)
        rows.append(
            {
                **base,
                "TimeGenerated": to_naive_utc(rec.time) or to_naive_utc(event.time),
                "StreamType_s": stream,
                "ResultDescription": rec.text,
                "StreamSequence_d": float(rec.seq),
                "Level": {"Error": "Error", "Warning": "Warning"}.get(stream, "Informational"),
            }
        )
    return rows


WORKER_REMOVED = "Remove hybrid worker"  # the AuditEvent OperationName the stale-worker rule reads


def worker_removed_row(time: datetime, name: str, group: str) -> dict[str, Any]:
    """The AuditEvent of a worker's removal (admin remove, deregister, forced re-registration)."""
    return {
        **audit_row(time, WORKER_REMOVED, name, "Outpost"),
        "RunOn_s": group,
        "ResultDescription": f"worker {name} removed from group {group}",
    }


def audit_row(time: datetime, operation: str, target: str, caller: str, result: str = "Succeeded") -> dict[str, Any]:
    """An AuditEvent row (e.g. a runbook published), as Azure's AuditEvent category has it."""
    return {
        **_account_columns(),
        "TimeGenerated": to_naive_utc(time),
        "Category": "AuditEvent",
        "OperationName": operation,
        "ResultType": result,
        "ResultDescription": f"{operation} {target}",
        "targetResources_Resource_s": target,
        "Caller_s": caller,
    }


def diagnostic_rows(
    results: Sequence[Mapping[str, Any]], *, worker: str, group: str, time_: Any = None
) -> tuple[list[dict[str, Any]], dict[str, bool]]:
    """A worker's diagnose results -> (DiagnosticResults rows, check -> failing).

    Raises ValueError naming the first bad result."""
    t = to_naive_utc(time_) or utcnow()
    out = []
    failing: dict[str, bool] = {}
    for i, r in enumerate(results):
        check = r.get("id")
        status = r.get("status")
        if not isinstance(check, str) or not check:
            raise ValueError(f"results[{i}].id must be a non-empty string")
        if status not in DIAGNOSE_STATUSES:
            raise ValueError(f"results[{i}].status must be one of {', '.join(DIAGNOSE_STATUSES)}")
        failing[check] = status == "fail"
        out.append(
            {
                "TimeGenerated": t,
                "Computer": worker,
                "WorkerGroup_s": group,
                "CheckId": check,
                "CheckGroup": r.get("group"),
                "Status": status,
                "Finding": r.get("finding"),
                "Remediation": r.get("remediation"),
                "DurationMs": r.get("duration_ms"),
                "Evidence": r.get("evidence") if r.get("evidence") is not None else {},
            }
        )
    return out, failing


def parse_times(table: str, items: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Rows that travelled as JSON: their TIMESTAMP columns back to datetimes (what ingestion expects)."""
    names = [c for c, t in TABLES[table] if t == "TIMESTAMP"]
    out = []
    for row in items:
        if not isinstance(row, Mapping):
            raise ValueError(f"{table} rows must be objects")
        fixed = dict(row)
        for name in names:
            value = fixed.get(name)
            if isinstance(value, str):
                fixed[name] = to_naive_utc(value)
        out.append(fixed)
    return out


class HeartbeatRowError(ValueError):
    pass


@dataclass
class HeartbeatBatch:
    """Agent heartbeat rows as columns: name -> one value per row (absent columns are not in `columns`)."""

    n: int
    columns: dict[str, list[Any]]
    ids: list[Any] | None  # HeartbeatId per row (None where a row has none); None when no row has one
    times: list[datetime]  # parsed TimeGenerated per row (naive UTC)


def heartbeat_columns(
    rows: Sequence[Any],
    *,
    worker: str,
    group: str,
    defaults: Mapping[str, Any] | None = None,
    forced: Mapping[str, Any] | None = None,
    limit: int = 10_000,
) -> HeartbeatBatch:
    """Validate agent-sent Heartbeat rows and turn them into columns, without per-row dicts.

    Identity columns (Computer, WorkerGroup_s, and *forced*) come from the credential,
    not the body; a row without one of *defaults*' columns gets the default. Unknown
    keys are ignored. Raises HeartbeatRowError naming the first bad row.
    """
    if not isinstance(rows, list):
        rows = list(rows)
    n = len(rows)
    if n > limit:
        raise HeartbeatRowError(f"too many rows in one batch (limit {limit})")
    if not all(type(r) is dict for r in rows):
        for i, raw in enumerate(rows):
            if not isinstance(raw, Mapping):
                raise HeartbeatRowError(f"rows[{i}] must be an object with Heartbeat columns")
        rows = [dict(r) for r in rows]
    present = set().union(*rows) & _HEARTBEAT_NAMES if rows else set()

    tg = [r.get("TimeGenerated") for r in rows]
    times = _parse_times(tg)
    ids: list[Any] | None = None
    if "HeartbeatId" in present:
        ids = [r.get("HeartbeatId") for r in rows]
        for i, hid in enumerate(ids):
            if hid is not None and (type(hid) is not str or not 0 < len(hid) <= 64):
                raise HeartbeatRowError(f"rows[{i}].HeartbeatId must be a string of at most 64 characters")

    for name in CAPACITY_COLUMNS & present:
        for i, r in enumerate(rows):
            value = r.get(name)
            if value is not None and (type(value) not in (int, float) or not 0 <= value < 1e9):
                raise HeartbeatRowError(f"rows[{i}].{name} must be a number from 0 to 1e9")

    columns: dict[str, list[Any]] = {"TimeGenerated": times}
    if ids is not None:
        columns["HeartbeatId"] = ids
    for name, default in (defaults or {}).items():
        columns[name] = [r.get(name, default) for r in rows] if name in present else [default] * n
    for name in present - columns.keys():
        columns[name] = [r.get(name) for r in rows]
    # A worker can only speak for itself: Computer and group come from its credential.
    for name, value in {"Computer": worker, "WorkerGroup_s": group, **(forced or {})}.items():
        columns[name] = [value] * n
    return HeartbeatBatch(n, columns, ids, times)


def _parse_times(values: list[Any]) -> list[datetime]:
    """TimeGenerated per row, each distinct text parsed once."""
    try:
        distinct = set(values)
    except TypeError:  # an unhashable value (a list, an object): certainly no time
        distinct = None
    if distinct is not None:
        parsed = {v: to_naive_utc(v) for v in distinct}
        if None not in parsed.values():
            return list(map(parsed.__getitem__, values))
    for i, v in enumerate(values):
        if isinstance(v, list | dict) or to_naive_utc(v) is None:
            raise HeartbeatRowError(f"rows[{i}].TimeGenerated must be an ISO-8601 time")
    raise AssertionError("unreachable")  # pragma: no cover


MAX_PERF_ROWS = 256
_PERF_TEXT = ("ObjectName", "CounterName", "InstanceName", "CounterPath")


def perf_rows(raw: Any, *, worker: str, group: str) -> list[dict[str, Any]]:
    """Agent-sent Perf rows, checked; Computer and group come from the credential (HeartbeatRowError)."""
    if not isinstance(raw, list) or len(raw) > MAX_PERF_ROWS:
        raise HeartbeatRowError(f"perf must be a list of at most {MAX_PERF_ROWS} Perf rows")
    out = []
    for i, r in enumerate(raw):
        if not isinstance(r, dict):
            raise HeartbeatRowError(f"perf[{i}] must be an object with Perf columns")
        value = r.get("CounterValue")
        if type(value) not in (int, float) or not -1e15 < value < 1e15:
            raise HeartbeatRowError(f"perf[{i}].CounterValue must be a number")
        when = to_naive_utc(r.get("TimeGenerated"))
        if when is None:
            raise HeartbeatRowError(f"perf[{i}].TimeGenerated must be an ISO-8601 time")
        row: dict[str, Any] = {"TimeGenerated": when, "Computer": worker, "WorkerGroup_s": group}
        for name in _PERF_TEXT:
            text = r.get(name)
            if not isinstance(text, str) or not 0 < len(text) <= 256:
                raise HeartbeatRowError(f"perf[{i}].{name} must be a string of 1 to 256 characters")
            row[name] = text
        row["CounterValue"] = float(value)
        out.append(row)
    return out


def latest_capacity(batch: HeartbeatBatch) -> dict[str, float] | None:
    """The capacity columns of the batch's latest row (None: the agent sends none)."""
    names = CAPACITY_COLUMNS & batch.columns.keys()
    if not names or not batch.n:
        return None
    i = max(range(batch.n), key=batch.times.__getitem__)
    values = {name: batch.columns[name][i] for name in names}
    return {k: float(v) for k, v in values.items() if v is not None} or None


def concat_heartbeats(
    batches: Sequence[HeartbeatBatch],
) -> tuple[dict[str, list[Any]], int, list[Any] | None, list[datetime]]:
    """Several HeartbeatBatches as one: (columns, n, ids, times); a column a batch lacks is None there."""
    n = sum(b.n for b in batches)
    names = {name for b in batches for name in b.columns}
    columns: dict[str, list[Any]] = {}
    for name in names:
        values: list[Any] = []
        for b in batches:
            values.extend(b.columns.get(name) or [None] * b.n)
        columns[name] = values
    ids: list[Any] | None = None
    if any(b.ids is not None for b in batches):
        ids = []
        for b in batches:
            ids.extend(b.ids if b.ids is not None else [None] * b.n)
    times = [t for b in batches for t in b.times]
    return columns, n, ids, times
