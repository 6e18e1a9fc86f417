"""Session.poll with 1,000 accounts: CPU time per poll, and memory per account.

The simulated exchange runs in its own process (``binance-pm serve``), with limits high enough
that the budget does not bind, so every account is polled every ``EVERY`` seconds. This process
then measures:

- CPU time per poll: this process's CPU time over the run, divided by the updates it got (each
  one a signed request sent, its answer decoded to Decimals, the governor asked and told, the
  poller's bookkeeping);
- memory per account: memory allocated and still held (tracemalloc) once 1,000 accounts'
  clients and jobs are running, over 1,000.

Run: ``python benchmarks/poller.py``. Takes about half a minute.
"""

from __future__ import annotations

import asyncio
import time
import tracemalloc
from collections import Counter
from contextlib import aclosing
from typing import Any

from _serve import keys, serve

from binance_pm import Governor, Session
from binance_pm._endpoints import STATE_ENDPOINT
from binance_pm._signing import load_signer

ACCOUNTS = 1_000
EVERY = 1.0
SECONDS = 12.0
ENDPOINT = STATE_ENDPOINT
HIGH = str(10**9)


async def poll_for(
    base_url: str, accounts: list[dict[str, Any]], seconds: float, traced: bool
) -> tuple[int, float, float]:
    """(updates, CPU seconds, bytes held per account) over ``seconds`` of polling."""
    governor = Governor(api_ip=10**9, sapi_ip=10**9, sapi_uid=10**9, papi_ip=10**9)
    if traced:
        tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0] if traced else 0
    async with Session(base_url=base_url, governor=governor, timeout=30) as session:
        jobs = {
            session.client(a["api_key"], **keys(a)): ENDPOINT[a["account_type"]] for a in accounts
        }
        updates = errors = 0
        cpu = time.process_time()
        held = 0.0
        async with aclosing(session.poll(jobs, every=EVERY)) as stream:
            ends = time.monotonic() + seconds
            async for update in stream:
                updates += 1
                errors += not update.ok
                if time.monotonic() >= ends:
                    break
        cpu = time.process_time() - cpu
        if traced:
            held = (tracemalloc.get_traced_memory()[0] - before) / len(accounts)
            tracemalloc.stop()
    if errors:
        print(f"  ({errors} of {updates} polls failed)")
    return updates, cpu, held


def signing_cost(accounts: list[dict[str, Any]]) -> dict[str, float]:
    """Seconds one signature takes, per key type."""
    payload = b"recvWindow=5000&timestamp=1700000000000"
    costs = {}
    for key_type in ("HMAC", "ED25519", "RSA"):
        account = next(a for a in accounts if a["key_type"] == key_type)
        signer = load_signer(**keys(account))
        started = time.process_time()
        for _ in range(200):
            signer.sign(payload)
        costs[key_type] = (time.process_time() - started) / 200
    return costs


async def main() -> None:
    limits = ["--api-ip", HIGH, "--sapi-ip", HIGH, "--sapi-uid", HIGH, "--papi-ip", HIGH]
    with serve("--accounts", str(ACCOUNTS), *limits) as (base_url, accounts):
        mix = Counter(a["key_type"] for a in accounts)
        print(
            f"{len(accounts)} accounts ({', '.join(f'{n} {t}' for t, n in sorted(mix.items()))}),"
            f" each polled every {EVERY:g} s, exchange in its own process"
        )
        updates, cpu, _ = await poll_for(base_url, accounts, SECONDS, traced=False)
        per_poll = cpu / updates
        signing = signing_cost(accounts)
        mean_signing = sum(signing[t] * n for t, n in mix.items()) / len(accounts)
        print(f"  {updates} polls in {SECONDS:g} s: {per_poll * 1e6:.0f} us CPU per poll")
        print(
            "  of which signing: "
            + ", ".join(f"{t} {cost * 1e6:.0f} us" for t, cost in signing.items())
            + f" (mean for this mix {mean_signing * 1e6:.0f} us);"
            f" the rest: {(per_poll - mean_signing) * 1e6:.0f} us per poll"
        )
        _, _, held = await poll_for(base_url, accounts, 3.0, traced=True)
        print(f"  memory per account (clients, jobs, budgets, keys): {held / 1024:.1f} KiB")


if __name__ == "__main__":
    asyncio.run(main())
