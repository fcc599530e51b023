"""Per-job resource limits, enforced and never hidden: a cgroup per job, or rlimits.

How the agent enforces a job's limits (memory, CPU quota, process count) is decided once
at start (`detect`) and said in its log, status.json and every job's `resources`:

- ``cgroup v2``: the unified hierarchy offers memory, cpu and pids to the agent's own cgroup
  (systemd ``Delegate=yes``), or ``--cgroup-root`` names a delegated v2 directory. Every job runs
  in ``<root>/outpost-jobs/<job id>``: memory.max (+ memory.swap.max 0), cpu.max, pids.max;
  cpu.stat, memory.peak and memory.events for its accounting; cgroup.kill for what is left.
  A limit needing a controller that hierarchy lacks fails the job naming the controller.
- ``cgroup v1``: the agent can write the memory, cpu and pids hierarchies of its own cgroup
  (as root, typically). Every job then runs in ``<own cgroup>/outpost-jobs/<job id>`` in each,
  limited or not: the cgroup's counters cover the whole process tree (reaped or not), it
  tells an out-of-memory kill and a refused fork apart from other failures, and whatever is
  left in it when the job ends is killed.
- ``rlimit``: otherwise. Memory is limited as address space (RLIMIT_AS: an allocation past it
  fails, the process is not killed), processes by RLIMIT_NPROC, which counts *every* process of
  the runbook's user, and is ignored for root. A CPU quota cannot be enforced this way: a job
  asking for one fails with a reason saying so instead of running without it.

The runbook joins its cgroups before it execs (a small /bin/sh prefix, still root, writes its own
pid into each ``cgroup.procs``; the user switch comes after), so nothing it starts escapes.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

from agent.resources import describe_limits
from agent.runtime import RuntimeRefusal
from outpost import cgroups
from outpost.contract import JobLimits, JobResources

log = logging.getLogger("outpost.agent")

MODES = ("auto", "cgroup", "rlimit")
V2 = "cgroup v2"
AGENT_LEAF = "outpost-agent"  # v2: where the agent moves itself so its own cgroup can delegate controllers
JOBS_DIR = "outpost-jobs"
REQUIRED = ("memory", "cpu", "pids")  # cpuacct is for accounting only
CFS_PERIOD_US = 100_000
MIB = 1024 * 1024
# Join every cgroup.procs given before `--`, then exec the runbook (same pid, so wait4 still sees it).
_JOIN = (
    'while [ "$1" != -- ]; do echo $$ > "$1" || { echo "outpost: cannot join the job cgroup $1" >&2; exit 125; }; '
    'shift; done; shift; exec "$@"'
)
_CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass
class Enforcement:
    """How this agent enforces limits: `mechanism` is "cgroup v1" or "rlimit"; `why` says why."""

    mechanism: str
    why: str
    bases: dict[str, Path] = field(default_factory=dict)  # cgroup v1: controller -> .../outpost-jobs; v2: "" -> it
    controllers: frozenset[str] = frozenset()  # cgroup v2: the controllers enabled for job cgroups

    def confine(self, job_id: str, limits: JobLimits | None, uid: int | None) -> Confinement:
        """A job's confinement, its limits applied; RuntimeRefusal when one cannot be enforced."""
        if self.mechanism == V2:
            _refuse_missing_v2(limits, self.controllers, self.bases[""])
            try:
                return V2Confinement.create(self.bases[""], job_id, limits)
            except OSError as exc:
                if limits is not None and not limits.is_empty():
                    raise RuntimeRefusal(f"cannot set up the job's cgroup to enforce its limits: {exc}") from None
                log.warning("job %s: no cgroup (%s); measured by rusage only", job_id, exc)
                return Confinement(None)
        if self.mechanism == "cgroup v1":
            try:
                return CgroupConfinement.create(self.bases, job_id, limits, uid)
            except OSError as exc:
                if limits is not None and not limits.is_empty():
                    raise RuntimeRefusal(f"cannot set up the job's cgroup to enforce its limits: {exc}") from None
                log.warning("job %s: no cgroup (%s); measured by rusage only", job_id, exc)
                return Confinement(None)
        return RlimitConfinement.create(limits, self.why)

    def remove_leftover(self, job_id: str) -> None:
        """After a crash: kill what is left in a job's cgroups (escaped processes too) and remove them."""
        for path in dict.fromkeys(base / job_id for base in self.bases.values()):
            if path.is_dir():
                _remove(path)


