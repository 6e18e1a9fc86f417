"""Streams: CPU per pushed event (burst, paced) and per idle stream, beside bare aiohttp; a desk.

This process's CPU per pushed event, burst and paced, beside a bare aiohttp receive and msgspec
decode in the same run; its CPU per open quiet stream; and a risk desk's streams under the
exchange's rules.

Every server runs in its own process, pinned to one core, this process to the other.

- **events** (``--only events``): on 200 PM Pro connections, one after the other, this
  process's CPU per event received, in a window after every connection has carried one:

  - **bare**: aiohttp's client, a listen key per account opened by hand, ``async for`` over
    each socket and a msgspec decode of each message into the package's event Struct: the
    floor a library on aiohttp cannot go under;
  - **Session.stream**: ``Session.stream(clients)``, the updates read from its feed;
  - **poll(stream=True)**: ``Session.poll(clients, "pm_pro_account", stream=True)``, its
    stream updates (a REST reconciliation an hour);

  in two runs: **burst**, against ``_burst.py``, which pushes the simulated exchange's
  ``PM_PRO_ACCOUNT_UPDATE`` as fast as each socket takes it (the reader is the bottleneck;
  the table says how busy the sender's core was), target ≤ 4× bare; and **paced**, 5,000
  events a second in all from ``binance-pm serve``, target ≤ 2× bare.
- **idle** (``--only idle``): N quiet PM streams (PM pushes only when the risk level changes:
  the simulated exchange's risk checks are off here; its pings every 180 s stay on) opened
  through ``Session.stream`` against ``binance-pm serve``, then this process's CPU over a quiet
  window once all are connected (30 s, or one of the Session's heartbeats if longer, so that
  each stream is pinged once in it; the garbage the connecting left is collected before it),
  per second and per open stream; target ≤ 1 µs/s at 5,000.
  The bare floor beside it: as many aiohttp WebSockets opened by hand, no heartbeat.
- **desk** (``--only desk``): a desk's streams under the exchange's rules, described below.

``--profile`` runs instead the burst's ``Session.stream`` and the idle streams under cProfile
and prints where the CPU goes (the most costly functions by own time).

The desk: connecting 1,000 and 10,000 accounts at the connection-attempt limit, then 1,000
accounts streaming with a slow REST reconciliation against polling alone. The simulated
exchange runs with the published limits on a faster clock, so figures are given in the
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

Run: ``python benchmarks/streams.py`` (events and idle about three minutes, the desk about
twelve more); ``--only events,idle`` for the first two; ``--connections N`` and
``--event-seconds S`` for the events, ``--idle-streams N`` and ``--idle-seconds S`` for idle;
``--accounts N`` for the streaming desk, ``--large N`` for the large one, ``--connect
1000,10000`` for the connecting runs (0 for none of each), ``--seconds S`` for the desk's.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import gc
import itertools
import os
import pstats
import resource
import secrets
import statistics
import time
from collections import defaultdict
from collections.abc import Callable, Coroutine
from typing import Any

import aiohttp
import httpx
import msgspec
from _burst import burst_server
from _serve import keys, pin, serve

from binance_pm import Governor, Limits, PMProAccountUpdate, RiskLevelChange, Session, Update
from binance_pm._endpoints import ENDPOINTS, STATE_ENDPOINT, STREAM_OF
from binance_pm._streams import HEARTBEAT
from binance_pm.testing import budget_use, most_in_any_window

# -- events: CPU per pushed event, burst and paced -----------------------------------------

PACED_RATE = 5000  # events a second in all
TARGET = {"burst": 4.0, "paced": 2.0}
#: Connection attempts and listen keys unbounded: these runs measure reading, not the limits.
OPEN_LIMITS = Limits(ws_connect=1_000_000, ws_window=1.0, papi_ip=1_000_000, fapi_ip=1_000_000)
Count = list[int]  # one cell: events received so far
Run = Callable[[Count, asyncio.Event], Coroutine[Any, Any, None]]


async def measure(run: Run, seconds: float, profile: cProfile.Profile | None = None) -> Row:
    """Start ``run``; once it says every connection is up, CPU seconds per event over a
    window of ``seconds`` (after a second's warm-up), the events in it and their rate."""
    count: Count = [0]
    ready = asyncio.Event()
    task = asyncio.create_task(run(count, ready))
    try:
        await asyncio.wait_for(ready.wait(), 120)
        await asyncio.sleep(1.0)
        if profile is not None:
            profile.enable()
        cpu, events, wall = time.process_time(), count[0], time.monotonic()
        await asyncio.sleep(seconds)
        cpu, events = time.process_time() - cpu, count[0] - events
        wall = time.monotonic() - wall
        if profile is not None:
            profile.disable()
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    await asyncio.sleep(0.5)  # the last connections' close, outside the next window
    return Row(events, cpu / max(events, 1), events / wall, cpu / wall)


class Row(msgspec.Struct):
    events: int
    per_event: float  # CPU seconds
    rate: float  # events a second
    busy: float  # this process's CPU seconds a second


def bare(base_url: str, accounts: list[dict[str, Any]]) -> Run:
    """aiohttp's client and a msgspec decode: the floor."""
    decoder = msgspec.json.Decoder(PMProAccountUpdate, strict=False)
    ws_base = "ws://" + base_url.split("://", 1)[1]

    async def run(count: Count, ready: asyncio.Event) -> None:
        # No pool limit: each WebSocket holds its connection (aiohttp's default is 100).
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:

            async def connect(account: dict[str, Any]) -> aiohttp.ClientWebSocketResponse[bool]:
                headers = {"X-MBX-APIKEY": account["api_key"]}
                # PM Pro's listen key, where the package opens it
                async with http.post(f"{base_url}/fapi/v1/listenKey", headers=headers) as answer:
                    key = (await answer.json())["listenKey"]
                return await http.ws_connect(f"{ws_base}/pm-classic/ws/{key}")

            sockets = await asyncio.gather(*(connect(account) for account in accounts))

            async def read(socket: aiohttp.ClientWebSocketResponse[bool]) -> None:
                async for message in socket:
                    decoder.decode(message.data)
                    count[0] += 1

            ready.set()
            await asyncio.gather(*(read(socket) for socket in sockets))

    return run


def library(base_url: str, accounts: list[dict[str, Any]], *, merged: bool) -> Run:
    """``Session.stream``, or ``Session.poll(stream=True)`` (``merged``)."""

    async def run(count: Count, ready: asyncio.Event) -> None:
        governor = Governor(limits=OPEN_LIMITS)
        async with Session(base_url=base_url, governor=governor) as session:
            clients = [
                session.client(a["api_key"], product=a["account_type"], **keys(a)) for a in accounts
            ]
            up: set[Any] = set()
            feed: Any = (
                session.poll(clients, "pm_pro_account", stream=True, reconcile_every=3600)
                if merged
                else session.stream(clients)
            )
            async with feed as updates:
                async for update in updates:
                    if update.event is not None:
                        count[0] += 1
                        if len(up) < len(clients):
                            up.add(update.client)
                            if len(up) == len(clients):
                                ready.set()

    return run


CLIENTS = ("bare aiohttp + msgspec", "Session.stream", "poll(stream=True)")


async def event_rows(
    base_url: str, accounts: list[dict[str, Any]], seconds: float
) -> list[tuple[str, Row]]:
    runs = (
        bare(base_url, accounts),
        library(base_url, accounts, merged=False),
        library(base_url, accounts, merged=True),
    )
    return [(name, await measure(run, seconds)) for name, run in zip(CLIENTS, runs, strict=True)]


def burst_accounts(count: int) -> list[dict[str, Any]]:
    """PM Pro accounts for ``_burst.py``, which takes any API key (nothing is signed there
    but the merged poll's REST, which it does not check)."""
    return [
        {
            "api_key": f"burst{i:05d}" + "K" * 58,
            "secret": secrets.token_hex(32),
            "account_type": "PM_1",
        }
        for i in range(count)
    ]


def process_cpu(pid: int) -> float | None:
    """CPU seconds used so far by process ``pid`` (``None`` where ``/proc`` is not)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def events(count: int, seconds: float) -> None:
    """The burst and the paced runs, each a table."""
    with burst_server(core=0) as (base_url, pid):
        before, wall = process_cpu(pid), time.monotonic()
        rows = asyncio.run(event_rows(base_url, burst_accounts(count), seconds))
        after, wall = process_cpu(pid), time.monotonic() - wall
    sender = (
        f"; the sender's core {(after - before) / wall:.0%} busy over the three runs"
        if before is not None and after is not None
        else ""
    )
    print_events(
        f"burst: {count} PM Pro connections, _burst.py pushing as fast as each socket takes "
        f"it{sender}",
        rows,
        TARGET["burst"],
    )
    serve_args = (
        "--accounts", str(count * 3 // 2 + 3), "--push-every", f"{count / PACED_RATE:g}",
        "--ws-connect", "1000000", "--ws-window", "1", "--risk-every", "60",
    )  # fmt: skip
    with serve(*serve_args, core=0) as (base_url, accounts):
        pro = [a for a in accounts if a["account_type"] in ("PM_1", "PM_3")][:count]
        rows = asyncio.run(event_rows(base_url, pro, seconds))
    print_events(
        f"paced: {count} PM Pro connections, {PACED_RATE:,} events a second in all from "
        "binance-pm serve",
        rows,
        TARGET["paced"],
    )


def print_events(title: str, rows: list[tuple[str, Row]], target: float) -> None:
    print(f"\n== {title} ==")
    print(
        f"{'client':24} {'events':>9} {'events/s':>9} {'CPU busy':>8} {'µs CPU/event':>13} "
        f"{'× bare':>7}  target"
    )
    floor = rows[0][1].per_event
    for name, row in rows:
        ratio = row.per_event / floor
        goal = (
            "" if name == CLIENTS[0] else f"≤ {target:g}×  {'met' if ratio <= target else 'missed'}"
        )
        print(
            f"{name:24} {row.events:9} {row.rate:9.0f} {row.busy:8.0%} {row.per_event * 1e6:13.2f} "
            f"{ratio:7.2f}  {goal}"
        )


# -- idle: CPU per open quiet stream ----------------------------------------------------------

IDLE_TARGET = 1.0  # µs of CPU per second per open stream


class Idle(msgspec.Struct):
    streams: int
    connect_seconds: float
    cpu: float  # seconds, over the window
    seconds: float  # the window
    errors: int

    @property
    def per_stream(self) -> float:
        """µs of CPU per second per open stream."""
        return self.cpu / self.seconds / max(self.streams, 1) * 1e6


async def quiet_window(
    seconds: float, profile: cProfile.Profile | None = None
) -> tuple[float, float]:
    """This process's CPU seconds over a quiet window of about ``seconds``, and its length."""
    await asyncio.sleep(2.0)  # the connecting's last work, outside the window
    # And the full collection that the connecting's garbage owes, which lands in the window or
    # not by chance: an idle stream's cost is what comes after it.
    gc.collect()
    if profile is not None:
        profile.enable()
    cpu, wall = time.process_time(), time.monotonic()
    await asyncio.sleep(seconds)
    cpu, wall = time.process_time() - cpu, time.monotonic() - wall
    if profile is not None:
        profile.disable()
    return cpu, wall


async def idle_bare(base_url: str, accounts: list[dict[str, Any]], seconds: float) -> Idle:
    """As many aiohttp WebSockets opened by hand (no heartbeat), each read by a task."""
    ws_base = "ws://" + base_url.split("://", 1)[1]
    started = time.monotonic()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        opening = asyncio.Semaphore(500)

        async def connect(account: dict[str, Any]) -> aiohttp.ClientWebSocketResponse[bool]:
            async with opening:
                headers = {"X-MBX-APIKEY": account["api_key"]}
                async with http.post(f"{base_url}/papi/v1/listenKey", headers=headers) as answer:
                    key = (await answer.json())["listenKey"]
                return await http.ws_connect(f"{ws_base}/pm/ws/{key}")

        sockets = await asyncio.gather(*(connect(account) for account in accounts))
        took = time.monotonic() - started
        messages = [0]

        async def read(socket: aiohttp.ClientWebSocketResponse[bool]) -> None:
            async for _ in socket:
                messages[0] += 1

        readers = [asyncio.create_task(read(socket)) for socket in sockets]
        cpu, wall = await quiet_window(seconds)
        for reader in readers:
            reader.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
    return Idle(len(sockets), took, cpu, wall, 0)


async def idle_library(
    base_url: str,
    accounts: list[dict[str, Any]],
    seconds: float,
    profile: cProfile.Profile | None = None,
) -> Idle:
    """``Session.stream`` over the accounts' PM streams, with its defaults."""
    governor = Governor(limits=OPEN_LIMITS)
    started = time.monotonic()
    async with Session(base_url=base_url, governor=governor, timeout=120) as session:
        clients = [
            session.client(a["api_key"], name=a["name"], product="PM", **keys(a)) for a in accounts
        ]
        connected: set[Any] = set()
        errors = [0]
        everyone = asyncio.Event()
        async with session.stream(clients) as updates:

            async def watch() -> None:
                async for update in updates:
                    if update.error is not None:
                        errors[0] += 1
                    if update.connected:
                        connected.add(update.client)
                        if len(connected) == len(clients):
                            everyone.set()

            watching = asyncio.create_task(watch())
            await asyncio.wait_for(everyone.wait(), 600)
            took = time.monotonic() - started
            cpu, wall = await quiet_window(seconds, profile)
            watching.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watching
    return Idle(len(connected), took, cpu, wall, errors[0])


def raise_file_limit(wanted: int) -> None:
    """The soft limit on open files up to ``wanted`` (at most the hard limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        top = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (top, hard))


def idle_serve_args(streams: int) -> tuple[str, ...]:
    """``binance-pm serve`` with enough PM accounts without RSA keys (three in ten of its
    accounts), its limits out of the way and its risk checks off."""
    return (
        "--accounts", str(streams * 10 // 3 + 100), "--ws-connect", "1000000",
        "--ws-window", "1", "--papi-ip", "1000000", "--risk-every", "86400",
        "--push-every", "86400",
    )  # fmt: skip


def quiet_accounts(accounts: list[dict[str, Any]], streams: int) -> list[dict[str, Any]]:
    pm = [a for a in accounts if a["account_type"] == "PM_2" and a["key_type"] != "RSA"]
    if len(pm) < streams:
        raise SystemExit(f"binance-pm serve made only {len(pm)} PM accounts without RSA keys")
    return pm[:streams]


def idle(streams: int, seconds: float) -> None:
    raise_file_limit(2 * streams + 1000)
    results = {}
    for name, runner in (
        ("bare aiohttp, no heartbeat", idle_bare),
        ("Session.stream", idle_library),
    ):
        with serve(*idle_serve_args(streams), core=0) as (base_url, accounts):
            results[name] = asyncio.run(
                runner(base_url, quiet_accounts(accounts, streams), seconds)
            )
    print(
        f"\n== idle: {streams:,} quiet PM streams from binance-pm serve (its risk checks off, "
        f"its pings every 180 s; Session.stream's heartbeat every {HEARTBEAT:g} s), this "
        "process's CPU once all are connected =="
    )
    head = f"{'streams':>8} {'connected in':>12} {'window':>7} {'CPU':>7} {'µs/s per stream':>16}"
    print(f"{'client':28} {head}  target")
    for name, result in results.items():
        goal = ""
        if name == "Session.stream":
            met = result.per_stream <= IDLE_TARGET
            goal = f"≤ {IDLE_TARGET:g} µs/s  {'met' if met else 'missed'}"
            if result.errors:
                goal += f" ({result.errors} error updates)"
        print(
            f"{name:28} {result.streams:8,} {result.connect_seconds:11.1f}s "
            f"{result.seconds:6.1f}s {result.cpu:6.2f}s {result.per_stream:16.2f}  {goal}"
        )


# -- profiles -------------------------------------------------------------------------------


def print_profile(title: str, profile: cProfile.Profile, per: float, unit: str) -> None:
    """The 15 costliest functions by own time (the loop's wait in ``epoll`` left out): calls
    and µs of own time per ``unit``."""
    stats = pstats.Stats(profile)
    entries = {
        where: entry
        for where, entry in stats.stats.items()  # type: ignore[attr-defined]
        if "select.epoll" not in where[2] and "select.select" not in where[2]
    }
    total = sum(entry[2] for entry in entries.values())
    print(f"\n== profile: {title}; own time in all {total:.2f} s (the wait in epoll left out) ==")
    print(f"{'calls/' + unit:>16} {'µs/' + unit:>11} {'share':>6}  function")
    ranked = sorted(entries.items(), key=lambda item: item[1][2], reverse=True)[:15]
    for (path, line, function), (_, calls, own, _, _) in ranked:
        where = f" ({os.path.basename(path)}:{line})" if line else ""
        print(f"{calls / per:16.4f} {own / per * 1e6:11.3f} {own / total:6.1%}  {function}{where}")


def profiles(count: int, seconds: float, streams: int, idle_seconds: float) -> None:
    """The burst's ``Session.stream`` and the idle streams, under cProfile: timed by the wall
    clock in the burst (the core is busy throughout), by this process's CPU time when idle
    (a wall clock there counts the time another process held the core)."""
    profile = cProfile.Profile()
    with burst_server(core=0) as (base_url, _):
        run = library(base_url, burst_accounts(count), merged=False)
        row = asyncio.run(measure(run, seconds, profile))
    print_profile(
        f"Session.stream, burst on {count} connections, {row.events:,} events",
        profile,
        row.events,
        "event",
    )
    raise_file_limit(2 * streams + 1000)
    profile = cProfile.Profile(time.process_time)
    with serve(*idle_serve_args(streams), core=0) as (base_url, accounts):
        result = asyncio.run(
            idle_library(base_url, quiet_accounts(accounts, streams), idle_seconds, profile)
        )
    print_profile(
        f"Session.stream, {result.streams:,} idle PM streams for {result.seconds:.0f} s",
        profile,
        result.streams * result.seconds,
        "stream/s",
    )


# -- desk: a risk desk's streams under the exchange's rules ----------------------------------

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
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[1])
    parser.add_argument(
        "--only", default="events,idle,desk", help="sections, comma-separated: events, idle, desk"
    )
    parser.add_argument("--connections", type=int, default=200, help="the events runs'")
    parser.add_argument("--event-seconds", type=float, default=5.0, help="each events run's window")
    parser.add_argument("--idle-streams", type=int, default=5000)
    parser.add_argument(
        "--idle-seconds",
        type=float,
        default=max(30.0, HEARTBEAT),
        help="the quiet window (default: 30 s, or Session.stream's heartbeat if longer)",
    )
    parser.add_argument(
        "--profile", action="store_true", help="profile the burst and idle Session.stream only"
    )
    parser.add_argument("--accounts", type=int, default=1000, help="the streaming desk's")
    parser.add_argument(
        "--large", type=int, default=10_000, help="the large streaming desk's (0: none)"
    )
    parser.add_argument(
        "--connect", default="1000,10000", help="accounts of the connecting runs (0: none)"
    )
    parser.add_argument(
        "--seconds", type=float, default=150.0, help="the desk's streams run (polling alone: 45 s)"
    )
    args = parser.parse_args()
    sections = {name.strip() for name in args.only.split(",") if name.strip()}
    unknown = sections - {"events", "idle", "desk"}
    if unknown:
        parser.error(f"unknown sections: {', '.join(sorted(unknown))}")
    pin(1)
    if args.profile:
        profiles(args.connections, args.event_seconds, args.idle_streams, args.idle_seconds)
        return
    if "events" in sections:
        events(args.connections, args.event_seconds)
    if "idle" in sections and args.idle_streams:
        idle(args.idle_streams, args.idle_seconds)
    if "desk" in sections:
        desk_sections(args)


def desk_sections(args: argparse.Namespace) -> None:
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
