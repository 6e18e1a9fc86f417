"""Streams under the exchange's WebSocket rules, against the simulated exchange over loopback
with its connection-attempt limit scaled down: storms and cold starts paced without a refusal
or a ban, quiet streams that keep their keys and rotate, silent expiries found, one account's
bad message kept to itself, hostile hosts, and keys shared by two processes."""

from __future__ import annotations

import itertools
import time
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal

import anyio
import pytest

import binance_pm._streams
from binance_pm import (
    DecodeError,
    Governor,
    Limits,
    OtherEvent,
    RateLimitError,
    Session,
    StreamUpdate,
    TransportError,
)
from binance_pm._client import AsyncClient
from binance_pm._endpoints import STREAM_OF
from binance_pm.redis import RedisStore
from binance_pm.testing import SimulatedExchange

from .conftest import HMAC_API_KEY, HMAC_SECRET
from .hostile import Answer, HostileServer, Raw
from .redis_server import RedisServer, running_server
from .served import credentials, serve, stats


def clients_of(
    session: Session, ex: SimulatedExchange, *, skip_rsa: bool = False
) -> dict[AsyncClient, str]:
    """Every account's client and product (RSA accounts left out with ``skip_rsa``: their
    keys take longest to load)."""
    jobs = {}
    for account in ex.accounts:
        if skip_rsa and account.key_type == "RSA":
            continue
        client = session.client(account.api_key, name=account.name, **account.credentials())
        jobs[client] = STREAM_OF[account.account_type.value]
    return jobs


def allowed(history: list[float], count: int, start: float, limit: int, window: float) -> float:
    """The least time after ``start`` in which ``count`` more attempts can be made, given the
    attempts already made at ``history`` (seconds), with at most ``limit`` in any ``window``
    (sliding): what "the time the limit allows" means."""
    made = sorted(history)
    at = start
    for _ in range(count):
        if len(made) >= limit:
            at = max(at, made[-limit] + window)
        made.append(at)
    return at - start


async def until_connected(
    updates: AsyncIterator[StreamUpdate], names: set[str], seconds: float
) -> dict[str, float]:
    """When each of ``names`` (re)connected, in monotonic seconds."""
    when: dict[str, float] = {}
    with anyio.fail_after(seconds):
        async for update in updates:
            assert update.final is False, update.error
            if update.connected and update.name in names:
                when.setdefault(update.name, time.monotonic())
                if len(when) == len(names):
                    return when
    raise AssertionError("the stream ended")


# -- storms ---------------------------------------------------------------------------------


async def test_two_hundred_streams_dropped_at_once_three_times_come_back_at_the_limits_pace() -> (
    None
):
    limit, window = 50, 0.75
    limits = Limits(ws_connect=limit, ws_window=window)
    async with (
        SimulatedExchange(accounts=200, seed=3, limits=limits, risk_every=5.0) as ex,
        Session(base_url=ex.base_url, governor=ex.governor()) as session,
    ):
        jobs = clients_of(session, ex)
        names = {c.name for c in jobs}
        async with session.stream(jobs) as updates:
            await until_connected(updates, names, seconds=30)
            for _ in range(3):
                history = attempt_times(ex)
                dropped, dropped_at = time.monotonic(), ex.server_ms() / 1000
                assert ex.drop_streams() == len(names)
                back = await until_connected(updates, names, seconds=30)
                took = max(back.values()) - dropped
                ideal = allowed(history, len(names), dropped_at, limit, window)
                assert ideal >= 2 * window  # the limit binds: the pace is what is tested
                # Loose on time (a busy machine slows the handshakes); a window lost per batch
                # would take twice the ideal.
                assert took <= 1.5 * ideal, (took, ideal)
    assert ex.stats.ws_refused == 0
    assert ex.stats.ws_banned == 0
    assert ex.stats.bans == 0


def attempt_times(ex: SimulatedExchange) -> list[float]:
    return [at / 1000 for at, budget, _ in ex.stats.arrivals if budget == "ws_connect"]


