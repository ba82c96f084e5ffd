"""Tracing, metrics and logs in one process: middleware on the memory broker, then the whole
report -> broker -> saver pipeline with the app's own telemetry set-up and /metrics endpoint."""

from __future__ import annotations

{% if cookiecutter.include_sample -%}
import asyncio
{% endif -%}
import io
import json
import logging
{% if cookiecutter.include_sample -%}
import urllib.request
from collections.abc import AsyncIterator, Iterator
{% endif -%}
from pathlib import Path
from typing import Any

{% if cookiecutter.include_sample -%}
import grpc
{% endif -%}
import pytest
{% if cookiecutter.include_sample -%}
from brokerline.config import TelemetryConfig
{% endif -%}
from brokerline.core import MessageContext
from brokerline.core.metrics import MetricsMiddleware
from brokerline.core.tracing import TracingMiddleware
from brokerline.logs import JsonFormatter, TextFormatter, TraceContextFilter
from brokerline.memory.broker import MemoryBroker
{% if cookiecutter.include_sample -%}
from brokerline.telemetry import setup_telemetry
{% endif -%}
from brokerline.testing.brokers import eventually, unique
{% if cookiecutter.include_sample -%}
from opentelemetry import trace
{% endif -%}
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import {% if cookiecutter.include_sample %}ReadableSpan, {% endif %}TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
{%- if cookiecutter.include_sample %}

from {{ cookiecutter.package_name }}.conf import load_config
{%- endif %}


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

    from brokerline.core import Backoff, SubscribeOptions

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


def test_telemetry_settings_from_the_standard_environment_names() -> None:
    from {{ cookiecutter.package_name }}.conf import load_config as load

    config = load(environ={
        "OTEL_TRACES_EXPORTER": "OTLP",
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_TRACES_SAMPLER_ARG": "0.25",
        "OTEL_SERVICE_NAME": "reports",
        "OTEL_EXPORTER_PROMETHEUS_PORT": "9464",
        "LOG_FORMAT": "json",
    }, path=None)
    t = config.telemetry
    assert (t.exporter, t.protocol) == ("otlp", "http/protobuf")
    assert t.endpoint == "http://collector:4318"
    assert (t.sampling_ratio, t.service_name, t.metrics_port, t.log_format) == (
        0.25, "reports", 9464, "json")


def test_exporters_by_configuration(tmp_path: Path) -> None:
    from brokerline.config import TelemetryConfig as Config
    from brokerline.telemetry import otlp_http_endpoint, span_processor
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    assert span_processor(Config(exporter="none")) is None
    assert isinstance(span_processor(Config(exporter="console")), BatchSpanProcessor)
    spans = tmp_path / "spans.jsonl"
    processor = span_processor(Config(exporter="file", file=str(spans)))
    assert isinstance(processor, SimpleSpanProcessor)
    provider = TracerProvider()
    provider.add_span_processor(processor)
    with provider.get_tracer("test").start_as_current_span("one"):
        pass
    assert json.loads(spans.read_text())["name"] == "one"
    for protocol, port in [("grpc", 4317), ("http/protobuf", 4318)]:
        otlp = span_processor(
            Config(exporter="otlp", protocol=protocol, endpoint=f"http://collector:{port}"))
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
    from brokerline.trace_ids import IdsOnlyTracerProvider
    from opentelemetry import propagate, trace

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


{%- if cookiecutter.include_sample %}


# -- the whole pipeline, with the process-wide set-up the CLI does ---------------------------


@pytest.fixture(scope="session")
def app_spans() -> Iterator[InMemorySpanExporter]:
    """The process's telemetry (set once per process, as in `serve`), spans kept in memory."""
    exporter = InMemorySpanExporter()
    setup_telemetry(TelemetryConfig(exporter="none"), "report-pipeline-test",
                    span_processors=[SimpleSpanProcessor(exporter)])
    yield exporter
    exporter.clear()


@pytest.fixture
async def pipeline(app_spans: InMemorySpanExporter, tmp_path: Path) -> AsyncIterator[Any]:
    """Report and saver in one App on the memory broker, plus the ops server on a free port."""
    from brokerline.core.embedded import free_port

    from {{ cookiecutter.package_name }}.containers import build_app

    config = load_config(environ={}, overrides={
        "broker": {"type": "memory"},
        "database": {"url": f"sqlite+aiosqlite:///{tmp_path / 'obs.db'}"},
        "grpc": {"address": f"127.0.0.1:{free_port()}"},
        "telemetry": {"metrics_port": free_port(), "health_interval": 0.2},
        "shutdown_timeout": 5,
    })
    app = await build_app(config, "all")
    await app.start()
    yield config, app.servers[-1]  # build_app adds the ops server last
    await app.stop()  # and its resources


def http_get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def one_trace(spans: list[ReadableSpan], trace_id: int) -> list[ReadableSpan]:
    return [s for s in spans if s.context.trace_id == trace_id]


