"""The floor of pacing: a bare asyncio protocol, no SDK, asking one path over keep-alive
connections, flat out and paced. ``poller.py`` sets it beside the poll, so that what a fixed,
modest rate costs the machine (a wake-up, cold caches, a peer woken on each send) is told apart
from what it costs the SDK.

The request is ``GET /api/v3/time`` (nothing to sign, weight 1); the answer is read until its
chunked body ends, as the simulated exchange sends it.
"""

from __future__ import annotations

import asyncio
import time

PATH = "/api/v3/time"


class _Connection(asyncio.Protocol):
    """One keep-alive connection, one request at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.answer: asyncio.Future[None] | None = None
        self.read = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.read += data
        if self.read.endswith(b"\r\n0\r\n\r\n") and self.answer is not None:
            self.read = b""
            self.answer.set_result(None)
            self.answer = None

    def ask(self, request: bytes) -> asyncio.Future[None]:
        assert self.transport is not None
        self.answer = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        return self.answer


async def bare(base_url: str, *, in_flight: int, rate: float | None, seconds: float) -> float:
    """CPU seconds per request of ``in_flight`` connections: each asking again as soon as its
    answer is in (``rate`` None), or all together once a tick, ``rate`` requests a second."""
    host, port = base_url.split("//", 1)[1].rstrip("/").split(":")
    loop = asyncio.get_running_loop()
    connections = [
        (await loop.create_connection(_Connection, host, int(port)))[1] for _ in range(in_flight)
    ]
    request = f"GET {PATH} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
    try:
        for connection in connections:  # warm
            await connection.ask(request)
        done = 0
        ends = time.monotonic() + seconds
        cpu = time.process_time()
        if rate is None:

            async def asking(connection: _Connection) -> None:
                nonlocal done
                while time.monotonic() < ends:
                    await connection.ask(request)
                    done += 1

            await asyncio.gather(*(asking(c) for c in connections))
        else:
            tick = in_flight / rate
            next_tick = loop.time()
            while time.monotonic() < ends:
                await asyncio.gather(*(c.ask(request) for c in connections))
                done += in_flight
                next_tick += tick
                await asyncio.sleep(max(0.0, next_tick - loop.time()))
        return (time.process_time() - cpu) / max(done, 1)
    finally:
        for connection in connections:
            if connection.transport is not None:
                connection.transport.close()
