"""Every account endpoint, called for each account type that it answers, on ``binance-pm serve``.

The simulated exchange answers each endpoint only for the products it serves, as the real one
does, and refuses the others with ``-2015``:

- PM (``PM_2``): ``pm_balance`` (all assets, or one) and ``pm_account`` (uniMMR, equity, status);
- PM Pro (``PM_1``): ``pm_pro_balance``, ``pm_pro_account`` and ``classic_pm_account``;
- PM Pro SPAN (``PM_3``): ``pm_pro_span_account``, and PM Pro's three as well.

One Session carries every account (HMAC, Ed25519 and RSA keys alike); the last call asks a PM
account for a PM Pro figure, to show the refusal as the typed error a caller catches.

Run: ``python examples/account_endpoints.py`` (starts ``binance-pm serve`` itself), or
``python examples/account_endpoints.py serve.txt`` against a running one whose output is in
``serve.txt`` (see ``examples/_served.py``). Ends in a few seconds; Ctrl-C stops it early.
"""

from __future__ import annotations

import asyncio
import sys
from decimal import Decimal

from _served import Exchange, ServedAccount, arguments, served

from binance_pm import AccountType, AuthError, Session


def pick(exchange: Exchange, account_type: AccountType, shown: set[str]) -> ServedAccount:
    """An account of ``account_type``: one whose key type is not ``shown`` yet, if there is
    one, and rather an Ed25519 or RSA key than HMAC."""
    found = exchange.of_type(account_type)
    if not found:
        raise SystemExit(f"serve has no {account_type.value} account: start it with more")
    chosen = min(found, key=lambda a: (a.key_type in shown, a.key_type == "HMAC"))
    shown.add(chosen.key_type)
    return chosen


def some(amounts: list[tuple[str, Decimal | None]]) -> str:
    """The first three assets' amounts, and how many more there are."""
    text = ", ".join(f"{asset} {'n/a' if x is None else f'{x:f}'}" for asset, x in amounts[:3])
    return text + (f" and {len(amounts) - 3} more" if len(amounts) > 3 else "")


async def pm(session: Session, account: ServedAccount) -> None:
    client = account.client(session)
    head = f"{account.product:11s} {account.name} ({account.key_type})"
    balances = await client.pm_balance()
    print(f"{head} pm_balance: {some([(b.asset, b.total_wallet_balance) for b in balances])}")
    one = await client.pm_balance(asset=balances[0].asset)
    print(f"{head} pm_balance(asset={one.asset!r}): cross margin free {one.cross_margin_free}")
    info = await client.pm_account()
    print(
        f"{head} pm_account: uniMMR {info.uni_mmr}, equity {info.account_equity} USD, "
        f"maint. margin {info.account_maint_margin}, status {info.account_status.value}"
    )


async def pm_pro(session: Session, account: ServedAccount) -> None:
    client = account.client(session)
    head = f"{account.product:11s} {account.name} ({account.key_type})"
    balances = await client.pm_pro_balance()
    wallets = some([(b.asset, b.total_wallet_balance) for b in balances])
    print(f"{head} pm_pro_balance: {wallets}")
    info = await client.pm_pro_account()
    print(
        f"{head} pm_pro_account: uniMMR {info.uni_mmr}, equity {info.account_equity} USD, "
        f"status {info.account_status.value}, type {info.account_type.value}"
    )
    most = await client.classic_pm_account(asset="USDT")
    print(
        f"{head} classic_pm_account(asset='USDT'): max withdraw {most.max_withdraw_amount} "
        f"({most.max_withdraw_amount_usd} USD)"
    )
    if account.account_type is AccountType.PM_3:
        span = await client.pm_pro_span_account()
        units = some([(u.asset, u.uni_maintain_usd) for u in span.risk_unit_mm_list])
        print(f"{head} pm_pro_span_account: uniMMR {span.uni_mmr}, risk units' MM (USD) {units}")


async def main() -> None:
    args = arguments(__doc__.splitlines()[0], seconds=0).parse_args()
    async with (
        served(args.serve_output, "--accounts", "10", "--seed", "1") as exchange,
        Session(base_url=exchange.base_url) as session,
    ):
        shown: set[str] = set()
        await pm(session, pick(exchange, AccountType.PM_2, shown))
        await pm_pro(session, pick(exchange, AccountType.PM_1, shown))
        await pm_pro(session, pick(exchange, AccountType.PM_3, shown))

        wrong = exchange.of_type(AccountType.PM_2)[0]
        try:
            await wrong.client(session).pm_pro_account()
        except AuthError as refused:  # PM Pro's endpoint, asked for a PM account
            print(
                f"{wrong.product:11s} {wrong.name} pm_pro_account: refused, "
                f"{type(refused).__name__} {refused.code} {refused.msg}"
            )


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:  # Ctrl-C: the blocks above have closed, serve is stopped
        sys.exit(130)
