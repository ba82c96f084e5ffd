"""The listening side over real sockets: the ops endpoints on uvicorn (own port and the
HTTP/JSON port), a taken port refused for gRPC and HTTP unless shared on purpose
(SO_REUSEPORT, `serve --workers`), and the settings the supervisor gives each worker."""

from __future__ import annotations

import asyncio
import http.client
import json
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from http_things import SERVICE, ThingServicer

from brokerline.config import ConfigError, HttpConfig, ServiceConfig, TelemetryConfig, load_config
from brokerline.config.loader import WORKER_SETTINGS
from brokerline.core.embedded import free_port
from brokerline.health import HealthMonitor, NotReady
from brokerline.server.grpc import GrpcServer
from brokerline.server.http import HttpServer, HttpService
from brokerline.server.listener import reserve
from brokerline.server.ops import PATHS, OpsServer


class Switch:
    """A readiness check the test flips: up, or down with a reason."""

    def __init__(self) -> None:
        self.up = True

    async def __call__(self) -> bool:
        if not self.up:
            raise NotReady("the database is down (test)")
        return True


def get(port: int, path: str, method: str = "GET",
        conn: http.client.HTTPConnection | None = None) -> tuple[int, str, bytes]:
    conn = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request(method, path)
    response = conn.getresponse()
    return response.status, response.getheader("content-type") or "", response.read()


@pytest.fixture
async def ops() -> AsyncIterator[tuple[OpsServer, Switch]]:
    switch = Switch()
    monitor = HealthMonitor({"database": switch}, interval=0.05)
    server = OpsServer(monitor, TelemetryConfig(metrics_port=free_port()),
                       metrics=lambda: (b"# HELP up test\nup 1\n", "text/plain; version=0.0.4"))
    await server.start()
    yield server, switch
    await server.stop(5)


async def test_ops_endpoints_answer_on_their_own_port(ops: tuple[OpsServer, Switch]) -> None:
    server, switch = ops
    assert server.port
    status, kind, body = await asyncio.to_thread(get, server.port, "/healthz")
    assert (status, kind, json.loads(body)) == (200, "application/json", {"status": "alive"})
    status, _, body = await asyncio.to_thread(get, server.port, "/readyz")
    assert status == 200 and json.loads(body)["checks"] == {"database": "up"}
    switch.up = False
    for _ in range(100):
        status, _, body = await asyncio.to_thread(get, server.port, "/readyz")
        if status == 503:
            break
        await asyncio.sleep(0.05)
    state = json.loads(body)
    assert status == 503 and state["status"] == "not ready"
    assert state["reasons"] == {"database": "the database is down (test)"}
    status, kind, body = await asyncio.to_thread(get, server.port, "/metrics")
    assert (status, kind, body) == (200, "text/plain; version=0.0.4", b"# HELP up test\nup 1\n")


async def test_ops_endpoints_refuse_other_paths_and_verbs(ops: tuple[OpsServer, Switch]) -> None:
    server, _ = ops
    assert server.port
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)  # keep-alive
    status, _, body = await asyncio.to_thread(get, server.port, "/nope", conn=conn)
    assert status == 404 and b"/healthz, /readyz, /metrics" in body
    status, _, body = await asyncio.to_thread(get, server.port, "/healthz", "POST", conn)
    assert status == 405 and b"use GET" in body
    status, _, body = await asyncio.to_thread(get, server.port, "/healthz", "HEAD", conn)
    assert (status, body) == (200, b"")
    conn.close()


async def test_ops_endpoints_on_the_http_json_port() -> None:
    """http.ops_routes: the HTTP/JSON server answers the probes too; its routes still work."""
    http_cfg = HttpConfig(address=f"127.0.0.1:{free_port()}", ops_routes=True)
    http_server = HttpServer(http_cfg, [HttpService(SERVICE, ThingServicer())])
    ops = OpsServer(HealthMonitor({}, interval=1), TelemetryConfig())
    http_server.app.mount(PATHS, ops.endpoints)  # what ops_server_for does with ops_routes
    await http_server.start()
    await ops.start()
    try:
        assert ops.port is None  # no port of its own: telemetry.metrics_port is 0
        assert http_server.port
        status, _, body = await asyncio.to_thread(get, http_server.port, "/readyz")
        assert status == 200 and json.loads(body)["status"] == "ready"
        status, _, body = await asyncio.to_thread(get, http_server.port, "/v1/things/a1")
        assert status == 200 and json.loads(body)["thing"]["thingId"] == "a1"
    finally:
        await ops.stop(5)
        await http_server.stop(5)


