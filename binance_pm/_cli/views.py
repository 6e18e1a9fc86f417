"""The views of a :class:`~.board.Board` while ``Session.poll`` fills it: a live table on a
terminal, a plain line a second when piped, or one JSON object per update (``--format jsonl``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, TextIO

import anyio

from .._governor import Governor
from .._limits import Budget
from ._common import seconds
from .board import Board, Row, reason
from .fit import fitted, plain_output
from .periods import arrival_periods

if TYPE_CHECKING:
    from rich.console import Console, RenderableType
    from rich.table import Table

    from .._client import AsyncClient
    from .._session import Session

#: ``--format`` choices; ``auto`` is ``table`` on a terminal, ``plain`` otherwise.
FORMATS = ("auto", "table", "plain", "jsonl")
NAMED = 5  # accounts named on a plain line, per kind of trouble
#: The budgets the table shows even when unused; every account's UID budget in one row.
ALWAYS_SHOWN = (Budget("papi", "ip").limit, Budget("sapi", "ip").limit)
UID = Budget("sapi", "uid")


def add_stream_options(parser: argparse.ArgumentParser, reconcile_every: float) -> None:
    """``--stream`` and ``--reconcile-every``, for watch and demo."""
    parser.add_argument(
        "--stream",
        action="store_true",
        help="also follow each account's user data stream: pushed figures at once, REST "
        "polls every --reconcile-every seconds instead of --every",
    )
    parser.add_argument(
        "--reconcile-every",
        type=seconds(),
        default=reconcile_every,
        metavar="SECONDS",
        help="with --stream, seconds between two REST polls of an account (default: %(default)s)",
    )


def make_console(*, stderr: bool = False) -> Console:
    """A rich console whose closed pipe (``watch | head``) raises ``BrokenPipeError``, for
    the command to end quietly, rather than rich's own exit with status 1."""
    from rich.console import Console

    class PipeConsole(Console):
        def on_broken_pipe(self) -> None:
            quiet_stdout()
            raise BrokenPipeError("the output was closed")

    return PipeConsole(stderr=stderr)


