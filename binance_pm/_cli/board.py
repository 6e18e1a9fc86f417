"""What ``binance-pm demo`` and ``binance-pm watch`` know of each account, kept up to date by
``Session.poll``: the latest figures, the last failure and its reason, and what is stale.

The views of it (the live table, plain lines, JSON lines, metrics) are in :mod:`.views` and
:mod:`.metrics`.
"""

from __future__ import annotations

import itertools
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from .._config import TIMEOUT
from .._endpoints import ENDPOINTS
from .._events import PMProAccountUpdate, RiskLevelChange, StreamEvent
from .._exceptions import APIError, BinancePMError
from .._models import AccountStatus, PMBalance
from .._updates import Update

if TYPE_CHECKING:
    from .._client import AsyncClient

#: Data older than this many of its periods (how often its figures can arrive) is stale.
STALE_PERIODS = 3
NORMAL = AccountStatus.NORMAL.value
#: The statuses in which the exchange is liquidating the account (or has, at a loss): watch's
#: and demo's exit status says so, and the example alerting rules page on them.
LIQUIDATION = frozenset(
    {
        AccountStatus.ACTIVE_LIQUIDATION.value,
        AccountStatus.FORCE_LIQUIDATION.value,
        AccountStatus.BANKRUPTED.value,
    }
)


def reason(error: BinancePMError) -> str:
    """Why a call failed, in a few words: the exchange's code and message, or what happened
    to the connection; never the class name alone."""
    if isinstance(error, APIError):
        if error.code is not None:
            return f"{error.code} {error.msg}"
        return f"HTTP {error.status} {error.msg}"
    text = str(error)
    # "GET /papi/v1/balance: cannot connect …  [account ab…yz]": the endpoint is in the row.
    _, sep, rest = text.partition(": ")
    text = rest if sep and text.startswith("GET ") else text
    return text.split(" [account ", 1)[0]


def decimal_text(value: Decimal | None) -> str | None:
    """A plain decimal string with the exchange's digits (``"0.00000000"``, never ``"0E-8"``)."""
    return None if value is None else format(value, "f")


def utc_text(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).isoformat(timespec="milliseconds")


