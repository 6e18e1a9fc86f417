"""HTTP stack: requests per second through one client with 10, 100 and 200 requests in flight.

Measures, side by side in one run against the same loopback server (uvicorn, in its own process
pinned to one core while this client is pinned to the other):

- httpx's default transport (httpcore's pool), the stack httpx users get;
- httpx2, the maintained fork, if installed;
- httpx over the httpx-aiohttp package's transport, if installed;
- a whole binance_pm ``Session`` on its default (straight through aiohttp), calling the
  (unsigned) time endpoint, so its own per-call work (governor, retry loop, decoding) is
  counted too.

It prints requests/s and each stack's ratio to httpx's default. This is the measurement behind
the Session's choice of HTTP stack (docs/explanation/http-stack.md).
Run: ``python benchmarks/http_stack.py``.
Finishes in well under two minutes on two cores.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import httpx

BODY = b'{"serverTime":1700000000000}'
CONCURRENCY = (10, 100, 200)
REQUESTS = 2000
ROUNDS = 3


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": BODY})


def serve(port: int) -> None:
    import uvicorn

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def pin(core: int) -> None:
    with contextlib.suppress(AttributeError, OSError):
        if len(os.sched_getaffinity(0)) > 1:
            os.sched_setaffinity(0, {core})


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def stacks() -> dict[str, Callable[[], Any]]:
    limits = httpx.Limits(max_connections=256, max_keepalive_connections=256)
    found: dict[str, Callable[[], Any]] = {
        "httpx default": lambda: httpx.AsyncClient(limits=limits),
    }
    try:
        import httpx2

        found["httpx2"] = lambda: httpx2.AsyncClient(
            limits=httpx2.Limits(max_connections=256, max_keepalive_connections=256)
        )
    except ImportError:
        print("(httpx2 not installed: skipped)")
    try:
        from httpx_aiohttp import AiohttpTransport as PeerTransport

        found["httpx + httpx-aiohttp"] = lambda: httpx.AsyncClient(
            transport=PeerTransport(limits=limits)
        )
    except ImportError:
        print("(httpx-aiohttp not installed: skipped)")
    return found


async def rate(make: Callable[[], Any], url: str, in_flight: int, count: int) -> float:
    async with make() as client:
        await client.get(url)  # connect once outside the timing
        gate = asyncio.Semaphore(in_flight)

        async def one() -> None:
            async with gate:
                answer = await client.get(url)
                if answer.status_code != 200:
                    raise RuntimeError(f"status {answer.status_code}")

        started = time.perf_counter()
        await asyncio.wait_for(asyncio.gather(*(one() for _ in range(count))), timeout=60)
        return count / (time.perf_counter() - started)


class _SessionStack:
    """Makes a binance_pm Session look like an HTTP client to ``rate``."""

    def __init__(self, url: str) -> None:
        from binance_pm import Session

        self._session = Session(base_url=url.split("/api/")[0])

    async def __aenter__(self) -> _SessionStack:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._session.aclose()

    async def get(self, url: str) -> httpx.Response:
        from binance_pm._endpoints import API_TIME

        await self._session._call(API_TIME, [], credentials=None)
        return httpx.Response(200)


async def measure(url: str) -> dict[tuple[str, int], float]:
    results: dict[tuple[str, int], list[float]] = {}
    found = stacks()
    found["binance_pm Session (whole call)"] = lambda: _SessionStack(url)
    for _ in range(ROUNDS):  # interleaved rounds, so drift on a shared machine hits all alike
        for in_flight in CONCURRENCY:
            for name, make in found.items():
                # httpx's own pool is slow at high concurrency; fewer requests keep the run short.
                count = REQUESTS // 2 if name in ("httpx default", "httpx2") else REQUESTS
                value = await rate(make, url, in_flight, count)
                results.setdefault((name, in_flight), []).append(value)
    return {key: statistics.median(values) for key, values in results.items()}


def main() -> None:
    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import sys; sys.path.insert(0, {os.path.dirname(__file__)!r}); "
            f"import http_stack as b; b.pin(0); b.serve({port})",
        ],
    )
    try:
        url = f"http://127.0.0.1:{port}/api/v3/time"
        deadline = time.monotonic() + 15
        while True:
            try:
                httpx.get(url, timeout=1)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise SystemExit("the benchmark server did not start") from None
                time.sleep(0.1)
        pin(1)
        results = asyncio.run(measure(url))
    finally:
        server.terminate()
        server.wait(10)
    order = [*stacks(), "binance_pm Session (whole call)"]
    names = sorted({name for name, _ in results}, key=order.index)
    print(f"\nmedian of {ROUNDS} rounds, requests/s (ratio to httpx default)")
    print(f"{'stack':40s}" + "".join(f"{f'{c} in flight':>22s}" for c in CONCURRENCY))
    for name in names:
        cells = []
        for in_flight in CONCURRENCY:
            value = results[(name, in_flight)]
            base = results[("httpx default", in_flight)]
            cells.append(f"{value:10.0f} ({value / base:4.1f}x)")
        print(f"{name:40s}" + "".join(f"{cell:>22s}" for cell in cells))


if __name__ == "__main__":
    main()
