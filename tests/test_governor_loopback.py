"""The governor against the simulated exchange over loopback: 200 accounts polling flat out
through one Session, with a sub-second window, in both window modes.

The exchange runs as ``binance-pm serve`` in its own process, so the client has a core of its
own: with sub-second windows, every millisecond a request waits in a busy event loop is budget
held and not used (the governor holds each request's weight one window past its answer).
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from typing import Any

import anyio
import pytest

from binance_pm import BinancePMError, Governor, Session
from binance_pm.testing._stats import most_in_any_window

from .served import credentials, serve, stats

WINDOW = 0.8
LIMITS = {"papi_ip": 1000, "sapi_ip": 300, "sapi_uid": 10}
SECONDS = 10.0
ENDPOINT = {"PM_2": "pm_balance", "PM_1": "pm_pro_account", "PM_3": "pm_pro_span_account"}


@dataclass
class Run:
    exchange: dict[str, Any]
    errors: list[str]
    started_ms: float
    stopped_ms: float
    uid_accounts: int

    def use(self, budget: str) -> float:
        """The weight the exchange counted while every account asked, per window, over the
        limit: ``1.0`` is the whole budget in every window of the run.

        A rate, not a count per fixed window: under a sliding limit a single fixed window may
        hold less than the limit while every sliding window is full (after the opening burst,
        say), so counting fixed windows measures where the run began within them.
        """
        since = self.started_ms + WINDOW * 1000  # after the opening burst's window
        counted = sum(
            weight
            for at, name, weight in self.exchange["arrivals"]
            if since <= at < self.stopped_ms
            and (name.startswith("uid:") if budget == "sapi_uid" else name == budget)
        )
        limit = LIMITS[budget] * (self.uid_accounts if budget == "sapi_uid" else 1)
        windows = (self.stopped_ms - since) / (WINDOW * 1000)
        return float(counted / (limit * windows))

    def most_in_any_window(self) -> dict[str, int]:
        """Per budget (each account's UID budget apart), the most weight that arrived at the
        exchange within any interval of one window."""
        return most_in_any_window(self.exchange["arrivals"], WINDOW)

    def series(self, budget: str) -> list[int]:
        """Weight per fixed window of the exchange's clock, for failure messages."""
        by_window = self.exchange["weight_by_window"]
        keys = [k for k in by_window if k.startswith("uid:")] if budget == "sapi_uid" else [budget]
        windows = sorted({int(w) for k in keys for w in by_window[k]})
        return [sum(by_window[k].get(str(i), 0) for k in keys) for i in windows]

    @property
    def refused(self) -> int:
        by_status = self.exchange["by_status"]
        return int(by_status.get("429", 0)) + int(by_status.get("418", 0))


async def poll_flat_out(base_url: str, accounts: list[dict[str, str]], seconds: float) -> Run:
    governor = Governor(
        window=WINDOW,
        papi_ip=LIMITS["papi_ip"],
        sapi_ip=LIMITS["sapi_ip"],
        sapi_uid=LIMITS["sapi_uid"],
    )
    errors: list[str] = []
    async with Session(base_url=base_url, governor=governor, timeout=30) as session:
        calls = [
            getattr(session.client(a["api_key"], **credentials(a)), ENDPOINT[a["account_type"]])
            for a in accounts
        ]
        await calls[0]()  # the clock is measured once, before the start is timed
        await anyio.sleep(WINDOW)  # and that call's weight has left the window
        started = time.time()
        stop = time.monotonic() + seconds

        async def poll(call: Any, phase: float) -> None:
            # Accounts start out of step, as real pollers do.
            await anyio.sleep(phase)
            while time.monotonic() < stop:
                try:
                    await call()
                except BinancePMError as exc:
                    errors.append(type(exc).__name__)

        async with anyio.create_task_group() as group:
            phases = random.Random(7)
            for call in calls:
                group.start_soon(poll, call, phases.uniform(0, 0.1))
    # A whole number of windows after the opening burst's, ending by the stop (calls already
    # waiting then go out up to a window later, when demand has ended): no more than the limit
    # times that number can arrive in it, so 1.0 is the whole budget.
    windows = int((seconds - WINDOW) // WINDOW)
    return Run(
        exchange=stats(base_url, arrivals=True),
        errors=errors,
        started_ms=started * 1000,
        stopped_ms=(started + WINDOW + windows * WINDOW) * 1000,
        uid_accounts=sum(1 for a in accounts if a["account_type"] == "PM_1"),
    )


def limit_args(mode: str, *extra: str) -> list[str]:
    return [
        "--accounts",
        "200",
        "--window",
        str(WINDOW),
        "--window-mode",
        mode,
        "--seed",
        "5",
        "--papi-ip",
        str(LIMITS["papi_ip"]),
        "--sapi-ip",
        str(LIMITS["sapi_ip"]),
        "--sapi-uid",
        str(LIMITS["sapi_uid"]),
        *extra,
    ]


@pytest.mark.parametrize("mode", ["fixed", "sliding"])
async def test_200_accounts_flat_out_get_no_429_and_use_the_budget(mode: str) -> None:
    with serve(*limit_args(mode)) as (_, base_url, accounts):
        run = await poll_flat_out(base_url, accounts, SECONDS)

    assert run.refused == 0
    assert run.errors == []
    use = {budget: run.use(budget) for budget in ("papi_ip", "sapi_ip", "sapi_uid")}
    detail = {budget: run.series(budget) for budget in use}
    assert all(value >= 0.97 for value in use.values()), (use, detail)
    for budget, most in run.most_in_any_window().items():
        limit = LIMITS["sapi_uid"] if budget.startswith("uid:") else LIMITS.get(budget, 6000)
        assert most <= limit, (budget, most)


@pytest.mark.parametrize("mode", ["fixed", "sliding"])
async def test_weight_spent_by_another_process_costs_no_ban_and_the_governor_recovers(
    mode: str,
) -> None:
    extra = ("--external", "papi=0.3", "--external", "sapi=0.3")
    with serve(*limit_args(mode), *extra) as (_, base_url, accounts):
        run = await poll_flat_out(base_url, accounts, SECONDS)

    assert run.exchange["by_status"].get("418", 0) == 0
    assert run.exchange["bans"] == 0
    # It went on by itself after each 429 (Retry-After), and no call gave up.
    assert run.errors == []
    # At most one 429 in any of the exchange's windows: the request that went to ask.
    refused = run.exchange["refused_by_window"]
    assert all(count <= 1 for by_window in refused.values() for count in by_window.values()), (
        refused
    )
    use = {budget: run.use(budget) for budget in ("papi_ip", "sapi_ip", "sapi_uid")}
    assert use["sapi_uid"] >= 0.9, use  # UID budgets have no outside weight: barely touched
    assert use["papi_ip"] >= 0.5, use  # what the other process leaves: 70 % on average
    assert use["sapi_ip"] >= 0.5, use
