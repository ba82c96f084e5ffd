"""Batch subscriptions on Apache Kafka: the commit rule holds per record of a batch.

The batch semantics every plugin shares are in the conformance suite; these are Kafka's own:
a record retried out of a batch holds its partition's commit back until it settles, and a
retried record comes back in a later batch with its delivery count.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from brokerline.core import BatchContext, BatchOptions, BatchResult, MessageContext
from brokerline.core.base import Backoff, SubscribeOptions
from brokerline.kafka.broker import KafkaBroker
from brokerline.testing.brokers import eventually, unique

Factory = Callable[..., Awaitable[KafkaBroker]]
FAST = SubscribeOptions(max_deliveries=100, backoff=Backoff(initial=0.05, maximum=0.05))


async def test_a_record_retried_out_of_a_batch_holds_the_commit_back_until_it_settles(
    kafka_factory: Factory,
) -> None:
    """Record 10 is retried in every batch; the others are acked. Closed meanwhile, a new
    member of the group gets 10 and what follows it again, nothing before it."""
    topic, group = unique("batch-commit"), unique("g")
    publisher = await kafka_factory(topic_partitions=1)
    first = await kafka_factory(topic_partitions=1)
    acked_first: list[int] = []
    tries_of_ten: list[int] = []  # the delivery count each time 10 reached the handler

    async def retry_ten(batch: list[dict[str, int]], ctx: BatchContext) -> BatchResult:
        retry = []
        for index, (msg, message) in enumerate(zip(batch, ctx.messages, strict=True)):
            if msg["n"] == 10:
                tries_of_ten.append(message.redelivery_count)
                retry.append(index)
            else:
                acked_first.append(msg["n"])
        return BatchResult(retry=retry)

    await first.subscribe_batch(topic, retry_ten, group=group, options=FAST,
                                batch=BatchOptions(max_size=8, max_wait=0.05))
    await publisher.publish_batch(topic, [{"n": n} for n in range(30)])
    await eventually(lambda: len(acked_first) >= 29 and len(tries_of_ten) >= 3, timeout=20)
    assert tries_of_ten[:3] == [0, 1, 2]  # a later batch each time, its count one higher
    await asyncio.sleep(0.5)  # several commit intervals: a commit would pass 10 by now
    await first.close(timeout=2)

    second = await kafka_factory(topic_partitions=1)
    acked_second: list[int] = []

    async def record(msg: dict[str, int], ctx: MessageContext) -> None:
        acked_second.append(msg["n"])

    await second.subscribe(topic, record, group=group)
    await eventually(lambda: 29 in acked_second, timeout=20)
    assert min(acked_second) == 10, "an offset before the unsettled record came back"
    assert set(acked_first) | set(acked_second) == set(range(30)), "a record was lost"


async def test_a_batch_subscription_commits_what_it_acked(kafka_factory: Factory) -> None:
    """Everything acked in batches is committed: a new member of the group gets nothing."""
    topic, group = unique("batch-acked"), unique("g")
    broker = await kafka_factory(topic_partitions=3)
    got: list[int] = []
    sizes: list[int] = []

    async def take(batch: list[dict[str, int]], ctx: BatchContext) -> None:
        sizes.append(len(batch))
        got.extend(msg["n"] for msg in batch)

    subscription = await broker.subscribe_batch(topic, take, group=group,
                                                batch=BatchOptions(max_size=50, max_wait=0.1))
    await broker.publish_batch(topic, [{"n": n} for n in range(300)])
    await eventually(lambda: len(got) >= 300, timeout=20)
    assert sorted(got) == list(range(300)) and max(sizes) > 1
    await subscription.close(timeout=5)

    again: list[int] = []

    async def record(msg: dict[str, int], ctx: MessageContext) -> None:
        again.append(msg["n"])

    await broker.subscribe(topic, record, group=group)
    await broker.publish(topic, {"n": 300})
    await eventually(lambda: 300 in again, timeout=20)
    assert again == [300], f"acked records handled again: {again[:10]}"
