"""The framework's batch sides (subscribe_batch) of the NATS core, JetStream and Pulsar pairs.

Apart from nats_cases.py and pulsar_cases.py so that those import nothing the library before
the batch subscribers lacks (the before/after group runs their single-handler cases on it).
"""

from __future__ import annotations

from brokerline import BatchContext, BatchOptions, SubscribeOptions, Subscription
from brokerline.jetstream import JetStreamBroker
from brokerline.nats import NatsBroker
from brokerline.pulsar import PulsarBroker
from common import CHUNK, Report, Result, Sink, framework_consume
from nats_cases import JS_BATCH_SIZE, core_framework_side, preload, settings
from pulsar_cases import fill
from pulsar_cases import settings as pulsar_settings

#: a batch per publish_batch chunk; a partial batch waits at most 2 ms for more (this bounds
#: the latency a batch adds at low rates)
CORE_BATCH = BatchOptions(max_size=CHUNK, max_wait=0.002)
JS_BATCH = BatchOptions(max_size=JS_BATCH_SIZE, max_wait=0.002)
#: one handler call per batch taken from the Pulsar client's prefetch queue
PULSAR_BATCH = BatchOptions(max_size=256, max_wait=0.002)


async def core_framework_batch(url: str, n: int, rate: float, lat_n: int) -> list[Result]:
    """One handler call per batch of up to CHUNK messages, filled from the delivery callback."""
    batches: dict[str, int] = {}  # subject -> handler calls

    async def subscribe(broker: NatsBroker, subject: str, sink: Sink) -> Subscription:
        async def batch_handler(msgs: list[Report], ctx: BatchContext) -> None:
            batches[subject] = batches.get(subject, 0) + 1
            for msg in msgs:
                sink.hit(msg)

        return await broker.subscribe_batch(subject, batch_handler, batch=CORE_BATCH)

    note = f"; a partial batch waits up to {CORE_BATCH.max_wait * 1000:g} ms"
    results = await core_framework_side(url, n, rate, lat_n, "framework (batch)", "fwb",
                                        subscribe, note)
    # how full the batches were: the publisher runs in the same process at its own pace, so
    # a subscriber that keeps up gets partial batches (and pays the per-batch work more often)
    calls = batches.get("bench.core.fwb.tput")
    for result in results:
        if result.msgs_per_s is not None and calls:
            result.note = f"{n / calls:.0f} messages per batch on average"
    return results


async def js_framework_batch(url: str, n: int, rate: float, lat_n: int) -> list[Result]:
    """A batch subscriber reading what the pull requests brought, one call per batch."""
    subject = "bench.js.fwb.tput"
    await preload(url, subject, n)
    broker = JetStreamBroker(settings(url))
    await broker.connect()
    try:
        return [await framework_consume(broker, subject, n, SubscribeOptions(),
                                        "JetStream consume+ack", JS_BATCH)]
    finally:
        await broker.close(5)


async def pulsar_framework_batch(url: str, n: int) -> list[Result]:
    """A batch subscriber: batches of up to 256 from the client's receiver queue."""
    broker = PulsarBroker(pulsar_settings(url))
    await broker.connect()
    try:
        topic = await fill(url, n)  # untimed: the produce figure is the single case's
        return [await framework_consume(broker, topic, n, SubscribeOptions(),
                                        "Pulsar consume+ack", PULSAR_BATCH)]
    finally:
        await broker.close(5)
