"""uvicorn (httptools) embedded in the App's event loop, on a socket bound here.

The HTTP/JSON server and the ops server (health, metrics) both serve through it. uvicorn is
embedded rather than run: the App owns the signals and the order of start and stop, so the
socket is bound here (a taken port is one clear error naming the setting, not uvicorn's
`sys.exit`), uvicorn starts on it, and on stop the listener closes, calls in flight finish
within the App's timeout, then the keep-alive connections close. bench/http_stacks.py has the
measurement that chose the stack. No gRPC or protobuf is imported here (the saver's ops
server uses it too).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from typing import Any

#: uvicorn's line for each request it cannot parse: a client sending garbage would write one
#: per request, so it is logged once per window with the count of the ones held back
GARBAGE = "Invalid HTTP request received."


class GarbageRequestFilter(logging.Filter):
    """Let uvicorn's "Invalid HTTP request" warning through once per `window` seconds."""

    def __init__(self, window: float = 10.0) -> None:
        super().__init__()
        self.window = window
        self._held = 0
        self._until = 0.0

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg != GARBAGE:
            return True
        now = time.monotonic()
        if now < self._until:
            self._held += 1
            return False
        if self._held:
            record.msg = (f"{GARBAGE} ({self._held} more since the last such line, not logged; "
                          f"at most one line per {self.window:g}s)")
        self._held, self._until = 0, now + self.window
        return True


def _limit_garbage_warnings() -> None:
    uvicorn_log = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, GarbageRequestFilter) for f in uvicorn_log.filters):
        uvicorn_log.addFilter(GarbageRequestFilter())


class UvicornListener:
    """One ASGI app on one address: `await start()`, then `await stop(timeout)`.

    `what` and `setting` name the listener in the error for an address it cannot bind, e.g.
    "HTTP" and "http.address (HTTP_ADDRESS)". With `reuse_port`, several processes bind the
    same port and the kernel spreads the connections over them (`serve --workers N`).
    """

    def __init__(
        self, app: Any, address: str, what: str, setting: str, reuse_port: bool = False
    ) -> None:
        self.app = app
        self.address = address
        self.what = what
        self.setting = setting
        self.reuse_port = reuse_port
        self.port: int | None = None
        self._server: Any = None
        self._socket: socket.socket | None = None
        self._ticks: asyncio.Task[None] | None = None

    async def start(self) -> None:
        import uvicorn

        self._socket = bind(self.address, self.what, self.setting, self.reuse_port)
        self.port = int(self._socket.getsockname()[1])
        config = uvicorn.Config(
            self.app, http="httptools", ws="none", lifespan="off", log_config=None,
            access_log=False, server_header=False, timeout_graceful_shutdown=None,
        )
        config.load()
        _limit_garbage_warnings()
        server = uvicorn.Server(config)
        server.lifespan = config.lifespan_class(config)
        await server.startup(sockets=[self._socket])
        self._server = server
        # uvicorn's tick: refreshes the Date header once a second until should_exit
        self._ticks = asyncio.create_task(server.main_loop(), name=f"{self.what}-ticks")

    @property
    def host(self) -> str:
        return self.address.rpartition(":")[0]

    async def stop(self, timeout: float) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.should_exit = True
        if self._ticks is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticks
        # stops accepting, lets calls in flight finish, closes idle keep-alive connections
        server.config.timeout_graceful_shutdown = timeout
        await server.shutdown(sockets=[self._socket] if self._socket else None)
        self._socket = None


def bind(address: str, what: str, setting: str, reuse_port: bool = False) -> socket.socket:
    """A listening, non-blocking TCP socket on `address` ("host:port", "[v6]:port")."""
    sock = reserve(address, what, setting, reuse_port)
    try:
        sock.listen(1024)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        raise _cannot_listen(address, what, setting, exc) from None
    return sock


def reserve(address: str, what: str, setting: str, reuse_port: bool = True) -> socket.socket:
    """A socket bound to `address` but not listening: it holds the port (a port of 0 becomes
    a free one) without taking connections, so processes binding it with SO_REUSEPORT after
    it get them all (`serve --workers N` reserves the workers' port this way)."""
    host, _, port = address.rpartition(":")
    host = host.strip("[]")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, int(port)))
    except OSError as exc:
        sock.close()
        raise _cannot_listen(address, what, setting, exc) from None
    return sock


def _cannot_listen(address: str, what: str, setting: str, exc: OSError) -> OSError:
    return OSError(
        f"cannot listen on {address} for {what} ({exc.strerror or exc}); the port is taken or "
        f"the address is wrong: set {setting} to a free host:port"
    )