def agent_cgroup_columns() -> dict[str, float]:
    """Heartbeat columns for the limits on the agent's own cgroup, the ones set: every job shares them."""
    own = cgroups.limits_of()
    if own is None:
        return {}
    columns = {}
    if own.cpu_percent is not None:
        columns["AgentCpuQuotaPercent_d"] = round(own.cpu_percent, 2)
    if own.memory_bytes is not None:
        columns["AgentMemoryLimitMB_d"] = round(own.memory_bytes / MIB, 1)
    return columns


def detect(mode: str = "auto", cgroup_root: Path | None = None) -> Enforcement:
    """Find how limits can be enforced here; `mode` "cgroup" makes a missing cgroup an error.

    Order: cgroup v2 where the unified hierarchy offers memory, cpu and pids to job cgroups (or
    wherever `cgroup_root`, a delegated v2 subtree, says: then v2 whatever it offers, and a job
    whose limit needs a controller it lacks fails naming it); else cgroup v1 (memory, cpu and pids
    hierarchies writable); else rlimits.
    """
    if mode not in MODES:
        raise ValueError(f"limit enforcement must be one of {', '.join(MODES)}, not {mode!r}")
    why = "chosen with --limits rlimit"
    if mode != "rlimit":
        v2, v2_why = _detect_v2(cgroup_root)
        if v2 is not None:
            return v2
        if cgroup_root is not None:
            raise OSError(f"--cgroup-root {cgroup_root}: {v2_why}")
        dirs = cgroups.v1_dirs()
        missing = [c for c in REQUIRED if c not in dirs]
        if missing:
            why = f"no cgroup v1 {'/'.join(missing)} hierarchy here, and {v2_why}"
        else:
            bases: dict[str, Path] = {}
            try:
                for ctrl, own in dirs.items():
                    base = own / JOBS_DIR
                    base.mkdir(exist_ok=True)
                    bases[ctrl] = base
            except OSError as exc:
                why = f"cannot create job cgroups under {own}: {exc.strerror or exc}"
            else:
                _sweep(bases)
                return Enforcement("cgroup v1", f"job cgroups under {bases['memory']} ({v2_why})", bases)
        if mode == "cgroup":
            raise OSError(f"--limits cgroup: {why}")
    return Enforcement("rlimit", why)


class Confinement:
    """No limits, nothing to set up (rlimit mode without limits, or a cgroup that could not be made)."""

    def __init__(self, limits: JobLimits | None, enforced_by: str | None = None) -> None:
        self.limits = limits if limits is not None and not limits.is_empty() else None
        self.enforced_by = enforced_by if self.limits is not None else None

    def wrap(self, argv: list[str]) -> list[str]:
        return argv

    def account(self, usage: JobResources) -> JobResources:
        """`usage` (from rusage) with the limits in force and whatever the confinement measured."""
        return usage.model_copy(update={"limits": self.limits, "enforced_by": self.enforced_by})

    def hit_process_limit(self) -> bool:
        return False

    def close(self) -> None:
        pass


class RlimitConfinement(Confinement):
    @classmethod
    def create(cls, limits: JobLimits | None, why: str) -> Confinement:
        if limits is None or limits.is_empty():
            return Confinement(None)
        if limits.cpu_percent is not None:
            raise RuntimeRefusal(
                f"the job's CPU quota of {limits.cpu_percent:g}% cannot be enforced on this worker: it needs a "
                f"writable cgroup (an agent running as root on a cgroup v1 machine); this one enforces limits by "
                f"rlimit ({why})"
            )
        prlimit = shutil.which("prlimit")
        if prlimit is None:
            raise RuntimeRefusal("the job's limits cannot be enforced: prlimit (util-linux) is not installed")
        return cls(limits, prlimit)

    def __init__(self, limits: JobLimits, prlimit: str) -> None:
        super().__init__(limits, "rlimit")
        self._prlimit = prlimit

    def wrap(self, argv: list[str]) -> list[str]:
        assert self.limits is not None
        opts = []
        if self.limits.memory_mb is not None:
            opts.append(f"--as={self.limits.memory_mb * MIB}")
        if self.limits.max_processes is not None:
            opts.append(f"--nproc={self.limits.max_processes}")
        return [self._prlimit, *opts, "--", *argv]


