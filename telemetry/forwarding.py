"""A replica's telemetry (`outpost server --collector-url URL`): everything goes to the one collector.

`Forwarder` has the ingestion interface of `telemetry.collector.Collector` (the API
router, the control-plane observer and the span exporter cannot tell them apart),
but stores nothing itself: each heartbeat batch, diagnose report, OTLP batch, job
log/stream row batch, server span batch and audit row becomes a record in a durable
spool (telemetry/spool.py) in the replica's data directory, and a sender thread posts
the records, oldest first, to the collector's `POST /api/v1/telemetry/forward`.

- At least once: a record leaves the spool only when the collector acknowledged it.
- No duplicates: the collector commits, with the rows, the newest seq it applied for
  this spool's replica id and skips anything at or below it; heartbeat rows keep their
  HeartbeatId (one is added where an agent sent none), which the collector also dedupes.
- Collector unreachable: records wait in the spool (bounded: the oldest are dropped,
  with a log line), one log line when forwarding stops and one when it resumes.

Control-plane events (job status, streams) arrive on the event loop and go through a
memory queue flushed to the spool every 0.2 s; requests (heartbeats, diagnostics,
OTLP) are spooled before they are answered.
"""

from __future__ import annotations

import base64
import logging
import queue
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
from prometheus_client import Counter
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector as _PromCollector

from outpost import contract
from outpost.observer import SnapshotProvider
from telemetry import rows
from telemetry.collector import _Observer, heartbeat_skew
from telemetry.metrics import CollectorMetrics
from telemetry.spool import SPOOL_FILE, Spool

log = logging.getLogger(__name__)

FORWARD = f"{contract.API}/telemetry/forward"
SPOOL_FLUSH_S = 0.2
ROWS_PER_RECORD = 1000
MAX_RECORDS_PER_REQUEST = 500
MAX_REQUEST_BYTES = 4 * 1024 * 1024
BACKOFF_S = (0.5, 5.0)
REQUEST_TIMEOUT_S = 30.0


_TABLE_OF = {"heartbeat": "Heartbeat", "diagnostics": "DiagnosticResults"}


def _default(value: Any) -> Any:
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode()
    return str(value)


def encode(record: Mapping[str, Any]) -> bytes:
    return orjson.dumps(record, default=_default, option=orjson.OPT_NON_STR_KEYS)


class _ForwardMetrics(_PromCollector):
    def __init__(self, fwd: Forwarder) -> None:
        self.fwd = fwd

    def collect(self) -> list[Metric]:
        buffered = GaugeMetricFamily(
            "outpost_telemetry_forward_buffered_records", "Telemetry records waiting for the collector"
        )
        buffered.add_metric([], float(self.fwd.spool.count))
        size = GaugeMetricFamily("outpost_telemetry_forward_buffered_bytes", "Size of the records waiting")
        size.add_metric([], float(self.fwd.spool.bytes))
        up = GaugeMetricFamily("outpost_telemetry_forward_up", "1 while the collector takes this replica's records")
        up.add_metric([], 0.0 if self.fwd.failing else 1.0)
        dropped = CounterMetricFamily(
            "outpost_telemetry_forward_dropped_records", "Records dropped for room (buffer full)"
        )
        dropped.add_metric([], float(self.fwd.spool.dropped))
        return [buffered, size, up, dropped]


