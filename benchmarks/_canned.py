"""A canned exchange: every request answered at once with a recorded body, so a benchmark
measures the client and not the server.

``/papi/v1/balance`` gets the recorded list of ``tests/fixtures/papi_balance_list.json``, any
``.../time`` the server time and any ``.../ping`` ``{}``, each with headers shaped like the
exchange's (``X-MBX-USED-WEIGHT-1M`` counted per minute, ``Date``, the CDN's headers). Nothing
is checked: no signature, no limit. Any other path gets a 404 and is counted, so a benchmark
can tell that a client asked for something it did not expect.

It is a bare asyncio protocol (no HTTP framework: its parsing would cost the server time the
client then waits for), on uvloop when installed, HTTP/1.1 keep-alive, pipelining tolerated. Run
as a script it prints its base URL, serves until SIGTERM, then prints one JSON line: requests
served per path and its own CPU seconds. :func:`canned` starts it in its own process, pinned to
one core.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import cast

from _serve import pin

FIXTURE = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "papi_balance_list.json"
#: Weight per request (the documented weights), for the used-weight header.
WEIGHTS = {b"/papi/v1/balance": 20}
#: What the exchange's CDN and front servers add to every answer.
COMMON_HEADERS = (
    b"Content-Type: application/json;charset=UTF-8\r\n"
    b"Connection: keep-alive\r\n"
    b"Server: nginx\r\n"
    b"Vary: Accept-Encoding\r\n"
    b"x-response-time: 2ms\r\n"
    b"X-Frame-Options: SAMEORIGIN\r\n"
    b"X-Xss-Protection: 1; mode=block\r\n"
    b"X-Content-Type-Options: nosniff\r\n"
    b"Cache-Control: no-cache, no-store, must-revalidate\r\n"
    b"Pragma: no-cache\r\n"
    b"Expires: 0\r\n"
    b"X-Cache: Miss from cloudfront\r\n"
    b"Via: 1.1 0a1b2c3d4e5f60718293a4b5c6d7e8f9.cloudfront.net (CloudFront)\r\n"
    b"X-Amz-Cf-Pop: NRT57-P3\r\n"
)


class Answers:
    """The bytes of each answer, and the count of requests per path."""

    def __init__(self) -> None:
        self.balance = json.dumps(json.loads(FIXTURE.read_text()), separators=(",", ":")).encode()
        self.served: Counter[str] = Counter()
        self._minute = -1
        self._used = 0
        self._second = -1
        self._date = b""

    def answer(self, path: bytes) -> bytes:
        now = time.time()
        if int(now) != self._second:
            self._second = int(now)
            self._date = email.utils.formatdate(now, usegmt=True).encode()
            if self._second // 60 != self._minute:
                self._minute, self._used = self._second // 60, 0
        self.served[path.decode("latin-1")] += 1
        status = b"200 OK"
        if path == b"/papi/v1/balance":
            body = self.balance
        elif path.endswith(b"/time"):
            body = b'{"serverTime":%d}' % int(now * 1000)
        elif path.endswith(b"/ping"):
            body = b"{}"
        else:
            status, body = b"404 Not Found", b'{"code":-1,"msg":"not served here"}'
        self._used += WEIGHTS.get(path, 1)
        return b"".join(
            (
                b"HTTP/1.1 %s\r\n" % status,
                COMMON_HEADERS,
                b"Date: %s\r\n" % self._date,
                b"X-MBX-USED-WEIGHT-1M: %d\r\n" % self._used,
                b"Content-Length: %d\r\n\r\n" % len(body),
                body,
            )
        )


class Connection(asyncio.Protocol):
    """One client connection: requests split on the blank line that ends their head."""

    def __init__(self, answers: Answers) -> None:
        self.answers = answers
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        buffer = self.buffer + data if self.buffer else data
        while True:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                break
            head = buffer[:end]
            length = 0
            lowered = head.lower()
            at = lowered.find(b"\r\ncontent-length:")
            if at >= 0:
                line_end = lowered.find(b"\r\n", at + 2)
                length = int(lowered[at + 17 : line_end if line_end >= 0 else None])
            if len(buffer) < end + 4 + length:
                break  # the body is still coming
            buffer = buffer[end + 4 + length :]
            target = head.split(b" ", 2)[1]
            self.transport.write(self.answers.answer(target.split(b"?", 1)[0]))
            if b"\r\nconnection: close" in lowered:
                self.transport.close()
                buffer = b""
                break
        self.buffer = buffer


async def run() -> None:
    answers = Answers()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Connection(answers), "127.0.0.1", 0, backlog=1024)
    port = server.sockets[0].getsockname()[1]
    print(f"http://127.0.0.1:{port}", flush=True)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    async with server:
        await stop.wait()
    print(json.dumps({"served": answers.served, "cpu": time.process_time()}), flush=True)


class Canned:
    """A running canned exchange: its base URL; once stopped, requests served per path and the
    CPU seconds it used."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.served: dict[str, int] = {}
        self.cpu = 0.0


@contextmanager
def canned(core: int | None = None) -> Iterator[Canned]:
    """The canned exchange in its own process (pinned to ``core``); stopped on leaving, when
    ``served`` is filled in."""
    with subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve())],
        stdout=subprocess.PIPE,
        text=True,
        preexec_fn=None if core is None else lambda: pin(core),
    ) as process:
        assert process.stdout is not None
        first = process.stdout.readline().strip()
        if not first.startswith("http://"):
            process.kill()
            raise RuntimeError(f"the canned exchange did not start (it printed {first!r})")
        server = Canned(first)
        try:
            yield server
        finally:
            process.terminate()
            stopped = json.loads(process.stdout.readline() or "{}")
            server.served, server.cpu = stopped.get("served", {}), stopped.get("cpu", 0.0)
            process.wait(10)


if __name__ == "__main__":
    try:
        import uvloop
    except ImportError:
        asyncio.run(run())
    else:
        uvloop.run(run())
