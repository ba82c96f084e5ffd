"""Health: gRPC SERVING only while the broker and the database answer, the same state on
/readyz, and the `health` command; the broker is a real process that the test stops."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from brokerline.core import known_types
from brokerline.core.embedded import EmbeddedBroker, free_port, start_embedded
from brokerline.core.registry import plugin_factory
from brokerline.testing.brokers import eventually
from grpc_health.v1 import health_pb2, health_pb2_grpc

from {{ cookiecutter.package_name }}.conf import load_config
from {{ cookiecutter.package_name }}.containers import build_app

PACKAGE = "{{ cookiecutter.package_name }}"


def real_brokers() -> list[str]:
    """The included broker types that have a server process (plugins still being written,
    listed but not importable yet, are left out)."""
    found = []
    for type_name in known_types():
        try:
            plugin_factory(type_name)
        except ImportError:
            continue
        if type_name != "memory":
            found.append(type_name)
    return found


REAL_BROKERS = real_brokers()
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


async def cli(*args: str, cwd: Path) -> tuple[int, str]:
    """The CLI in a subprocess, without blocking the loop that serves it."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", PACKAGE, *args, cwd=cwd, env=dict(os.environ),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode()


def http_status(url: str) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(url, timeout=5) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


async def grpc_status(address: str) -> int:
    async with grpc.aio.insecure_channel(address) as channel:
        reply = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=""), timeout=5)
    return int(reply.status)


@pytest.fixture(params=REAL_BROKERS)
async def service(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[Any, Any, EmbeddedBroker]]:
    """Report and saver in one App on a broker process of their own (the test stops it)."""
    broker_type = str(request.param)
    embedded = await asyncio.to_thread(start_embedded, broker_type, tmp_path / "broker")
    config = load_config(environ={}, overrides={
        "broker": {"type": broker_type, "address": embedded.url, "connect_attempts": 2,
                   "pulsar": {"operation_timeout": 5, "connection_timeout": 2}},
        "database": {"url": f"sqlite+aiosqlite:///{tmp_path / 'health.db'}"},
        "grpc": {"address": f"127.0.0.1:{free_port()}"},
        # the probes on the HTTP/JSON port too (http.ops_routes), beside their own port
        "http": {"address": f"127.0.0.1:{free_port()}", "ops_routes": True},
        "telemetry": {"metrics_port": free_port(), "health_interval": 0.2},
        "shutdown_timeout": 5,
    })
    try:
        app = await build_app(config, "all")
        await app.start()
        try:
            ops: Any = app.servers[-1]  # build_app adds the ops server last
            yield config, ops, embedded
        finally:
            if embedded.process is None:  # let the broker close cleanly
                await asyncio.to_thread(embedded.start)
            await app.stop()  # and its resources
    finally:
        await asyncio.to_thread(embedded.cleanup)


async def test_not_serving_while_the_broker_is_down(service: Any, tmp_path: Path) -> None:
    config, ops, embedded = service
    address = config.grpc.address
    readyz = f"http://127.0.0.1:{ops.port}/readyz"
    assert await grpc_status(address) == SERVING
    status, body = await asyncio.to_thread(http_status, readyz)
    # the checks are the resources the role uses: the broker, and the database where it writes
    assert status == 200 and body["checks"]["broker"] == "up"
    assert set(body["checks"].values()) == {"up"}
    assert await cli("health", "--target", address, cwd=tmp_path) == (0, "SERVING\n")

    await asyncio.to_thread(embedded.stop)

    async def not_serving() -> bool:
        return await grpc_status(address) == NOT_SERVING

    await eventually(not_serving, timeout=30, interval=0.2)
    status, body = await asyncio.to_thread(http_status, readyz)
    assert status == 503 and body["checks"]["broker"] == "down"
    assert body["checks"].get("database", "up") == "up"
    on_http_port = f"http://{config.http.address}/readyz"
    assert await asyncio.to_thread(http_status, on_http_port) == (status, body)
    alive, _ = await asyncio.to_thread(http_status, readyz.replace("readyz", "healthz"))
    assert alive == 200  # alive, only not ready: an orchestrator should not restart it
    code, out = await cli("health", "--target", address, cwd=tmp_path)
    assert (code, out.strip()) == (1, "NOT_SERVING")
    code, out = await cli("health", "--url", readyz, cwd=tmp_path)
    assert code == 1 and json.loads(out)["status"] == "not ready"

    await asyncio.to_thread(embedded.start)

    async def serving() -> bool:
        return await grpc_status(address) == SERVING

    await eventually(serving, timeout=60, interval=0.2)


def test_health_command_when_nothing_answers(tmp_path: Path) -> None:
    import subprocess

    result = subprocess.run(
        [sys.executable, "-m", PACKAGE, "health", "--target", f"127.0.0.1:{free_port()}",
         "--timeout", "1"],
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: no gRPC health service")
