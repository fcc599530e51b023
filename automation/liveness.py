"""Worker liveness and queue facts from the shared control-plane store.

Every replica answers `/metrics` from here, so all replicas agree on which worker
is up (its last heartbeat, whichever replica received it) and on queue depth.
A heartbeat costs one UPDATE of one row; a scrape costs three small reads.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import func, select, update

from automation.context import ControlPlane
from automation.models import Job, Worker, WorkerGroup, utcnow
from outpost.contract import JobStatus
from outpost.observer import GroupSnapshot


def record_heartbeat(cp: ControlPlane, worker_id: str, received: datetime) -> None:
    """The worker heartbeated at `received` (this replica's receive time)."""
    with cp.transaction() as conn:
        conn.execute(update(Worker).where(Worker.id == worker_id).values(last_heartbeat_at=received))  # type: ignore[arg-type]


def _unix(t: datetime | None) -> float | None:
    if t is None:
        return None
    return (t if t.tzinfo else t.replace(tzinfo=UTC)).timestamp()


def snapshot(cp: ControlPlane) -> list[GroupSnapshot]:
    """Per group: queue depth, oldest queued age, registered workers and their last heartbeat."""
    now = utcnow()
    with cp.reading() as s:
        groups = s.execute(select(WorkerGroup.id, WorkerGroup.name)).all()
        queued = {
            gid: (count, oldest)
            for gid, count, oldest in s.execute(
                select(Job.group_id, func.count(), func.min(Job.created_at))
                .where(Job.status == JobStatus.NEW)
                .group_by(Job.group_id)
            ).all()
        }
        beats: dict[int, dict[str, float | None]] = {}
        for gid, name, last in s.execute(select(Worker.group_id, Worker.name, Worker.last_heartbeat_at)).all():
            beats.setdefault(gid, {})[name] = _unix(last)
    out = []
    for gid, name in groups:
        count, oldest = queued.get(gid, (0, None))
        if oldest is not None and oldest.tzinfo is None:
            oldest = oldest.replace(tzinfo=UTC)
        age = (now - oldest).total_seconds() if oldest else 0.0
        members = beats.get(gid, {})
        out.append(
            GroupSnapshot(
                group=name,
                queue_depth=int(count),
                oldest_queued_age_s=max(0.0, age),
                workers=dict.fromkeys(members, 1),
                heartbeats=members,
            )
        )
    return out
