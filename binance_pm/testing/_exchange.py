"""SimulatedExchange: the five Portfolio Margin account endpoints, served on loopback.

It behaves as ``BINANCE_FACTS.md`` says the exchange does: weights counted per family and per
account, the real used-weight headers on every answer, 429 then 418 for clients that do not back
off, signatures checked over the raw query string, timestamps checked against a server clock
that may be skewed, and the exchange's JSON error shapes. Faults can be injected at seeded rates.
"""

from __future__ import annotations

import random
import time
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl

import anyio
import anyio.lowlevel
import httpx
import msgspec

from .._endpoints import ENDPOINTS, LISTEN_KEY, PUBLISHED_LIMITS, Endpoint, Limits
from .._governor import Governor
from .._models import AccountType
from ._book import Book, SimAccount, make_accounts
from ._limits import Counter, SapiScope, Warden, WindowMode, retry_after_text
from ._messages import HTML_500, HTML_502, MSG, Answer, ban_text, error_body, server_time_body
from ._server import LoopbackServer
from ._stats import ExchangeStats
from ._streams import StreamDesk, stream_options_valid
from ._verify import signature_valid

Scope = MutableMapping[str, Any]
ASGIReceive = Callable[[], Awaitable[MutableMapping[str, Any]]]
ASGISend = Callable[[MutableMapping[str, Any]], Awaitable[None]]

