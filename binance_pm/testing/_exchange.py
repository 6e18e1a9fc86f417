"""SimulatedExchange: the five Portfolio Margin account endpoints, served on loopback.

It behaves as ``BINANCE_FACTS.md`` says the exchange does: weights counted per family and per
account, the real used-weight headers on every answer, 429 then 418 for clients that do not back
off, signatures checked over the raw query string, timestamps checked against a server clock
that may be skewed, and the exchange's JSON error shapes. Faults can be injected at seeded rates.

The class here is a façade over a module per concern, each reading one frozen ExchangeOptions:
the HTTP side and its faults (``_framing``), rate accounting (``_rates``), who may call what
(``_auth``), what each endpoint answers (``_bodies``), the streams (``_streams``, ``_websocket``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any

from .._endpoints import Endpoint
from .._governor import Governor
from .._limits import PUBLISHED_LIMITS, Limits
from ._auth import authenticate, authorize
from ._bodies import account_body, public_body
from ._book import make_accounts
from ._doorman import Doorman
from ._framing import ASGIReceive, ASGISend, Framing, Scope
from ._limits import Counter, SapiScope, WindowMode
from ._options import ExchangeOptions
from ._rates import DEFAULT_IP, Rates
from ._server import LoopbackServer
from ._stats import ExchangeStats
from ._streams import StreamDesk
from ._websocket import StreamEndpoint


class SimulatedExchange:
    """A Binance Portfolio Margin exchange on 127.0.0.1 for tests, demos and benchmarks.

    ::

        async with SimulatedExchange(window=1.0, limits=Limits(papi_ip=600), accounts=50) as ex:
            async with Session(base_url=ex.base_url) as session:
                a = ex.accounts[0]
                client = session.client(a.api_key, **a.credentials())

    Args:
        window: seconds per rate-limit window (the exchange's is 60).
        limits: weight per window of each budget (:class:`~binance_pm.Limits`); the
            exchange's published limits by default.
        accounts: how many accounts to make; ``seed`` makes them (and the faults) repeatable.
        skew_ms: how far the server's clock is ahead of this machine's (negative: behind).
        window_mode: ``"fixed"`` windows aligned to the server clock, or ``"sliding"``.
        faults: per-request probabilities of ``"503"``, ``"reset"`` (connection dropped
            mid-answer), ``"slow"`` (answer after ``slow_seconds``, or not at all if the
            client goes away first), ``"garbage"`` (truncated JSON) and ``"html"`` (a proxy's
            HTML 502).
        external: per family, the share of its IP limit that "another process on the same IP"
            spends, spread over each window; seen only in the headers and in 429s.
        ban_seconds: the first ban's length (doubling after); two windows by default.
        ban_grace: seconds after a 429 in which more requests for that budget may get 429s
            rather than a ban, as requests that were on their way before the 429 was;
            ``min(1, window / 10)`` by default.
        grace_requests: how many such requests get 429s within ``ban_grace``; the next one
            refused earns the ban (418), however quickly it follows. 5 by default: what a
            client pacing itself could have had in flight when the 429 was sent. A client that
            keeps sending after its 429 is banned within a few requests.
        uid_costs_ip: charge UID-weighted sapi calls (``pm_pro_account``) to the sapi IP limit
            too, a reading the documents do not rule out: ``True`` with the endpoint's own
            weight, an int with that weight. Their answers' ``X-SAPI-USED-IP-WEIGHT-1M`` then
            grows with each UID call, and that limit refuses them too.
        sapi_scope: ``"family"``, one sapi IP limit for every IP-weighted sapi endpoint, or
            ``"endpoint"``, an independent one per endpoint (the PM Pro page's "each endpoint
            with IP limits has an independent 12000 per minute"), each reported in that
            endpoint's answers and named ``sapi_ip:<endpoint>`` in :attr:`stats`. Bans (418)
            are per family either way.
        clock: the local wall clock in seconds, for tests that move time by hand.
        listen_key_ttl: seconds a user data stream's listen key lives after its last
            keepalive (the exchange's 60 minutes by default).
        push_every: seconds between two ``PM_PRO_ACCOUNT_UPDATE`` on a PM Pro stream (5).
        risk_every: how often an open stream checks its account's drifting uniMMR for a
            change of risk level, pushing ``riskLevelChange`` / ``RISK_LEVEL_CHANGE`` (0.25 s).
        max_connection_seconds: a stream is closed after this long (the exchange's 24 hours).
        ping_every: seconds between the pings every stream connection gets (3 minutes, as the
            futures streams); one whose pong does not come within ``pong_within`` seconds
            (10 minutes) is closed.
        combined_streams: serve combined streams too (``/pm/stream?streams=<key1>/<key2>``,
            ``/pm-classic/stream?…``: several keys on one connection, each message wrapped as
            ``{"stream": key, "data": event}``), at most ``max_streams`` keys a connection;
            with ``False`` their handshake is answered 404, as a host that has none.

    User data streams: ``POST /papi/v1/listenKey`` (PM) or ``/fapi/v1/listenKey`` (PM Pro),
    then a WebSocket at ``ws://127.0.0.1:PORT/pm/ws/<key>`` or ``/pm-classic/ws/<key>``. Tests
    drive them with :meth:`set_uni_mmr`, :meth:`expire_listen_keys`, :meth:`drop_streams`,
    :meth:`quiet_streams`, :meth:`hang_up_streams` and :meth:`push_event`. Each handshake is a
    connection attempt: ``limits.ws_connect`` per ``limits.ws_window`` from one client IP, then
    429, then a ban (418, REST included) for an IP that keeps trying.

    The exchange is usable in-process without a socket through ``httpx.ASGITransport(app=ex)``;
    ``async with`` serves it over TCP on a free port (``port=`` to choose one).
    """

    def __init__(
        self,
        *,
        window: float = 60.0,
        limits: Limits = PUBLISHED_LIMITS,
        accounts: int = 10,
        seed: int = 0,
        skew_ms: int = 0,
        window_mode: WindowMode = "fixed",
        faults: Mapping[str, float] | None = None,
        external: Mapping[str, float] | None = None,
        slow_seconds: float = 2.0,
        ban_seconds: float | None = None,
        ban_grace: float | None = None,
        grace_requests: int = 5,
        uid_costs_ip: bool | int = False,
        sapi_scope: SapiScope = "family",
        port: int = 0,
        clock: Callable[[], float] = time.time,
        listen_key_ttl: float = 3600.0,
        push_every: float = 5.0,
        risk_every: float = 0.25,
        max_connection_seconds: float = 86_400.0,
        ping_every: float = 180.0,
        pong_within: float = 600.0,
        combined_streams: bool = True,
        max_streams: int = 1024,
    ) -> None:
        self._options = options = ExchangeOptions(
            window=window,
            limits=limits,
            accounts=accounts,
            seed=seed,
            skew_ms=skew_ms,
            window_mode=window_mode,
            faults=faults or {},
            external=external or {},
            slow_seconds=slow_seconds,
            ban_seconds=ban_seconds,
            ban_grace=ban_grace,
            grace_requests=grace_requests,
            uid_costs_ip=uid_costs_ip,
            sapi_scope=sapi_scope,
            port=port,
            clock=clock,
            listen_key_ttl=listen_key_ttl,
            push_every=push_every,
            risk_every=risk_every,
            max_connection_seconds=max_connection_seconds,
            ping_every=ping_every,
            pong_within=pong_within,
            combined_streams=combined_streams,
            max_streams=max_streams,
        )
        #: How far the server's clock is ahead of this machine's, in ms: move it at any time.
        self.skew_ms = skew_ms
        self.stats = ExchangeStats()
        self.accounts, self._books = make_accounts(accounts, seed, clock())
        self._by_key = {a.api_key: i for i, a in enumerate(self.accounts)}
        self._server: LoopbackServer | None = None
        self._framing = Framing(options, self.stats, self._respond)
        self._rates = Rates(options, self.stats, self.server_ms)
        #: The user data streams: listen keys, open connections, what was pushed.
        self.streams = StreamDesk(self, options)
        self._stream_endpoint = StreamEndpoint(self.streams, Doorman(self._rates), options)

    # -- settings ----------------------------------------------------------------------------

    @property
    def faults(self) -> dict[str, float]:
        """The per-request probability of each fault: replace it (or change it) at any time."""
        return self._framing.faults

    @faults.setter
    def faults(self, faults: dict[str, float]) -> None:
        self._framing.faults = faults

    @property
    def broken(self) -> set[str]:
        """API keys whose every request fails with a 500, as an account stuck on a broken
        shard might: add and remove keys at any time."""
        return self._framing.broken

    @broken.setter
    def broken(self, keys: set[str]) -> None:
        self._framing.broken = keys

    @property
    def window(self) -> float:
        """Seconds per rate-limit window."""
        return self._options.window

    @property
    def window_mode(self) -> WindowMode:
        """``"fixed"`` or ``"sliding"`` windows."""
        return self._options.window_mode

    @property
    def limits(self) -> Limits:
        """The weight per window of each budget."""
        return self._options.limits

    @property
    def sapi_scope(self) -> SapiScope:
        """One sapi IP limit (``"family"``) or one per endpoint (``"endpoint"``)."""
        return self._options.sapi_scope

    @property
    def uid_costs_ip(self) -> bool | int:
        """What UID-weighted calls also cost the sapi IP limit."""
        return self._options.uid_costs_ip

    @property
    def external(self) -> Mapping[str, float]:
        """The share of each family's IP limit another process spends."""
        return self._options.external

    @property
    def slow_seconds(self) -> float:
        """How long a ``"slow"`` fault holds its answer."""
        return self._options.slow_seconds

    @property
    def clock(self) -> Callable[[], float]:
        """The local wall clock, in seconds."""
        return self._options.clock

    @property
    def ping_every(self) -> float:
        """Seconds between the pings of a stream connection."""
        return self._options.ping_every

    @property
    def pong_within(self) -> float:
        """Seconds a stream connection's pong may take."""
        return self._options.pong_within

    @property
    def _ip(self) -> dict[str, Counter]:
        """Each family's IP counter, for a test that lifts a limit by hand."""
        return self._rates.ip

    @property
    def _uid(self) -> dict[str, Counter]:
        """Each account's UID counter, by API key."""
        return self._rates.uid

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """``"http://127.0.0.1:PORT"`` while served over TCP."""
        if self._server is None:
            raise RuntimeError("the exchange is not being served; use 'async with'")
        return self._server.base_url

    async def __aenter__(self) -> SimulatedExchange:
        self._server = LoopbackServer(
            self,
            port=self._options.port,
            log_level="critical",
            ping_every=self.ping_every,
            pong_within=self.pong_within,
        )
        await self._server.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        server, self._server = self._server, None
        if server is not None:
            await server.__aexit__(exc_type, exc, tb)

    async def serve_forever(self) -> None:
        """Wait until the server stops (on SIGINT or SIGTERM)."""
        if self._server is None:
            raise RuntimeError("the exchange is not being served; use 'async with'")
        await self._server.wait_stopped()

    def governor(self, **options: Any) -> Governor:
        """A :class:`~binance_pm.Governor` with this exchange's window, limits and sapi scope
        (and any other ``Governor`` options), for a Session that talks to it."""
        options.setdefault("sapi_scope", self.sapi_scope)
        return Governor(
            window=self.window,
            limits=self.limits,
            **options,
        )

    def server_ms(self) -> int:
        """The server's clock in milliseconds."""
        return int(self.clock() * 1000) + self.skew_ms

    # -- user data streams -------------------------------------------------------------------

    def _account(self, account: str | int) -> int:
        if isinstance(account, int):
            if not 0 <= account < len(self.accounts):
                raise ValueError(f"no account number {account}")
            return account
        for index, sim in enumerate(self.accounts):
            if account in (sim.name, sim.api_key):
                return index
        raise ValueError(f"no account {account!r}")

    def set_uni_mmr(self, account: str | int, uni_mmr: float) -> None:
        """Move the account (by name, API key or number) to ``uni_mmr`` now: its REST answers
        say so from now on, and its open streams get a risk event at once if the level
        changed."""
        if not uni_mmr > 0:
            raise ValueError(f"uni_mmr must be positive, not {uni_mmr!r}")
        index = self._account(account)
        book = self._books[index]
        book.advance(self.clock())
        book.set_uni_mmr(uni_mmr)
        self.streams.check_risk(index)

    def expire_listen_keys(self, account: str | int, *, notify: bool = True) -> int:
        """Expire the account's listen keys now (``listenKeyExpired``, then the streams
        close; with ``notify=False`` silently: the streams go quiet and the next keepalive is
        refused with ``-1125``); how many there were."""
        return self.streams.expire(self._account(account), notify=notify)

    def drop_streams(self, account: str | int | None = None) -> int:
        """Drop the account's open streams (all accounts' with ``None``) as a network failure
        would; how many."""
        return self.streams.drop(None if account is None else self._account(account))

    def hang_up_streams(self, code: int | None = 1011) -> None:
        """From now on, close every stream right after its handshake with ``code`` (1008,
        1011, 4000 …), as a faulty host does; ``None`` to serve streams again."""
        self.streams.hang_up = code

    def push_raw(self, account: str | int, message: bytes) -> int:
        """Send ``message`` unchanged (hostile JSON, say) on the account's open streams; how
        many got it."""
        return self.streams.push_raw(self._account(account), message)

    def quiet_streams(self, account: str | int, quiet: bool = True) -> None:
        """Make the account's streams carry nothing (or, with ``quiet=False``, carry again):
        they stay open and answer pings, as a stream whose pushes stopped does."""
        index = self._account(account)
        if quiet:
            self.streams.quiet.add(index)
        else:
            self.streams.quiet.discard(index)

    def push_event(self, account: str | int, event: dict[str, Any], *, binary: bool = False) -> int:
        """Push ``event`` (a dict with ``"e"``; ``"E"`` is filled in) on the account's open
        streams, in a text frame (or a binary one); how many got it."""
        if not isinstance(event.get("e"), str):
            raise ValueError("an event needs its name in 'e'")
        return self.streams.push(self._account(account), event, binary=binary)

    # -- ASGI --------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: ASGIReceive, send: ASGISend) -> None:
        if scope["type"] == "websocket":
            await self._stream_endpoint.serve(scope, receive, send)
        elif scope["type"] == "http":
            await self._framing.serve(scope, receive, send)

    def _respond(self, endpoint: Endpoint[Any], scope: Scope, headers: dict[str, str]) -> bytes:
        """The exchange's rules for one request, in its order: a ban of the family; the
        weight, counted whatever the answer; who asks; then the answer."""
        now = self.server_ms()
        client = scope.get("client")
        address = str(client[0]) if client else DEFAULT_IP
        self._rates.refuse_if_banned(endpoint.family, now, address)
        request_headers = {
            k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]
        }
        api_key = request_headers.get("x-mbx-apikey")
        index = self._by_key.get(api_key or "")
        asking = None if index is None else self.accounts[index]
        self._rates.charge(endpoint, asking, now, headers, address)
        if endpoint.keyed:
            account = authorize(endpoint, asking)
            return self.streams.answer(
                scope["method"], endpoint.path, self._by_key[account.api_key], self.clock()
            )
        if not endpoint.signed:
            return public_body(endpoint, now)
        account, params = authenticate(endpoint, asking, api_key, scope["query_string"], now)
        book = self._books[self._by_key[account.api_key]]
        book.advance(self.clock())
        return account_body(endpoint, account, book, params, now)

    def __repr__(self) -> str:
        where = self._server.base_url if self._server is not None else "not served"
        return (
            f"SimulatedExchange({where}, {len(self.accounts)} accounts, window={self.window:g}s,"
            f" {self.window_mode})"
        )
