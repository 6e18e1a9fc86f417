"""``Session.stream``: many accounts' user data streams, each listen key's whole life owned.

Per account, one task follows the stream: it waits for a connection attempt from the
governor's budget (:mod:`binance_pm._attempts`: riskiest last-known uniMMR first, at the pace
the exchange allows), opens the listen key, connects, and reads. While connected, a second
task keeps every deadline whatever the socket does: the keepalive every ``keepalive`` seconds
(a ``-1125`` means the key is gone: a new one is opened), the replacement of the connection
before the exchange's 24-hour limit (the new one open before the old one closes; what the old
one still brings is read first, and messages seen on both are passed on once), and on PM Pro,
where the exchange pushes an update every 5 seconds, a probe after ``silent_after`` seconds
without a message. The reader only reads.

A connection that fails is followed by another at once, through the budget; one that dies
young (it did not live ``GOOD_LIFE`` seconds and carry a message) backs the account off,
longer each time. When the loop ends, the sockets close, then the listen keys, within
``close_within`` seconds, with the outcome logged.

WebSockets go through aiohttp's client, under asyncio (see the README's Streams section for
the measurement behind that choice).
"""

from __future__ import annotations

import logging
import math
import time
from collections import Counter
from collections.abc import AsyncGenerator, Iterable, Mapping
from contextlib import aclosing
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING

import aiohttp
import anyio

from ._attempts import Attempt, ConnectionBudget
from ._background import Background, drain
from ._events import ListenKeyExpired, StreamEvent, decode_event
from ._exceptions import APIError, AuthError, BinancePMError, SessionError, TransportError
from ._retry import backoff
from ._ws import WS_PATH, close, handshake, stream_url, ws_session

if TYPE_CHECKING:
    from aiohttp.http_websocket import WSMessageTextBytes

    from ._client import AsyncClient

    Message = aiohttp.WSMessage | WSMessageTextBytes

log = logging.getLogger("binance_pm.streams")

PRODUCTS = ("pm", "pm_pro")
PRODUCTION_STREAMS = "wss://fstream.binance.com"
PRODUCTION_FAPI = "https://fapi.binance.com"
KEEPALIVE = 30 * 60.0  # the key lives 60 minutes after its last keepalive
ROTATE_AFTER = 23 * 3600.0  # the exchange closes a connection at 24 hours
HEARTBEAT = 20.0  # a ping this often; no pong within half of it and the connection is dead
SILENT_AFTER = 15.0  # PM Pro pushes every 5 s: three missed updates and the stream is probed
CLOSE_WITHIN = 10.0  # the listen keys are closed within this when the loop ends
OPEN_WITHIN = 60.0  # a key's open may wait this long for REST budget
KEEPALIVE_WITHIN = 30.0  # and a keepalive this long (the key lives an hour)
DRAIN_QUIET = 0.25  # an old connection being replaced is read until quiet this long
DRAIN_MOST = 2.0  # and no longer than this
OVERLAP_KEPT = 10.0  # the new connection's copies of the old one's last messages come by then
ROTATE_RETRY = 60.0  # a replacement connection that failed is tried again after this
RETRY_BASE, RETRY_CEILING = 0.5, 30.0
GOOD_LIFE = 10.0  # a connection that lived this long and carried a message ends the backoff
QUIET_GOOD = 300.0  # and so does one that lived this long (a quiet PM stream carries none)
NO_KEY = -1125  # "This listenKey does not exist."


