"""NATS core and JetStream: raw nats-py, this framework and FastStream, side by side."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import nats
from brokerline import MessageContext, SubscribeOptions
from brokerline.jetstream import JetStreamBroker, StreamSettings
from brokerline.nats import NatsBroker, NatsSettings
from common import (
    CHUNK,
    TIMEOUT,
    Report,
    Result,
    Sink,
    framework_produce_consume,
    make_reports,
    paced,
    percentile,
    throughput,
)
from nats.js.api import ConsumerConfig

WINDOW = 256  # JetStream publishes awaited together (every side)
FETCH = 64  # JetStream pull batch (raw), the framework's concurrency, FastStream's batch_size
STREAM = "BENCH"


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
                t0 = time.perf_counter()
                for i, r in enumerate(reports):
                    await nc.publish(subject, r.model_dump_json().encode())
                    if i % CHUNK == CHUNK - 1:
                        await nc.flush()
                await nc.flush()
                await sink.wait(TIMEOUT)
                out.append(Result("NATS core end to end", "raw nats-py",
                                  throughput(n, time.perf_counter() - t0)))
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
    broker = NatsBroker(settings(url))
    await broker.connect()
    out = []
    try:
        for phase in ("tput", "lat"):
            count = n if phase == "tput" else lat_n
            sink = Sink(count)

            async def handler(msg: Report, ctx: MessageContext, sink: Sink = sink) -> None:
                sink.hit(msg)

            subject = f"bench.core.fw.{phase}"
            sub = await broker.subscribe(subject, handler, options=SubscribeOptions())
            if phase == "tput":
                reports = make_reports(n)
                t0 = time.perf_counter()
                for i in range(0, n, CHUNK):
                    await broker.publish_batch(subject, reports[i:i + CHUNK])
                await sink.wait(TIMEOUT)
                out.append(Result("NATS core end to end", "framework",
                                  throughput(n, time.perf_counter() - t0)))
            else:
                await paced(rate, count, lambda r, s=subject: broker.publish(s, r))
                await sink.wait(TIMEOUT)
                out.append(latency_result("NATS core latency", "framework", sink,
                                          "publish() waits for the server's flush"))
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
                t0 = time.perf_counter()
                for r in reports:
                    await fs.publish(r, subject)
                await sink.wait(TIMEOUT)
                out.append(Result("NATS core end to end", "faststream",
                                  throughput(n, time.perf_counter() - t0)))
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


async def js_raw(url: str, n: int, rate: float, lat_n: int) -> list[Result]:
    nc = await nats.connect(url)
    js = nc.jetstream()
    out = []
    try:
        subject = "bench.js.raw.tput"
        reports = make_reports(n)
        t0 = time.perf_counter()
        await windows([lambda r=r: js.publish(subject, r.model_dump_json().encode(),
                                              stream=STREAM) for r in reports], WINDOW)
        out.append(Result("JetStream publish", "raw nats-py",
                          throughput(n, time.perf_counter() - t0)))
        sink = Sink(n)
        config = ConsumerConfig(max_ack_pending=FETCH * 4 + 16)
        psub = await js.pull_subscribe(subject, durable="raw", stream=STREAM, config=config)
        t0 = time.perf_counter()
        await raw_pull(psub, sink)
        await nc.flush()
        out.append(Result("JetStream consume+ack", "raw nats-py",
                          throughput(n, time.perf_counter() - t0)))
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
    t0 = time.perf_counter()
    await windows([lambda r=r: fs.publish(r, subject, stream=STREAM) for r in reports], WINDOW)
    out.append(Result("JetStream publish", "faststream", throughput(n, time.perf_counter() - t0)))
    await fs.stop()
    # consume what was published
    sink = Sink(n)
    fs = FsBroker(url, logger=None)

    @fs.subscriber(subject, stream=stream, durable="fs", pull_sub=PullSub(batch_size=FETCH))
    async def handler(msg: Report) -> None:
        sink.hit(msg)

    t0 = time.perf_counter()
    await fs.start()
    try:
        await sink.wait(TIMEOUT)
        out.append(Result("JetStream consume+ack", "faststream",
                          throughput(n, time.perf_counter() - t0)))
    finally:
        await fs.stop()
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
