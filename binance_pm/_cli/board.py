"""What ``binance-pm demo`` and ``binance-pm watch`` show: a board of accounts kept up to date by
``Session.poll``, drawn live with rich on a terminal, or as plain periodic lines when piped.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import anyio

from .._governor import Governor
from .._models import AccountStatus
from .._poller import Update

if TYPE_CHECKING:
    from rich.console import Console, RenderableType

    from .._client import AsyncClient
    from .._session import Session


@dataclass
class Row:
    """One account's line on the board."""

    name: str
    kind: str  # "PM", "PM Pro", "PM Pro SPAN"…
    uni_mmr: Decimal | None = None
    status: str = ""
    equity: str = ""
    at: float | None = None  # when its data came (epoch seconds)
    error: str = ""  # the last error's kind, while it lasts
    ended: bool = False


@dataclass
class Board:
    """The latest of every account, and what the run has seen."""

    rows: dict[AsyncClient, Row]
    alert_mmr: float
    calls: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    started: float = field(default_factory=time.monotonic)

    def add(self, update: Update) -> None:
        self.calls += 1
        row = self.rows[update.client]
        if update.error is not None:
            kind = type(update.error).__name__
            self.errors[kind] += 1
            row.error = kind
            row.ended = row.ended or update.final
            return
        row.error = ""
        row.at = update.at
        result: Any = update.result  # which model it is, is told by its fields
        uni_mmr = getattr(result, "uni_mmr", None)
        if uni_mmr is not None or hasattr(result, "account_status"):
            row.uni_mmr = uni_mmr
            status = result.account_status
            row.status = status.value if isinstance(status, AccountStatus) else str(status)
            row.equity = _amount(result.account_equity, "USD")
        elif isinstance(result, list) and result:
            # Balances: show the stablecoin's wallet balance, or the first asset's.
            chosen = next((b for b in result if b.asset == "USDT"), result[0])
            row.equity = _amount(chosen.total_wallet_balance, chosen.asset)

    def alerts(self) -> int:
        return sum(1 for row in self.rows.values() if self._alerting(row))

    def _alerting(self, row: Row) -> bool:
        risky = row.uni_mmr is not None and row.uni_mmr < Decimal(str(self.alert_mmr))
        return risky or row.status not in ("", AccountStatus.NORMAL.value)

    def ordered(self) -> list[Row]:
        """Accounts in trouble first, then by uniMMR, lowest first."""

        def key(row: Row) -> tuple[int, Decimal, str]:
            troubled = 0 if row.status not in ("", AccountStatus.NORMAL.value) else 1
            return (
                troubled,
                row.uni_mmr if row.uni_mmr is not None else Decimal("Infinity"),
                row.name,
            )

        return sorted(self.rows.values(), key=key)

    def errors_text(self) -> str:
        if not self.errors:
            return "0 (none)"
        kinds = ", ".join(f"{kind} {count}" for kind, count in sorted(self.errors.items()))
        return f"{sum(self.errors.values())} ({kinds})"


def _amount(value: Decimal | None, unit: str) -> str:
    return "" if value is None else f"{value:,.2f} {unit}"


def budgets(governor: Governor) -> list[tuple[str, int, int, int]]:
    """(name, used, limit, 429s) per budget in use: IP budgets one by one, UID ones together."""
    rows = []
    uid_used = uid_limit = uid_refused = uid_count = 0
    for name, state in governor.snapshot().items():
        if name.startswith("sapi_uid:"):
            uid_used += state.used
            uid_limit += state.limit
            uid_refused += state.rejections
            uid_count += 1
        elif state.used or state.rejections or name in ("papi_ip", "sapi_ip"):
            rows.append((name, state.used, state.limit, state.rejections))
    if uid_count:
        rows.append((f"sapi_uid ×{uid_count}", uid_used, uid_limit, uid_refused))
    return rows


