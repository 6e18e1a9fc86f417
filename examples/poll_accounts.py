"""Every account of ``binance-pm serve`` polled through one Session for a few seconds.

``Session.poll`` takes a mapping from each client to what it polls: a PM account's
``pm_account`` and ``pm_balance``, a PM Pro account's ``pm_pro_account``, a PM Pro SPAN
account's ``pm_pro_span_account``. Each client is named after its account
(``session.client(api_key, ..., name="acct-0001")``), so every update says whose it is. Each
update is printed as it comes; at the end, how many each account had, and how much of each
rate-limit budget the poll held.

Run: ``python examples/poll_accounts.py`` (starts ``binance-pm serve`` itself), or
``python examples/poll_accounts.py serve.txt`` against a running one whose output is in
``serve.txt`` (see ``examples/_served.py``); ``--seconds 10`` to run longer, ``--every 1`` to
poll each account less often. Ctrl-C stops it early.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections import Counter
from decimal import Decimal

import anyio
from _served import arguments, served

from binance_pm import (
    AccountType,
    AsyncClient,
    PMAccount,
    PMBalance,
    PMProAccount,
    PMProBalance,
    PMProSpanAccount,
    Session,
    Update,
)

#: What each account type's accounts are polled for.
POLLED = {
    AccountType.PM_2: ["pm_account", "pm_balance"],
    AccountType.PM_1: ["pm_pro_account"],
    AccountType.PM_3: ["pm_pro_span_account"],
}


def figure(value: Decimal | None, spec: str = ",.2f") -> str:
    """An amount for the screen (the exchange may leave one out: ``None``)."""
    return "n/a" if value is None else format(value, spec)


def describe(update: Update) -> str:
    """One update in a line: the account's figures, or why the call failed."""
    head = f"{update.name} {update.endpoint:20s}"
    result = update.result
    if update.error is not None:
        end = " (polls no more)" if update.final else ""
        return f"{head} failed: {type(update.error).__name__}: {update.error}{end}"
    if isinstance(result, (PMAccount, PMProAccount, PMProSpanAccount)):
        return (
            f"{head} uniMMR {figure(result.uni_mmr, '.4f')}  {result.account_status.value:13s}"
            f" equity {figure(result.account_equity)} USD"
        )
    if isinstance(result, list):
        balances: list[PMBalance] | list[PMProBalance] = result
        usdt = next((b.total_wallet_balance for b in balances if b.asset == "USDT"), None)
        return f"{head} {len(balances)} asset(s), USDT wallet {figure(usdt)}"
    return f"{head} {result!r}"


async def main() -> None:
    parser = arguments(__doc__.splitlines()[0], seconds=3.0)
    parser.add_argument("--every", type=float, default=0.5, help="poll each account this often")
    args = parser.parse_args()
    async with (
        served(args.serve_output, "--accounts", "10", "--seed", "1") as exchange,
        Session(base_url=exchange.base_url) as session,
    ):
        jobs: dict[AsyncClient, list[str]] = {}
        products: dict[AsyncClient, str] = {}
        for account in exchange.accounts:
            client = account.client(session)
            jobs[client] = POLLED[account.account_type]
            products[client] = account.product
        updates: Counter[str] = Counter()
        failed = 0
        started = time.monotonic()
        with anyio.move_on_after(args.seconds):  # the poll's block ends, its calls with it
            async with session.poll(jobs, every=args.every) as feed:
                async for update in feed:
                    updates[update.name] += 1
                    failed += update.error is not None
                    print(f"{time.monotonic() - started:5.2f}s {describe(update)}")
        took = time.monotonic() - started
        print(
            f"{sum(updates.values())} updates ({failed} failed) from {len(updates)} of "
            f"{len(jobs)} accounts in {took:.1f} s, each account polled every {args.every:g} s:"
        )
        for client in jobs:
            print(f"  {client.name} ({products[client]}): {updates[client.name]} updates")
        for name, state in session.governor.snapshot().items():
            if state.used:
                print(f"  budget {name}: {state.used} of {state.limit} held now")


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:  # Ctrl-C: the blocks above have closed, serve is stopped
        sys.exit(130)
