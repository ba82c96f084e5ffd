"""Kafka on Apache Kafka (KRaft): raw aiokafka vs this framework vs FastStream's KafkaBroker.

Every side produces the same reports to a fresh 3-partition topic, then consumes them back in
a new consumer group, decoding each into `Report` and committing offsets only after handling
(at-least-once). Producers: acks=all, idempotence on, 5 ms linger (the plugin's defaults).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from brokerline import BatchOptions, SubscribeOptions
from brokerline.kafka import KafkaBroker, KafkaSettings
from brokerline.testing.apache_kafka import apache_kafka_kraft, missing_tools
from common import (
    CHUNK,
    TIMEOUT,
    Report,
    Result,
    Sink,
    Timed,
    framework_consume,
    framework_produce_consume,
    make_reports,
    skipped,
    throughput,
)
from kafka_clients import create_topic

CONCURRENCY = 64  # framework handlers in flight
POLL = 500  # records per poll (raw getmany, FastStream's batch subscriber)
BATCH = BatchOptions(max_size=256, max_wait=0.002)  # the framework's batch subscriber
PRODUCE = "Kafka produce"
CONSUME = "Kafka consume+commit"
PRODUCER = {"acks": "all", "enable_idempotence": True, "linger_ms": 5,
            "max_batch_size": 256 * 1024}


@contextlib.asynccontextmanager
async def apache_kafka(notes: list[str]) -> AsyncIterator[str | None]:
    """The bootstrap address of brokerline's Apache Kafka KRaft test node for the whole run,
    or None (with the reason in `notes`) where Java or Maven is missing."""
    missing = missing_tools()
    if missing:
        skipped(notes, f"Kafka skipped: {missing}")
        yield None
        return
    server = apache_kafka_kraft(tls=False).start()  # blocks: nothing else runs meanwhile
    try:
        await warm_up(server.url)
        yield server.url
    finally:
        server.cleanup()


async def warm_up(bootstrap: str) -> None:
    """A first group commit creates the offsets topic: no side should pay for that."""
    topic = await new_topic(bootstrap, "warm-up")
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, **PRODUCER)
    await producer.start()
    try:
        await producer.send_and_wait(topic, b"{}")
    finally:
        await producer.stop()
    consumer = group_consumer(bootstrap, topic, "warm-up")
    await consumer.start()
    try:
        await consumer.getone()
        await consumer.commit()
    finally:
        await consumer.stop()


async def new_topic(bootstrap: str, side: str) -> str:
    """A fresh topic with the plugin's default 3 partitions (auto-creation would make 1)."""
    topic = f"bench-{side}-{uuid.uuid4().hex[:6]}"
    await create_topic(bootstrap, topic)
    return topic


def group_consumer(bootstrap: str, topic: str, group: str) -> AIOKafkaConsumer:
    """A member of a new group, reading from the start, committing only when told to."""
    return AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group,
                            enable_auto_commit=False, auto_offset_reset="earliest")


async def kafka_raw(bootstrap: str, n: int) -> list[Result]:
    topic = await new_topic(bootstrap, "raw")
    reports = make_reports(n)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, **PRODUCER)
    await producer.start()
    try:
        with Timed() as t:  # the first metadata lookup is timed, as on the other sides
            partitions = sorted(await producer.partitions_for(topic))
            for i in range(0, n, CHUNK):
                # aiokafka's batch API: one record batch per call, to a partition in turn
                await asyncio.gather(*[
                    await producer.send_batch(batch, topic,
                                              partition=partitions[k % len(partitions)])
                    for k, batch in enumerate(record_batches(producer, reports[i:i + CHUNK]))])
        produced = Result(PRODUCE, "raw aiokafka", t.rate(n), cpu_us=t.cpu_us(n))
    finally:
        await producer.stop()
    consumer = group_consumer(bootstrap, topic, "raw")
    await consumer.start()
    try:
        got, t0 = 0, 0.0
        deadline = time.monotonic() + TIMEOUT
        while got < n:
            if time.monotonic() > deadline:
                raise RuntimeError(f"raw aiokafka received {got} of {n} in {TIMEOUT}s")
            batches = await consumer.getmany(timeout_ms=500, max_records=POLL)
            if batches and not t0:
                t0 = time.perf_counter()  # from the first records, after the group join
            for records in batches.values():
                for record in records:
                    Report.model_validate_json(record.value or b"")
                    got += 1
            if batches:
                await consumer.commit()
        consumed = Result(CONSUME, "raw aiokafka", throughput(n, time.perf_counter() - t0))
    finally:
        await consumer.stop()
    return [produced, consumed]


def record_batches(producer: AIOKafkaProducer, reports: list[Report]) -> list[Any]:
    """The reports encoded into as few of the producer's record batches as they fit."""
    batches = [producer.create_batch()]
    for report in reports:
        value = report.model_dump_json().encode()
        if batches[-1].append(key=None, value=value, timestamp=None) is None:  # full
            batches.append(producer.create_batch())
            batches[-1].append(key=None, value=value, timestamp=None)
    return batches


async def kafka_framework(bootstrap: str, n: int) -> list[Result]:
    broker = KafkaBroker(KafkaSettings(bootstrap_servers=[bootstrap]))
    await broker.connect()
    try:
        return await framework_produce_consume(
            broker, await new_topic(bootstrap, "fw"), n,
            SubscribeOptions(concurrency=CONCURRENCY, ordered=False), PRODUCE, CONSUME)
    finally:
        await broker.close(5)


async def kafka_framework_batch(bootstrap: str, n: int) -> list[Result]:
    """A batch subscriber over the same consumer and commits."""
    broker = KafkaBroker(KafkaSettings(bootstrap_servers=[bootstrap]))
    await broker.connect()
    try:
        topic = await new_topic(bootstrap, "fwb")
        reports = make_reports(n)
        for i in range(0, n, CHUNK):  # untimed: the produce figure is the single case's
            await broker.publish_batch(topic, reports[i:i + CHUNK])
        return [await framework_consume(broker, topic, n, SubscribeOptions(), CONSUME, BATCH)]
    finally:
        await broker.close(5)


async def kafka_faststream(bootstrap: str, n: int) -> list[Result]:
    from faststream import AckPolicy
    from faststream.kafka import KafkaBroker as FsBroker

    topic = await new_topic(bootstrap, "fs")
    reports = make_reports(n)
    fs = FsBroker(bootstrap, logger=None, **PRODUCER)
    await fs.start()
    try:
        with Timed() as t:
            for i in range(0, n, CHUNK):  # one produce request per call, awaited
                await fs.publish_batch(*reports[i:i + CHUNK], topic=topic)
        produced = Result(PRODUCE, "faststream", t.rate(n), cpu_us=t.cpu_us(n))
    finally:
        await fs.stop()
    sink = Sink(n)
    began: list[float] = []
    fs = FsBroker(bootstrap, logger=None)

    # a batch subscriber (one handler call per poll); AckPolicy.ACK commits after the handler
    @fs.subscriber(topic, batch=True, group_id="fs", auto_offset_reset="earliest",
                   max_records=POLL, ack_policy=AckPolicy.ACK)
    async def handler(batch: list[Report]) -> None:
        if not began:
            began.append(time.perf_counter())  # its first records: the group join is behind
        for report in batch:
            sink.hit(report)

    await fs.start()
    try:
        await sink.wait(TIMEOUT)
        consumed = Result(CONSUME, "faststream", throughput(n, time.perf_counter() - began[0]))
    finally:
        await fs.stop()
    return [produced, consumed]


CASES = (kafka_raw, kafka_framework, kafka_framework_batch, kafka_faststream)
