"""JetStream publishes the stream did not take: resent with the same id, or refused at once.

A stream with no leader answers "no responders", as a stream that does not exist does. On
one nats-server the first is made by deleting the stream under a connected broker (its
subjects are still the configured ones) and creating it again; the cluster test
(`test_jetstream_cluster`) makes it the real way, by killing the stream's leader.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from brokerline.core import BrokerError, BrokerUnavailable
from brokerline.core.embedded import EmbeddedBroker
from brokerline.jetstream.broker import (
    JetStreamBroker,
    provision_stream,
)
from brokerline.jetstream.publisher import subject_matches
from brokerline.nats.embedded import nats_server
from brokerline.testing.brokers import nats_test_settings, unique


@pytest.fixture(scope="module")
def server() -> Iterator[EmbeddedBroker]:
    with nats_server(jetstream=True) as embedded:
        yield embedded.start()


@pytest.fixture
async def connect(server: EmbeddedBroker) -> AsyncIterator[Any]:
    """Connects JetStream brokers, each on a stream of its own (`<STREAM>.>`)."""
    made: list[JetStreamBroker] = []

    async def make(retry_for: float = 10.0) -> JetStreamBroker:
        name = unique("PUB").upper().replace("-", "_")
        settings = nats_test_settings(
            server.url, stream={"name": name, "subjects": [f"{name}.>"]},
            publish_retry_for=retry_for,
        )
        broker = JetStreamBroker(settings)
        await broker.connect()
        made.append(broker)
        return broker

    yield make
    for broker in made:
        await broker.close(timeout=5)


def test_subject_patterns() -> None:
    assert subject_matches("events.>", "events.a.b")
    assert not subject_matches("events.>", "events")
    assert subject_matches("events.*", "events.a")
    assert not subject_matches("events.*", "events.a.b")
    assert subject_matches("a.b", "a.b") and not subject_matches("a.b", "a.c")
    assert not subject_matches("a.*.c", "a.b")


async def test_a_publish_waits_out_a_stream_without_leader(connect: Any) -> None:
    broker = await connect()
    stream = broker.settings.stream
    topic = f"{stream.name}.orders"
    await broker.js.delete_stream(stream.name)
    publishing = asyncio.create_task(broker.publish(topic, b"kept", key="k"))
    await asyncio.sleep(1.0)
    assert not publishing.done(), "a publish to a stream without leader was not held"
    await provision_stream(broker.js, stream)
    await asyncio.wait_for(publishing, 10)
    info = await broker.js.stream_info(stream.name)
    assert info.state.messages == 1


async def test_resends_end_after_publish_retry_for(connect: Any) -> None:
    broker = await connect(retry_for=0.5)
    stream = broker.settings.stream
    await broker.js.delete_stream(stream.name)
    with pytest.raises(BrokerUnavailable, match=rf"within 0.5s .*stream {stream.name}"):
        await asyncio.wait_for(broker.publish(f"{stream.name}.orders", b"x"), 10)


async def test_a_subject_no_stream_captures_is_refused_at_once(connect: Any) -> None:
    broker = await connect()
    # with 10 s of resending allowed, only an immediate refusal ends within the 3 s bound
    with pytest.raises(BrokerError, match="no JetStream stream captures subject"):
        await asyncio.wait_for(broker.publish(unique("nowhere"), b"x"), 3)
