"""The watchdog process body: kill the runbooks' process groups when the agent's pipe reaches EOF.

Run as ``python -I -S agent/watchdog_process.py`` (standard library only, no site: it
starts in milliseconds and never imports the agent). Its stdin is a pipe from the agent
carrying lines ``+ PGID`` (a runbook started) and ``- PGID`` (it ended). The agent holds
the only write end, so EOF means the agent is gone, however it ended (kill -9, OOM kill,
a crash): every group still listed gets SIGTERM, then SIGKILL after a short grace.
"""

import contextlib
import os
import signal
import sys
import time

GRACE_S = 1.0


def _alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def _kill_all(groups: set[int]) -> None:
    for pgid in groups:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + GRACE_S
    while groups and time.monotonic() < deadline:
        groups = {g for g in groups if _alive(g)}
        time.sleep(0.05)
    for pgid in groups:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)


def main() -> int:
    # A terminal's Ctrl-C or hang-up is for the agent, which then ends its jobs itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    groups: set[int] = set()
    pending = b""
    while True:
        try:
            chunk = os.read(0, 4096)
        except InterruptedError:
            continue
        except OSError:
            chunk = b""
        if not chunk:
            break
        *lines, pending = (pending + chunk).split(b"\n")
        for line in lines:
            op, _, value = line.strip().partition(b" ")
            if not value.isdigit() or int(value) <= 1:
                continue
            if op == b"+":
                groups.add(int(value))
            elif op == b"-":
                groups.discard(int(value))
    if groups:
        _kill_all(groups)
    return 0


if __name__ == "__main__":
    sys.exit(main())
