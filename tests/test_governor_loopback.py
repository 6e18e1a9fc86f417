"""The governor with 200 accounts calling flat out through one Session, against limits scaled
down so that every budget binds (a sub-second window), in both window modes. Twice over:

- in virtual time, the simulated exchange in process with a few milliseconds of latency each
  way (``conftest.virtual_session``): nothing over a limit, and the share of each budget used,
  exactly, whatever else the machine is doing;
- over loopback, against ``binance-pm serve`` in its own process: the real HTTP stack and a
  server with a core of its own. The safety invariants hold as strictly. How much of the budget
  is used depends on how fast a busy machine turns answers round (the governor holds each
  request's weight one window past its answer), so here it has a loose bound; the figure on a
  quiet machine is ``benchmarks/budget.py``'s.
"""

from __future__ import annotations

import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import anyio
import pytest

from binance_pm import BinancePMError, Governor, Limits, Session
from binance_pm._endpoints import STATE_ENDPOINT
from binance_pm._limits import PUBLISHED_LIMITS
from binance_pm.testing import SimulatedExchange
from binance_pm.testing._stats import most_in_any_window

from .conftest import run_virtual, virtual_session, virtual_wall
from .served import credentials, serve, stats

WINDOW = 0.8
LIMITS = {"papi_ip": 1000, "sapi_ip": 300, "sapi_uid": 10}
VIRTUAL_SECONDS = 8.0
LOOPBACK_SECONDS = 4.0
LIMIT_OF = {"api_ip": PUBLISHED_LIMITS.api_ip, **LIMITS}  # the time endpoint's api_ip too
EXTERNAL = {"papi": 0.3, "sapi": 0.3}  # "another process on the same IP" spends 30 % on average
ENDPOINT = STATE_ENDPOINT

Call = Callable[[], Awaitable[Any]]


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

    def uses(self) -> dict[str, float]:
        return {budget: self.use(budget) for budget in LIMITS}

    def series(self) -> dict[str, list[int]]:
        """Per budget, the weight in each fixed window of the exchange's clock (for failure
        messages)."""
        by_window = self.exchange["weight_by_window"]
        series = {}
        for budget in LIMITS:
            keys = (
                [k for k in by_window if k.startswith("uid:")] if budget == "sapi_uid" else [budget]
            )
            windows = sorted({int(w) for k in keys for w in by_window.get(k, {})})
            series[budget] = [sum(by_window[k].get(str(i), 0) for k in keys) for i in windows]
        return series

    def over_the_limit(self) -> dict[str, int]:
        """The budgets (each account's UID budget apart) that got more than their limit
        within some interval of one window, and the most they got."""
        most = most_in_any_window(self.exchange["arrivals"], WINDOW)
        return {
            budget: weight
            for budget, weight in most.items()
            if weight > LIMIT_OF["sapi_uid" if budget.startswith("uid:") else budget]
        }

    @property
    def refused(self) -> int:
        by_status = self.exchange["by_status"]
        return int(by_status.get("429", 0)) + int(by_status.get("418", 0))

    def most_429s_in_a_window(self) -> int:
        refused = self.exchange["refused_by_window"]
        return max((n for by_window in refused.values() for n in by_window.values()), default=0)


async def poll_flat_out(
    calls: list[Call], seconds: float, wall: Callable[[], float], *, quiet_first: bool
) -> tuple[list[str], float, float]:
    """Every call again and again for ``seconds``; returns the errors, and the start and end of
    the whole windows measured, in ``wall`` milliseconds (the exchange's clock).

    ``quiet_first``: a window with nothing sent between the first call and the rest, so that
    they start against a budget the governor has had answers for but whose counts have
    expired.
    """
    errors: list[str] = []
    await calls[0]()  # the clock is measured once, before the start is timed
    if quiet_first:
        await anyio.sleep(WINDOW)
    started = wall()
    stop = anyio.current_time() + seconds

    async def poll(call: Call, phase: float) -> None:
        # Accounts start out of step, as real pollers do.
        await anyio.sleep(phase)
        while anyio.current_time() < stop:
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
    return errors, started * 1000, (started + WINDOW + windows * WINDOW) * 1000


