"""End to end: client CPU per call and calls/s, beside python-binance, ccxt and bare aiohttp.

The server is a canned exchange (``_canned.py``), so that the client is what is measured: in its
own process on core 0, it answers every request at once with a recorded balance list and the
exchange's headers; the clients run here, on core 1. The workload is a signed
``GET /papi/v1/balance``, decoded each time, at 10 and at 200 calls in flight, for:

- binance_pm: ``Session(...).client(...).pm_balance()``, the default Session;
- python-binance: ``AsyncClient.create(...)`` then ``papi_get_balance()``;
- ccxt async: ``binance.papi_get_balance()``, its throttle off;
- bare aiohttp: a default ``ClientSession``, the signed URL built by hand with ``hmac``,
  ``json.loads`` of the answer: what any aiohttp client costs at least (the Session sends
  through its own HTTP/1.1 connections, below that floor);
- binance_pm through a caller's ``httpx.AsyncClient()`` (``Session(http=...)``);
- bare httpx: the same hand-built request through a default ``httpx.AsyncClient``.

The governor's limits are far above what can be sent: it runs, it never waits. Rounds are
interleaved (each round measures every client once at each concurrency, in an order rotated
from round to round), so drift hits all alike; the figures are medians of the rounds, with
their min-max. CPU is ``time.process_time()`` of this process over the measured calls only
(the warm-up, one call per caller, is not counted). Each measurement checks that the answer
decoded to the recorded balances, and the server's count of requests is checked at the end.

Prints per client the CPU µs per call and calls/s at both concurrencies, then the ratios with
their targets: binance_pm / python-binance CPU per call ≤ 0.80 at both concurrencies,
binance_pm / bare aiohttp CPU per call ≤ 1.40, binance_pm calls/s at 200 in flight ≥ 0.90 ×
at 10. Ratios are medians of the per-round ratios.

Then, unless ``--no-transports``, it runs ``transports.py``: the same call through each HTTP
stack the Session could stand on (aiohttp, aiosonic, pyreqwest, rnet, httpx, a minimal HTTP/1.1
protocol), with what each keeps of what the SDK must keep.

Run: ``python benchmarks/end_to_end.py`` (about a minute and a half on two cores, and two more
for the transports; ``--rounds`` and ``--calls`` to change). Instruction counts, which noise
cannot move:
``python benchmarks/end_to_end.py --callgrind binance_pm,python-binance,aiohttp`` runs each
client under ``valgrind --tool=callgrind`` twice (a warm-up of 100 calls, then 0 or ``--calls``
more, 1,000 by default; 10 in flight unless ``--in-flight``) and prints the instructions per call
from the difference, so start-up and warm-up cancel out; the profiles are kept for
``callgrind_annotate``. Half a minute to a minute per run.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import hashlib
import hmac
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import httpx
from _callgrind import counted
from _canned import canned
from _serve import pin

from binance_pm import Governor, Limits, Session

IN_FLIGHT = (10, 200)
ROUNDS = 5
CALLS = 2000
#: The documented HMAC example key; the canned exchange checks nothing.
API_KEY = "vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A"
SECRET = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j"
BALANCE_PATH = "/papi/v1/balance"
CPU_TARGET_PEER = 0.80
CPU_TARGET_FLOOR = 1.40
SCALING_TARGET = 0.90
#: Seconds a call may take, where a client takes it (binance_pm, httpx); the others' defaults
#: stand.
TIMEOUT = 10.0


@dataclass
class Contender:
    """One client, ready: the call measured, a check of its answer, and how to close it."""

    call: Callable[[], Awaitable[Any]]
    check: Callable[[Any], bool]
    close: Callable[[], Awaitable[None]]


def high() -> Governor:
    """Limits nothing here reaches: the governor still runs, never waits."""
    return Governor(limits=Limits().scaled(10**9 / 6000))


def _is_balances(result: Any) -> bool:
    """The recorded balance list, decoded (to dicts or to binance_pm's models)."""
    if not isinstance(result, list) or len(result) != 1:
        return False
    first = result[0]
    asset = first["asset"] if isinstance(first, dict) else first.asset
    return bool(asset == "USDT")


async def binance_pm(url: str, timeout: float) -> Contender:
    session = Session(base_url=url, governor=high(), timeout=timeout)
    client = session.client(API_KEY, secret=SECRET)
    return Contender(client.pm_balance, _is_balances, session.aclose)


async def binance_pm_httpx(url: str, timeout: float) -> Contender:
    http = httpx.AsyncClient(timeout=timeout)
    session = Session(base_url=url, governor=high(), http=http, timeout=timeout)
    client = session.client(API_KEY, secret=SECRET)

    async def close() -> None:
        await session.aclose()
        await http.aclose()

    return Contender(client.pm_balance, _is_balances, close)


async def python_binance(url: str, timeout: float) -> Contender:
    from binance import AsyncClient

    # Its URLs are class attributes; ``create`` pings and reads the server time, as users do.
    loopback: Any = type(
        "LoopbackClient", (AsyncClient,), {"API_URL": f"{url}/api", "PAPI_URL": f"{url}/papi"}
    )
    client = await loopback.create(API_KEY, SECRET)
    return Contender(client.papi_get_balance, _is_balances, client.close_connection)


async def ccxt_async(url: str, timeout: float) -> Contender:
    import ccxt.async_support as ccxt

    exchange = ccxt.binance({"apiKey": API_KEY, "secret": SECRET, "enableRateLimit": False})
    exchange.urls["api"]["papi"] = f"{url}/papi/v1"
    return Contender(exchange.papi_get_balance, _is_balances, exchange.close)


def _signed_url(url: str, secret: bytes) -> str:
    query = f"recvWindow=5000&timestamp={int(time.time() * 1000)}"
    signature = hmac.new(secret, query.encode(), hashlib.sha256).hexdigest()
    return f"{url}{BALANCE_PATH}?{query}&signature={signature}"


async def bare_aiohttp(url: str, timeout: float) -> Contender:
    session = aiohttp.ClientSession()
    secret, headers = SECRET.encode(), {"X-MBX-APIKEY": API_KEY}

    async def call() -> Any:
        async with session.get(_signed_url(url, secret), headers=headers) as response:
            body = await response.read()
            if response.status != 200:
                raise RuntimeError(f"HTTP {response.status}")
        return json.loads(body)

    return Contender(call, _is_balances, session.close)


async def bare_httpx(url: str, timeout: float) -> Contender:
    http = httpx.AsyncClient(timeout=timeout)
    secret, headers = SECRET.encode(), {"X-MBX-APIKEY": API_KEY}

    async def call() -> Any:
        response = await http.get(_signed_url(url, secret), headers=headers)
        response.raise_for_status()
        return json.loads(response.content)

    return Contender(call, _is_balances, http.aclose)


#: name: (label, factory). The first five are the comparison asked for; bare httpx is extra.
CLIENTS: dict[str, tuple[str, Callable[[str, float], Awaitable[Contender]]]] = {
    "binance_pm": ("binance_pm", binance_pm),
    "python-binance": ("python-binance AsyncClient", python_binance),
    "ccxt": ("ccxt async (throttle off)", ccxt_async),
    "aiohttp": ("bare aiohttp", bare_aiohttp),
    "binance_pm-httpx": ("binance_pm, caller's httpx", binance_pm_httpx),
    "httpx": ("bare httpx", bare_httpx),
}


async def measure(contender: Contender, in_flight: int, calls: int) -> tuple[float, float]:
    """(calls per second, CPU seconds per call) of ``calls`` calls, ``in_flight`` at a time."""
    # Warm: a connection for each caller (pools close idle ones between rounds), the clock.
    warm = await asyncio.gather(*(contender.call() for _ in range(in_flight)))
    if not contender.check(warm[-1]):
        raise AssertionError(f"not the recorded balances: {warm[-1]!r}")
    gc.collect()
    left, last = calls, None

    async def caller() -> None:
        nonlocal left, last
        while left > 0:
            left -= 1
            last = await contender.call()

    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(in_flight)))
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    if not contender.check(last):
        raise AssertionError(f"not the recorded balances: {last!r}")
    return calls / wall, cpu / calls


