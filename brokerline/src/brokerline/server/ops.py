"""The operations server: health state for gRPC, and `/healthz`, `/readyz`, `/metrics` over HTTP.

It runs the `HealthMonitor` and mirrors its state into the gRPC health servicer (SERVING
only while the broker and the database answer). With `telemetry.metrics_port` set it also
serves a minimal HTTP/1.1 endpoint from the standard library for orchestrators' probes and
Prometheus: `/healthz` (the process is alive: 200), `/readyz` (200 when ready, else 503, with
the per-check state as JSON) and `/metrics` (Prometheus text format).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from brokerline.config import TelemetryConfig
from brokerline.health import Check, HealthMonitor, database_check, subscriptions_check

if TYPE_CHECKING:
    from brokerline.server.grpc import GrpcServer

log = logging.getLogger(__name__)

MAX_HEADER_LINES = 100
REASONS = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 503: "Service Unavailable"}


def _prometheus_text() -> tuple[bytes, str]:
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    from brokerline.telemetry import current

    telemetry = current()
    if telemetry is None:  # telemetry not set up in this process: nothing to show
        return b"", CONTENT_TYPE_LATEST
    return generate_latest(telemetry.registry), CONTENT_TYPE_LATEST


class OpsServer:
    name = "ops"

    def __init__(
        self,
        monitor: HealthMonitor,
        cfg: TelemetryConfig,
        grpc_servers: Sequence[GrpcServer] = (),
        metrics: Callable[[], tuple[bytes, str]] = _prometheus_text,
    ) -> None:
        self.monitor = monitor
        self.host = cfg.metrics_host
        self.port: int | None = cfg.metrics_port or None
        self.grpc_servers = list(grpc_servers)
        self._metrics = metrics
        self._http: asyncio.Server | None = None
        monitor.listeners.append(self._set_grpc_health)

    async def _set_grpc_health(self, ready: bool) -> None:
        if self.grpc_servers:  # a role without gRPC does not import it
            from grpc_health.v1 import health_pb2

            status = (health_pb2.HealthCheckResponse.SERVING if ready
                      else health_pb2.HealthCheckResponse.NOT_SERVING)
        for server in self.grpc_servers:
            for name in ["", *(s.name for s in server.services)]:
                await server.health.set(name, status)
        log.log(logging.INFO if ready else logging.WARNING, "health: %s (%s)",
                "ready" if ready else "not ready",
                ", ".join(f"{n} {'up' if ok else 'down'}" for n, ok in self.monitor.status.items()))

    async def start(self) -> None:
        await self.monitor.start()
        if self.port is not None:
            self._http = await asyncio.start_server(self._serve, self.host, self.port)
            if self.port == 0 or not self._http.sockets:
                return
            self.port = self._http.sockets[0].getsockname()[1]
            log.info("health and metrics on http://%s:%d (/healthz /readyz /metrics)",
                     self.host, self.port)

    async def stop(self, timeout: float) -> None:
        if self._http is not None:
            self._http.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._http.wait_closed(), timeout)
            self._http = None
        await self.monitor.stop()

    # -- HTTP --------------------------------------------------------------------------------
    def _route(self, method: str, path: str) -> tuple[int, bytes, str]:
        path = path.split("?", 1)[0]
        if path not in ("/healthz", "/readyz", "/metrics"):
            return 404, b"not found\n", "text/plain"
        if method not in ("GET", "HEAD"):
            return 405, b"method not allowed\n", "text/plain"
        if path == "/healthz":
            return 200, b'{"status": "alive"}\n', "application/json"
        if path == "/readyz":
            ready = self.monitor.ready
            state: dict[str, Any] = {
                "status": "ready" if ready else "not ready",
                "checks": {name: "up" if ok else "down"
                           for name, ok in self.monitor.status.items()},
            }
            if self.monitor.reasons:
                state["reasons"] = dict(self.monitor.reasons)
            return (200 if ready else 503), (json.dumps(state) + "\n").encode(), "application/json"
        body, content_type = self._metrics()
        return 200, body, content_type

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request_line = await asyncio.wait_for(reader.readline(), 10)
            for _ in range(MAX_HEADER_LINES):  # headers are read and ignored
                line = await asyncio.wait_for(reader.readline(), 10)
                if line in (b"\r\n", b"\n", b""):
                    break
            parts = request_line.decode("latin-1").split()
            if len(parts) < 2:
                return
            method, path = parts[0].upper(), parts[1]
            status, body, content_type = self._route(method, path)
            head = (f"HTTP/1.1 {status} {REASONS.get(status, '')}\r\n"
                    f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
                    "Connection: close\r\n\r\n").encode("latin-1")
            writer.write(head if method == "HEAD" else head + body)
            await writer.drain()
        except (TimeoutError, ConnectionError, UnicodeError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()


def _initialized(provider: Any) -> bool:
    """Whether a resource provider (or the one overriding it in a test) has been set up."""
    active = getattr(provider, "last_overriding", None) or provider
    return bool(getattr(active, "initialized", False))


async def ops_server_for(container: Any, servers: Sequence[object]) -> OpsServer:
    """The ops server of a role: checks the resources its servers use, drives their health.

    Start it after the role's other servers (their resources are set up by then).
    """
    config = container.config()
    checks: dict[str, Check] = {}
    broker = None
    if _initialized(container.broker):
        broker = await container.broker()
        checks["broker"] = broker.healthy
    if _initialized(container.database):
        checks["database"] = database_check(await container.database())
    subscribing = any(getattr(s, "name", None) == "broker" for s in servers)
    if broker is not None and subscribing:
        checks["subscriptions"] = subscriptions_check(broker)
    grpc_servers: list[GrpcServer] = []
    if any(getattr(s, "name", None) == "grpc" for s in servers):  # else gRPC stays unimported
        from brokerline.server.grpc import GrpcServer

        grpc_servers = [s for s in servers if isinstance(s, GrpcServer)]
    monitor = HealthMonitor(checks, config.telemetry.health_interval)
    if broker is not None and "subscriptions" in checks:
        broker.flows.listeners.append(monitor.poke)
    return OpsServer(monitor, config.telemetry, grpc_servers)
