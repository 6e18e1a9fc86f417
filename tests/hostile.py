"""A hostile exchange on loopback: a raw TCP server that answers from a script, byte for byte.

Unlike an ASGI app behind a real HTTP server, it can answer anything: a bad status line or header
line, a broken chunk, a body shorter or longer than its ``Content-Length``, an oversized header,
a stall, a hang, a dropped or reset connection. Tests push :class:`Answer` scripts; every request
(the time endpoint's too) takes the next one, in order, and once the script is used up each
request gets a good answer: the documented example of its path, or the time now.

::

    async with HostileServer() as server:
        server.push(Answer(status=429, headers=((b"Retry-After", b"0"),)))
        async with Session(base_url=server.url) as session:
            ...
        server.requests  # every request read, in order
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import socket
import ssl
import struct
import time
import traceback
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, fields, replace
from types import TracebackType
from typing import Literal
from urllib.parse import parse_qsl, unquote, urlsplit

from .documented import DOCUMENTED, fixture_bytes

#: How the body is delimited: its true ``Content-Length``; chunked; by closing the connection;
#: a ``Content-Length`` 100 bytes too long or 3 too short; a chunk size that is not hex; both a
#: length and chunked.
Framing = Literal["length", "chunked", "close", "long", "short", "bad-chunk", "both"]
#: What follows the answer: keep the connection for the next request; close it; reset it (RST);
#: or hang, holding it open and silent until the client leaves.
End = Literal["keep", "close", "reset", "hang"]

#: Replaced, in header values, by the URL of the server's ``witness`` (a second server that
#: must never be asked anything, since a signed request must never follow a redirect).
WITNESS = b"{witness}"

TIME_PATHS = ("/api/v3/time", "/fapi/v1/time")
HEAD_LIMIT = 65536


@dataclass(frozen=True)
class Request:
    """One request as it arrived: its request line and header lines, undecoded."""

    method: str
    target: str
    headers: tuple[tuple[str, str], ...] = field(repr=False)
    raw: bytes = field(repr=False)
    peer: str = field(default="", repr=False)  # the client's IP address

    @property
    def path(self) -> str:
        return urlsplit(self.target).path

    @property
    def query(self) -> str:
        return urlsplit(self.target).query

    @property
    def params(self) -> dict[str, str]:
        return dict(parse_qsl(self.query, keep_blank_values=True))

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None

    @classmethod
    def parse(cls, head: bytes) -> Request:
        lines = head.decode("latin-1").split("\r\n")
        method, _, rest = lines[0].partition(" ")
        target = rest.rpartition(" ")[0] or rest
        headers = tuple(
            (name.strip(), value.strip())
            for name, _, value in (line.partition(":") for line in lines[1:] if line)
        )
        return cls(method, target, headers, head)


# -- bodies ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Good:
    """The good answer for the request's path: its documented example (for the asset asked,
    if one was), ``{"serverTime": <now>}`` from a time endpoint."""


@dataclass(frozen=True)
class Raw:
    """These bytes, whatever was asked."""

    data: bytes


@dataclass(frozen=True)
class Mutated:
    """The good answer with the value of its ``member``-th scalar member (counting from 0,
    modulo how many there are) replaced by the JSON text ``value``, which need not be valid."""

    member: int
    value: bytes


@dataclass(frozen=True)
class Truncated:
    """The first ``size`` bytes of the good answer, framed as if that were all of it."""

    size: int


@dataclass(frozen=True)
class Nested:
    """JSON nested ``depth`` levels deep: ``[[[…]]]``, or ``{"a":{"a":…}}`` with ``objects``."""

    depth: int
    objects: bool = False


@dataclass(frozen=True)
class ErrorJSON:
    """The exchange's error shape, ``{"code": <code>, "msg": "<msg>"}``, from raw bytes (so the
    code may be 400 digits long and the message invalid UTF-8)."""

    code: bytes
    msg: bytes


@dataclass(frozen=True)
class Time:
    """A time endpoint's answer with this raw ``serverTime``, whatever was asked."""

    server_time: bytes


@dataclass(frozen=True)
class Echo:
    """An error page that quotes the request line, as some proxies' pages do."""


Body = Good | Raw | Mutated | Truncated | Nested | ErrorJSON | Time | Echo

