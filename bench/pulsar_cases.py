"""Pulsar over pulsar-lite: raw pulsar-client vs this framework (batched produce, consume+ack)."""

from __future__ import annotations

import asyncio
import time
import uuid

import pulsar
from brokerline import BatchOptions, SubscribeOptions
from brokerline.pulsar import PulsarBroker, PulsarSettings
from common import (
    TIMEOUT,
    Report,
    Result,
    framework_consume,
    framework_produce_consume,
    make_reports,
    process_cpu,
    throughput,
)

CONCURRENCY = 64  # framework handlers in flight; the raw consumer's receiver queue matches
#: the framework's batch subscriber: one handler call per batch taken from the prefetch queue
BATCH = BatchOptions(max_size=256, max_wait=0.002)


def full(topic: str) -> str:
    return f"persistent://public/default/{topic}"


def _raw_produce(url: str, topic: str, reports: list[Report]) -> float:
    client = pulsar.Client(url)
    try:
        producer = client.create_producer(
            full(topic), batching_enabled=True, batching_max_messages=1000,
            batching_max_publish_delay_ms=1, block_if_queue_full=True,
            max_pending_messages=1000,
        )
        failures: list[object] = []

        def done(result: object, _msg_id: object) -> None:
            if result != pulsar.Result.Ok:
                failures.append(result)

        t0 = time.perf_counter()
        for r in reports:  # encoding is timed on both sides: the framework encodes too
            producer.send_async(r.model_dump_json().encode(), done)
        producer.flush()
        elapsed = time.perf_counter() - t0
        if failures:
            raise RuntimeError(f"{len(failures)} raw sends failed: {failures[0]}")
        producer.close()
        return elapsed
    finally:
        client.close()


def _raw_consume(url: str, topic: str, n: int) -> float:
    client = pulsar.Client(url)
    try:
        consumer = client.subscribe(
            full(topic), "raw", consumer_type=pulsar.ConsumerType.Shared,
            initial_position=pulsar.InitialPosition.Earliest,
            receiver_queue_size=max(10, 2 * CONCURRENCY),
        )
        got = 0
        t0 = time.perf_counter()
        while got < n:
            msg = consumer.receive(timeout_millis=int(TIMEOUT * 1000))
            Report.model_validate_json(msg.data())
            consumer.acknowledge(msg)
            got += 1
        elapsed = time.perf_counter() - t0
        consumer.close()
        return elapsed
    finally:
        client.close()


async def pulsar_raw(url: str, n: int) -> list[Result]:
    topic = f"bench-raw-{uuid.uuid4().hex[:6]}"
    reports = make_reports(n)
    # the subscription exists before producing, so consume reads from the start like the
    # framework's EARLIEST subscription. CPU: the process's (the client's threads included),
    # so it covers the client start-up too: a few ms over the whole run
    cpu_start = process_cpu()
    produce = await asyncio.to_thread(_raw_produce, url, topic, reports)
    cpu_produced = process_cpu()
    consume = await asyncio.to_thread(_raw_consume, url, topic, n)
    produce_cpu, consume_cpu = cpu_produced - cpu_start, process_cpu() - cpu_produced
    return [Result("Pulsar produce (batching)", "raw pulsar-client", throughput(n, produce),
                   cpu_us=produce_cpu / n * 1e6),
            Result("Pulsar consume+ack", "raw pulsar-client", throughput(n, consume),
                   cpu_us=consume_cpu / n * 1e6)]


async def pulsar_framework(url: str, n: int) -> list[Result]:
    broker = PulsarBroker(PulsarSettings(service_urls=[url], delayed_delivery="off"))
    await broker.connect()
    topic = f"bench-fw-{uuid.uuid4().hex[:6]}"
    try:
        return await framework_produce_consume(
            broker, topic, n, SubscribeOptions(concurrency=CONCURRENCY, ordered=False),
            "Pulsar produce (batching)", "Pulsar consume+ack")
    finally:
        await broker.close(5)



async def pulsar_framework_batch(url: str, n: int) -> list[Result]:
    """A batch subscriber: batches of up to 256 from the client's receiver queue."""
    broker = PulsarBroker(PulsarSettings(service_urls=[url], delayed_delivery="off"))
    await broker.connect()
    topic = f"bench-fwb-{uuid.uuid4().hex[:6]}"
    try:
        reports = make_reports(n)
        for i in range(0, n, 500):  # untimed: the produce figure is the single case's
            await broker.publish_batch(topic, reports[i:i + 500])
        return [await framework_consume(broker, topic, n, SubscribeOptions(),
                                        "Pulsar consume+ack", BATCH)]
    finally:
        await broker.close(5)
