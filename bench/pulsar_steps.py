"""Where a Pulsar consumer's microseconds go: each step of the batch path, on real messages.

`python bench/pulsar_steps.py [--messages 20000] [--repeat 7]` (from the bench venv: after
`make bench`, `build/bench/report-pipeline/.venv/bin/python bench/pulsar_steps.py`). It starts
pulsar-lite, publishes the bench's reports with the framework (as the consume cases read
them), takes them all into memory with a raw consumer, and then times each step over the
whole list, `--repeat` times (medians, CPU time of this process, no broker work in the timed
part, so the figures barely move with the machine's load):

- what a raw consumer on the event loop must do: `receive(0)` from the prefetched queue, the
  decode, `acknowledge_async`;
- what the framework adds: the `Delivery` (the calls into the message it needs; it is also
  the handler's `MessageContext`), decoding in `BatchDispatcher.process_batch`, the settle
  loop (one ack each); and the single-handler path, one message at a time (the `Delivery`,
  `Dispatcher.process`, the ack; the worker loop around it is not in it).

The heap is frozen first, as `serve` does (`freeze_start_up_heap`).

It is a profile, not a ratio: the table in bench/README ("Where the remaining microseconds
go") is its output.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import pulsar
from brokerline import BatchOptions, SubscribeOptions
from brokerline.pulsar import PulsarBroker, PulsarSettings, pulsar_lite
from common import Report, freeze_start_up_heap, make_reports


def per_message(seconds: list[float], n: int) -> float:
    return statistics.median(seconds) / n * 1e6


async def measure(url: str, n: int, repeat: int) -> list[tuple[str, float]]:
    broker = PulsarBroker(PulsarSettings(service_urls=[url], delayed_delivery="off"))
    await broker.connect()
    client = pulsar.Client(url, logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Warn))
    topic = f"steps-{uuid.uuid4().hex[:6]}"
    try:
        consumer = client.subscribe(
            f"persistent://public/default/{topic}", "steps",
            consumer_type=pulsar.ConsumerType.Shared,
            initial_position=pulsar.InitialPosition.Earliest, receiver_queue_size=n,
        )
        reports = make_reports(n)
        for i in range(0, n, 500):
            await broker.publish_batch(topic, reports[i:i + 500])
        native = consumer._consumer  # the binding's consumer, as the framework uses it
        await asyncio.sleep(2)  # the client prefetches them all into its receiver queue
        started = time.process_time()
        messages = [native.receive(0) for _ in range(n)]
        receive_seconds = time.process_time() - started

        async def handler(batch: list[Report], _ctx: object) -> None:
            return None

        sub = await broker.subscribe_batch(
            f"steps-idle-{uuid.uuid4().hex[:6]}", handler, group="steps",
            options=SubscribeOptions(), batch=BatchOptions(256, 0.002),
        )
        dispatcher = sub._dispatcher_for(sub.topic)  # the subscription's BatchDispatcher

        async def single_handler(msg: Report, _ctx: object) -> None:
            return None

        single = await broker.subscribe(
            f"steps-idle-{uuid.uuid4().hex[:6]}", single_handler, group="steps",
            options=SubscribeOptions(concurrency=1, ordered=False),
        )
        chunks = [messages[i:i + 256] for i in range(0, n, 256)]
        validate = Report.__pydantic_validator__.validate_json

        # step by step over batches of 256, keeping only one batch alive (as the consumer
        # does): a list of every decoded message would make the collector's work grow with it
        clock = time.process_time
        steps = ("raw: decode (pydantic validate_json)", "raw: acknowledge_async",
                 "framework: Delivery per message",
                 "framework: process_batch (decode, context, outcome)",
                 "framework: settle (one ack each)",
                 "framework single: handle (Delivery, Dispatcher.process, ack)")
        timings: dict[str, list[float]] = {name: [] for name in steps}
        for _ in range(repeat):
            spent = dict.fromkeys(steps, 0.0)
            for chunk in chunks:
                t0 = clock()
                for m in chunk:
                    validate(m.data())
                t1 = clock()
                for m in chunk:
                    native.acknowledge_async(m, _ignore)
                t2 = clock()
                deliveries = [sub.delivery(m) for m in chunk]
                t3 = clock()
                outcomes = await dispatcher.process_batch(deliveries)
                t4 = clock()
                await sub.settle(chunk, outcomes)
                t5 = clock()
                for m in chunk:
                    await single._handle(m)
                t6 = clock()
                for name, seconds in zip(
                    steps, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4, t6 - t5), strict=True
                ):
                    spent[name] += seconds
            for name in steps:
                timings[name].append(spent[name])
        rows = [("raw: receive(0) from the prefetched queue", receive_seconds / n * 1e6)]
        rows += [(name, per_message(seconds, n)) for name, seconds in timings.items()]
        await sub.close(2)
        await single.close(2)
        return rows
    finally:
        client.close()
        await broker.close(5)


def _ignore(_result: object) -> None:
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    freeze_start_up_heap()
    server = pulsar_lite().start()
    try:
        rows = asyncio.run(measure(server.url, args.messages, args.repeat))
    finally:
        server.stop()
    print("| step (Pulsar batch path) | CPU us/msg |\n|---|---:|")
    for name, us in rows:
        print(f"| {name} | {us:.2f} |")


if __name__ == "__main__":
    main()
