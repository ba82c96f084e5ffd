"""The Kafka producer on Apache Kafka: keys pick partitions, headers, batches, compression."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from brokerline.core import MessageContext, SubscribeOptions
from brokerline.kafka.broker import KafkaBroker
from brokerline.kafka.offsets import position
from brokerline.testing.apache_kafka import ApacheKafkaServer
from brokerline.testing.brokers import eventually, unique

Factory = Callable[..., Awaitable[KafkaBroker]]


async def test_a_key_always_lands_on_one_partition_and_keeps_its_order(
    kafka_factory: Factory,
) -> None:
    broker = await kafka_factory(topic_partitions=4)
    topic = unique("keys")
    seen: dict[str, list[tuple[int, int]]] = defaultdict(list)  # key -> (partition, n)

    async def handler(msg: dict[str, int], ctx: MessageContext) -> None:
        seen[ctx.key or ""].append((position(ctx.message_id)[1], msg["n"]))

    await broker.subscribe(topic, handler, group=unique("g"),
                           options=SubscribeOptions(concurrency=8))
    keys = [f"user-{i}" for i in range(8)]
    await broker.publish_batch(topic, [{"n": n} for n in range(10)], key=keys[0])
    for n in range(80):
        await broker.publish(topic, {"n": n}, key=keys[n % 8])
    await eventually(lambda: sum(map(len, seen.values())) == 90, timeout=20)
    partitions_used = set()
    for key, entries in seen.items():
        assert len({p for p, _ in entries}) == 1, f"key {key} was spread over partitions"
        partitions_used.add(entries[0][0])
        if key != keys[0]:
            assert [n for _, n in entries] == sorted(n for _, n in entries), key
    assert len(partitions_used) > 1, "eight keys all hashed to one of four partitions"


async def test_headers_round_trip_with_unicode_and_content_type(kafka_factory: Factory) -> None:
    broker = await kafka_factory()
    topic = unique("headers")
    got: list[MessageContext] = []

    async def handler(msg: bytes, ctx: MessageContext) -> None:
        got.append(ctx)

    await broker.subscribe(topic, handler, group=unique("g"))
    headers = {"tenant": "Ümlaut-名前", "empty": "", "x-request-id": "r-1"}
    await broker.publish(topic, b"body", headers=headers)
    await eventually(lambda: len(got) == 1)
    ctx = got[0]
    assert {k: ctx.headers[k] for k in headers} == headers
    assert ctx.headers["content-type"] == "application/octet-stream"
    assert ctx.publish_time is not None and ctx.key is None


async def test_publish_batch_of_many_arrives_whole_and_in_partition_order(
    kafka_factory: Factory,
) -> None:
    broker = await kafka_factory(topic_partitions=1, linger_ms=20)
    topic = unique("batch")
    got: list[tuple[int, int]] = []  # (offset, n)

    async def handler(msg: dict[str, int], ctx: MessageContext) -> None:
        got.append((position(ctx.message_id)[2], msg["n"]))

    await broker.subscribe(topic, handler, group=unique("g"))
    await broker.publish_batch(topic, [{"n": n} for n in range(2000)])
    await eventually(lambda: len(got) == 2000, timeout=30)
    assert [n for _, n in sorted(got)] == list(range(2000))


def log_bytes(server: ApacheKafkaServer, topic: str) -> int:
    """The bytes of a topic's log segments on the broker's disk (one partition)."""
    return sum(p.stat().st_size for p in Path(server.store, "data", f"{topic}-0").glob("*.log"))


@pytest.mark.parametrize("codec", ["gzip", "snappy", "lz4", "zstd"])
async def test_compressed_batches_are_stored_smaller_and_read_back(
    kafka_factory: Factory, apache_kafka_server: ApacheKafkaServer, codec: str
) -> None:
    plain_broker = await kafka_factory(topic_partitions=1)
    packed_broker = await kafka_factory(topic_partitions=1, compression=codec)
    plain, packed = unique("plain"), unique(f"packed-{codec}")
    body = {"text": "the same sentence, again and again. " * 30}
    await plain_broker.publish_batch(plain, [body] * 200)
    await packed_broker.publish_batch(packed, [body] * 200)
    got: list[dict[str, str]] = []

    async def handler(msg: dict[str, str], ctx: MessageContext) -> None:
        got.append(msg)

    await packed_broker.subscribe(packed, handler, group=unique("g"))
    await eventually(lambda: len(got) == 200, timeout=20)
    assert all(msg == body for msg in got)
    await asyncio.sleep(0.2)
    assert log_bytes(apache_kafka_server, packed) * 5 < log_bytes(apache_kafka_server, plain)


async def test_the_producer_is_idempotent_with_acks_all(kafka_factory: Factory) -> None:
    broker = await kafka_factory()
    producer = broker._publisher.producer
    # what the broker needs for exactly-once stores of resent batches: a producer id
    await broker.publish(unique("idempotent"), b"x")
    assert producer._txn_manager is not None and producer._txn_manager.producer_id >= 0
