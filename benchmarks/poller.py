"""Session.poll with 10,000 HMAC accounts at a fixed total rate: CPU per update against CPU per
single call, the longest event-loop stall, and memory per account.

The simulated exchange runs in its own process (``binance-pm serve``, pinned to one core, this
process to the other), with limits so high that the rate, not the budget, sets the pace. Its
first 10,000 HMAC accounts (HMAC: signing costs next to nothing, so the SDK's own work is what
is measured) each ask for their state endpoint. In one run, side by side:

- **single calls**, before the poll and again after it, in three rounds (each poll is set
  against the mean of the calls before and after it, as the machine's speed drifts over
  minutes; the ratio is the median of the rounds): the same accounts, each called in turn
  (``await client.pm_pro_account()`` and the like, one task per call) at ``RATE`` calls a
  second: this process's CPU time over the calls answered;
- **poll**: ``Session.poll`` of the same accounts with ``every = ACCOUNTS / RATE``, so the same
  rate: this process's CPU time over the updates, for three periods, the first included;
- while each runs, a **lag probe**: a task that sleeps 5 ms, again and again, and records how
  late it wakes (garbage collections included); and the garbage collector's pauses by
  generation (``gc.callbacks``);
- **memory per account**: what Python allocated and still holds (tracemalloc) once every
  account's client and job has run at least once, over the accounts.

First, a **small desk**: 100 of the accounts polled at 500 updates a second (``every`` 0.2 s)
for 8 seconds, beside single calls made flat out by 10 tasks (each its next call as soon as
its last is answered, the cheapest single calls there are) and single calls paced at the same
500 a second, in alternating rounds: the poll against the flat-out calls, split into what pacing
costs and what the poll adds to paced calls; and, as the floor of pacing on this machine, a bare
asyncio protocol (``_bare.py``, no SDK) paced the same way against itself flat out. No lag probe
runs there: its 200 wake-ups a second would add 0.4 of a wake-up to each update's CPU, and none
to a flat-out call's.

Then the poll once more, with ``gc.freeze()`` called once the clients are made (what
``binance-pm watch`` does, and the docs advise for a big desk): the clients, keys and budgets
made at start-up then stay out of every full garbage collection, whose pause grows with them.

Targets: CPU per update ≤ 1.2× a single call's at the same rate, and ≤ 1.25× a flat-out
single call's on the small desk; the longest stall ≤ 50 ms.

Run: ``python benchmarks/poller.py`` (about 6 minutes); ``--accounts N``, ``--rate R`` for
other sizes; ``--profile`` prints the poll phase's cProfile.

CPU time on a shared or virtual machine moves by a tenth or more from one round to the next;
instruction counts do not. ``python benchmarks/poller.py --callgrind`` (about 6 minutes, needs
valgrind) runs the small desk's three ways of calling, at 50 a second (what callgrind keeps up
with), each under ``valgrind --tool=callgrind`` twice, for 10 s and for 30 s (flat out: 500 and
1,500 calls), and prints the instructions per update or call: the difference of the two runs
over the difference of their counts, so that start-up and shut-down cancel out.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import io
import json
import math
import os
import pstats
import statistics
import tempfile
import time
import tracemalloc
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from _bare import bare
from _callgrind import counted
from _serve import keys, pin, serve

from binance_pm import AsyncClient, Governor, Limits, Session
from binance_pm._endpoints import STATE_ENDPOINT

ACCOUNTS = 10_000
RATE = 1_000  # updates (or calls) a second, in all
PERIODS = 3  # of the poll, measured
CALL_SECONDS = 10.0
HIGH = str(10**9)
PROBE = 0.005


class Probe:
    """How late a task that sleeps ``PROBE`` seconds at a time wakes; and the GC's pauses."""

    def __init__(self) -> None:
        self.worst = 0.0
        self.late: list[float] = []
        self.gc_pauses: dict[int, list[float]] = {0: [], 1: [], 2: []}
        self._gc_started = 0.0

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            await asyncio.sleep(PROBE)
            late = loop.time() - before - PROBE
            self.late.append(late)
            self.worst = max(self.worst, late)

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._gc_started = time.perf_counter()
        else:
            self.gc_pauses[info["generation"]].append(time.perf_counter() - self._gc_started)

    @contextmanager
    def watching(self) -> Iterator[Probe]:
        gc.callbacks.append(self._on_gc)
        try:
            yield self
        finally:
            gc.callbacks.remove(self._on_gc)

    def summary(self) -> str:
        late = sorted(self.late)
        p99 = late[int(len(late) * 0.99)] if late else 0.0
        over = sum(1 for x in late if x > 0.050)
        full = self.gc_pauses[2]
        return (
            f"longest stall {self.worst * 1e3:.1f} ms (99th percentile {p99 * 1e3:.1f} ms,"
            f" {over} over 50 ms); full GCs: {len(full)}, longest"
            f" {max(full, default=0.0) * 1e3:.0f} ms; young GCs: "
            f"{len(self.gc_pauses[0]) + len(self.gc_pauses[1])}, longest"
            f" {max(self.gc_pauses[0] + self.gc_pauses[1], default=0.0) * 1e3:.1f} ms; all GCs"
            f" {sum(sum(p) for p in self.gc_pauses.values()) * 1e3:.0f} ms in all"
        )