class Forwarder:
    def __init__(
        self,
        data_dir: Path,
        collector_url: str,
        *,
        token: str,
        ca_file: str | None = None,
        snapshot: SnapshotProvider | None = None,
        tls_cert_path: Path | None = None,
        stale_after_s: float = 180.0,
        max_buffer_bytes: int = 256 * 1024 * 1024,
    ) -> None:
        from outpost.http import ssl_context

        self.url = collector_url.rstrip("/")
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.metrics = CollectorMetrics(snapshot=snapshot, stale_after_s=stale_after_s, tls_cert_path=tls_cert_path)
        self.observer = _Observer(self)  # type: ignore[arg-type]  # same observer, forwarding sink
        self.spool = Spool(self.data_dir / SPOOL_FILE, max_bytes=max_buffer_bytes)
        self.metrics.registry.register(_ForwardMetrics(self))
        self.forwarded = Counter(
            "outpost_telemetry_forwarded_rows",
            "Rows this replica took for the collector (spooled), by table",
            ["table"],
            registry=self.metrics.registry,
        )
        self.rejected = Counter(
            "outpost_telemetry_forward_rejected_records",
            "Records the collector refused (named in the replica's log)",
            registry=self.metrics.registry,
        )
        # httpx logs every request at INFO: a line per forward batch would drown the server's log.
        logging.getLogger("httpx").setLevel(max(logging.WARNING, logging.getLogger("httpx").level))
        self._client = httpx.Client(
            base_url=self.url,
            timeout=REQUEST_TIMEOUT_S,
            verify=ssl_context(ca_file),
            trust_env=True,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        self._queue: queue.SimpleQueue[tuple[str, list[dict[str, Any]]]] = queue.SimpleQueue()
        self._flush_lock = threading.Lock()
        self._acked = 0
        self._sent = threading.Condition()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._batch_limit = MAX_RECORDS_PER_REQUEST
        self.failing: str | None = None  # why the collector does not take records, while it does not

    # -- lifecycle -----------------------------------------------------------------

    def start(self) -> None:
        if self._threads:
            return
        for target, name in ((self._spool_loop, "telemetry-spool"), (self._send_loop, "telemetry-forward")):
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self._threads.append(t)
        if self.spool.count:
            log.info(
                "%d telemetry records buffered from an earlier run: forwarding them to %s", self.spool.count, self.url
            )

    def close(self) -> None:
        self.flush()
        self._stop.set()
        self._wake.set()
        for t in self._threads:
            t.join(timeout=10)
        self._threads.clear()
        self.flush()
        if self.spool.count and self.failing is None:  # one last try, briefly; the rest waits on disk
            deadline = time.monotonic() + 2.0
            while self.spool.count and time.monotonic() < deadline and self._send_once():
                pass
        if self.spool.count:
            log.info("%d telemetry records stay buffered in %s until the next start", self.spool.count, self.spool.path)
        self._client.close()
        self.spool.close()

    # -- ingestion (Collector's interface) -----------------------------------------

    def _spool(self, records: list[dict[str, Any]]) -> None:
        self.spool.append([encode(r) for r in records])
        self._wake.set()
        for r in records:
            table = _TABLE_OF.get(r["kind"]) or r.get("table")
            if table:
                self.forwarded.labels(table).inc(len(r.get("rows") or r.get("results") or ()))

    def enqueue(self, table: str, items: list[dict[str, Any]]) -> None:
        self._queue.put((table, items))

    def flush(self) -> None:
        """Move queued control-plane rows into the spool (one record per table and 1,000 rows)."""
        with self._flush_lock:
            batches: dict[str, list[dict[str, Any]]] = {}
            while True:
                try:
                    table, items = self._queue.get_nowait()
                except queue.Empty:
                    break
                batches.setdefault(table, []).extend(items)
            records = [
                {"kind": "rows", "table": table, "rows": items[i : i + ROWS_PER_RECORD]}
                for table, items in batches.items()
                for i in range(0, len(items), ROWS_PER_RECORD)
            ]
            if records:
                self._spool(records)

    def ingest_heartbeats(
        self,
        payload_rows: Sequence[Any],
        *,
        worker: str,
        group: str,
        sent_at: Any = None,
        received: datetime | None = None,
    ) -> tuple[int, int]:
        """Validate as the collector would (HeartbeatRowError for a bad batch), then spool. Duplicates
        are dropped by the collector, so this answers (rows, 0)."""
        batch = rows.heartbeat_columns(payload_rows, worker=worker, group=group)
        now = received or datetime.now(UTC)
        if now.tzinfo is None:
            now = now.replace(tzinfo=UTC)
        items = [r if r.get("HeartbeatId") else {**r, "HeartbeatId": str(uuid.uuid4())} for r in payload_rows]
        if batch.n:
            self.metrics.fleet.heartbeat(
                worker, group, now.timestamp(), heartbeat_skew(batch, sent_at, now), rows.latest_capacity(batch)
            )
            self._spool(
                [
                    {
                        "kind": "heartbeat",
                        "worker": worker,
                        "group": group,
                        "rows": items,
                        "sent_at": sent_at,
                        "received": now.isoformat(),
                    }
                ]
            )
        return batch.n, 0

    def ingest_perf(self, payload: Any, *, worker: str, group: str) -> int:
        """As the collector's: validated here, stored there (spooled as rows), gauges on this replica."""
        out = rows.perf_rows(payload, worker=worker, group=group)
        self.enqueue("Perf", out)
        self.metrics.fleet.perf_sample(worker, group, out)
        return len(out)

    def ingest_diagnostics(
        self, results: Sequence[Mapping[str, Any]], *, worker: str, group: str, time_: Any = None
    ) -> int:
        out, failing = rows.diagnostic_rows(results, worker=worker, group=group, time_=time_)
        self.metrics.fleet.diagnose(worker, group, failing)
        when = time_ or datetime.now(UTC).isoformat()
        self._spool([{"kind": "diagnostics", "worker": worker, "group": group, "results": list(results), "time": when}])
        return len(out)

    def ingest_rows(self, table: str, items: list[dict[str, Any]], *, worker: str | None = None) -> int:
        self._spool(
            [
                {"kind": "rows", "table": table, "rows": items[i : i + ROWS_PER_RECORD], "worker": worker}
                for i in range(0, len(items), ROWS_PER_RECORD)
            ]
        )
        return len(items)

    def audit(self, time_: datetime, operation: str, target: str, caller: str, result: str = "Succeeded") -> None:
        self.enqueue("AzureDiagnostics", [rows.audit_row(time_, operation, target, caller, result)])

    def worker_removed(self, name: str, group: str) -> None:
        self.metrics.fleet.remove(name, group)
        self.flush()  # keep order: rows the worker produced go before its removal
        self._spool([{"kind": "worker_removed", "name": name, "group": group}])

    def drain(self, timeout_s: float) -> bool:
        """Wait (bounded) until what was reported so far reached the collector, so a query right
        after a change sees it. False when the collector is failing or the time ran out."""
        self.flush()
        target = self.spool.last_seq
        deadline = time.monotonic() + timeout_s
        with self._sent:
            while self._acked < target and self.failing is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._wake.set()
                self._sent.wait(left)
        return self._acked >= target

    # -- background ----------------------------------------------------------------

    def _spool_loop(self) -> None:
        while not self._stop.wait(SPOOL_FLUSH_S):
            try:
                self.flush()
            except Exception:  # keep going: the next round retries what it can
                log.exception("telemetry spool write failed")

    def _send_loop(self) -> None:
        backoff = BACKOFF_S[0]
        while not self._stop.is_set():
            try:
                ok = self._send_once()
            except Exception:  # a bug here must not end forwarding for good
                log.exception("telemetry forwarding failed")
                ok = False
            if ok is None:  # nothing to send
                self._wake.wait(0.5)
                self._wake.clear()
                backoff = BACKOFF_S[0]
            elif ok:
                backoff = BACKOFF_S[0]
            else:
                self._stop.wait(backoff)
                backoff = min(backoff * 2, BACKOFF_S[1])

    def _send_once(self) -> bool | None:
        """Post the oldest records once: True if the collector took them, False if not, None if none."""
        batch = self.spool.peek(self._batch_limit, MAX_REQUEST_BYTES)
        if not batch:
            return None
        body = b"".join(
            [
                b'{"replica":"',
                self.spool.replica.encode(),
                b'","records":[',
                b",".join(b'{"seq":%d,"record":%s}' % (seq, raw) for seq, raw in batch),
                b"]}",
            ]
        )
        try:
            resp = self._client.post(FORWARD, content=body)
        except httpx.HTTPError as exc:
            return self._failed(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)
        if resp.status_code == 413 and len(batch) > 1:
            self._batch_limit = max(1, len(batch) // 2)
            return True  # retry at once, smaller
        if resp.status_code == 413:
            log.error("collector refused telemetry record %d as too large; dropping it", batch[0][0])
            self.rejected.inc()
        elif resp.status_code != 200:
            hint = " (check --collector-token)" if resp.status_code in (401, 403) else ""
            return self._failed(f"HTTP {resp.status_code}{hint}: {_detail(resp)[:200]}")
        else:
            for item in resp.json().get("rejected") or []:
                self.rejected.inc()
                log.warning("collector rejected telemetry record %s: %s", item.get("seq"), item.get("error"))
        last = batch[-1][0]
        self.spool.ack(last)
        self._batch_limit = min(MAX_RECORDS_PER_REQUEST, self._batch_limit * 2)
        if self.failing is not None:
            log.warning(
                "collector at %s reachable again: forwarding resumed (%d records still buffered)",
                self.url,
                self.spool.count,
            )
            self.failing = None
        with self._sent:
            self._acked = last
            self._sent.notify_all()
        return True

    def _failed(self, reason: str) -> bool:
        if self.failing is None:
            log.warning(
                "collector at %s unreachable (%s): buffering telemetry in %s (%d records so far)",
                self.url,
                reason,
                self.spool.path,
                self.spool.count,
            )
        self.failing = reason
        with self._sent:
            self._sent.notify_all()
        return False


def _detail(resp: httpx.Response) -> str:
    try:
        return contract.error_detail(resp.json())
    except ValueError:
        return resp.text
