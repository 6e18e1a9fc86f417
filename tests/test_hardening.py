"""No answer, header, clock value or input crashes a call, locks a budget or loops a request.

Each test here failed on the code before the hardening; the answers come from a real server on
loopback (an ASGI app served by uvicorn) unless the point is the governor's own arithmetic.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import time
from decimal import Decimal
from typing import Any

import httpx
import pytest

from binance_pm import (
    APIError,
    BadRequestError,
    BinancePMError,
    DecodeError,
    Governor,
    IPBannedError,
    RateLimitError,
    Session,
    SessionError,
    TransportError,
    Update,
)
from binance_pm._clock import ExchangeClock
from binance_pm._endpoints import PM_BALANCE, PM_PRO_ACCOUNT
from binance_pm._headers import LONGEST_BAN, retry_after_seconds, used_weights
from binance_pm._updates import default_priority

from .conftest import Account, Stack
from .documented import fixture_bytes
from .scripted import answering, serve

FAR = 1e9


# -- input ----------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", ["\x00", "\x0b", "\x0c", "\x1b", "\x7f", " ", "é"])
async def test_an_api_key_a_header_cannot_carry_is_refused_at_once(
    bad: str, http_stack: Stack
) -> None:
    async with Session(**http_stack) as s:
        with pytest.raises(ValueError, match="header"):
            s.client(f"abcd{bad}efgh1234", secret="s")


async def test_a_secret_that_is_not_text_or_bytes_is_a_type_error(http_stack: Stack) -> None:
    async with Session(**http_stack) as s:
        with pytest.raises(TypeError, match="secret"):
            s.client("abcdefgh1234", secret=12345)  # type: ignore[arg-type]


@pytest.mark.parametrize("seconds", [math.inf, math.nan, -1.0, 0.0, 1e300])
def test_a_timeout_that_is_not_a_finite_positive_time_is_refused(seconds: float) -> None:
    with pytest.raises(ValueError, match="timeout"):
        Session(timeout=seconds)


async def test_a_timeout_of_infinity_for_one_call_is_refused(
    accounts: dict[str, Account], http_stack: Stack
) -> None:
    account = accounts["HMAC"]
    async with Session(base_url="http://127.0.0.1:9", **http_stack) as s:
        client = s.client(account.api_key, **account.credentials())
        with pytest.raises(ValueError, match="timeout"):
            await client.pm_pro_account(timeout=math.inf)


def test_the_repr_of_a_session_hides_credentials_in_its_url() -> None:
    session = Session(base_url="http://user:hunter2@127.0.0.1:8000")
    assert "hunter2" not in repr(session)
    assert "user" not in repr(session)


# -- headers ----------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["inf", "1e999", "-inf", "nan", "1" * 400])
def test_retry_after_is_capped_at_the_longest_documented_ban(value: str) -> None:
    seconds = retry_after_seconds({"Retry-After": value})
    assert seconds is None or 0 <= seconds <= LONGEST_BAN


def test_a_used_weight_of_hundreds_of_digits_is_ignored() -> None:
    assert used_weights({"X-MBX-USED-WEIGHT-1M": "9" * 309}, "papi") == {}
    assert used_weights({"X-MBX-USED-WEIGHT-1M": "120"}, "papi") == {"ip": 120}


async def test_a_418_with_an_infinite_retry_after_shuts_the_family_for_at_most_three_days() -> None:
    gov = Governor()
    permit = await gov.acquire(PM_BALANCE, account="a", deadline=FAR)
    permit.complete(418, {"Retry-After": "inf"})
    state = gov.snapshot()["papi_ip"]
    assert 0 < state.closed_for <= LONGEST_BAN
    with pytest.raises(IPBannedError):  # typed, at once: no OverflowError for later calls
        await gov.acquire(PM_BALANCE, account="a", deadline=time.monotonic() + 1)


async def test_a_retry_after_of_31_years_is_capped_and_reopen_opens_it_by_hand() -> None:
    gov = Governor()
    permit = await gov.acquire(PM_PRO_ACCOUNT, account="acct", deadline=FAR)
    permit.complete(429, {"Retry-After": "1000000000", "X-SAPI-USED-UID-WEIGHT-1M": "180000"})
    name = next(n for n in gov.snapshot() if n.startswith("sapi_uid"))
    assert 0 < gov.snapshot()[name].closed_for <= LONGEST_BAN

    gov.reopen(name)

    assert gov.snapshot()[name].closed_for == 0
    with pytest.raises(KeyError):
        gov.reopen("no_such_budget")


async def test_retry_after_zero_still_shuts_the_budget_for_a_moment() -> None:
    gov = Governor()
    permit = await gov.acquire(PM_BALANCE, account="a", deadline=FAR)
    permit.complete(429, {"Retry-After": "0", "X-MBX-USED-WEIGHT-1M": "6000"})
    assert gov.snapshot()["papi_ip"].closed_for > 0.5
    assert gov.try_acquire(PM_BALANCE, account="a") is None


def test_uid_budget_names_of_keys_that_mask_alike_are_made_in_constant_time() -> None:
    gov = Governor()
    keys = [f"AAAA{i:08d}ZZZZ" for i in range(20_000)]
    started = time.perf_counter()
    for key in keys:
        gov.try_acquire(PM_PRO_ACCOUNT, account=key)  # each account's budget made
    elapsed = time.perf_counter() - started
    names = [name for name in gov.snapshot() if name.startswith("sapi_uid")]
    assert len(set(names)) == len(keys)
    assert names[:3] == ["sapi_uid:AAAA…ZZZZ", "sapi_uid:AAAA…ZZZZ#2", "sapi_uid:AAAA…ZZZZ#3"]
    assert elapsed < 10.0  # quadratic took minutes for this many; linear takes milliseconds


# -- answers over the wire -----------------------------------------------------------------


async def test_retry_after_zero_on_every_429_does_not_loop(
    accounts: dict[str, Account], http_stack: Stack
) -> None:
    account = accounts["HMAC"]
    refusal = json.dumps({"code": -1003, "msg": "Too much request weight used"}).encode()
    handler = answering(429, refusal, [(b"retry-after", b"0")])
    async for base_url, app in serve(handler):
        async with Session(
            base_url=base_url, timeout=5.0, governor=Governor(window=6.0), **http_stack
        ) as s:
            client = s.client(account.api_key, **account.credentials())
            with pytest.raises(RateLimitError):
                await client.pm_balance()
        # At most MAX_REFUSED_ATTEMPTS requests, each after a shut of a tenth of the window.
        assert app.sent("/papi/v1/balance") <= 3


async def test_a_418_without_retry_after_is_shut_until_the_time_its_body_names(
    accounts: dict[str, Account],
    http_stack: Stack,
) -> None:
    account = accounts["HMAC"]
    until = time.time_ns() // 10**6 + 600_000  # banned ten minutes
    body = json.dumps(
        {"code": -1003, "msg": f"Way too much request weight used; IP banned until {until}."}
    )
    async for base_url, app in serve(answering(418, body.encode())):
        gov = Governor(window=2.0)
        async with Session(base_url=base_url, timeout=1.0, governor=gov, **http_stack) as s:
            client = s.client(account.api_key, **account.credentials())
            with pytest.raises(IPBannedError) as caught:
                await client.pm_balance()
            assert 590 <= gov.snapshot()["papi_ip"].closed_for <= 600
            with pytest.raises(IPBannedError):
                await client.pm_balance()
        assert app.sent("/papi/v1/balance") == 1  # not again into a ten-minute ban
        assert caught.value.retry_after is not None
        assert caught.value.retry_after > 500


async def test_a_418_whose_body_names_a_time_ages_away_is_capped_and_never_raises(
    accounts: dict[str, Account],
    http_stack: Stack,
) -> None:
    account = accounts["HMAC"]
    body = b'{"code": -1003, "msg": "IP banned until 9999999999999999."}'
    async for base_url, _app in serve(answering(418, body)):
        gov = Governor(window=2.0)
        async with Session(base_url=base_url, timeout=1.0, governor=gov, **http_stack) as s:
            client = s.client(account.api_key, **account.credentials())
            with pytest.raises(IPBannedError) as caught:
                await client.pm_balance()
        assert gov.snapshot()["papi_ip"].closed_for <= LONGEST_BAN
        str(caught.value.banned_until)  # never raises


async def test_an_error_body_in_a_200_is_the_exchanges_error(
    accounts: dict[str, Account], http_stack: Stack
) -> None:
    account = accounts["HMAC"]
    body = b'{"code": -1000, "msg": "An unknown error occurred while processing the request."}'
    async for base_url, _app in serve(answering(200, body)):
        async with Session(base_url=base_url, max_retries=0, **http_stack) as s:
            client = s.client(account.api_key, **account.credentials())
            with pytest.raises(APIError) as caught:
                await client.pm_pro_account()
    assert caught.value.code == -1000
    assert not isinstance(caught.value, DecodeError)


async def test_a_redirect_is_reported_as_one_and_not_followed(
    accounts: dict[str, Account], http_stack: Stack
) -> None:
    account = accounts["HMAC"]
    elsewhere = [(b"location", b"http://127.0.0.2:9/papi/v1/balance?signature=abc")]
    async for base_url, app in serve(answering(302, b"", elsewhere)):
        async with Session(base_url=base_url, **http_stack) as s:
            client = s.client(account.api_key, **account.credentials())
            with pytest.raises(
                BadRequestError, match=r"redirect to http://127\.0\.0\.2:9"
            ) as caught:
                await client.pm_balance()
        assert "signature" not in str(caught.value)
        assert app.sent("/papi/v1/balance") == 1


async def test_a_caller_httpx_client_logs_no_signature(
    accounts: dict[str, Account], caplog: pytest.LogCaptureFixture
) -> None:
    account = accounts["HMAC"]
    caplog.set_level(logging.DEBUG)
    body = fixture_bytes("sapi_v1_portfolio_account.json")
    async for base_url, _app in serve(answering(200, body)):
        async with httpx.AsyncClient() as http, Session(base_url=base_url, http=http) as s:
            client = s.client(account.api_key, **account.credentials())
            await client.pm_pro_account()
    texts = [record.getMessage() for record in caplog.records]
    assert any("/sapi/v1/portfolio/account" in text for text in texts)  # httpx did log it
    assert not any("signature=" in t and "signature=<hidden>" not in t for t in texts)


# -- the exchange clock --------------------------------------------------------------------


@pytest.mark.parametrize("reading", [10**30, -(10**15), 0, 10**5])
async def test_an_implausible_server_time_is_a_decode_error_and_the_offset_stays(
    reading: int,
) -> None:
    clock = ExchangeClock(samples=1)

    async def good() -> int:
        return time.time_ns() // 10**6 + 1000

    async def bad() -> int:
        return reading

    await clock.resync(good, seen=clock.generation)
    offset = clock.offset_ms
    with pytest.raises(DecodeError, match="serverTime"):
        await clock.resync(bad, seen=clock.generation)
    assert clock.offset_ms == offset


# -- lifecycle -------------------------------------------------------------------------------


async def test_closing_a_session_with_calls_in_flight_ends_them_with_a_typed_error(
    accounts: dict[str, Account],
    http_stack: Stack,
) -> None:
    account = accounts["HMAC"]
    release = asyncio.Event()

    async def stall(path: str, query: dict[str, str]) -> Any:
        await release.wait()
        return 200, [], fixture_bytes("sapi_v1_portfolio_account.json")

    async for base_url, _app in serve(stall):
        s = Session(base_url=base_url, max_retries=0, timeout=5.0, **http_stack)
        client = s.client(account.api_key, **account.credentials())
        calls = [asyncio.ensure_future(client.pm_pro_account()) for _ in range(3)]
        await asyncio.sleep(0.3)
        closed = time.monotonic()
        await s.aclose()
        results = await asyncio.gather(*calls, return_exceptions=True)
        release.set()
        assert all(isinstance(r, BinancePMError) for r in results), results
        # At once, not at the calls' deadline (5 s): httpx lets a request run on when its
        # client closes, so the Session cancels its own.
        assert time.monotonic() - closed < 2.0
        with pytest.raises(SessionError):
            await client.pm_pro_account()
        with pytest.raises(SessionError):
            s.client(account.api_key, **account.credentials())


# -- polling -------------------------------------------------------------------------------


@pytest.mark.parametrize("ratio", ["sNaN", "NaN", "Infinity"])
def test_default_priority_never_raises(ratio: str) -> None:
    class Result:
        account_status = None
        uni_mmr = Decimal(ratio)

    update = Update(client=None, endpoint="pm_pro_account", result=Result(), error=None, at=0.0)  # type: ignore[arg-type]
    assert default_priority(update) == math.inf


async def test_an_answer_longer_than_max_body_is_refused(
    accounts: dict[str, Account], http_stack: Stack
) -> None:
    account = accounts["HMAC"]
    huge = b'{"padding": "' + b"x" * 200_000 + b'"}'
    async for base_url, _app in serve(answering(200, huge)):
        async with Session(base_url=base_url, max_body=65_536, max_retries=0, **http_stack) as s:
            client = s.client(account.api_key, **account.credentials())
            with pytest.raises(TransportError, match="longer than 65,536 bytes"):
                await client.pm_pro_account()


async def test_a_proxy_carries_every_request_when_one_is_set(
    accounts: dict[str, Account], monkeypatch: pytest.MonkeyPatch, http_stack: Stack
) -> None:
    account = accounts["HMAC"]
    body = fixture_bytes("sapi_v1_portfolio_account.json")
    lines: list[bytes] = []

    async def proxy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            await answer_all(reader, writer)
        writer.close()

    async def answer_all(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while request := await reader.readuntil(b"\r\n\r\n"):
            lines.append(request.split(b"\r\n", 1)[0])
            answer = body
            if b"/api/v3/time" in lines[-1]:
                answer = json.dumps({"serverTime": time.time_ns() // 10**6}).encode()
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                + f"Content-Length: {len(answer)}\r\n\r\n".encode()
                + answer
            )
            await writer.drain()

    server = await asyncio.start_server(proxy, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("NO_PROXY", "")
    try:
        # Nothing listens at exchange.invalid: only the proxy can have answered.
        async with httpx.AsyncClient() as http:
            # Made here, after the proxy is set: an httpx client reads it when it is made.
            options: Stack = {"http": http} if "http" in http_stack else {}
            async with Session(base_url="http://exchange.invalid", **options) as s:
                info = await s.client(account.api_key, **account.credentials()).pm_pro_account()
        assert info.uni_mmr is not None
        assert lines[-1].startswith(b"GET http://exchange.invalid/sapi/v1/portfolio/account?")
    finally:
        server.close()
        await server.wait_closed()
