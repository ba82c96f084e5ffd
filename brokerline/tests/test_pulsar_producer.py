"""Pulsar producer features against real brokers (no mocks): pulsar-lite and Apache Pulsar.

`pulsar_factory` (the plugin's) connects `PulsarBroker`s to the session's pulsar-lite, then
to its Apache Pulsar standalone (test ids `pulsar-lite`, `apache-pulsar`).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pulsar
import pytest
from pulsar.asyncio import Client
from pydantic import ValidationError

from brokerline.core import BrokerError, MessageContext
from brokerline.core.embedded import EmbeddedBroker
from brokerline.pulsar.broker import PulsarBroker
from brokerline.pulsar.settings import PulsarSettings
from brokerline.testing.apache_pulsar import ApachePulsarServer
from brokerline.testing.apache_pulsar.admin import namespace_without_delayed_delivery
from brokerline.testing.brokers import eventually, pulsar_lite_lacks, unique

Factory = Callable[..., Awaitable[PulsarBroker]]

NO_DELAYED_DELIVERY = (
    "pulsar-lite has no delayed-delivery tracker: it delivers deliver_after/deliver_at "
    "messages at once (Apache Pulsar honours them on Shared subscriptions)"
)


async def collect(
    broker: PulsarBroker, topic: str, **kwargs: Any
) -> list[tuple[Any, MessageContext]]:
    got: list[tuple[Any, MessageContext]] = []

    async def handler(msg: bytes, ctx: MessageContext) -> None:
        got.append((msg, ctx))

    await broker.subscribe(topic, handler, group=unique("g"), **kwargs)
    return got


def entry_of(message_id: str) -> tuple[str, str]:
    """(ledger, entry) of a message id printed as `(ledger,entry,partition,batch_index)`."""
    ledger, entry, *_ = message_id.strip("()").split(",")
    return ledger, entry


async def test_publish_waits_and_publish_nowait_returns_a_future(pulsar_factory: Factory) -> None:
    broker = await pulsar_factory()
    topic = unique("sends")
    got = await collect(broker, topic)
    await broker.publish(topic, b"sync")
    futures = [await broker.publish_nowait(topic, f"async-{n}".encode()) for n in range(20)]
    ids = await asyncio.gather(*futures)
    assert all(ids) and len(set(ids)) == 20
    await eventually(lambda: len(got) == 21)
    assert {m for m, _ in got} == {b"sync"} | {f"async-{n}".encode() for n in range(20)}


async def test_a_full_client_queue_waits_instead_of_dropping(pulsar_factory: Factory) -> None:
    # raw send_async with 5 pending slots would fail most of these with ProducerQueueIsFull
    broker = await pulsar_factory(max_pending_messages=5, batching=False)
    topic = unique("backpressure")
    got = await collect(broker, topic)
    await broker.publish_batch(topic, [{"n": n} for n in range(300)])
    futures = [await broker.publish_nowait(topic, {"n": n}) for n in range(300, 600)]
    await asyncio.gather(*futures)
    await eventually(lambda: len(got) == 600, timeout=30)


async def test_batching_packs_messages_into_shared_entries(pulsar_factory: Factory) -> None:
    broker = await pulsar_factory(
        batching=True, batching_max_messages=10, batching_max_bytes=1 << 20,
        batching_max_delay_ms=50,
    )
    topic = unique("batched")
    got = await collect(broker, topic)
    await broker.publish_batch(topic, [{"n": n} for n in range(100)])
    await eventually(lambda: len(got) == 100)
    entries = {entry_of(ctx.message_id) for _, ctx in got}
    assert len(entries) <= 20, f"100 messages in {len(entries)} entries: batching is off"
    assert len(entries) >= 10, "a batch held more than batching_max_messages"


async def test_batching_off_stores_one_message_per_entry(pulsar_factory: Factory) -> None:
    broker = await pulsar_factory(batching=False)
    topic = unique("unbatched")
    got = await collect(broker, topic)
    await broker.publish_batch(topic, [{"n": n} for n in range(20)])
    await eventually(lambda: len(got) == 20)
    assert len({entry_of(ctx.message_id) for _, ctx in got}) == 20


@pytest.mark.parametrize("compression", ["lz4", "zlib", "zstd"])
async def test_compressed_messages_round_trip(pulsar_factory: Factory, compression: str) -> None:
    broker = await pulsar_factory(compression=compression)
    topic = unique(f"compressed-{compression}")
    got = await collect(broker, topic)
    payload = b"report row, " * 2000
    await broker.publish(topic, payload)
    await broker.publish_batch(topic, [payload[: 100 + n] for n in range(5)])
    await eventually(lambda: len(got) == 6)
    assert got[0][0] == payload


def test_an_unknown_compression_is_a_clear_error() -> None:
    """Refused with the settings (at config load), naming the values it accepts."""
    with pytest.raises(ValidationError, match=r"compression\s+Input should be 'none', 'lz4'"):
        PulsarBroker(PulsarSettings(service_urls=["pulsar://127.0.0.1:6650"], compression="gzip"))


async def test_key_ordering_key_properties_and_event_time_reach_the_broker(
    pulsar_factory: Factory, pulsar_server: EmbeddedBroker
) -> None:
    broker = await pulsar_factory()
    topic = unique("fields")
    full = broker.names.full(topic)
    event_time = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    raw = Client(pulsar_server.url)
    try:  # read with the plain client: what the plugin wrote is what any Pulsar consumer sees
        consumer = await raw.subscribe(
            full, unique("raw"), initial_position=pulsar.InitialPosition.Earliest
        )
        await broker.publish(
            topic, b"x", key="tenant-7", ordering_key="order-1", event_time=event_time,
            headers={"trace": "abc"},
        )
        message = await asyncio.wait_for(consumer.receive(), 10)
    finally:
        await raw.close()
    assert message.partition_key() == "tenant-7"
    assert message.ordering_key() == "order-1"
    assert message.event_timestamp() == int(event_time.timestamp() * 1000)
    assert message.properties()["trace"] == "abc"
    assert message.properties()["content-type"] == "application/octet-stream"


async def test_delay_is_refused_when_the_broker_would_deliver_at_once(
    pulsar_factory: Factory, pulsar_server: EmbeddedBroker
) -> None:
    overrides: dict[str, str] = {}  # pulsar-lite delivers delayed messages at once anywhere
    if isinstance(pulsar_server, ApachePulsarServer):  # Apache Pulsar: where a policy says so
        overrides["namespace"] = namespace_without_delayed_delivery(pulsar_server, unique("ns"))
    broker = await pulsar_factory(delayed_delivery="auto", **overrides)
    assert not broker.supports_delay
    # the connect-time probe found that delays are ignored: refusing beats silent early delivery
    with pytest.raises(BrokerError, match="cannot delay delivery"):
        await broker.publish(unique("delay"), b"x", delay=1.0)
    with pytest.raises(BrokerError, match="delivers delayed messages at once"):
        await broker.publish(unique("delay"), b"x", deliver_at=datetime.now(UTC))


@pytest.mark.parametrize("how", ["deliver_after", "deliver_at"])
async def test_delayed_delivery(
    pulsar_factory: Factory, pulsar_server: EmbeddedBroker, how: str
) -> None:
    broker = await pulsar_factory(delayed_delivery="on")
    topic = unique("delayed")
    loop = asyncio.get_running_loop()
    got = await collect(broker, topic)
    await asyncio.sleep(0.1)
    sent_at = loop.time()
    if how == "deliver_after":
        await broker.publish(topic, b"later", delay=1.5)
    else:
        await broker.publish(
            topic, b"later", deliver_at=datetime.now(UTC) + timedelta(seconds=1.5)
        )
    await eventually(lambda: len(got) == 1)
    waited = loop.time() - sent_at
    if waited < 1.0:
        pulsar_lite_lacks(pulsar_server, NO_DELAYED_DELIVERY)
    assert waited >= 1.4


async def test_producers_are_cached_per_topic(pulsar_factory: Factory) -> None:
    broker = await pulsar_factory()
    first, second = unique("cache-a"), unique("cache-b")
    await asyncio.gather(*(broker.publish(first, {"n": n}) for n in range(10)))
    for n in range(10):
        await broker.publish(second, {"n": n})
    assert broker._producers is not None
    assert sorted(broker._producers.topics) == sorted(broker.names.full(t) for t in (first, second))


async def test_close_flushes_what_was_queued(pulsar_factory: Factory) -> None:
    reader = await pulsar_factory()
    topic = unique("flush")
    got = await collect(reader, topic)
    writer = await pulsar_factory(batching_max_delay_ms=1000, batching_max_messages=1000)
    for n in range(200):  # queued, not awaited: they sit in a batch that is not yet full
        await writer.publish_nowait(topic, {"n": n})
    await writer.close(timeout=10)
    await eventually(lambda: len(got) == 200)


async def test_a_long_batch_moves_through_the_send_window_in_groups(
    pulsar_factory: Factory,
) -> None:
    broker = await pulsar_factory(max_pending_messages=100)  # groups of 25, 4 in flight
    topic = unique("long-batch")
    got = await collect(broker, topic)
    await broker.publish_batch(topic, [{"n": n} for n in range(1000)])
    await eventually(lambda: len(got) == 1000, timeout=30)
    assert sorted(json.loads(msg)["n"] for msg, _ in got) == list(range(1000))


async def test_a_refused_message_in_a_batch_fails_the_batch(pulsar_factory: Factory) -> None:
    broker = await pulsar_factory(batching=False)
    topic = unique("too-big")
    too_big = b"x" * (6 * 1024 * 1024)  # over the 5 MB message size limit
    with pytest.raises(BrokerError, match="1 of 3 messages were not accepted"):
        await broker.publish_batch(topic, [b"small", too_big, b"small"])
    with pytest.raises(BrokerError):
        await broker.publish(topic, too_big)
