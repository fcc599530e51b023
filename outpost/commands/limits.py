"""The resource-limit options and the one PUT behind `group set-limits` and `runbook set-limits`."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from outpost.commands.client import request
from outpost.commands.common import admin_client, done, fail, name_path

MemoryOpt = Annotated[int | None, typer.Option("--memory-mb", min=8, help="Memory limit of each job, in MiB.")]
CpuOpt = Annotated[
    float | None, typer.Option("--cpu-percent", min=0.1, help="CPU quota of each job, % of one CPU (200: two).")
]
ProcessesOpt = Annotated[
    int | None, typer.Option("--max-processes", min=1, help="Processes (and threads) each job may have.")
]


def shown(limits: dict[str, float | None] | None) -> str:
    """`memory_mb 64, max_processes 50`, or '' without limits."""
    return ", ".join(f"{k} {v:g}" for k, v in (limits or {}).items() if v is not None)


def put(
    kind: str,
    collection: str,
    name: str,
    given: dict[str, Any],
    clear: bool,
    conn: tuple[str | None, str | None, Any],
    as_json: bool,
) -> None:
    """PUT `given` (or nothing, with --clear) as the limits of `kind` `name`; exit 2 on misuse."""
    if clear == any(v is not None for v in given.values()):
        fail("pass --memory-mb, --cpu-percent and/or --max-processes, or --clear", 2)
    with admin_client(*conn) as client:
        path = f"/api/v1/{collection}/{name_path(name, kind)}/limits"
        answer = request(client, "PUT", path, json=given).json()
    done(as_json, answer, f"{kind} {name}: job limits {shown(answer['limits']) or 'none'}")
