"""How the examples that talk to ``binance-pm serve`` find it (not a recipe of its own).

Each of those examples takes one optional argument, SERVE_OUTPUT: a file holding what a running
``binance-pm serve`` printed, its ``base_url URL`` line, one JSON object per account, then
``ready``::

    binance-pm serve --push-every 0.5 > serve.txt &   # wait until its last line reads "ready"
    python examples/poll_accounts.py serve.txt

Without it, the example starts ``binance-pm serve`` itself (``python -m binance_pm serve``, in a
process of its own), reads the same lines from it, and stops it when it is done, Ctrl-C
included. So each example is a demo on its own, and a client of any serve you already run.

An account's product is read from its ``account_type`` (``PM_1`` is PM Pro, ``PM_2`` is PM,
``PM_3`` is PM Pro SPAN), never from the endpoint serve suggests for it. That is also why the
examples take serve's printed output and not the ``accounts.toml`` of ``serve --keys-dir``:
the file names no account type.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
import tempfile
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass

import anyio

from binance_pm import AccountType, AsyncClient, Session

#: Seconds a serve started here gets to print ``ready``.
STARTS_WITHIN = 30.0
#: How people name each account type's product.
PRODUCT = {AccountType.PM_1: "PM Pro", AccountType.PM_2: "PM", AccountType.PM_3: "PM Pro SPAN"}


@dataclass(frozen=True)
class ServedAccount:
    """One account of the simulated exchange, as serve printed it."""

    name: str
    api_key: str
    account_type: AccountType
    key_type: str
    secret: str | None = None
    private_key: str | None = None  # PEM text

    @property
    def product(self) -> str:
        """``"PM"``, ``"PM Pro"`` or ``"PM Pro SPAN"``."""
        return PRODUCT[self.account_type]

    def client(self, session: Session) -> AsyncClient:
        """A client of this account through ``session``, named as serve names the account."""
        return session.client(
            self.api_key, secret=self.secret, private_key=self.private_key, name=self.name
        )


@dataclass(frozen=True)
class Exchange:
    """A running ``binance-pm serve``: where it listens, and its accounts."""

    base_url: str
    accounts: list[ServedAccount]

    def of_type(self, account_type: AccountType) -> list[ServedAccount]:
        return [a for a in self.accounts if a.account_type is account_type]


def parse(lines: Iterable[str], source: str) -> Exchange:
    """What serve printed: ``base_url URL``, an account per line, ``ready``."""
    base_url = ""
    accounts = []
    for line in lines:
        line = line.strip()
        if line.startswith("base_url "):
            base_url = line.split(maxsplit=1)[1]
        elif line.startswith("{"):
            record = json.loads(line)
            accounts.append(
                ServedAccount(
                    name=record["name"],
                    api_key=record["api_key"],
                    account_type=AccountType(record["account_type"]),
                    key_type=record["key_type"],
                    secret=record.get("secret"),
                    private_key=record.get("private_key"),
                )
            )
        elif line == "ready":
            if not base_url or not accounts:
                break
            return Exchange(base_url, accounts)
    raise SystemExit(
        f"{source}: not what binance-pm serve prints (a 'base_url URL' line, an account per "
        "line, then 'ready'); is it still starting?"
    )


#: Seconds a serve started here gets to stop when asked, before it is killed.
STOPS_WITHIN = 10.0


def stop(process: asyncio.subprocess.Process) -> None:
    """Ask a process started here to end (SIGTERM), unless it has.

    By its PID, not ``process.terminate()``: that reaps an ended process behind asyncio's
    back (which then logs that it lost it). Ctrl-C at a terminal may have ended it already."""
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signal.SIGTERM)


def arguments(description: str, *, seconds: float | None = None) -> argparse.ArgumentParser:
    """The options of an example against serve: SERVE_OUTPUT, and ``--seconds`` if it runs
    for a while (``seconds`` by default)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "serve_output",
        nargs="?",
        metavar="SERVE_OUTPUT",
        help="a file holding what a running 'binance-pm serve' printed (default: start one)",
    )
    if seconds is not None:
        parser.add_argument(
            "--seconds", type=float, default=seconds, help=f"how long to run (default {seconds:g})"
        )
    return parser


@contextlib.asynccontextmanager
async def served(serve_output: str | None, *serve_args: str) -> AsyncIterator[Exchange]:
    """The exchange whose output is in ``serve_output``; without one, ``binance-pm serve
    SERVE_ARGS`` started here, and stopped when the block ends however it ends."""
    if serve_output is not None:
        try:
            text = await anyio.Path(serve_output).read_text(encoding="utf-8")
        except OSError as exc:
            raise SystemExit(f"{serve_output}: {exc.strerror}") from None
        exchange = parse(text.splitlines(), serve_output)
        print(f"binance-pm serve at {exchange.base_url}, from {serve_output}")
        yield exchange
        return
    # What it says on standard error (how to watch it, or why it cannot start) is kept aside,
    # and shown only if it does not start.
    with tempfile.TemporaryFile() as said:
        process = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "binance_pm", "serve", *serve_args),
            stdout=asyncio.subprocess.PIPE,
            stderr=said,
        )
        try:
            assert process.stdout is not None
            lines = []
            with anyio.move_on_after(STARTS_WITHIN):
                while line := (await process.stdout.readline()).decode():
                    lines.append(line)
                    if line.strip() == "ready":
                        break
            if not lines or lines[-1].strip() != "ready":
                said.seek(0)
                why = said.read().decode(errors="replace").strip() or "it printed no 'ready'"
                raise SystemExit(f"binance-pm serve did not start: {why}")
            exchange = parse(lines, "binance-pm serve")
            print(f"started binance-pm serve (pid {process.pid}) at {exchange.base_url}")
            yield exchange
        finally:
            stop(process)
            with anyio.CancelScope(shield=True):
                with anyio.move_on_after(STOPS_WITHIN):
                    await process.wait()
                if process.returncode is None:  # it did not stop when asked: end it
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(process.pid, signal.SIGKILL)
                    await process.wait()
