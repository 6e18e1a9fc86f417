"""The ``binance-pm`` commands, run as a user runs them: in subprocesses, output piped."""

from __future__ import annotations

import gc
import json
import re
from pathlib import Path

import pytest

from binance_pm._cli._common import frozen_heap

from .commands import ENDPOINT, key_env, keyless_env, run, secrets_of, toml_for
from .served import Served

# Four accounts: none of those that drift into liquidation (acct-0004), which would end watch
# with 5.
pytestmark = pytest.mark.served("--accounts", "4", "--seed", "4")


def test_demo_runs_and_ends_with_a_summary_of_no_429s() -> None:
    done = run("demo", "--accounts", "30", "--seconds", "4", "--window", "1")
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    lines = done.stdout.splitlines()
    assert any(line.startswith("t=") for line in lines)  # piped: plain periodic lines
    summary = lines[lines.index("== summary ==") + 1 :]
    fields = dict(line.split(": ", 1) for line in summary)
    assert fields["429s"] == "0"
    assert fields["418s"] == "0"
    assert fields["errors"] == "0 (none)"
    assert int(fields["calls"]) > 100
    assert fields["accounts"] == "30"
    shares = {
        name.removeprefix("budget "): float(re.search(r"([\d.]+)% of the budget", text)[1])  # type: ignore[index]
        for name, text in fields.items()
        if name.startswith("budget ")
    }
    # The binding budgets, used: how far depends on how busy the machine is (the demo's
    # client and exchange share one process); the figure on a quiet one is
    # benchmarks/budget.py's.
    assert shares["papi_ip"] >= 50
    assert shares["sapi_ip"] >= 50


def test_demo_refuses_bad_options() -> None:
    done = run("demo", "--accounts", "0")
    assert done.returncode == 2
    assert "must be positive" in done.stderr


@pytest.mark.parametrize("kind", ["PM_1", "PM_2", "PM_3"])
def test_one_shot_commands_print_a_table_or_json(kind: str, served: Served, tmp_path: Path) -> None:
    _, base_url, accounts = served
    account = next(a for a in accounts if a["account_type"] == kind)
    env = key_env(account, tmp_path)
    command = ENDPOINT[kind]

    table = run(command, "--base-url", base_url, env=env)
    assert table.returncode == 0, table.stderr
    assert "uni_mmr" in table.stdout

    as_json = run(command, "--base-url", base_url, "--json", env=env)
    assert as_json.returncode == 0, as_json.stderr
    parsed = json.loads(as_json.stdout)
    assert float(parsed["uniMMR"]) > 0
    assert parsed.get("accountType", kind) == kind  # PM's account has no type field
    for secret in secrets_of([account]):
        assert secret not in table.stdout + table.stderr + as_json.stdout + as_json.stderr


def test_one_shot_with_an_asset(served: Served, tmp_path: Path) -> None:
    _, base_url, accounts = served
    account = next(a for a in accounts if a["account_type"] == "PM_2")
    done = run(
        "pm-balance",
        "--asset",
        "usdt",
        "--json",
        "--base-url",
        base_url,
        env=key_env(account, tmp_path),
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["asset"] == "USDT"
    missing = run("classic-pm-account", "--base-url", base_url, env=key_env(account, tmp_path))
    assert missing.returncode == 2
    assert "--asset" in missing.stderr


def test_missing_keys_are_one_line_and_exit_2(served: Served) -> None:
    base_url = served.base_url
    done = run("pm-pro-account", "--base-url", base_url, env=keyless_env())
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.strip().count("\n") == 0
    assert "BINANCE_API_KEY" in done.stderr
    assert "Traceback" not in done.stderr


def test_refused_keys_are_one_line_and_exit_1(served: Served) -> None:
    base_url = served.base_url
    env = keyless_env()
    env["BINANCE_API_KEY"] = "k" * 64
    env["BINANCE_API_SECRET"] = "s" * 64
    done = run("pm-balance", "--base-url", base_url, env=env)
    assert done.returncode == 1
    assert done.stderr.strip().count("\n") == 0
    assert "-2015" in done.stderr
    assert "k" * 64 not in done.stderr
    assert "s" * 64 not in done.stderr


def test_unreadable_private_key_file_is_one_line(served: Served, tmp_path: Path) -> None:
    base_url = served.base_url
    env = keyless_env()
    env["BINANCE_API_KEY"] = "k" * 64
    env["BINANCE_PRIVATE_KEY_FILE"] = str(tmp_path / "absent.pem")
    done = run("pm-balance", "--base-url", base_url, env=env)
    assert done.returncode == 2
    assert "BINANCE_PRIVATE_KEY_FILE" in done.stderr
    assert "Traceback" not in done.stderr


def test_watch_polls_the_accounts_of_a_file(served: Served, tmp_path: Path) -> None:
    _, base_url, accounts = served
    path = toml_for(accounts, tmp_path)
    done = run(
        "watch",
        "--accounts",
        str(path),
        "--every",
        "0.5",
        "--seconds",
        "1.5",
        "--base-url",
        base_url,
        env=keyless_env(),
    )
    assert done.returncode == 0, done.stderr
    assert any(line.startswith("t=") for line in done.stdout.splitlines())
    calls = int(re.search(r"^calls: (\d+)$", done.stdout, re.M)[1])  # type: ignore[index]
    assert calls >= len(accounts) * 2
    assert "errors: 0 (none)" in done.stdout
    for secret in secrets_of(accounts):
        assert secret not in done.stdout + done.stderr


def test_watch_explains_a_bad_file_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "accounts.toml"
    path.write_text('[[account]]\nname = "desk"\napi_key = "abc"\n')
    done = run("watch", "--accounts", str(path), env=keyless_env())
    assert done.returncode == 2
    assert "desk: neither secret nor private_key_file is given" in done.stderr
    assert "Traceback" not in done.stderr
    path.write_text("not = [toml")
    done = run("watch", "--accounts", str(path), env=keyless_env())
    assert done.returncode == 2
    assert "not valid TOML" in done.stderr


def test_frozen_heap_keeps_what_was_made_before_out_of_full_collections_until_it_ends() -> None:
    # What binance-pm watch does with its desk once made: full collections pass it by.
    made: list[list[int]] = [[n] for n in range(1000)]
    with frozen_heap():
        assert gc.get_freeze_count() >= len(made)
        seen = {id(x) for x in gc.get_objects()}
        assert not any(id(x) in seen for x in made)
        later: list[int] = [1]  # made after: collected as usual
        assert id(later) in {id(x) for x in gc.get_objects()}
    assert gc.get_freeze_count() == 0
    assert all(id(x) in {id(y) for y in gc.get_objects()} for x in made[:3])
