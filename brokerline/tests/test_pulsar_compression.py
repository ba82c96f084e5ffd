"""Producer compression shrinks what Apache Pulsar stores, read back through its admin API.

Apache Pulsar only: pulsar-lite has no admin API to ask for a topic's storage size. Each run
also reads the messages back, so a codec that shrank the bytes but broke them would fail.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable

import pytest

from brokerline.core import MessageContext
from brokerline.pulsar.broker import PulsarBroker
from brokerline.testing.apache_pulsar import ApachePulsarServer
from brokerline.testing.apache_pulsar.admin import admin
from brokerline.testing.brokers import APACHE_PULSAR, eventually, unique

Factory = Callable[..., Awaitable[PulsarBroker]]

MESSAGES = 20
#: a report-like body that repeats itself, as JSON events do: about 12 KB each
PAYLOAD = json.dumps(
    [{"user_id": f"user-{n}", "event": "page_view", "page": "/reports/daily"} for n in range(160)]
).encode()


def stored_bytes(server: ApachePulsarServer, topic: str) -> int:
    """The topic's storage size per the broker's stats."""
    stats = admin(server, "GET", f"persistent/public/default/{topic}/stats")
    return int(stats["storageSize"])


async def publish_and_measure(
    pulsar_factory: Factory, server: ApachePulsarServer, compression: str
) -> int:
    topic = unique(f"compressed-{compression}")
    broker = await pulsar_factory(compression=compression, batching=False)  # one entry each
    for _ in range(MESSAGES):
        await broker.publish(topic, PAYLOAD)
    received: list[bytes] = []

    async def handler(msg: bytes, ctx: MessageContext) -> None:
        received.append(msg)

    await broker.subscribe(topic, handler, group=unique("g"))
    await eventually(lambda: len(received) == MESSAGES)
    assert set(received) == {PAYLOAD}, "the consumer did not get the body back as sent"
    return stored_bytes(server, topic)


@pytest.mark.parametrize("pulsar_server", [APACHE_PULSAR], indirect=True)
@pytest.mark.parametrize("compression", ["lz4", "zlib", "zstd", "snappy"])
async def test_compression_shrinks_the_stored_messages(
    pulsar_factory: Factory, apache_pulsar_server: ApachePulsarServer, compression: str
) -> None:
    plain = await publish_and_measure(pulsar_factory, apache_pulsar_server, "none")
    compressed = await publish_and_measure(pulsar_factory, apache_pulsar_server, compression)
    assert plain >= MESSAGES * len(PAYLOAD), "the uncompressed topic stores less than was sent"
    assert compressed * 4 < plain, f"{compression}: {compressed} bytes stored against {plain}"
