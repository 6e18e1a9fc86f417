"""A loopback server whose answers a test scripts: the time endpoint answers well, every other
path with the test's handler; it counts what it was asked."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from binance_pm.testing import LoopbackServer

Handler = Callable[[str, dict[str, str]], Awaitable[tuple[int, list[tuple[bytes, bytes]], bytes]]]


class ScriptedApp:
    """Answers the time endpoint well and every other path with ``handler``; counts requests."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.paths: list[str] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        path = scope["path"]
        self.paths.append(path)
        if path == "/api/v3/time":
            headers: list[tuple[bytes, bytes]] = []
            status = 200
            body_bytes = json.dumps({"serverTime": time.time_ns() // 10**6}).encode()
        else:
            query = dict(
                pair.split("=", 1)
                for pair in scope["query_string"].decode().split("&")
                if "=" in pair
            )
            status, headers, body_bytes = await self.handler(path, query)
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body_bytes})

    def sent(self, path: str) -> int:
        return sum(1 for p in self.paths if p == path)


async def serve(handler: Handler) -> AsyncIterator[tuple[str, ScriptedApp]]:
    app = ScriptedApp(handler)
    async with LoopbackServer(app) as server:
        yield server.base_url, app


def answering(
    status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None
) -> Handler:
    async def handler(path: str, query: dict[str, str]) -> Any:
        return status, headers or [], body

    return handler
