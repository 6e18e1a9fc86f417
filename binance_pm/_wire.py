"""One HTTP/1.1 connection of the Session's own sender (``_sender``), answers parsed in C.

A request is written straight to an ``asyncio.Protocol``; its answer is parsed by llhttp (through
``httptools``, the parser of Node.js and uvicorn) as the bytes arrive, and handed back whole by
one future. What the connection itself keeps:

- **a body cap**: a body longer than ``max_body``, by its ``Content-Length`` or as it arrives,
  fails the call and closes the connection; so does a header line longer than ``MAX_FIELD``
  bytes, or header (and trailer) fields or a head longer than ``MAX_HEAD`` in all;
- **framing as llhttp reads it** (strictly: both ``Content-Length`` and ``Transfer-Encoding``,
  a bad chunk size, an obs-fold all fail the call); interim 1xx answers are skipped; a body
  with neither length nor chunks ends when the server closes its side cleanly; a reset or our
  own close cuts it short (over TLS, a close without TLS's own goodbye cannot be told from a
  clean one, as with every asyncio client);
- **nothing trusted twice**: an answer followed by bytes nobody asked for, a ``Connection:
  close``, or anything short of a clean answer leaves the connection unusable;
- **a connection closed before any byte of its answer** says so apart (``ConnectionResetError``),
  so that the sender may send again a request it sent on a kept-alive connection.
"""

from __future__ import annotations

import asyncio

from httptools import (
    HttpParserCallbackError,
    HttpParserError,
    HttpParserUpgrade,
    HttpResponseParser,
)

from ._headers import Fields
from ._http import Answer, scrub, too_long

#: The longest status line and headers taken from an answer, and the longest header line.
MAX_HEAD = 64 * 1024
MAX_FIELD = 8190
CLOSED_EARLY = "the server closed the connection before answering"
CLOSED_BY_US = "the Session was closed while the request was out"
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
        self.ours = False  # closed by this side (a cancelled request, the sender's close)
        self.eof = False  # the server ended its side cleanly
        self.used = 0  # answers taken whole on this connection
        self.idle_since = 0.0
        self.waiter: asyncio.Future[Answer] | None = None
        self.parser = HttpResponseParser(self)
        self.fields_raw: list[tuple[bytes, bytes]] = []  # this answer's, as they came
        self.chunks: list[bytes] = []
        self.size = 0
        self.heard = 0  # bytes of this answer so far
        self.fields = 0  # bytes of its header (and trailer) fields so far
        self.headed = False
        self.until_close = False
        self.tunnel: bytearray | None = None  # a CONNECT's answer, while one is awaited

    # -- asyncio's side ------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        if self.ours:  # closed while it was being made
            transport.abort()  # type: ignore[attr-defined]

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.reusable = False
        waiter = self.waiter
        if waiter is None or waiter.done():
            return
        if self.ours:
            waiter.set_exception(ConnectionAbortedError(CLOSED_BY_US))
        elif self.headed and self.until_close and self.eof and exc is None:
            self._finish(self.parser.get_status_code())  # the server's clean close ends the body
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
        self.eof = True
        self.reusable = False
        return False  # close; connection_lost then ends an answer delimited by the close

    # -- the parser's side ---------------------------------------------------------------------

    def on_message_begin(self) -> None:
        waiter = self.waiter
        if waiter is not None and waiter.done():
            self.reusable = False  # an answer nobody asked for follows the one that was

    def on_header(self, name: bytes, value: bytes) -> None:
        size = len(name) + len(value)
        if size > MAX_FIELD:
            raise Refused(f"malformed answer: a header line longer than {MAX_FIELD:,} bytes")
        self.fields += size
        if self.fields > MAX_HEAD:  # trailers too: a chunked body may end in any number
            raise Refused(f"malformed answer: headers longer than {MAX_HEAD:,} bytes")
        self.fields_raw.append((name, value))  # decoded only if read (``Fields``)

    def on_headers_complete(self) -> None:
        self.headed = True
        parser = self.parser
        if not parser.should_keep_alive():
            self.reusable = False
        headers = Fields(self.fields_raw)
        length = headers.get("Content-Length")
        if length is not None:
            if length.isdigit() and int(length) > self.max_body:
                raise Refused(too_long(self.max_body))
        elif parser.get_status_code() not in (204, 304) and not _chunked(headers):
            self.until_close = True  # llhttp ends such a body only when told the stream ended

    def on_body(self, body: bytes) -> None:
        self.size += len(body)
        if self.size > self.max_body:
            raise Refused(too_long(self.max_body))
        self.chunks.append(body)

    def on_message_complete(self) -> None:
        status = self.parser.get_status_code()
        if status < 200:  # an interim answer (100 Continue): the real one follows
            self.fields_raw, self.chunks, self.size, self.headed = [], [], 0, False
            self.fields, self.until_close = 0, False
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
            self.size, self.heard, self.fields, self.headed = 0, 0, 0, False
        if self.lost or transport.is_closing():  # the write would be dropped unseen
            waiter.set_exception(ConnectionResetError(CLOSED_EARLY))
        else:
            transport.write(request)
        return waiter

    def _finish(self, status: int) -> None:
        waiter = self.waiter
        if waiter is None or waiter.done():
            self.close()  # a second answer to one request
            return
        self.used += 1
        chunks, raw = self.chunks, self.fields_raw
        self.chunks, self.fields_raw = [], []  # anything parsed after goes elsewhere
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        waiter.set_result(Answer(status, Fields(tuple(raw)), body))

    def _fail(self, reason: str) -> None:
        self.close()
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(Refused(reason))

    def close(self) -> None:
        """Close at once: nothing is left to flush, and a TLS goodbye may never be answered."""
        self.reusable = False
        self.ours = True
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
        elif parts[1] == "200" and len(tunnel) > end + 4:
            self._fail("the proxy sent bytes before the tunnel was made")
        else:  # a refusal's body, if any, is not read: the connection is closed
            waiter = self.waiter
            if waiter is not None and not waiter.done():
                waiter.set_result(Answer(int(parts[1]), Fields(()), b""))


def _chunked(headers: Fields) -> bool:
    """Whether the body is chunked: ``chunked`` is the last of its transfer codings (with any
    other last, the body ends when the connection does)."""
    codings = ",".join(headers.getall("Transfer-Encoding"))
    return codings.rpartition(",")[2].strip().lower() == "chunked"
