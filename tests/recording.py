"""An ASGI app that keeps the raw request bytes and answers like the exchange's examples, for
tests of the sending layer over real sockets."""

from __future__ import annotations

import json
import time
from typing import Any

import anyio

from .documented import DOCUMENTED, fixture_bytes


class RecordingApp:
    """An ASGI app that keeps the raw request bytes and answers like the exchange's examples."""

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        path = scope["path"]
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        self.seen.append({"path": path, "query": scope["query_string"], "headers": headers})
        status, body, extra = 200, b"", []
        if path == "/api/v3/time":
            body = json.dumps({"serverTime": int(time.time() * 1000)}).encode()
        elif path in DOCUMENTED:
            body = fixture_bytes(DOCUMENTED[path])
        elif path == "/truncated":
            extra = [(b"content-length", b"500")]
            body = b'{"uniMMR": "1'
        elif path == "/slow":  # an answer in a second, unless the client has gone by then
            with anyio.move_on_after(1.0):
                while (await receive())["type"] != "http.disconnect":
                    pass
        elif path == "/html502":
            status, body = 502, b"<html><title>502 Bad Gateway</title></html>"
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"application/json"), *extra],
            }
        )
        await send({"type": "http.response.body", "body": body})
