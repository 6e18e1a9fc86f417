"""Fuzz: whatever the exchange answers, every call ends in time, typed, and leaks nothing.

A raw loopback server (``tests/hostile.py``) answers each request from a script that
hypothesis draws (the time endpoint, which the clock asks, from a script of its own): any status
(1xx to 999), bad status lines and header lines, oversized headers, absurd ``Retry-After`` and
used-weight headers, redirects, bodies that are truncated, nested 50,000 deep, invalid UTF-8,
``{"code", "msg"}`` in a 200, amounts such as ``"NaN"`` or ``"1e999999999"``, error pages that
quote the request, broken chunked encoding, a ``Content-Length`` that lies, stalls, hangs,
dropped and reset connections. After the script, every request gets a good answer. Two tests
drive it:

- single calls of every endpoint, through a :class:`Session` or a standalone
  :class:`AsyncClient`, over the default HTTP stack or a caller's ``httpx.AsyncClient``: each
  call ends within its deadline (plus ``SLACK``) in a result or a :class:`BinancePMError`;
- a :meth:`Session.poll` over several accounts: it never ends on its own, every error it
  yields is a :class:`BinancePMError`, and once the script is used up it goes on yielding.

In both, no signature, full API key or secret reaches any log record (every logger, DEBUG and
up) or the text of an error (its traceback with every cause, as ``logging.exception`` prints
it); no redirect is followed; and once the Session is closed, none of its tasks is left and no
connection is open.

The suite runs ``BINANCE_PM_FUZZ_EXAMPLES`` examples in all (120 by default, about twenty
seconds on two busy cores). To search longer::

    BINANCE_PM_FUZZ_EXAMPLES=20000 python -m pytest tests/test_fuzz.py -q -p no:logging

(``-p no:logging``, or pytest's log capture keeps every DEBUG record the watch turns on: over
thousands of examples, gigabytes, whose garbage collections pause calls past their deadlines.)

A failure prints the script that caused it, shrunk to the fewest and plainest answers.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import traceback
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from binance_pm import AsyncClient, AuthError, BinancePMError, Governor, Session, Update

from .conftest import HMAC_API_KEY, HMAC_SECRET, Account
from .hostile import (
    SIGNED,
    WITNESS,
    Answer,
    Body,
    Echo,
    ErrorJSON,
    Good,
    HostileServer,
    LogWatch,
    Mutated,
    Nested,
    Raw,
    Time,
    Truncated,
    error_text,
    leaks,
    sent_signatures,
    watch_logs,
)

EXAMPLES = int(os.environ.get("BINANCE_PM_FUZZ_EXAMPLES", "120"))
#: Seconds a call may take (the Session's ``timeout``), and how far past it one may end.
TIMEOUT = 0.3
SLACK = 0.5
#: Seconds past the deadline after which a call counts as hung (and is abandoned).
HUNG = 5.0
#: The governor's window: a 429 without ``Retry-After`` shuts a budget this long.
WINDOW = 0.05
#: The poll's period; how many updates, once the script is used up (or no request has gone out
#: for ``HELD`` seconds), end a poll example; the longest a poll example watches.
EVERY = 0.02
AFTER = 3
HELD = 0.5
POLL_CAP = 5.0
#: Seconds a Session has, once closed, to leave no task and no connection behind.
CLEANUP = 1.0

# -- what the hostile server may answer -----------------------------------------------------


def often(default: Any, others: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """``default`` about two times in three (and what failures shrink to), else ``others``."""
    return st.one_of(st.just(default), st.just(default), others)


AMOUNTS = [
    b'""',
    b'"NaN"',
    b'"Infinity"',
    b'"-Infinity"',
    b'"sNaN"',
    b'"1e999999999"',
    b'"1,234.5"',
    b'"\xff\xfe"',
    b'"\\ud800"',
    b'"' + b"9" * 400 + b'"',
    b"9" * 400,
    b"1e400",
    b"-1",
    b"null",
    b"true",
    b"[]",
    b"{}",
    b'"PM_9"',
    b'"0x10"',
]
CODES = [b"-1000", b"-1003", b"-1008", b"-1021", b"-1022", b"-2015", b"0", b"9" * 400, b'"x"']
MESSAGES = [
    b"",
    b"An unknown error occurred while processing the request.",
    b"\xff\xfe\xfd invalid UTF-8",
    b"\\ud800",
    b"Way too much request weight used; IP banned until 1660090423228.",
    b"Way too much request weight used; IP banned until 9999999999999999.",
    b"IP banned until 99999999999999999999",
    b"x" * 5000,
]
SERVER_TIMES = [b"0", b"-1000000000000000", b"1" + b"0" * 30, b"9" * 400, b"1e3", b'"1"', b"null"]
RAW_BODIES = [
    b"",
    b"null",
    b"[]",
    b"{}",
    b"[{}]",
    b'{"code":-1000,"msg":"An unknown error occurred while processing the request."}',
    b"<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>",
    b"\xef\xbb\xbf{}",
    b"\xff\xfe\xfd",
    b'{"serverTime":',
]
bodies: st.SearchStrategy[Body] = st.one_of(
    st.just(Good()),
    st.just(Good()),
    st.builds(Mutated, st.integers(0, 30), st.sampled_from(AMOUNTS)),
    st.builds(Mutated, st.integers(0, 30), st.sampled_from(AMOUNTS)),
    st.builds(Truncated, st.integers(0, 400)),
    st.builds(Nested, st.sampled_from([2, 100, 1_000, 5_000, 50_000]), st.booleans()),
    st.builds(ErrorJSON, st.sampled_from(CODES), st.sampled_from(MESSAGES)),
    st.builds(Time, st.sampled_from(SERVER_TIMES)),
    st.builds(Raw, st.one_of(st.sampled_from(RAW_BODIES), st.binary(max_size=64))),
    st.just(Echo()),
)
STATUSES = [200, 100, 101, 204, 301, 302, 307, 308, 400, 401, 403, 404, 408, 418, 429, 500, 502]
STATUSES += [503, 504, 599, 600, 999]
RETRY_AFTER = [b"0", b"0.01", b"inf", b"1e999", b"nan", b"-1", b"1000000000", b"abc", b""]
RETRY_AFTER += [b"9" * 400, b"Wed, 21 Oct 2015 07:28:00 GMT"]
USED_NAMES = [
    b"X-MBX-USED-WEIGHT-1M",
    b"X-SAPI-USED-IP-WEIGHT-1M",
    b"X-SAPI-USED-UID-WEIGHT-1M",
    b"X-MBX-USED-WEIGHT-0M",
    b"X-MBX-USED-WEIGHT-99999999999999999999D",
    b"X-MBX-USED-WEIGHT-",
]
USED = [b"0", b"-5", b"999999", b"9" * 400, b"1e3", b"nan", b""]
OTHER_HEADERS = [
    (b"Location", WITNESS + b"/stolen"),
    (b"Location", b"/elsewhere"),
    (b"Content-Type", b"text/html"),
    (b"Content-Encoding", b"gzip"),
    (b"Connection", b"close"),
    (b"Content-Length", b"5"),
    (b"Transfer-Encoding", b"gzip, chunked"),
]
headers = st.lists(
    st.one_of(
        st.tuples(st.just(b"Retry-After"), st.sampled_from(RETRY_AFTER)),
        st.tuples(st.sampled_from(USED_NAMES), st.sampled_from(USED)),
        st.sampled_from(OTHER_HEADERS),
    ),
    max_size=3,
).map(tuple)
BAD_LINES = [
    b"No-Colon-Here",
    b"Bad Name: x",
    b"X-Nul: a\x00b",
    b" folded: continuation",
    b"X-Latin: \xff\xfe",
    b"X-Escape: \x1b[31m",
    b": no name",
    b"X-Big: " + b"a" * 20_000,
    b"\r\n".join(b"X-Many-%d: 1" % i for i in range(300)),
    b"HTTP/1.1 200 OK",
]
STATUS_LINES = [
    b"HTTP/1.1 200",
    b"HTTP/1.1 abc OK",
    b"HTTP/1.1 2000 OK",
    b"HTTP/1.1 99999999999999999999 OK",
    b"HTTP/2 200 OK",
    b"HTTP/1.0 200 OK",
    b"ICY 200 OK",
    b"HTTP/1.1 200 \xff\xfe",
    b"garbage",
    b"",
]
answers: st.SearchStrategy[Answer] = st.builds(
    Answer,
    status=often(None, st.sampled_from(STATUSES)),
    body=bodies,
    headers=often((), headers),
    raw_lines=often((), st.lists(st.sampled_from(BAD_LINES), min_size=1, max_size=2).map(tuple)),
    status_line=often(None, st.sampled_from(STATUS_LINES)),
    framing=often("length", st.sampled_from(["chunked", "close", "long", "short", "bad-chunk"])),
    stall=often(0.0, st.sampled_from([0.01, 0.05, 0.01, 0.05, 5.0])),
    cut=often(None, st.integers(0, 300)),
    end=often("keep", st.sampled_from(["close", "reset", "close", "reset", "hang"])),
)
#: The exchange refusing: a 429 or 418 with the exchange's body and any Retry-After.
refusals: st.SearchStrategy[Answer] = st.builds(
    Answer,
    status=st.sampled_from([429, 418]),
    body=st.builds(ErrorJSON, st.just(b"-1003"), st.sampled_from(MESSAGES)),
    headers=st.lists(
        st.tuples(st.just(b"Retry-After"), st.sampled_from(RETRY_AFTER)), max_size=1
    ).map(tuple),
)
#: A redirect to the witness, which no signed request may follow.
redirects: st.SearchStrategy[Answer] = st.builds(
    Answer,
    status=st.sampled_from([301, 302, 303, 307, 308]),
    body=st.just(Raw(b"")),
    headers=st.just(((b"Location", WITNESS + b"/stolen"),)),
)
scripts = st.lists(st.one_of(answers, answers, answers, refusals, redirects), max_size=8)
#: The time endpoint's own script: mostly good, since a clock that cannot be read (or a ban of
#: its family) ends every signed call before the account endpoints' script is reached.
clock_scripts = often([], st.lists(st.one_of(answers, refusals), min_size=1, max_size=4))

# -- accounts and calls ---------------------------------------------------------------------


def _pem(key: ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


# Made here rather than taken from the fixtures: hypothesis prints a test's arguments with
# each failure, and a printed key would bury the script that matters.
ACCOUNTS = {
    "HMAC": Account(HMAC_API_KEY, "HMAC", secret=HMAC_SECRET),
    "HMAC2": Account(
        "fuzzHmacKey000000000000000000000000000000000000000000000000000002",
        "HMAC",
        secret="fuzzHmacSecret00000000000000000000000000000000000000000000000003",
    ),
    "ED25519": Account(
        "fuzzEd25519Key00000000000000000000000000000000000000000000000001",
        "ED25519",
        private_pem=_pem(ed25519.Ed25519PrivateKey.generate()),
    ),
    "RSA": Account(
        "fuzzRsaKey0000000000000000000000000000000000000000000000000000004",
        "RSA",
        private_pem=_pem(rsa.generate_private_key(public_exponent=65537, key_size=2048)),
    ),
}

CALLS: dict[str, Callable[[AsyncClient], Awaitable[Any]]] = {
    "pm_balance()": lambda c: c.pm_balance(),
    "pm_balance(asset='USDT')": lambda c: c.pm_balance(asset="USDT"),
    "pm_pro_balance()": lambda c: c.pm_pro_balance(),
    "pm_pro_balance(asset='BTC')": lambda c: c.pm_pro_balance(asset="BTC"),
    "pm_pro_account()": lambda c: c.pm_pro_account(),
    "pm_pro_span_account()": lambda c: c.pm_pro_span_account(),
    "classic_pm_account(asset='BTC')": lambda c: c.classic_pm_account(asset="BTC"),
}


@dataclass(frozen=True)
class Stack:
    """How calls are sent: ``owner`` is a Session or a standalone AsyncClient; ``http`` the
    default stack or a caller's ``httpx.AsyncClient`` (following redirects or not);
    ``max_retries`` the Session's."""

    owner: str = "session"
    http: str = "default"
    max_retries: int = 2


