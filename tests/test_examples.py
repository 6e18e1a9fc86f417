"""Every recipe in ``examples/`` runs as a user runs it, and shows what it says it shows.

Each runs as a subprocess: on its own (the recipes against ``binance-pm serve`` then start
their own serve, and the fleet its own ``redis-server``), and, for those, again against a
``binance-pm serve`` and a ``redis-server`` this module starts, as a user would point them at
ones already running. Each recipe runs in a process group of its own, so that whatever it
started and left running is found.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import pytest

from .redis_server import running_server

EXAMPLES = Path(__file__).parent.parent / "examples"

#: What each recipe's output must show, run on its own with ``ARGS``.
SHOWS = {
    "quickstart.py": ["PM Pro SPAN", "AuthError"],  # its last step shows a refused signature
    "custom_governor.py": ["SlidingLog", "MemoryStore", "no room in the shared rate-limit"],
    "account_endpoints.py": [
        "started binance-pm serve",
        "PM          acct-0003 (ED25519) pm_balance: USDT",
        "pm_balance(asset='USDT'): cross margin free",
        "pm_account: uniMMR",
        "PM Pro      acct-0001 (HMAC) pm_pro_balance:",
        "pm_pro_account: uniMMR",
        "classic_pm_account(asset='USDT'): max withdraw",
        "PM Pro SPAN acct-0002 (HMAC) pm_pro_span_account: uniMMR",
        "pm_pro_account: refused, AuthError -2015",
    ],
    "poll_accounts.py": [
        "started binance-pm serve",
        "acct-0000 pm_account ",
        "acct-0000 pm_balance ",
        "acct-0001 pm_pro_account ",
        "acct-0002 pm_pro_span_account ",
        "(0 failed) from 10 of 10 accounts",
        "acct-0009 (PM): ",
    ],
    "stream_events.py": [
        "started binance-pm serve",
        "acct-0000 pm     connected",
        "acct-0001 pm_pro connected",
        "PM_PRO_ACCOUNT_UPDATE: uniMMR",
        "10 of 10 accounts connected",
    ],
    "redis_fleet.py": [
        "started binance-pm serve",
        "started redis-server",
        "shared: papi_ip 200/200 (A reads 200, B reads 200)",  # the budget binds, for both
        "worker A: 5 accounts; calls pm_account",
        "worker B: 5 accounts; calls pm_account",
        "shared papi_ip: 200 of 200 held in Redis",
        "errors none",
        "429s and 418s: 0",
    ],
}

#: The arguments each recipe runs with on its own: shorter runs than its defaults, and (the
#: fleet) an exchange whose papi budget the two workers fill within a second.
ARGS = {
    "poll_accounts.py": ["--seconds", "1.5"],
    "stream_events.py": ["--seconds", "1.5"],
    "redis_fleet.py": ["--seconds", "2", "--window", "2", "--papi-ip", "200"],
}

#: The recipes that take a running serve's output, with their arguments besides it and what
#: they must show against this module's serve (``SERVE``).
SERVED = {
    "account_endpoints.py": (
        [],
        ["PM          acct-0003 (ED25519) pm_balance:", "pm_pro_span_account: uniMMR", "-2015"],
    ),
    "poll_accounts.py": (
        ["--seconds", "1.5"],
        ["acct-0009 pm_account ", "(0 failed) from 10 of 10 accounts"],  # acct-0009: RSA
    ),
    "stream_events.py": (
        ["--seconds", "1.5"],
        ["acct-0009 pm     connected", "PM_PRO_ACCOUNT_UPDATE", "10 of 10 accounts connected"],
    ),
    "redis_fleet.py": (
        ["--seconds", "2"],  # and --redis: this module's redis-server
        ["shared: papi_ip", "worker A: 5 accounts", "worker B: 5 accounts", "429s and 418s: 0"],
    ),
}
SERVE = ("--accounts", "10", "--seed", "3", "--push-every", "0.5")


class Ran(NamedTuple):
    returncode: int
    stdout: str
    stderr: str


def run(name: str, *args: str, timeout: float = 60) -> Ran:
    """``python examples/NAME ARGS`` in a process group of its own; fails the test if anything
    it started is still running once it has ended."""
    with subprocess.Popen(
        [sys.executable, str(EXAMPLES / name), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    ) as process:
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        finally:
            left = stop_group(process.pid)
    assert not left, f"{name} left its process group running"
    return Ran(process.returncode, stdout, stderr)


def stop_group(group: int) -> bool:
    """Whether any process of ``group`` (one this module made) was still there; killed if so."""
    try:
        os.killpg(group, signal.SIGKILL)
    except ProcessLookupError:
        return False
    return True


def recipes() -> list[str]:
    return sorted(p.name for p in EXAMPLES.glob("*.py") if not p.name.startswith("_"))


@pytest.fixture(scope="module")
def serve_output(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """What a ``binance-pm serve`` this module started printed, in a file (as
    ``binance-pm serve > serve.txt &`` leaves it); the serve is stopped by its PID at the end."""
    output = tmp_path_factory.mktemp("serve") / "serve.txt"
    with subprocess.Popen(
        [sys.executable, "-m", "binance_pm", "serve", *SERVE],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    ) as process:
        try:
            assert process.stdout is not None
            with output.open("w") as file:
                for line in process.stdout:
                    file.write(line)
                    if line.strip() == "ready":
                        break
            yield output
        finally:
            os.kill(process.pid, signal.SIGTERM)  # it ends as on Ctrl-C
            try:
                process.wait(10)
            finally:
                if process.poll() is None:  # it did not: the test fails, and nothing is left
                    process.kill()
                    process.wait()


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    """A real ``redis-server`` on a unix socket, stopped at the end."""
    with running_server() as server:
        yield server.url


def test_every_recipe_is_listed() -> None:
    assert recipes() == sorted(SHOWS)
    assert set(ARGS) | set(SERVED) <= set(SHOWS)


@pytest.mark.parametrize("name", sorted(SHOWS))
def test_the_recipe_runs_on_its_own(name: str) -> None:
    done = run(name, *ARGS.get(name, []))

    assert done.returncode == 0, done.stderr
    for text in SHOWS[name]:
        assert text in done.stdout, text


@pytest.mark.parametrize("name", sorted(SERVED))
def test_the_recipe_runs_against_a_running_serve(
    name: str, serve_output: Path, redis_url: str
) -> None:
    args, shows = SERVED[name]
    if name == "redis_fleet.py":
        args = [*args, "--redis", redis_url]
    base_url = serve_output.read_text().split()[1]

    done = run(name, str(serve_output), *args)

    assert done.returncode == 0, done.stderr
    assert f"binance-pm serve at {base_url}" in done.stdout
    assert "started" not in done.stdout  # neither a serve nor a redis-server of its own
    for text in shows:
        assert text in done.stdout, text


def test_ctrl_c_stops_a_recipe_and_the_serve_it_started() -> None:
    with subprocess.Popen(
        [sys.executable, str(EXAMPLES / "poll_accounts.py"), "--seconds", "60"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        # Ctrl-C as from a terminal, even when this suite runs as a background job (whose
        # commands a shell starts with SIGINT ignored).
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    ) as process:
        try:
            assert process.stdout is not None
            for line in process.stdout:
                if " pm_" in line:  # polling
                    break
            os.kill(process.pid, signal.SIGINT)  # to the recipe alone, not its serve
            _, stderr = process.communicate(timeout=30)
        finally:
            left = stop_group(process.pid)

    assert process.returncode == 130
    assert "Traceback" not in stderr
    assert not left  # its serve was stopped
