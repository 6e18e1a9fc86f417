"""Shared fixtures: accounts of every key type, one fixture per kind of exchange, and virtual
time for running the simulated exchange and a Session together on trio's MockClock.

The kinds of exchange, each a fixture of its own:

- ``simulated``: the package's :class:`~binance_pm.testing.SimulatedExchange` on loopback, made
  for each test with the options of its nearest ``@pytest.mark.simulated(**options)`` (the
  class's defaults without one);
- ``served``: ``binance-pm serve`` in a process of its own, one per module, with the arguments
  of the module's ``pytestmark = pytest.mark.served(*args)``; a test that stops the process or
  wants other arguments opens its own with :func:`tests.served.serve`;
- ``scripted``: :class:`~tests.hostile.HostileServer`, a raw loopback server that answers what
  the test scripts, byte for byte (the time endpoints answer well unless a test scripts them
  too), and good answers once the script is used up; ``witness`` a second one that a scripted
  redirect may point at and that must never be asked anything;
- ``mocked``: :class:`MockExchange`, no server at all: the handler of an
  ``httpx.MockTransport`` behind the ``session`` and ``client`` fixtures, for unit tests of the
  call path through a caller's httpx client, down to the transport's own exceptions.
"""

from __future__ import annotations

import random
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, MutableMapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, TypedDict, TypeVar

import anyio
import httpx
import pytest
import trio
import trio.testing
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from binance_pm import AsyncClient, Session
from binance_pm.testing import SimulatedExchange
from binance_pm.testing._verify import signature_valid

from .documented import DOCUMENTED, error_body, fixture_bytes
from .hostile import HostileServer
from .served import Served, serve

# The documented HMAC example key pair (BINANCE_FACTS.md, first test vector).
HMAC_API_KEY = "vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A"
HMAC_SECRET = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j"

TEST_BASE_URL = "https://exchange.test"


@dataclass
class Account:
    """One test account: its API key, how it signs, and how the exchange checks it."""

    api_key: str
    key_type: str
    secret: str | None = None
    private_pem: bytes | None = None
    public_key: Any = None

    def credentials(self) -> dict[str, Any]:
        if self.secret is not None:
            return {"secret": self.secret}
        return {"private_key": self.private_pem}

    def verify(self, payload: bytes, signature: str) -> bool:
        """As the exchange checks it (the simulated exchange's own check)."""
        return signature_valid(self, payload, signature.encode())


def _pem(key: ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


@pytest.fixture(scope="session")
def ed25519_key() -> ed25519.Ed25519PrivateKey:
    return ed25519.Ed25519PrivateKey.generate()


@pytest.fixture(scope="session")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="session")
def accounts(
    ed25519_key: ed25519.Ed25519PrivateKey, rsa_key: rsa.RSAPrivateKey
) -> dict[str, Account]:
    return {
        "HMAC": Account(HMAC_API_KEY, "HMAC", secret=HMAC_SECRET),
        "ED25519": Account(
            "ed25519KeyForTests000000000000000000000000000000000000000000001",
            "ED25519",
            private_pem=_pem(ed25519_key),
            public_key=ed25519_key.public_key(),
        ),
        "RSA": Account(
            "rsaKeyForTests00000000000000000000000000000000000000000000000002",
            "RSA",
            private_pem=_pem(rsa_key),
            public_key=rsa_key.public_key(),
        ),
    }


@pytest.fixture(params=["HMAC", "ED25519", "RSA"])
def account(request: pytest.FixtureRequest, accounts: dict[str, Account]) -> Account:
    result: Account = accounts[request.param]
    return result


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "simulated(**options): the SimulatedExchange options of the test's `simulated` exchange",
    )
    config.addinivalue_line(
        "markers", "served(*args): the `binance-pm serve` arguments of the module's `served`"
    )


# -- the kinds of exchange -----------------------------------------------------------------------


@pytest.fixture
async def simulated(request: pytest.FixtureRequest) -> AsyncIterator[SimulatedExchange]:
    """The simulated exchange on loopback, with the options of the test's nearest
    ``@pytest.mark.simulated(**options)``."""
    marker = request.node.get_closest_marker("simulated")
    options = marker.kwargs if marker is not None else {}
    async with SimulatedExchange(**options) as exchange:
        yield exchange


@pytest.fixture(scope="module")
def served(request: pytest.FixtureRequest) -> Iterator[Served]:
    """``binance-pm serve`` in its own process for the whole module, with the arguments of the
    module's ``pytestmark = pytest.mark.served(*args)``."""
    marker = request.node.get_closest_marker("served")
    with serve(*(marker.args if marker is not None else ())) as running:
        yield running


@pytest.fixture
async def witness() -> AsyncIterator[HostileServer]:
    """A scripted server that must never be asked anything: where a redirect points."""
    async with HostileServer() as server:
        yield server


@pytest.fixture
async def scripted(witness: HostileServer) -> AsyncIterator[HostileServer]:
    """The scripted server: each request but the time endpoints' takes the next answer a test
    pushed; good answers once they are used up."""
    async with HostileServer(clock=(), witness=witness.url) as server:
        yield server


Answer = tuple[int, bytes, dict[str, str]]


