"""``Session.stream``: many accounts' user data streams, each listen key's whole life owned.

Accounts are followed in *lines* (:mod:`binance_pm._stream_lines`): one account a connection
at the ``/ws/<listenKey>`` the exchange documents, or, with ``streams_per_connection`` above 1,
up to that many accounts of one product on a combined stream (a reading the PM pages do not
document: when the host answers a combined handshake 400, 404 or 414, the line falls back to
one connection per account, as do all later lines of that product).

Per line, one task: it waits for a connection attempt from the governor's budget
(:mod:`binance_pm._attempts`: riskiest last-known uniMMR first, at the pace the exchange
allows), opens its accounts' listen keys, connects, and reads while a second task keeps the
deadlines. A connection that fails is followed by another at once, through the budget; one
that dies young (it did not live ``GOOD_LIFE`` seconds and carry a message) backs the line
off, longer each time. When the loop ends, the sockets close, then the listen keys, within
``close_within`` seconds, with the outcome logged.

WebSockets go through aiohttp's client, under asyncio (the documentation's page on streams,
``docs/explanation/streams.md``, gives the measurement behind that choice).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal
from typing import TYPE_CHECKING

import aiohttp
import anyio

from ._attempts import Attempt, ConnectionBudget
from ._endpoints import PRODUCTION_HOSTS, PRODUCTION_STREAMS, STREAM_OF, STREAMS, account_type
from ._exceptions import APIError, AuthError, BinancePMError, SessionError
from ._pulse import Pulse
from ._retry import backoff
from ._running import Background, Owner, Sink
from ._stream_lines import Account, Line, Live
from ._updates import StreamUpdate
from ._ws import CombinedRefused, handshake, stream_url, ws_session

if TYPE_CHECKING:
    from collections.abc import Awaitable

    from ._client import AsyncClient
    from ._models import AccountType

    Socket = aiohttp.ClientWebSocketResponse[bool]

log = logging.getLogger("binance_pm.streams")

__all__ = ["Streamer", "Streaming", "plan_streams", "streams_url"]

PRODUCTS = tuple(STREAMS)
DEFAULT_PRODUCT = "pm_pro"  # Session.stream's, when clients come without products
KEEPALIVE = 30 * 60.0  # the key lives 60 minutes after its last keepalive
ROTATE_AFTER = 23 * 3600.0  # the exchange closes a connection at 24 hours
HEARTBEAT = 45.0  # a connection quiet this long is pinged; one still quiet as long again is dead
SILENT_AFTER = 15.0  # PM Pro pushes every 5 s: three missed updates and the stream is probed
CLOSE_WITHIN = 10.0  # the listen keys are closed within this when the loop ends
OPEN_WITHIN = 60.0  # a key's open may wait this long for REST budget
KEEPALIVE_WITHIN = 30.0  # and a keepalive this long (the key lives an hour)
RETRY_BASE, RETRY_CEILING = 0.5, 30.0
MAX_STREAMS = 100  # keys in one combined URL: its request line stays under 8 KiB
NO_KEY = -1125  # "This listenKey does not exist."


def plan_streams(
    clients: Iterable[AsyncClient] | Mapping[AsyncClient, str | AccountType],
    product: str | AccountType | None,
) -> list[tuple[AsyncClient, str]]:
    """``(client, stream)`` pairs, checked: ``ValueError`` for a bad product or no clients."""
    if isinstance(clients, Mapping):
        if product is not None:
            raise ValueError("give each client's product in the mapping, or product=, not both")
        jobs = [(client, _stream_named(chosen)) for client, chosen in clients.items()]
    else:
        given = _stream_named(product) if product is not None else None
        jobs = [(client, given or _product_of(client)) for client in clients]
    if not jobs:
        raise ValueError("no clients to stream")
    return jobs


def _stream_named(product: str | AccountType) -> str:
    """A stream by its name (``"pm"``, ``"pm_pro"``) or by a product (``"PM"``, ``"PM Pro"``,
    an :class:`AccountType`)."""
    if isinstance(product, str) and product in PRODUCTS:
        return product
    try:
        return STREAM_OF[account_type(product).value]
    except (ValueError, TypeError):
        raise ValueError(
            f"product must be {' or '.join(map(repr, PRODUCTS))}, or a product such as 'PM' "
            f"or 'PM Pro', not {product!r}"
        ) from None


def _product_of(client: AsyncClient) -> str:
    """The stream of the client's account, by its product; PM Pro's when it is not known."""
    known = client.product
    return STREAM_OF[known.value] if known is not None else DEFAULT_PRODUCT


def streams_url(fapi_host: str) -> str:
    """The stream host for a Session whose fapi requests go to ``fapi_host``: the exchange's
    own, or the same host over ``ws://`` / ``wss://`` (a simulated exchange, a proxy)."""
    if fapi_host.rstrip("/") == PRODUCTION_HOSTS["fapi"]:
        return PRODUCTION_STREAMS
    if fapi_host.startswith("https://"):
        return "wss://" + fapi_host[len("https://") :].rstrip("/")
    if fapi_host.startswith("http://"):
        return "ws://" + fapi_host[len("http://") :].rstrip("/")
    return fapi_host.rstrip("/")


