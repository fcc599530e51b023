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
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from telemetry.query_limits import DEFAULT_QUERY_MEMORY, DEFAULT_QUERY_THREADS, parse_size

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
    ("OriginalTimeGenerated_t", "TIMESTAMP"),  # what the agent said, when TimeGenerated was clamped
    # Capacity and load (docs/sandbox.md): job slots, busy slots, 1-minute load average, CPUs, limit enforcement
    ("SlotsTotal_d", "DOUBLE"),
    ("SlotsBusy_d", "DOUBLE"),
    ("LoadAverage1m_d", "DOUBLE"),
    ("CpuCount_d", "DOUBLE"),
    ("LimitsEnforcedBy_s", "VARCHAR"),
    ("AgentCpuQuotaPercent_d", "DOUBLE"),  # the agent's own cgroup CPU quota, % of one CPU (absent: none)
    ("AgentMemoryLimitMB_d", "DOUBLE"),  # the agent's own cgroup memory limit (absent: none)
    ("RuntimeEnvironments_s", "VARCHAR"),  # the runtime environments built there, "name:hash,..."
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
    # Outpost, JobLogs rows of a final status: what the runbook consumed and its limits (docs/telemetry.md)
    ("WallSeconds_d", "DOUBLE"),
    ("CpuUserSeconds_d", "DOUBLE"),
    ("CpuSystemSeconds_d", "DOUBLE"),
    ("PeakRssBytes_d", "DOUBLE"),
    ("MemoryPeakBytes_d", "DOUBLE"),
    ("CpuThrottledSeconds_d", "DOUBLE"),
    ("ExitSignal_d", "DOUBLE"),
    ("MemoryLimitMB_d", "DOUBLE"),
    ("CpuQuotaPercent_d", "DOUBLE"),
    ("MaxProcesses_d", "DOUBLE"),
    ("LimitsEnforcedBy_s", "VARCHAR"),
    ("targetResources_Resource_s", "VARCHAR"),  # AuditEvent
    ("SourceSystem", "VARCHAR"),
    ("Type", "VARCHAR"),
    ("_ResourceId", "VARCHAR"),
    ("OriginalTimeGenerated_t", "TIMESTAMP"),  # what the sender said, when TimeGenerated was clamped
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
    ("OriginalTimeGenerated_t", "TIMESTAMP"),  # what the sender said, when TimeGenerated was clamped
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
    ("Computer", "VARCHAR"),  # the worker whose credential sent it (NULL: the server's own)
    ("WorkerGroup_s", "VARCHAR"),
    ("OriginalTimeGenerated_t", "TIMESTAMP"),  # what the sender said, when TimeGenerated was clamped
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
    ("Computer", "VARCHAR"),  # the worker whose credential sent it (NULL: the server's own)
    ("WorkerGroup_s", "VARCHAR"),
    ("OriginalTimeGenerated_t", "TIMESTAMP"),  # what the sender said, when TimeGenerated was clamped
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
    ("Computer", "VARCHAR"),  # the worker whose credential sent it (NULL: the server's own)
    ("WorkerGroup_s", "VARCHAR"),
    ("OriginalTimeGenerated_t", "TIMESTAMP"),  # what the sender said, when TimeGenerated was clamped
    ("_TimeReceived", "TIMESTAMP"),
]