@dataclass(slots=True)
class Row:
    """One account: its latest good figures and its latest failure.

    ``equity`` is the account's equity in USD for the account endpoints; for the balance
    endpoints (which tell no equity) it is the USDT wallet balance, and ``equity_label`` says
    so.
    """

    name: str
    endpoint: str
    kind: str = ""  # "PM", "PM Pro", "PM Pro SPAN" (the endpoint's product)
    uni_mmr: Decimal | None = None
    status: str = ""  # the account's status; "" for balances
    equity: Decimal | None = None
    equity_label: str = "USD"
    maint_margin: Decimal | None = None
    assets: int = 0  # balances: how many assets the account holds
    at: float | None = None  # when the latest good answer came (epoch seconds)
    error: BinancePMError | None = None  # the latest failure, until a good answer
    failed_at: float | None = None
    failures: int = 0
    ended: bool = False  # polling stopped for good (a refused key)
    pushed_at: float | None = None  # when a stream last pushed figures
    stream_error: BinancePMError | None = None  # the stream's last failure, until it is back
    every: float = 0.0  # how often its REST figures can arrive (0: the board's polling period)
    pushes_every: float | None = None  # how often its stream pushes figures, when it does
    elsewhere: str | None = None  # in a fleet: the member watching it, if not this one
    since: float = 0.0  # in a fleet: when this member took it (monotonic)

    def __post_init__(self) -> None:
        if not self.kind:
            endpoint = ENDPOINTS.get(self.endpoint)
            self.kind = endpoint.product if endpoint is not None else self.endpoint

    @property
    def failing(self) -> bool:
        return self.error is not None or self.ended

    @property
    def period(self) -> float:
        """How often its figures can arrive now: the push period while its stream is up and
        has pushed, else the REST period."""
        pushing = self.pushed_at is not None and self.stream_error is None
        if self.pushes_every is not None and pushing:
            return min(self.every, self.pushes_every)
        return self.every

    def stale(self, now: float) -> bool:
        """Its figures are older than ``STALE_PERIODS`` of its own periods, how often they can
        arrive (or it never had any, and failed)."""
        if self.at is None:
            return self.error is not None
        return now - self.at > STALE_PERIODS * self.period

    def state(self, now: float) -> str:
        """The status column: the account's status, or what is wrong with the data; in a
        fleet, who watches it when this member does not."""
        if self.elsewhere is not None:
            return f"held by {self.elsewhere}" if self.elsewhere else "held by nobody"
        if self.ended:
            return "DROPPED"
        if self.at is None:
            return "FAILING" if self.error is not None else ""
        if self.stale(now):
            return f"STALE, was {self.status}" if self.status else "STALE"
        return self.status

    def equity_text(self) -> str:
        if self.equity is None:
            return ""
        return f"{self.equity:,.2f} {self.equity_label}"

    def take_event(self, event: StreamEvent, at: float) -> None:
        """Keep the figures a stream pushed (a risk level change, a PM Pro account update)."""
        if isinstance(event, RiskLevelChange):
            self.status = event.level.value
        elif not isinstance(event, PMProAccountUpdate):
            return  # other events carry no account figures
        self.error = None
        self.at = at
        self.pushed_at = at
        self.uni_mmr = event.uni_mmr if event.uni_mmr is not None else self.uni_mmr
        if event.account_equity is not None:
            self.equity, self.equity_label = event.account_equity, "USD"
        if event.maint_margin is not None:
            self.maint_margin = event.maint_margin

    def take(self, result: Any, at: float) -> None:
        """Keep the figures of a good answer."""
        self.error = None
        self.at = at
        if isinstance(result, list):
            # Balances tell no equity: the stablecoin's wallet balance, labelled as such.
            chosen: PMBalance | None = next((b for b in result if b.asset == "USDT"), None)
            if chosen is None and result:
                chosen = result[0]
            self.assets = len(result)
            if chosen is not None:
                self.equity = chosen.total_wallet_balance
                self.equity_label = f"{chosen.asset} wallet"
            return
        self.uni_mmr = getattr(result, "uni_mmr", None)
        status = getattr(result, "account_status", None)
        if status is not None:
            self.status = status.value if isinstance(status, AccountStatus) else str(status)
        self.equity = getattr(result, "account_equity", None)
        self.equity_label = "USD"
        self.maint_margin = getattr(result, "account_maint_margin", None)