def quiet_stdout() -> None:
    """Point standard output at nothing, so that no later write or Python's final flush to a
    closed pipe prints an error."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # no file descriptor behind sys.stdout
        pass


def budgets(governor: Governor) -> list[tuple[str, int, int, int]]:
    """(name, used, limit, 429s) per budget in use: IP budgets one by one, UID ones together."""
    rows = []
    uid_used = uid_limit = uid_refused = uid_count = 0
    for name, state in governor.snapshot().items():
        if state.kind == "uid":
            uid_used += state.used
            uid_limit += state.limit
            uid_refused += state.rejections
            uid_count += 1
        elif state.used or state.rejections or name in ALWAYS_SHOWN:
            rows.append((name, state.used, state.limit, state.rejections))
    if uid_count:
        rows.append((f"{UID.limit} ×{uid_count}", uid_used, uid_limit, uid_refused))
    return rows


def _named(texts: list[str]) -> str:
    shown = ", ".join(texts[:NAMED])
    return shown + (f", +{len(texts) - NAMED} more" if len(texts) > NAMED else "")


def plain_line(board: Board, governor: Governor) -> str:
    """One line of the run so far, for logs and pipes, naming the accounts in trouble."""
    elapsed = time.monotonic() - board.started
    rows = budgets(governor)  # one snapshot for the whole line
    refused = sum(r for *_, r in rows)
    shares = " ".join(
        f"{name.replace(' ', '')} {used / limit:.0%}" for name, used, limit, _ in rows
    )
    alerts, failing = board.alerts(), board.failing()
    line = (
        f"t={elapsed:.1f}s calls={board.calls} errors={sum(board.errors.values())} "
        f"429s={refused} alerts={len(alerts)} failing={len(failing)} "
        f"stale={len(board.stale())} | {shares}"
    )
    if alerts:
        line += " | alerts: " + _named([board.alert_text(row) for row in alerts])
    if failing:
        line += " | failing: " + _named([board.failure_text(row) for row in failing])
    return line


#: The accounts table's columns, in the order shown, and which to keep first when the terminal
#: is narrow (indices into COLUMNS).
COLUMNS = (
    ("account", "left"),
    ("uniMMR", "right"),
    ("status", "left"),
    ("type", "left"),
    ("equity / wallet", "right"),
    ("age", "right"),
    ("last error", "left"),
)
ERROR = 6
COLUMN_ORDER = (0, 1, 2, 3, ERROR, 4, 5)
ERROR_ROOM = 20  # the last error is shown when it has this many columns, wrapped if longer


def render(board: Board, governor: Governor, title: str, console: Console) -> RenderableType:
    """The live view: budget bars, then the accounts that fit, in trouble first."""
    from rich.console import Group
    from rich.progress_bar import ProgressBar
    from rich.table import Table
    from rich.text import Text

    now = time.time()
    height = console.size.height
    elapsed = time.monotonic() - board.started
    bars = Table.grid(padding=(0, 2))
    bar_width = max(8, min(30, console.width - 52))  # the figures beside it stay whole
    for name, used, limit, refused in budgets(governor):
        bar = ProgressBar(total=limit, completed=min(used, limit), width=bar_width)
        share = f"{used:>7,}/{limit:<7,} {used / limit:>4.0%}"
        bars.add_row(Text(name, style="bold"), bar, Text(share), Text(f"429s {refused}"))
    shown = board.ordered()[: max(height - 12, 3)]
    cells = [_cells(board, row, now) for row in shown]
    styles = [_style(board, row, now) for row in shown]

    def make(kept: Sequence[int], measuring: bool) -> Table:
        table = Table(expand=True, header_style="bold")
        for index in kept:
            heading, justify = COLUMNS[index]
            if index == ERROR:  # the reason wraps onto more lines rather than being cut
                least = ERROR_ROOM if measuring else None
                table.add_column(
                    heading, ratio=1, min_width=ERROR_ROOM, max_width=least, overflow="fold"
                )
            else:
                table.add_column(heading, justify=justify, no_wrap=True)  # type: ignore[arg-type]
        for row_cells, style in zip(cells, styles, strict=True):
            table.add_row(*(row_cells[index] for index in kept), style=style)
        return table

    # On a narrow terminal the figures of least use give way first; the account, its uniMMR
    # and its status are never cut.
    order = [index for index in COLUMN_ORDER if index != ERROR or any(c[ERROR] for c in cells)]
    accounts, left_out = fitted(console, make, order, keep=3)
    hidden = len(board.rows) - len(shown)
    footer = Text(
        f"calls {board.calls}   errors {board.errors_text()}   below uniMMR "
        f"{board.alert_mmr:g}: {len(board.alerts())}   failing {len(board.failing())}"
        + (f"   ({hidden} more accounts not shown)" if hidden > 0 else "")
    )
    header = Text(f"{title}   {elapsed:.1f}s", style="bold")
    if ERROR not in left_out:
        return Group(header, bars, accounts, footer)
    # Too narrow for the reasons beside the rows: the first few below the table, wrapped.
    failing = board.failing()
    reasons = [Text(board.failure_text(row), style="yellow") for row in failing[:NAMED]]
    if len(failing) > NAMED:
        reasons.append(Text(f"… and {len(failing) - NAMED} more failing"))
    return Group(header, bars, accounts, footer, *reasons)


def _cells(board: Board, row: Row, now: float) -> tuple[str, ...]:
    age = "" if row.at is None else f"{max(now - row.at, 0.0):.1f}s"
    return (
        row.name,
        "" if row.uni_mmr is None else f"{row.uni_mmr:.2f}",
        row.state(now),
        row.kind,
        row.equity_text(),
        age,
        "" if row.error is None else brief(reason(row.error)),
    )


_CONNECT = re.compile(
    r"cannot connect to (\S+): ([^(]+?)(?: \(while checking the exchange clock.*\))?"
)


def brief(text: str) -> str:
    """A reason for a narrow column, what went wrong first: ``"Connection refused:
    127.0.0.1:9 (clock check)"`` for ``"cannot connect to 127.0.0.1:9: Connection refused
    (while checking the exchange clock, GET /api/v3/time)"``."""
    found = _CONNECT.fullmatch(text)
    if found is None:
        return text
    clock = " (clock check)" if "exchange clock" in text else ""
    return f"{found[2]}: {found[1]}{clock}"


