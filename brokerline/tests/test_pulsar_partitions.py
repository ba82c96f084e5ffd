"""Partitioned topics on Apache Pulsar: routing by key, reading every partition, per-key order
across consumers, retries and dead letters.

Apache Pulsar only: pulsar-lite 0.2.0 has no admin API to create a partitioned topic, so these
tests are parametrized over `apache-pulsar` alone (not collected for pulsar-lite). Each test
makes its own 4-partition topic through the admin API on the session's standalone.
"""

from __future__ import annotations

import asyncio
import re
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import pytest_asyncio
from pydantic import ValidationError

from brokerline.core import (
    DLQ_ORIGINAL_TOPIC,
    Backoff,
    MessageContext,
    SubscribeOptions,
    SubscriptionType,
)
from brokerline.pulsar.broker import PulsarBroker
from brokerline.pulsar.consumer import PulsarSubscribeOptions
from brokerline.pulsar.routing import HASHES, java_string_hash, murmur3_32, murmur3_32_hash
from brokerline.pulsar.settings import PulsarSettings
from brokerline.testing.apache_pulsar import ApachePulsarServer, admin, topic_path
from brokerline.testing.brokers import APACHE_PULSAR, connected_brokers, eventually, unique

PARTITIONS = 4
FAST = Backoff(initial=0.05, multiplier=2.0, maximum=0.5)
#: Failover hands a partition to its new active consumer after this long (the broker's
#: activeConsumerFailoverDelayTimeMillis, 1 s by default)
FAILOVER_SETTLES = 1.5

Factory = Callable[..., Awaitable[PulsarBroker]]


@pytest.fixture(params=[APACHE_PULSAR])
def server(request: pytest.FixtureRequest) -> ApachePulsarServer:
    """The session's Apache Pulsar (the test id says `apache-pulsar`)."""
    return request.getfixturevalue("apache_pulsar_server")  # type: ignore[no-any-return]


@pytest_asyncio.fixture
async def factory(server: ApachePulsarServer) -> AsyncIterator[Factory]:
    def make(**overrides: Any) -> PulsarBroker:
        fields: dict[str, Any] = {"service_urls": [server.url], "operation_timeout": 10}
        fields.update(overrides)
        return PulsarBroker(PulsarSettings.model_validate(fields))

    async with connected_brokers(make) as connect:
        yield connect


def partitioned_topic(server: ApachePulsarServer, name: str) -> str:
    topic = f"persistent://public/default/{unique(name)}"
    admin(server, "PUT", f"{topic_path(topic)}/partitions", PARTITIONS)
    return topic


def partition_of(ctx: MessageContext) -> int:
    """The partition index: the third field of a message id `(ledger,entry,partition,batch)`."""
    return int(ctx.message_id.strip("()").split(",")[2])


def stored_per_partition(server: ApachePulsarServer, topic: str) -> list[int]:
    stats = admin(server, "GET", f"{topic_path(topic)}/partitioned-stats?perPartition=true")
    return [
        stats["partitions"][f"{topic}-partition-{index}"]["msgInCounter"]
        for index in range(PARTITIONS)
    ]


def topics_named_after(server: ApachePulsarServer, topic: str) -> list[str]:
    return [
        name for name in admin(server, "GET", "namespaces/public/default/topics")
        if name.startswith(topic)
    ]


