"""Freshness: the agent's last successful poll and heartbeat, and whether its process runs."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

from diagnostics.checks import CheckSpec
from diagnostics.context import Context
from diagnostics.model import Outcome, fail, ok, skip, warn
from outpost.settings import HEARTBEAT_INTERVAL_S

START_HINT = (
    "start the agent: systemctl start outpost-worker (or outpost worker run); then journalctl -u outpost-worker"
)


def _age(ctx: Context, key: str) -> tuple[float | None, str | None]:
    value = ctx.status().get(key)
    if not value:
        return None, None
    try:
        when = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None, f"unparseable {key} {value!r} in status.json"
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return (datetime.now(UTC) - when).total_seconds(), None


def _fmt(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _fresh(ctx: Context, key: str, what: str, warn_s: float, fail_s: float, hint: str) -> Outcome:
    if ctx.registration().registration is None:
        return skip("not registered; no agent to check")
    age, problem = _age(ctx, key)
    evidence = {key: ctx.status().get(key), "status_file": str(ctx.state.status_path)}
    if problem:
        return warn(problem, "the agent rewrites status.json on its next success", evidence=evidence)
    if age is None:
        return warn(f"no successful {what} recorded in {ctx.state.status_path}", START_HINT, evidence=evidence)
    evidence["age_s"] = round(age, 1)
    if age < -60:
        return warn(f"last {what} is recorded {_fmt(-age)} in the future", "check clock.skew", evidence=evidence)
    if age > fail_s:
        return fail(f"last successful {what} {_fmt(age)} ago (fail above {_fmt(fail_s)})", hint, evidence=evidence)
    if age > warn_s:
        return warn(f"last successful {what} {_fmt(age)} ago (warn above {_fmt(warn_s)})", hint, evidence=evidence)
    return ok(f"last successful {what} {_fmt(max(age, 0))} ago", evidence=evidence)


def poll(ctx: Context) -> Outcome:
    t = ctx.options.thresholds
    return _fresh(
        ctx,
        "last_poll_ok",
        "poll",
        t.poll_warn_s,
        t.poll_fail_s,
        "the agent runs but cannot poll: the failing checks above say why; also journalctl -u outpost-worker",
    )


def heartbeat(ctx: Context) -> Outcome:
    t = ctx.options.thresholds
    interval = ctx.status().get("heartbeat_interval_s") or HEARTBEAT_INTERVAL_S
    interval = float(interval) if isinstance(interval, (int, float)) and interval > 0 else HEARTBEAT_INTERVAL_S
    return _fresh(
        ctx,
        "last_heartbeat_ok",
        "heartbeat",
        interval * t.heartbeat_intervals_warn,
        interval * t.heartbeat_intervals_fail,
        "heartbeats are not getting through: check the collector URL and the failing checks above",
    )


def process(ctx: Context) -> Outcome:
    if ctx.registration().registration is None:
        return skip("not registered; no agent to check")
    pid = ctx.agent_pid()
    if pid is None:
        return warn(f"no agent pid in {ctx.state.status_path}: the agent has not run since registration", START_HINT)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return fail(f"the agent (pid {pid}) is not running", START_HINT, evidence={"pid": pid})
    except PermissionError:
        pass  # alive, owned by someone else
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        cmdline = ""
    evidence = {"pid": pid, "cmdline": cmdline[:200]}
    if cmdline and "outpost" not in cmdline and "agent" not in cmdline:
        return warn(
            f"pid {pid} is alive but is not the agent ({cmdline[:60]}): the agent died and the pid was reused",
            START_HINT,
            evidence=evidence,
        )
    return ok(f"agent running (pid {pid})", evidence=evidence)


CHECKS = [
    CheckSpec("freshness.poll", "Last successful poll", poll),
    CheckSpec("freshness.heartbeat", "Last successful heartbeat", heartbeat),
    CheckSpec("freshness.process", "Agent process", process),
]
