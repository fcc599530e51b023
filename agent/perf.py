"""The worker machine's counters in Azure Monitor's `Perf` shape, sampled once per heartbeat.

The counters the Log Analytics Linux agent collects by default: Processor `% Processor
Time` (instance `_Total`), Memory `Available MBytes` and `% Used Memory`, Logical Disk
`% Free Space` and `Free Megabytes` per mounted file system, and System `Load Average 1 Min`.
CPU time is the share of non-idle jiffies in /proc/stat since the previous sample (the
first sample: since boot). Rows go out with the heartbeat (agent/telemetry.py), best effort.
"""

from __future__ import annotations

import os
import socket
from datetime import datetime
from pathlib import Path
from typing import Any

# File systems that hold no user data (a disk counter for them would be noise).
_PSEUDO_FS = frozenset(
    [
        "proc",
        "sysfs",
        "devtmpfs",
        "devpts",
        "tmpfs",
        "cgroup",
        "cgroup2",
        "securityfs",
        "pstore",
        "bpf",
        "tracefs",
        "debugfs",
        "mqueue",
        "hugetlbfs",
        "configfs",
        "fusectl",
        "autofs",
        "binfmt_misc",
        "rpc_pipefs",
        "nsfs",
        "overlay",
        "squashfs",
        "ramfs",
        "efivarfs",
        "selinuxfs",
    ]
)
MAX_MOUNTS = 32


def _cpu_times() -> tuple[int, int] | None:
    """(busy, total) jiffies of all CPUs."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
        values = [int(v) for v in fields]
    except (OSError, ValueError, IndexError):
        return None
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    return sum(values) - idle, sum(values)


def _meminfo() -> dict[str, int]:
    out = {}
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            key, _, rest = line.partition(":")
            parts = rest.split()
            if parts and parts[0].isdigit():
                out[key] = int(parts[0]) * 1024
    except OSError:
        pass
    return out


def _mounts() -> list[str]:
    seen: list[str] = []
    try:
        for line in Path("/proc/mounts").read_text().splitlines():
            parts = line.split()
            if len(parts) >= 3 and parts[2] not in _PSEUDO_FS and parts[1] not in seen and len(parts[1]) <= 200:
                seen.append(parts[1].replace("\\040", " "))
    except OSError:
        return ["/"]
    return seen[:MAX_MOUNTS] or ["/"]


class PerfSampler:
    def __init__(self, computer: str) -> None:
        self.computer = computer
        self.host = socket.gethostname()
        self._last_cpu: tuple[int, int] | None = None

    def _row(self, now: str, obj: str, counter: str, instance: str, value: float) -> dict[str, Any]:
        return {
            "TimeGenerated": now,
            "Computer": self.computer,
            "ObjectName": obj,
            "CounterName": counter,
            "InstanceName": instance,
            "CounterValue": round(float(value), 3),
            "CounterPath": f"\\\\{self.host}\\{obj}({instance})\\{counter}",
        }

    def sample(self, when: datetime) -> list[dict[str, Any]]:
        now = when.isoformat().replace("+00:00", "Z")
        rows = []
        cpu = _cpu_times()
        if cpu is not None:
            busy, total = cpu
            last_busy, last_total = self._last_cpu or (0, 0)
            if total > last_total:
                share = 100 * (busy - last_busy) / (total - last_total)
                rows.append(self._row(now, "Processor", "% Processor Time", "_Total", share))
            self._last_cpu = cpu
        mem = _meminfo()
        if "MemTotal" in mem and "MemAvailable" in mem and mem["MemTotal"] > 0:
            available = mem["MemAvailable"]
            rows.append(self._row(now, "Memory", "Available MBytes", "Memory", available / (1 << 20)))
            rows.append(self._row(now, "Memory", "% Used Memory", "Memory", 100 * (1 - available / mem["MemTotal"])))
        for mount in _mounts():
            try:
                st = os.statvfs(mount)
            except OSError:
                continue
            if st.f_blocks == 0:
                continue
            rows.append(self._row(now, "Logical Disk", "% Free Space", mount, 100 * st.f_bavail / st.f_blocks))
            rows.append(self._row(now, "Logical Disk", "Free Megabytes", mount, st.f_bavail * st.f_frsize / (1 << 20)))
        rows.append(self._row(now, "System", "Load Average 1 Min", "_Total", os.getloadavg()[0]))
        return rows
