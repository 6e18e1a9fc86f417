"""``binance-pm serve``: the simulated exchange on 127.0.0.1 until interrupted."""

from __future__ import annotations

import argparse
import asyncio
import errno
import json
import os
import signal
import sys
from typing import Any

from .._endpoints import STATE_ENDPOINT
from .._limits import WEIGHTS, Limits
from ._common import (
    INTERRUPTED,
    OK,
    USAGE,
    add_budget_options,
    fail,
    needs,
    port,
    positive,
    share,
)
from .views import quiet_stdout


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    serve = commands.add_parser(
        "serve",
        help="run the simulated exchange on 127.0.0.1",
        description="Run the simulated Portfolio Margin exchange on 127.0.0.1 until interrupted. "
        "Prints 'base_url URL', then one JSON object per account (name, api_key, key_type, "
        "account_type: PM_1 is PM Pro, PM_2 is PM, PM_3 is PM Pro SPAN; command: the one-shot "
        "command that fits it; endpoint: what watch polls for it; and secret or private_key), "
        "then 'ready'. If standard output closes (serve | head -2), it goes on serving, "
        "silently.",
    )
    serve.add_argument(
        "--port", type=port, default=0, help="port to listen on (default: a free one)"
    )
    serve.add_argument(
        "--accounts", type=positive(int), default=10, help="accounts to make (default 10)"
    )
    serve.add_argument(
        "--seed", type=int, default=0, help="seed for accounts and faults (default 0)"
    )
    add_budget_options(serve, whose="the exchange")
    serve.add_argument(
        "--window-mode",
        choices=("fixed", "sliding"),
        default="fixed",
        help="fixed windows on the server clock, or sliding ones (default fixed)",
    )
    serve.add_argument(
        "--ws-connect",
        type=positive(int),
        default=None,
        metavar="N",
        help="stream connection attempts per IP per --ws-window (default: the published 300)",
    )
    serve.add_argument(
        "--ws-window",
        type=positive(float),
        default=None,
        metavar="SECONDS",
        help="seconds --ws-connect counts over, sliding (default: the published 300)",
    )
    serve.add_argument(
        "--no-combined-streams",
        action="store_true",
        help="answer combined streams' handshakes 404, as a host that has none",
    )
    serve.add_argument(
        "--ping-every",
        type=positive(float),
        default=180.0,
        metavar="SECONDS",
        help="seconds between pings on each stream connection (default 180)",
    )
    serve.add_argument(
        "--risk-every",
        type=positive(float),
        default=0.25,
        metavar="SECONDS",
        help="how often an open stream checks its account's uniMMR (default 0.25)",
    )
    serve.add_argument(
        "--skew-ms", type=int, default=0, help="server clock ahead by this much (default 0)"
    )
    serve.add_argument(
        "--fault",
        type=share,
        action="append",
        default=[],
        metavar="KIND=P",
        help="inject a fault (503, reset, slow, garbage, html) at rate P (default: none)",
    )
    serve.add_argument(
        "--external",
        type=share,
        action="append",
        default=[],
        metavar="FAMILY=SHARE",
        help="share of a family's IP limit another process spends (default: none)",
    )
    serve.add_argument(
        "--uid-costs-ip",
        type=positive(int),
        nargs="?",
        const=0,
        default=None,
        metavar="WEIGHT",
        help="charge UID calls (pm_pro_account) to the sapi IP limit too: their own weight, or "
        "WEIGHT (default: they cost no IP weight, as documented)",
    )
    serve.add_argument(
        "--sapi-scope",
        choices=("family", "endpoint"),
        default="family",
        help="one sapi IP limit for all sapi endpoints, or one per endpoint (default: family)",
    )
    serve.add_argument(
        "--grace-requests",
        type=int,
        default=5,
        metavar="N",
        help="requests refused with 429s, not a ban, just after a 429 (default 5)",
    )
    serve.add_argument(
        "--broken",
        action="append",
        default=[],
        metavar="NAME",
        help="an account (acct-0003…) whose every request fails with a 500 (default: none)",
    )
    serve.add_argument(
        "--push-every",
        type=positive(float),
        default=5.0,
        metavar="SECONDS",
        help="seconds between two PM_PRO_ACCOUNT_UPDATE on a PM Pro stream (default 5)",
    )
    serve.add_argument(
        "--listen-key-ttl",
        type=positive(float),
        default=3600.0,
        metavar="SECONDS",
        help="seconds a listen key lives after its last keepalive (default 3600)",
    )
    serve.add_argument(
        "--keys-dir",
        default=None,
        metavar="DIR",
        help="also write each RSA or Ed25519 account's key to DIR/<name>.pem and an "
        "DIR/accounts.toml that 'binance-pm watch --accounts DIR/accounts.toml --base-url URL' "
        "takes as it is (files readable by you only; an existing accounts.toml is kept unless "
        "--force; default: none)",
    )
    serve.add_argument(
        "--force",
        action="store_true",
        help="with --keys-dir, replace the files of an earlier run",
    )
    serve.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    try:
        from ..testing import SimulatedExchange
    except ImportError as exc:
        return needs("sim", exc)
    limits = {
        key: getattr(args, key) for key in (*WEIGHTS, "ws_window") if getattr(args, key) is not None
    }
    try:
        exchange = SimulatedExchange(
            window=args.window,
            window_mode=args.window_mode,
            accounts=args.accounts,
            seed=args.seed,
            skew_ms=args.skew_ms,
            faults=dict(args.fault),
            external=dict(args.external),
            port=args.port,
            uid_costs_ip=(False if args.uid_costs_ip is None else (args.uid_costs_ip or True)),
            sapi_scope=args.sapi_scope,
            grace_requests=args.grace_requests,
            push_every=args.push_every,
            listen_key_ttl=args.listen_key_ttl,
            ping_every=args.ping_every,
            combined_streams=not args.no_combined_streams,
            risk_every=args.risk_every,
            limits=Limits(**limits),
        )
    except ValueError as exc:
        return fail(str(exc), USAGE)
    names = {account.name: account.api_key for account in exchange.accounts}
    for name in args.broken:
        if name not in names:
            return fail(f"--broken {name!r}: no such account (acct-0000 …)", USAGE)
        exchange.broken.add(names[name])
    if args.keys_dir is not None:
        earlier = [
            path for path in key_files(args.keys_dir, exchange.accounts) if os.path.exists(path)
        ]
        if earlier and not args.force:
            return fail(
                f"--keys-dir {args.keys_dir}: {earlier[0]} exists (an earlier run's keys?); "
                "--force replaces it",
                USAGE,
            )

    async def run() -> None:
        async with exchange:
            if args.keys_dir is not None:  # once listening: a port in use leaves no files
                try:
                    write_keys(args.keys_dir, exchange.accounts)
                except OSError as exc:
                    raise _KeysDirError(
                        f"--keys-dir {args.keys_dir}: cannot write: {exc}"
                    ) from None
            say(f"base_url {exchange.base_url}")
            for account in exchange.accounts:
                kind = account.account_type.value
                record = {
                    "name": account.name,
                    "api_key": account.api_key,
                    "key_type": account.key_type,
                    "account_type": kind,
                    "command": STATE_ENDPOINT[kind].replace("_", "-"),
                    "endpoint": STATE_ENDPOINT[kind],
                }
                if account.secret is not None:
                    record["secret"] = account.secret
                else:
                    assert account.private_key is not None
                    record["private_key"] = account.private_key.decode()
                say(json.dumps(record))
            say("ready")
            accounts = os.path.join(args.keys_dir, "accounts.toml") if args.keys_dir else "FILE"
            hint = "" if args.keys_dir else " (FILE: run serve with --keys-dir DIR to have one)"
            print(
                f"binance-pm: serving; watch it with: binance-pm watch --accounts {accounts} "
                f"--base-url {exchange.base_url}{hint}",
                file=sys.stderr,
                flush=True,
            )
            await exchange.serve_forever()

    # uvicorn shuts down gracefully on SIGTERM and SIGINT, then raises the signal again; let
    # SIGTERM end the command the way Ctrl-C does.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        asyncio.run(run())
    except _KeysDirError as exc:
        return fail(str(exc), USAGE)
    except OSError as exc:
        if exc.errno in (errno.EADDRINUSE, errno.EACCES, errno.EADDRNOTAVAIL):
            return fail(f"--port {args.port}: cannot listen on 127.0.0.1: {exc.strerror}", USAGE)
        return fail(f"cannot serve: {exc}")
    except KeyboardInterrupt:
        return INTERRUPTED
    return OK


