"""The Session's own HTTP/1.1 sender over real sockets: TLS checked, proxies and tunnels, the
pool's limit and idle timeout, a stale kept-alive connection retried once, and nothing left open
when a request is cancelled or the sender closes."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime
import gc
import ipaddress
import socket
import ssl
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from multidict import CIMultiDict

import binance_pm._sender
from binance_pm import Session, TransportError
from binance_pm._connect import Connector
from binance_pm._headers import used_weights
from binance_pm._http import HEADERS
from binance_pm._sender import WireSender

from .conftest import Account
from .hostile import Answer, HostileServer

GOOD = "GET /papi/v1/ping"


# -- a certificate authority of the test's own --------------------------------------------------


@dataclass
class Authority:
    """A CA (``ca``, PEM on disk) and a server context whose certificate it signed for ``names``
    (or, with ``selfish``, one it did not sign)."""

    ca: Path
    server: ssl.SSLContext


def _name(text: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, text)])


def _authority(tmp: Path, names: list[str]) -> Authority:
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("binance_pm test CA"))
        .issuer_name(_name("binance_pm test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = [
        x509.IPAddress(ipaddress.ip_address(n)) if n[0].isdigit() else x509.DNSName(n)
        for n in names
    ]
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(names[0]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    (tmp / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (tmp / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(tmp / "cert.pem", tmp / "key.pem")
    return Authority(tmp / "ca.pem", server)


@pytest.fixture
def authority(tmp_path: Path) -> Authority:
    return _authority(tmp_path, ["127.0.0.1"])


@pytest.fixture
def trusting(authority: Authority, monkeypatch: pytest.MonkeyPatch) -> Authority:
    """The test CA trusted the way a user would: ``SSL_CERT_FILE``."""
    monkeypatch.setenv("SSL_CERT_FILE", str(authority.ca))
    return authority


# -- a CONNECT proxy ----------------------------------------------------------------------------


@dataclass
class Proxy:
    """A forward proxy on loopback: ``CONNECT`` tunnels (or refuses them with ``refuse``), and
    plain requests in absolute form passed to their host."""

    refuse: int | None = None
    asked: list[bytes] = field(default_factory=list)  # each request's head, as it came
    server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            self.asked.append(head)
            method, target, _ = head.split(b"\r\n", 1)[0].split(b" ")
            if method != b"CONNECT":
                writer.close()
                return
            if self.refuse is not None:
                writer.write(b"HTTP/1.1 %d No\r\nContent-Length: 0\r\n\r\n" % self.refuse)
                await writer.drain()
                writer.close()
                return
            host, port = target.rsplit(b":", 1)
            up_reader, up_writer = await asyncio.open_connection(host.decode(), int(port))
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        except (ConnectionError, asyncio.IncompleteReadError):
            writer.close()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


@pytest.fixture
async def proxy() -> AsyncIterator[Proxy]:
    found = Proxy()
    found.server = await asyncio.start_server(found.serve, "127.0.0.1", 0)
    yield found
    found.server.close()


@pytest.fixture
def hmac(accounts: dict[str, Account]) -> Account:
    return accounts["HMAC"]


# -- TLS ----------------------------------------------------------------------------------------


async def test_https_with_a_trusted_certificate_is_verified_and_answers(
    trusting: Authority, hmac: Account
) -> None:
    async with HostileServer(tls=trusting.server) as server:
        assert server.url.startswith("https://")
        async with Session(base_url=server.url) as s:
            info = await s.client(hmac.api_key, **hmac.credentials()).pm_pro_account()
    assert info.uni_mmr is not None


async def test_a_certificate_nobody_trusts_is_refused_before_anything_is_sent(
    authority: Authority, hmac: Account
) -> None:
    async with (
        HostileServer(tls=authority.server) as server,
        Session(base_url=server.url, max_retries=0) as s,
    ):
        client = s.client(hmac.api_key, **hmac.credentials())
        with pytest.raises(TransportError, match="certificate verify failed"):
            await client.pm_pro_account()
    assert server.requests == []


async def test_a_certificate_for_another_name_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, hmac: Account
) -> None:
    other = _authority(tmp_path, ["exchange.example"])
    monkeypatch.setenv("SSL_CERT_FILE", str(other.ca))
    async with (
        HostileServer(tls=other.server) as server,
        Session(base_url=server.url, max_retries=0) as s,
    ):
        client = s.client(hmac.api_key, **hmac.credentials())
        with pytest.raises(TransportError, match=r"IP address mismatch|doesn't match"):
            await client.pm_pro_account()
    assert server.requests == []


# -- proxies ------------------------------------------------------------------------------------


async def test_https_goes_through_a_connect_tunnel_with_the_proxys_credentials(
    trusting: Authority, proxy: Proxy, hmac: Account
) -> None:
    proxied = proxy.url.replace("http://", "http://desk%40x:p%3Ass@")
    async with (
        HostileServer(tls=trusting.server) as server,
        Session(base_url=server.url, proxy=proxied) as s,
    ):
        port = server.url.rsplit(":", 1)[1]
        client = s.client(hmac.api_key, **hmac.credentials())
        for _ in range(3):
            assert (await client.pm_pro_account()).uni_mmr is not None
    tunnels = [head for head in proxy.asked if head.startswith(b"CONNECT ")]
    assert len(tunnels) == 1  # one tunnel, kept alive for every request
    assert tunnels[0].startswith(f"CONNECT 127.0.0.1:{port} HTTP/1.1\r\n".encode())
    expected = base64.b64encode(b"desk@x:p:ss")
    assert b"Proxy-Authorization: Basic " + expected in tunnels[0]
    assert all(b"X-MBX-APIKEY" not in head for head in proxy.asked)  # the key went inside TLS
    assert len(server.requests) >= 3


async def test_a_proxy_refusing_the_tunnel_is_a_transport_error(
    trusting: Authority, proxy: Proxy, hmac: Account
) -> None:
    proxy.refuse = 407
    async with (
        HostileServer(tls=trusting.server) as server,
        Session(base_url=server.url, proxy=proxy.url, max_retries=0) as s,
    ):
        client = s.client(hmac.api_key, **hmac.credentials())
        with pytest.raises(TransportError, match=r"proxy refused a tunnel .* status 407"):
            await client.pm_pro_account()
    assert server.requests == []


async def test_no_proxy_names_the_host_and_the_request_goes_straight(
    scripted: HostileServer, monkeypatch: pytest.MonkeyPatch, hmac: Account
) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    async with Session(base_url=scripted.url) as s:
        info = await s.client(hmac.api_key, **hmac.credentials()).pm_pro_account()
    assert info.uni_mmr is not None
    assert scripted.requests[-1].target.startswith("/sapi/")  # origin form: no proxy between


# -- the pool -----------------------------------------------------------------------------------


async def _get(sender: WireSender, url: str) -> int:
    return (await sender.get(url + "/papi/v1/ping", {}, endpoint=GOOD)).status


async def test_a_kept_alive_connection_closed_by_the_server_is_retried_once(
    scripted: HostileServer,
) -> None:
    sender = WireSender(headers=HEADERS)
    try:
        assert await _get(sender, scripted.url) == 200
        # The next request on the kept-alive connection is read and dropped unanswered, as by
        # a server whose idle timeout ran out as it came: sent again on a new connection.
        scripted.push(Answer(cut=0, end="close"))
        assert await _get(sender, scripted.url) == 200
        assert len(scripted.requests) == 3
        # On a new connection, the same is the server's failure: not sent again.
        await sender.aclose()
        sender = WireSender(headers=HEADERS)
        scripted.push(Answer(cut=0, end="close"))
        with pytest.raises(TransportError, match="closed the connection before answering"):
            await _get(sender, scripted.url)
        assert len(scripted.requests) == 4
    finally:
        await sender.aclose()


async def test_the_pool_opens_no_more_than_its_limit_and_reuses_them(
    scripted: HostileServer,
) -> None:
    sender = WireSender(headers=HEADERS, connections=3)
    scripted.push(*[Answer(stall=0.05) for _ in range(12)])
    most = 0

    async def watch() -> None:
        nonlocal most
        while True:
            most = max(most, scripted.open_connections)
            await asyncio.sleep(0.005)

    watcher = asyncio.create_task(watch())
    try:
        statuses = await asyncio.gather(*(_get(sender, scripted.url) for _ in range(12)))
    finally:
        watcher.cancel()
        await sender.aclose()
    assert statuses == [200] * 12
    assert most == 3
    assert await scripted.wait_all_closed(2.0)


async def test_a_cancelled_request_closes_its_connection(scripted: HostileServer) -> None:
    sender = WireSender(headers=HEADERS)
    scripted.push(Answer(stall=30.0))
    try:
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(_get(sender, scripted.url), 0.2)
        assert await scripted.wait_all_closed(2.0)  # the server saw the client leave
        assert await _get(sender, scripted.url) == 200  # and the sender goes on
    finally:
        await sender.aclose()


async def test_idle_connections_close_after_the_keepalive(
    scripted: HostileServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(binance_pm._sender, "KEEPALIVE_SECONDS", 0.2)
    sender = WireSender(headers=HEADERS)
    try:
        await asyncio.gather(*(_get(sender, scripted.url) for _ in range(4)))
        assert scripted.open_connections == 4
        assert await scripted.wait_all_closed(3.0)
    finally:
        await sender.aclose()


async def test_closing_the_sender_fails_the_requests_out_and_closes_everything(
    scripted: HostileServer,
) -> None:
    sender = WireSender(headers=HEADERS, connections=1)
    scripted.push(Answer(stall=30.0), Answer(stall=30.0))
    calls = [asyncio.create_task(_get(sender, scripted.url)) for _ in range(2)]
    await asyncio.sleep(0.1)  # one out, one waiting for the only connection
    await sender.aclose()
    for call in calls:
        with pytest.raises(TransportError, match="Session was closed"):
            await call
    assert await scripted.wait_all_closed(2.0)
    with pytest.raises(TransportError, match="Session was closed"):
        await _get(sender, scripted.url)


async def test_a_header_with_a_line_break_is_refused_unsent(scripted: HostileServer) -> None:
    sender = WireSender(headers=HEADERS)
    try:
        with pytest.raises(TransportError, match="line break"):
            await sender.get(
                scripted.url + "/papi/v1/ping", {"X-MBX-APIKEY": "k\r\nX-Evil: 1"}, endpoint=GOOD
            )
    finally:
        await sender.aclose()
    assert scripted.requests == []


async def test_an_answer_nobody_asked_for_is_not_taken_for_the_next_request() -> None:
    # Each request is answered, and the head of a second answer follows in the same write: it
    # must not be taken for the start of the next request's answer.
    connections = 0

    async def twice(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while await reader.readuntil(b"\r\n\r\n"):
                writer.write(
                    b"HTTP/1.1 200 OK\r\nX-Which: asked\r\nContent-Length: 2\r\n\r\n{}"
                    b"HTTP/1.1 418 No\r\nX-Which: unasked\r\nContent-Length: 2\r\n\r\n"
                )

    async with _raw_server(twice) as url:
        sender = WireSender(headers=HEADERS)
        try:
            for _ in range(3):
                answer = await sender.get(url + "/papi/v1/ping", {}, endpoint=GOOD)
                which = [v for k, v in answer.headers.items() if k.lower() == "x-which"]
                assert (answer.status, which) == (200, ["asked"])
        finally:
            await sender.aclose()
    assert connections == 3  # none was trusted again


@contextlib.asynccontextmanager
async def _raw_server(
    handle: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
) -> AsyncIterator[str]:
    """A loopback server running ``handle`` on each connection, which it closes after; its
    URL. On leaving, every connection is closed and waited for."""
    writers: set[asyncio.StreamWriter] = set()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.add(writer)
        try:
            await handle(reader, writer)
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
            writers.discard(writer)

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        server.close()
        for writer in list(writers):
            writer.transport.abort()
        await server.wait_closed()


async def _answer(reader: asyncio.StreamReader) -> None:
    with contextlib.suppress(asyncio.IncompleteReadError):
        await reader.readuntil(b"\r\n\r\n")


async def test_closing_the_sender_ends_a_call_whose_tls_handshake_hangs() -> None:
    held = asyncio.Event()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.set()
        await reader.read()  # never answers the client's hello; returns when it leaves

    async with _raw_server(silent) as url:
        sender = WireSender(headers=HEADERS)
        call = asyncio.create_task(
            sender.get(url.replace("http:", "https:") + "/papi/v1/ping", {}, endpoint=GOOD)
        )
        await asyncio.wait_for(held.wait(), 2.0)
        await sender.aclose()
        with pytest.raises(TransportError, match="Session was closed"):
            await asyncio.wait_for(call, 1.0)


@pytest.mark.parametrize("clean", [True, False], ids=["closed", "reset"])
async def test_a_body_ended_by_the_close_is_whole_only_when_the_server_closed_cleanly(
    clean: bool,
) -> None:
    async def half(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _answer(reader)
        writer.write(b'HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n{"uniMMR": "1')
        await writer.drain()
        if not clean:
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()

    async with _raw_server(half) as url:
        sender = WireSender(headers=HEADERS)
        try:
            if clean:
                answer = await sender.get(url + "/papi/v1/ping", {}, endpoint=GOOD)
                assert answer.body == b'{"uniMMR": "1'  # what was sent: the decoder judges it
            else:
                with pytest.raises(TransportError, match="cut short"):
                    await sender.get(url + "/papi/v1/ping", {}, endpoint=GOOD)
        finally:
            await sender.aclose()


async def test_endless_trailers_are_refused_past_the_head_cap() -> None:
    async def trailers(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _answer(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n")
        with contextlib.suppress(ConnectionError):
            for n in range(20_000):  # 80 bytes each: 1.6 MB of trailers, if taken
                writer.write(b"X-T%d: %s\r\n" % (n, b"t" * 70))
                await writer.drain()

    async with _raw_server(trailers) as url:
        sender = WireSender(headers=HEADERS, max_body=1024)
        try:
            with pytest.raises(TransportError, match="headers longer than 65,536 bytes"):
                await sender.get(url + "/papi/v1/ping", {}, endpoint=GOOD)
        finally:
            await sender.aclose()


async def test_a_request_without_a_body_says_so_unless_it_is_a_get(
    scripted: HostileServer,
) -> None:
    sender = WireSender(headers=HEADERS)
    try:
        for method in ("GET", "POST", "PUT", "DELETE"):
            await sender.get(scripted.url + "/papi/v1/ping", {}, endpoint=GOOD, method=method)
    finally:
        await sender.aclose()
    lengths = [(r.method, r.header("Content-Length")) for r in scripted.requests]
    assert lengths == [("GET", None), ("POST", "0"), ("PUT", "0"), ("DELETE", "0")]


async def test_a_call_cancelled_as_a_connection_frees_up_stays_cancelled(
    scripted: HostileServer,
) -> None:
    sender = WireSender(headers=HEADERS, connections=1)
    scripted.push(Answer(stall=30.0))
    holder = asyncio.create_task(_get(sender, scripted.url))
    await asyncio.sleep(0.1)  # it holds the only connection
    waiter = asyncio.create_task(_get(sender, scripted.url))
    await asyncio.sleep(0.05)  # it waits for that connection
    waiter.cancel()
    sender._free()  # in the same turn, the connection is freed: the pool wakes the next in line
    with pytest.raises(asyncio.CancelledError):
        await waiter
    holder.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await holder
    await sender.aclose()


async def test_an_answers_fields_read_case_blind_and_in_order(scripted: HostileServer) -> None:
    """The answer's header fields, kept as they came: looked up case-blind, a name given twice
    found at its first, every field in order, the used weight learnt from them, and a mapping
    the rest of the SDK (a 418's Retry-After added to it) can copy."""
    fields = (
        (b"X-MBX-USED-WEIGHT-1M", b"120"),
        (b"Vary", b"Accept-Encoding"),
        (b"vary", b"Origin"),
        (b"X-Odd", "caf\u00e9".encode("latin-1")),
    )
    scripted.push(Answer(headers=fields))
    sender = WireSender(headers=HEADERS)
    try:
        answer = await sender.get(scripted.url + "/papi/v1/ping", {}, endpoint=GOOD)
    finally:
        await sender.aclose()
    headers = answer.headers
    assert headers["x-mbx-used-weight-1m"] == headers.get("X-Mbx-Used-Weight-1M") == "120"
    assert headers["VARY"] == "Accept-Encoding"
    assert headers.getall("vary") == ["Accept-Encoding", "Origin"]  # type: ignore[attr-defined]
    assert headers["x-odd"] == "caf\u00e9"
    assert "content-length" in headers
    assert "Retry-After" not in headers
    number: object = 7
    assert number not in headers
    assert headers.get("r\u00e9try", "none") == "none"  # a name no answer can carry
    with pytest.raises(KeyError):
        headers["Retry-After"]
    items = list(headers.items())
    extra = [(k.decode(), v.decode("latin-1")) for k, v in fields]
    assert [item for item in items if item in extra] == extra
    assert len(headers) == len(items)
    assert list(headers.values()) == [v for _, v in items]
    assert list(headers) == [k for k, _ in items]
    assert used_weights(headers, "papi") == {"ip": 120}
    copied = CIMultiDict(headers)
    copied["Retry-After"] = "2"
    assert copied.getall("Vary") == ["Accept-Encoding", "Origin"]
    assert copied["retry-after"] == "2"


async def test_a_connect_that_fails_as_its_caller_is_cancelled_leaves_nothing_unheard() -> None:
    """The connect fails in the same turn of the loop as its caller is cancelled (a call's
    deadline, a Session closing): the caller ends cancelled, and the connect's failure is
    taken, not left for the loop to report as an exception never retrieved."""
    loop = asyncio.get_running_loop()
    reported: list[dict[str, object]] = []
    loop.set_exception_handler(lambda _, context: reported.append(context))
    try:

        async def refused() -> None:
            raise ConnectionRefusedError(111, "Connect call failed")

        caller = asyncio.create_task(Connector()._unless_closed(loop, refused()))
        await asyncio.sleep(0)  # the caller starts the connect and waits for it
        await asyncio.sleep(0)  # the connect fails; the caller has not heard yet
        caller.cancel()
        with pytest.raises(asyncio.CancelledError):
            await caller
        await asyncio.sleep(0)
        gc.collect()
        await asyncio.sleep(0)
    finally:
        loop.set_exception_handler(None)
    assert reported == []
