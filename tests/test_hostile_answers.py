"""Hostile answers, one at a time: each a way an exchange, a proxy or an attacker on the path
once crashed a call, leaked a signature, locked a budget or made the SDK hammer the exchange.

Each test scripts the ``scripted`` server, a raw loopback server (``tests/hostile.py``); those
that matter to either sending layer run on both (``http_stack``). The time endpoint, which the
clock asks, has a script of its own: good answers unless a test pushes others there. The header
readers are also tested on their own, beside the answers that carry those headers.
"""

from __future__ import annotations

import contextlib
import json
import time

import anyio
import httpx
import pytest

from binance_pm import (
    APIError,
    AsyncClient,
    BadRequestError,
    BinancePMError,
    DecodeError,
    Governor,
    IPBannedError,
    RateLimitError,
    Session,
    TransportError,
)
from binance_pm._headers import retry_after_seconds, used_weights

from .conftest import HMAC_API_KEY, HMAC_SECRET, Stack
from .documented import fixture_bytes
from .hostile import (
    Answer,
    ErrorJSON,
    HostileServer,
    Mutated,
    Nested,
    Raw,
    Request,
    Time,
    Truncated,
    error_text,
    leaks,
    sent_signatures,
    watch_logs,
)

#: A bound of the fix's choosing on the requests one refused call may send.
MAX_REFUSED_REQUESTS = 5
#: The longest ban the exchange documents: three days.
LONGEST_BAN = 3 * 24 * 3600.0


def _session(scripted: HostileServer, **options: object) -> Session:
    options.setdefault("timeout", 2.0)
    return Session(base_url=scripted.url, **options)  # type: ignore[arg-type]


def _client(session: Session) -> AsyncClient:
    return session.client(HMAC_API_KEY, secret=HMAC_SECRET)


def _account_requests(scripted: HostileServer) -> list[Request]:
    return [r for r in scripted.requests if not r.path.endswith("/time")]


def _sent(scripted: HostileServer, path: str) -> int:
    return sum(1 for r in scripted.requests if r.path == path)


def _secrets(scripted: HostileServer) -> list[str]:
    return [HMAC_API_KEY, HMAC_SECRET, *sent_signatures(scripted.requests)]


# -- redirects --------------------------------------------------------------------------------


@pytest.mark.parametrize("follows", [False, True], ids=["default stack", "following client"])
async def test_a_307_to_another_host_is_not_followed(
    scripted: HostileServer, witness: HostileServer, follows: bool
) -> None:
    scripted.push(Answer(status=307, headers=((b"Location", b"{witness}/stolen"),)))
    http = httpx.AsyncClient(follow_redirects=True) if follows else None
    try:
        async with _session(scripted, http=http) as session:
            with pytest.raises(BinancePMError):
                await _client(session).pm_balance()
    finally:
        if http is not None:
            await http.aclose()

    assert witness.requests == []


async def test_a_3xx_is_reported_as_a_redirect(scripted: HostileServer) -> None:
    scripted.push(Answer(status=302, body=Raw(b""), headers=((b"Location", b"/x"),)))

    async with _session(scripted) as session:
        with pytest.raises(BinancePMError) as caught:
            await _client(session).pm_balance()

    assert "redirect" in str(caught.value).lower()


async def test_a_redirect_is_reported_as_one_and_not_followed(
    scripted: HostileServer, http_stack: Stack
) -> None:
    elsewhere = b"http://127.0.0.2:9/papi/v1/balance?signature=abc"
    scripted.push(*[Answer(status=302, body=Raw(b""), headers=((b"Location", elsewhere),))] * 3)

    async with Session(base_url=scripted.url, **http_stack) as s:
        with pytest.raises(BadRequestError, match=r"redirect to http://127\.0\.0\.2:9") as caught:
            await _client(s).pm_balance()

    assert "signature" not in str(caught.value)
    assert _sent(scripted, "/papi/v1/balance") == 1


# -- misfiled answers -------------------------------------------------------------------------


async def test_a_200_with_code_and_msg_is_an_api_error_with_that_code(
    scripted: HostileServer,
) -> None:
    msg = b"An unknown error occurred while processing the request."
    scripted.push(Answer(status=200, body=ErrorJSON(b"-1000", msg)))

    async with _session(scripted) as session:
        with pytest.raises(APIError) as caught:
            await _client(session).pm_pro_account()

    assert caught.value.code == -1000