_ASSET = re.compile(rb'("asset"\s*:\s*)"[^"]*"')
_MEMBER = re.compile(rb'"[A-Za-z]+"\s*:\s*("(?:[^"\\]|\\.)*"|-?[0-9][0-9.eE+-]*|true|false|null)')


def good_body(request: Request) -> tuple[int, bytes]:
    """The status and body a well-behaved exchange gives ``request``."""
    path = request.path
    if path in TIME_PATHS:
        return 200, b'{"serverTime":%d}' % int(time.time() * 1000)
    if path == "/papi/v1/ping":
        return 200, b"{}"
    if path not in DOCUMENTED:
        return 404, b'{"code":-1000,"msg":"no such path"}'
    asset = request.params.get("asset")
    if path == "/papi/v1/balance" and asset:
        body = fixture_bytes("papi_balance_one.json")
    else:
        body = fixture_bytes(DOCUMENTED[path])
    if asset:
        body = _ASSET.sub(lambda m: m.group(1) + b'"' + asset.encode() + b'"', body)
    return 200, body


def render_body(spec: Body, request: Request) -> bytes:
    """The body bytes ``spec`` stands for, as an answer to ``request``."""
    if isinstance(spec, Good):
        return good_body(request)[1]
    if isinstance(spec, Raw):
        return spec.data
    if isinstance(spec, Mutated):
        body = good_body(request)[1]
        members = list(_MEMBER.finditer(body))
        if not members:
            return body
        start, end = members[spec.member % len(members)].span(1)
        return body[:start] + spec.value + body[end:]
    if isinstance(spec, Truncated):
        return good_body(request)[1][: spec.size]
    if isinstance(spec, Nested):
        if spec.objects:
            return b'{"a":' * spec.depth + b"1" + b"}" * spec.depth
        return b"[" * spec.depth + b"]" * spec.depth
    if isinstance(spec, ErrorJSON):
        return b'{"code":' + spec.code + b',"msg":"' + spec.msg + b'"}'
    if isinstance(spec, Time):
        return b'{"serverTime":' + spec.server_time + b"}"
    return b"<html><body>400 Bad Request: " + request.raw.split(b"\r\n")[0] + b"</body></html>"


# -- answers ---------------------------------------------------------------------------------


@dataclass(frozen=True, repr=False)
class Answer:
    """One scripted answer: what is sent, how it is framed, and what happens to the connection.

    Attributes:
        status, reason: the status line's code and reason phrase.
        body: what the body holds (:class:`Good` by default).
        headers: extra header fields, as (name, value) bytes.
        raw_lines: extra header lines sent as they are (a line without a colon, say).
        status_line: a whole first line to send instead of ``HTTP/1.1 <status> <reason>``.
        framing: how the body is delimited (:data:`Framing`).
        stall: seconds of silence before the first byte.
        cut: send only the first ``cut`` bytes of the whole answer, then ``end``.
        end: what happens to the connection after the answer (:data:`End`).
    """

    status: int | None = None
    reason: bytes = b"OK"
    body: Body = field(default_factory=Good)
    headers: tuple[tuple[bytes, bytes], ...] = ()
    raw_lines: tuple[bytes, ...] = ()
    status_line: bytes | None = None
    framing: Framing = "length"
    stall: float = 0.0
    cut: int | None = None
    end: End = "keep"

    def __repr__(self) -> str:
        # Only what differs from a good answer, and long bytes cut short: a failing script
        # is read by a person.
        shown = [
            f"{f.name}={_short(getattr(self, f.name))}"
            for f in fields(self)
            if getattr(self, f.name) != getattr(_PLAIN, f.name)
        ]
        return f"Answer({', '.join(shown)})"

    def render(self, request: Request, *, witness: bytes = b"") -> tuple[bytes, bool]:
        """The bytes of this answer to ``request``, and whether the connection must close after
        them (the body is delimited by the close, or the end says so)."""
        status, _ = good_body(request) if isinstance(self.body, Good) else (200, b"")
        if self.status is not None:
            status = self.status
        body = render_body(self.body, request)
        first = self.status_line
        if first is None:
            first = b"HTTP/1.1 %d %s" % (status, self.reason)
        lines = [first]
        names = {name.lower() for name, _ in self.headers}
        if b"content-type" not in names:
            lines.append(b"Content-Type: application/json;charset=UTF-8")
        for name, value in self.headers:
            lines.append(name + b": " + value.replace(WITNESS, witness))
        lines.extend(self.raw_lines)
        framing = self.framing
        if framing in ("length", "long", "short", "both"):
            length = {"length": 0, "long": 100, "short": -3, "both": 0}[framing] + len(body)
            lines.append(b"Content-Length: %d" % max(length, 0))
        if framing in ("chunked", "bad-chunk", "both"):
            lines.append(b"Transfer-Encoding: chunked")
            half = len(body) // 2
            if framing == "bad-chunk":
                body = b"zz\r\n" + body + b"\r\n0\r\n\r\n"
            else:
                parts = [part for part in (body[:half], body[half:]) if part]
                body = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n"
        data = b"\r\n".join(lines) + b"\r\n\r\n" + body
        if self.cut is not None:
            data = data[: self.cut]
        closes = framing == "close" or self.end != "keep" or self.cut is not None
        return data, closes


