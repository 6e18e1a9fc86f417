"""The one-shot commands: ``--json`` is the exchange's JSON as decoded, ``--asset`` is checked,
balances are one table."""

from __future__ import annotations

import json
import re
import shlex
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from binance_pm._cli.one_shot import exchange_json
from binance_pm._endpoints import ACCOUNT_ENDPOINTS

from .commands import key_env, keyless_env, run, run_on_terminal
from .served import Served

pytestmark = pytest.mark.served("--accounts", "3", "--seed", "4")

FIXTURES = Path(__file__).parent / "fixtures"
RECORDED = {
    "papi_balance_list.json": "pm_balance",
    "papi_balance_one.json": "pm_balance",
    "sapi_portfolio_balance.json": "pm_pro_balance",
    "sapi_v1_portfolio_account.json": "pm_pro_account",
    "papi_account.json": "pm_account",
}


def same_as_sent(sent: Any, printed: Any, where: str) -> None:
    """``printed`` is ``sent`` with empty amounts as null and digit grouping dropped."""
    if isinstance(sent, dict):
        assert isinstance(printed, dict), where
        for key, value in sent.items():
            same_as_sent(value, printed.get(key, "<missing>"), f"{where}.{key}")
    elif isinstance(sent, list):
        assert isinstance(printed, list), where
        assert len(sent) == len(printed), where
        for n, (a, b) in enumerate(zip(sent, printed, strict=True)):
            same_as_sent(a, b, f"{where}[{n}]")
    elif sent == "":
        assert printed is None, where
    elif isinstance(sent, str) and re.fullmatch(r"-?[\d,]+\.\d+", sent):
        assert printed == sent.replace(",", ""), (where, sent, printed)
    else:
        assert printed == sent, (where, sent, printed)


@pytest.mark.parametrize("fixture", list(RECORDED))
def test_json_prints_what_the_exchange_sent_field_by_field(fixture: str) -> None:
    body = (FIXTURES / fixture).read_bytes()
    decoded = ACCOUNT_ENDPOINTS[RECORDED[fixture]].decode(body)
    printed = json.loads(json.dumps(exchange_json(decoded)))
    same_as_sent(json.loads(body), printed, "$")


def test_json_from_the_command_keeps_the_exchanges_digits(served: Served, tmp_path: Path) -> None:
    _, base_url, accounts = served
    account = next(a for a in accounts if a["account_type"] == "PM_2")
    done = run("pm-balance", "--json", "--base-url", base_url, env=key_env(account, tmp_path))
    assert done.returncode == 0, done.stderr
    balances = json.loads(done.stdout)
    assert "E-" not in done.stdout  # never "0E-8"
    for balance in balances:
        assert re.fullmatch(r"\d+\.\d{8}", balance["totalWalletBalance"])
        assert balance["umWalletBalance"] == "0.00000000"


@pytest.mark.parametrize("command", ["pm-balance", "pm-pro-balance", "classic-pm-account"])
@pytest.mark.parametrize("asset", ["", "  ", "US-DT"])
def test_a_bad_asset_is_one_line_and_exit_2(command: str, asset: str) -> None:
    env = keyless_env()
    env.update(BINANCE_API_KEY="k", BINANCE_API_SECRET="s")
    done = run(command, "--asset", asset, "--base-url", "http://127.0.0.1:9", env=env)
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.splitlines() == [
        f"binance-pm: --asset {asset!r}: an asset is letters and digits, such as USDT"
    ]


def test_balances_piped_are_plain_lines_with_every_figure_whole(
    served: Served, tmp_path: Path
) -> None:
    _, base_url, accounts = served
    account = next(a for a in accounts if a["account_type"] == "PM_2")
    env = key_env(account, tmp_path)
    env["COLUMNS"] = "80"
    done = run("pm-balance", "--base-url", base_url, env=env)
    assert done.returncode == 0, done.stderr
    as_json = json.loads(run("pm-balance", "--json", "--base-url", base_url, env=env).stdout)
    lines = done.stdout.splitlines()
    assert len(lines) == len(as_json)
    for balance, line in zip(as_json, lines, strict=True):
        fields = dict(part.split("=", 1) for part in shlex.split(line))
        assert fields["asset"] == balance["asset"]
        assert Decimal(fields["wallet"]) == Decimal(balance["totalWalletBalance"])
        assert Decimal(fields["borrowed"]) == Decimal(balance["crossMarginBorrowed"])
        assert fields["updated_utc"].endswith("Z")
    assert "…" not in done.stdout


def test_balances_on_an_80_column_terminal_keep_every_column_shown_whole(
    served: Served, tmp_path: Path
) -> None:
    _, base_url, accounts = served
    account = next(a for a in accounts if a["account_type"] == "PM_2")
    env = key_env(account, tmp_path)
    as_json = json.loads(run("pm-balance", "--json", "--base-url", base_url, env=env).stdout)
    for columns in (80, 60):
        status, drawn = run_on_terminal(
            "pm-balance", "--base-url", base_url, env=env, columns=columns
        )
        assert status == 0, drawn
        text = re.sub(r"\x1b\[[0-9;?]*[a-zA-Z]", "", drawn).replace("\r", "")
        lines = text.splitlines()
        assert "…" not in text
        assert max(len(line) for line in lines) <= columns
        assert sum("Portfolio Margin balances" in line for line in lines) == 1  # one table
        for balance in as_json:
            row = [line for line in lines if re.match(rf" ?{balance['asset']} ", line)]
            assert len(row) == 1, text
        assert "not shown at this width" in text  # the columns left out are named
    status, wide = run_on_terminal("pm-balance", "--base-url", base_url, env=env, columns=160)
    assert "not shown" not in wide
    for line in wide.splitlines():
        if re.match(r" ?[A-Z0-9]+ ", line) and "Portfolio" not in line:
            assert re.search(r" \d\d-\d\d \d\d:\d\d:\d\d", line), line  # not raw ms
    assert not re.search(r"\d{13}", wide)


def test_help_shows_the_defaults() -> None:
    for command, default in (
        ("pm-balance", "(default 10)"),
        ("serve", "accounts to make (default 10)"),
        ("watch", "(1.5)"),
        ("demo", "(1.5)"),
    ):
        done = run(command, "--help", env=keyless_env())
        assert done.returncode == 0
        assert default in " ".join(done.stdout.split()), (command, done.stdout)


def test_pm_account_shows_a_pm_accounts_uni_mmr(served: Served, tmp_path: Path) -> None:
    _, base_url, accounts = served
    account = next(a for a in accounts if a["account_type"] == "PM_2")
    done = run("pm-account", "--json", "--base-url", base_url, env=key_env(account, tmp_path))
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert re.fullmatch(r"\d+\.\d{8}", answer["uniMMR"])
    assert answer["totalAvailableBalance"] is None  # sent empty
    table = run("pm-account", "--base-url", base_url, env=key_env(account, tmp_path))
    assert table.returncode == 0, table.stderr
    assert "uni_mmr" in table.stdout
