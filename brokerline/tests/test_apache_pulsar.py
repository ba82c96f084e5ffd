"""The plugin's Apache Pulsar standalone: its admin API, a tenant of our own, and what a
machine without Java or Maven gets (a skip naming the fix; an error when CI=true)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from brokerline.core import MessageContext
from brokerline.pulsar.broker import PulsarBroker
from brokerline.pulsar.settings import PulsarSettings
from brokerline.testing.apache_pulsar import ApachePulsarServer, admin
from brokerline.testing.brokers import connected_brokers, eventually, unique


def test_the_admin_api_answers(apache_pulsar_server: ApachePulsarServer) -> None:
    assert admin(apache_pulsar_server, "GET", "clusters") == ["standalone"]
    assert apache_pulsar_server.version == "4.0.7"
    assert apache_pulsar_server.started_in is not None


async def test_a_tenant_and_namespace_created_through_admin(
    apache_pulsar_server: ApachePulsarServer,
) -> None:
    tenant, namespace = unique("tenant"), unique("ns")
    admin(apache_pulsar_server, "PUT", f"tenants/{tenant}", {"allowedClusters": ["standalone"]})
    admin(apache_pulsar_server, "PUT", f"namespaces/{tenant}/{namespace}")
    topic = f"persistent://{tenant}/{namespace}/{unique('reports')}"
    seen: list[MessageContext] = []

    async def handler(msg: bytes, ctx: MessageContext) -> None:
        seen.append(ctx)

    # a new namespace's first lookup waits for the broker to take its bundle: a longer timeout
    settings = PulsarSettings(service_urls=[apache_pulsar_server.url], operation_timeout=15)
    async with connected_brokers(lambda: PulsarBroker(settings)) as connect:
        broker = await connect()
        await broker.subscribe(topic, handler, group=unique("g"))
        await broker.publish(topic, b"in our own namespace")
        await eventually(lambda: len(seen) == 1)
    assert seen[0].topic == topic
    assert admin(apache_pulsar_server, "GET", f"namespaces/{tenant}/{namespace}/topics") == [topic]


USES_APACHE_PULSAR = """
def test_needs_apache_pulsar(apache_pulsar_server):
    pass
"""


def run_without_java(tmp_path: Path, ci: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_needs_it.py").write_text(USES_APACHE_PULSAR)
    env = {**os.environ, "PATH": str(Path(sys.executable).parent), "CI": ci}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", str(tmp_path)],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120, check=False,
    )


def test_without_java_and_maven_the_tests_skip_saying_what_to_install(tmp_path: Path) -> None:
    result = run_without_java(tmp_path, ci="")
    assert result.returncode == 0, result.stdout
    assert "1 skipped" in result.stdout
    assert "need java and mvn on PATH: install Java 17 and Maven" in result.stdout


def test_without_java_and_maven_ci_fails(tmp_path: Path) -> None:
    result = run_without_java(tmp_path, ci="true")
    assert result.returncode == 1, result.stdout
    assert "CI must run the Apache Pulsar tests" in result.stdout
    assert "Traceback" not in result.stdout