class Streamer:
    """Follows every account's stream for one ``Session.stream`` (or a merged poll's)."""

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
        streams_per_connection: int = 1,
        source_address: str | None = None,
    ) -> None:
        self.source_address = source_address
        self.accounts = [Account(client, product) for client, product in jobs]
        self._of = {account.client: account for account in self.accounts}
        self.url = url
        self.connections = connections
        self.keepalive = keepalive
        self.rotate_after = rotate_after
        self.close_keys = close_keys
        self.pulse = Pulse(heartbeat)
        self.silent_after = silent_after
        self.close_within = close_within
        self.per_connection = streams_per_connection
        self._sink: Sink[StreamUpdate] | None = None
        self._http: aiohttp.ClientSession | None = None
        self._group: anyio.abc.TaskGroup | None = None
        self._not_combined: set[str] = set()  # products whose host refused combined streams
        for client, known in (uni_mmr or {}).items():
            self.know(client, known)

    def know(self, client: AsyncClient, uni_mmr: Decimal | float | None) -> None:
        """The account's latest uniMMR (from a REST answer, say): it ranks its next
        connection attempt among the others', lowest first."""
        account = self._of.get(client)
        if account is not None:
            account.know(uni_mmr)

    def lines(self) -> list[Line]:
        """The accounts in lines, riskiest first: one each, or up to ``per_connection`` of one
        product on a combined stream."""
        ranked = sorted(self.accounts, key=lambda a: a.rank)
        if self.per_connection == 1:
            return [Line([account], account.product, combined=False) for account in ranked]
        lines = []
        for product in PRODUCTS:
            mine = [account for account in ranked if account.product == product]
            for start in range(0, len(mine), self.per_connection):
                lines.append(Line(mine[start : start + self.per_connection], product, True))
        return sorted(lines, key=lambda line: line.rank)

    async def run(self, sink: Sink[StreamUpdate]) -> None:
        """Follow every account, handing each update to ``sink``, until every account's
        stream has ended or this is cancelled; then close the keys (if it closes them)."""
        self._sink = sink
        budget, lines = self.connections, self.lines()
        log.info(
            "%s: %d accounts on %d connections; all connected in about %.0f s (%d connection "
            "attempts per %g s from this IP)",
            self.what,
            len(self.accounts),
            len(lines),
            budget.seconds_to_connect(len(lines)),
            budget.limit,
            budget.window,
        )
        try:
            async with (
                ws_session(self.source_address) as http,
                anyio.create_task_group() as beating,
            ):
                beating.start_soon(self.pulse.run)
                async with anyio.create_task_group() as group:
                    self._http, self._group = http, group
                    for line in lines:
                        group.start_soon(self._follow, line)
                beating.cancel_scope.cancel()  # every line has ended
        finally:
            if self.close_keys:
                await self._close_keys()

    def hand(self, update: StreamUpdate) -> bool:
        """Hand ``update`` on without a checkpoint, if the caller's buffer has room."""
        assert self._sink is not None
        return self._sink.offer(update)

    async def tell(self, update: StreamUpdate) -> None:
        """Hand ``update`` on, waiting for the caller if its buffer is full."""
        assert self._sink is not None
        if not self._sink.offer(update):
            await self._sink.put(update)

    async def _tell_all(self, line: Line, exc: BinancePMError, *, final: bool = False) -> None:
        for account in line.accounts:
            await self.tell(
                StreamUpdate(account.client, line.product, None, exc, time.time(), final=final)
            )

    # -- one line ------------------------------------------------------------------------------

    async def _follow(self, line: Line) -> None:
        while line.accounts:
            if line.combined and line.product in self._not_combined:
                self._split(line)
                return
            try:
                await self._connect(line)
                continue  # the keys must be renewed: at once
            except CombinedRefused as exc:
                if line.product not in self._not_combined:  # said once, not once a line
                    self._not_combined.add(line.product)
                    log.warning(
                        "%s: %s; one connection per %s account from now on",
                        self.what,
                        exc.message,
                        line.product,
                    )
                continue
            except SessionError as exc:  # the Session closed
                await self._tell_all(line, exc, final=True)
                return
            except BinancePMError as exc:
                await self._tell_all(line, exc)
            failures, line.failures = line.failures, line.failures + 1
            if failures:  # the first failure after a good connection goes back in line at once
                await anyio.sleep(backoff(failures - 1, base=RETRY_BASE, ceiling=RETRY_CEILING))

    def _split(self, line: Line) -> None:
        """Follow each account of ``line`` on a connection of its own."""
        assert self._group is not None
        for account in line.accounts:
            self._group.start_soon(self._follow, Line([account], line.product, combined=False))

    async def _connect(self, line: Line) -> None:
        """Open the line's keys and follow them until they must be renewed (returns) or the
        connection fails (raises)."""
        attempt = await self.connections.acquire(line.rank)
        try:
            keys = await self._open_keys(line)
            if not keys:
                attempt.cancel()
                return  # every account's key was refused: the line has ended
            url = stream_url(self.url, line.product, list(keys), combined=line.combined)
        except BaseException:
            attempt.cancel()
            raise
        socket = await self.handshake(line, url, attempt)
        live = Live(self, line, url, keys, socket)
        try:
            for account in line.accounts:
                await self.tell(
                    StreamUpdate(account.client, line.product, None, None, time.time(), True)
                )
            await live.run()
        finally:
            if live.good:
                line.failures = 0

    async def _open_keys(self, line: Line) -> dict[str, Account]:
        """Every account's key, all at once; an account whose key is refused (``AuthError``)
        leaves the line with a final update; any other failure fails the line's attempt."""
        keys: dict[str, Account] = {}
        failures: list[BinancePMError] = []

        async def open_key(account: Account) -> None:
            account.opened = True  # set first: cancelled while the open is out, it may exist
            try:
                key = await account.client.listen_key(line.product, "open", timeout=OPEN_WITHIN)
            except AuthError as exc:
                line.accounts.remove(account)
                await self.tell(
                    StreamUpdate(account.client, line.product, None, exc, time.time(), final=True)
                )
                return
            except BinancePMError as exc:  # the Session closed, the budget, the network …
                failures.append(exc)
                return
            assert key is not None
            keys[key] = account

        async with anyio.create_task_group() as group:
            for account in list(line.accounts):
                group.start_soon(open_key, account)
        if failures:  # raised here, not in the task group: it would wrap them in a group
            closed = [exc for exc in failures if isinstance(exc, SessionError)]
            raise (closed or failures)[0]
        return keys

    def handshake(self, line: Line, url: str, attempt: Attempt) -> Awaitable[Socket]:
        http = self._http
        assert http is not None
        return handshake(
            http,
            url,
            attempt,
            endpoint=line.endpoint,
            api_key=line.accounts[0].client.masked_key if len(line.accounts) == 1 else None,
            combined=line.combined,
        )

    async def keep_alive(self, account: Account) -> bool:
        """Keep the key alive; ``False`` when the exchange no longer has it."""
        try:
            await account.client.listen_key(account.product, "keepalive", timeout=KEEPALIVE_WITHIN)
        except APIError as exc:
            if exc.code == NO_KEY:
                return False
            await self.tell(StreamUpdate(account.client, account.product, None, exc, time.time()))
        except BinancePMError as exc:  # tried again at the next keepalive; the key lives 60 min
            await self.tell(StreamUpdate(account.client, account.product, None, exc, time.time()))
        return True

    # -- the end -------------------------------------------------------------------------------

    async def _close_keys(self) -> None:
        """Close every key that may exist, all at once, within ``close_within`` seconds,
        whatever cancels this; log how it went."""
        opened = [account for account in self.accounts if account.opened]
        if not opened:
            return
        closed: list[Account] = []
        failures: list[BinancePMError] = []

        async def close_key(account: Account) -> None:
            try:
                await account.client.listen_key(account.product, "close", timeout=self.close_within)
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


class Streaming(Background[StreamUpdate]):
    """What :meth:`Session.stream` returns: ``async with session.stream(...) as updates``."""

    _what = "Session.stream"
    _needs_asyncio = True

    def __init__(self, owner: Owner, check_open: Callable[[], None], streamer: Streamer) -> None:
        super().__init__(owner, check_open, max(1000, 4 * len(streamer.accounts)))
        self._streamer = streamer

    async def _main(self) -> None:
        await self._streamer.run(self._channel)
