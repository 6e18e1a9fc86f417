"""Running ``binance-pm serve`` in its own process, for tests that want the exchange on another
core (or want to test the command itself)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NamedTuple

import httpx


class Served(NamedTuple):
    """A running ``binance-pm serve``: its process, its base URL and the accounts it printed."""

    process: subprocess.Popen[str]
    base_url: str
    accounts: list[dict[str, str]]


@contextmanager
def serve(*args: str) -> Iterator[Served]:
    """Start ``binance-pm serve ARGS``; yield it once it is ready, and stop it at the end."""
    with subprocess.Popen(
        [sys.executable, "-m", "binance_pm", "serve", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as process:
        try:
            assert process.stdout is not None
            first = process.stdout.readline().split()
            assert first, "binance-pm serve printed nothing"
            assert first[0] == "base_url", first
            accounts = []
            for line in process.stdout:
                if line.strip() == "ready":
                    break
                accounts.append(json.loads(line))
            yield Served(process, first[1], accounts)
        finally:
            if process.poll() is None:
                process.kill()
            process.communicate(timeout=10)


def credentials(account: dict[str, str]) -> dict[str, str]:
    if "secret" in account:
        return {"secret": account["secret"]}
    return {"private_key": account["private_key"]}


def stats(base_url: str, *, arrivals: bool = False) -> dict[str, Any]:
    query = "?arrivals=1" if arrivals else ""
    answer: dict[str, Any] = httpx.get(f"{base_url}/_sim/stats{query}", timeout=30).json()
    return answer
