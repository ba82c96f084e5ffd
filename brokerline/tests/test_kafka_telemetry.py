"""Traces and metrics through Apache Kafka: the W3C context rides in the record headers, and
the settlement counters count in-process retries like any redelivery."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from brokerline.core import Backoff, MessageContext, SubscribeOptions
from brokerline.core.metrics import MetricsMiddleware
from brokerline.core.tracing import TracingMiddleware
from brokerline.kafka.broker import KafkaBroker
from brokerline.testing.brokers import eventually, unique

Factory = Callable[..., Awaitable[KafkaBroker]]


def counter(reader: InMemoryMetricReader, name: str, topic: str) -> float:
    data = reader.get_metrics_data()
    points: list[Any] = [
        point
        for resource in (data.resource_metrics if data else [])
        for scope in resource.scope_metrics
        for metric in scope.metrics if metric.name == name
        for point in metric.data.data_points
    ]
    return sum(
        p.value for p in points if p.attributes.get("messaging.destination.name") == topic
    )


async def test_the_consumer_span_continues_the_producer_span_across_kafka(
    kafka_factory: Factory,
) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    broker = await kafka_factory()
    broker.middleware.append(TracingMiddleware("kafka", tracer_provider=provider))
    topic, group = unique("traced"), unique("g")
    seen: list[MessageContext] = []

    async def handler(msg: dict[str, int], ctx: MessageContext) -> None:
        seen.append(ctx)

    await broker.subscribe(topic, handler, group=group)
    with provider.get_tracer("test").start_as_current_span("request") as request:
        await broker.publish(topic, {"n": 1})
    await eventually(lambda: len(seen) == 1, timeout=20)
    await eventually(lambda: any(s.name == f"process {topic}"
                                 for s in exporter.get_finished_spans()))
    assert seen[0].headers["traceparent"].split("-")[1] == (
        f"{request.get_span_context().trace_id:032x}"
    )
    spans = {s.name: s for s in exporter.get_finished_spans()}
    producer, consumer = spans[f"send {topic}"], spans[f"process {topic}"]
    assert consumer.parent is not None and consumer.parent.span_id == producer.context.span_id
    assert consumer.attributes is not None
    assert consumer.attributes["messaging.system"] == "kafka"
    assert consumer.attributes["messaging.message.id"] == seen[0].message_id


async def test_metrics_count_sends_acks_and_in_process_retries(kafka_factory: Factory) -> None:
    reader = InMemoryMetricReader()
    broker = await kafka_factory()
    broker.middleware.append(MetricsMiddleware("kafka", MeterProvider(metric_readers=[reader])))
    topic = unique("metered")
    handled: list[int] = []

    async def flaky(msg: dict[str, int], ctx: MessageContext) -> None:
        if msg["n"] == 1 and ctx.redelivery_count == 0:
            raise RuntimeError("first delivery fails")
        handled.append(msg["n"])

    options = SubscribeOptions(backoff=Backoff(initial=0.01))
    await broker.subscribe(topic, flaky, group=unique("g"), options=options)
    await broker.publish_batch(topic, [{"n": 1}, {"n": 2}, {"n": 3}])
    await eventually(lambda: sorted(handled) == [1, 2, 3], timeout=20)
    await eventually(lambda: counter(reader, "messaging.client.acked.messages", topic) == 3)
    assert counter(reader, "messaging.client.sent.messages", topic) == 3
    assert counter(reader, "messaging.client.redelivered.messages", topic) == 1
