"""The simulated exchange's user data streams: listen keys and the WebSocket pushes.

- ``POST/PUT/DELETE /papi/v1/listenKey`` (PM accounts) and ``/fapi/v1/listenKey`` (PM Pro and
  PM Pro SPAN): open (the account's key, the same one while it lives), keep alive, close;
  weight 1 each, charged like any request. A key lives ``listen_key_ttl`` seconds from its last
  keepalive; an unknown or expired key's keepalive is ``-1125``.
- ``/pm/ws/<listenKey>`` (PM) and ``/pm-classic/ws/<listenKey>`` (PM Pro): the pushes;
  ``/pm/stream?streams=<key1>/<key2>/…`` and ``/pm-classic/stream?…``: several keys on one
  connection, each message wrapped as ``{"stream": <key>, "data": <event>}`` (a key that
  expires or is closed leaves the others' stream going).
  Every handshake is a connection attempt, counted per client IP over a sliding
  ``Limits.ws_window``: past ``Limits.ws_connect`` the upgrade is refused with 429 and a
  ``Retry-After``; an IP that tries again before that time (past a few attempts already on
  their way) is banned, 418, every API family with it, as the exchange bans an IP; no
  handshake from a banned IP is accepted, whichever family earned the ban.
  PM Pro connections get ``PM_PRO_ACCOUNT_UPDATE`` every ``push_every`` seconds; both get
  ``riskLevelChange`` / ``RISK_LEVEL_CHANGE`` when the account's drifting uniMMR moves it to
  another level (checked every ``risk_every`` seconds, and at once on
  :meth:`SimulatedExchange.set_uni_mmr`). A connection is closed after
  ``max_connection_seconds``, as the exchange does at 24 hours.
"""

from __future__ import annotations

import contextlib
import heapq
import math
import secrets
import string
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import parse_qs

import anyio
import msgspec
from anyio.streams.memory import MemoryObjectSendStream

from .._models import AccountStatus
from ._book import amount, status_for
from ._doorman import Doorman
from ._messages import Answer

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, MutableMapping

    from .._endpoints import Limits
    from ._book import Book, SimAccount
    from ._limits import Warden
    from ._stats import ExchangeStats

    Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
    Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

#: The stream path of each product, and the REST family its listen key comes from.
WS_PATH = {"pm": "/pm/ws/", "pm_pro": "/pm-classic/ws/"}
#: Combined streams: ``<path>?streams=<key1>/<key2>/…``.
COMBINED_PATH = {"pm": "/pm/stream", "pm_pro": "/pm-classic/stream"}
KEY_PATH = {"/papi/v1/listenKey": "pm", "/fapi/v1/listenKey": "pm_pro"}
RISK_EVENT = {"pm": "riskLevelChange", "pm_pro": "RISK_LEVEL_CHANGE"}
#: A listen key is 64 letters and digits, as the exchange's are.
KEY_ALPHABET = string.ascii_letters + string.digits


class Binary(bytes):
    """A message to go out in a binary frame."""


@dataclass
class ListenKeyState:
    account: int  # index into the exchange's accounts
    product: str  # "pm" or "pm_pro"
    expires_at: float  # the exchange's clock, seconds
    sockets: set[Connection] = field(default_factory=set)


@dataclass(eq=False)
class Connection:
    """One open connection: the listen keys it carries (one, or several on a combined
    stream, whose messages are wrapped as ``{"stream": key, "data": event}``), each key's
    last risk level pushed, and what is waiting to go out on it."""

    levels: dict[str, AccountStatus]
    combined: bool
    outbox: MemoryObjectSendStream[bytes | None]
    opened: float


class Exchange(Protocol):
    """What the streams need of the simulated exchange."""

    accounts: list[SimAccount]
    _books: list[Book]
    _warden: Warden
    clock: Callable[[], float]
    limits: Limits
    stats: ExchangeStats
    window: float

    def server_ms(self) -> int: ...


