"""Build Log-Analytics rows from what the control plane and agents report.

Shapes follow what Azure Automation sends to Log Analytics: one `JobLogs` row per
status change and one `JobStreams` row per stream record, in `AzureDiagnostics`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from outpost.contract import StreamRecord
from outpost.observer import JobEvent
from telemetry.store import HEARTBEAT_COLUMNS, to_naive_utc

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
    }


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
        rows.append({
            **base,
            "TimeGenerated": to_naive_utc(rec.time) or to_naive_utc(event.time),
            "StreamType_s": stream,
            "ResultDescription": rec.text,
            "StreamSequence_d": float(rec.seq),
            "Level": {"Error": "Error", "Warning": "Warning"}.get(stream, "Informational"),
        })
    return rows


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


class HeartbeatRowError(ValueError):
    pass


def heartbeat_rows(
    rows: Iterable[Any], *, worker: str, group: str, limit: int = 10_000
) -> list[dict[str, Any]]:
    """Validate agent-sent Heartbeat rows. Identity columns come from the credential, not the body."""
    out: list[dict[str, Any]] = []
    for i, raw in enumerate(rows):
        if i >= limit:
            raise HeartbeatRowError(f"too many rows in one batch (limit {limit})")
        if not isinstance(raw, Mapping):
            raise HeartbeatRowError(f"rows[{i}] must be an object with Heartbeat columns")
        row = dict(raw) if raw.keys() <= _HEARTBEAT_NAMES else {k: v for k, v in raw.items() if k in _HEARTBEAT_NAMES}
        parsed = to_naive_utc(row.get("TimeGenerated"))
        if parsed is None:
            raise HeartbeatRowError(f"rows[{i}].TimeGenerated must be an ISO-8601 time")
        row["TimeGenerated"] = parsed
        hid = row.get("HeartbeatId")
        if hid is not None and (not isinstance(hid, str) or not 0 < len(hid) <= 64):
            raise HeartbeatRowError(f"rows[{i}].HeartbeatId must be a string of at most 64 characters")
        # A worker can only speak for itself: Computer and group come from its credential.
        row["Computer"] = worker
        row["WorkerGroup_s"] = group
        out.append(row)
    return out
