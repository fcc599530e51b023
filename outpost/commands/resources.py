"""How `outpost job show` prints a job's `resources` (what its runbook consumed, the limits in force)."""

from __future__ import annotations

import signal
from typing import Any

MIB = 1024 * 1024


def _mib(value: Any) -> str:
    return f"{value / MIB:.1f} MiB"


def _limits(limits: dict[str, Any] | None, enforced_by: str | None) -> str:
    limits = limits or {}
    parts = []
    if limits.get("memory_mb") is not None:
        parts.append(f"memory {limits['memory_mb']} MiB")
    if limits.get("cpu_percent") is not None:
        parts.append(f"CPU {limits['cpu_percent']:g}%")
    if limits.get("max_processes") is not None:
        parts.append(f"{limits['max_processes']} processes")
    return f"{', '.join(parts)} ({enforced_by})" if parts else "none"


def resource_fields(resources: dict[str, Any] | None) -> dict[str, str]:
    """Field name -> text, in show order; empty when the job reported none (it never started)."""
    if not resources:
        return {}
    cpu = f"{resources['cpu_user_s']:.2f} s user, {resources['cpu_system_s']:.2f} s system"
    if resources.get("cpu_throttled_s"):
        cpu += f" (held back {resources['cpu_throttled_s']:.2f} s by the CPU quota)"
    memory = f"{_mib(resources['peak_rss_bytes'])} RSS"
    if resources.get("memory_peak_bytes") is not None:
        memory += f", {_mib(resources['memory_peak_bytes'])} for the whole job"
    if resources.get("oom_killed"):
        memory += " (killed at the memory limit)"
    fields = {
        "wall_time": f"{resources['wall_s']:.2f} s",
        "cpu_time": cpu,
        "peak_memory": memory,
    }
    sig = resources.get("exit_signal")
    if sig:
        try:
            fields["exit_signal"] = f"{sig} ({signal.Signals(sig).name})"
        except ValueError:
            fields["exit_signal"] = str(sig)
    fields["limits"] = _limits(resources.get("limits"), resources.get("enforced_by"))
    fields["measured_by"] = str(resources.get("measured_by", "rusage"))
    return fields
