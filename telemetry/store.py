"""The telemetry store: one DuckDB file holding Log-Analytics-shaped tables.

Column names and types copy Azure Monitor so published queries run unchanged
(`Heartbeat`, `AzureDiagnostics`); Outpost-only columns carry the custom-log
suffix (`WorkerGroup_s`) or a leading underscore (`_TimeReceived`, what
`ingestion_time()` reads).

Concurrency: DuckDB is MVCC. Every query gets its own cursor (`reader()`), and
ingestion goes through one writer cursor behind a lock, so a long query never
blocks an insert. Inserts are columnar (`INSERT ... SELECT UNNEST($1), ...` from
per-column Python lists): row-by-row inserts are hundreds of times slower.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb

log = logging.getLogger(__name__)

DB_FILE = "telemetry.duckdb"

# (column, DuckDB type). Order is the table's column order.
HEARTBEAT_COLUMNS: list[tuple[str, str]] = [
    ("TenantId", "VARCHAR"),
    ("SourceSystem", "VARCHAR"),
    ("TimeGenerated", "TIMESTAMP"),
    ("SourceComputerId", "VARCHAR"),
    ("ComputerIP", "VARCHAR"),
    ("Computer", "VARCHAR"),
    ("Category", "VARCHAR"),
    ("OSType", "VARCHAR"),
    ("OSName", "VARCHAR"),
    ("OSMajorVersion", "VARCHAR"),
    ("OSMinorVersion", "VARCHAR"),
    ("Version", "VARCHAR"),
    ("SCAgentChannel", "VARCHAR"),
    ("IsGatewayInstalled", "BOOLEAN"),
    ("RemoteIPLongitude", "DOUBLE"),
    ("RemoteIPLatitude", "DOUBLE"),
    ("RemoteIPCountry", "VARCHAR"),
    ("SubscriptionId", "VARCHAR"),
    ("ResourceGroup", "VARCHAR"),
    ("ResourceProvider", "VARCHAR"),
    ("Resource", "VARCHAR"),
    ("ResourceId", "VARCHAR"),
    ("ResourceType", "VARCHAR"),
    ("ComputerEnvironment", "VARCHAR"),
    ("Solutions", "VARCHAR"),
    ("VMUUID", "VARCHAR"),
    ("ComputerPrivateIPs", "JSON"),
    ("Type", "VARCHAR"),
    ("_ResourceId", "VARCHAR"),
    # Outpost additions
    ("WorkerGroup_s", "VARCHAR"),  # the hybrid worker group the worker polls for
    ("HeartbeatId", "VARCHAR"),  # agent-chosen uuid; re-sends carry the same one
    ("_TimeReceived", "TIMESTAMP"),  # server receive time = ingestion_time()
]

AZURE_DIAGNOSTICS_COLUMNS: list[tuple[str, str]] = [
    ("TenantId", "VARCHAR"),
    ("TimeGenerated", "TIMESTAMP"),
    ("ResourceId", "VARCHAR"),
    ("Category", "VARCHAR"),  # JobLogs | JobStreams | AuditEvent
    ("ResourceGroup", "VARCHAR"),
    ("SubscriptionId", "VARCHAR"),
    ("ResourceProvider", "VARCHAR"),  # MICROSOFT.AUTOMATION
    ("Resource", "VARCHAR"),
    ("ResourceType", "VARCHAR"),  # AUTOMATIONACCOUNTS
    ("OperationName", "VARCHAR"),  # Job
    ("ResultType", "VARCHAR"),  # New | Started | Completed | Failed | Stopped | Suspended | In Progress
    ("CorrelationId", "VARCHAR"),
    ("ResultDescription", "VARCHAR"),
    ("Level", "VARCHAR"),
    ("JobId_g", "VARCHAR"),
    ("RunbookName_s", "VARCHAR"),
    ("StreamType_s", "VARCHAR"),
    ("Caller_s", "VARCHAR"),
    ("RunOn_s", "VARCHAR"),  # worker group, as Azure fills it for hybrid jobs
    ("HybridWorker_s", "VARCHAR"),  # Outpost: the worker that ran it
    ("StreamSequence_d", "DOUBLE"),  # Outpost: the record's seq within the job
    ("targetResources_Resource_s", "VARCHAR"),  # AuditEvent
    ("SourceSystem", "VARCHAR"),
    ("Type", "VARCHAR"),
    ("_ResourceId", "VARCHAR"),
    ("_TimeReceived", "TIMESTAMP"),
]

DIAGNOSTIC_RESULTS_COLUMNS: list[tuple[str, str]] = [
    ("TimeGenerated", "TIMESTAMP"),
    ("Computer", "VARCHAR"),
    ("WorkerGroup_s", "VARCHAR"),
    ("CheckId", "VARCHAR"),
    ("CheckGroup", "VARCHAR"),
    ("Status", "VARCHAR"),  # pass | warn | fail | skip
    ("Finding", "VARCHAR"),
    ("Remediation", "VARCHAR"),
    ("DurationMs", "DOUBLE"),
    ("Evidence", "JSON"),
    ("Type", "VARCHAR"),
    ("_TimeReceived", "TIMESTAMP"),
]

SPANS_COLUMNS: list[tuple[str, str]] = [
    ("TimeGenerated", "TIMESTAMP"),  # span start
    ("EndTime", "TIMESTAMP"),
    ("DurationMs", "DOUBLE"),
    ("TraceId", "VARCHAR"),
    ("SpanId", "VARCHAR"),
    ("ParentSpanId", "VARCHAR"),
    ("Name", "VARCHAR"),
    ("Kind", "VARCHAR"),
    ("StatusCode", "VARCHAR"),
    ("StatusMessage", "VARCHAR"),
    ("ServiceName", "VARCHAR"),
    ("ScopeName", "VARCHAR"),
    ("Attributes", "JSON"),
    ("ResourceAttributes", "JSON"),
    ("Events", "JSON"),
    ("Links", "JSON"),
    ("Type", "VARCHAR"),
    ("_TimeReceived", "TIMESTAMP"),
]

METRICS_COLUMNS: list[tuple[str, str]] = [
    ("TimeGenerated", "TIMESTAMP"),
    ("Name", "VARCHAR"),
    ("Description", "VARCHAR"),
    ("Unit", "VARCHAR"),
    ("MetricType", "VARCHAR"),  # gauge | sum | histogram | exponential_histogram | summary
    ("Value", "DOUBLE"),  # gauge/sum point value
    ("Count", "BIGINT"),  # histogram/summary
    ("Sum", "DOUBLE"),
    ("Min", "DOUBLE"),
    ("Max", "DOUBLE"),
    ("BucketCounts", "JSON"),
    ("ExplicitBounds", "JSON"),
    ("IsMonotonic", "BOOLEAN"),
    ("Temporality", "VARCHAR"),
    ("Attributes", "JSON"),
    ("ServiceName", "VARCHAR"),
    ("ScopeName", "VARCHAR"),
    ("ResourceAttributes", "JSON"),
    ("Type", "VARCHAR"),
    ("_TimeReceived", "TIMESTAMP"),
]

LOGS_COLUMNS: list[tuple[str, str]] = [
    ("TimeGenerated", "TIMESTAMP"),
    ("ObservedTime", "TIMESTAMP"),
    ("SeverityNumber", "BIGINT"),
    ("SeverityText", "VARCHAR"),
    ("Body", "VARCHAR"),
    ("TraceId", "VARCHAR"),
    ("SpanId", "VARCHAR"),
    ("Attributes", "JSON"),
    ("ServiceName", "VARCHAR"),
    ("ScopeName", "VARCHAR"),
    ("ResourceAttributes", "JSON"),
    ("Type", "VARCHAR"),
    ("_TimeReceived", "TIMESTAMP"),
]

TABLES: dict[str, list[tuple[str, str]]] = {
    "Heartbeat": HEARTBEAT_COLUMNS,
    "AzureDiagnostics": AZURE_DIAGNOSTICS_COLUMNS,
    "DiagnosticResults": DIAGNOSTIC_RESULTS_COLUMNS,
    "OTelSpans": SPANS_COLUMNS,
    "OTelMetrics": METRICS_COLUMNS,
    "OTelLogs": LOGS_COLUMNS,
}

# Constant columns a table always carries (Azure fills these server side).
TABLE_DEFAULTS: dict[str, dict[str, Any]] = {
    "Heartbeat": {
        "Category": "Direct Agent",
        "ComputerEnvironment": "Non-Azure",
        "SourceSystem": "Linux",
        "Type": "Heartbeat",
        "IsGatewayInstalled": False,
    },
    "AzureDiagnostics": {
        "ResourceProvider": "MICROSOFT.AUTOMATION",
        "ResourceType": "AUTOMATIONACCOUNTS",
        "SourceSystem": "Azure",
        "Type": "AzureDiagnostics",
    },
    "DiagnosticResults": {"Type": "DiagnosticResults"},
    "OTelSpans": {"Type": "OTelSpans"},
    "OTelMetrics": {"Type": "OTelMetrics"},
    "OTelLogs": {"Type": "OTelLogs"},
}

# Bounded memory for HeartbeatId dedupe; older re-sends are checked in the table.
SEEN_IDS_CAPACITY = 200_000


def utcnow() -> datetime:
    """Naive UTC, the form DuckDB TIMESTAMP columns hold."""
    return datetime.now(UTC).replace(tzinfo=None)


def to_naive_utc(value: Any) -> datetime | None:
    """Parse an ISO time (or datetime) to naive UTC; None when absent or unreadable."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        dt = value
    elif isinstance(value, str):
        try:  # the common case: an ISO time Python reads directly (fast path)
            dt = datetime.fromisoformat(value)
        except ValueError:
            dt = None
        if dt is not None:
            return dt.astimezone(UTC).replace(tzinfo=None) if dt.tzinfo is not None else dt
        text = value.strip()
        if text.endswith("Z"):
            text = text[:-1] + "+00:00"
        # Python < 3.11 cannot take 7 fractional digits (Kusto style); trim to 6.
        if "." in text:
            head, _, frac = text.partition(".")
            digits = "".join(ch for ch in frac if ch.isdigit())
            rest = frac[len(digits) :]
            text = f"{head}.{digits[:6]}{rest}"
        try:
            dt = datetime.fromisoformat(text)
        except ValueError:
            return None
    else:
        return None
    if dt.tzinfo is not None:
        dt = dt.astimezone(UTC).replace(tzinfo=None)
    return dt


