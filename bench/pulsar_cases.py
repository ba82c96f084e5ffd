"""Pulsar over pulsar-lite: raw pulsar-client vs this framework (batched produce, consume+ack).

Only single-handler names of brokerline at import time (see nats_cases.py); the framework's
batch side is in batch_cases.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace

import pulsar
from brokerline import SubscribeOptions
from brokerline.pulsar import PulsarBroker, PulsarSettings
from common import (
    CHUNK,
    TIMEOUT,
    Report,
    Result,
    framework_consume,
    framework_produce,
    make_reports,
    process_cpu,
    skipped,
    throughput,
)

#: messages the raw producer keeps pending (`max_pending_messages`); the framework side keeps
#: as many in flight, in publish_batch calls of CHUNK
RAW_PENDING = 1000
CONCURRENCY = 64  # framework handlers in flight
#: every consumer's receiver queue: the client's default, on the framework sides too (its
#: own default is 2 x concurrency); on Apache Pulsar the raw consumer did 30-50k msgs/s with
#: 128 and 60-77k with 512, so every side prefetches the same
RECEIVER_QUEUE = 1000


def settings(url: str) -> PulsarSettings:
    """The framework sides' settings (with the raw consumer's prefetch)."""
    return PulsarSettings(service_urls=[url], delayed_delivery="off",
                          receiver_queue_size=RECEIVER_QUEUE)


#: the suffix of the cases run on Apache Pulsar (the `apache-pulsar` group)
ON_APACHE = " (Apache Pulsar)"


@contextlib.contextmanager
def apache_pulsar(notes: list[str]) -> Iterator[str | None]:
    """The service URL of an Apache Pulsar standalone (brokerline's test JVM, started here)
    for the group, or None (with the reason in `notes`) where Java or Maven is missing."""
    from brokerline.testing.apache_pulsar import apache_pulsar_standalone, missing_tools

    missing = missing_tools()
    if missing:
        skipped(notes, f"Apache Pulsar skipped: {missing}")
        yield None
        return
    server = apache_pulsar_standalone(tls=False).start()  # blocks: nothing else runs meanwhile
    try:
        yield server.url
    finally:
        server.cleanup()


def on_apache(results: list[Result]) -> list[Result]:
    """The same rows, named as run on Apache Pulsar."""
    return [replace(r, case=r.case + ON_APACHE) for r in results]


def full(topic: str) -> str:
    return f"persistent://public/default/{topic}"


def _raw_produce(url: str, topic: str, reports: list[Report]) -> float:
    client = pulsar.Client(url)
    try:
        producer = client.create_producer(
            full(topic), batching_enabled=True, batching_max_messages=1000,
            batching_max_publish_delay_ms=1, block_if_queue_full=True,
            max_pending_messages=RAW_PENDING,
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
            receiver_queue_size=RECEIVER_QUEUE,
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


async def fill(url: str, n: int) -> str:
    """A new topic holding `n` reports, sent by the raw producer (untimed).

    Every consume row reads a topic filled so: the same batch layout for every side. A topic of
    the framework's 500-message `publish_batch` batches was about 20% slower to consume for
    the raw consumer too (a receiver queue smaller than a batch waits for each one).
    """
    topic = f"bench-fill-{uuid.uuid4().hex[:6]}"
    await asyncio.to_thread(_raw_produce, url, topic, make_reports(n))
    return topic


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
    broker = PulsarBroker(settings(url))
    await broker.connect()
    topic = f"bench-fw-{uuid.uuid4().hex[:6]}"
    try:
        produced = await framework_produce(
            broker, topic, n, "Pulsar produce (batching)", in_flight=RAW_PENDING // CHUNK)
        filled = await fill(url, n)
        return [produced, await framework_consume(
            broker, filled, n, SubscribeOptions(concurrency=CONCURRENCY, ordered=False),
            "Pulsar consume+ack")]
    finally:
        await broker.close(5)
