"""A risk desk's streams under the exchange's rules: connecting 1,000 and 10,000 accounts at the
connection-attempt limit, then 1,000 accounts streaming with a slow REST reconciliation against
polling alone.

The simulated exchange runs in its own process (``binance-pm serve``, pinned to one core, this
process to the other) with the published limits on a faster clock, so figures are given in the
exchange's own time.

- **connecting** (the clock a hundred times the exchange's: 300 connection attempts per 3 s,
  as 300 per 5 minutes): ``Session.stream`` over N accounts from a cold start until every one
  has connected, one connection per listen key; against the least time the limit allows
  (``ceil(N / 300) - 1`` windows of 5 minutes), with the most attempts counted by the exchange
  in any 5 minutes, its refusals and bans, and the share of the fapi and papi budgets the
  listen keys took. Pushes are off here: this measures the connecting alone. RSA accounts are
  left out (their keys take the longest to load: another issue's figure).
- **streams** (the clock ten times the exchange's): ``Session.poll(accounts, stream=True,
  reconcile_every=900)``, measured once every account has connected and the first REST round
  is done: the delay from each risk event (its ``E``) to the caller, p50 and p99; the share of
  each REST budget used (target ≤ 10 %); this process's CPU per event received (all of its
  work: streams, REST, the merge).
- **polling alone**: the same desk with ``Session.poll(accounts, every=0.05)`` (as fast as the
  budget allows): the share used (100 % is the point), and the time between two refreshes of
  an account, p50 and p99, which bounds how late a risk change is seen.

Each connecting run is made twice: one connection per listen key (what the PM pages
document), and combined streams of up to 100 keys a connection (``streams_per_connection``).

- **the large desk**: 10,000 accounts streaming on combined connections, the same figures
  (its PM Pro accounts push a tenth as often: at this clock one core could not read them).

Run: ``python benchmarks/streams.py`` (about 15 minutes); ``--accounts N`` for the streaming
desk, ``--large N`` for the large one, ``--connect 1000,10000`` for the connecting runs (0 for
none of each), ``--seconds S``.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import statistics
import time
from collections import defaultdict
from typing import Any

import httpx
from _serve import keys, pin, serve

from binance_pm import Governor, Limits, RiskLevelChange, Session, Update
from binance_pm._endpoints import ENDPOINTS, STATE_ENDPOINT, STREAM_OF
from binance_pm.testing import budget_use, most_in_any_window

SCALE = 10  # the exchange's seconds per second of the streaming runs
WINDOW = 60 / SCALE
PUSH_EVERY = 5 / SCALE
RECONCILE = 900 / SCALE  # fifteen minutes of the exchange's time
RECONCILE_LARGE = 7200 / SCALE  # two hours, for the large desk
CONNECT_SCALE = 100  # and of the connecting runs
COMBINED = 100  # keys a combined connection carries (the most whose URL stays under 8 KiB)
PUBLISHED = Limits()


def scaled_limits(scale: float) -> Limits:
    """The published limits on a clock ``scale`` times the exchange's: the same weights per
    (shorter) window, the same connection attempts per (shorter) ``ws_window``."""
    return Limits(ws_window=PUBLISHED.ws_window / scale)


def sim_stats(base_url: str) -> dict[str, Any]:
    answer: dict[str, Any] = httpx.get(f"{base_url}/_sim/stats?arrivals=1", timeout=60).json()
    return answer


async def connect(
    base_url: str, accounts: list[dict[str, Any]], per_connection: int
) -> dict[str, Any]:
    """Stream every account from a cold start until each has connected."""
    limits = scaled_limits(CONNECT_SCALE)
    governor = Governor(window=60 / CONNECT_SCALE, limits=limits)
    async with Session(base_url=base_url, governor=governor, timeout=60) as session:
        jobs = {
            session.client(a["api_key"], name=a["name"], **keys(a)): (STREAM_OF[a["account_type"]])
            for a in accounts
        }
        connected: set[str] = set()
        errors: dict[str, int] = defaultdict(int)
        started, cpu = time.monotonic(), time.process_time()
        # Pushes are off in this run: no PM Pro stream is probed for its missing updates.
        stream = session.stream(
            jobs, close_keys=False, silent_after=86_400, streams_per_connection=per_connection
        )
        async with stream as updates:
            async for update in updates:
                if update.error is not None:
                    errors[str(update.error).split(" [account")[0]] += 1
                if update.connected:
                    connected.add(update.name)
                    if len(connected) == len(jobs):
                        break
        took = time.monotonic() - started
        cpu = time.process_time() - cpu
    stats = await asyncio.to_thread(sim_stats, base_url)
    attempts = [entry for entry in stats["arrivals"] if entry[1] == "ws_connect"]
    most = most_in_any_window(attempts, limits.ws_window).get("ws_connect", 0)
    rest = {name: stats["weight"].get(f"{name}_ip", 0) for name in ("fapi", "papi")}
    windows = max(took, 60 / CONNECT_SCALE) / (60 / CONNECT_SCALE)
    products = {"pm": 0, "pm_pro": 0}
    for product in jobs.values():
        products[product] += 1
    lines = sum(-(-n // per_connection) for n in products.values())
    return {
        "accounts": len(jobs),
        "per_connection": per_connection,
        "connections": lines,
        "took": took * CONNECT_SCALE,
        "ideal": PUBLISHED.ws_window * (-(-lines // PUBLISHED.ws_connect) - 1),
        "most": most,
        "refused": stats["ws_refused"],
        "banned": stats["ws_banned"],
        "rest_share": {k: v / (PUBLISHED[f"{k}_ip"] * windows) for k, v in rest.items()},
        "cpu_per_account": cpu / max(len(jobs), 1) * 1e6,
        "errors": dict(errors),
    }


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
    base_url: str,
    accounts: list[dict[str, Any]],
    *,
    stream: bool,
    seconds: float,
    per_connection: int = 1,
    reconcile: float = RECONCILE,
) -> dict[str, Any]:
    governor = Governor(window=WINDOW, limits=scaled_limits(SCALE))
    jobs = {}
    ERRORS.clear()
    async with Session(base_url=base_url, governor=governor, timeout=30) as session:
        for account in accounts:
            client = session.client(account["api_key"], name=account["name"], **keys(account))
            jobs[client] = STATE_ENDPOINT[account["account_type"]]
        delays: list[float] = []  # of risk events
        pushed: list[float] = []  # of the other pushed events (PM_PRO_ACCOUNT_UPDATE)
        refreshed: dict[str, list[float]] = defaultdict(list)
        events = 0
        first_round_done: float | None = None
        rest_seen: set[str] = set()
        started = time.time()
        cpu = time.process_time()
        if stream:
            running = session.poll(
                jobs,
                stream=True,
                reconcile_every=reconcile,
                streams_per_connection=per_connection,
            )
        else:
            running = session.poll(jobs, every=0.05)  # as often as the budget allows
        async with running as updates:
            async for update in updates:
                now = time.time()
                if now - started > seconds:
                    break
                record(update, now, refreshed, rest_seen)
                if (
                    first_round_done is None
                    and len(rest_seen) == len(jobs)
                    and (not stream or all_connected(governor))
                ):
                    first_round_done = now
                    cpu, events = time.process_time(), 0  # steady state from here
                if update.source == "stream" and update.event is not None:
                    events += 1  # every delay is once its stream connected, from the start
                    delay = now * 1000 - update.event.event_time
                    if isinstance(update.event, RiskLevelChange):
                        delays.append(delay)
                    else:
                        pushed.append(delay)
        cpu = time.process_time() - cpu
        stopped = time.time()
    uid_accounts = sum(1 for a in accounts if a["account_type"] == "PM_1")
    since = first_round_done if first_round_done is not None else started
    product = {a["name"]: ENDPOINTS[STATE_ENDPOINT[a["account_type"]]].product for a in accounts}
    intervals: dict[str, list[float]] = defaultdict(list)
    for name, times in refreshed.items():
        intervals[product[name]] += [(b - a) * SCALE for a, b in itertools.pairwise(times)]
    return {
        "delays_ms": delays,
        "pushed_ms": pushed,
        "events": events,
        "cpu": cpu,
        "first_round": (since - started) * SCALE,
        "shares": shares(base_url, since * 1000, stopped * 1000, uid_accounts),
        "intervals": intervals,
        "errors": dict(ERRORS),
    }


ERRORS: dict[str, int] = defaultdict(int)


def all_connected(governor: Governor) -> bool:
    """No stream waits for a connection attempt, and none is connecting."""
    budget = governor.connections
    return budget.waiting() == 0 and budget.bucket.inflight == 0


def record(update: Update, now: float, refreshed: dict[str, list[float]], rest: set[str]) -> None:
    if update.error is not None:
        ERRORS[f"{update.source}: {str(update.error).split(' [account')[0]}"] += 1
    if update.error is None:
        refreshed[update.name].append(now)
        if update.source == "rest":
            rest.add(update.name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--accounts", type=int, default=1000, help="the streaming desk's")
    parser.add_argument(
        "--large", type=int, default=10_000, help="the large streaming desk's (0: none)"
    )
    parser.add_argument(
        "--connect", default="1000,10000", help="accounts of the connecting runs (0: none)"
    )
    parser.add_argument(
        "--seconds", type=float, default=150.0, help="the streams run (polling alone: 45 s)"
    )
    args = parser.parse_args()
    pin(1)
    for count in [int(n) for n in args.connect.split(",") if int(n)]:
        options = ["--accounts", str(count + count // 9 + 1), "--seed", "3"]
        options += ["--window", str(60 / CONNECT_SCALE), "--ws-window", str(300 / CONNECT_SCALE)]
        options += ["--push-every", "3600", "--risk-every", "3600"]
        for per_connection in (1, COMBINED):
            with serve(*options, core=0) as (base_url, accounts):
                wanted = [a for a in accounts if a["key_type"] != "RSA"][:count]
                result = asyncio.run(connect(base_url, wanted, per_connection))
            print_connect(result)
    if args.accounts:
        desks(args.accounts, args.seconds)
    if args.large:
        large(args.large, args.seconds)


def desks(count: int, seconds: float) -> None:
    """The desk of ``count`` accounts with streams, then polling alone."""
    options = ["--accounts", str(count), "--window", str(WINDOW), "--seed", "3"]
    options += ["--push-every", str(PUSH_EVERY), "--ws-window", str(300 / SCALE)]
    results = {}
    for name, stream in (("streams", True), ("polling alone", False)):
        with serve(*options, core=0) as (base_url, accounts):
            run_for = seconds if stream else min(seconds, 45.0)
            results[name] = asyncio.run(desk(base_url, accounts, stream=stream, seconds=run_for))
    print(
        f"\n{count} accounts; the exchange's clock runs {SCALE}× (windows of {WINDOW:g} s "
        "with the published limits); figures in the exchange's time"
    )
    for name, result in results.items():
        print_desk(name, result)


def large(count: int, seconds: float) -> None:
    """The large desk: streams only (polling alone would not finish its first round), on
    combined connections. PM_PRO_ACCOUNT_UPDATE every 5 s of this run's clock (50 s of the
    exchange's: a tenth of its rate, which one core could not read at this clock) and risk
    checks every 2.5 s (the exchange in one process could not make them for 10,000 accounts
    four times a second). The REST reconciliation every two hours: a third of the accounts
    are PM, whose balance weighs 20, so a shorter period costs more than a tenth of papi
    (15 minutes: three quarters of it)."""
    options = ["--accounts", str(count), "--window", str(WINDOW), "--seed", "3"]
    options += ["--push-every", "5", "--risk-every", "2.5", "--ws-window", str(300 / SCALE)]
    with serve(*options, core=0) as (base_url, accounts):
        result = asyncio.run(
            desk(
                base_url,
                accounts,
                stream=True,
                seconds=seconds,
                per_connection=COMBINED,
                reconcile=RECONCILE_LARGE,
            )
        )
    print(
        f"\n{count:,} accounts on combined connections of up to {COMBINED} keys, a REST "
        f"reconciliation every {RECONCILE_LARGE * SCALE / 3600:g} hours; the clock runs "
        f"{SCALE}× as above, but PM_PRO_ACCOUNT_UPDATE comes every 5 s of this run (a tenth "
        "of the exchange's rate)"
    )
    print_desk("streams", result)


def print_connect(result: dict[str, Any]) -> None:
    count, took, ideal = result["accounts"], result["took"], result["ideal"]
    how = (
        "one connection per key"
        if result["per_connection"] == 1
        else f"combined, up to {result['per_connection']} keys a connection"
    )
    print(
        f"== connecting {count:,} accounts from one IP, {how}: {result['connections']:,} "
        f"connections (the exchange's time; its clock runs {CONNECT_SCALE}×) =="
    )
    if ideal:
        beyond = (took - ideal) / CONNECT_SCALE
        print(
            f"all connected after {took:.0f} s; the limit allows {ideal:.0f} s (ratio "
            f"{took / ideal:.3f}); the time beyond it is the handshakes' own, {beyond:.2f} s "
            f"of this run's clock (on the exchange's clock, ratio {(ideal + beyond) / ideal:.4f})"
        )
    else:
        print(
            f"all connected after {took:.0f} s ({took / CONNECT_SCALE:.2f} s of this run's "
            "clock): the limit lets every connection go at once"
        )
    print(
        f"most attempts in any 5 minutes: {result['most']} of {PUBLISHED.ws_connect}; "
        f"refused {result['refused']}, banned {result['banned']}"
    )
    shares = ", ".join(f"{k}_ip {v:.1%}" for k, v in sorted(result["rest_share"].items()))
    print(f"REST budget used while connecting: {shares}")
    print(f"CPU per account (its key's open, its handshake): {result['cpu_per_account']:.0f} µs")
    for text, n in sorted(result["errors"].items()):
        print(f"error updates: {n} × {text}")
    print()


def print_desk(name: str, result: dict[str, Any]) -> None:
    stream_run = name == "streams"
    used = ", ".join(f"{k} {v:.1%}" for k, v in sorted(result["shares"].items()) if v)
    print(f"\n== {name} ==")
    what = "first REST round done, every stream connected" if stream_run else "first REST round"
    print(f"{what} after {result['first_round']:.0f} s (exchange time)")
    print(f"REST budget used after it: {used}")
    if stream_run:
        for what, delays in (
            ("risk events", result["delays_ms"]),
            ("account updates", result["pushed_ms"]),
        ):
            print(
                f"{what}: {len(delays)}, delay from the exchange to the caller p50 "
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
