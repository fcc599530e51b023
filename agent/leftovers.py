"""What a crashed agent leaves behind: job records, surviving runbook processes, work dirs.

While a job runs the agent keeps ``<state-dir>/work/<job_id>.json`` beside the job's work
directory (agent-owned, outside the directory the runbook can write): the job's id and
activation, the runbook's pid and process group, and the work directory (a private
temp dir for RunAs jobs). A clean job end removes both. At start, before its first
poll, an agent holds no job, so everything under ``work/`` is a leftover: `recover`
kills the processes still running for those jobs, and removes the directories.

A process counts as the job's when its environment carries the job's
``AUTOMATION_JOB_ID`` and ``AUTOMATION_JOB_ACTIVATION`` (in the recorded process group or
out of it: a runbook may setsid away), or, when its environment cannot be read, when it
is in the recorded group and the group leader is the recorded process (same pid and
start time). A reused pid, or a later activation of the same job run by another worker
on this machine, is never mistaken for the crashed run.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from outpost.state import write_private

RECORD_SUFFIX = ".json"
KILL_WAIT_S = 5.0
TEMP_PREFIX = "outpost-job-"  # RunAs jobs' private work dirs in the system temp dir


@dataclass
class JobRecord:
    job_id: str
    activation: int
    pid: int
    pgid: int
    start_ticks: int | None  # /proc/<pid>/stat field 22: tells the runbook from a reused pid
    workdir: str


@dataclass
class Leftover:
    job_id: str
    record: JobRecord | None
    paths: list[Path] = field(default_factory=list)
    killed: list[int] = field(default_factory=list)


def start_ticks(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])


def _pgid_of(stat: str) -> int:
    return int(stat.rsplit(")", 1)[1].split()[2])


def record_path(work_root: Path, job_id: str) -> Path:
    return work_root / f"{job_id}{RECORD_SUFFIX}"


def write_record(work_root: Path, record: JobRecord) -> None:
    write_private(record_path(work_root, record.job_id), json.dumps(asdict(record)) + "\n")


def remove_record(work_root: Path, job_id: str) -> None:
    record_path(work_root, job_id).unlink(missing_ok=True)


def _read_record(path: Path) -> JobRecord | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return JobRecord(**{k: data.get(k) for k in JobRecord.__dataclass_fields__})
    except (OSError, ValueError, TypeError):
        return None


def _job_processes(record: JobRecord) -> list[int]:
    """Pids that belong to the recorded job (see the module docstring)."""
    markers = {f"AUTOMATION_JOB_ID={record.job_id}".encode(), f"AUTOMATION_JOB_ACTIVATION={record.activation}".encode()}
    found: list[int] = []
    leader_is_runbook = record.start_ticks is not None and start_ticks(record.pid) == record.start_ticks
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        pid = int(entry.name)
        try:
            in_group = _pgid_of((entry / "stat").read_text()) == record.pgid
        except (OSError, ValueError, IndexError):
            continue
        try:
            carries_id = markers <= set((entry / "environ").read_bytes().split(b"\0"))
            env_known = True
        except OSError:
            carries_id, env_known = False, False
        if carries_id or (in_group and not env_known and leader_is_runbook):
            found.append(pid)
    return found


def kill_job_processes(record: JobRecord) -> list[int]:
    """SIGKILL what is left of the job and wait (bounded) until it is gone; return the pids."""
    pids = _job_processes(record)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + KILL_WAIT_S
    while time.monotonic() < deadline and any(_running(p) for p in pids):
        time.sleep(0.05)
    return pids


def _running(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"  # a zombie is dead, waiting for its reaper


def _removable(workdir: Path, work_root: Path) -> bool:
    """Only a job directory the agent made: under the work root, or a RunAs job's temp dir."""
    if workdir.parent == work_root:
        return True
    return workdir.parent == Path(tempfile.gettempdir()) and workdir.name.startswith(TEMP_PREFIX)


def scan(work_root: Path) -> list[Leftover]:
    """Everything under the work root, grouped by job."""
    if not work_root.is_dir():
        return []
    found: dict[str, Leftover] = {}
    for entry in sorted(work_root.iterdir()):
        if entry.name.endswith(RECORD_SUFFIX) and entry.is_file():
            job_id = entry.name[: -len(RECORD_SUFFIX)]
            left = found.setdefault(job_id, Leftover(job_id, None))
            left.record = _read_record(entry)
            left.paths.append(entry)
            if left.record is not None and left.record.workdir:
                workdir = Path(left.record.workdir)
                if _removable(workdir, work_root) and workdir not in left.paths and workdir.exists():
                    left.paths.append(workdir)
        else:
            job_id = entry.name.split(".", 1)[0]
            found.setdefault(job_id, Leftover(job_id, None)).paths.append(entry)
    return list(found.values())


def recover(work_root: Path) -> list[Leftover]:
    """Kill the survivors of every leftover job, then remove its files; return what was found."""
    leftovers = scan(work_root)
    for left in leftovers:
        if left.record is not None:
            left.killed = kill_job_processes(left.record)
        for path in left.paths:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
    return leftovers
