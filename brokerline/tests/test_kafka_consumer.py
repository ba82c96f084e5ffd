"""The Kafka consumer on Apache Kafka: commits after settlement, order, retries, rebalances.

Each test counts: a message is lost if no handler ever acked it, and handled twice if two
handler calls acked it.
"""

from __future__ import annotations

import asyncio
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable

from brokerline.core import (
    DLQ_DELIVERIES,
    DLQ_ORIGINAL_TOPIC,
    DLQ_REASON,
    Backoff,
    MessageContext,
    SubscribeOptions,
)
from brokerline.kafka.broker import KafkaBroker
from brokerline.kafka.offsets import position
from brokerline.testing.brokers import eventually, unique

Factory = Callable[..., Awaitable[KafkaBroker]]


async def test_an_offset_is_committed_only_when_every_earlier_message_settled(
    kafka_factory: Factory,
) -> None:
    """Messages settle out of order (concurrency 4); one hangs when the consumer closes:
    a new consumer of the group gets it and everything after it, and nothing before it."""
    topic, group = unique("settle"), unique("g")
    publisher = await kafka_factory(topic_partitions=1)
    first = await kafka_factory(topic_partitions=1)
    acked_first: list[int] = []
    hang = asyncio.Event()

    async def slow_at_ten(msg: dict[str, int], ctx: MessageContext) -> None:
        if msg["n"] == 10:
            await hang.wait()  # never set: the consumer closes while this is in flight
        acked_first.append(msg["n"])

    options = SubscribeOptions(concurrency=4, ordered=False)
    await first.subscribe(topic, slow_at_ten, group=group, options=options)
    await publisher.publish_batch(topic, [{"n": n} for n in range(30)])
    await eventually(lambda: len(acked_first) >= 29, timeout=20)  # all but 10
    await asyncio.sleep(0.3)  # several commit intervals: the commit would pass 10 by now
    await first.close(timeout=0.5)  # gives up on 10 (cancelled, never settled)
    assert 10 not in acked_first

    second = await kafka_factory(topic_partitions=1)
    acked_second: list[int] = []

    async def record(msg: dict[str, int], ctx: MessageContext) -> None:
        acked_second.append(msg["n"])

    await second.subscribe(topic, record, group=group)
    await eventually(lambda: 29 in acked_second, timeout=20)
    assert min(acked_second) == 10, "an offset before the unsettled message came back"
    assert set(acked_first) | set(acked_second) == set(range(30)), "a message was lost"


async def test_partitions_run_concurrently_each_in_order(kafka_factory: Factory) -> None:
    broker = await kafka_factory(topic_partitions=3)
    topic = unique("partitions")
    active: Counter[int] = Counter()
    handled: dict[int, list[int]] = defaultdict(list)  # partition -> offsets in handling order
    overlap_across_partitions = False

    async def handler(msg: dict[str, int], ctx: MessageContext) -> None:
        nonlocal overlap_across_partitions
        partition = position(ctx.message_id)[1]
        assert active[partition] == 0, f"two keyless messages of partition {partition} at once"
        active[partition] += 1
        overlap_across_partitions |= sum(active.values()) > 1
        await asyncio.sleep(0.01)
        handled[partition].append(position(ctx.message_id)[2])
        active[partition] -= 1

    await broker.subscribe(topic, handler, group=unique("g"),
                           options=SubscribeOptions(concurrency=6))
    for n in range(90):  # keyless: the producer spreads them over the partitions
        await broker.publish(topic, {"n": n})
    await eventually(lambda: sum(map(len, handled.values())) == 90, timeout=30)
    assert len(handled) > 1, "every message went to one partition"
    for partition, offsets in handled.items():
        assert offsets == sorted(offsets), f"partition {partition} out of order"
    assert overlap_across_partitions, "partitions never ran concurrently"


