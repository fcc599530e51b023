"""The agent's heartbeat: Azure Monitor `Heartbeat` rows, buffered on disk, sent in batches.

Each interval the sender appends one row (with a fresh `HeartbeatId`) to a
bounded on-disk buffer, then posts everything buffered. Rows leave the buffer
only after the server acknowledged them, so an unreachable server costs nothing
but delay; a re-send carries the same `HeartbeatId`s, which the collector
deduplicates. Light imports only: this runs inside `outpost worker run`.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import re
import socket
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from agent.hostname import machine_hostname
from agent.perf import PerfSampler
from outpost import __version__, contract
from outpost.http import ApiError, request
from outpost.state import write_private

log = logging.getLogger("outpost.agent.heartbeat")

BUFFER_FILE = "heartbeat-buffer.jsonl"
COMPUTER_ID_FILE = "source-computer-id"
MAX_BATCH = 1000


def _os_release() -> dict[str, str]:
    for path in ("/etc/os-release", "/usr/lib/os-release"):
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError:
            continue
        out = {}
        for line in text.splitlines():
            key, sep, value = line.partition("=")
            if sep:
                out[key.strip()] = value.strip().strip('"')
        return out
    return {}


def _primary_ip() -> str:
    """The address the OS would use to leave the machine (no packet is sent)."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("192.0.2.1", 9))  # TEST-NET-1: routing lookup only
            return s.getsockname()[0]
    except OSError:
        return "127.0.0.1"


def machine_columns() -> dict[str, Any]:
    """The Heartbeat columns that describe this machine."""
    system = platform.system()
    rel = _os_release()
    if system == "Linux":
        os_name = rel.get("NAME") or "Linux"
        version = rel.get("VERSION_ID") or platform.release()
    else:
        os_name = f"{system} {platform.release()}".strip()
        version = platform.version()
    major, _, minor = version.partition(".")
    return {
        "OSType": "Windows" if system == "Windows" else "Linux",
        "OSName": os_name,
        "OSMajorVersion": major,
        "OSMinorVersion": minor.split(".")[0] if minor else "",
        "ComputerIP": _primary_ip(),
        "Version": __version__,
        "Category": "Direct Agent",
        "ComputerEnvironment": "Non-Azure",
        "Solutions": "outpost",
        "SCAgentChannel": "Direct",
        "IsGatewayInstalled": False,
        "Hostname": machine_hostname(),
    }


