"""Two workers, each with a Session and a Governor of its own, sharing one budget through Redis.

A desk that polls from several processes (or hosts behind one address) spends one IP budget
at the exchange. Here two workers split the accounts of ``binance-pm serve`` between them and
poll them for a few seconds. Their governors share nothing in memory: each has its own
``RedisStore`` connection, and every call is charged in Redis, atomically, against what both
have spent. Each second both workers read the shared budget back (``Governor.asnapshot()``),
and see the same counts; at the end, what each spent, what the exchange refused (nothing, when
the governors know its limits), and the shared budget as Redis holds it. The workers would do
the same as processes of their own: all they share is Redis.

Run: ``python examples/redis_fleet.py`` starts ``binance-pm serve`` and a ``redis-server`` of
its own (on a unix socket in a temporary directory), and stops both at the end. To see the
shared budget bind within seconds, give the exchange and the governors a small papi budget::

    python examples/redis_fleet.py --window 2 --papi-ip 200

Against a running serve and Redis: ``python examples/redis_fleet.py serve.txt --redis URL``
(``serve.txt``: what serve printed, see ``examples/_served.py``; URL also from
``BINANCE_PM_REDIS_URL``), with ``--window`` and ``--papi-ip`` as that serve was started (the
governors count over the exchange's window: its used-weight headers do). Ctrl-C stops it early.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import anyio
from _served import ServedAccount, arguments, served, stop

from binance_pm import AccountType, Governor, Limits, Session
from binance_pm.redis import RedisStore

#: What each account type's accounts are polled for (papi, sapi UID and sapi IP weight).
POLLED = {
    AccountType.PM_2: "pm_account",
    AccountType.PM_1: "pm_pro_account",
    AccountType.PM_3: "pm_pro_span_account",
}
SHOWN = ("papi_ip", "sapi_ip")  # the shared IP budgets the workers' calls spend


@dataclass
class Worker:
    """One member of the fleet: its accounts, its governor, and what it did."""

    name: str
    accounts: list[ServedAccount]
    governor: Governor
    updates: Counter[str] = field(default_factory=Counter)  # by endpoint
    failed: Counter[str] = field(default_factory=Counter)  # by error type


@contextlib.asynccontextmanager
async def redis_url(given: str | None) -> AsyncIterator[str]:
    """``given``; or a ``redis-server`` of this script's own, on a unix socket, stopped at the
    end."""
    if given:
        yield given
        return
    executable = shutil.which("redis-server")
    if executable is None:
        raise SystemExit("no redis-server to start (Debian: apt-get install redis-server): --redis")
    with tempfile.TemporaryDirectory(prefix="redis-") as directory:
        socket = os.path.join(directory, "redis.sock")
        process = await asyncio.create_subprocess_exec(
            executable,
            *("--port", "0", "--unixsocket", socket, "--unixsocketperm", "700"),
            *("--dir", directory, "--save", "", "--appendonly", "no"),
            stdout=asyncio.subprocess.PIPE,
        )
        try:
            assert process.stdout is not None
            ready = False
            with anyio.move_on_after(10):
                while line := await process.stdout.readline():  # its log says when it listens
                    if ready := b"ready to accept connections" in line.lower():
                        break
            if not ready:
                raise SystemExit("redis-server did not start: see its log above")
            print(f"started redis-server (pid {process.pid}) on {socket}")
            yield f"unix://{socket}?db=0"
        finally:
            stop(process)
            await process.wait()


async def work(worker: Worker, session: Session, every: float) -> None:
    """Poll the worker's accounts until cancelled, counting what comes back."""
    jobs = {a.client(session): POLLED[a.account_type] for a in worker.accounts}
    async with session.poll(jobs, every=every) as feed:
        async for update in feed:
            worker.updates[update.endpoint] += 1
            if update.error is not None:
                worker.failed[type(update.error).__name__] += 1


async def report(workers: list[Worker], started: float) -> None:
    """Each second, the shared budgets as each worker's governor reads them from Redis."""
    while True:
        await anyio.sleep(1.0)
        seen = [await w.governor.asnapshot() for w in workers]
        parts = []
        for budget in SHOWN:
            reads = [f"{w.name} reads {s[budget].used}" for w, s in zip(workers, seen, strict=True)]
            state = seen[0][budget]
            parts.append(f"{budget} {state.used}/{state.limit} ({', '.join(reads)})")
        print(f"{time.monotonic() - started:4.1f}s shared: {'; '.join(parts)}")


async def main() -> None:
    parser = arguments(__doc__.splitlines()[0], seconds=3.0)
    parser.add_argument(
        "--redis",
        default=os.environ.get("BINANCE_PM_REDIS_URL"),
        metavar="URL",
        help="the Redis both workers share (default: $BINANCE_PM_REDIS_URL, else start one)",
    )
    parser.add_argument(
        "--window", type=float, default=60.0, help="the exchange's rate-limit window (60)"
    )
    parser.add_argument(
        "--papi-ip", type=int, default=6000, help="the exchange's papi IP weight per window (6000)"
    )
    parser.add_argument("--every", type=float, default=0.25, help="poll each account this often")
    args = parser.parse_args()
    limits = Limits(papi_ip=args.papi_ip)
    serve_args = ("--accounts", "10", "--seed", "1", "--window", str(args.window))
    async with (
        served(args.serve_output, *serve_args, "--papi-ip", str(args.papi_ip)) as exchange,
        redis_url(args.redis) as url,
        contextlib.aclosing(RedisStore(url, prefix="binance_pm_fleet")) as store_a,
        contextlib.aclosing(RedisStore(url, prefix="binance_pm_fleet")) as store_b,
    ):
        # Deal each product's accounts out in turn, so both workers spend every budget.
        ranked = sorted(exchange.accounts, key=lambda a: a.account_type.value)
        workers = [
            Worker("A", ranked[0::2], Governor(store=store_a, window=args.window, limits=limits)),
            Worker("B", ranked[1::2], Governor(store=store_b, window=args.window, limits=limits)),
        ]
        started = time.monotonic()
        async with (
            Session(base_url=exchange.base_url, governor=workers[0].governor) as session_a,
            Session(base_url=exchange.base_url, governor=workers[1].governor) as session_b,
        ):
            with anyio.move_on_after(args.seconds):
                async with anyio.create_task_group() as group:
                    group.start_soon(work, workers[0], session_a, args.every)
                    group.start_soon(work, workers[1], session_b, args.every)
                    group.start_soon(report, workers, started)
            took = time.monotonic() - started
            seen = [await w.governor.asnapshot() for w in workers]

    print(f"in {took:.1f} s, each account polled at most every {args.every:g} s:")
    for worker in workers:
        calls = ", ".join(f"{name} {count}" for name, count in sorted(worker.updates.items()))
        errors = ", ".join(f"{kind} {n}" for kind, n in sorted(worker.failed.items())) or "none"
        print(f"  worker {worker.name}: {len(worker.accounts)} accounts; calls {calls}")
        print(f"  worker {worker.name}: errors {errors}")
    for budget in SHOWN:
        rejections = sum(states[budget].rejections for states in seen)  # each worker's own
        state = seen[0][budget]
        print(
            f"  shared {budget}: {state.used} of {state.limit} held in Redis at the end, "
            f"{state.external} of it reported by the exchange beyond the fleet's own; "
            f"429s and 418s: {rejections}"
        )


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:  # Ctrl-C: the blocks above have closed, serve and Redis stopped
        sys.exit(130)
