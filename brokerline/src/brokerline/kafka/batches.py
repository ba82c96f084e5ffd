"""Batch subscriptions on Kafka: the same consumer, fetching, commits and rebalances as a
single-handler subscription (`consumer.KafkaSubscription`), with batches handed to the core's
`batch_loop` instead of records to handlers one by one.

Fetched records go into a `BatchBuffer`; a batch is up to `max_size` of them, or what was
fetched within `max_wait`, across partitions, in fetch order. Settlement is per record: acked
and dead-lettered ones become committable (once every earlier record of their partition is);
a record to retry waits its delay here and joins a later batch with its delivery count one
higher, its offset uncommitted meanwhile, so a crash or rebalance hands it to the next owner.
A retried record goes behind the records fetched after it, as on the other plugins.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence

from brokerline.core.base import Delivery, SubscribeOptions, Subscription
from brokerline.core.batch import BatchBuffer, BatchOptions, batch_loop
from brokerline.core.batch_dispatch import BatchDispatcher
from brokerline.core.dispatch import Outcome
from brokerline.kafka.consumer import Fetched, KafkaSubscription, to_delivery
from brokerline.kafka.settings import KafkaSettings


class KafkaBatchSubscription(KafkaSubscription):
    def __init__(
        self, topic: str, group: str | None, dispatcher: BatchDispatcher,
        options: SubscribeOptions, batch: BatchOptions, settings: KafkaSettings,
        on_close: Callable[[Subscription], None],
    ) -> None:
        super().__init__(topic, group, dispatcher, options, settings, on_close)
        self._buffer: BatchBuffer[Fetched] = BatchBuffer()
        self._retries: set[asyncio.Task[None]] = set()
        # room for every batch in flight and the next one filling
        self._prefetch = max(self._prefetch, batch.max_size * (options.concurrency + 1))
        self._workers = batch_loop(  # type: ignore[assignment]
            _Batches(self), dispatcher, batch, concurrency=options.concurrency,
            name=f"kafka-batch:{topic}:{group or '-'}",
        )

    def _hand_over(self, item: Fetched) -> None:
        self._buffer.put(item)

    def current(self, item: Fetched) -> bool:
        """Whether the record may still be handled here (its partition is still ours)."""
        return not (item.progress.revoked or self._stopping.is_set())

    def retry_later(self, item: Fetched, delay: float) -> None:
        task = asyncio.create_task(self._retry(item, delay), name=f"kafka-retry:{self.topic}")
        self._retries.add(task)
        task.add_done_callback(self._retries.discard)

    async def _retry(self, item: Fetched, delay: float) -> None:
        if delay > 0:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._stopping.wait()
        if self.current(item):  # else it stays uncommitted: the next owner handles it
            item.redeliveries += 1
            self._buffer.put(item)

    async def close(self, timeout: float | None = None) -> None:
        for task in list(self._retries):
            task.cancel()
        await super().close(timeout)


class _Batches:
    """The `BatchSource` of a Kafka batch subscription."""

    def __init__(self, subscription: KafkaBatchSubscription) -> None:
        self._subscription = subscription

    async def receive(self, max_size: int, max_wait: float) -> list[Fetched]:
        while True:
            taken = await self._subscription._buffer.receive(max_size, max_wait)
            # a revoked partition's records are dropped unhandled (still uncommitted)
            batch = [item for item in taken if self._subscription.current(item)]
            for item in batch:
                item.progress.started(item.record.offset)
            if batch:
                return batch

    def delivery(self, message: Fetched) -> Delivery:
        return to_delivery(message.record, message.redeliveries)

    async def settle(self, messages: Sequence[Fetched], outcomes: Sequence[Outcome]) -> None:
        subscription = self._subscription
        for item, outcome in zip(messages, outcomes, strict=True):
            if outcome.acked:  # acked or dead-lettered: committable
                subscription.settle(item)
            else:
                item.progress.abandoned(item.record.offset)  # unsettled while it waits
                subscription.retry_later(item, outcome.delay)
        subscription._room.set()

    async def give_back(self, messages: Sequence[Fetched]) -> None:
        for item in messages:  # unsettled: the next start or owner gets them
            item.progress.abandoned(item.record.offset)
        self._subscription._room.set()
