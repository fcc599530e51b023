"""What a job's runbook consumed: wall time, CPU, peak memory, exit signal (the job's `resources`).

Measured from the `wait4` rusage of the runbook process, which covers it and every
descendant it waited for; where the job ran in a cgroup (agent/limits.py), the cgroup's
counters replace the CPU figures, since they cover every process of the job, reaped or
not. Peak RSS stays the rusage one (the largest single process); the cgroup's memory
peak (all processes, page cache included) is reported next to it.
"""

from __future__ import annotations

import resource
import signal

from outpost.contract import JobLimits, JobResources

MIB = 1024 * 1024


def signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def from_rusage(ru: resource.struct_rusage, wall_s: float, exit_code: int) -> JobResources:
    return JobResources(
        wall_s=round(wall_s, 3),
        cpu_user_s=round(ru.ru_utime, 3),
        cpu_system_s=round(ru.ru_stime, 3),
        peak_rss_bytes=int(ru.ru_maxrss) * 1024,  # Linux reports KiB
        exit_signal=-exit_code if exit_code < 0 else None,
    )


def mib(value: int | None) -> str:
    return "?" if value is None else f"{value / MIB:.1f} MiB"


def describe_limits(limits: JobLimits) -> str:
    parts = []
    if limits.memory_mb is not None:
        parts.append(f"memory {limits.memory_mb} MiB")
    if limits.cpu_percent is not None:
        parts.append(f"CPU {limits.cpu_percent:g}%")
    if limits.max_processes is not None:
        parts.append(f"{limits.max_processes} processes")
    return ", ".join(parts)


def failure_reason(usage: JobResources, exit_code: int, hit_process_limit: bool) -> str:
    """The Failed reason of a runbook that exited non-zero, naming the limit it hit, if any."""
    limits = usage.limits
    if usage.oom_killed and limits is not None and limits.memory_mb is not None:
        peak = usage.memory_peak_bytes or usage.peak_rss_bytes
        return (
            f"out of memory: killed by the kernel at the job's memory limit of {limits.memory_mb} MiB "
            f"({usage.enforced_by}); peak {mib(peak)}"
        )
    if hit_process_limit and limits is not None and limits.max_processes is not None:
        return (
            f"runbook failed: exit code {exit_code}; it reached the job's process limit of "
            f"{limits.max_processes} ({usage.enforced_by}): a fork was refused"
        )
    if exit_code < 0:
        sig = -exit_code
        detail = f"killed by signal {sig} ({signal_name(sig)})"
        if sig == signal.SIGKILL:
            detail += f", peak RSS {mib(usage.peak_rss_bytes)} (the kernel's out-of-memory killer sends SIGKILL)"
    else:
        detail = f"exit code {exit_code}"
    if limits is not None and not limits.is_empty():
        detail += f"; limits in force ({usage.enforced_by}): {describe_limits(limits)}"
    return f"runbook failed: {detail}"