class TelemetryStore:
    """DuckDB-backed tables; thread-safe (one writer cursor under a lock, a cursor per reader)."""

    def __init__(self, path: Path | str | None, *, memory_limit: str | None = None) -> None:
        self.path = str(path) if path else ":memory:"
        config: dict[str, Any] = {}
        if memory_limit:
            config["memory_limit"] = memory_limit
        self._con = duckdb.connect(self.path, config=config)
        self._con.execute("SET TimeZone='UTC'")
        self._write_lock = threading.Lock()
        self._writer = self._con.cursor()
        self._writer.execute("SET TimeZone='UTC'")
        self._closed = False
        self._seen: OrderedDict[str, None] = OrderedDict()
        # Any HeartbeatId with TimeGenerated after this mark that is not in _seen was never stored.
        self._dedupe_watermark = utcnow()
        self._create_tables()

    # -- schema -----------------------------------------------------------

    def _create_tables(self) -> None:
        with self._write_lock:
            for table, cols in TABLES.items():
                ddl = ", ".join(f'"{c}" {t}' for c, t in cols)
                self._writer.execute(f'CREATE TABLE IF NOT EXISTS "{table}" ({ddl})')
                # Columns added in later versions reach old files without a migration tool.
                have = {r[0] for r in self._writer.execute(f'DESCRIBE "{table}"').fetchall()}
                for c, t in cols:
                    if c not in have:
                        self._writer.execute(f'ALTER TABLE "{table}" ADD COLUMN "{c}" {t}')

    def columns(self, table: str) -> list[tuple[str, str]]:
        return TABLES[table]

    def tables(self) -> list[str]:
        return list(TABLES)

    # -- access -----------------------------------------------------------

    @contextmanager
    def reader(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A private cursor for one query; closing it drops its temp tables."""
        if self._closed:
            raise RuntimeError("telemetry store is closed")
        cur = self._con.cursor()
        try:
            cur.execute("SET TimeZone='UTC'")
            yield cur
        finally:
            cur.close()

    def interrupt(self, cursor: duckdb.DuckDBPyConnection) -> None:
        cursor.interrupt()

    # -- ingest -----------------------------------------------------------

    def insert_rows(self, table: str, rows: Sequence[Mapping[str, Any]]) -> int:
        """Insert dict rows (unknown keys ignored, missing -> defaults/NULL), columnar."""
        if not rows:
            return 0
        cols = TABLES[table]
        defaults = TABLE_DEFAULTS.get(table, {})
        received = utcnow()
        n = len(rows)
        present: set[str] = set()
        for row in rows:
            present.update(row.keys())
        columns: list[list[Any]] = []
        for name, typ in cols:
            default = defaults.get(name)
            if name == "_TimeReceived":
                columns.append([received] * n)
                continue
            if name not in present:  # nobody sent it: the default (or NULL) for every row, no per-row work
                columns.append([default] * n)
                continue
            values = [row.get(name, default) for row in rows]
            if default is not None:
                values = [default if v is None or v == "" else v for v in values]
            columns.append(_coerce_column(values, typ))
        self._insert_columns(table, columns, len(rows))
        return len(rows)

    def _insert_columns(self, table: str, columns: list[list[Any]], n: int) -> None:
        cols = TABLES[table]
        exprs: list[str] = []
        params: list[Any] = []
        for (_, typ), values in zip(cols, columns, strict=True):
            first = values[0] if values else None
            # A column with one value in the whole batch (defaults, NULLs) goes as one scalar:
            # converting a Python list per column is what costs, not the insert.
            if values and first is not None and not isinstance(first, list | dict) and values.count(first) == n:
                params.append(first)
                exprs.append(f"${len(params)}::{typ}")
            elif first is None and values.count(None) == n:
                exprs.append(f"NULL::{typ}")
            else:
                params.append(values)
                exprs.append(f"UNNEST(${len(params)})::{typ}")
        if not any(e.startswith("UNNEST") for e in exprs):  # keep the row count
            params.append(list(range(n)))
            exprs.append(f"UNNEST(${len(params)}) AS __n")
            select = f"SELECT {', '.join(exprs[:-1])} FROM (SELECT {exprs[-1]})"
        else:
            select = f"SELECT {', '.join(exprs)}"
        names = ", ".join(f'"{c}"' for c, _ in cols)
        sql = f'INSERT INTO "{table}" ({names}) {select}'
        with self._write_lock:
            if self._closed:
                raise RuntimeError("telemetry store is closed")
            self._writer.execute(sql, params)

    def insert_heartbeats(self, rows: Sequence[Mapping[str, Any]]) -> tuple[int, int]:
        """Insert heartbeat rows, dropping HeartbeatIds already stored. Returns (inserted, duplicates)."""
        fresh: list[Mapping[str, Any]] = []
        old_ids: list[str] = []
        batch_ids: set[str] = set()
        times: dict[str, datetime | None] = {}
        with self._write_lock:  # the seen-set and the insert must agree
            for row in rows:
                hid = row.get("HeartbeatId")
                if not hid:
                    fresh.append(row)
                    continue
                hid = str(hid)
                if hid in self._seen or hid in batch_ids:
                    continue
                batch_ids.add(hid)
                t = to_naive_utc(row.get("TimeGenerated"))
                times[hid] = t
                if t is not None and isinstance(row, dict):
                    row["TimeGenerated"] = t  # parsed once; the insert takes the datetime as is
                if t is None or t <= self._dedupe_watermark:
                    old_ids.append(hid)
                fresh.append(row)
            if old_ids:
                stored = self._stored_ids(old_ids, [times[i] for i in old_ids])
                if stored:
                    fresh = [r for r in fresh if str(r.get("HeartbeatId") or "") not in stored]
        inserted = self.insert_rows("Heartbeat", fresh)
        with self._write_lock:
            for row in fresh:
                hid = row.get("HeartbeatId")
                if hid:
                    self._remember(str(hid), times.get(str(hid)))
        return inserted, len(rows) - inserted

    def _stored_ids(self, ids: list[str], times: list[datetime | None]) -> set[str]:
        known = [t for t in times if t is not None]
        where = ""
        params: list[Any] = [ids]
        if known and len(known) == len(times):
            where = ' AND "TimeGenerated" BETWEEN $2 AND $3'
            params += [min(known), max(known)]
        sql = f'SELECT "HeartbeatId" FROM "Heartbeat" WHERE "HeartbeatId" IN (SELECT UNNEST($1)){where}'
        return {r[0] for r in self._writer.execute(sql, params).fetchall()}

    def _remember(self, hid: str, t: datetime | None) -> None:
        self._seen[hid] = None
        while len(self._seen) > SEEN_IDS_CAPACITY:
            self._seen.popitem(last=False)
            # We no longer know what is stored at or before the newest time we forgot.
            if t is not None and t > self._dedupe_watermark:
                self._dedupe_watermark = t

    # -- retention --------------------------------------------------------

    def apply_retention(self, retention_days: float) -> dict[str, int]:
        """Delete rows older than the retention; returns rows removed per table."""
        cutoff = utcnow() - timedelta(days=retention_days)
        removed: dict[str, int] = {}
        for table in TABLES:
            # Short write-lock holds: a delete is one MVCC transaction; appends keep going after it.
            with self._write_lock:
                if self._closed:
                    break
                row = self._writer.execute(
                    f'DELETE FROM "{table}" WHERE "TimeGenerated" < $1', [cutoff]
                ).fetchone()
            removed[table] = int(row[0]) if row else 0
        return removed

    def count(self, table: str) -> int:
        with self.reader() as cur:
            row = cur.execute(f'SELECT count(*) FROM "{table}"').fetchone()
        return int(row[0]) if row else 0

    def checkpoint(self) -> None:
        with self._write_lock:
            if not self._closed:
                self._writer.execute("CHECKPOINT")

    def close(self) -> None:
        with self._write_lock:
            if self._closed:
                return
            self._closed = True
            try:
                self._writer.execute("CHECKPOINT")
            except duckdb.Error as exc:  # a checkpoint failure must not lose the close
                log.warning("telemetry checkpoint on close failed: %s", exc)
            self._writer.close()
            self._con.close()


def _coerce_column(values: list[Any], typ: str) -> list[Any]:
    """Make one column's Python values fit its DuckDB type (bad values become NULL, never an error)."""
    if typ == "TIMESTAMP":
        return [v if type(v) is datetime and v.tzinfo is None else to_naive_utc(v) for v in values]
    if typ == "VARCHAR":
        return [v if v is None or type(v) is str else str(v) for v in values]
    if typ == "BOOLEAN":
        return [_to_bool(v) for v in values]
    if typ in ("DOUBLE", "BIGINT"):
        return [_to_number(v, typ) for v in values]
    if typ == "JSON":
        import json

        return [None if v is None else v if isinstance(v, str) else json.dumps(v, default=str) for v in values]
    return values


def _to_bool(v: Any) -> bool | None:
    if v is None or isinstance(v, bool):
        return v
    if isinstance(v, str):
        low = v.strip().lower()
        if low in ("true", "1", "yes"):
            return True
        if low in ("false", "0", "no", ""):
            return False
        return None
    if isinstance(v, int | float):
        return bool(v)
    return None


def _to_number(v: Any, typ: str) -> float | int | None:
    if v is None or isinstance(v, bool):
        return None if v is None else int(v)
    try:
        return int(v) if typ == "BIGINT" else float(v)
    except (TypeError, ValueError):
        return None


