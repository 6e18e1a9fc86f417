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
from collections.abc import Mapping
from urllib.parse import urlsplit

import httpx

from ._connect import Connector, Route
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
    _proxy_authorization,
    _proxy_for,
    scrub,
)
from ._wire import CLOSED_BY_US, CLOSED_EARLY, Refused, Wire


def default_sender(
    *,
    http: httpx.AsyncClient | None,
    proxy: str | None,
    max_body: int,
    under_asyncio: bool,
    source_address: str | None = None,
) -> Sender:
    """The sender a Session makes for itself: through the caller's ``http`` client if there is
    one, else our own under asyncio, else through an httpx client of its own (under trio);
    its connections made from ``source_address`` when one is given."""
    if http is not None:
        return HttpxSender(http, owned=False, max_body=max_body)
    if under_asyncio:
        return WireSender(
            headers=HEADERS, proxy=proxy, max_body=max_body, source_address=source_address
        )
    limits = httpx.Limits(
        max_connections=DEFAULT_CONNECTIONS, max_keepalive_connections=DEFAULT_CONNECTIONS
    )
    if source_address is None:
        client = httpx.AsyncClient(
            headers=HEADERS, proxy=proxy, follow_redirects=False, limits=limits
        )
    else:  # one transport, bound to the address: HTTP(S)_PROXY is not read, proxy= is
        transport = httpx.AsyncHTTPTransport(
            proxy=proxy, limits=limits, local_address=source_address
        )
        client = httpx.AsyncClient(
            headers=HEADERS, follow_redirects=False, transport=transport, trust_env=False
        )
    return HttpxSender(client, owned=True, max_body=max_body)


class WireSender:
    """The :class:`~binance_pm.Sender` a Session makes for itself under asyncio."""

    __slots__ = (
        "_connector",
        "_fixed",
        "_idle",
        "_limit",
        "_max_body",
        "_open",
        "_proxy",
        "_routes",
        "_slots",
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
        source_address: str | None = None,
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
        self._timer: asyncio.TimerHandle | None = None
        self._connector = Connector(source_address)
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
        except ValueError as exc:  # UnicodeError too
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
            await self._connector.open(route, wire, loop)
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

    async def aclose(self) -> None:
        self.closed = True
        self._connector.close()
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