def make_clients(session: Session, accounts: list[dict[str, Any]]) -> dict[AsyncClient, str]:
    return {
        session.client(a["api_key"], **keys(a), name=a["name"]): STATE_ENDPOINT[a["account_type"]]
        for a in accounts
    }


def governor() -> Governor:
    return Governor(limits=Limits().scaled(10**9 / 6000))


async def single_calls(
    base_url: str,
    accounts: list[dict[str, Any]],
    rate: float,
    seconds: float,
    profile: bool,
    probing: bool = True,
) -> tuple[int, int, float, Probe, str]:
    """(calls answered, errors, CPU seconds, probe) of calls started at ``rate`` a second;
    without ``probing``, no lag probe runs (its wake-ups, 200 a second, would count in the
    CPU per call)."""
    async with Session(base_url=base_url, governor=governor(), timeout=30) as session:
        jobs = list(make_clients(session, accounts).items())
        calls: list[Callable[[], Any]] = [getattr(c, name) for c, name in jobs]
        done = errors = 0

        async def one(call: Callable[[], Any]) -> None:
            nonlocal done, errors
            try:
                await call()
            except Exception:
                errors += 1
            done += 1

        probe = Probe()
        loop = asyncio.get_running_loop()
        tasks: set[asyncio.Task[None]] = set()
        profiler = cProfile.Profile() if profile else None
        with probe.watching():
            lagging = loop.create_task(probe.run() if probing else asyncio.sleep(math.inf))
            cpu = time.process_time()
            if profiler is not None:
                profiler.enable()
            started = loop.time()
            sent = 0
            while (now := loop.time()) < started + seconds:
                for _ in range(int((now - started) * rate) - sent):
                    task = loop.create_task(one(calls[sent % len(calls)]))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                    sent += 1
                await asyncio.sleep(0.01)
            answered = done
            if profiler is not None:
                profiler.disable()
            cpu = time.process_time() - cpu
            lagging.cancel()
        for task in list(tasks):
            task.cancel()
        await asyncio.gather(lagging, *tasks, return_exceptions=True)
    return answered, errors, cpu, probe, stats(profiler)


def stats(profiler: cProfile.Profile | None) -> str:
    """The profile's top functions, if there is one."""
    if profiler is None:
        return ""
    out = io.StringIO()
    order = os.environ.get("SORT", "tottime")
    restrict: list[Any] = [os.environ["ONLY"]] if os.environ.get("ONLY") else []
    pstats.Stats(profiler, stream=out).sort_stats(order).print_stats(
        *restrict, int(os.environ.get("TOP", "25"))
    )
    return out.getvalue()


async def polled(
    base_url: str,
    accounts: list[dict[str, Any]],
    every: float,
    seconds: float,
    profile: bool,
    freeze: bool = False,
    probing: bool = True,
) -> tuple[int, int, float, Probe, str]:
    """(updates, errors, CPU seconds, probe, profile) of ``seconds`` of polling; with
    ``freeze``, ``gc.freeze()`` once the clients are made, as ``binance-pm watch`` does;
    without ``probing``, no lag probe runs."""
    async with Session(base_url=base_url, governor=governor(), timeout=30) as session:
        jobs = make_clients(session, accounts)
        if freeze:
            gc.collect()
            gc.freeze()
        updates = errors = 0
        probe = Probe()
        profiler = cProfile.Profile() if profile else None
        with probe.watching():
            lagging = asyncio.get_running_loop().create_task(
                probe.run() if probing else asyncio.sleep(math.inf)
            )
            cpu = time.process_time()
            if profiler is not None:
                profiler.enable()
            async with session.poll(jobs, every=every) as stream:
                ends = time.monotonic() + seconds
                async for update in stream:
                    updates += 1
                    errors += not update.ok
                    if time.monotonic() >= ends:
                        break
            if profiler is not None:
                profiler.disable()
            cpu = time.process_time() - cpu
            lagging.cancel()
        await asyncio.gather(lagging, return_exceptions=True)
    if freeze:
        gc.unfreeze()
    return updates, errors, cpu, probe, stats(profiler)