async def test_retries_back_off_in_process_then_dead_letter_and_commit(
    kafka_factory: Factory,
) -> None:
    broker = await kafka_factory()
    topic, group = unique("retry"), unique("g")
    attempts: dict[str, list[int]] = defaultdict(list)
    dead: list[MessageContext] = []
    others: list[int] = []
    order: list[str] = []  # the kind of each handler call, in order

    async def on_dead(msg: bytes, ctx: MessageContext) -> None:
        dead.append(ctx)

    async def handler(msg: dict[str, object], ctx: MessageContext) -> None:
        kind = str(msg["kind"])
        order.append(kind)
        if kind == "other":
            others.append(int(str(msg["n"])))
            return
        attempts[kind].append(ctx.redelivery_count)
        if kind == "poison" or ctx.redelivery_count < 2:
            raise RuntimeError(f"{kind} failed")

    await broker.subscribe(f"{topic}-{group}-DLQ", on_dead, group=unique("dlq"))
    backoff = Backoff(initial=0.3, multiplier=1.5, maximum=0.6)  # the third try after >= 0.75 s
    options = SubscribeOptions(max_deliveries=4, backoff=backoff, concurrency=4)
    await broker.subscribe(topic, handler, group=group, options=options)
    await broker.publish(topic, {"kind": "flaky"}, key="a")
    await broker.publish(topic, {"kind": "poison"}, key="b")
    for n in range(20):
        await broker.publish(topic, {"kind": "other", "n": n}, key=f"o{n}")
    await eventually(lambda: len(dead) == 1 and len(attempts["flaky"]) == 3
                     and len(others) == 20, timeout=20)
    assert attempts["flaky"] == [0, 1, 2] and attempts["poison"] == [0, 1, 2, 3]
    last_flaky_try = len(order) - 1 - order[::-1].index("flaky")
    assert order.index("other") < last_flaky_try, "other keys waited for the retries"
    assert sorted(others) == list(range(20))
    ctx = dead[0]
    assert ctx.key == "b" and ctx.headers[DLQ_DELIVERIES] == "4"
    assert ctx.headers[DLQ_ORIGINAL_TOPIC] == topic
    assert "RuntimeError: poison failed" in ctx.headers[DLQ_REASON]

    # everything settled, so everything was committed: the group's next member gets nothing
    await asyncio.sleep(0.3)
    await broker.close(timeout=2)
    again: list[object] = []

    async def record(msg: dict[str, object], ctx: MessageContext) -> None:
        again.append(msg)

    late = await kafka_factory()
    await late.subscribe(topic, record, group=group)
    await late.publish(topic, {"kind": "marker"})
    await eventually(lambda: len(again) >= 1, timeout=20)
    await asyncio.sleep(0.3)
    assert again == [{"kind": "marker"}]


async def test_a_member_joining_and_leaving_mid_stream_loses_and_repeats_nothing(
    kafka_factory: Factory,
) -> None:
    """A second consumer joins the group mid-stream, then leaves: both rebalances let the
    revoked partitions' handlers finish and commit, so every message is acked exactly once."""
    topic, group = unique("rebalance"), unique("g")
    publisher = await kafka_factory(topic_partitions=6)
    acks: Counter[int] = Counter()
    by_member: Counter[str] = Counter()

    def handler_for(name: str) -> Callable[[dict[str, int], MessageContext], Awaitable[None]]:
        async def handler(msg: dict[str, int], ctx: MessageContext) -> None:
            await asyncio.sleep(0.002)
            acks[msg["n"]] += 1  # idempotent work: counted, so a repeat shows
            by_member[name] += 1

        return handler

    options = SubscribeOptions(concurrency=8)
    first = await kafka_factory(topic_partitions=6)
    await first.subscribe(topic, handler_for("first"), group=group, options=options)
    total = 1500

    async def produce() -> None:
        for start in range(0, total, 50):
            await publisher.publish_batch(topic, [{"n": n} for n in range(start, start + 50)])
            await asyncio.sleep(0.05)

    producing = asyncio.create_task(produce())
    await eventually(lambda: len(acks) >= 200, timeout=20)
    second = await kafka_factory(topic_partitions=6)
    await second.subscribe(topic, handler_for("second"), group=group, options=options)
    await eventually(lambda: by_member["second"] >= 50, timeout=20)
    await second.close(timeout=5)
    await producing
    await eventually(lambda: len(acks) == total, timeout=30)
    await asyncio.sleep(0.5)
    assert set(acks) == set(range(total)), "a message was lost"
    repeated = {n: c for n, c in acks.items() if c > 1}
    assert not repeated, f"{len(repeated)} messages were handled twice"
    assert by_member["first"] > 0 and by_member["second"] > 0
