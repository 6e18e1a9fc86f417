"""How every command ends: usage errors are exit 2 naming the value at fault, an interruption
(Ctrl-C or SIGTERM) is exit 130 after the summary, a short demo is not a failure, and
``serve --keys-dir`` keeps an earlier run's files unless told to replace them."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .commands import keyless_env, run, toml_for
from .served import Served

# Four accounts: every product and both key types, and none of the simulator's accounts that
# drift into liquidation (acct-0004, every tenth from the fifth), which would end watch with 5.
pytestmark = pytest.mark.served("--accounts", "4", "--seed", "7")

#: (arguments, what the error must name).
USAGE_ERRORS = [
    (["serve", "--port", "99999"], "99999"),
    (["serve", "--port", "http"], "'http'"),
    (["serve", "--accounts", "0"], "'0'"),
    (["serve", "--window", "-1"], "'-1'"),
    (["serve", "--fault", "boom=0.1"], "boom"),
    (["serve", "--external", "papi"], "'papi'"),
    (["serve", "--broken", "acct-9999"], "acct-9999"),
    (["serve", "--window-mode", "rolling"], "'rolling'"),
    (["demo", "--seconds", "-3"], "'-3'"),
    (["demo", "--every", "soon"], "'soon'"),
    (["demo", "--format", "html"], "'html'"),
    (["watch", "--accounts", "/nonexistent/accounts.toml"], "/nonexistent/accounts.toml"),
    (["watch", "--accounts", "a.toml", "--metrics-port", "70000"], "70000"),
    (["watch", "--accounts", "a.toml", "--reconcile-every", "0"], "'0'"),
    (["pm-balance", "--asset", "US-DT"], "'US-DT'"),
    (["pm-balance", "--timeout", "none"], "'none'"),
    (["watch", "--accounts", "a.toml", "--every", "nan"], "'nan'"),
    (["watch", "--accounts", "a.toml", "--every", "100000"], "'100000'"),
    (["watch", "--accounts", "a.toml", "--reconcile-every", "inf"], "'inf'"),
    (["watch", "--accounts", "a.toml", "--alert-mmr", "nan"], "'nan'"),
    (["demo", "--window", "nan"], "'nan'"),
    (["pm-pro-acount"], "'pm-pro-acount'"),
]


@pytest.mark.parametrize(
    ("args", "named"), USAGE_ERRORS, ids=[" ".join(args) for args, _ in USAGE_ERRORS]
)
def test_every_usage_error_is_exit_2_naming_its_value(
    args: list[str], named: str, tmp_path: Path
) -> None:
    env = keyless_env()
    env["BINANCE_API_KEY"] = "k" * 64
    env["BINANCE_API_SECRET"] = "s" * 64
    done = run(*args, env=env, timeout=30)
    assert done.returncode == 2, done.stderr
    assert named in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stdout == ""


def test_a_base_url_that_is_not_one_is_exit_2_naming_it(served: Served, tmp_path: Path) -> None:
    path = toml_for(served.accounts, tmp_path)
    done = run("watch", "--accounts", str(path), "--base-url", "notaurl", env=keyless_env())
    assert done.returncode == 2, done.stderr
    assert "--base-url 'notaurl'" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_port_in_use_is_exit_2_naming_the_port() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = run("serve", "--port", str(port), env=keyless_env(), timeout=30)
    assert done.returncode == 2, done.stderr
    assert f"--port {port}: cannot listen on 127.0.0.1: " in done.stderr
    assert "Traceback" not in done.stderr


def test_keys_dir_is_written_only_once_the_port_is_had(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        done = run("serve", "--port", port, "--keys-dir", str(keys), env=keyless_env())
    assert done.returncode == 2, done.stderr
    assert not keys.exists() or not any(keys.iterdir())  # nothing left to refuse a retry
    (keys / "acct-0003.pem").parent.mkdir(exist_ok=True)
    (keys / "acct-0003.pem").write_text("an earlier run's key")
    done = run("serve", "--accounts", "6", "--keys-dir", str(keys), env=keyless_env())
    assert done.returncode == 2, done.stderr
    assert "acct-0003.pem exists" in done.stderr  # a key file is kept too, unless --force


def test_keys_dir_keeps_an_earlier_runs_files_unless_forced(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.mkdir()
    earlier = keys / "accounts.toml"
    earlier.write_text("# an earlier run's accounts\n")
    done = run("serve", "--accounts", "2", "--keys-dir", str(keys), env=keyless_env())
    assert done.returncode == 2, done.stderr
    assert str(earlier) in done.stderr
    assert "--force" in done.stderr
    assert earlier.read_text() == "# an earlier run's accounts\n"
    with subprocess.Popen(
        [sys.executable, "-m", "binance_pm", "serve", "--accounts", "2", "--keys-dir",
         str(keys), "--force"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=keyless_env(),
    ) as process:  # fmt: skip
        assert process.stdout is not None
        assert process.stderr is not None
        lines = [process.stdout.readline() for _ in range(4)]
        assert lines[-1].strip() == "ready", lines
        hint = process.stderr.readline()
        process.send_signal(signal.SIGTERM)
        assert process.wait(10) == 130
    assert "[[account]]" in earlier.read_text()
    base_url = lines[0].split()[1]
    assert hint.strip() == (
        f"binance-pm: serving; watch it with: binance-pm watch --accounts {earlier} "
        f"--base-url {base_url}"
    )


def test_a_short_demo_is_not_a_failure() -> None:
    done = run("demo", "--seconds", "3", "--format", "plain", env=keyless_env())
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr
    assert "failing: 0 of 60 accounts" in done.stdout


def test_sigterm_ends_demo_with_its_summary_and_status_130() -> None:
    with subprocess.Popen(
        [sys.executable, "-m", "binance_pm", "demo", "--seconds", "60", "--format", "plain",
         "--stream"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=keyless_env(),
    ) as process:  # fmt: skip
        assert process.stdout is not None
        for line in process.stdout:
            if line.startswith("t="):
                break
        process.send_signal(signal.SIGTERM)
        started = time.monotonic()
        out, err = process.communicate(timeout=15)
        took = time.monotonic() - started
    assert process.returncode == 130, err
    assert took < 10.0
    assert "== summary ==" in out
    assert "Traceback" not in err


def test_watch_stream_raises_no_false_stale(served: Served, tmp_path: Path) -> None:
    """Pushed or reconciled, every healthy account's figures arrive within a few of their own
    periods: no row is ever STALE (the rule was three polling periods, which a PM account's
    reconciliation and a PM Pro account's pushes are far slower than)."""
    _, base_url, accounts = served
    done = run(
        "watch", "--accounts", str(toml_for(accounts, tmp_path)), "--base-url", base_url,
        "--stream", "--every", "0.3", "--reconcile-every", "1", "--seconds", "4.5",
        "--format", "plain", env=keyless_env(),
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    lines = [line for line in done.stdout.splitlines() if line.startswith("t=")]
    assert len(lines) >= 3  # past three reconciliation periods
    for line in lines:
        assert re.search(r" stale=0 ", line), line
        assert " failing=0 " in line, line
