"""Which WebSocket client for user data streams: aiohttp's, ``websockets`` or ``httpx-ws``.

A stream is one connection per account carrying small JSON texts (a ``PM_PRO_ACCOUNT_UPDATE``
every 5 s, bursts on risk changes), for a thousand accounts and more in one process. Against
one server in its own process (aiohttp's, pinned to core 0; this process on core 1), for each
library in turn, medians of ``ROUNDS`` rounds:

- **receive**: ``CONNECTIONS`` connections each sent ``MESSAGES`` such texts as fast as the
  server can, each decoded with msgspec: this process's CPU per message (µs) and messages a
  second per core of it;
- **connect**: 1,000 connections opened (100 at a time) and then closed: CPU and wall time
  per connection, and memory held per open connection (tracemalloc, in a round of its own).

No compression (``permessage-deflate``) on either side: the exchange's streams are small texts.

Run: ``python benchmarks/websocket_libs.py`` (about 2 minutes).
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import socket
import statistics
import time
import tracemalloc
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import httpx
import msgspec
from _serve import pin
from aiohttp import web

MESSAGE = (
    '{"e":"PM_PRO_ACCOUNT_UPDATE","E":1750515742303,"u":"1.25000000","eq":"1000.12345678",'
    '"ae":"999.12345678","im":"10.00000000","mm":"5.00000000","avb":"900.00000000",'
    '"vmw":"800.00000000"}'
)
CONNECTIONS = 200
MESSAGES = 500  # per connection, per round
OPENED = 1000
AT_ONCE = 100
ROUNDS = 3


class Event(msgspec.Struct):
    e: str
    E: int
    u: str
    eq: str


DECODE = msgspec.json.Decoder(Event).decode


# -- the server (its own process) ---------------------------------------------------------------


def run_server(port: int) -> None:
    pin(0)

    async def burst(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(compress=False, max_msg_size=1 << 20)
        await ws.prepare(request)
        for _ in range(int(request.query.get("n", "0"))):
            await ws.send_str(MESSAGE)
        await ws.receive()  # until the client closes
        return ws

    async def idle(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(compress=False)
        await ws.prepare(request)
        await ws.receive()
        return ws

    app = web.Application()
    app.router.add_get("/burst", burst)
    app.router.add_get("/idle", idle)
    web.run_app(app, host="127.0.0.1", port=port, print=None, backlog=4096, access_log=None)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


# -- the clients ---------------------------------------------------------------------------------

Receiver = Callable[[str, int], Awaitable[int]]


class Aiohttp:
    name = "aiohttp"

    async def __aenter__(self) -> Aiohttp:
        self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.session.close()

    async def receive(self, url: str, count: int) -> int:
        async with self.session.ws_connect(url, compress=0, autoping=True) as ws:
            for _ in range(count):
                message = await ws.receive()
                DECODE(message.data)
        return count

    async def hold(self, url: str, opened: Callable[[], None], release: asyncio.Event) -> None:
        async with self.session.ws_connect(url, compress=0):
            opened()
            await release.wait()


class Websockets:
    name = "websockets"

    async def __aenter__(self) -> Websockets:
        from websockets.asyncio.client import connect

        self.connect = connect
        return self

    async def __aexit__(self, *exc: object) -> None:
        pass

    async def receive(self, url: str, count: int) -> int:
        async with self.connect(url, compression=None, max_size=1 << 20) as ws:
            for _ in range(count):
                DECODE(await ws.recv())
        return count

    async def hold(self, url: str, opened: Callable[[], None], release: asyncio.Event) -> None:
        async with self.connect(url, compression=None):
            opened()
            await release.wait()


class HttpxWs:
    name = "httpx-ws"

    async def __aenter__(self) -> HttpxWs:
        from httpx_ws import aconnect_ws

        self.aconnect_ws = aconnect_ws
        limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
        self.client = httpx.AsyncClient(limits=limits, timeout=60)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.client.aclose()

    async def receive(self, url: str, count: int) -> int:
        ws: Any
        async with self.aconnect_ws(url.replace("ws://", "http://"), self.client) as ws:
            for _ in range(count):
                DECODE(await ws.receive_text())
        return count

    async def hold(self, url: str, opened: Callable[[], None], release: asyncio.Event) -> None:
        async with self.aconnect_ws(url.replace("ws://", "http://"), self.client):
            opened()
            await release.wait()


LIBRARIES = (Aiohttp, Websockets, HttpxWs)


async def receive_round(library: Any, base: str) -> float:
    """CPU seconds per message for CONNECTIONS × MESSAGES messages."""
    client: Any
    async with library() as client:
        url = f"{base}/burst?n={MESSAGES}"
        cpu = time.process_time()
        done = await asyncio.gather(*(client.receive(url, MESSAGES) for _ in range(CONNECTIONS)))
        cpu = time.process_time() - cpu
    per_message: float = cpu / sum(done)
    return per_message


async def connect_round(library: Any, base: str, *, memory: bool) -> tuple[float, float, float]:
    """CPU and wall seconds per connection opened and closed; bytes held per open one."""
    async with library() as client:
        gate = asyncio.Semaphore(AT_ONCE)
        release = asyncio.Event()
        all_open = asyncio.Event()
        count = 0

        def opened() -> None:
            nonlocal count
            count += 1
            gate.release()
            if count == OPENED:
                all_open.set()

        async def one() -> None:
            await gate.acquire()
            await client.hold(f"{base}/idle", opened, release)

        if memory:
            tracemalloc.start()
        cpu, wall = time.process_time(), time.perf_counter()
        tasks = [asyncio.create_task(one()) for _ in range(OPENED)]
        await all_open.wait()
        held = tracemalloc.get_traced_memory()[0] if memory else 0
        if memory:
            tracemalloc.stop()
        release.set()
        await asyncio.gather(*tasks)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return cpu / OPENED, wall / OPENED, held / OPENED


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.parse_args()
    port = free_port()
    server = multiprocessing.get_context("spawn").Process(target=run_server, args=(port,))
    server.start()
    try:
        pin(1)
        base = f"ws://127.0.0.1:{port}"
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        rows = []
        for library in LIBRARIES:
            per_message = statistics.median(
                asyncio.run(receive_round(library, base)) for _ in range(ROUNDS)
            )
            opened = [
                asyncio.run(connect_round(library, base, memory=False)) for _ in range(ROUNDS)
            ]
            memory = asyncio.run(connect_round(library, base, memory=True))[2]
            rows.append(
                (
                    library.name,
                    per_message,
                    statistics.median(o[0] for o in opened),
                    statistics.median(o[1] for o in opened),
                    memory,
                )
            )
    finally:
        server.terminate()
        server.join(10)
    base_row = rows[0]
    print(
        f"{CONNECTIONS} connections × {MESSAGES} messages a round; {OPENED} connections opened "
        f"({AT_ONCE} at a time) and closed; medians of {ROUNDS} rounds"
    )
    print(
        f"{'library':<11} {'µs/message':>10} {'messages/s/core':>16} {'ratio':>6} "
        f"{'connect+close CPU µs':>21} {'wall µs':>8} {'ratio':>6} {'KiB/open':>9}"
    )
    for name, per_message, cpu, wall, held in rows:
        print(
            f"{name:<11} {per_message * 1e6:>10.1f} {1 / per_message:>16,.0f} "
            f"{per_message / base_row[1]:>5.2f}× {cpu * 1e6:>21.0f} {wall * 1e6:>8.0f} "
            f"{cpu / base_row[2]:>5.2f}× {held / 1024:>9.1f}"
        )


if __name__ == "__main__":
    main()
