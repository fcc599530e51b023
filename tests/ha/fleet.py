"""A real HA fleet on 127.0.0.1: one `outpost collector`, replicas with --collector-url, one PostgreSQL."""

from __future__ import annotations

import re
import signal
import subprocess
from pathlib import Path

import httpx

from tests.helpers.procs import OUTPOST, Server, free_port, stop_process, tls_context, wait_until

REPLICA_TOKEN = "opr_test-replica-token"
COLLECTOR_ADMIN = "opa_test-collector-admin"


class CollectorProc:
    """`outpost collector` in a subprocess; restartable (same port, same data dir)."""

    def __init__(self, data_dir: Path, extra: list[str] | None = None) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.extra = extra or []
        self.proc: subprocess.Popen[str] | None = None
        self.log_path = data_dir.parent / f"collector-{self.port}.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> CollectorProc:
        args = [*OUTPOST, "collector", "--port", str(self.port), "--data-dir", str(self.data_dir)]
        args += ["--admin-token", COLLECTOR_ADMIN, "--replica-token", REPLICA_TOKEN, "--log-level", "info"]
        log = open(self.log_path, "a")  # noqa: SIM115 (lives as long as the process)
        self.proc = subprocess.Popen([*args, *self.extra], stdout=log, stderr=subprocess.STDOUT, text=True)

        def ready() -> bool:
            if self.proc and self.proc.poll() is not None:
                raise AssertionError(f"collector exited with {self.proc.returncode}:\n{self.log_path.read_text()}")
            try:
                return httpx.get(f"{self.url}/api/v1/health", timeout=1, verify=tls_context()).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(ready, 30, 0.1, "the collector to answer /api/v1/health")
        return self

    def stop(self, sig: int = signal.SIGTERM) -> None:
        stop_process(self.proc, sig, 15)


def replica_args(collector: CollectorProc, *more: str) -> list[str]:
    return ["--collector-url", collector.url, "--collector-token", REPLICA_TOKEN, *more]


def query(server: Server, kql: str) -> list[list]:
    with server.client() as c:
        r = c.post("/api/v1/query", json={"query": kql})
    assert r.status_code == 200, r.text
    return r.json()["rows"]


def metric(server: Server, name: str, **labels: str) -> float | None:
    """One sample of /metrics (labels matched exactly as given), or None when absent."""
    text = httpx.get(f"{server.url}/metrics", timeout=10, verify=server.verify()).text
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    pattern = re.escape(f"{name}{{{want}}}" if labels else name) + r" ([0-9.e+-]+)$"
    found = re.search(pattern, text, re.MULTILINE)
    return float(found.group(1)) if found else None


def wait_drained(*replicas: Server, timeout: float = 60) -> None:
    """Every replica has handed all it buffered to the collector."""
    wait_until(
        lambda: all(metric(r, "outpost_telemetry_forward_buffered_records") == 0 for r in replicas),
        timeout,
        0.2,
        "the replicas' telemetry buffers to drain",
    )
