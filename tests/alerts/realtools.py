"""Real Alertmanager and small loopback HTTP receivers for the alerting tests."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

from telemetry import kql
from telemetry.store import TABLES, TelemetryStore

ALERTMANAGER_CONFIG = """\
route:
  receiver: "null"
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: "null"
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def alertmanager_binary() -> str:
    found = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
    assert found, "Alertmanager not found: install the Debian package `prometheus-alertmanager`"
    return found


@contextmanager
def running_alertmanager(tmp: Path) -> Iterator[str]:
    """A real Alertmanager on 127.0.0.1 (clustering off); yields its base URL."""
    port = free_port()
    config = tmp / "alertmanager.yml"
    config.write_text(ALERTMANAGER_CONFIG)
    log = (tmp / "alertmanager.log").open("w")
    proc = subprocess.Popen(
        [
            alertmanager_binary(),
            f"--config.file={config}",
            f"--storage.path={tmp / 'am-data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, (tmp / "alertmanager.log").read_text()
            try:
                if httpx.get(f"{url}/-/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "Alertmanager did not become ready in 30 s"
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        log.close()


def am_alerts(url: str, **labels: str) -> list[dict[str, Any]]:
    """Alerts Alertmanager currently holds (active, silenced or not), filtered by labels."""
    items = httpx.get(f"{url}/api/v2/alerts", timeout=5).json()
    return [a for a in items if all(a["labels"].get(k) == v for k, v in labels.items())]


def wait_for(predicate: Any, timeout: float = 15.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


class WebhookReceiver:
    """Collects JSON bodies POSTed to it, on a random loopback port."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        received = self.bodies

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                length = int(self.headers.get("Content-Length", 0))
                received.append(json.loads(self.rfile.read(length)))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/hook"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


def query_runner(store: TelemetryStore) -> Any:
    """run_query(kql) -> (columns, rows) over a real store, as the collector's query layer does."""

    tables = {table: [c for c, _ in cols] for table, cols in TABLES.items()}

    def run(query: str) -> tuple[Sequence[str], Sequence[Sequence[Any]]]:
        with store.reader() as cur:
            result = kql.run_query(cur, query, tables=tables)
        return [name for name, _ in result.columns], result.rows

    return run


def heartbeat(store: TelemetryStore, worker: str, group: str, age_s: float) -> None:
    when = datetime.now(UTC).replace(tzinfo=None) - timedelta(seconds=age_s)
    store.insert_rows("Heartbeat", [{"TimeGenerated": when, "Computer": worker, "WorkerGroup_s": group}])
