"""Our own HTTP/1.1 sender under asyncio: kept-alive connections, answers parsed in C.

A request is written straight to an ``asyncio.Protocol``; its answer is parsed by llhttp (through
``httptools``, the parser of Node.js and uvicorn) as the bytes arrive, and handed back whole by
one future. That is all a call here needs, and it costs a quarter of a general client's CPU.
It keeps what a signed request needs from a client:

- **TLS** with the default context (certificates and the host name verified; ``SSL_CERT_FILE``
  and ``SSL_CERT_DIR`` apply), made once per sender;
- **proxies**: ``Session(proxy=...)`` or ``HTTP(S)_PROXY``/``NO_PROXY``; a plain request goes to
  the proxy whole, an ``https`` one through a ``CONNECT`` tunnel; credentials in the proxy's URL
  go as ``Proxy-Authorization``;
- **no redirects** (a 3xx is handed back as it is) and **a body cap**: a body longer than
  ``max_body``, by its ``Content-Length`` or as it arrives, fails the call and closes the
  connection; a head (status line and headers) longer than 64 KiB does the same;
- **connection reuse**: at most ``DEFAULT_CONNECTIONS`` open, each kept idle for
  ``KEEPALIVE_SECONDS``; a request on a reused connection that the server closes before any byte
  of its answer goes once more on a new one (the server had closed it while it was idle);
- **nothing left open**: a connection whose request was cancelled, or whose answer was not
  clean, is closed, and closing the sender closes every connection and fails waiting calls.
"""

from __future__ import annotations

import asyncio

from httptools import (
    HttpParserCallbackError,
    HttpParserError,
    HttpParserUpgrade,
    HttpResponseParser,
)
from multidict import CIMultiDict, CIMultiDictProxy

from ._http import (
    Answer,
    scrub,
)

#: The longest status line and headers taken from an answer, and the longest header line.
MAX_HEAD = 64 * 1024
MAX_FIELD = 8190
CLOSED_EARLY = "the server closed the connection before answering"
CUT_SHORT = "the answer's body was cut short or malformed"


class Refused(Exception):
    """Raised in a parser callback: the answer is refused for the reason given."""


