"""Secrets never appear in repr, str, logs or exceptions."""

from __future__ import annotations

import logging

import httpx
import pytest

import binance_pm._retry
from binance_pm import AsyncClient, BinancePMError, Session

from .conftest import Account, MockExchange
from .documented import error_body
from .hostile import HostileServer


def secret_texts(account: Account) -> list[str]:
    """Everything that must never be shown: the secret or PEM body, and the whole API key."""
    texts = [account.api_key]
    if account.secret:
        texts.append(account.secret)
    if account.private_pem:
        lines = account.private_pem.decode().splitlines()
        texts.extend(line for line in lines if "-----" not in line and len(line) > 16)
    return texts


async def test_no_secret_in_repr_str_logs_or_errors(
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    session: Session,
    mocked: MockExchange,
    account: Account,
) -> None:
    monkeypatch.setattr(binance_pm._retry, "BASE_DELAY", 0.001)
    caplog.set_level(logging.DEBUG)
    client = session.client(account.api_key, **account.credentials())
    shown: list[str] = [
        repr(client),
        str(client),
        repr(session),
        repr(client._credentials),
        repr(client._credentials.signer),
    ]
    await client.pm_balance()
    path = "/sapi/v1/portfolio/account"
    answers: list[tuple[int, bytes, dict[str, str]] | Exception] = [
        (401, error_body(-2015, "Invalid API-key, IP, or permissions for action."), {}),
        (502, b"<html>bad gateway</html>", {}),
        (502, b"", {}),
        (502, b"", {}),
        httpx.ConnectError("refused"),
        httpx.ConnectError("refused"),
        httpx.ConnectError("refused"),
        (200, b"{broken", {}),
    ]
    mocked.push(path, *answers)
    for _ in range(4):
        with pytest.raises(BinancePMError) as caught:
            await client.pm_pro_account()
        shown += [str(caught.value), repr(caught.value), repr(vars(caught.value))]

    shown += [record.getMessage() for record in caplog.records]
    everything = "\n".join(shown)
    assert client.masked_key in everything  # the account is named, masked
    for secret in secret_texts(account):
        assert secret not in everything


def test_constructor_errors_do_not_echo_the_key(accounts: dict[str, Account]) -> None:
    pem = accounts["RSA"].private_pem
    assert pem is not None
    broken = pem[:200] + b"garbage" + pem[200:]

    with pytest.raises(ValueError, match="could not be loaded") as caught:
        AsyncClient("key", private_key=broken)

    body_lines = [line for line in pem.decode().splitlines() if "-----" not in line]
    assert not any(line in str(caught.value) for line in body_lines)


def test_the_repr_of_a_session_hides_credentials_in_its_url() -> None:
    session = Session(base_url="http://user:hunter2@127.0.0.1:8000")
    assert "hunter2" not in repr(session)
    assert "user" not in repr(session)


async def test_a_caller_httpx_client_logs_no_signature(
    accounts: dict[str, Account], scripted: HostileServer, caplog: pytest.LogCaptureFixture
) -> None:
    account = accounts["HMAC"]
    caplog.set_level(logging.DEBUG)
    async with httpx.AsyncClient() as http, Session(base_url=scripted.url, http=http) as s:
        client = s.client(account.api_key, **account.credentials())
        await client.pm_pro_account()  # answered with the documented example
    texts = [record.getMessage() for record in caplog.records]
    assert any("/sapi/v1/portfolio/account" in text for text in texts)  # httpx did log it
    assert not any("signature=" in t and "signature=<hidden>" not in t for t in texts)
