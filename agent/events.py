"""Ship a job's stream records and status changes to the service, in order, exactly once.

Records are numbered as they are produced (seq = activation << 32 | n, so a
re-queued job's second activation never collides with its first) and sent in
batches: at 100 records or 500 ms after the first pending one, whichever comes
first, or fewer when 100 would not fit in one request (`MAX_EVENTS_POST_BYTES`,
1 MiB, in the contract). A batch that fails is retried as-is; the service ignores
seqs it already has, so a retry never duplicates a line.

The batches of all the worker's jobs travel through one `EventPoster`: whatever is
ready while a request is in flight goes together in the next one. A lone job's batch
leaves at once; under load, many jobs' batches share a request.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from datetime import UTC, datetime

import httpx
import orjson

from outpost.contract import (
    AGENT_EVENTS,
    MAX_EVENTS_POST_BYTES,
    MAX_JOBS_PER_EVENTS_POST,
    EventsAnswer,
    JobResources,
    JobStatus,
    StreamType,
)
from outpost.http import ApiError, request

log = logging.getLogger("outpost.agent")

BATCH_RECORDS = 100
BATCH_DELAY_S = 0.5
MAX_PENDING = 200_000  # beyond this the producer waits (backpressure on the runbook's pipe)
RETRY_CAP_S = 15.0
BATCH_BYTES = MAX_EVENTS_POST_BYTES - 4096  # one job's records; the rest is room for its status and job id
_POST_OPEN, _POST_CLOSE = b'{"batches":[', b"]}"


class _Send:
    def __init__(self, job_id: str, body: dict[str, object]) -> None:
        self.job_id = job_id
        self.encoded = orjson.dumps({"job_id": job_id, **body})  # sent as is: its size is the request's share
        self.size = len(self.encoded) + 1  # and a comma
        self.done = threading.Event()
        self.error: ApiError | None = None


class EventPoster:
    """One sender thread for the event batches of every job of this worker."""

    def __init__(self, client: httpx.Client) -> None:
        self._client = client
        self._queue: deque[_Send] = deque()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None

    def send(self, job_id: str, body: dict[str, object]) -> None:
        """Deliver one job's batch; raise ApiError as a request of its own would (409: not held)."""
        item = _Send(job_id, body)
        with self._cond:
            self._queue.append(item)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="events", daemon=True)
                self._thread.start()
            self._cond.notify()
        item.done.wait()
        if item.error is not None:
            raise item.error

    def _take(self) -> list[_Send]:
        with self._cond:
            while not self._queue:
                self._cond.wait()
            taken = [self._queue.popleft()]
            size = len(_POST_OPEN) + len(_POST_CLOSE) + taken[0].size
            while (
                self._queue
                and len(taken) < MAX_JOBS_PER_EVENTS_POST
                and size + self._queue[0].size <= MAX_EVENTS_POST_BYTES
            ):
                size += self._queue[0].size
                taken.append(self._queue.popleft())
            return taken

    def _run(self) -> None:
        while True:
            items = self._take()
            try:
                response = request(
                    self._client,
                    "POST",
                    AGENT_EVENTS,
                    content=_POST_OPEN + b",".join(i.encoded for i in items) + _POST_CLOSE,
                    headers={"Content-Type": "application/json"},
                )
                results = EventsAnswer.model_validate_json(response.content).results
                if len(results) != len(items):
                    raise ApiError(0, f"the service answered {len(results)} results for {len(items)} batches")
                for item, result in zip(items, results, strict=True):
                    if result.ack is None:
                        item.error = ApiError(result.error_status or 0, f"{result.error} (HTTP {result.error_status})")
            except ApiError as exc:
                for item in items:
                    item.error = exc
            except Exception as exc:  # an unreadable answer: each shipper retries its batch
                for item in items:
                    item.error = ApiError(0, f"unreadable answer to events: {exc}")
            for item in items:
                item.done.set()