async def test_an_error_body_in_a_200_is_the_exchanges_error(
    scripted: HostileServer, http_stack: Stack
) -> None:
    body = b'{"code": -1000, "msg": "An unknown error occurred while processing the request."}'
    scripted.push(Answer(status=200, body=Raw(body)))

    async with Session(base_url=scripted.url, max_retries=0, **http_stack) as s:
        with pytest.raises(APIError) as caught:
            await _client(s).pm_pro_account()

    assert caught.value.code == -1000
    assert not isinstance(caught.value, DecodeError)


# -- bodies that crashed the decoder ----------------------------------------------------------


async def test_a_truncated_answer_with_an_empty_amount_is_a_decode_error(
    scripted: HostileServer,
) -> None:
    whole = fixture_bytes("papi_balance_list.json")
    assert b'""' in whole[:-20]  # the documented "" amount comes before the cut
    scripted.push(Answer(body=Truncated(len(whole) - 20)))

    async with _session(scripted) as session:
        with pytest.raises(DecodeError):
            await _client(session).pm_balance()


@pytest.mark.parametrize(
    ("answer", "from_clock"),
    [
        (Answer(body=Nested(5_000)), False),
        (Answer(body=Nested(5_000, objects=True)), False),
        (Answer(status=400, body=Nested(5_000, objects=True)), False),
        (Answer(status=429, body=Nested(5_000, objects=True)), False),
        (Answer(body=Nested(5_000, objects=True)), True),
    ],
    ids=["200 list", "200 object", "400 body", "429 body", "time endpoint"],
)
async def test_json_nested_5000_deep_is_a_typed_error(
    scripted: HostileServer, answer: Answer, from_clock: bool
) -> None:
    if from_clock:
        scripted.push_clock(answer)
    else:
        scripted.push(answer)

    async with _session(scripted, max_retries=0) as session:
        with pytest.raises(BinancePMError):
            await _client(session).pm_balance()


@pytest.mark.parametrize(
    "answer",
    [
        Answer(body=Mutated(0, b'"\xff\xfe"')),
        Answer(status=400, body=ErrorJSON(b"-1102", b"\xff\xfe bad")),
        Answer(status=429, body=ErrorJSON(b"-1003", b"\xff\xfe bad")),
    ],
    ids=["asset of a 200", "msg of a 400", "msg of a 429"],
)
async def test_invalid_utf8_is_a_typed_error(scripted: HostileServer, answer: Answer) -> None:
    scripted.push(answer)

    async with _session(scripted, timeout=0.5) as session:
        with pytest.raises(BinancePMError):
            await _client(session).pm_balance()


@pytest.mark.parametrize("amount", [b'"NaN"', b'"sNaN"', b'"Infinity"', b'"1e999999999"'])
async def test_a_non_finite_uni_mmr_is_a_decode_error_naming_the_field(
    scripted: HostileServer, amount: bytes
) -> None:
    scripted.push(Answer(body=Mutated(0, amount)))  # member 0 is uniMMR

    async with _session(scripted) as session:
        with pytest.raises(DecodeError) as caught:
            await _client(session).pm_pro_account()

    assert "uniMMR" in str(caught.value)


async def test_a_snan_uni_mmr_does_not_end_the_poll(scripted: HostileServer) -> None:
    scripted.push(Answer(body=Mutated(0, b'"sNaN"')))
    updates = []

    async with _session(scripted, timeout=1.0) as session:
        with anyio.fail_after(10):
            async with session.poll([_client(session)], "pm_pro_account", every=0.01) as poll:
                async for update in poll:
                    updates.append(update)
                    if len(updates) == 2:
                        break

    assert updates[0].error is not None
    assert updates[1].ok


async def test_an_answer_longer_than_max_body_is_refused(
    scripted: HostileServer, http_stack: Stack
) -> None:
    huge = b'{"padding": "' + b"x" * 200_000 + b'"}'
    scripted.push(Answer(status=200, body=Raw(huge)))

    async with Session(base_url=scripted.url, max_body=65_536, max_retries=0, **http_stack) as s:
        with pytest.raises(TransportError, match="longer than 65,536 bytes"):
            await _client(s).pm_pro_account()


