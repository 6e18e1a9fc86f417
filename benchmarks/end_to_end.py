"""End to end: signed calls per second, and client CPU per call, on loopback.

The simulated exchange runs as ``binance-pm serve`` in its own process, pinned to one core;
this client is pinned to the other. Every client calls the same endpoint for the same account
(``GET /papi/v1/balance``, HMAC-signed, weight 20), with the exchange's limits set far above
what can be sent, at 1, 16 and 128 calls in flight:

- binance_pm: ``AsyncClient.pm_balance()`` on the default transport (httpx over aiohttp's
  pool), and on httpx's own transport;
- bare httpx: the same signed request built by hand and ``json.loads`` of the answer, on
  httpx's own transport and on binance_pm's aiohttp transport (the SDK's own work is the
  difference between binance_pm and this);
- python-binance's ``AsyncClient.papi_get_balance()``, when installed;
- ccxt's async ``binance.papi_get_balance()``, when installed (its own throttle off: the
  exchange's limits do not bind here).

Prints, per client and concurrency, the median of rounds: calls/s, client CPU µs per call, and
ratios to python-binance (calls/s) and to bare httpx on the same transport (CPU). Targets: at
least python-binance's calls/s; client CPU at most 15 % over bare httpx.
Run: ``python benchmarks/end_to_end.py``. Finishes in about a minute and a half.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlencode

import httpx
from _serve import pin, serve
from httpx_aiohttp import AiohttpTransport

from binance_pm import AsyncClient, Governor

CONCURRENCY = (1, 16, 128)
CALLS = {1: 400, 16: 1500, 128: 2000}
ROUNDS = 3
HIGH = str(10**9)
Call = Callable[[], Awaitable[Any]]


async def measure(call: Call, concurrency: int) -> tuple[float, float]:
    """(calls per second, CPU seconds per call) for ``CALLS[concurrency]`` calls."""
    total = CALLS[concurrency]
    await call()  # connections, clock: warm
    left = total

    async def worker() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            await call()

    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return total / (time.perf_counter() - wall), (time.process_time() - cpu) / total


def bare_httpx(base_url: str, account: dict[str, Any], transport: Any) -> tuple[Call, Any]:
    http = httpx.AsyncClient(transport=transport) if transport else httpx.AsyncClient()
    secret = account["secret"].encode()

    async def call() -> Any:
        query = urlencode({"recvWindow": 5000, "timestamp": int(time.time() * 1000)})
        signature = hmac.new(secret, query.encode(), hashlib.sha256).hexdigest()
        response = await http.get(
            f"{base_url}/papi/v1/balance?{query}&signature={signature}",
            headers={"X-MBX-APIKEY": account["api_key"]},
        )
        response.raise_for_status()
        return json.loads(response.content)

    return call, http


def high() -> Governor:
    """Limits the exchange here does not bind either: the governor still runs, never waits."""
    return Governor(api_ip=10**9, sapi_ip=10**9, sapi_uid=10**9, papi_ip=10**9, fapi_ip=10**9)


async def clients(base_url: str, account: dict[str, Any]) -> dict[str, tuple[Call, Any]]:
    """Each contender's call, and what to close after."""
    made: dict[str, tuple[Call, Any]] = {}
    ours = AsyncClient(
        account["api_key"], secret=account["secret"], base_url=base_url, governor=high()
    )
    made["binance_pm"] = (ours.pm_balance, ours)
    own = httpx.AsyncClient()
    on_httpx = AsyncClient(
        account["api_key"], secret=account["secret"], base_url=base_url, http=own, governor=high()
    )
    made["binance_pm, httpx transport"] = (on_httpx.pm_balance, own)
    made["bare httpx, aiohttp transport"] = bare_httpx(base_url, account, AiohttpTransport())
    made["bare httpx"] = bare_httpx(base_url, account, None)
    try:
        from binance import AsyncClient as BinanceClient
    except ImportError:
        pass
    else:
        pb = BinanceClient(account["api_key"], account["secret"])
        pb.PAPI_URL = f"{base_url}/papi"
        made["python-binance"] = (pb.papi_get_balance, pb)
    try:
        import ccxt.async_support as ccxt
    except ImportError:
        pass
    else:
        cx = ccxt.binance(
            {"apiKey": account["api_key"], "secret": account["secret"], "enableRateLimit": False}
        )
        cx.urls["api"]["papi"] = f"{base_url}/papi/v1"
        made["ccxt"] = (cx.papi_get_balance, cx)
    return made


async def close(thing: Any) -> None:
    for name in ("aclose", "close_connection", "close"):
        method = getattr(thing, name, None)
        if method is not None:
            result = method()
            if asyncio.iscoroutine(result):
                await result
            return


async def main() -> None:
    pin(1)
    limits = ["--api-ip", HIGH, "--sapi-ip", HIGH, "--sapi-uid", HIGH, "--papi-ip", HIGH]
    with serve("--accounts", "6", *limits, core=0) as (base_url, accounts):
        account = next(a for a in accounts if a["account_type"] == "PM_2" and "secret" in a)
        made = await clients(base_url, account)
        results: dict[tuple[str, int], tuple[float, float]] = {}
        for concurrency in CONCURRENCY:
            rounds: dict[str, list[tuple[float, float]]] = {name: [] for name in made}
            for _ in range(ROUNDS):
                for name, (call, _) in made.items():  # interleaved: drift hits all alike
                    rounds[name].append(await measure(call, concurrency))
            for name, measured in rounds.items():
                results[name, concurrency] = (
                    statistics.median(rate for rate, _ in measured),
                    statistics.median(cpu for _, cpu in measured),
                )
        for _, thing in made.values():
            await close(thing)
    print("median of rounds; calls/s ratio to python-binance, CPU ratio to bare httpx on the")
    print("same transport (binance_pm: the aiohttp one; binance_pm on httpx: httpx's own)")
    print(
        f"{'client':<30}{'in flight':>9}{'calls/s':>10}{'CPU us/call':>13}{'vs p-b':>8}"
        f"{'CPU vs bare':>13}"
    )
    bare_for = {
        "binance_pm": "bare httpx, aiohttp transport",
        "binance_pm, httpx transport": "bare httpx",
    }
    for concurrency in CONCURRENCY:
        reference = results.get(("python-binance", concurrency))
        for name in made:
            rate, cpu = results[name, concurrency]
            versus = f"{rate / reference[0]:.2f}x" if reference else ""
            bare = bare_for.get(name)
            overhead = f"{cpu / results[bare, concurrency][1]:.2f}x" if bare else ""
            print(
                f"{name:<30}{concurrency:>9}{rate:>10.0f}{cpu * 1e6:>13.0f}{versus:>8}"
                f"{overhead:>13}"
            )


if __name__ == "__main__":
    asyncio.run(main())