async def test_one_trace_from_the_grpc_call_to_the_row(
    pipeline: Any, app_spans: InMemorySpanExporter
) -> None:
    from brokerline.telemetry import grpc_client_interceptors

    from {{ cookiecutter.package_name }}.api.report.v1 import report_pb2, report_pb2_grpc

    config, _ops = pipeline
    log_lines = io.StringIO()
    handler = logging.StreamHandler(log_lines)
    handler.addFilter(TraceContextFilter())
    handler.setFormatter(JsonFormatter())
    broker_log = logging.getLogger("broker")
    broker_log.addHandler(handler)
    level, broker_log.level = broker_log.level, logging.DEBUG
    try:
        async with grpc.aio.insecure_channel(
            config.grpc.address, interceptors=grpc_client_interceptors()
        ) as channel:
            stub = report_pb2_grpc.ReportServiceStub(channel)
            reply = await stub.PostReport(
                report_pb2.PostReportRequest(user_id="u1", event_name="click", content="{}"))
        assert reply.code == 0

        def spans() -> list[ReadableSpan]:
            return list(app_spans.get_finished_spans())

        def server_span() -> ReadableSpan | None:
            return next((s for s in spans() if s.kind is SpanKind.SERVER
                         and s.name.endswith("/PostReport")), None)

        await eventually(lambda: server_span() is not None)
        server = server_span()
        assert server is not None
        topic = config.topics.report

        def inserted() -> bool:
            return any(s.kind is SpanKind.CLIENT and "INSERT" in s.name
                       for s in one_trace(spans(), server.context.trace_id))

        await eventually(inserted)
    finally:
        broker_log.removeHandler(handler)
        broker_log.level = level
    trace_spans = one_trace(spans(), server.context.trace_id)
    names = {s.name for s in trace_spans}
    assert f"send {topic}" in names and f"process {topic}" in names, names
    client = next(s for s in trace_spans if s.kind is SpanKind.CLIENT and "PostReport" in s.name)
    assert server.parent is not None and server.parent.span_id == client.context.span_id
    # the lines logged inside the handler carry the consumer span's ids
    consumer_ids = {format(s.context.span_id, "016x") for s in trace_spans
                    if s.kind is SpanKind.CONSUMER}
    handled = [json.loads(line) for line in log_lines.getvalue().splitlines()]
    handled = [r for r in handled if r["message"].startswith("handled")]
    trace_hex = format(server.context.trace_id, "032x")
    assert any(r.get("trace_id") == trace_hex and r.get("span_id") in consumer_ids
               for r in handled), handled


async def test_a_batched_write_links_to_the_span_of_every_message(
    app_spans: InMemorySpanExporter,
) -> None:
    from brokerline.sql.batcher import BatchWriter

    written: list[list[int]] = []

    async def write(rows: list[int]) -> None:
        written.append(rows)

    writer: BatchWriter[int] = BatchWriter(write, max_size=3, max_delay=5)
    tracer = trace.get_tracer("test")
    handlers: list[trace.Span] = []

    async def handle(n: int) -> None:
        with tracer.start_as_current_span(f"handler {n}") as span:
            handlers.append(span)
            await writer.add(n)

    await asyncio.gather(*(handle(n) for n in range(3)))
    assert written == [[0, 1, 2]]
    batch = next(s for s in app_spans.get_finished_spans() if s.name == "write batch"
                 and s.attributes and s.attributes.get("db.operation.batch.size") == 3
                 and {link.context.span_id for link in s.links}
                 == {h.get_span_context().span_id for h in handlers})
    assert batch.parent is not None  # inside the handler that sealed the batch
    assert batch.parent.span_id in {h.get_span_context().span_id for h in handlers}


async def test_metrics_and_probes_over_http(pipeline: Any) -> None:
    from {{ cookiecutter.package_name }}.api.report.v1 import report_pb2, report_pb2_grpc

    config, ops = pipeline
    base = f"http://127.0.0.1:{ops.port}"
    assert (await asyncio.to_thread(http_get, f"{base}/healthz"))[0] == 200
    status, body = await asyncio.to_thread(http_get, f"{base}/readyz")
    assert status == 200 and json.loads(body)["checks"] == {
        "broker": "up", "database": "up", "subscriptions": "up"}
    assert (await asyncio.to_thread(http_get, f"{base}/nope"))[0] == 404

    topic = config.topics.report

    async def acked() -> float:
        _, text = await asyncio.to_thread(http_get, f"{base}/metrics")
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith("messaging_client_acked_messages_total{")
                   and f'messaging_destination_name="{topic}"' in line)

    before = await acked()
    async with grpc.aio.insecure_channel(config.grpc.address) as channel:
        stub = report_pb2_grpc.ReportServiceStub(channel)
        for n in range(3):
            await stub.PostReport(
                report_pb2.PostReportRequest(user_id=f"u{n}", event_name="e", content="{}"))

    async def moved() -> bool:
        return await acked() >= before + 3

    await eventually(moved)
    _, text = await asyncio.to_thread(http_get, f"{base}/metrics")
    for name in ("messaging_client_sent_messages_total", "messaging_client_consumed_messages_total",
                 "messaging_process_duration_seconds_bucket", "messaging_process_in_flight"):
        assert name in text, name
{%- endif %}