# -- headers and times too big for a float or an int ------------------------------------------


@pytest.mark.parametrize("value", ["inf", "1e999", "-inf", "nan", "1" * 400])
def test_retry_after_is_capped_at_the_longest_documented_ban(value: str) -> None:
    seconds = retry_after_seconds({"Retry-After": value})
    assert seconds is None or 0 <= seconds <= LONGEST_BAN


def test_a_used_weight_of_hundreds_of_digits_is_ignored() -> None:
    assert used_weights({"X-MBX-USED-WEIGHT-1M": "9" * 309}, "papi") == {}
    assert used_weights({"X-MBX-USED-WEIGHT-1M": "120"}, "papi") == {"ip": 120}


@pytest.mark.parametrize(
    "value", [b"inf", b"1e999", b"9" * 400], ids=["inf", "1e999", "400 digits"]
)
async def test_an_infinite_retry_after_on_a_418_does_not_break_later_calls(
    scripted: HostileServer, value: bytes
) -> None:
    scripted.push(
        Answer(status=418, body=ErrorJSON(b"-1003", b"banned"), headers=((b"Retry-After", value),))
    )

    async with _session(scripted) as session:
        client = _client(session)
        with pytest.raises(IPBannedError):
            await client.pm_balance()
        with pytest.raises(IPBannedError):
            await client.pm_balance()  # the same family: still banned, and typed
        await client.pm_pro_account()  # another family: open


@pytest.mark.parametrize(
    "name", [b"X-MBX-USED-WEIGHT-1M", b"X-SAPI-USED-IP-WEIGHT-1M", b"X-SAPI-USED-UID-WEIGHT-1M"]
)
async def test_a_used_weight_header_of_400_digits_does_not_break_calls(
    scripted: HostileServer, name: bytes
) -> None:
    endpoint = "pm_balance" if name.startswith(b"X-MBX") else "pm_pro_account"
    scripted.push(Answer(headers=((name, b"9" * 400),)))

    async with _session(scripted, timeout=0.5) as session:
        call = getattr(_client(session), endpoint)
        assert await call() is not None  # the answer itself was good
        with contextlib.suppress(BinancePMError):  # the budget may now be taken as full
            await call()


@pytest.mark.parametrize("value", ["²".encode(), "١٢".encode(), "１２".encode()])
async def test_a_used_weight_header_of_unicode_digits_does_not_break_calls(
    scripted: HostileServer, value: bytes
) -> None:
    scripted.push(Answer(headers=((b"X-MBX-USED-WEIGHT-1M", value),)))

    async with _session(scripted) as session:
        assert await _client(session).pm_balance() is not None


async def test_a_429_with_an_unreadable_used_weight_still_shuts_its_budget(
    scripted: HostileServer,
) -> None:
    refused = Answer(
        status=429,
        body=ErrorJSON(b"-1003", b"Too many"),
        headers=((b"Retry-After", b"30"), (b"X-MBX-USED-WEIGHT-1M", "²".encode())),
    )
    scripted.push(*(refused for _ in range(50)))

    async with _session(scripted, timeout=1.0) as session:
        client = _client(session)
        for _ in range(10):
            with pytest.raises(RateLimitError):
                await client.pm_balance()

    assert len(_account_requests(scripted)) == 1


@pytest.mark.parametrize(
    "server_time",
    [b"9" * 400, b"1" + b"0" * 30, b"-1000000000000000", b"0"],
    ids=["400 digits", "10^30", "-10^15", "0"],
)
async def test_an_absurd_server_time_is_a_typed_error_and_signs_nothing(
    scripted: HostileServer, server_time: bytes
) -> None:
    scripted.push_clock(*(Answer(body=Time(server_time)) for _ in range(30)))

    async with _session(scripted, timeout=0.5) as session:
        with pytest.raises(BinancePMError):
            await _client(session).pm_balance()

    assert _account_requests(scripted) == []


