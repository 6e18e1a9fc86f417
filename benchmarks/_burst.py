"""A stream exchange look-alike for the burst measurement of ``streams.py``, and nothing else.

The simulated exchange (``binance-pm serve``) cannot send a true burst: its process tops out
near 15,000 events a second, so there the sender, not the reader, is the bottleneck. This one
serves only what ``Session.stream``, ``Session.poll(stream=True)`` and a bare aiohttp client
need for PM Pro streams, on raw asyncio:

- ``POST/PUT/DELETE /papi/v1/listenKey`` (PM) and ``/fapi/v1/listenKey`` (PM Pro): a key of 64
  letters and digits per API key and path, ``{}`` for a keepalive or a close, ``-1125`` for an
  unknown key; any API key is taken, nothing is signed or checked;
- ``GET /api/v3/time``, ``/fapi/v1/time``, ``/papi/v1/time``: ``{"serverTime": ms}``, with the
  exchange's used-weight header; ``/sapi/v1/portfolio/account`` (the merged poll's REST
  reconciliation): one answer of the simulated exchange, whatever the query;
- the WebSocket at ``/pm-classic/ws/<listenKey>``: after the handshake, pre-encoded
  ``PM_PRO_ACCOUNT_UPDATE`` text frames (the simulated exchange's, ``E`` rising from one to
  the next) as fast as the socket takes them: 256 a write, a write each turn of the loop
  until the transport's buffer passes 256 KiB, then none until it has drained below 64 KiB
  (memory stays bounded; the reader is the bottleneck); ``/pm/ws/<listenKey>`` opens and
  carries nothing. A ping is answered with its pong, a close with a close.

Run by ``streams.py`` in its own process (:func:`burst_server`); alone: ``python
benchmarks/_burst.py [--port N]`` prints ``base_url URL`` and serves until interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import secrets
import string
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress

from _serve import pin

#: One ``PM_PRO_ACCOUNT_UPDATE`` as the simulated exchange pushes it; ``%d`` is its ``E``.
EVENT = (
    b'{"e":"PM_PRO_ACCOUNT_UPDATE","E":%d,"u":"7.09882822","eq":"599305.36469141",'
    b'"ae":"647249.79386673","im":"168846.27899495","mm":"84423.13949748",'
    b'"avb":"430459.08569646","vmw":"430459.08569646"}'
)
#: The simulated exchange's answer of ``GET /sapi/v1/portfolio/account`` for a PM Pro account.
PM_PRO_ACCOUNT = (
    b'{"uniMMR":"7.09865855","accountEquity":"599291.04128421","actualEquity":"647234.32458694",'
    b'"accountMaintMargin":"84423.13949748","accountInitialMargin":"168846.27899495",'
    b'"totalAvailableBalance":"430444.76228925","accountStatus":"NORMAL","accountType":"PM_1"}'
)
FRAMES_PER_WRITE = 256  # about 53 KB a write
CHUNKS = 16  # chunks cycled through, so that E keeps rising across 4,096 events
HIGH_WATER = 256 * 1024  # the transport's buffer, past which writing pauses
LOW_WATER = 64 * 1024
KEY_ALPHABET = string.ascii_letters + string.digits
WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
LISTEN_KEY_PATHS = {"/papi/v1/listenKey": "/pm/ws/", "/fapi/v1/listenKey": "/pm-classic/ws/"}
TIME_PATHS = {"/api/v3/time", "/fapi/v1/time", "/papi/v1/time"}
NOT_FOUND = b'{"code":-1000,"msg":"Not found."}'
NO_KEY = b'{"code":-1125,"msg":"This listenKey does not exist."}'
NO_API_KEY = b'{"code":-2014,"msg":"API-key format invalid."}'
REASONS = {200: b"OK", 400: b"Bad Request", 401: b"Unauthorized", 404: b"Not Found"}


def frame(payload: bytes, opcode: int = 0x1) -> bytes:
    """A server's (unmasked) WebSocket frame, FIN set."""
    size = len(payload)
    if size < 126:
        head = struct.pack("!BB", 0x80 | opcode, size)
    elif size < 1 << 16:
        head = struct.pack("!BBH", 0x80 | opcode, 126, size)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 127, size)
    return head + payload


