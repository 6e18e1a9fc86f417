"""What a call does after each attempt: the one pure function, as a table of
(outcome, how far the call has gone) -> (step, error, delay)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from binance_pm import (
    APIError,
    AuthError,
    BadRequestError,
    BinancePMError,
    DecodeError,
    IPBannedError,
    PMProAccount,
    RateLimitError,
    ServerError,
    TimestampError,
    TransportError,
)
from binance_pm._call import Call
from binance_pm._credentials import Credentials
from binance_pm._endpoints import API_TIME, PM_PRO_ACCOUNT, Endpoint
from binance_pm._http import Answer
from binance_pm._retry import (
    BACKOFF,
    BASE_DELAY,
    MAX_DELAY,
    MAX_REFUSED_ATTEMPTS,
    OVERLOAD_BASE_DELAY,
    RAISE,
    RESYNC,
    RETURN,
    WAIT,
    Decision,
    decide,
)

from .documented import fixture_bytes

KEY = "k" * 64
MAX_RETRIES = 2
ENDS = 100.0  # the call's timeout ends then; the clock reads NOW unless a row says
NOW = 10.0
RAND = 0.5  # the jitter: a backoff is 3/4 of its top
ACCOUNT = fixture_bytes("sapi_v1_portfolio_account.json")
HTML_502 = b"<html><head><title>502 Bad Gateway</title></head></html>"
BAN = b"Way too much request weight used; IP banned until 1660090423228."


def body(code: int, msg: str = "message") -> bytes:
    return json.dumps({"code": code, "msg": msg}).encode()


def answer(status: int, content: bytes, **headers: str) -> Answer:
    return Answer(status, {name.replace("_", "-"): v for name, v in headers.items()}, content)


LOST = TransportError("the server closed the connection before answering", endpoint="GET /x")


def backoff_of(retries: int, base: float = BASE_DELAY) -> float:
    top = min(MAX_DELAY, base * 2.0**retries)
    return top / 2 + RAND * top / 2


# (outcome, how far the call has gone) -> (step, error class, delay)
ROWS: list[tuple[str, Answer | TransportError, dict[str, Any], tuple[str, type | None, float]]] = [
    ("2xx decodes", answer(200, ACCOUNT), {}, (RETURN, None, 0.0)),
    (
        "2xx whose body is the exchange's error",
        answer(200, body(-1000, "An unknown error occurred")),
        {},
        (RAISE, BadRequestError, 0.0),
    ),
    ("2xx whose body is -1021", answer(200, body(-1021)), {}, (RESYNC, TimestampError, 0.0)),
    ("2xx that does not decode", answer(200, b'{"uniMMR": '), {}, (RAISE, DecodeError, 0.0)),
    ("-1021, the first time", answer(400, body(-1021)), {}, (RESYNC, TimestampError, 0.0)),
    (
        "-1021 again after the clock was measured",
        answer(400, body(-1021)),
        {"resynced": True},
        (RAISE, TimestampError, 0.0),
    ),
    (
        "-1021 on a call that is not signed",
        answer(400, body(-1021)),
        {"endpoint": API_TIME},
        (RAISE, TimestampError, 0.0),
    ),
    ("429, the first", answer(429, body(-1003), Retry_After="3"), {}, (WAIT, RateLimitError, 3.0)),
    (
        "429 whose Retry-After passes the timeout",
        answer(429, body(-1003), Retry_After="200"),
        {},
        (RAISE, RateLimitError, 0.0),
    ),
    (
        "418 with its ban's end as Retry-After: waited out even if the hook would not",
        answer(418, body(-1003, BAN.decode()), Retry_After="5"),
        {},
        (WAIT, IPBannedError, 5.0),
    ),
    (
        "429, one short of the most",
        answer(429, body(-1003)),
        {"refusals": MAX_REFUSED_ATTEMPTS - 2},
        (WAIT, RateLimitError, 0.0),
    ),
    (
        "429, the most",
        answer(429, body(-1003)),
        {"refusals": MAX_REFUSED_ATTEMPTS - 1},
        (RAISE, RateLimitError, 0.0),
    ),
    ("418, the first", answer(418, body(-1003, BAN.decode())), {}, (WAIT, IPBannedError, 0.0)),
    (
        "418, the most",
        answer(418, body(-1003, BAN.decode())),
        {"refusals": MAX_REFUSED_ATTEMPTS - 1},
        (RAISE, IPBannedError, 0.0),
    ),
    (
        "429 whatever the retries spent (the budget, not a backoff, waits for it)",
        answer(429, body(-1003)),
        {"retries": MAX_RETRIES},
        (WAIT, RateLimitError, 0.0),
    ),
    ("503, retries left", answer(503, body(-1001)), {}, (BACKOFF, ServerError, backoff_of(0))),
    ("502 page from a proxy", answer(502, HTML_502), {}, (BACKOFF, ServerError, backoff_of(0))),
    (
        "500, the second retry backs off twice as long",
        answer(500, b""),
        {"retries": 1},
        (BACKOFF, ServerError, backoff_of(1)),
    ),
    (
        "503 -1008 overload backs off from a longer base",
        answer(503, body(-1008)),
        {},
        (BACKOFF, ServerError, backoff_of(0, OVERLOAD_BASE_DELAY)),
    ),
    ("no answer, retries left", LOST, {}, (BACKOFF, TransportError, backoff_of(0))),
    (
        "5xx, no retries left",
        answer(503, body(-1001)),
        {"retries": MAX_RETRIES},
        (RAISE, ServerError, 0.0),
    ),
    ("no answer, no retries left", LOST, {"retries": MAX_RETRIES}, (RAISE, TransportError, 0.0)),
    (
        "5xx with the timeout too near for the backoff",
        answer(503, body(-1001)),
        {"now": ENDS - backoff_of(0)},
        (RAISE, ServerError, 0.0),
    ),
    (
        "no answer with the timeout too near for the backoff",
        LOST,
        {"now": ENDS - backoff_of(0) / 2},
        (RAISE, TransportError, 0.0),
    ),
    (
        "Retry-After longer than the backoff wins",
        answer(503, body(-1001), Retry_After="7"),
        {},
        (BACKOFF, ServerError, 7.0),
    ),
    (
        "Retry-After shorter than the backoff loses",
        answer(503, body(-1001), Retry_After="0.001"),
        {},
        (BACKOFF, ServerError, backoff_of(0)),
    ),
    (
        "Retry-After longer than the time left",
        answer(503, body(-1001), Retry_After="120"),
        {},
        (RAISE, ServerError, 0.0),
    ),
    ("400, a parameter missing", answer(400, body(-1102)), {}, (RAISE, BadRequestError, 0.0)),
    ("401, the key refused", answer(401, body(-2015)), {}, (RAISE, AuthError, 0.0)),
    ("400 -1022, the signature refused", answer(400, body(-1022)), {}, (RAISE, AuthError, 0.0)),
    ("403 page from the firewall", answer(403, b"<html>"), {}, (RAISE, BadRequestError, 0.0)),
    ("408 backend timeout", answer(408, b""), {}, (RAISE, BadRequestError, 0.0)),
    (
        "302 redirect, never followed",
        answer(302, b"", location="https://elsewhere.example/x"),
        {},
        (RAISE, BadRequestError, 0.0),
    ),
]


def call_at(
    endpoint: Endpoint[Any] = PM_PRO_ACCOUNT,
    *,
    retries: int = 0,
    refusals: int = 0,
    resynced: bool = False,
) -> Call:
    credentials = Credentials(KEY, secret="s" * 64) if endpoint.signed else None
    call = Call(endpoint, "", credentials, 5000, None, ENDS)
    call.retries, call.refusals, call.resynced = retries, refusals, resynced
    return call


def decide_row(outcome: Answer | TransportError, state: dict[str, Any]) -> Decision:
    state = dict(state)
    now = state.pop("now", NOW)
    call = call_at(**state)
    return decide(call, outcome, max_retries=MAX_RETRIES, clock=lambda: now, rand=lambda: RAND)


@pytest.mark.parametrize(
    ("outcome", "state", "expected"), [r[1:] for r in ROWS], ids=[r[0] for r in ROWS]
)
def test_each_outcome_has_one_next_step(
    outcome: Answer | TransportError,
    state: dict[str, Any],
    expected: tuple[str, type | None, float],
) -> None:
    step, error_class, delay = expected

    decision = decide_row(outcome, state)

    assert decision.step == step
    assert type(decision.error) is error_class if error_class else decision.error is None
    assert decision.delay == pytest.approx(delay)


def test_a_decoded_answer_is_the_result() -> None:
    decision = decide_row(answer(200, ACCOUNT), {})

    assert isinstance(decision.value, PMProAccount)
    assert decision.value.account_type == "PM_1"


def test_an_error_names_the_endpoint_and_the_masked_account() -> None:
    error = decide_row(answer(400, body(-1102, "Mandatory parameter")), {}).error

    assert isinstance(error, APIError)
    assert (error.status, error.code, error.msg) == (400, -1102, "Mandatory parameter")
    assert error.endpoint == "GET /sapi/v1/portfolio/account"
    assert error.api_key == "kkkk…kkkk"


def test_a_misfiled_error_keeps_its_2xx_status_and_code() -> None:
    error = decide_row(answer(200, body(-1000)), {}).error

    assert isinstance(error, BadRequestError)
    assert (error.status, error.code) == (200, -1000)


def test_deciding_changes_nothing_so_the_same_inputs_decide_the_same() -> None:
    call = call_at(retries=1)
    outcome = answer(503, body(-1001))

    first = decide(call, outcome, max_retries=MAX_RETRIES, clock=lambda: NOW, rand=lambda: RAND)
    again = decide(call, outcome, max_retries=MAX_RETRIES, clock=lambda: NOW, rand=lambda: RAND)

    assert (first.step, first.delay) == (again.step, again.delay) == (BACKOFF, backoff_of(1))
    assert (call.retries, call.refusals, call.resynced, call.phase) == (1, 0, False, "budget")


def test_the_clock_is_read_only_to_back_off() -> None:
    def no_clock() -> float:
        raise AssertionError("read")

    for outcome in (answer(200, ACCOUNT), answer(400, body(-1102)), answer(429, body(-1003))):
        decide(call_at(), outcome, max_retries=MAX_RETRIES, clock=no_clock)


def test_every_step_is_in_the_table() -> None:
    steps = {row[3][0] for row in ROWS}
    errors: set[type[BinancePMError]] = {row[3][1] for row in ROWS if row[3][1] is not None}

    assert steps == {RETURN, RESYNC, WAIT, BACKOFF, RAISE}
    assert errors >= {
        AuthError,
        BadRequestError,
        DecodeError,
        IPBannedError,
        RateLimitError,
        ServerError,
        TimestampError,
        TransportError,
    }