# Azure Monitor's Perf table (what the Log Analytics Linux agent sends), from agent/perf.py.
PERF_COLUMNS: list[tuple[str, str]] = [
    ("TenantId", "VARCHAR"),
    ("TimeGenerated", "TIMESTAMP"),
    ("Computer", "VARCHAR"),
    ("ObjectName", "VARCHAR"),  # Processor | Memory | Logical Disk | System
    ("CounterName", "VARCHAR"),
    ("InstanceName", "VARCHAR"),
    ("CounterValue", "DOUBLE"),
    ("CounterPath", "VARCHAR"),
    ("SourceSystem", "VARCHAR"),
    ("MG", "VARCHAR"),
    ("StandardDeviation", "DOUBLE"),
    ("Min", "DOUBLE"),
    ("Max", "DOUBLE"),
    ("SampleCount", "BIGINT"),
    ("BucketStartTime", "TIMESTAMP"),
    ("BucketEndTime", "TIMESTAMP"),
    ("Type", "VARCHAR"),
    ("_ResourceId", "VARCHAR"),
    ("WorkerGroup_s", "VARCHAR"),  # Outpost: the worker's group
    ("OriginalTimeGenerated_t", "TIMESTAMP"),  # what the agent said, when TimeGenerated was clamped
    ("_TimeReceived", "TIMESTAMP"),
]

TABLES: dict[str, list[tuple[str, str]]] = {
    "Heartbeat": HEARTBEAT_COLUMNS,
    "AzureDiagnostics": AZURE_DIAGNOSTICS_COLUMNS,
    "DiagnosticResults": DIAGNOSTIC_RESULTS_COLUMNS,
    "OTelSpans": SPANS_COLUMNS,
    "OTelMetrics": METRICS_COLUMNS,
    "OTelLogs": LOGS_COLUMNS,
    "Perf": PERF_COLUMNS,
}