_PLAIN = Answer()


def _short(value: object) -> str:
    text = repr(value)
    if len(text) <= 80:
        return text
    size = f"{len(value)} bytes" if isinstance(value, bytes) else f"{len(text)} characters"
    return f"{text[:60]}…({size})"


# -- the server ------------------------------------------------------------------------------


class HostileServer:
    """Serves scripted :class:`Answer` s on 127.0.0.1, then good answers.

    Args:
        answers: the script, one answer per request in arrival order.
        clock: if given, a script of its own for the time endpoints, whose requests then
            take nothing from ``answers``.
        witness: a URL that header values may name as ``{witness}`` (a redirect's target).
        tls: serve HTTPS with this context (the URL is then ``https://``).
    """

    def __init__(
        self,
        answers: Iterable[Answer] = (),
        *,
        clock: Iterable[Answer] | None = None,
        witness: str = "",
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self._tls = tls
        self._script: deque[Answer] = deque(answers)
        self._clock: deque[Answer] | None = None if clock is None else deque(clock)
        self._witness = witness.encode()
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()
        self._writers: dict[asyncio.StreamWriter, str] = {}  # open connection -> its state
        self._none_open = asyncio.Event()
        self._none_open.set()
        #: Every request read, in arrival order.
        self.requests: list[Request] = []
        #: Set when the last scripted answer has been sent (at once for an empty script).
        self.used_up = asyncio.Event()
        self._check_used_up()

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the server is not running")
        port = self._server.sockets[0].getsockname()[1]
        return f"{'https' if self._tls else 'http'}://127.0.0.1:{port}"

    @property
    def open_connections(self) -> int:
        """Connections neither side has closed yet."""
        return len(self._writers)

    def open_states(self) -> list[str]:
        """What each open connection is doing: ``"stalling before its answer to GET /x"``…"""
        return list(self._writers.values())

    @property
    def handler_tasks(self) -> frozenset[asyncio.Task[None]]:
        """This server's own tasks, one per connection: not the client's to clean up."""
        return frozenset(self._handlers)

    def push(self, *answers: Answer) -> None:
        """Add answers to the end of the script."""
        self._script.extend(answers)
        self._check_used_up()

    def push_clock(self, *answers: Answer) -> None:
        """Add answers to the end of the time endpoints' own script (see ``clock``)."""
        if self._clock is None:
            raise ValueError("this server has no script of its own for the time endpoints")
        self._clock.extend(answers)
        self._check_used_up()

    def _check_used_up(self) -> None:
        if self._script or self._clock:
            self.used_up.clear()
        else:
            self.used_up.set()

    async def __aenter__(self) -> HostileServer:
        self._server = await asyncio.start_server(
            self._serve, host="127.0.0.1", port=0, limit=HEAD_LIMIT, ssl=self._tls
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop listening, drop every connection and wait for the handlers to end."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        # Dropped, not cancelled: each handler then reads the end of its stream and returns
        # (asyncio's streams log a cancelled handler as an error).
        for writer in list(self._writers):
            writer.transport.abort()
        handlers = list(self._handlers)
        if handlers:
            _, late = await asyncio.wait(handlers, timeout=5.0)
            for task in late:
                task.cancel()
        if server is not None:
            await server.wait_closed()

    async def wait_all_closed(self, within: float) -> bool:
        """Wait, at most ``within`` seconds, until no connection is open; whether none is.

        A connection the client opened just before it closed may be accepted only now: one
        that turns up while this waits is waited for too.
        """
        ends = time.monotonic() + within
        await asyncio.sleep(0)  # let a connection already in the backlog be accepted
        while self._writers:
            left = ends - time.monotonic()
            if left <= 0:
                return False
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._none_open.wait(), left)
        return True

    # -- one connection ----------------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        self._writers[writer] = "waiting for its first request"
        self._none_open.clear()
        try:
            while await self._answer_one(reader, writer):
                pass
        except (ConnectionError, OSError):
            pass
        finally:
            self._writers.pop(writer, None)
            if not self._writers:
                self._none_open.set()
            if not writer.is_closing():
                writer.transport.abort()  # cancelled by aclose, or the client went away
            self._handlers.discard(task)

    async def _answer_one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Read one request and answer it; whether the connection stays for another."""
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            return False
        peer = writer.get_extra_info("peername")
        request = replace(Request.parse(head), peer=str(peer[0]) if peer else "")
        self.requests.append(request)
        asked = f"{request.method} {request.path}"
        self._writers[writer] = f"stalling before its answer to {asked}"
        script = self._script
        if self._clock is not None and request.path in TIME_PATHS:
            script = self._clock
        answer = script.popleft() if script else Answer()
        self._check_used_up()
        if answer.stall and not await _quiet(reader, answer.stall):
            return False  # the client left while it waited
        data, closes = answer.render(request, witness=self._witness)
        if writer.is_closing():
            return False
        self._writers[writer] = f"sending its answer to {asked}"
        writer.write(data)
        await writer.drain()
        self._writers[writer] = f"waiting for a request after its answer to {asked}"
        if answer.end == "hang":
            self._writers[writer] = f"hanging after its answer to {asked}"
            await _quiet(reader, None)
            return False
        if answer.end == "reset":
            sock = writer.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
            return False
        if closes:
            writer.close()
            return False
        return True


async def _quiet(reader: asyncio.StreamReader, seconds: float | None) -> bool:
    """Wait ``seconds`` (``None``: for ever) for the client, reading and dropping what it sends;
    ``False`` as soon as it closes the connection."""
    ends = None if seconds is None else time.monotonic() + seconds
    while True:
        left = None if ends is None else ends - time.monotonic()
        if left is not None and left <= 0:
            return True
        try:
            data = await asyncio.wait_for(reader.read(65536), left)
        except asyncio.TimeoutError:
            return True
        if not data:
            return False


# -- looking for leaks -----------------------------------------------------------------------

#: A signature as sent: 64 hex digits (HMAC) or a long run of percent-encoded base64.
SIGNED = re.compile(r"signature=(?:[0-9a-fA-F]{64}|[A-Za-z0-9%+/=]{40,})")
#: Loggers whose DEBUG records are looked at (besides the root, which sees them all).
WATCHED_LOGGERS = ("binance_pm", "httpx", "httpcore", "aiohttp", "asyncio")


class LogWatch(logging.Handler):
    """Every log record of every logger at DEBUG and up, as it would be printed (traceback
    included), while installed with :func:`watch_logs`."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
        self.records: list[logging.LogRecord] = []
        self.texts: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        self.texts.append(self.format(record))


@contextlib.contextmanager
def watch_logs() -> Iterator[LogWatch]:
    """Install a :class:`LogWatch` on the root logger, every watched logger at DEBUG."""
    handler = LogWatch()
    loggers = [logging.getLogger(), *(logging.getLogger(name) for name in WATCHED_LOGGERS)]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.DEBUG)
    loggers[0].addHandler(handler)
    try:
        yield handler
    finally:
        loggers[0].removeHandler(handler)
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def error_text(error: BaseException) -> str:
    """All that showing an error can show: its repr, and its traceback with every cause and
    context, as ``logging.exception`` would print it."""
    shown = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    return f"{error!r}\n{shown}"


def sent_signatures(requests: Iterable[Request]) -> set[str]:
    """The ``signature=`` values of ``requests``, as sent and percent-decoded."""
    found = set()
    for request in requests:
        _, sep, value = request.query.rpartition("signature=")
        if sep and value:
            found.update({value, unquote(value)})
    return found


def leaks(text: str, secrets: Iterable[str]) -> list[str]:
    """Which of ``secrets`` (or anything shaped like a sent signature) ``text`` shows."""
    shown = [secret[:12] + "…" for secret in secrets if secret and secret in text]
    shown += [match[:22] + "…" for match in SIGNED.findall(text)]
    return shown
