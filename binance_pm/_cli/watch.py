"""``binance-pm watch``: real accounts from a TOML file, polled live."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from contextlib import AsyncExitStack
from typing import Any

from .._exceptions import BinancePMError
from ._common import (
    EXIT_STATUSES,
    FAILED,
    INTERRUPTED,
    OK,
    USAGE,
    add_budget_options,
    budget_limits,
    fail,
    frozen_heap,
    needs,
    port,
    positive,
    seconds,
)
from .accounts import read_accounts
from .fleet import add_fleet_options, make_fleet
from .views import FORMATS, add_stream_options


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    watch = commands.add_parser(
        "watch",
        epilog=EXIT_STATUSES,
        help="poll real accounts from a TOML file, live",
        description="Poll the accounts in FILE through one Session, live. FILE lists "
        "[[account]] tables with name, api_key, and secret or private_key_file (a PEM; "
        "private_key_password if it is encrypted), and optionally product (PM, PM Pro, PM Pro "
        "SPAN) or endpoint (pm_account, pm_balance, pm_pro_account, pm_pro_span_account…); "
        "with neither, the account's product is asked of the exchange at the start. Keys are "
        "never shown.",
    )
    watch.add_argument("--accounts", required=True, metavar="FILE", help="TOML file of accounts")
    watch.add_argument(
        "--every", type=seconds(), default=5.0, help="poll each account this often (5)"
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
        "--source-address",
        default=None,
        metavar="IP",
        help="send from this local IP address (every connection: calls, clock checks, "
        "streams); each egress IP has IP limits of its own at the exchange",
    )
    add_budget_options(watch, whose="the exchange, as this watch counts it")
    add_fleet_options(watch)
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
    from .._config import check_source_address
    from .._governor import Governor
    from .._limits import Limits
    from .._session import Session
    from .._updates import Update
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
    jsonl = args.format == "jsonl"
    console = make_console(stderr=jsonl)
    if args.fleet is not None:
        try:
            import redis  # noqa: F401
        except ImportError as exc:
            return needs("redis", exc)
    board_box: list[Board] = []

    async def watch() -> None:
        try:
            source = check_source_address(args.source_address, given=None)
        except ValueError as exc:
            raise _Refused(f"--source-address: {exc}") from None
        fleet = store = None
        if args.fleet is not None:
            if args.stream:
                raise _Refused("--fleet shares polls out, not streams: leave out --stream")
            names = [account["name"] for account in accounts]
            try:
                fleet, store = make_fleet(args, names, source=source, jsonl=jsonl)
            except ValueError as exc:
                raise _Refused(f"--fleet: {exc}") from None
        try:
            limits = Limits(**budget_limits(args))
            governor = Governor(window=args.window, limits=limits, store=store)
        except (ValueError, TypeError) as exc:
            raise _Refused(f"the budgets: {exc}") from None
        try:
            session = Session(base_url=args.base_url, governor=governor, source_address=source)
        except ValueError as exc:
            raise _Refused(f"--base-url {args.base_url!r}: {exc}") from None
        try:
            await watch_with(session, fleet)
        finally:
            if fleet is not None and store is not None:
                await fleet.aclose()
                await store.aclose()

    async def watch_with(session: Session, fleet: Any) -> None:
        async with session:
            jobs: dict[Any, str | None] = {}
            for account in accounts:
                name = account["name"]
                try:
                    client = session.client(
                        account["api_key"], name=name, product=account["product"], **account["keys"]
                    )
                except (ValueError, TypeError) as exc:
                    raise _Refused(f"{args.accounts}: {name}: {exc}") from None
                jobs[client] = account["endpoint"]
            found, unknown = await _find_products(jobs, args.accounts)
            rows = {}
            for client in jobs:
                if client in found:
                    rows[client] = Row(client.name, found[client])
                else:  # shown, never guessed: polled with another product's endpoint, a
                    # PM key would be refused (-2015) and dropped for good
                    rows[client] = Row(
                        client.name, "", kind="product?", error=unknown[client], ended=True
                    )
            board = Board(rows, args.alert_mmr, every=args.every, fleet=fleet)
            board_box.append(board)
            for client, error in unknown.items():  # said like any update: nothing silent
                board.errors[type(error).__name__] += 1
                if args.format == "jsonl":
                    told = Update(client, "", None, error, time.time(), final=True)
                    print(json.dumps(board.record(told, rows[client])), flush=True)
            if not found:
                return  # nothing to watch: the summary says why
            async with AsyncExitStack() as stack:
                stack.enter_context(frozen_heap())
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
                    found,
                    board,
                    seconds=args.seconds,
                    console=console,
                    title=_title(len(accounts), fleet),
                    form=args.format,
                    stream=args.stream,
                    reconcile_every=args.reconcile_every,
                )

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
    board, ended = board_box[0], time.monotonic()
    try:
        for line in board.summary(now=ended):
            console.print(line, highlight=False, soft_wrap=True, markup=False)
    except BrokenPipeError:
        pass
    return INTERRUPTED if interrupted else board.exit_status(ended)


class _Refused(Exception):
    pass


async def _find_products(
    jobs: dict[Any, str | None], path: str
) -> tuple[dict[Any, str], dict[Any, BinancePMError]]:
    """Each account's endpoint: the one listed, or for an account listed with neither product
    nor endpoint its state endpoint by the product the exchange says it is (all at once, at
    the governor's pace); and the accounts whose product could not be told, with why."""
    import anyio

    from .._endpoints import STATE_ENDPOINT
    from .board import reason

    found = {client: endpoint for client, endpoint in jobs.items() if endpoint is not None}
    asked = [client for client in jobs if client not in found]
    unknown: dict[Any, BinancePMError] = {}
    if not asked:
        return found, unknown
    print(
        f"binance-pm: asking the exchange the product of {len(asked)} accounts (a product or "
        f"endpoint for each in {path} skips this)",
        file=sys.stderr,
        flush=True,
    )

    async def find(client: Any) -> None:
        try:
            product = await client.detect_product()
        except BinancePMError as exc:
            print(
                f"binance-pm: {client.name}: cannot tell its product ({reason(exc)}); not "
                f"watched: give its product in {path}",
                file=sys.stderr,
                flush=True,
            )
            unknown[client] = exc
        else:
            found[client] = STATE_ENDPOINT[product.value]

    async with anyio.create_task_group() as group:
        for client in asked:
            group.start_soon(find, client)
    return {client: found[client] for client in jobs if client in found}, unknown


def _title(accounts: int, fleet: Any) -> str:
    if fleet is None:
        return f"binance-pm watch: {accounts} accounts"
    return f"binance-pm watch: {accounts} accounts, fleet {fleet.name}, member {fleet.member}"
