"""``Session.stream`` against the simulated exchange's WebSockets over loopback: typed events,
risk changes within a second, expiring keys and dropped connections recovered, rotation with
no gap, and nothing left open after the loop."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from decimal import Decimal

import anyio
import pytest

import binance_pm._stream_lines
from binance_pm import (
    AccountStatus,
    ListenKeyExpired,
    OtherEvent,
    PMAccount,
    PMProAccountUpdate,
    RiskLevelChange,
    Session,
    SessionError,
    StreamUpdate,
    Update,
)
from binance_pm._client import AsyncClient
from binance_pm._endpoints import STREAM_OF
from binance_pm.testing import SimulatedExchange

pytestmark = pytest.mark.simulated(accounts=6, seed=7, push_every=0.3)


def clients_of(session: Session, ex: SimulatedExchange) -> dict[AsyncClient, str]:
    jobs = {}
    for account in ex.accounts:
        client = session.client(account.api_key, name=account.name, **account.credentials())
        jobs[client] = STREAM_OF[account.account_type.value]
    return jobs


def of(ex: SimulatedExchange, kind: str) -> str:
    return next(a.name for a in ex.accounts if a.account_type.value == kind)


async def until(
    updates: AsyncIterator[StreamUpdate], wanted: object, seconds: float = 5.0
) -> list[StreamUpdate]:
    """Updates until one satisfies ``wanted`` (a callable), within ``seconds``."""
    seen = []
    with anyio.fail_after(seconds):
        async for update in updates:
            seen.append(update)
            if wanted(update):  # type: ignore[operator]
                return seen
    raise AssertionError("the stream ended")


async def test_events_of_both_products_decode_to_exact_values(simulated: SimulatedExchange) -> None:
    pm, pro = of(simulated, "PM_2"), of(simulated, "PM_1")
    async with Session(base_url=simulated.base_url, governor=simulated.governor()) as session:
        jobs = clients_of(session, simulated)
        async with session.stream(jobs) as updates:
            connected: set[str] = set()

            def all_connected(update: StreamUpdate) -> bool:
                if update.connected:
                    connected.add(update.name)
                return len(connected) == len(jobs)

            await until(updates, all_connected)
            simulated.push_event(
                pm,
                {
                    "e": "riskLevelChange",
                    "u": "1.19000000",
                    "s": "MARGIN_CALL",
                    "eq": "1,000.5",
                    "ae": "",
                    "m": "840.33613445",
                },
            )
            simulated.push_event(
                pro,
                {
                    "e": "PM_PRO_ACCOUNT_UPDATE",
                    "u": "3.25",
                    "eq": "1000",
                    "ae": "999.99",
                    "im": "10",
                    "mm": "5.00000001",
                    "avb": "900",
                    "vmw": "800",
                },
            )
            simulated.push_event(pro, {"e": "balanceUpdate", "a": "USDT", "d": "1.5"})
            got: dict[tuple[str, str], StreamUpdate] = {}

            def done(u: StreamUpdate) -> bool:
                if u.event is not None and u.name in (pm, pro):
                    got[u.name, u.event.event] = u
                return {
                    (pm, "riskLevelChange"),
                    (pro, "PM_PRO_ACCOUNT_UPDATE"),
                    (pro, "balanceUpdate"),
                } <= set(got)

            await until(updates, done)
    risk = got[pm, "riskLevelChange"]
    assert risk.product == "pm"
    assert isinstance(risk.event, RiskLevelChange)
    assert risk.event.level is AccountStatus.MARGIN_CALL
    assert risk.event.uni_mmr == Decimal("1.19000000")
    assert risk.event.account_equity == Decimal("1000.5")  # grouped digits read
    assert risk.event.actual_equity is None  # "" is None
    assert risk.event.maint_margin == Decimal("840.33613445")
    assert risk.event.event_time > 0
    update = got[pro, "PM_PRO_ACCOUNT_UPDATE"].event
    assert isinstance(update, PMProAccountUpdate)
    assert (update.uni_mmr, update.maint_margin, update.virtual_max_withdraw) == (
        Decimal("3.25"),
        Decimal("5.00000001"),
        Decimal("800"),
    )
    other = got[pro, "balanceUpdate"].event
    assert isinstance(other, OtherEvent)
    assert other.data["d"] == "1.5"


async def test_the_exchanges_own_pushes_match_its_rest_answers(
    simulated: SimulatedExchange,
) -> None:
    pro = of(simulated, "PM_1")
    async with Session(base_url=simulated.base_url, governor=simulated.governor()) as session:
        jobs = {c: p for c, p in clients_of(session, simulated).items() if c.name == pro}
        (client,) = jobs
        async with session.stream(jobs) as updates:
            seen = await until(updates, lambda u: isinstance(u.event, PMProAccountUpdate))
            rest = await client.pm_pro_account()
    pushed = seen[-1].event
    assert isinstance(pushed, PMProAccountUpdate)
    assert rest.account_maint_margin == pushed.maint_margin  # the same book behind both
    assert rest.uni_mmr is not None
    assert pushed.uni_mmr is not None
    assert abs(rest.uni_mmr - pushed.uni_mmr) / rest.uni_mmr < Decimal("0.1")


@pytest.mark.parametrize("kind", ["PM_2", "PM_1"])
async def test_a_risk_level_change_reaches_the_caller_within_a_second(
    simulated: SimulatedExchange, kind: str
) -> None:
    name = of(simulated, kind)
    async with Session(base_url=simulated.base_url, governor=simulated.governor()) as session:
        jobs = {c: p for c, p in clients_of(session, simulated).items() if c.name == name}
        async with session.stream(jobs) as updates:
            await until(updates, lambda u: u.connected)
            emitted = time.monotonic()
            simulated.set_uni_mmr(name, 1.07)  # REDUCE_ONLY, whatever it was
            seen = await until(
                updates,
                lambda u: (
                    isinstance(u.event, RiskLevelChange)
                    and u.event.level is AccountStatus.REDUCE_ONLY
                ),
            )
            delay = time.monotonic() - emitted
    assert delay < 1.0
    event = seen[-1].event
    assert isinstance(event, RiskLevelChange)
    assert event.event == ("riskLevelChange" if kind == "PM_2" else "RISK_LEVEL_CHANGE")
    assert event.uni_mmr is not None
    assert Decimal("1.0") < event.uni_mmr < Decimal("1.1")
    assert simulated.streams.risk_events[-1][1:] == (name, "REDUCE_ONLY")


async def test_an_expired_key_and_a_dropped_connection_are_recovered(
    simulated: SimulatedExchange,
) -> None:
    name = of(simulated, "PM_1")
    async with Session(base_url=simulated.base_url, governor=simulated.governor()) as session:
        jobs = {c: p for c, p in clients_of(session, simulated).items() if c.name == name}
        async with session.stream(jobs) as updates:
            await until(updates, lambda u: u.connected)
            first_key = next(iter(simulated.streams.keys))
            assert simulated.expire_listen_keys(name) == 1
            seen = await until(updates, lambda u: u.connected)
            assert any(isinstance(u.event, ListenKeyExpired) for u in seen)
            assert next(iter(simulated.streams.keys)) != first_key  # a new key
            await until(updates, lambda u: isinstance(u.event, PMProAccountUpdate))
            assert simulated.drop_streams(name) == 1
            seen = await until(updates, lambda u: u.connected)
            assert seen[-2].error is not None  # the drop is told, then the reconnection
            assert "stream closed" in str(seen[-2].error)
            # Events flow again after the reconnection, none lost from then on.
            sent = simulated.push_event(name, {"e": "balanceUpdate", "a": "BTC", "d": "0.1"})
            assert sent == 1
            await until(updates, lambda u: isinstance(u.event, OtherEvent))


async def test_rotation_replaces_the_connection_with_no_gap_and_no_duplicate(
    simulated: SimulatedExchange,
) -> None:
    name = of(simulated, "PM_1")
    async with Session(base_url=simulated.base_url, governor=simulated.governor()) as session:
        jobs = {c: p for c, p in clients_of(session, simulated).items() if c.name == name}
        events: list[StreamUpdate] = []
        async with session.stream(jobs, rotate_after=0.5) as updates:
            started = time.monotonic()
            async for update in updates:
                events.append(update)
                if time.monotonic() - started > 2.6:
                    break
    connected = [u for u in events if u.connected]
    assert len(connected) == 1  # rotations are not reconnections
    assert not [u for u in events if u.error is not None]
    pushes = [u.event.event_time for u in events if isinstance(u.event, PMProAccountUpdate)]
    assert len(pushes) == len(set(pushes))
    assert len(pushes) >= 6  # every 0.3 s for about 2.5 s, with four rotations


@pytest.mark.simulated(accounts=3, seed=7, listen_key_ttl=0.6, push_every=0.2)
async def test_keepalives_keep_a_short_lived_key(simulated: SimulatedExchange) -> None:
    name = of(simulated, "PM_1")
    async with Session(base_url=simulated.base_url, governor=simulated.governor()) as session:
        jobs = {c: p for c, p in clients_of(session, simulated).items() if c.name == name}
        events: list[StreamUpdate] = []
        async with session.stream(jobs, keepalive=0.2) as updates:
            started = time.monotonic()
            async for update in updates:
                events.append(update)
                if time.monotonic() - started > 1.5:
                    break
        assert simulated.stats.by_endpoint["pm_pro_listen_key_keepalive"] >= 4
    assert [u for u in events if u.connected] == events[:1]
    assert not [u for u in events if isinstance(u.event, ListenKeyExpired)]


async def test_leaving_the_loop_closes_every_socket_and_key_within_a_second(
    simulated: SimulatedExchange,
) -> None:
    async with Session(base_url=simulated.base_url, governor=simulated.governor()) as session:
        jobs = clients_of(session, simulated)
        async with session.stream(jobs) as updates:
            count = 0
            async for update in updates:
                count += update.connected
                if count == len(jobs):
                    break
            assert sum(len(s.sockets) for s in simulated.streams.keys.values()) == len(jobs)
            left = time.monotonic()
        assert time.monotonic() - left < 1.0
        assert simulated.streams.keys == {}  # every key closed, so every socket too
        assert not [t for t in asyncio.all_tasks() if t.get_name().startswith("binance_pm")]
        used = session.governor.snapshot()
        assert used["fapi_ip"].used >= 4  # the listen-key calls went through the governor
        assert used["papi_ip"].used >= 2


async def test_closing_the_session_ends_the_stream(simulated: SimulatedExchange) -> None:
    session = Session(base_url=simulated.base_url, governor=simulated.governor())
    jobs = clients_of(session, simulated)
    async with session.stream(jobs) as updates:
        first = await updates.__anext__()
        assert first.connected
        started = time.monotonic()
        await session.aclose()  # from inside: the close joins the stream's work
        assert simulated.streams.keys == {}  # the listen keys closed before it returned
        rest = [u async for u in updates]
    assert time.monotonic() - started < 1.5
    assert all(u.error is None for u in rest)
    assert not [t for t in asyncio.all_tasks() if t.get_name().startswith("binance_pm")]
    assert not [t for t in asyncio.all_tasks() if t.get_name().startswith("binance_pm")]


async def test_a_refused_key_ends_that_account_only(simulated: SimulatedExchange) -> None:
    pro = of(simulated, "PM_1")
    async with Session(base_url=simulated.base_url, governor=simulated.governor()) as session:
        jobs = {c: p for c, p in clients_of(session, simulated).items() if c.name == pro}
        wrong = session.client("Z" * 64, secret="0" * 64, name="wrong")
        jobs[wrong] = "pm_pro"
        pm_for_pro = next(c for c in jobs if c.name == pro)
        async with session.stream(jobs) as updates:
            seen = await until(updates, lambda u: u.final)
            assert seen[-1].name == "wrong"
            assert "-2015" in str(seen[-1].error)
            await until(updates, lambda u: u.client is pm_for_pro and u.event is not None)


async def test_bad_arguments_are_refused_at_once(simulated: SimulatedExchange) -> None:
    async with Session(base_url=simulated.base_url) as session, Session() as other:
        client = session.client("k" * 64, secret="s")
        with pytest.raises(ValueError, match="product must be"):
            session.stream([client], "spot")
        with pytest.raises(ValueError, match="not both"):
            session.stream({client: "pm"}, "pm")
        with pytest.raises(ValueError, match="no clients"):
            session.stream([])
        with pytest.raises(ValueError, match="another Session"):
            other.stream([client])
        with pytest.raises(ValueError, match="keepalive"):
            session.stream([client], keepalive=0)
        with pytest.raises(ValueError, match="product must be"):
            await client.listen_key("spot")


async def test_poll_with_streams_fills_a_gap_once_per_period_and_loses_nothing_after(
    simulated: SimulatedExchange,
) -> None:
    name = of(simulated, "PM_1")
    async with Session(base_url=simulated.base_url, governor=simulated.governor()) as session:
        account = next(a for a in simulated.accounts if a.name == name)
        client = session.client(account.api_key, name=name, **account.credentials())
        polled = session.poll([client], "pm_pro_account", stream=True, reconcile_every=60)
        async with polled as updates:
            first = await until_update(updates, lambda u: u.source == "rest")
            assert first.result is not None  # the first REST poll
            pushed = await until_update(updates, lambda u: u.source == "stream")
            assert isinstance(pushed.event, PMProAccountUpdate)
            assert pushed.result is None
            breaks: list[Callable[[str], int]] = [
                simulated.drop_streams,
                simulated.expire_listen_keys,
            ]
            for n, break_it in enumerate(breaks):
                calls = simulated.stats.by_endpoint["pm_pro_account"]
                assert break_it(name) == 1
                if n == 0:
                    # Long before the next reconciliation (60 s), one REST call fills the gap.
                    filled = await until_update(updates, lambda u: u.source == "rest", seconds=5)
                    assert filled.result is not None
                    assert filled.error is None
                    assert simulated.stats.by_endpoint["pm_pro_account"] == calls + 1
                else:
                    # Within a period of the last fill, the next waits for the period's end.
                    await until_update(updates, lambda u: isinstance(u.event, ListenKeyExpired))
                    with anyio.fail_after(5):
                        while not open_streams(simulated, name):
                            await simulated.streams.changed()
                # From then on, every event pushed reaches the caller.
                marks = []
                for n in range(3):
                    event = {"e": "balanceUpdate", "a": "BTC", "d": str(n)}
                    assert simulated.push_event(name, event) == 1
                    marks.append(str(n))
                got = await pushed_marks(updates, 3)
                assert got == marks
            assert simulated.stats.by_endpoint["pm_pro_account"] == calls  # none filled yet


@pytest.mark.parametrize("endpoint", ["pm_balance", "pm_account"])
async def test_poll_with_streams_passes_a_risk_change_within_a_second(
    simulated: SimulatedExchange, endpoint: str
) -> None:
    name = of(simulated, "PM_2")
    account = next(a for a in simulated.accounts if a.name == name)
    async with Session(base_url=simulated.base_url, governor=simulated.governor()) as session:
        client = session.client(account.api_key, name=name, **account.credentials())
        polled = session.poll([client], endpoint, stream=True, reconcile_every=60)
        async with polled as updates:
            answered = await until_update(updates, lambda u: u.source == "rest")
            if endpoint == "pm_account":  # a PM account's uniMMR, over REST
                assert isinstance(answered.result, PMAccount)
                assert answered.result.uni_mmr is not None
            for _ in range(100):  # the stream is connected when its socket is there
                if any(s.sockets for s in simulated.streams.keys.values()):
                    break
                await anyio.sleep(0.01)
            emitted = time.monotonic()
            simulated.set_uni_mmr(name, 1.02)
            risk = await until_update(updates, lambda u: isinstance(u.event, RiskLevelChange))
            assert time.monotonic() - emitted < 1.0
    assert risk.source == "stream"
    assert risk.endpoint == endpoint
    assert isinstance(risk.event, RiskLevelChange)
    assert risk.event.level is AccountStatus.ACTIVE_LIQUIDATION


async def test_poll_with_streams_refuses_an_endpoint_without_a_stream(
    simulated: SimulatedExchange,
) -> None:
    async with Session(base_url=simulated.base_url) as session:
        client = session.client("k" * 64, secret="s")
        with pytest.raises(ValueError, match="no user data stream"):
            session.poll([client], "classic_pm_account", asset="USDT", stream=True)
        with pytest.raises(ValueError, match="both PM and PM Pro"):
            session.poll({client: ["pm_balance", "pm_pro_account"]}, stream=True)


def open_streams(simulated: SimulatedExchange, name: str) -> int:
    index = next(i for i, a in enumerate(simulated.accounts) if a.name == name)
    return sum(len(k.sockets) for k in simulated.streams.keys.values() if k.account == index)


async def pushed_marks(updates: AsyncIterator[Update], count: int) -> list[str]:
    """The ``d`` of the next ``count`` pushed ``balanceUpdate`` events."""
    got: list[str] = []
    with anyio.fail_after(5):
        async for update in updates:
            if isinstance(update.event, OtherEvent):
                got.append(update.event.data["d"])
                if len(got) == count:
                    return got
    raise AssertionError("the poll ended")


async def until_update(
    updates: AsyncIterator[Update], wanted: Callable[[Update], bool], seconds: float = 5.0
) -> Update:
    with anyio.fail_after(seconds):
        async for update in updates:
            if wanted(update):
                return update
    raise AssertionError("the poll ended")


@pytest.mark.simulated(accounts=130, seed=5)
async def test_more_accounts_than_a_connection_pool_holds_all_connect(
    simulated: SimulatedExchange,
) -> None:
    async with Session(base_url=simulated.base_url, governor=simulated.governor()) as session:
        jobs = clients_of(session, simulated)
        connected: set[str] = set()
        async with session.stream(jobs) as updates:
            with anyio.fail_after(8):
                async for update in updates:
                    assert update.error is None, update.error
                    if update.connected:
                        connected.add(update.name)
                        if len(connected) == len(jobs):
                            break
        assert sum(len(s.sockets) for s in simulated.streams.keys.values()) == 0


async def test_a_keepalive_refused_for_a_silently_expired_key_opens_a_new_one(
    simulated: SimulatedExchange,
) -> None:
    name = of(simulated, "PM_1")
    async with Session(base_url=simulated.base_url, governor=simulated.governor()) as session:
        jobs = {c: p for c, p in clients_of(session, simulated).items() if c.name == name}
        async with session.stream(jobs, keepalive=0.3) as updates:
            await until(updates, lambda u: u.connected)
            first_key = next(iter(simulated.streams.keys))
            assert simulated.expire_listen_keys(name, notify=False) == 1
            seen = await until(updates, lambda u: u.connected, seconds=3)
            assert not any(isinstance(u.event, ListenKeyExpired) for u in seen)
            assert not any(u.error for u in seen)  # a -1125 is the cue, not a failure
            assert list(simulated.streams.keys) != [first_key]
            await until(updates, lambda u: isinstance(u.event, PMProAccountUpdate))
    assert simulated.stats.by_code.get(-1125, 0) >= 1


async def test_an_event_in_a_binary_frame_is_read_as_in_a_text_one(
    simulated: SimulatedExchange,
) -> None:
    name = of(simulated, "PM_1")
    async with Session(base_url=simulated.base_url, governor=simulated.governor()) as session:
        jobs = {c: p for c, p in clients_of(session, simulated).items() if c.name == name}
        async with session.stream(jobs) as updates:
            await until(updates, lambda u: u.connected)
            event = {"e": "balanceUpdate", "a": "BTC", "d": "0.5"}
            assert simulated.push_event(name, event, binary=True) == 1
            seen = await until(updates, lambda u: isinstance(u.event, OtherEvent))
    assert not [u for u in seen if u.error is not None]
    other = seen[-1].event
    assert isinstance(other, OtherEvent)
    assert other.data["d"] == "0.5"


async def test_an_expiry_whose_time_is_a_string_still_renews_the_key(
    simulated: SimulatedExchange,
) -> None:
    name = of(simulated, "PM_1")
    async with Session(base_url=simulated.base_url, governor=simulated.governor()) as session:
        jobs = {c: p for c, p in clients_of(session, simulated).items() if c.name == name}
        async with session.stream(jobs) as updates:
            await until(updates, lambda u: u.connected)
            # As the futures exchange has sent it: "E" as a string.
            simulated.push_event(name, {"e": "listenKeyExpired", "E": "1693427319838"})
            seen = await until(updates, lambda u: u.connected)
    expired = [u.event for u in seen if isinstance(u.event, ListenKeyExpired)]
    assert [e.event_time for e in expired] == [1693427319838]
    assert not [u for u in seen if u.error is not None]


async def test_keepalives_and_rotations_due_together_both_go_on(
    simulated: SimulatedExchange,
) -> None:
    name = of(simulated, "PM_1")
    async with Session(base_url=simulated.base_url, governor=simulated.governor()) as session:
        jobs = {c: p for c, p in clients_of(session, simulated).items() if c.name == name}
        # The rotation falls due while the first keepalive is out, and then both are late.
        stream = session.stream(jobs, keepalive=1.1, rotate_after=1.0)
        async with stream as updates:
            with anyio.move_on_after(3.6):
                async for update in updates:
                    assert update.error is None, update.error
    assert simulated.stats.by_endpoint["pm_pro_listen_key_keepalive"] >= 2


async def test_each_drop_after_a_good_connection_reconnects_as_fast_as_the_first(
    simulated: SimulatedExchange, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A connection that lived this long and carried a message is good: the backoff ends.
    monkeypatch.setattr(binance_pm._stream_lines, "GOOD_LIFE", 0.1)
    name = of(simulated, "PM_1")
    async with Session(base_url=simulated.base_url, governor=simulated.governor()) as session:
        jobs = {c: p for c, p in clients_of(session, simulated).items() if c.name == name}
        delays = []
        async with session.stream(jobs) as updates:
            await until(updates, lambda u: u.connected)
            for _ in range(5):
                await until(updates, lambda u: u.event is not None)  # it carried a message
                await anyio.sleep(0.15)  # and lived: a good connection between drops
                dropped = time.monotonic()
                assert simulated.drop_streams(name) == 1
                await until(updates, lambda u: u.connected)
                delays.append(time.monotonic() - dropped)
    # The backoff starts over after each good connection: no drop waits the fifth one's.
    assert max(delays) < 1.5, delays


async def test_a_stream_closed_with_its_session_before_it_began_ends_at_once(
    simulated: SimulatedExchange,
) -> None:
    session = Session(base_url=simulated.base_url, governor=simulated.governor())
    jobs = clients_of(session, simulated)
    running = session.stream(jobs)
    await session.aclose()
    with pytest.raises(SessionError, match="closed"):
        async with running:
            pass
    assert not [t for t in asyncio.all_tasks() if t.get_name().startswith("binance_pm")]


async def test_poll_with_streams_ends_when_the_session_closes_just_after_it_began(
    simulated: SimulatedExchange,
) -> None:
    session = Session(base_url=simulated.base_url, governor=simulated.governor())
    name = of(simulated, "PM_1")
    jobs = {c: p for c, p in clients_of(session, simulated).items() if c.name == name}
    (client,) = jobs
    async with session.poll([client], "pm_pro_account", stream=True) as updates:
        await updates.__anext__()
        await session.aclose()
        with anyio.fail_after(3):
            rest = [u async for u in updates]
    assert len(rest) < 5, rest
    assert not [t for t in asyncio.all_tasks() if t.get_name().startswith("binance_pm")]