class StreamDesk:
    """Listen keys and open streams of one simulated exchange."""

    def __init__(
        self,
        exchange: Exchange,
        *,
        listen_key_ttl: float,
        push_every: float,
        risk_every: float,
        max_connection_seconds: float,
        combined: bool = True,
        max_streams: int = 1024,
    ) -> None:
        self.exchange = exchange
        #: Whether combined streams are served, and how many keys one connection may carry.
        self.combined = combined
        self.max_streams = max_streams
        self.ttl = listen_key_ttl
        self.push_every = push_every
        self.risk_every = risk_every
        self.max_connection_seconds = max_connection_seconds
        self.keys: dict[str, ListenKeyState] = {}
        self._expiries: list[tuple[float, str]] = []  # a heap: no scan of every key a request
        self._of_account: dict[tuple[int, str], str] = {}
        #: Events pushed, by name; and every risk event as (exchange ms, account name, level).
        self.pushed: dict[str, int] = {}
        self.risk_events: list[tuple[int, str, str]] = []
        self._changed = anyio.Event()
        self.doorman = Doorman(exchange)
        #: Accounts whose streams carry nothing for now (the connections stay open).
        self.quiet: set[int] = set()
        #: When set, every stream is closed with this code right after its handshake.
        self.hang_up: int | None = None

    async def changed(self) -> None:
        """Wait until a stream connects or closes."""
        await self._changed.wait()

    def _change(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()

    # -- REST --------------------------------------------------------------------------------

    def answer(self, method: str, path: str, account: int | None, now: float) -> bytes:
        """The answer of a listen-key request (its weight already charged)."""
        if account is None:
            raise Answer(401, -2015, "Invalid API-key, IP, or permissions for action.")
        product = KEY_PATH[path]
        kind = self.exchange.accounts[account].account_type.value
        if (product == "pm") != (kind == "PM_2"):
            raise Answer(401, -2015, "Invalid API-key, IP, or permissions for action.")
        self._expire(now)
        key = self._of_account.get((account, product))
        if method == "POST":
            if key is None:
                key = "".join(secrets.choice(KEY_ALPHABET) for _ in range(64))
                self.keys[key] = ListenKeyState(account, product, now + self.ttl)
                self._of_account[account, product] = key
                heapq.heappush(self._expiries, (now + self.ttl, key))
            self.keys[key].expires_at = now + self.ttl
            return msgspec.json.encode({"listenKey": key})
        if key is None:
            raise Answer(400, -1125, "This listenKey does not exist.")
        if method == "PUT":
            self.keys[key].expires_at = now + self.ttl
        else:  # DELETE
            self._drop_key(key, expired=False)
        return b"{}"

    def _expire(self, now: float) -> None:
        """Drop the keys whose time has come: a heap of (expiry, key), each entry checked
        against the key's expiry now (a keepalive moved it later: pushed again)."""
        heap = self._expiries
        while heap and heap[0][0] <= now:
            _, key = heapq.heappop(heap)
            state = self.keys.get(key)
            if state is None:
                continue
            if state.expires_at <= now:
                self._drop_key(key, expired=True)
            else:
                heapq.heappush(heap, (state.expires_at, key))

    def _drop_key(self, key: str, *, expired: bool) -> None:
        state = self.keys.pop(key, None)
        if state is None:
            return
        self._of_account.pop((state.account, state.product), None)
        for connection in list(state.sockets):
            if expired:
                self._send(connection, key, {"e": "listenKeyExpired", "listenKey": key})
            connection.levels.pop(key, None)
            if not connection.levels:
                _put(connection, None)  # then the connection closes (a combined one goes on
                # while it carries another key)

    # -- driving it from tests ---------------------------------------------------------------

    def expire(self, account: int, *, notify: bool = True) -> int:
        """Expire the account's listen keys now: ``listenKeyExpired`` on their streams, which
        then close; or, with ``notify=False``, silently: the streams stay open but carry
        nothing more, and the next keepalive is refused (``-1125``). How many keys."""
        keys = [k for k, s in self.keys.items() if s.account == account]
        for key in keys:
            if notify:
                self._drop_key(key, expired=True)
            else:
                state = self.keys.pop(key)
                self._of_account.pop((state.account, state.product), None)
        return len(keys)

    def drop(self, account: int | None = None) -> int:
        """Drop the account's open streams (every account's with ``None``) without a word, as
        a network failure does. How many."""
        dropped = 0
        for state in self.keys.values():
            if account is None or state.account == account:
                for connection in list(state.sockets):
                    _put(connection, None)
                    dropped += 1
        return dropped

    def check_risk(self, account: int) -> None:
        """Push a risk event on each of the account's streams whose level has changed."""
        for key, state in self.keys.items():
            if state.account == account:
                for connection in list(state.sockets):
                    self._risk(key, state, connection)

    def push(self, account: int, event: dict[str, Any], *, binary: bool = False) -> int:
        """Push ``event`` (its ``E`` filled in) on every open stream of the account, in a
        text frame (or a binary one)."""
        sent = 0
        for key, state in self.keys.items():
            if state.account == account:
                for connection in list(state.sockets):
                    self._send(connection, key, event, binary=binary)
                    sent += 1
        return sent

    def push_raw(self, account: int, message: bytes) -> int:
        """Send ``message`` as it is, a text frame, on every open stream of the account."""
        sent = 0
        for key, state in self.keys.items():
            if state.account == account:
                for connection in list(state.sockets):
                    if connection.combined:
                        message = b'{"stream":"' + key.encode() + b'","data":' + message + b"}"
                    _put(connection, message)
                    sent += 1
        return sent

    # -- the pushes --------------------------------------------------------------------------

    def _send(
        self, connection: Connection, key: str, event: dict[str, Any], *, binary: bool = False
    ) -> None:
        state = self.keys.get(key)
        if state is not None and state.account in self.quiet:
            return
        event = {"e": event["e"], "E": self.exchange.server_ms(), **event}
        self.pushed[event["e"]] = self.pushed.get(event["e"], 0) + 1
        body = msgspec.json.encode({"stream": key, "data": event} if connection.combined else event)
        # A reader that has fallen that far behind, or gone, loses the event.
        _put(connection, Binary(body) if binary else body)

    def _figures(self, account: int) -> tuple[float, float, float]:
        book = self.exchange._books[account]
        book.advance(self.exchange.clock())
        return book.uni_mmr, book.equity, book.maint_margin

    def _risk(self, key: str, state: ListenKeyState, connection: Connection) -> None:
        uni_mmr, equity, maint = self._figures(state.account)
        level = status_for(uni_mmr)
        if level == connection.levels.get(key, level):
            return
        connection.levels[key] = level
        name = self.exchange.accounts[state.account].name
        self.risk_events.append((self.exchange.server_ms(), name, level.value))
        self._send(
            connection,
            key,
            {
                "e": RISK_EVENT[state.product],
                "u": amount(uni_mmr),
                "s": level.value,
                "eq": amount(equity),
                "ae": amount(equity * 1.08),
                "m": amount(maint),
            },
        )

    def _account_update(self, key: str, state: ListenKeyState, connection: Connection) -> None:
        uni_mmr, equity, maint = self._figures(state.account)
        self._send(
            connection,
            key,
            {
                "e": "PM_PRO_ACCOUNT_UPDATE",
                "u": amount(uni_mmr),
                "eq": amount(equity),
                "ae": amount(equity * 1.08),
                "im": amount(maint * 2),
                "mm": amount(maint),
                "avb": amount(equity - maint * 2),
                "vmw": amount(max(equity - maint * 2, 0.0)),
            },
        )

    # -- the WebSocket -----------------------------------------------------------------------

    def _wanted(self, scope: MutableMapping[str, Any]) -> tuple[str, list[str], bool] | None:
        """The product, the listen keys and whether combined, of a stream's path (``None``
        for a path that is not a stream's)."""
        path: str = scope["path"]
        for product, prefix in WS_PATH.items():
            if path.startswith(prefix):
                return product, [path[len(prefix) :]], False
        for product, combined in COMBINED_PATH.items():
            if path == combined and self.combined:
                query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
                names = query.get("streams", [""])[0].split("/")
                return product, names[: self.max_streams + 1], True
        return None

    async def serve(self, scope: MutableMapping[str, Any], receive: Receive, send: Send) -> None:
        """One stream connection, from the handshake to its close."""
        if (await receive())["type"] != "websocket.connect":
            return
        client = scope.get("client")
        refusal = self.doorman.admit(str(client[0]) if client else "?")
        if refusal is not None:
            await _refuse(send, *refusal)
            return
        wanted = self._wanted(scope)
        if wanted is None:
            await _refuse(send, 404, "0", b'{"code":-1000,"msg":"Not found."}')
            return
        product, names, combined = wanted
        clock = self.exchange.clock
        self._expire(clock())
        states = [self.keys.get(name) for name in names]
        if (
            not names
            or len(names) > self.max_streams
            or len(set(names)) != len(names)
            or any(state is None or state.product != product for state in states)
        ):
            await send({"type": "websocket.close", "code": 1008})  # the handshake is refused
            return
        carried = {name: state for name, state in zip(names, states, strict=True) if state}
        await send({"type": "websocket.accept"})
        for state in carried.values():
            self.exchange.stats.connections[self.exchange.accounts[state.account].name] += 1
        if self.hang_up is not None:
            await send({"type": "websocket.close", "code": self.hang_up})
            return
        outbox, inbox = anyio.create_memory_object_stream[bytes | None](max_buffer_size=1000)
        levels = {k: status_for(self._figures(s.account)[0]) for k, s in carried.items()}
        connection = Connection(levels, combined, outbox, clock())
        for state in carried.values():
            state.sockets.add(connection)
        self._change()
        try:
            async with anyio.create_task_group() as group:

                async def until_gone() -> None:
                    while (await receive())["type"] != "websocket.disconnect":
                        pass
                    group.cancel_scope.cancel()

                async def ticks() -> None:
                    pushes = product == "pm_pro"
                    next_push = clock() + self.push_every if pushes else math.inf
                    while True:
                        await anyio.sleep(min(self.risk_every, max(next_push - clock(), 0.0)))
                        push = pushes and clock() >= next_push
                        if push:
                            next_push += self.push_every
                        for key in list(connection.levels):
                            state = self.keys.get(key)
                            if state is None:
                                continue
                            self._risk(key, state, connection)
                            if push:
                                self._account_update(key, state, connection)
                        if clock() - connection.opened >= self.max_connection_seconds:
                            outbox.send_nowait(None)
                            return

                group.start_soon(until_gone)
                group.start_soon(ticks)
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
            for state in carried.values():
                state.sockets.discard(connection)
            outbox.close()
            self._change()


async def _refuse(send: Send, status: int, retry_after: str, body: bytes) -> None:
    """Answer the handshake with ``status`` instead of upgrading."""
    headers = [(b"content-type", b"application/json"), (b"retry-after", retry_after.encode())]
    await send({"type": "websocket.http.response.start", "status": status, "headers": headers})
    await send({"type": "websocket.http.response.body", "body": body})


def _put(connection: Connection, message: bytes | None) -> None:
    """Queue ``message`` (``None``: close) for the connection, unless it is gone or full."""
    with contextlib.suppress(
        anyio.WouldBlock, anyio.BrokenResourceError, anyio.ClosedResourceError
    ):
        connection.outbox.send_nowait(message)


def stream_options_valid(**seconds: float) -> None:
    """``ValueError`` naming the first option that is not positive, finite seconds."""
    for name, value in seconds.items():
        if not isinstance(value, (int, float)) or not 0 < value < math.inf:
            raise ValueError(f"{name} must be positive seconds, not {value!r}")