def _style(board: Board, row: Row, now: float) -> str:
    if board.alerting(row):
        return "bold red"
    if row.failing or row.stale(now):
        return "yellow"
    return ""


async def run_board(
    session: Session,
    governor: Governor,
    jobs: Mapping[AsyncClient, str],
    board: Board,
    *,
    seconds: float | None,
    console: Console,
    title: str,
    form: str = "auto",
    asset: str | None = None,
    out: TextIO | None = None,
    stream: bool = False,
    reconcile_every: float = 60.0,
    pushes_every: float | None = None,
) -> None:
    """Poll ``jobs`` into ``board`` for ``seconds`` (or until cancelled), showing it as it
    goes: live on a terminal, a plain line a second, or a JSON line per update (to ``out``,
    standard output by default); in a fleet (``board.fleet``), the accounts this member holds,
    each record naming the member. ``BrokenPipeError`` when the output's reader has gone."""
    fleet = board.fleet
    if form == "auto":
        form = "plain" if plain_output(console) else "table"
    output = out if out is not None else sys.stdout
    live_view: Any = None
    periods = arrival_periods(
        jobs,
        governor,
        every=board.every,
        stream=stream,
        reconcile_every=reconcile_every,
        pushes_every=pushes_every,
    )
    for client, (period, pushed) in periods.items():
        row = board.rows[client]  # stale after a few of these, no sooner
        row.every, row.pushes_every = period, pushed

    pipe_closed = False

    def closed(scope: anyio.CancelScope) -> None:
        nonlocal pipe_closed
        pipe_closed = True
        scope.cancel()

    async def consume(scope: anyio.CancelScope) -> None:
        polling = session.poll(
            jobs,
            every=board.every,
            asset=asset,
            stream=stream,
            reconcile_every=reconcile_every,
            fleet=fleet,
        )
        async with polling as updates:
            try:
                if form == "jsonl":
                    async for update in updates:
                        record = board.record(update, board.add(update))
                        output.write(json.dumps(record) + "\n")
                        output.flush()
                else:
                    async for update in updates:
                        board.add(update)
            except BrokenPipeError:  # the reader of a pipe has gone: stop, quietly
                quiet_stdout()
                closed(scope)

    async def holders() -> None:  # in a fleet: who watches what, as the leases move
        while True:
            board.refresh()
            await anyio.sleep(0.25)

    async def draw(scope: anyio.CancelScope) -> None:
        while True:
            if live_view is not None:
                view = render(board, governor, title, console)
                live_view.update(view, refresh=True)
                await anyio.sleep(0.25)
            else:
                await anyio.sleep(1.0)
                try:
                    console.print(plain_line(board, governor), highlight=False, soft_wrap=True)
                except BrokenPipeError:
                    closed(scope)
                    return

    if form == "table":
        from rich.live import Live

        live_view = Live(console=console, auto_refresh=False, transient=False)
        live_view.start()
    try:
        async with anyio.create_task_group() as group:
            group.start_soon(consume, group.cancel_scope)
            if fleet is not None:
                group.start_soon(holders)
            if form != "jsonl":
                group.start_soon(draw, group.cancel_scope)
            if seconds is not None:
                await anyio.sleep(seconds)
                group.cancel_scope.cancel()
    finally:
        if live_view is not None:
            live_view.update(render(board, governor, title, console), refresh=True)
            live_view.stop()
    if pipe_closed:
        raise BrokenPipeError("the output was closed")