def spread(values: list[float], scale: float = 1.0, digits: int = 0) -> str:
    """``median (min-max)`` of ``values`` times ``scale``."""
    median, low, high_ = (scale * v for v in (statistics.median(values), min(values), max(values)))
    return f"{median:,.{digits}f} ({low:,.{digits}f}-{high_:,.{digits}f})"


def ratios(numerator: list[float], denominator: list[float], target: float, at_most: bool) -> str:
    """Median and min-max of the per-round ratios, and whether the median meets ``target``."""
    per_round = [a / b for a, b in zip(numerator, denominator, strict=True)]
    met = (
        statistics.median(per_round) <= target
        if at_most
        else statistics.median(per_round) >= target
    )
    sign, verdict = ("<=" if at_most else ">="), ("met" if met else "MISSED")
    return f"{spread(per_round, digits=2):<20} target {sign} {target:.2f}  {verdict}"


async def bench(
    url: str, names: list[str], rounds: int, calls: int
) -> dict[str, dict[int, list[tuple[float, float]]]]:
    made = {name: await CLIENTS[name][1](url, TIMEOUT) for name in names}
    results: dict[str, dict[int, list[tuple[float, float]]]] = {
        name: {n: [] for n in IN_FLIGHT} for name in names
    }
    try:
        for round_ in range(rounds):
            order = names[round_ % len(names) :] + names[: round_ % len(names)]
            for in_flight in IN_FLIGHT:
                for name in order:
                    results[name][in_flight].append(await measure(made[name], in_flight, calls))
            print(f"round {round_ + 1}/{rounds} done", file=sys.stderr, flush=True)
    finally:
        for contender in made.values():
            await contender.close()
    return results


