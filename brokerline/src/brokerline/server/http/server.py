"""The HTTP/JSON server: uvicorn (httptools) running the rules' ASGI app inside the App's loop.

uvicorn is embedded rather than run: the App owns the signals and the order of start and stop,
so the server binds its socket itself (a taken port is one clear error, not uvicorn's
`sys.exit`), starts uvicorn on it, and on stop closes the listener, lets calls in flight
finish within the App's timeout, then closes the keep-alive connections. bench/http_stacks.py
has the measurement that chose the stack.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
from collections.abc import Sequence
from typing import Any

from opentelemetry.trace import TracerProvider

from brokerline.config import HttpConfig
from brokerline.server.http.app import HttpJsonApp, HttpService

log = logging.getLogger("brokerline.server.http")


class HttpServer:
    name = "http"

    def __init__(
        self, cfg: HttpConfig, services: Sequence[HttpService], title: str = "",
        version: str = "0.1.0", tracer_provider: TracerProvider | None = None,
    ) -> None:
        self.cfg = cfg
        self.address = cfg.address
        self.services = list(services)
        self.title = title or ", ".join(s.name for s in self.services) or "service"
        self.version = version
        self.app = HttpJsonApp(self.services, cfg.max_body_bytes, self.openapi_json,
                               cfg.openapi_path, tracer_provider)
        self.port: int | None = None
        self._server: Any = None
        self._socket: socket.socket | None = None
        self._ticks: asyncio.Task[None] | None = None

    def openapi(self) -> dict[str, Any]:
        from brokerline.openapi import build_document

        return build_document(self.title, self.version, [s.descriptor for s in self.services])

    def openapi_json(self) -> bytes:
        return json.dumps(self.openapi(), indent=2).encode()

    async def start(self) -> None:
        import uvicorn

        self._socket = _bind(self.address)
        self.port = int(self._socket.getsockname()[1])
        config = uvicorn.Config(
            self.app, http="httptools", ws="none", lifespan="off", log_config=None,
            access_log=False, server_header=False, timeout_graceful_shutdown=None,
        )
        config.load()
        server = uvicorn.Server(config)
        server.lifespan = config.lifespan_class(config)
        await server.startup(sockets=[self._socket])
        self._server = server
        # uvicorn's tick: refreshes the Date header once a second until should_exit
        self._ticks = asyncio.create_task(server.main_loop(), name="http-ticks")
        host = self.address.rpartition(":")[0]
        log.info("HTTP/JSON listening on http://%s:%d (%d route(s)%s)", host, self.port,
                 len(self.app.endpoints),
                 f", OpenAPI at {self.cfg.openapi_path}" if self.cfg.openapi_path else "")

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


def _bind(address: str) -> socket.socket:
    host, _, port = address.rpartition(":")
    host = host.strip("[]")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, int(port)))
        sock.listen(1024)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        raise OSError(
            f"cannot listen on {address} for HTTP ({exc.strerror or exc}); the port is taken "
            "or the address is wrong: set http.address (HTTP_ADDRESS) to a free host:port"
        ) from None
    return sock
