"""Polling many accounts through one Session: ``Session.poll``.

Each (client, endpoint) pair is a job. A job waiting for its next turn is an entry in one heap
of due times (no task, no timer of its own); when it is due, its turn runs in a task of its own,
so a job waiting for one budget never holds up a job that has room in another. A job goes at
most every ``every`` seconds. The first turns are spread out (at most ``START_RATE`` a second,
over one period at most) and the jobs keep those phases, so that thousands of accounts do not
all call at once; jobs due within one tick go out together, in one pass of the event loop.
Between the jobs that are due and the governor stands one gate per budget (an API family's IP
budget, or an account's UID budget): it lets a few calls per budget into the governor's queue at
once and chooses which, so that when the budget is what binds, the choice is fair and weighted:

- Weighted fair queueing: a job's turn comes in the order of its finish tag, which grows by
  ``1 / weight`` at each turn; a job of weight 2 gets twice the turns of one of weight 1 while
  both wait, and none waits forever.
- Weights come from ``priority``: a sort key of a job's last update, lower first: from weight 2
  (ranked first) to 1 (last), by the job's rank when it comes to the gate; a job with no result
  yet has weight 1. The keys are kept in order as they change (``_fairness.Ranks``), not
  sorted again. When the budget does not bind, every job simply goes every ``every`` seconds.

In a fleet (``poll(..., fleet=...)``), a job whose account another member holds skips its turn
and is looked at again a period later; the fleet's looks run beside the poll, and an account this
member takes is polled at once.

A failing job never stops the others: an authentication error (-2014, -2015, -1022, 401) ends
that account's polling with one error update; every other error (another 4xx, which a proxy or
a redirect can give as well as the exchange, 5xx, transport, decode, the rate limit, even a bug)
backs the job off with jitter, doubling up to a ceiling, with an error update each time.

The turns run in a task group of the poller's own (under asyncio with a governor of this
process alone, in bare tasks, which cost less, that the poller cancels and awaits as it ends;
with a shared store, in the group, so that a turn's cancellation waits for the store to hear
of its answer), inside the ``async with`` that
``Session.poll`` returns (:class:`Polling`): leaving it cancels every turn and call in flight
and waits for them to end. A merged poll (``poll(stream=True)``) brings a job's next turn
forward with :meth:`Poller.hurry` to fill a stream's gap: through the same gate as any turn.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import math
import random
import time
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING

import anyio

from ._exceptions import AuthError, BinancePMError, SessionError
from ._fairness import GATE_DEPTH, Ranks
from ._governor import Governor
from ._jobs import Job, Sharing
from ._retry import backoff
from ._running import Background, Owner, Sink
from ._updates import Update

if TYPE_CHECKING:
    from ._client import AsyncClient

#: A failing job backs off at most this long (or ``every``, if longer).
MAX_BACKOFF = 60.0
#: At most this many jobs a second make their first call (over one period at most).
START_RATE = 1000.0
#: Jobs due within one tick (or a tenth of ``every``, if shorter) go together, at its end.
TICK = 0.02

log = logging.getLogger("binance_pm")


class Poller:
    """Runs the jobs of one ``Session.poll``; see the module's description."""

    def __init__(
        self,
        jobs: list[Job],
        *,
        every: float,
        priority: Callable[[Update], float],
        sink: Sink[Update],
        depth: int = GATE_DEPTH,
        rand: random.Random | None = None,
        mine: Callable[[AsyncClient], bool] | None = None,
    ) -> None:
        self.jobs = jobs
        self._mine = mine  # a fleet's: whether this member polls an account now
        self.every = every
        self.priority = priority
        for job in jobs:
            job.gate.depth = depth
        self._sink = sink
        self._rand = rand or random.Random()
        self._seq = itertools.count()
        self._ended: set[AsyncClient] = set()
        self._ranks = Ranks()
        self._due: list[tuple[float, int, Job]] = []  # when each job not in flight goes next
        self._live = 0  # entries of _due that stand (a hurried job's older one does not)
        self._busy = 0  # jobs in flight
        self._wake = anyio.Event()  # the scheduler's: a job is due sooner than it thought
        self._sleeps_until = math.inf
        self._tick = min(TICK, every / 10)
        self._now: Callable[[], float] = anyio.current_time
        self._scope = anyio.CancelScope()
        self._failure: BaseException | None = None  # the priority callable's, if it raised
        self._loop: asyncio.AbstractEventLoop | None = None  # under asyncio
        self._turns: set[asyncio.Task[None]] = set()  # under asyncio, the turns in flight

    async def run(self) -> None:
        """Run the jobs until none is left or this is cancelled; every turn and call in flight
        has ended when it returns. Raises what the ``priority`` callable raised, if it did."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            pass  # trio: anyio's clock is its own
        else:
            self._now = loop.time
            if not _settles(self.jobs):
                self._loop = loop  # turns in bare tasks, ended by Task.cancel()
        with self._scope:
            async with anyio.create_task_group() as group:
                try:
                    await self._schedule(group)
                finally:
                    await self._end_turns()
        if self._failure is not None:
            raise self._failure

    def _fail(self, exc: BaseException) -> None:
        if self._failure is None:
            self._failure = exc
        self._scope.cancel()

    def hurry(self, job: Job, at: float) -> None:
        """Bring ``job``'s next turn forward to ``at`` (on this poll's clock), if it is due
        later: it waits at its gate like any other turn. A job in flight goes again at ``at``
        once its answer is in (that answer may be older than whatever asked for this)."""
        if job.client in self._ended:
            return
        if job.entry is None:
            job.soon = min(job.soon, at)
        elif job.due > at:
            self._next(job, at)

    def now(self) -> float:
        """This poll's clock (the event loop's)."""
        return self._now()

    # -- the schedule -------------------------------------------------------------------------

    async def _schedule(self, group: anyio.abc.TaskGroup) -> None:
        """Start each job's turn when it is due, until no job is left.

        A job waiting for its turn is one entry in a heap, not a sleeping task. The first turns
        are spread out, at most ``START_RATE`` a second and over one period at most, so that
        the calls do not all go at once, then or in any later period.
        """
        now, count = self._now(), len(self.jobs)
        spread = min(self.every, count / START_RATE) / count
        for i, job in enumerate(self.jobs):
            job.entry, job.due = next(self._seq), now + i * spread
            self._due.append((job.due, job.entry, job))
        self._live = len(self.jobs)
        due = self._due
        while self._live or self._busy:
            if due and due[0][0] <= (now := self._now()):
                _, entry, job = heapq.heappop(due)
                if entry != job.entry:
                    continue  # hurried: its newer entry stands
                job.entry = None
                self._live -= 1
                mine = self._mine
                ended = job.client in self._ended
                if not ended and mine is not None and not mine(job.client):
                    self._next(job, now + self.every)  # another member's now; looked at again
                    continue
                if not ended:
                    self._busy += 1
                    if self._loop is not None:  # a bare task costs a third of a group's
                        turn = self._loop.create_task(self._turn(job))
                        self._turns.add(turn)
                        turn.add_done_callback(self._turn_done)
                    else:
                        group.start_soon(self._turn, job)
                continue
            # Wake on a grid of ticks, never before the first job is due: the jobs due
            # within one tick go together, in one pass of the event loop (a wake, a send,
            # a poll of the sockets each cost about as much as a job's own work).
            self._sleeps_until = self._on_grid(due[0][0]) if due else math.inf
            with anyio.move_on_after(self._sleeps_until - now):
                await self._wake.wait()
            self._sleeps_until = -math.inf
            if self._wake.is_set():
                self._wake = anyio.Event()

    def _turn_done(self, turn: asyncio.Task[None]) -> None:
        self._turns.discard(turn)
        if not turn.cancelled() and (exc := turn.exception()) is not None:
            self._fail(exc)  # a bug, not an account's failure: the caller sees it

    async def _end_turns(self) -> None:
        """Cancel the turns in bare tasks (the task group ends its own), and wait for them."""
        turns = list(self._turns)
        for turn in turns:
            turn.cancel()
        if turns:
            with anyio.CancelScope(shield=True):
                await asyncio.wait(turns)

    def _on_grid(self, at: float) -> float:
        """The first tick at or after ``at`` (``at`` itself, if rounding put it before)."""
        return max(at, math.ceil(at / self._tick) * self._tick)

    def _next(self, job: Job, at: float) -> None:
        if job.entry is None:
            self._live += 1  # else it replaces the job's entry that stood
        job.entry, job.due = next(self._seq), at
        heapq.heappush(self._due, (at, job.entry, job))
        if self._on_grid(at) < self._sleeps_until:
            self._wake.set()

    # -- one turn of a job --------------------------------------------------------------------

    async def _turn(self, job: Job) -> None:
        try:
            await self._enter(job)
            job.inside = True
            started = self._now()
            mine = self._mine
            try:
                grant = job.granted if mine is None else partial(_granted_if_mine, job, mine)
                result, error = await job.call(on_grant=grant), None
            except _Elsewhere:  # another member's since it was due: not sent, looked at again
                self._next(job, self._now() + self.every)
                return
            except BinancePMError as exc:
                result, error = None, exc
            except Exception as exc:  # a bug: logged, and this account backs off like any failure
                log.exception("polling %s %s failed", job.client.masked_key, job.endpoint.name)
                result = None
                error = BinancePMError(f"{job.endpoint.label}: unexpected {type(exc).__name__}")
            finally:
                job.granted()  # if the call ended before the governor let it out
            if job.client in self._ended:
                return  # its key was refused meanwhile: that update has gone out
            # A refused key, or a Session closed under the poll: that job is over.
            final = isinstance(error, (AuthError, SessionError))
            if final:
                self._ended.add(job.client)
            update = Update(job.client, job.endpoint.name, result, error, time.time(), final)
            if not self._sink.offer(update):  # the consumer is behind: wait for it
                await self._sink.put(update)
            if final:
                return
            soon, job.soon = job.soon, math.inf
            if error is None:
                job.failures = 0
                try:
                    key = self.priority(update)
                except Exception as exc:  # the caller's code: it ends the poll, to the caller
                    self._fail(exc)
                    return
                self._rekey(job, key)
                self._next(job, min(started + self.every, max(soon, self._now())))
            else:
                job.failures += 1
                wait = backoff(
                    job.failures - 1,
                    base=1.5 * self.every,
                    ceiling=max(MAX_BACKOFF, self.every),
                    rand=self._rand.random,
                )
                self._next(job, self._now() + wait)
        finally:
            self._busy -= 1
            if not self._busy and not self._live:
                self._wake.set()  # the last job has ended

    def _rekey(self, job: Job, key: float) -> None:
        """Keep the ranks in step with the job's new priority (NaN: no rank), and its weight
        with its rank then (the others' moves shift it a little until its own next change)."""
        if key == job.key:
            return  # the same as before (balances: always): nothing moves
        ranks = self._ranks
        if job.key is not None:
            ranks.remove(job.key)
        if key == key:
            ranks.add(key)
            job.key = key
            job.weight = ranks.weight(key)
        else:
            job.key = None
            job.weight = 1.0

    # -- the gates ----------------------------------------------------------------------------

    async def _enter(self, job: Job) -> None:
        gate = job.gate
        if job.front:  # taken from a member that died: unwatched for a lease already
            job.front, job.tag = False, gate.tag
        else:
            job.tag = max(job.tag, gate.tag) + 1.0 / job.weight  # its finish tag
        if gate.inside < gate.depth and not gate.heap:
            gate.inside += 1
            gate.tag = job.tag
            return
        event = job.go = anyio.Event()
        heapq.heappush(gate.heap, (job.tag, next(self._seq), job))
        try:
            await event.wait()
        except BaseException:
            if event.is_set():
                gate.leave()  # let through, but cancelled before it went
            else:
                job.go = None  # still in the heap: skipped when it comes up
            raise


class _Elsewhere(Exception):
    """The account is another member's now: its request does not leave."""


def _granted_if_mine(job: Job, mine: Callable[[AsyncClient], bool]) -> None:
    """A fleet's poll, as the governor lets a request out: only if this member still holds the
    account (it may have waited for budget, or been paused, past its lease)."""
    job.granted()
    if not mine(job.client):
        raise _Elsewhere


class Polling(Background[Update]):
    """What :meth:`Session.poll` returns: ``async with session.poll(...) as updates``."""

    _what = "Session.poll"

    def __init__(
        self,
        owner: Owner,
        check_open: Callable[[], None],
        jobs: list[Job],
        *,
        every: float,
        priority: Callable[[Update], float],
        fleet: Sharing | None = None,
    ) -> None:
        super().__init__(owner, check_open, len(jobs))
        self._jobs = jobs
        self._every = every
        self._priority = priority
        self._fleet = fleet

    async def _main(self) -> None:
        fleet = self._fleet
        poller = Poller(
            self._jobs,
            every=self._every,
            priority=self._priority,
            sink=self._channel,
            mine=None if fleet is None else fleet.mine,
        )
        if fleet is None:
            await poller.run()
            return
        jobs_of: dict[AsyncClient, list[Job]] = {}
        for job in self._jobs:
            jobs_of.setdefault(job.client, []).append(job)

        def gained(clients: list[AsyncClient]) -> None:  # polled at once, first in line
            now = poller.now()
            for client in clients:
                for job in jobs_of.get(client, ()):
                    job.front = True
                    poller.hurry(job, now)

        async with anyio.create_task_group() as group:
            group.start_soon(partial(fleet.run, list(jobs_of), gained=gained))
            await poller.run()
            group.cancel_scope.cancel()


def _settles(jobs: list[Job]) -> bool:
    """Whether a request of ``jobs`` has its permit settled after its answer (a governor with a
    shared store, or a hook of the caller's): its turn must end by anyio's cancellation, which
    the settle's shield holds off until the store has heard; a bare task's ``Task.cancel()``
    would cut it short."""
    governors = {id(g): g for g in (job.client.session.governor for job in jobs)}
    return not all(isinstance(g, Governor) and g.store is None for g in governors.values())
