"""What `job start --wait` says while a job sits queued: whether any worker of its group is alive."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from outpost.commands.client import Client, request
from outpost.commands.common import err_console
from outpost.contract import JobStatus
from outpost.http_policy import ApiError

QUEUED_NOTICE_S = 15.0
# A polling worker refreshes last_seen_at at least every ~35 s (25 s long-poll + 10 s write batching).
LIVE_WITHIN_S = 60.0


def ago(iso: str | None, now: datetime | None = None) -> str:
    """'5 min ago' (or 'in 5 min' for a time to come) for people; 'never' when there is no time."""
    if not iso:
        return "never"
    seconds = int(((now or datetime.now(UTC)) - _utc(iso.replace("Z", "+00:00"))).total_seconds())
    span = _span(abs(seconds))
    return f"in {span}" if seconds < 0 else f"{span} ago"


def _span(seconds: int) -> str:
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    if seconds < 172800:
        return f"{seconds // 3600} h"
    return f"{seconds // 86400} days"


def _utc(iso: str) -> datetime:
    then = datetime.fromisoformat(iso)
    return then if then.tzinfo else then.replace(tzinfo=UTC)


def seen_within(iso: str | None, seconds: float) -> bool:
    """Whether a last-seen time is at most `seconds` old (never seen: no)."""
    if not iso:
        return False
    return (datetime.now(UTC) - _utc(iso)).total_seconds() <= seconds


def group_liveness(client: Client, group: str) -> tuple[bool, str | None]:
    """(any worker seen within LIVE_WITHIN_S, the newest last_seen_at) for a worker group."""
    workers = request(client, "GET", "/api/v1/workers", params={"group": group}).json()
    seen = [w["last_seen_at"] for w in workers if w.get("last_seen_at")]
    newest = max(seen, key=lambda t: _utc(t).timestamp(), default=None)
    return seen_within(newest, LIVE_WITHIN_S), newest


class QueuedNotice:
    """Every QUEUED_NOTICE_S of a job still New, one line on stderr saying why it may be waiting."""

    def __init__(self, client: Client, group: str) -> None:
        self.client = client
        self.group = group
        self.next_at = time.monotonic() + QUEUED_NOTICE_S

    def tick(self, job: dict[str, Any]) -> None:
        if job.get("status") != JobStatus.NEW or time.monotonic() < self.next_at:
            return
        self.next_at = time.monotonic() + QUEUED_NOTICE_S
        try:
            live, newest = group_liveness(self.client, self.group)
        except ApiError:
            live, newest = True, None  # cannot tell: say only that it waits
        if live:
            err_console.print(f"still queued: waiting for a free worker in group {self.group}", highlight=False)
        else:
            last = f"last heartbeat {ago(newest)}" if newest else "no worker has ever polled"
            err_console.print(
                f"still queued: no live worker in group {self.group} ({last})", highlight=False, soft_wrap=True
            )