@pytest.mark.parametrize("hashing", ["client", "java_string", "murmur3_32"])
async def test_a_key_stays_on_one_partition_and_many_keys_reach_every_partition(
    server: ApachePulsarServer, factory: Factory, hashing: str
) -> None:
    topic = partitioned_topic(server, "by-key")
    keys = [f"customer-{n}" for n in range(40)]
    publisher = await factory(partition_key_hashing=hashing)
    for round_ in range(3):
        for key in keys:
            await publisher.publish(topic, {"round": round_}, key=key)
    seen: list[MessageContext] = []

    async def handler(msg: dict[str, int], ctx: MessageContext) -> None:
        seen.append(ctx)

    consumer = await factory()
    await consumer.subscribe(topic, handler, group=unique("g"))  # the base name: all partitions
    await eventually(lambda: len(seen) == 3 * len(keys), timeout=20)
    assert {ctx.topic for ctx in seen} == {topic}  # the base topic, not a partition name
    partitions_of_key: dict[str | None, set[int]] = defaultdict(set)
    for ctx in seen:
        partitions_of_key[ctx.key].add(partition_of(ctx))
    assert all(len(found) == 1 for found in partitions_of_key.values()), partitions_of_key
    if hashing != "client":  # the Java client's scheme: the partition is known in advance
        make_hash = HASHES[hashing]
        assert {key: found.pop() for key, found in partitions_of_key.items()} == {
            key: make_hash(key) % PARTITIONS for key in keys
        }
    stored = stored_per_partition(server, topic)
    assert sum(stored) == 3 * len(keys)
    assert all(count > 0 for count in stored), f"a partition got no key: {stored}"


@pytest.mark.parametrize("hashing", ["client", "murmur3_32"])
async def test_messages_without_a_key_follow_the_routing_mode(
    server: ApachePulsarServer, factory: Factory, hashing: str
) -> None:
    spread, single = partitioned_topic(server, "round-robin"), partitioned_topic(server, "single")
    round_robin = await factory(partition_key_hashing=hashing)
    one_partition = await factory(
        partition_key_hashing=hashing, partition_routing="single_partition"
    )
    for n in range(40):
        await round_robin.publish(spread, {"n": n})
        await one_partition.publish(single, {"n": n})
    spread_counts = stored_per_partition(server, spread)
    assert all(count > 0 for count in spread_counts), spread_counts
    assert sorted(stored_per_partition(server, single)) == [0, 0, 0, 40]


@pytest.mark.parametrize(
    "subscription_type", [SubscriptionType.FAILOVER, SubscriptionType.KEY_SHARED]
)
async def test_per_key_order_is_kept_across_two_consumers(
    server: ApachePulsarServer, factory: Factory, subscription_type: SubscriptionType
) -> None:
    topic, group = partitioned_topic(server, "ordered"), unique("g")
    options = SubscribeOptions(subscription_type=subscription_type, concurrency=4)
    got: list[list[tuple[str, int]]] = [[], []]

    def recorder(into: list[tuple[str, int]]):  # type: ignore[no-untyped-def]
        async def handler(msg: dict[str, int], ctx: MessageContext) -> None:
            await asyncio.sleep(0.001 * (msg["n"] % 3))  # uneven handling: reordering shows
            assert ctx.key is not None
            into.append((ctx.key, msg["n"]))

        return handler

    for into in got:
        consumer = await factory()
        await consumer.subscribe(topic, recorder(into), group=group, options=options)
    if subscription_type is SubscriptionType.FAILOVER:
        await asyncio.sleep(FAILOVER_SETTLES)  # the second consumer takes its partitions
    # key_based batching: a batch of mixed keys would go to one Key_Shared consumer whole
    publisher = await factory(batching_type="key_based")
    keys = [f"k{n}" for n in range(20)]
    for n in range(10):
        await asyncio.gather(*(publisher.publish(topic, {"n": n}, key=key) for key in keys))
    await eventually(lambda: len(got[0]) + len(got[1]) == 10 * len(keys), timeout=20)
    assert got[0] and got[1], "one consumer got every message"
    keys_of = [{key for key, _n in into} for into in got]
    assert not keys_of[0] & keys_of[1], f"keys reached both consumers: {keys_of[0] & keys_of[1]}"
    for into in got:
        order: dict[str, list[int]] = defaultdict(list)
        for key, n in into:
            order[key].append(n)
        assert all(ns == list(range(10)) for ns in order.values()), order


