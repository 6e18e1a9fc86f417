"""How often each account's figures can arrive, under its budget, its reconciliation and its
stream: what ``watch`` and ``demo`` judge staleness by."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import TYPE_CHECKING

from .._endpoints import ENDPOINTS, STREAMS

if TYPE_CHECKING:
    from .._client import AsyncClient
    from .._governor import Governor


def arrival_periods(
    jobs: Mapping[AsyncClient, str],
    governor: Governor,
    *,
    every: float,
    stream: bool = False,
    reconcile_every: float = 60.0,
    pushes_every: float | None = None,
) -> dict[AsyncClient, tuple[float, float | None]]:
    """How often each account's figures can arrive: its REST period (``every``, or
    ``reconcile_every`` under ``stream``), no shorter than its IP budget allows for all the
    accounts that share it; and under ``stream`` its stream's push period, if it pushes
    unasked (PM Pro every 5 s, or ``pushes_every``; PM only on a change of risk level)."""
    rest = reconcile_every if stream else every
    load: Counter[str] = Counter()
    for client, name in jobs.items():
        endpoint = ENDPOINTS[name]
        budget = endpoint.budget_for(client.api_key)
        if budget.kind == "ip":
            load[budget.store_name] += endpoint.weight
    periods = {}
    for client, name in jobs.items():
        endpoint = ENDPOINTS[name]
        budget = endpoint.budget_for(client.api_key)
        period = rest
        if budget.kind == "ip":
            per_second = governor.limits[budget.limit] * (1 - governor.headroom) / governor.window
            period = max(rest, load[budget.store_name] / per_second)
        pushed = STREAMS[endpoint.stream].pushes_every if endpoint.stream is not None else None
        push = (pushes_every or pushed) if stream and pushed is not None else None
        periods[client] = (period, push)
    return periods
