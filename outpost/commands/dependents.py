"""Schedules and webhooks that point at a runbook or a worker group about to be deleted.

Deleting either would leave them firing into nothing, so `delete` refuses and lists them;
`--force` disables them first (they are kept, so nothing about them is lost).
"""

from __future__ import annotations

from typing import Annotated

import typer

from outpost.commands.client import Client, request
from outpost.commands.common import fail, name_path

ForceOpt = Annotated[bool, typer.Option("--force", help="Disable the schedules and webhooks that use it, then delete.")]
KINDS = (("schedule", "schedules"), ("webhook", "webhooks"))


def enabled_dependents(client: Client, field: str, value: str) -> list[tuple[str, str]]:
    """(kind, name) of every enabled schedule and webhook whose `field` (runbook, run_on) is `value`."""
    found: list[tuple[str, str]] = []
    for kind, plural in KINDS:
        for row in request(client, "GET", f"/api/v1/{plural}").json():
            if row.get(field) == value and row.get("enabled", True):
                found.append((kind, row["name"]))
    return found


def settle_dependents(client: Client, field: str, value: str, what: str, force: bool) -> list[str]:
    """Refuse (one line naming them) or, with force, disable the dependents; returns what was disabled."""
    name_path(value, what.split()[-1])
    found = enabled_dependents(client, field, value)
    listed = [f"{kind} {name}" for kind, name in found]
    if found and not force:
        fail(
            f"{what} {value} is used by {', '.join(listed)}: delete or disable them first, "
            "or pass --force to disable them and delete"
        )
    for kind, name in found:
        request(client, "PATCH", f"/api/v1/{kind}s/{name_path(name, kind)}", json={"enabled": False})
    return listed


def note(disabled: list[str]) -> str:
    return f" (disabled: {', '.join(disabled)})" if disabled else ""
