"""A Session: one connection pool, one rate-limit budget and one exchange clock for many accounts.

Every call goes the same way: the clock is made sure of, the governor grants a permit, the request
is signed (its timestamp read only then) and sent, and the answer is decoded or turned into the
error class for its status and code, retried when that is safe and time remains.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
from collections.abc import AsyncGenerator, Callable, Iterable, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote

import anyio
import httpx
import msgspec

from ._clock import ExchangeClock
from ._endpoints import API_TIME, FAMILIES, PRODUCTION_HOSTS, Endpoint, Family
from ._exceptions import (
    APIError,
    IPBannedError,
    RateLimitError,
    TimestampError,
    TransportError,
    error_class,
)
from ._governor import Governor
from ._headers import retry_after_seconds
from ._hook import RateLimitHook
from ._poller import GRANTED, Poller, Update, default_priority, plan_jobs, poll
from ._retry import retry_delay
from ._transport import AiohttpTransport
from ._version import __version__

if TYPE_CHECKING:
    from ._client import AsyncClient, Credentials

log = logging.getLogger("binance_pm")
#: Seconds a call waits, at most, to tell a shared rate-limit store of its answer.
SETTLE_SECONDS = 2.0

T = TypeVar("T")
SessionT = TypeVar("SessionT", bound="Session")

MAX_RECV_WINDOW = 60_000
_TAGS = re.compile(r"<[^>]*>")
_SPACE = re.compile(r"\s+")


class _ErrorBody(msgspec.Struct):
    code: int
    msg: str = ""


_error_decoder = msgspec.json.Decoder(_ErrorBody)


def check_recv_window(recv_window: int) -> int:
    """``recv_window`` if the exchange accepts it (1 to 60,000 ms), else ``ValueError``."""
    if isinstance(recv_window, bool) or not isinstance(recv_window, int):
        raise TypeError(f"recv_window must be an int of milliseconds, not {recv_window!r}")
    if not 0 < recv_window <= MAX_RECV_WINDOW:
        raise ValueError(f"recv_window must be 1 to {MAX_RECV_WINDOW} ms, not {recv_window}")
    return recv_window


def _resolve_hosts(base_url: str | None, hosts: Mapping[str, str] | None) -> dict[Family, str]:
    resolved: dict[Family, str] = dict(PRODUCTION_HOSTS)
    if base_url is not None:
        resolved = dict.fromkeys(FAMILIES, base_url)
    for family, url in (hosts or {}).items():
        if family not in FAMILIES:
            raise ValueError(
                f"unknown API family {family!r}; the families are {', '.join(FAMILIES)}"
            )
        resolved[family] = url
    for family, url in resolved.items():
        parsed = httpx.URL(url)
        if parsed.scheme not in ("http", "https") or not parsed.host:
            raise ValueError(f"the {family} host must be an http(s) URL, not {url!r}")
        resolved[family] = url.rstrip("/")
    return resolved


def _excerpt(body: bytes) -> str:
    """A short, one-line reading of a body that is not the exchange's JSON (an HTML page)."""
    text = _SPACE.sub(" ", _TAGS.sub(" ", body[:2000].decode("utf-8", "replace"))).strip()
    return text[:200] or "(empty body)"


