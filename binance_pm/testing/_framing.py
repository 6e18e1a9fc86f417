"""The simulated exchange's HTTP side: a request routed to its endpoint, its answer framed, and
the faults injected on the way.

An endpoint is found by its path and method, from the package's endpoint table; any other path
is a 404. Each request may meet a fault, drawn from a seeded generator at the exchange's
per-request probabilities: ``"503"`` (``-1008``), ``"html"`` (a proxy's HTML 502), or, once the
request has been answered, ``"slow"`` (the answer waits), ``"garbage"`` (half of it) or
``"reset"`` (the connection dropped mid-answer). An API key in :attr:`Framing.broken` gets an
HTML 500 each time. ``GET /_sim/stats`` answers the stats, not weighed and never faulty.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any, NoReturn

import anyio
import anyio.lowlevel
import httpx
import msgspec

from .._endpoints import ENDPOINTS, LISTEN_KEY, Endpoint
from ._messages import HTML_500, HTML_502, MSG, Answer, error_body

if TYPE_CHECKING:
    from ._options import ExchangeOptions
    from ._stats import ExchangeStats

Scope = MutableMapping[str, Any]
ASGIReceive = Callable[[], Awaitable[MutableMapping[str, Any]]]
ASGISend = Callable[[MutableMapping[str, Any]], Awaitable[None]]
#: The exchange's rules for one request: its body, with the headers it adds; or an Answer.
Respond = Callable[[Endpoint[Any], Scope, dict[str, str]], bytes]

#: ``GET`` this path for :attr:`SimulatedExchange.stats` as JSON (not weighed, never faulty);
#: ``?arrivals=1`` adds every charge as ``[server ms, budget, weight]``.
STATS_PATH = "/_sim/stats"
BY_PATH: dict[str, Endpoint[Any]] = {e.path: e for e in ENDPOINTS.values()}
LISTEN_BY: dict[tuple[str, str], Endpoint[Any]] = {
    (e.method, e.path): e for actions in LISTEN_KEY.values() for e in actions.values()
}


class Framing:
    """Serves the HTTP requests of one simulated exchange, leaving what they get to ``respond``.

    ``faults`` (kind to probability) and ``broken`` may be changed at any time.
    """

    def __init__(self, options: ExchangeOptions, stats: ExchangeStats, respond: Respond) -> None:
        self.faults: dict[str, float] = dict(options.faults)
        #: API keys whose every request fails with a 500, as an account stuck on a broken
        #: shard might.
        self.broken: set[str] = set()
        self.stats = stats
        self._respond = respond
        self._slow_seconds = options.slow_seconds
        self._rng = random.Random(options.seed)

    async def serve(self, scope: Scope, receive: ASGIReceive, send: ASGISend) -> None:
        """One HTTP request, counted in the stats while it is handled."""
        stats = self.stats
        stats.in_flight += 1
        stats.max_concurrency = max(stats.max_concurrency, stats.in_flight)
        client = scope.get("client")
        if client is not None:
            stats.clients.add(tuple(client))
        try:
            # Yield once, so that requests that arrived together are in handling together.
            await anyio.lowlevel.checkpoint()
            await self._handle(scope, receive, send)
        finally:
            stats.in_flight -= 1

    async def _handle(self, scope: Scope, receive: ASGIReceive, send: ASGISend) -> None:
        if scope["path"] == STATS_PATH:
            arrivals = b"arrivals=1" in scope["query_string"]
            body = msgspec.json.encode(self.stats.to_dict(arrivals=arrivals))
            await _send(send, 200, body, {})
            return
        endpoint = BY_PATH.get(scope["path"])
        if scope["method"] != "GET":
            endpoint = LISTEN_BY.get((scope["method"], scope["path"]))
        if endpoint is None:
            await _send(send, 404, b'{"code":-1000,"msg":"Not found."}', {})
            return
        if self.broken and _api_key(scope) in self.broken:
            self._count(endpoint, 500, None, "broken")
            await _send(send, 500, HTML_500, {}, content_type=b"text/html")
            return
        fault = self._draw_fault()
        if fault == "503":
            self._count(endpoint, 503, -1008, fault)
            await _send(send, 503, error_body(-1008, MSG[-1008]), {})
            return
        if fault == "html":
            self._count(endpoint, 502, None, fault)
            await _send(send, 502, HTML_502, {}, content_type=b"text/html")
            return
        headers: dict[str, str] = {}
        try:
            body = self._respond(endpoint, scope, headers)
        except Answer as answer:
            headers.update(answer.headers)
            self._count(endpoint, answer.status, answer.code, None)
            await _send(send, answer.status, error_body(answer.code, answer.msg), headers)
            return
        self._count(endpoint, 200, None, fault)
        if fault == "slow":
            await self._stall(receive)
        elif fault == "garbage":
            body = body[: max(1, len(body) // 2)]
        elif fault == "reset":
            await _reset(send, body, headers)
        await _send(send, 200, body, headers)

    async def _stall(self, receive: ASGIReceive) -> None:
        """Wait ``slow_seconds``, or until the client has gone: the answer then has nobody to
        go to, and a server that stops needs no longer than its clients to wind down."""
        with anyio.move_on_after(self._slow_seconds):
            while (await receive())["type"] != "http.disconnect":
                pass

    def _draw_fault(self) -> str | None:
        if not self.faults:
            return None
        draw = self._rng.random()
        for kind, p in self.faults.items():
            if draw < p:
                return kind
            draw -= p
        return None

    def _count(
        self, endpoint: Endpoint[Any], status: int, code: int | None, fault: str | None
    ) -> None:
        self.stats.record(endpoint.name, status, code, fault)


async def _send(
    send: ASGISend,
    status: int,
    body: bytes,
    headers: dict[str, str],
    content_type: bytes = b"application/json",
) -> None:
    raw = [
        (b"content-type", content_type),
        *((k.encode(), v.encode()) for k, v in headers.items()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


async def _reset(send: ASGISend, body: bytes, headers: dict[str, str]) -> NoReturn:
    """Promise more body than is sent, then stop: the connection is dropped mid-answer."""
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body) + 100).encode()),
                *((k.encode(), v.encode()) for k, v in headers.items()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body[: len(body) // 2], "more_body": True})
    # Over TCP, uvicorn drops the connection when the app fails mid-answer; in process
    # (httpx.ASGITransport) this error reaches the client as the transport error a reset is.
    raise httpx.ReadError("connection reset by the simulated exchange")


def _api_key(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name.lower() == b"x-mbx-apikey":
            return str(value.decode("latin-1"))
    return None
