"""The streams' heartbeat, over loopback: a connection that goes dead without closing (the
network drops every packet, as a cut cable or a vanished NAT entry does) is found by its
unanswered ping and connected anew; a quiet live one is pinged, answers, and is kept; the
exchange's pings are answered."""

from __future__ import annotations

import asyncio
import contextlib
import time

import anyio
import pytest

from binance_pm import Session, StreamUpdate, TransportError
from binance_pm.testing import SimulatedExchange


class Relay:
    """A TCP relay on loopback in front of ``upstream``; :meth:`freeze` makes every connection
    open now drop what either side sends, without closing it."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.frozen: set[asyncio.StreamWriter] = set()
        self.open: set[asyncio.StreamWriter] = set()
        self.connections = 0
        self.server: asyncio.Server | None = None
        self.tasks: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> Relay:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        for writer in self.open:
            writer.close()
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.server.wait_closed()

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"ws://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    def freeze(self) -> None:
        self.frozen |= self.open

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        self.open |= {writer, up_writer}
        for source, sink, key in ((reader, up_writer, writer), (up_reader, writer, up_writer)):
            task = asyncio.create_task(self._pipe(source, sink, key))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def _pipe(
        self, source: asyncio.StreamReader, sink: asyncio.StreamWriter, key: asyncio.StreamWriter
    ) -> None:
        with contextlib.suppress(OSError):
            while data := await source.read(65536):
                if key not in self.frozen:  # frozen: what comes is dropped, nothing closes
                    sink.write(data)
            sink.close()


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1].split("/")[0])


@pytest.mark.simulated(accounts=3, seed=11, risk_every=60, ping_every=3600)
async def test_a_dead_connection_is_found_by_its_unanswered_ping_and_connected_anew(
    simulated: SimulatedExchange,
) -> None:
    heartbeat = 0.4
    async with (
        Relay(port_of(simulated.base_url)) as relay,
        Session(base_url=simulated.base_url, governor=simulated.governor()) as session,
    ):
        account = next(a for a in simulated.accounts if a.account_type.value == "PM_2")
        client = session.client(account.api_key, name=account.name, **account.credentials())
        async with session.stream([client], "pm", url=relay.url, heartbeat=heartbeat) as feed:
            seen: list[StreamUpdate] = []
            with anyio.fail_after(10):
                async for update in feed:
                    assert update.error is None, update.error
                    if update.connected:
                        break
                # A quiet live connection is pinged, answers, and is kept.
                with anyio.move_on_after(4 * heartbeat):
                    async for update in feed:
                        seen.append(update)
                assert seen == []
                assert relay.connections == 1
                relay.freeze()
                frozen = time.monotonic()
                async for update in feed:
                    seen.append(update)
                    if update.connected:
                        break
            found = [u for u in seen if u.error is not None]
            assert len(found) == 1
            assert isinstance(found[0].error, TransportError)
            assert "did not answer a ping" in str(found[0].error)
            assert time.monotonic() - frozen >= heartbeat  # not before it was due
            assert relay.connections == 2  # connected anew, through the relay


@pytest.mark.simulated(accounts=3, seed=11, risk_every=60, ping_every=0.1, pong_within=0.3)
async def test_the_exchanges_pings_are_answered_on_a_quiet_stream(
    simulated: SimulatedExchange,
) -> None:
    async with Session(base_url=simulated.base_url, governor=simulated.governor()) as session:
        account = next(a for a in simulated.accounts if a.account_type.value == "PM_2")
        client = session.client(account.api_key, name=account.name, **account.credentials())
        async with session.stream([client], "pm", heartbeat=3600) as feed:
            updates: list[StreamUpdate] = []
            with anyio.move_on_after(2.0):
                async for update in feed:
                    updates.append(update)
    assert [u.error for u in updates] == [None]  # connected once, never dropped
    assert simulated.stats.connections[account.name] == 1


@pytest.mark.simulated(accounts=3, seed=11, risk_every=60, push_every=0.002, ping_every=3600)
async def test_a_caller_slower_than_the_heartbeat_does_not_get_its_stream_failed(
    simulated: SimulatedExchange,
) -> None:
    """A caller that takes nothing for many heartbeats fills its buffer, and the reader waits
    for it without reading the socket: that connection is busy, not silent, and is kept."""
    heartbeat = 0.3
    async with Session(base_url=simulated.base_url, governor=simulated.governor()) as session:
        account = next(a for a in simulated.accounts if a.account_type.value == "PM_1")
        client = session.client(account.api_key, name=account.name, **account.credentials())
        async with session.stream([client], "pm_pro", heartbeat=heartbeat) as feed:
            with anyio.fail_after(10):
                async for update in feed:
                    assert update.error is None, update.error
                    if update.connected:
                        break
            await anyio.sleep(4.0)  # 1,000 updates fill the buffer in 2 s; then 2 s more
            errors = []
            taken = 0
            with anyio.move_on_after(1.0):
                async for update in feed:
                    taken += 1
                    if update.error is not None:
                        errors.append(update.error)
    assert taken >= 1000  # the buffer was full: the reader did wait
    assert errors == []
    assert simulated.stats.connections[account.name] == 1