async def test_an_absurd_server_time_keeps_the_last_good_offset(scripted: HostileServer) -> None:
    timestamp_error = ErrorJSON(
        b"-1021", b"Timestamp for this request is outside of the recvWindow."
    )
    scripted.push(Answer(), Answer(status=400, body=timestamp_error))

    async with _session(scripted) as session:
        client = _client(session)
        await client.pm_balance()
        offset = session.clock.offset_ms
        # The second call hears -1021 and measures again, from nonsense.
        scripted.push_clock(*(Answer(body=Time(b"1" + b"0" * 30)) for _ in range(10)))
        with contextlib.suppress(BinancePMError):
            await client.pm_balance()

        assert session.clock.offset_ms == offset
    now_ms = time.time() * 1000
    for request in _account_requests(scripted):
        assert abs(int(request.params["timestamp"]) - now_ms) < 60_000


# -- bans and shut budgets --------------------------------------------------------------------


async def test_a_retry_after_of_31_years_shuts_a_budget_for_at_most_3_days(
    scripted: HostileServer,
) -> None:
    governor = Governor()
    refused = Answer(
        status=429, body=ErrorJSON(b"-1003", b"Too many"), headers=((b"Retry-After", b"1e9"),)
    )
    scripted.push(refused)

    async with _session(scripted, governor=governor) as session:
        with pytest.raises(RateLimitError):
            await _client(session).pm_balance()

    assert 0 < governor.snapshot()["papi_ip"].closed_for <= LONGEST_BAN


async def test_a_418_without_retry_after_is_shut_until_the_time_its_body_says(
    scripted: HostileServer,
) -> None:
    governor = Governor(window=2)
    until_ms = int(time.time() * 1000) + 60_000
    msg = b"Way too much request weight used; IP banned until %d." % until_ms
    scripted.push(Answer(status=418, body=ErrorJSON(b"-1003", msg)))

    async with _session(scripted, governor=governor) as session:
        with pytest.raises(IPBannedError):
            await _client(session).pm_balance()

    assert 50 < governor.snapshot()["papi_ip"].closed_for <= 60


async def test_a_418_without_retry_after_is_shut_until_the_time_its_body_names(
    scripted: HostileServer, http_stack: Stack
) -> None:
    until = time.time_ns() // 10**6 + 600_000  # banned ten minutes
    body = json.dumps(
        {"code": -1003, "msg": f"Way too much request weight used; IP banned until {until}."}
    )
    scripted.push(*[Answer(status=418, body=Raw(body.encode()))] * 3)

    gov = Governor(window=2.0)
    async with Session(base_url=scripted.url, timeout=1.0, governor=gov, **http_stack) as s:
        client = _client(s)
        with pytest.raises(IPBannedError) as caught:
            await client.pm_balance()
        assert 590 <= gov.snapshot()["papi_ip"].closed_for <= 600
        with pytest.raises(IPBannedError):
            await client.pm_balance()

    assert _sent(scripted, "/papi/v1/balance") == 1  # not again into a ten-minute ban
    assert caught.value.retry_after is not None
    assert caught.value.retry_after > 500


@pytest.mark.parametrize("until", [b"9999999999999999", b"99999999999999999999", b"0000000000"])
async def test_banned_until_of_a_418_never_raises(scripted: HostileServer, until: bytes) -> None:
    msg = b"Way too much request weight used; IP banned until %s." % until
    scripted.push(
        Answer(status=418, body=ErrorJSON(b"-1003", msg), headers=((b"Retry-After", b"5"),))
    )

    async with _session(scripted) as session:
        with pytest.raises(IPBannedError) as caught:
            await _client(session).pm_balance()

    _ = caught.value.banned_until


async def test_a_418_whose_body_names_a_time_ages_away_is_capped_and_never_raises(
    scripted: HostileServer, http_stack: Stack
) -> None:
    body = b'{"code": -1003, "msg": "IP banned until 9999999999999999."}'
    scripted.push(*[Answer(status=418, body=Raw(body))] * 3)

    gov = Governor(window=2.0)
    async with Session(base_url=scripted.url, timeout=1.0, governor=gov, **http_stack) as s:
        with pytest.raises(IPBannedError) as caught:
            await _client(s).pm_balance()

    assert gov.snapshot()["papi_ip"].closed_for <= LONGEST_BAN
    str(caught.value.banned_until)  # never raises


