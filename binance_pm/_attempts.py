"""Stream connection attempts: a budget of the governor, spent riskiest account first.

The exchange allows 300 WebSocket connection attempts per 5 minutes per IP, refuses the
upgrade past that (429) and bans an IP that keeps trying (418, REST included). Every first
connection, reconnection and rotation of a user data stream takes one attempt from
:class:`ConnectionBudget` before its handshake. The attempts are held as a
:class:`~binance_pm._buckets.Bucket` holds weight (from the grant until one window after the
handshake's outcome), so no interval of the window, wherever the exchange puts it, counts more
than the limit.

Waiting accounts form one queue ordered by rank (lower first: the lowest last-known uniMMR),
then by arrival. Only the head may take an attempt; it sleeps until the moment the window
frees one (one timer), the others until the head has gone (an event). Nothing polls, and a
waiter that is cancelled takes nothing.

With a governor's shared store (several processes on one IP), the head also has the store
charge the attempt (``ws_connect``, over ``ws_window``), as REST weight is charged there, and
the handshake's outcome is settled there: every process's attempts count against one limit.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Callable, MutableMapping
from typing import TYPE_CHECKING, Any, cast

import anyio

from ._buckets import Bucket
from ._endpoints import Endpoint
from ._exceptions import GovernorTimeout
from ._limits import Budget, Family
from ._shared import FallBack
from ._states import BucketState
from ._wakeup import Wakeup, sleep_or_wake

if TYPE_CHECKING:
    from ._shared import SharedBudgets, StorePermit

#: The budget: its name (``"ws_connect"``) in snapshots, metrics, errors and a shared store.
CONNECT = Budget("ws", "connect")
NAME = CONNECT.store_name
#: Seconds one request to a shared store for an attempt may wait there.
STORE_TRY = 30.0
#: What a connection attempt is charged as in a shared store (its family, "ws", names its ban).
CONNECTING: Endpoint[Any] = Endpoint(
    NAME, cast(Family, "ws"), "/ws", 1, signed=False, response=None
)


class _Ticket:
    """One account waiting for an attempt."""

    __slots__ = ("event", "gone", "rank", "seq")

    def __init__(self, rank: float, seq: int) -> None:
        self.rank = rank
        self.seq = seq
        self.event: Wakeup | None = None
        self.gone = False  # cancelled or granted: skipped when it reaches the head

    def __lt__(self, other: _Ticket) -> bool:
        return (self.rank, self.seq) < (other.rank, other.seq)


class Attempt:
    """One connection attempt let out: say how its handshake went, or give it back."""

    __slots__ = ("_budget", "_done", "_shared")

    def __init__(self, budget: ConnectionBudget, shared: StorePermit | None = None) -> None:
        self._budget = budget
        self._done = False
        self._shared = shared  # the attempt as a shared store charged it

    def cancel(self) -> None:
        """The handshake was never started: the attempt was not spent."""
        if not self._done:
            self._done = True
            self._budget._give_back()
            if self._shared is not None:
                self._shared.cancel()

    def sent(self, status: int | None, retry_after: float | None = None) -> None:
        """The handshake ended: ``status`` is its HTTP status (101 when upgraded), ``None``
        when no answer came; a 429 shuts the budget for ``retry_after`` (one window when it
        does not say), a 418 bans the IP (every budget) for as long."""
        if not self._done:
            self._done = True
            self._budget._finished(status, retry_after)
            if self._shared is not None:
                headers = {} if retry_after is None else {"Retry-After": f"{retry_after:g}"}
                self._shared.complete(status, headers)

    async def settle(self) -> None:
        """Tell a shared store how the attempt went (nothing to do without one)."""
        if self._shared is not None:
            await self._shared.settle()


class ConnectionBudget:
    """Connection attempts per IP: ``limit`` in any ``window`` seconds.

    Args:
        limit: attempts allowed per window (after the governor's headroom).
        window: seconds.
        clock: the governor's monotonic clock.
        banned_until: each family's ban, by family, on ``clock`` (the governor's map: a ban
            of any family is a ban of the IP, so no attempt goes while one holds).
        ban: called with the seconds of a ban that a refused handshake (418) announced.
    """

    def __init__(
        self,
        limit: int,
        window: float,
        *,
        clock: Callable[[], float],
        banned_until: MutableMapping[str, float],
        ban: Callable[[float], None],
        shared: SharedBudgets | None = None,
    ) -> None:
        self.bucket = Bucket(CONNECT, limit, window)
        self._shared = shared
        self._clock = clock
        self._banned_until = banned_until
        self._ban = ban
        self._queue: list[_Ticket] = []
        self._seq = itertools.count()

    @property
    def limit(self) -> int:
        return self.bucket.limit

    @property
    def window(self) -> float:
        return self.bucket.window

    def _shut_until(self) -> float:
        return max(self.bucket.closed_until, *self._banned_until.values())

    def _head(self) -> _Ticket | None:
        queue = self._queue
        while queue and queue[0].gone:
            heapq.heappop(queue)
        return queue[0] if queue else None

    def _wake_head(self) -> None:
        head = self._head()
        if head is not None and head.event is not None:
            head.event.set()

    async def acquire(self, rank: float = math.inf, *, deadline: float = math.inf) -> Attempt:
        """Wait for an attempt, ``rank`` (lower first) and arrival deciding who goes first;
        ``deadline`` on anyio's clock (:class:`GovernorTimeout` past it)."""
        ticket = _Ticket(rank, next(self._seq))
        heapq.heappush(self._queue, ticket)
        try:
            while True:
                now = self._clock()
                wake_at: float | None = None
                if self._head() is ticket:
                    shut_until = self._shut_until()
                    if shut_until > now:
                        wake_at = shut_until
                    elif self.bucket.can_take(1, now):
                        if self._shared is not None:
                            return await self._charged(ticket, deadline)
                        ticket.gone = True  # granted; the next in line may go too
                        self.bucket.take(1)
                        return Attempt(self)
                    elif self.bucket.answered or not self.bucket.inflight:
                        wake_at = self.bucket.time_until_room(1, now)
                    # else the first attempt's outcome comes first, and wakes it
                left = deadline - anyio.current_time()
                if left <= 0:
                    raise GovernorTimeout(
                        f"no stream connection attempt free ({NAME}: {self.limit} per "
                        f"{self.window:g} s) before the deadline",
                        endpoint="stream connection",
                    )
                wait = left if wake_at is None else min(left, max(wake_at - now, 0.0))
                await sleep_or_wake(ticket, wait)
        finally:
            ticket.gone = True
            self._wake_head()

    async def _charged(self, ticket: _Ticket, deadline: float) -> Attempt:
        """The head's attempt, charged by the shared store (waiting for its room there too),
        then counted here as well; the next in line waits until then."""
        assert self._shared is not None
        permit: StorePermit | None = None
        while True:
            # Asked with a bounded deadline: it bounds how long the store holds a charge whose
            # outcome never reaches it, and how long telling it may take.
            ends = min(deadline, anyio.current_time() + STORE_TRY)
            try:
                permit = await self._shared.acquire(CONNECTING, "", ends, (self.bucket,), (1,))
            except FallBack:  # the store failed, and on_store_error="local": counted here alone
                pass
            except GovernorTimeout:
                if ends >= deadline:
                    raise
                continue  # other processes hold the room: ask again
            break
        ticket.gone = True
        self.bucket.take(1)
        return Attempt(self, permit)

    def _give_back(self) -> None:
        self.bucket.give_back(1)
        self._wake_head()

    def _finished(self, status: int | None, retry_after: float | None) -> None:
        now = self._clock()
        self.bucket.finish(1, now, answered=status is not None)
        if status in (418, 429):
            wait = retry_after if retry_after is not None else self.window
            if status == 418:
                self._ban(wait)
            self.bucket.shut(now, wait, ban=status == 418)
        self._wake_head()

    def waiting(self) -> int:
        """How many accounts wait for an attempt."""
        return sum(not ticket.gone for ticket in self._queue)

    def state(self, now: float) -> BucketState:
        """The budget as :meth:`Governor.snapshot` shows it."""
        state = self.bucket.state(now, max(self._banned_until.values()))
        return BucketState(
            limit=state.limit,
            used=state.used,
            external=state.external,
            waiters=self.waiting(),
            rejections=state.rejections,
            resets_in=state.resets_in,
            closed_for=state.closed_for,
            bans=state.bans,
            kind=state.kind,
        )

    def seconds_to_connect(self, accounts: int) -> float:
        """How long ``accounts`` more attempts take at this budget's pace, from now: what a
        desk of that many accounts needs to be fully streaming from this IP."""
        now = self._clock()
        free = self.limit - self.bucket.used(now)
        if accounts <= free:
            return max(self._shut_until() - now, 0.0)
        rounds = math.ceil((accounts - free) / self.limit)
        return max(self._shut_until() - now, 0.0) + rounds * self.window
