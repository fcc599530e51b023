"""Wake-ups for long-polls: a job queued for a group, new events for a job.

A group's wake-up goes to the dispatcher (`automation.waiters`), which serves that
group's parked polls one at a time; a job's wake-up sets an asyncio.Event that its
stream readers wait on. With several server replicas on PostgreSQL, every wake-up is
also sent with NOTIFY and each replica's listener thread turns the NOTIFYs of the
others into local wake-ups. Waiters still re-check the database every few seconds, so
a lost notification costs latency, never a job.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import uuid
from collections import defaultdict
from collections.abc import Callable

from sqlalchemy import Connection, Engine, text

log = logging.getLogger("outpost.notify")
CHANNEL = "outpost_wake"
_NOTIFY = text("SELECT pg_notify(:c, :p)")


class Notifier:
    def __init__(self) -> None:
        self._events: dict[str, asyncio.Event] = defaultdict(asyncio.Event)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._engine: Engine | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # Payloads say which replica sent them: a replica's own NOTIFYs come back to its
        # listener too, and waking its waiters twice would cost each of them a useless claim.
        self._origin = uuid.uuid4().hex[:12]
        # Called on the loop with the group's name when a job is queued for it (the dispatcher).
        self.on_group_wake: Callable[[str], None] | None = None
        # Called on the loop when a worker was removed or re-registered on another replica.
        self.on_credentials_changed: Callable[[], None] | None = None

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def event(self, topic: str) -> asyncio.Event:
        """The event the next `wake(topic)` will set; take it *before* checking the store."""
        return self._events[topic]

    def _wake_local(self, topic: str) -> None:
        if topic.startswith(_GROUP) and self.on_group_wake is not None:
            self.on_group_wake(topic[len(_GROUP) :])
            return
        if topic == CREDENTIALS:
            if self.on_credentials_changed is not None:
                self.on_credentials_changed()
            return
        event = self._events.pop(topic, None)
        if event is not None:
            event.set()

    def wake(self, topic: str, *, replicas: bool = True) -> None:
        """Wake waiters on `topic` here and (on PostgreSQL) in every replica. Thread-safe.

        `replicas=False`: the caller already sent the NOTIFY in its own transaction
        (`notify_replicas`), which is cheaper than the separate one sent here.
        """
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._wake_local, topic)
        if self._engine is not None and replicas:
            try:
                with self._engine.connect() as conn:
                    self.notify_replicas(conn, topic)
                    conn.commit()
            except Exception:  # a lost NOTIFY only delays a waiter until its re-check
                log.warning("NOTIFY failed", exc_info=True)

    def notify_replicas(self, conn: Connection, topic: str) -> None:
        """PostgreSQL: NOTIFY the other replicas inside `conn`'s transaction (sent on its commit)."""
        if self._engine is not None:
            conn.execute(_NOTIFY, {"c": CHANNEL, "p": f"{self._origin} {topic}"})

    def start_listener(self, engine: Engine, notify_engine: Engine) -> None:
        """PostgreSQL only: LISTEN on a dedicated connection in a daemon thread."""
        self._engine = notify_engine
        self._thread = threading.Thread(target=self._listen, args=(engine,), name="pg-listen", daemon=True)
        self._thread.start()

    def _listen(self, engine: Engine) -> None:
        while not self._stop.is_set():
            try:
                with engine.connect() as conn:
                    raw = conn.connection.dbapi_connection
                    raw.autocommit = True  # type: ignore[union-attr]
                    raw.execute(f"LISTEN {CHANNEL}")  # type: ignore[union-attr]
                    while not self._stop.is_set():
                        for note in raw.notifies(timeout=1.0):  # type: ignore[union-attr]
                            origin, _, topic = note.payload.partition(" ")
                            if self._loop is not None and origin != self._origin:
                                self._loop.call_soon_threadsafe(self._wake_local, topic)
            except Exception:
                log.warning("LISTEN connection lost; reconnecting in 1 s", exc_info=True)
                self._stop.wait(1.0)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=3)


_GROUP = "g:"
CREDENTIALS = "c:credentials"  # worker credentials changed: cached checks must go


def group_topic(group: str) -> str:
    return f"{_GROUP}{group}"


def job_topic(job_id: str) -> str:
    return f"j:{job_id}"