def say(line: str) -> None:
    """Print a line for whoever reads; when the reader has gone (``serve | head -2``), say
    nothing more, and go on serving."""
    try:
        print(line, flush=True)
    except BrokenPipeError:
        quiet_stdout()


class _KeysDirError(Exception):
    pass


def key_files(directory: str, accounts: list[Any]) -> list[str]:
    """The files :func:`write_keys` writes in ``directory``: the accounts file, then the PEMs."""
    pems = [f"{account.name}.pem" for account in accounts if account.secret is None]
    return [os.path.join(directory, name) for name in ("accounts.toml", *pems)]


def write_keys(directory: str, accounts: list[Any]) -> None:
    """Each RSA or Ed25519 account's key as ``<name>.pem`` and an ``accounts.toml`` for
    ``binance-pm watch``, in ``directory`` (made if missing), readable by the user only."""
    os.makedirs(directory, exist_ok=True)
    tables = []
    for account in accounts:
        kind = account.account_type.value
        lines = [
            "[[account]]",
            f"name = {json.dumps(account.name)}",
            f"api_key = {json.dumps(account.api_key)}",
            f"endpoint = {json.dumps(STATE_ENDPOINT[kind])}",
        ]
        if account.secret is not None:
            lines.append(f"secret = {json.dumps(account.secret)}")
        else:
            pem = f"{account.name}.pem"
            _private(os.path.join(directory, pem), account.private_key)
            lines.append(f"private_key_file = {json.dumps(pem)}")
        tables.append("\n".join(lines))
    _private(os.path.join(directory, "accounts.toml"), ("\n\n".join(tables) + "\n").encode())


def _private(path: str, data: bytes) -> None:
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as file:
        file.write(data)
    os.chmod(path, 0o600)  # an existing file keeps its mode through O_CREAT