stacks = st.builds(
    Stack,
    owner=st.sampled_from(["session", "client"]),
    http=often("default", st.sampled_from(["httpx", "httpx-following"])),
    max_retries=st.sampled_from([2, 0, 1]),
)


@dataclass(frozen=True)
class Problem:
    """One broken invariant: ``kind`` is the same wherever it happens (for telling distinct
    failures apart), ``text`` says what happened this time."""

    kind: str
    text: str

    def __str__(self) -> str:
        return self.text


@dataclass
class Run:
    """What one example saw, and what it found wrong."""

    server: HostileServer
    witness: HostileServer
    logs: LogWatch
    secrets: list[str]
    problems: list[Problem] = field(default_factory=list)

    def add(self, kind: str, text: str) -> None:
        self.problems.append(Problem(kind, text))

    def check_error(self, error: BaseException, what: str, *, typed: bool = True) -> None:
        """``error`` is a BinancePMError (if ``typed``) and shows no secret."""
        if typed and not isinstance(error, BinancePMError):
            self.add(f"raised {_kind(error)}", f"{what} raised {_described(error)}")
        secrets = self._secrets()
        shown = leaks(error_text(error), secrets)
        if shown:
            where = "its message" if leaks(f"{error!r} {error}", secrets) else "its causes"
            self.add(
                f"{type(error).__name__} shows a secret in {where}",
                f"{what}: {type(error).__name__} shows {shown} in {where}: "
                f"{_redacted(str(error), secrets)[:200]}",
            )

    def _secrets(self) -> list[str]:
        return [*self.secrets, *sent_signatures(self.server.requests)]

    async def finish(self, tasks_before: set[asyncio.Task[Any]]) -> None:
        """The checks once every client and Session is closed."""
        if not await self.server.wait_all_closed(CLEANUP):
            self.add(
                "a connection left open",
                f"{self.server.open_connections} connection(s) still open after the Session "
                f"closed: {self.server.open_states()}",
            )
        mine = tasks_before | self.server.handler_tasks | self.witness.handler_tasks
        left = _foreign_tasks(mine)
        ends = time.monotonic() + CLEANUP
        while left and time.monotonic() < ends:
            await asyncio.sleep(0.01)
            left = _foreign_tasks(mine)
        if left:
            self.add("a task left", f"tasks left after the Session closed: {sorted(left)}")
        if self.witness.requests:
            target = self.witness.requests[0].target
            self.add("a redirect followed", f"a redirect was followed: {target[:40]}…")
        secrets = self._secrets()
        for record, text in zip(self.logs.records, self.logs.texts, strict=True):
            shown = leaks(text, secrets)
            if shown:
                self.add(
                    f"log record of {record.name} at {record.funcName} shows a secret",
                    f"a log record shows {shown}: {_redacted(text, secrets)[:200]!r}",
                )
            if record.name == "asyncio" and record.levelno >= logging.ERROR:
                message = record.getMessage()
                self.add(f"asyncio logged {message[:30]}", f"asyncio logged: {message[:200]}")