class HeartbeatSender:
    """Run in a daemon thread: `threading.Thread(target=sender.run, args=(stop,), daemon=True)`."""

    def __init__(
        self,
        state_dir: Path,
        client: httpx.Client,
        *,
        worker_name: str,
        group: str,
        interval_s: float,
        buffer_limit: int = 10_000,
        capacity: Callable[[], dict[str, Any]] | None = None,
    ) -> None:
        self.state_dir = Path(state_dir)
        self.client = client
        self.worker_name = worker_name
        self.group = group
        self.interval_s = max(0.05, float(interval_s))
        self.buffer_limit = max(1, buffer_limit)
        self.buffer_path = self.state_dir / BUFFER_FILE
        self.capacity = capacity  # the agent's slots and load, merged into each row (docs/sandbox.md)
        self.perf = PerfSampler(worker_name)  # the machine's Perf rows, sent with each beat (best effort)
        self._lock = threading.Lock()
        self._machine = machine_columns()
        self.source_computer_id = self._computer_id()
        self.last_ok: datetime | None = None
        self._failing = False  # in a streak of failed sends: logged once, at its start
        self.last_error: str | None = None

    def _computer_id(self) -> str:
        """Stable per state dir: the same machine keeps its SourceComputerId across restarts."""
        path = self.state_dir / COMPUTER_ID_FILE
        try:
            value = path.read_text(encoding="utf-8").strip()
            if value:
                return value
        except OSError:
            pass
        value = str(uuid.uuid4())
        try:
            write_private(path, value + "\n")
        except OSError as exc:
            log.warning("cannot persist SourceComputerId in %s: %s", path, exc)
        return value

    def make_row(self, now: datetime | None = None) -> dict[str, Any]:
        t = now or datetime.now(UTC)
        row = {k: v for k, v in self._machine.items() if k != "Hostname"}
        row.update(
            {
                "TimeGenerated": t.isoformat().replace("+00:00", "Z"),
                "Computer": self.worker_name,
                "SourceComputerId": self.source_computer_id,
                "WorkerGroup_s": self.group,
                "HeartbeatId": str(uuid.uuid4()),
            }
        )
        if self.capacity is not None:
            row.update(self.capacity())
        return row

    # -- buffer ------------------------------------------------------------------

    def _read_buffer(self) -> list[dict[str, Any]]:
        try:
            lines = self.buffer_path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return []
        except OSError as exc:
            log.warning("cannot read heartbeat buffer %s: %s", self.buffer_path, exc)
            return []
        rows = []
        for line in lines:
            try:
                row = json.loads(line)
            except ValueError:
                continue  # a torn last line after a crash: drop it
            if isinstance(row, dict):
                rows.append(row)
        return rows

    def _write_buffer(self, rows: list[dict[str, Any]]) -> None:
        if not rows:
            self.buffer_path.unlink(missing_ok=True)
            return
        write_private(self.buffer_path, "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in rows))

    def buffered(self) -> int:
        with self._lock:
            return len(self._read_buffer())

    def enqueue(self, row: dict[str, Any]) -> None:
        with self._lock:
            rows = self._read_buffer()
            rows.append(row)
            if len(rows) > self.buffer_limit:  # bounded: the oldest heartbeats matter least
                rows = rows[-self.buffer_limit :]
            self._write_buffer(rows)

    def flush(self, perf: list[dict[str, Any]] | None = None) -> bool:
        """Send everything buffered, oldest first; True when the buffer is empty afterwards.

        `perf` rides along with the first request and is not kept when that fails: a machine's
        load from an hour ago, re-sent after an outage, is worth less than its disk space."""
        while True:
            with self._lock:
                rows = self._read_buffer()
            if not rows:
                return True
            batch = rows[:MAX_BATCH]
            try:
                request(
                    self.client,
                    "POST",
                    contract.AGENT_HEARTBEAT,
                    json={
                        "rows": batch,
                        "sent_at": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
                        **({"perf": perf} if perf else {}),
                    },
                )
                perf = None
            except ApiError as exc:
                self.last_error = exc.message
                if 400 <= exc.status < 500 and exc.status not in (401, 403, 408, 429):
                    # The server will never take these rows: drop them instead of blocking forever.
                    log.error("heartbeat rejected, dropping %d rows: %s", len(batch), exc.message)
                    self._drop(batch)
                    continue
                # Once per outage: the buffer keeps the rows, and the poll loop already said the server is down.
                level = logging.DEBUG if self._failing else logging.WARNING
                self._failing = True
                log.log(level, "heartbeat not delivered (%d buffered): %s", len(rows), exc.message)
                return False
            self._drop(batch)
            self.last_ok = datetime.now(UTC)
            self._failing = False
            self.last_error = None

    def _drop(self, sent: list[dict[str, Any]]) -> None:
        ids = {r.get("HeartbeatId") for r in sent}
        with self._lock:
            self._write_buffer([r for r in self._read_buffer() if r.get("HeartbeatId") not in ids])

    def beat(self) -> bool:
        now = datetime.now(UTC)
        self.enqueue(self.make_row(now))
        return self.flush(self.perf.sample(now))

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                ok = self.beat()
                self._status(ok)
            except Exception:  # the heartbeat thread must outlive any one bad beat
                log.exception("heartbeat failed")
            stop.wait(self.interval_s)

    def _status(self, ok: bool) -> None:
        """Let `outpost diagnose` see heartbeat freshness (status.json, best effort)."""
        from outpost.state import AgentState

        try:
            fields: dict[str, Any] = {"last_heartbeat_attempt": datetime.now(UTC).isoformat(), "pid": os.getpid()}
            if ok:
                fields["last_heartbeat_ok"] = datetime.now(UTC).isoformat()
            AgentState(self.state_dir).update_status(**fields)
        except OSError:
            pass


def _otlp_url(endpoint: str, signal: str) -> str:
    base = endpoint.rstrip("/")
    return base if base.endswith(f"/v1/{signal}") else f"{base}/v1/{signal}"


def _resource(service_name: str, worker: str | None) -> Any:
    from opentelemetry.sdk.resources import Resource

    attrs = {"service.name": service_name, "service.version": __version__}
    if worker:
        attrs["outpost.worker"] = worker
    return Resource.create(attrs)


def agent_tracer_provider(
    otlp_endpoint: str | None,
    *,
    service_name: str = "outpost-agent",
    headers: dict[str, str] | None = None,
    worker: str | None = None,
    ca_file: str | None = None,
) -> Any:
    """A TracerProvider exporting over OTLP/HTTP to *otlp_endpoint* (the server URL, or any collector).

    Returns None when no endpoint is given. Imported lazily: OpenTelemetry stays off the import path
    of a worker that does not trace.
    """
    if not otlp_endpoint:
        return None
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=_resource(service_name, worker))
    exporter = OTLPSpanExporter(
        endpoint=_otlp_url(otlp_endpoint, "traces"), headers=headers or {}, certificate_file=ca_file
    )
    provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=1000))
    return provider


