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

A failing job never stops the others: an authentication error (-2014, -2015, -1022, 401) ends
that account's polling with one error update; every other error (another 4xx, which a proxy or
a redirect can give as well as the exchange, 5xx, transport, decode, the rate limit, even a bug)
backs the job off with jitter, doubling up to a ceiling, with an error update each time.

The turns run in a task group of their own (under asyncio, in bare tasks, which cost less, that
the poller cancels and awaits as it ends), in one task the poll starts and owns (an asyncio
task, or a trio system task), so that leaving the ``async for`` cancels them however the
generator is closed: by the loop's own ``break`` or exception, by cancellation, by
``aclose()``, or by the event loop's finalizer in another task. The generator then waits, at
most a second, for every job and every call in flight to end.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import math
import random
import sys
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

import anyio
from anyio.streams.memory import MemoryObjectSendStream

from ._endpoints import ACCOUNT_ENDPOINTS, Endpoint
from ._exceptions import AuthError, BinancePMError, SessionError
from ._fairness import GATE_DEPTH, Gate, Ranks
from ._models import AccountStatus
from ._retry import backoff

if sys.version_info < (3, 11):
    from exceptiongroup import BaseExceptionGroup

if TYPE_CHECKING:
    from ._client import AccountResult, AsyncClient
    from ._events import StreamEvent

#: The endpoints ``Session.poll`` knows, by the client method's name.
POLLABLE = tuple(ACCOUNT_ENDPOINTS)
#: A failing job backs off at most this long (or ``every``, if longer).
MAX_BACKOFF = 60.0
#: At most this many jobs a second make their first call (over one period at most).
START_RATE = 1000.0
#: Jobs due within one tick (or a tenth of ``every``, if shorter) go together, at its end.
TICK = 0.01
#: Seconds ``Session.poll`` waits for its jobs to end once it is left or cancelled.
STOP_WITHIN = 1.0

log = logging.getLogger("binance_pm")
#: A job's call: ``on_grant`` is called when the governor lets the request out.
JobCall = Callable[..., Awaitable["AccountResult"]]


@dataclass(frozen=True, slots=True)
class Update:
    """One poll's outcome: ``result`` when the call succeeded, else ``error``.

    Attributes:
        client: the account's client.
        endpoint: the endpoint's name, as in ``Session.poll`` (``"pm_pro_account"``…).
        result: what the client method returned, or ``None`` on error.
        error: the :class:`~binance_pm.BinancePMError` the call ended in, or ``None``.
        at: when the answer (or the failure) came, in seconds since the epoch.
        final: this job polls no more (its key was refused, or the request is bad).
        source: where it came from: ``"rest"`` (a call), or ``"stream"`` (pushed, with
            ``poll(..., stream=True)``: then ``event`` holds the pushed event and ``result``
            is ``None``; an ``error`` is the stream's, which reconnects by itself).
        event: the pushed :class:`~binance_pm.StreamEvent`, for ``source="stream"``.
    """

    client: AsyncClient
    endpoint: str
    result: AccountResult | None
    error: BinancePMError | None
    at: float
    final: bool = False
    source: str = "rest"
    event: StreamEvent | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def name(self) -> str:
        """The account's name (:attr:`AsyncClient.name`)."""
        return self.client.name


def default_priority(update: Update) -> float:
    """Accounts in trouble first: a status other than NORMAL, then the lowest ``uni_mmr``.

    Results without either (balances) rank last.
    """
    result = update.result
    status = getattr(result, "account_status", None)
    if status is not None and status != AccountStatus.NORMAL:
        return -math.inf
    uni_mmr = getattr(result, "uni_mmr", None)
    try:
        ratio = float(uni_mmr) if uni_mmr is not None else math.inf
    except (TypeError, ValueError, ArithmeticError):
        return math.inf
    return math.inf if math.isnan(ratio) else ratio


