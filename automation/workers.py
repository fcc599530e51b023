"""Worker groups and workers: registration, credentials, removal."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import datetime

from sqlalchemy import bindparam, func, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlmodel import select

from automation import limits, secrets
from automation.context import ControlPlane
from automation.errors import BadRequest, Conflict, NotFound, Unauthorized
from automation.models import Job, Setting, Worker, WorkerGroup, utcnow
from automation.notify import CREDENTIALS
from outpost.contract import FINAL_STATUSES, NAME_RE, RegisterRequest, RegisterResponse
from outpost.observer import WorkerIdentity

# A credential is checked against the store once per this long per worker. A parked fleet re-polls
# every ~25 s, so a short TTL made nearly every poll a store read. Removal and re-registration
# clear the cache at once here and, by NOTIFY, on every replica (`forget_credentials`).
_AUTH_CACHE_TTL_S = 300.0


def _check_name(kind: str, name: str) -> None:
    if not NAME_RE.match(name or ""):
        raise BadRequest(
            f"invalid {kind} name {name!r}: use 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit"
        )


def _registration_key_ok(cp: ControlPlane, key: str) -> bool:
    with cp.reading() as s:
        digests = [s.get(Setting, k) for k in secrets.KEY_HASH.values()]
    return any(d is not None and secrets.matches(key, d.value) for d in digests)


def get_or_create_group(cp: ControlPlane, name: str) -> WorkerGroup:
    """The group named `name`, created on first use.

    Many machines are provisioned into a new group at once: the insert is
    `ON CONFLICT DO NOTHING` and the row is read back, so racing registrations (on any
    replica) all end up with the one group instead of a unique violation.
    """
    _check_name("worker group", name)
    with cp.session() as s:
        group = s.exec(select(WorkerGroup).where(WorkerGroup.name == name)).first()
        if group is None:
            insert = sqlite_insert if cp.dialect == "sqlite" else pg_insert
            s.execute(
                insert(WorkerGroup.__table__)  # type: ignore[attr-defined]
                .values(name=name, created_at=utcnow())
                .on_conflict_do_nothing(index_elements=["name"])
            )
            s.commit()
            group = s.exec(select(WorkerGroup).where(WorkerGroup.name == name)).one()
        return group


def register(cp: ControlPlane, req: RegisterRequest) -> RegisterResponse:
    if not _registration_key_ok(cp, req.key):
        raise Unauthorized("registration key rejected: use the primary or secondary key printed by `outpost server`")
    _check_name("worker", req.name)
    group = get_or_create_group(cp, req.group)
    worker_id = str(uuid.uuid4())
    secret = secrets.new_token("opw")
    credential = f"{worker_id}.{secret}"
    with cp.session() as s:
        existing = s.exec(select(Worker).where(Worker.group_id == group.id, Worker.name == req.name)).first()
        if existing is not None:
            if not req.force:
                raise Conflict(
                    f"a worker named {req.name!r} is already registered in group {req.group!r}; "
                    "pick another --name, or pass --force to replace it"
                )
            s.delete(existing)
            s.flush()
        s.add(
            Worker(
                id=worker_id,
                name=req.name,
                group_id=group.id,  # type: ignore[arg-type]
                credential_hash=secrets.digest(secret),
                hostname=req.hostname[:255],
                os_type=req.os_type[:32],
                os_name=req.os_name[:128],
                os_version=req.os_version[:64],
                agent_version=req.agent_version[:32],
            )
        )
        try:
            s.commit()
        except IntegrityError:  # the same name registered at the same moment by another machine
            raise Conflict(
                f"a worker named {req.name!r} was registered in group {req.group!r} at the same moment; "
                "pick another --name, or pass --force to replace it"
            ) from None
    if existing is not None:  # its credential is void: no replica may keep it cached
        cp.observer.on_worker_removed(req.name, req.group)
        forget_credentials(cp)
    return RegisterResponse(worker_id=worker_id, name=req.name, group=req.group, credential=credential)


# token digest -> (identity, cached_at); keeps the hot path (polls, events) off the DB.
_auth_cache: dict[str, tuple[WorkerIdentity, float]] = {}


def clear_auth_cache() -> None:
    """Forget every cached credential check (this process). Thread-safe enough: a dict swap."""
    _auth_cache.clear()


def forget_credentials(cp: ControlPlane) -> None:
    """A worker was removed or its credential replaced: no replica may keep accepting the old one."""
    clear_auth_cache()
    cp.notifier.wake(CREDENTIALS)


def cached_identity(token: str) -> WorkerIdentity | None:
    """The identity for `token` when no store access is due; else None (call `authenticate`).

    Lets the event loop answer the common case without a thread hop.
    """
    hit = _auth_cache.get(secrets.digest(token))
    if hit is None or time.monotonic() - hit[1] >= _AUTH_CACHE_TTL_S:
        return None
    seen.note(hit[0].worker_id)
    return hit[0]


def authenticate(cp: ControlPlane, token: str) -> WorkerIdentity:
    worker_id, _, secret = token.partition(".")
    if not worker_id or not secret:
        raise Unauthorized("worker credential malformed; re-register this worker")
    key = secrets.digest(token)
    hit = _auth_cache.get(key)
    now = time.monotonic()
    if hit and now - hit[1] < _AUTH_CACHE_TTL_S:
        identity = hit[0]
    else:
        with cp.reading() as s:
            row = s.exec(select(Worker, WorkerGroup).join(WorkerGroup).where(Worker.id == worker_id)).first()
        if row is None or not secrets.matches(secret, row[0].credential_hash):
            _auth_cache.pop(key, None)
            raise Unauthorized(
                "worker credential rejected: this worker was removed or its credential rotated; re-register it"
            )
        identity = WorkerIdentity(worker_id=row[0].id, name=row[0].name, group=row[1].name)
        _auth_cache[key] = (identity, now)
    seen.note(identity.worker_id)
    return identity


class SeenTimes:
    """When each worker last called in, written behind in one batch (`flush`, every SEEN_FLUSH_S).

    Writing `last_seen_at` on the call itself cost a write transaction per poll: at 4,000
    workers re-polling every 25 s, 160 a second. Batched, it is one statement per flush.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: dict[str, datetime] = {}

    def note(self, worker_id: str) -> None:
        with self._lock:
            self._pending[worker_id] = utcnow()

    def flush(self, cp: ControlPlane) -> int:
        with self._lock:
            pending, self._pending = self._pending, {}
        if pending:
            with cp.transaction() as conn:
                conn.execute(_SET_LAST_SEEN, [{"b_id": worker_id, "b_seen": at} for worker_id, at in pending.items()])
        return len(pending)