def report(
    results: dict[str, dict[int, list[tuple[float, float]]]], rounds: int, calls: int
) -> None:
    cpu = {name: {n: [c for _, c in r] for n, r in by.items()} for name, by in results.items()}
    rate = {name: {n: [s for s, _ in r] for n, r in by.items()} for name, by in results.items()}
    print(f"signed GET {BALANCE_PATH}, decoded; canned server on core 0, client on core 1;")
    print(f"median (min-max) of {rounds} interleaved rounds of {calls} calls each")
    print()
    head = "".join(f"{'CPU us/call, ' + str(n):>22}{'calls/s, ' + str(n):>24}" for n in IN_FLIGHT)
    print(f"{'client':<28}{head}")
    for name in results:
        cells = "".join(
            f"{spread(cpu[name][n], 1e6):>22}{spread(rate[name][n]):>24}" for n in IN_FLIGHT
        )
        print(f"{CLIENTS[name][0]:<28}{cells}")
    print()
    ours, lo, hi = "binance_pm", IN_FLIGHT[0], IN_FLIGHT[-1]
    lines: list[tuple[str, str]] = []
    if "python-binance" in results:
        for n in IN_FLIGHT:
            lines.append(
                (
                    f"binance_pm / python-binance, CPU per call, {n} in flight",
                    ratios(cpu[ours][n], cpu["python-binance"][n], CPU_TARGET_PEER, at_most=True),
                )
            )
        for n in IN_FLIGHT:
            per_round = [
                a / b for a, b in zip(rate[ours][n], rate["python-binance"][n], strict=True)
            ]
            lines.append(
                (
                    f"binance_pm / python-binance, calls/s, {n} in flight",
                    spread(per_round, digits=2),
                )
            )
    if "aiohttp" in results:
        for n in IN_FLIGHT:
            lines.append(
                (
                    f"binance_pm / bare aiohttp, CPU per call, {n} in flight",
                    ratios(cpu[ours][n], cpu["aiohttp"][n], CPU_TARGET_FLOOR, at_most=True),
                )
            )
    lines.append(
        (
            f"binance_pm calls/s, {hi} in flight / {lo} in flight",
            ratios(rate[ours][hi], rate[ours][lo], SCALING_TARGET, at_most=False),
        )
    )
    width = max(len(label) for label, _ in lines)
    for label, value in lines:
        print(f"{label:<{width}}  {value}")


