"""The HTTP/JSON server: uvicorn (httptools) running the rules' ASGI app inside the App's loop.

The embedding (socket, start, graceful stop) is brokerline.server.listener's, shared with the
ops server; bench/http_stacks.py has the measurement that chose the stack.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any

from opentelemetry.trace import TracerProvider

from brokerline.config import HttpConfig
from brokerline.server.http.app import HttpJsonApp, HttpService
from brokerline.server.listener import UvicornListener

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
        self._listener = UvicornListener(self.app, cfg.address, "HTTP",
                                         "http.address (HTTP_ADDRESS)", cfg.reuse_port)

    @property
    def port(self) -> int | None:
        return self._listener.port

    def openapi(self) -> dict[str, Any]:
        from brokerline.openapi import build_document

        headers = {f"{s.name}.{method}": named for s in self.services
                   for method, named in s.headers.items()}
        return build_document(self.title, self.version, [s.descriptor for s in self.services],
                              headers)

    def openapi_json(self) -> bytes:
        return json.dumps(self.openapi(), indent=2).encode()

    async def start(self) -> None:
        await self._listener.start()
        log.info("HTTP/JSON listening on http://%s:%d (%d route(s)%s%s)", self._listener.host,
                 self.port, len(self.app.endpoints),
                 f", OpenAPI at {self.cfg.openapi_path}" if self.cfg.openapi_path else "",
                 ", /healthz /readyz /metrics" if self.app.mounts else "")

    async def stop(self, timeout: float) -> None:
        await self._listener.stop(timeout)
