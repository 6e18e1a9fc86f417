"""The call path: one exchange clock, one rate-limit governor and one sender, for many accounts.

A call reads top to bottom in :meth:`Engine._attempts`, one attempt per turn of its loop:

1. **clock**: a signed call's timestamp must be the exchange's, so the clock is measured first
   if it never was (or is due again); the time is fetched as a call of its own, unsigned, so it
   goes this same way, once;
2. **budget**: the governor grants a permit for the endpoint's weight (its fast path first);
3. **send once**: the request is signed (its timestamp read only now) and sent, and the permit
   is told what became of it, answer or not;
4. **decide**: :func:`binance_pm._retry.decide`, a pure function, names the next step from the
   outcome: return the decoded result, measure the clock again (``-1021``), wait for the budget
   (429, 418), back off (5xx, no answer) or raise. The loop does what it says.

The whole call is bounded by its timeout: under asyncio by one timer for every call
(``_deadlines.py``), elsewhere by anyio's cancel scopes. :class:`~binance_pm.Session` adds
clients, polling and streams on top.
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

from ._call import BACKOFF, BUDGET, CLOCK, SEND, Call, ban_headers
from ._clock import ExchangeClock
from ._config import (
    MAX_RETRIES,
    RECV_WINDOW,
    TIMEOUT,
    check_recv_window,
    check_seconds,
    check_source_address,
    resolve_hosts,
)
from ._credentials import Credentials
from ._deadlines import Deadlines
from ._endpoints import API_TIME, Endpoint
from ._exceptions import APIError, IPBannedError, RateLimitError, SessionError, TransportError
from ._governor import Governor
from ._hook import Permit, RateLimitHook
from ._http import DEFAULT_MAX_BODY, Answer, Sender, scrub
from ._limits import Family
from ._retry import RAISE, RESYNC, RETURN, WAIT, decide
from ._sender import default_sender

log = logging.getLogger("binance_pm")

if sys.version_info >= (3, 13):  # a TypeVar's default (PEP 696)
    from typing import TypeVar as DefaultTypeVar
else:
    from typing_extensions import TypeVar as DefaultTypeVar

T = TypeVar("T")
EngineT = TypeVar("EngineT", bound="Engine[Any]")
#: The governor's type: a :class:`Governor` unless the caller gave another hook.
HookT = DefaultTypeVar("HookT", bound=RateLimitHook, default=Governor, covariant=True)

#: Seconds a call waits, at most, for its permit's ``settle``.
SETTLE_SECONDS = 2.0
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
        sender: Sender | None = None,
        recv_window: int = RECV_WINDOW,
        timeout: float = TIMEOUT,
        max_retries: int = MAX_RETRIES,
        proxy: str | None = None,
        max_body: int = DEFAULT_MAX_BODY,
        source_address: str | None = None,
    ) -> None:
        self.timeout = check_seconds("timeout", timeout)
        """Seconds a whole call may take (waiting for budget and retries included)."""
        if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
            raise ValueError(f"max_retries must be a whole number >= 0, not {max_retries!r}")
        if max_retries > 100:
            raise ValueError(f"max_retries must be at most 100, not {max_retries}")
        if isinstance(max_body, bool) or not isinstance(max_body, int) or max_body < 1024:
            raise ValueError(f"max_body must be a whole number of bytes >= 1024, not {max_body!r}")
        if http is not None and not isinstance(http, httpx.AsyncClient):
            raise TypeError(f"http must be an httpx.AsyncClient, not {type(http).__name__}")
        if http is not None and sender is not None:
            raise ValueError("give http= or sender=, not both: each is a way to send")
        if proxy is not None and (
            not isinstance(proxy, str) or urlsplit(proxy).scheme not in ("http", "https")
        ):
            raise ValueError("proxy must be an http(s) URL")
        self.source_address = check_source_address(source_address, given=http or sender)
        """The local IP address every connection is made from (``None``: the system's
        choice): the egress whose IP limits this Session's requests count against."""
        self.hosts: dict[Family, str] = resolve_hosts(base_url, hosts)
        """Where each API family's requests go: ``{"papi": "https://papi.binance.com", …}``."""
        self.recv_window = check_recv_window(recv_window)
        """Milliseconds a signed request stays valid after its timestamp (``recvWindow``)."""
        self.max_retries = max_retries
        """Retries of a call after a 5xx answer or a transport failure, backing off (a 429 or
        418 waits for its ``Retry-After`` instead)."""
        # Typed as the caller's hook, or Governor when none was given (HookT's default).
        self._governor = cast(HookT, governor if governor is not None else Governor())
        self.clock = ExchangeClock()
        """The exchange's clock as measured by this Session: what signed timestamps use."""
        self._http = http
        self._proxy = proxy
        self._max_body = max_body
        self._given = sender  # the caller's: used as it is, never closed here
        self._sender: Sender | None = None
        self._loop: asyncio.AbstractEventLoop | None = None  # the loop the sender is bound to
        self._deadlines: Deadlines | None = None  # under asyncio (3.11+), every call's deadline
        # Whether permits are settled after each request: not those of a Governor counting in
        # this process alone, which have nothing to tell (chosen with the sender).
        self._settles = True
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
        """Close the connection pool (a caller's ``http`` client or ``sender`` stays open).
        Calls still in flight end with a :class:`~binance_pm.TransportError`; later ones raise
        :class:`~binance_pm.SessionError`. Safe to call twice."""
        self._closed = True
        sender, self._sender = self._sender, None
        if sender is not None and sender is not self._given:
            await sender.aclose()

    @property
    def governor(self) -> HookT:
        """The rate-limit governor: the :class:`Governor` this Session made, or the one (or the
        hook) it was given."""
        return self._governor

    @property
    def closed(self) -> bool:
        """Whether :meth:`aclose` has begun: no call may start any more."""
        return self._closed

    def _check_open(self) -> None:
        if self._closed:
            raise SessionError("this Session is closed")

    def _sender_here(self) -> Sender:
        """The sender, chosen on first use (its connections belong to the running loop); a typed
        error when closed or on another loop."""
        if self._closed:
            raise SessionError("this Session is closed")
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
        governor = self._governor
        self._settles = not isinstance(governor, Governor) or governor.store is not None
        # One timer for every call's deadline cancels a task outright, which would cut short
        # a permit's shielded settle: so only when permits are not settled.
        if _LEAN and loop is not None and not self._settles:
            self._deadlines = Deadlines(loop)
        if self._given is not None:
            sender = self._given
        else:
            sender = default_sender(
                http=self._http,
                proxy=self._proxy,
                max_body=self._max_body,
                under_asyncio=loop is not None,
                source_address=self.source_address,
            )
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
        timeout: float | None = None,  # noqa: ASYNC109
        on_grant: Callable[[], None] | None = None,
    ) -> T:
        """Send ``endpoint`` (signed with ``credentials`` if it is signed) and decode its answer.

        Retries, clock resynchronisation and rate limiting happen here; every failure is a
        :class:`BinancePMError`. ``timeout`` is the seconds this call may take, instead of the
        Session's; ``on_grant`` is called when the governor lets the request out.
        """
        window = self.recv_window if recv_window is None else check_recv_window(recv_window)
        seconds = self.timeout if timeout is None else check_seconds("timeout", timeout)
        if endpoint.signed and credentials is None:
            raise ValueError(f"{endpoint.label} is signed and needs an account's credentials")
        sender = self._sender_here()
        query = (
            "&".join([f"{name}={quote(value, safe='')}" for name, value in params])
            if params
            else ""
        )
        deadlines, loop = self._deadlines, self._loop
        task = asyncio.current_task() if deadlines is not None else None
        if task is not None and deadlines is not None and loop is not None:
            ends = loop.time() + seconds
            call = Call(endpoint, query, credentials, window, on_grant, ends)
            cancelling = task.cancelling()  # type: ignore[attr-defined,unused-ignore]
            watch = deadlines.add(ends, task)
            try:
                result: T = await self._attempts(sender, call)
                return result
            except asyncio.CancelledError:
                # Ours, unless someone else cancelled the task too (as asyncio.timeout tells).
                if not watch.expired or task.uncancel() > cancelling:  # type: ignore[attr-defined,unused-ignore]
                    raise
            finally:
                deadlines.done(watch)
        else:
            with anyio.move_on_after(seconds) as scope:
                call = Call(endpoint, query, credentials, window, on_grant, scope.deadline)
                result = await self._attempts(sender, call)
                return result
        raise call.too_late(seconds)

    async def _attempts(self, sender: Sender, call: Call) -> Any:
        """The call, one attempt per turn, until :func:`decide` says to return or raise."""
        endpoint, clock, governor = call.endpoint, self.clock, self._governor
        while True:
            if endpoint.signed and clock.stale():
                call.phase = CLOCK
                await clock.ensure(partial(self._server_time, sender, call))
            seen = clock.generation
            permit = governor.try_acquire(endpoint, account=call.account)  # no coroutine
            if permit is None:
                permit = await self._acquire(call)
            if call.on_grant is not None:
                try:  # a poll's gate lets the next call of this budget in; or it says no
                    call.on_grant()
                except BaseException:
                    permit.cancel()  # the request never left: its weight goes back
                    if self._settles:
                        await _settle(permit)
                    raise
            outcome = await self._send_once(sender, call, permit)

            decision = decide(call, outcome, max_retries=self.max_retries, clock=anyio.current_time)
            step, error = decision.step, decision.error
            if step == RETURN:
                return decision.value
            log.debug("%s %s -> %s (%s)", endpoint.label, call.masked or "", error, step)
            if step == RAISE:
                assert error is not None
                raise error
            if step == RESYNC:
                call.resynced = True
                call.phase = CLOCK
                await clock.resync(partial(self._server_time, sender, call), seen=seen)
            elif step == WAIT:  # then the next acquire waits until the governor reopens
                assert isinstance(error, APIError)
                call.refusals += 1
                call.refused = error
                if decision.delay:
                    call.phase = BUDGET
                    await anyio.sleep(decision.delay)
            else:
                call.retries += 1
                call.phase, call.error = BACKOFF, error
                await anyio.sleep(decision.delay)

    async def _server_time(self, sender: Sender, call: Call) -> int:
        """The exchange's time, for the clock: a call of its own (unsigned: it never needs the
        clock itself), within ``call``'s timeout.

        No answer at all is told as the failure of ``call``, the one the user made, with the
        clock check named as the step that failed."""
        timing = Call(API_TIME, "", None, self.recv_window, None, call.ends)
        try:
            answer: int = (await self._attempts(sender, timing)).server_time
        except TransportError as exc:
            message = f"{exc.message} (while checking the exchange clock, {API_TIME.label})"
            raise TransportError(
                message, endpoint=call.endpoint.label, api_key=call.masked
            ) from None
        return answer

    async def _acquire(self, call: Call) -> Permit:
        """A permit for the call's weight, once the budget has room (its fast path, tried
        first by the caller, found none)."""
        call.phase = BUDGET
        try:
            permit = await self._governor.acquire(
                call.endpoint, account=call.account, deadline=call.ends
            )
        except (RateLimitError, IPBannedError):
            # Still shut when the deadline comes: the exchange's own refusal says it best.
            if call.refused is not None:
                raise call.refused from None
            raise
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
            if self._settles:
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
            if self._settles:
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


async def _settle(permit: Permit) -> None:
    """Tell a permit's hook what became of its request: shielded, since it runs while the call
    unwinds, and for ``SETTLE_SECONDS`` at most, since a shared store may be down."""
    with anyio.move_on_after(SETTLE_SECONDS, shield=True):
        await permit.settle()