def _read_keyed(path: Path) -> dict[str, int]:
    """A cgroup "key value" file (memory.oom_control, cpu.stat, pids.events, ...)."""
    out: dict[str, int] = {}
    with contextlib.suppress(OSError):
        for line in path.read_text().splitlines():
            key, _, value = line.partition(" ")
            with contextlib.suppress(ValueError):
                out[key] = int(value)
    return out


def _read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


class CgroupConfinement(Confinement):
    @classmethod
    def create(
        cls, bases: dict[str, Path], job_id: str, limits: JobLimits | None, uid: int | None
    ) -> CgroupConfinement:
        # Only the hierarchies the job needs: memory and cpuacct always (accounting, and a directory
        # that holds every process of the job, for the kill at its end); cpu and pids for their limits.
        needed = {"memory", "cpuacct"}
        if limits is not None and limits.cpu_percent is not None:
            needed.add("cpu")
        if limits is not None and limits.max_processes is not None:
            needed.add("pids")
        dirs = {ctrl: base / job_id for ctrl, base in bases.items() if ctrl in needed}
        made: list[Path] = []
        try:
            for path in dict.fromkeys(dirs.values()):  # cpu and cpuacct may share a hierarchy
                if path.exists():  # left by a crashed run of this job (re-queued): start empty
                    _empty(path)
                else:
                    path.mkdir()
                made.append(path)
                if uid is not None:
                    os.chown(path / "cgroup.procs", uid, -1)  # the runbook, as its user, joins it itself
            conf = cls(limits, dirs)
            conf._apply()
        except OSError:
            for path in made:
                with contextlib.suppress(OSError):
                    path.rmdir()
            raise
        return conf

    def __init__(self, limits: JobLimits | None, dirs: dict[str, Path]) -> None:
        super().__init__(limits, "cgroup v1")
        self.dirs = dirs

    def _apply(self) -> None:
        lim = self.limits
        if lim is None:
            return
        if lim.memory_mb is not None:
            mem = self.dirs["memory"]
            (mem / "memory.limit_in_bytes").write_text(str(lim.memory_mb * MIB))
            with contextlib.suppress(OSError):  # no swap accounting: nothing to escape to
                (mem / "memory.memsw.limit_in_bytes").write_text(str(lim.memory_mb * MIB))
        if lim.cpu_percent is not None:
            cpu = self.dirs["cpu"]
            (cpu / "cpu.cfs_period_us").write_text(str(CFS_PERIOD_US))
            (cpu / "cpu.cfs_quota_us").write_text(str(max(1000, round(CFS_PERIOD_US * lim.cpu_percent / 100))))
        if lim.max_processes is not None:
            (self.dirs["pids"] / "pids.max").write_text(str(lim.max_processes))

    def wrap(self, argv: list[str]) -> list[str]:
        procs = [str(p / "cgroup.procs") for p in dict.fromkeys(self.dirs.values())]
        return ["/bin/sh", "-c", _JOIN, "outpost-cgroup", *procs, "--", *argv]

    def account(self, usage: JobResources) -> JobResources:
        update: dict[str, object] = {"limits": self.limits, "enforced_by": self.enforced_by, "measured_by": "cgroup v1"}
        if "cpuacct" in self.dirs:
            ticks = _read_keyed(self.dirs["cpuacct"] / "cpuacct.stat")
            if "user" in ticks and "system" in ticks:
                # The cgroup saw every process; rusage only the reaped ones (never more than the cgroup).
                update["cpu_user_s"] = round(max(usage.cpu_user_s, ticks["user"] / _CLK_TCK), 3)
                update["cpu_system_s"] = round(max(usage.cpu_system_s, ticks["system"] / _CLK_TCK), 3)
        mem = self.dirs["memory"]
        update["memory_peak_bytes"] = _read_int(mem / "memory.max_usage_in_bytes")
        update["oom_killed"] = _read_keyed(mem / "memory.oom_control").get("oom_kill", 0) > 0
        throttled = _read_keyed(self.dirs["cpu"] / "cpu.stat").get("throttled_time") if "cpu" in self.dirs else None
        if throttled is not None:
            update["cpu_throttled_s"] = round(throttled / 1e9, 3)
        return usage.model_copy(update=update)

    def hit_process_limit(self) -> bool:
        return "pids" in self.dirs and _read_keyed(self.dirs["pids"] / "pids.events").get("max", 0) > 0

    def close(self) -> None:
        """Kill what is left of the job (escaped its process group too) and remove its cgroups."""
        for path in dict.fromkeys(self.dirs.values()):
            _remove(path)


