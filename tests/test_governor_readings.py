"""The governor against the exchange in each reading of what its documents leave unsaid, the
exchange in its own process (``binance-pm serve``) and every account calling flat out:

- UID-weighted calls (``pm_pro_account``) that cost sapi IP weight too (``--uid-costs-ip``),
  and the documented reading where they cost none;
- sapi IP limits per endpoint (``--sapi-scope endpoint``, the PM Pro page's "independent 12000
  per minute") and for the family together (``--sapi-scope family``).

Safety is asserted strictly (no 418, at most one 429 in any window, none where the governor
knows the reading); the share of a budget used loosely enough for a busy machine, since it
depends on how fast answers come back.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import anyio
import pytest

from binance_pm import BinancePMError, Governor, Limits, Session

from .served import credentials, serve, stats

Call = Callable[[], Awaitable[Any]]


async def flat_out(calls: Sequence[Call], seconds: float) -> tuple[list[str], float, float]:
    """Every call again and again for ``seconds``; the errors, and the start and end in ms."""
    errors: list[str] = []
    await calls[0]()  # the clock is measured before the start
    started = time.time()
    stop = anyio.current_time() + seconds

    async def poll(call: Call) -> None:
        while anyio.current_time() < stop:
            try:
                await call()
            except BinancePMError as exc:
                errors.append(type(exc).__name__)

    async with anyio.create_task_group() as group:
        for call in calls:
            group.start_soon(poll, call)
    return errors, started * 1000, (started + seconds) * 1000


def use(
    exchange: dict[str, Any], budget: str, limit: int, window: float, span: tuple[float, float]
) -> float:
    """What the exchange counted on ``budget`` per window after the first, over ``limit``."""
    since, until = span[0] + window * 1000, span[1]
    counted: int = sum(
        w for at, name, w in exchange["arrivals"] if name == budget and since <= at < until
    )
    return counted / (limit * (until - since) / (window * 1000))


def most_429s_in_a_window(exchange: dict[str, Any]) -> int:
    refused = exchange["refused_by_window"]
    return max((n for by_window in refused.values() for n in by_window.values()), default=0)


def of_type(accounts: list[dict[str, str]], account_type: str) -> list[dict[str, str]]:
    return [a for a in accounts if a["account_type"] == account_type]


# -- UID calls that cost IP weight --------------------------------------------------------------

UID_WINDOW = 2.0
UID_LIMITS = {"sapi_ip": 2000, "sapi_uid": 200}  # 30 accounts' UID calls want 3x the IP limit


@pytest.mark.parametrize("costs", [True, False], ids=["uid-costs-ip", "documented"])
async def test_uid_calls_that_cost_ip_weight_are_learned_before_a_ban(costs: bool) -> None:
    args = ["--accounts", "90", "--seed", "5", "--window", str(UID_WINDOW)]
    args += ["--sapi-ip", str(UID_LIMITS["sapi_ip"]), "--sapi-uid", str(UID_LIMITS["sapi_uid"])]
    if costs:
        args += ["--uid-costs-ip"]
    with serve(*args) as (_, base_url, accounts):
        governor = Governor(window=UID_WINDOW, limits=Limits(**UID_LIMITS))
        async with Session(base_url=base_url, governor=governor, timeout=30) as session:
            calls = [
                session.client(a["api_key"], **credentials(a)).pm_pro_account
                for a in of_type(accounts, "PM_1")
            ]
            assert len(calls) == 30
            errors, *span = await flat_out(calls, 4 * UID_WINDOW)
        exchange = stats(base_url, arrivals=True)
    by_status = exchange["by_status"]
    assert errors == []
    assert by_status.get("418", 0) == 0
    assert exchange["bans"] == 0
    if costs:
        assert governor.sapi_uid_ip_weight == 5
        assert most_429s_in_a_window(exchange) <= 1, exchange["refused_by_window"]
        share = use(exchange, "sapi_ip", UID_LIMITS["sapi_ip"], UID_WINDOW, (span[0], span[1]))
        assert share >= 0.9, share  # the IP budget binds, and is used
    else:
        assert governor.sapi_uid_ip_weight == 0  # nothing learned: no cost
        assert by_status.get("429", 0) == 0


# -- per-endpoint sapi IP limits ----------------------------------------------------------------

SAPI_WINDOW = 1.0
SAPI_IP = 1000


@pytest.mark.parametrize("scope", ["endpoint", "family"])
async def test_sapi_ip_limits_per_endpoint_or_together_are_used_without_a_429(scope: str) -> None:
    args = ["--accounts", "90", "--seed", "5", "--window", str(SAPI_WINDOW)]
    args += ["--sapi-ip", str(SAPI_IP), "--sapi-scope", scope]
    with serve(*args) as (_, base_url, accounts):
        governor = Governor(window=SAPI_WINDOW, limits=Limits(sapi_ip=SAPI_IP), sapi_scope=scope)
        async with Session(base_url=base_url, governor=governor, timeout=30) as session:
            pro = of_type(accounts, "PM_3")
            calls = [
                session.client(a["api_key"], **credentials(a)).pm_pro_balance for a in pro[:15]
            ] + [
                session.client(a["api_key"], **credentials(a)).pm_pro_span_account for a in pro[15:]
            ]
            errors, *span = await flat_out(calls, 5 * SAPI_WINDOW)
        exchange = stats(base_url, arrivals=True)
    assert errors == []
    assert exchange["by_status"].get("429", 0) == 0
    assert exchange["by_status"].get("418", 0) == 0
    window = (span[0], span[1])
    if scope == "endpoint":
        shares = [
            use(exchange, f"sapi_ip:{name}", SAPI_IP, SAPI_WINDOW, window)
            for name in ("pm_pro_balance", "pm_pro_span_account")
        ]
        assert min(shares) >= 0.9, shares
    else:
        share = use(exchange, "sapi_ip", SAPI_IP, SAPI_WINDOW, window)
        assert share >= 0.95, share
