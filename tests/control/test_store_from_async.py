"""Store work from async code never blocks the event loop on SQLite's write lock."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

from automation.app import open_control_plane


def test_event_loop_keeps_running_while_another_thread_holds_the_write_lock(tmp_path: Path) -> None:
    cp = open_control_plane(tmp_path / "data")
    held, release = threading.Event(), threading.Event()

    def hold_the_lock() -> None:  # e.g. the reaper or an admin write in a worker thread
        with cp.session():
            held.set()
            release.wait(10)

    def write() -> str:
        with cp.transaction():
            return threading.current_thread().name

    async def scenario() -> tuple[int, str]:
        holder = threading.Thread(target=hold_the_lock)
        holder.start()
        await asyncio.to_thread(held.wait, 10)
        ticks = 0
        work = asyncio.create_task(cp.run(write))
        for _ in range(20):  # the loop must keep serving others while the work waits for the lock
            await asyncio.sleep(0.01)
            ticks += 1
        assert not work.done()  # it really waited for the lock...
        release.set()
        ran_on = await asyncio.wait_for(work, 10)
        holder.join(10)
        return ticks, ran_on

    ticks, ran_on = asyncio.run(scenario())
    assert ticks == 20
    assert ran_on != threading.main_thread().name  # ...in a worker thread, not on the loop
    # With the lock free, the sub-millisecond work runs right on the loop (no thread hop).
    assert asyncio.run(cp.run(write)) == threading.main_thread().name
    cp.engine.dispose()