async def test_a_thousand_accounts_cold_started_connect_at_the_limits_pace_riskiest_first() -> None:
    limit, window = 250, 3.0
    # The exchange in its own process: the handshakes' cost on its side is not this test's.
    with serve(
        "--accounts", "1120", "--seed", "4", "--ws-connect", str(limit),
        "--ws-window", str(window), "--risk-every", "5",
    ) as (_, base_url, served):  # fmt: skip
        governor = Governor(limits=Limits(ws_connect=limit, ws_window=window))
        async with Session(base_url=base_url, governor=governor) as session:
            accounts = [a for a in served if a["key_type"] != "RSA"][:1_000]
            jobs = {
                session.client(a["api_key"], name=a["name"], **credentials(a)): (
                    STREAM_OF[a["account_type"]]
                )
                for a in accounts
            }
            # What the desk knew of each account when it started: a uniMMR from 1.1 to 11.
            known = {c: Decimal(11 - (i * 7919 % 1000) / 100) for i, c in enumerate(jobs)}
            order: list[str] = []
            times: list[float] = []
            started = time.monotonic()
            async with session.stream(jobs, uni_mmr=known) as updates:
                with anyio.fail_after(30):
                    async for update in updates:
                        assert update.error is None, update.error
                        if update.connected:
                            order.append(update.name)
                            times.append(time.monotonic() - started)
                            if len(order) == len(jobs):
                                break
        counts = stats(base_url)
    ideal = allowed([], len(jobs), 0.0, limit, window)
    assert ideal == 3 * window
    # At the limit's pace: each window's batch starts one window after the last one (a lost
    # window would make it two), and the whole desk is up in about three windows. Loose on
    # time, as a busy machine (two copies of the suite, two workers each) slows handshakes.
    starts = [times[batch * limit] for batch in range(4)]
    gaps = [later - earlier for earlier, later in itertools.pairwise(starts)]
    assert all(gap <= 1.6 * window for gap in gaps), gaps
    assert times[-1] <= 1.5 * ideal, (times[-1], ideal)
    riskiest = sorted(jobs, key=lambda c: known[c])
    for batch in range(4):  # each window's attempts went to the riskiest still waiting
        connected = set(order[batch * limit : (batch + 1) * limit])
        assert connected == {c.name for c in riskiest[batch * limit : (batch + 1) * limit]}
    assert counts["ws_refused"] == counts["ws_banned"] == counts["bans"] == 0


# -- deadlines on quiet streams --------------------------------------------------------------


@pytest.mark.simulated(accounts=6, seed=5, ping_every=0.05, risk_every=60)
async def test_quiet_streams_keep_their_keys_alive_and_rotate_on_schedule(
    simulated: SimulatedExchange,
) -> None:
    async with Session(base_url=simulated.base_url, governor=simulated.governor()) as session:
        jobs = clients_of(session, simulated)
        for account in simulated.accounts:
            simulated.quiet_streams(account.name)  # nothing on the wire but pings and pongs
        options = {"keepalive": 0.3, "rotate_after": 0.8, "heartbeat": 0.1}
        async with session.stream(jobs, **options) as updates:  # type: ignore[arg-type]
            with anyio.move_on_after(2.6):
                async for update in updates:
                    assert update.error is None, update.error
        keepalives = simulated.stats.by_endpoint["pm_listen_key_keepalive"]
        keepalives += simulated.stats.by_endpoint["pm_pro_listen_key_keepalive"]
    assert keepalives >= 6 * len(jobs)  # about 8 each: every 0.3 s for 2.6 s
    for account in simulated.accounts:
        assert simulated.stats.connections[account.name] >= 3  # the first, and one every 0.8 s