def _pids(path: Path) -> list[int]:
    try:
        return [int(p) for p in (path / "cgroup.procs").read_text().split()]
    except (OSError, ValueError):
        return []


def _empty(path: Path, wait_s: float = 2.0) -> None:
    """SIGKILL every process in the cgroup and wait (bounded) until it is empty."""
    deadline = time.monotonic() + wait_s
    kill = path / "cgroup.kill"  # cgroup v2 (Linux 5.14+): the whole tree at once, forks in flight included
    if kill.exists() and _pids(path):
        with contextlib.suppress(OSError):
            kill.write_text("1")
    while pids := _pids(path):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        if time.monotonic() > deadline:
            raise OSError(f"processes {pids[:5]} in {path} did not die")
        time.sleep(0.02)


SWEEP_AFTER_S = 60.0


def _sweep(bases: dict[str, Path]) -> None:
    """Remove empty job cgroups left by agents that were killed and never restarted on their state dir.

    rmdir refuses a cgroup that has processes, so a running job's stays; the age guard spares one
    that another agent made a moment ago and has not joined yet.
    """
    now = time.time()
    for base in dict.fromkeys(bases.values()):
        with contextlib.suppress(OSError):
            for entry in base.iterdir():
                with contextlib.suppress(OSError):
                    if entry.is_dir() and now - entry.stat().st_mtime > SWEEP_AFTER_S:
                        entry.rmdir()


def _remove(path: Path) -> None:
    try:
        _empty(path)
        path.rmdir()
    except OSError as exc:
        log.warning("cannot remove the job cgroup %s: %s", path, exc)


# -- cgroup v2 ------------------------------------------------------------------------------------


def _detect_v2(root: Path | None) -> tuple[Enforcement | None, str]:
    """cgroup v2 job cgroups under `root` (default: the agent's own unified cgroup), or why not.

    Without a `root`, v2 is used only where it offers every controller job limits use; with one
    (a delegated subtree: systemd Delegate=yes, or a test's own mount) it is used whatever it offers.
    """
    explicit = root is not None
    if root is None:
        root = cgroups.unified_dir()
        if root is None:
            return None, "no cgroup v2 (unified) hierarchy"
        offered = _words(root / "cgroup.controllers")
        lacking = [c for c in REQUIRED if c not in offered]
        if lacking:
            return None, f"the cgroup v2 hierarchy offers no {'/'.join(lacking)} controller"
    if not (root / "cgroup.controllers").is_file():
        return None, f"{root} is not a cgroup v2 directory"
    try:
        base = _delegate(root)
    except OSError as exc:
        return None, f"cannot create job cgroups under {root}: {exc.strerror or exc}"
    enabled = frozenset(_words(base / "cgroup.subtree_control"))
    if not explicit and any(c not in enabled for c in REQUIRED):
        return None, f"cannot enable {'/'.join(c for c in REQUIRED if c not in enabled)} for job cgroups under {root}"
    _sweep({"": base})
    have = "/".join(c for c in REQUIRED if c in enabled) or "none"
    return Enforcement(V2, f"job cgroups under {base} (controllers: {have})", {"": base}, enabled), ""


def _words(path: Path) -> list[str]:
    try:
        return path.read_text().split()
    except OSError:
        return []


