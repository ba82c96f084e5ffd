"""A dependency that is down is not a message failure: on every broker, real ones included.

The handler fails with a transient error (the way a database driver does when its server is
gone) for longer than `max_deliveries` attempts. Nothing may be dead-lettered or counted as a
delivery; the subscription pauses (no new messages taken, readiness reports why), and resumes
by itself once the dependency answers.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from brokerline.core import (
    Backoff,
    Broker,
    MessageContext,
    SubscribeOptions,
    Transient,
)
from brokerline.testing.brokers import eventually, unique

FAST = Backoff(initial=0.05, multiplier=2.0, maximum=0.2)
#: brokers that keep a message a closing consumer handed back, for the next consumer
DURABLE = ("memory", "jetstream", "pulsar", "apache-pulsar", "kafka")


class Dependency:
    """A stand-in for a database: down until `up()`, failing the way a driver fails."""

    def __init__(self, error: Exception) -> None:
        self.error = error
        self.available = False

    def call(self) -> None:
        if not self.available:
            raise self.error


@pytest.mark.parametrize("error", [
    ConnectionRefusedError(111, "Connect call failed ('127.0.0.1', 5432)"),
    Transient("the inventory service is down"),
], ids=["connection-refused", "explicit-transient"])
async def test_dependency_down_pauses_and_resumes_without_spending_deliveries(
    broker: Broker, error: Exception
) -> None:
    topic, group = unique("flow"), unique("g")
    dependency = Dependency(error)
    attempts: list[tuple[bytes, int]] = []
    stored: list[tuple[bytes, int]] = []
    dead: list[bytes] = []

    async def on_dead(msg: bytes, ctx: MessageContext) -> None:
        dead.append(msg)

    async def handler(msg: bytes, ctx: MessageContext) -> None:
        attempts.append((msg, ctx.redelivery_count))
        dependency.call()
        stored.append((msg, ctx.redelivery_count))

    await broker.subscribe(f"{topic}-{group}-DLQ", on_dead, group=unique("dlq"))
    options = SubscribeOptions(max_deliveries=2, backoff=FAST, concurrency=1)
    await broker.subscribe(topic, handler, group=group, options=options)
    await asyncio.sleep(0.1)
    await broker.publish(topic, b"first")
    await broker.publish(topic, b"second")

    await eventually(lambda: len(attempts) >= 3)  # past max_deliveries
    paused = broker.flows.paused()
    assert len(paused) == 1, paused
    assert type(error).__name__ in next(iter(paused.values()))
    # paused: only the held message is tried; the next one is not taken meanwhile
    assert {msg for msg, _ in attempts} == {b"first"}
    assert {count for _, count in attempts} == {0}, "a hold was counted as a delivery"

    dependency.available = True
    await eventually(lambda: len(stored) == 2)
    assert stored == [(b"first", 0), (b"second", 0)]
    assert broker.flows.paused() == {}
    await asyncio.sleep(0.3)
    assert dead == []


async def test_closing_hands_held_messages_back_at_once(broker_factory, broker_type: str) -> None:  # type: ignore[no-untyped-def]
    if broker_type not in DURABLE:
        pytest.skip(f"{broker_type} cannot redeliver a message to another consumer (no store)")
    topic, group = unique("flow-close"), unique("g")
    dependency = Dependency(ConnectionResetError(104, "Connection reset by peer"))
    held = asyncio.Event()

    async def failing(msg: bytes, ctx: MessageContext) -> None:
        held.set()
        dependency.call()

    first = await broker_factory()
    # handing a message back is a redelivery on the broker (Pulsar's client-side dead-letter
    # backstop counts it): leave room for it
    options = SubscribeOptions(max_deliveries=5, backoff=FAST)
    await first.subscribe(topic, failing, group=group, options=options)
    publisher = await broker_factory()
    await asyncio.sleep(0.1)
    await publisher.publish(topic, b"held")
    await asyncio.wait_for(held.wait(), 10)
    started = time.monotonic()
    await first.close(timeout=20)
    assert time.monotonic() - started < 10, "close waited for the dependency"

    got: list[bytes] = []

    async def working(msg: bytes, ctx: MessageContext) -> None:
        got.append(msg)

    second = await broker_factory()
    await second.subscribe(topic, working, group=group, options=options)
    await eventually(lambda: got == [b"held"], timeout=30)
