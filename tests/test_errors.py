"""Every error class from an exchange-shaped answer, and what is retried."""

from __future__ import annotations

import pickle
from datetime import datetime, timezone

import httpx
import pytest

import binance_pm._retry
from binance_pm import (
    APIError,
    AsyncClient,
    AuthError,
    BadRequestError,
    BinancePMError,
    DecodeError,
    IPBannedError,
    RateLimitError,
    ServerError,
    TimestampError,
    TransportError,
)

from .conftest import MockExchange
from .documented import error_body

PATH = "/sapi/v1/portfolio/account"

HTML_502 = (
    b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    b"<center><h1>502 Bad Gateway</h1></center>\r\n</body>\r\n</html>\r\n"
)


@pytest.fixture(autouse=True)
def quick_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(binance_pm._retry, "BASE_DELAY", 0.001)
    monkeypatch.setattr(binance_pm._retry, "OVERLOAD_BASE_DELAY", 0.001)


def sent(mocked: MockExchange) -> int:
    return sum(1 for r in mocked.requests if r.url.path == PATH)


@pytest.mark.parametrize(
    ("status", "body", "headers", "cls", "code"),
    [
        (
            429,
            error_body(
                -1003,
                "Too much request weight used; current limit is 180000 request "
                "weight per 1 MINUTE.",
            ),
            {"Retry-After": "17"},
            RateLimitError,
            -1003,
        ),
        (
            418,
            error_body(
                -1003,
                "Way too much request weight used; IP banned until 1660090423228. "
                "Please use WebSocket Streams for live updates to avoid bans.",
            ),
            {"Retry-After": "120"},
            IPBannedError,
            -1003,
        ),
        (401, error_body(-2014, "API-key format invalid."), {}, AuthError, -2014),
        (
            401,
            error_body(-2015, "Invalid API-key, IP, or permissions for action."),
            {},
            AuthError,
            -2015,
        ),
        (400, error_body(-1022, "Signature for this request is not valid."), {}, AuthError, -1022),
        (
            400,
            error_body(-1102, "Mandatory parameter 'asset' was not sent."),
            {},
            BadRequestError,
            -1102,
        ),
        (400, error_body(-1131, "recvWindow must be less than 60000."), {}, BadRequestError, -1131),
        (403, b"<html><body>Forbidden</body></html>", {}, BadRequestError, None),
        (
            503,
            error_body(-1008, "Request throttled by system-level protection."),
            {},
            ServerError,
            -1008,
        ),
        (502, HTML_502, {}, ServerError, None),
    ],
)
async def test_exchange_answers_become_their_error_class(
    client: AsyncClient,
    mocked: MockExchange,
    status: int,
    body: bytes,
    headers: dict[str, str],
    cls: type[APIError],
    code: int | None,
) -> None:
    mocked.push(PATH, *[(status, body, headers)] * 3)

    with pytest.raises(cls) as caught:
        await client.pm_pro_account()

    error = caught.value
    assert type(error) is cls
    assert error.status == status
    assert error.code == code
    assert error.endpoint == f"GET {PATH}"
    assert error.api_key == client.masked_key
    if "Retry-After" in headers:
        assert error.retry_after == float(headers["Retry-After"])


async def test_a_message_that_is_not_text_is_replaced_so_it_can_be_printed_and_logged(
    client: AsyncClient, mocked: MockExchange
) -> None:
    mocked.push(PATH, (400, b'{"code": -1100, "msg": "bad \\ud800 char \\u00e9"}', {}))

    with pytest.raises(BadRequestError) as caught:
        await client.pm_pro_account()

    assert caught.value.msg == "bad ? char \u00e9"  # the lone surrogate replaced, é kept
    str(caught.value).encode("utf-8")  # printable, loggable


async def test_html_502_message_is_the_page_text_without_tags(
    client: AsyncClient, mocked: MockExchange
) -> None:
    mocked.push(PATH, *[(502, HTML_502, {})] * 3)

    with pytest.raises(ServerError) as caught:
        await client.pm_pro_account()

    assert caught.value.msg.startswith("502 Bad Gateway")
    assert "<" not in str(caught.value)