@dataclass
class MockExchange:
    """An ``httpx.MockTransport`` handler that checks requests as the exchange does.

    It verifies the API key, the signature over the exact query bytes, and the timestamp
    against its own clock (``time.time()`` plus ``skew_ms``); answers the time endpoint; and
    otherwise answers from ``script`` (per path, a queue of scripted answers used first) or the
    documented example.
    """

    accounts: dict[str, Account]
    skew_ms: int = 0
    requests: list[httpx.Request] = field(default_factory=list)
    script: dict[str, deque[Answer | Exception]] = field(default_factory=dict)
    time_calls: int = 0
    time_delay: Callable[[], None] | None = None

    def push(self, path: str, *answers: Answer | Exception) -> None:
        self.script.setdefault(path, deque()).extend(answers)

    def server_ms(self) -> int:
        return int(time.time() * 1000) + self.skew_ms

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path = request.url.path
        if path in ("/api/v3/time", "/fapi/v1/time"):
            self.time_calls += 1
            return httpx.Response(200, json={"serverTime": self.server_ms()})
        queued = self.script.get(path)
        if queued:
            answer = queued.popleft()
            if isinstance(answer, Exception):
                raise answer
            status, body, headers = answer
            return httpx.Response(status, content=body, headers=headers)
        refused = self._check_signed(request)
        if refused is not None:
            return refused
        return httpx.Response(200, content=fixture_bytes(DOCUMENTED[path]))

    def _check_signed(self, request: httpx.Request) -> httpx.Response | None:
        by_key = {a.api_key: a for a in self.accounts.values()}
        account = by_key.get(request.headers.get("X-MBX-APIKEY", ""))
        if account is None:
            return httpx.Response(
                401, content=error_body(-2015, "Invalid API-key, IP, or permissions for action.")
            )
        query = request.url.query
        payload, sep, signature = query.rpartition(b"&signature=")
        if not sep or b"&" in signature or not account.verify(payload, signature.decode()):
            return httpx.Response(
                400, content=error_body(-1022, "Signature for this request is not valid.")
            )
        params = dict(p.split("=", 1) for p in payload.decode().split("&"))
        timestamp, window = int(params["timestamp"]), int(params.get("recvWindow", 5000))
        now = self.server_ms()
        if timestamp >= now + 1000 or now - timestamp > window:
            return httpx.Response(
                400,
                content=error_body(
                    -1021, "Timestamp for this request is outside of the recvWindow."
                ),
            )
        return None


@pytest.fixture
def mocked(accounts: dict[str, Account]) -> MockExchange:
    """The exchange behind the ``session`` fixture's ``httpx.MockTransport``."""
    return MockExchange(accounts)


@pytest.fixture
async def session(mocked: MockExchange) -> AsyncIterator[Session]:
    async with (
        httpx.AsyncClient(transport=httpx.MockTransport(mocked)) as http,
        Session(base_url=TEST_BASE_URL, http=http, timeout=5.0) as s,
    ):
        yield s


@pytest.fixture
def client(session: Session, account: Account) -> AsyncClient:
    return session.client(account.api_key, **account.credentials())


class Stack(TypedDict, total=False):
    """The keywords that choose a Session's (or a standalone client's) sending layer."""

    http: httpx.AsyncClient


@pytest.fixture(params=["own", "httpx"])
async def http_stack(request: pytest.FixtureRequest) -> AsyncIterator[Stack]:
    """Each sending layer, as keywords to make a Session or client with: none, for the default
    (the Session's own HTTP/1.1 sender under asyncio); or ``http=``, a caller's
    ``httpx.AsyncClient`` (set to follow redirects, as callers' clients may be: the Session
    must not)."""
    if request.param == "own":
        yield {}
        return
    async with httpx.AsyncClient(follow_redirects=True) as http:
        yield {"http": http}


# -- virtual time ------------------------------------------------------------------------------
#
# The simulated exchange served in process (httpx.ASGITransport) to a Session whose governor,
# exchange clock and deadlines all run on trio's MockClock: time jumps whenever every task
# waits, so windows, timers and backoffs pass exactly and at once. What the budget's use, the
# fairness of a poll or a backoff come to is then the same on an idle machine and a busy one.

T = TypeVar("T")

VIRTUAL_EPOCH = 1_700_000_000.0  # the virtual wall clock when the virtual clock reads 0


def virtual_wall() -> float:
    """Wall-clock seconds in virtual time: pass as ``SimulatedExchange(clock=virtual_wall)``."""
    return VIRTUAL_EPOCH + trio.current_time()


def run_virtual(main: Callable[[], Awaitable[T]]) -> T:
    """Run ``main`` under trio, in virtual time."""
    return trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


class Latency:
    """ASGI middleware: each request takes up to ``most`` seconds to reach ``app`` and its
    answer as long again to come back, drawn from ``seed``, as on a network."""

    def __init__(self, app: SimulatedExchange, most: float, seed: int) -> None:
        self.app = app
        self.most = most
        self._rng = random.Random(seed)

    async def __call__(
        self,
        scope: MutableMapping[str, Any],
        receive: Callable[[], Awaitable[MutableMapping[str, Any]]],
        send: Callable[[MutableMapping[str, Any]], Awaitable[None]],
    ) -> None:
        await anyio.sleep(self._rng.uniform(0, self.most))
        await self.app(scope, receive, send)
        await anyio.sleep(self._rng.uniform(0, self.most))  # the whole answer comes back at once


@asynccontextmanager
async def virtual_session(
    exchange: SimulatedExchange, *, latency: float = 0.005, seed: int = 0, **options: Any
) -> AsyncIterator[Session]:
    """A Session talking to ``exchange`` (made with ``clock=virtual_wall``) in process, with
    up to ``latency`` seconds each way; its governor (``exchange.governor()`` unless given)
    and its clock in virtual time. Call it inside :func:`run_virtual`."""
    options.setdefault("governor", exchange.governor(clock=trio.current_time))
    transport = httpx.ASGITransport(app=Latency(exchange, latency, seed))
    async with (
        httpx.AsyncClient(transport=transport) as http,
        Session(base_url=TEST_BASE_URL, http=http, **options) as session,
    ):
        session.clock.wall = virtual_wall
        yield session
