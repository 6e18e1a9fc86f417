"""``Session.poll(..., stream=True)``: pushed figures at once, REST as a slow reconciliation.

One background task runs two sides into one stream of :class:`Update`:

- the **push side**: each account's user data stream (:class:`Streamer`); every event is an
  update (``source="stream"``, ``event`` set) the moment it comes; after a connection that
  follows a REST answer for that account (a reconnection, or a first connection that came
  late), one REST call per endpoint of that account fills the gap, at most once per
  ``reconcile_every`` per account: reconnections within a period after a fill share one
  fill at its end (a host that drops every connection must not turn each reconnection into
  REST calls);
- the **REST side**: the ordinary poll of the same jobs, every ``reconcile_every`` seconds.
  Each answer's uniMMR ranks the account's next stream connection among the others'.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import TYPE_CHECKING

import anyio

from ._background import Background, drain
from ._exceptions import BinancePMError
from ._poller import Poller, Update, poll
from ._streams import Streamer, stream

if TYPE_CHECKING:
    from collections.abc import Callable

    from ._client import AsyncClient
    from ._poller import _Job

#: The product whose stream tells an endpoint's figures.
PRODUCT_OF = {
    "pm_balance": "pm",
    "pm_pro_balance": "pm_pro",
    "pm_pro_account": "pm_pro",
    "pm_pro_span_account": "pm_pro",
}


class Merger(Background[Update]):
    """The background task of one ``poll(..., stream=True)`` loop."""

    what = "Session.poll(stream=True)"

    def __init__(
        self,
        jobs: list[_Job],
        streamer: Streamer,
        pollers: set[Poller],
        streamers: set[Streamer],
        *,
        reconcile_every: float,
        priority: Callable[[Update], float],
    ) -> None:
        super().__init__(max(1000, 4 * len(jobs)))
        self.jobs = jobs
        self.streamer = streamer
        self.pollers = pollers
        self.streamers = streamers
        self.reconcile_every = reconcile_every
        self.priority = priority
        self.answered: set[AsyncClient] = set()  # accounts the REST side has answered for
        self.filled: dict[AsyncClient, float] = {}  # when each account's gap was last filled
        self.due: set[AsyncClient] = set()  # accounts whose next fill is waiting for its time
        self.endpoints: dict[AsyncClient, list[_Job]] = {}
        for job in jobs:
            self.endpoints.setdefault(job.client, []).append(job)

    async def _main(self) -> None:
        async with anyio.create_task_group() as group:
            group.start_soon(self._rest_side)
            group.start_soon(self._push_side, group)

    async def _rest_side(self) -> None:
        updates = poll(self.jobs, self.pollers, every=self.reconcile_every, priority=self.priority)
        async with aclosing(updates):
            async for update in updates:
                self.answered.add(update.client)
                self.streamer.know(update.client, getattr(update.result, "uni_mmr", None))
                await self.send.send(update)

    async def _push_side(self, group: anyio.abc.TaskGroup) -> None:
        async with aclosing(stream(self.streamer, self.streamers)) as updates:
            async for pushed in updates:
                client = pushed.client
                if pushed.connected:
                    # What was pushed before this connection was missed: read it over REST,
                    # unless the first REST answer is still to come (it is newer anyway).
                    if client in self.answered and client not in self.due:
                        self.due.add(client)
                        group.start_soon(self._fill_gap, client)
                    continue
                endpoint = self.endpoints[client][0].endpoint.name
                await self.send.send(
                    Update(
                        client,
                        endpoint,
                        None,
                        pushed.error,
                        pushed.at,
                        final=pushed.final,  # its stream is over (the REST side goes on)
                        source="stream",
                        event=pushed.event,
                    )
                )

    async def _fill_gap(self, client: AsyncClient) -> None:
        """Fill the account's gap now, or when a reconciliation period has passed since its
        last fill: reconnections meanwhile share this one."""
        last = self.filled.get(client)
        if last is not None:
            await anyio.sleep_until(last + self.reconcile_every)
        self.due.discard(client)
        self.filled[client] = anyio.current_time()
        for job in self.endpoints[client]:
            await self._fill(job)

    async def _fill(self, job: _Job) -> None:
        client, endpoint = job.client, job.endpoint.name
        try:
            result = await job.call()
        except BinancePMError as exc:
            update = Update(client, endpoint, None, exc, time.time())
        else:
            update = Update(client, endpoint, result, None, time.time())
        await self.send.send(update)


async def merged(merger: Merger, running: set[Merger]) -> AsyncGenerator[Update, None]:
    """The updates of ``merger``, as they come; it is in ``running`` (the Session's) until
    the loop ends."""
    try:
        async with aclosing(drain(merger)) as updates:
            async for update in updates:
                yield update
    finally:
        running.discard(merger)
