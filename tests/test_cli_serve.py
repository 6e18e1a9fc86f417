"""``binance-pm serve`` in a subprocess: prints its URL and accounts, serves, stops on SIGTERM."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator

import pytest

from binance_pm import AccountType, Session

from .served import credentials, serve


@pytest.fixture
def served() -> Iterator[tuple[subprocess.Popen[str], str, list[dict[str, str]]]]:
    with serve("--accounts", "6", "--window", "1", "--papi-ip", "60", "--seed", "3") as running:
        yield running


async def test_serve_prints_accounts_and_answers_signed_calls(
    served: tuple[subprocess.Popen[str], str, list[dict[str, str]]],
) -> None:
    _, base_url, accounts = served
    pm = next(a for a in accounts if a["account_type"] == AccountType.PM_2.value)

    async with Session(base_url=base_url) as session:
        balances = await session.client(pm["api_key"], **credentials(pm)).pm_balance()

    assert base_url.startswith("http://127.0.0.1:")
    assert len(accounts) == 6
    assert {a["key_type"] for a in accounts} >= {"HMAC", "ED25519"}
    assert balances


def test_serve_stops_cleanly_on_sigterm(
    served: tuple[subprocess.Popen[str], str, list[dict[str, str]]],
) -> None:
    process, _, _ = served

    process.send_signal(signal.SIGTERM)

    assert process.wait(10) == 0


def test_serve_refuses_bad_options_with_one_line() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "binance_pm", "serve", "--fault", "boom=0.1"],
        capture_output=True,
        text=True,
        timeout=30,
    )

    assert result.returncode == 2
    assert "faults take" in result.stderr
    assert "Traceback" not in result.stderr
