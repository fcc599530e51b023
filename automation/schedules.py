"""Schedules: start a runbook once, or every N minutes/hours/days/weeks in a time zone.

A background loop in the server (``run_due``, every second) fires due schedules. Each
fire is claimed with one atomic ``UPDATE schedule SET next_run_at = :new WHERE id = :id
AND next_run_at = :old``, so with several replicas on one PostgreSQL database exactly
one of them starts the job.

Missed runs are never replayed in a burst: when the server was down over one or more
occurrences, the schedule fires **once** when it is back (one catch-up run), and then
continues at its next regular occurrence after now.

Minute and hour intervals are exact elapsed time; day and week intervals keep the
wall-clock time of the start in the schedule's time zone across DST changes.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import update
from sqlmodel import select

from automation import jobs, lifecycle, runbooks
from automation.context import ControlPlane
from automation.errors import STORE, BadRequest, Conflict, ControlPlaneError, NotFound, is_store_outage
from automation.models import Schedule, WorkerGroup, as_utc, utcnow
from outpost.contract import NAME_RE, JobParam

log = logging.getLogger("outpost.server")

FREQUENCIES = {"onetime": "OneTime", "minute": "Minute", "hour": "Hour", "day": "Day", "week": "Week"}
_UNIT = {
    "Minute": timedelta(minutes=1),
    "Hour": timedelta(hours=1),
    "Day": timedelta(days=1),
    "Week": timedelta(days=7),
}
MAX_INTERVAL = 10_000


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise BadRequest(f"unknown time zone {name!r}: use an IANA name such as UTC or Europe/Berlin") from None


def parse_time(value: str, tz: ZoneInfo, what: str) -> datetime:
    """ISO 8601; a time without an offset is wall-clock time in the schedule's zone."""
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise BadRequest(
            f"{what} {value!r} is not ISO 8601 (e.g. 2030-01-31T08:00 or 2030-01-31T08:00:00+01:00)"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=tz)
    return parsed.astimezone(UTC)


def occurrence(sch: Schedule, k: int) -> datetime:
    start = as_utc(sch.start_time)
    assert start is not None
    if sch.frequency in ("Minute", "Hour"):
        return start + k * sch.interval * _UNIT[sch.frequency]
    tz = _zone(sch.time_zone)
    wall = start.astimezone(tz).replace(tzinfo=None) + k * sch.interval * _UNIT[sch.frequency]
    return wall.replace(tzinfo=tz).astimezone(UTC)


def next_after(sch: Schedule, after: datetime, inclusive: bool = False) -> datetime | None:
    """The first occurrence later than `after` (or at it, with `inclusive`), before the expiry."""
    start = as_utc(sch.start_time)
    assert start is not None
    expiry = as_utc(sch.expiry_time)

    def later(t: datetime) -> bool:
        return t >= after if inclusive else t > after

    if later(start):
        result: datetime | None = start
    elif sch.frequency == "OneTime":
        result = None
    else:
        period = sch.interval * _UNIT[sch.frequency]
        k = max(0, int((after - start) / period) - 1)
        result = occurrence(sch, k)
        for _ in range(5):  # DST shifts move occurrences by at most an hour: a few steps suffice
            if later(result):
                break
            k += 1
            result = occurrence(sch, k)
        while not later(result):  # bounded: each step moves a whole period forward
            k += 1
            result = occurrence(sch, k)
    if result is not None and expiry is not None and result > expiry:
        return None
    return result


def _iso(value: datetime | None) -> str | None:
    value = as_utc(value)
    return value.isoformat() if value else None


def view(sch: Schedule) -> dict[str, Any]:
    return {
        "name": sch.name,
        "description": sch.description,
        "runbook": sch.runbook_name,
        "run_on": sch.run_on,
        "params": json.loads(sch.params_json),
        "frequency": sch.frequency,
        "interval": sch.interval,
        "start_time": _iso(sch.start_time),
        "time_zone": sch.time_zone,
        "expiry_time": _iso(sch.expiry_time),
        "enabled": sch.enabled,
        "next_run_at": _iso(sch.next_run_at),
        "last_run_at": _iso(sch.last_run_at),
        "last_job_id": sch.last_job_id,
        "last_error": sch.last_error,
        "created_at": _iso(sch.created_at),
    }