def _foreign_tasks(mine: set[asyncio.Task[Any]] | frozenset[asyncio.Task[Any]]) -> list[str]:
    current = asyncio.current_task()
    return [
        task.get_name() + " " + repr(task.get_coro())[:80]
        for task in asyncio.all_tasks()
        if task is not current and task not in mine and not task.done()
    ]


def _redacted(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "«secret»")
    return SIGNED.sub("signature=«secret»", text)


def _kind(error: BaseException) -> str:
    """The error's type and the deepest line of this package it passed through (for a group,
    its members')."""
    members = getattr(error, "exceptions", None)
    if isinstance(members, tuple):
        inner = sorted({_kind(member) for member in members})
        return f"{type(error).__name__} of {', '.join(inner)}"
    return _described(error, message=False)


def _described(error: BaseException, *, message: bool = True) -> str:
    """``OverflowError: … (at binance_pm/_governor.py:412 in _close)``: the type, message and
    the deepest line of this package the error passed through."""
    where = ""
    for frame in traceback.extract_tb(error.__traceback__):
        if "/binance_pm/" in frame.filename:
            name = frame.filename[frame.filename.rindex("/binance_pm/") + 1 :]
            where = f" (at {name}:{frame.lineno} in {frame.name})"
    name = type(error).__qualname__
    if type(error).__module__ != "builtins":
        name = f"{type(error).__module__}.{name}"
    if not message:
        return f"{name}{where}"
    return f"{name}: {str(error)[:160]}{where}"


