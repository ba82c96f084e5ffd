"""NATS core and JetStream: raw nats-py, this framework and FastStream, side by side.

Only single-handler names of brokerline at import time: the before/after group runs these
framework cases against the library from before the batch subscribers (batch_cases.py has
the framework's batch sides).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import nats
from brokerline import MessageContext, SubscribeOptions, Subscription
from brokerline.jetstream import JetStreamBroker, StreamSettings
from brokerline.nats import NatsBroker, NatsSettings
from common import (
    CHUNK,
    TIMEOUT,
    Report,
    Result,
    Sink,
    Timed,
    framework_produce_consume,
    make_reports,
    paced,
    percentile,
)
from nats.js.api import ConsumerConfig

WINDOW = 256  # JetStream publishes awaited together (FastStream)
FETCH = 64  # JetStream pull batch (raw), the framework's concurrency, FastStream's batch_size
STREAM = "BENCH"
JS_BATCH_SIZE = 256  # the JetStream batch sides' batch size: the framework's and FastStream's


def settings(url: str) -> NatsSettings:
    return NatsSettings(servers=[url], stream=StreamSettings(name=STREAM, subjects=["bench.>"]))


def latency_result(case: str, side: str, sink: Sink, note: str = "") -> Result:
    return Result(case, side, None, percentile(sink.latencies_ms, 0.5),
                  percentile(sink.latencies_ms, 0.99), note)


async def windows(coros_of: list, size: int) -> None:
    for i in range(0, len(coros_of), size):
        await asyncio.gather(*(make() for make in coros_of[i:i + size]))


# -- NATS core -----------------------------------------------------------------------------
async def core_raw(url: str, n: int, rate: float, lat_n: int) -> list[Result]:
    nc = await nats.connect(url)
    out = []
    try:
        for phase in ("tput", "lat"):
            count = n if phase == "tput" else lat_n
            sink = Sink(count)

            async def cb(msg, sink: Sink = sink) -> None:
                sink.hit(Report.model_validate_json(msg.data))

            subject = f"bench.core.raw.{phase}"
            sub = await nc.subscribe(subject, cb=cb, pending_msgs_limit=n * 2)
            await nc.flush()
            if phase == "tput":
                reports = make_reports(n)
                with Timed() as t:
                    for i, r in enumerate(reports):
                        await nc.publish(subject, r.model_dump_json().encode())
                        if i % CHUNK == CHUNK - 1:
                            await nc.flush()
                    await nc.flush()
                    await sink.wait(TIMEOUT)
                out.append(Result("NATS core end to end", "raw nats-py", t.rate(n),
                                  cpu_us=t.cpu_us(n)))
            else:
                async def send(r: Report, subject: str = subject) -> None:
                    await nc.publish(subject, r.model_dump_json().encode())
                await paced(rate, count, send)
                await sink.wait(TIMEOUT)
                out.append(latency_result("NATS core latency", "raw nats-py", sink))
            await sub.unsubscribe()
    finally:
        await nc.close()
    return out


async def core_framework(url: str, n: int, rate: float, lat_n: int) -> list[Result]:
    async def subscribe(broker: NatsBroker, subject: str, sink: Sink) -> Subscription:
        async def handler(msg: Report, ctx: MessageContext) -> None:
            sink.hit(msg)

        return await broker.subscribe(subject, handler, options=SubscribeOptions())

    return await core_framework_side(url, n, rate, lat_n, "framework", "fw", subscribe)


async def core_framework_side(
    url: str, n: int, rate: float, lat_n: int, side: str, tag: str,
    subscribe: Callable[[NatsBroker, str, Sink], Awaitable[Subscription]], lat_note: str = "",
) -> list[Result]:
    """A framework side: `subscribe` makes its subscription (a single or a batch handler)."""
    broker = NatsBroker(settings(url))
    await broker.connect()
    out = []
    try:
        for phase in ("tput", "lat"):
            count = n if phase == "tput" else lat_n
            sink = Sink(count)
            subject = f"bench.core.{tag}.{phase}"
            sub = await subscribe(broker, subject, sink)
            if phase == "tput":
                reports = make_reports(n)
                with Timed() as t:
                    for i in range(0, n, CHUNK):
                        await broker.publish_batch(subject, reports[i:i + CHUNK])
                    await sink.wait(TIMEOUT)
                out.append(Result("NATS core end to end", side, t.rate(n), cpu_us=t.cpu_us(n)))
            else:
                await paced(rate, count, lambda r, s=subject: broker.publish(s, r))
                await sink.wait(TIMEOUT)
                note = "publish() waits for the server's flush" + lat_note
                out.append(latency_result("NATS core latency", side, sink, note))
            await sub.close(5)
    finally:
        await broker.close(5)
    return out


async def core_faststream(url: str, n: int, rate: float, lat_n: int) -> list[Result]:
    from faststream.nats import NatsBroker as FsBroker

    out = []
    for phase in ("tput", "lat"):
        count = n if phase == "tput" else lat_n
        sink = Sink(count)
        subject = f"bench.core.fs.{phase}"
        fs = FsBroker(url, logger=None)

        fs.subscriber(subject)(_faststream_handler(sink))

        await fs.start()
        try:
            if phase == "tput":
                reports = make_reports(n)
                with Timed() as t:
                    for r in reports:  # FastStream's NATS broker has no batch publish
                        await fs.publish(r, subject)
                    await sink.wait(TIMEOUT)
                out.append(Result("NATS core end to end", "faststream", t.rate(n),
                                  note="no batch subscriber on NATS core", cpu_us=t.cpu_us(n)))
            else:
                await paced(rate, count, lambda r: fs.publish(r, subject))  # noqa: B023
                await sink.wait(TIMEOUT)
                out.append(latency_result("NATS core latency", "faststream", sink))
        finally:
            await fs.stop()
    return out


def _faststream_handler(sink: Sink):
    async def handler(msg: Report) -> None:  # FastStream reads every parameter as a field
        sink.hit(msg)

    return handler


# -- JetStream -----------------------------------------------------------------------------
async def ensure_stream(url: str) -> None:
    broker = JetStreamBroker(settings(url))
    await broker.connect()  # provisions the BENCH stream the three sides share
    await broker.close(5)


async def raw_pull(psub: Any, sink: Sink) -> None:
    """Fetch, decode and ack until the sink has all it expects (the raw consume loop)."""
    while sink.received < sink.expected:
        try:
            msgs = await psub.fetch(FETCH, timeout=1)
        except TimeoutError:
            continue
        for m in msgs:
            sink.hit(Report.model_validate_json(m.data))
            await m.ack()


async def publish_async_all(js: Any, subject: str, reports: list[Report]) -> None:
    """nats-py's own asynchronous JetStream publishing: `publish_async` hands each message to
    the connection and returns a future for its ack (bounded by the client's pending limit);
    then every ack is awaited (a refused one raises)."""
    acks = [await js.publish_async(subject, r.model_dump_json().encode(), stream=STREAM)
            for r in reports]
    await asyncio.gather(*acks)


async def preload(url: str, subject: str, n: int) -> None:
    """Put `n` reports on `subject` (untimed), for a consume-only case."""
    nc = await nats.connect(url)
    try:
        await publish_async_all(nc.jetstream(), subject, make_reports(n))
    finally:
        await nc.close()


async def js_raw(url: str, n: int, rate: float, lat_n: int) -> list[Result]:
    nc = await nats.connect(url)
    js = nc.jetstream()
    out = []
    try:
        subject = "bench.js.raw.tput"
        reports = make_reports(n)
        with Timed() as t:
            await publish_async_all(js, subject, reports)
        out.append(Result("JetStream publish", "raw nats-py", t.rate(n),
                          note="js.publish_async, then every ack awaited", cpu_us=t.cpu_us(n)))
        sink = Sink(n)
        config = ConsumerConfig(max_ack_pending=FETCH * 4 + 16)
        psub = await js.pull_subscribe(subject, durable="raw", stream=STREAM, config=config)
        with Timed() as t:
            await raw_pull(psub, sink)
            await nc.flush()
        out.append(Result("JetStream consume+ack", "raw nats-py", t.rate(n), cpu_us=t.cpu_us(n)))
        await psub.unsubscribe()

        subject = "bench.js.raw.lat"
        sink = Sink(lat_n)
        psub = await js.pull_subscribe(subject, durable="raw-lat", stream=STREAM, config=config)
        consumer = asyncio.create_task(raw_pull(psub, sink))
        await paced(rate, lat_n, lambda r: js.publish(subject, r.model_dump_json().encode(),
                                                      stream=STREAM))
        await asyncio.wait_for(consumer, TIMEOUT)
        out.append(latency_result("JetStream latency", "raw nats-py", sink))
        await psub.unsubscribe()
    finally:
        await nc.close()
    return out


async def js_framework(url: str, n: int, rate: float, lat_n: int) -> list[Result]:
    broker = JetStreamBroker(settings(url))
    await broker.connect()
    options = SubscribeOptions(concurrency=FETCH, ordered=False)
    out = []
    try:
        out += await framework_produce_consume(
            broker, "bench.js.fw.tput", n, options, "JetStream publish", "JetStream consume+ack")

        subject = "bench.js.fw.lat"
        lat_sink = Sink(lat_n)

        async def lat_handler(msg: Report, ctx: MessageContext) -> None:
            lat_sink.hit(msg)

        sub = await broker.subscribe(subject, lat_handler, group="fw-lat", options=options)
        await paced(rate, lat_n, lambda r: broker.publish(subject, r))
        await lat_sink.wait(TIMEOUT)
        out.append(latency_result("JetStream latency", "framework", lat_sink))
        await sub.close(5)
    finally:
        await broker.close(5)
    return out


async def faststream_consume(
    url: str, subject: str, n: int, durable: str, pull_sub: Any, batch: bool
) -> Timed:
    """FastStream pull-consumes `n` messages already on `subject`; timed from its start."""
    from faststream.nats import JStream
    from faststream.nats import NatsBroker as FsBroker

    sink = Sink(n)
    fs = FsBroker(url, logger=None)
    stream = JStream(STREAM, declare=False)
    if batch:
        @fs.subscriber(subject, stream=stream, durable=durable, pull_sub=pull_sub)
        async def on_batch(msgs: list[Report]) -> None:
            for msg in msgs:
                sink.hit(msg)
    else:
        @fs.subscriber(subject, stream=stream, durable=durable, pull_sub=pull_sub)
        async def on_message(msg: Report) -> None:
            sink.hit(msg)

    try:
        with Timed() as t:
            await fs.start()
            await sink.wait(TIMEOUT)
    finally:
        await fs.stop()
    return t


async def js_faststream_batch(url: str, n: int, rate: float, lat_n: int) -> list[Result]:
    """FastStream's batch subscriber: `PullSub(batch=True)`, a handler taking a list."""
    from faststream.nats import PullSub

    subject = "bench.js.fsb.tput"
    await preload(url, subject, n)
    pull = PullSub(batch_size=JS_BATCH_SIZE, timeout=0.1, batch=True)
    t = await faststream_consume(url, subject, n, "fs-batch", pull, batch=True)
    return [Result("JetStream consume+ack", "faststream (batch)", t.rate(n),
                   note=f"PullSub(batch_size={JS_BATCH_SIZE}, timeout=0.1, batch=True)",
                   cpu_us=t.cpu_us(n))]


async def js_faststream(url: str, n: int, rate: float, lat_n: int) -> list[Result]:
    from faststream.nats import JStream, PullSub
    from faststream.nats import NatsBroker as FsBroker

    stream = JStream(STREAM, declare=False)
    out = []
    # publish
    subject = "bench.js.fs.tput"
    fs = FsBroker(url, logger=None)
    await fs.start()
    reports = make_reports(n)
    with Timed() as t:  # FastStream's NATS broker has no batch or asynchronous publish
        await windows([lambda r=r: fs.publish(r, subject, stream=STREAM) for r in reports],
                      WINDOW)
    out.append(Result("JetStream publish", "faststream", t.rate(n),
                      note=f"publish awaited in windows of {WINDOW}", cpu_us=t.cpu_us(n)))
    await fs.stop()
    # consume what was published
    t = await faststream_consume(url, subject, n, "fs", PullSub(batch_size=FETCH), batch=False)
    out.append(Result("JetStream consume+ack", "faststream", t.rate(n), cpu_us=t.cpu_us(n)))
    # latency
    subject = "bench.js.fs.lat"
    lat_sink = Sink(lat_n)
    fs = FsBroker(url, logger=None)

    @fs.subscriber(subject, stream=stream, durable="fs-lat", pull_sub=PullSub(batch_size=FETCH))
    async def lat_handler(msg: Report) -> None:
        lat_sink.hit(msg)

    await fs.start()
    try:
        await paced(rate, lat_n, lambda r: fs.publish(r, subject, stream=STREAM))
        await lat_sink.wait(TIMEOUT)
        out.append(latency_result("JetStream latency", "faststream", lat_sink))
    finally:
        await fs.stop()
    return out
