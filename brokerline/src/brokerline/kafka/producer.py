"""The producer: one idempotent AIOKafkaProducer per broker connection.

A publish returns once the partition leader (and, with acks=all, its in-sync replicas)
stored the record. A keyed record goes to murmur2(key) % partitions, the Java client's
partitioner, so keys land where other Kafka clients put them. `send_batch` hands every
record to the client before awaiting any acknowledgement, so the client packs them into
per-partition batches (`linger_ms`, `batch_size`, `compression`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from brokerline.core.base import Envelope
from brokerline.core.errors import BrokerError, BrokerUnavailable
from brokerline.kafka.connection import TopicProvisioner, client_keywords, start_or_close
from brokerline.kafka.settings import KafkaSettings


def wire_headers(headers: dict[str, str]) -> list[tuple[str, bytes]]:
    return [(name, value.encode()) for name, value in headers.items()]


class KafkaPublisher:
    def __init__(self, settings: KafkaSettings, topics: TopicProvisioner) -> None:
        self.settings = settings
        self._topics = topics
        self._producer: AIOKafkaProducer | None = None

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
        """Hand every record to the client, then wait for all; raise once if any failed."""
        acceptances = [await self._start_send(envelope) for envelope in envelopes]
        results = await asyncio.gather(*acceptances, return_exceptions=True)
        failures = [r for r in results if isinstance(r, BaseException)]
        if failures:
            raise BrokerError(
                f"{len(failures)} of {len(envelopes)} messages were not accepted by Kafka: "
                f"{type(failures[0]).__name__}: {failures[0]}"
            ) from failures[0]
