"""Polls and streams own their background work: ``async with session.poll(...)`` (and
``stream``, and the merged form) runs it in a task group of the caller's task, and leaving it
is a join: no task, socket or listen key is left behind, under asyncio and trio."""

from __future__ import annotations

import asyncio
import math
import os
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any, cast

import anyio
import pytest
import trio

from binance_pm import (
    AsyncClient,
    AuthError,
    Endpoint,
    Governor,
    Permit,
    Session,
    SessionError,
    Update,
)
from binance_pm._endpoints import STATE_ENDPOINT, STREAM_OF
from binance_pm._jobs import plan_jobs
from binance_pm._poller import Poller
from binance_pm._updates import default_priority
from binance_pm.testing import SimulatedExchange

from .conftest import run_virtual
from .served import credentials, serve

ENDPOINT = STATE_ENDPOINT


def sockets() -> int:
    """This process's open sockets (the exchange's side included, when it runs here)."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            count += os.readlink(f"/proc/self/fd/{fd}").startswith("socket:")
        except OSError:
            continue  # closed meanwhile (the listing's own descriptor)
    return count


async def settled_sockets(baseline: int, seconds: float = 3.0) -> int:
    """The open sockets once the exchange's side has seen the client's close (bounded)."""
    ends = time.monotonic() + seconds
    while (now := sockets()) > baseline and time.monotonic() < ends:  # noqa: ASYNC110 (no event: the kernel's sockets)
        await anyio.sleep(0.02)
    return now


async def take(updates: AsyncIterator[Update], count: int) -> list[Update]:
    seen: list[Update] = []
    with anyio.fail_after(10):
        async for update in updates:
            seen.append(update)
            if len(seen) == count:
                break
    return seen


def ours() -> set[asyncio.Task[Any]]:
    return {t for t in asyncio.all_tasks() if t is not asyncio.current_task()}


def clients_of(session: Session, ex: SimulatedExchange) -> dict[AsyncClient, str]:
    return {
        session.client(a.api_key, name=a.name, **a.credentials()): (STREAM_OF[a.account_type.value])
        for a in ex.accounts
    }


async def test_leaving_a_poll_joins_its_work_and_closing_the_session_its_sockets() -> None:
    async with SimulatedExchange(accounts=6, seed=3) as ex:
        before, open_before = ours(), sockets()
        async with Session(base_url=ex.base_url, governor=ex.governor()) as session:
            jobs = {
                session.client(a.api_key, **a.credentials()): ENDPOINT[a.account_type.value]
                for a in ex.accounts
            }
            async with session.poll(jobs, every=0.05) as updates:
                seen = await take(updates, 12)
            assert ours() <= before  # at once: leaving is a join
        assert all(u.ok for u in seen)
        assert await settled_sockets(open_before) <= open_before


async def test_leaving_a_stream_closes_its_sockets_and_keys_before_it_returns() -> None:
    async with SimulatedExchange(accounts=4, seed=3, push_every=0.1, risk_every=60) as ex:
        before, open_before = ours(), sockets()
        async with Session(base_url=ex.base_url, governor=ex.governor()) as session:
            jobs = clients_of(session, ex)
            async with session.stream(jobs) as updates:
                connected: set[str] = set()
                with anyio.fail_after(10):
                    async for update in updates:
                        connected |= {update.name} if update.connected else set()
                        if len(connected) == len(jobs):
                            break
                assert len(ex.streams.keys) == len(jobs)
            assert ex.streams.keys == {}  # closed before the async with returned
            assert ours() <= before
        assert await settled_sockets(open_before) <= open_before


async def test_leaving_a_merged_poll_leaves_no_task_socket_or_key() -> None:
    async with SimulatedExchange(accounts=4, seed=3, push_every=0.1, risk_every=60) as ex:
        before, open_before = ours(), sockets()
        async with Session(base_url=ex.base_url, governor=ex.governor()) as session:
            jobs = {
                session.client(a.api_key, **a.credentials()): ENDPOINT[a.account_type.value]
                for a in ex.accounts
            }
            sources: set[str] = set()
            async with session.poll(jobs, stream=True, reconcile_every=60) as updates:
                with anyio.fail_after(10):
                    async for update in updates:
                        sources.add(update.source)
                        if sources == {"rest", "stream"}:
                            break
            assert ex.streams.keys == {}
            assert ours() <= before
        assert await settled_sockets(open_before) <= open_before


async def test_a_close_from_another_task_ends_the_feed_after_the_work_has_ended() -> None:
    async with SimulatedExchange(accounts=4, seed=3, push_every=0.1, risk_every=60) as ex:
        session = Session(base_url=ex.base_url, governor=ex.governor())
        jobs = clients_of(session, ex)
        closed = anyio.Event()
        ended_after_close = False

        async def reader() -> None:
            nonlocal ended_after_close
            async with session.stream(jobs) as updates:
                async for _ in updates:
                    pass
                ended_after_close = closed.is_set()

        async with anyio.create_task_group() as group:
            group.start_soon(reader)
            with anyio.fail_after(10):
                while len(ex.streams.keys) < len(jobs):
                    await ex.streams.changed()
            closed.set()
            await session.aclose()
            # The close returned after the stream's work had ended: keys closed, no task left
            # but the reader's own.
            assert ex.streams.keys == {}
            assert not [t for t in asyncio.all_tasks() if t.get_name().startswith("binance_pm")]
        assert ended_after_close  # the feed ended, and only once the close had begun


async def test_misuse_is_told_clearly() -> None:
    async with SimulatedExchange(accounts=2) as ex:
        async with Session(base_url=ex.base_url, governor=ex.governor()) as session:
            client = session.client(ex.accounts[0].api_key, **ex.accounts[0].credentials())
            running = session.poll([client], ENDPOINT[ex.accounts[0].account_type.value])
            with pytest.raises(TypeError, match=r"async with session\.poll"):
                async for _ in running:
                    pass
            async with running as updates:
                pass
            assert [u async for u in updates] == []  # its async with has closed: it has ended
            with pytest.raises(RuntimeError, match="entered once"):
                async with running:
                    pass
        with pytest.raises(SessionError, match="closed"):
            session.poll([client], "pm_balance")


def test_a_poll_under_trio_leaves_no_task_behind() -> None:
    def tasks() -> set[Any]:
        found: set[Any] = set()
        pending = [trio.lowlevel.current_root_task()]
        while pending:
            task = pending.pop()
            found.add(task)
            pending += [c for n in task.child_nurseries for c in n.child_tasks]  # type: ignore[union-attr]
        return found - {trio.lowlevel.current_task()}

    with serve("--accounts", "3") as (_, base_url, accounts):

        async def main() -> tuple[int, int]:
            before = tasks()
            async with Session(base_url=base_url) as session:
                jobs = {
                    session.client(a["api_key"], **credentials(a)): ENDPOINT[a["account_type"]]
                    for a in accounts
                }
                async with session.poll(jobs, every=0.05) as updates:
                    seen = await take(updates, 6)
                left = tasks() - before
                with pytest.raises(SessionError, match="asyncio"):
                    async with session.stream(list(jobs), "pm_pro"):
                        pass
            return len(seen), len(left)

        seen, left = trio.run(main)
    assert (seen, left) == (6, 0)


class Answering:
    """A client whose every call answers after ``latency`` (virtual) seconds."""

    def __init__(self, index: int, latency: float) -> None:
        self.api_key = f"key{index:060d}"
        self.masked_key = f"key…{index}"
        self.name = f"account-{index}"
        self.latency = latency
        self.calls: list[float] = []

    async def call(self, endpoint: str, *, asset: str | None = None, on_grant: Any) -> None:
        self.calls.append(anyio.current_time())
        on_grant()
        await anyio.sleep(self.latency)


class Collect:
    def __init__(self) -> None:
        self.updates: list[Update] = []

    def offer(self, update: Update) -> bool:
        self.updates.append(update)
        return True

    async def put(self, update: Update) -> None:
        self.updates.append(update)


def test_a_hurried_turn_goes_at_its_time_or_right_after_the_call_in_flight() -> None:
    async def main() -> tuple[list[float], list[float]]:
        waiting, busy = Answering(0, 0.01), Answering(1, 5.0)
        jobs = plan_jobs(cast(list[AsyncClient], [waiting, busy]), "pm_pro_account", None)
        poller = Poller(jobs, every=100.0, priority=default_priority, sink=Collect())
        async with anyio.create_task_group() as group:
            group.start_soon(poller.run)
            await anyio.sleep(1.0)  # both have made their first call; busy's is in flight
            poller.hurry(jobs[0], anyio.current_time() + 2.0)  # goes in 2 s, not 100
            poller.hurry(jobs[1], anyio.current_time())  # goes again once its answer is in
            poller.hurry(jobs[0], anyio.current_time() + 50.0)  # later than due: no change
            await anyio.sleep(20.0)
            group.cancel_scope.cancel()
        return waiting.calls, busy.calls

    waiting, busy = run_virtual(main)
    assert [round(t - waiting[0]) for t in waiting] == [0, 3]
    assert len(busy) == 2
    assert math.isclose(busy[1] - busy[0], 5.0, abs_tol=0.05)


class Refused(Answering):
    """Answers its first call; its key is refused from the second on."""

    async def call(self, endpoint: str, *, asset: str | None = None, on_grant: Any) -> None:
        await super().call(endpoint, asset=asset, on_grant=on_grant)
        if len(self.calls) > 1:
            raise AuthError(401, -2015, "Invalid API-key", endpoint=endpoint, api_key=None)


def test_a_poll_whose_jobs_all_ended_returns_at_once_whatever_was_hurried() -> None:
    async def main() -> float:
        refused = Refused(0, 0.01)
        jobs = plan_jobs(cast(list[AsyncClient], [refused]), "pm_pro_account", None)
        poller = Poller(jobs, every=100.0, priority=default_priority, sink=Collect())
        async with anyio.create_task_group() as group:
            group.start_soon(poller.run)
            await anyio.sleep(1.0)  # its first call is answered; the next is due at 100
            poller.hurry(jobs[0], anyio.current_time() + 1.0)  # refused at 2: its last
        return anyio.current_time()  # the task group waited for the poller to end

    assert run_virtual(main) < 3.0


class Told:
    """A hook of the caller's: the package's governor, with permits whose settle takes a
    while (a store far away) and is counted as it starts and as it ends."""

    def __init__(self, governor: Governor) -> None:
        self.governor = governor
        self.started = self.ended = 0

    def try_acquire(self, endpoint: Endpoint[Any], *, account: str) -> Permit | None:
        return None  # every permit through acquire, wrapped

    async def acquire(self, endpoint: Endpoint[Any], *, account: str, deadline: float) -> Permit:
        return Telling(
            await self.governor.acquire(endpoint, account=account, deadline=deadline), self
        )


class Telling:
    def __init__(self, permit: Permit, hook: Told) -> None:
        self.permit, self.hook = permit, hook

    def cancel(self) -> None:
        self.permit.cancel()

    def complete(self, status: int | None, headers: Mapping[str, str] | None) -> None:
        self.permit.complete(status, headers)

    async def settle(self) -> None:
        self.hook.started += 1
        await anyio.sleep(0.1)
        self.hook.ended += 1


async def test_leaving_a_poll_lets_every_permit_finish_telling_its_hook() -> None:
    async with SimulatedExchange(accounts=6, seed=3) as ex:
        hook = Told(ex.governor())
        async with Session(base_url=ex.base_url, governor=hook) as session:
            jobs = {
                session.client(a.api_key, **a.credentials()): ENDPOINT[a.account_type.value]
                for a in ex.accounts
            }
            async with session.poll(jobs, every=0.01) as updates:
                await take(updates, 15)
            assert hook.started > 6
            assert hook.ended == hook.started  # none cut short by the poll's end
