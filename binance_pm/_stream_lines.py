"""One connection of ``Session.stream`` while it lives: a reader that only reads, and a keeper
that keeps every deadline whatever the socket does.

A *line* is the accounts of one product that share a connection: one account, at the
``/ws/<listenKey>`` the exchange documents, or up to ``streams_per_connection`` of them on a
combined stream (``/stream?streams=<key1>/<key2>/…``, each message wrapped as
``{"stream": <key>, "data": <event>}``).

- The reader passes each message on as its account's update, handing it over without a
  checkpoint when the caller's buffer has room; a message that cannot be decoded is an error
  update for its account alone (or, when even its wrapper is unreadable, for the line's first).
- The keeper keeps every key alive each ``keepalive`` seconds (one refused with ``-1125`` means
  the line's keys must be renewed), replaces the connection before the exchange's 24-hour
  limit (the new one open before the old one closes; what the old one still brings is read
  first, and messages seen on both are passed on once), and on PM Pro, where the exchange
  pushes every 5 seconds, probes a connection that carried nothing for ``silent_after``.
- The Streamer's :class:`~binance_pm._pulse.Pulse` pings the connection when it has been
  quiet, and fails it when even a ping gets no answer; the reader answers the exchange's pings.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections import Counter
from collections.abc import Awaitable
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Protocol

import aiohttp
import anyio
import msgspec

from ._endpoints import STREAMS
from ._events import ListenKeyExpired, decode_event
from ._exceptions import BinancePMError, DecodeError, TransportError
from ._updates import StreamUpdate
from ._ws import COMBINED_PATH, WS_PATH, close

if TYPE_CHECKING:
    from aiohttp.http_websocket import WSMessageTextBytes

    from ._attempts import Attempt, ConnectionBudget
    from ._client import AsyncClient
    from ._pulse import Pulse

    Message = aiohttp.WSMessage | WSMessageTextBytes
    Socket = aiohttp.ClientWebSocketResponse[bool]

GOOD_LIFE = 10.0  # a connection that lived this long and carried a message ends the backoff
QUIET_GOOD = 300.0  # and so does one that lived this long (a quiet PM stream carries none)
DRAIN_QUIET = 0.25  # an old connection being replaced is read until quiet this long
DRAIN_MOST = 2.0  # and no longer than this
OVERLAP_KEPT = 10.0  # the new connection's copies of the old one's last messages come by then
ROTATE_RETRY = 60.0  # a replacement connection that failed is tried again after this


@dataclass(eq=False)
class Account:
    """One account's stream, across its keys and connections."""

    client: AsyncClient
    product: str
    rank: float = math.inf  # its last-known uniMMR: the lowest connects first
    opened: bool = False  # a key may exist: closed at the end

    def know(self, uni_mmr: Decimal | float | None) -> None:
        """Its latest uniMMR (pushed, or from a REST answer) ranks its next connection."""
        if uni_mmr is None:
            return
        finite = uni_mmr.is_finite() if isinstance(uni_mmr, Decimal) else math.isfinite(uni_mmr)
        if finite:
            self.rank = float(uni_mmr)


@dataclass(eq=False)
class Line:
    """Accounts of one product that share one connection."""

    accounts: list[Account]
    product: str
    combined: bool
    failures: int = 0  # failures since its last good connection

    @property
    def rank(self) -> float:
        return min((account.rank for account in self.accounts), default=math.inf)

    @property
    def endpoint(self) -> str:
        path = COMBINED_PATH if self.combined else WS_PATH
        return f"stream {path[self.product]}"


class _Wrapped(msgspec.Struct):
    stream: str
    data: msgspec.Raw


_WRAPPED = msgspec.json.Decoder(_Wrapped)


class Owner(Protocol):
    """What a live connection needs of its :class:`~binance_pm._streams.Streamer`."""

    connections: ConnectionBudget
    keepalive: float
    rotate_after: float
    silent_after: float
    pulse: Pulse

    def hand(self, update: StreamUpdate) -> bool: ...

    async def tell(self, update: StreamUpdate) -> None: ...

    def handshake(self, line: Line, url: str, attempt: Attempt) -> Awaitable[Socket]: ...

    async def keep_alive(self, account: Account) -> bool: ...


