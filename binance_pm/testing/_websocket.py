"""The simulated exchange's WebSocket endpoint: a stream's handshake, and the connection's life.

- ``/pm/ws/<listenKey>`` (PM) and ``/pm-classic/ws/<listenKey>`` (PM Pro): one key's pushes;
  ``/pm/stream?streams=<key1>/<key2>/…`` and ``/pm-classic/stream?…``: several keys on one
  connection (with ``combined_streams``, at most ``max_streams`` of them; without, a 404).
  The paths are the package's stream table's.
  A handshake for an unknown key, or one of the other product, is refused (1008).
- Every handshake is a connection attempt, counted by the
  :class:`~binance_pm.testing._doorman.Doorman`, which refuses (429) or bans (418) an IP that
  tries too often.
- An open connection sends what the :class:`~binance_pm.testing._streams.StreamDesk` queues
  for it, checks the account's risk level every ``risk_every`` seconds (and pushes PM Pro's
  account updates every ``push_every``), and is closed after ``max_connection_seconds``, as the
  exchange does at 24 hours.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

import anyio

from .._endpoints import STREAMS
from ._book import status_for
from ._rates import DEFAULT_IP
from ._streams import ACCOUNT_UPDATES, Binary, Connection

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, MutableMapping

    from ._doorman import Doorman
    from ._options import ExchangeOptions
    from ._streams import StreamDesk

    Scope = MutableMapping[str, Any]
    Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
    Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class StreamEndpoint:
    """Serves the stream connections of one simulated exchange, whose listen keys and pushes
    ``desk`` keeps, and whose connection attempts ``doorman`` counts."""

    def __init__(self, desk: StreamDesk, doorman: Doorman, options: ExchangeOptions) -> None:
        self.desk = desk
        self.doorman = doorman
        self.options = options

    async def serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        """One stream connection, from the handshake to its close."""
        if (await receive())["type"] != "websocket.connect":
            return
        client = scope.get("client")
        if client is not None:
            self.doorman.exchange.stats.clients.add(tuple(client))
        refusal = self.doorman.admit(str(client[0]) if client else DEFAULT_IP)
        if refusal is not None:
            await _refuse(send, *refusal)
            return
        wanted = self._wanted(scope)
        if wanted is None:
            await _refuse(send, 404, "0", b'{"code":-1000,"msg":"Not found."}')
            return
        product, names, combined = wanted
        desk, exchange = self.desk, self.desk.exchange
        clock = exchange.clock
        desk.expire_due(clock())
        states = [desk.keys.get(name) for name in names]
        if (
            not names
            or len(names) > self.options.max_streams
            or len(set(names)) != len(names)
            or any(state is None or state.product != product for state in states)
        ):
            await send({"type": "websocket.close", "code": 1008})  # the handshake is refused
            return
        carried = {name: state for name, state in zip(names, states, strict=True) if state}
        await send({"type": "websocket.accept"})
        for state in carried.values():
            exchange.stats.connections[exchange.accounts[state.account].name] += 1
        if desk.hang_up is not None:
            await send({"type": "websocket.close", "code": desk.hang_up})
            return
        outbox, inbox = anyio.create_memory_object_stream[bytes | None](max_buffer_size=1000)
        levels = {k: status_for(desk.figures(s.account)[0]) for k, s in carried.items()}
        connection = Connection(levels, combined, outbox, clock())
        desk.attach(connection, carried.values())
        try:
            async with anyio.create_task_group() as group:

                async def until_gone() -> None:
                    while (await receive())["type"] != "websocket.disconnect":
                        pass
                    group.cancel_scope.cancel()

                group.start_soon(until_gone)
                group.start_soon(self._ticks, product, connection)
                async with inbox:
                    async for message in inbox:
                        if message is None:
                            break
                        if isinstance(message, Binary):
                            await send({"type": "websocket.send", "bytes": bytes(message)})
                        else:
                            await send({"type": "websocket.send", "text": message.decode()})
                group.cancel_scope.cancel()
            with anyio.move_on_after(1, shield=True):
                await send({"type": "websocket.close", "code": 1000})
        except OSError:
            pass  # the client went away mid-send
        finally:
            outbox.close()
            desk.detach(connection, carried.values())

    async def _ticks(self, product: str, connection: Connection) -> None:
        """The connection's timers: the risk check, PM Pro's account updates, and its close at
        ``max_connection_seconds``."""
        desk, options = self.desk, self.options
        clock = desk.exchange.clock
        push_every = options.push_every
        pushes = product in ACCOUNT_UPDATES
        next_push = clock() + push_every if pushes else math.inf
        while True:
            await anyio.sleep(min(options.risk_every, max(next_push - clock(), 0.0)))
            push = pushes and clock() >= next_push
            if push:
                next_push += push_every
            for key in list(connection.levels):
                state = desk.keys.get(key)
                if state is None:
                    continue
                desk.risk(key, state, connection)
                if push:
                    desk.account_update(key, state, connection)
            if clock() - connection.opened >= options.max_connection_seconds:
                connection.outbox.send_nowait(None)
                return

    def _wanted(self, scope: Scope) -> tuple[str, list[str], bool] | None:
        """The product, the listen keys and whether combined, of a stream's path (``None``
        for a path that is not a stream's), by the package's stream table."""
        path: str = scope["path"]
        for product, stream in STREAMS.items():
            if path.startswith(stream.ws_path):
                return product, [path[len(stream.ws_path) :]], False
        for product, stream in STREAMS.items():
            if path == stream.combined_path and self.options.combined_streams:
                query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
                names = query.get("streams", [""])[0].split("/")
                return product, names[: self.options.max_streams + 1], True
        return None


async def _refuse(send: Send, status: int, retry_after: str, body: bytes) -> None:
    """Answer the handshake with ``status`` instead of upgrading."""
    headers = [(b"content-type", b"application/json"), (b"retry-after", retry_after.encode())]
    await send({"type": "websocket.http.response.start", "status": status, "headers": headers})
    await send({"type": "websocket.http.response.body", "body": body})
