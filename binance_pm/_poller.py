"""Polling many accounts through one Session: ``Session.poll``.

Each (client, endpoint) pair is a job with a task of its own, so a job waiting for one budget
never holds up a job that has room in another. A job goes at most every ``every`` seconds.
Between the jobs that are due and the governor stands one gate per budget (an API family's IP
budget, or an account's UID budget): it lets a few calls per budget into the governor's queue at
once and chooses which, so that when the budget is what binds, the choice is fair and weighted:

- Weighted fair queueing: a job's turn comes in the order of its finish tag, which grows by
  ``1 / weight`` at each turn; a job of weight 2 gets twice the turns of one of weight 1 while
  both wait, and none waits forever.
- Weights come from ``priority``: a sort key of a job's last update, lower first. Jobs are
  ranked by it about once a second, from weight 2 (first) to 1 (last); a job with no result yet
  has weight 1. When the budget does not bind, every job simply goes every ``every`` seconds.

A failing job never stops the others: an authentication error (-2014, -2015, -1022, 401) ends
that account's polling with one error update; every other error (another 4xx, which a proxy or
a redirect can give as well as the exchange, 5xx, transport, decode, the rate limit, even a bug)
backs the job off with jitter, doubling up to a ceiling, with an error update each time.

The jobs run in a task group of their own, in one task the poll starts and owns (an asyncio
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
from collections.abc import AsyncGenerator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio
from anyio.streams.memory import MemoryObjectSendStream

from ._endpoints import ACCOUNT_ENDPOINTS, Endpoint
from ._exceptions import AuthError, BinancePMError
from ._models import AccountStatus
from ._retry import backoff

if sys.version_info < (3, 11):
    from exceptiongroup import BaseExceptionGroup

if TYPE_CHECKING:
    from ._client import AsyncClient

#: The endpoints ``Session.poll`` knows, by the client method's name.
POLLABLE = tuple(ACCOUNT_ENDPOINTS)
#: Calls per budget let into the governor's queue at once: few, so that the choice of which
#: goes next is made as late as it can be. Calls the governor has let out do not count.
GATE_DEPTH = 2
#: A failing job backs off at most this long (or ``every``, if longer).
MAX_BACKOFF = 60.0
#: Seconds between rankings by priority.
RANK_EVERY = 1.0
#: Seconds ``Session.poll`` waits for its jobs to end once it is left or cancelled.
STOP_WITHIN = 1.0

log = logging.getLogger("binance_pm")
#: A job's call: the hand-off is called when the governor lets the request out.
JobCall = Callable[[Callable[[], None]], Any]


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
    """

    client: AsyncClient
    endpoint: str
    result: Any
    error: BinancePMError | None
    at: float
    final: bool = False

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


class _Gate:
    """One budget's door to the governor: how many calls are through, and who waits."""

    __slots__ = ("heap", "inside", "tag")

    def __init__(self) -> None:
        self.heap: list[tuple[float, int, _Job]] = []
        self.inside = 0
        self.tag = 0.0  # the finish tag of the last job let through


