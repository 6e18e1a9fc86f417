"""Governor: what one acquire costs, and what one account's budget weighs.

Measures, in one run:

- an uncontended acquire + complete of a UID-weighted call that also takes IP weight (both
  buckets at once, the costliest plan), against aiolimiter's ``AsyncLimiter`` (two limiters
  in sequence, the nearest a user of it gets to two budgets) when it is installed;
- the same acquire as the window fills: after 0, 1,000 and 10,000 requests are held in it,
  to show the cost stays flat (O(1) in what the window holds);
- memory per account budget (tracemalloc), after it has held a dozen requests.

Prints medians of several rounds and the ratio to aiolimiter. Run:
``python benchmarks/governor.py``. Finishes in a few seconds.
"""

from __future__ import annotations

import asyncio
import statistics
import time
import tracemalloc

from binance_pm import Governor
from binance_pm._endpoints import PM_PRO_ACCOUNT

ROUNDS = 7
CALLS = 20_000
FAR = 1e12


async def acquire_cost(filled: int) -> float:
    gov = Governor(sapi_uid=10**9, sapi_ip=10**9, sapi_uid_ip_weight=5, window=3600)
    account = "A" * 64
    for _ in range(filled):  # requests held in the window already
        (await gov.acquire(PM_PRO_ACCOUNT, account=account, deadline=FAR)).complete(200, None)
    best = []
    for _ in range(ROUNDS):
        started = time.perf_counter()
        for _ in range(CALLS):
            permit = await gov.acquire(PM_PRO_ACCOUNT, account=account, deadline=FAR)
            permit.complete(200, None)
        best.append((time.perf_counter() - started) / CALLS)
    return statistics.median(best)


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


async def main() -> None:
    peer = await aiolimiter_cost()
    print("uncontended acquire + complete, IP and UID budgets together (median of rounds)")
    for filled in (0, 1_000, 10_000):
        cost = await acquire_cost(filled)
        ratio = f"  ({cost / peer:.2f}x aiolimiter x2)" if peer else ""
        print(f"  {filled:>6} requests already held: {cost * 1e6:6.2f} us{ratio}")
    if peer:
        print(f"  aiolimiter, two limiters in sequence: {peer * 1e6:6.2f} us")
    else:
        print("  (aiolimiter not installed: pip install -e '.[bench]')")
    print(f"memory per account budget, 12 requests held: {await bucket_memory():.0f} bytes")


if __name__ == "__main__":
    asyncio.run(main())