class Session:
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
        http: a caller-owned ``httpx.AsyncClient`` to send with; the Session never closes it.
        recv_window: the ``recvWindow`` of signed requests, 1 to 60,000 ms.
        timeout: seconds one call may take in all: waiting for budget, the clock, retries.
        max_retries: retries of a call that got a 5xx or no answer.
    """

    def __init__(
        self,
        *,
        base_url: str | None = None,
        hosts: Mapping[str, str] | None = None,
        governor: RateLimitHook | None = None,
        http: httpx.AsyncClient | None = None,
        recv_window: int = 5000,
        timeout: float = 10.0,
        max_retries: int = 2,
    ) -> None:
        if not timeout > 0:
            raise ValueError(f"timeout must be positive seconds, not {timeout!r}")
        if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
            raise ValueError(f"max_retries must be a whole number >= 0, not {max_retries!r}")
        self.hosts: dict[Family, str] = _resolve_hosts(base_url, hosts)
        self.recv_window = check_recv_window(recv_window)
        self.timeout = float(timeout)
        self.max_retries = max_retries
        self.governor: RateLimitHook = governor if governor is not None else Governor()
        self.clock = ExchangeClock()
        self._http = http
        self._owns_http = http is None
        self._closed = False
        self._pollers: set[Poller] = set()  # running polls, stopped by aclose

    # -- lifecycle ---------------------------------------------------------------------------

    async def __aenter__(self: SessionT) -> SessionT:
        self._check_open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop every poll, and close the connection pool unless the caller owns it. Safe to
        call twice."""
        self._closed = True
        for poller in list(self._pollers):
            await poller.stop()
        http, self._http = self._http, None
        if http is not None and self._owns_http:
            await http.aclose()

    @property
    def closed(self) -> bool:
        return self._closed

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("this Session is closed")

    def _client_http(self) -> httpx.AsyncClient:
        self._check_open()
        if self._http is None:
            self._http = httpx.AsyncClient(
                transport=self._default_transport(),
                headers={"User-Agent": f"binance_pm/{__version__}", "Accept": "application/json"},
            )
        return self._http

    @staticmethod
    def _default_transport() -> httpx.AsyncBaseTransport:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            # Not asyncio (trio): httpx's own transport runs on anyio.
            return httpx.AsyncHTTPTransport(
                limits=httpx.Limits(max_connections=256, max_keepalive_connections=64)
            )
        return AiohttpTransport()

    # -- clients -----------------------------------------------------------------------------

    def client(
        self,
        api_key: str,
        *,
        secret: str | bytes | None = None,
        private_key: str | bytes | None = None,
        private_key_password: str | bytes | None = None,
    ) -> AsyncClient:
        """A client for one account that sends through this Session.

        Exactly one of ``secret`` (an HMAC key) and ``private_key`` (an Ed25519 or RSA PKCS#8
        PEM, with ``private_key_password`` if it is encrypted) must be given.
        """
        from ._client import AsyncClient, Credentials

        credentials = Credentials(
            api_key,
            secret=secret,
            private_key=private_key,
            private_key_password=private_key_password,
        )
        return AsyncClient._bound(self, credentials)

    # -- polling -----------------------------------------------------------------------------

    def poll(
        self,
        clients: Iterable[AsyncClient] | Mapping[AsyncClient, str | Sequence[str]],
        endpoints: str | Sequence[str] | None = None,
        *,
        every: float = 5.0,
        priority: Callable[[Update], float] = default_priority,
        asset: str | None = None,
    ) -> AsyncGenerator[Update, None]:
        """Poll many accounts for as long as the ``async for`` runs; yields each :class:`Update`.

        ::

            async with Session() as s:
                clients = [s.client(key, secret=secret) for key, secret in keys]
                async for update in s.poll(clients, "pm_pro_account", every=5.0):
                    update.client, update.endpoint, update.result, update.error, update.at

        Args:
            clients: the accounts' clients (of this Session), with ``endpoints`` for all; or a
                mapping from each client to its endpoint name or names.
            endpoints: ``"pm_pro_account"``, or a list of endpoint names (the client methods').
            every: each account's endpoint goes at most this often, in seconds; as often as
                the budget allows when the budget is what binds, shared fairly.
            priority: a sort key of an account's last update, lower first; when the budget is
                short, accounts ranked first refresh up to twice as often as those ranked
                last. By default a non-NORMAL ``account_status``, then the lowest ``uni_mmr``.
            asset: the asset for ``classic_pm_account`` (required there), or to narrow
                ``pm_balance`` / ``pm_pro_balance`` to one asset.

        One account's failure never stops the others: an authentication error ends that
        account's polling with one error update (``final`` set), a bad request that
        endpoint's; other errors back it off with jitter, with an error update each time.
        Leaving the loop (``break``, an exception, cancellation) or closing the Session
        cancels every call in flight and ends the polling within a second. To end it at a
        known point rather than when the generator is collected, close it:
        ``async with contextlib.aclosing(s.poll(...)) as updates: async for u in updates``.
        """
        if not every > 0 or math.isinf(every):
            raise ValueError(f"every must be positive seconds, not {every!r}")
        jobs = plan_jobs(clients, endpoints, asset)
        for job in jobs:
            if job.client.session is not self:
                raise ValueError(f"{job.client!r} sends through another Session")
        self._check_open()
        return poll(jobs, self._pollers, every=float(every), priority=priority)

    # -- calls -------------------------------------------------------------------------------

    async def call(
        self,
        endpoint: Endpoint,
        params: list[tuple[str, str]],
        *,
        credentials: Credentials | None,
        recv_window: int | None = None,
        deadline: float | None = None,
    ) -> Any:
        """Send ``endpoint`` (signed with ``credentials`` if it is signed) and decode its answer.

        Retries, clock resynchronisation and rate limiting happen here; the result is the
        endpoint's decoded type, and every failure is a :class:`BinancePMError`. ``deadline``
        is the seconds this call may take, instead of the Session's ``timeout``.
        """
        window = self.recv_window if recv_window is None else check_recv_window(recv_window)
        if endpoint.signed and credentials is None:
            raise ValueError(f"{endpoint.label} is signed and needs an account's credentials")
        seconds = self.timeout if deadline is None else float(deadline)
        if not seconds > 0:
            raise ValueError(f"deadline must be positive seconds, not {deadline!r}")
        masked = credentials.masked_key if credentials is not None else None
        ends = anyio.current_time() + seconds
        with anyio.move_on_after(seconds):
            return await self._attempts(endpoint, params, credentials, window, ends)
        raise TransportError(
            f"no answer within the call's deadline of {seconds:g} s",
            endpoint=endpoint.label,
            api_key=masked,
        )

    async def _attempts(
        self,
        endpoint: Endpoint,
        params: list[tuple[str, str]],
        credentials: Credentials | None,
        recv_window: int,
        deadline: float,
    ) -> Any:
        http = self._client_http()
        query = "&".join(f"{name}={quote(value, safe='')}" for name, value in params)
        account = credentials.api_key if credentials is not None else ""
        masked = credentials.masked_key if credentials is not None else None
        attempt = 0
        resynced = False
        refused: APIError | None = None  # the exchange's last 429 or 418 for this call

        async def server_time() -> int:
            result: int = (
                await self._attempts(API_TIME, [], None, recv_window, deadline)
            ).server_time
            return result

        while True:
            if endpoint.signed:
                await self.clock.ensure(server_time)
            seen = self.clock.generation
            try:
                permit = self.governor.try_acquire(
                    endpoint, account=account
                ) or await self.governor.acquire(endpoint, account=account, deadline=deadline)
            except (RateLimitError, IPBannedError):
                # Still shut when the deadline comes: the exchange's own refusal says it best.
                if refused is not None:
                    raise refused from None
                raise
            if endpoint.signed:
                granted = GRANTED.get()
                if granted is not None:
                    granted()  # a poll's gate lets the next call of this budget in
            try:
                url, headers = self._prepare(endpoint, query, credentials, recv_window)
            except BaseException:
                permit.cancel()
                await _settle(permit)
                raise
            status: int | None = None
            answer_headers: httpx.Headers | None = None
            try:
                response = await http.get(
                    url, headers=headers, timeout=max(deadline - anyio.current_time(), 0.001)
                )
                status, answer_headers = response.status_code, response.headers
            except httpx.HTTPError as exc:
                error: APIError | TransportError = TransportError(
                    f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__,
                    endpoint=endpoint.label,
                    api_key=masked,
                )
            finally:
                # Answer or not, the request may have reached the exchange: it counts.
                permit.complete(status, answer_headers)
                await _settle(permit)

            if status is not None:
                assert answer_headers is not None
                log.debug("%s %s -> %d (try %d)", endpoint.label, masked or "", status, attempt + 1)
                if 200 <= status < 300:
                    return endpoint.decoder.decode(response.content)
                error = self._api_error(endpoint, status, response.content, answer_headers, masked)
                if isinstance(error, TimestampError) and endpoint.signed and not resynced:
                    resynced = True
                    await self.clock.resync(server_time, seen=seen)
                    continue
                if isinstance(error, (RateLimitError, IPBannedError)):
                    # The governor now holds the budget shut until Retry-After; the next
                    # acquire waits for that, or raises if the deadline comes first.
                    refused = error
                    continue
                code, retry_after = error.code, error.retry_after
            else:
                log.debug("%s %s -> %s (try %d)", endpoint.label, masked or "", error, attempt + 1)
                code = retry_after = None

            delay = retry_delay(
                status, code, attempt, max_retries=self.max_retries, retry_after=retry_after
            )
            if delay is None or anyio.current_time() + delay >= deadline:
                raise error
            await anyio.sleep(delay)
            attempt += 1

    def _prepare(
        self,
        endpoint: Endpoint,
        query: str,
        credentials: Credentials | None,
        recv_window: int,
    ) -> tuple[str, dict[str, str]]:
        base = f"{self.hosts[endpoint.family]}{endpoint.path}"
        if not endpoint.signed or credentials is None:
            return (f"{base}?{query}" if query else base), {}
        # The timestamp is read after the permit was granted, however long that took.
        signed = f"recvWindow={recv_window}&timestamp={self.clock.now_ms()}"
        payload = f"{query}&{signed}" if query else signed
        signature = credentials.signer.sign(payload.encode())
        return f"{base}?{payload}&signature={signature}", {"X-MBX-APIKEY": credentials.api_key}

    @staticmethod
    def _api_error(
        endpoint: Endpoint, status: int, body: bytes, headers: httpx.Headers, masked: str | None
    ) -> APIError:
        try:
            parsed = _error_decoder.decode(body)
            code: int | None = parsed.code
            msg = parsed.msg
        except msgspec.DecodeError:
            code, msg = None, _excerpt(body)
        cls = error_class(status, code)
        return cls(
            status,
            code,
            msg,
            endpoint=endpoint.label,
            api_key=masked,
            retry_after=retry_after_seconds(headers),
        )

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return (
            f"Session({state}, hosts={self.hosts}, governor={self.governor!r}, "
            f"clock={self.clock!r})"
        )


async def _settle(permit: object) -> None:
    """Tell a shared store what became of a request (a local permit has nothing to settle):
    shielded, since it runs while the call unwinds, and bounded, since the store may be down."""
    settle = getattr(permit, "settle", None)
    if settle is not None:
        with anyio.move_on_after(SETTLE_SECONDS, shield=True):
            await settle()
