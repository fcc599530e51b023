"""Local resources: free disk in the state and work directories; log directory writable."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from diagnostics.checks import CheckSpec
from diagnostics.context import Context
from diagnostics.model import Outcome, fail, ok, skip, warn


def _dirs(ctx: Context) -> dict[str, Path]:
    status = ctx.status()
    work = ctx.options.work_dir or (Path(status["work_dir"]) if status.get("work_dir") else ctx.state_dir / "work")
    logs = ctx.options.log_dir or (Path(status["log_dir"]) if status.get("log_dir") else ctx.state_dir / "logs")
    return {"state": ctx.state_dir, "work": Path(work), "log": Path(logs)}


def _existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _gib(n: int) -> str:
    return f"{n / (1 << 30):.1f} GiB" if n >= 1 << 30 else f"{n / (1 << 20):.0f} MiB"


def disk(ctx: Context) -> list[Outcome]:
    if not ctx.state_dir.exists() and ctx.registration().registration is None:
        return [skip("no agent state on this machine", target=str(ctx.state_dir))]
    t = ctx.options.thresholds
    out = []
    for role, path in _dirs(ctx).items():
        if role == "log":
            continue
        where = _existing(path)
        usage = shutil.disk_usage(where)
        evidence = {"path": str(path), "measured_at": str(where), "free_bytes": usage.free, "total_bytes": usage.total}
        finding = f"{role} directory {path}: {_gib(usage.free)} free of {_gib(usage.total)}"
        hint = f"free space on the file system holding {where} (old job work dirs, logs: du -sh {where}/*)"
        if usage.free < t.disk_fail_bytes:
            out.append(fail(finding + f" (below {_gib(t.disk_fail_bytes)})", hint, evidence=evidence, target=str(path)))
        elif usage.free < t.disk_warn_bytes:
            out.append(warn(finding + f" (below {_gib(t.disk_warn_bytes)})", hint, evidence=evidence, target=str(path)))
        else:
            out.append(ok(finding, evidence=evidence, target=str(path)))
    return out


def logs(ctx: Context) -> Outcome:
    if not ctx.state_dir.exists() and ctx.registration().registration is None:
        return skip("no agent state on this machine")
    path = _dirs(ctx)["log"]
    evidence = {"path": str(path)}
    if path.exists() and not path.is_dir():
        return fail(f"log directory {path} is not a directory", f"remove or rename {path}", evidence=evidence)
    target = path if path.exists() else _existing(path)
    if not target.is_dir():
        return fail(
            f"log directory {path} cannot be created: {target} is not a directory",
            f"fix the path: {target} must be a directory",
            evidence=evidence,
        )
    try:
        with tempfile.NamedTemporaryFile(dir=target, prefix=".outpost-diagnose-"):
            pass
    except OSError as exc:
        return fail(
            f"cannot write to {target}: {exc.strerror or exc}",
            f"give the agent's user write access: chown -R AGENT_USER {target}",
            evidence=evidence,
        )
    state = "writable" if path.exists() else f"absent, creatable in {target}"
    uid = os.geteuid()
    return ok(f"log directory {path} is {state}" + (" (checked as root)" if uid == 0 else ""), evidence=evidence)


CHECKS = [
    CheckSpec("resources.disk", "Free disk", disk),
    CheckSpec("resources.logs", "Log directory writable", logs),
]