class _Job:
    __slots__ = ("call", "client", "endpoint", "gate", "go", "key", "tag", "weight")

    def __init__(
        self,
        client: AsyncClient,
        endpoint: Endpoint[Any],
        call: JobCall,
        gate: _Gate,
    ) -> None:
        self.client = client
        self.endpoint = endpoint
        self.call = call
        self.gate = gate
        self.tag = 0.0
        self.weight = 1.0
        self.key: float | None = None  # the priority of its last result
        self.go: anyio.Event | None = None


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
    gates: dict[object, _Gate] = {}
    jobs = []
    for client, names in pairs:
        for name in names:
            endpoint = ACCOUNT_ENDPOINTS[name]
            if endpoint.bucket == "uid":
                gate_key: object = ("uid", client._credentials.api_key)
            else:
                gate_key = endpoint.family
            gate = gates.setdefault(gate_key, _Gate())
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

    def call(on_grant: Callable[[], None]) -> Any:
        return client._get(endpoint, wanted, on_grant=on_grant)

    return call


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
        self.depth = depth
        self._send = send
        self._rand = rand or random.Random()
        self._seq = itertools.count()
        self._ended: set[AsyncClient] = set()
        self._ranked_at = -math.inf
        self.scope = anyio.CancelScope()
        self.stopped = anyio.Event()
        self.failure: BaseException | None = None  # the priority callable's, if it raised
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Run the jobs in a task of their own (kept here, so it is not collected)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            import trio  # not asyncio: anyio's other backend

            trio.lowlevel.spawn_system_task(self._run, name="binance_pm poll")
        else:
            self._task = loop.create_task(self._run(), name="binance_pm poll")

    async def _run(self) -> None:
        try:
            with self.scope:
                async with anyio.create_task_group() as group:
                    for job in self.jobs:
                        group.start_soon(self._loop, job)
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

    # -- one job ------------------------------------------------------------------------------

    async def _loop(self, job: _Job) -> None:
        failures = 0
        inside = False

        def granted() -> None:
            nonlocal inside
            if inside:
                inside = False
                self._leave(job)

        while job.client not in self._ended:
            await self._enter(job)
            inside = True
            started = anyio.current_time()
            try:
                result, error = await job.call(granted), None
            except BinancePMError as exc:
                result, error = None, exc
            except Exception as exc:  # a bug: logged, and this account backs off like any failure
                log.exception("polling %s %s failed", job.client.masked_key, job.endpoint.name)
                result = None
                error = BinancePMError(f"{job.endpoint.label}: unexpected {type(exc).__name__}")
            finally:
                granted()  # if the call ended before the governor let it out
            final = isinstance(error, AuthError)
            if job.client in self._ended:
                return  # its key was refused meanwhile: that update has gone out
            if isinstance(error, AuthError):
                self._ended.add(job.client)
            update = Update(job.client, job.endpoint.name, result, error, time.time(), final)
            await self._send.send(update)
            if final:
                return
            if error is None:
                failures = 0
                try:
                    job.key = self.priority(update)
                except Exception as exc:  # the caller's code: it ends the poll, to the caller
                    self.failure = exc
                    self.scope.cancel()
                    return
                self._rank()
                wait = started + self.every - anyio.current_time()
            else:
                failures += 1
                wait = backoff(
                    failures - 1,
                    base=1.5 * self.every,
                    ceiling=max(MAX_BACKOFF, self.every),
                    rand=self._rand.random,
                )
            if wait > 0:
                await anyio.sleep(wait)

    # -- the gates ----------------------------------------------------------------------------

    async def _enter(self, job: _Job) -> None:
        gate = job.gate
        job.tag = max(job.tag, gate.tag) + 1.0 / job.weight  # its finish tag
        if gate.inside < self.depth and not gate.heap:
            gate.inside += 1
            gate.tag = job.tag
            return
        event = job.go = anyio.Event()
        heapq.heappush(gate.heap, (job.tag, next(self._seq), job))
        try:
            await event.wait()
        except BaseException:
            if event.is_set():
                self._leave(job)  # let through, but cancelled before it went
            else:
                job.go = None  # still in the heap: skipped when it comes up
            raise

    def _leave(self, job: _Job) -> None:
        gate = job.gate
        gate.inside -= 1
        while gate.inside < self.depth and gate.heap:
            tag, _, waiting = heapq.heappop(gate.heap)
            if waiting.go is None:
                continue  # cancelled while it waited
            gate.inside += 1
            gate.tag = tag
            waiting.go.set()
            waiting.go = None

    def _rank(self) -> None:
        """Weights from priorities, at most once every ``RANK_EVERY`` seconds."""
        now = anyio.current_time()
        if now - self._ranked_at < RANK_EVERY:
            return
        self._ranked_at = now
        known = sorted(
            ((job.key, job) for job in self.jobs if job.key is not None and job.key == job.key),
            key=lambda pair: pair[0],  # NaN aside: it compares with nothing
        )
        last = max(len(known) - 1, 1)
        start = 0
        while start < len(known):  # equal keys, equal weights: the mean of their ranks
            end = start
            while end + 1 < len(known) and known[end + 1][0] == known[start][0]:
                end += 1
            weight = 2.0 - (start + end) / 2 / last
            for _, job in known[start : end + 1]:
                job.weight = weight
            start = end + 1


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
            async for update in receive:
                yield update
        if poller.failure is not None:
            raise poller.failure
    finally:
        running.discard(poller)
        await poller.stop()