async def test_a_taken_port_is_refused_unless_shared_on_purpose() -> None:
    """gRPC would share a taken port silently (it sets SO_REUSEPORT by default): refused
    unless reuse_port is set, which `serve --workers` sets for its workers."""
    first = GrpcServer(f"127.0.0.1:{free_port()}", [])
    await first.start()
    taken = f"127.0.0.1:{first.port}"
    try:
        with pytest.raises(OSError, match=r"set grpc\.address \(GRPC_ADDRESS\) to a free"):
            await GrpcServer(taken, []).start()
        with pytest.raises(OSError, match=r"set http\.address \(HTTP_ADDRESS\) to a free"):
            await HttpServer(HttpConfig(address=taken), []).start()
    finally:
        await first.stop(5)

    holder = reserve(f"127.0.0.1:{free_port()}", "test", "test")  # a supervisor's reservation
    port = holder.getsockname()[1]
    servers: list[GrpcServer | HttpServer] = []
    try:
        for _ in range(2):
            servers.append(GrpcServer(f"127.0.0.1:{port}", [], reuse_port=True))
            await servers[-1].start()
        assert {server.port for server in servers} == {port}
        http_port = reserve(f"127.0.0.1:{free_port()}", "test", "test")
        for _ in range(2):
            cfg = HttpConfig(address=f"127.0.0.1:{http_port.getsockname()[1]}", reuse_port=True)
            servers.append(HttpServer(cfg, []))
            await servers[-1].start()
        status, _, _ = await asyncio.to_thread(get, http_port.getsockname()[1], "/v1/nothing")
        assert status == 404  # answered by one of them (no route): the shared port is served
        http_port.close()
    finally:
        for server in servers:
            await server.stop(5)
        holder.close()


def test_worker_settings_are_stronger_than_the_file_and_the_environment(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("grpc:\n  address: 127.0.0.1:9100\nhttp:\n  max_body_bytes: 77\n")
    environ = {"GRPC_ADDRESS": "127.0.0.1:9200", "EXAMPLE__GRPC__ADDRESS": "127.0.0.1:9300",
               WORKER_SETTINGS: json.dumps({"grpc": {"address": "127.0.0.1:9400",
                                                     "reuse_port": True},
                                            "telemetry": {"metrics_port": 9465}})}
    config = load_config(ServiceConfig, path, environ, env_prefix="EXAMPLE__")
    assert config.grpc.address == "127.0.0.1:9400" and config.grpc.reuse_port
    assert config.telemetry.metrics_port == 9465
    assert config.http.max_body_bytes == 77  # the rest of a section still comes from the file
    explicit = load_config(ServiceConfig, path, environ, {"grpc": {"address": "127.0.0.1:1"}},
                           env_prefix="EXAMPLE__")
    assert explicit.grpc.address == "127.0.0.1:1" and explicit.grpc.reuse_port


def test_workers_refuse_a_listen_address_that_is_taken() -> None:
    from brokerline.cli.serve import serve_workers

    holder = reserve(f"127.0.0.1:{free_port()}", "test", "test", reuse_port=False)
    holder.listen(1)
    taken = f"127.0.0.1:{holder.getsockname()[1]}"
    config = ServiceConfig.model_validate({
        "broker": {"type": "nats", "address": "nats://127.0.0.1:4222"},
        "http": {"address": taken}})
    try:
        with pytest.raises(OSError, match=rf"cannot listen on {taken} for HTTP .*set "
                                          r"http\.address \(HTTP_ADDRESS\)"):
            serve_workers("example", None, "report", 2, config, listens=["grpc", "http"],
                          subscribes=False)
    finally:
        holder.close()


def test_workers_of_a_role_that_does_not_subscribe_ignore_exclusive_subscriptions() -> None:
    from brokerline.cli.serve import serve_workers

    config = ServiceConfig.model_validate({"broker": {
        "type": "pulsar", "address": "pulsar://127.0.0.1:6650",
        "subscriber": {"subscription_type": "exclusive"}}})
    with pytest.raises(ConfigError, match="exclusive"):
        serve_workers("example", None, "saver", 2, config)
    # a publishing role: the check does not apply (the workers' start fails here instead:
    # `python -m example` does not exist, so each exits 1 and the group with it)
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        assert serve_workers("example", None, "report", 2, config, subscribes=False) == 1
    finally:
        for sig, handler in handlers.items():  # the supervisor forwards them; pytest's back
            signal.signal(sig, handler)
