"""Running the ``binance-pm`` commands as a user does, for the CLI tests: a subprocess, an
environment without keys (or with one account's), and an accounts file for ``watch``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from binance_pm._endpoints import STATE_ENDPOINT

#: The command that reads an account of each type.
ENDPOINT = {kind: name.replace("_", "-") for kind, name in STATE_ENDPOINT.items()}


def run(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "binance_pm", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )


def run_on_terminal(
    *args: str, env: dict[str, str], columns: int, timeout: float = 60
) -> tuple[int, str]:
    """The command with a terminal of ``columns`` columns as its standard output (a
    pseudo-terminal, as a person's); its exit status and what it drew."""
    import fcntl
    import pty
    import struct
    import termios

    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
    env = {**env, "COLUMNS": str(columns), "TERM": "xterm-256color"}
    env.pop("NO_COLOR", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "binance_pm", *args],
        stdout=follower,
        stderr=subprocess.PIPE,
        env=env,
    )
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the terminal's other side closed: the command has ended
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    status = process.wait(timeout=timeout)
    assert process.stderr is not None
    process.stderr.close()
    return status, b"".join(chunks).decode(errors="replace")


def keyless_env() -> dict[str, str]:
    env = dict(os.environ)
    for name in list(env):
        if name.startswith("BINANCE_"):
            del env[name]
    env["COLUMNS"] = "100"
    return env


def key_env(account: dict[str, str], tmp_path: Path) -> dict[str, str]:
    env = keyless_env()
    env["BINANCE_API_KEY"] = account["api_key"]
    if "secret" in account:
        env["BINANCE_API_SECRET"] = account["secret"]
    else:
        pem = tmp_path / f"{account['name']}.pem"
        pem.write_text(account["private_key"])
        env["BINANCE_PRIVATE_KEY_FILE"] = str(pem)
    return env


def secrets_of(accounts: list[dict[str, str]]) -> list[str]:
    found = []
    for account in accounts:
        found.append(account["api_key"])
        if "secret" in account:
            found.append(account["secret"])
        else:
            found.append(account["private_key"].splitlines()[1])
    return found


def toml_for(accounts: list[dict[str, str]], tmp_path: Path) -> Path:
    parts = []
    for account in accounts:
        endpoint = ENDPOINT[account["account_type"]].replace("-", "_")
        parts.append(
            f'[[account]]\nname = "{account["name"]}"\napi_key = "{account["api_key"]}"\n'
            f'endpoint = "{endpoint}"'
        )
        if "secret" in account:
            parts.append(f'secret = "{account["secret"]}"')
        else:
            pem = tmp_path / f"{account['name']}.pem"
            pem.write_text(account["private_key"])
            parts.append(f'private_key_file = "{pem.name}"')
    path = tmp_path / "accounts.toml"
    path.write_text("\n".join(parts) + "\n")
    return path
