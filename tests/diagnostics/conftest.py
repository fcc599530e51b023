"""Fixtures for diagnose tests: generated PKI, loopback servers, agent state, and the real CLI."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from outpost.state import AgentState, Registration
from tests.diagnostics.pki import PKI, Issued, make_pki
from tests.diagnostics.servers import AppConfig, AppServer, DnsServer, Zone

ROOT = Path(__file__).resolve().parents[2]
CREDENTIAL = "s3cret-worker-credential"
PROXY_VARS = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def make_app() -> Iterator[Callable[..., AppServer]]:
    servers: list[AppServer] = []

    def make(issued: Issued, cfg: AppConfig | None = None, **kw: Any) -> AppServer:
        server = AppServer(issued, cfg, **kw)
        servers.append(server)
        return server

    yield make
    for s in servers:
        s.close()


@pytest.fixture
def app(make_app: Callable[..., AppServer], pki: PKI) -> AppServer:
    """A healthy Outpost-shaped server with a certificate from the test CA."""
    return make_app(pki.valid)


def iso_ago(seconds: float) -> str:
    return (datetime.now(UTC) - timedelta(seconds=seconds)).isoformat()


@pytest.fixture
def agent_proc() -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """A stand-in agent process (its pid and environment are what diagnose inspects)."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            [sys.executable, "-c", "import time; time.sleep(120)", "outpost-agent"], env={**clean_env(), **(env or {})}
        )
        procs.append(proc)
        return proc

    yield start
    for p in procs:
        p.kill()
        p.wait(5)


@dataclass
class StateFactory:
    base: Path

    def __call__(
        self,
        url: str,
        *,
        ca_file: Path | str | None = None,
        worker_id: str = "w-1",
        group: str = "linux",
        credential: str = CREDENTIAL,
        status: dict[str, Any] | None = None,
        name: str = "state",
    ) -> Path:
        directory = self.base / name
        AgentState(directory).save(
            Registration(
                url=url, worker_id=worker_id, name="web-1", group=group, ca_file=str(ca_file) if ca_file else None
            ),
            credential,
        )
        if status is not None:
            AgentState(directory).update_status(**status)
        return directory


@pytest.fixture
def make_state(tmp_path: Path) -> StateFactory:
    return StateFactory(tmp_path)


def fresh_status(pid: int) -> dict[str, Any]:
    return {
        "last_poll_ok": iso_ago(5),
        "last_heartbeat_ok": iso_ago(20),
        "pid": pid,
        "runbook_user": "outpost-runbook",
        "runbooks_can_read_credential": False,
    }


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k.lower() not in PROXY_VARS and not k.startswith("OUTPOST_")}
    env["PYTHONPATH"] = str(ROOT)
    env["COLUMNS"] = "200"
    env.update(extra)
    return env


@dataclass
class CliRun:
    rc: int
    stdout: str
    stderr: str
    doc: dict[str, Any] | None

    def result(self, check_id: str, target: str | None = None) -> dict[str, Any]:
        assert self.doc is not None, self.stderr
        found = [r for r in self.doc["results"] if r["id"] == check_id and (target is None or r["target"] == target)]
        assert len(found) == 1, f"{check_id} {target}: {found or self.doc['results']}"
        return found[0]


def run_cli(*args: str, env: dict[str, str] | None = None, as_json: bool = True, timeout: float = 90) -> CliRun:
    """The real `outpost diagnose`, in a subprocess."""
    argv = [sys.executable, "-m", "outpost", "diagnose", *args] + (["--json"] if as_json else [])
    proc = subprocess.run(argv, capture_output=True, text=True, env=env or clean_env(), cwd=ROOT, timeout=timeout)
    doc = json.loads(proc.stdout) if as_json and proc.stdout.strip().startswith("{") else None
    return CliRun(proc.returncode, proc.stdout, proc.stderr, doc)


@pytest.fixture
def system_dns(tmp_path: Path) -> Iterator[tuple[DnsServer, Path]]:
    """A DNS server that diagnose treats as the system resolver (resolv.conf can't name a port: it binds :53)."""
    host = f"127.{random.randint(1, 250)}.{random.randint(1, 250)}.{random.randint(2, 250)}"
    try:
        server = DnsServer({}, host=host, port=53)
    except PermissionError:
        pytest.skip("binding a DNS server on port 53 needs root (CI runs as root)")
    resolv = tmp_path / "resolv.conf"
    resolv.write_text(f"nameserver {host}\n")
    yield server, resolv
    server.close()


__all__ = ["Zone", "clean_env", "run_cli", "fresh_status", "iso_ago", "CREDENTIAL"]