@pytest.mark.parametrize("retry_after", [b"0", b"0.01"])
async def test_a_429_with_a_tiny_retry_after_on_every_request_does_not_hammer(
    scripted: HostileServer, retry_after: bytes
) -> None:
    refused = Answer(
        status=429, body=ErrorJSON(b"-1003", b"Too many"), headers=((b"Retry-After", retry_after),)
    )
    scripted.push(*(refused for _ in range(1_000)))

    async with _session(scripted, timeout=2.0) as session:
        with pytest.raises(BinancePMError):
            await _client(session).pm_balance()

    assert len(_account_requests(scripted)) <= MAX_REFUSED_REQUESTS


async def test_retry_after_zero_on_every_429_does_not_loop(
    scripted: HostileServer, http_stack: Stack
) -> None:
    refusal = json.dumps({"code": -1003, "msg": "Too much request weight used"}).encode()
    scripted.push(*[Answer(status=429, body=Raw(refusal), headers=((b"retry-after", b"0"),))] * 10)

    governor = Governor(window=6.0)
    async with Session(base_url=scripted.url, timeout=5.0, governor=governor, **http_stack) as s:
        with pytest.raises(RateLimitError):
            await _client(s).pm_balance()

    # At most MAX_REFUSED_ATTEMPTS requests, each after a shut of a tenth of the window.
    assert _sent(scripted, "/papi/v1/balance") <= 3


# -- signatures in errors and logs ------------------------------------------------------------


@pytest.mark.parametrize(
    "answer",
    [
        Answer(status_line=b"HTTP/1.1 abc OK"),
        Answer(raw_lines=(b"No-Colon-Here",)),
        Answer(framing="bad-chunk"),
        Answer(raw_lines=(b"X-Big: " + b"a" * 20_000,)),
        Answer(framing="long", end="close"),
    ],
    ids=["bad status line", "bad header line", "bad chunk", "oversized header", "cut body"],
)
async def test_a_transport_error_shows_no_signature(
    scripted: HostileServer, answer: Answer
) -> None:
    scripted.push(answer)

    with watch_logs() as logs:
        async with _session(scripted, max_retries=0) as session:
            with pytest.raises(TransportError) as caught:
                await _client(session).pm_balance()

    assert leaks(error_text(caught.value), _secrets(scripted)) == []
    assert [text for text in logs.texts if leaks(text, _secrets(scripted))] == []


async def test_no_log_record_at_debug_shows_a_signature(scripted: HostileServer) -> None:
    with watch_logs() as logs:
        async with _session(scripted) as session:
            await _client(session).pm_balance()

    assert _account_requests(scripted)  # one signed request went out
    assert [text for text in logs.texts if leaks(text, _secrets(scripted))] == []


async def test_an_error_page_that_quotes_the_request_shows_no_signature(
    scripted: HostileServer,
) -> None:
    echo = b"<html><body>400 Bad Request: GET %s</body></html>"

    async with _session(scripted) as session:
        client = _client(session)
        await client.pm_balance()  # to learn what a signed request looks like
        target = scripted.requests[-1].target.encode()
        scripted.push(Answer(status=400, body=Raw(echo % target)))
        with pytest.raises(APIError) as caught:
            await client.pm_balance()

    assert leaks(error_text(caught.value), _secrets(scripted)) == []


# -- the harness itself -----------------------------------------------------------------------


async def test_the_hostile_server_serves_its_script_in_order_then_good_answers(
    scripted: HostileServer,
) -> None:
    scripted.push(Answer(status=503, body=Raw(b"busy")), Answer(cut=0))

    async with httpx.AsyncClient(base_url=scripted.url) as http:
        first = await http.get("/papi/v1/balance")
        with pytest.raises(httpx.RemoteProtocolError):
            await http.get("/papi/v1/balance")
        third = await http.get("/papi/v1/balance?asset=BTC")

    assert (first.status_code, first.content) == (503, b"busy")
    assert third.json()["asset"] == "BTC"
    assert scripted.used_up.is_set()
    assert [r.path for r in scripted.requests] == ["/papi/v1/balance"] * 3


async def test_the_hostile_server_notices_when_the_client_leaves(scripted: HostileServer) -> None:
    scripted.push(Answer(end="hang"))

    async with httpx.AsyncClient(base_url=scripted.url) as http:
        await http.get("/api/v3/time")
        assert scripted.open_connections == 1

    assert await scripted.wait_all_closed(1.0)
