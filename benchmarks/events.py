"""Events: this process's CPU per pushed event, ``Session.stream`` and ``poll(stream=True)``
beside the floor of a bare aiohttp WebSocket receive and a msgspec decode of the same events.

The simulated exchange runs in its own process (``binance-pm serve``, pinned to one core, this
process to the other) and pushes ``PM_PRO_ACCOUNT_UPDATE`` on each of 200 PM Pro connections,
in two runs: **paced** (5,000 events a second in all) and **fast** (15,000 a second, about
the most the simulated exchange's process sends; a true burst, where events queue faster than
they are read, needs a faster sender than this one). In each run, one after the
other, on 200 connections each:

- **bare**: aiohttp's client, a listen key per account opened by hand, ``async for`` over
  each socket and ``msgspec.json.decode`` of each message into the package's event Struct:
  the floor a library on aiohttp cannot go under;
- **stream**: ``Session.stream(clients)``, the updates read from its feed;
- **merged**: ``Session.poll(clients, "pm_pro_account", stream=True)``, its stream updates.

CPU per event is this process's CPU time over the events received in a window after every
connection is up. Target: stream and merged ≤ 2× bare, paced.
Run: ``python benchmarks/events.py`` (about a minute); ``--connections N``, ``--seconds S``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time
from collections.abc import Callable, Coroutine
from typing import Any

import aiohttp
import msgspec
from _serve import keys, pin, serve

from binance_pm import Governor, Limits, PMProAccountUpdate, Session

Count = list[int]  # one cell: events received so far


async def measure(
    run: Callable[[Count, asyncio.Event], Coroutine[Any, Any, None]], seconds: float
) -> tuple[float, int]:
    """Start ``run``; once it says every connection is up, CPU seconds per event over a
    window of ``seconds`` (after a second's warm-up), and the events in it."""
    count: Count = [0]
    ready = asyncio.Event()
    task = asyncio.create_task(run(count, ready))
    await asyncio.wait_for(ready.wait(), 120)
    await asyncio.sleep(1.0)
    cpu, events = time.process_time(), count[0]
    await asyncio.sleep(seconds)
    cpu, events = time.process_time() - cpu, count[0] - events
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return cpu / max(events, 1), events


def bare(base_url: str, accounts: list[dict[str, Any]]) -> Any:
    decoder = msgspec.json.Decoder(PMProAccountUpdate, strict=False)
    ws_base = "ws://" + base_url.split("://", 1)[1]

    async def run(count: Count, ready: asyncio.Event) -> None:
        # No pool limit: each WebSocket holds its connection (aiohttp's default is 100).
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:

            async def connect(account: dict[str, Any]) -> aiohttp.ClientWebSocketResponse[bool]:
                headers = {"X-MBX-APIKEY": account["api_key"]}
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


def library(base_url: str, accounts: list[dict[str, Any]], *, merged: bool) -> Any:
    async def run(count: Count, ready: asyncio.Event) -> None:
        governor = Governor(limits=Limits(ws_connect=1_000_000, ws_window=1.0))
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


async def one_run(base_url: str, accounts: list[dict[str, Any]], seconds: float) -> list[Any]:
    rows = []
    floor = 0.0
    for name, run in (
        ("bare aiohttp + msgspec", bare(base_url, accounts)),
        ("Session.stream", library(base_url, accounts, merged=False)),
        ("poll(stream=True)", library(base_url, accounts, merged=True)),
    ):
        per_event, events = await measure(run, seconds)
        floor = floor or per_event
        rows.append((name, events, per_event, per_event / floor))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    count = args.connections
    for label, push_every in (
        ("paced, 5,000 events a second in all", count / 5000),
        (
            "fast, 15,000 events a second in all (about what the exchange process sends at most)",
            count / 15000,
        ),
    ):
        serve_args = (
            "--accounts", str(count * 3 // 2 + 3), "--push-every", f"{push_every:g}",
            "--ws-connect", "1000000", "--ws-window", "1", "--risk-every", "60",
        )  # fmt: skip
        with serve(*serve_args, core=0) as (base_url, accounts):
            pin(1)
            pro = [a for a in accounts if a["account_type"] in ("PM_1", "PM_3")][:count]
            rows = asyncio.run(one_run(base_url, pro, args.seconds))
        print(f"\n{label}, {count} connections")
        print(f"{'client':26} {'events':>8} {'µs CPU/event':>13} {'× bare':>7}")
        for name, events, per_event, ratio in rows:
            print(f"{name:26} {events:8} {per_event * 1e6:13.2f} {ratio:7.2f}")


if __name__ == "__main__":
    main()
