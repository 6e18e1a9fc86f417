"""``binance-pm demo``: the simulated exchange in this process, all its accounts polled live."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import time
from typing import Any

from .._endpoints import ENDPOINTS, STATE_ENDPOINT
from .._limits import Limits
from ._common import EXIT_STATUSES, INTERRUPTED, OK, fail, needs, positive, seconds
from .views import FORMATS, add_stream_options

#: How often the demo's PM Pro streams push (the exchange's 5 s, faster, as its windows are).
PUSH_EVERY = 1.0


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    demo = commands.add_parser(
        "demo",
        epilog=EXIT_STATUSES,
        help="poll a simulated exchange's accounts, live (the main job)",
        description="Start the simulated exchange in this process and poll all its accounts "
        "through one Session and one governor, as fast as its budgets allow: a live table on a "
        "terminal (plain lines when piped), then a summary of calls, weight and share of each "
        "budget used, 429s, 418s and errors. Its limits are the published ones, scaled to the "
        "window.",
    )
    demo.add_argument("--accounts", type=positive(int), default=60, help="accounts (60)")
    demo.add_argument("--seconds", type=positive(float), default=20.0, help="run time (20)")
    demo.add_argument(
        "--window", type=seconds(), default=2.0, help="seconds per rate-limit window (2)"
    )
    demo.add_argument(
        "--every", type=seconds(), default=0.25, help="poll each account this often (0.25)"
    )
    demo.add_argument(
        "--alert-mmr", type=positive(float), default=1.5, help="alert below this uniMMR (1.5)"
    )
    demo.add_argument("--seed", type=int, default=0, help="seed for the accounts (0)")
    demo.add_argument(
        "--format",
        choices=FORMATS,
        default="auto",
        help="as for watch: table, plain or jsonl (default auto: table on a terminal, plain "
        "otherwise)",
    )
    add_stream_options(demo, reconcile_every=5.0)
    demo.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    try:
        import rich  # noqa: F401

        from ..testing import SimulatedExchange
    except ImportError as exc:
        return needs("cli", exc)
    from .._limits import PUBLISHED_LIMITS
    from .._session import Session
    from .board import Board, Row
    from .views import make_console, run_board

    # The published per-minute rates, over the demo's window; stream connection attempts at
    # the published 300 per (scaled) window, so that --stream connects every account at once.
    limits = PUBLISHED_LIMITS.scaled(args.window / 60, least=20)
    limits = dataclasses.replace(limits, ws_connect=PUBLISHED_LIMITS.ws_connect)
    console = make_console(stderr=args.format == "jsonl")
    exchange = SimulatedExchange(
        window=args.window,
        accounts=args.accounts,
        seed=args.seed,
        limits=limits,
        push_every=PUSH_EVERY,
    )
    governor = exchange.governor()

    ran: dict[str, Any] = {}  # what the run got to, for the summary even when interrupted

    async def run() -> None:
        async with exchange, Session(base_url=exchange.base_url, governor=governor) as session:
            jobs = {}
            rows = {}
            for account in exchange.accounts:
                client = session.client(account.api_key, name=account.name, **account.credentials())
                kind = account.account_type.value
                jobs[client] = STATE_ENDPOINT[kind]
                rows[client] = Row(account.name, STATE_ENDPOINT[kind])
            ran["board"] = board = Board(rows, args.alert_mmr, every=args.every)
            ran["started"] = exchange.server_ms()
            title = (
                f"binance-pm demo: {args.accounts} simulated accounts, {args.window:g} s windows"
            )
            try:
                await run_board(
                    session,
                    governor,
                    jobs,
                    board,
                    seconds=args.seconds,
                    console=console,
                    title=title,
                    form=args.format,
                    stream=args.stream,
                    reconcile_every=args.reconcile_every,
                    pushes_every=PUSH_EVERY,
                )
            finally:
                ran["stopped"] = exchange.server_ms()

    interrupted = False
    try:
        asyncio.run(run())
    except BrokenPipeError:  # `demo | head`: the reader has had enough
        return OK
    except OSError as exc:
        return fail(f"cannot serve the simulated exchange: {exc}")
    except KeyboardInterrupt:
        interrupted = True
    if "stopped" not in ran:  # interrupted before it began
        return INTERRUPTED
    board, ended = ran["board"], time.monotonic()
    with contextlib.suppress(BrokenPipeError):
        _demo_summary(console, exchange, board, limits, args, ran, ended)
    # The simulated accounts that drift into liquidation are part of the show, not a failure.
    return INTERRUPTED if interrupted else board.exit_status(ended, liquidation=False)


def _demo_summary(
    console: Any,
    exchange: Any,
    board: Any,
    limits: Limits,
    args: argparse.Namespace,
    ran: dict[str, Any],
    ended: float,
) -> None:
    """What the exchange counted: per budget, weight and share used, from one window after the
    start (the opening burst's) to the end, as a rate over whole windows."""
    from ..testing import budget_use

    started, stopped = ran["started"], ran["stopped"]
    stats = exchange.stats
    uid_accounts = sum(  # the accounts whose state is read from a UID-weighted endpoint
        ENDPOINTS[STATE_ENDPOINT[a.account_type.value]].bucket == "uid" for a in exchange.accounts
    )
    weight = dict(stats.weight)  # per limit: every account's UID budget as "sapi_uid"
    used, windows = budget_use(
        stats.arrivals,
        {name: limits[name] for name in weight},
        window=args.window,
        started_ms=started,
        stopped_ms=stopped,
        uid_accounts=uid_accounts,
    )
    by_status = stats.by_status
    lines = [
        "== summary ==",
        f"seconds: {(stopped - started) / 1000:.1f}",
        f"accounts: {len(exchange.accounts)}",
    ]
    for name in sorted(weight):
        lines.append(
            f"budget {name}: weight {weight[name]}, {used[name]:.1%} of the budget used "
            f"(over {windows} windows)"
        )
    lines += [
        f"429s: {by_status.get(429, 0)}",
        f"418s: {by_status.get(418, 0)}",
    ]
    lines += board.summary(now=ended)
    for line in lines:
        console.print(line, highlight=False, soft_wrap=True, markup=False)
