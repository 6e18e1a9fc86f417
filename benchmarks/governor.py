"""Governor: what one acquire costs, and what one account's budget weighs.

Measures, in one run:

- an uncontended acquire of a UID-weighted call that also takes IP weight (both buckets at
  once, the costliest plan), the way a Session makes it (``try_acquire``, awaiting ``acquire``
  only when that returns ``None``), and the ``complete`` that reports its answer, against
  aiolimiter's ``AsyncLimiter`` (two limiters
  in sequence, the nearest a user of it gets to two budgets) when it is installed;
- the same acquire as the window fills: after 0, 1,000 and 10,000 requests are held in it,
  to show the cost stays flat (O(1) in what the window holds);
- memory per account budget (tracemalloc), after it has held a dozen requests.

Prints medians of several rounds and the ratio to aiolimiter; the contended figures are
medians of rounds in rotated order, the garbage collected before each (target: ours ≤ 1.00×
aiolimiter's CPU per grant). Run:
``python benchmarks/governor.py``. Finishes in a few seconds.
"""

from __future__ import annotations

import asyncio
import gc
import shutil
import socket
import statistics
import subprocess
import time
import tracemalloc
from collections.abc import Callable, Coroutine
from typing import Any

import anyio
import httpx

from binance_pm import Governor, Limits
from binance_pm._endpoints import PM_PRO_ACCOUNT, PM_PRO_SPAN_ACCOUNT

ROUNDS = 7
CALLS = 20_000
FAR = 1e12


BATCH = 1_000
# A sapi answer's headers, as httpx hands them over; the governor learns from the used-weight
# ones, as it would from the exchange.
ANSWER_HEADERS = httpx.Headers(
    [
        ("Content-Type", "application/json;charset=UTF-8"),
        ("Content-Length", "512"),
        ("Connection", "keep-alive"),
        ("Date", "Sat, 21 Nov 2026 08:00:00 GMT"),
        ("Server", "nginx"),
        ("x-sapi-used-ip-weight-1m", "5"),
        ("x-sapi-used-uid-weight-1m", "5"),
        ("Strict-Transport-Security", "max-age=31536000; includeSubdomains"),
        ("X-Frame-Options", "SAMEORIGIN"),
        ("X-Xss-Protection", "1; mode=block"),
        ("X-Content-Type-Options", "nosniff"),
        ("Cache-Control", "no-cache, no-store, must-revalidate"),
    ]
)