def create(
    cp: ControlPlane,
    name: str,
    runbook: str,
    run_on: str,
    frequency: str,
    interval: int = 1,
    start_time: str | None = None,
    time_zone: str = "UTC",
    expiry_time: str | None = None,
    params: list[JobParam] | None = None,
    description: str = "",
    enabled: bool = True,
) -> dict[str, Any]:
    if not NAME_RE.match(name or ""):
        raise BadRequest(f"invalid schedule name {name!r}: use 1-128 letters, digits, '.', '_' or '-'")
    freq = FREQUENCIES.get((frequency or "").lower().replace("-", "").replace("_", ""))
    if freq is None:
        raise BadRequest(f"unknown frequency {frequency!r}: use OneTime, Minute, Hour, Day or Week")
    if not 1 <= interval <= MAX_INTERVAL:
        raise BadRequest(f"interval must be between 1 and {MAX_INTERVAL}")
    params = params or []
    jobs.validate_params(jobs.azure_positional(params))  # as jobs.create will read them
    runbooks.published(cp, runbook)  # refuses an unpublished runbook with the usual message
    tz = _zone(time_zone)
    now = utcnow()
    start = parse_time(start_time, tz, "start time") if start_time else now
    expiry = parse_time(expiry_time, tz, "expiry time") if expiry_time else None
    if freq == "OneTime" and start_time and start < now - timedelta(seconds=1):
        raise BadRequest(f"the start time {start.isoformat()} is in the past; a one-time schedule must start later")
    if expiry is not None and expiry <= max(start, now):
        raise BadRequest("the expiry time must be after the start time and in the future")
    sch = Schedule(
        name=name,
        description=description[:512],
        runbook_name=runbook,
        run_on=run_on,
        params_json=json.dumps([p.model_dump() for p in params]),
        frequency=freq,
        interval=interval,
        start_time=start,
        time_zone=time_zone,
        expiry_time=expiry,
        enabled=enabled,
    )
    sch.next_run_at = next_after(sch, now, inclusive=True) if not start_time or start >= now else next_after(sch, now)
    with cp.session() as s:
        if s.exec(select(WorkerGroup).where(WorkerGroup.name == run_on)).first() is None:
            raise NotFound(f"worker group {run_on!r} does not exist; register a worker into it first")
        if s.exec(select(Schedule).where(Schedule.name == name)).first() is not None:
            raise Conflict(f"schedule {name!r} already exists; delete it first or pick another name")
        s.add(sch)
        s.commit()
        s.refresh(sch)
    return view(sch)


def _get(s: Any, name: str) -> Schedule:
    sch = s.exec(select(Schedule).where(Schedule.name == name)).first()
    if sch is None:
        raise NotFound(f"schedule {name!r} does not exist")
    return sch


def show(cp: ControlPlane, name: str) -> dict[str, Any]:
    with cp.reading() as s:
        return view(_get(s, name))


def list_all(cp: ControlPlane) -> list[dict[str, Any]]:
    with cp.reading() as s:
        return [view(x) for x in s.exec(select(Schedule).order_by(Schedule.name)).all()]


def delete(cp: ControlPlane, name: str) -> None:
    with cp.session() as s:
        s.delete(_get(s, name))
        s.commit()


def set_enabled(cp: ControlPlane, name: str, enabled: bool) -> dict[str, Any]:
    with cp.session() as s:
        sch = _get(s, name)
        sch.enabled = enabled
        if enabled:
            sch.next_run_at = next_after(sch, utcnow(), inclusive=True)
        s.add(sch)
        s.commit()
        s.refresh(sch)
        return view(sch)


def run_due(cp: ControlPlane) -> int:
    """Fire every due schedule once; returns how many jobs were started.

    Each occurrence starts its job with a key of its own ("schedule:ID:CREATED:TIME") before the
    occurrence is claimed: replicas that both see it due start one job, and a pass cut short
    between the start and the claim finds the same job again on the next pass.
    """
    try:
        return _run_due(cp, utcnow())
    except Exception as exc:  # an outage is reported once (STORE), not as a traceback per pass
        if not is_store_outage(exc):
            raise
        STORE.failed(exc)
        return 0


def _run_due(cp: ControlPlane, now: datetime) -> int:
    with cp.reading() as s:
        due = s.exec(
            select(Schedule).where(Schedule.enabled == True, Schedule.next_run_at <= now)  # noqa: E712
        ).all()
    return sum(fire_occurrence(cp, sch, now) for sch in due)


def fire_occurrence(cp: ControlPlane, sch: Schedule, now: datetime) -> bool:
    """Start the job of `sch`'s due occurrence (as read by this replica) and move it on; True if it started one."""
    due = as_utc(sch.next_run_at)
    assert due is not None
    new = next_after(sch, now)  # skips every missed occurrence: at most one catch-up run
    created = as_utc(sch.created_at)
    key = f"schedule:{sch.id}:{created.timestamp() if created else 0}:{due.isoformat()}"
    params = [JobParam(**p) for p in json.loads(sch.params_json)]
    values: dict[str, Any] = {"next_run_at": new, "last_run_at": now}
    try:
        job, replayed = jobs.create(
            cp, sch.runbook_name, sch.run_on, params, once=lifecycle.Idempotency(key=key, fingerprint=key)
        )
        values.update(last_job_id=job["id"], last_error=None)
    except ControlPlaneError as exc:
        job, replayed = None, False
        values["last_error"] = f"{now.isoformat()}: {exc.message}"
    with cp.session() as s:
        result = s.execute(
            update(Schedule)
            .where(Schedule.id == sch.id, Schedule.next_run_at == sch.next_run_at)
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        s.commit()
    if not result.rowcount:  # type: ignore[attr-defined]
        return False  # another replica claimed this occurrence (and started, or found, the same job)
    if job is None:
        log.warning("schedule %s could not start %s: %s", sch.name, sch.runbook_name, values["last_error"])
        return False
    if not replayed:
        log.info("schedule %s started job %s (%s)", sch.name, job["id"], sch.runbook_name)
    return not replayed
