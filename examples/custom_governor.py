"""Your own rate-limit hook, shared store and sending layer, written against ``binance_pm`` alone.

A Session asks its governor for a permit before each request and tells the permit what became
of it; :class:`binance_pm.Governor` is the one it makes by default, and any object with
``try_acquire`` and ``acquire`` (a :class:`binance_pm.RateLimitHook`) can stand in for it. Here:

- ``SlidingLog``, a hook that lets at most ``limit`` weight per API family out in any
  ``window`` seconds, and shuts a family for the ``Retry-After`` of a 429;
- ``MemoryStore``, a :class:`binance_pm.Store` that two governors share as processes share
  Redis (``binance_pm.redis.RedisStore`` is the real one);
- ``StandIn``, a :class:`binance_pm.Sender` that is the exchange itself, so that this runs
  with no keys and no network.

Run: ``python examples/custom_governor.py``
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

import anyio

from binance_pm import (
    Answer,
    AsyncClient,
    Endpoint,
    Governor,
    GovernorTimeout,
    Limits,
    Permit,
    RateLimitHook,
    Sender,
    Session,
    SharedCount,
    Store,
    StoreError,
)

API_KEY = "vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A"  # documented example
SECRET = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j"


# -- a hook ------------------------------------------------------------------------------------


class Sent:
    """One request in a :class:`SlidingLog`: when it went out, and its weight."""

    def __init__(self, at: float, weight: int) -> None:
        self.at = at
        self.weight = weight


class LogPermit:
    """One request's weight in a :class:`SlidingLog`."""

    def __init__(self, log: SlidingLog, family: str, sent: Sent) -> None:
        self._log = log
        self._family = family
        self._sent = sent

    def cancel(self) -> None:
        self._log.give_back(self._family, self._sent)

    def complete(self, status: int | None, headers: Mapping[str, str] | None) -> None:
        if status in (429, 418):  # too much weight; a 418 is an IP ban, as long as it says
            retry_after = (headers or {}).get("Retry-After")
            self._log.shut(self._family, float(retry_after) if retry_after else self._log.window)

    async def settle(self) -> None:
        """Nothing to tell anyone: this process alone keeps the log."""


