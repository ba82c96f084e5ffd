"""Telemetry of the service: its settings from the standard OpenTelemetry environment names.
{% if cookiecutter.include_sample %}
Then the whole report -> broker -> saver pipeline, with the app's own telemetry set-up and its
/metrics endpoint.
{% endif %}
The library's middleware, exporters and log formatters are tested in brokerline.
"""

from __future__ import annotations
{% if cookiecutter.include_sample %}
import asyncio
import io
import json
import logging
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from brokerline.config import TelemetryConfig
from brokerline.logs import JsonFormatter, TraceContextFilter
from brokerline.telemetry import setup_telemetry
from brokerline.testing import eventually
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from {{ cookiecutter.package_name }}.conf import load_config
{% endif %}

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
        "http": {"address": f"127.0.0.1:{free_port()}"},
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
