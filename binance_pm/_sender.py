"""The Session's own sender under asyncio: HTTP/1.1 on kept-alive connections (``_wire``).

It keeps what a signed request needs from an HTTP client:

- **TLS** with Python's default context (the chain and the host name verified; ``SSL_CERT_FILE``
  and ``SSL_CERT_DIR`` apply), made once per sender;
- **proxies**: ``Session(proxy=...)`` or ``HTTP(S)_PROXY``/``NO_PROXY`` (read once per origin); a
  plain request goes to the proxy whole, an ``https`` one through a ``CONNECT`` tunnel; the
  credentials in a proxy's URL go as ``Proxy-Authorization``;
- **no redirects**: a 3xx is handed back as it is, for the Session to refuse;
- **a pool per origin (and proxy)**: at most ``DEFAULT_CONNECTIONS`` open in all, the most
  recently used taken first, each closed after ``KEEPALIVE_SECONDS`` idle; when the pool is
  full, an idle connection to another origin is closed to make room, else the call waits in
  line;
- **one retry, of a stale connection only**: a request sent on a kept-alive connection that the
  server closes before any byte of its answer (it closed it while it was idle) goes once more
  on a new one; a new connection's failure is the caller's to judge;
- **nothing left behind**: a cancelled call closes its connection; closing the sender closes
  every connection, ends connections still being made (a TLS handshake a silent server never
  completes included) and fails the calls waiting or out.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ssl
from collections.abc import Coroutine, Mapping
from typing import Any, NamedTuple, TypeVar
from urllib.parse import urlsplit

import httpx

from ._exceptions import TransportError
from ._http import (
    _DEFAULT_PORTS,
    DEFAULT_CONNECTIONS,
    DEFAULT_MAX_BODY,
    HEADERS,
    KEEPALIVE_SECONDS,
    Answer,
    HttpxSender,
    Sender,
    _describe,
    _os_reason,
    _proxy_authorization,
    _proxy_for,
    scrub,
)
from ._wire import CLOSED_BY_US, CLOSED_EARLY, Refused, Wire


def default_sender(
    *, http: httpx.AsyncClient | None, proxy: str | None, max_body: int, under_asyncio: bool
) -> Sender:
    """The sender a Session makes for itself: through the caller's ``http`` client if there is
    one, else our own under asyncio, else through an httpx client of its own (under trio)."""
    if http is not None:
        return HttpxSender(http, owned=False, max_body=max_body)
    if under_asyncio:
        return WireSender(headers=HEADERS, proxy=proxy, max_body=max_body)
    client = httpx.AsyncClient(
        headers=HEADERS,
        proxy=proxy,
        follow_redirects=False,
        limits=httpx.Limits(
            max_connections=DEFAULT_CONNECTIONS, max_keepalive_connections=DEFAULT_CONNECTIONS
        ),
    )
    return HttpxSender(client, owned=True, max_body=max_body)


T = TypeVar("T")


class Route(NamedTuple):
    """Where a request's connection goes: the exchange's origin and, if any, its proxy."""

    scheme: str
    host: str
    port: int
    proxy: str | None


class WireSender:
    """The :class:`~binance_pm.Sender` a Session makes for itself under asyncio."""

    __slots__ = (
        "_closing",
        "_fixed",
        "_idle",
        "_limit",
        "_max_body",
        "_open",
        "_proxy",
        "_routes",
        "_slots",
        "_ssl",
        "_timer",
        "_wires",
        "closed",
    )

    def __init__(
        self,
        *,
        headers: Mapping[str, str],
        proxy: str | None = None,
        max_body: int = DEFAULT_MAX_BODY,
        connections: int = DEFAULT_CONNECTIONS,
    ) -> None:
        self._fixed = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        self._proxy = proxy
        self._max_body = max_body
        self._limit = connections
        self._routes: dict[str, tuple[Route, str]] = {}
        self._idle: dict[Route, list[Wire]] = {}
        self._wires: dict[Wire, Route] = {}  # every connection open or opening
        self._open = 0
        self._slots: collections.deque[asyncio.Future[None]] = collections.deque()
        self._ssl: ssl.SSLContext | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._closing: asyncio.Future[None] | None = None  # set when closed: ends connecting
        self.closed = False

    async def get(
        self, url: str, headers: Mapping[str, str], *, endpoint: str, method: str = "GET"
    ) -> Answer:
        failure: TransportError
        try:
            route, request = self._request(url, headers, method)
            return await self._exchange(route, request)
        except Refused as exc:
            failure = TransportError(str(exc), endpoint=endpoint)
        except (ValueError, UnicodeError) as exc:
            failure = TransportError(
                f"cannot send this request: {_describe(exc)}", endpoint=endpoint
            )
        raise failure  # outside the handler: nothing of the URL chained to it

    def _request(self, url: str, headers: Mapping[str, str], method: str) -> tuple[Route, bytes]:
        after = url.find("://") + 3
        start = url.find("/", after)
        query = url.find("?", after)
        if start < 0 or 0 <= query < start:  # no path: "/" is its path
            start = query
            base, target = (url, "/") if start < 0 else (url[:start], "/" + url[start:])
        else:
            base, target = url[:start], url[start:]
        known = self._routes.get(base)
        if known is None:
            known = self._routes[base] = self._route(base)
        route, fixed = known
        if route.proxy is not None and route.scheme == "http":
            target = base + target  # a proxy is asked for the whole URL
        extra = "".join([f"{name}: {value}\r\n" for name, value in headers.items()])
        if extra.count("\n") != len(headers) or extra.count("\r") != len(headers):
            raise ValueError("a header holds a line break")
        if " " in target or "\n" in target or "\r" in target:
            raise ValueError("the URL holds white space")
        if method != "GET":
            extra += "Content-Length: 0\r\n"  # no body: said, as front ends may insist on
        return route, f"{method} {target} HTTP/1.1\r\n{fixed}{extra}\r\n".encode("ascii")

    def _route(self, base: str) -> tuple[Route, str]:
        parts = urlsplit(base)
        if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {scrub(base)[:80]!r}")
        port = parts.port or _DEFAULT_PORTS[parts.scheme]
        proxy = _proxy_for(base, self._proxy)
        if proxy is not None:
            if "://" not in proxy:
                proxy = "http://" + proxy  # HTTPS_PROXY=host:port, as httpx takes it
            scheme = urlsplit(proxy).scheme
            if scheme not in _DEFAULT_PORTS or not urlsplit(proxy).hostname:
                raise ValueError(f"the proxy for {parts.hostname} is not an http(s) URL ({scheme})")
        fixed = f"Host: {parts.netloc.rpartition('@')[2]}\r\n{self._fixed}"
        if proxy is not None and parts.scheme == "http":
            fixed += _proxy_authorization(proxy)
        return Route(parts.scheme, parts.hostname, port, proxy), fixed

    async def _exchange(self, route: Route, request: bytes) -> Answer:
        for attempt in (0, 1):
            wire = await self._take(route, fresh=attempt > 0)
            reused = wire.used > 0
            try:
                answer = await wire.send(request)
            except ConnectionAbortedError:
                self._drop(wire)
                raise Refused(CLOSED_BY_US) from None
            except ConnectionResetError:
                self._drop(wire)
                if self.closed:
                    raise Refused(CLOSED_BY_US) from None
                if reused:
                    continue  # closed by the server while idle: once more, on a new connection
                raise Refused(CLOSED_EARLY) from None
            except BaseException:
                self._drop(wire)  # cancelled, or refused: its state is not known
                raise
            if wire.reusable and not wire.lost and not self.closed:
                self._rest(route, wire)
            else:
                self._drop(wire)
            return answer
        raise AssertionError("unreachable")  # pragma: no cover

    # -- the pool ------------------------------------------------------------------------------

    async def _take(self, route: Route, *, fresh: bool) -> Wire:
        loop = asyncio.get_running_loop()
        while True:
            if self.closed:
                raise Refused("the Session was closed")
            idle = self._idle.get(route)
            while idle and not fresh:
                wire = idle.pop()
                transport = wire.transport
                if (
                    wire.reusable
                    and transport is not None
                    and not transport.is_closing()
                    and loop.time() - wire.idle_since < KEEPALIVE_SECONDS
                ):
                    return wire
                self._drop(wire)
            if self._open < self._limit:
                break
            if not self._close_oldest_idle():
                slot = loop.create_future()
                self._slots.append(slot)
                try:
                    await slot
                except BaseException:
                    if slot.done() and not slot.cancelled():
                        self._free()  # the slot it was given goes to the next in line
                    else:
                        with contextlib.suppress(ValueError):  # unless _free took it out
                            self._slots.remove(slot)
                    raise
        self._open += 1
        wire = Wire(self._max_body)
        self._wires[wire] = route
        try:
            await self._connect(route, wire, loop)
        except BaseException:
            self._drop(wire)
            raise
        if self.closed or wire not in self._wires:  # closed while it connected
            self._drop(wire)
            raise Refused("the Session was closed")
        return wire

    def _rest(self, route: Route, wire: Wire) -> None:
        loop = asyncio.get_running_loop()
        wire.idle_since = loop.time()
        self._idle.setdefault(route, []).append(wire)
        if self._timer is None:
            self._timer = loop.call_later(KEEPALIVE_SECONDS, self._sweep)
        self._free()

    def _drop(self, wire: Wire) -> None:
        wire.close()
        if self._wires.pop(wire, None) is not None:
            self._open -= 1
            self._free()

    def _free(self) -> None:
        """Wake the first in line for a connection: one was freed, or left idle."""
        slots = self._slots
        while slots:
            slot = slots.popleft()
            if not slot.done():
                slot.set_result(None)
                return

    def _close_oldest_idle(self) -> bool:
        oldest: Wire | None = None
        for wires in self._idle.values():
            if wires and (oldest is None or wires[0].idle_since < oldest.idle_since):
                oldest = wires[0]
        if oldest is None:
            return False
        self._idle[self._wires[oldest]].remove(oldest)
        self._drop(oldest)
        return True

    def _sweep(self) -> None:
        self._timer = None
        now = asyncio.get_running_loop().time()
        for wires in self._idle.values():
            for wire in [w for w in wires if now - w.idle_since >= KEEPALIVE_SECONDS or w.lost]:
                wires.remove(wire)
                self._drop(wire)
        if any(self._idle.values()):
            self._timer = asyncio.get_running_loop().call_later(KEEPALIVE_SECONDS, self._sweep)

    # -- opening a connection ------------------------------------------------------------------

    def _context(self) -> ssl.SSLContext:
        if self._ssl is None:
            self._ssl = ssl.create_default_context()
        return self._ssl

    async def _connect(self, route: Route, wire: Wire, loop: asyncio.AbstractEventLoop) -> None:
        host, port, tls = route.host, route.port, route.scheme == "https"
        where = f"{host}:{port}"
        if route.proxy is not None:
            proxy = urlsplit(route.proxy)
            host = proxy.hostname or ""
            port = proxy.port or _DEFAULT_PORTS.get(proxy.scheme, 80)
            where = f"the proxy {host}:{port}"
            tls = proxy.scheme == "https"
        try:
            await self._unless_closed(
                loop,
                loop.create_connection(
                    lambda: wire, host, port, ssl=self._context() if tls else None
                ),
            )
        except ssl.SSLError as exc:
            raise Refused(f"cannot connect to {where}: TLS: {_describe(exc)}") from None
        except OSError as exc:
            raise Refused(f"cannot connect to {where}: {_os_reason(exc)}") from None
        if route.proxy is not None and route.scheme == "https":
            await self._tunnel(route, wire, loop)

    async def _tunnel(self, route: Route, wire: Wire, loop: asyncio.AbstractEventLoop) -> None:
        assert route.proxy is not None
        target = f"{route.host}:{route.port}"
        request = f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n"
        request += _proxy_authorization(route.proxy) + "\r\n"
        try:
            answer = await wire.ask_tunnel(request.encode("ascii"))
        except ConnectionAbortedError:
            raise Refused("the Session was closed") from None
        except ConnectionResetError:
            raise Refused("the proxy closed the connection instead of a tunnel") from None
        if answer.status != 200:
            raise Refused(f"the proxy refused a tunnel to {target}: status {answer.status}")
        transport = wire.transport
        assert transport is not None
        try:
            tls = await self._unless_closed(
                loop,
                loop.start_tls(transport, wire, self._context(), server_hostname=route.host),
            )
        except (OSError, RuntimeError) as exc:
            raise Refused(
                f"cannot connect to {target} through the proxy: {_describe(exc)}"
            ) from None
        if tls is None:  # pragma: no cover - the transport closed meanwhile
            raise Refused(CLOSED_EARLY)
        wire.transport = tls

    async def _unless_closed(
        self, loop: asyncio.AbstractEventLoop, step: Coroutine[Any, Any, T]
    ) -> T:
        """``step``'s result, unless the sender is closed first (a TLS handshake that a silent
        server never completes would otherwise outlast the close)."""
        if self._closing is None:
            self._closing = loop.create_future()
        task = loop.create_task(step)
        try:
            await asyncio.wait((task, self._closing), return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not task.done():
                task.cancel()
                task.add_done_callback(_quietly)
        if not task.done() or task.cancelled():
            raise Refused("the Session was closed")
        return task.result()

    async def aclose(self) -> None:
        self.closed = True
        if self._closing is not None and not self._closing.done():
            self._closing.set_result(None)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for wire in list(self._wires):
            self._drop(wire)
        self._idle.clear()
        while self._slots:
            slot = self._slots.popleft()
            if not slot.done():
                slot.set_result(None)  # it finds the sender closed
        await asyncio.sleep(0)  # each connection's close runs: its socket is closed on return


def _quietly(task: asyncio.Task[Any]) -> None:
    """A step given up on: whatever it ended with is of no interest."""
    if not task.cancelled():
        task.exception()
