"""Session: many accounts' clients sharing one connection pool, rate-limit budget and clock.

The call path itself is :class:`~binance_pm._engine.Engine`'s; a Session adds the clients of
many accounts (:meth:`Session.client`) and polling them (:meth:`Session.poll`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from decimal import Decimal

from ._attempts import ConnectionBudget
from ._client import AsyncClient
from ._config import check_seconds
from ._credentials import Credentials
from ._engine import Engine, HookT
from ._jobs import Sharing, plan_jobs
from ._limits import PUBLISHED_LIMITS
from ._merge import Merged
from ._models import AccountType
from ._poller import Polling
from ._running import Background, Owner
from ._streams import (
    CLOSE_WITHIN,
    HEARTBEAT,
    KEEPALIVE,
    MAX_STREAMS,
    ROTATE_AFTER,
    SILENT_AFTER,
    Streamer,
    Streaming,
    plan_streams,
    streams_url,
)
from ._updates import StreamUpdate, Update, default_priority


class Session(Engine[HookT]):
    """Shares one HTTP connection pool, one rate-limit governor and one exchange clock among many
    accounts' clients.

    ::

        async with Session() as session:
            a = session.client(key_a, secret=secret_a)
            b = session.client(key_b, private_key=pem_bytes)
            balances = await a.pm_balance()

    Args:
        base_url: send every API family to this host (a simulated exchange, a proxy).
        hosts: per-family hosts (``"api"``, ``"sapi"``, ``"papi"``, ``"fapi"``), over
            ``base_url`` or the production hosts.
        governor: the rate-limit :class:`Governor`; pass one object to several Sessions to
            share one budget. By default each Session has its own, with the published limits.
        http: a caller-owned ``httpx.AsyncClient`` to send with (its transports, mounts,
            hooks, respx); the Session never closes it. By default, under asyncio, requests
            go out through the Session's own HTTP/1.1 connections (TLS verified, proxies
            honoured, at most 100 open, kept alive 30 s).
        sender: a caller-owned :class:`Sender` (one request out, its whole answer back),
            instead of ``http``; the Session never closes it.
        recv_window: the ``recvWindow`` of signed requests, 1 to 60,000 ms.
        timeout: seconds one call may take in all: waiting for budget, the clock, retries.
        max_retries: retries of a call that got a 5xx or no answer.
        proxy: an http(s) proxy URL for every request; by default ``HTTP(S)_PROXY`` and
            ``NO_PROXY`` decide, as for httpx.
        max_body: the longest answer accepted, in bytes (4 MiB); a longer one is a
            :class:`TransportError`.
        source_address: the local IP address to send from (the exchange's, the clock's and
            the streams' connections alike), for a machine with several: each egress IP has
            IP limits of its own at the exchange. Not with ``http=`` or ``sender=``, which
            bind their own.
    """

    _running: Owner | None = None  # its polls and streams, stopped by aclose
    _connections: ConnectionBudget | None = None  # when the governor is a hook without one

    async def aclose(self) -> None:
        """Stop every poll and stream and wait for them to end (their listen keys closed,
        within each stream's ``close_within``), then close the connection pool unless the
        caller owns it. Calls still in flight end with a :class:`~binance_pm.TransportError`;
        later ones raise :class:`~binance_pm.SessionError`. Safe to call twice; call it from
        your own code (from inside a poll's own work, its ``priority`` callable or a hook of
        yours, it would wait for that work, and so for itself)."""
        if self._running is not None:
            await self._running.close()
        await super().aclose()

    def _owner(self) -> Owner:
        if self._running is None:
            self._running = Owner()
        return self._running

    def _connection_budget(self) -> ConnectionBudget:
        """The governor's stream connection attempts, or this Session's own (with the
        published limit) when its governor is a hook that has none."""
        budget = getattr(self.governor, "connections", None)
        if isinstance(budget, ConnectionBudget):
            return budget
        if self._connections is None:
            limits = PUBLISHED_LIMITS
            self._connections = ConnectionBudget(
                limits.ws_connect,
                limits.ws_window,
                clock=time.monotonic,
                banned_until={"ws": 0.0},
                ban=lambda seconds: None,
            )
        return self._connections

    # -- clients -----------------------------------------------------------------------------

    def client(
        self,
        api_key: str,
        *,
        secret: str | bytes | None = None,
        private_key: str | bytes | None = None,
        private_key_password: str | bytes | None = None,
        name: str | None = None,
        product: AccountType | str | None = None,
    ) -> AsyncClient:
        """A client for one account that sends through this Session.

        Exactly one of ``secret`` (an HMAC key) and ``private_key`` (an Ed25519 or RSA PKCS#8
        PEM, with ``private_key_password`` if it is encrypted) must be given. ``name``
        (``"desk-1"``) is :attr:`AsyncClient.name`: shown in its ``repr`` and poll updates.
        ``product`` (``"PM"``, ``"PM Pro"``, ``"PM Pro SPAN"`` or an :class:`AccountType`) is
        :attr:`AsyncClient.product`, when known: :meth:`poll` without endpoints then polls
        the account's state endpoint, and :meth:`stream` follows its own product's stream.
        ``await client.detect_product()`` finds it out.
        """
        self._check_open()
        credentials = Credentials(
            api_key,
            secret=secret,
            private_key=private_key,
            private_key_password=private_key_password,
        )
        return AsyncClient._bound(self, credentials, name, product)

    # -- polling -----------------------------------------------------------------------------

    def poll(
        self,
        clients: Iterable[AsyncClient] | Mapping[AsyncClient, str | Sequence[str]],
        endpoints: str | Sequence[str] | None = None,
        *,
        every: float = 5.0,
        priority: Callable[[Update], float] = default_priority,
        asset: str | None = None,
        stream: bool = False,
        reconcile_every: float = 60.0,
        streams_per_connection: int = 1,
        fleet: Sharing | None = None,
    ) -> Background[Update]:
        """Poll many accounts for as long as the ``async with`` is open; its :class:`Feed`
        gives each :class:`Update`.

        ::

            async with Session() as s:
                clients = [s.client(key, secret=secret) for key, secret in keys]
                async with s.poll(clients, "pm_pro_account", every=5.0) as updates:
                    async for update in updates:
                        update.client, update.endpoint, update.result, update.error, update.at

        Args:
            clients: the accounts' clients (of this Session), with ``endpoints`` for all; or a
                mapping from each client to its endpoint name or names.
            endpoints: ``"pm_pro_account"``, or a list of endpoint names (the client methods');
                left out, each account's state endpoint by its :attr:`AsyncClient.product`
                (``pm_account`` for PM, ``pm_pro_account`` for PM Pro,
                ``pm_pro_span_account`` for PM Pro SPAN).
            every: each account's endpoint goes at most this often, in seconds; as often as
                the budget allows when the budget is what binds, shared fairly.
            priority: a sort key of an account's last update, lower first; when the budget is
                short, accounts ranked first refresh up to twice as often as those ranked
                last. By default a non-NORMAL ``account_status``, then the lowest ``uni_mmr``.
            asset: the asset for ``classic_pm_account`` (required there), or to narrow
                ``pm_balance`` / ``pm_pro_balance`` to one asset.
            stream: also follow each account's user data stream (``pm_balance`` accounts on
                PM's, the ``pm_pro_*`` endpoints' on PM Pro's): every pushed event is an
                update at once (``source="stream"``, ``event`` set), REST polls become a
                reconciliation every ``reconcile_every`` seconds instead of ``every``, and
                after a stream reconnects one REST call per endpoint fills the gap (at most
                once per ``reconcile_every`` per account; reconnections within a period
                share one fill at its end).
                ``classic_pm_account`` has no stream. Under asyncio.
            reconcile_every: with ``stream=True``, seconds between two REST polls of an
                account's endpoint.
            streams_per_connection: with ``stream=True``, accounts carried on one combined
                stream connection (see :meth:`stream`).
            fleet: a :class:`~binance_pm.fleet.Fleet`: the accounts are shared out with the
                fleet's other members (each running the same poll), and only those this
                member holds a lease on are polled, as the shares move. Not with
                ``stream=True``.

        One account's failure never stops the others: an authentication error ends that
        account's polling with one error update (``final`` set); other errors (any other 4xx
        included) back it off with jitter, with an error update each time.
        The polling runs in a task group the ``async with`` owns, in the caller's task: leaving
        it (at its end, by an exception, by cancellation) cancels every call in flight and
        waits for them to end; closing the Session ends the feed the same way. A bug (the
        ``priority`` callable raising, say) ends the feed and is raised to the caller.
        """
        every = check_seconds("every", every)
        jobs = plan_jobs(clients, endpoints, asset)
        for job in jobs:
            if job.client.session is not self:
                raise ValueError(f"{job.client!r} sends through another Session")
        self._check_open()
        if fleet is not None and stream:
            raise ValueError("a fleet shares polls out, not streams: give fleet= or stream=True")
        if not stream:
            return Polling(
                self._owner(), self._check_open, jobs, every=every, priority=priority, fleet=fleet
            )
        reconcile_every = check_seconds("reconcile_every", reconcile_every)
        products: dict[AsyncClient, str] = {}
        for job in jobs:
            product = job.endpoint.stream
            if product is None:
                raise ValueError(f"{job.endpoint.name} has no user data stream; poll it alone")
            if products.setdefault(job.client, product) != product:
                raise ValueError(f"{job.client!r} polls endpoints of both PM and PM Pro")
        streamer = Streamer(
            list(products.items()),
            streams_url(self.hosts["fapi"]),
            self._connection_budget(),
            close_keys=self._keeps_keys(None),
            streams_per_connection=_per_connection(streams_per_connection),
            source_address=self.source_address,
        )
        return Merged(
            self._owner(),
            self._check_open,
            jobs,
            streamer,
            reconcile_every=reconcile_every,
            priority=priority,
        )

    # -- streams -------------------------------------------------------------------------------

    def stream(
        self,
        clients: Iterable[AsyncClient] | Mapping[AsyncClient, str | AccountType],
        product: str | AccountType | None = None,
        *,
        url: str | None = None,
        keepalive: float = KEEPALIVE,
        rotate_after: float = ROTATE_AFTER,
        close_keys: bool | None = None,
        heartbeat: float = HEARTBEAT,
        silent_after: float = SILENT_AFTER,
        close_within: float = CLOSE_WITHIN,
        uni_mmr: Mapping[AsyncClient, Decimal | float] | None = None,
        streams_per_connection: int = 1,
    ) -> Background[StreamUpdate]:
        """Follow the accounts' user data streams for as long as the ``async with`` is open;
        its :class:`Feed` gives each :class:`StreamUpdate` (an event, a (re)connection, or a
        failure).

        ::

            async with Session() as s:
                clients = [s.client(key, secret=secret) for key, secret in keys]
                async with s.stream(clients, "pm_pro") as updates:
                    async for update in updates:
                        if isinstance(update.event, RiskLevelChange):
                            alert(update.name, update.event.level, update.event.uni_mmr)

        Args:
            clients: the accounts' clients (of this Session), with ``product`` for all; or a
                mapping from each client to its product.
            product: ``"pm_pro"`` (PM Pro and PM Pro SPAN: ``/fapi/v1/listenKey``,
                ``/pm-classic/ws/``) or ``"pm"`` (Portfolio Margin: ``/papi/v1/listenKey``,
                ``/pm/ws/``), or a product's name (``"PM"``, ``"PM Pro"``, an
                :class:`AccountType`). Left out, each account's own by its
                :attr:`AsyncClient.product`, and ``"pm_pro"`` for a client whose product is
                not known.
            url: the stream host (``wss://fstream.binance.com``, or the Session's fapi host
                over ``ws://``/``wss://`` when it has another).
            keepalive: seconds between keepalives of each listen key (it lives 60 minutes);
                a keepalive refused with ``-1125`` (the key expired unseen) opens a new key.
            rotate_after: seconds after which a connection is replaced, the new one open
                before the old one closes (the exchange closes them at 24 hours).
            close_keys: close each listen key (``DELETE``) when the loop ends. The exchange
                gives every process streaming an account the same key, and a ``DELETE`` by one
                ends the others' streams, so by default keys are closed only when the
                governor has no shared ``store`` (a desk of several processes keeps them: an
                unused key expires within 60 minutes).
            heartbeat: a connection that carries nothing (no event, ping or pong) for this
                many seconds is pinged, and one that still carries nothing as long again is
                taken for dead and connected anew: a dead connection is noticed within
                ``2 * heartbeat`` seconds. One task pings every quiet connection, so thousands
                of idle streams cost almost nothing; a busy one is never pinged.
            silent_after: a PM Pro stream (the exchange pushes an update every 5 s) that
                carries nothing for this long is probed: its key is kept alive (a new one if
                it expired unseen), and the connection replaced.
            close_within: seconds the listen keys get to close when the stream ends (all at
                once); how it went is logged.
            uni_mmr: what the desk last knew of each account's uniMMR: the lowest connect
                first (later, the figures the streams push rank their reconnections).
            streams_per_connection: accounts of one product carried on one connection, as a
                combined stream (``/pm-classic/stream?streams=<key1>/<key2>/…``, up to 100, so
                that the URL stays under 8 KiB): fewer connection attempts for a large desk.
                The PM pages document only one key a connection (``1``, the default); a host
                that answers a combined handshake 400, 404 or 414 is followed one connection
                per account from then on.

        Connections are paced by the governor's budget of connection attempts
        (``Limits.ws_connect`` per ``Limits.ws_window`` from this IP: 300 per 5 minutes), so a
        desk of N accounts is fully connected in about ``N / 300 * 5`` minutes, logged at
        the start; a drop of many at once reconnects them at that pace, riskiest first, and
        a refused handshake (429, 418) shuts the budget for its ``Retry-After``.

        Each account's stream is its own: one failing, or sending a message that cannot be
        decoded, never stops the others. A drop reconnects (an error update, then a
        ``connected`` one); connections that die young back the account off, longer each
        time; an expired key is replaced; a refused key ends that account with a ``final``
        update. Listen-key calls go through the governor. Leaving the ``async with`` or
        closing the Session closes every socket within a second, then the keys within
        ``close_within``, and waits for both. Runs under asyncio (aiohttp's WebSockets).
        """
        jobs = plan_streams(clients, product)
        for client, _ in jobs:
            if client.session is not self:
                raise ValueError(f"{client!r} sends through another Session")
        self._check_open()
        target = url if url is not None else streams_url(self.hosts["fapi"])
        streamer = Streamer(
            jobs,
            target,
            self._connection_budget(),
            keepalive=check_seconds("keepalive", keepalive),
            rotate_after=check_seconds("rotate_after", rotate_after),
            close_keys=self._keeps_keys(close_keys),
            heartbeat=check_seconds("heartbeat", heartbeat),
            silent_after=check_seconds("silent_after", silent_after),
            close_within=check_seconds("close_within", close_within),
            uni_mmr=uni_mmr,
            streams_per_connection=_per_connection(streams_per_connection),
            source_address=self.source_address,
        )
        return Streaming(self._owner(), self._check_open, streamer)

    def _keeps_keys(self, close_keys: bool | None) -> bool:
        """Whether the streams close their listen keys at the end: as asked, or by default
        unless other processes may share them (the governor has a shared store)."""
        if close_keys is not None:
            return close_keys
        return getattr(self.governor, "store", None) is None


def _per_connection(count: int) -> int:
    if isinstance(count, bool) or not isinstance(count, int):
        raise TypeError(f"streams_per_connection must be an int, not {count!r}")
    if not 1 <= count <= MAX_STREAMS:
        raise ValueError(f"streams_per_connection must be 1 to {MAX_STREAMS}, not {count}")
    return count
