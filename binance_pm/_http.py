"""The sending layer: one GET out, one answer back, and nothing a caller should not see.

Two senders stand behind one small interface (:class:`Sender`):

- :class:`~binance_pm._sender.WireSender`, the default under asyncio: HTTP/1.1 of our own on
  kept-alive connections, answers parsed by llhttp (``_sender`` and ``_wire``).
- :class:`HttpxSender`, when the caller brings an ``httpx.AsyncClient`` (its transports, mounts,
  event hooks, proxies, ``MockTransport`` and respx all apply), and under trio.

Both keep the same promises for signed requests: a redirect is never followed (the API key and
the signed query go only to the host they were meant for); a body past ``max_body`` bytes is
refused rather than held; every failure comes out as a :class:`TransportError` whose text says
what happened and never holds the signed query; and proxies are taken from ``HTTP(S)_PROXY`` and
``NO_PROXY`` like httpx does, or from ``Session(proxy=...)``.
"""

from __future__ import annotations

import base64
import logging
import os
import re
import socket
import urllib.request
from collections.abc import Mapping
from typing import NamedTuple, Protocol
from urllib.parse import unquote, urlsplit

import anyio
import httpx
import yarl

from ._exceptions import TransportError
from ._version import __version__

#: Answers longer than this are refused (these endpoints answer a few KB).
DEFAULT_MAX_BODY = 4 * 1024 * 1024
DEFAULT_CONNECTIONS = 100  # open at once, per Session (an owned httpx client too)
KEEPALIVE_SECONDS = 30.0
#: The headers of every request a Session's own sender makes.
HEADERS = {"User-Agent": f"binance_pm/{__version__}", "Accept": "application/json"}

_DEFAULT_PORTS = {"http": 80, "https": 443}
_SIGNATURE = re.compile(r"(signature=)[^&\s'\"<>]*", re.IGNORECASE)
_USERINFO = re.compile(r"(://)[^/@\s]*@")


def scrub(text: str) -> str:
    """``text`` with any signature value and URL credentials hidden, and anything that is not
    text (a lone surrogate from a JSON ``"\\ud800"``) replaced, so that it can be printed,
    logged and written as UTF-8."""
    if not text.isascii():
        text = text.encode("utf-8", "replace").decode("utf-8")
    if "ignature" in text:
        text = _SIGNATURE.sub(r"\1<hidden>", text)
    if "@" in text:
        text = _USERINFO.sub(r"\1***@", text)
    return text


class Answer(NamedTuple):
    """One answer, as a :class:`Sender` returns it.

    Attributes:
        status: the HTTP status.
        headers: the answer's headers, looked up case-blind (ours, aiohttp's and httpx's are).
        body: the whole body.
    """

    status: int
    headers: Mapping[str, str]
    body: bytes


class Sender(Protocol):
    """The sending layer of a Session: one request out, its whole answer back.

    A Session chooses its own (ours under asyncio, an ``httpx.AsyncClient`` under trio or
    when given ``http=``), or uses the one given as ``Session(sender=...)``, which stays the
    caller's to close. A sender given in sends exactly the URL and headers it is handed (the
    query is signed as it stands: never re-quote it), never follows a redirect, and turns
    every failure into :class:`~binance_pm.TransportError`.
    """

    async def get(
        self, url: str, headers: Mapping[str, str], *, endpoint: str, method: str = "GET"
    ) -> Answer:
        """Send ``method url`` (``GET`` unless told) with ``headers``; the answer, or
        :class:`~binance_pm.TransportError` naming ``endpoint`` (never another error)."""
        ...

    async def aclose(self) -> None:
        """Close what this sender owns."""
        ...


def _proxy_for(url: str, proxy: str | None) -> str | None:
    """The proxy for ``url``: ``proxy`` if given, else ``HTTP(S)_PROXY`` unless ``NO_PROXY``
    names its host (read once per host)."""
    if proxy is not None:
        return proxy
    parsed = yarl.URL(url)
    if parsed.host is None:
        return None
    if urllib.request.proxy_bypass(f"{parsed.host}:{parsed.port}" if parsed.port else parsed.host):
        return None
    return urllib.request.getproxies().get(parsed.scheme)


def _proxy_authorization(proxy: str) -> str:
    """The ``Proxy-Authorization`` header line for the credentials in ``proxy``'s URL, if any."""
    parts = urlsplit(proxy)
    if parts.username is None:
        return ""
    user = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
    return f"Proxy-Authorization: Basic {base64.b64encode(user.encode()).decode('ascii')}\r\n"


