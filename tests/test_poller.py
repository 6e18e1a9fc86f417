"""Session.poll against the simulated exchange: fairness and use of the budget with 200 accounts,
priority and isolation of failing accounts in virtual time (the exchange in process, every clock
on trio's MockClock: exact whatever the machine's load); clean ends over loopback, where calls
are really in flight on sockets."""

from __future__ import annotations

import asyncio
import itertools
import math
import statistics
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import msgspec
import pytest
import trio

from binance_pm import (
    AccountType,
    AsyncClient,
    AuthError,
    BinancePMError,
    Governor,
    Limits,
    PMProSpanAccount,
    ServerError,
    Session,
    Update,
)
from binance_pm._endpoints import ENDPOINTS, STATE_ENDPOINT
from binance_pm.testing import SimulatedExchange, budget_use

from .conftest import run_virtual, virtual_session, virtual_wall
from .served import credentials, serve

ENDPOINT = STATE_ENDPOINT


def poll_tasks() -> list[Any]:
    """The polls' background tasks still running, under asyncio or trio."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        tasks: list[Any] = []
        root = trio.lowlevel.current_root_task()
        pending = [root] if root is not None else []
        while pending:
            task = pending.pop()
            tasks.append(task)
            pending += [child for nursery in task.child_nurseries for child in nursery.child_tasks]
        return [t for t in tasks if t.name.startswith("binance_pm")]
    return [t for t in asyncio.all_tasks() if t.get_name().startswith("binance_pm")]


async def collect(
    updates: AsyncIterator[Update], seconds: float, until: Callable[[Update], bool] | None = None
) -> list[Update]:
    """The updates of ``seconds``, each with ``at`` the event loop's time when it came (virtual
    time in a virtual run)."""
    seen: list[Update] = []
    with anyio.move_on_after(seconds):
        async for update in updates:
            seen.append(msgspec.structs.replace(update, at=anyio.current_time()))
            if until is not None and until(update):
                break
    return seen


def intervals(updates: list[Update], skip: float) -> dict[AsyncClient, float]:
    """Per account, the mean time between its successful updates after ``skip`` seconds."""
    if not updates:
        return {}
    start = updates[0].at + skip
    times: dict[AsyncClient, list[float]] = defaultdict(list)
    for update in updates:
        if update.ok and update.at >= start:
            times[update.client].append(update.at)
    return {
        client: (ats[-1] - ats[0]) / (len(ats) - 1) for client, ats in times.items() if len(ats) > 2
    }


def inflight(governor: Governor) -> int:
    return sum(b.inflight for b in [*governor._ip.values(), *governor._uid.values()])


# -- 200 accounts, one Session, a short window: in virtual time ---------------------------------

WINDOW = 0.8
LIMITS = {"papi_ip": 1000, "sapi_ip": 300, "sapi_uid": 10}
SECONDS = 8.0


@pytest.mark.parametrize("mode", ["fixed", "sliding"])
def test_200_accounts_use_the_budget_fairly_with_no_429(mode: str) -> None:
    """Besides the 200 accounts: a key the exchange does not know, and an account (a PM one,
    on the shared papi budget) whose every request fails."""

    async def main() -> tuple[SimulatedExchange, list[Update], dict[AsyncClient, str], float]:
        ex = SimulatedExchange(
            accounts=200,
            window=WINDOW,
            window_mode=mode,  # type: ignore[arg-type]
            seed=3,
            clock=virtual_wall,
            limits=Limits(**LIMITS),
        )
        assert ex.accounts[0].account_type is AccountType.PM_2
        ex.broken.add(ex.accounts[0].api_key)
        async with virtual_session(ex, timeout=30) as session:
            governor = session.governor
            assert isinstance(governor, Governor)
            jobs = {
                session.client(a.api_key, **a.credentials()): ENDPOINT[a.account_type.value]
                for a in ex.accounts
            }
            stranger = session.client("k" * 64, secret="s" * 64)
            jobs[stranger] = "pm_pro_account"
            started = virtual_wall()
            async with session.poll(jobs, every=0.05) as updates:
                seen = await collect(updates, SECONDS)
            # Left: nothing runs or is in flight any more.
            assert poll_tasks() == []
            assert inflight(governor) == 0
        return ex, seen, jobs, started

    ex, seen, kinds, started = run_virtual(main)
    broken, *_, stranger = kinds
    assert ex.stats.by_status[429] == 0
    assert ex.stats.by_status[418] == 0
    # The stranger: one final update; the broken account: errors, backing off, never final.
    from_stranger = [u for u in seen if u.client is stranger]
    assert len(from_stranger) == 1
    assert isinstance(from_stranger[0].error, AuthError)
    assert from_stranger[0].final
    from_broken = [u for u in seen if u.client is broken]
    assert 2 <= len(from_broken) <= 10
    assert all(isinstance(u.error, ServerError) and not u.final for u in from_broken)
    seen = [u for u in seen if u.client not in (stranger, broken)]
    assert [u for u in seen if not u.ok] == []
    # The share of each budget the exchange counted, over whole windows after the first: 98-100 %
    # (answers that overtake one another in a burst, the latency being random, are not taken
    # for another party's weight: that once cost a window now and then up to 40 % of it).
    use, _ = budget_use(
        ex.stats.arrivals,
        LIMITS,
        window=WINDOW,
        started_ms=started * 1000,
        stopped_ms=(started + SECONDS) * 1000,
        uid_accounts=sum(1 for a in ex.accounts if a.account_type is AccountType.PM_1),
    )
    assert all(share >= 0.95 for share in use.values()), use
    # Staleness: no account's time between updates is over twice its fair share of its budget
    # (an IP budget shared by every account that calls that endpoint, a UID budget its own), nor
    # over twice the mean of the accounts it shares its budget with.
    spans = intervals(seen, skip=WINDOW)
    assert len(spans) == 199
    for name in set(kinds.values()):
        endpoint = ENDPOINTS[name]
        sharing = 1 if endpoint.bucket == "uid" else sum(1 for k in kinds.values() if k == name)
        budget = "sapi_uid" if endpoint.bucket == "uid" else f"{endpoint.family}_ip"
        fair = WINDOW * sharing * endpoint.weight / LIMITS[budget]
        group = [span for client, span in spans.items() if kinds[client] == name]
        assert max(group) <= 2 * fair, (name, max(group), fair)
        assert max(group) <= 2 * statistics.mean(group), (name, max(group), group)
    # Priority: on the shared sapi IP budget, the third of the SPAN accounts with the lowest
    # uniMMR refresh more often than the safest third.
    last = {u.client: u.result.uni_mmr for u in seen if isinstance(u.result, PMProSpanAccount)}
    ranked = sorted((last[client], span) for client, span in spans.items() if client in last)
    third = len(ranked) // 3
    risky = statistics.mean(span for _, span in ranked[:third])
    safe = statistics.mean(span for _, span in ranked[-third:])
    assert risky < 0.9 * safe, (risky, safe)


# -- 45 accounts: in virtual time ---------------------------------------------------------------


def small_exchange() -> SimulatedExchange:
    """45 accounts, budgets that bind; made inside :func:`run_virtual`."""
    return SimulatedExchange(
        accounts=45,
        window=1.0,
        window_mode="sliding",
        limits=Limits(sapi_ip=200, papi_ip=400),
        seed=11,
        clock=virtual_wall,
    )


async def span_intervals(
    ex: SimulatedExchange, priority: Callable[[Update], float] | None, seconds: float
) -> list[tuple[float, float]]:
    """(uniMMR, mean time between updates) of each SPAN account, polled flat out."""
    async with virtual_session(ex) as session:
        span = [a for a in ex.accounts if a.account_type.value == "PM_3"]
        clients = [session.client(a.api_key, **a.credentials()) for a in span]
        options: dict[str, Any] = {} if priority is None else {"priority": priority}
        async with session.poll(clients, "pm_pro_span_account", every=0.01, **options) as u:
            seen = await collect(u, seconds)
    last = {
        u.client: float(u.result.uni_mmr)
        for u in seen
        if isinstance(u.result, PMProSpanAccount) and u.result.uni_mmr is not None
    }
    return sorted((last[c], span) for c, span in intervals(seen, skip=1.0).items())


def test_priority_refreshes_the_riskiest_accounts_more_often() -> None:
    def ratio(rows: list[tuple[float, float]]) -> float:
        third = len(rows) // 3
        risky = statistics.mean(span for _, span in rows[:third])
        safe = statistics.mean(span for _, span in rows[-third:])
        return risky / safe

    async def main() -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
        ex = small_exchange()
        # Long enough for the ranking (every second, once each account has answered) to
        # dominate the means: virtual seconds cost little.
        weighted = await span_intervals(ex, None, 15.0)  # default: lowest uniMMR first
        flat = await span_intervals(ex, lambda update: 0.0, 15.0)
        return weighted, flat

    weighted, flat = run_virtual(main)
    assert len(weighted) >= 12
    assert ratio(weighted) < 0.8, weighted  # the riskiest third refresh more often...
    assert ratio(flat) > 0.9, flat  # ...because of the priority, not by chance
    # ...and nobody starves: the safest waits at most about twice the riskiest.
    assert max(span for _, span in weighted) <= 2.2 * min(span for _, span in weighted)


def test_a_refused_key_ends_that_account_with_one_update_and_the_rest_go_on() -> None:
    async def main() -> tuple[list[Update], list[AsyncClient], AsyncClient]:
        ex = small_exchange()
        async with virtual_session(ex) as session:
            good = [session.client(a.api_key, **a.credentials()) for a in ex.accounts[:6]]
            bad = session.client("k" * 64, secret="s" * 64)
            jobs = {
                c: ENDPOINT[a.account_type.value] for c, a in zip(good, ex.accounts, strict=False)
            }
            jobs[bad] = "pm_balance"
            async with session.poll(jobs, every=0.1) as updates:
                seen = await collect(updates, 2.0)
        return seen, good, bad

    seen, good, bad = run_virtual(main)
    from_bad = [u for u in seen if u.client is bad]
    assert len(from_bad) == 1
    assert isinstance(from_bad[0].error, AuthError)
    assert from_bad[0].final
    assert from_bad[0].error.code == -2015
    for client in good:
        mine = [u for u in seen if u.client is client]
        assert len(mine) >= 18  # every 0.1 s for 2 s
        assert all(u.ok for u in mine)


def test_an_account_that_keeps_failing_backs_off_and_the_rest_go_on() -> None:
    async def main() -> tuple[list[Update], dict[AsyncClient, str], AsyncClient]:
        ex = small_exchange()
        ex.broken.add(ex.accounts[1].api_key)
        async with virtual_session(ex, max_retries=0) as session:
            clients = [session.client(a.api_key, **a.credentials()) for a in ex.accounts[:6]]
            jobs = {
                c: ENDPOINT[a.account_type.value]
                for c, a in zip(clients, ex.accounts, strict=False)
            }
            async with session.poll(jobs, every=0.05) as updates:
                seen = await collect(updates, 3.0)
        return seen, jobs, clients[1]

    seen, jobs, broken = run_virtual(main)
    failing = [u for u in seen if u.client is broken]
    assert failing
    assert all(isinstance(u.error, ServerError) for u in failing)
    assert not any(u.final for u in failing)  # it goes on trying
    gaps = [b.at - a.at for a, b in itertools.pairwise(failing)]
    assert len(failing) <= 9, gaps  # backing off: 0.05 s doubling, with jitter
    assert gaps[-1] > 4 * 0.05, gaps
    others = [u for u in seen if u.client is not broken]
    assert all(u.ok for u in others)
    # The rest as often as ever: every 0.05 s for 3 s, but the two PM accounts, which share the
    # papi budget (400 a second, 20 a call) at ten calls a second each.
    counts = Counter(u.client for u in others)
    assert len(counts) == 5
    assert all(n >= 0.9 * (30 if jobs[c] == "pm_account" else 60) for c, n in counts.items()), {
        jobs[c]: n for c, n in counts.items()
    }


# -- over loopback: ends and clean-up -------------------------------------------------------------


#: The exchange of the tests that want one but no special options.
LOOPBACK = pytest.mark.simulated(
    accounts=45, window=1.0, window_mode="sliding", limits=Limits(sapi_ip=200, papi_ip=400), seed=11
)


async def measure_clock(session: Session, ex: SimulatedExchange) -> None:
    """One call, so the Session's clock is measured while the exchange is well: the faults a
    test turns on after it then hit the polled calls only, not the time endpoint."""
    a = ex.accounts[0]
    await getattr(session.client(a.api_key, **a.credentials()), ENDPOINT[a.account_type.value])()


@pytest.mark.simulated(accounts=20, slow_seconds=30)
async def test_leaving_the_poll_cancels_every_call_in_flight_and_waits_for_them(
    simulated: SimulatedExchange,
) -> None:
    governor = Governor()
    async with Session(base_url=simulated.base_url, governor=governor, timeout=60) as session:
        jobs = {
            session.client(a.api_key, **a.credentials()): ENDPOINT[a.account_type.value]
            for a in simulated.accounts
        }
        await measure_clock(session, simulated)
        simulated.faults = {"slow": 0.5}
        async with session.poll(jobs, every=0.05) as updates:
            async for _ in updates:
                break  # some calls are still waiting for a slow answer
            left = time.monotonic()
        # Left: a join, so nothing of it runs any more.
        assert poll_tasks() == []
        assert time.monotonic() - left < 1.0
        # Every permit was given back or completed: nothing is in flight any more.
        assert all(state.used == 0 or state.waiters == 0 for state in governor.snapshot().values())
        assert inflight(governor) == 0


@pytest.mark.simulated(accounts=10, slow_seconds=30)
async def test_cancelling_the_consumer_stops_the_polling_within_a_second(
    simulated: SimulatedExchange,
) -> None:
    governor = Governor()
    async with Session(base_url=simulated.base_url, governor=governor, timeout=60) as session:
        clients = [session.client(a.api_key, **a.credentials()) for a in simulated.accounts]
        jobs = {
            c: ENDPOINT[a.account_type.value]
            for c, a in zip(clients, simulated.accounts, strict=True)
        }
        await measure_clock(session, simulated)
        simulated.faults = {"slow": 1.0}

        async def consume() -> None:
            async with session.poll(jobs, every=0.05) as updates:
                async for _ in updates:
                    pass

        async with anyio.create_task_group() as group:
            group.start_soon(consume)
            await anyio.sleep(0.3)  # every call is now waiting for a slow answer
            assert poll_tasks()
            cancelled = time.monotonic()
            group.cancel_scope.cancel()
        assert time.monotonic() - cancelled < 1.0
        assert poll_tasks() == []
        assert inflight(governor) == 0


@pytest.mark.simulated(accounts=4)
async def test_closing_the_session_stops_its_polls(simulated: SimulatedExchange) -> None:
    session = Session(base_url=simulated.base_url, governor=simulated.governor())
    clients = [session.client(a.api_key, **a.credentials()) for a in simulated.accounts]
    jobs = {
        c: ENDPOINT[a.account_type.value] for c, a in zip(clients, simulated.accounts, strict=True)
    }
    async with session.poll(jobs, every=0.05) as updates:
        first = await updates.__anext__()
        assert first.ok
        await session.aclose()
        assert poll_tasks() == []  # the close waited for the poll's work to end
        rest = [u async for u in updates]  # what was already answered, then the end
    assert len(rest) <= len(jobs)


@LOOPBACK
async def test_bad_arguments_are_refused_at_once(simulated: SimulatedExchange) -> None:
    async with Session(base_url=simulated.base_url) as session, Session() as other:
        a = simulated.accounts[0]
        client = session.client(a.api_key, **a.credentials())
        with pytest.raises(ValueError, match="unknown endpoint 'pm_balances'"):
            session.poll([client], "pm_balances")
        with pytest.raises(ValueError, match="classic_pm_account needs asset="):
            session.poll([client], "classic_pm_account")
        with pytest.raises(ValueError, match="every must be positive"):
            session.poll([client], "pm_balance", every=0)
        with pytest.raises(TypeError, match="needs endpoints"):
            session.poll([client])
        with pytest.raises(ValueError, match="another Session"):
            other.poll([client], "pm_balance")


@LOOPBACK
async def test_an_error_in_the_priority_function_ends_the_poll_with_it(
    simulated: SimulatedExchange,
) -> None:
    def broken_priority(update: Update) -> float:
        raise ZeroDivisionError("priority bug")

    async with Session(base_url=simulated.base_url, governor=simulated.governor()) as session:
        a = simulated.accounts[0]
        client = session.client(a.api_key, **a.credentials())
        running = session.poll([client], ENDPOINT[a.account_type.value], priority=broken_priority)

        async def read_all() -> None:
            async with running as updates:
                async for _ in updates:
                    pass

        with pytest.raises(ZeroDivisionError, match="priority bug"):
            await read_all()
        assert poll_tasks() == []


def test_polling_runs_on_trio_too() -> None:
    with serve("--accounts", "6") as (_, base_url, accounts):

        async def main() -> list[Update]:
            async with Session(base_url=base_url) as session:
                jobs = {
                    session.client(a["api_key"], **credentials(a)): ENDPOINT[a["account_type"]]
                    for a in accounts
                }
                seen: list[Update] = []
                async with session.poll(jobs, every=0.1) as updates:
                    async for update in updates:
                        seen.append(update)
                        if len(seen) == 18:
                            break
                return seen

        seen = trio.run(main)
    assert len(seen) == 18
    assert all(u.ok for u in seen)
    assert len({u.client for u in seen}) == 6


def test_update_says_whether_it_is_ok() -> None:
    error = BinancePMError("x")
    update = Update(client=None, endpoint="pm_balance", result=None, error=error, at=math.pi)  # type: ignore[arg-type]
    assert not update.ok
