"""Wake-ups for long-polls: a job queued for a group, new events for a job.

In one process, waiters block on an asyncio.Event per topic. With several server
replicas on PostgreSQL, every wake-up is also sent with NOTIFY and each replica's
listener thread turns the NOTIFYs of the others into local wake-ups. Waiters still
re-check the database every few seconds, so a lost notification costs latency,
never a job.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import defaultdict

from sqlalchemy import Engine, text

log = logging.getLogger("outpost.notify")
CHANNEL = "outpost_wake"


class Notifier:
    def __init__(self) -> None:
        self._events: dict[str, asyncio.Event] = defaultdict(asyncio.Event)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._engine: Engine | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def event(self, topic: str) -> asyncio.Event:
        """The event the next `wake(topic)` will set; take it *before* checking the store."""
        return self._events[topic]

    def _wake_local(self, topic: str) -> None:
        event = self._events.pop(topic, None)
        if event is not None:
            event.set()

    def wake(self, topic: str) -> None:
        """Wake waiters on `topic` here and (on PostgreSQL) in every replica. Thread-safe."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._wake_local, topic)
        if self._engine is not None:
            try:
                with self._engine.connect() as conn:
                    conn.execute(text("SELECT pg_notify(:c, :p)"), {"c": CHANNEL, "p": topic})
                    conn.commit()
            except Exception:  # a lost NOTIFY only delays a waiter until its re-check
                log.warning("NOTIFY failed", exc_info=True)

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
                            if self._loop is not None:
                                self._loop.call_soon_threadsafe(self._wake_local, note.payload)
            except Exception:
                log.warning("LISTEN connection lost; reconnecting in 1 s", exc_info=True)
                self._stop.wait(1.0)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=3)


def group_topic(group: str) -> str:
    return f"g:{group}"


def job_topic(job_id: str) -> str:
    return f"j:{job_id}"