async def acquire_cost(filled: int) -> tuple[float, float]:
    """Median seconds per acquire and per complete, as a Session makes them."""
    gov = Governor(limits=Limits(sapi_uid=10**9, sapi_ip=10**9), sapi_uid_ip_weight=5, window=3600)
    account = "A" * 64
    for _ in range(max(filled, 1)):  # requests held in the window already
        (await gov.acquire(PM_PRO_ACCOUNT, account=account, deadline=FAR)).complete(200, None)
    acquires, completes = [], []
    for _ in range(ROUNDS):
        spent_acquiring = spent_completing = 0.0
        for _ in range(CALLS // BATCH):
            # A batch in flight at once, then answered: the window's contents stay the same.
            started = time.perf_counter()
            permits = [
                gov.try_acquire(PM_PRO_ACCOUNT, account=account)
                or await gov.acquire(PM_PRO_ACCOUNT, account=account, deadline=FAR)
                for _ in range(BATCH)
            ]
            acquired = time.perf_counter()
            for permit in permits:
                permit.complete(200, ANSWER_HEADERS)
            spent_acquiring += acquired - started
            spent_completing += time.perf_counter() - acquired
        acquires.append(spent_acquiring / CALLS)
        completes.append(spent_completing / CALLS)
    return statistics.median(acquires), statistics.median(completes)


async def aiolimiter_cost() -> float | None:
    try:
        from aiolimiter import AsyncLimiter
    except ImportError:
        return None
    ip, uid = AsyncLimiter(10**9, 3600), AsyncLimiter(10**9, 3600)
    best = []
    for _ in range(ROUNDS):
        started = time.perf_counter()
        for _ in range(CALLS):
            await ip.acquire(5)
            await uid.acquire(5)
        best.append((time.perf_counter() - started) / CALLS)
    return statistics.median(best)


async def bucket_memory(accounts: int = 2000) -> float:
    gov = Governor(window=3600)
    keys = [f"{i:064d}" for i in range(accounts)]
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    for key in keys:
        for _ in range(12):  # polled every 5 s for a minute
            (await gov.acquire(PM_PRO_ACCOUNT, account=key, deadline=FAR)).complete(200, None)
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    grown = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    return grown / accounts


async def ccxt_cost() -> float | None:
    """ccxt's async throttler, two in sequence, with room to spare (uncontended)."""
    try:
        from ccxt.async_support.base.throttler import Throttler
    except ImportError:
        return None
    config = {"refillRate": 1e9, "capacity": 1e9, "tokens": 1e9, "delay": 0.001}
    ip, uid = Throttler(dict(config)), Throttler(dict(config))
    best = []
    for _ in range(ROUNDS):
        started = time.perf_counter()
        for _ in range(CALLS // 10):
            await ip(5)
            await uid(5)
        best.append((time.perf_counter() - started) / (CALLS // 10))
    return statistics.median(best)


WAITERS = 1_000
CONTENDED_ROUNDS = 7
GRANTS_PER_WINDOW = 200
CONTENDED_WINDOW = 0.1


async def contended(acquire: Callable[[], Coroutine[Any, Any, None]]) -> float:
    """CPU seconds per grant with ``WAITERS`` tasks waiting on a budget that binds: room for
    ``GRANTS_PER_WINDOW`` every ``CONTENDED_WINDOW`` seconds."""
    started = time.process_time()
    async with anyio.create_task_group() as group:
        for _ in range(WAITERS):
            group.start_soon(acquire)
    return (time.process_time() - started) / WAITERS


async def contended_costs() -> dict[str, list[float]]:
    """Each limiter's CPU per grant, round after round (the order rotated each round, the
    garbage collected before each measurement), so that drift and collections hit all alike."""
    contenders = contended_contenders()
    costs: dict[str, list[float]] = {name: [] for name in contenders}
    names = list(contenders)
    for round_ in range(CONTENDED_ROUNDS):
        for name in names[round_ % len(names) :] + names[: round_ % len(names)]:
            gc.collect()
            costs[name].append(await contended(contenders[name]()))
    return costs


def contended_contenders() -> dict[str, Callable[[], Callable[[], Coroutine[Any, Any, None]]]]:
    """For each limiter, a maker of a fresh limiter's acquire."""
    contenders: dict[str, Callable[[], Callable[[], Coroutine[Any, Any, None]]]] = {}

    def governor() -> Callable[[], Coroutine[Any, Any, None]]:
        gov = Governor(window=CONTENDED_WINDOW, limits=Limits(sapi_ip=5 * GRANTS_PER_WINDOW))

        async def ours() -> None:
            permit = gov.try_acquire(PM_PRO_SPAN_ACCOUNT, account="") or await gov.acquire(
                PM_PRO_SPAN_ACCOUNT, account="", deadline=FAR
            )
            permit.complete(200, None)

        return ours

    contenders["binance_pm Governor"] = governor
    try:
        from aiolimiter import AsyncLimiter
    except ImportError:
        pass
    else:

        def aiolimiter() -> Callable[[], Coroutine[Any, Any, None]]:
            limiter = AsyncLimiter(GRANTS_PER_WINDOW, CONTENDED_WINDOW)

            async def aiolimiter_one() -> None:
                await limiter.acquire()

            return aiolimiter_one

        contenders["aiolimiter"] = aiolimiter
    try:
        from ccxt.async_support.base.throttler import Throttler
    except ImportError:
        pass
    else:

        def ccxt() -> Callable[[], Coroutine[Any, Any, None]]:
            throttler = Throttler(
                {
                    "refillRate": GRANTS_PER_WINDOW / (CONTENDED_WINDOW * 1000),  # per ms
                    "capacity": 1.0,
                    "delay": 0.001,
                }
            )

            async def ccxt_one() -> None:
                await throttler(1)

            return ccxt_one

        contenders["ccxt Throttler"] = ccxt
    return contenders


def start_redis(executable: str) -> tuple[subprocess.Popen[bytes], int]:
    """A ``redis-server`` on a free loopback port, saving nothing."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [executable, "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    server = subprocess.Popen(
        [*command, "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    return server, port


async def redis_cost() -> tuple[float, float] | None:
    """Median seconds per acquire and per settle with a Redis store on loopback (a
    ``redis-server`` started here), or ``None`` without one."""
    executable = shutil.which("redis-server")
    try:
        from binance_pm.redis import RedisStore
    except ImportError:
        return None
    if executable is None:
        return None
    server, port = start_redis(executable)
    try:
        store = RedisStore(f"redis://127.0.0.1:{port}/0", prefix="bench")
        gov = Governor(
            limits=Limits(sapi_uid=10**9, sapi_ip=10**9), sapi_uid_ip_weight=5, store=store
        )
        for _ in range(100):  # until it answers, and warm
            try:
                permit = await gov.acquire(PM_PRO_ACCOUNT, account="A" * 64, deadline=FAR)
            except Exception:
                await asyncio.sleep(0.05)
                continue
            permit.complete(200, ANSWER_HEADERS)
            await permit.settle()
        acquires, settles = [], []
        for _ in range(ROUNDS):
            spent_acquiring = spent_settling = 0.0
            calls = 2_000
            for _ in range(calls):
                started = time.perf_counter()
                permit = await gov.acquire(PM_PRO_ACCOUNT, account="A" * 64, deadline=FAR)
                acquired = time.perf_counter()
                permit.complete(200, ANSWER_HEADERS)
                await permit.settle()
                spent_acquiring += acquired - started
                spent_settling += time.perf_counter() - acquired
            acquires.append(spent_acquiring / calls)
            settles.append(spent_settling / calls)
        await store.aclose()
        return statistics.median(acquires), statistics.median(settles)
    finally:
        server.terminate()
        server.wait(10)


async def main() -> None:
    peer = await aiolimiter_cost()
    ccxt = await ccxt_cost()
    print("uncontended acquire, IP and UID budgets together, then complete (median of rounds)")
    for filled in (0, 1_000, 10_000):
        acquire, complete = await acquire_cost(filled)
        ratio = f" ({acquire / peer:.2f}x aiolimiter x2)" if peer else ""
        print(
            f"  {filled:>6} requests already held: acquire {acquire * 1e6:5.2f} us{ratio},"
            f" complete {complete * 1e6:5.2f} us"
        )
    if peer:
        print(f"  aiolimiter, two limiters in sequence: {peer * 1e6:6.2f} us")
    else:
        print("  (aiolimiter not installed: pip install -e '.[bench]')")
    if ccxt:
        print(f"  ccxt's async Throttler, two in sequence: {ccxt * 1e6:6.2f} us")
    print(
        f"{WAITERS} tasks waiting on a budget of {GRANTS_PER_WINDOW} grants per "
        f"{CONTENDED_WINDOW:g} s: CPU per grant"
    )
    costs = await contended_costs()
    ours = costs["binance_pm Governor"]
    for name, rounds in costs.items():
        ratios = [o / c for o, c in zip(ours, rounds, strict=True)]
        print(
            f"  {name:<22} {statistics.median(rounds) * 1e6:8.1f} us  (ours / this:"
            f" {statistics.median(ratios):.2f}x, rounds {min(ratios):.2f}-{max(ratios):.2f})"
        )
    if "aiolimiter" in costs:
        ratios = [o / a for o, a in zip(ours, costs["aiolimiter"], strict=True)]
        print(f"  ours / aiolimiter's: {statistics.median(ratios):.2f}x (target <= 1.00x)")
    print(f"memory per account budget, 12 requests held: {await bucket_memory():.0f} bytes")
    local, _ = await acquire_cost(0)
    shared = await redis_cost()
    if shared is None:
        print("Redis store: not measured (needs redis-server and pip install -e '.[redis]')")
    else:
        acquire, settle = shared
        print(
            "with a Redis store on loopback (one round trip each, wall time): acquire "
            f"{acquire * 1e6:.0f} us ({acquire / local:.0f}x in memory), settle after the "
            f"answer {settle * 1e6:.0f} us"
        )


if __name__ == "__main__":
    asyncio.run(main())
