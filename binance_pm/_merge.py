"""``Session.poll(..., stream=True)``: pushed figures at once, REST as a slow reconciliation.

One ``async with`` (:class:`Merged`) runs two sides into one feed of :class:`Update`:

- the **push side**: each account's user data stream (:class:`Streamer`); every event is an
  update (``source="stream"``, ``event`` set) the moment it comes; after a connection that
  follows a REST answer for that account (a reconnection, or a first connection that came
  late), the account's endpoints are polled at once to fill the gap, at most once per
  ``reconcile_every`` per account: reconnections within a period after a fill share one
  fill at its end (a host that drops every connection must not turn each reconnection into
  REST calls). A fill is the account's next turn brought forward (:meth:`Poller.hurry`): it
  waits at its budget's gate, and its answer ranks the account, like any other turn;
- the **REST side**: the ordinary poll of the same jobs, every ``reconcile_every`` seconds.
  Each answer's uniMMR ranks the account's next stream connection among the others'.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import anyio

from ._jobs import Job
from ._poller import Poller
from ._running import Background, Owner, Sink
from ._streams import Streamer
from ._updates import StreamUpdate, Update

if TYPE_CHECKING:
    from ._client import AsyncClient


class Merged(Background[Update]):
    """What :meth:`Session.poll` with ``stream=True`` returns."""

    _what = "Session.poll(stream=True)"
    _needs_asyncio = True

    def __init__(
        self,
        owner: Owner,
        check_open: Callable[[], None],
        jobs: list[Job],
        streamer: Streamer,
        *,
        reconcile_every: float,
        priority: Callable[[Update], float],
    ) -> None:
        super().__init__(owner, check_open, max(1000, 4 * len(jobs)))
        self._jobs = jobs
        self._streamer = streamer
        self._reconcile_every = reconcile_every
        self._priority = priority

    async def _main(self) -> None:
        sides = _Sides(self._channel, self._jobs, self._streamer, self._reconcile_every)
        poller = sides.poller = Poller(
            self._jobs, every=self._reconcile_every, priority=self._priority, sink=sides.rest
        )
        async with anyio.create_task_group() as group:
            group.start_soon(self._streamer.run, sides.push)
            await poller.run()


class _Sides:
    """What each side tells the other: REST answers rank stream connections; a connection
    after an answer brings the account's next poll forward."""

    def __init__(
        self, out: Sink[Update], jobs: list[Job], streamer: Streamer, reconcile_every: float
    ) -> None:
        self.out = out
        self.streamer = streamer
        self.reconcile_every = reconcile_every
        self.poller: Poller | None = None
        self.answered: set[AsyncClient] = set()  # accounts the REST side has answered for
        self.fill_at: dict[AsyncClient, float] = {}  # each account's last (or coming) fill
        self.endpoints: dict[AsyncClient, list[Job]] = {}
        for job in jobs:
            self.endpoints.setdefault(job.client, []).append(job)
        self.rest = _Rest(self)
        self.push = _Push(self)

    def answer(self, update: Update) -> None:
        self.answered.add(update.client)
        self.streamer.know(update.client, getattr(update.result, "uni_mmr", None))

    def connected(self, client: AsyncClient) -> None:
        """What was pushed before this connection was missed: read it over REST, unless the
        first REST answer is still to come (it is newer anyway)."""
        poller = self.poller
        if poller is None or client not in self.answered:
            return
        now = poller.now()
        last = self.fill_at.get(client)
        if last is not None and last >= now:
            return  # a fill is waiting for its time: this connection shares it
        at = now if last is None else max(now, last + self.reconcile_every)
        self.fill_at[client] = at
        for job in self.endpoints[client]:
            poller.hurry(job, at)

    def pushed(self, pushed: StreamUpdate) -> Update:
        return Update(
            pushed.client,
            self.endpoints[pushed.client][0].endpoint.name,
            None,
            pushed.error,
            pushed.at,
            final=pushed.final,  # its stream is over (the REST side goes on)
            source="stream",
            event=pushed.event,
        )


class _Rest:
    __slots__ = ("sides",)

    def __init__(self, sides: _Sides) -> None:
        self.sides = sides

    def offer(self, update: Update) -> bool:
        self.sides.answer(update)
        return self.sides.out.offer(update)

    async def put(self, update: Update) -> None:
        await self.sides.out.put(update)


class _Push:
    __slots__ = ("sides",)

    def __init__(self, sides: _Sides) -> None:
        self.sides = sides

    def offer(self, pushed: StreamUpdate) -> bool:
        sides = self.sides
        if pushed.connected:
            sides.connected(pushed.client)
            return True
        return sides.out.offer(sides.pushed(pushed))

    async def put(self, pushed: StreamUpdate) -> None:
        await self.sides.out.put(self.sides.pushed(pushed))