def chunks(start_ms: int) -> list[bytes]:
    """``CHUNKS`` writes of ``FRAMES_PER_WRITE`` events each, ``E`` rising by one per event."""
    made = []
    for c in range(CHUNKS):
        first = start_ms + c * FRAMES_PER_WRITE
        made.append(b"".join(frame(EVENT % (first + i)) for i in range(FRAMES_PER_WRITE)))
    return made


class Exchange:
    """The listen keys: by (API key, listen-key path), and each key's stream path."""

    def __init__(self) -> None:
        self.keys: dict[tuple[str, str], str] = {}
        self.paths: dict[str, str] = {}  # listen key -> the stream path that carries it
        self.chunks = chunks(int(time.time() * 1000))

    def listen_key(self, method: str, path: str, api_key: str) -> tuple[int, bytes]:
        key = self.keys.get((api_key, path))
        if method == "POST":
            if key is None:
                key = "".join(secrets.choice(KEY_ALPHABET) for _ in range(64))
                self.keys[api_key, path] = key
                self.paths[key] = LISTEN_KEY_PATHS[path]
            return 200, b'{"listenKey":"%s"}' % key.encode()
        if key is None:
            return 400, NO_KEY
        if method == "DELETE":
            del self.keys[api_key, path]
            self.paths.pop(key, None)
        return 200, b"{}"


