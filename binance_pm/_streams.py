"""``Session.stream``: many accounts' user data streams, each listen key's whole life owned.

Per account, one task: open the listen key (``POST``, through the governor), connect, read
events; keep the key alive every ``keepalive`` seconds; open a new key after
``listenKeyExpired`` or a keepalive the exchange refuses (``-1125``); reconnect with backoff
and jitter after a drop; replace the connection before the exchange's 24-hour limit, the new
one open before the old one closes (what the old one still brings is read first, and
messages seen on both are passed on once). Leaving the loop
or closing the Session closes every socket within a second and, by default, the listen keys.

WebSockets go through aiohttp's client, under asyncio (see the README's Streams section for
the measurement behind that choice).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import AsyncGenerator, Callable, Iterable, Mapping
from contextlib import aclosing
from dataclasses import dataclass
from typing import TYPE_CHECKING

import aiohttp
import anyio

from ._background import STOP_WITHIN, Background, drain
from ._events import ListenKeyExpired, StreamEvent, decode_event
from ._exceptions import APIError, AuthError, BinancePMError, SessionError, TransportError
from ._retry import backoff

if TYPE_CHECKING:
    from ._client import AsyncClient

log = logging.getLogger("binance_pm.streams")

PRODUCTS = ("pm", "pm_pro")
WS_PATH = {"pm": "/pm/ws/", "pm_pro": "/pm-classic/ws/"}
PRODUCTION_STREAMS = "wss://fstream.binance.com"
PRODUCTION_FAPI = "https://fapi.binance.com"
KEEPALIVE = 30 * 60.0  # the key lives 60 minutes after its last keepalive
ROTATE_AFTER = 23 * 3600.0  # the exchange closes a connection at 24 hours
HEARTBEAT = 20.0  # a ping this often; no answer within half of it and the connection is dead
CONNECT_TIMEOUT = 10.0
DRAIN_QUIET = 0.25  # an old connection being replaced is read until quiet this long
DRAIN_MOST = 2.0  # and no longer than this
OVERLAP_KEPT = 10.0  # the new connection's copies of the old one's last messages come by then
ROTATE_RETRY = 60.0  # a replacement connection that failed is tried again after this
MIN_WAIT = 0.001
RETRY_BASE, RETRY_CEILING = 0.5, 30.0
NO_KEY = -1125  # "This listenKey does not exist."


@dataclass(frozen=True, slots=True)
class StreamUpdate:
    """One thing a stream told: an ``event``, a (re)connection, or a failure.

    Attributes:
        client: the account's client.
        product: ``"pm"`` or ``"pm_pro"``.
        event: the typed event (:class:`~binance_pm.RiskLevelChange`,
            :class:`~binance_pm.PMProAccountUpdate` …), or ``None``.
        error: why the stream broke (it reconnects by itself, after a backoff), or ``None``.
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