@pytest.mark.parametrize("retry_letter_topic", [False, True], ids=["nack", "retry-letter"])
async def test_retries_and_dead_letters_are_named_after_the_partitioned_topic(
    server: ApachePulsarServer, factory: Factory, retry_letter_topic: bool
) -> None:
    topic, group = partitioned_topic(server, "failing"), unique("g")
    attempts: dict[str, list[MessageContext]] = defaultdict(list)

    async def handler(msg: dict[str, str], ctx: MessageContext) -> None:
        attempts[msg["id"]].append(ctx)
        if msg["id"].startswith("poison") or len(attempts[msg["id"]]) == 1:
            raise RuntimeError("fails")  # poison: always; the others: on the first delivery

    dead: list[tuple[dict[str, str], MessageContext]] = []

    async def dead_letters(msg: dict[str, str], ctx: MessageContext) -> None:
        dead.append((msg, ctx))

    consumer = await factory()
    options = SubscribeOptions(max_deliveries=3, backoff=FAST)
    extras = PulsarSubscribeOptions(retry_letter_topic=retry_letter_topic)
    await consumer.subscribe(topic, handler, group=group, options=options, pulsar_options=extras)
    dlq = f"{topic}-{group}-DLQ"
    await consumer.subscribe(dlq, dead_letters, group=unique("dlq"))
    publisher = await factory()
    ids = [f"ok-{n}" for n in range(8)] + [f"poison-{n}" for n in range(4)]
    for n, message_id in enumerate(ids):
        await publisher.publish(topic, {"id": message_id}, key=f"key-{n}")  # all partitions
    await eventually(lambda: len(dead) == 4 and all(
        len(attempts[m]) == 2 for m in ids if m.startswith("ok")
    ), timeout=30)
    assert sorted(msg["id"] for msg, _ctx in dead) == [f"poison-{n}" for n in range(4)]
    assert {ctx.headers[DLQ_ORIGINAL_TOPIC] for _msg, ctx in dead} == {topic}
    assert all(len(attempts[f"poison-{n}"]) == 3 for n in range(4))
    for message_id in ids:
        first, *later = attempts[message_id]
        assert first.topic == topic and first.redelivery_count == 0
        assert [ctx.redelivery_count for ctx in later] == list(range(1, len(later) + 1))
        assert all(ctx.topic == topic for ctx in later)
    # retry and dead-letter topics are the base topic's, never a partition's
    partition_named = re.compile(r"-partition-\d+-")
    created = topics_named_after(server, topic)
    assert not [name for name in created if partition_named.search(name)], created
    assert f"{topic}-{group}-DLQ" in created
    assert (f"{topic}-{group}-RETRY" in created) == retry_letter_topic
    partitions_used = {partition_of(attempts[m][0]) for m in ids}
    assert len(partitions_used) > 1, "the test should read several partitions"


def test_the_java_client_hashes_give_the_java_values() -> None:
    """Known values: MurmurHash3 x86_32's published test vectors, Java's String.hashCode()."""
    assert murmur3_32(b"") == 0
    assert murmur3_32(b"", seed=1) == 0x514E28B7
    assert murmur3_32(b"hello") == 0x248BFA47
    assert murmur3_32(b"The quick brown fox jumps over the lazy dog") == 0x2E4FF723
    assert java_string_hash("hello") == 99162322  # "hello".hashCode()
    assert java_string_hash("polygenelubricants") == 0  # hashCode() is Integer.MIN_VALUE
    assert java_string_hash("\N{GRINNING FACE}") == 0xD83D * 31 + 0xDE00  # UTF-16 units
    assert murmur3_32_hash("hello") == 0x248BFA47 & 0x7FFFFFFF


def test_an_unknown_routing_mode_is_refused_naming_the_accepted_ones() -> None:
    with pytest.raises(ValidationError, match="round_robin"):
        PulsarSettings(partition_routing="sticky")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="murmur3_32"):
        PulsarSettings(partition_key_hashing="crc32")  # type: ignore[arg-type]
