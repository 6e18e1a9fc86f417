"""Fleet: how often 3,000 PM accounts are refreshed with 1, 2 and 3 egress IPs, and how long
a dead member's accounts go unwatched.

The exchange is ``binance-pm serve`` in its own process (core 0), scaled so that a run takes
seconds: a window of ``WINDOW`` s and a papi IP limit of ``PAPI_IP`` weight per window, for
each client IP apart (each loopback address ``127.0.0.x`` is an IP of its own, as at the
exchange). Its first 3,000 PM accounts are polled for their account (``pm_account``, weight
20 on papi's IP budget: the budget that binds) by a fleet of 1, 2 and 3 members, each a
``Session`` sending from its own address with a ``Governor`` sharing its budgets through a
``redis-server`` started here (IP budgets per egress, UID budgets per account), each asked to
poll every account every second: far more than any IP's budget allows, so the budgets set the
pace. Per fleet size: the updates a second over ``MEASURE`` seconds after the leases settle,
the refresh period that makes (3,000 accounts over that rate), and that period against one
IP's (the REST ceiling should divide by the number of IPs: target ≥ 0.9 of the ideal).

Then the takeover: three members, one of them in a process of its own (``--member-process``)
killed with SIGKILL once it has polled its share: the time until each of its accounts has been
polled by one of the two others, against the best the budgets allow (its leases run out within
a TTL; the others look when they do and put what they take first in line at their budgets,
which then pass them at their own rate).

Run: ``python benchmarks/fleet.py`` (about two minutes on two cores; needs ``redis-server``
and ``pip install -e '.[redis]'``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from _serve import keys, pin, serve

from binance_pm import Governor, Limits, Session
from binance_pm.fleet import Fleet
from binance_pm.redis import RedisStore

ACCOUNTS = 3000
WINDOW = 1.0
PAPI_IP = 4000  # weight per window per IP: 200 pm_account calls a second
EVERY = 1.0  # asked of every account: far above what the budgets allow
MEASURE = 8.0
SETTLE = 3.0
TTL = 4.0
HIGH = str(10**9)
TARGET_SCALING = 0.9


def limits() -> Limits:
    big = 10**9
    return Limits(papi_ip=PAPI_IP, api_ip=big, sapi_ip=big, sapi_uid=big, fapi_ip=big)


def start_redis() -> tuple[subprocess.Popen[bytes], str]:
    executable = shutil.which("redis-server")
    if executable is None:
        raise SystemExit("needs redis-server")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [executable, "--port", str(port), "--bind", "127.0.0.1", "--save", ""],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(0.3)
    return server, f"redis://127.0.0.1:{port}/0"


async def member(
    base_url: str,
    accounts: list[dict[str, Any]],
    redis_url: str,
    fleet_name: str,
    name: str,
    address: str,
    polled: dict[str, list[tuple[float, str]]],
) -> None:
    """One member: poll every account's ``pm_account`` through the fleet until cancelled,
    noting (when, member) per account."""
    store = RedisStore(redis_url, prefix=fleet_name, egress=address)
    fleet = Fleet(redis_url, name=fleet_name, member=name, lease_ttl=TTL, prefix=fleet_name)
    governor = Governor(window=WINDOW, limits=limits(), store=store)
    try:
        async with Session(
            base_url=base_url, governor=governor, source_address=address, timeout=30
        ) as session:
            clients = [
                session.client(a["api_key"], **keys(a), name=a["name"], product="PM")
                for a in accounts
            ]
            async with session.poll(clients, every=EVERY, fleet=fleet) as updates:
                async for update in updates:
                    if update.error is None:
                        polled[str(update.client.name)].append((time.monotonic(), name))
    finally:
        await fleet.aclose()
        await store.aclose()


async def refresh(
    base_url: str, accounts: list[dict[str, Any]], redis_url: str, size: int
) -> float:
    """Updates a second of a fleet of ``size`` members, each on its own address."""
    polled: dict[str, list[tuple[float, str]]] = defaultdict(list)
    name = f"bench{size}x{time.monotonic_ns()}"
    tasks = [
        asyncio.create_task(
            member(base_url, accounts, redis_url, name, f"m{i}", f"127.0.0.{i}", polled)
        )
        for i in range(1, size + 1)
    ]
    try:
        await asyncio.sleep(SETTLE)
        start = time.monotonic()
        await asyncio.sleep(MEASURE)
        end = time.monotonic()
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    updates = sum(1 for times in polled.values() for t, _ in times if start <= t < end)
    twice = [a for a, times in polled.items() if len({m for t, m in times if start <= t < end}) > 1]
    if twice:
        print(f"  {len(twice)} accounts polled by two members in the window", file=sys.stderr)
    return updates / (end - start)


async def takeover(
    base_url: str, accounts: list[dict[str, Any]], redis_url: str, path: Path
) -> float:
    """Seconds from killing one of three members until each of its accounts was polled by
    the others."""
    polled: dict[str, list[tuple[float, str]]] = defaultdict(list)
    name = f"bench-takeover{time.monotonic_ns()}"
    command = [sys.executable, __file__, "--member-process", name, "--base-url", base_url]
    command += ["--redis", redis_url, "--accounts-file", str(path)]
    dying = await asyncio.create_subprocess_exec(*command, stdout=asyncio.subprocess.PIPE)
    tasks = [
        asyncio.create_task(
            member(base_url, accounts, redis_url, name, f"m{i}", f"127.0.0.{i}", polled)
        )
        for i in (1, 2)
    ]
    theirs: set[str] = set()
    try:
        assert dying.stdout is not None
        ends = time.monotonic() + SETTLE + MEASURE
        while (left := ends - time.monotonic()) > 0:
            try:  # each account it polls, once: none more once it has polled its share
                line = await asyncio.wait_for(dying.stdout.readline(), left)
            except asyncio.TimeoutError:
                break
            if not line:
                raise SystemExit("the member to be killed ended by itself")
            theirs.add(json.loads(line)["account"])
        dying.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        await dying.wait()
        while True:
            await asyncio.sleep(0.1)
            late = {a for a in theirs if not any(t > killed for t, _ in polled.get(a, ()))}
            if not late or time.monotonic() - killed > 60:
                break
        return time.monotonic() - killed
    finally:
        if dying.returncode is None:
            dying.kill()
            await dying.wait()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def member_process(
    name: str, base_url: str, redis_url: str, accounts: list[dict[str, Any]]
) -> None:
    """The member to be killed: each account it polls, once, as a JSON line."""
    polled: dict[str, list[tuple[float, str]]] = defaultdict(list)
    task = asyncio.create_task(
        member(base_url, accounts, redis_url, name, "m3", "127.0.0.3", polled)
    )
    told: set[str] = set()
    while not task.done():
        await asyncio.sleep(0.05)
        for account in [a for a in polled if a not in told]:
            told.add(account)
            print(json.dumps({"account": account}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--member-process", help=argparse.SUPPRESS)
    parser.add_argument("--base-url", help=argparse.SUPPRESS)
    parser.add_argument("--redis", help=argparse.SUPPRESS)
    parser.add_argument("--accounts-file", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.member_process:
        pin(1)
        with open(args.accounts_file) as file:
            accounts = json.load(file)
        asyncio.run(member_process(args.member_process, args.base_url, args.redis, accounts))
        return
    redis_server, redis_url = start_redis()
    total = ACCOUNTS * 3 + 30  # serve makes the three products in turn: 3,000 PM ones
    options = ["--window", str(WINDOW), "--papi-ip", str(PAPI_IP)]
    options += [x for n in ("api-ip", "sapi-ip", "sapi-uid", "fapi-ip") for x in (f"--{n}", HIGH)]
    try:
        with serve("--accounts", str(total), *options, core=0) as (base_url, served):
            pin(1)
            pm = [a for a in served if a["account_type"] == "PM_2" and "secret" in a]
            pm = pm + [a for a in served if a["account_type"] == "PM_2" and "secret" not in a]
            accounts = pm[:ACCOUNTS]
            if len(accounts) < ACCOUNTS:
                raise SystemExit(f"serve made only {len(accounts)} PM accounts")
            report(asyncio.run(run(base_url, accounts, redis_url)))
    finally:
        redis_server.terminate()
        redis_server.wait(10)


async def run(
    base_url: str, accounts: list[dict[str, Any]], redis_url: str
) -> tuple[dict[int, float], float]:
    rates = {}
    for size in (1, 2, 3):
        rates[size] = await refresh(base_url, accounts, redis_url, size)
        print(f"{size} IP(s) done", file=sys.stderr, flush=True)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "accounts.json"
        path.write_text(json.dumps(accounts))
        return rates, await takeover(base_url, accounts, redis_url, path)


def report(found: tuple[dict[int, float], float]) -> None:
    rates, took = found
    ceiling = PAPI_IP / WINDOW / 20  # pm_account calls a second one IP's papi budget allows
    print(
        f"{ACCOUNTS:,} PM accounts, pm_account (papi weight 20) asked every {EVERY:g} s; papi IP"
        f" limit {PAPI_IP:,} per {WINDOW:g} s window per IP ({ceiling:.0f} calls/s)"
    )
    head = ("egress IPs", "updates/s", "refresh period", "vs 1 IP", "of ideal")
    print(" ".join(f"{h:>{w}}" for h, w in zip(head, (10, 10, 15, 8, 9), strict=True)))
    one = ACCOUNTS / rates[1]
    for size, rate in rates.items():
        period = ACCOUNTS / rate
        ideal = one / size
        ratio, share = period / one, ideal / period
        print(f"{size:>10} {rate:>10.0f} {period:>13.1f} s {ratio:>8.2f} {share:>9.2f}")
    worst = min((one / size) / (ACCOUNTS / rate) for size, rate in rates.items())
    verdict = "met" if worst >= TARGET_SCALING else "MISSED"
    print(
        f"the REST ceiling divides by the number of IPs: worst {worst:.2f} of ideal"
        f" (target >= {TARGET_SCALING:.2f}): {verdict}"
    )
    share = ACCOUNTS // 3
    drain = share / rates[2]  # the dead member's share, first in line, at the survivors' rate
    print(
        f"takeover: one of three members killed (SIGKILL); all its {share:,} accounts polled by"
        f" the others {took:.1f} s later (its leases run out within the lease TTL, {TTL:g} s;"
        f" then the accounts go first in line at the survivors' budgets, {drain:.1f} s at their"
        f" {rates[2]:.0f} calls/s: {TTL + drain:.1f} s at best)"
    )


if __name__ == "__main__":
    main()
