"""Transports: client CPU per signed, decoded call of each REST transport the SDK could stand on.

The question is which HTTP client the Session should send through under asyncio. Today it is
its own HTTP/1.1 sender (``binance_pm._sender.WireSender``: kept-alive connections on an
``asyncio.Protocol``, answers parsed by llhttp through httptools). Measured in one run, beside
python-binance's ``AsyncClient.papi_get_balance()`` (the reference) and binance_pm's own
``Session(...).client(...).pm_balance()`` (the full SDK, on its own sender):

- aiohttp (the Session's sender up to 0.1.0), aiosonic, pyreqwest and rnet (both Rust-backed),
  httpx (the way users bring their own client), and the Session's own sender alone.

Each transport does the same work per call, the work the Session's sender does: build the signed
query (``timestamp``, ``recvWindow``, an HMAC-SHA256 ``signature`` with ``hmac``), send
``GET /papi/v1/balance`` with the ``X-MBX-APIKEY`` header and redirects off, refuse a body past
4 MiB by its Content-Length (counting it as it comes when there is none), read the body, look
up the used-weight header, and decode the body with the very decoder of the ``pm_balance``
endpoint (``binance_pm._endpoints.PM_BALANCE.decode``: msgspec into ``PMBalance`` Structs). Each
transport keeps up to 200 connections, one per caller at 200 in flight; python-binance and the
Session keep their own pools (100, aiohttp's default).

The server is the canned exchange of ``end_to_end.py`` (``_canned.py``), in its own process on
core 0; the clients run here, on core 1 (with their Rust runtimes' threads: CPU is that of the
whole process). Every transport's first answer must equal the recorded balances, decoded, and
so must the last of every measurement. Rounds are interleaved at 10 and 200 calls in flight,
the order rotated from round to round; figures are medians (min-max) of the rounds, the ratios
medians of the per-round ratios. Memory: each transport alone in a fresh process, the growth of
its resident memory per connection it opened going from 10 to 200 in flight (an upper bound:
it also holds what the 190 more callers left behind).

Prints the CPU µs per call at 10 and at 200 in flight with the ratio to python-binance's, the
SDK's own work per call above its transport's (the Session's minus its sender's alone, target
≤ 15 µs), and
a table of what each transport keeps of what the SDK must keep, taken from each library's
documented API (its installed source and docstrings). A transport that is not installed is
printed as such. Target: the transport whose CPU per call is ≤ 0.80× python-binance's at both
concurrencies with every must-keep property.

Then, for each library, a **clean exit**: in 20 fresh processes (half pinned to one core), one
client makes a request whose host name does not resolve and one that is answered, is closed,
and the interpreter leaves at once, as a short-lived tool does after a network blip; any status
but 0 (an abort at exit shows as 134, a segmentation fault as 139) is counted. A transport that
can take the process down with it is not one the SDK can stand on, however cheap.

Run: ``python benchmarks/transports.py`` (about two minutes on two cores; ``--rounds``
and ``--calls`` to change). Needs ``pip install aiosonic pyreqwest rnet`` for those rows.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import hashlib
import hmac
import importlib.metadata
import json
import os
import statistics
import subprocess
import sys
import textwrap
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import aiohttp
import httpx
import yarl
from _canned import FIXTURE, canned
from _serve import pin
from end_to_end import API_KEY, BALANCE_PATH, SECRET, Contender, high, measure, spread

from binance_pm import Session, TransportError
from binance_pm._endpoints import PM_BALANCE
from binance_pm._sender import WireSender

IN_FLIGHT = (10, 200)
ROUNDS = 5
CALLS = 1500
POOL = max(IN_FLIGHT)
MAX_BODY = 4 * 1024 * 1024  # the Session's default
TARGET = 0.80
OWN_WORK_TARGET = 15e-6  # seconds of CPU per call above the transport's floor
TIMEOUT = 10.0
REFERENCE = "python-binance"
#: The recorded balances, decoded as the SDK decodes them: what every answer must equal.
EXPECTED = PM_BALANCE.decode(FIXTURE.read_bytes())
EXPECTED_DICTS = json.loads(FIXTURE.read_text())
HEADERS = {"User-Agent": "binance_pm", "Accept": "application/json", "X-MBX-APIKEY": API_KEY}
WEIGHT = "x-mbx-used-weight-1m"
#: Memory probe: calls at 10 in flight to settle, then at 200 to open the pool up.
MEMORY_CALLS = (300, 1000)


class TooBig(Exception):
    """The answer is longer than ``MAX_BODY``: refused, not held."""


def signed_target() -> str:
    """The signed path and query of one call: timestamp, recvWindow, HMAC-SHA256 signature."""
    query = f"recvWindow=5000&timestamp={int(time.time() * 1000)}"
    signature = hmac.new(SECRET.encode(), query.encode(), hashlib.sha256).hexdigest()
    return f"{BALANCE_PATH}?{query}&signature={signature}"


def settle(status: int, weight: object, body: bytes) -> Any:
    """What the Session does with an answer: check the status, note the weight, decode."""
    if status != 200:
        raise RuntimeError(f"HTTP {status}")
    if weight is None:
        raise RuntimeError("no used-weight header")
    return PM_BALANCE.decode(body)


def too_big(length: object) -> bool:
    """Whether a Content-Length (str, bytes or None) announces more than ``MAX_BODY``."""
    return length is not None and int(cast(Any, length)) > MAX_BODY


def is_expected(result: Any) -> bool:
    return bool(result == EXPECTED)


# -- the full clients ---------------------------------------------------------------------------


async def python_binance(url: str) -> Contender:
    from binance import AsyncClient

    # Its URLs are class attributes; ``create`` pings and reads the server time, as users do.
    loopback: Any = type(
        "LoopbackClient", (AsyncClient,), {"API_URL": f"{url}/api", "PAPI_URL": f"{url}/papi"}
    )
    client = await loopback.create(API_KEY, SECRET)
    return Contender(
        client.papi_get_balance, lambda r: bool(r == EXPECTED_DICTS), client.close_connection
    )


async def binance_pm(url: str) -> Contender:
    session = Session(base_url=url, governor=high(), timeout=TIMEOUT)
    client = session.client(API_KEY, secret=SECRET)
    return Contender(client.pm_balance, is_expected, session.aclose)


# -- the transports, each sending as the Session's sender would ----------------------------------


async def bare_aiohttp(url: str) -> Contender:
    connector = aiohttp.TCPConnector(
        limit=POOL, limit_per_host=0, keepalive_timeout=30.0, enable_cleanup_closed=False
    )
    session = aiohttp.ClientSession(
        connector=connector,
        headers=HEADERS,
        skip_auto_headers=("User-Agent", "Accept-Encoding"),
        cookie_jar=aiohttp.DummyCookieJar(),
        timeout=aiohttp.ClientTimeout(total=TIMEOUT),
        trust_env=False,
    )

    async def call() -> Any:
        target = yarl.URL(url + signed_target(), encoded=True)
        async with session.get(target, allow_redirects=False) as answer:
            size = answer.content_length
            if size is not None:
                if size > MAX_BODY:
                    raise TooBig
                body = await answer.read()
            else:
                chunks, total = [], 0
                while chunk := await answer.content.readany():
                    total += len(chunk)
                    if total > MAX_BODY:
                        raise TooBig
                    chunks.append(chunk)
                body = b"".join(chunks)
            return settle(answer.status, answer.headers.get(WEIGHT), body)

    return Contender(call, is_expected, session.close)


async def bare_httpx(url: str) -> Contender:
    client = httpx.AsyncClient(
        headers=HEADERS,
        timeout=TIMEOUT,
        follow_redirects=False,
        limits=httpx.Limits(max_connections=POOL, max_keepalive_connections=POOL),
    )

    async def call() -> Any:
        answer = await client.send(client.build_request("GET", url + signed_target()), stream=True)
        try:
            length = answer.headers.get("content-length")
            if too_big(length):
                raise TooBig
            if length is not None:
                body = await answer.aread()
            else:
                chunks, total = [], 0
                async for chunk in answer.aiter_raw():
                    total += len(chunk)
                    if total > MAX_BODY:
                        raise TooBig
                    chunks.append(chunk)
                body = b"".join(chunks)
        finally:
            await answer.aclose()
        return settle(answer.status_code, answer.headers.get(WEIGHT), body)

    return Contender(call, is_expected, client.aclose)


async def aiosonic_(url: str) -> Contender:
    import aiosonic  # type: ignore[import-not-found,unused-ignore]
    from aiosonic.pools import PoolConfig  # type: ignore[import-not-found,unused-ignore]

    # PoolConfig's defaults (30 connections, each recycled after 1,000 requests) would make it
    # wait and reconnect where the others do not.
    connector = aiosonic.TCPConnector(
        pool_configs={":default": PoolConfig(size=POOL, max_conn_requests=None)}
    )
    client = aiosonic.HTTPClient(connector=connector, follow=False)

    async def call() -> Any:
        # stream=True: the headers first, so that a body too long is refused before it is read.
        answer = await client.request(url + signed_target(), "GET", headers=HEADERS, stream=True)
        try:
            length = answer.headers.get("content-length")
            if too_big(length):
                raise TooBig
            if length is not None:
                body = await answer.content()
            else:
                chunks, total = [], 0
                async for chunk in answer.read_chunks():
                    total += len(chunk)
                    if total > MAX_BODY:
                        raise TooBig
                    chunks.append(chunk)
                body = b"".join(chunks)
        finally:
            await answer.aclose()
        return settle(answer.status_code, answer.headers.get(WEIGHT), body)

    return Contender(call, is_expected, client.aclose)


async def pyreqwest_(url: str) -> Contender:
    from pyreqwest.client import ClientBuilder  # type: ignore[import-not-found,unused-ignore]

    client = (
        ClientBuilder()
        .follow_redirects(False)
        .default_headers(HEADERS)
        .pool_max_idle_per_host(POOL)
        .max_connections(POOL)
        .build()
    )

    async def call() -> Any:
        # build_streamed: the headers first, so that a body too long is refused before it is
        # read (build() reads it all, with no cap; it costs the same here).
        async with client.get(url + signed_target()).build_streamed() as answer:
            length = answer.get_header("content-length")
            if too_big(length):
                raise TooBig
            reader = answer.body_reader
            if length is not None:
                body = bytes(await reader.bytes())
            else:
                chunks, total = [], 0
                while (chunk := await reader.read_chunk()) is not None:
                    total += len(chunk)
                    if total > MAX_BODY:
                        raise TooBig
                    chunks.append(bytes(chunk))
                body = b"".join(chunks)
            return settle(answer.status, answer.get_header(WEIGHT), body)

    return Contender(call, is_expected, client.close)


async def rnet_(url: str) -> Contender:
    import rnet  # type: ignore[import-not-found,unused-ignore]

    client = rnet.Client(
        default_headers=HEADERS,
        allow_redirects=False,
        cookie_store=False,
        pool_max_idle_per_host=POOL,
        pool_max_size=POOL,
        timeout=int(TIMEOUT),
    )

    async def call() -> Any:
        answer = await client.get(url + signed_target())
        headers = answer.headers
        length = headers.get("content-length")
        if too_big(length):
            await answer.close()
            raise TooBig
        if length is not None:
            body = await answer.bytes()
        else:  # stream() costs some 100 us a call more than bytes(): only when it must
            chunks, total = [], 0
            async with answer.stream() as streamer:
                async for chunk in streamer:
                    total += len(chunk)
                    if total > MAX_BODY:
                        raise TooBig
                    chunks.append(chunk)
            body = b"".join(chunks)
        return settle(answer.status, headers.get(WEIGHT), body)

    async def close() -> None:
        pass  # no close in its API: the pool goes with the client

    return Contender(call, is_expected, close)


# -- the Session's own HTTP/1.1 sender, alone --------------------------------------------------


async def own(url: str) -> Contender:
    sender = WireSender(
        headers={k: v for k, v in HEADERS.items() if k != "X-MBX-APIKEY"}, connections=POOL
    )
    key = {"X-MBX-APIKEY": API_KEY}

    async def call() -> Any:
        answer = await sender.get(url + signed_target(), key, endpoint="GET balance")
        return settle(answer.status, answer.headers.get(WEIGHT), answer.body)

    return Contender(call, is_expected, sender.aclose)


# -- what each keeps ------------------------------------------------------------------------------

PROPERTIES = ("TLS verified", "HTTP(S) proxy", "no redirects", "body cap", "chunked", "keep-alive")


@dataclass(frozen=True)
class Transport:
    label: str
    package: str  # the distribution whose version is printed
    make: Callable[[str], Awaitable[Contender]]
    #: One cell per PROPERTIES: yes, no, "by hand" (the library lets the SDK do it), ?
    keeps: tuple[str, ...] = ()
    #: Where in the library's documented API each cell comes from.
    how: str = ""


TRANSPORTS: dict[str, Transport] = {
    "python-binance": Transport("python-binance AsyncClient", "python-binance", python_binance),
    "binance_pm": Transport("binance_pm Session", "binance-pm", binance_pm),
    "aiohttp": Transport(
        "aiohttp",
        "aiohttp",
        bare_aiohttp,
        ("yes", "yes", "yes", "by hand", "yes", "yes"),
        "ssl=True by default; proxy= per request (CONNECT for https), trust_env= for "
        "HTTP(S)_PROXY/NO_PROXY; allow_redirects=False (it follows by default); no body limit "
        "(read_bufsize is a buffer): Content-Length, content.readany() counted",
    ),
    "httpx": Transport(
        "httpx",
        "httpx",
        bare_httpx,
        ("yes", "yes", "yes", "by hand", "yes", "yes"),
        "verify=True by default; proxy=, mounts=, trust_env=True by default; follow_redirects="
        "False by default; no body limit: send(stream=True), Content-Length, aiter_raw() counted",
    ),
    "aiosonic": Transport(
        "aiosonic",
        "aiosonic",
        aiosonic_,
        ("yes", "yes", "yes", "by hand", "yes*", "yes"),
        "HTTPClient(verify_ssl=True) by default; proxy=Proxy(url) (CONNECT for https), "
        "trust_env=False by default; follow=False by default; max_decompressed_size caps only "
        "gzip/deflate output: request(stream=True), Content-Length, read_chunks() counted; "
        "*a chunk with an extension (b'6;x=1') raises ValueError: its size line goes to int() "
        "whole; PoolConfig recycles a connection after 1,000 requests by default",
    ),
    "pyreqwest": Transport(
        "pyreqwest",
        "pyreqwest",
        pyreqwest_,
        ("yes", "yes", "yes", "by hand", "yes", "yes"),
        "danger_accept_invalid_certs defaults to false; ClientBuilder.proxy(ProxyBuilder.http/"
        ".https/.all/.custom), no_proxy(), and HTTP(S)_PROXY is read by default (tried); "
        "follow_redirects(False) (it follows by default); no body limit "
        "(streamed_read_buffer_limit is a buffer): build_streamed(), Content-Length, "
        "body_reader.read_chunk() counted",
    ),
    "rnet": Transport(
        "rnet",
        "rnet",
        rnet_,
        ("yes*", "yes", "yes", "by hand", "yes", "yes"),
        "*Client(verify: bool | Path), its default not stated in the stubs: tried, a "
        "self-signed server is refused (CERTIFICATE_VERIFY_FAILED); proxies=[Proxy.http/.https/"
        ".all], HTTP_PROXY not read by default (tried); allow_redirects=False (the default; a "
        "per-request False is ignored when the client's is True, its issue #267); no body "
        "limit: Content-Length, stream() counted; no_keepalive= to turn keep-alive off",
    ),
    "own": Transport(
        "binance_pm's own HTTP/1.1",
        "httptools",
        own,
        ("yes", "yes", "yes", "yes", "yes", "yes"),
        "the Session's sender (binance_pm._sender.WireSender) alone, its parser llhttp through "
        "httptools (whose version is shown): ssl.create_default_context() for https; "
        "Session(proxy=) or HTTP(S)_PROXY/NO_PROXY, CONNECT + start_tls for https, "
        "Proxy-Authorization; never follows; max_body on Content-Length and as the body comes; "
        "one retry of a reused connection the server closed before answering (tests/test_wire.py)",
    ),
}

#: Cells that count as kept.
KEPT = ("yes", "yes*", "by hand")


def version(transport: Transport) -> str | None:
    """The installed version of its package, None if not installed."""
    try:
        return importlib.metadata.version(transport.package)
    except importlib.metadata.PackageNotFoundError:
        return None


# -- measuring ---------------------------------------------------------------------------------


async def bench(
    url: str, names: list[str], rounds: int, calls: int
) -> tuple[dict[str, dict[int, list[float]]], dict[str, str]]:
    """CPU seconds per call per round, at each concurrency; and the transports that failed."""
    made: dict[str, Contender] = {}
    failed: dict[str, str] = {}
    for name in names:
        try:
            contender = await TRANSPORTS[name].make(url)
        except ImportError as exc:
            failed[name] = f"not installed ({exc.name})"
            continue
        first = await contender.call()
        assert contender.check(first), f"{name}: not the recorded balances: {first!r}"
        made[name] = contender
    cpu: dict[str, dict[int, list[float]]] = {name: {n: [] for n in IN_FLIGHT} for name in made}
    order = list(made)
    try:
        for round_ in range(rounds):
            turn = order[round_ % len(order) :] + order[: round_ % len(order)]
            for in_flight in IN_FLIGHT:
                for name in turn:
                    _, per_call = await measure(made[name], in_flight, calls)
                    cpu[name][in_flight].append(per_call)
            print(f"round {round_ + 1}/{rounds} done", file=sys.stderr, flush=True)
    finally:
        for contender in made.values():
            await contender.close()
    return cpu, failed


def rss() -> int:
    """Resident memory of this process, bytes."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def sockets() -> int:
    """Sockets this process holds open (Rust runtimes' included)."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):  # closed since listed
            count += os.readlink(f"/proc/self/fd/{fd}").startswith("socket:")
    return count


async def memory_probe(name: str, url: str) -> dict[str, float]:
    """In a fresh process: resident memory per connection opened going from 10 to 200 in
    flight, and the balance calls made."""
    contender = await TRANSPORTS[name].make(url)
    settle_calls, open_calls = MEMORY_CALLS
    try:
        await measure(contender, IN_FLIGHT[0], settle_calls)
        gc.collect()
        before, open_before = rss(), sockets()
        await measure(contender, IN_FLIGHT[-1], open_calls)
        gc.collect()
        after, open_after = rss(), sockets()
    finally:
        await contender.close()
    opened = open_after - open_before
    calls = sum(n + c for n, c in zip(IN_FLIGHT, MEMORY_CALLS, strict=True))
    return {
        "per_connection": (after - before) / opened if opened > 0 else float("nan"),
        "opened": opened,
        "calls": calls,
    }


NO_HOST = "http://no-such-host.invalid/"  # a name lookup that fails (RFC 2606's .invalid)
EXIT_RUNS = 20


async def exit_probe(name: str, url: str) -> None:
    """In a fresh process, one client of the library: a request whose host name does not
    resolve, one that is answered, then the client closed and the interpreter left at once: what
    a short-lived tool does after a network blip. The process must end cleanly."""
    target = url + BALANCE_PATH  # unsigned: the canned server answers it all the same
    if name == "aiohttp":
        async with aiohttp.ClientSession() as session:
            with contextlib.suppress(aiohttp.ClientError, OSError):
                (await session.get(NO_HOST)).release()
            (await session.get(target)).release()
    elif name == "httpx":
        async with httpx.AsyncClient() as client:
            with contextlib.suppress(httpx.HTTPError):
                await client.get(NO_HOST)
            await client.get(target)
    elif name == "aiosonic":
        import aiosonic  # type: ignore[import-not-found,unused-ignore]

        sonic = aiosonic.HTTPClient()
        with contextlib.suppress(Exception):
            await sonic.get(NO_HOST)
        await sonic.get(target)
        await sonic.aclose()  # type: ignore[no-untyped-call,unused-ignore]
    elif name == "pyreqwest":
        from pyreqwest.client import ClientBuilder  # type: ignore[import-not-found,unused-ignore]

        reqwest = ClientBuilder().build()
        with contextlib.suppress(Exception):
            await reqwest.get(NO_HOST).build().send()
        await reqwest.get(target).build().send()
        await reqwest.close()
    elif name == "own":
        sender = WireSender(headers={})
        with contextlib.suppress(TransportError):
            await sender.get(NO_HOST, {}, endpoint="GET /")
        await sender.get(target, {}, endpoint="GET balance")
        await sender.aclose()
    elif name == "rnet":
        import rnet  # type: ignore[import-not-found,unused-ignore]

        client = rnet.Client()
        with contextlib.suppress(Exception):
            await client.get(NO_HOST)
        await (await client.get(target)).close()


def exits(names: list[str], url: str) -> dict[str, int]:
    """For each library, how many of ``EXIT_RUNS`` fresh processes running :func:`exit_probe`
    ended with anything but status 0 (a crash at exit shows as 134, SIGABRT)."""
    failed: dict[str, int] = {}
    for name in names:
        if name not in EXIT_PROBED:
            continue
        command = [sys.executable, __file__, "--exit-probe", name, "--url", url]
        failed[name] = sum(  # half pinned to one core (as in a one-CPU container), half free
            subprocess.run(
                command + ["--free"] * (run % 2), capture_output=True, timeout=60
            ).returncode
            != 0
            for run in range(EXIT_RUNS)
        )
    return failed


EXIT_PROBED = ("aiohttp", "httpx", "aiosonic", "pyreqwest", "rnet", "own")


def memory(names: list[str], url: str) -> tuple[dict[str, dict[str, float]], int]:
    """Each transport's memory probe in its own process; and the balance calls they made."""
    found: dict[str, dict[str, float]] = {}
    calls = 0
    if not os.path.exists("/proc/self/statm"):
        return found, calls
    for name in names:
        done = subprocess.run(
            [sys.executable, str(Path(__file__).resolve()), "--memory", name, "--url", url],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            print(f"memory probe of {name} failed: {done.stderr[-300:]}", file=sys.stderr)
            continue
        found[name] = json.loads(done.stdout.strip().splitlines()[-1])
        calls += int(found[name]["calls"])
    return found, calls


# -- the tables --------------------------------------------------------------------------------


def report(
    cpu: dict[str, dict[int, list[float]]],
    failed: dict[str, str],
    held: dict[str, dict[str, float]],
    rounds: int,
    calls: int,
    crashed: dict[str, int],
) -> None:
    print(f"signed GET {BALANCE_PATH}, decoded into PMBalance Structs; canned server on core 0,")
    print(f"client on core 1; median (min-max) of {rounds} interleaved rounds of {calls:,} calls")
    print()
    head = "".join(f"{'CPU us/call, ' + str(n):>20}{'/ ' + REFERENCE:>20}" for n in IN_FLIGHT)
    print(f"{'transport':<30}{'version':<10}{head}{'KB/conn':>10}")
    reference = cpu.get(REFERENCE)
    met: dict[str, bool] = {}
    for name, transport in TRANSPORTS.items():
        installed = version(transport)
        if name in failed or name not in cpu:
            reason = failed.get(name, "not installed" if installed is None else "not measured")
            print(f"{transport.label:<30}{installed or '-':<10}{reason}")
            continue
        cells, meets = "", True
        for n in IN_FLIGHT:
            ratio = "-"
            if reference is not None and name != REFERENCE:
                per_round = [a / b for a, b in zip(cpu[name][n], reference[n], strict=True)]
                ratio = spread(per_round, digits=2)
                meets = meets and statistics.median(per_round) <= TARGET
            cells += f"{spread(cpu[name][n], 1e6):>20}{ratio:>20}"
        kb = held.get(name, {}).get("per_connection")
        held_cell = f"{kb / 1024:.1f}" if kb is not None and kb == kb else "?"
        print(f"{transport.label:<30}{installed or '-':<10}{cells}{held_cell:>10}")
        if transport.keeps and reference is not None:
            met[name] = meets
    print()
    print("what each keeps of what the SDK must keep (from each library's documented API):")
    print(f"{'transport':<30}" + "".join(f"{p:>15}" for p in PROPERTIES))
    for transport in TRANSPORTS.values():
        if transport.keeps:
            print(f"{transport.label:<30}" + "".join(f"{k:>15}" for k in transport.keeps))
    print("  by hand: the library does not cap a body, but lets the sender check Content-Length")
    print("  and count a streamed body, as each row here does; yes*: see its note; tried: a")
    print("  default found by trying it (a local server), where the documentation is silent")
    for transport in TRANSPORTS.values():
        if transport.how:
            note = f"{transport.label}: {transport.how}"
            print(textwrap.fill(note, 100, initial_indent="  ", subsequent_indent="    "))
    if crashed:
        print(
            f"\nclean exits: a name lookup that fails, an answered request, the client closed and"
            f" the interpreter left at once, {EXIT_RUNS} fresh processes each (half of them pinned"
            " to one core, as in a one-CPU container):"
        )
        for name, count in crashed.items():
            verdict = "all clean" if not count else f"{count} ended abnormally (status != 0)"
            print(f"  {TRANSPORTS[name].label:<28} {verdict}")
    print()
    every = {
        name
        for name, transport in TRANSPORTS.items()
        if transport.keeps and all(k in KEPT for k in transport.keeps) and not crashed.get(name, 0)
    }
    reached = [TRANSPORTS[name].label for name, ok in met.items() if ok and name in every]
    cheap = [TRANSPORTS[name].label for name, ok in met.items() if ok and name not in every]
    both = " and ".join(map(str, IN_FLIGHT))
    print(
        f"target: CPU per call <= {TARGET:.2f}x {REFERENCE}'s at {both} in flight, all kept,"
        " clean exits:"
    )
    print(f"  met by: {', '.join(reached) or 'none'}")
    if cheap:
        print(f"  CPU met, a property missing or unknown, or an exit unclean: {', '.join(cheap)}")
    session, floor = cpu.get("binance_pm"), cpu.get("own")
    if session is not None and floor is not None:
        print(
            f"the SDK's own work per call above its transport (the Session beside its own sender"
            f" alone, the same signing and decoding), target <= {OWN_WORK_TARGET * 1e6:.0f} us:"
        )
        for n in IN_FLIGHT:
            above = [a - b for a, b in zip(session[n], floor[n], strict=True)]
            verdict = "met" if statistics.median(above) <= OWN_WORK_TARGET else "MISSED"
            print(f"  {n:>3} in flight: {spread(above, 1e6)} us  {verdict}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    parser.add_argument("--calls", type=int, default=CALLS, help="calls per measurement")
    parser.add_argument("--no-memory", action="store_true", help="skip the memory probes")
    parser.add_argument("--memory", choices=TRANSPORTS, help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--exit-probe", choices=EXIT_PROBED, help=argparse.SUPPRESS)
    parser.add_argument("--no-exits", action="store_true", help="skip the clean-exit probes")
    parser.add_argument("--free", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.free and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, range(os.cpu_count() or 1))  # every core, not the parent's one
    else:
        pin(1)
    if args.memory:
        print(json.dumps(asyncio.run(memory_probe(args.memory, args.url))))
        return
    if args.exit_probe:
        asyncio.run(exit_probe(args.exit_probe, args.url))
        return
    names = list(TRANSPORTS)
    with canned(core=0) as server:
        cpu, failed = asyncio.run(bench(server.url, names, args.rounds, args.calls))
        held, probe_calls = ({}, 0) if args.no_memory else memory(list(cpu), server.url)
        crashed = {} if args.no_exits else exits(list(cpu), server.url)
    report(cpu, failed, held, args.rounds, args.calls, crashed)
    expected = probe_calls + sum(
        1 + args.rounds * sum(n + args.calls for n in IN_FLIGHT) for _ in cpu
    )
    served = server.served.pop(BALANCE_PATH, 0)
    expected += sum(EXIT_RUNS for name in crashed)  # one answered request each
    print(f"\nserved {served:,} balance answers to {expected:,} calls, and {server.served}")
    if served != expected:
        raise SystemExit("the server did not answer each call exactly once")


if __name__ == "__main__":
    main()
