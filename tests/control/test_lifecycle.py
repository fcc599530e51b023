"""The job state machine, driven directly on a real SQLite store with an injected clock.

Every step names its actor, and every status change it makes must be one that
`lifecycle.TRANSITIONS` allows that actor: the table is the contract, these tests hold the code to it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from automation import db, lifecycle, queue_sql, runbooks, schedules, workers
from automation.context import ControlPlane
from automation.errors import Conflict
from automation.lifecycle import TRANSITIONS, Actor, Idempotency, JobRecord
from automation.models import Schedule, utcnow
from outpost.contract import FINAL_STATUSES, EventBatch, JobStatus, StatusEvent, StreamRecord, StreamType
from outpost.observer import WorkerIdentity
from outpost.settings import MAX_ACTIVATIONS

T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
LEASE = 30.0
W1 = WorkerIdentity(worker_id="00000000-0000-0000-0000-0000000000a1", name="w1", group="g1")
W2 = WorkerIdentity(worker_id="00000000-0000-0000-0000-0000000000a2", name="w2", group="g1")


@pytest.fixture
def cp(tmp_path: Path) -> Iterator[ControlPlane]:
    engine = db.make_engine(db.sqlite_url(tmp_path))
    db.migrate(engine)
    plane = ControlPlane(engine=engine, data_dir=tmp_path, lease_seconds=LEASE)
    workers.get_or_create_group(plane, "g1")
    for name, retry in (("plain", False), ("retrying", True)):
        runbooks.save_draft(plane, name, "bash", "echo hi\n", retry_on_worker_loss=retry)
        runbooks.publish(plane, name)
    yield plane
    engine.dispose()


def statuses(cp: ControlPlane) -> dict[str, str]:
    with cp.reading() as s:
        return {r.id: r.status for r in s.execute(select(queue_sql.JOB.c.id, queue_sql.JOB.c.status)).all()}


def _reachable(actors: tuple[Actor, ...], was: str | None, after: str) -> bool:
    """`was` -> `after` in one move per actor, in order, each move optional."""
    states: set[str | None] = {was}
    for actor in actors:
        states |= {to for st in states for to in TRANSITIONS[actor].get(None if st is None else JobStatus(st), ())}
    return after in states


def step(cp: ControlPlane, actor: Actor | tuple[Actor, ...], action: Callable[[], Any]) -> Any:
    """Run `action` and check every status change it made against the actor's row of the table.

    A poll that lists what the agent holds acts as (REAPER, AGENT): a lost job's worker-loss
    outcome, then the claim (which may take a re-queued job again).
    """
    actors = actor if isinstance(actor, tuple) else (actor,)
    before = statuses(cp)
    result = action()
    for job_id, after in statuses(cp).items():
        was = before.get(job_id)
        if was != after:
            assert _reachable(actors, was, after), f"{actors} moved {job_id} {was} -> {after}: not in TRANSITIONS"
    return result


def job(cp: ControlPlane, job_id: str) -> JobRecord:
    with cp.reading() as s:
        return JobRecord.of(s.execute(queue_sql.JOB_BY_ID, {"job_id": job_id}).one())


def create(cp: ControlPlane, runbook: str = "plain", at: datetime = T0, once: Idempotency | None = None) -> JobRecord:
    record, _ = step(cp, Actor.API, lambda: lifecycle.create(cp, runbook, "g1", "[]", once=once, now=at))
    return record


def claim(cp: ControlPlane, who: WorkerIdentity, at: datetime, limit: int = 1, held: list[str] | None = None) -> list:
    actors = (Actor.AGENT,) if held is None else (Actor.REAPER, Actor.AGENT)
    return step(cp, actors, lambda: lifecycle.claim(cp, who, limit, held, now=at)).jobs


def report(cp: ControlPlane, who: WorkerIdentity, job_id: str, status: JobStatus | None, *seqs: int, at=T0) -> Any:
    batch = EventBatch(
        records=[StreamRecord(seq=n, stream=StreamType.OUTPUT, time=at.isoformat(), text=f"line {n}") for n in seqs],
        status=StatusEvent(status=status, exit_code=0 if status == JobStatus.COMPLETED else None) if status else None,
    )
    return step(cp, Actor.AGENT, lambda: lifecycle.apply_events(cp, who, job_id, batch, now=at))


def test_table_names_every_status_and_nothing_leaves_a_final_one() -> None:
    reachable = {to for actor in TRANSITIONS.values() for targets in actor.values() for to in targets}
    assert reachable == set(JobStatus)
    for actor, rows in TRANSITIONS.items():
        assert not FINAL_STATUSES & set(rows), f"{actor} may move a job out of a final status"
    assert set(TRANSITIONS[Actor.API]) == {None, JobStatus.NEW, JobStatus.ACTIVATING, JobStatus.RUNNING}


def test_happy_path_claim_run_complete(cp: ControlPlane) -> None:
    j = create(cp)
    [got] = claim(cp, W1, T0)
    assert (got.id, got.status, got.activations, got.worker_name) == (j.id, "Activating", 1, "w1")
    assert got.lease_expires_at == T0 + timedelta(seconds=LEASE)
    report(cp, W1, j.id, JobStatus.RUNNING, at=T0 + timedelta(seconds=1))
    expires, stop = lifecycle.renew(cp, W1, j.id, now=T0 + timedelta(seconds=20))
    assert expires == T0 + timedelta(seconds=20 + LEASE) and not stop
    ack = report(cp, W1, j.id, JobStatus.COMPLETED, 0, 1, at=T0 + timedelta(seconds=25))
    assert (ack.accepted, ack.duplicates, ack.status) == (2, 0, JobStatus.COMPLETED)
    # The lease was renewed at +20 s: the reaper long after finds nothing to do.
    assert step(cp, Actor.REAPER, lambda: lifecycle.reap(cp, now=T0 + timedelta(hours=1))) == 0
    assert job(cp, j.id).status == "Completed"


def test_a_claim_whose_answer_was_lost_is_offered_again_without_a_new_activation(cp: ControlPlane) -> None:
    a, b, c = create(cp), create(cp, at=T0 + timedelta(seconds=1)), create(cp, at=T0 + timedelta(seconds=2))
    assert [j.id for j in claim(cp, W1, T0, limit=2)] == [a.id, b.id]
    # The agent got only `a` (say): its next poll lists it; `b` comes again first, then `c`, within max=2.
    later = T0 + timedelta(seconds=5)
    again = claim(cp, W1, later, limit=2, held=[a.id])
    assert [(j.id, j.activations) for j in again] == [(b.id, 1), (c.id, 1)]
    assert job(cp, b.id).lease_expires_at == later + timedelta(seconds=LEASE)  # a fresh lease, not the old one
    # Another worker never gets someone else's unacknowledged claim.
    assert claim(cp, W2, later, limit=5, held=[]) == []
    # Without `held` (an older agent), nothing is re-offered.
    assert claim(cp, W1, later, limit=5) == []


def test_reoffers_count_against_max(cp: ControlPlane) -> None:
    ids = [create(cp, at=T0 + timedelta(seconds=i)).id for i in range(3)]
    claim(cp, W1, T0, limit=3)
    assert [j.id for j in claim(cp, W1, T0, limit=2, held=[])] == ids[:2]
    assert [j.id for j in claim(cp, W1, T0, limit=2, held=ids[:2])] == ids[2:]


def test_a_running_job_the_agent_no_longer_holds_gets_the_worker_loss_outcome_at_once(cp: ControlPlane) -> None:
    plain, retrying = create(cp), create(cp, "retrying", at=T0 + timedelta(seconds=1))
    claim(cp, W1, T0, limit=2)
    report(cp, W1, plain.id, JobStatus.RUNNING)
    report(cp, W1, retrying.id, JobStatus.RUNNING)
    # A restarted agent (same worker) holds nothing: no waiting for the leases, 30 s away.
    got = claim(cp, W1, T0 + timedelta(seconds=2), limit=1, held=[])
    failed = job(cp, plain.id)
    assert failed.status == "Failed" and failed.status_reason.startswith("worker w1 lost: its agent restarted")
    # The retrying one was re-queued, and this very poll claimed it again: a second activation.
    assert [(j.id, j.activations) for j in got] == [(retrying.id, 2)]
    with pytest.raises(Conflict):
        lifecycle.renew(cp, W1, plain.id, now=T0 + timedelta(seconds=3))


def test_reaper_fails_requeues_suspends_and_stops_by_the_clock(cp: ControlPlane) -> None:
    plain, retrying = create(cp), create(cp, "retrying", at=T0 + timedelta(seconds=1))
    claim(cp, W1, T0, limit=2)
    reap = lambda at: step(cp, Actor.REAPER, lambda: lifecycle.reap(cp, now=at))  # noqa: E731
    assert reap(T0 + timedelta(seconds=LEASE - 1)) == 0  # not yet
    assert reap(T0 + timedelta(seconds=LEASE + 1)) == 2
    assert job(cp, plain.id).status == "Failed" and "lease expired" in job(cp, plain.id).status_reason
    requeued = job(cp, retrying.id)
    assert requeued.status == "New" and requeued.worker_id is None and requeued.status_reason.startswith("re-queued")
    at = T0 + timedelta(seconds=LEASE + 1)
    for activation in range(2, MAX_ACTIVATIONS + 1):
        [again] = claim(cp, W2, at)
        assert again.activations == activation
        at += timedelta(seconds=LEASE + 1)
        reap(at)
    suspended = job(cp, retrying.id)
    assert suspended.status == "Suspended" and f"{MAX_ACTIVATIONS} failed activations" in suspended.status_reason
    stopping = create(cp, at=at)
    claim(cp, W1, at)
    step(cp, Actor.API, lambda: lifecycle.stop(cp, stopping.id, now=at))
    reap(at + timedelta(seconds=LEASE + 1))
    assert job(cp, stopping.id).status == "Stopped"


def test_stop_new_at_once_and_a_late_running_report_keeps_stopping(cp: ControlPlane) -> None:
    queued, held = create(cp), create(cp, at=T0 + timedelta(seconds=1))
    assert step(cp, Actor.API, lambda: lifecycle.stop(cp, queued.id, now=T0)).status == "Stopped"
    claim(cp, W1, T0)
    assert step(cp, Actor.API, lambda: lifecycle.stop(cp, held.id, now=T0)).status == "Stopping"
    assert report(cp, W1, held.id, JobStatus.RUNNING).status == JobStatus.STOPPING
    assert lifecycle.renew(cp, W1, held.id, now=T0)[1] is True  # the renewal carries the stop
    assert report(cp, W1, held.id, JobStatus.STOPPED).status == JobStatus.STOPPED


def test_no_events_after_the_end_but_the_final_batch_may_be_retried(cp: ControlPlane) -> None:
    j = create(cp)
    claim(cp, W1, T0)
    report(cp, W1, j.id, JobStatus.RUNNING, 0, 1)
    first = report(cp, W1, j.id, JobStatus.COMPLETED, 2, 3)
    assert (first.accepted, first.duplicates) == (2, 0)
    # The answer to the final batch was lost: the agent sends it again. Duplicates, not an error.
    retry = report(cp, W1, j.id, JobStatus.COMPLETED, 2, 3)
    assert (retry.accepted, retry.duplicates, retry.status) == (0, 2, JobStatus.COMPLETED)
    assert report(cp, W1, j.id, None, 1).duplicates == 1
    with pytest.raises(Conflict, match="has ended"):
        report(cp, W1, j.id, None, 3, 4)  # one new record: the whole batch is refused
    with pytest.raises(Conflict, match="already ended Completed"):
        report(cp, W1, j.id, JobStatus.FAILED)
    # Nothing of the refused batches was stored.
    with cp.reading() as s:
        stored = s.execute(select(queue_sql.JobStream.__table__.c.seq).order_by("seq")).scalars().all()
    assert stored == [0, 1, 2, 3]


def test_agent_cannot_skip_states(cp: ControlPlane) -> None:
    j = create(cp)
    with pytest.raises(Conflict):
        report(cp, W1, j.id, JobStatus.RUNNING)  # not claimed by W1
    claim(cp, W1, T0)
    with pytest.raises(Conflict, match="cannot go from Activating to Completed"):
        report(cp, W1, j.id, JobStatus.COMPLETED)  # no started_at: it never ran


def test_idempotent_create_same_key_same_job_other_body_conflicts_and_keys_expire(cp: ControlPlane) -> None:
    once = Idempotency(key="api:k1", fingerprint=lifecycle.fingerprint(runbook="plain", run_on="g1"))
    first, replayed = lifecycle.create(cp, "plain", "g1", "[]", once=once, now=T0)
    assert not replayed
    again, replayed = lifecycle.create(cp, "plain", "g1", "[]", once=once, now=T0 + timedelta(hours=23))
    assert replayed and again.id == first.id
    other = Idempotency(key="api:k1", fingerprint=lifecycle.fingerprint(runbook="retrying", run_on="g1"))
    with pytest.raises(Conflict, match="already used for a different request"):
        lifecycle.create(cp, "retrying", "g1", "[]", once=other, now=T0 + timedelta(hours=1))
    # After 24 h the key is free again: a new job.
    fresh, replayed = lifecycle.create(cp, "plain", "g1", "[]", once=once, now=T0 + timedelta(hours=25))
    assert not replayed and fresh.id != first.id
    assert len(statuses(cp)) == 2
    # Purge forgets only expired keys.
    lifecycle.create(cp, "plain", "g1", "[]", once=Idempotency("api:k2", "x"), now=T0 + timedelta(hours=1))
    assert lifecycle.purge_keys(cp, now=T0 + timedelta(hours=25, minutes=30)) == 1
    with cp.reading() as s:
        assert sorted(s.execute(select(queue_sql.KEY.c.key)).scalars()) == ["api:k1"]


def test_a_failed_create_does_not_keep_the_key(cp: ControlPlane) -> None:
    once = Idempotency(key="api:k", fingerprint="same")
    with pytest.raises(Exception, match="does not exist"):
        lifecycle.create(cp, "missing", "g1", "[]", once=once, now=T0)
    job_, replayed = lifecycle.create(cp, "plain", "g1", "[]", once=once, now=T0)
    assert not replayed and job_.status == "New"


def test_two_replicas_firing_one_schedule_occurrence_start_one_job(cp: ControlPlane) -> None:
    schedules.create(cp, "every-minute", "plain", "g1", "Minute")
    with cp.reading() as s:
        seen = s.execute(select(Schedule).where(Schedule.name == "every-minute")).scalar_one()  # both replicas read it
    now = utcnow() + timedelta(seconds=1)
    # Each replica starts the occurrence's job before claiming it; the occurrence's key makes it one job.
    assert schedules.fire_occurrence(cp, seen, now) is True
    assert schedules.fire_occurrence(cp, seen, now) is False
    assert len(statuses(cp)) == 1
    assert schedules.show(cp, "every-minute")["last_job_id"] in statuses(cp)


def test_a_stop_for_a_claim_that_never_arrived_ends_it_at_the_next_poll(cp: ControlPlane) -> None:
    j = create(cp)
    claim(cp, W1, T0)  # the answer is lost
    step(cp, Actor.API, lambda: lifecycle.stop(cp, j.id, now=T0))
    assert claim(cp, W1, T0 + timedelta(seconds=1), held=[]) == []  # not offered: it is being stopped
    stopped = job(cp, j.id)
    assert stopped.status == "Stopped" and "the claim never reached its agent" in stopped.status_reason
