"""Parked long-polls, served one at a time in arrival order.

A queued job must cost the same whether 10 or 4,000 workers of its group are parked.
Waking every parked poll to race for it costs one claim statement per poll, and the
losers go back to sleep: cost grows with the fleet. Instead, each group keeps its
parked polls in arrival order (FIFO), and a wake-up for the group runs one task that
claims on behalf of the longest-waiting poll, hands it the jobs, moves on to the next
only while there is work announced, and stops at the first empty claim.

- A new poll claims once at once (a backlog drains without waiting for a wake-up),
  then parks. When the group's queue is known to be empty (the last claim for it found
  nothing and no wake-up came since), or a claim begun since the last wake-up is still
  running, the poll parks without claiming: a fleet that re-polls every hold costs a cheap
  read per poll (does this worker hold jobs it must settle?) instead of a write
  transaction. A job's wake-up ends that knowledge.
- A wake-up (a job created or re-queued here, or a NOTIFY from another replica) says
  how many jobs it announces; the group task serves that many (a poll takes up to its
  free slots at a time).
- Every `recheck_s`, each group that has parked polls gets one claim on behalf of its
  head: a lost wake-up costs latency, never a job, and the cost is per group, not per
  poll.

With R replicas, a job costs at most R claims (one per replica's head waiter), however
many workers are parked. Claims themselves stay atomic in the store (`automation.dispatch`),
so the order here is about fairness and cost, never about correctness.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
import random
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("outpost.dispatch")

HOLD_JITTER = 0.2
EXPIRY_TICK_S = 0.25

Claim = Callable[[], list[Any]]  # store work: claim for one poll (sync; run through `run`)
MustClaim = Callable[[], Awaitable[bool]]  # must this poll claim although the queue is known empty?
Runner = Callable[[Claim], Awaitable[list[Any]]]  # how store work runs from async code


@dataclass(eq=False)
class _Waiter:
    claim: Claim
    future: asyncio.Future[list[Any]]
    deadline: float
    gone: Callable[[], Awaitable[bool]] | None


@dataclass(eq=False)
class _Group:
    waiters: OrderedDict[int, _Waiter] = field(default_factory=OrderedDict)
    pending: float = 0.0  # jobs announced and not yet handed out here
    kicks: int = 0  # bumped by every wake-up: a poll that claimed during one looks again
    empty_at: int = -1  # `kicks` when a claim last found the queue empty: equal to it, the queue still is
    inflight: int = 0  # claim statements running now (on PostgreSQL each takes a thread and a round trip)
    inflight_at: int = -1  # `kicks` when the latest of them began: equal to it, that claim sees every job
    active: int = 0  # polls inside `wait` (claiming or parked): the group must not be forgotten
    task: asyncio.Task[None] | None = None


@dataclass
class DispatchStats:
    """Counters for tests and benchmarks: claims per job must not grow with the fleet."""

    claims: int = 0  # claim statements run (by polls and on their behalf)
    handed: int = 0  # parked polls answered with jobs by a wake-up
    fresh: int = 0  # polls that found jobs with their own first claim
    skipped: int = 0  # polls that parked without a claim: the queue was known empty
    fast: int = 0  # polls taken by automation.agent_poll's fast path (the rest went through the route)


class Dispatcher:
    def __init__(self, run: Runner, recheck_s: float = 5.0) -> None:
        self._run = run
        self._recheck_s = recheck_s
        self._groups: dict[str, _Group] = {}
        self._ids = itertools.count()
        self._recheck: asyncio.Task[None] | None = None
        self.stats = DispatchStats()

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._recheck = loop.create_task(self._recheck_loop(), name="dispatch-recheck")

    async def close(self) -> None:
        tasks = [t for t in (self._recheck, *(g.task for g in self._groups.values())) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for group in self._groups.values():
            for waiter in group.waiters.values():
                if not waiter.future.done():
                    waiter.future.set_result([])
            group.waiters.clear()

    def view(self) -> dict[str, Any]:
        """This replica's dispatch counters and its parked polls per group (`GET /api/v1/dispatch`)."""
        return {
            "claims": self.stats.claims,
            "handed": self.stats.handed,
            "fresh": self.stats.fresh,
            "skipped": self.stats.skipped,
            "fast": self.stats.fast,
            "parked": sum(len(g.waiters) for g in self._groups.values()),
            "groups": {name: len(g.waiters) for name, g in sorted(self._groups.items()) if g.waiters},
        }

    # -- polls -------------------------------------------------------------------------------

    async def wait(
        self,
        group_name: str,
        claim: Claim,
        hold_s: float,
        gone: Callable[[], Awaitable[bool]] | None = None,
        must_claim: MustClaim | None = None,
    ) -> list[Any]:
        """Jobs for one poll: claim now, else park up to `hold_s` until served. [] on time-out.

        `must_claim` says whether the poll must claim even when the queue is known empty (its
        worker has jobs to settle); without it, every poll claims first.
        """
        group = self._groups.get(group_name)
        if group is None:
            group = self._groups[group_name] = _Group()
        group.active += 1
        try:
            return await self._wait(group, claim, hold_s, gone, must_claim)
        finally:
            group.active -= 1

    async def _wait(
        self,
        group: _Group,
        claim: Claim,
        hold_s: float,
        gone: Callable[[], Awaitable[bool]] | None,
        must_claim: MustClaim | None,
    ) -> list[Any]:
        kicks = group.kicks
        # Known empty, or a claim that began after the last wake-up is running and will say so (or
        # hand the job out): a re-poll then parks without a claim of its own. Without the second,
        # on PostgreSQL every re-poll that came during a claim's round trip claimed too.
        known = group.empty_at == kicks or (group.inflight > 0 and group.inflight_at == kicks)
        if known and must_claim is not None and not await must_claim():
            self.stats.skipped += 1
            jobs: list[Any] = []
        else:
            jobs = await self._claim(claim, group, kicks)
            if jobs:
                self.stats.fresh += 1
                if group.waiters:  # a backlog: polls that parked while this claim ran look next
                    self._start_serving(group, 1)
        if jobs or hold_s <= 0:
            return jobs
        # Up to a fifth shorter, at random: a fleet that parked at one moment (a server restart, a
        # network blip) would otherwise time out and re-poll in one burst every hold, for ever.
        hold_s *= 1 - HOLD_JITTER * random.random()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + hold_s
        if hold_s >= 4 * EXPIRY_TICK_S:
            # On the tick grid: the polls that expire within one tick share one loop wake-up (and so,
            # mostly, do their re-polls). Each wake-up of an idle server costs about as much CPU as
            # the poll itself here, and a parked fleet's expiries otherwise come one by one.
            deadline = math.floor(deadline / EXPIRY_TICK_S) * EXPIRY_TICK_S
        waiter = _Waiter(claim, loop.create_future(), deadline, gone)
        key = next(self._ids)
        group.waiters[key] = waiter
        # One timer per parked poll; cheaper than wait_for(shield(...)), which a fleet pays per poll.
        timer = loop.call_at(waiter.deadline, _expire, group, key)
        if group.kicks != kicks:  # a wake-up came while we claimed: it may have found no one parked
            self._start_serving(group, 1)
        try:
            return await waiter.future  # a poll being served when its time is up gets what the claim gets
        finally:
            timer.cancel()
            if group.waiters.pop(key, None) is not None and not waiter.future.done():
                waiter.future.cancel()  # the poll itself was cancelled (shutdown)

    def kick(self, group_name: str, jobs: float = 1) -> None:
        """`jobs` were queued for the group (math.inf: look until the queue is empty). Loop thread only."""
        group = self._groups.get(group_name)
        if group is None:
            return  # nobody ever polled this group here; the next poll claims at once
        group.kicks += 1
        self._start_serving(group, jobs)

    def _start_serving(self, group: _Group, jobs: float) -> None:
        # Not a wake-up itself: it must not bump `kicks`, which would make the next fresh poll
        # claim again, and that one park and serve again, in a chain as long as polls keep coming.
        if not group.waiters:
            return
        group.pending += jobs
        if group.task is None or group.task.done():
            group.task = asyncio.get_running_loop().create_task(self._serve(group))

    # -- serving -----------------------------------------------------------------------------

    async def _claim(self, claim: Claim, group: _Group, kicks: int) -> list[Any]:
        """One claim statement; an empty answer, with no wake-up since `kicks`, marks the queue empty."""
        self.stats.claims += 1
        group.inflight += 1
        group.inflight_at = kicks
        try:
            jobs = await self._run(claim)
        finally:
            group.inflight -= 1
        if not jobs and group.kicks == kicks:
            group.empty_at = kicks
        return jobs

    async def _serve(self, group: _Group) -> None:
        loop = asyncio.get_running_loop()
        while group.pending > 0 and group.waiters:
            key, waiter = group.waiters.popitem(last=False)  # the longest-waiting poll
            if waiter.future.done():
                continue
            if waiter.gone is not None and await waiter.gone():
                waiter.future.set_result([])  # its worker has gone: never claim for a poll nobody reads
                continue
            try:
                jobs = await self._claim(waiter.claim, group, group.kicks)
            except Exception as exc:  # the poll answers with the store's error (e.g. 503)
                if not waiter.future.done():
                    waiter.future.set_exception(exc)
                group.pending = 0
                break
            if jobs:
                group.pending -= len(jobs)
                self.stats.handed += 1
                if not waiter.future.done():
                    waiter.future.set_result(jobs)
                continue
            # Nothing left (another replica or a fresh poll took it): the head keeps its place.
            group.pending = 0
            if waiter.future.done():
                break
            if loop.time() >= waiter.deadline:
                waiter.future.set_result([])
            else:
                group.waiters[key] = waiter
                group.waiters.move_to_end(key, last=False)
        group.pending = 0

    async def _recheck_loop(self) -> None:
        while True:
            await asyncio.sleep(self._recheck_s)
            for name, group in list(self._groups.items()):
                if group.waiters:
                    self.kick(name, math.inf)
                elif not group.active and (group.task is None or group.task.done()):
                    self._groups.pop(name, None)  # forget idle groups


def _expire(group: _Group, key: int) -> None:
    """A parked poll's hold is over: answer it empty, unless a claim for it is under way."""
    waiter = group.waiters.pop(key, None)
    if waiter is not None and not waiter.future.done():
        waiter.future.set_result([])