# -- instruction counts ------------------------------------------------------------------------

WARM_CALLS = 100


async def run_one(name: str, url: str, in_flight: int, calls: int) -> None:
    """``WARM_CALLS`` then ``calls`` calls of one client: the body of a callgrind run, the same
    in both runs but for the number of calls."""
    # Calls run some fifty times slower under callgrind: no deadline may expire.
    contender = await CLIENTS[name][1](url, 600.0)
    try:
        await measure(contender, in_flight, WARM_CALLS + calls)
    finally:
        await contender.close()


def callgrind(names: list[str], in_flight: int, calls: int) -> None:
    """Instructions per call of each client, from two callgrind runs that differ by ``calls``."""
    folder = Path(tempfile.mkdtemp(prefix="end_to_end-callgrind-"))
    per_call: dict[str, float] = {}
    with canned(core=0) as server:
        for name in names:
            counts = []
            for extra in (0, calls):
                profile = folder / f"callgrind.{name}.{extra}.out"
                _, count = counted(
                    Path(__file__).resolve(),
                    [
                        "--one",
                        name,
                        "--url",
                        server.url,
                        "--in-flight",
                        str(in_flight),
                        "--calls",
                        str(extra),
                    ],
                    profile,
                )
                counts.append(count)
            per_call[name] = (counts[1] - counts[0]) / calls
            print(
                f"{CLIENTS[name][0]:<28}{per_call[name] / 1e6:>8.3f} M instructions per call",
                flush=True,
            )
    for peer in ("python-binance", "aiohttp"):
        if "binance_pm" in per_call and peer in per_call:
            print(f"binance_pm / {peer}: {per_call['binance_pm'] / per_call[peer]:.2f}")
    print(f"profiles (callgrind_annotate): {folder}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    parser.add_argument("--calls", type=int, help=f"calls per measurement ({CALLS:,})")
    parser.add_argument(
        "--callgrind", metavar="NAMES", help=f"comma-separated, of {', '.join(CLIENTS)}"
    )
    parser.add_argument("--in-flight", type=int, default=IN_FLIGHT[0], help="for --callgrind")
    parser.add_argument("--one", choices=CLIENTS, help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument(
        "--no-transports", action="store_true", help="without transports.py's table after"
    )
    args = parser.parse_args()
    pin(1)
    if args.one:
        asyncio.run(run_one(args.one, args.url, args.in_flight, args.calls))
    elif args.callgrind:
        names = args.callgrind.split(",")
        unknown = set(names) - set(CLIENTS)
        if unknown:
            parser.error(f"unknown client(s) {', '.join(sorted(unknown))}; of {', '.join(CLIENTS)}")
        if shutil.which("valgrind") is None:
            parser.error("--callgrind needs valgrind (apt-get install valgrind)")
        callgrind(names, args.in_flight, args.calls or 1000)
    else:
        names, calls = list(CLIENTS), args.calls or CALLS
        with canned(core=0) as server:
            results = asyncio.run(bench(server.url, names, args.rounds, calls))
        report(results, args.rounds, calls)
        balance_calls = args.rounds * len(names) * sum(n + calls for n in IN_FLIGHT)
        served = server.served.pop(BALANCE_PATH, 0)
        every = served + sum(server.served.values())
        print(
            f"\nserved {served:,} balance answers to {balance_calls:,} calls, and {server.served};"
            f" server CPU {server.cpu / every * 1e6:.0f} us per request"
        )
        if served != balance_calls:
            raise SystemExit("the server did not answer each call exactly once")
        if not args.no_transports:  # in a process of its own, as each script runs
            print("\nthe transports the Session could stand on (benchmarks/transports.py):\n")
            here = Path(__file__).resolve().parent
            subprocess.run([sys.executable, str(here / "transports.py")], check=True)


if __name__ == "__main__":
    main()
