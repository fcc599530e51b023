"""The control plane's background loops, in one place: lease reaper, schedule runner, last-seen writer.

Each loop runs its store work in a worker thread (it may hold the SQLite write lock for
a while; the event loop never waits on it) and keeps going after a failed pass: one bad
pass must not stop lease expiry or schedules for good. Every replica runs them; their
store writes are conditional, so replicas never double a reap or a scheduled start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass

from fastapi.concurrency import run_in_threadpool

from automation import lifecycle, schedules, workers
from automation.context import ControlPlane

log = logging.getLogger("outpost.server")

REAP_EVERY_S = 1.0
SCHEDULE_EVERY_S = 1.0


@dataclass(frozen=True)
class Loop:
    name: str
    every_s: float
    work: Callable[[ControlPlane], object]


LOOPS = (
    Loop("lease reaper", REAP_EVERY_S, lifecycle.reap),
    Loop("schedule runner", SCHEDULE_EVERY_S, schedules.run_due),
    Loop("last-seen writer", workers.SEEN_FLUSH_S, workers.seen.flush),
)


async def _run(cp: ControlPlane, loop: Loop) -> None:
    while True:
        try:
            await run_in_threadpool(loop.work, cp)
        except Exception:
            log.exception("%s pass failed", loop.name)
        await asyncio.sleep(loop.every_s)


class Background:
    """Starts every loop with the app and stops them with it."""

    def __init__(self, cp: ControlPlane) -> None:
        self._cp = cp
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [asyncio.create_task(_run(self._cp, loop), name=loop.name) for loop in LOOPS]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        try:  # the last calls' times, so a clean restart does not lose them
            await run_in_threadpool(workers.seen.flush, self._cp)
        except Exception:
            log.exception("last-seen write at shutdown failed")