def _delegate(root: Path) -> Path:
    """`root`/outpost-jobs with the controllers `root` offers enabled for its children.

    cgroup v2 lets a cgroup hand controllers to children only while it has no processes of its own
    ("no internal processes"): an agent inside `root` (its own cgroup) first moves to a leaf of it.
    """
    base = root / JOBS_DIR
    base.mkdir(exist_ok=True)
    wanted = [c for c in REQUIRED if c in _words(root / "cgroup.controllers")]
    if wanted and str(os.getpid()) in _words(root / "cgroup.procs"):
        leaf = root / AGENT_LEAF
        leaf.mkdir(exist_ok=True)
        (leaf / "cgroup.procs").write_text(str(os.getpid()))
    for path in (root, base):
        for ctrl in wanted:
            if ctrl in _words(path / "cgroup.controllers"):
                with contextlib.suppress(OSError):  # what could not be enabled is refused per job, by name
                    (path / "cgroup.subtree_control").write_text(f"+{ctrl}")
    return base


_V2_NEEDS = (
    ("memory_mb", "memory", "memory limit"),
    ("cpu_percent", "cpu", "CPU quota"),
    ("max_processes", "pids", "process limit"),
)


def _refuse_missing_v2(limits: JobLimits | None, enabled: frozenset[str], base: Path) -> None:
    if limits is None:
        return
    for attr, ctrl, what in _V2_NEEDS:
        value = getattr(limits, attr)
        if value is not None and ctrl not in enabled:
            raise RuntimeRefusal(
                f"the job's {what} ({describe_limits(limits)}) cannot be enforced on this worker: its cgroup v2 "
                f"hierarchy at {base.parent} does not offer the {ctrl} controller (enabled: "
                f"{', '.join(sorted(enabled)) or 'none'}); delegate it to the agent (systemd Delegate=yes) "
                "or clear the limit"
            )


class V2Confinement(Confinement):
    """One cgroup per job in the unified tree: limits, accounting (cpu.stat is there without the cpu
    controller), and cgroup.kill for whatever is left of the job."""

    @classmethod
    def create(cls, base: Path, job_id: str, limits: JobLimits | None) -> V2Confinement:
        path = base / job_id
        if path.exists():  # left by a crashed run of this job (re-queued): start empty
            _empty(path)
        else:
            path.mkdir()
        conf = cls(limits, path)
        try:
            conf._apply()
        except OSError:
            with contextlib.suppress(OSError):
                path.rmdir()
            raise
        return conf

    def __init__(self, limits: JobLimits | None, path: Path) -> None:
        super().__init__(limits, V2)
        self.path = path

    def _apply(self) -> None:
        lim = self.limits
        if lim is None:
            return
        if lim.memory_mb is not None:
            (self.path / "memory.max").write_text(str(lim.memory_mb * MIB))
            with contextlib.suppress(OSError):  # no swap accounting: nothing to escape to
                (self.path / "memory.swap.max").write_text("0")
        if lim.cpu_percent is not None:
            quota = max(1000, round(CFS_PERIOD_US * lim.cpu_percent / 100))
            (self.path / "cpu.max").write_text(f"{quota} {CFS_PERIOD_US}")
        if lim.max_processes is not None:
            (self.path / "pids.max").write_text(str(lim.max_processes))

    def wrap(self, argv: list[str]) -> list[str]:
        return ["/bin/sh", "-c", _JOIN, "outpost-cgroup", str(self.path / "cgroup.procs"), "--", *argv]

    def account(self, usage: JobResources) -> JobResources:
        update: dict[str, object] = {"limits": self.limits, "enforced_by": self.enforced_by, "measured_by": V2}
        cpu = _read_keyed(self.path / "cpu.stat")
        if "user_usec" in cpu and "system_usec" in cpu:
            update["cpu_user_s"] = round(max(usage.cpu_user_s, cpu["user_usec"] / 1e6), 3)
            update["cpu_system_s"] = round(max(usage.cpu_system_s, cpu["system_usec"] / 1e6), 3)
        if "throttled_usec" in cpu and self.limits is not None and self.limits.cpu_percent is not None:
            update["cpu_throttled_s"] = round(cpu["throttled_usec"] / 1e6, 3)
        peak = _read_int(self.path / "memory.peak")
        if peak is not None:
            update["memory_peak_bytes"] = peak
        update["oom_killed"] = _read_keyed(self.path / "memory.events").get("oom_kill", 0) > 0
        return usage.model_copy(update=update)

    def hit_process_limit(self) -> bool:
        return _read_keyed(self.path / "pids.events").get("max", 0) > 0

    def close(self) -> None:
        _remove(self.path)