def agent_meter_provider(
    otlp_endpoint: str | None,
    *,
    interval_s: float = 60.0,
    service_name: str = "outpost-agent",
    headers: dict[str, str] | None = None,
    worker: str | None = None,
    ca_file: str | None = None,
) -> Any:
    """A MeterProvider exporting the agent's job metrics over OTLP/HTTP every *interval_s*."""
    if not otlp_endpoint:
        return None
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

    exporter = OTLPMetricExporter(
        endpoint=_otlp_url(otlp_endpoint, "metrics"), headers=headers or {}, certificate_file=ca_file
    )
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=int(interval_s * 1000))
    return MeterProvider(resource=_resource(service_name, worker), metric_readers=[reader])


# The agent's endpoints as templates: an error's `endpoint` attribute never carries a job id or an asset name.
_ENDPOINTS = [
    (re.compile("^" + re.sub(r"\\\{\w+\\\}", "[^/]+", re.escape(t)) + "$"), t.removeprefix(contract.API + "/"))
    for t in (
        contract.AGENT_REGISTER,
        contract.AGENT_SELF,
        contract.AGENT_POLL,
        contract.AGENT_LEASE,
        contract.AGENT_EVENTS,
        contract.AGENT_HEARTBEAT,
        contract.AGENT_DIAGNOSTICS,
        contract.AGENT_ASSET,
    )
]


def endpoint_of(path: str) -> str:
    """`/api/v1/agent/jobs/<id>/lease` -> `agent/jobs/{job_id}/lease`; anything else -> `other`."""
    path = path.split("?", 1)[0]
    return next((name for pattern, name in _ENDPOINTS if pattern.match(path)), "other")


class RequestErrors:
    """`outpost.agent.request.errors` (counter): each request attempt to the server that got no good
    answer, by `endpoint` and `status` (the HTTP status, or `transport` when none came back), and `group`."""

    def __init__(self, meter_provider: Any, group: str) -> None:
        self.group = group
        self.counter = meter_provider.get_meter("outpost.agent").create_counter(
            "outpost.agent.request.errors",
            unit="{error}",
            description="Agent requests to the server that failed, by endpoint and status",
        )

    def count(self, path: str, status: int | None) -> None:
        status_ = str(status) if status else "transport"
        self.counter.add(1, {"endpoint": endpoint_of(path), "status": status_, "group": self.group})
