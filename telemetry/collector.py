"""The collector: store + metrics + the control-plane observer, with background upkeep.

Composition (server or standalone `outpost collector`)::

    collector = Collector(data_dir, retention_days=30, snapshot=provider, tls_cert_path=cert)
    collector.start()
    app.include_router(build_router(collector, require_admin=..., require_worker=...))
    ...
    collector.close()

Observer events are queued and written in batches by a background thread (or by
`flush()`, which every query calls first so a reader sees what was reported).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb

from outpost.contract import FINAL_STATUSES, StreamRecord
from outpost.observer import JobEvent, SnapshotProvider, WorkerIdentity
from telemetry import kql, rows
from telemetry.metrics import CollectorMetrics
from telemetry.store import (
    DB_FILE,
    DEFAULT_QUERY_MEMORY,
    DEFAULT_QUERY_THREADS,
    TABLES,
    TelemetryStore,
    to_naive_utc,
    utcnow,
)

log = logging.getLogger(__name__)

FLUSH_INTERVAL_S = 0.2
RETENTION_INTERVAL_S = 3600.0
MAX_CONCURRENT_QUERIES = 4
DIAGNOSE_STATUSES = rows.DIAGNOSE_STATUSES
HEARTBEAT_SUBSCRIPTION = rows.SUBSCRIPTION
LOSS_OUTCOMES = ("requeued", "suspended", "failed", "stopped")


class _Observer:
    """ControlPlaneObserver: job status -> JobLogs, streams -> JobStreams, counters and histograms."""

    def __init__(self, collector: Collector) -> None:
        self._c = collector
        self._groups: set[str] = set()  # groups whose jobs_lost series exist

    def on_job_status(self, event: JobEvent) -> None:
        c = self._c
        status = str(event.status)
        c.metrics.jobs.labels(event.runbook, event.group, status).inc()
        if status == "Running" and event.created_at and event.started_at:
            wait = (event.started_at - event.created_at).total_seconds()
            c.metrics.queue_wait.labels(event.runbook, event.group).observe(max(0.0, wait))
        if status in FINAL_STATUSES and event.started_at:
            end = event.ended_at or event.time
            c.metrics.duration.labels(event.runbook, event.group).observe(
                max(0.0, (end - event.started_at).total_seconds())
            )
        if event.resources:
            res = event.resources
            c.metrics.job_cpu.labels(event.runbook, event.group).observe(res["cpu_user_s"] + res["cpu_system_s"])
            c.metrics.job_peak_rss.labels(event.runbook, event.group).observe(res["peak_rss_bytes"])
        if event.group not in self._groups:  # every outcome from 0, so that rate() sees the first loss
            self._groups.add(event.group)
            for outcome in LOSS_OUTCOMES:
                c.metrics.jobs_lost.labels(event.group, outcome)
        if event.lost:
            outcome = "requeued" if status == "New" else status.lower()
            c.metrics.jobs_lost.labels(event.group, outcome).inc()
        c.enqueue("AzureDiagnostics", [rows.joblog_row(event)])

    def on_job_streams(self, event: JobEvent, records: Sequence[StreamRecord]) -> None:
        if records:
            self._c.enqueue("AzureDiagnostics", rows.stream_rows(event, records))

    def on_poll(self, worker: WorkerIdentity, got_job: bool) -> None:
        m = self._c.metrics
        m.polls.labels(worker.group, "job" if got_job else "empty").inc()
        if got_job:
            m.dispatches.labels(worker.group).inc()

    def on_worker_removed(self, name: str, group: str) -> None:
        self._c.worker_removed(name, group)

    def on_audit(self, operation: str, target: str, caller: str, result: str) -> None:
        self._c.audit(datetime.now(UTC), operation, target, caller, result)


class Collector:
    def __init__(
        self,
        data_dir: Path,
        *,
        retention_days: int = 30,
        query_timeout_s: float = 30.0,
        snapshot: SnapshotProvider | None = None,
        tls_cert_path: Path | None = None,
        stale_after_s: float = 180.0,
        memory_limit: str | None = None,
        query_memory: str = DEFAULT_QUERY_MEMORY,
        query_threads: int = DEFAULT_QUERY_THREADS,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.retention_days = retention_days
        self.query_timeout_s = query_timeout_s
        self.stale_after_s = stale_after_s
        self.store = TelemetryStore(
            self.data_dir / DB_FILE, memory_limit=memory_limit, query_memory=query_memory, query_threads=query_threads
        )
        self.metrics = CollectorMetrics(snapshot=snapshot, stale_after_s=stale_after_s, tls_cert_path=tls_cert_path)
        self.observer = _Observer(self)
        self._queue: queue.SimpleQueue[tuple[str, list[dict[str, Any]]]] = queue.SimpleQueue()
        self._flush_lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._query_slots = threading.BoundedSemaphore(MAX_CONCURRENT_QUERIES)
        self._forward_lock = threading.Lock()
        self._watermarks: dict[str, int] | None = None
        self._restore_fleet()

    # -- lifecycle -----------------------------------------------------------

    def start(self) -> None:
        if self._threads:
            return
        for target, name in ((self._flush_loop, "telemetry-flush"), (self._retention_loop, "telemetry-retention")):
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self._threads.append(t)

    def close(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=10)
        self._threads.clear()
        self.flush()
        self.store.close()

    def _flush_loop(self) -> None:
        while not self._stop.wait(FLUSH_INTERVAL_S):
            try:
                self.flush()
            except Exception:  # keep flushing; the next round retries what it can
                log.exception("telemetry flush failed")

    def _retention_loop(self) -> None:
        while not self._stop.is_set():
            try:
                removed = self.store.apply_retention(self.retention_days)
                if any(removed.values()):
                    log.info("telemetry retention removed %s", removed)
            except Exception:
                log.exception("telemetry retention failed")
            if self._stop.wait(RETENTION_INTERVAL_S):
                return

    def _restore_fleet(self) -> None:
        """After a restart, worker freshness comes from the stored heartbeats."""
        with self.store.reader() as cur:
            found = cur.execute(
                'SELECT "Computer", "WorkerGroup_s", max("_TimeReceived") FROM "Heartbeat" '
                'WHERE "_TimeReceived" > $1 GROUP BY ALL',
                [utcnow() - timedelta(days=7)],
            ).fetchall()
        for name, group, received in found:
            if name and group and received:
                self.metrics.fleet.heartbeat(name, group, received.replace(tzinfo=UTC).timestamp(), None)

    # -- ingestion -------------------------------------------------------------

    def enqueue(self, table: str, items: list[dict[str, Any]]) -> None:
        self._queue.put((table, items))

    def flush(self) -> None:
        with self._flush_lock:
            batches: dict[str, list[dict[str, Any]]] = {}
            while True:
                try:
                    table, items = self._queue.get_nowait()
                except queue.Empty:
                    break
                batches.setdefault(table, []).extend(items)
            for table, items in batches.items():
                n = self.store.insert_rows(table, items)
                self.metrics.rows.labels(table).inc(n)

    def ingest_heartbeats(
        self,
        payload_rows: Sequence[Any],
        *,
        worker: str,
        group: str,
        sent_at: Any = None,
        received: datetime | None = None,
    ) -> tuple[int, int]:
        """Store a worker's heartbeat batch (deduplicated by HeartbeatId); returns (inserted, duplicates).

        Raises rows.HeartbeatRowError for a malformed batch.
        """
        return self._store_heartbeats([(self._heartbeat_batch(payload_rows, worker, group), sent_at, received)])

    @staticmethod
    def _heartbeat_batch(payload_rows: Sequence[Any], worker: str, group: str) -> rows.HeartbeatBatch:
        resource = f"/subscriptions/{HEARTBEAT_SUBSCRIPTION}/resourcegroups/{group}/providers/outpost/workers/{worker}"
        return rows.heartbeat_columns(
            payload_rows,
            worker=worker,
            group=group,
            defaults={
                "ResourceId": resource,
                "Resource": worker,
                "ResourceGroup": group,
                "ResourceProvider": "Outpost",
                "ResourceType": "workers",
                "SubscriptionId": HEARTBEAT_SUBSCRIPTION,
            },
            forced={"_ResourceId": resource},
        )

    def _store_heartbeats(self, batches: list[tuple[rows.HeartbeatBatch, Any, datetime | None]]) -> tuple[int, int]:
        """Several workers' batches (batch, sent_at, received) in one INSERT: one DuckDB insert costs
        milliseconds whatever its size, so a replica's backlog goes in at once, not row by row."""
        if len(batches) == 1:
            b = batches[0][0]
            columns, n, ids, times = b.columns, b.n, b.ids, b.times
        else:
            columns, n, ids, times = rows.concat_heartbeats([b for b, _, _ in batches])
        inserted, dupes = self.store.insert_heartbeat_columns(columns, n, ids, times)
        self.metrics.rows.labels("Heartbeat").inc(inserted)
        if dupes:
            self.metrics.duplicates.labels("Heartbeat").inc(dupes)
        for batch, sent_at, received in batches:
            now = received or datetime.now(UTC)
            if now.tzinfo is None:
                now = now.replace(tzinfo=UTC)
            if batch.n:
                worker, group = batch.columns["Computer"][0], batch.columns["WorkerGroup_s"][0]
                self.metrics.fleet.heartbeat(
                    worker, group, now.timestamp(), heartbeat_skew(batch, sent_at, now), rows.latest_capacity(batch)
                )
        return inserted, dupes

    def ingest_perf(self, payload: Any, *, worker: str, group: str) -> int:
        """A worker's Perf rows (sent with its heartbeat): stored, and its per-worker gauges updated."""
        out = rows.perf_rows(payload, worker=worker, group=group)
        self.enqueue("Perf", out)
        self.metrics.fleet.perf_sample(worker, group, out)
        return len(out)

    def ingest_diagnostics(
        self, results: Sequence[Mapping[str, Any]], *, worker: str, group: str, time_: Any = None
    ) -> int:
        out, failing = rows.diagnostic_rows(results, worker=worker, group=group, time_=time_)
        n = self.store.insert_rows("DiagnosticResults", out)
        self.metrics.rows.labels("DiagnosticResults").inc(n)
        self.metrics.fleet.diagnose(worker, group, failing)
        return n

    def ingest_rows(self, table: str, items: list[dict[str, Any]], *, worker: str | None = None) -> int:
        n = self.store.insert_rows(table, items)
        self.metrics.rows.labels(table).inc(n)
        if table == "OTelMetrics":  # the latest points are re-exposed on /metrics too
            self.metrics.otlp.update(items, worker=worker)
        return n

    def worker_removed(self, name: str, group: str) -> None:
        self.metrics.fleet.remove(name, group)
        # What the stale-worker KQL rule reads: heartbeats before this no longer count.
        self.enqueue("AzureDiagnostics", [rows.worker_removed_row(datetime.now(UTC), name, group)])

    # -- records forwarded by replicas (telemetry/forwarding.py) ----------------

    def apply_forwarded(self, replica: str, records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """Apply one replica's records in `seq` order, each at most once.

        The replica's watermark (its newest applied seq) is committed in the same DuckDB
        transaction as the rows, so a batch re-sent after a lost answer is skipped, never
        stored twice. A record that cannot be stored is rejected (named in the answer) and
        passed over, so one bad record cannot hold a replica's buffer back forever.
        """
        with self._forward_lock:
            if self._watermarks is None:
                self._watermarks = self.store.watermarks()
            mark = self._watermarks.get(replica, 0)
            fresh = sorted((r for r in records if int(r["seq"]) > mark), key=lambda r: int(r["seq"]))
            rejected: list[dict[str, Any]] = []
            if fresh:
                try:
                    with self.store.transaction():
                        rejected = self._apply_many(fresh)
                        self.store.set_watermark(replica, int(fresh[-1]["seq"]))
                except duckdb.Error:  # find the record DuckDB refuses: one transaction each
                    rejected = []
                    for r in fresh:
                        try:
                            with self.store.transaction():
                                if (x := self._apply_one(r)) is not None:
                                    rejected.append(x)
                                self.store.set_watermark(replica, int(r["seq"]))
                        except duckdb.Error as exc:
                            rejected.append({"seq": r["seq"], "error": f"{type(exc).__name__}: {exc}"[:500]})
                            with self.store.transaction():
                                self.store.set_watermark(replica, int(r["seq"]))
                mark = int(fresh[-1]["seq"])
                self._watermarks[replica] = mark
        for r in rejected:
            log.warning("replica %s: forwarded record %s rejected: %s", replica, r["seq"], r["error"])
        return {"watermark": mark, "applied": len(fresh) - len(rejected), "duplicates": len(records) - len(fresh),
                "rejected": rejected}  # fmt: skip

    def _apply_many(self, records: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Inside a transaction: heartbeats of all records in one insert, rows one insert per table."""
        rejected: list[dict[str, Any]] = []
        beats: list[tuple[rows.HeartbeatBatch, Any, datetime | None]] = []
        tables: dict[str, list[dict[str, Any]]] = {}
        for r in records:
            try:
                if r.get("kind") == "heartbeat":
                    batch = self._heartbeat_batch(r["rows"], str(r["worker"]), str(r["group"]))
                    if batch.n:
                        beats.append((batch, r.get("sent_at"), to_aware_utc(r.get("received"))))
                    continue
                if r.get("kind") == "rows" and r.get("table") in TABLES and r["table"] != "OTelMetrics":
                    tables.setdefault(r["table"], []).extend(rows.parse_times(r["table"], r["rows"]))
                    continue
            except (ValueError, KeyError, TypeError, AttributeError) as exc:
                rejected.append({"seq": r.get("seq"), "error": f"{type(exc).__name__}: {exc}"[:500]})
                continue
            if (x := self._apply_one(r)) is not None:  # diagnostics, OTLP metrics (per worker), removals
                rejected.append(x)
        if beats:
            self._store_heartbeats(beats)
        for table, items in tables.items():
            self.ingest_rows(table, items)
        return rejected

    def _apply_one(self, record: Mapping[str, Any]) -> dict[str, Any] | None:
        """Store one forwarded record; a record that is not valid -> {"seq", "error"} (DuckDB errors propagate)."""
        try:
            kind = record["kind"]
            if kind == "heartbeat":
                self.ingest_heartbeats(
                    record["rows"],
                    worker=str(record["worker"]),
                    group=str(record["group"]),
                    sent_at=record.get("sent_at"),
                    received=to_aware_utc(record.get("received")),
                )
            elif kind == "diagnostics":
                self.ingest_diagnostics(
                    record["results"],
                    worker=str(record["worker"]),
                    group=str(record["group"]),
                    time_=record.get("time"),
                )
            elif kind == "rows":
                table = record["table"]
                if table not in TABLES:
                    raise ValueError(f"unknown table {table!r}")
                self.ingest_rows(table, rows.parse_times(table, record["rows"]), worker=record.get("worker"))
            elif kind == "worker_removed":
                self.worker_removed(str(record["name"]), str(record["group"]))
            else:
                raise ValueError(f"unknown record kind {kind!r}")
        except duckdb.Error:
            raise
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            return {"seq": record.get("seq"), "error": f"{type(exc).__name__}: {exc}"[:500]}
        return None

    def audit(self, time_: datetime, operation: str, target: str, caller: str, result: str = "Succeeded") -> None:
        """Record an AuditEvent row (the control plane may call this for runbook/asset changes)."""
        self.enqueue("AzureDiagnostics", [rows.audit_row(time_, operation, target, caller, result)])

    # -- queries ---------------------------------------------------------------

    def tables(self) -> dict[str, list[tuple[str, str]]]:
        return dict(TABLES)

    def query(
        self, text: str, *, timeout_s: float | None = None, max_rows: int = kql.DEFAULT_MAX_ROWS
    ) -> kql.QueryResult:
        """Run KQL; raises kql.QueryError (subclasses) for anything the caller must fix."""
        timeout = self.query_timeout_s if timeout_s is None else min(timeout_s, self.query_timeout_s)
        deadline = time.monotonic() + timeout  # one deadline: waiting for a slot counts too
        self.flush()
        if not self._query_slots.acquire(timeout=max(0.0, deadline - time.monotonic())):
            raise kql.QueryBusyError(
                f"all {MAX_CONCURRENT_QUERIES} query slots stayed busy for {timeout:g} s; try again"
            )
        started = time.monotonic()
        outcome = "error"
        try:
            with self.store.reader() as cur:
                result = kql.run_query(
                    cur,
                    text,
                    tables={t: [c for c, _ in cols] for t, cols in TABLES.items()},
                    timeout_s=timeout,
                    max_rows=max_rows,
                    deadline=deadline,
                )
            outcome = "ok"
            return result
        except kql.QueryTimeoutError:
            outcome = "timeout"
            raise
        finally:
            self._query_slots.release()
            self.metrics.queries.labels(outcome).inc()
            self.metrics.query_seconds.observe(time.monotonic() - started)


def to_aware_utc(value: Any) -> datetime | None:
    t = to_naive_utc(value)
    return t.replace(tzinfo=UTC) if t is not None else None


def heartbeat_skew(batch: rows.HeartbeatBatch, sent_at: Any, received: datetime) -> float | None:
    """Agent clock minus server clock: from the batch's sent_at, or the time of its only row."""
    agent_time = to_naive_utc(sent_at)
    if agent_time is None and batch.n == 1:
        agent_time = batch.times[0]
    return None if agent_time is None else (agent_time.replace(tzinfo=UTC) - received).total_seconds()
