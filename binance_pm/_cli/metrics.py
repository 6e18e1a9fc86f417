"""``watch --metrics-port``: the board and the governor as Prometheus metrics.

Served from the event loop that polls (aiohttp's server, no thread), so each scrape reads the
board and the governor between two updates, never halfway through one. The text is made by
``prometheus_client`` from a collector that reads them at scrape time: nothing is kept twice.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from .._endpoints import ENDPOINTS
from .board import Board

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

    from .._governor import Governor

PREFIX = "binance_pm"


class BoardCollector:
    """Per account: uniMMR, equity, maintenance margin, status, age of data, whether the last
    call failed, failures so far; per budget: used, limit, 429s and 418s, seconds shut.

    Account metrics are labelled ``account`` (its name) and ``type``; budget metrics
    ``budget`` (as :meth:`Governor.snapshot` names it), and an account's UID budget
    (``budget="sapi_uid:ab…yz"``) ``account`` too, with that account's name, so that the two
    join (``on(account)``). An IP budget, every account's, has no ``account`` label, which
    Prometheus reads as ``account=""`` (it keeps no empty label).

    In a fleet, the account metrics are those of the accounts this member watches (so that the
    members' metrics add up without counting an account twice), and two more say who watches
    what: ``fleet_member`` (1 per member alive, labelled ``member``) and ``account_holder`` (1
    per account, labelled with the ``member`` that holds it, ``""`` for none).
    """

    def __init__(self, board: Board, governor: Governor) -> None:
        self.board = board
        self.governor = governor

    def describe(self) -> list[Metric]:
        return []  # made at scrape time; nothing to check at registration

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        board, now = self.board, time.time()
        who = ["account", "type"]

        def gauge(name: str, text: str, labels: list[str] = who) -> GaugeMetricFamily:
            return GaugeMetricFamily(f"{PREFIX}_{name}", text, labels=labels)

        uni_mmr = gauge("account_uni_mmr", "The account's uniMMR, as last answered.")
        equity = gauge("account_equity_usd", "The account's equity in USD, as last answered.")
        maint = gauge(
            "account_maint_margin_usd", "The account's maintenance margin in USD, as last answered."
        )
        wallet = gauge(
            "account_wallet_balance",
            "Balances endpoints: the USDT (else first) asset's wallet balance, as last answered.",
            [*who, "asset"],
        )
        status = gauge(
            "account_status", "1 for the account's status as last answered.", [*who, "status"]
        )
        age = gauge("account_data_age_seconds", "Seconds since the account's last good answer.")
        failing = gauge(
            "account_failing", "1 when the account's last call failed or it was dropped."
        )
        stale = gauge(
            "account_stale",
            "1 when its data is older than 3 periods of its own (poll, push or reconciliation).",
        )
        alert = gauge("account_alert", "1 when below the alert uniMMR or not NORMAL.")
        failures = CounterMetricFamily(
            f"{PREFIX}_account_failures", "Calls of the account that failed.", labels=who
        )
        for row in board.rows.values():
            if row.elsewhere is not None:
                continue  # another member's: its metrics are that member's to tell
            labels = [row.name, row.kind]
            if row.uni_mmr is not None:
                uni_mmr.add_metric(labels, float(row.uni_mmr))
            if row.equity is not None:
                if row.equity_label == "USD":
                    equity.add_metric(labels, float(row.equity))
                else:
                    asset = row.equity_label.split(" ")[0]
                    wallet.add_metric([*labels, asset], float(row.equity))
            if row.maint_margin is not None:
                maint.add_metric(labels, float(row.maint_margin))
            if row.status:
                status.add_metric([*labels, row.status], 1.0)
            if row.at is not None:
                age.add_metric(labels, max(now - row.at, 0.0))
            failing.add_metric(labels, float(row.failing))
            stale.add_metric(labels, float(row.stale(now)))
            alert.add_metric(labels, float(board.alerting(row)))
            failures.add_metric(labels, float(row.failures))
        yield from (uni_mmr, equity, maint, wallet, status, age, failing, stale, alert, failures)

        used = gauge("budget_used", "Weight counted in the budget's window now.", ["budget"])
        limit = gauge("budget_limit", "Weight the budget allows per window.", ["budget"])
        shut = gauge("budget_closed_seconds", "Seconds until a 429/418 reopens it.", ["budget"])
        refused = CounterMetricFamily(
            f"{PREFIX}_budget_refusals",
            "Requests of the budget the exchange refused, by status (429, 418).",
            labels=["budget", "status"],
        )
        owners = uid_owners(board)
        for name, state in self.governor.snapshot().items():
            # A UID budget names its account; an IP budget is every account's, and an empty
            # label is no label to Prometheus: it has none, and reads as account="".
            owner = owners.get(name)
            budget = {"budget": name, "account": owner} if owner else {"budget": name}
            used.add_sample(used.name, budget, float(state.used))
            limit.add_sample(limit.name, budget, float(state.limit))
            shut.add_sample(shut.name, budget, state.closed_for)
            total = f"{refused.name}_total"  # as CounterMetricFamily.add_metric names it
            refused.add_sample(
                total, {**budget, "status": "429"}, float(state.rejections - state.bans)
            )
            refused.add_sample(total, {**budget, "status": "418"}, float(state.bans))
        updates = CounterMetricFamily(f"{PREFIX}_updates", "Poll updates, good or failed.")
        updates.add_metric([], float(board.calls))
        yield from (used, limit, shut, refused, updates)
        fleet = board.fleet
        if fleet is not None:
            members = gauge("fleet_member", "1 per member of the fleet alive.", ["member"])
            for member in fleet.members:
                members.add_metric([member], 1.0)
            held = gauge(
                "account_holder",
                '1 for the member that watches the account (member="": none).',
                [*who, "member"],
            )
            for row in board.rows.values():
                holder = fleet.member if row.elsewhere is None else row.elsewhere
                held.add_metric([row.name, row.kind, holder], 1.0)
            yield from (members, held)


def uid_owners(board: Board) -> dict[str, str]:
    """The name of the account each UID budget is charged for, by the budget's name in the
    governor's snapshot (``"sapi_uid:ab…yz"``, its masked API key).

    When two accounts' keys mask alike, the governor names their budgets apart in the order
    they were first used (``"sapi_uid:ab…yz#2"``), which the board cannot know: those budgets
    are named for no account rather than for the wrong one.
    """
    keys: dict[str, dict[str, str]] = {}  # budget name -> API key -> account name
    for client, row in board.rows.items():
        endpoint = ENDPOINTS.get(row.endpoint)
        if endpoint is not None and endpoint.bucket == "uid":
            shown = endpoint.budget_for(client.api_key).shown
            keys.setdefault(shown, {}).setdefault(client.api_key, row.name)
    return {shown: names.popitem()[1] for shown, names in keys.items() if len(names) == 1}


@asynccontextmanager
async def serve_metrics(
    board: Board, governor: Governor, *, port: int, host: str = "127.0.0.1"
) -> AsyncIterator[str]:
    """Serve ``/metrics`` on ``host:port`` (0: a free port) while the block runs; yields the
    URL. ``OSError`` when the port cannot be had."""
    from aiohttp import web
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

    registry = CollectorRegistry(auto_describe=False)
    registry.register(BoardCollector(board, governor))

    async def metrics(request: web.Request) -> web.Response:
        answer = web.Response(body=generate_latest(registry))
        answer.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return answer

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound = runner.addresses[0]
        yield f"http://{host if ':' not in host else f'[{host}]'}:{bound[1]}/metrics"
    finally:
        await runner.cleanup()