async def flat_out(
    base_url: str, accounts: list[dict[str, Any]], in_flight: int, seconds: float
) -> float:
    """CPU seconds per call of ``in_flight`` tasks calling the accounts in turn, each its next
    call as soon as its last is answered: the cheapest way to make single calls."""
    async with Session(base_url=base_url, governor=governor(), timeout=30) as session:
        calls = [getattr(c, name) for c, name in make_clients(session, accounts).items()]
        for call in calls:  # warm: each client has made a call, as in the poll's first period
            await call()
        done = 0
        ends = time.monotonic() + seconds

        async def worker(start: int) -> None:
            nonlocal done
            i = start
            while time.monotonic() < ends:
                await calls[i % len(calls)]()
                done += 1
                i += in_flight

        cpu = time.process_time()
        await asyncio.gather(*(worker(i) for i in range(in_flight)))
        return (time.process_time() - cpu) / max(done, 1)


async def small_desk(base_url: str, accounts: list[dict[str, Any]], rounds: int) -> None:
    """100 accounts polled at 500 updates a second beside single calls flat out, 10 in flight,
    and single calls paced at the same 500 a second: the poll's own cost, and pacing's."""
    desk = accounts[:100]
    polls, flats, paced, floors, bare_extra = [], [], [], [], []
    for _ in range(rounds):
        every = len(desk) / 500
        updates, _, cpu, _, _ = await polled(base_url, desk, every, 8.0, False, probing=False)
        polls.append(cpu / max(updates, 1))
        flats.append(await flat_out(base_url, desk, 10, 8.0))
        calls, _, cpu, _, _ = await single_calls(base_url, desk, 500, 8.0, False, probing=False)
        paced.append(cpu / max(calls, 1))
        bare_paced = await bare(base_url, in_flight=10, rate=500, seconds=8.0)
        bare_flat = await bare(base_url, in_flight=10, rate=None, seconds=8.0)
        floors.append(bare_paced / bare_flat)
        bare_extra.append(bare_paced - bare_flat)
    ratios = [p / f for p, f in zip(polls, flats, strict=True)]
    own = [p / c for p, c in zip(polls, paced, strict=True)]
    pacing = [c / f for c, f in zip(paced, flats, strict=True)]
    print(
        f"  100 accounts polled at 500/s: {statistics.median(polls) * 1e6:.0f} us CPU per update;"
        f" single calls flat out, 10 in flight: {statistics.median(flats) * 1e6:.0f} us per call;"
        f" poll / flat out {statistics.median(ratios):.2f}x (rounds {min(ratios):.2f}-"
        f"{max(ratios):.2f}; target <= 1.25x)"
    )
    print(
        f"    of which pacing: single calls at 500/s {statistics.median(paced) * 1e6:.0f} us, "
        f"{statistics.median(pacing):.2f}x flat out; the poll {statistics.median(own):.2f}x"
        " those paced calls"
    )
    extra = statistics.median([p - f for p, f in zip(polls, flats, strict=True)])
    print(
        f"    the machine's own share: a bare asyncio protocol (no SDK) paced the same way costs"
        f" {statistics.median(floors):.2f}x its flat-out requests (rounds {min(floors):.2f}-"
        f"{max(floors):.2f}), {statistics.median(bare_extra) * 1e6:.0f} us more per request;"
        f" the poll {extra * 1e6:.0f} us more per update than a flat-out call"
    )


