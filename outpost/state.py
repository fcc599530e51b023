"""The agent's on-disk identity: what `outpost worker register` writes.

Layout of a state directory (all files 0600, directory 0700):

- ``registration.json``: ``{"url", "urls", "worker_id", "name", "group", "ca_file", "registered_at"}``;
  ``urls`` lists every server replica the agent may use, in order (``url`` is its first entry,
  kept for older readers; a file with only ``url`` means that one server)
- ``credential``: the per-worker secret, a single line; never printed or logged
- ``status.json``: runtime facts the agent updates (``last_poll_ok``, ``last_heartbeat_ok``,
  ``pid``), read by `outpost diagnose`
- ``agent.lock``: held (flock) by the running agent, holding its PID: one agent per state dir
- ``work/``: one directory per job in flight, and ``<job_id>.json`` beside it recording the
  runbook's process group, so a restarted agent can kill what a crashed one left
"""

from __future__ import annotations

import fcntl
import json
import os
import tempfile
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

REGISTRATION_FILE = "registration.json"
CREDENTIAL_FILE = "credential"
STATUS_FILE = "status.json"
LOCK_FILE = "agent.lock"


_status_lock = threading.Lock()


class StateError(Exception):
    """The state directory is missing, unreadable or inconsistent."""


@dataclass
class Registration:
    url: str
    worker_id: str
    name: str
    group: str
    ca_file: str | None = None
    registered_at: str | None = None
    urls: list[str] | None = None  # every replica, in order; None in files written before it existed

    @property
    def server_urls(self) -> list[str]:
        return list(self.urls) if self.urls else [self.url]


def write_private(path: Path, text: str) -> None:
    """Write a file readable only by its owner, atomically (a unique temp file, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)  # created 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class AgentState:
    def __init__(self, directory: Path) -> None:
        self.dir = Path(directory).absolute()

    @property
    def registration_path(self) -> Path:
        return self.dir / REGISTRATION_FILE

    @property
    def credential_path(self) -> Path:
        return self.dir / CREDENTIAL_FILE

    @property
    def status_path(self) -> Path:
        return self.dir / STATUS_FILE

    @property
    def work_dir(self) -> Path:
        return self.dir / "work"

    def lock(self) -> int:
        """Take the state directory for this process (flock, released when the process ends).

        Two agents on one state dir would share a credential and each think it holds every
        job; the second refuses at once, naming the first. Returns the lock's file descriptor.
        """
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = self.dir / LOCK_FILE
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            other = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise StateError(
                f"another agent (PID {other}) is already running on the state directory {self.dir}; "
                "stop it first, or give this one its own --state-dir"
            ) from None
        except OSError as exc:
            os.close(fd)
            raise StateError(f"cannot lock {path}: {exc}") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return fd

    def is_registered(self) -> bool:
        return self.registration_path.exists()

    def load(self) -> tuple[Registration, str]:
        """Return the registration and the credential, or raise StateError."""
        try:
            data = json.loads(self.registration_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise StateError(
                f"this machine is not registered (no {self.registration_path}); "
                "run `outpost worker register --url URL --key KEY --group NAME`"
            ) from None
        except (OSError, json.JSONDecodeError) as exc:
            raise StateError(f"cannot read {self.registration_path}: {exc}") from None
        try:
            reg = Registration(**{k: data.get(k) for k in Registration.__dataclass_fields__})
        except TypeError as exc:
            raise StateError(f"{self.registration_path} is malformed: {exc}") from None
        if not reg.url or not reg.worker_id:
            raise StateError(f"{self.registration_path} lacks url or worker_id")
        if reg.urls is not None and (
            not isinstance(reg.urls, list) or not reg.urls or not all(isinstance(u, str) and u for u in reg.urls)
        ):
            raise StateError(f"{self.registration_path}: urls must be a non-empty list of server URLs")
        try:
            credential = self.credential_path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise StateError(f"cannot read the worker credential {self.credential_path}: {exc}") from None
        return reg, credential

    def save(self, reg: Registration, credential: str) -> None:
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.dir, 0o700)
        write_private(self.credential_path, credential + "\n")
        write_private(self.registration_path, json.dumps(asdict(reg), indent=2) + "\n")

    def clear(self) -> None:
        for path in (self.registration_path, self.credential_path, self.status_path):
            path.unlink(missing_ok=True)

    def read_status(self) -> dict[str, Any]:
        try:
            return json.loads(self.status_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            return {}

    def update_status(self, **fields: Any) -> None:
        with _status_lock:  # several agent threads report here: read-modify-write must not interleave
            status = self.read_status()
            status.update(fields)
            write_private(self.status_path, json.dumps(status, indent=2) + "\n")