@dataclass
class Board:
    """The latest of every account, and what the run has seen."""

    rows: dict[AsyncClient, Row]
    alert_mmr: float
    every: float = 5.0
    calls: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    started: float = field(default_factory=time.monotonic)
    fleet: Any = None  # in a fleet, its Fleet: see refresh()
    _alert: Decimal = field(init=False)

    def __post_init__(self) -> None:
        self._alert = Decimal(str(self.alert_mmr))
        for row in self.rows.values():
            row.every = row.every or self.every

    def refresh(self) -> None:
        """In a fleet: which accounts this member watches now (the board judges those alone),
        and who watches the others."""
        fleet = self.fleet
        for client, row in self.rows.items() if fleet is not None else ():
            if fleet.mine(client):
                if row.elsewhere is not None:
                    row.elsewhere, row.since = None, time.monotonic()
            else:
                holder = fleet.owner(client)
                row.elsewhere = holder if holder and holder != fleet.member else ""

    def here(self) -> list[Row]:
        """The accounts this board judges: all of them, or in a fleet this member's."""
        return [row for row in self.rows.values() if row.elsewhere is None]

    def add(self, update: Update) -> Row:
        self.calls += 1
        row = self.rows[update.client]
        error = update.error
        if update.source == "stream":
            # A stream's failure is not the account's: it reconnects, and REST goes on.
            if error is not None:
                self.errors[f"stream {type(error).__name__}"] += 1
                row.stream_error = error
            elif update.event is not None:
                row.stream_error = None
                row.take_event(update.event, update.at)
            return row
        if error is None:
            row.take(update.result, update.at)
            return row
        self.errors[type(error).__name__] += 1
        row.error = error
        row.failed_at = update.at
        row.failures += 1
        row.ended = row.ended or update.final
        return row

    # -- what is wrong ------------------------------------------------------------------------

    def alerting(self, row: Row) -> bool:
        """Below the alert uniMMR, or a status other than NORMAL (as last known)."""
        risky = row.uni_mmr is not None and row.uni_mmr < self._alert
        return risky or row.status not in ("", NORMAL)

    def alerts(self) -> list[Row]:
        return sorted((r for r in self.here() if self.alerting(r)), key=_risk)

    def failing(self) -> list[Row]:
        return sorted((r for r in self.here() if r.failing), key=lambda r: r.name)

    def stale(self, now: float | None = None) -> list[Row]:
        now = time.time() if now is None else now
        return [r for r in self.here() if r.stale(now)]

    def silent(self, now: float | None = None) -> list[Row]:
        """Accounts that have had no answer at all, good or bad, though they have waited a few
        of their periods and a call's whole deadline (``now`` on the monotonic clock)."""
        now = (time.monotonic() if now is None else now) - TIMEOUT
        late = [r for r in self.here() if r.at is None and not r.failing]  # in a fleet: since
        return [r for r in late if now - max(self.started, r.since) > STALE_PERIODS * r.period]

    def waiting(self, now: float | None = None) -> list[Row]:
        """Accounts whose first answer is not yet due (a large desk's first turns are spread
        over a period)."""
        silent = {id(row) for row in self.silent(now)}
        return [r for r in self.here() if r.at is None and not r.failing and id(r) not in silent]

    def exit_status(self, now: float | None = None, *, liquidation: bool = True) -> int:
        """5 (with ``liquidation``: watch) when some account's last known status is a
        liquidation one (it wins: the desk must act); else 0 when every account's last word
        was a good answer (or its first is not yet due); 3 when some were failing, dropped or
        silent too long at the end; 4 when none had a good answer (nothing is watched)."""
        from ._common import ALL_FAILING, IN_LIQUIDATION, OK, SOME_FAILING

        if liquidation and self.liquidating():
            return IN_LIQUIDATION
        here = self.here()
        if self.fleet is not None and not here:  # a member with no share: well, unless cut off
            return ALL_FAILING if self.fleet.trouble is not None else OK
        bad = sum(1 for row in here if row.failing) + len(self.silent(now))
        if not bad:
            return OK
        good = any(row.at is not None and not row.failing for row in here)
        return SOME_FAILING if good else ALL_FAILING

    def liquidating(self) -> list[Row]:
        """Accounts whose last known status is a liquidation one."""
        return [r for r in self.here() if r.status in LIQUIDATION]

    def ordered(self) -> list[Row]:
        """Accounts in trouble first (a status other than NORMAL, below the alert uniMMR, then
        failing or stale), riskiest first; then the others taking turns by product, each
        product's lowest uniMMR first, so that a short screen shows every product."""
        now = time.time()
        trouble: list[Row] = []
        calm: dict[str, list[Row]] = {}
        for row in self.rows.values():
            if row.elsewhere is None and (self.alerting(row) or row.failing or row.stale(now)):
                trouble.append(row)
            else:
                calm.setdefault(row.kind, []).append(row)

        def severity(row: Row) -> tuple[int, tuple[Decimal, str]]:
            if row.status not in ("", NORMAL):
                return 0, _risk(row)
            if self.alerting(row):
                return 1, _risk(row)
            return 2, _risk(row)

        trouble.sort(key=severity)
        turns = [sorted(rows, key=_risk) for _, rows in sorted(calm.items())]
        mixed = (row for group in itertools.zip_longest(*turns) for row in group if row)
        return trouble + list(mixed)

    # -- words --------------------------------------------------------------------------------

    def errors_text(self) -> str:
        if not self.errors:
            return "0 (none)"
        kinds = ", ".join(f"{kind} {count}" for kind, count in sorted(self.errors.items()))
        return f"{sum(self.errors.values())} ({kinds})"

    def alert_text(self, row: Row) -> str:
        mmr = "" if row.uni_mmr is None else f" uniMMR {row.uni_mmr:.3f}"
        status = f" {row.status}" if row.status else ""
        return f"{row.name} ({row.kind}){mmr}{status}"

    def failure_text(self, row: Row) -> str:
        what = "dropped" if row.ended else "failing"
        why = reason(row.error) if row.error is not None else "no answer"
        hint = getattr(row.error, "hint", None)  # a key of another product, say
        return f"{row.name} ({row.kind}) {what}: {why}" + (f" ({hint})" if hint else "")

    def summary(self, most: int = 50, now: float | None = None) -> list[str]:
        """The run's end, account by account: who is below the threshold, who failed, why
        (``now`` on the monotonic clock: the same as :meth:`exit_status`'s)."""
        lines = [f"calls: {self.calls}", f"errors: {self.errors_text()}"]
        alerts, failing = self.alerts(), self.failing()
        lines.append(f"below uniMMR {self.alert_mmr:g} or not NORMAL: {len(alerts)}")
        lines += [f"  alert {self.alert_text(row)}" for row in alerts[:most]]
        if len(alerts) > most:
            lines.append(f"  … and {len(alerts) - most} more")
        silent, waiting = self.silent(now), self.waiting(now)
        fleet, here = self.fleet, self.here()
        if fleet is not None:
            members = ", ".join(fleet.members) or "none seen"
            lines.append(f"fleet {fleet.name}: member {fleet.member} of {members}")
            lines.append(f"watched here at the end: {len(here)} of {len(self.rows)} accounts")
        lines.append(f"failing: {len(failing) + len(silent)} of {len(here)} accounts")
        texts = [self.failure_text(row) for row in failing]
        texts += [f"{row.name} ({row.kind}) no answer yet" for row in silent]
        lines += [f"  {text}" for text in texts[:most]]
        if len(texts) > most:
            lines.append(f"  … and {len(texts) - most} more")
        if waiting:
            lines.append(f"not yet polled: {len(waiting)} (their first turn had not come)")
            lines += [f"  {row.name} ({row.kind}) no answer yet" for row in waiting[:most]]
            if len(waiting) > most:
                lines.append(f"  … and {len(waiting) - most} more")
        liquidating = self.liquidating()
        if liquidating:
            names = ", ".join(self.alert_text(row) for row in liquidating[:most])
            lines.append(f"in liquidation: {len(liquidating)}: {names}")
        return lines

    def record(self, update: Update, row: Row) -> dict[str, Any]:
        """One update as JSON: figures as decimal strings, times in UTC, in a fleet the member."""
        error = update.error
        record: dict[str, Any] = {
            **({"member": self.fleet.member} if self.fleet is not None else {}),
            "account": row.name,
            "type": row.kind,
            "endpoint": update.endpoint,
            "source": update.source,
            "time": utc_text(update.at),
            "ok": error is None,
        }
        if update.event is not None:
            record["event"] = update.event.event
        if error is None:
            result = update.result
            if update.source == "rest" and isinstance(result, list):
                record["balances"] = {b.asset: decimal_text(b.total_wallet_balance) for b in result}
            else:  # an account's figures, answered or pushed
                record["status"] = row.status or None
                record["uni_mmr"] = decimal_text(row.uni_mmr)
                record["equity"] = decimal_text(row.equity)
                record["maint_margin"] = decimal_text(row.maint_margin)
            record["alert"] = self.alerting(row)
            record["error"] = None
        else:
            record["error"] = {
                "kind": type(error).__name__,
                "code": getattr(error, "code", None),
                "message": reason(error),
                "hint": getattr(error, "hint", None),
            }
            record["final"] = update.final
            record["data_age"] = None if row.at is None else round(update.at - row.at, 3)
        return record


def _risk(row: Row) -> tuple[Decimal, str]:
    return (row.uni_mmr if row.uni_mmr is not None else Decimal("Infinity"), row.name)