async def memory(base_url: str, accounts: list[dict[str, Any]], every: float) -> float:
    """Bytes held per account once each has been polled at least once (tracemalloc)."""
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    async with Session(base_url=base_url, governor=governor(), timeout=60) as session:
        jobs = make_clients(session, accounts)
        seen: set[AsyncClient] = set()
        async with session.poll(jobs, every=every) as stream:
            ends = time.monotonic() + 4 * every + 10
            async for update in stream:
                seen.add(update.client)
                if len(seen) == len(jobs) or time.monotonic() >= ends:
                    break
            held = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    if len(seen) < len(jobs):
        print(f"  (memory: only {len(seen)} of {len(jobs)} accounts polled in time)")
    return held / len(accounts)


async def main(args: argparse.Namespace) -> None:
    every = args.accounts / args.rate
    # serve makes 7 HMAC accounts in 10: enough accounts for the HMAC ones wanted.
    total = args.accounts * 10 // 7 + 10
    limits = [f"--{name}" for name in ("api-ip", "sapi-ip", "sapi-uid", "papi-ip", "fapi-ip")]
    with serve("--accounts", str(total), *(x for n in limits for x in (n, HIGH)), core=0) as (
        base_url,
        served,
    ):
        pin(1)
        accounts = [a for a in served if a["key_type"] == "HMAC"][: args.accounts]
        await small_desk(base_url, accounts, args.rounds)
        if args.only_small:
            return
        mix = Counter(STATE_ENDPOINT[a["account_type"]] for a in accounts)
        print(
            f"{len(accounts)} HMAC accounts ({', '.join(f'{n} {e}' for e, n in mix.items())}),"
            f" {args.rate:g} a second in all, exchange in its own process"
        )
        # Single calls, then in each round the poll and single calls again: each poll is set
        # against the mean of the single calls just before and just after it (the machine's
        # speed drifts over minutes), and the ratio is the median of the rounds.
        calls, call_errors, call_cpu, call_probe, profile = await single_calls(
            base_url, accounts, args.rate, args.call_seconds, args.profile
        )
        singles = [call_cpu / max(calls, 1)]
        print(
            f"  single calls: {calls} in {args.call_seconds:g} s"
            f"{f' ({call_errors} failed)' if call_errors else ''}:"
            f" {singles[0] * 1e6:.0f} us CPU per call"
        )
        print(f"    {call_probe.summary()}")
        if profile:
            print(profile)
        seconds = PERIODS * every
        polls: list[float] = []
        for round_ in range(args.big_rounds):
            updates, poll_errors, poll_cpu, poll_probe, profile = await polled(
                base_url, accounts, every, seconds, args.profile and not round_
            )
            polls.append(poll_cpu / max(updates, 1))
            again, _, again_cpu, _, _ = await single_calls(
                base_url, accounts, args.rate, args.call_seconds, False
            )
            singles.append(again_cpu / max(again, 1))
            print(
                f"  round {round_ + 1}: poll, every {every:g} s: {updates} updates in"
                f" {seconds:g} s{f' ({poll_errors} failed)' if poll_errors else ''}:"
                f" {polls[-1] * 1e6:.0f} us CPU per update; single calls after it: {again}"
                f" in {args.call_seconds:g} s: {singles[-1] * 1e6:.0f} us CPU per call"
            )
            if not round_:
                print(f"    {poll_probe.summary()} (target <= 50 ms)")
            if profile:
                print(profile)
        frozen, _, frozen_cpu, frozen_probe, _ = await polled(
            base_url, accounts, every, seconds, False, freeze=True
        )
        print(
            f"  poll again, with gc.freeze() once the clients are made (as binance-pm watch does):"
            f" {frozen_cpu / max(frozen, 1) * 1e6:.0f} us CPU per update"
        )
        print(f"    {frozen_probe.summary()} (target <= 50 ms)")
        pairs = zip(polls, singles[:-1], singles[1:], strict=True)
        ratios = [p / ((a + b) / 2) for p, a, b in pairs]
        print(
            f"  poll: {statistics.median(ratios):.2f}x a single call's CPU (rounds"
            f" {min(ratios):.2f}-{max(ratios):.2f}, each against the single calls before and"
            f" after it; target <= 1.2x)"
        )
        if not args.no_memory:
            held = await memory(base_url, accounts, every)
            print(f"  memory per account (client, job, budget, keys): {held / 1024:.1f} KiB")


# -- instruction counts ------------------------------------------------------------------------

