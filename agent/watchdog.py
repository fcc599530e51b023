"""A runbook dies with its agent.

Runbooks run in their own session (so Stop can signal the whole process group), which
also means nothing kills them when the agent itself is killed. Two guards, chosen over a
cgroup per job because they need neither root nor a writable cgroup v2 hierarchy
(containers and cgroup v1 hosts included), and cost nothing per job:

- The direct child gets PR_SET_PDEATHSIG=SIGKILL (see `die_with_parent`): the kernel
  kills it when the agent's thread that started it goes away.
- One watchdog process per agent (agent/watchdog_process.py), in its own session, reads
  a pipe from the agent listing the live runbook process groups. When the agent dies the
  pipe reaches EOF and the watchdog kills every listed group, grandchildren included.

What escapes both (a runbook that leaves its process group with setsid, or a watchdog
killed together with the agent) is found and killed by the next agent start from the job
records in the work directory (agent/leftovers.py).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

log = logging.getLogger("outpost.agent")

PROCESS_FILE = Path(__file__).with_name("watchdog_process.py")
_SETPRIV = shutil.which("setpriv")


def die_with_parent(argv: list[str], switch_user: list[str] | None = None) -> list[str]:
    """`argv` prefixed so that the runbook gets SIGKILL when the agent dies (PR_SET_PDEATHSIG).

    util-linux `setpriv --pdeathsig KILL` sets it and execs the runbook in the same process.
    A `preexec_fn` calling prctl would do the same but forces fork() over vfork(), ~10 ms more
    per job in an agent-sized process; the exec costs about a millisecond. Without setpriv (or
    when the interpreter is missing, so that the start error stays readable) the watchdog
    alone guards. `switch_user` (setpriv's --reuid/--regid/--groups) makes the same exec switch
    to the runbook user: Popen(user=...) would force fork() too (setpriv sets the death signal
    after the switch, which would clear it).
    """
    if switch_user:  # the caller checked can_switch_users(): never fall through to running as the agent
        assert _SETPRIV is not None
    elif _SETPRIV is None or not os.access(argv[0], os.X_OK):
        return argv
    return [_SETPRIV, "--pdeathsig", "KILL", *(switch_user or []), "--", *argv]


def can_switch_users() -> bool:
    """Whether die_with_parent can switch users in its exec (setpriv is installed)."""
    return _SETPRIV is not None


class Watchdog:
    def __init__(self) -> None:
        self._proc: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()
        self._broken = False

    def start(self) -> Watchdog:
        self._proc = subprocess.Popen(
            [sys.executable, "-I", "-S", str(PROCESS_FILE)],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            start_new_session=True,  # survives a signal to the agent's process group, to do its job
        )
        return self

    def _send(self, line: str) -> None:
        proc = self._proc
        if proc is None or proc.stdin is None or self._broken:
            return
        with self._lock:
            try:
                proc.stdin.write(line.encode("ascii"))
                proc.stdin.flush()
            except (BrokenPipeError, ValueError, OSError) as exc:
                self._broken = True
                log.error("the runbook watchdog (PID %d) is gone (%s): runbooks may outlive this agent", proc.pid, exc)

    def watch(self, pgid: int) -> None:
        self._send(f"+ {pgid}\n")

    def unwatch(self, pgid: int) -> None:
        self._send(f"- {pgid}\n")

    def stop(self) -> None:
        """Close the pipe (the agent ended normally, its runbooks are already over) and reap."""
        proc = self._proc
        if proc is None:
            return
        with self._lock:
            if proc.stdin is not None:
                with contextlib.suppress(OSError):
                    proc.stdin.close()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
