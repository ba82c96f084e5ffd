"""The in-memory broker: for unit tests and the single-process `dev` mode.

It follows the same rules as the real plugins (groups, ack / retry with backoff / dead-letter,
delayed delivery) and passes the same conformance suite. A group's queue lives as long as the
broker, like a durable subscription: a consumer that leaves and comes back finds what was left.
Messages published to a topic with no group yet are dropped, as on NATS core.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from brokerline.core.base import (
    Broker,
    Delivery,
    Envelope,
    Handler,
    SubscribeOptions,
    Subscription,
    SubscriptionType,
)
from brokerline.core.batch import BatchHandler, BatchOptions, batch_loop
from brokerline.core.batch_dispatch import BatchDispatcher
from brokerline.core.consumer_loop import ConsumerLoop
from brokerline.core.dispatch import Dispatcher, Outcome
from brokerline.core.errors import BrokerError, BrokerUnavailable


@dataclass
class _Group:
    name: str
    queue: asyncio.Queue[Delivery]
    consumers: int = 0
    exclusive: bool = False


class MemorySubscription(Subscription):
    def __init__(
        self, broker: MemoryBroker, group: _Group, topic: str, loop: ConsumerLoop[Any],
        dispatcher: Dispatcher, batches: _GroupBatches | None = None,
    ) -> None:
        self.topic = topic
        self._batches = batches
        self._dispatcher = dispatcher
        self.group = group.name
        self._broker = broker
        self._group = group
        self._loop = loop
        self._closed = False

    async def close(self, timeout: float | None = None) -> None:
        if self._closed:
            return
        self._closed = True
        self._dispatcher.flow.release()  # held messages go back to the group's queue
        await self._loop.stop(timeout)
        if self._batches is not None:  # taken for a batch that never started: back in line
            for delivery in self._batches.taken():
                self._group.queue.put_nowait(delivery)
        self._group.consumers -= 1
        self._broker._subscriptions.discard(self)


class MemoryHub:
    """The broker's state: topics, groups and their queues.

    Several `MemoryBroker` connections share one hub the way several clients share one real
    broker (each connection has its own subscriptions and closes on its own).
    """

    def __init__(self) -> None:
        self.groups: dict[str, dict[str, _Group]] = {}
        self.ids = itertools.count(1)
        self.anonymous = itertools.count(1)
        #: delayed deliveries and redeliveries waiting out their delay: the hub's, like a
        #: server's, so they outlive the connection that scheduled them
        self.timers: set[asyncio.TimerHandle] = set()


class MemoryBroker(Broker):
    type_name = "memory"
    supports_delay = True

    def __init__(self, hub: MemoryHub | None = None) -> None:
        super().__init__()
        self.hub = hub or MemoryHub()
        self._subscriptions: set[MemorySubscription] = set()
        self._connected = False

    async def connect(self) -> None:
        self._connected = True

    async def close(self, timeout: float | None = None) -> None:
        await asyncio.gather(*(s.close(timeout) for s in list(self._subscriptions)))
        self._connected = False

    async def healthy(self) -> bool:
        return self._connected

    def _check_connected(self) -> None:
        if not self._connected:
            raise BrokerUnavailable("the memory broker is not connected; call connect() first")

    async def _send(self, envelope: Envelope) -> None:
        self._check_connected()
        delivery = Delivery(
            topic=envelope.topic,
            payload=envelope.payload,
            key=envelope.key,
            headers=dict(envelope.headers),
            message_id=str(next(self.hub.ids)),
            redelivery_count=0,
            publish_time=datetime.now(UTC),
        )
        for group in self.hub.groups.get(envelope.topic, {}).values():
            # one delivery per group: it becomes the handler's context, with its group set
            self._enqueue(group, replace(delivery), envelope.delay or 0.0)

    async def _send_batch(self, envelopes: Sequence[Envelope]) -> None:
        for envelope in envelopes:
            await self._send(envelope)

    def _enqueue(self, group: _Group, delivery: Delivery, delay: float) -> None:
        if delay <= 0:
            group.queue.put_nowait(delivery)
            return
        loop = asyncio.get_running_loop()

        def release() -> None:
            self.hub.timers.discard(timer)
            group.queue.put_nowait(delivery)

        timer = loop.call_later(delay, release)
        self.hub.timers.add(timer)

    async def subscribe(
        self,
        topic: str,
        handler: Handler,
        *,
        group: str | None = None,
        options: SubscribeOptions | None = None,
    ) -> Subscription:
        options = options or SubscribeOptions()
        state = self._join(topic, group, options)
        dispatcher = Dispatcher(
            topic, group, handler,
            options=options, codec=self.codec, middleware=self.middleware, send=self._send,
            flow=self.flows.new(f"subscription {topic} (group {state.name})"),
        )

        async def handle(delivery: Delivery) -> None:
            try:
                outcome = await dispatcher.process(delivery)
            except asyncio.CancelledError:  # stopped mid-handler: hand it back unharmed
                state.queue.put_nowait(delivery)
                raise
            if not outcome.acked:
                self._redeliver(state, delivery, outcome.delay)

        loop: ConsumerLoop[Delivery] = ConsumerLoop(
            state.queue.get, handle, concurrency=options.concurrency,
            name=f"memory:{topic}:{state.name}", flow=dispatcher.flow,
        )
        return self._started(MemorySubscription(self, state, topic, loop, dispatcher))

    async def subscribe_batch(
        self,
        topic: str,
        handler: BatchHandler,
        *,
        group: str | None = None,
        options: SubscribeOptions | None = None,
        batch: BatchOptions | None = None,
    ) -> Subscription:
        options = options or SubscribeOptions()
        state = self._join(topic, group, options)
        dispatcher = BatchDispatcher(
            topic, group, handler,
            options=options, codec=self.codec, middleware=self.middleware, send=self._send,
            flow=self.flows.new(f"subscription {topic} (group {state.name})"),
        )
        source = _GroupBatches(self, state)
        loop = batch_loop(
            source, dispatcher, batch or BatchOptions(), concurrency=options.concurrency,
            name=f"memory:{topic}:{state.name}",
        )
        return self._started(MemorySubscription(self, state, topic, loop, dispatcher, source))

    def _join(self, topic: str, group: str | None, options: SubscribeOptions) -> _Group:
        """The group's state (created on first use); refuses a second exclusive consumer."""
        self._check_connected()
        name = group or f"anonymous-{next(self.hub.anonymous)}"
        groups = self.hub.groups.setdefault(topic, {})
        state = groups.get(name)
        if state is None:
            state = groups[name] = _Group(name, asyncio.Queue())
        exclusive = options.subscription_type is SubscriptionType.EXCLUSIVE
        if state.consumers and (exclusive or state.exclusive):
            raise BrokerError(
                f"group {name!r} on {topic!r} is exclusive and already has a consumer; "
                "use another group or a shared subscription type"
            )
        state.exclusive = exclusive
        return state

    def _started(self, subscription: MemorySubscription) -> MemorySubscription:
        subscription._group.consumers += 1
        self._subscriptions.add(subscription)
        subscription._loop.start()
        return subscription

    def _redeliver(self, group: _Group, delivery: Delivery, delay: float) -> None:
        redelivery = replace(delivery, redelivery_count=delivery.redelivery_count + 1)
        self._enqueue(group, redelivery, delay)