@dataclass(frozen=True, slots=True)
class StreamUpdate:
    """One thing a stream told: an ``event``, a (re)connection, or a failure.

    Attributes:
        client: the account's client.
        product: ``"pm"`` or ``"pm_pro"``.
        event: the typed event (:class:`~binance_pm.RiskLevelChange`,
            :class:`~binance_pm.PMProAccountUpdate` …), or ``None``.
        error: why the stream broke (it reconnects by itself), or ``None``; a message that
            could not be decoded is an error update too, and the stream goes on.
        at: when it came, in seconds since the epoch.
        connected: the stream has just (re)connected: events pushed while it was down are not
            sent again, so this is the time to read the account over REST (``Session.poll``
            with ``stream=True`` does).
        final: this account's stream ends here (its key was refused).
    """

    client: AsyncClient
    product: str
    event: StreamEvent | None
    error: BinancePMError | None
    at: float
    connected: bool = False
    final: bool = False

    @property
    def name(self) -> str:
        """The account's name (:attr:`AsyncClient.name`)."""
        return self.client.name


def plan_streams(
    clients: Iterable[AsyncClient] | Mapping[AsyncClient, str], product: str | None
) -> list[tuple[AsyncClient, str]]:
    """``(client, product)`` pairs, checked: ``ValueError`` for a bad product or no clients."""
    if isinstance(clients, Mapping):
        if product is not None:
            raise ValueError("give each client's product in the mapping, or product=, not both")
        jobs = list(clients.items())
    else:
        jobs = [(client, product or "pm_pro") for client in clients]
    if not jobs:
        raise ValueError("no clients to stream")
    for _, chosen in jobs:
        if chosen not in PRODUCTS:
            raise ValueError(f"product must be 'pm' or 'pm_pro', not {chosen!r}")
    return jobs


def streams_url(fapi_host: str) -> str:
    """The stream host for a Session whose fapi requests go to ``fapi_host``: the exchange's
    own, or the same host over ``ws://`` / ``wss://`` (a simulated exchange, a proxy)."""
    if fapi_host.rstrip("/") == PRODUCTION_FAPI:
        return PRODUCTION_STREAMS
    if fapi_host.startswith("https://"):
        return "wss://" + fapi_host[len("https://") :].rstrip("/")
    if fapi_host.startswith("http://"):
        return "ws://" + fapi_host[len("http://") :].rstrip("/")
    return fapi_host.rstrip("/")


@dataclass(eq=False)
class _Account:
    """One account's stream, across its keys and connections."""

    client: AsyncClient
    product: str
    rank: float = math.inf  # its last-known uniMMR: the lowest connects first
    failures: int = 0  # failures since its last good connection
    opened: bool = False  # a key may exist: closed at the end

    @property
    def endpoint(self) -> str:
        return f"stream {WS_PATH[self.product]}"


@dataclass(eq=False)
class _Connection:
    """One key's connection, as its reader and its keeper share it."""

    socket: aiohttp.ClientWebSocketResponse[bool]
    since: float
    messages: int = 0
    expired: bool = False  # the key is gone: open a new one
    failure: BinancePMError | None = None
    fresh: aiohttp.ClientWebSocketResponse[bool] | None = None  # a replacement, ready
    reading: anyio.CancelScope | None = None
    overlap: Counter[str] = field(default_factory=Counter)
    overlap_until: float = 0.0