def too_long(limit: int) -> str:
    """What a failure says of an answer longer than ``limit`` bytes."""
    return f"the answer is longer than {limit:,} bytes; refused"


def _too_big(endpoint: str, limit: int) -> TransportError:
    return TransportError(too_long(limit), endpoint=endpoint)


class HttpxSender:
    """Requests through an ``httpx.AsyncClient``: the caller's (never closed here), or one of
    its own under trio."""

    __slots__ = ("_client", "_inflight", "_max_body", "_owned")

    def __init__(
        self, client: httpx.AsyncClient, *, owned: bool, max_body: int = DEFAULT_MAX_BODY
    ) -> None:
        self._client = client
        self._owned = owned
        self._max_body = max_body
        # httpx lets a request in flight run on when its client closes: closing cancels them.
        self._inflight: set[anyio.CancelScope] = set()
        _hide_signatures_in(logging.getLogger("httpx"))

    async def get(
        self, url: str, headers: Mapping[str, str], *, endpoint: str, method: str = "GET"
    ) -> Answer:
        scope = anyio.CancelScope()
        self._inflight.add(scope)
        try:
            with scope:
                return await self._send(url, headers, endpoint, method)
        finally:
            self._inflight.discard(scope)
        raise TransportError("the Session was closed while the request was out", endpoint=endpoint)

    async def _send(
        self, url: str, headers: Mapping[str, str], endpoint: str, method: str
    ) -> Answer:
        client = self._client
        failure: TransportError
        try:
            request = client.build_request(method, url, headers=headers)
            response = await client.send(request, stream=True, follow_redirects=False)
            try:
                size = response.headers.get("content-length")
                if size is not None and size.isdigit() and int(size) > self._max_body:
                    raise _too_big(endpoint, self._max_body)
                chunks: list[bytes] = []
                total = 0
                async for chunk in response.aiter_bytes():
                    total += len(chunk)
                    if total > self._max_body:
                        raise _too_big(endpoint, self._max_body)
                    chunks.append(chunk)
            finally:
                await response.aclose()
            return Answer(response.status_code, response.headers, b"".join(chunks))
        except TransportError:
            raise
        except httpx.TimeoutException:
            failure = TransportError("timed out waiting for the answer", endpoint=endpoint)
        except httpx.ConnectError as exc:
            where = httpx.URL(url)
            failure = TransportError(
                f"cannot connect to {where.host}:{where.port or _DEFAULT_PORTS.get(where.scheme)}: "
                f"{_describe(exc)}",
                endpoint=endpoint,
            )
        except httpx.RemoteProtocolError as exc:
            text = str(exc)
            if "body" in text or "incomplete" in text.lower():
                reason = "the answer's body was cut short or malformed"
            elif "disconnected" in text or "closed" in text:
                reason = "the server closed the connection before answering"
            else:
                reason = f"malformed answer: {_describe(exc)}"
            failure = TransportError(reason, endpoint=endpoint)
        except (httpx.HTTPError, httpx.InvalidURL, httpx.CookieConflict, OSError) as exc:
            failure = TransportError(_describe(exc), endpoint=endpoint)
        except RuntimeError as exc:
            if not client.is_closed:
                raise
            failure = TransportError(
                f"the HTTP client was closed: {_describe(exc)}", endpoint=endpoint
            )
        raise failure

    async def aclose(self) -> None:
        for scope in list(self._inflight):
            scope.cancel()
        if self._owned:
            await self._client.aclose()


def _describe(exc: BaseException) -> str:
    text = scrub(str(exc).splitlines()[0] if str(exc) else "")[:300]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class _HideSignatures(logging.Filter):
    """Rewrites a log record whose text would show a signed query (httpx logs every URL)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and record.args:
            record.args = tuple(
                scrub(str(arg)) if "ignature" in str(arg) else arg for arg in record.args
            )
        if isinstance(record.msg, str) and "ignature" in record.msg:
            record.msg = scrub(record.msg)
        return True


_FILTER = _HideSignatures()


def _hide_signatures_in(logger: logging.Logger) -> None:
    if _FILTER not in logger.filters:
        logger.addFilter(_FILTER)


def _os_reason(error: OSError) -> str:
    """ "Connection refused", not asyncio's "Connect call failed ('127.0.0.1', 1)"; a name
    lookup's own words ("Name or service not known")."""
    if error.errno and error.errno > 0 and not isinstance(error, socket.gaierror):
        return os.strerror(error.errno)
    return error.strerror or type(error).__name__
