"""Opening the Session's own connections: TLS, a proxy's tunnel, a bound local address, and
an end to every connection still being made when the sender closes."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Coroutine
from typing import Any, NamedTuple, TypeVar
from urllib.parse import urlsplit

from ._http import _DEFAULT_PORTS, _describe, _os_reason, _proxy_authorization
from ._wire import CLOSED_EARLY, Refused, Wire

T = TypeVar("T")


class Route(NamedTuple):
    """Where a request's connection goes: the exchange's origin and, if any, its proxy."""

    scheme: str
    host: str
    port: int
    proxy: str | None


class Connector:
    """Makes connections for one sender: from ``source_address`` if given, with one TLS
    context (Python's default: the chain and the host name verified) made when first needed.
    """

    __slots__ = ("_closing", "_tls", "local")

    def __init__(self, source_address: str | None = None) -> None:
        self.local = None if source_address is None else (source_address, 0)
        self._tls: ssl.SSLContext | None = None
        self._closing: asyncio.Future[None] | None = None  # set when closed: ends connecting

    def close(self) -> None:
        """Every connection still being made ends now, with :class:`Refused`."""
        if self._closing is not None and not self._closing.done():
            self._closing.set_result(None)

    def _context(self) -> ssl.SSLContext:
        if self._tls is None:
            self._tls = ssl.create_default_context()
        return self._tls

    async def open(self, route: Route, wire: Wire, loop: asyncio.AbstractEventLoop) -> None:
        """Connect ``wire`` to ``route``'s origin (through its proxy's tunnel for ``https``);
        :class:`Refused`, saying where, if it cannot be."""
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
                    lambda: wire,
                    host,
                    port,
                    ssl=self._context() if tls else None,
                    local_addr=self.local,
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
            # Whatever it ended with is taken, even when this was cancelled as it failed.
            task.add_done_callback(_quietly)
        if not task.done() or task.cancelled():
            raise Refused("the Session was closed")
        return task.result()


def _quietly(task: asyncio.Task[Any]) -> None:
    """A step given up on: whatever it ended with is of no interest."""
    if not task.cancelled():
        task.exception()