class _Job:
    __slots__ = (
        "call",
        "client",
        "endpoint",
        "failures",
        "gate",
        "go",
        "inside",
        "key",
        "tag",
        "weight",
    )

    def __init__(
        self,
        client: AsyncClient,
        endpoint: Endpoint[Any],
        call: JobCall,
        gate: Gate,
    ) -> None:
        self.client = client
        self.endpoint = endpoint
        self.call = call
        self.gate = gate
        self.tag = 0.0
        self.key: float | None = None  # the priority of its last result, if a number
        self.weight = 1.0  # its share at its gate, from the rank of its key when last set
        self.go: anyio.Event | None = None
        self.inside = False  # through its gate, and not yet let out by the governor
        self.failures = 0  # in a row

    def granted(self) -> None:
        """The governor let the call out (or it ended first): the gate may let another in."""
        if self.inside:
            self.inside = False
            self.gate.leave()


def plan_jobs(
    clients: Iterable[AsyncClient] | Mapping[AsyncClient, str | Sequence[str]],
    endpoints: str | Sequence[str] | None,
    asset: str | None,
) -> list[_Job]:
    """The jobs to run, checked: every name known, ``asset`` where one is needed."""
    if isinstance(clients, Mapping):
        if endpoints is not None:
            raise TypeError("give endpoints per client in the mapping, or for all, not both")
        pairs = [(client, _names(names)) for client, names in clients.items()]
    else:
        if endpoints is None:
            raise TypeError("poll needs endpoints: a name, a list of names, or a mapping")
        names = _names(endpoints)
        pairs = [(client, names) for client in clients]
    gates: dict[object, Gate] = {}
    jobs = []
    for client, names in pairs:
        for name in names:
            endpoint = ACCOUNT_ENDPOINTS[name]
            if endpoint.bucket == "uid":
                gate_key: object = ("uid", client.api_key)
            else:
                gate_key = endpoint.family
            gate = gates.setdefault(gate_key, Gate())
            jobs.append(_Job(client, endpoint, _caller(client, endpoint, asset), gate))
    return jobs


def _names(endpoints: str | Sequence[str]) -> tuple[str, ...]:
    names = (endpoints,) if isinstance(endpoints, str) else tuple(endpoints)
    if not names:
        raise ValueError("poll needs at least one endpoint")
    for name in names:
        if name not in POLLABLE:
            raise ValueError(f"unknown endpoint {name!r}; known: {', '.join(POLLABLE)}")
    return names


def _caller(client: AsyncClient, endpoint: Endpoint[Any], asset: str | None) -> JobCall:
    wanted = asset if "asset" in endpoint.params else None
    endpoint.query(wanted)  # checked now: a missing asset is the caller's mistake
    return partial(client.call, endpoint.name, asset=wanted)


