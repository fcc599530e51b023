"""Sandbox: can a runbook on this worker read the worker's own credential? Is the agent itself capped?

The agent records in status.json who runs jobs without RunAs (`runbook_user`) and
whether such a job could read `<state-dir>/credential` (`runbooks_can_read_credential`):
true when jobs run as the agent's own user and can see its state dir (a non-root agent
whose kernel has no unprivileged user namespaces to hide it in: `credential_hidden_by`).
"""

from __future__ import annotations

from pathlib import Path

from diagnostics.checks import CheckSpec
from diagnostics.context import Context
from diagnostics.model import Outcome, ok, skip, warn
from outpost import cgroups

RUNBOOK_USER = "outpost-runbook"
HINT = (
    f"run the agent as root (the systemd unit does) and create the unprivileged runbook user: "
    f"useradd --system --no-create-home --shell /usr/sbin/nologin {RUNBOOK_USER} "
    "(or pass `outpost worker run --runbook-user NAME`); groups with a RunAs credential are not affected"
)


def credential_isolation(ctx: Context) -> Outcome:
    if ctx.registration().registration is None:
        return skip("not registered; no agent to check")
    status = ctx.status()
    if "runbooks_can_read_credential" not in status:
        return skip("the agent has not recorded who runs its jobs yet (start it once, or upgrade it)")
    evidence = {"runbook_user": status.get("runbook_user"), "status_file": str(ctx.state.status_path)}
    if status.get("runbooks_can_read_credential"):
        return warn(
            "runbooks without RunAs run as the agent's own user and could read this worker's credential",
            HINT,
            evidence=evidence,
        )
    if status.get("credential_hidden_by"):
        evidence["credential_hidden_by"] = status["credential_hidden_by"]
        return ok(
            "runbooks without RunAs run as the agent's own user, with its state dir hidden from them "
            f"({status['credential_hidden_by']})",
            evidence=evidence,
        )
    return ok(
        f"runbooks without RunAs run as {status.get('runbook_user')}, who cannot read the credential", evidence=evidence
    )


def agent_cgroup_limits(ctx: Context) -> Outcome:
    """The CPU quota and memory limit on the agent's own cgroup: they bound every job it runs."""
    pid = ctx.agent_pid()
    alive = pid is not None and Path(f"/proc/{pid}").exists()
    if not alive:
        return skip("the agent is not running; its cgroup limits cannot be read")
    found = cgroups.limits_of(pid)  # type: ignore[arg-type]
    status = ctx.status()
    evidence = {
        "agent_pid": pid,
        "cgroup": found.where if found else None,
        "job_limits_enforced_by": status.get("limits_enforced_by"),
        "job_limits_enforcement": status.get("limits_enforcement"),
    }
    enforced = (
        f"; job limits are enforced by {status['limits_enforced_by']}" if status.get("limits_enforced_by") else ""
    )
    if found is None:
        return ok(f"the agent is in no cgroup with CPU or memory controllers{enforced}", evidence=evidence)
    evidence.update(cpu_quota_percent=found.cpu_percent, memory_limit_bytes=found.memory_bytes)
    parts = [
        "no CPU quota" if found.cpu_percent is None else f"CPU quota {found.cpu_percent:g}% of one CPU",
        "no memory limit" if found.memory_bytes is None else f"memory limit {found.memory_bytes / (1 << 20):.0f} MiB",
    ]
    finding = f"the agent's cgroup ({found.where}) sets {' and '.join(parts)}{enforced}"
    if found.cpu_percent is not None and found.cpu_percent < 100:
        return warn(
            finding + ": every job on this worker shares that CPU quota and runs slowly under it",
            "raise or remove the quota on the agent's unit (systemd: CPUQuota= in outpost-worker.service, "
            "`systemctl set-property outpost-worker CPUQuota=`); per-job limits belong in "
            "`outpost group set-limits`",
            evidence=evidence,
        )
    return ok(finding, evidence=evidence)


CHECKS = [
    CheckSpec("sandbox.credential", "Runbooks cannot read the worker credential", credential_isolation),
    CheckSpec("sandbox.cgroup", "The agent's own CPU and memory limits", agent_cgroup_limits),
]
