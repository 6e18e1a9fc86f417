"""Serving an ASGI app over real TCP on loopback, inside the caller's event loop."""

from __future__ import annotations

import asyncio
import socket
from types import TracebackType
from typing import Any

import uvicorn

ASGIApp = Any
STOP_TIMEOUT = 5.0
#: Seconds that answers still being worked on get to finish once the server is asked to stop;
#: then they are cancelled, so a stalled answer does not hold up the stop.
STOP_GRACE = 1


class _Server(uvicorn.Server):
    """uvicorn's server, telling when it listens instead of being polled for it."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = asyncio.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        self.ready.set()


class LoopbackServer:
    """Serves ``app`` with uvicorn on 127.0.0.1, on a free port unless one is given.

    ::

        async with LoopbackServer(app) as server:
            server.base_url   # "http://127.0.0.1:PORT"

    The server runs as a task of the current asyncio loop; leaving the block stops it: answers
    in progress get ``STOP_GRACE`` seconds to finish before they are cancelled, and the server
    at most ``STOP_TIMEOUT`` seconds before it is. ``log_level`` is uvicorn's (``"critical"``
    keeps the tracebacks of an app that fails on purpose out of the output). WebSockets get a
    ping every ``ping_every`` seconds and are closed when its pong does not come within
    ``pong_within`` (``None``: no pings).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        log_level: str = "warning",
        ping_every: float | None = None,
        pong_within: float | None = None,
    ) -> None:
        self._app = app
        self._ping_every = ping_every
        self._pong_within = pong_within
        self._log_level = log_level
        self._host = host
        self._port = port
        self._server: _Server | None = None
        self._task: asyncio.Task[None] | None = None
        self._socket: socket.socket | None = None

    @property
    def port(self) -> int:
        if self._socket is None:
            raise RuntimeError("the server is not running")
        port: int = self._socket.getsockname()[1]
        return port

    @property
    def base_url(self) -> str:
        return f"http://{self._host}:{self.port}"

    async def __aenter__(self) -> LoopbackServer:
        # IPPROTO_TCP explicitly: asyncio turns Nagle off (TCP_NODELAY) only on sockets that say
        # so, and with Nagle on, each answer's second write waits out a 40 ms delayed ACK.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self._host, self._port))
        sock.listen(1024)
        sock.setblocking(False)
        self._socket = sock
        config = uvicorn.Config(
            self._app,
            log_level=self._log_level,
            access_log=False,
            lifespan="off",
            timeout_keep_alive=30,
            backlog=1024,
            timeout_graceful_shutdown=STOP_GRACE,
            ws="websockets-sansio",
            ws_ping_interval=self._ping_every,
            ws_ping_timeout=self._pong_within,
        )
        server = self._server = _Server(config)
        self._task = asyncio.create_task(server.serve(sockets=[sock]), name="loopback-server")
        ready = asyncio.create_task(server.ready.wait())
        try:
            await asyncio.wait(
                {ready, self._task}, timeout=STOP_TIMEOUT, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            ready.cancel()
        if not server.ready.is_set():
            await self._stop()
            raise RuntimeError("the loopback server did not start")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._stop()

    async def wait_stopped(self) -> None:
        """Wait until the server stops by itself (uvicorn stops on SIGINT and SIGTERM)."""
        if self._task is None:
            raise RuntimeError("the server is not running")
        await asyncio.shield(self._task)

    async def _stop(self) -> None:
        server, task, sock = self._server, self._task, self._socket
        self._server = self._task = None
        if server is not None:
            server.should_exit = True
        if task is not None:
            done, _ = await asyncio.wait({task}, timeout=STOP_TIMEOUT)
            if not done:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
            elif not task.cancelled() and task.exception() is not None:
                failure = task.exception()
                # uvicorn raises SIGINT or SIGTERM again once it has stopped: a normal stop.
                if not isinstance(failure, (KeyboardInterrupt, SystemExit)):
                    raise RuntimeError("the loopback server failed") from failure
        if sock is not None:
            sock.close()
            self._socket = None
