"""Cumulative acknowledgement on pulsar-lite and Apache Pulsar (`pulsar_factory`, no mocks).

Each test ends its first consumer and reads the subscription again with a fresh one: what the
broker redelivers then is exactly what the cumulative acks left unacknowledged.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from brokerline.core import (
    Backoff,
    BatchContext,
    BrokerError,
    MessageContext,
    SubscribeOptions,
)
from brokerline.core import SubscriptionType as Type
from brokerline.pulsar.broker import PulsarBroker
from brokerline.pulsar.consumer import PulsarSubscribeOptions
from brokerline.testing.brokers import APACHE_PULSAR, eventually, unique

Factory = Callable[..., Awaitable[PulsarBroker]]

FAST = Backoff(initial=0.05, multiplier=2.0, maximum=0.2)


async def redelivered(broker: PulsarBroker, topic: str, group: str, kind: Type) -> list[int]:
    """What a fresh consumer of `group` gets: the unacknowledged messages, then a marker."""
    seen: list[int] = []

    async def record(msg: dict[str, int], ctx: MessageContext) -> None:
        seen.append(msg["n"])

    await broker.subscribe(
        topic, record, group=group, options=SubscribeOptions(subscription_type=kind)
    )
    await broker.publish(topic, {"n": -1})  # behind everything redelivered
    await eventually(lambda: -1 in seen)
    return sorted(n for n in seen if n != -1)


@pytest.mark.parametrize("kind", [Type.SHARED, Type.KEY_SHARED])
async def test_cumulative_ack_is_refused_where_consumers_share_a_subscription(
    pulsar_factory: Factory, kind: Type
) -> None:
    broker = await pulsar_factory(cumulative_ack=True)
    with pytest.raises(BrokerError, match=f"cumulative_ack needs an exclusive or failover "
                       f"subscription, not {kind.value}"):
        await broker.subscribe(
            unique("cumulative"), _ignore, group=unique("g"),
            options=SubscribeOptions(subscription_type=kind),
        )


@pytest.mark.parametrize("kind", [Type.EXCLUSIVE, Type.FAILOVER])
async def test_handled_messages_are_acked_and_not_redelivered(
    pulsar_factory: Factory, kind: Type
) -> None:
    broker = await pulsar_factory(cumulative_ack=True)
    topic, group = unique("cumulative"), unique("g")
    handled: list[int] = []

    async def handle(msg: dict[str, int], ctx: MessageContext) -> None:
        await asyncio.sleep(0.01 * (msg["n"] % 3))  # out of order with concurrency 4
        handled.append(msg["n"])

    options = SubscribeOptions(subscription_type=kind, concurrency=4, ordered=False)
    subscription = await broker.subscribe(topic, handle, group=group, options=options)
    for n in range(30):
        await broker.publish(topic, {"n": n})
    await eventually(lambda: len(handled) == 30)
    await subscription.close(timeout=5)
    assert await redelivered(await pulsar_factory(), topic, group, kind) == []


async def test_no_cumulative_ack_passes_a_message_still_being_handled(
    pulsar_factory: Factory,
) -> None:
    broker = await pulsar_factory()
    topic, group = unique("cumulative"), unique("g")
    handled: list[int] = []

    async def handle(msg: dict[str, int], ctx: MessageContext) -> None:
        if msg["n"] == 2:
            await asyncio.Event().wait()  # never finishes: cancelled when the consumer closes
        handled.append(msg["n"])

    options = SubscribeOptions(subscription_type=Type.EXCLUSIVE, concurrency=4, ordered=False)
    subscription = await broker.subscribe(
        topic, handle, group=group, options=options,
        pulsar_options=PulsarSubscribeOptions(cumulative_ack=True),  # per subscription
    )
    for n in range(10):
        await broker.publish(topic, {"n": n})
    await eventually(lambda: len(handled) == 9)
    await subscription.close(timeout=1)
    # 0 and 1 were acked; 2 never finished, so neither it nor the handled 3..9 behind it were
    again = await redelivered(await pulsar_factory(), topic, group, Type.EXCLUSIVE)
    assert again == list(range(2, 10))


# pulsar-lite ignores the redelivery request a negative ack sends on an exclusive or failover
# subscription (the client asks for every unacknowledged message, without ids): the failed
# message would only come back after a reconnect
@pytest.mark.parametrize("pulsar_server", [APACHE_PULSAR], indirect=True)
async def test_a_failed_message_holds_the_frontier_until_its_retry_is_handled(
    pulsar_factory: Factory,
) -> None:
    broker = await pulsar_factory(cumulative_ack=True)
    topic, group = unique("cumulative"), unique("g")
    handled: list[int] = []
    failures: list[int] = []

    async def handle(msg: dict[str, int], ctx: MessageContext) -> None:
        if msg["n"] == 3 and not failures:
            failures.append(msg["n"])
            raise RuntimeError("not yet")
        handled.append(msg["n"])

    options = SubscribeOptions(
        subscription_type=Type.FAILOVER, concurrency=4, ordered=False, backoff=FAST
    )
    subscription = await broker.subscribe(topic, handle, group=group, options=options)
    for n in range(10):
        await broker.publish(topic, {"n": n})
    await eventually(lambda: set(handled) == set(range(10)))
    await asyncio.sleep(0.3)  # the last cumulative ack leaves the client
    await subscription.close(timeout=5)
    assert failures == [3]
    assert await redelivered(await pulsar_factory(), topic, group, Type.FAILOVER) == []


async def _ignore(msg: bytes, ctx: MessageContext) -> None:
    del msg, ctx


async def test_a_batch_subscription_acks_each_message_whatever_the_broker_setting(
    pulsar_factory: Factory,
) -> None:
    """broker.pulsar.cumulative_ack is for single-message subscriptions; asking for it on a
    batch subscription is refused (a BatchResult may retry any message of a batch)."""
    broker = await pulsar_factory(cumulative_ack=True)
    topic, group = unique("batch-acks"), unique("g")
    handled: list[int] = []

    async def handle(batch: list[dict[str, int]], ctx: BatchContext) -> None:
        handled.extend(m["n"] for m in batch)

    options = SubscribeOptions(subscription_type=Type.EXCLUSIVE)
    subscription = await broker.subscribe_batch(topic, handle, group=group, options=options)
    for n in range(5):
        await broker.publish(topic, {"n": n})
    await eventually(lambda: sorted(handled) == [0, 1, 2, 3, 4], timeout=20)
    await subscription.close(timeout=5)
    assert await redelivered(await pulsar_factory(), topic, group, Type.EXCLUSIVE) == []
    with pytest.raises(BrokerError, match="a Pulsar batch subscription acks each message"):
        await broker.subscribe_batch(
            unique("batch-acks"), handle, group=unique("g"), options=options,
            pulsar_options=PulsarSubscribeOptions(cumulative_ack=True),
        )