class EventShipper:
    def __init__(self, poster: EventPoster, job_id: str, activation: int, *, give_up_after_s: float = 600.0) -> None:
        self._poster = poster
        self._job_id = job_id
        self._next_seq = activation << 32
        self._pending: deque[dict[str, object]] = deque()
        self._status: dict[str, object] | None = None
        self._started_at: str | None = None  # Running not yet reported (see `started`)
        self._started_mono = 0.0
        self._cond = threading.Condition()
        self._closed = False
        self._first_pending_at: float | None = None
        self._give_up_after_s = give_up_after_s
        self.lost_job = False  # the service says the job is no longer ours
        self._thread = threading.Thread(target=self._run, name=f"events-{job_id[:8]}", daemon=True)
        self._thread.start()

    def record(self, stream: StreamType, text: str) -> None:
        now = datetime.now(UTC).isoformat()
        with self._cond:
            while len(self._pending) >= MAX_PENDING and not self._closed:
                self._cond.wait(0.5)
            self._pending.append({"seq": self._next_seq, "stream": stream.value, "time": now, "text": text})
            self._next_seq += 1
            if self._first_pending_at is None:
                self._first_pending_at = time.monotonic()
            if len(self._pending) >= BATCH_RECORDS:
                self._cond.notify_all()

    def started(self) -> None:
        """The runbook process is up. Reported as Running within BATCH_DELAY_S, or, if the job
        ends first, folded into its final status (`started_at`): one request instead of two."""
        with self._cond:
            self._started_at = datetime.now(UTC).isoformat()
            self._started_mono = time.monotonic()
            self._cond.notify_all()

    def status(
        self,
        status: JobStatus,
        reason: str | None = None,
        exit_code: int | None = None,
        resources: JobResources | None = None,
    ) -> None:
        """Queue a status change; it goes out after every record produced before it."""
        with self._cond:
            self._flush_locked_wait()
            self._status = {"status": status.value, "reason": reason, "exit_code": exit_code}
            if resources is not None:
                self._status["resources"] = resources.model_dump()
            self._cond.notify_all()

    def _flush_locked_wait(self) -> None:
        # A status must not overtake records: wait until the previous status is sent.
        while self._status is not None and not self.lost_job:
            self._cond.notify_all()
            self._cond.wait(0.1)

    def close(self, timeout: float | None = None) -> bool:
        """Send everything left; True when all of it reached the service."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join(timeout)
        return not self._thread.is_alive() and not self._pending and self._status is None

    def _take_batch(self) -> tuple[list[dict[str, object]], dict[str, object] | None, bool, bool] | None:
        """(records, status to send, whether it is the queued status, whether it carries the start)."""
        with self._cond:
            while True:
                now = time.monotonic()
                records_due = self._first_pending_at is not None and now - self._first_pending_at >= BATCH_DELAY_S
                start_due = self._started_at is not None and (now - self._started_mono >= BATCH_DELAY_S or self._closed)
                if len(self._pending) >= BATCH_RECORDS or (self._pending and (records_due or self._closed)):
                    break
                if self._status or start_due:
                    break
                if self._closed and not self._pending and self._status is None and self._started_at is None:
                    return None
                waits = [BATCH_DELAY_S]
                if self._first_pending_at is not None:
                    waits.append(BATCH_DELAY_S - (now - self._first_pending_at))
                if self._started_at is not None:
                    waits.append(BATCH_DELAY_S - (now - self._started_mono))
                self._cond.wait(max(0.01, min(waits)))
            records, size = [], 0
            for i in range(min(BATCH_RECORDS, len(self._pending))):
                size += len(orjson.dumps(self._pending[i])) + 1
                if records and size > BATCH_BYTES:  # the rest goes in the next batch
                    break
                records.append(self._pending[i])
            # The status rides with the last records before it.
            queued = self._status if len(records) == len(self._pending) else None
            status = queued
            if self._started_at is not None:
                status = {**(queued or {"status": JobStatus.RUNNING.value}), "started_at": self._started_at}
            return records, status, queued is not None, self._started_at is not None

    def _ack(self, sent: int, sent_queued: bool, sent_start: bool) -> None:
        with self._cond:
            for _ in range(sent):
                self._pending.popleft()
            if sent_queued:
                self._status = None
            if sent_start:
                self._started_at = None
            self._first_pending_at = time.monotonic() if self._pending else None
            self._cond.notify_all()

    def _run(self) -> None:
        backoff = 0.5
        failing_since: float | None = None
        while True:
            batch = self._take_batch()
            if batch is None:
                return
            records, status, sent_queued, sent_start = batch
            body: dict[str, object] = {"records": records}
            if status is not None:
                body["status"] = status
            try:
                self._poster.send(self._job_id, body)
            except ApiError as exc:
                if exc.status == 409:  # job ended or re-assigned: nothing we send can land
                    log.warning("job %s: service refused events: %s", self._job_id, exc.message)
                    self.lost_job = True
                    with self._cond:
                        self._pending.clear()
                        self._status = None
                        self._started_at = None
                        self._cond.notify_all()
                    return
                now = time.monotonic()
                first_failure = failing_since is None
                failing_since = failing_since or now
                if now - failing_since > self._give_up_after_s:
                    log.error(
                        "job %s: giving up on events after %.0f s: %s",
                        self._job_id,
                        now - failing_since,
                        exc.message,
                    )
                    self.lost_job = True
                    return
                log.log(
                    logging.WARNING if first_failure else logging.DEBUG,  # once per streak, not per retry
                    "job %s: events not delivered (%s); retrying in %.1f s",
                    self._job_id,
                    exc.message,
                    backoff,
                )
                time.sleep(backoff)
                backoff = min(backoff * 2, RETRY_CAP_S)
                continue
            backoff = 0.5
            failing_since = None
            self._ack(len(records), sent_queued, sent_start)