class SlidingLog:
    """At most ``limit`` weight per API family in any ``window`` seconds; a 429 or a 418
    shuts the family for its ``Retry-After``."""

    def __init__(
        self, limit: int, window: float, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.limit = limit
        self.window = window
        self._clock = clock
        self._sent: dict[str, deque[Sent]] = {}
        self._shut_until: dict[str, float] = {}

    def used(self, family: str) -> int:
        """The weight of ``family`` in the last window."""
        sent = self._sent.setdefault(family, deque())
        while sent and sent[0].at + self.window <= self._clock():
            sent.popleft()
        return sum(s.weight for s in sent)

    def _wait(self, endpoint: Endpoint[Any], now: float) -> float:
        """Seconds until ``endpoint``'s weight fits (0: now)."""
        shut = max(self._shut_until.get(endpoint.family, 0.0) - now, 0.0)
        over = self.used(endpoint.family) + endpoint.weight - self.limit
        for sent in self._sent[endpoint.family]:  # oldest first: the first to leave the window
            if over <= 0:
                break
            over -= sent.weight
            shut = max(shut, sent.at + self.window - now)
        return shut

    def _take(self, endpoint: Endpoint[Any], now: float) -> LogPermit:
        sent = Sent(now, endpoint.weight)
        self._sent[endpoint.family].append(sent)
        return LogPermit(self, endpoint.family, sent)

    def try_acquire(self, endpoint: Endpoint[Any], *, account: str) -> Permit | None:
        now = self._clock()
        return self._take(endpoint, now) if self._wait(endpoint, now) == 0 else None

    async def acquire(self, endpoint: Endpoint[Any], *, account: str, deadline: float) -> Permit:
        while True:
            now = self._clock()
            wait = self._wait(endpoint, now)
            if wait == 0:
                return self._take(endpoint, now)
            if anyio.current_time() + wait > deadline:
                raise GovernorTimeout(
                    f"no room for {endpoint.weight} more {endpoint.family} weight in time",
                    endpoint=endpoint.label,
                    retry_after=wait,
                )
            await anyio.sleep(wait)

    def give_back(self, family: str, sent: Sent) -> None:
        if sent in self._sent[family]:
            self._sent[family].remove(sent)

    def shut(self, family: str, seconds: float) -> None:
        until = self._clock() + seconds
        self._shut_until[family] = max(self._shut_until.get(family, 0.0), until)


# -- a store -----------------------------------------------------------------------------------


class MemoryStore:
    """Budgets in this process's memory, for every governor given it: what Redis is to many
    processes. Each budget holds its requests as member -> (weight, when it stops counting)."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._held: dict[str, dict[str, tuple[int, float]]] = {}
        self._shut: dict[str, float] = {}  # budget -> when a 429's shut ends
        self._bans: dict[str, float] = {}  # family -> when a 418's ban ends
        self._count = 0
        self.up = True  # set False to see a governor's on_store_error at work

    def member(self) -> str:
        self._count += 1
        return f"request-{self._count}"

    def _budget(self, name: str, now: float) -> dict[str, tuple[int, float]]:
        held = self._held.setdefault(name, {})
        for member in [m for m, (_, until) in held.items() if until <= now]:
            del held[member]
        return held

    async def charge(
        self,
        budgets: Sequence[tuple[str, int, int]],
        *,
        family: str,
        member: str,
        hold: float,
        window: float,
    ) -> float:
        if not self.up:
            raise StoreError("the store is down")
        now = self._clock()
        wait = max(self._bans.get(family, 0.0) - now, 0.0)
        for name, weight, limit in budgets:
            wait = max(wait, self._shut.get(name, 0.0) - now)
            held = self._budget(name, now)
            over = sum(w for w, _ in held.values()) + weight - limit
            for w, until in sorted(held.values(), key=lambda item: item[1]):
                if over <= 0:
                    break
                over -= w
                wait = max(wait, until - now)
        if wait > 0:
            return wait
        for name, weight, _ in budgets:  # all of them, or (above) none
            self._held[name][member] = (weight, now + hold)
        return 0.0

    async def finish(
        self,
        budgets: Sequence[tuple[str, int, int | None, bool]],
        *,
        family: str,
        member: str,
        window: float,
        shut: float,
        ban: float,
    ) -> None:
        if not self.up:
            raise StoreError("the store is down")
        now = self._clock()
        for name, weight, _reported, shuts in budgets:
            held = self._budget(name, now)
            if member in held:
                held[member] = (weight, now + window)  # counts one window from its answer
            if shuts:
                self._shut[name] = max(self._shut.get(name, 0.0), now + shut)
        if ban:
            self._bans[family] = max(self._bans.get(family, 0.0), now + ban)

    async def cancel(self, budgets: Sequence[tuple[str, int]], *, member: str) -> None:
        if not self.up:
            raise StoreError("the store is down")
        for name, _ in budgets:
            self._held.get(name, {}).pop(member, None)

    async def read(
        self, budgets: Sequence[str], *, families: Sequence[str]
    ) -> tuple[list[SharedCount], dict[str, float]]:
        if not self.up:
            raise StoreError("the store is down")
        now = self._clock()
        counts = []
        for name in budgets:
            held = self._budget(name, now)
            last = max((until for _, until in held.values()), default=now)
            counts.append(
                SharedCount(
                    held=sum(w for w, _ in held.values()),
                    external=0,
                    resets_in=last - now,
                    closed_for=max(self._shut.get(name, 0.0) - now, 0.0),
                )
            )
        return counts, {f: max(self._bans.get(f, 0.0) - now, 0.0) for f in families}


# -- a sending layer ---------------------------------------------------------------------------

BALANCE = {
    "asset": "USDT",
    "totalWalletBalance": "122607.35137903",
    "crossMarginAsset": "92.27530794",
    "crossMarginBorrowed": "10.00000000",
    "crossMarginFree": "100.00000000",
    "crossMarginInterest": "0.72469206",
    "crossMarginLocked": "3.00000000",
    "umWalletBalance": "0.00000000",
    "umUnrealizedPNL": "23.72469206",
    "cmWalletBalance": "23.72469206",
    "cmUnrealizedPNL": "",
    "updateTime": 1617939110373,
    "negativeBalance": "0",
}


class StandIn:
    """The exchange, as a :class:`binance_pm.Sender`: the time endpoint, and
    ``/papi/v1/balance`` with the used weight (20 a call, per minute) in its headers."""

    def __init__(self) -> None:
        self.sent: list[float] = []  # when each balance request arrived

    async def get(
        self, url: str, headers: Mapping[str, str], *, endpoint: str, method: str = "GET"
    ) -> Answer:
        path = urlsplit(url).path
        if path == "/api/v3/time":
            clock = {"serverTime": int(time.time() * 1000)}
            return Answer(200, {"Content-Type": "application/json"}, json.dumps(clock).encode())
        if path == "/papi/v1/balance" and headers.get("X-MBX-APIKEY") == API_KEY:
            now = time.monotonic()
            self.sent = [t for t in self.sent if t > now - 60] + [now]
            used = {"X-MBX-USED-WEIGHT-1M": str(20 * len(self.sent))}
            return Answer(200, used, json.dumps([BALANCE]).encode())
        return Answer(400, {}, b'{"code": -1102, "msg": "Not here."}')

    async def aclose(self) -> None:
        """Nothing to close."""


# -- running them ------------------------------------------------------------------------------


async def with_a_hook_of_its_own() -> None:
    log = SlidingLog(limit=60, window=1.0)  # three balance calls a second
    hook: RateLimitHook = log
    exchange: Sender = StandIn()
    async with AsyncClient(
        API_KEY, secret=SECRET, base_url="https://exchange.example", governor=hook, sender=exchange
    ) as client:
        started = time.monotonic()
        for _ in range(6):
            balances = await client.pm_balance()
        took = time.monotonic() - started
    print(
        f"SlidingLog      6 balance calls at 3 a second took {took:.1f} s; "
        f"{balances[0].asset} wallet {balances[0].total_wallet_balance}; "
        f"papi weight in the last second {log.used('papi')}"
    )


async def two_governors_sharing_a_store() -> None:
    store: Store = MemoryStore()
    limits = Limits(papi_ip=100)  # five balance calls a minute, for both together
    first, second = Governor(store=store, limits=limits), Governor(store=store, limits=limits)
    exchange = StandIn()
    async with (
        Session(base_url="https://exchange.example", governor=first, sender=exchange) as a,
        Session(base_url="https://exchange.example", governor=second, sender=exchange) as b,
    ):
        for session in (a, b, a):
            await session.client(API_KEY, secret=SECRET).pm_balance()
        shared = (await first.asnapshot())["papi_ip"]
        try:
            await b.client(API_KEY, secret=SECRET).pm_balance(timeout=0.5)
            await b.client(API_KEY, secret=SECRET).pm_balance(timeout=0.5)
            await b.client(API_KEY, secret=SECRET).pm_balance(timeout=0.5)
        except GovernorTimeout as refused:
            held = f"{shared.used}/{shared.limit}"
            print(f"MemoryStore     {held} papi weight held by the two governors; then {refused}")


async def main() -> None:
    await with_a_hook_of_its_own()
    await two_governors_sharing_a_store()


if __name__ == "__main__":
    asyncio.run(main())
