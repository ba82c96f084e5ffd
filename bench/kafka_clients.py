"""Which asyncio Kafka client the Kafka plugin is built on: aiokafka or confluent-kafka's aio.

Both clients produce the same ~100-byte JSON messages to a fresh topic (3 partitions) of one
Apache Kafka KRaft node (brokerline's test broker, started here on loopback), with the
settings the plugin uses (acks=all, idempotence on, 5 ms linger), then consume them back in a
consumer group with a manual commit after every polled batch. Rounds interleave the clients
(`--repeat`) and each row is its median round. Not a test: it asserts nothing.

    python bench/kafka_clients.py [--messages 50000] [--repeat 3] [--bootstrap host:port]

needs: aiokafka, confluent-kafka (2.16+: confluent_kafka.aio), brokerline[testing] and Java
17 + Maven for the broker unless --bootstrap names a running one
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable

BODY = json.dumps({"userId": "u-1", "eventName": "page_view", "content": "x" * 48}).encode()
PARTITIONS = 3
WINDOW = 1000  # produce futures awaited together


async def create_topic(bootstrap: str, topic: str) -> None:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, PARTITIONS, 1)])
    finally:
        await admin.close()


async def aiokafka_produce(bootstrap: str, topic: str, count: int) -> float:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=5,
        max_batch_size=256 * 1024,
    )
    await producer.start()
    try:
        began = time.perf_counter()
        pending = []
        for i in range(count):
            pending.append(await producer.send(topic, BODY, key=str(i % 64).encode(),
                                               headers=[("content-type", b"application/json")]))
            if len(pending) >= WINDOW:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
        return count / (time.perf_counter() - began)
    finally:
        await producer.stop()


async def aiokafka_consume(bootstrap: str, topic: str, count: int) -> float:
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, group_id=f"g-{uuid.uuid4().hex[:8]}",
        enable_auto_commit=False, auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        seen = 0
        began = 0.0
        while seen < count:
            batches = await consumer.getmany(timeout_ms=500, max_records=500)
            if batches and not began:
                began = time.perf_counter()
            for records in batches.values():
                for record in records:
                    json.loads(record.value)
                    seen += 1
            if batches:
                await consumer.commit()
        return count / (time.perf_counter() - began)
    finally:
        await consumer.stop()


def confluent_conf(bootstrap: str) -> dict[str, object]:
    return {"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True,
            "linger.ms": 5}


async def confluent_produce(bootstrap: str, topic: str, count: int) -> float:
    from confluent_kafka.aio import AIOProducer

    # AIOProducer's batched produce() refuses headers; the plugin needs them (content type,
    # trace context), so this side sends none and is faster than it could be for the plugin
    producer = AIOProducer(confluent_conf(bootstrap), batch_size=WINDOW)
    try:
        began = time.perf_counter()
        pending = []
        for i in range(count):
            pending.append(await producer.produce(topic, BODY, key=str(i % 64).encode()))
            if len(pending) >= WINDOW:  # its delivery futures resolve only as it polls
                await producer.flush()
                await asyncio.gather(*pending)
                pending.clear()
        await producer.flush()
        await asyncio.gather(*pending)
        return count / (time.perf_counter() - began)
    finally:
        await producer.close()


async def confluent_consume(bootstrap: str, topic: str, count: int) -> float:
    from confluent_kafka.aio import AIOConsumer

    consumer = AIOConsumer({
        "bootstrap.servers": bootstrap, "group.id": f"g-{uuid.uuid4().hex[:8]}",
        "enable.auto.commit": False, "auto.offset.reset": "earliest",
    })
    await consumer.subscribe([topic])
    try:
        seen = 0
        began = 0.0
        while seen < count:
            messages = await consumer.consume(num_messages=500, timeout=0.5)
            if messages and not began:
                began = time.perf_counter()
            for message in messages:
                if message.error():
                    continue
                json.loads(message.value())
                seen += 1
            if messages:
                await consumer.commit(asynchronous=False)
        return count / (time.perf_counter() - began)
    finally:
        await consumer.close()


Case = Callable[[str, str, int], Awaitable[float]]
CLIENTS: dict[str, tuple[Case, Case]] = {
    "aiokafka": (aiokafka_produce, aiokafka_consume),
    "confluent-kafka aio": (confluent_produce, confluent_consume),
}


async def run(bootstrap: str, count: int, repeat: int) -> dict[str, dict[str, list[float]]]:
    figures: dict[str, dict[str, list[float]]] = {
        name: {"produce": [], "consume": []} for name in CLIENTS
    }
    for _ in range(repeat):
        for name, (produce, consume) in CLIENTS.items():
            topic = f"bench-{uuid.uuid4().hex[:8]}"
            await create_topic(bootstrap, topic)
            figures[name]["produce"].append(await produce(bootstrap, topic, count))
            figures[name]["consume"].append(await consume(bootstrap, topic, count))
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=50000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--bootstrap", help="a running broker; default: start a KRaft node")
    args = parser.parse_args()
    server = None
    bootstrap = args.bootstrap
    if bootstrap is None:
        from brokerline.testing.apache_kafka import apache_kafka_kraft

        server = apache_kafka_kraft(tls=False).start()
        bootstrap = server.url
    try:
        figures = asyncio.run(run(bootstrap, args.messages, args.repeat))
    finally:
        if server is not None:
            server.cleanup()
    print(f"| client ({args.messages} messages, median of {args.repeat}) | produce msgs/s | "
          "consume+commit msgs/s |")
    print("|---|---:|---:|")
    for name, rows in figures.items():
        produce, consume = (statistics.median(rows[k]) for k in ("produce", "consume"))
        print(f"| {name} | {produce:.0f} | {consume:.0f} |")


if __name__ == "__main__":
    main()