async def _in_time(run: Run, what: str, call: Awaitable[Any]) -> Any:
    """Await ``call``, checking that it ends within its deadline in a result or a typed error;
    the result, or ``None``."""
    started = time.monotonic()
    result = None
    with anyio.move_on_after(TIMEOUT + HUNG) as scope:
        try:
            result = await call
        except Exception as exc:
            run.check_error(exc, what)
    took = time.monotonic() - started
    if scope.cancelled_caught:
        run.add("a call hung", f"{what} hung: no end {TIMEOUT + HUNG:g} s after it began")
    elif took > TIMEOUT + SLACK:
        run.add("a call overran", f"{what} took {took:.2f} s, over its {TIMEOUT:g} s deadline")
    return result


def _http(stack: Stack) -> httpx.AsyncClient | None:
    if stack.http == "default":
        return None
    return httpx.AsyncClient(follow_redirects=stack.http == "httpx-following")


async def _calls_example(
    script: list[Answer],
    clock: list[Answer],
    stack: Stack,
    account: Account,
    calls: Sequence[str],
) -> list[Problem]:
    tasks_before = set(asyncio.all_tasks())
    with watch_logs() as logs:
        async with (
            HostileServer() as witness,
            HostileServer(script, clock=clock, witness=witness.url) as server,
        ):
            run = Run(server, witness, logs, [account.api_key, *_secret_texts(account)])
            http = _http(stack)
            options: dict[str, Any] = {
                "base_url": server.url,
                "governor": Governor(window=WINDOW),
                "timeout": TIMEOUT,
                "http": http,
                "max_retries": stack.max_retries,
            }
            try:
                if stack.owner == "session":
                    async with Session(**options) as session:
                        client = session.client(account.api_key, **account.credentials())
                        for name in calls:
                            await _in_time(run, name, CALLS[name](client))
                else:
                    async with AsyncClient(
                        account.api_key, **account.credentials(), **options
                    ) as client:
                        for name in calls:
                            await _in_time(run, name, CALLS[name](client))
            except Exception as exc:
                run.check_error(exc, "closing")
            finally:
                if http is not None:
                    await http.aclose()
            await run.finish(tasks_before)
    return run.problems


