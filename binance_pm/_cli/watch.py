"""``binance-pm watch``: real accounts from a TOML file, polled live."""

from __future__ import annotations

import argparse
import asyncio

from .._governor import Governor
from ._common import fail, needs, positive
from .accounts import read_accounts


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    watch = commands.add_parser(
        "watch",
        help="poll real accounts from a TOML file, live",
        description="Poll the accounts in FILE through one Session, live. FILE lists "
        "[[account]] tables with name, api_key, and secret or private_key_file (a PEM; "
        "private_key_password if it is encrypted), and optionally endpoint (pm_balance, "
        "pm_pro_account (default), pm_pro_span_account…). Keys are never shown.",
    )
    watch.add_argument("--accounts", required=True, metavar="FILE", help="TOML file of accounts")
    watch.add_argument(
        "--every", type=positive(float), default=5.0, help="poll each account this often (5)"
    )
    watch.add_argument(
        "--alert-mmr", type=positive(float), default=1.5, help="highlight below this uniMMR"
    )
    watch.add_argument("--seconds", type=positive(float), default=None, help="stop after this long")
    watch.add_argument("--base-url", default=None, help="send every request here instead")
    watch.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    try:
        from rich.console import Console
    except ImportError as exc:
        return needs("cli", exc)
    from .._session import Session
    from .board import Board, Row, run_board

    try:
        accounts = read_accounts(args.accounts)
    except ValueError as exc:
        return fail(str(exc), 2)
    console = Console()
    board_box: list[Board] = []

    async def run() -> None:
        async with Session(base_url=args.base_url) as session:
            jobs = {}
            rows = {}
            for account in accounts:
                try:
                    client = session.client(account["api_key"], **account["keys"])
                except (ValueError, TypeError) as exc:
                    raise _Refused(f"{account['name']}: {exc}") from None
                jobs[client] = account["endpoint"]
                rows[client] = Row(account["name"], account["endpoint"])
            board = Board(rows, args.alert_mmr)
            board_box.append(board)
            assert isinstance(session.governor, Governor)
            await run_board(
                session,
                session.governor,
                jobs,
                board,
                every=args.every,
                seconds=args.seconds,
                console=console,
                title=f"binance-pm watch: {len(accounts)} accounts",
            )

    try:
        asyncio.run(run())
    except _Refused as exc:
        return fail(str(exc), 2)
    except KeyboardInterrupt:
        pass
    if board_box:
        board = board_box[0]
        console.print(f"calls: {board.calls}", highlight=False)
        console.print(f"errors: {board.errors_text()}", highlight=False)
    return 0


class _Refused(Exception):
    pass
