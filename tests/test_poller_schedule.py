"""The poller's schedule, in virtual time with stand-in clients that have only a client's public
attributes: first calls spread out, no job going more often than ``every``, and ranks by priority
kept in step without sorting again. And the types a strict checker sees."""

from __future__ import annotations

import itertools
import math
import random
from collections import defaultdict
from collections.abc import Callable
from decimal import Decimal
from typing import Any, cast

import anyio
import pytest

from binance_pm import AsyncClient, Governor, Session, Update
from binance_pm._fairness import Ranks
from binance_pm._jobs import plan_jobs
from binance_pm._poller import START_RATE, TICK, Polling
from binance_pm._running import Owner
from binance_pm._updates import default_priority

from .conftest import run_virtual


class PublicOnly:
    """What ``Session.poll`` may use of a client: its public attributes, nothing else."""

    __slots__ = ("api_key", "calls", "latency", "name")

    def __init__(self, number: int, latency: float) -> None:
        self.api_key = f"key{number:06d}"
        self.name = f"acct-{number}"
        self.latency = latency
        self.calls: list[float] = []

    @property
    def masked_key(self) -> str:
        return self.api_key[:3] + "…"

    async def call(
        self, endpoint: str, *, asset: str | None = None, on_grant: Callable[[], None]
    ) -> None:
        self.calls.append(anyio.current_time())
        on_grant()
        await anyio.sleep(self.latency)


async def run_poll(count: int, every: float, seconds: float, latency: float = 0.02) -> list[Any]:
    clients = [PublicOnly(i, latency) for i in range(count)]
    jobs = plan_jobs(cast(list[AsyncClient], clients), "pm_pro_account", None)
    with anyio.move_on_after(seconds):
        async with Polling(
            Owner(), lambda: None, jobs, every=every, priority=default_priority
        ) as u:
            async for _ in u:
                pass
    return clients


def test_the_first_calls_of_many_accounts_are_spread_not_all_at_once() -> None:
    count = 3000
    clients = run_virtual(lambda: run_poll(count, every=10.0, seconds=5.0))

    firsts = sorted(c.calls[0] for c in clients)
    assert firsts[-1] - firsts[0] == pytest.approx(count / START_RATE, abs=2 * TICK)
    per_tick: defaultdict[int, int] = defaultdict(int)
    for at in firsts:
        per_tick[math.floor((at - firsts[0]) / (10 * TICK))] += 1
    assert max(per_tick.values()) <= 10 * TICK * START_RATE * 1.2


def test_a_few_accounts_all_start_at_once() -> None:
    clients = run_virtual(lambda: run_poll(5, every=10.0, seconds=1.0))

    firsts = [c.calls[0] for c in clients]
    assert max(firsts) - min(firsts) <= TICK


def test_no_account_goes_more_often_than_every_and_none_falls_behind() -> None:
    every = 0.5
    clients = run_virtual(lambda: run_poll(200, every=every, seconds=10.0))

    gaps = [b - a for c in clients for a, b in itertools.pairwise(c.calls)]
    assert min(gaps) >= every - 1e-9  # float rounding only
    assert max(gaps) <= every + 2 * TICK


def reference_weights(keys: list[float]) -> dict[float, float]:
    """The rank weights by sorting every key: 2.0 for the lowest to 1.0 for the highest, the
    mean rank for equal keys."""
    ordered = sorted(keys)
    last = max(len(ordered) - 1, 1)
    weights = {}
    for key in set(ordered):
        first = ordered.index(key)
        end = first + ordered.count(key) - 1
        weights[key] = 2.0 - (first + end) / 2 / last
    return weights


def test_ranks_kept_in_step_weigh_as_a_full_sort_does() -> None:
    rng = random.Random(7)
    ranks = Ranks(block=4)  # small blocks: many splits, and blocks emptied
    held: list[float] = []
    choices = [-math.inf, math.inf, 0.5, 1.0, 1.5, 2.0]
    for step in range(3000):
        if held and rng.random() < 0.45:
            ranks.remove(held.pop(rng.randrange(len(held))))
        else:
            key = rng.choice(choices) if rng.random() < 0.3 else round(rng.uniform(0, 3), 2)
            ranks.add(key)
            held.append(key)
        if held and step % 50 == 0:
            expected = reference_weights(held)
            assert {k: ranks.weight(k) for k in set(held)} == pytest.approx(expected)
    assert ranks.size == len(held)


async def test_a_sessions_own_governor_is_typed_as_a_governor() -> None:
    # mypy --strict reads this file: snapshot() is Governor's, not the hook protocol's.
    async with Session() as session:
        snapshot = session.governor.snapshot()

    assert isinstance(session.governor, Governor)
    assert snapshot is not None


@pytest.mark.parametrize("ratio", ["sNaN", "NaN", "Infinity"])
def test_default_priority_never_raises(ratio: str) -> None:
    class Result:
        account_status = None
        uni_mmr = Decimal(ratio)

    update = Update(client=None, endpoint="pm_pro_account", result=Result(), error=None, at=0.0)  # type: ignore[arg-type]
    assert default_priority(update) == math.inf
