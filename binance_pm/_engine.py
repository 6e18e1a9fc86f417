"""The call path: one exchange clock, one rate-limit governor and one sender, for many accounts.

A call goes the same way every time, in three steps that each have a method here:

1. **acquire**: the clock is made sure of (a signed call's timestamp must be the exchange's), and
   the governor grants a permit for the endpoint's weight;
2. **send once**: the request is signed (its timestamp read only now) and sent, and the permit is
   told what became of it, answer or not;
3. **classify**: a 2xx is decoded; anything else becomes the error class for its status and code,
   and is retried when that is safe and time remains (a ``-1021`` after re-measuring the clock, a
   5xx or lost answer after a backoff, a 429 or 418 once the governor reopens the budget).

The whole call is bounded by its deadline: under asyncio by asyncio's own timeout, elsewhere by
anyio's. :class:`~binance_pm.Session` adds clients and polling on top.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from types import TracebackType
from typing import Any, Generic, TypeVar, cast
from urllib.parse import quote, urlsplit

import anyio
import httpx

from ._call import BACKOFF, BUDGET, CLOCK, SEND, Call, api_error, ban_headers, misfiled
from ._clock import ExchangeClock
from ._config import check_recv_window, check_seconds, resolve_hosts
from ._credentials import Credentials
from ._deadlines import Deadlines
from ._endpoints import API_TIME, Endpoint, Family
from ._exceptions import (
    APIError,
    BinancePMError,
    DecodeError,
    IPBannedError,
    RateLimitError,
    SessionError,
    TimestampError,
    TransportError,
)
from ._governor import Governor
from ._hook import Permit, RateLimitHook
from ._http import DEFAULT_MAX_BODY, AiohttpSender, Answer, HttpxSender, Sender, scrub
from ._retry import retry_delay
from ._version import __version__

log = logging.getLogger("binance_pm")

if sys.version_info >= (3, 13):  # a TypeVar's default (PEP 696)
    from typing import TypeVar as DefaultTypeVar
else:
    from typing_extensions import TypeVar as DefaultTypeVar

T = TypeVar("T")
EngineT = TypeVar("EngineT", bound="Engine[Any]")
#: The governor's type: a :class:`Governor` unless the caller gave another hook.
HookT = DefaultTypeVar("HookT", bound=RateLimitHook, default=Governor, covariant=True)

#: Seconds a call waits, at most, to tell a shared rate-limit store of its answer.
SETTLE_SECONDS = 2.0
#: A call gives up after this many attempts refused with 429 or 418 (each waited out first).
MAX_REFUSED_ATTEMPTS = 3
_HEADERS = {"User-Agent": f"binance_pm/{__version__}", "Accept": "application/json"}
_LEAN = sys.version_info >= (3, 11)  # Task.uncancel exists


class Engine(Generic[HookT]):
    """What every call of a :class:`~binance_pm.Session` (or of a standalone client) goes
    through: hosts, sender, governor, clock, and the call path. See ``Session`` for the
    arguments."""

    def __init__(
        self,
        *,
        base_url: str | None = None,
        hosts: Mapping[str, str] | None = None,
        governor: HookT | None = None,
        http: httpx.AsyncClient | None = None,
        recv_window: int = 5000,
        timeout: float = 10.0,
        max_retries: int = 2,
        proxy: str | None = None,
        max_body: int = DEFAULT_MAX_BODY,
    ) -> None:
        self.timeout = check_seconds("timeout", timeout)
        if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
            raise ValueError(f"max_retries must be a whole number >= 0, not {max_retries!r}")
        if max_retries > 100:
            raise ValueError(f"max_retries must be at most 100, not {max_retries}")
        if isinstance(max_body, bool) or not isinstance(max_body, int) or max_body < 1024:
            raise ValueError(f"max_body must be a whole number of bytes >= 1024, not {max_body!r}")
        if http is not None and not isinstance(http, httpx.AsyncClient):
            raise TypeError(f"http must be an httpx.AsyncClient, not {type(http).__name__}")
        if proxy is not None and (
            not isinstance(proxy, str) or urlsplit(proxy).scheme not in ("http", "https")
        ):
            raise ValueError("proxy must be an http(s) URL")
        self.hosts: dict[Family, str] = resolve_hosts(base_url, hosts)
        self.recv_window = check_recv_window(recv_window)
        self.max_retries = max_retries
        # Typed as the caller's hook, or Governor when none was given (HookT's default).
        self._governor = cast(HookT, governor if governor is not None else Governor())
        self.clock = ExchangeClock()
        self._http = http
        self._proxy = proxy
        self._max_body = max_body
        self._sender: Sender | None = None
        self._loop: asyncio.AbstractEventLoop | None = None  # the loop an owned sender is bound to
        self._deadlines: Deadlines | None = None  # under asyncio (3.11+), every call's deadline
        self._closed = False

    # -- lifecycle ---------------------------------------------------------------------------

    async def __aenter__(self: EngineT) -> EngineT:
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
        """Close the connection pool (a caller's ``http`` client stays open). Calls still in
        flight end with a :class:`~binance_pm.TransportError`; later ones raise
        :class:`~binance_pm.SessionError`. Safe to call twice."""
        self._closed = True
        sender, self._sender = self._sender, None
        if sender is not None:
            await sender.aclose()

    @property
    def governor(self) -> HookT:
        """The rate-limit governor: the :class:`Governor` this Session made, or the one (or the
        hook) it was given."""
        return self._governor

    @property
    def closed(self) -> bool:
        return self._closed

    def _check_open(self) -> None:
        if self._closed:
            raise SessionError("this Session is closed")

    def _sender_here(self) -> Sender:
        """The sender, made on first use; a typed error when closed or on another loop."""
        self._check_open()
        sender = self._sender
        try:
            loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            loop = None  # trio
        if sender is not None:
            if loop is not self._loop:  # its pool, governor and clock wait on that loop
                raise SessionError(
                    "this Session belongs to another event loop: make one Session per loop"
                )
            return sender
        self._loop = loop
        governor_store = getattr(self.governor, "store", None)
        if _LEAN and loop is not None and governor_store is None:
            self._deadlines = Deadlines(loop)
        if self._http is not None:
            sender = HttpxSender(self._http, owned=False, max_body=self._max_body)
        elif loop is not None:
            sender = AiohttpSender(headers=_HEADERS, proxy=self._proxy, max_body=self._max_body)
        else:
            client = httpx.AsyncClient(
                headers=_HEADERS,
                proxy=self._proxy,
                follow_redirects=False,
                limits=httpx.Limits(max_connections=256, max_keepalive_connections=64),
            )
            sender = HttpxSender(client, owned=True, max_body=self._max_body)
        self._sender = sender
        return sender

    # -- a call ------------------------------------------------------------------------------

    async def _call(
        self,
        endpoint: Endpoint[T],
        params: Sequence[tuple[str, str]],
        *,
        credentials: Credentials | None,
        recv_window: int | None = None,
        deadline: float | None = None,
        on_grant: Callable[[], None] | None = None,
    ) -> T:
        """Send ``endpoint`` (signed with ``credentials`` if it is signed) and decode its answer.

        Retries, clock resynchronisation and rate limiting happen here; every failure is a
        :class:`BinancePMError`. ``deadline`` is the seconds this call may take, instead of the
        Session's ``timeout``; ``on_grant`` is called when the governor lets the request out.
        """
        window = self.recv_window if recv_window is None else check_recv_window(recv_window)
        seconds = self.timeout if deadline is None else check_seconds("deadline", deadline)
        if endpoint.signed and credentials is None:
            raise ValueError(f"{endpoint.label} is signed and needs an account's credentials")
        sender = self._sender_here()
        query = "&".join([f"{name}={quote(value, safe='')}" for name, value in params])
        call = Call(endpoint, query, credentials, window, on_grant)
        deadlines, loop = self._deadlines, self._loop
        task = asyncio.current_task() if deadlines is not None else None
        if task is not None and deadlines is not None and loop is not None:
            ends = loop.time() + seconds
            cancelling = task.cancelling()  # type: ignore[attr-defined,unused-ignore]
            watch = deadlines.add(ends, task)
            try:
                result: T = await self._attempts(sender, call, ends)
                return result
            except asyncio.CancelledError:
                # Ours, unless someone else cancelled the task too (as asyncio.timeout tells).
                if not watch.expired or task.uncancel() > cancelling:  # type: ignore[attr-defined,unused-ignore]
                    raise
            finally:
                deadlines.done(watch)
        else:
            with anyio.move_on_after(seconds):
                result = await self._attempts(sender, call, anyio.current_time() + seconds)
                return result
        raise call.too_late(seconds)

    async def _attempts(self, sender: Sender, call: Call, ends: float) -> Any:
        endpoint = call.endpoint
        clock = self.clock
        attempt = refusals = 0
        resynced = False
        refused: APIError | None = None  # the exchange's last 429 or 418 for this call

        while True:
            if endpoint.signed and clock.stale():
                call.phase = CLOCK
                await clock.ensure(partial(self._server_time, sender, ends, call))
            seen = clock.generation
            # The budget's fast path first: no coroutine when it has room.
            permit = self.governor.try_acquire(endpoint, account=call.account)
            if permit is None:
                permit = await self._acquire(call, ends, refused)
            elif call.on_grant is not None:
                call.on_grant()
            answer = await self._send_once(sender, call, permit)

            error: BinancePMError
            if isinstance(answer, Answer):
                if 200 <= answer.status < 300:
                    try:
                        return endpoint.decoder.decode(answer.body)
                    except DecodeError as exc:
                        error = misfiled(call, answer) or exc
                        if error is exc:
                            raise
                else:
                    error = api_error(call, answer)
            else:
                error = answer
            log.debug("%s %s -> %s (try %d)", endpoint.label, call.masked or "", error, attempt + 1)

            if isinstance(error, TimestampError) and endpoint.signed and not resynced:
                resynced = True
                call.phase = CLOCK
                await clock.resync(partial(self._server_time, sender, ends, call), seen=seen)
                continue
            if isinstance(error, (RateLimitError, IPBannedError)):
                # The governor holds the budget shut until Retry-After (at least a second);
                # the next acquire waits for that, or raises if the deadline comes first.
                refusals += 1
                if refusals >= MAX_REFUSED_ATTEMPTS:
                    raise error
                refused = error
                continue
            api = error if isinstance(error, APIError) else None
            delay = retry_delay(
                api.status if api else None,
                api.code if api else None,
                attempt,
                max_retries=self.max_retries,
                retry_after=api.retry_after if api else None,
            )
            if delay is None or anyio.current_time() + delay >= ends:
                raise error
            call.phase, call.error = BACKOFF, error
            await anyio.sleep(delay)
            attempt += 1

    async def _server_time(self, sender: Sender, ends: float, call: Call) -> int:
        """The exchange's time, for the clock: a call of its own, within the call's deadline.

        No answer at all is told as the failure of ``call``, the one the user made, with the
        clock check named as the step that failed."""
        timing = Call(API_TIME, "", None, self.recv_window, None)
        try:
            answer: int = (await self._attempts(sender, timing, ends)).server_time
        except TransportError as exc:
            message = f"{exc.message} (while checking the exchange clock, {API_TIME.label})"
            raise TransportError(
                message, endpoint=call.endpoint.label, api_key=call.masked
            ) from None
        return answer

    async def _acquire(self, call: Call, ends: float, refused: APIError | None) -> Permit:
        """A permit for the call's weight, once the budget has room (its fast path, tried
        first by the caller, found none)."""
        call.phase = BUDGET
        governor, endpoint, account = self.governor, call.endpoint, call.account
        try:
            permit = await governor.acquire(endpoint, account=account, deadline=ends)
        except (RateLimitError, IPBannedError):
            # Still shut when the deadline comes: the exchange's own refusal says it best.
            if refused is not None:
                raise refused from None
            raise
        if call.on_grant is not None:
            call.on_grant()  # a poll's gate lets the next call of this budget in
        return permit

    async def _send_once(
        self, sender: Sender, call: Call, permit: Permit
    ) -> Answer | TransportError:
        """Sign and send; the answer, or the transport's failure. The permit learns which."""
        call.phase = SEND
        try:
            if self._closed:
                raise SessionError("this Session was closed while the call waited")
            url, headers = self._prepare(call)
        except BaseException:
            permit.cancel()
            await _settle(permit)
            raise
        status: int | None = None
        answer_headers: Mapping[str, str] | None = None
        try:
            endpoint = call.endpoint
            if endpoint.method == "GET":
                answer = await sender.get(url, headers, endpoint=endpoint.label)
            else:
                answer = await sender.get(
                    url, headers, endpoint=endpoint.label, method=endpoint.method
                )
            status, answer_headers = answer.status, answer.headers
            if status == 418:
                answer_headers = ban_headers(answer, self.clock.now_ms())
                answer = answer._replace(headers=answer_headers)
            return answer
        except TransportError as exc:
            return TransportError(exc.message, endpoint=exc.endpoint, api_key=call.masked)
        finally:
            # Answer or not, the request may have reached the exchange: it counts.
            permit.complete(status, answer_headers)
            if hasattr(permit, "settle"):
                await _settle(permit)

    def _prepare(self, call: Call) -> tuple[str, Mapping[str, str]]:
        endpoint, query, credentials = call.endpoint, call.query, call.credentials
        base = self.hosts[endpoint.family] + endpoint.path
        if not endpoint.signed or credentials is None:
            headers = credentials.headers if endpoint.keyed and credentials else {}
            return (f"{base}?{query}" if query else base), headers
        # The timestamp is read after the permit was granted, however long that took.
        signed = f"recvWindow={call.recv_window}&timestamp={self.clock.now_ms()}"
        payload = f"{query}&{signed}" if query else signed
        signature = credentials.signer.sign(payload.encode())
        return f"{base}?{payload}&signature={signature}", credentials.headers

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        hosts = {family: scrub(url) for family, url in self.hosts.items()}
        return (
            f"{type(self).__name__}({state}, hosts={hosts}, governor={self.governor!r}, "
            f"clock={self.clock!r})"
        )


async def _settle(permit: object) -> None:
    """Tell a shared store what became of a request (a local permit has nothing to settle):
    shielded, since it runs while the call unwinds, and bounded, since the store may be down."""
    settle = getattr(permit, "settle", None)
    if settle is not None:
        with anyio.move_on_after(SETTLE_SECONDS, shield=True):
            await settle()