class Live:
    """One connection of a line, from its handshake until its keys must be renewed (:meth:`run`
    returns) or it fails (:meth:`run` raises)."""

    def __init__(
        self, owner: Owner, line: Line, url: str, keys: dict[str, Account], socket: Socket
    ) -> None:
        self.owner = owner
        self.line = line
        self.url = url
        self.keys = keys
        self.socket = socket
        self.since = anyio.current_time()
        self.messages = 0  # events carried
        self.heard = 0  # pings and pongs: with the events, the pulse's sign of life
        self.pinged = False
        self.handing = False  # waiting for the caller, or swapping: not reading its socket
        self.expired = False  # a key is gone: open them again
        self.failure: BinancePMError | None = None
        self.fresh: Socket | None = None  # a replacement, ready for the reader
        self.reading: anyio.CancelScope | None = None
        self.scope: anyio.CancelScope | None = None
        self.overlap: Counter[str] = Counter()
        self.overlap_until = 0.0

    @property
    def good(self) -> bool:
        """Whether it lived long enough (and carried a message) to end its line's backoff."""
        lived = anyio.current_time() - self.since
        return lived >= QUIET_GOOD or (lived >= GOOD_LIFE and self.messages > 0)

    def dead(self, heartbeat: float) -> None:
        """The pulse found the connection dead (it answered no ping): end it with a
        :class:`TransportError`."""
        if self.failure is None:
            self.failure = TransportError(
                f"the stream carried nothing for {heartbeat:g} s and did not answer a ping "
                f"within {heartbeat:g} s more",
                endpoint=self.line.endpoint,
                api_key=self.line.accounts[0].client.masked_key if len(self.keys) == 1 else None,
            )
        if self.scope is not None:
            self.scope.cancel()

    async def run(self) -> None:
        pulse = self.owner.pulse
        pulse.watch(self)
        try:
            async with anyio.create_task_group() as group:
                self.scope = group.cancel_scope
                group.start_soon(self._keep, group.cancel_scope)
                try:
                    await self._read()
                except BinancePMError as exc:
                    if self.failure is None:
                        self.failure = exc
                group.cancel_scope.cancel()
        finally:
            pulse.forget(self)
            self.scope = None
            await close(self.socket)
            if self.fresh is not None:
                await close(self.fresh)
        if self.failure is not None:
            raise self.failure

    # -- reading -------------------------------------------------------------------------------

    async def _read(self) -> None:
        owner = self.owner
        while not self.expired:
            if self.fresh is not None:
                await self._swap()
                continue
            waiting: StreamUpdate | None = None
            ping: bytes | None = None
            with anyio.CancelScope() as reading:  # the keeper cancels it to hand a fresh one
                self.reading = reading
                receive = self.socket.receive
                while True:
                    message = await receive()
                    if message.type is PING:
                        self.heard += 1
                        ping = message.data
                        break
                    update = self._update(message)
                    if update is not None and not owner.hand(update):
                        waiting = update
                        break
                    if self.expired:
                        break
            self.reading = None
            if waiting is not None:
                await self._hand(waiting)  # outside the scope: a swap never cuts it
            if ping is not None:
                await _pong(self.socket, ping)

    async def _hand(self, update: StreamUpdate) -> None:
        """Hand ``update`` on, waiting for the caller; the pulse does not take the socket for
        dead meanwhile (it is not being read, not silent)."""
        self.handing = True
        try:
            await self.owner.tell(update)
        finally:
            self.handing = False

    def _update(self, message: Message) -> StreamUpdate | None:
        """The update one message makes (``None`` for a copy already passed on, or a pong);
        raises :class:`TransportError` when the connection has closed."""
        kind = message.type
        if kind is aiohttp.WSMsgType.TEXT or kind is aiohttp.WSMsgType.BINARY:
            self.messages += 1
            text = _text(message)
            if self.overlap:
                if anyio.current_time() > self.overlap_until:
                    self.overlap.clear()
                elif self.overlap[text] > 0:
                    self.overlap[text] -= 1  # the new connection's copy of one passed on
                    return None
            return self._event(text)
        if kind is PONG:
            self.heard += 1  # a sign of life: the answer to the pulse's ping
            return None
        code = self.socket.close_code
        raise TransportError(
            f"the stream closed ({kind.name.lower()}"
            + (f", code {code})" if code is not None else ")"),
            endpoint=self.line.endpoint,
            api_key=self.line.accounts[0].client.masked_key if len(self.keys) == 1 else None,
        )

    def _event(self, text: str) -> StreamUpdate:
        line = self.line
        if line.combined:
            try:
                wrapped = _WRAPPED.decode(text)
            except (msgspec.DecodeError, RecursionError, ValueError):
                first = line.accounts[0]
                error = DecodeError(
                    "a combined stream's message that is not {stream, data}",
                    endpoint=line.endpoint,
                    path="$",
                )
                return StreamUpdate(first.client, line.product, None, error, time.time())
            account = self.keys.get(wrapped.stream)
            if account is None:
                error = DecodeError(
                    "a combined stream's message for a stream it does not carry",
                    endpoint=line.endpoint,
                    path="$.stream",
                )
                return StreamUpdate(line.accounts[0].client, line.product, None, error, time.time())
            body: bytes | str = bytes(wrapped.data)
        else:
            account, body = line.accounts[0], text
        try:
            event = decode_event(body)
        except BinancePMError as exc:  # this message's problem only: the stream goes on
            return StreamUpdate(account.client, line.product, None, exc, time.time())
        if isinstance(event, ListenKeyExpired):
            self.expired = True
        else:
            account.know(getattr(event, "uni_mmr", None))
        return StreamUpdate(account.client, line.product, event, None, time.time())

    async def _swap(self) -> None:
        """Read what the old connection still brings (until quiet, two seconds at most),
        then close it and read the fresh one, skipping its copies of what was passed on."""
        fresh = self.fresh  # kept there until swapped in: a cancel meanwhile closes it
        assert fresh is not None
        texts: Counter[str] = Counter()
        self.handing = True  # busy swapping (two seconds at most): the pulse leaves it be
        try:
            with anyio.move_on_after(DRAIN_MOST):
                while not self.expired:
                    with anyio.move_on_after(DRAIN_QUIET) as quiet:
                        message = await self.socket.receive()
                    if quiet.cancelled_caught or message.type not in (
                        aiohttp.WSMsgType.TEXT,
                        aiohttp.WSMsgType.BINARY,
                    ):
                        break
                    texts[_text(message)] += 1
                    update = self._update(message)
                    if update is not None:
                        await self.owner.tell(update)
        finally:
            self.handing = False
        old, self.socket, self.fresh = self.socket, fresh, None
        await close(old)
        self.overlap = texts
        self.overlap_until = anyio.current_time() + OVERLAP_KEPT

    # -- keeping the deadlines -------------------------------------------------------------

    async def _keep(self, scope: anyio.CancelScope) -> None:
        """Every deadline of the connection, on time whatever the socket does."""
        owner = self.owner
        now = anyio.current_time()
        keepalive_at, rotate_at = now + owner.keepalive, now + owner.rotate_after
        pushes = STREAMS[self.line.product].pushes_every is not None  # silence means trouble
        check_at = now + owner.silent_after if pushes else math.inf
        seen = 0
        while True:
            await anyio.sleep(max(min(keepalive_at, rotate_at, check_at) - now, 0.0))
            now = anyio.current_time()
            if now >= keepalive_at:
                keepalive_at = now + owner.keepalive
                if not await self._keep_alive():
                    self.expired = True
                    scope.cancel()
                    return
            if now >= check_at:
                check_at = now + owner.silent_after
                if self.messages == seen:  # nothing for a whole period: probe the keys
                    if await self._keep_alive():
                        every = STREAMS[self.line.product].pushes_every
                        self.failure = TransportError(
                            f"no message for {owner.silent_after:g} s (this stream pushes one "
                            f"every {every:g} s)",
                            endpoint=self.line.endpoint,
                            api_key=self.line.accounts[0].client.masked_key,
                        )
                    else:
                        self.expired = True
                    scope.cancel()
                    return
                seen = self.messages
            if now >= rotate_at:
                rotate_at = await self._rotate()
            now = anyio.current_time()

    async def _keep_alive(self) -> bool:
        """Keep every key alive, all at once; ``False`` when the exchange lost one."""
        kept = [True]

        async def keep(account: Account) -> None:
            if not await self.owner.keep_alive(account):
                kept[0] = False

        async with anyio.create_task_group() as group:
            for account in self.keys.values():
                group.start_soon(keep, account)
        return kept[0]

    async def _rotate(self) -> float:
        """Make a replacement connection ready for the reader; when to rotate next."""
        owner, line = self.owner, self.line
        try:
            attempt = await owner.connections.acquire(line.rank)
            fresh = await owner.handshake(line, self.url, attempt)
        except BinancePMError as exc:  # the old connection still works: keep it, try again
            for account in line.accounts:
                await owner.tell(StreamUpdate(account.client, line.product, None, exc, time.time()))
            return anyio.current_time() + min(ROTATE_RETRY, owner.rotate_after)
        self.fresh = fresh
        if self.reading is not None:
            self.reading.cancel()
        return anyio.current_time() + owner.rotate_after


PING, PONG = aiohttp.WSMsgType.PING, aiohttp.WSMsgType.PONG


async def _pong(socket: Socket, data: bytes) -> None:
    """Answer the exchange's ping (it closes a connection that leaves one unanswered)."""
    with contextlib.suppress(aiohttp.ClientError, ConnectionError, RuntimeError):
        await socket.pong(data)  # failing only when closing: the next receive says so


def _text(message: Message) -> str:
    """A message's text (the exchange sends text frames; a binary one is read alike)."""
    data = message.data
    return data if isinstance(data, str) else data.decode("utf-8", errors="replace")
