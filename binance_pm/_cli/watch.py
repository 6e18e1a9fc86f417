"""``binance-pm watch``: real accounts from a TOML file, polled live."""

from __future__ import annotations

import argparse
import asyncio
import sys
from contextlib import AsyncExitStack

from ._common import (
    EXIT_STATUSES,
    FAILED,
    INTERRUPTED,
    OK,
    USAGE,
    fail,
    needs,
    port,
    positive,
    sigterm_as_ctrl_c,
)
from .accounts import read_accounts
from .views import FORMATS, add_stream_options


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    watch = commands.add_parser(
        "watch",
        epilog=EXIT_STATUSES,
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
        "--alert-mmr",
        type=positive(float),
        default=1.5,
        help="alert below this uniMMR (1.5)",
    )
    watch.add_argument("--seconds", type=positive(float), default=None, help="stop after this long")
    watch.add_argument("--base-url", default=None, help="send every request here instead")
    watch.add_argument(
        "--format",
        choices=FORMATS,
        default="auto",
        help="table: live on a terminal; plain: a line a second naming the accounts in trouble; "
        "jsonl: one JSON object per update on stdout, the summary on stderr (default auto: "
        "table on a terminal, plain otherwise)",
    )
    watch.add_argument(
        "--metrics-port",
        type=port,
        default=None,
        metavar="PORT",
        help="serve Prometheus metrics at http://HOST:PORT/metrics (0: a free port, named on "
        "stderr; default: none)",
    )
    watch.add_argument(
        "--metrics-host",
        default="127.0.0.1",
        metavar="HOST",
        help="address the metrics listen on (default 127.0.0.1; 0.0.0.0 for all)",
    )
    add_stream_options(watch, reconcile_every=60.0)
    watch.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    try:
        import rich  # noqa: F401
    except ImportError as exc:
        return needs("cli", exc)
    from .._session import Session
    from .board import Board, Row
    from .views import make_console, run_board

    host = args.metrics_host
    if args.metrics_port is not None:
        try:
            import prometheus_client  # noqa: F401
        except ImportError as exc:
            return needs("cli", exc)
    try:
        accounts = read_accounts(args.accounts)
    except ValueError as exc:
        return fail(str(exc), USAGE)
    # JSON lines own standard output: the live view and the summary go to standard error.
    console = make_console(stderr=args.format == "jsonl")
    board_box: list[Board] = []

    async def watch() -> None:
        async with Session(base_url=args.base_url) as session:
            jobs = {}
            rows = {}
            for account in accounts:
                name = account["name"]
                try:
                    client = session.client(account["api_key"], name=name, **account["keys"])
                except (ValueError, TypeError) as exc:
                    raise _Refused(f"{args.accounts}: {name}: {exc}") from None
                jobs[client] = account["endpoint"]
                rows[client] = Row(name, account["endpoint"])
            board = Board(rows, args.alert_mmr, every=args.every)
            board_box.append(board)
            async with AsyncExitStack() as stack:
                if args.metrics_port is not None:
                    from .metrics import serve_metrics

                    try:
                        url = await stack.enter_async_context(
                            serve_metrics(
                                board, session.governor, port=args.metrics_port, host=host
                            )
                        )
                    except OSError as exc:
                        raise _Refused(f"--metrics-port {args.metrics_port}: {exc}") from None
                    print(f"binance-pm: metrics at {url}", file=sys.stderr, flush=True)
                await run_board(
                    session,
                    session.governor,
                    jobs,
                    board,
                    seconds=args.seconds,
                    console=console,
                    title=f"binance-pm watch: {len(accounts)} accounts",
                    form=args.format,
                    stream=args.stream,
                    reconcile_every=args.reconcile_every,
                )

    sigterm_as_ctrl_c()
    interrupted = False
    try:
        asyncio.run(watch())
    except _Refused as exc:
        return fail(str(exc), USAGE)
    except KeyboardInterrupt:
        interrupted = True
    except BrokenPipeError:  # `watch --format jsonl | head`: the reader has had enough
        return OK
    if not board_box:
        return INTERRUPTED if interrupted else FAILED
    board = board_box[0]
    try:
        for line in board.summary():
            console.print(line, highlight=False, soft_wrap=True, markup=False)
    except BrokenPipeError:
        pass
    return INTERRUPTED if interrupted else board.exit_status()


class _Refused(Exception):
    pass