class _GroupBatches:
    """A batch subscription's source (`BatchSource`): the group's queue, which the group's
    other consumers share."""

    def __init__(self, broker: MemoryBroker, group: _Group) -> None:
        self._broker = broker
        self._group = group
        self._carried: list[Delivery] = []  # taken by a receive that was cancelled

    async def receive(self, max_size: int, max_wait: float) -> list[Delivery]:
        queue = self._group.queue
        batch, self._carried = self._carried[:max_size], self._carried[max_size:]
        try:
            if not batch:
                batch.append(await queue.get())
            deadline = asyncio.get_running_loop().time() + max_wait
            while len(batch) < max_size:
                if not queue.empty():
                    batch.append(queue.get_nowait())
                    continue
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout_at(deadline):
                        batch.append(await queue.get())
                        continue
                break
        except asyncio.CancelledError:
            self._carried.extend(batch)
            raise
        return batch

    def taken(self) -> list[Delivery]:
        """What a cancelled receive took and no handler got (for close)."""
        taken, self._carried = self._carried, []
        return taken

    def delivery(self, message: Delivery) -> Delivery:
        return message

    async def settle(self, messages: Sequence[Delivery], outcomes: Sequence[Outcome]) -> None:
        for message, outcome in zip(messages, outcomes, strict=True):
            if not outcome.acked:
                self._broker._redeliver(self._group, message, outcome.delay)

    async def give_back(self, messages: Sequence[Delivery]) -> None:
        for message in messages:
            self._group.queue.put_nowait(message)