FAULT_KINDS = ("503", "reset", "slow", "garbage", "html")
#: ``GET`` this path for :attr:`SimulatedExchange.stats` as JSON (not weighed, never faulty);
#: ``?arrivals=1`` adds every charge as ``[server ms, budget, weight]``.
STATS_PATH = "/_sim/stats"
BY_PATH: dict[str, Endpoint[Any]] = {e.path: e for e in ENDPOINTS.values()}
LISTEN_BY: dict[tuple[str, str], Endpoint[Any]] = {
    (e.method, e.path): e for actions in LISTEN_KEY.values() for e in actions.values()
}
# Which products may call which endpoint; the others get -2015.
SERVES: dict[str, frozenset[AccountType]] = {
    "pm_balance": frozenset({AccountType.PM_2}),
    "pm_pro_balance": frozenset({AccountType.PM_1, AccountType.PM_3}),
    "pm_pro_account": frozenset({AccountType.PM_1, AccountType.PM_3}),
    "pm_pro_span_account": frozenset({AccountType.PM_3}),
    "classic_pm_account": frozenset({AccountType.PM_1, AccountType.PM_3}),
}
HEADER_IP = {"sapi": "X-SAPI-USED-IP-WEIGHT-1M"}
HEADER_UID = "X-SAPI-USED-UID-WEIGHT-1M"
HEADER_MBX = "X-MBX-USED-WEIGHT-1M"


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
        if window <= 0:
            raise ValueError("window must be positive seconds")
        if window_mode not in ("fixed", "sliding"):
            raise ValueError("window_mode must be 'fixed' or 'sliding'")
        if sapi_scope not in ("family", "endpoint"):
            raise ValueError(f"sapi_scope must be 'family' or 'endpoint', not {sapi_scope!r}")
        if not isinstance(uid_costs_ip, int) or uid_costs_ip < 0:
            raise ValueError(f"uid_costs_ip must be True, False or a weight, not {uid_costs_ip!r}")
        if isinstance(grace_requests, bool) or not isinstance(grace_requests, int):
            raise TypeError(f"grace_requests must be an int, not {grace_requests!r}")
        if grace_requests < 0:
            raise ValueError(f"grace_requests must be >= 0, not {grace_requests}")
        if not isinstance(limits, Limits):
            raise TypeError(f"limits must be a Limits, not {type(limits).__name__}")
        self.faults = dict(faults or {})
        for kind, p in self.faults.items():
            if kind not in FAULT_KINDS or not 0 <= p <= 1:
                raise ValueError(f"faults take {', '.join(FAULT_KINDS)} with probabilities 0..1")
        if sum(self.faults.values()) > 1:
            raise ValueError("fault probabilities add up to more than 1")
        self.external = dict(external or {})
        for family, share in self.external.items():
            if family not in ("api", "sapi", "papi", "fapi") or not 0 <= share < 1:
                raise ValueError("external takes families (api, sapi, papi, fapi) with shares 0..1")
        self.window = float(window)
        self.window_mode: WindowMode = window_mode
        self.sapi_scope: SapiScope = sapi_scope
        self.uid_costs_ip = uid_costs_ip
        self.limits = limits
        self.skew_ms = skew_ms
        self.slow_seconds = slow_seconds
        self.clock = clock
        self.stats = ExchangeStats()
        #: API keys whose every request fails with a 500, as an account stuck on a broken
        #: shard might: add and remove keys at any time.
        self.broken: set[str] = set()
        self._port = port
        self._rng = random.Random(seed)
        self.accounts, self._books = make_accounts(accounts, seed, clock())
        self._by_key = {a.api_key: i for i, a in enumerate(self.accounts)}
        window_ms = self.window * 1000.0
        started = self.server_ms()
        self._ip = {
            family: Counter(
                limits[f"{family}_ip"],
                window_ms,
                window_mode,
                external=self.external.get(family, 0.0),
                started_ms=started,
            )
            for family in ("api", "sapi", "papi", "fapi")
        }
        self._by_endpoint: dict[str, Counter] = {}  # sapi_scope="endpoint"
        self._started_ms = started
        self._uid: dict[str, Counter] = {}
        self._warden = Warden(
            ban_seconds if ban_seconds is not None else 2 * self.window,
            ban_grace if ban_grace is not None else min(1.0, self.window / 10),
            grace_requests,
        )
        self._server: LoopbackServer | None = None
        stream_options_valid(
            listen_key_ttl=listen_key_ttl,
            push_every=push_every,
            risk_every=risk_every,
            max_connection_seconds=max_connection_seconds,
            ping_every=ping_every,
            pong_within=pong_within,
        )
        self.ping_every, self.pong_within = ping_every, pong_within
        #: The user data streams: listen keys, open connections, what was pushed.
        self.streams = StreamDesk(
            self,
            listen_key_ttl=listen_key_ttl,
            push_every=push_every,
            risk_every=risk_every,
            max_connection_seconds=max_connection_seconds,
            combined=combined_streams,
            max_streams=max_streams,
        )

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
            port=self._port,
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
            await self.streams.serve(scope, receive, send)
            return
        if scope["type"] != "http":
            return
        stats = self.stats
        stats.in_flight += 1
        stats.max_concurrency = max(stats.max_concurrency, stats.in_flight)
        client = scope.get("client")
        if client is not None:
            stats.clients.add(tuple(client))
        try:
            # Yield once, so that requests that arrived together are in handling together.
            await anyio.lowlevel.checkpoint()
            await self._handle(scope, receive, send)
        finally:
            stats.in_flight -= 1

    async def _handle(self, scope: Scope, receive: ASGIReceive, send: ASGISend) -> None:
        if scope["path"] == STATS_PATH:
            arrivals = b"arrivals=1" in scope["query_string"]
            body = msgspec.json.encode(self.stats.to_dict(arrivals=arrivals))
            await self._send(send, 200, body, {})
            return
        endpoint = BY_PATH.get(scope["path"])
        if scope["method"] != "GET":
            endpoint = LISTEN_BY.get((scope["method"], scope["path"]))
        if endpoint is None:
            await self._send(send, 404, b'{"code":-1000,"msg":"Not found."}', {})
            return
        if self.broken and _api_key(scope) in self.broken:
            self._count(endpoint, 500, None, "broken")
            await self._send(send, 500, HTML_500, {}, content_type=b"text/html")
            return
        fault = self._draw_fault()
        if fault == "503":
            self._count(endpoint, 503, -1008, fault)
            await self._send(send, 503, error_body(-1008, MSG[-1008]), {})
            return
        if fault == "html":
            self._count(endpoint, 502, None, fault)
            await self._send(send, 502, HTML_502, {}, content_type=b"text/html")
            return
        headers: dict[str, str] = {}
        try:
            body = self._respond(endpoint, scope, headers)
        except Answer as answer:
            headers.update(answer.headers)
            self._count(endpoint, answer.status, answer.code, None)
            await self._send(send, answer.status, error_body(answer.code, answer.msg), headers)
            return
        self._count(endpoint, 200, None, fault)
        if fault == "slow":
            await self._stall(receive)
        elif fault == "garbage":
            body = body[: max(1, len(body) // 2)]
        elif fault == "reset":
            # Promise more body than is sent, then stop: the connection is dropped mid-answer.
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(body) + 100).encode()),
                        *((k.encode(), v.encode()) for k, v in headers.items()),
                    ],
                }
            )
            await send(
                {"type": "http.response.body", "body": body[: len(body) // 2], "more_body": True}
            )
            # Over TCP, uvicorn drops the connection when the app fails mid-answer; in process
            # (httpx.ASGITransport) this error reaches the client as the transport error a
            # reset is.
            raise httpx.ReadError("connection reset by the simulated exchange")
        await self._send(send, 200, body, headers)

    async def _stall(self, receive: ASGIReceive) -> None:
        """Wait ``slow_seconds``, or until the client has gone: the answer then has nobody to
        go to, and a server that stops needs no longer than its clients to wind down."""
        with anyio.move_on_after(self.slow_seconds):
            while (await receive())["type"] != "http.disconnect":
                pass

    def _draw_fault(self) -> str | None:
        if not self.faults:
            return None
        draw = self._rng.random()
        for kind, p in self.faults.items():
            if draw < p:
                return kind
            draw -= p
        return None

    def _count(
        self, endpoint: Endpoint[Any], status: int, code: int | None, fault: str | None
    ) -> None:
        self.stats.record(endpoint.name, status, code, fault)

    @staticmethod
    async def _send(
        send: ASGISend,
        status: int,
        body: bytes,
        headers: dict[str, str],
        content_type: bytes = b"application/json",
    ) -> None:
        raw = [
            (b"content-type", content_type),
            *((k.encode(), v.encode()) for k, v in headers.items()),
        ]
        await send({"type": "http.response.start", "status": status, "headers": raw})
        await send({"type": "http.response.body", "body": body})

    # -- the exchange's rules ----------------------------------------------------------------

    def _respond(self, endpoint: Endpoint[Any], scope: Scope, headers: dict[str, str]) -> bytes:
        now = self.server_ms()
        family = endpoint.family
        until = self._warden.banned_until(family, now)
        if until is not None:
            raise Answer(
                418,
                -1003,
                ban_text(until),
                {"Retry-After": retry_after_text((until - now) / 1000.0)},
            )
        query: bytes = scope["query_string"]
        request_headers = {
            k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]
        }
        account_index = self._by_key.get(request_headers.get("x-mbx-apikey", ""))
        self._charge(endpoint, account_index, now, headers)
        if endpoint.keyed:
            return self.streams.answer(scope["method"], endpoint.path, account_index, self.clock())
        if not endpoint.signed:
            return server_time_body(now) if endpoint.path.endswith("/time") else b"{}"
        return self._signed(endpoint, query, request_headers, account_index, now)

    def _charge(
        self,
        endpoint: Endpoint[Any],
        account_index: int | None,
        now: float,
        headers: dict[str, str],
    ) -> None:
        """Count the request's weight on arrival; 429 (or a ban) if it does not fit."""
        family = endpoint.family
        weight = endpoint.weight
        counters: list[tuple[str, Counter, str, int]] = []
        if endpoint.bucket == "uid" and account_index is not None:
            account = self.accounts[account_index]
            api_key = account.api_key
            uid = self._uid.get(api_key)
            if uid is None:
                uid = self._uid[api_key] = Counter(
                    self.limits["sapi_uid"], self.window * 1000.0, self.window_mode
                )
            counters.append((f"uid:{account.name}", uid, HEADER_UID, weight))
            if self.uid_costs_ip:
                ip_weight = weight if self.uid_costs_ip is True else int(self.uid_costs_ip)
                key, ip = self._ip_counter(endpoint)
                counters.append((key, ip, HEADER_IP["sapi"], ip_weight))
        elif endpoint.bucket == "ip":
            key, ip = self._ip_counter(endpoint)
            counters.append((key, ip, HEADER_IP.get(family, HEADER_MBX), weight))
        if family == "sapi":
            # Every sapi answer also reports the IP weight, UID endpoints included.
            headers[HEADER_IP["sapi"]] = str(self._ip_counter(endpoint)[1].used(now))
        refused: tuple[str, Counter, int] | None = None
        for key, counter, _, cost in counters:
            if refused is None and not counter.fits(cost, now):
                refused = (key, counter, cost)
        for key, counter, header, cost in counters:
            headers[header] = str(counter.charge(cost, now))
            self.stats.charge(key, cost, now, self.window)
        if refused is None:
            return
        key, counter, weight = refused
        if self._warden.in_cooldown(key, now):
            until = self._warden.ban(family, now)
            self.stats.bans += 1
            raise Answer(
                418,
                -1003,
                ban_text(until),
                {"Retry-After": retry_after_text((until - now) / 1000.0)},
            )
        wait = counter.seconds_until_fits(weight, now)
        self._warden.refused(key, now, wait)
        self.stats.refused_by_window[key][int(now // (self.window * 1000))] += 1
        raise Answer(
            429,
            -1003,
            MSG[-1003].format(limit=counter.limit),
            {"Retry-After": retry_after_text(wait)},
        )

    def _ip_counter(self, endpoint: Endpoint[Any]) -> tuple[str, Counter]:
        """The IP limit ``endpoint`` is counted against, and its name in :attr:`stats`."""
        family = endpoint.family
        if family != "sapi" or self.sapi_scope == "family":
            return f"{family}_ip", self._ip[family]
        counter = self._by_endpoint.get(endpoint.name)
        if counter is None:
            counter = self._by_endpoint[endpoint.name] = Counter(
                self.limits["sapi_ip"],
                self.window * 1000.0,
                self.window_mode,
                external=self.external.get("sapi", 0.0),
                started_ms=self._started_ms,
            )
        return f"sapi_ip:{endpoint.name}", counter

    def _signed(
        self,
        endpoint: Endpoint[Any],
        query: bytes,
        request_headers: dict[str, str],
        account_index: int | None,
        now: float,
    ) -> bytes:
        api_key = request_headers.get("x-mbx-apikey")
        if not api_key or not api_key.isascii() or len(api_key) > 128:
            raise Answer(401, -2014, MSG[-2014])
        if account_index is None:
            raise Answer(401, -2015, MSG[-2015])
        account = self.accounts[account_index]
        payload, sep, signature = query.rpartition(b"&signature=")
        params = dict(parse_qsl(payload.decode("latin-1"), keep_blank_values=True))
        for name in ("timestamp", *endpoint.required):
            if not params.get(name):
                raise Answer(400, -1102, MSG[-1102].format(name=name))
        if not sep or not params.get("timestamp", "").isdigit():
            raise Answer(
                400, -1102, MSG[-1102].format(name="signature" if not sep else "timestamp")
            )
        recv_window = int(params.get("recvWindow", "5000") or 5000)
        if recv_window > 60_000:
            raise Answer(400, -1131, MSG[-1131])
        if not signature_valid(account, payload, signature):
            raise Answer(400, -1022, MSG[-1022])
        timestamp = int(params["timestamp"])
        if timestamp >= now + 1000 or now - timestamp > recv_window:
            raise Answer(400, -1021, MSG[-1021])
        if account.account_type not in SERVES[endpoint.name]:
            raise Answer(401, -2015, MSG[-2015])
        book = self._books[account_index]
        book.advance(self.clock())
        return self._body(endpoint, account, book, params, int(now))

    @staticmethod
    def _body(
        endpoint: Endpoint[Any],
        account: SimAccount,
        book: Book,
        params: dict[str, str],
        now_ms: int,
    ) -> bytes:
        asset = params.get("asset", "").upper()
        name = endpoint.name
        if name in ("pm_balance", "pm_pro_balance"):
            options = name == "pm_pro_balance"
            if asset:
                if asset not in book.balances:
                    raise Answer(400, -1102, MSG[-1102].format(name="asset"))
                if name == "pm_balance":
                    return msgspec.json.encode(book.balance(asset, now_ms, single=True))
                return msgspec.json.encode([book.balance(asset, now_ms, options=True)])
            return msgspec.json.encode(
                [book.balance(a, now_ms, options=options) for a in book.balances]
            )
        if name == "classic_pm_account":
            return msgspec.json.encode(book.max_withdraw(asset))
        return msgspec.json.encode(
            book.account(account.account_type, span=name == "pm_pro_span_account")
        )

    def __repr__(self) -> str:
        where = self._server.base_url if self._server is not None else "not served"
        return (
            f"SimulatedExchange({where}, {len(self.accounts)} accounts, window={self.window:g}s,"
            f" {self.window_mode})"
        )


def _api_key(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name.lower() == b"x-mbx-apikey":
            return str(value.decode("latin-1"))
    return None
