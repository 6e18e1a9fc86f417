"""A fleet of pollers on a real ``redis-server``: every account watched by exactly one member,
shares that move only as members come and go, takeover within a lease, and nothing watched
once Redis is gone (fail closed). Each member is a Session of its own, sending from its own
loopback address to the simulated exchange, which counts each address apart."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field

import pytest

from binance_pm import AsyncClient, Session
from binance_pm._endpoints import STATE_ENDPOINT
from binance_pm.fleet import Fleet, _highest
from binance_pm.testing import SimAccount, SimulatedExchange

from .redis_server import RedisServer, running_server

TTL = 2.0  # short leases: a takeover within seconds
EVERY = 0.5


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    with running_server() as running:
        yield running


@dataclass
class Member:
    """One member: its fleet, and when it polled which account."""

    fleet: Fleet
    polled: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    task: asyncio.Task[None] | None = None


async def _member(
    ex: SimulatedExchange,
    fleet: Fleet,
    source: str,
    member: Member,
    accounts: list[SimAccount] | None = None,
) -> None:
    """Poll ``accounts`` (all of ``ex``'s by default) through ``fleet`` until cancelled."""
    async with Session(base_url=ex.base_url, source_address=source) as session:
        jobs = {
            session.client(a.api_key, **a.credentials(), name=a.name): STATE_ENDPOINT[
                a.account_type.value
            ]
            for a in (ex.accounts if accounts is None else accounts)
        }
        async with session.poll(jobs, every=EVERY, fleet=fleet) as updates:
            async for update in updates:
                assert isinstance(update.client, AsyncClient)
                member.polled[str(update.client.name)].append(time.monotonic())


class Relay:
    """A TCP relay on loopback to the tests' Redis (on a unix socket), to cut one member off:
    :meth:`cut` drops every connection and takes no more."""

    def __init__(self, socket_path: str) -> None:
        self.socket_path = socket_path
        self.server: asyncio.Server | None = None
        self.writers: set[asyncio.StreamWriter] = set()

    async def __aenter__(self) -> str:
        self.server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        return f"redis://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/0"

    async def __aexit__(self, *exc: object) -> None:
        await self.cut()

    async def cut(self) -> None:
        if self.server is not None:
            self.server.close()
        for writer in list(self.writers):
            writer.transport.abort()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_unix_connection(self.socket_path)
        self.writers |= {writer, up_writer}
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    writer.transport.abort()


@contextlib.asynccontextmanager
async def _fleet(
    ex: SimulatedExchange,
    url: str,
    name: str,
    members: int,
    last_url: str | None = None,
    last_told: Callable[[str | None], None] | None = None,
) -> AsyncIterator[list[Member]]:
    """``members`` members polling every account of ``ex``; the last one reaching Redis at
    ``last_url`` and telling its trouble to ``last_told``, if given."""
    running: list[Member] = []
    for i in range(members):
        last = i == members - 1
        fleet = Fleet(
            last_url if last and last_url is not None else url,
            name=name,
            member=f"m{i + 1}",
            lease_ttl=TTL,
            on_trouble=last_told if last else None,
        )
        member = Member(fleet)
        member.task = asyncio.create_task(_member(ex, fleet, f"127.0.0.{i + 1}", member))
        running.append(member)
    try:
        yield running
    finally:
        await _stop(running)


async def _stop(members: list[Member]) -> None:
    """Cancel each member's poll, wait for it, and close its fleet."""
    for member in members:
        assert member.task is not None
        member.task.cancel()
    await asyncio.gather(*(m.task for m in members if m.task), return_exceptions=True)
    for member in members:
        await member.fleet.aclose()


def _watchers(members: list[Member], since: float) -> dict[str, set[str]]:
    """For each account, the members that polled it after ``since``."""
    found: dict[str, set[str]] = defaultdict(set)
    for member in members:
        for account, times in member.polled.items():
            if any(t > since for t in times):
                found[account].add(member.fleet.member)
    return found


async def test_three_members_share_ninety_accounts_each_watched_by_exactly_one(
    redis_server: RedisServer,
) -> None:
    async with (
        SimulatedExchange(accounts=90, seed=4) as ex,
        _fleet(ex, redis_server.url, f"share{time.monotonic_ns()}", 3) as members,
    ):
        await asyncio.sleep(TTL)  # every member has looked, and taken its share
        since = time.monotonic()
        await asyncio.sleep(4 * EVERY)
        watchers = _watchers(members, since)
        assert len(watchers) == 90
        assert {a: len(w) for a, w in watchers.items() if len(w) != 1} == {}
        shares = Counter(next(iter(w)) for w in watchers.values())
        assert set(shares) == {"m1", "m2", "m3"}
        assert min(shares.values()) >= 15  # rendezvous hashing spreads 90 about evenly
        assert all(set(m.fleet.members) == {"m1", "m2", "m3"} for m in members)
        # Each member sent from its own address, and the exchange counted each apart.
        hosts = {client[0] for client in ex.stats.clients}
        assert hosts == {"127.0.0.1", "127.0.0.2", "127.0.0.3"}
        # A member that leaves lets go at once: the others take its accounts within a look
        # (a quarter of the lease) and poll each at once.
        gone = members[2]
        assert gone.task is not None
        gone.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await gone.task
        left = time.monotonic()
        theirs = {a for a, w in watchers.items() if w == {"m3"}}
        await asyncio.sleep(TTL / 4 + 2 * EVERY + 0.5)
        after = _watchers(members[:2], left)
        assert theirs <= set(after)
        assert {a: w for a, w in after.items() if len(w) != 1} == {}
    assert ex.stats.by_status.get(429, 0) == 0
    assert ex.stats.by_status.get(418, 0) == 0


async def test_a_member_cut_off_from_redis_stops_watching_and_others_take_over(
    redis_server: RedisServer,
) -> None:
    troubles: list[str | None] = []
    relay = Relay(str(redis_server.socket))
    async with (
        SimulatedExchange(accounts=30, seed=5) as ex,
        relay as through_relay,
        _fleet(
            ex, redis_server.url, f"cut{time.monotonic_ns()}", 2, through_relay, troubles.append
        ) as members,
    ):
        await asyncio.sleep(TTL)
        cut = members[1]
        recent = _watchers(members, time.monotonic() - 2 * EVERY)
        assert {"m2"} in recent.values()  # it had a share
        # Its Redis goes away (the relay it reaches Redis through), not the other's.
        await relay.cut()
        cut_at = time.monotonic()
        await asyncio.sleep(TTL + TTL / 4 + 2 * EVERY + 0.5)
        assert troubles  # told at its first failed look
        assert troubles[0] is not None
        assert cut.fleet.trouble is not None
        # Fail closed: nothing polled once its leases may have run out (0.9 of a lease).
        late = [t for times in cut.polled.values() for t in times if t > cut_at + TTL * 0.9]
        assert late == []
        # The other member took every account over.
        recent = _watchers(members[:1], time.monotonic() - 2 * EVERY)
        assert len(recent) == 30


async def test_an_account_its_member_has_no_client_for_is_taken_by_one_that_has(
    redis_server: RedisServer,
) -> None:
    # m2 was given half the accounts only: those the hashing gives it but it has no client
    # for are free for a whole lease, then taken (and kept) by m1, which has them all.
    name = f"orphans{time.monotonic_ns()}"
    async with SimulatedExchange(accounts=20, seed=6) as ex:
        members = [
            Member(Fleet(redis_server.url, name=name, member=m, lease_ttl=TTL))
            for m in ("m1", "m2")
        ]
        lists = [ex.accounts, ex.accounts[:10]]
        for i, (member, accounts) in enumerate(zip(members, lists, strict=True)):
            member.task = asyncio.create_task(
                _member(ex, member.fleet, f"127.0.0.{i + 1}", member, accounts)
            )
        try:
            await asyncio.sleep(2 * TTL + TTL / 4 + 2 * EVERY)
            since = time.monotonic()
            await asyncio.sleep(3 * EVERY)
            watchers = _watchers(members, since)
            assert len(watchers) == 20  # every account, none left unwatched
            assert {a: w for a, w in watchers.items() if len(w) != 1} == {}
            assert any(w == {"m2"} for w in watchers.values())  # m2 kept its own share
        finally:
            await _stop(members)


async def test_a_fleet_polled_again_with_other_accounts_shares_those(
    redis_server: RedisServer,
) -> None:
    fleet = Fleet(redis_server.url, name=f"again{time.monotonic_ns()}", member="m1", lease_ttl=TTL)
    async with SimulatedExchange(accounts=12, seed=8) as ex:
        for accounts in (ex.accounts[:6], ex.accounts[6:]):
            member = Member(fleet)
            task = asyncio.create_task(_member(ex, fleet, "127.0.0.1", member, accounts))
            await asyncio.sleep(TTL / 2)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            assert set(member.polled) == {a.name for a in accounts}
    await fleet.aclose()


def test_rendezvous_hashing_moves_only_the_newcomers_share() -> None:
    accounts = [f"acct{i:04}" for i in range(3000)]
    before = {a: _highest(a, ("a", "b", "c")) for a in accounts}
    after = {a: _highest(a, ("a", "b", "c", "d")) for a in accounts}
    moved = [a for a in accounts if before[a] != after[a]]
    assert all(after[a] == "d" for a in moved)  # only to the newcomer
    assert 600 <= len(moved) <= 900  # about a quarter
    shares = Counter(before.values())
    assert min(shares.values()) >= 900  # about a third each


def test_a_fleet_refuses_names_that_are_not_words_and_leases_out_of_range() -> None:
    with pytest.raises(ValueError, match="member must be a word"):
        Fleet(member="two words")
    with pytest.raises(ValueError, match="name must be a word"):
        Fleet(name="")
    with pytest.raises(ValueError, match="lease_ttl must be 1 to 3600"):
        Fleet(lease_ttl=0.5)
    with pytest.raises(TypeError, match="lease_ttl must be seconds"):
        Fleet(lease_ttl="10")  # type: ignore[arg-type]
