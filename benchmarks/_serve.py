"""What the benchmarks share: the simulated exchange in its own process, and core pinning."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


def pin(core: int) -> None:
    """Run this process on one core, when the machine has more than one."""
    if hasattr(os, "sched_setaffinity") and len(os.sched_getaffinity(0)) > 1:
        os.sched_setaffinity(0, {core})


def keys(account: dict[str, Any]) -> dict[str, Any]:
    """The key keyword arguments for ``Session.client`` of an account ``serve`` printed."""
    if "secret" in account:
        return {"secret": account["secret"]}
    return {"private_key": account["private_key"].encode()}


@contextmanager
def serve(*args: str, core: int | None = None) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """``binance-pm serve ARGS`` in its own process (pinned to ``core``): its base URL and
    accounts; stopped on leaving."""
    command = [sys.executable, "-m", "binance_pm", "serve", *args]
    with subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        text=True,
        preexec_fn=None if core is None else lambda: pin(core),
    ) as process:
        assert process.stdout is not None
        base_url = process.stdout.readline().split()[1]
        accounts = []
        for line in process.stdout:
            if line.strip() == "ready":
                break
            accounts.append(json.loads(line))
        try:
            yield base_url, accounts
        finally:
            process.terminate()
            process.wait(10)
