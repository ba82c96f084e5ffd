"""The batch-subscriber half of the conformance suite (`BrokerConformance` inherits it).

Every plugin's `subscribe_batch` must fill batches up to `max_size` or `max_wait`, decode by
the handler's annotation, dead-letter undecodable messages without handing them over, settle
each message by the handler's answer (None: all acked; raised: all redelivered, each with its
own delivery count; `BatchResult`: the named ones retried or rejected, the rest acked) and
drain the batch in flight on close.
"""

from __future__ import annotations

import asyncio
from collections import Counter

import pydantic
import pytest

from brokerline.core import (
    DLQ_REASON,
    BatchContext,
    BatchOptions,
    BatchResult,
    Broker,
    SubscribeOptions,
)
from brokerline.testing.brokers import (
    FAST,
    BrokerFactory,
    collect_dead_letters,
    eventually,
    unique,
)


class Reading(pydantic.BaseModel):
    n: int


class BatchConformance:
    """Batch-subscriber tests; see `BrokerConformance` for how a plugin runs them."""

    pytestmark = pytest.mark.asyncio

    async def test_batches_fill_up_to_max_size_with_decoded_messages(
        self, broker: Broker
    ) -> None:
        topic = unique("batches")
        batches: list[list[Reading]] = []
        contexts: list[BatchContext] = []

        async def handle(batch: list[Reading], ctx: BatchContext) -> None:
            batches.append(batch)
            contexts.append(ctx)

        await broker.subscribe_batch(
            topic, handle, group=unique("g"), batch=BatchOptions(max_size=10, max_wait=0.5)
        )
        await asyncio.sleep(0.2)
        await broker.publish_batch(topic, [Reading(n=n) for n in range(45)])
        await eventually(lambda: sum(map(len, batches)) >= 45, timeout=20)
        await asyncio.sleep(0.3)
        got = [r.n for batch in batches for r in batch]
        assert sorted(got) == list(range(45)), "a message was lost or handled twice"
        assert all(isinstance(r, Reading) for batch in batches for r in batch)
        assert max(map(len, batches)) <= 10, [len(b) for b in batches]
        assert any(len(b) > 1 for b in batches), "every batch held one message"
        for batch, ctx in zip(batches, contexts, strict=True):
            assert len(ctx.messages) == len(batch)
            assert ctx.topic.endswith(topic)
            assert all(m.message_id and m.redelivery_count == 0 for m in ctx.messages)

    async def test_a_partial_batch_is_handed_over_after_max_wait(self, broker: Broker) -> None:
        topic = unique("partial")
        batches: list[list[bytes]] = []

        async def handle(batch: list[bytes], ctx: BatchContext) -> None:
            batches.append(batch)

        await broker.subscribe_batch(
            topic, handle, group=unique("g"), batch=BatchOptions(max_size=1000, max_wait=0.2)
        )
        await asyncio.sleep(0.2)
        await broker.publish_batch(topic, [b"a", b"b", b"c"])
        await eventually(lambda: sum(map(len, batches)) == 3, timeout=5)
        assert sorted(m for batch in batches for m in batch) == [b"a", b"b", b"c"]

    async def test_batch_result_retries_and_rejects_some_and_acks_the_rest(
        self, broker: Broker
    ) -> None:
        topic, group = unique("partly"), unique("g")
        dead = await collect_dead_letters(broker, f"{topic}-{group}-DLQ")
        seen: Counter[int] = Counter()
        redelivered: list[int] = []

        async def handle(batch: list[dict[str, int]], ctx: BatchContext) -> BatchResult:
            retry, reject = [], {}
            for i, (msg, meta) in enumerate(zip(batch, ctx.messages, strict=True)):
                seen[msg["n"]] += 1
                if meta.redelivery_count:
                    redelivered.append(msg["n"])
                if msg["n"] == 1 and meta.redelivery_count == 0:
                    retry.append(i)
                if msg["n"] == 2:
                    reject[i] = "bad reading"
            return BatchResult(retry=retry, reject=reject)

        options = SubscribeOptions(backoff=FAST, ack_wait=2)
        await broker.subscribe_batch(
            topic, handle, group=group, options=options,
            batch=BatchOptions(max_size=10, max_wait=0.3),
        )
        await asyncio.sleep(0.2)
        # one publish each: on Pulsar, a message retried out of a producer batch brings the
        # batch's other messages back too (unless the broker acks batch indexes)
        for n in range(6):
            await broker.publish(topic, {"n": n})
        await eventually(lambda: seen[1] == 2 and len(dead) == 1, timeout=20)
        await asyncio.sleep(2.5)  # past ack_wait: an unacked message would have come back
        assert seen == Counter({0: 1, 1: 2, 2: 1, 3: 1, 4: 1, 5: 1})
        assert redelivered == [1]
        payload, ctx = dead[0]
        assert b'"n":2' in payload.replace(b" ", b"")
        assert ctx.headers[DLQ_REASON] == "rejected: bad reading"

    async def test_a_raising_batch_handler_redelivers_each_message_up_to_max_deliveries(
        self, broker: Broker
    ) -> None:
        topic, group = unique("failing"), unique("g")
        dead = await collect_dead_letters(broker, f"{topic}-{group}-DLQ")
        attempts: dict[int, list[int]] = {0: [], 1: []}

        async def handle(batch: list[dict[str, int]], ctx: BatchContext) -> None:
            for msg, meta in zip(batch, ctx.messages, strict=True):
                attempts[msg["n"]].append(meta.redelivery_count)
            raise ValueError("boom")

        options = SubscribeOptions(max_deliveries=3, backoff=FAST)
        await broker.subscribe_batch(
            topic, handle, group=group, options=options,
            batch=BatchOptions(max_size=10, max_wait=0.1),
        )
        await asyncio.sleep(0.2)
        await broker.publish_batch(topic, [{"n": 0}, {"n": 1}])
        await eventually(lambda: len(dead) == 2, timeout=20)
        await asyncio.sleep(0.5)
        assert attempts == {0: [0, 1, 2], 1: [0, 1, 2]}
        assert all("failed 3 times: ValueError: boom" in c.headers[DLQ_REASON] for _, c in dead)

    async def test_undecodable_messages_are_dead_lettered_and_never_reach_the_batch_handler(
        self, broker: Broker
    ) -> None:
        topic, group = unique("garbage-batch"), unique("g")
        dead = await collect_dead_letters(broker, f"{topic}-{group}-DLQ")
        handled: list[Reading] = []

        async def handle(batch: list[Reading], ctx: BatchContext) -> None:
            handled.extend(batch)

        await broker.subscribe_batch(
            topic, handle, group=group, options=SubscribeOptions(backoff=FAST),
            batch=BatchOptions(max_size=10, max_wait=0.2),
        )
        await asyncio.sleep(0.2)
        await broker.publish_batch(topic, [Reading(n=1), b"\xff not json", Reading(n=2)])
        await eventually(lambda: len(handled) == 2 and len(dead) == 1, timeout=20)
        await asyncio.sleep(0.5)
        assert [r.n for r in handled] == [1, 2]
        assert len(dead) == 1 and dead[0][0] == b"\xff not json"
        assert dead[0][1].headers[DLQ_REASON].startswith("decode error")

    async def test_close_waits_for_the_batch_in_flight(
        self, broker_factory: BrokerFactory
    ) -> None:
        topic, group = unique("batch-drain"), unique("g")
        consumer = await broker_factory()
        started, finished = asyncio.Event(), []

        async def slow(batch: list[bytes], ctx: BatchContext) -> None:
            started.set()
            await asyncio.sleep(0.5)
            finished.extend(batch)

        await consumer.subscribe_batch(
            topic, slow, group=group, batch=BatchOptions(max_size=5, max_wait=0.05)
        )
        publisher = await broker_factory()
        await asyncio.sleep(0.2)
        await publisher.publish(topic, b"in-flight")
        await asyncio.wait_for(started.wait(), 10)
        await consumer.close(timeout=5)
        assert finished == [b"in-flight"]
