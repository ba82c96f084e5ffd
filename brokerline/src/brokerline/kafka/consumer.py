"""A subscription: one AIOKafkaConsumer in the group, manual commits after the handlers.

- **At-least-once.** Auto-commit is off. A record's offset may be committed only when every
  earlier record of its partition is settled (acked or dead-lettered): `PartitionProgress`
  keeps the contiguous settled prefix; a committer task commits it at most every
  `commit_interval`, and once more on close and on revocation.
- **Order and concurrency.** Up to `concurrency` handlers run at once across all assigned
  partitions. With `ordered` (the default) records that share a key are handled one at a
  time in offset order, and so are the keyless records of one partition (a partition is their
  order); records of different keys run concurrently even within a partition, which the
  commit rule above makes safe.
- **Retries.** Kafka has no per-record redelivery, so a failed record is retried here, in
  this process, after the backoff, up to `max_deliveries`, then dead-lettered by the same
  Dispatcher as every plugin. Its offset is not committed meanwhile, so a crash or a
  rebalance hands it to the next owner (whose count starts again at 0): it is never lost.
  The alternative, republishing to a retry topic with a delivery-count header, commits the
  original after the republish and needs a second consumer per subscription; it keeps the
  count across crashes but loses the partition's order, and at-least-once needs both writes.
- **Rebalance.** When partitions are revoked, no new record of them starts; the handlers
  working on their records finish (up to `rebalance_timeout`), the settled prefix is
  committed, and records fetched but never started are left uncommitted for the next owner.
  So nothing is lost, and a record acked here is not handled again after a clean rebalance.
- **Flow.** While a dependency is down (flow paused) or `prefetch` records are in hand, the
  assigned partitions are paused but the consumer keeps polling, so it stays in the group.

Batch subscriptions (`batches.KafkaBatchSubscription`) share all of this: only how fetched
records reach the handler differs (`_hand_over`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import KafkaError

from brokerline.core.base import Delivery, InitialPosition, SubscribeOptions, Subscription
from brokerline.core.consumer_loop import ConsumerLoop
from brokerline.core.dispatch import Dispatcher
from brokerline.kafka.connection import (
    bootstrap_failures,
    client_keywords,
    connect_error,
    start_or_close,
    stop_client,
)
from brokerline.kafka.offsets import PartitionProgress, message_id
from brokerline.kafka.settings import KafkaSettings

log = logging.getLogger("broker.kafka")

#: seconds one poll waits for records (also how soon a paused subscription polls again)
POLL_WAIT = 0.5


@dataclass(slots=True)
class Fetched:
    """A record in hand, with the assignment of its partition it was fetched under."""

    record: ConsumerRecord[bytes, bytes]
    progress: PartitionProgress
    redeliveries: int = 0  # handled and retried here this many times (batch subscriptions)


def to_delivery(record: ConsumerRecord[bytes, bytes], redeliveries: int = 0) -> Delivery:
    headers = {name: value.decode("utf-8", "replace") for name, value in record.headers or ()}
    timestamp = record.timestamp
    return Delivery(
        topic=record.topic,
        payload=record.value if record.value is not None else b"",
        key=record.key.decode("utf-8", "replace") if record.key is not None else None,
        headers=headers,
        message_id=message_id(record.topic, record.partition, record.offset),
        redelivery_count=redeliveries,
        publish_time=datetime.fromtimestamp(timestamp / 1000, UTC) if timestamp >= 0 else None,
    )


def order_key(record: ConsumerRecord[bytes, bytes], delivery: Delivery) -> str:
    """Records with the same key in order; keyless ones in their partition's order."""
    return delivery.key if delivery.key else f"\0partition:{record.partition}"


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, subscription: KafkaSubscription) -> None:
        self._subscription = subscription

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self._subscription.revoked(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self._subscription.assigned(assigned)


class KafkaSubscription(Subscription):
    def __init__(
        self, topic: str, group: str | None, dispatcher: Dispatcher, options: SubscribeOptions,
        settings: KafkaSettings, on_close: Callable[[Subscription], None],
    ) -> None:
        self.topic = topic
        self.group = group
        # without a group, a group of its own: every such subscriber gets every record
        self.group_id = group or f"brokerline-{uuid.uuid4().hex[:12]}"
        self._dispatcher = dispatcher
        self._options = options
        self._settings = settings
        self._ordered = options.ordered and options.concurrency > 1
        self._prefetch = settings.prefetch or max(32, 4 * options.concurrency)
        self._on_close = on_close
        self._flow = dispatcher.flow
        self._partitions: dict[TopicPartition, PartitionProgress] = {}
        self._queue: asyncio.Queue[Fetched] = asyncio.Queue()
        self._workers: ConsumerLoop[Fetched] = ConsumerLoop(
            self._queue.get, self._handle, concurrency=options.concurrency,
            name=f"kafka:{topic}:{group or '-'}", flow=self._flow,
        )
        self._assigned = asyncio.Event()
        self._room = asyncio.Event()  # a record in hand was settled or given up
        self._commit_due = asyncio.Event()
        self._commit_lock = asyncio.Lock()
        self._stopping = asyncio.Event()
        self._consumer: AIOKafkaConsumer | None = None
        self._tasks: list[asyncio.Task[None]] = []

    # -- starting ------------------------------------------------------------------------------
    async def start(self) -> None:
        s = self._settings
        consumer = AIOKafkaConsumer(
            **client_keywords(s),
            group_id=self.group_id,
            group_instance_id=(
                f"{s.group_instance_id}-{self.topic}" if s.group_instance_id else None
            ),
            enable_auto_commit=False,
            auto_offset_reset=(
                "latest" if self._options.initial_position is InitialPosition.LATEST
                else "earliest"
            ),
            session_timeout_ms=int(s.session_timeout * 1000),
            heartbeat_interval_ms=int(s.heartbeat_interval * 1000),
            max_poll_interval_ms=int(s.max_poll_interval * 1000),
            rebalance_timeout_ms=int((s.rebalance_timeout + s.session_timeout) * 1000),
            max_poll_records=self._prefetch,
            # a record too large for the handlers' limit is still fetched, then dead-lettered
            max_partition_fetch_bytes=max(1024 * 1024, self._options.max_message_bytes or 0),
        )
        consumer.subscribe([self.topic], listener=_Rebalance(self))
        with bootstrap_failures() as reasons:
            try:
                await start_or_close(consumer.start, consumer.stop)
            except (KafkaError, OSError) as exc:
                raise connect_error(s, exc, reasons) from None
        self._consumer = consumer
        self._workers.start()
        self._tasks = [
            asyncio.create_task(self._fetch(), name=f"kafka-fetch:{self.topic}"),
            asyncio.create_task(self._commit_often(), name=f"kafka-commit:{self.topic}"),
        ]
        # returns once the group gave this member its partitions, so that records published
        # after subscribe() returns are this group's (a member that joins later rebalances)
        try:
            async with asyncio.timeout(s.session_timeout + s.rebalance_timeout):
                await self._assigned.wait()
        except TimeoutError:
            log.warning("%s: group %s assigned no partitions within %.0fs; consuming once it "
                        "does", self.topic, self.group_id,
                        s.session_timeout + s.rebalance_timeout)

    @property
    def consumer(self) -> AIOKafkaConsumer:
        assert self._consumer is not None, "start() first"
        return self._consumer

    # -- fetching ------------------------------------------------------------------------------
    def in_hand(self) -> int:
        return sum(progress.in_hand for progress in self._partitions.values())

    async def _fetch(self) -> None:
        """Keep up to `prefetch` records in hand; poll paused while there is no room."""
        while not self._stopping.is_set():
            room = self._prefetch - self.in_hand()
            try:
                if room <= 0 or self._flow.reason is not None:
                    await self._wait_for_room()
                    continue
                self._resume_all()
                for item in await self.receive(room, POLL_WAIT):
                    self._hand_over(item)
            except asyncio.CancelledError:
                raise
            except KafkaError as exc:  # the client reconnects and rejoins by itself
                log.warning("%s: fetch failed: %s", self.topic, exc)
                await asyncio.sleep(POLL_WAIT)

    async def receive(self, max_records: int, timeout: float) -> list[Fetched]:
        """Up to `max_records` fetched records within `timeout` seconds, each marked in hand.

        Records of a partition no longer assigned to this member are not returned.
        """
        batches = await self.consumer.getmany(
            timeout_ms=int(timeout * 1000), max_records=max_records
        )
        taken: list[Fetched] = []
        for partition, records in batches.items():
            progress = self._partitions.get(partition)
            if progress is None or progress.revoked:
                continue
            for record in records:
                progress.received(record.offset)
                taken.append(Fetched(record, progress))
        return taken

    def _hand_over(self, item: Fetched) -> None:
        """A fetched record to the handlers (a batch subscription buffers it instead)."""
        self._queue.put_nowait(item)

    async def _wait_for_room(self) -> None:
        """Wait until a record settles (or POLL_WAIT); past that, poll with the partitions
        paused, which returns nothing but keeps this member within max_poll_interval."""
        self._room.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(POLL_WAIT):
                await self._room.wait()
                return
        self._pause_all()
        await self.consumer.getmany(timeout_ms=0)

    def _pause_all(self) -> None:
        assignment = self.consumer.assignment()
        if assignment - self.consumer.paused():
            self.consumer.pause(*assignment)

    def _resume_all(self) -> None:
        paused = self.consumer.paused()
        if paused:
            self.consumer.resume(*paused)

    # -- handling ------------------------------------------------------------------------------
    async def _handle(self, item: Fetched) -> None:
        """Handle one record: retried here with backoff until an outcome is final."""
        progress, offset = item.progress, item.record.offset
        if progress.revoked or self._stopping.is_set():
            return  # never started: stays unsettled, so it is not committed
        progress.started(offset)
        try:
            delivery = to_delivery(item.record)
            sequence = order_key(item.record, delivery) if self._ordered else None
            while True:
                outcome = await self._dispatcher.process(delivery, order_key=sequence)
                if outcome.acked:
                    self.settle(item)
                    return
                if not await self._wait_to_retry(progress, outcome.delay):
                    return  # revoked or closing: the next owner (or next start) gets it
                delivery = replace(delivery, redelivery_count=delivery.redelivery_count + 1)
        finally:
            progress.abandoned(offset)  # no-op when settled
            self._room.set()

    async def _wait_to_retry(self, progress: PartitionProgress, delay: float) -> bool:
        """Sleep the backoff; False when the partition was revoked or the subscription is
        closing meanwhile (the record is then given up here, unsettled)."""
        if delay > 0:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._stopping.wait()
        return not (progress.revoked or self._stopping.is_set())

    def settle(self, item: Fetched) -> None:
        """The record's outcome is final: its offset may be committed once those before it
        are."""
        item.progress.settled(item.record.offset)
        self._commit_due.set()

    # -- committing ----------------------------------------------------------------------------
    async def _commit_often(self) -> None:
        while True:
            await self._commit_due.wait()
            self._commit_due.clear()
            await self.commit()
            await asyncio.sleep(self._settings.commit_interval)

    async def commit(self, partitions: set[TopicPartition] | None = None) -> None:
        """Commit each partition's settled prefix (of `partitions`, default all assigned)."""
        async with self._commit_lock:
            offsets: dict[TopicPartition, int] = {}
            for partition, progress in self._partitions.items():
                if partitions is not None and partition not in partitions:
                    continue
                offset = progress.committable()
                if offset is not None:
                    offsets[partition] = offset
            if not offsets or self._consumer is None:
                return
            try:
                await self._consumer.commit(offsets)
            except KafkaError as exc:  # the group moved on: the next owner handles them again
                log.warning("%s: commit of %d partition(s) failed (%s: %s); their settled "
                            "records may be handled again", self.topic, len(offsets),
                            type(exc).__name__, exc)
                return
            for partition, offset in offsets.items():
                if partition in self._partitions:
                    self._partitions[partition].committed = offset

    # -- rebalancing ---------------------------------------------------------------------------
    def assigned(self, partitions: set[TopicPartition]) -> None:
        for partition in partitions:
            self._partitions[partition] = PartitionProgress()
        self._assigned.set()

    async def revoked(self, partitions: set[TopicPartition]) -> None:
        """Let the revoked partitions' handlers finish, commit them, then forget them."""
        mine = {p for p in partitions if p in self._partitions}
        for partition in mine:
            self._partitions[partition].revoked = True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._settings.rebalance_timeout
        for partition in mine:
            if not await self._partitions[partition].wait_idle(max(0.0, deadline - loop.time())):
                log.warning("%s: handlers of revoked partition %d still running after %.0fs; "
                            "their records go to the next owner again", self.topic,
                            partition.partition, self._settings.rebalance_timeout)
        await self.commit(mine)
        for partition in mine:
            del self._partitions[partition]

    # -- closing -------------------------------------------------------------------------------
    async def close(self, timeout: float | None = None) -> None:
        if self._stopping.is_set():
            return
        self._stopping.set()
        self._flow.release()  # held records stop waiting for their dependency
        fetcher, committer = self._tasks or (None, None)
        if fetcher is not None:
            fetcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await fetcher
        await self._workers.stop(timeout)
        if committer is not None:
            committer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await committer
        await self.commit()
        if self._consumer is not None:
            await stop_client(self._consumer.stop())  # leaves the group: others rebalance
        self._on_close(self)
