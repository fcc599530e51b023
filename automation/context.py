"""The control plane's shared parts, built once per server process."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import ParamSpec, TypeVar

import anyio.to_thread
from sqlalchemy import Connection, Engine
from sqlmodel import Session

from automation.notify import Notifier
from automation.waiters import Dispatcher
from outpost.observer import ControlPlaneObserver, NullObserver
from outpost.settings import DISPATCH_RECHECK_S, LEASE_SECONDS, LONG_POLL_HOLD_S

P = ParamSpec("P")
T = TypeVar("T")


@dataclass
class ControlPlane:
    engine: Engine
    data_dir: Path
    notifier: Notifier = field(default_factory=Notifier)
    observer: ControlPlaneObserver = field(default_factory=NullObserver)
    lease_seconds: float = LEASE_SECONDS
    poll_hold_s: float = LONG_POLL_HOLD_S
    public_url: str | None = None
    region: str | None = None
    account_name: str = "outpost"  # the one Automation account the ARM API serves (automation/arm)
    # Parked long-polls per group, served FIFO (automation.waiters); group wake-ups go to it.
    dispatcher: Dispatcher = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.dispatcher = Dispatcher(lambda claim: self.run(claim), recheck_s=DISPATCH_RECHECK_S)
        self.notifier.on_group_wake = self.dispatcher.kick

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    # SQLite has one writer at a time, and its busy handler makes waiters sleep in steps of
    # up to 100 ms. Queueing this process's writers on a lock instead hands the write lock
    # over at once (measured: bench/dispatch.py went from ~6 to the figures in its note).
    _sqlite_writer: threading.RLock = field(default_factory=threading.RLock, repr=False)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """For work that writes: on SQLite it holds the write lock from BEGIN (IMMEDIATE)."""
        lock = self._sqlite_writer if self.dialect == "sqlite" else contextlib.nullcontext()
        with lock, Session(self.engine, expire_on_commit=False) as session:
            yield session

    async def run(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run store work from a coroutine: the one way async code touches the store.

        On SQLite a statement takes a fraction of a millisecond, so when the write lock is
        free the work runs right here: handing it to a worker thread and back cost more than
        the work. When another thread holds the lock (the reaper, the scheduler, an admin
        write), the work goes to a worker thread instead, so the event loop never waits on
        the lock and polls, health checks and other requests keep being answered. A
        PostgreSQL round trip always goes to a worker thread.
        """
        if self.dialect == "sqlite" and self._sqlite_writer.acquire(blocking=False):
            try:
                return fn(*args, **kwargs)
            finally:
                self._sqlite_writer.release()
        return await anyio.to_thread.run_sync(lambda: fn(*args, **kwargs))

    async def run_in_thread(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Store work too big for the event loop even on SQLite (a large events batch): a worker thread."""
        return await anyio.to_thread.run_sync(lambda: fn(*args, **kwargs))

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """A write transaction on a bare connection, for the hot queue statements (create, claim,
        events, lease): they run on every job, and the ORM's unit of work cost more than the SQL."""
        lock = self._sqlite_writer if self.dialect == "sqlite" else contextlib.nullcontext()
        with lock, self.engine.begin() as conn:
            yield conn

    @contextmanager
    def reading(self) -> Iterator[Session]:
        """For reads only: on SQLite a deferred BEGIN, so readers never queue behind writers (WAL)."""
        with Session(self._read_engine, expire_on_commit=False) as session:
            yield session

    @property
    def _read_engine(self) -> Engine:
        return self.engine.execution_options(outpost_read_only=True)  # type: ignore[return-value]
