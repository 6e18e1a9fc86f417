"""``binance-pm serve`` in a subprocess: prints its URL and accounts, serves, stops on SIGTERM."""

from __future__ import annotations

import json
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from binance_pm import AccountType, Session

from .served import Served, credentials, serve

ARGS = ("--accounts", "6", "--window", "1", "--papi-ip", "60", "--seed", "3")
pytestmark = pytest.mark.served(*ARGS)


async def test_serve_prints_accounts_and_answers_signed_calls(served: Served) -> None:
    _, base_url, accounts = served
    pm = next(a for a in accounts if a["account_type"] == AccountType.PM_2.value)

    async with Session(base_url=base_url) as session:
        balances = await session.client(pm["api_key"], **credentials(pm)).pm_balance()

    assert base_url.startswith("http://127.0.0.1:")
    assert len(accounts) == 6
    assert {a["key_type"] for a in accounts} >= {"HMAC", "ED25519"}
    assert balances


def test_serve_stops_cleanly_on_sigterm() -> None:
    with serve(*ARGS) as (process, _, _):
        process.send_signal(signal.SIGTERM)

        assert process.wait(10) == 130  # as Ctrl-C, the documented status of an interruption


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


def test_each_account_names_the_command_and_endpoint_that_fit_it(served: Served) -> None:
    _, _, accounts = served
    fits = {
        "PM_1": ("pm-pro-account", "pm_pro_account"),
        "PM_2": ("pm-account", "pm_account"),
        "PM_3": ("pm-pro-span-account", "pm_pro_span_account"),
    }
    for account in accounts:
        assert (account["command"], account["endpoint"]) == fits[account["account_type"]]


def test_serve_into_a_pipe_closed_early_goes_on_serving_silently() -> None:
    with subprocess.Popen(
        [sys.executable, "-m", "binance_pm", "serve", "--accounts", "300"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as process:
        assert process.stdout is not None
        assert process.stderr is not None
        base_url = process.stdout.readline().split()[1]
        process.stdout.readline()
        process.stdout.close()  # as `head -2` does: more than a pipe holds is still to come
        answer = httpx.get(f"{base_url}/api/v3/time", timeout=10)
        assert answer.status_code == 200  # still serving
        time.sleep(0.3)
        assert process.poll() is None
        process.send_signal(signal.SIGTERM)
        assert process.wait(10) == 130
        errors = process.stderr.read()
    assert errors.startswith("binance-pm: serving; watch it with: binance-pm watch --accounts")
    assert errors.count("\n") == 1  # nothing else: no error about the closed pipe


def test_keys_dir_gives_watch_a_file_it_takes_as_it_is(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    with serve("--accounts", "6", "--seed", "3", "--keys-dir", str(keys)) as (_, url, accounts):
        command = [sys.executable, "-m", "binance_pm", "watch"]
        command += ["--accounts", str(keys / "accounts.toml"), "--base-url", url]
        command += ["--every", "0.5", "--seconds", "1.5", "--format", "jsonl"]
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert done.returncode == 0, done.stderr
    polled = {json.loads(line)["account"] for line in done.stdout.splitlines()}
    assert polled == {a["name"] for a in accounts}
    pems = sorted(p.name for p in keys.glob("*.pem"))
    assert pems == sorted(f"{a['name']}.pem" for a in accounts if "private_key" in a)
    assert pems  # the seed has RSA or Ed25519 accounts
    for path in keys.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