class Connection(asyncio.Protocol):
    """One TCP connection: HTTP/1.1 requests (kept alive) until a WebSocket handshake, then
    the stream."""

    def __init__(self, exchange: Exchange) -> None:
        self.exchange = exchange
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.websocket = False
        self.pushing = False  # a PM Pro stream: frames go out while the socket takes them
        self.paused = False
        self.closed = False
        self.next_chunk = 0

    # -- the transport's callbacks ---------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.set_write_buffer_limits(high=HIGH_WATER, low=LOW_WATER)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        if self.pushing:
            asyncio.get_running_loop().call_soon(self.push)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self.websocket:
            self.read_frames()
        else:
            self.read_requests()

    # -- HTTP --------------------------------------------------------------------------------

    def read_requests(self) -> None:
        while not self.websocket and not self.closed:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buffer[:end]).decode("latin-1").split("\r\n")
            headers = {}
            for line in head[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            length = int(headers.get("content-length", "0") or 0)
            if len(self.buffer) < end + 4 + length:
                return
            del self.buffer[: end + 4 + length]
            method, target, _ = head[0].split(" ", 2)
            self.request(method, target.split("?", 1)[0], headers)

    def request(self, method: str, path: str, headers: dict[str, str]) -> None:
        exchange = self.exchange
        if path in LISTEN_KEY_PATHS:
            api_key = headers.get("x-mbx-apikey", "")
            status, body = (
                exchange.listen_key(method, path, api_key) if api_key else (401, NO_API_KEY)
            )
            self.answer(status, body, {"X-MBX-USED-WEIGHT-1M": "1"})
        elif path in TIME_PATHS:
            body = b'{"serverTime":%d}' % int(time.time() * 1000)
            self.answer(200, body, {"X-MBX-USED-WEIGHT-1M": "1"})
        elif path == "/sapi/v1/portfolio/account":
            weights = {"X-SAPI-USED-IP-WEIGHT-1M": "0", "X-SAPI-USED-UID-WEIGHT-1M": "5"}
            self.answer(200, PM_PRO_ACCOUNT, weights)
        elif headers.get("upgrade", "").lower() == "websocket":
            self.upgrade(path, headers)
        else:
            self.answer(404, NOT_FOUND, {})

    def answer(self, status: int, body: bytes, extra: dict[str, str]) -> None:
        assert self.transport is not None
        lines = [b"HTTP/1.1 %d %s" % (status, REASONS.get(status, b"Error"))]
        lines.append(b"Content-Type: application/json")
        lines.append(b"Content-Length: %d" % len(body))
        lines += [f"{name}: {value}".encode("latin-1") for name, value in extra.items()]
        self.transport.write(b"\r\n".join(lines) + b"\r\n\r\n" + body)

    def upgrade(self, path: str, headers: dict[str, str]) -> None:
        assert self.transport is not None
        stream_path, _, key = path.rpartition("/")
        if self.exchange.paths.get(key) != stream_path + "/" or "sec-websocket-key" not in headers:
            self.answer(404, NOT_FOUND, {})
            return
        accept = base64.b64encode(
            hashlib.sha1(headers["sec-websocket-key"].encode() + WS_GUID).digest()
        )
        self.transport.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n"
        )
        self.websocket = True
        self.pushing = stream_path == "/pm-classic/ws"
        if self.pushing:
            self.push()
        if self.buffer:
            self.read_frames()

    # -- the stream --------------------------------------------------------------------------

    def push(self) -> None:
        """One write of a chunk of events; again at the loop's next turn while the transport
        takes them, else when it has drained (``resume_writing``)."""
        if self.closed or self.paused or not self.pushing or self.transport is None:
            return
        chunks = self.exchange.chunks
        self.transport.write(chunks[self.next_chunk])
        self.next_chunk = (self.next_chunk + 1) % len(chunks)
        if not self.paused:
            asyncio.get_running_loop().call_soon(self.push)

    def read_frames(self) -> None:
        """The client's frames (masked): a ping gets its pong, a close its close."""
        buffer = self.buffer
        while len(buffer) >= 2 and not self.closed:
            opcode, size = buffer[0] & 0x0F, buffer[1] & 0x7F
            masked = buffer[1] & 0x80
            at = 2
            if size == 126:
                if len(buffer) < 4:
                    return
                (size,) = struct.unpack_from("!H", buffer, 2)
                at = 4
            elif size == 127:
                if len(buffer) < 10:
                    return
                (size,) = struct.unpack_from("!Q", buffer, 2)
                at = 10
            mask = bytes(buffer[at : at + 4]) if masked else b"\0\0\0\0"
            at += 4 if masked else 0
            if len(buffer) < at + size:
                return
            payload = bytes(b ^ mask[i % 4] for i, b in enumerate(buffer[at : at + size]))
            del buffer[: at + size]
            assert self.transport is not None
            if opcode == 0x9:
                self.transport.write(frame(payload, 0xA))
            elif opcode == 0x8:
                self.pushing = False
                self.transport.write(frame(payload[:2], 0x8))
                self.transport.close()
                self.closed = True


async def run(port: int) -> None:
    exchange = Exchange()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: Connection(exchange), "127.0.0.1", port, backlog=4096, reuse_address=True
    )
    bound = server.sockets[0].getsockname()[1]
    print(f"base_url http://127.0.0.1:{bound}", flush=True)
    async with server:
        await server.serve_forever()


@contextmanager
def burst_server(core: int | None = None) -> Iterator[tuple[str, int]]:
    """This exchange in its own process (pinned to ``core``): its base URL and process id;
    stopped on leaving."""
    with subprocess.Popen(
        [sys.executable, __file__],
        stdout=subprocess.PIPE,
        text=True,
        preexec_fn=None if core is None else lambda: pin(core),
    ) as process:
        assert process.stdout is not None
        base_url = process.stdout.readline().split()[1]
        try:
            yield base_url, process.pid
        finally:
            process.terminate()
            process.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    with suppress(KeyboardInterrupt):
        asyncio.run(run(args.port))


if __name__ == "__main__":
    main()
