"""The simulated exchange's user data streams: listen keys, and what their streams carry.

- ``POST/PUT/DELETE /papi/v1/listenKey`` (PM accounts) and ``/fapi/v1/listenKey`` (PM Pro and
  PM Pro SPAN): open (the account's key, the same one while it lives), keep alive, close;
  weight 1 each, charged like any request. A key lives ``listen_key_ttl`` seconds from its last
  keepalive; an unknown or expired key's keepalive is ``-1125``.
- Each open connection carries one key, or several on a combined stream, each message then
  wrapped as ``{"stream": <key>, "data": <event>}`` (a key that expires or is closed leaves the
  others' stream going). PM Pro connections get ``PM_PRO_ACCOUNT_UPDATE`` every ``push_every``
  seconds; both get ``riskLevelChange`` / ``RISK_LEVEL_CHANGE`` when the account's drifting
  uniMMR moves it to another level (checked every ``risk_every`` seconds, and at once on
  :meth:`SimulatedExchange.set_uni_mmr`).

The WebSocket side, handshakes and the connection's life, is ``_websocket``'s.
"""

from __future__ import annotations

import contextlib
import heapq
import secrets
import string
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import anyio
import msgspec
from anyio.streams.memory import MemoryObjectSendStream

from .._endpoints import STREAMS
from .._models import AccountStatus
from ._book import amount, status_for
from ._messages import Answer

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from ._book import Book, SimAccount
    from ._options import ExchangeOptions
    from ._stats import ExchangeStats


#: What the exchange pushes on each product's streams, by the names of the package's stream
#: table: the name of its risk event; and whether ``PM_PRO_ACCOUNT_UPDATE`` comes every
#: ``push_every`` seconds. Where the streams are read, and who may open them, is the table's.
RISK_EVENT = {"pm": "riskLevelChange", "pm_pro": "RISK_LEVEL_CHANGE"}
ACCOUNT_UPDATES = frozenset({"pm_pro"})
#: The product of each listen-key path, from the package's stream table.
KEY_PATH = {e.path: p for p, stream in STREAMS.items() for e in stream.listen_key.values()}
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
    stats: ExchangeStats

    @property
    def clock(self) -> Callable[[], float]: ...

    def server_ms(self) -> int: ...


class StreamDesk:
    """Listen keys and open streams of one simulated exchange."""

    def __init__(self, exchange: Exchange, options: ExchangeOptions) -> None:
        self.exchange = exchange
        self.options = options
        self.keys: dict[str, ListenKeyState] = {}
        self._expiries: list[tuple[float, str]] = []  # a heap: no scan of every key a request
        self._of_account: dict[tuple[int, str], str] = {}
        #: Events pushed, by name; and every risk event as (exchange ms, account name, level).
        self.pushed: dict[str, int] = {}
        self.risk_events: list[tuple[int, str, str]] = []
        self._changed = anyio.Event()
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

    def attach(self, connection: Connection, states: Iterable[ListenKeyState]) -> None:
        """``connection`` now carries the keys of ``states``."""
        for state in states:
            state.sockets.add(connection)
        self._change()

    def detach(self, connection: Connection, states: Iterable[ListenKeyState]) -> None:
        """``connection`` has closed."""
        for state in states:
            state.sockets.discard(connection)
        self._change()

    # -- REST --------------------------------------------------------------------------------

    def answer(self, method: str, path: str, account: int, now: float) -> bytes:
        """The answer of a listen-key request of ``account`` (its weight already charged, the
        account one of the product's)."""
        product = KEY_PATH[path]
        ttl = self.options.listen_key_ttl
        self.expire_due(now)
        key = self._of_account.get((account, product))
        if method == "POST":
            if key is None:
                key = "".join(secrets.choice(KEY_ALPHABET) for _ in range(64))
                self.keys[key] = ListenKeyState(account, product, now + ttl)
                self._of_account[account, product] = key
                heapq.heappush(self._expiries, (now + ttl, key))
            self.keys[key].expires_at = now + ttl
            return msgspec.json.encode({"listenKey": key})
        if key is None:
            raise Answer(400, -1125, "This listenKey does not exist.")
        if method == "PUT":
            self.keys[key].expires_at = now + ttl
        else:  # DELETE
            self._drop_key(key, expired=False)
        return b"{}"

    def expire_due(self, now: float) -> None:
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
                    self.risk(key, state, connection)

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
                wrapped = b'{"stream":"' + key.encode() + b'","data":' + message + b"}"
                for connection in list(state.sockets):
                    _put(connection, wrapped if connection.combined else message)
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

    def figures(self, account: int) -> tuple[float, float, float]:
        """The account's uniMMR, equity and maintenance margin, now."""
        book = self.exchange._books[account]
        book.advance(self.exchange.clock())
        return book.uni_mmr, book.equity, book.maint_margin

    def risk(self, key: str, state: ListenKeyState, connection: Connection) -> None:
        """Push the product's risk event for ``key`` on ``connection`` if the account's level
        is not the one last pushed there."""
        uni_mmr, equity, maint = self.figures(state.account)
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

    def account_update(self, key: str, state: ListenKeyState, connection: Connection) -> None:
        """Push ``PM_PRO_ACCOUNT_UPDATE`` for ``key`` on ``connection``."""
        uni_mmr, equity, maint = self.figures(state.account)
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


def _put(connection: Connection, message: bytes | None) -> None:
    """Queue ``message`` (``None``: close) for the connection, unless it is gone or full."""
    with contextlib.suppress(
        anyio.WouldBlock, anyio.BrokenResourceError, anyio.ClosedResourceError
    ):
        connection.outbox.send_nowait(message)
