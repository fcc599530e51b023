"""Real Outpost processes for tests: servers and agents on 127.0.0.1, started as users would."""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

OUTPOST = [sys.executable, "-m", "outpost"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


_TLS_CONTEXTS: dict[tuple[str, int] | None, ssl.SSLContext] = {}


def tls_context(ca_file: str | None = None) -> ssl.SSLContext:
    """What httpx verifies against (`ca_file`, else certifi's bundle), made once per file and kept.

    httpx loads the CA bundle for every Client it makes when given verify=True, ~30 ms of CPU even for
    http://127.0.0.1: the health polls of a starting server took more CPU than the server's start-up.
    A rewritten `ca_file` (new mtime) gets a new context.
    """
    key = (ca_file, os.stat(ca_file).st_mtime_ns) if ca_file else None
    if key not in _TLS_CONTEXTS:
        import certifi

        _TLS_CONTEXTS[key] = ssl.create_default_context(cafile=ca_file or certifi.where())
    return _TLS_CONTEXTS[key]


def stop_process(proc: subprocess.Popen[str] | None, sig: int, grace_s: float) -> None:
    """Send `sig`; SIGKILL if the process has not exited after `grace_s`."""
    if proc and proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


_RUNBOOK_USER_PREFIX = "ortest"
_runbook_user: str | None = None


def runbook_user() -> str:
    """The unprivileged user a root test agent runs runbooks as (a root agent refuses to start without one).

    One per test process, created on first use and removed at exit; users left by test processes
    that died (named after their PID) are removed first.
    """
    global _runbook_user
    if _runbook_user is None:
        import atexit
        import pwd
        import shutil

        # by absolute path: a test may have narrowed PATH (no /usr/sbin) when this first runs
        useradd, userdel = (shutil.which(t, path="/usr/sbin:/sbin:/usr/bin:/bin") or t for t in ("useradd", "userdel"))

        for entry in pwd.getpwall():
            pid = entry.pw_name.removeprefix(_RUNBOOK_USER_PREFIX)
            if entry.pw_name.startswith(_RUNBOOK_USER_PREFIX) and pid.isdigit() and not Path(f"/proc/{pid}").exists():
                subprocess.run([userdel, entry.pw_name], capture_output=True, timeout=30)
        name = f"{_RUNBOOK_USER_PREFIX}{os.getpid()}"
        made = subprocess.run([useradd, "--no-create-home", "--shell", "/bin/sh", name], capture_output=True,
                              text=True, timeout=30)  # fmt: skip
        if made.returncode not in (0, 9):  # 9: it exists already
            raise AssertionError(f"cannot create the test runbook user {name}: {made.stderr}")
        atexit.register(subprocess.run, [userdel, name], capture_output=True, timeout=30)
        _runbook_user = name
    return _runbook_user


def runbook_user_args(args: list[str]) -> list[str]:
    """`--runbook-user` for a root agent, unless `args` name one."""
    return [] if os.geteuid() != 0 or "--runbook-user" in args else ["--runbook-user", runbook_user()]


def wait_until(predicate: Callable[[], Any], timeout: float, interval: float = 0.05, what: str = "condition") -> Any:
    """Poll `predicate` until truthy; bounded in time. Returns its value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def cli(
    *args: str, env: dict[str, str] | None = None, input: str | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([*OUTPOST, *args], capture_output=True, text=True, env=full_env, input=input, timeout=timeout)


class Server:
    """`outpost server` in a subprocess; restartable on the same port and data dir."""

    def __init__(
        self,
        data_dir: Path,
        *,
        port: int | None = None,
        database_url: str | None = None,
        extra: list[str] | None = None,
        ca_file: str | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.ca_file = ca_file
        self.port = port or free_port()
        self.database_url = database_url
        self.extra = extra or []
        self.proc: subprocess.Popen[str] | None = None
        self.token = ""
        self.registration_key = ""
        self.log_path = data_dir.parent / f"server-{self.port}.log"
        self.scheme = "https" if "--tls-cert" in self.extra else "http"

    def verify(self) -> ssl.SSLContext:
        return tls_context(self.ca_file)

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60) -> Server:  # generous: a loaded 2-core machine starts it slowly
        args = [*OUTPOST, "server", "--port", str(self.port), "--data-dir", str(self.data_dir), *self.extra]
        if self.database_url:
            args += ["--database-url", self.database_url]
        log = open(self.log_path, "a")  # noqa: SIM115 (lives as long as the process)
        self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, text=True)
        creds_file = self.data_dir / "credentials.json"

        def ready() -> bool:
            if self.proc and self.proc.poll() is not None:
                raise AssertionError(f"server exited with {self.proc.returncode}:\n{self.log_path.read_text()}")
            try:
                verify = self.verify()
                return httpx.get(f"{self.url}/api/v1/health", timeout=1, verify=verify).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(ready, timeout, 0.1, "the server to answer /api/v1/health")
        creds = json.loads(creds_file.read_text()) if creds_file.exists() else {}
        self.token = creds.get("admin_token") or self.token
        self.registration_key = creds.get("registration_key_primary") or self.registration_key
        return self

    def stop(self, sig: int = signal.SIGTERM) -> None:
        stop_process(self.proc, sig, 15)

    def client(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {self.token}"}, timeout=30, verify=self.verify()
        )

    def env(self) -> dict[str, str]:
        return {"OUTPOST_URL": self.url, "OUTPOST_TOKEN": self.token}


class Agent:
    """A registered worker with its own state dir, running `outpost worker run`."""

    def __init__(
        self, server: Server, state_dir: Path, group: str, name: str, run_args: list[str] | None = None
    ) -> None:
        self.server = server
        self.state_dir = state_dir
        self.group = group
        self.name = name
        self.run_args = run_args or []
        self.proc: subprocess.Popen[str] | None = None
        self.log_path = state_dir.parent / f"agent-{name}.log"

    def register(self, url: str | None = None, extra: list[str] | None = None) -> subprocess.CompletedProcess[str]:
        result = cli(
            "worker",
            "register",
            "--url",
            url or self.server.url,
            "--key",
            self.server.registration_key,
            "--group",
            self.group,
            "--name",
            self.name,
            "--state-dir",
            str(self.state_dir),
            *(["--ca-file", self.server.ca_file] if self.server.ca_file else []),
            *(extra or []),
        )
        assert result.returncode == 0, result.stderr
        return result

    def start(self) -> Agent:
        args = [
            *OUTPOST,
            "worker",
            "run",
            "--state-dir",
            str(self.state_dir),
            "--stop-grace",
            "2",
            "--lease-renew",
            "0.5",
            "--backoff-cap",
            "1",
            "--heartbeat-interval",
            "1",
            *self.run_args,
            *runbook_user_args(self.run_args),
        ]
        log = open(self.log_path, "a")  # noqa: SIM115
        self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, text=True)
        return self

    def stop(self, sig: int = signal.SIGTERM) -> None:
        stop_process(self.proc, sig, 30)

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""