class Wire(asyncio.Protocol):
    """One HTTP/1.1 connection, one request at a time."""

    def __init__(self, max_body: int) -> None:
        self.transport: asyncio.Transport | None = None
        self.max_body = max_body
        self.reusable = True
        self.lost = False
        self.used = 0  # answers taken whole on this connection
        self.idle_since = 0.0
        self.waiter: asyncio.Future[Answer] | None = None
        self.parser = HttpResponseParser(self)
        self.headers: CIMultiDict[str] = CIMultiDict()
        self.chunks: list[bytes] = []
        self.size = 0
        self.heard = 0  # bytes of this answer so far
        self.headed = False
        self.until_close = False
        self.tunnel: bytearray | None = None  # a CONNECT's answer, while one is awaited

    # -- asyncio's side ------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.reusable = False
        waiter = self.waiter
        if waiter is None or waiter.done():
            return
        if self.headed and self.until_close:
            self._finish(self.parser.get_status_code())  # the close ends the body
        elif self.heard == 0:
            waiter.set_exception(ConnectionResetError(CLOSED_EARLY))
        else:
            self._fail(CUT_SHORT if self.headed else CLOSED_EARLY)

    def data_received(self, data: bytes) -> None:
        waiter = self.waiter
        if waiter is None or waiter.done():
            self.close()  # bytes nobody asked for: the connection cannot be trusted again
            return
        if self.tunnel is not None:
            self._tunnel_answer(data)
            return
        self.heard += len(data)
        try:
            self.parser.feed_data(data)
        except HttpParserCallbackError as exc:
            cause = exc.__context__
            self._fail(str(cause) if isinstance(cause, Refused) else CUT_SHORT)
        except HttpParserUpgrade:
            self._fail("malformed answer: an upgrade, where an answer was due")
        except HttpParserError as exc:
            self._fail(f"malformed answer: {scrub(str(exc))[:200]}")
        else:
            if not self.headed and self.heard > MAX_HEAD and not waiter.done():
                self._fail(f"malformed answer: a head longer than {MAX_HEAD:,} bytes")

    def eof_received(self) -> bool:
        return False  # close; connection_lost then ends an answer delimited by the close

    # -- the parser's side ---------------------------------------------------------------------

    def on_message_begin(self) -> None:
        waiter = self.waiter
        if waiter is not None and waiter.done():
            self.reusable = False  # an answer nobody asked for follows the one that was

    def on_header(self, name: bytes, value: bytes) -> None:
        if len(name) + len(value) > MAX_FIELD:
            raise Refused(f"malformed answer: a header line longer than {MAX_FIELD:,} bytes")
        self.headers.add(name.decode("latin-1"), value.decode("latin-1"))

    def on_headers_complete(self) -> None:
        self.headed = True
        parser = self.parser
        if not parser.should_keep_alive():
            self.reusable = False
        length = self.headers.get("Content-Length")
        if length is not None:
            if length.isdigit() and int(length) > self.max_body:
                raise Refused(f"the answer is longer than {self.max_body:,} bytes; refused")
        elif "Transfer-Encoding" not in self.headers and parser.get_status_code() not in (
            204,
            304,
        ):
            self.until_close = True  # llhttp ends such a body only when told the stream ended

    def on_body(self, body: bytes) -> None:
        self.size += len(body)
        if self.size > self.max_body:
            raise Refused(f"the answer is longer than {self.max_body:,} bytes; refused")
        self.chunks.append(body)

    def on_message_complete(self) -> None:
        status = self.parser.get_status_code()
        if status < 200:  # an interim answer (100 Continue): the real one follows
            self.headers, self.chunks, self.size, self.headed = CIMultiDict(), [], 0, False
            self.until_close = False
            return
        self._finish(status)

    # -- this sender's side --------------------------------------------------------------------

    def send(self, request: bytes) -> asyncio.Future[Answer]:
        """Write ``request``; its answer, whole, by the future returned."""
        transport = self.transport
        assert transport is not None
        self.waiter = waiter = asyncio.get_running_loop().create_future()
        if self.used:
            self.parser = HttpResponseParser(self)
            self.size, self.heard, self.headed = 0, 0, False
        transport.write(request)
        return waiter

    def _finish(self, status: int) -> None:
        waiter = self.waiter
        if waiter is None or waiter.done():
            self.close()  # a second answer to one request
            return
        self.used += 1
        chunks, headers = self.chunks, self.headers
        self.chunks, self.headers = [], CIMultiDict()  # anything parsed after goes elsewhere
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        waiter.set_result(Answer(status, CIMultiDictProxy(headers), body))

    def _fail(self, reason: str) -> None:
        self.close()
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(Refused(reason))

    def close(self) -> None:
        """Close at once: nothing is left to flush, and a TLS goodbye may never be answered."""
        self.reusable = False
        if self.transport is not None:
            self.transport.abort()

    # -- a CONNECT tunnel ----------------------------------------------------------------------

    def ask_tunnel(self, request: bytes) -> asyncio.Future[Answer]:
        self.tunnel = bytearray()
        transport = self.transport
        assert transport is not None
        self.waiter = waiter = asyncio.get_running_loop().create_future()
        transport.write(request)
        return waiter

    def _tunnel_answer(self, data: bytes) -> None:
        tunnel = self.tunnel
        assert tunnel is not None
        tunnel += data
        end = tunnel.find(b"\r\n\r\n")
        if end < 0:
            if len(tunnel) > MAX_HEAD:
                self._fail("the proxy's answer to CONNECT is too long")
            return
        line = bytes(tunnel[: tunnel.find(b"\r\n")]).decode("latin-1")
        self.tunnel = None
        parts = line.split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
            self._fail(f"the proxy's answer to CONNECT is not HTTP: {scrub(line)[:80]!r}")
        elif len(tunnel) > end + 4:
            self._fail("the proxy sent bytes before the tunnel was made")
        else:
            waiter = self.waiter
            if waiter is not None and not waiter.done():
                waiter.set_result(Answer(int(parts[1]), CIMultiDictProxy(CIMultiDict()), b""))
