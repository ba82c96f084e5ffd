"""Batch subscribers beyond the conformance suite, on the memory broker: what a handler can
get wrong (its annotation, its BatchResult) and the error a plugin without batches gives."""

from __future__ import annotations

from collections import Counter

import pytest

from brokerline.core import (
    DLQ_REASON,
    Backoff,
    BatchContext,
    BatchOptions,
    BatchResult,
    BrokerError,
    MessageContext,
    SubscribeOptions,
)
from brokerline.core.base import Broker
from brokerline.memory.broker import MemoryBroker
from brokerline.server.broker import BrokerServer
from brokerline.testing import eventually, unique

FAST = SubscribeOptions(max_deliveries=2, backoff=Backoff(initial=0.01))


@pytest.fixture
async def broker() -> MemoryBroker:
    broker = MemoryBroker()
    await broker.connect()
    return broker


async def test_a_batch_handler_must_take_a_list(broker: MemoryBroker) -> None:
    async def handle(msg: dict[str, int], ctx: BatchContext) -> None: ...

    with pytest.raises(TypeError, match=r"annotate .*handle's first parameter as list\[T\]"):
        await broker.subscribe_batch(unique("t"), handle)  # type: ignore[arg-type]


async def test_a_result_naming_a_message_not_in_the_batch_fails_the_batch(
    broker: MemoryBroker,
) -> None:
    topic, group = unique("bad-result"), unique("g")
    dead: list[MessageContext] = []

    async def on_dead(msg: bytes, ctx: MessageContext) -> None:
        dead.append(ctx)

    await broker.subscribe(f"{topic}-{group}-DLQ", on_dead, group=unique("dlq"))
    calls: Counter[int] = Counter()

    async def handle(batch: list[bytes], ctx: BatchContext) -> BatchResult:
        calls[len(batch)] += 1
        return BatchResult(retry=[len(batch)])

    await broker.subscribe_batch(topic, handle, group=group, options=FAST,
                                 batch=BatchOptions(max_size=5, max_wait=0.01))
    await broker.publish(topic, b"x")
    await eventually(lambda: len(dead) == 1)
    await broker.close(timeout=5)
    assert calls == Counter({1: 2})  # max_deliveries 2, then dead-lettered with the reason
    assert "names message 1 of a batch of 1" in dead[0].headers[DLQ_REASON]


async def test_register_batch_subscribes_a_batch_handler(broker: MemoryBroker) -> None:
    topic = unique("served")
    got: list[list[int]] = []

    async def handle(batch: list[dict[str, int]], ctx: BatchContext) -> None:
        got.append([m["n"] for m in batch])

    server = BrokerServer(broker)
    server.register_batch(topic, handle, group=unique("g"),
                          batch=BatchOptions(max_size=10, max_wait=0.05))
    await server.start()
    await broker.publish_batch(topic, [{"n": n} for n in range(4)])
    await eventually(lambda: sum(map(len, got)) == 4)
    await server.stop(5)
    assert [n for batch in got for n in batch] == [0, 1, 2, 3]


async def test_a_plugin_without_batches_says_so() -> None:
    class Plain(MemoryBroker):
        """A plugin that has not implemented batches: the base class's subscribe_batch."""

        type_name = "plain"
        subscribe_batch = Broker.subscribe_batch  # type: ignore[assignment]

    broker = Plain()
    await broker.connect()

    async def handle(batch: list[bytes], ctx: BatchContext) -> None: ...

    with pytest.raises(BrokerError, match="the plain broker has no batch subscriber"):
        await broker.subscribe_batch(unique("t"), handle)


def test_batch_options_are_checked() -> None:
    with pytest.raises(ValueError, match="max_size must be at least 1"):
        BatchOptions(max_size=0)
    with pytest.raises(ValueError, match="max_wait must not be negative"):
        BatchOptions(max_wait=-1)


async def test_a_batch_failing_for_a_dependency_is_held_not_counted(broker: MemoryBroker) -> None:
    topic = unique("outage")
    calls: list[list[int]] = []
    down = True

    async def handle(batch: list[dict[str, int]], ctx: BatchContext) -> None:
        calls.append([m.redelivery_count for m in ctx.messages])
        if down:
            raise ConnectionRefusedError("the database does not answer")

    await broker.subscribe_batch(topic, handle, group=unique("g"), options=FAST,
                                 batch=BatchOptions(max_size=10, max_wait=0.05))
    await broker.publish_batch(topic, [{"n": 1}, {"n": 2}])
    await eventually(lambda: len(calls) >= 2)  # held and tried again, never redelivered
    assert broker.flows.paused(), "the subscription did not pause"
    down = False
    await eventually(lambda: not broker.flows.paused())
    await broker.close(timeout=5)
    assert all(counts == [0, 0] for counts in calls), calls  # never counted as deliveries
