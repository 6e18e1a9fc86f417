"""A risk desk of 1,000 accounts: streams with a slow REST reconciliation, against polling alone.

The simulated exchange runs in its own process (``binance-pm serve``, pinned to one core, this
process to the other) with the published limits, on a clock ten times the exchange's: windows
of 6 s instead of 60, ``PM_PRO_ACCOUNT_UPDATE`` every 0.5 s instead of 5. A tenth of its
accounts drift towards margin calls, so their risk levels change during the run.

- **streams**: ``Session.poll(accounts, stream=True, reconcile_every=90)`` (fifteen minutes of
  the exchange's time; the run is longer, so one reconciliation round falls in it): the delay
  from each risk event (its ``E``, the exchange's clock, this machine's too) to the caller,
  p50 and p99; the share of each REST budget used once the
  first REST round is done (target ≤ 10 %); this process's CPU per event received, once the
  first round is done and every stream is open (all of its work: streams, REST, the merge).
- **polling alone**: the same desk with ``Session.poll(accounts, every=0.05)`` (as fast as the
  budget allows): the share used (100 % is the point), and its staleness: the time between two
  refreshes of an account, p50 and p99, which bounds how late a risk change is seen (half of
  it on average).

Figures are printed in the exchange's own time (the run's seconds times ten).

Run: ``python benchmarks/streams.py`` (about 3 minutes); ``--accounts N``, ``--seconds S``.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import statistics
import time
from collections import defaultdict
from contextlib import aclosing
from typing import Any

import httpx
from _serve import keys, pin, serve

from binance_pm import Governor, Limits, RiskLevelChange, Session, Update
from binance_pm._endpoints import STATE_ENDPOINT
from binance_pm.testing import budget_use

SCALE = 10  # the exchange's seconds per second of this run
WINDOW = 60 / SCALE
PUSH_EVERY = 5 / SCALE
RECONCILE = 900 / SCALE  # fifteen minutes of the exchange's time


def percentile(values: list[float], share: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def shares(base_url: str, since_ms: float, until_ms: float, uid_accounts: int) -> dict[str, float]:
    stats = httpx.get(f"{base_url}/_sim/stats?arrivals=1", timeout=60).json()
    limits = {name: Limits()[name] for name in ("papi_ip", "sapi_ip", "fapi_ip", "sapi_uid")}
    used, _ = budget_use(
        stats["arrivals"],
        limits,
        window=WINDOW,
        started_ms=since_ms - WINDOW * 1000,  # budget_use skips its first window
        stopped_ms=until_ms,
        uid_accounts=uid_accounts,
    )
    return used


async def desk(
    base_url: str, accounts: list[dict[str, Any]], *, stream: bool, seconds: float
) -> dict[str, Any]:
    governor = Governor(window=WINDOW)
    jobs = {}
    ERRORS.clear()
    async with Session(base_url=base_url, governor=governor, timeout=30) as session:
        for account in accounts:
            client = session.client(account["api_key"], name=account["name"], **keys(account))
            jobs[client] = STATE_ENDPOINT[account["account_type"]]
        delays: list[float] = []
        refreshed: dict[str, list[float]] = defaultdict(list)
        events = 0
        first_round_done: float | None = None
        rest_seen: set[str] = set()
        started = time.time()
        cpu = time.process_time()
        if stream:
            updates = session.poll(jobs, stream=True, reconcile_every=RECONCILE)
        else:
            updates = session.poll(jobs, every=0.05)  # as often as the budget allows
        async with aclosing(updates):
            async for update in updates:
                now = time.time()
                if now - started > seconds:
                    break
                record(update, now, refreshed, rest_seen)
                if first_round_done is None and len(rest_seen) == len(jobs):
                    first_round_done = now
                    cpu, events = time.process_time(), 0  # steady state from here
                if update.source == "stream" and update.event is not None:
                    events += 1
                    if isinstance(update.event, RiskLevelChange):
                        delays.append(now * 1000 - update.event.event_time)
        cpu = time.process_time() - cpu
        stopped = time.time()
    uid_accounts = sum(1 for a in accounts if a["account_type"] == "PM_1")
    since = first_round_done if first_round_done is not None else started
    product = {a["name"]: "PM" if a["account_type"] == "PM_2" else "PM Pro" for a in accounts}
    intervals: dict[str, list[float]] = defaultdict(list)
    for name, times in refreshed.items():
        intervals[product[name]] += [(b - a) * SCALE for a, b in itertools.pairwise(times)]
    return {
        "delays_ms": delays,
        "events": events,
        "cpu": cpu,
        "first_round": (since - started) * SCALE,
        "shares": shares(base_url, since * 1000, stopped * 1000, uid_accounts),
        "intervals": intervals,
        "errors": dict(ERRORS),
    }


ERRORS: dict[str, int] = defaultdict(int)


def record(update: Update, now: float, refreshed: dict[str, list[float]], rest: set[str]) -> None:
    if update.error is not None:
        ERRORS[f"{update.source}: {str(update.error).split(' [account')[0]}"] += 1
    if update.error is None:
        refreshed[update.name].append(now)
        if update.source == "rest":
            rest.add(update.name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--accounts", type=int, default=1000)
    parser.add_argument(
        "--seconds", type=float, default=120.0, help="the streams run (polling alone: 45 s)"
    )
    args = parser.parse_args()
    pin(1)
    options = ["--accounts", str(args.accounts), "--window", str(WINDOW), "--seed", "3"]
    options += ["--push-every", str(PUSH_EVERY)]
    results = {}
    for name, stream in (("streams", True), ("polling alone", False)):
        with serve(*options, core=0) as (base_url, accounts):
            seconds = args.seconds if stream else min(args.seconds, 45.0)
            results[name] = asyncio.run(desk(base_url, accounts, stream=stream, seconds=seconds))
    print(
        f"{args.accounts} accounts; the exchange's clock runs {SCALE}× (windows of {WINDOW:g} s "
        "with the published limits); figures in the exchange's time"
    )
    for name, result in results.items():
        stream_run = name == "streams"
        used = ", ".join(f"{k} {v:.1%}" for k, v in sorted(result["shares"].items()) if v)
        print(f"\n== {name} ==")
        print(f"first REST round done after {result['first_round']:.0f} s (exchange time)")
        print(f"REST budget used after it: {used}")
        if name == "streams":
            delays = result["delays_ms"]
            print(
                f"risk events: {len(delays)}, delay to the caller p50 "
                f"{percentile(delays, 0.5):.1f} ms, p99 {percentile(delays, 0.99):.1f} ms"
            )
            per_event = result["cpu"] / max(result["events"], 1) * 1e6
            print(f"events received: {result['events']}, CPU per event {per_event:.0f} µs")
        for text, count in sorted(result["errors"].items()):
            print(f"error updates: {count} × {text}")
        for kind, intervals in sorted(result["intervals"].items()):
            how = "figures refreshed (REST or pushed)"
            if stream_run and kind == "PM":
                how = "whole figures refreshed (REST; risk changes are pushed)"
            print(
                f"{kind} accounts, {how}: every p50 {statistics.median(intervals):.1f} s, "
                f"p99 {percentile(intervals, 0.99):.1f} s"
            )


if __name__ == "__main__":
    main()
