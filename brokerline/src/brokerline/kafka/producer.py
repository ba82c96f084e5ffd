"""The producer: one idempotent AIOKafkaProducer per broker connection.

A publish returns once the partition leader (and, with acks=all, its in-sync replicas)
stored the record. A keyed record goes to murmur2(key) % partitions, the Java client's
partitioner, so keys land where other Kafka clients put them. `send_batch` builds the record
batches itself (records grouped by partition, each group appended to the client's batch
builder and sent as one batch), then waits for every acknowledgement: a record is not handed
to the client one call at a time (that costs more than the rest of a publish).
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Sequence

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from aiokafka.partitioner import DefaultPartitioner

from brokerline.core.base import Envelope
from brokerline.core.errors import BrokerError, BrokerUnavailable
from brokerline.kafka.connection import TopicProvisioner, client_keywords, start_or_close
from brokerline.kafka.settings import KafkaSettings

#: aiokafka's default partitioner (murmur2 of the key, as the Java client): what `send` uses
PARTITIONER = DefaultPartitioner()


def wire_headers(headers: dict[str, str]) -> list[tuple[str, bytes]]:
    return [(name, value.encode()) for name, value in headers.items()]


class KafkaPublisher:
    def __init__(self, settings: KafkaSettings, topics: TopicProvisioner) -> None:
        self.settings = settings
        self._topics = topics
        self._producer: AIOKafkaProducer | None = None
        self._sticky = itertools.count()  # the partition of a batch's keyless records

    def new_producer(self) -> AIOKafkaProducer:
        s = self.settings
        return AIOKafkaProducer(
            **client_keywords(s),
            acks=s.acks if s.acks == "all" else int(s.acks),
            enable_idempotence=s.enable_idempotence,
            linger_ms=s.linger_ms,
            max_batch_size=s.batch_size,
            max_request_size=s.max_request_size,
            compression_type=None if s.compression == "none" else s.compression,
        )

    async def start(self) -> None:
        producer = self.new_producer()
        await start_or_close(producer.start, producer.stop)
        self._producer = producer

    async def close(self) -> None:
        if self._producer is not None:
            producer, self._producer = self._producer, None
            await producer.stop()  # flushes what is pending first

    @property
    def producer(self) -> AIOKafkaProducer:
        if self._producer is None:
            raise BrokerUnavailable("the kafka broker is not connected; call connect()")
        return self._producer

    async def _start_send(self, envelope: Envelope) -> asyncio.Future[object]:
        await self._topics.ensure(envelope.topic)
        try:
            return await self.producer.send(
                envelope.topic, envelope.payload,
                key=envelope.key.encode() if envelope.key is not None else None,
                headers=wire_headers(envelope.headers),
            )
        except KafkaError as exc:
            raise self._refused(envelope.topic, exc) from None

    def _refused(self, topic: str, exc: BaseException) -> BrokerError:
        return BrokerError(
            f"Kafka did not accept a message on {topic!r} ({type(exc).__name__}: {exc}); "
            "check the brokers and the topic"
        )

    async def send(self, envelope: Envelope) -> None:
        acceptance = await self._start_send(envelope)
        try:
            await acceptance
        except KafkaError as exc:
            raise self._refused(envelope.topic, exc) from None

    async def send_batch(self, envelopes: Sequence[Envelope]) -> None:
        """Send every record in per-partition batches, then wait for all; raise once if any
        failed. Keyed records go where `send` would put them; the keyless ones of a call go
        to one partition, in order, the next call's to the next partition."""
        acceptances: list[asyncio.Future[object]] = []
        try:
            for topic, grouped in itertools.groupby(envelopes, key=lambda e: e.topic):
                acceptances += await self._send_partitioned(topic, list(grouped))
        except KafkaError as exc:
            raise self._refused(envelopes[0].topic, exc) from None
        results = await asyncio.gather(*acceptances, return_exceptions=True)
        failures = [r for r in results if isinstance(r, BaseException)]
        if failures:
            raise BrokerError(
                f"{len(failures)} of {len(envelopes)} messages were not accepted by Kafka: "
                f"{type(failures[0]).__name__}: {failures[0]}"
            ) from failures[0]

    async def _send_partitioned(
        self, topic: str, envelopes: list[Envelope]
    ) -> list[asyncio.Future[object]]:
        await self._topics.ensure(topic)
        producer = self.producer
        partitions = sorted(await producer.partitions_for(topic))
        by_partition: dict[int, list[tuple[bytes | None, Envelope]]] = {}
        # keyless records of one call stay together, in order, on one partition; the next
        # call takes the next partition (the Java client's sticky partitioning)
        sticky = partitions[next(self._sticky) % len(partitions)]
        for envelope in envelopes:
            key = envelope.key.encode() if envelope.key is not None else None
            partition = PARTITIONER(key, partitions, partitions) if key is not None else sticky
            by_partition.setdefault(partition, []).append((key, envelope))
        sent: list[asyncio.Future[object]] = []
        for partition, records in by_partition.items():
            batch, filled = producer.create_batch(), 0
            for key, envelope in records:
                headers = wire_headers(envelope.headers)
                while batch.append(key=key, value=envelope.payload, timestamp=None,
                                   headers=headers) is None:  # full: send it, start another
                    if not filled:  # not even alone in a batch
                        raise BrokerError(
                            f"a message of {len(envelope.payload)} bytes on {topic!r} is larger "
                            "than a Kafka batch; raise broker.kafka.batch_size and "
                            "max_request_size (and the topic's max.message.bytes)"
                        )
                    sent.append(await producer.send_batch(batch, topic, partition=partition))
                    batch, filled = producer.create_batch(), 0
                filled += 1
            sent.append(await producer.send_batch(batch, topic, partition=partition))
        return sent