def in_virtual_time(
    mode: str, external: Mapping[str, float] | None = None, *, latency: float = 0.005
) -> Run:
    async def main() -> Run:
        ex = SimulatedExchange(
            accounts=200,
            window=WINDOW,
            window_mode=mode,  # type: ignore[arg-type]
            seed=5,
            external=external,
            clock=virtual_wall,
            limits=Limits(**LIMITS),
        )
        async with virtual_session(ex, latency=latency, timeout=30) as session:
            calls = [
                getattr(
                    session.client(a.api_key, **a.credentials()), ENDPOINT[a.account_type.value]
                )
                for a in ex.accounts
            ]
            errors, started, stopped = await poll_flat_out(
                calls, VIRTUAL_SECONDS, virtual_wall, quiet_first=True
            )
        uid_accounts = sum(1 for a in ex.accounts if a.account_type.value == "PM_1")
        return Run(ex.stats.to_dict(arrivals=True), errors, started, stopped, uid_accounts)

    return run_virtual(main)


async def over_loopback(base_url: str, accounts: list[dict[str, str]]) -> Run:
    governor = Governor(window=WINDOW, limits=Limits(**LIMITS))
    async with Session(base_url=base_url, governor=governor, timeout=30) as session:
        calls = [
            getattr(session.client(a["api_key"], **credentials(a)), ENDPOINT[a["account_type"]])
            for a in accounts
        ]
        # No quiet window first: after one, the governor no longer counts the other process's
        # weight, and on a busy machine the whole opening burst can be out before the first
        # answer tells it again (round trips of 100 ms do it: several 429s in that window).
        errors, started, stopped = await poll_flat_out(
            calls, LOOPBACK_SECONDS, time.time, quiet_first=False
        )
    uid_accounts = sum(1 for a in accounts if a["account_type"] == "PM_1")
    return Run(stats(base_url, arrivals=True), errors, started, stopped, uid_accounts)


def serve_args(mode: str, external: Mapping[str, float] | None = None) -> list[str]:
    args = ["--accounts", "200", "--window", str(WINDOW), "--window-mode", mode, "--seed", "5"]
    for name, limit in LIMITS.items():
        args += [f"--{name.replace('_', '-')}", str(limit)]
    for family, share in (external or {}).items():
        args += ["--external", f"{family}={share}"]
    return args


# -- in virtual time ---------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["fixed", "sliding"])
def test_200_accounts_flat_out_get_no_429_and_use_the_budget(mode: str) -> None:
    run = in_virtual_time(mode)

    assert run.refused == 0
    assert run.errors == []
    assert run.over_the_limit() == {}
    # Up to 10 ms a round trip, answers overtaking one another: the governor then counts what
    # may have arrived after an answer as arrived, which costs a few percent (97-100 % used).
    use = run.uses()
    assert all(share >= 0.95 for share in use.values()), (use, run.series())


@pytest.mark.parametrize("mode", ["fixed", "sliding"])
def test_weight_spent_by_another_process_costs_no_ban_and_the_governor_recovers(
    mode: str,
) -> None:
    run = in_virtual_time(mode, EXTERNAL)

    assert run.exchange["by_status"].get("418", 0) == 0
    assert run.exchange["bans"] == 0
    # It went on by itself after each 429 (Retry-After), and no call gave up.
    assert run.errors == []
    # At most one 429 in any of the exchange's windows: the request that went to ask.
    assert run.most_429s_in_a_window() <= 1, run.exchange["refused_by_window"]
    use = run.uses()
    assert use["sapi_uid"] >= 0.9, use  # UID budgets have no outside weight: barely touched
    assert use["papi_ip"] >= 0.5, use  # what the other process leaves: 70 % on average
    assert use["sapi_ip"] >= 0.5, use


# -- over loopback -----------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["fixed", "sliding"])
async def test_over_loopback_200_accounts_flat_out_get_no_429_and_never_pass_a_limit(
    mode: str,
) -> None:
    with serve(*serve_args(mode)) as (_, base_url, accounts):
        run = await over_loopback(base_url, accounts)

    assert run.refused == 0
    assert run.errors == []
    assert run.over_the_limit() == {}
    # However slow the machine: a governor that held weight two windows, or lost count of its
    # own, would use half or less.
    use = run.uses()
    assert all(share >= 0.5 for share in use.values()), (use, run.series())


@pytest.mark.parametrize("mode", ["fixed", "sliding"])
async def test_over_loopback_weight_spent_by_another_process_costs_no_ban(mode: str) -> None:
    with serve(*serve_args(mode, EXTERNAL)) as (_, base_url, accounts):
        run = await over_loopback(base_url, accounts)

    assert run.exchange["by_status"].get("418", 0) == 0
    assert run.exchange["bans"] == 0
    assert run.errors == []
    assert run.most_429s_in_a_window() <= 1, run.exchange["refused_by_window"]
    use = run.uses()
    assert use["sapi_uid"] >= 0.5, use
    assert use["papi_ip"] >= 0.3, use
    assert use["sapi_ip"] >= 0.3, use