class Poller:
    """Runs the jobs of one ``Session.poll``; see the module's description."""

    def __init__(
        self,
        jobs: list[_Job],
        *,
        every: float,
        priority: Callable[[Update], float],
        send: MemoryObjectSendStream[Update],
        depth: int = GATE_DEPTH,
        rand: random.Random | None = None,
    ) -> None:
        self.jobs = jobs
        self.every = every
        self.priority = priority
        for job in jobs:
            job.gate.depth = depth
        self._send = send
        self._rand = rand or random.Random()
        self._seq = itertools.count()
        self._ended: set[AsyncClient] = set()
        self._ranks = Ranks()
        self._due: list[tuple[float, int, _Job]] = []  # when each job not in flight goes next
        self._busy = 0  # jobs in flight
        self._wake = anyio.Event()  # the scheduler's: a job is due sooner than it thought
        self._sleeps_until = math.inf
        self._tick = min(TICK, every / 10)
        self._now: Callable[[], float] = anyio.current_time
        self.scope = anyio.CancelScope()
        self.stopped = anyio.Event()
        self.failure: BaseException | None = None  # the priority callable's, if it raised
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None  # under asyncio
        self._turns: set[asyncio.Task[None]] = set()  # under asyncio, the turns in flight

    def start(self) -> None:
        """Run the jobs in a task of their own (kept here, so it is not collected)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            import trio  # not asyncio: anyio's other backend

            self._now = trio.current_time
            trio.lowlevel.spawn_system_task(self._run, name="binance_pm poll")
        else:
            self._now = loop.time
            self._loop = loop
            self._task = loop.create_task(self._run(), name="binance_pm poll")

    async def _run(self) -> None:
        try:
            with self.scope:
                async with anyio.create_task_group() as group:
                    try:
                        await self._schedule(group)
                    finally:
                        await self._end_turns()
        except Exception as exc:  # a bug, not an account's failure: the caller sees it
            while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
                exc = exc.exceptions[0]  # the first is raised to the caller
            self.failure = exc
        finally:
            self._send.close()
            self.stopped.set()

    async def stop(self) -> None:
        """Cancel every job and call in flight; wait, at most a second, for them to end."""
        self.scope.cancel()
        with anyio.move_on_after(STOP_WITHIN, shield=True):
            await self.stopped.wait()

    # -- the schedule -------------------------------------------------------------------------

    async def _schedule(self, group: anyio.abc.TaskGroup) -> None:
        """Start each job's turn when it is due, until no job is left.

        A job waiting for its turn is one entry in a heap, not a sleeping task. The first turns
        are spread out, at most ``START_RATE`` a second and over one period at most, so that
        the calls do not all go at once, then or in any later period.
        """
        now, count = self._now(), len(self.jobs)
        spread = min(self.every, count / START_RATE) / count
        self._due = [(now + i * spread, next(self._seq), job) for i, job in enumerate(self.jobs)]
        due = self._due
        while due or self._busy:
            if due and due[0][0] <= (now := self._now()):
                job = heapq.heappop(due)[2]
                if job.client not in self._ended:
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
            if self.failure is None:  # a bug, not an account's failure: the caller sees it
                self.failure = exc
            self.scope.cancel()

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

    def _next(self, job: _Job, at: float) -> None:
        heapq.heappush(self._due, (at, next(self._seq), job))
        if self._on_grid(at) < self._sleeps_until:
            self._wake.set()

    # -- one turn of a job --------------------------------------------------------------------

    async def _turn(self, job: _Job) -> None:
        try:
            await self._enter(job)
            job.inside = True
            started = self._now()
            try:
                result, error = await job.call(on_grant=job.granted), None
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
            try:
                self._send.send_nowait(update)
            except anyio.WouldBlock:  # the consumer is behind: wait for it
                await self._send.send(update)
            if final:
                return
            if error is None:
                job.failures = 0
                try:
                    key = self.priority(update)
                except Exception as exc:  # the caller's code: it ends the poll, to the caller
                    self.failure = exc
                    self.scope.cancel()
                    return
                self._rekey(job, key)
                self._next(job, started + self.every)
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
            if not self._busy and not self._due:
                self._wake.set()  # the last job has ended

    def _rekey(self, job: _Job, key: float) -> None:
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

    async def _enter(self, job: _Job) -> None:
        gate = job.gate
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


async def poll(
    jobs: list[_Job],
    running: set[Poller],
    *,
    every: float,
    priority: Callable[[Update], float],
) -> AsyncGenerator[Update, None]:
    """The updates of ``jobs``, as they come; see ``Session.poll``. ``running`` is the
    Session's set of polls, which it stops when it closes."""
    send, receive = anyio.create_memory_object_stream[Update](max_buffer_size=len(jobs))
    poller = Poller(jobs, every=every, priority=priority, send=send)
    running.add(poller)
    try:
        poller.start()
        async with receive:
            while True:
                # What is waiting goes out at once; only an empty stream is waited on (its
                # receive() passes through the event loop even when an update is ready).
                try:
                    update = receive.receive_nowait()
                except anyio.WouldBlock:
                    try:
                        update = await receive.receive()
                    except anyio.EndOfStream:
                        break
                except anyio.EndOfStream:
                    break
                yield update
        if poller.failure is not None:
            raise poller.failure
    finally:
        running.discard(poller)
        await poller.stop()