def _secret_texts(account: Account) -> list[str]:
    if account.secret is not None:
        return [account.secret]
    assert account.private_pem is not None
    lines = account.private_pem.decode().splitlines()
    return [line for line in lines if "-----" not in line and len(line) > 16]


def _run(example: Callable[[], Awaitable[list[Problem]]]) -> list[Problem]:
    async def guarded() -> list[Problem]:
        with anyio.move_on_after(60):
            return await example()
        return [Problem("the example hung", "the example hung for 60 s")]

    return asyncio.run(guarded())


@settings(
    max_examples=max(1, EXAMPLES * 3 // 4),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    script=scripts,
    clock=clock_scripts,
    stack=stacks,
    key_type=st.sampled_from(["HMAC", "ED25519", "RSA"]),
    calls=st.lists(st.sampled_from(sorted(CALLS)), min_size=1, max_size=4),
)
def test_whatever_the_exchange_answers_each_call_ends_in_time_typed_and_leaks_nothing(
    script: list[Answer],
    clock: list[Answer],
    stack: Stack,
    key_type: str,
    calls: list[str],
) -> None:
    problems = _run(lambda: _calls_example(script, clock, stack, ACCOUNTS[key_type], calls))

    assert not problems, "\n".join(map(str, problems))


# -- the poll ---------------------------------------------------------------------------------

POLL_ACCOUNTS = ("HMAC", "ED25519", "HMAC2")
endpoint_sets = st.lists(
    st.sampled_from(sorted(name.split("(")[0] for name in CALLS)),
    min_size=1,
    max_size=2,
    unique=True,
)


async def _poll_example(
    script: list[Answer], clock: list[Answer], plan: dict[str, list[str]], asset: str | None
) -> list[Problem]:
    tasks_before = set(asyncio.all_tasks())
    with watch_logs() as logs:
        async with (
            HostileServer() as witness,
            HostileServer(script, clock=clock, witness=witness.url) as server,
        ):
            accounts = [ACCOUNTS[name] for name in plan]
            secrets = [text for a in accounts for text in (a.api_key, *_secret_texts(a))]
            run = Run(server, witness, logs, secrets)
            try:
                async with Session(
                    base_url=server.url, governor=Governor(window=WINDOW), timeout=TIMEOUT
                ) as session:
                    jobs = {
                        session.client(a.api_key, **a.credentials()): endpoints
                        for a, endpoints in zip(accounts, plan.values(), strict=True)
                    }
                    polled = session.poll(jobs, every=EVERY, asset=asset)
                    await _watch_poll(run, polled, jobs)
            except Exception as exc:
                run.check_error(exc, "the poll's Session")
            await run.finish(tasks_before)
    return run.problems


async def _watch_poll(run: Run, running: Any, jobs: dict[AsyncClient, list[str]]) -> None:
    """Read the poll until it has shown that it goes on, then close it, checking every update.

    It has once ``AFTER`` updates came after the script was used up, or while no request had
    reached the server for ``HELD`` seconds (every budget held shut, as a 31-year
    ``Retry-After`` does); or, failing both, after ``POLL_CAP`` seconds.
    """
    started = last = seen_at = closing = time.monotonic()
    seen = after = 0
    ended = False
    finals: set[tuple[AsyncClient, str]] = set()
    with anyio.move_on_after(POLL_CAP + HUNG) as bounded:
        try:
            async with running as updates:
                with anyio.move_on_after(POLL_CAP):
                    async for update in updates:
                        last = time.monotonic()
                        _check_update(run, update)
                        if update.final:  # a refused key ends all of that account's jobs
                            names = (
                                jobs[update.client] if isinstance(update.error, AuthError) else []
                            )
                            finals.update((update.client, n) for n in [update.endpoint, *names])
                        if len(run.server.requests) != seen:
                            seen, seen_at = len(run.server.requests), last
                        if run.server.used_up.is_set() or last - seen_at >= HELD:
                            after += 1
                            if after >= AFTER:
                                break
                    else:
                        ended = True
                closing = time.monotonic()
        except Exception as exc:
            run.add(f"the poll ended with {_kind(exc)}", f"the poll ended with {_described(exc)}")
            run.check_error(exc, "the poll", typed=False)
    took = time.monotonic() - closing
    if bounded.cancelled_caught or took > 1.0 + SLACK:
        run.add("closing the poll was slow", f"closing the poll took {took:.2f} s")
    every_job = {(client, name) for client, names in jobs.items() for name in names}
    # Only a refused key (AuthError) ends an account's polling, with a final update saying so;
    # the poll ends by itself only once every account has been refused that way.
    if ended and not every_job <= finals:
        run.add("the poll ended on its own", "the poll ended on its own")
    # A failing job backs off doubling from ``every``, with jitter of at most 1.5: its next
    # wait is at most three times the time it has run, plus one call's deadline.
    quiet = closing - last
    if after < AFTER and quiet > 3 * (last - started) + TIMEOUT + SLACK + 1.0:
        run.add("the poll went quiet", f"the poll went quiet: no update in its last {quiet:.2f} s")


def _check_update(run: Run, update: Update) -> None:
    if update.error is not None:
        run.check_error(update.error, f"poll update {update.endpoint}")
    elif update.result is None:
        run.add(
            "an update with neither result nor error",
            f"poll update {update.endpoint}: neither a result nor an error",
        )


@settings(
    max_examples=max(1, EXAMPLES // 4),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    script=scripts,
    clock=clock_scripts,
    plan=st.fixed_dictionaries({name: endpoint_sets for name in POLL_ACCOUNTS}),
    asset=st.sampled_from([None, "BTC"]),
)
def test_a_poll_over_any_answers_never_ends_keeps_yielding_and_leaks_nothing(
    script: list[Answer],
    clock: list[Answer],
    plan: dict[str, list[str]],
    asset: str | None,
) -> None:
    if asset is None:
        plan = {
            name: [e for e in endpoints if e != "classic_pm_account"] or ["pm_balance"]
            for name, endpoints in plan.items()
        }

    problems = _run(lambda: _poll_example(script, clock, plan, asset))

    assert not problems, "\n".join(map(str, problems))
