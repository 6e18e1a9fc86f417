"""Soak: 200 accounts polled for ten minutes through an exchange that does everything wrong.

The simulated exchange runs as ``binance-pm serve`` in its own process with every fault on
(503s, reset connections, slow answers, truncated "garbage" bodies, proxies' HTML pages) and
one window of ``WINDOW`` seconds, so its budgets bind too. One Session polls all its accounts'
state endpoints for ``--seconds``. Every ``--every`` seconds this prints what the poll yielded
(answers, errors by class), this process's open file descriptors, its resident memory and its
asyncio tasks; at the end it checks that the poll never ended by itself, that every error was a
``BinancePMError``, and that descriptors and memory stayed flat after the first minute (the
last reading within ``FD_SLACK`` descriptors and ``RSS_SLACK`` of the one at a minute).

Run: ``python benchmarks/soak.py`` (ten minutes); ``--seconds 60`` for a short one.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from collections import Counter

from _serve import keys, serve

from binance_pm import BinancePMError, Governor, Session
from binance_pm._endpoints import STATE_ENDPOINT

ACCOUNTS = 200
WINDOW = 10.0
FAULTS = ("503=0.03", "reset=0.03", "slow=0.02", "garbage=0.05", "html=0.03")
FD_SLACK = 20
RSS_SLACK = 20 * 1024 * 1024


def fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


async def soak(
    base_url: str, accounts: list[dict[str, object]], seconds: float, every: float
) -> int:
    answers = 0
    errors: Counter[str] = Counter()
    foreign: list[BaseException] = []
    readings: list[tuple[float, int, int]] = []
    started = time.monotonic()
    next_report = started + every
    ended_early = True
    async with Session(base_url=base_url, timeout=5.0, governor=Governor(window=WINDOW)) as session:
        jobs = {
            session.client(a["api_key"], **keys(a)): STATE_ENDPOINT[str(a["account_type"])]  # type: ignore[arg-type]
            for a in accounts
        }
        async with session.poll(jobs, every=1.0) as updates:
            async for update in updates:
                if update.error is None:
                    answers += 1
                else:
                    errors[type(update.error).__name__] += 1
                    if not isinstance(update.error, BinancePMError):
                        foreign.append(update.error)
                now = time.monotonic()
                if now >= next_report:
                    next_report += every
                    readings.append((now - started, fds(), rss()))
                    _, open_fds, resident = readings[-1]
                    print(
                        f"{now - started:6.0f} s  answers {answers:7d}  "
                        f"errors {sum(errors.values()):6d} {dict(errors)}  fds {open_fds}  "
                        f"rss {resident / 2**20:.1f} MiB  tasks {len(asyncio.all_tasks())}",
                        flush=True,
                    )
                if now - started >= seconds:
                    ended_early = False
                    break
    print(f"answers {answers}, errors {dict(errors)}")
    failures = 0
    if ended_early:
        print("FAIL: the poll ended by itself")
        failures += 1
    if foreign:
        print(f"FAIL: {len(foreign)} errors outside the error tree: {foreign[:3]}")
        failures += 1
    settled = [r for r in readings if r[0] >= 60.0] or readings
    if settled:
        first, last = settled[0], readings[-1]
        print(
            f"after the first minute: fds {first[1]} -> {last[1]}, "
            f"rss {first[2] / 2**20:.1f} -> {last[2] / 2**20:.1f} MiB"
        )
        if last[1] - first[1] > FD_SLACK or last[2] - first[2] > RSS_SLACK:
            print("FAIL: descriptors or memory grew")
            failures += 1
    print("PASS" if not failures else f"{failures} checks failed")
    return failures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=600.0)
    parser.add_argument("--every", type=float, default=30.0)
    args = parser.parse_args()
    options = ["--accounts", str(ACCOUNTS), "--window", str(WINDOW)]
    for fault in FAULTS:
        options += ["--fault", fault]
    with serve(*options) as (base_url, accounts):
        raise SystemExit(asyncio.run(soak(base_url, accounts, args.seconds, args.every)))


if __name__ == "__main__":
    main()