class Streamer(Background[StreamUpdate]):
    """The task that follows every account's stream for one ``Session.stream`` loop."""

    what = "Session.stream"

    def __init__(
        self,
        jobs: list[tuple[AsyncClient, str]],
        url: str,
        connections: ConnectionBudget,
        *,
        keepalive: float = KEEPALIVE,
        rotate_after: float = ROTATE_AFTER,
        close_keys: bool = True,
        heartbeat: float = HEARTBEAT,
        silent_after: float = SILENT_AFTER,
        close_within: float = CLOSE_WITHIN,
        uni_mmr: Mapping[AsyncClient, Decimal | float] | None = None,
    ) -> None:
        super().__init__(max(1000, 4 * len(jobs)))
        self.accounts = [_Account(client, product) for client, product in jobs]
        self._of = {account.client: account for account in self.accounts}
        self.url = url
        self.connections = connections
        self.keepalive = keepalive
        self.rotate_after = rotate_after
        self.close_keys = close_keys
        self.heartbeat = heartbeat
        self.silent_after = silent_after
        self.close_within = close_within
        self._http: aiohttp.ClientSession | None = None
        for client, known in (uni_mmr or {}).items():
            self.know(client, known)

    def know(self, client: AsyncClient, uni_mmr: Decimal | float | None) -> None:
        """The account's latest uniMMR (from a REST answer, say): it ranks its next
        connection attempt among the others', lowest first."""
        account = self._of.get(client)
        if account is not None and uni_mmr is not None and math.isfinite(uni_mmr):
            account.rank = float(uni_mmr)

    async def _main(self) -> None:
        count, budget = len(self.accounts), self.connections
        log.info(
            "%s: %d accounts; all connected in about %.0f s (%d connection attempts per %g s "
            "from this IP)",
            self.what,
            count,
            budget.seconds_to_connect(count),
            budget.limit,
            budget.window,
        )
        try:
            async with ws_session() as http, anyio.create_task_group() as group:
                self._http = http
                for account in sorted(self.accounts, key=lambda a: a.rank):
                    group.start_soon(self._follow, account)
        finally:
            if self.close_keys:
                await self._close_keys()

    def _handed(self, update: StreamUpdate) -> bool:
        """Hand ``update`` on without a checkpoint, if the buffer has room."""
        try:
            self.send.send_nowait(update)
        except anyio.WouldBlock:
            return False
        return True

    async def _tell(self, update: StreamUpdate) -> None:
        if not self._handed(update):
            await self.send.send(update)

    # -- one account ---------------------------------------------------------------------------

    async def _follow(self, account: _Account) -> None:
        client, product = account.client, account.product
        while True:
            try:
                await self._one_key(account)
                continue  # the key must be renewed: at once
            except (AuthError, SessionError) as exc:  # refused, or the Session closed
                await self._tell(StreamUpdate(client, product, None, exc, time.time(), final=True))
                return
            except BinancePMError as exc:
                await self._tell(StreamUpdate(client, product, None, exc, time.time()))
            failures, account.failures = account.failures, account.failures + 1
            if failures:  # the first failure after a good connection goes back in line at once
                await anyio.sleep(backoff(failures - 1, base=RETRY_BASE, ceiling=RETRY_CEILING))

    async def _one_key(self, account: _Account) -> None:
        """Open a key and follow it until it must be renewed (returns) or the connection
        fails (raises)."""
        attempt = await self.connections.acquire(account.rank)
        try:
            account.opened = True  # set first: cancelled while the open is out, it may exist
            key = await account.client.listen_key(account.product, "open", deadline=OPEN_WITHIN)
            assert key is not None
            url = stream_url(self.url, account.product, key)
        except BaseException:
            attempt.cancel()
            raise
        socket = await self._handshake(account, url, attempt)
        connection = _Connection(socket, anyio.current_time())
        try:
            await self._tell(
                StreamUpdate(account.client, account.product, None, None, time.time(), True)
            )
            async with anyio.create_task_group() as group:
                group.start_soon(self._keep, account, url, connection, group.cancel_scope)
                try:
                    await self._read(account, connection)
                except BinancePMError as exc:
                    connection.failure = exc
                group.cancel_scope.cancel()
        finally:
            await close(connection.socket)
            if connection.fresh is not None:
                await close(connection.fresh)
            lived = anyio.current_time() - connection.since
            if lived >= QUIET_GOOD or (lived >= GOOD_LIFE and connection.messages):
                account.failures = 0
        if connection.failure is not None:
            raise connection.failure

    async def _handshake(
        self, account: _Account, url: str, attempt: Attempt
    ) -> aiohttp.ClientWebSocketResponse[bool]:
        http = self._http
        assert http is not None
        return await handshake(
            http,
            url,
            attempt,
            endpoint=account.endpoint,
            api_key=account.client.masked_key,
            heartbeat=self.heartbeat,
        )

    # -- reading -------------------------------------------------------------------------------

    async def _read(self, account: _Account, connection: _Connection) -> None:
        """Pass on what the connection brings until its key expires (returns) or it fails
        (raises); swap in a replacement the keeper made ready."""
        while not connection.expired:
            if connection.fresh is not None:
                await self._swap(account, connection)
                continue
            waiting: StreamUpdate | None = None
            with anyio.CancelScope() as reading:  # the keeper cancels it to hand a fresh one
                connection.reading = reading
                receive = connection.socket.receive
                while True:
                    update = self._update(account, connection, await receive())
                    if update is not None and not self._handed(update):
                        waiting = update
                        break
                    if connection.expired:
                        break
            connection.reading = None
            if waiting is not None:
                await self.send.send(waiting)  # outside the scope: a swap never cuts it

    def _update(
        self, account: _Account, connection: _Connection, message: Message
    ) -> StreamUpdate | None:
        """The update one message makes (``None`` for a copy already passed on); raises
        :class:`TransportError` when the connection has closed."""
        kind = message.type
        if kind is aiohttp.WSMsgType.TEXT or kind is aiohttp.WSMsgType.BINARY:
            connection.messages += 1
            text = _text(message)
            if connection.overlap:
                if anyio.current_time() > connection.overlap_until:
                    connection.overlap.clear()
                elif connection.overlap[text] > 0:
                    connection.overlap[text] -= 1  # the new connection's copy of one passed on
                    return None
            return self._event(account, connection, text)
        code = connection.socket.close_code
        raise TransportError(
            f"the stream closed ({kind.name.lower()}"
            + (f", code {code})" if code is not None else ")"),
            endpoint=account.endpoint,
            api_key=account.client.masked_key,
        )

    def _event(self, account: _Account, connection: _Connection, text: str) -> StreamUpdate:
        try:
            event = decode_event(text)
        except BinancePMError as exc:  # this message's problem only: the stream goes on
            return StreamUpdate(account.client, account.product, None, exc, time.time())
        if isinstance(event, ListenKeyExpired):
            connection.expired = True
        else:
            uni_mmr = getattr(event, "uni_mmr", None)
            if uni_mmr is not None and uni_mmr.is_finite():
                account.rank = float(uni_mmr)
        return StreamUpdate(account.client, account.product, event, None, time.time())

    async def _swap(self, account: _Account, connection: _Connection) -> None:
        """Read what the old connection still brings (until quiet, two seconds at most),
        then close it and read the fresh one, skipping its copies of what was passed on."""
        fresh = connection.fresh  # kept there until swapped in: a cancel meanwhile closes it
        assert fresh is not None
        texts: Counter[str] = Counter()
        with anyio.move_on_after(DRAIN_MOST):
            while not connection.expired:
                with anyio.move_on_after(DRAIN_QUIET) as quiet:
                    message = await connection.socket.receive()
                if quiet.cancelled_caught or message.type not in (
                    aiohttp.WSMsgType.TEXT,
                    aiohttp.WSMsgType.BINARY,
                ):
                    break
                texts[_text(message)] += 1
                update = self._update(account, connection, message)
                if update is not None:
                    await self._tell(update)
        old, connection.socket, connection.fresh = connection.socket, fresh, None
        await close(old)
        connection.overlap = texts
        connection.overlap_until = anyio.current_time() + OVERLAP_KEPT

    # -- keeping the deadlines -------------------------------------------------------------

    async def _keep(
        self, account: _Account, url: str, connection: _Connection, scope: anyio.CancelScope
    ) -> None:
        """Every deadline of the connection, on time whatever the socket does."""
        now = anyio.current_time()
        keepalive_at, rotate_at = now + self.keepalive, now + self.rotate_after
        silent = account.product == "pm_pro"
        check_at = now + self.silent_after if silent else math.inf
        seen = 0
        while True:
            await anyio.sleep(max(min(keepalive_at, rotate_at, check_at) - now, 0.0))
            now = anyio.current_time()
            if now >= keepalive_at:
                keepalive_at = now + self.keepalive
                if not await self._keep_alive(account):
                    connection.expired = True
                    scope.cancel()
                    return
            if now >= check_at:
                check_at = now + self.silent_after
                if connection.messages == seen:  # nothing for a whole period: probe the key
                    if await self._keep_alive(account):
                        connection.failure = TransportError(
                            f"no message for {self.silent_after:g} s (PM Pro pushes one every 5 s)",
                            endpoint=account.endpoint,
                            api_key=account.client.masked_key,
                        )
                    else:
                        connection.expired = True
                    scope.cancel()
                    return
                seen = connection.messages
            if now >= rotate_at:
                rotate_at = await self._rotate(account, url, connection)
            now = anyio.current_time()

    async def _rotate(self, account: _Account, url: str, connection: _Connection) -> float:
        """Make a replacement connection ready for the reader; when to rotate next."""
        try:
            attempt = await self.connections.acquire(account.rank)
            fresh = await self._handshake(account, url, attempt)
        except BinancePMError as exc:  # the old connection still works: keep it, try again
            await self._tell(StreamUpdate(account.client, account.product, None, exc, time.time()))
            return anyio.current_time() + min(ROTATE_RETRY, self.rotate_after)
        connection.fresh = fresh
        if connection.reading is not None:
            connection.reading.cancel()
        return anyio.current_time() + self.rotate_after

    async def _keep_alive(self, account: _Account) -> bool:
        """Keep the key alive; ``False`` when the exchange no longer has it."""
        try:
            await account.client.listen_key(account.product, "keepalive", deadline=KEEPALIVE_WITHIN)
        except APIError as exc:
            if exc.code == NO_KEY:
                return False
            await self._tell(StreamUpdate(account.client, account.product, None, exc, time.time()))
        except BinancePMError as exc:  # tried again at the next keepalive; the key lives 60 min
            await self._tell(StreamUpdate(account.client, account.product, None, exc, time.time()))
        return True

    # -- the end -------------------------------------------------------------------------------

    async def _close_keys(self) -> None:
        """Close every key that may exist, all at once, within ``close_within`` seconds,
        whatever cancels this; log how it went."""
        opened = [account for account in self.accounts if account.opened]
        if not opened:
            return
        closed: list[_Account] = []
        failures: list[BinancePMError] = []

        async def close_key(account: _Account) -> None:
            try:
                await account.client.listen_key(
                    account.product, "close", deadline=self.close_within
                )
            except APIError as exc:
                if exc.code != NO_KEY:  # gone already: nothing to close
                    failures.append(exc)
                    return
            except BinancePMError as exc:
                failures.append(exc)
                return
            closed.append(account)

        with anyio.move_on_after(self.close_within, shield=True):
            async with anyio.create_task_group() as group:
                for account in opened:
                    group.start_soon(close_key, account)
        if len(closed) == len(opened):
            log.info("%s: closed its %d listen keys", self.what, len(closed))
            return
        log.warning(
            "%s: closed %d of %d listen keys within %g s; the others expire by themselves "
            "within 60 minutes%s",
            self.what,
            len(closed),
            len(opened),
            self.close_within,
            f" (first failure: {failures[0]})" if failures else "",
        )


def _text(message: Message) -> str:
    """A message's text (the exchange sends text frames; a binary one is read alike)."""
    data = message.data
    return data if isinstance(data, str) else data.decode("utf-8", errors="replace")


async def stream(streamer: Streamer, running: set[Streamer]) -> AsyncGenerator[StreamUpdate, None]:
    """The updates of ``streamer``, as they come; see ``Session.stream``. ``streamer`` is in
    ``running`` (the Session's, which it stops when it closes) from before the first
    iteration until the loop ends."""
    try:
        async with aclosing(drain(streamer)) as updates:
            async for update in updates:
                yield update
    finally:
        running.discard(streamer)
