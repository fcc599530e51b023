"""Where a process's cgroups are, and the CPU and memory limits they set (agent and `diagnose` share this).

cgroup v1 has one hierarchy per controller (memory, cpu, pids ...); v2 one unified tree.
The directory of a process in a hierarchy is the mount point plus its path from
/proc/PID/cgroup, relative to the mount's root (a container sees its own cgroup as /).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

V1_CONTROLLERS = ("memory", "cpu", "cpuacct", "pids")
_UNLIMITED_V1 = 1 << 60  # memory.limit_in_bytes of an unlimited v1 cgroup is near 2**63


def _mounts() -> list[tuple[str, str, str, str]]:
    """(fstype, root, mountpoint, super options) of every cgroup mount seen by this process."""
    out = []
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return []
    for line in lines:
        head, sep, tail = line.partition(" - ")
        fields, tail_fields = head.split(), tail.split()
        if sep and len(fields) >= 5 and len(tail_fields) >= 3 and tail_fields[0] in ("cgroup", "cgroup2"):
            out.append((tail_fields[0], fields[3], fields[4], tail_fields[2]))
    return out


def _own(pid: int | str) -> dict[str, str]:
    """controller (or "" for v2) -> the process's cgroup path."""
    own: dict[str, str] = {}
    try:
        for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
            _, ctrls, path = line.split(":", 2)
            for ctrl in ctrls.split(",") if ctrls else [""]:
                own[ctrl] = path
    except (OSError, ValueError):
        pass
    return own


def _join(mountpoint: str, root: str, path: str) -> Path:
    rel = path[len(root) :] if root != "/" and path.startswith(root) else path
    candidate = Path(mountpoint) / rel.lstrip("/")
    return candidate if candidate.is_dir() else Path(mountpoint)


def v1_dirs(pid: int | str = "self") -> dict[str, Path]:
    """v1 controller -> the process's cgroup directory in that hierarchy (memory, cpu, cpuacct, pids)."""
    own = _own(pid)
    dirs: dict[str, Path] = {}
    for fstype, root, mountpoint, opts in _mounts():
        if fstype != "cgroup":
            continue
        for ctrl in opts.split(","):
            if ctrl in V1_CONTROLLERS and ctrl in own:
                dirs[ctrl] = _join(mountpoint, root, own[ctrl])
    return dirs


def unified_dir(pid: int | str = "self") -> Path | None:
    """The process's cgroup directory in the unified (v2) tree, whatever controllers it has (None: no v2 mount)."""
    own = _own(pid)
    for fstype, root, mountpoint, _ in _mounts():
        if fstype == "cgroup2" and "" in own and Path(mountpoint, "cgroup.controllers").exists():
            return _join(mountpoint, root, own[""])
    return None


def v2_dir(pid: int | str = "self") -> Path | None:
    """The process's cgroup directory in the unified (v2) tree, where that tree has controllers."""
    own = _own(pid)
    for fstype, root, mountpoint, _ in _mounts():
        if fstype == "cgroup2" and "" in own and Path(mountpoint, "cgroup.controllers").exists():
            path = _join(mountpoint, root, own[""])
            if (path / "cgroup.controllers").read_text().split():
                return path
    return None


@dataclass
class CgroupLimits:
    cpu_percent: float | None  # CPU quota, % of one CPU (None: no quota)
    memory_bytes: int | None  # memory limit (None: none)
    where: str  # the cgroup directories read


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def limits_of(pid: int | str = "self") -> CgroupLimits | None:
    """The CPU quota and memory limit of the process's own cgroup (v1, else v2); None: no cgroup found."""
    dirs = v1_dirs(pid)
    if "cpu" in dirs or "memory" in dirs:
        cpu = None
        if "cpu" in dirs:
            quota, period = _read(dirs["cpu"] / "cpu.cfs_quota_us"), _read(dirs["cpu"] / "cpu.cfs_period_us")
            if quota and period and quota.isdigit() and period.isdigit() and int(period) > 0:
                cpu = 100.0 * int(quota) / int(period)  # -1 (no quota) is not all digits
        memory = None
        raw = _read(dirs["memory"] / "memory.limit_in_bytes") if "memory" in dirs else None
        if raw and raw.isdigit() and int(raw) < _UNLIMITED_V1:
            memory = int(raw)
        where = ", ".join(str(dirs[c]) for c in ("cpu", "memory") if c in dirs)
        return CgroupLimits(cpu, memory, f"cgroup v1: {where}")
    unified = v2_dir(pid)
    if unified is None:
        return None
    # v2 limits are hierarchical: an agent in a leaf of its unit's cgroup (it moves there to delegate
    # controllers to its jobs, agent/limits.py) is bound by the unit's CPUQuota= on the parent.
    cpu = memory = None
    mount = next((Path(m) for t, _, m, _ in _mounts() if t == "cgroup2" and unified.is_relative_to(m)), unified)
    for level in [unified, *(p for p in unified.parents if p.is_relative_to(mount) and p != mount)]:
        max_ = (_read(level / "cpu.max") or "max").split()
        if len(max_) == 2 and max_[0].isdigit() and max_[1].isdigit() and int(max_[1]) > 0:
            here = 100.0 * int(max_[0]) / int(max_[1])
            cpu = here if cpu is None else min(cpu, here)
        mem = _read(level / "memory.max")
        if mem and mem.isdigit():
            memory = int(mem) if memory is None else min(memory, int(mem))
    return CgroupLimits(cpu, memory, f"cgroup v2: {unified}")