class Streamer(Background[StreamUpdate]):
    """The task that follows every account's stream for one ``Session.stream`` loop."""

    what = "Session.stream"

    def __init__(
        self,
        jobs: list[tuple[AsyncClient, str]],
        url: str,
        *,
        keepalive: float,
        rotate_after: float,
        close_keys: bool,
    ) -> None:
        super().__init__(max(1000, 4 * len(jobs)))
        self.jobs = jobs
        self.url = url
        self.keepalive = keepalive
        self.rotate_after = rotate_after
        self.close_keys = close_keys
        self._http: aiohttp.ClientSession | None = None

    async def _main(self) -> None:
        # One connection per account, held: no pool limit (aiohttp's is 100).
        connector = aiohttp.TCPConnector(limit=0)
        async with (
            aiohttp.ClientSession(connector=connector) as http,
            anyio.create_task_group() as group,
        ):
            self._http = http
            for client, product in self.jobs:
                group.start_soon(self._follow, client, product)

    async def _emit(self, update: StreamUpdate) -> None:
        await self.send.send(update)

    # -- one account ---------------------------------------------------------------------------

    async def _follow(self, client: AsyncClient, product: str) -> None:
        attempt = 0
        opened = False
        try:
            while True:
                connected = False

                def up() -> None:
                    nonlocal attempt, connected
                    attempt, connected = 0, True  # a good connection: the next drop starts over

                try:
                    # Set first: cancelled while the open is out, the key may exist anyway.
                    opened = True
                    key = await client.listen_key(product, "open")
                    assert key is not None
                    await self._connected(client, product, key, up)
                    continue  # the key must be renewed: at once
                except (AuthError, SessionError) as exc:  # refused, or the Session closed
                    await self._emit(
                        StreamUpdate(client, product, None, exc, time.time(), final=True)
                    )
                    return
                except BinancePMError as exc:
                    await self._emit(StreamUpdate(client, product, None, exc, time.time()))
                delay = backoff(attempt, base=RETRY_BASE, ceiling=RETRY_CEILING)
                attempt += 1
                await anyio.sleep(delay)
        finally:
            if opened and self.close_keys:
                with anyio.move_on_after(STOP_WITHIN / 2, shield=True):
                    try:
                        await client.listen_key(product, "close", deadline=STOP_WITHIN / 2)
                    except BinancePMError as exc:
                        log.debug("%s: closing its listen key failed: %s", client.name, exc)

    async def _connected(
        self, client: AsyncClient, product: str, key: str, up: Callable[[], None]
    ) -> None:
        """Connect with ``key`` and pass its events on, until the key must be renewed
        (returns) or the connection fails (:class:`TransportError`)."""
        url = f"{self.url}{WS_PATH[product]}{key}"
        socket = await self._connect(url, product)
        try:
            up()
            await self._emit(StreamUpdate(client, product, None, None, time.time(), connected=True))
            now = anyio.current_time()
            keepalive_at, rotate_at = now + self.keepalive, now + self.rotate_after
            overlap: Counter[str] = Counter()  # the old connection's last texts, after a rotation
            overlap_until = 0.0
            while True:
                # Every deadline that is due is dealt with before the next read: both can fall
                # due together, and one's call may take the other past its time.
                now = anyio.current_time()
                if now >= keepalive_at:
                    keepalive_at = now + self.keepalive
                    if not await self._keep_alive(client, product):
                        return  # the key is gone: open a new one
                    continue
                if now >= rotate_at:
                    try:
                        fresh = await self._connect(url, product)  # before the old one closes
                    except TransportError as exc:
                        # The old connection still works: keep it, and try again soon.
                        rotate_at = now + min(ROTATE_RETRY, self.rotate_after)
                        await self._emit(StreamUpdate(client, product, None, exc, time.time()))
                        continue
                    rotate_at = now + self.rotate_after
                    try:
                        overlap, expired = await self._drain(client, product, socket)
                    except BaseException:
                        await _close(fresh)
                        raise
                    old, socket = socket, fresh
                    await _close(old)
                    if expired:
                        return
                    overlap_until = anyio.current_time() + OVERLAP_KEPT
                    continue
                # aiohttp reads a timeout of 0 as none at all: never pass less than a little.
                wait = max(min(keepalive_at, rotate_at) - now, MIN_WAIT)
                try:
                    message = await socket.receive(timeout=wait)
                except asyncio.TimeoutError:
                    continue
                if message.type in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
                    text = message.data if isinstance(message.data, str) else _text(message.data)
                    if overlap:
                        if anyio.current_time() > overlap_until:
                            overlap.clear()
                        elif overlap[text] > 0:
                            overlap[text] -= 1  # the new connection's copy of one passed on
                            continue
                    if not await self._pass_on(client, product, text):
                        return
                    continue
                if message.type in (aiohttp.WSMsgType.PING, aiohttp.WSMsgType.PONG):
                    continue
                code = socket.close_code
                raise TransportError(
                    f"the stream closed ({message.type.name.lower()}"
                    + (f", code {code})" if code is not None else ")"),
                    endpoint=f"stream {WS_PATH[product]}",
                    api_key=client.masked_key,
                )
        finally:
            await _close(socket)

    async def _pass_on(self, client: AsyncClient, product: str, text: str) -> bool:
        """Pass one message's event on; ``False`` when it says the key has expired."""
        try:
            event = decode_event(text)
        except BinancePMError as exc:
            await self._emit(StreamUpdate(client, product, None, exc, time.time()))
            return True
        await self._emit(StreamUpdate(client, product, event, None, time.time()))
        return not isinstance(event, ListenKeyExpired)

    async def _drain(
        self, client: AsyncClient, product: str, socket: aiohttp.ClientWebSocketResponse[bool]
    ) -> tuple[Counter[str], bool]:
        """Pass on what an old connection still brings, until it is quiet for a moment (two
        seconds at most); the texts passed on, and whether the key expired meanwhile."""
        texts: Counter[str] = Counter()
        ends = anyio.current_time() + DRAIN_MOST
        while (left := ends - anyio.current_time()) > 0:
            try:
                message = await socket.receive(timeout=max(min(DRAIN_QUIET, left), MIN_WAIT))
            except asyncio.TimeoutError:
                break
            if message.type not in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
                break
            text = message.data if isinstance(message.data, str) else _text(message.data)
            texts[text] += 1
            if not await self._pass_on(client, product, text):
                return texts, True
        return texts, False

    async def _connect(self, url: str, product: str) -> aiohttp.ClientWebSocketResponse[bool]:
        http = self._http
        assert http is not None
        endpoint = f"stream {WS_PATH[product]}"
        failure: TransportError | None = None
        try:
            with anyio.move_on_after(CONNECT_TIMEOUT):
                return await http.ws_connect(
                    url,
                    heartbeat=HEARTBEAT,
                    timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=STOP_WITHIN / 2),
                    autoping=True,
                    max_msg_size=1 << 20,
                )
            failure = TransportError(
                f"no handshake within {CONNECT_TIMEOUT:g} s", endpoint=endpoint
            )
        except aiohttp.WSServerHandshakeError as exc:
            failure = TransportError(
                f"the stream was refused (HTTP {exc.status})", endpoint=endpoint
            )
        except aiohttp.ClientConnectorError as exc:
            reason = exc.os_error.strerror or type(exc.os_error).__name__
            failure = TransportError(f"cannot connect: {reason}", endpoint=endpoint)
        except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as exc:
            failure = TransportError(f"cannot connect: {type(exc).__name__}", endpoint=endpoint)
        raise failure  # outside the handler: aiohttp's text holds the URL, and so the key

    async def _keep_alive(self, client: AsyncClient, product: str) -> bool:
        """Keep the key alive; ``False`` when the exchange no longer has it."""
        try:
            await client.listen_key(product, "keepalive")
        except APIError as exc:
            if exc.code == NO_KEY:
                return False
            await self._emit(StreamUpdate(client, product, None, exc, time.time()))
        except BinancePMError as exc:  # tried again at the next keepalive; the key lives 60 min
            await self._emit(StreamUpdate(client, product, None, exc, time.time()))
        return True


def _text(data: bytes) -> str:
    """A binary frame's text (the exchange sends text frames; a binary one is read alike)."""
    return data.decode("utf-8", errors="replace")


async def _close(socket: aiohttp.ClientWebSocketResponse[bool]) -> None:
    with anyio.move_on_after(STOP_WITHIN / 2, shield=True):
        await socket.close()


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