async def test_ip_ban_says_until_when(client: AsyncClient, mocked: MockExchange) -> None:
    mocked.push(
        PATH,
        (
            418,
            error_body(
                -1003,
                "Way too much request weight used; IP banned "
                "until 1660090423228. Please use WebSocket Streams.",
            ),
            {"Retry-After": "120"},
        ),
    )

    with pytest.raises(IPBannedError) as caught:
        await client.pm_pro_account()

    assert caught.value.banned_until == datetime(
        2022, 8, 10, 0, 13, 43, 228000, tzinfo=timezone.utc
    )


async def test_truncated_json_body_is_a_decode_error(
    client: AsyncClient, mocked: MockExchange
) -> None:
    mocked.push(PATH, (200, b'{"uniMMR": "5167.92171923", "accountEq', {}))

    with pytest.raises(DecodeError, match="truncated") as caught:
        await client.pm_pro_account()

    assert caught.value.endpoint == f"GET {PATH}"
    assert sent(mocked) == 1  # a body that came whole but wrong is not retried


async def test_5xx_is_retried_and_then_succeeds(client: AsyncClient, mocked: MockExchange) -> None:
    mocked.push(PATH, (502, HTML_502, {}), (503, error_body(-1001, "Internal error"), {}))

    info = await client.pm_pro_account()

    assert info.uni_mmr is not None
    assert sent(mocked) == 3


async def test_5xx_gives_up_after_max_retries(client: AsyncClient, mocked: MockExchange) -> None:
    mocked.push(PATH, *[(500, error_body(-1000, "Unknown error"), {})] * 5)

    with pytest.raises(ServerError):
        await client.pm_pro_account()

    assert sent(mocked) == 1 + client.session.max_retries


@pytest.mark.parametrize("status", [400, 401, 403, 404, 408, 429, 418])
async def test_4xx_is_never_retried(client: AsyncClient, mocked: MockExchange, status: int) -> None:
    mocked.push(PATH, *[(status, error_body(-1100, "Illegal characters"), {})] * 3)

    with pytest.raises(APIError):
        await client.pm_pro_account()

    assert sent(mocked) == 1


async def test_transport_errors_are_retried_then_raised_as_transport_error(
    client: AsyncClient, mocked: MockExchange
) -> None:
    mocked.push(PATH, *[httpx.ConnectError("connection refused")] * 3)

    with pytest.raises(TransportError, match="ConnectError") as caught:
        await client.pm_pro_account()

    assert caught.value.endpoint == f"GET {PATH}"
    assert sent(mocked) == 3


async def test_transport_error_then_success(client: AsyncClient, mocked: MockExchange) -> None:
    mocked.push(PATH, httpx.ReadError("connection reset by peer"))

    info = await client.pm_pro_account()

    assert info.account_status == "NORMAL"


async def test_clock_skew_gets_one_resync_and_one_retry(
    client: AsyncClient, mocked: MockExchange
) -> None:
    await client.pm_pro_account()  # clock measured with no skew
    mocked.skew_ms = -20_000  # now the exchange is 20 s behind: our timestamps are "ahead"
    time_calls = mocked.time_calls

    info = await client.pm_pro_account()

    assert info.uni_mmr is not None
    assert mocked.time_calls == time_calls + client.session.clock.samples
    assert sent(mocked) == 3  # the first call, the refused try, the retry


async def test_persistent_timestamp_error_is_raised_after_one_resync(
    client: AsyncClient, mocked: MockExchange
) -> None:
    body = error_body(-1021, "Timestamp for this request is outside of the recvWindow.")
    mocked.push(PATH, *[(400, body, {})] * 3)

    with pytest.raises(TimestampError):
        await client.pm_pro_account()

    assert sent(mocked) == 2


def test_every_error_is_a_binance_pm_error() -> None:
    for cls in (
        APIError,
        RateLimitError,
        IPBannedError,
        AuthError,
        TimestampError,
        BadRequestError,
        ServerError,
        TransportError,
        DecodeError,
    ):
        assert issubclass(cls, BinancePMError)


@pytest.mark.parametrize(
    "error",
    [
        RateLimitError(
            429, -1003, "slow down", endpoint="GET /x", api_key="abcd…wxyz", retry_after=3.0
        ),
        TransportError("ReadError", endpoint="GET /x", api_key="abcd…wxyz"),
        DecodeError("Invalid decimal string", endpoint="GET /x", path="$.uniMMR"),
    ],
)
def test_errors_survive_pickling_for_multiprocess_callers(error: BinancePMError) -> None:
    copy = pickle.loads(pickle.dumps(error))

    assert type(copy) is type(error)
    assert str(copy) == str(error)
    assert vars(copy) == vars(error)
