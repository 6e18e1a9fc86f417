"""The default HTTP stack: httpx's client API over aiohttp's connection pool.

httpx's own pool slows down sharply with many requests in flight on one client (encode/httpx#3215);
aiohttp's does not. :class:`AiohttpTransport` keeps httpx as the interface (so callers may pass
their own ``httpx.AsyncClient`` and tests may use ``httpx.MockTransport``) and lets aiohttp carry
the bytes. It is chosen only under asyncio; under trio the Session uses httpx's own transport.

The README's "HTTP stack" section has the measurements behind this choice.
"""

from __future__ import annotations

import asyncio
import ssl

import aiohttp
import httpx
import yarl

DEFAULT_CONNECTIONS = 256
KEEPALIVE_SECONDS = 30.0


class AiohttpTransport(httpx.AsyncBaseTransport):
    """An httpx transport that sends requests through one ``aiohttp.ClientSession``.

    Bodies are read whole (answers here are small JSON); aiohttp's exceptions come out as the
    matching httpx ones, so code above it handles one family of errors. The URL is sent exactly
    as httpx built it: aiohttp is told not to re-quote it, which would change signed bytes.
    """

    def __init__(
        self,
        *,
        max_connections: int = DEFAULT_CONNECTIONS,
        keepalive: float = KEEPALIVE_SECONDS,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._max_connections = max_connections
        self._keepalive = keepalive
        self._ssl = ssl_context
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        # aiohttp binds its session to the running loop, so it is made on first use.
        connector = aiohttp.TCPConnector(
            limit=self._max_connections,
            limit_per_host=0,
            keepalive_timeout=self._keepalive,
            ssl=self._ssl if self._ssl is not None else True,
            enable_cleanup_closed=False,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            auto_decompress=False,
            skip_auto_headers=("User-Agent", "Accept-Encoding"),
            cookie_jar=aiohttp.DummyCookieJar(),
        )
        return self._session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        session = self._session or self._open()
        timeouts = request.extensions.get("timeout", {})
        timeout = aiohttp.ClientTimeout(
            total=None,
            connect=timeouts.get("pool"),
            sock_connect=timeouts.get("connect"),
            sock_read=timeouts.get("read"),
        )
        body = request.content or None
        try:
            async with session.request(
                request.method,
                yarl.URL(str(request.url), encoded=True),
                headers=request.headers.multi_items(),
                data=body,
                allow_redirects=False,
                timeout=timeout,
            ) as answer:
                content = await answer.read()
                return httpx.Response(
                    answer.status,
                    headers=[
                        (k.decode("latin-1"), v.decode("latin-1")) for k, v in answer.raw_headers
                    ],
                    stream=httpx.ByteStream(content),
                    request=request,
                    extensions={"http_version": b"HTTP/1.1"},
                )
        except (asyncio.TimeoutError, aiohttp.ServerTimeoutError) as exc:
            # TimeoutError comes from a connect or read timeout; which one is not told.
            raise httpx.ReadTimeout(
                f"timed out: {exc or 'no answer in time'}", request=request
            ) from exc
        except aiohttp.ClientConnectorError as exc:
            raise httpx.ConnectError(str(exc), request=request) from exc
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError) as exc:
            raise httpx.RemoteProtocolError(
                str(exc) or type(exc).__name__, request=request
            ) from exc
        except aiohttp.ClientResponseError as exc:
            raise httpx.RemoteProtocolError(str(exc), request=request) from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise httpx.ReadError(str(exc) or type(exc).__name__, request=request) from exc

    async def aclose(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()
