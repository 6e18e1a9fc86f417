"""Budget: 1,000 accounts polled flat out against limits that bind, for several windows.

The simulated exchange runs as ``binance-pm serve`` in its own process (pinned to one core, this
client to the other), counting in sliding windows of ``WINDOW`` seconds, with limits scaled
down so that they bind: papi IP, sapi IP and each account's UID budget. Measured over whole
windows after the first (the opening burst's):

- binance_pm: one Session, ``Session.poll`` over all accounts asking every 0.01 s;
- ccxt's ``Throttler`` shared by hand, the best a ccxt user can do: one throttler per IP
  budget shared by every account, one per account for its UID budget (a ccxt instance per
  account has its own), each charged the endpoint's weight at the exchange's rate, in front of
  the same signed httpx requests (aiohttp transport), one loop per account, when installed.

Prints, per run: weight used as a share of each budget, 429s and 418s, and each account's time
between answers (p50 and p99 over accounts). Targets: at least 97 % used, 0 429s.
Run: ``python benchmarks/budget.py``. Finishes in about a minute.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections import defaultdict
from typing import Any
from urllib.parse import urlencode

import httpx
from _serve import keys, pin, serve
from httpx_aiohttp import AiohttpTransport

from binance_pm import Governor, Limits, Session
from binance_pm._endpoints import ENDPOINTS, STATE_ENDPOINT
from binance_pm.testing import budget_use

ACCOUNTS = 1_000
WINDOW = 1.0
LIMITS = {"papi_ip": 2000, "sapi_ip": 1000, "sapi_uid": 5}
SECONDS = 7.0
ENDPOINT = STATE_ENDPOINT
#: Per account type: the path, weight and budget a peer's plain request of its endpoint takes.
PATH = {
    kind: (e.path, e.weight, "uid" if e.bucket == "uid" else e.family)
    for kind, e in ((kind, ENDPOINTS[name]) for kind, name in STATE_ENDPOINT.items())
}


def exchange_args() -> list[str]:
    args = ["--accounts", str(ACCOUNTS), "--window", str(WINDOW), "--window-mode", "sliding"]
    for name, limit in LIMITS.items():
        args += [f"--{name.replace('_', '-')}", str(limit)]
    return args


def report(
    name: str,
    base_url: str,
    accounts: list[dict[str, Any]],
    answers: dict[str, list[float]],
    started: float,
    stopped: float,
) -> None:
    stats = httpx.get(f"{base_url}/_sim/stats?arrivals=1", timeout=30).json()
    used, windows = budget_use(
        stats["arrivals"],
        LIMITS,
        window=WINDOW,
        started_ms=started * 1000,
        stopped_ms=stopped * 1000,
        uid_accounts=sum(1 for a in accounts if a["account_type"] == "PM_1"),
    )
    shares = ", ".join(f"{budget} {share:.1%}" for budget, share in used.items())
    by_status = stats["by_status"]
    print(f"{name}")
    print(f"  used over {windows} windows: {shares}")
    print(f"  429s {by_status.get('429', 0)}, 418s {by_status.get('418', 0)}")
    kind = {a["name"]: ENDPOINT[a["account_type"]] for a in accounts}
    for endpoint in ENDPOINT.values():
        spans = sorted(
            (times[-1] - times[0]) / (len(times) - 1)
            for account, times in answers.items()
            if len(times) > 2 and kind[account] == endpoint
        )
        if not spans:
            print(f"  {endpoint}: fewer than three answers per account")
            continue
        p50 = statistics.median(spans)
        p99 = spans[min(len(spans) - 1, int(len(spans) * 0.99))]
        print(
            f"  {endpoint:<20} time between answers per account: p50 {p50:.2f} s, "
            f"p99 {p99:.2f} s ({p99 / p50:.2f}x)"
        )


async def ours(base_url: str, accounts: list[dict[str, Any]]) -> None:
    governor = Governor(
        window=WINDOW,
        limits=Limits(
            papi_ip=LIMITS["papi_ip"], sapi_ip=LIMITS["sapi_ip"], sapi_uid=LIMITS["sapi_uid"]
        ),
    )
    answers: dict[str, list[float]] = defaultdict(list)
    async with Session(base_url=base_url, governor=governor, timeout=60) as session:
        jobs = {}
        names = {}
        for a in accounts:
            client = session.client(a["api_key"], **keys(a))
            jobs[client] = ENDPOINT[a["account_type"]]
            names[client] = a["name"]
        started = time.time()
        async with session.poll(jobs, every=0.01) as updates:
            async for update in updates:
                if update.ok:
                    answers[names[update.client]].append(update.at)
                if time.time() - started >= SECONDS:
                    break
        stopped = time.time()
    report("binance_pm: Session.poll", base_url, accounts, answers, started, stopped)


async def ccxt_shared(base_url: str, accounts: list[dict[str, Any]]) -> None:
    from ccxt.async_support.base.throttler import Throttler

    def throttler(limit: int) -> Any:
        return Throttler({"refillRate": limit / (WINDOW * 1000), "capacity": 1.0, "delay": 0.001})

    shared = {"papi": throttler(LIMITS["papi_ip"]), "sapi": throttler(LIMITS["sapi_ip"])}
    http = httpx.AsyncClient(transport=AiohttpTransport(), timeout=60)
    answers: dict[str, list[float]] = defaultdict(list)
    stop = time.time() + SECONDS

    async def loop(account: dict[str, Any]) -> None:
        from binance_pm._signing import load_signer

        signer = load_signer(**keys(account))
        path, weight, budget = PATH[account["account_type"]]
        gate = shared.get(budget) or throttler(LIMITS["sapi_uid"])
        while time.time() < stop:
            await gate(weight)
            query = urlencode({"recvWindow": 5000, "timestamp": int(time.time() * 1000)})
            signature = signer.sign(query.encode())
            response = await http.get(
                f"{base_url}{path}?{query}&signature={signature}",
                headers={"X-MBX-APIKEY": account["api_key"]},
            )
            if response.status_code == 200:
                answers[account["name"]].append(time.time())
            elif response.status_code in (429, 418):
                await asyncio.sleep(float(response.headers.get("retry-after", "1")))

    started = time.time()
    async with http:
        await asyncio.gather(*(loop(a) for a in accounts))
    report("ccxt Throttler shared by hand", base_url, accounts, answers, started, stop)


async def main() -> None:
    pin(1)
    print(f"{ACCOUNTS} accounts, {WINDOW:g} s sliding windows, limits {LIMITS}, {SECONDS:g} s each")
    with serve(*exchange_args(), core=0) as (base_url, accounts):
        await ours(base_url, accounts)
    try:
        import ccxt  # noqa: F401
    except ImportError:
        print("(ccxt not installed: pip install -e '.[bench]')")
        return
    with serve(*exchange_args(), core=0) as (base_url, accounts):
        await ccxt_shared(base_url, accounts)


if __name__ == "__main__":
    asyncio.run(main())