@pytest.mark.parametrize(
    ("product", "options", "within"),
    [
        ("pm", {"keepalive": 0.5}, 0.5 + 0.5),  # a keepalive period, and a connection
        ("pm_pro", {"silent_after": 0.3}, 2 * 0.3 + 0.5),  # a few update periods, the same
    ],
    ids=["PM: by its keepalive", "PM Pro: by its missing updates"],
)
@pytest.mark.simulated(accounts=3, seed=7, push_every=0.1, risk_every=60)
async def test_a_silently_expired_key_is_replaced_and_loses_nothing_after(
    simulated: SimulatedExchange, product: str, options: dict[str, float], within: float
) -> None:
    async with Session(base_url=simulated.base_url, governor=simulated.governor()) as session:
        client = next(c for c, p in clients_of(session, simulated).items() if p == product)
        stream = session.stream({client: product}, **options)  # type: ignore[arg-type]
        async with stream as updates:
            await until_connected(updates, {client.name}, seconds=5)
            expired = time.monotonic()
            assert simulated.expire_listen_keys(client.name, notify=False) == 1
            await until_connected(updates, {client.name}, seconds=5)
            assert time.monotonic() - expired <= within
            assert await passes_marks(simulated, updates, client.name)


@pytest.mark.simulated(accounts=3, seed=7, push_every=0.1, risk_every=60)
async def test_a_pm_pro_stream_that_goes_quiet_with_its_key_alive_is_replaced(
    simulated: SimulatedExchange,
) -> None:
    async with Session(base_url=simulated.base_url, governor=simulated.governor()) as session:
        jobs = {c: p for c, p in clients_of(session, simulated).items() if c.name == "acct-0001"}
        (client,) = jobs
        async with session.stream(jobs, silent_after=0.3) as updates:
            await until_connected(updates, {client.name}, seconds=5)
            simulated.quiet_streams(client.name)
            seen: list[StreamUpdate] = []
            with anyio.fail_after(3):
                async for update in updates:
                    seen.append(update)
                    if update.connected:
                        break
            (failure,) = [u.error for u in seen if u.error is not None]
            assert isinstance(failure, TransportError)
            assert "no message for 0.3 s" in str(failure)


async def passes_marks(
    ex: SimulatedExchange, updates: AsyncIterator[StreamUpdate], name: str
) -> bool:
    """Every event pushed to the account from now on reaches the caller, in order."""
    marks = [str(n) for n in range(3)]
    for mark in marks:
        assert ex.push_event(name, {"e": "balanceUpdate", "a": "BTC", "d": mark}) == 1
    got: list[str] = []
    with anyio.fail_after(5):
        async for update in updates:
            if isinstance(update.event, OtherEvent):
                got.append(update.event.data["d"])
                if len(got) == len(marks):
                    break
    return got == marks


# -- one account's trouble -------------------------------------------------------------------


@pytest.mark.simulated(accounts=6, seed=7, risk_every=60, push_every=60)
async def test_one_accounts_pathological_message_leaves_every_stream_going(
    simulated: SimulatedExchange,
) -> None:
    async with Session(base_url=simulated.base_url, governor=simulated.governor()) as session:
        jobs = clients_of(session, simulated)
        names = {c.name for c in jobs}
        async with session.stream(jobs) as updates:
            await until_connected(updates, names, seconds=5)
            nested = b'{"e":"balanceUpdate","d":' + b"[" * 1_000 + b"]" * 1_000 + b"}"
            assert simulated.push_raw("acct-0000", nested) == 1
            for name in sorted(names):
                assert simulated.push_event(name, {"e": "balanceUpdate", "d": name}) == 1
            errors: list[StreamUpdate] = []
            got: set[str] = set()
            with anyio.fail_after(5):
                async for update in updates:
                    if update.error is not None:
                        errors.append(update)
                    elif isinstance(update.event, OtherEvent):
                        got.add(update.event.data["d"])
                        if got == names:
                            break
    assert [(u.name, type(u.error)) for u in errors] == [("acct-0000", DecodeError)]
    assert not [u for u in errors if u.final]


