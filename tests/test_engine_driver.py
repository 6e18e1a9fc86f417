"""The call loop does what the decision says, through a sending layer passed in
(``Session(sender=...)``): a stand-in that answers from a script, with no network."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping

import httpx
import pytest

import binance_pm._retry
from binance_pm import (
    Answer,
    AsyncClient,
    BadRequestError,
    Governor,
    GovernorTimeout,
    Limits,
    PMProAccount,
    RateLimitError,
    Sender,
    ServerError,
    Session,
    TimestampError,
    TransportError,
)

from .conftest import Account
from .documented import fixture_bytes

ACCOUNT = fixture_bytes("sapi_v1_portfolio_account.json")
PATH = "/sapi/v1/portfolio/account"
Script = Callable[[int], Answer | TransportError]


class Scripted:
    """A :class:`binance_pm.Sender` whose answers to the account endpoint come from a script
    (the time endpoint answers the time); it counts what it was asked."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.paths: list[str] = []
        self.closed = False

    async def get(
        self, url: str, headers: Mapping[str, str], *, endpoint: str, method: str = "GET"
    ) -> Answer:
        path = url.split("?", 1)[0].split("exchange.test", 1)[1]
        self.paths.append(path)
        if path == "/api/v3/time":
            now = json.dumps({"serverTime": time.time_ns() // 10**6}).encode()
            return Answer(200, {}, now)
        outcome = self.script(self.paths.count(PATH))
        if isinstance(outcome, TransportError):
            raise TransportError(outcome.message, endpoint=endpoint)
        return outcome

    async def aclose(self) -> None:
        self.closed = True

    def sent(self, path: str = PATH) -> int:
        return self.paths.count(path)


def body(code: int) -> bytes:
    return json.dumps({"code": code, "msg": "scripted"}).encode()


def then_ok(*first: Answer | TransportError) -> Script:
    """The script: ``first`` answers in turn, then the account."""
    return lambda n: first[n - 1] if n <= len(first) else Answer(200, {}, ACCOUNT)


LOST = TransportError("the server closed the connection before answering", endpoint="x")


@pytest.fixture(autouse=True)
def quick_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(binance_pm._retry, "BASE_DELAY", 0.001)
    monkeypatch.setattr(binance_pm._retry, "OVERLOAD_BASE_DELAY", 0.001)


def client_of(session: Session, account: Account) -> AsyncClient:
    return session.client(account.api_key, **account.credentials())


async def test_a_session_sends_through_the_sender_it_is_given_and_leaves_it_open(
    account: Account,
) -> None:
    sender = Scripted(then_ok())
    given: Sender = sender
    async with Session(base_url="https://exchange.test", sender=given) as session:
        info = await client_of(session, account).pm_pro_account()

    assert isinstance(info, PMProAccount)
    assert sender.sent() == 1
    assert not sender.closed  # the caller's, to close


def test_a_sender_and_an_http_client_together_are_refused() -> None:
    with pytest.raises(ValueError, match="not both"):
        Session(http=httpx.AsyncClient(), sender=Scripted(then_ok()))


@pytest.mark.parametrize(
    ("script", "tries"),
    [
        (then_ok(Answer(503, {}, body(-1001))), 2),
        (then_ok(LOST), 2),
        (then_ok(Answer(503, {}, body(-1008)), Answer(502, {}, b"<html>")), 3),
        (then_ok(Answer(200, {}, body(-1021))), 2),
    ],
    ids=["5xx", "no answer", "overload then a proxy's page", "-1021 in a 200"],
)
async def test_a_failure_with_a_next_step_is_tried_again_until_the_answer(
    account: Account, script: Script, tries: int
) -> None:
    sender = Scripted(script)
    async with Session(base_url="https://exchange.test", sender=sender) as session:
        info = await client_of(session, account).pm_pro_account()

    assert isinstance(info, PMProAccount)
    assert sender.sent() == tries


async def test_a_timestamp_refusal_measures_the_clock_once_more_then_raises(
    account: Account,
) -> None:
    sender = Scripted(lambda n: Answer(400, {}, body(-1021)))
    async with Session(base_url="https://exchange.test", sender=sender) as session:
        with pytest.raises(TimestampError):
            await client_of(session, account).pm_pro_account()

    assert sender.sent() == 2
    assert sender.sent("/api/v3/time") == 2 * session.clock.samples


@pytest.mark.parametrize(
    ("answer", "error", "tries"),
    [
        (Answer(503, {}, body(-1001)), ServerError, 3),
        (LOST, TransportError, 3),
        (Answer(400, {}, body(-1102)), BadRequestError, 1),
    ],
    ids=["5xx", "no answer", "4xx"],
)
async def test_a_failure_without_a_next_step_is_raised(
    account: Account,
    answer: Answer | TransportError,
    error: type[Exception],
    tries: int,
) -> None:
    sender = Scripted(lambda n: answer)
    async with Session(base_url="https://exchange.test", sender=sender, max_retries=2) as s:
        with pytest.raises(error):
            await client_of(s, account).pm_pro_account()

    assert sender.sent() == tries


async def test_a_429_waits_for_the_budget_and_raises_once_the_timeout_is_too_near(
    account: Account,
) -> None:
    refused = Answer(429, {"Retry-After": "30"}, body(-1003))
    sender = Scripted(lambda n: refused)
    async with Session(base_url="https://exchange.test", sender=sender) as session:
        client = client_of(session, account)
        with pytest.raises(RateLimitError) as caught:
            await client.pm_pro_account(timeout=1.0)
        with pytest.raises(RateLimitError):  # shut: refused without sending
            await client.pm_pro_account(timeout=1.0)

    assert sender.sent() == 1
    assert caught.value.retry_after == 30.0


async def test_a_call_whose_budget_has_no_room_in_time_sends_nothing(account: Account) -> None:
    sender = Scripted(then_ok())
    governor = Governor(limits=Limits(sapi_uid=5), window=60.0)
    async with Session(base_url="https://exchange.test", sender=sender, governor=governor) as s:
        client = client_of(s, account)
        await client.pm_pro_account()
        with pytest.raises(GovernorTimeout, match="no room in the rate-limit budget"):
            await client.pm_pro_account(timeout=0.2)

    assert sender.sent() == 1