def plain_line(board: Board, governor: Governor) -> str:
    """One line of the run so far, for logs and pipes."""
    elapsed = time.monotonic() - board.started
    rows = budgets(governor)  # one snapshot for the whole line
    refused = sum(r for *_, r in rows)
    shares = " ".join(
        f"{name.replace(' ', '')} {used / limit:.0%}" for name, used, limit, _ in rows
    )
    return (
        f"t={elapsed:.1f}s calls={board.calls} errors={sum(board.errors.values())} "
        f"429s={refused} alerts={board.alerts()} | {shares}"
    )


def render(board: Board, governor: Governor, title: str, height: int) -> RenderableType:
    """The live view: budget bars, then the accounts that fit, riskiest first."""
    from rich.console import Group
    from rich.progress_bar import ProgressBar
    from rich.table import Table
    from rich.text import Text

    now = time.time()
    elapsed = time.monotonic() - board.started
    bars = Table.grid(padding=(0, 2))
    for name, used, limit, refused in budgets(governor):
        bar = ProgressBar(total=limit, completed=min(used, limit), width=30)
        share = f"{used:>7,}/{limit:<7,} {used / limit:>4.0%}"
        bars.add_row(Text(name, style="bold"), bar, Text(share), Text(f"429s {refused}"))
    accounts = Table(expand=False, header_style="bold", pad_edge=False)
    for column, justify in (
        ("account", "left"),
        ("type", "left"),
        ("uniMMR", "right"),
        ("status", "left"),
        ("equity", "right"),
        ("age", "right"),
    ):
        accounts.add_column(column, justify=justify)  # type: ignore[arg-type]
    shown = board.ordered()[: max(height - 12, 3)]
    for row in shown:
        age = "" if row.at is None else f"{max(now - row.at, 0.0):.1f}s"
        status = row.status or row.error
        if row.ended:
            status = f"ended: {row.error}"
        style = "bold red" if board._alerting(row) else ("yellow" if row.error else "")
        accounts.add_row(
            row.name,
            row.kind,
            "" if row.uni_mmr is None else f"{row.uni_mmr:.2f}",
            status,
            row.equity,
            age,
            style=style,
        )
    hidden = len(board.rows) - len(shown)
    footer = Text(
        f"calls {board.calls}   errors {board.errors_text()}   below uniMMR "
        f"{board.alert_mmr:g}: {board.alerts()}"
        + (f"   ({hidden} more accounts not shown)" if hidden > 0 else "")
    )
    header = Text(f"{title}   {elapsed:.1f}s", style="bold")
    return Group(header, bars, accounts, footer)


async def run_board(
    session: Session,
    governor: Governor,
    jobs: Mapping[AsyncClient, str],
    board: Board,
    *,
    every: float,
    seconds: float | None,
    console: Console,
    title: str,
    asset: str | None = None,
) -> None:
    """Poll ``jobs`` into ``board`` for ``seconds`` (or until cancelled), drawing as it goes:
    live on a terminal, a plain line a second otherwise."""
    from contextlib import aclosing

    live_view: Any = None

    async def consume() -> None:
        async with aclosing(session.poll(jobs, every=every, asset=asset)) as updates:
            async for update in updates:
                board.add(update)

    async def draw() -> None:
        while True:
            if live_view is not None:
                view = render(board, governor, title, console.size.height)
                live_view.update(view, refresh=True)
                await anyio.sleep(0.25)
            else:
                await anyio.sleep(1.0)
                console.print(plain_line(board, governor), highlight=False, soft_wrap=True)

    if console.is_terminal:
        from rich.live import Live

        live_view = Live(console=console, auto_refresh=False, transient=False)
        live_view.start()
    try:
        async with anyio.create_task_group() as group:
            group.start_soon(consume)
            group.start_soon(draw)
            if seconds is not None:
                await anyio.sleep(seconds)
                group.cancel_scope.cancel()
    finally:
        if live_view is not None:
            live_view.update(render(board, governor, title, console.size.height), refresh=True)
            live_view.stop()
