"""Sandbox: can a runbook on this worker read the worker's own credential?

The agent records in status.json who runs jobs without RunAs (`runbook_user`) and
whether such a job could read `<state-dir>/credential` (`runbooks_can_read_credential`):
true when jobs run as the agent's own user (root without an unprivileged runbook user,
or any non-root agent).
"""

from __future__ import annotations

from diagnostics.checks import CheckSpec
from diagnostics.context import Context
from diagnostics.model import Outcome, ok, skip, warn

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
    return ok(
        f"runbooks without RunAs run as {status.get('runbook_user')}, who cannot read the credential", evidence=evidence
    )


CHECKS = [CheckSpec("sandbox.credential", "Runbooks cannot read the worker credential", credential_isolation)]