#: The small desk's rate under callgrind, which runs Python some fifty times slower.
SLOW_RATE = 50.0
COUNTED = {"poll": (10.0, 30.0), "paced": (10.0, 30.0), "flat": (500.0, 1500.0)}


async def count_one(mode: str, base_url: str, accounts: list[dict[str, Any]], amount: float) -> int:
    """The body of one callgrind run: the updates or calls made."""
    if mode == "poll":
        updates, *_ = await polled(
            base_url, accounts, len(accounts) / SLOW_RATE, amount, False, probing=False
        )
        return updates
    if mode == "paced":
        answered, *_ = await single_calls(
            base_url, accounts, SLOW_RATE, amount, False, probing=False
        )
        return answered
    async with Session(base_url=base_url, governor=governor(), timeout=600) as session:
        calls = [getattr(c, name) for c, name in make_clients(session, accounts).items()]
        left = int(amount)

        async def worker(start: int) -> None:
            nonlocal left
            i = start
            while left > 0:
                left -= 1
                await calls[i % len(calls)]()
                i += 10

        await asyncio.gather(*(worker(i) for i in range(10)))
    return int(amount)


def callgrind(accounts_file: Path, base_url: str, folder: Path) -> dict[str, float]:
    """Instructions per update (poll) or call (paced, flat), from two runs each."""
    per: dict[str, float] = {}
    for mode, amounts in COUNTED.items():
        runs = []
        for amount in amounts:
            profile = folder / f"callgrind.{mode}.{amount:g}.out"
            printed, total = counted(
                Path(__file__).resolve(),
                [
                    *("--one", mode, "--url", base_url),
                    *("--accounts-file", str(accounts_file), "--amount", str(amount)),
                ],
                profile,
            )
            made = int(printed.split()[-1])
            due = amount if mode == "flat" else amount * SLOW_RATE
            if made < 0.9 * due:  # behind its rate: the two runs would not differ by the work
                raise SystemExit(f"{mode}: {made} of {due:g} made under callgrind; lower SLOW_RATE")
            runs.append((made, total))
        (made_a, total_a), (made_b, total_b) = runs
        per[mode] = (total_b - total_a) / max(made_b - made_a, 1)
    return per


def small_desk_counted(args: argparse.Namespace) -> None:
    """``--callgrind``: the small desk in instructions."""
    folder = Path(tempfile.mkdtemp(prefix="poller-callgrind-"))
    limits = [f"--{name}" for name in ("api-ip", "sapi-ip", "sapi-uid", "papi-ip", "fapi-ip")]
    with serve("--accounts", "150", *(x for n in limits for x in (n, HIGH)), core=0) as (
        base_url,
        served,
    ):
        accounts = [a for a in served if a["key_type"] == "HMAC"][:100]
        accounts_file = folder / "accounts.json"
        accounts_file.write_text(json.dumps(accounts))
        per = callgrind(accounts_file, base_url, folder)
    print(
        f"  instructions, 100 accounts at {SLOW_RATE:g}/s under callgrind: poll"
        f" {per['poll'] / 1e3:.0f} k per update, single calls paced the same"
        f" {per['paced'] / 1e3:.0f} k, flat out (10 in flight) {per['flat'] / 1e3:.0f} k;"
        f" poll / paced {per['poll'] / per['paced']:.2f}x (target <= 1.2x), poll / flat out"
        f" {per['poll'] / per['flat']:.2f}x (target <= 1.25x)"
    )
    print(f"  profiles (callgrind_annotate): {folder}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=ACCOUNTS)
    parser.add_argument("--rate", type=float, default=RATE)
    parser.add_argument("--call-seconds", type=float, default=CALL_SECONDS)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--no-memory", action="store_true")
    parser.add_argument("--rounds", type=int, default=3, help="of the 100-account comparison")
    parser.add_argument("--big-rounds", type=int, default=3, help="of the 10,000-account one")
    parser.add_argument("--only-small", action="store_true", help="the 100-account one alone")
    parser.add_argument("--callgrind", action="store_true", help="the small desk in instructions")
    parser.add_argument("--one", choices=COUNTED, help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--accounts-file", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--amount", type=float, help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.one:
        served = json.loads(arguments.accounts_file.read_text())
        print(asyncio.run(count_one(arguments.one, arguments.url, served, arguments.amount)))
    elif arguments.callgrind:
        small_desk_counted(arguments)
    else:
        asyncio.run(main(arguments))
