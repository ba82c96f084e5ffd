"""Tracing, metrics and logs of the library: the middleware on the memory broker, the span
exporters by configuration, trace ids in log lines, the ids-only tracer, and the spans of a
batched write (with the process-wide set-up `setup_telemetry`, as `serve` does)."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from brokerline.config import TelemetryConfig
from brokerline.core import (
    Backoff,
    BatchContext,
    BatchOptions,
    BatchResult,
    MessageContext,
    SubscribeOptions,
)
from brokerline.core.metrics import MetricsMiddleware
from brokerline.core.tracing import TracingMiddleware
from brokerline.logs import JsonFormatter, TextFormatter, TraceContextFilter
from brokerline.memory.broker import MemoryBroker
from brokerline.telemetry import setup_telemetry
from brokerline.testing import eventually, unique


@pytest.fixture
def tracing() -> tuple[TracerProvider, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


def metric_points(reader: InMemoryMetricReader) -> dict[str, list[Any]]:
    """instrument name -> its data points (attributes and value or count)."""
    points: dict[str, list[Any]] = {}
    data = reader.get_metrics_data()
    for resource in data.resource_metrics if data else []:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                points.setdefault(metric.name, []).extend(metric.data.data_points)
    return points


def total(points: dict[str, list[Any]], name: str, **attributes: str) -> float:
    return sum(
        p.value for p in points.get(name, [])
        if all(p.attributes.get(k) == v for k, v in attributes.items())
    )


async def test_consumer_span_is_a_child_of_the_producer_span(tracing: Any) -> None:
    provider, exporter = tracing
    broker = MemoryBroker()
    broker.middleware.append(TracingMiddleware("memory", tracer_provider=provider))
    await broker.connect()
    topic, group = unique("traced"), unique("group")
    seen: list[MessageContext] = []

    async def handler(msg: dict, ctx: MessageContext) -> None:
        seen.append(ctx)

    await broker.subscribe(topic, handler, group=group)
    with provider.get_tracer("test").start_as_current_span("request") as request:
        await broker.publish(topic, {"n": 1})
    await eventually(lambda: len(seen) == 1)
    await broker.close(timeout=5)

    assert "traceparent" in seen[0].headers
    spans = {s.name: s for s in exporter.get_finished_spans()}
    producer, consumer = spans[f"send {topic}"], spans[f"process {topic}"]
    assert producer.kind is SpanKind.PRODUCER and consumer.kind is SpanKind.CONSUMER
    assert producer.parent is not None
    assert producer.parent.span_id == request.get_span_context().span_id
    assert consumer.parent is not None and consumer.parent.span_id == producer.context.span_id
    assert consumer.context.trace_id == request.get_span_context().trace_id
    assert consumer.attributes is not None
    assert consumer.attributes["messaging.system"] == "memory"
    assert consumer.attributes["messaging.destination.name"] == topic
    assert consumer.attributes["messaging.consumer.group.name"] == group
    assert consumer.attributes["messaging.operation.type"] == "process"
    assert consumer.attributes["messaging.message.id"] == seen[0].message_id


async def test_counters_for_ack_redelivery_and_dead_letter() -> None:
    reader = InMemoryMetricReader()
    broker = MemoryBroker()
    broker.middleware.append(MetricsMiddleware("memory", MeterProvider(metric_readers=[reader])))
    await broker.connect()
    topic, group = unique("metered"), unique("group")
    handled: list[int] = []

    async def flaky(msg: dict, ctx: MessageContext) -> None:
        if ctx.redelivery_count == 0 and msg["n"] == 1:
            raise RuntimeError("first delivery fails")
        handled.append(msg["n"])

    options = SubscribeOptions(backoff=Backoff(initial=0.01))
    await broker.subscribe(topic, flaky, group=group, options=options)
    await broker.publish(topic, {"n": 1})
    await broker.publish(topic, {"n": 2})
    await broker.publish(topic, b"\xff not json", headers={"content-type": "application/json"})
    await broker.publish_batch(topic, [{"n": 3}, {"n": 4}])

    def settled() -> bool:
        return total(metric_points(reader), "messaging.client.consumed.messages") >= 6

    await eventually(settled)
    await broker.close(timeout=5)
    points = metric_points(reader)
    where = {"messaging.destination.name": topic, "messaging.consumer.group.name": group}
    assert total(points, "messaging.client.sent.messages",
                 **{"messaging.destination.name": topic}) == 5
    assert total(points, "messaging.client.acked.messages", **where) == 4
    assert total(points, "messaging.client.redelivered.messages", **where) == 1
    assert total(points, "messaging.client.dead_lettered.messages", **where) == 1
    assert total(points, "messaging.process.in_flight", **where) == 0
    durations = points["messaging.process.duration"]
    assert sum(p.count for p in durations) == 5  # handler runs: the bad payload never got one
    assert [p.sum for p in points["messaging.batch.size"]] == [2]


async def test_a_batch_has_one_consumer_span_linked_to_every_producer_span(
    tracing: Any,
) -> None:
    provider, exporter = tracing
    broker = MemoryBroker()
    broker.middleware.append(TracingMiddleware("memory", tracer_provider=provider))
    await broker.connect()
    topic, group = unique("traced-batch"), unique("group")
    batches: list[list[dict[str, int]]] = []

    async def handle(batch: list[dict[str, int]], ctx: BatchContext) -> None:
        batches.append(batch)

    await broker.subscribe_batch(
        topic, handle, group=group, batch=BatchOptions(max_size=3, max_wait=1.0)
    )
    tracer = provider.get_tracer("test")
    requests = []
    for n in range(3):
        with tracer.start_as_current_span(f"request {n}") as request:
            requests.append(request)
            await broker.publish(topic, {"n": n})
    await eventually(lambda: sum(map(len, batches)) == 3)
    await broker.close(timeout=5)

    assert len(batches) == 1
    spans = exporter.get_finished_spans()
    producers = [s for s in spans if s.name == f"send {topic}"]
    consumers = [s for s in spans if s.name == f"process {topic}"]
    assert len(producers) == 3 and len(consumers) == 1
    consumer = consumers[0]
    assert consumer.kind is SpanKind.CONSUMER
    first = next(p for p in producers if p.attributes and p.parent
                 and p.parent.span_id == requests[0].get_span_context().span_id)
    assert consumer.parent is not None and consumer.parent.span_id == first.context.span_id
    assert {link.context.span_id for link in consumer.links} == {
        p.context.span_id for p in producers
    }
    assert consumer.attributes is not None
    assert consumer.attributes["messaging.batch.message_count"] == 3
    assert consumer.attributes["messaging.consumer.group.name"] == group


async def test_batch_metrics_count_each_message_and_time_each_batch() -> None:
    reader = InMemoryMetricReader()
    broker = MemoryBroker()
    broker.middleware.append(MetricsMiddleware("memory", MeterProvider(metric_readers=[reader])))
    await broker.connect()
    topic, group = unique("metered-batch"), unique("group")
    calls: list[int] = []

    async def handle(batch: list[dict[str, int]], ctx: BatchContext) -> BatchResult:
        calls.append(len(batch))
        retry = [i for i, m in enumerate(ctx.messages) if m.redelivery_count == 0
                 and batch[i]["n"] == 1]
        return BatchResult(retry=retry)

    options = SubscribeOptions(backoff=Backoff(initial=0.01))
    await broker.subscribe_batch(topic, handle, group=group, options=options,
                                 batch=BatchOptions(max_size=10, max_wait=0.2))
    await broker.publish_batch(topic, [{"n": 0}, {"n": 1}])
    await broker.publish(topic, b"\xff not json", headers={"content-type": "application/json"})

    def settled() -> bool:
        return total(metric_points(reader), "messaging.client.consumed.messages") >= 4

    await eventually(settled)
    await broker.close(timeout=5)
    points = metric_points(reader)
    where = {"messaging.destination.name": topic, "messaging.consumer.group.name": group}
    assert total(points, "messaging.client.acked.messages", **where) == 2
    assert total(points, "messaging.client.redelivered.messages", **where) == 1
    assert total(points, "messaging.client.dead_lettered.messages", **where) == 1
    durations = [p for p in points["messaging.process.duration"]
                 if p.attributes.get("messaging.destination.name") == topic]
    assert sum(p.count for p in durations) == len(calls)  # one per batch, not per message
    sizes = [p for p in points["messaging.batch.size"]
             if p.attributes.get("messaging.consumer.group.name") == group]
    assert sum(p.sum for p in sizes) == sum(calls) == 3


def test_exporters_by_configuration(tmp_path: Path) -> None:
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    from brokerline.telemetry import otlp_http_endpoint, span_processor

    assert span_processor(TelemetryConfig(exporter="none")) is None
    assert isinstance(span_processor(TelemetryConfig(exporter="console")), BatchSpanProcessor)
    spans = tmp_path / "spans.jsonl"
    processor = span_processor(TelemetryConfig(exporter="file", file=str(spans)))
    assert isinstance(processor, SimpleSpanProcessor)
    provider = TracerProvider()
    provider.add_span_processor(processor)
    with provider.get_tracer("test").start_as_current_span("one"):
        pass
    assert json.loads(spans.read_text())["name"] == "one"
    for protocol, port in [("grpc", 4317), ("http/protobuf", 4318)]:
        otlp = span_processor(
            TelemetryConfig(exporter="otlp", protocol=protocol, endpoint=f"http://collector:{port}"))
        assert isinstance(otlp, BatchSpanProcessor)
        otlp.shutdown()
    # OTEL_EXPORTER_OTLP_ENDPOINT is a base URL: the HTTP exporter needs the signal's path
    assert otlp_http_endpoint("http://c:4318", "traces") == "http://c:4318/v1/traces"
    assert otlp_http_endpoint("http://c:4318/v1/traces", "traces") == "http://c:4318/v1/traces"
    assert otlp_http_endpoint("", "traces") is None


def test_log_lines_carry_the_trace_and_span_ids(tracing: Any) -> None:
    provider, _ = tracing
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(TraceContextFilter())
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger(unique("test.logs"))
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.INFO)
    with provider.get_tracer("test").start_as_current_span("call") as span:
        logger.info("inside %s", "the call")
    logger.info("outside")
    inside, outside = (json.loads(line) for line in stream.getvalue().splitlines())
    context = span.get_span_context()
    assert inside["message"] == "inside the call"
    assert inside["trace_id"] == format(context.trace_id, "032x")
    assert inside["span_id"] == format(context.span_id, "016x")
    assert "trace_id" not in outside
    handler.setFormatter(TextFormatter())
    with provider.get_tracer("test").start_as_current_span("call") as span:
        logger.warning("text line")
    assert f"trace_id={format(span.get_span_context().trace_id, '032x')}" in stream.getvalue()


def test_ids_only_tracer_continues_the_parent_trace() -> None:
    """With no exporter, spans are ids only: the trace, its sampled flag and new span ids."""
    from opentelemetry import propagate, trace

    from brokerline.trace_ids import IdsOnlyTracerProvider

    tracer = IdsOnlyTracerProvider(1.0).get_tracer("test")
    headers: dict[str, str] = {}
    with tracer.start_as_current_span("root") as root:
        assert trace.get_current_span() is root
        propagate.inject(headers)
    parent = root.get_span_context()
    assert parent.is_valid and parent.trace_flags.sampled and not root.is_recording()
    with tracer.start_as_current_span("child", context=propagate.extract(headers)) as child:
        pass
    assert child.get_span_context().trace_id == parent.trace_id
    assert child.get_span_context().span_id != parent.span_id
    assert child.get_span_context().trace_flags.sampled
    unsampled = IdsOnlyTracerProvider(0.0).get_tracer("test").start_span("root")
    assert unsampled.get_span_context().is_valid
    assert not unsampled.get_span_context().trace_flags.sampled


@pytest.fixture(scope="session")
def app_spans() -> Iterator[InMemorySpanExporter]:
    """The process's telemetry (set once per process, as in `serve`), spans kept in memory."""
    exporter = InMemorySpanExporter()
    setup_telemetry(TelemetryConfig(exporter="none"), "brokerline-test",
                    span_processors=[SimpleSpanProcessor(exporter)])
    yield exporter
    exporter.clear()


async def test_a_batched_write_is_a_span_inside_the_batch_span(
    app_spans: InMemorySpanExporter,
) -> None:
    from brokerline.sql.batcher import RowBatchWriter  # the sql extra

    written: list[list[int]] = []

    async def write(rows: list[int]) -> None:
        written.append(rows)

    writer: RowBatchWriter[int] = RowBatchWriter(write)
    with trace.get_tracer("test").start_as_current_span("process batch") as batch_span:
        assert await writer.write([0, 1, 2]) == {}
    assert written == [[0, 1, 2]]
    span = next(s for s in app_spans.get_finished_spans() if s.name == "write batch"
                and s.attributes and s.attributes.get("db.operation.batch.size") == 3)
    assert span.parent is not None
    assert span.parent.span_id == batch_span.get_span_context().span_id
