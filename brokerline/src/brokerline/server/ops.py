"""The operations server: health state for gRPC, and `/healthz`, `/readyz`, `/metrics` over HTTP.

It runs the `HealthMonitor` and mirrors its state into the gRPC health servicer (SERVING
only while the broker and the database answer). The HTTP endpoints, for orchestrators'
probes and Prometheus, are a small ASGI app (`OpsEndpoints`) served by uvicorn like the
HTTP/JSON transport: on their own port with `telemetry.metrics_port`, and/or on the HTTP/JSON
port with `http.ops_routes`. `/healthz` (the process is alive: 200), `/readyz` (200 when
ready, else 503, with the per-check state as JSON), `/metrics` (Prometheus text format).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

from brokerline.config import TelemetryConfig
from brokerline.health import Check, HealthMonitor, database_check, subscriptions_check
from brokerline.server.listener import UvicornListener

if TYPE_CHECKING:
    from brokerline.server.grpc import GrpcServer

log = logging.getLogger(__name__)

PATHS = ("/healthz", "/readyz", "/metrics")
Send = Callable[[dict[str, Any]], Awaitable[None]]


def _prometheus_text() -> tuple[bytes, str]:
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    from brokerline.telemetry import current

    telemetry = current()
    if telemetry is None:  # telemetry not set up in this process: nothing to show
        return b"", CONTENT_TYPE_LATEST
    return generate_latest(telemetry.registry), CONTENT_TYPE_LATEST


class OpsEndpoints:
    """The ASGI app of `/healthz`, `/readyz` and `/metrics` (GET or HEAD)."""

    def __init__(
        self, monitor: HealthMonitor, metrics: Callable[[], tuple[bytes, str]] = _prometheus_text
    ) -> None:
        self.monitor = monitor
        self._metrics = metrics

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Send) -> None:
        if scope["type"] != "http":
            return
        method = scope["method"].upper()
        status, body, content_type = self.answer(method, scope["path"])
        await send({"type": "http.response.start", "status": status, "headers": [
            (b"content-type", content_type.encode("latin-1")),
            (b"content-length", str(len(body)).encode()),
        ]})
        await send({"type": "http.response.body", "body": b"" if method == "HEAD" else body})

    def answer(self, method: str, path: str) -> tuple[int, bytes, str]:
        if path not in PATHS:
            return 404, b"not found: this port answers /healthz, /readyz, /metrics\n", "text/plain"
        if method not in ("GET", "HEAD"):
            return 405, b"method not allowed: use GET\n", "text/plain"
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
        return (200, *self._metrics())


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
        self.endpoints = OpsEndpoints(monitor, metrics)
        self.grpc_servers = list(grpc_servers)
        self._listener = (
            UvicornListener(self.endpoints, f"{cfg.metrics_host}:{cfg.metrics_port}",
                            "health and metrics", "telemetry.metrics_port "
                            "(OTEL_EXPORTER_PROMETHEUS_PORT)")
            if cfg.metrics_port else None
        )
        monitor.listeners.append(self._set_grpc_health)

    @property
    def port(self) -> int | None:
        return self._listener.port if self._listener else None

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
        if self._listener is not None:
            await self._listener.start()
            log.info("health and metrics on http://%s:%d (/healthz /readyz /metrics)",
                     self._listener.host, self.port)

    async def stop(self, timeout: float) -> None:
        if self._listener is not None:
            await self._listener.stop(timeout)
        await self.monitor.stop()


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
    ops = OpsServer(monitor, config.telemetry, grpc_servers)
    if any(getattr(s, "name", None) == "http" for s in servers):
        from brokerline.server.http import HttpServer

        for http in (s for s in servers if isinstance(s, HttpServer) and s.cfg.ops_routes):
            http.app.mount(PATHS, ops.endpoints)  # the same endpoints on the HTTP/JSON port
    return ops