@pytest.mark.simulated(accounts=10, seed=7, risk_every=60)
async def test_a_host_that_accepts_then_closes_costs_few_connections_and_rest_calls(
    simulated: SimulatedExchange, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Thirty seconds of the exchange's time in four: the backoff 7.5 times as fast.
    monkeypatch.setattr(binance_pm._streams, "RETRY_BASE", 0.5 / 7.5)
    monkeypatch.setattr(binance_pm._streams, "RETRY_CEILING", 30.0 / 7.5)
    async with Session(base_url=simulated.base_url, governor=simulated.governor()) as session:
        clients = [c for c, p in clients_of(session, simulated).items() if p == "pm_pro"]
        simulated.hang_up_streams(1011)
        polled = session.poll(clients, "pm_pro_account", stream=True, reconcile_every=60)
        async with polled as updates:
            with anyio.move_on_after(4.0):
                async for _ in updates:
                    pass
    for client in clients:
        assert 2 <= simulated.stats.connections[client.name] <= 9
    # Each account: its first REST answer, and at most one gap fill in the period.
    assert simulated.stats.by_endpoint["pm_pro_account"] <= 2 * len(clients)


async def test_a_refused_handshake_is_waited_out_for_its_retry_after() -> None:
    limits = Limits(ws_connect=2, ws_window=60.0)
    async with (
        SimulatedExchange(accounts=3, seed=7, limits=limits) as ex,
        # The governor believes in more attempts than the exchange allows.
        Session(base_url=ex.base_url, governor=Governor(window=ex.window)) as session,
    ):
        jobs = clients_of(session, ex)
        errors: list[StreamUpdate] = []
        async with session.stream(jobs) as updates:
            with anyio.move_on_after(1.5):
                async for update in updates:
                    if update.error is not None:
                        errors.append(update)
        state = session.governor.snapshot()["ws_connect"]
    assert [type(u.error) for u in errors] == [RateLimitError]
    assert ex.stats.ws_attempts == 3  # the third was refused, and nothing tried again
    assert ex.stats.ws_banned == 0
    assert state.rejections == 1


# -- keys at the end -------------------------------------------------------------------------


async def test_a_thousand_keys_are_closed_on_an_ordinary_exit() -> None:
    limits = Limits(ws_connect=2_000, ws_window=1.0)
    async with SimulatedExchange(accounts=1_120, seed=4, limits=limits, risk_every=60) as ex:
        async with Session(base_url=ex.base_url, governor=ex.governor()) as session:
            jobs = {c: p for c, p in clients_of(session, ex, skip_rsa=True).items()}
            jobs = dict(list(jobs.items())[:1_000])
            async with session.stream(jobs) as updates:
                await until_connected(updates, {c.name for c in jobs}, seconds=30)
                assert len(ex.streams.keys) == 1_000
        left = len(ex.streams.keys)
    assert left <= 10  # at least 99 % closed


async def test_keys_are_closed_on_exit_while_a_poll_keeps_their_budget_full() -> None:
    # papi: 1,000 weight a second; 500 PM accounts polling pm_balance (20 each) want 10,000.
    limits = Limits(papi_ip=1_000, ws_connect=2_000, ws_window=1.0)
    async with SimulatedExchange(accounts=1_700, seed=4, limits=limits, window=1.0) as ex:
        async with Session(base_url=ex.base_url, governor=ex.governor()) as session:
            pm = [c for c, p in clients_of(session, ex, skip_rsa=True).items() if p == "pm"][:500]
            assert len(pm) == 500
            polled = session.poll(pm, "pm_balance", every=0.01)
            async with (
                polled as polls,
                session.stream(dict.fromkeys(pm, "pm")) as updates,
            ):
                await until_connected(updates, {c.name for c in pm}, seconds=30)
                full = 0
                with anyio.fail_after(10):
                    async for _ in polls:
                        papi = session.governor.snapshot()["papi_ip"]
                        full = full + 1 if papi.used >= papi.limit - 20 else 0
                        if full >= 20:
                            break  # the budget is full, and stays so
                assert len(ex.streams.keys) == 500
        left = len(ex.streams.keys)
    assert left == 0
    assert ex.stats.by_status.get(429, 0) == 0


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    with running_server() as running:
        yield running


async def test_two_processes_on_the_same_accounts_one_exits_the_others_streams_go_on(
    redis_server: RedisServer,
) -> None:
    prefix = f"keys{time.monotonic_ns()}"
    stores: list[RedisStore] = []
    async with SimulatedExchange(accounts=4, seed=7, push_every=60, risk_every=60) as ex:

        def desk() -> Session:  # a process of the desk: its budgets shared through Redis
            stores.append(RedisStore(redis_server.url, prefix=prefix))
            governor = Governor(store=stores[-1], window=ex.window)
            return Session(base_url=ex.base_url, governor=governor)

        async with desk() as staying:
            jobs = clients_of(staying, ex)
            names = {c.name for c in jobs}
            async with staying.stream(jobs) as updates:
                await until_connected(updates, names, seconds=10)
                async with desk() as leaving:
                    others = clients_of(leaving, ex)
                    async with leaving.stream(others) as theirs:
                        await until_connected(theirs, names, seconds=10)
                    # It left: its keys, which are the same as this one's, live on.
                    assert len(ex.streams.keys) == len(names)
                for name in sorted(names):
                    assert ex.push_event(name, {"e": "balanceUpdate", "d": name}) >= 1
                got: set[str] = set()
                with anyio.fail_after(5):
                    async for update in updates:
                        assert update.error is None, update.error
                        assert not update.connected  # never dropped
                        if isinstance(update.event, OtherEvent):
                            got.add(update.event.data["d"])
                            if got == names:
                                break
    for store in stores:
        await store.aclose()


async def test_keys_are_closed_at_the_end_unless_a_shared_store_says_others_may_share_them(
    redis_server: RedisServer,
) -> None:
    store = RedisStore(redis_server.url, prefix="k")
    async with (
        Session(base_url="http://127.0.0.1:1") as alone,
        Session(base_url="http://127.0.0.1:1", governor=Governor(store=store)) as shared,
    ):
        assert alone._keeps_keys(None) is True
        assert shared._keeps_keys(None) is False
        assert shared._keeps_keys(True) is True
    await store.aclose()


# -- hostile hosts ---------------------------------------------------------------------------


KEY = b"A" * 64


async def first_update(server: HostileServer) -> StreamUpdate:
    async with Session(base_url=server.url, timeout=2.0) as session:
        client = session.client(HMAC_API_KEY, secret=HMAC_SECRET)
        async with session.stream([client], close_keys=False) as updates:
            with anyio.fail_after(5):
                return await updates.__anext__()


async def test_a_redirected_handshake_is_not_followed(
    scripted: HostileServer, witness: HostileServer
) -> None:
    location = b"{witness}/pm-classic/ws/" + KEY
    scripted.push(
        Answer(body=Raw(b'{"listenKey":"' + KEY + b'"}')),
        Answer(status=302, reason=b"Found", headers=((b"Location", location),), body=Raw(b"")),
    )
    update = await first_update(scripted)
    assert isinstance(update.error, TransportError)
    assert "redirected (HTTP 302)" in str(update.error)
    assert witness.requests == []


@pytest.mark.parametrize(
    "key", [b"../../../admin/x", b"k?x=1&y=2" + b"A" * 20, b"A" * 300, b"", b"A" * 40 + b"\\u00e9"]
)
async def test_a_listen_key_that_is_not_one_never_reaches_a_url(
    scripted: HostileServer, key: bytes
) -> None:
    scripted.push(Answer(body=Raw(b'{"listenKey":"' + key + b'"}')))
    update = await first_update(scripted)
    assert isinstance(update.error, DecodeError)
    assert "not one" in str(update.error)
    assert {r.method for r in scripted.requests} == {"POST"}  # no handshake was tried


async def test_processes_sharing_a_store_share_one_budget_of_connection_attempts(
    redis_server: RedisServer,
) -> None:
    prefix = f"ws{time.monotonic_ns()}"
    stores = [RedisStore(redis_server.url, prefix=prefix) for _ in range(2)]
    limits = Limits(ws_connect=10, ws_window=1.0)
    governors = [Governor(store=store, limits=limits) for store in stores]
    granted: list[float] = []

    async def connect(governor: Governor) -> None:
        attempt = await governor.connections.acquire()
        granted.append(time.monotonic())
        await anyio.sleep(0.01)  # the handshake
        attempt.sent(101)
        await attempt.settle()

    with anyio.fail_after(10):
        async with anyio.create_task_group() as group:
            for governor in governors:
                for _ in range(15):
                    group.start_soon(connect, governor)
    for store in stores:
        await store.aclose()
    granted.sort()
    most = max(sum(1 for u in granted if t - 1.0 < u <= t) for t in granted)
    assert len(granted) == 30
    assert most <= 10  # each process alone would have let 15 go in the first second
    assert granted[-1] - granted[0] >= 2.0  # three windows' worth, not two processes' one


# -- combined streams ------------------------------------------------------------------------


@pytest.mark.simulated(accounts=30, seed=7, push_every=60, risk_every=60)
async def test_combined_streams_carry_many_accounts_on_few_connections(
    simulated: SimulatedExchange,
) -> None:
    async with Session(base_url=simulated.base_url, governor=simulated.governor()) as session:
        jobs = clients_of(session, simulated, skip_rsa=True)
        names = {c.name for c in jobs}
        stream = session.stream(jobs, streams_per_connection=8)
        async with stream as updates:
            await until_connected(updates, names, seconds=10)
            pm = sum(1 for p in jobs.values() if p == "pm")
            assert simulated.stats.ws_attempts == -(-pm // 8) + -(-(len(jobs) - pm) // 8)
            nested = b'{"e":"balanceUpdate","d":' + b"[" * 1_000 + b"]" * 1_000 + b"}"
            assert simulated.push_raw("acct-0000", nested) == 1
            for name in sorted(names):
                assert simulated.push_event(name, {"e": "balanceUpdate", "d": name}) == 1
            got: set[str] = set()
            errors: list[StreamUpdate] = []
            with anyio.fail_after(5):
                async for update in updates:
                    if update.error is not None:
                        errors.append(update)
                    elif isinstance(update.event, OtherEvent):
                        assert update.event.data["d"] == update.name  # its own account's
                        got.add(update.name)
                        if got == names:
                            break
    assert [(u.name, type(u.error)) for u in errors] == [("acct-0000", DecodeError)]


@pytest.mark.simulated(accounts=9, seed=7, push_every=60, risk_every=60)
async def test_a_key_that_expires_on_a_combined_stream_renews_its_line_and_loses_nothing(
    simulated: SimulatedExchange,
) -> None:
    async with Session(base_url=simulated.base_url, governor=simulated.governor()) as session:
        jobs = {c: p for c, p in clients_of(session, simulated).items() if p == "pm_pro"}
        names = {c.name for c in jobs}
        async with session.stream(jobs, streams_per_connection=10) as updates:
            await until_connected(updates, names, seconds=10)
            first = sorted(names)[0]
            assert simulated.expire_listen_keys(first) == 1
            await until_connected(updates, names, seconds=5)  # the line, back with a new key
            for name in sorted(names):
                assert await passes_marks(simulated, updates, name)
        assert simulated.stats.ws_attempts == 2


@pytest.mark.simulated(accounts=12, seed=7, combined_streams=False, risk_every=60)
async def test_a_host_without_combined_streams_is_followed_one_connection_per_account(
    simulated: SimulatedExchange,
) -> None:
    async with Session(base_url=simulated.base_url, governor=simulated.governor()) as session:
        jobs = clients_of(session, simulated, skip_rsa=True)
        names = {c.name for c in jobs}
        async with session.stream(jobs, streams_per_connection=50) as updates:
            await until_connected(updates, names, seconds=10)
        # One refused combined handshake per product at most, then one per account.
        assert len(names) < simulated.stats.ws_attempts <= len(names) + 2
        assert simulated.stats.ws_refused == simulated.stats.ws_banned == 0


async def test_streams_per_connection_is_checked() -> None:
    async with Session(base_url="http://127.0.0.1:1") as session:
        client = session.client(HMAC_API_KEY, secret=HMAC_SECRET)
        with pytest.raises(ValueError, match="1 to 100"):
            session.stream([client], streams_per_connection=0)
        with pytest.raises(TypeError, match="must be an int"):
            session.stream([client], streams_per_connection=2.0)  # type: ignore[arg-type]