SEEN_FLUSH_S = 10.0
seen = SeenTimes()
_worker = Worker.__table__.c  # type: ignore[attr-defined]
_SET_LAST_SEEN = (
    update(Worker.__table__)  # type: ignore[attr-defined]
    .where(_worker.id == bindparam("b_id"))
    .values(last_seen_at=bindparam("b_seen"))
)


def _remove(cp: ControlPlane, worker: Worker, group_name: str) -> None:
    with cp.session() as s:
        row = s.get(Worker, worker.id)
        if row is not None:
            s.delete(row)
            s.commit()
    forget_credentials(cp)
    cp.observer.on_worker_removed(worker.name, group_name)


def deregister(cp: ControlPlane, identity: WorkerIdentity) -> None:
    with cp.reading() as s:
        worker = s.get(Worker, identity.worker_id)
    if worker is None:
        raise NotFound("this worker is not registered")
    _remove(cp, worker, identity.group)


def remove_by_name(cp: ControlPlane, name: str, group: str | None) -> dict[str, str]:
    with cp.reading() as s:
        query = select(Worker, WorkerGroup).join(WorkerGroup).where(Worker.name == name)
        if group:
            query = query.where(WorkerGroup.name == group)
        rows = s.exec(query).all()
    if not rows:
        raise NotFound(f"no worker named {name!r}" + (f" in group {group!r}" if group else ""))
    if len(rows) > 1:
        groups = ", ".join(sorted(g.name for _, g in rows))
        raise Conflict(f"worker name {name!r} exists in several groups ({groups}); pass --group")
    worker, grp = rows[0]
    _remove(cp, worker, grp.name)
    return {"name": worker.name, "group": grp.name, "id": worker.id}


def list_workers(cp: ControlPlane, group: str | None = None) -> list[dict[str, object]]:
    with cp.reading() as s:
        query = select(Worker, WorkerGroup).join(WorkerGroup).order_by(WorkerGroup.name, Worker.name)
        if group:
            query = query.where(WorkerGroup.name == group)
        rows = s.exec(query).all()
    return [
        {
            "id": w.id,
            "name": w.name,
            "group": g.name,
            "hostname": w.hostname,
            "os": w.os_name or w.os_type,
            "agent_version": w.agent_version,
            "registered_at": w.registered_at.isoformat(),
            "last_seen_at": w.last_seen_at.isoformat() if w.last_seen_at else None,
        }
        for w, g in rows
    ]


def list_groups(cp: ControlPlane) -> list[dict[str, object]]:
    with cp.reading() as s:
        groups = s.exec(select(WorkerGroup).order_by(WorkerGroup.name)).all()
        counts = dict(s.exec(select(Worker.group_id, func.count()).group_by(Worker.group_id)).all())
        queued = dict(
            s.exec(select(Job.group_id, func.count()).where(Job.status == "New").group_by(Job.group_id)).all()
        )
    return [
        {
            "name": g.name,
            "workers": counts.get(g.id, 0),
            "queued_jobs": queued.get(g.id, 0),
            "run_as_credential": g.run_as_credential,
            "limits": limits.of_group(g),
            "created_at": g.created_at.isoformat(),
        }
        for g in groups
    ]


def delete_group(cp: ControlPlane, name: str) -> None:
    with cp.session() as s:
        group = s.exec(select(WorkerGroup).where(WorkerGroup.name == name)).first()
        if group is None:
            raise NotFound(f"worker group {name!r} does not exist")
        workers = s.exec(select(func.count()).select_from(Worker).where(Worker.group_id == group.id)).one()
        if workers:
            raise Conflict(
                f"worker group {name!r} still has {workers} worker(s); deregister or remove them first "
                f"(`outpost worker list --group {name}`)"
            )
        active = s.exec(
            select(func.count())
            .select_from(Job)
            .where(Job.group_id == group.id, Job.status.notin_([str(x) for x in FINAL_STATUSES]))  # type: ignore[attr-defined]
        ).one()
        if active:
            raise Conflict(f"worker group {name!r} has {active} unfinished job(s); stop them first")
        s.delete(group)
        s.commit()