# Constant columns a table always carries (Azure fills these server side).
TABLE_DEFAULTS: dict[str, dict[str, Any]] = {
    "Perf": {"SourceSystem": "Linux", "Type": "Perf", "SampleCount": 1},
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

# Per replica, the newest forwarded record applied (not a KQL table: KQL sees TABLES only).
WATERMARK_TABLE = "_outpost_forward_watermark"

# Bounded memory for HeartbeatId dedupe; older re-sends are checked in the table.
SEEN_IDS_CAPACITY = 200_000


def _mib(n: int) -> str:
    return f"{max(1, n // 2**20)}MiB"


# Azure's rule for TimeGenerated: more than 2 days before the receive time or more than 1 day
# after it becomes the receive time (so a clock in 2099 can't make a dead worker look alive);
# the sent value is kept in OriginalTimeGenerated_t.
MAX_PAST = timedelta(days=2)
MAX_FUTURE = timedelta(days=1)


def clamp_times(times: list[Any], received: datetime) -> tuple[list[Any], list[datetime | None] | None]:
    """(clamped TimeGenerated values, originals where clamped or None when nothing was); NULLs stay NULL."""
    lo, hi = received - MAX_PAST, received + MAX_FUTURE
    known = [t for t in times if t is not None] if None in times else times
    if not known or (lo <= min(known) and max(known) <= hi):
        return times, None
    originals = [t if t is not None and not lo <= t <= hi else None for t in times]
    return [received if o is not None else t for t, o in zip(times, originals, strict=True)], originals


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
            if dt.tzinfo is None:
                return dt
            offset = dt.utcoffset()
            return dt.replace(tzinfo=None) - offset if offset else dt.replace(tzinfo=None)
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

    def __init__(
        self,
        path: Path | str | None,
        *,
        memory_limit: str | None = None,
        query_memory: str = DEFAULT_QUERY_MEMORY,
        query_threads: int = DEFAULT_QUERY_THREADS,
    ) -> None:
        self.path = str(path) if path else ":memory:"
        self.query_memory = _mib(parse_size(query_memory))
        budget = parse_size(query_memory)
        config: dict[str, Any] = {
            "memory_limit": memory_limit or _mib(2 * budget),
            "max_temp_directory_size": _mib(4 * budget),
            "threads": max(1, int(query_threads)),
        }
        self._con = duckdb.connect(self.path, config=config)
        self._con.execute("SET TimeZone='UTC'")
        # Reentrant: a forwarded batch holds it across one transaction of several inserts.
        self._write_lock = threading.RLock()
        self._writer = self._con.cursor()
        self._writer.execute("SET TimeZone='UTC'")
        self._closed = False
        # Recently stored HeartbeatIds in two generations of sets (bulk set operations, no per-row work):
        # when the current one fills, the previous is forgotten and the watermark rises to its newest time.
        self._seen = _SeenIds()
        # Any HeartbeatId with TimeGenerated after this mark that is not remembered was never stored.
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

        with self._write_lock:
            self._writer.execute(f'CREATE TABLE IF NOT EXISTS "{WATERMARK_TABLE}" (replica VARCHAR, seq BIGINT)')

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
            cur.execute(f"SET operator_memory_limit = '{self.query_memory}'")
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
        names = [c for c, _ in cols]
        if "TimeGenerated" in present:
            i = names.index("TimeGenerated")
            columns[i], originals = clamp_times(columns[i], received)
            if originals is not None:
                columns[names.index("OriginalTimeGenerated_t")] = originals
        self._insert_columns(table, columns, len(rows))
        return len(rows)

    def _insert_columns(self, table: str, columns: list[list[Any]], n: int, *, locked: bool = False) -> None:
        """One INSERT for a columnar batch: constant columns as scalars, the others as one Arrow table.

        Handing DuckDB Python lists (`UNNEST($1)`) converts value by value, which is what costs
        (5,000 datetimes: ~12 ms); Arrow arrays are built in C and scanned without conversion (~1 ms).
        """
        cols = TABLES[table]
        exprs: list[str] = []
        params: list[Any] = []
        arrays: dict[str, pa.Array] = {}
        for i, ((_, typ), values) in enumerate(zip(cols, columns, strict=True)):
            first = values[0] if values else None
            # A column with one value in the whole batch (defaults, NULLs) goes as one scalar.
            if values and first is not None and not isinstance(first, list | dict) and values.count(first) == n:
                params.append(first)
                exprs.append(f"${len(params)}::{typ}")
            elif first is None and values.count(None) == n:
                exprs.append(f"NULL::{typ}")
            else:
                arrays[f"c{i}"] = _arrow_array(values, typ)
                exprs.append(f"c{i}::{typ}")
        if arrays:
            select = f"SELECT {', '.join(exprs)} FROM {_BATCH}"
        else:  # keep the row count
            arrays["__n"] = pa.nulls(n, pa.bool_())
            select = f"SELECT {', '.join(exprs)} FROM {_BATCH}"
        names = ", ".join(f'"{c}"' for c, _ in cols)
        sql = f'INSERT INTO "{table}" ({names}) {select}'
        batch = pa.table(arrays)
        if locked:
            self._execute_batch(sql, params, batch)
            return
        with self._write_lock:
            self._execute_batch(sql, params, batch)

    def _execute_batch(self, sql: str, params: list[Any], batch: pa.Table) -> None:
        if self._closed:
            raise RuntimeError("telemetry store is closed")
        self._writer.register(_BATCH, batch)
        try:
            self._writer.execute(sql, params)
        finally:
            self._writer.unregister(_BATCH)

    def insert_heartbeats(self, rows: Sequence[Mapping[str, Any]]) -> tuple[int, int]:
        """Insert heartbeat dict rows (TimeGenerated parsed or ISO), dropping HeartbeatIds already stored."""
        names = {k for row in rows for k in row}
        n = len(rows)
        columns = {name: [row.get(name) for row in rows] for name in names}
        times = [to_naive_utc(t) or utcnow() for t in columns.get("TimeGenerated", [None] * n)]
        columns["TimeGenerated"] = times
        return self.insert_heartbeat_columns(columns, n, columns.get("HeartbeatId"), times)

    def insert_heartbeat_columns(
        self, columns: Mapping[str, list[Any]], n: int, ids: list[Any] | None, times: list[datetime]
    ) -> tuple[int, int]:
        """Insert a columnar heartbeat batch, dropping HeartbeatIds already stored. Returns (inserted, duplicates).

        The common batch (fresh ids, newer than the dedupe watermark) takes no per-row
        Python work here: set operations find clashes, and only a batch that has one
        is filtered row by row (checking the table for ids older than the in-memory set).
        """
        if n == 0:
            return 0, 0
        received = utcnow()
        times, originals = clamp_times(times, received)
        if originals is not None:
            columns = {**columns, "TimeGenerated": times, "OriginalTimeGenerated_t": originals}
        with self._write_lock:  # the seen-set, the check and the insert must agree
            if self._closed:
                raise RuntimeError("telemetry store is closed")
            keep: list[int] | None = None
            if ids is not None:
                distinct = set(ids)
                if len(distinct) != n or self._seen.intersects(distinct) or min(times) <= self._dedupe_watermark:
                    keep = self._fresh_indices(ids, times)
            if keep is not None:
                columns = {k: [v[i] for i in keep] for k, v in columns.items()}
                kept_times = [times[i] for i in keep]
                kept_ids = [ids[i] for i in keep] if ids is not None else None
                inserted = len(keep)
            else:
                kept_times, kept_ids, inserted = times, ids, n
            if inserted:
                self._insert_columns(
                    "Heartbeat", self._column_lists("Heartbeat", columns, inserted, received), inserted, locked=True
                )
                if kept_ids is not None:
                    self._remember_batch(kept_ids, kept_times)
        return inserted, n - inserted

    def _fresh_indices(self, ids: list[Any], times: list[datetime]) -> list[int]:
        """Rows whose HeartbeatId is new (not in this batch before, not remembered, not stored)."""
        keep: list[int] = []
        batch_ids: set[str] = set()
        old_ids: list[str] = []
        old_times: list[datetime] = []
        for i, (hid, t) in enumerate(zip(ids, times, strict=True)):
            if not hid:
                keep.append(i)
                continue
            if hid in self._seen or hid in batch_ids:
                continue
            batch_ids.add(hid)
            if t <= self._dedupe_watermark:
                old_ids.append(hid)
                old_times.append(t)
            keep.append(i)
        if old_ids:
            stored = self._stored_ids(old_ids, old_times)
            if stored:
                keep = [i for i in keep if not ids[i] or ids[i] not in stored]
        return keep

    def _remember_batch(self, ids: list[Any], times: list[datetime]) -> None:
        fresh = set(ids)
        fresh.discard(None)
        fresh.discard("")
        forgotten = self._seen.add(fresh, max(times))
        if forgotten is not None and forgotten > self._dedupe_watermark:
            # We no longer know which ids at or before the newest forgotten time are stored.
            self._dedupe_watermark = forgotten

    def _column_lists(
        self, table: str, columns: Mapping[str, list[Any]], n: int, received: datetime
    ) -> list[list[Any]]:
        """Per-column value lists in table order: defaults for absent columns, coerced to the column types."""
        defaults = TABLE_DEFAULTS.get(table, {})
        out: list[list[Any]] = []
        for name, typ in TABLES[table]:
            default = defaults.get(name)
            if name == "_TimeReceived":
                out.append([received] * n)
                continue
            values = columns.get(name)
            if values is None:
                out.append([default] * n)
                continue
            first = values[0]
            if values.count(first) == n:  # one value for the whole batch
                if default is not None and (first is None or first == ""):
                    first = default
                out.append(_coerce_column([first], typ) * n)
                continue
            if default is not None and (None in values or "" in values):
                values = [default if v is None or v == "" else v for v in values]
            out.append(_coerce_column(values, typ))
        return out

    def _stored_ids(self, ids: list[str], times: list[datetime | None]) -> set[str]:
        known = [t for t in times if t is not None]
        where = ""
        params: list[Any] = [ids]
        if known and len(known) == len(times):
            where = ' AND "TimeGenerated" BETWEEN $2 AND $3'
            params += [min(known), max(known)]
        sql = f'SELECT "HeartbeatId" FROM "Heartbeat" WHERE "HeartbeatId" IN (SELECT UNNEST($1)){where}'
        return {r[0] for r in self._writer.execute(sql, params).fetchall()}

    # -- forwarded batches (replicas -> collector) ---------------------------

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One DuckDB transaction over every insert made inside it, by this thread only (holds the write lock).

        On an error everything is rolled back, and the HeartbeatId memory is reset so that
        ids of rolled-back rows are looked up in the table again rather than taken as stored.
        """
        with self._write_lock:
            if self._closed:
                raise RuntimeError("telemetry store is closed")
            self._writer.execute("BEGIN TRANSACTION")
            try:
                yield
            except BaseException:
                self._writer.execute("ROLLBACK")
                newest = [t for t in (self._seen.current_newest, self._seen.previous_newest) if t is not None]
                self._dedupe_watermark = max([utcnow(), self._dedupe_watermark, *newest])
                self._seen = _SeenIds(self._seen.half * 2)
                raise
            self._writer.execute("COMMIT")

    def watermarks(self) -> dict[str, int]:
        """The newest forwarded record applied, per replica id."""
        with self._write_lock:
            found = self._writer.execute(f'SELECT replica, max(seq) FROM "{WATERMARK_TABLE}" GROUP BY ALL').fetchall()
        return {r: int(s) for r, s in found}

    def set_watermark(self, replica: str, seq: int) -> None:
        """Inside `transaction()`: the replica's records up to `seq` are applied."""
        with self._write_lock:
            row = self._writer.execute(
                f'UPDATE "{WATERMARK_TABLE}" SET seq = $2 WHERE replica = $1', [replica, seq]
            ).fetchone()
            if not row or not row[0]:
                self._writer.execute(f'INSERT INTO "{WATERMARK_TABLE}" VALUES ($1, $2)', [replica, seq])

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
                row = self._writer.execute(f'DELETE FROM "{table}" WHERE "TimeGenerated" < $1', [cutoff]).fetchone()
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


class _SeenIds:
    """Bounded memory of stored HeartbeatIds: two generations of sets, each with its newest TimeGenerated."""

    def __init__(self, capacity: int = SEEN_IDS_CAPACITY) -> None:
        self.half = max(1, capacity // 2)
        self.current: set[str] = set()
        self.current_newest: datetime | None = None
        self.previous: set[str] = set()
        self.previous_newest: datetime | None = None

    def __contains__(self, hid: object) -> bool:
        return hid in self.current or hid in self.previous

    def __len__(self) -> int:
        return len(self.current) + len(self.previous)

    def intersects(self, ids: set[Any]) -> bool:
        return not (self.current.isdisjoint(ids) and self.previous.isdisjoint(ids))

    def add(self, ids: set[str], newest: datetime) -> datetime | None:
        """Remember *ids*; returns the newest time of a generation forgotten to make room, if any."""
        forgotten = None
        if len(self.current) + len(ids) > self.half and self.current:
            forgotten = self.previous_newest if self.previous else None
            self.previous, self.previous_newest = self.current, self.current_newest
            self.current, self.current_newest = set(), None
        self.current |= ids
        if self.current_newest is None or newest > self.current_newest:
            self.current_newest = newest
        return forgotten


_BATCH = "__outpost_batch"
_ARROW_TYPES = {
    "TIMESTAMP": pa.timestamp("us"),
    "VARCHAR": pa.string(),
    "JSON": pa.string(),
    "DOUBLE": pa.float64(),
    "BIGINT": pa.int64(),
    "BOOLEAN": pa.bool_(),
}


def _arrow_array(values: list[Any], typ: str) -> pa.Array:
    """A coerced column as an Arrow array of its DuckDB type."""
    return pa.array(values, _ARROW_TYPES.get(typ))


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
