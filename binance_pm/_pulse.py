"""One heartbeat for all of a ``Session.stream``'s connections, instead of one per socket.

Every ``heartbeat`` seconds one task looks at every open connection: one that carried anything
since the last look (an event, a ping or a pong) is alive, and costs nothing more; one that
carried nothing is pinged; one that was pinged at the last look and still carried nothing is
dead, and is failed, so that its line connects again. A dead connection is noticed between
``heartbeat`` and ``2 * heartbeat`` seconds after it fell silent. A connection whose reader
waits for a slow caller is not read meanwhile, and is not taken for silent.

A busy connection (PM Pro pushes every 5 seconds) is never pinged, and a quiet one (PM pushes
only when the risk level changes) costs one ping and one pong per ``heartbeat``: no timer, task
or callback per socket, so thousands of idle streams cost almost nothing. The exchange's own
pings (every 3 minutes) are answered by the reader.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

import aiohttp
import anyio

if TYPE_CHECKING:
    Socket = aiohttp.ClientWebSocketResponse[bool]


class Beating(Protocol):
    """What the pulse needs of a live connection."""

    socket: Socket
    messages: int  # events received so far
    heard: int  # pings and pongs received so far
    pinged: bool  # pinged at the last look, nothing heard since
    handing: bool  # its reader waits for the caller: the socket is not read, not silent

    def dead(self, heartbeat: float) -> None: ...


class Pulse:
    """The heartbeat of a set of connections; :meth:`run` until cancelled."""

    def __init__(self, heartbeat: float) -> None:
        self.heartbeat = heartbeat
        self._live: dict[Beating, int] = {}  # each connection: what it had heard at the last look

    def watch(self, live: Beating) -> None:
        self._live[live] = live.messages + live.heard

    def forget(self, live: Beating) -> None:
        self._live.pop(live, None)

    async def run(self) -> None:
        heartbeat = self.heartbeat
        while True:
            await anyio.sleep(heartbeat)
            quiet = self._look()
            if quiet:
                with anyio.move_on_after(heartbeat / 2):
                    await self._ping(quiet)

    def _look(self) -> list[Beating]:
        """Fail the dead; the connections to ping now."""
        quiet: list[Beating] = []
        looked = self._live
        for live, before in list(looked.items()):
            heard = live.messages + live.heard
            if heard != before or live.handing:
                looked[live] = heard
                live.pinged = False
            elif live.pinged:
                del looked[live]
                live.dead(self.heartbeat)
            else:
                quiet.append(live)
        return quiet

    @staticmethod
    async def _ping(quiet: list[Beating]) -> None:
        """Ping each, one after the other (a ping waits only when a socket's buffer is full);
        one not reached in time is pinged at the next look."""
        for live in quiet:
            try:
                await live.socket.ping()
            except (aiohttp.ClientError, ConnectionError, RuntimeError):
                continue  # closing already: its reader sees it
            live.pinged = True
