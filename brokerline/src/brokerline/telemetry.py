"""OpenTelemetry for one process: providers, exporters, and the instrumentation hooks.

`setup_telemetry()` installs the global tracer and meter providers from `TelemetryConfig`
(OpenTelemetry allows that once per process, so later calls return the first set-up). The
hooks below (`broker_middleware`, `grpc_*_interceptors`, `instrument_engine`) only use the
global API, so they work before, after or without a set-up (then every span is a no-op).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from prometheus_client import CollectorRegistry, ProcessCollector

from brokerline.config import TelemetryConfig
from brokerline.core import Middleware
from brokerline.core.metrics import MetricsMiddleware
from brokerline.core.tracing import TracingMiddleware
from brokerline.trace_ids import IdsOnlyTracerProvider

log = logging.getLogger(__name__)

@dataclass
class Telemetry:
    # the SDK's when spans are exported, else one that only hands out ids (see trace_ids)
    tracer_provider: TracerProvider | IdsOnlyTracerProvider
    meter_provider: MeterProvider
    registry: CollectorRegistry  # what /metrics serves

    def shutdown(self) -> None:
        """Flush and close the exporters (call once, when the process ends)."""
        self.tracer_provider.shutdown()
        self.meter_provider.shutdown()


_current: Telemetry | None = None
_lock = threading.Lock()


def current() -> Telemetry | None:
    return _current


def service_name(app_name: str, role: str) -> str:
    """`report-pipeline-saver` for one role; the app name for the all-in-one `dev`."""
    return app_name if role == "all" else f"{app_name}-{role}"


def service_version(cfg: TelemetryConfig, distribution: str) -> str:
    if cfg.service_version:
        return cfg.service_version
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:  # run from a source tree
        return "0.0.0"


def setup_telemetry(
    cfg: TelemetryConfig,
    service_name: str,
    span_processors: Sequence[SpanProcessor] = (),
    distribution: str = "",
) -> Telemetry:
    """Install the process's tracer and meter providers (once; later calls return it).

    `distribution` is the service's installed distribution, whose version is reported when
    `telemetry.service_version` is empty (default: `service_name`).

    `span_processors` are added to the configured exporter's (tests keep spans in memory).
    """
    global _current
    with _lock:
        if _current is not None:
            return _current
        resource = Resource.create({
            "service.name": cfg.service_name or service_name,
            "service.version": service_version(cfg, distribution or service_name),
            "service.instance.id": f"{socket.gethostname()}-{os.getpid()}",
        })
        # ParentBased: a call that arrives sampled (or not) stays so across every process.
        processors = [p for p in (span_processor(cfg), *span_processors) if p is not None]
        tracer_provider = recording_provider(cfg, resource, processors) if processors else (
            IdsOnlyTracerProvider(cfg.sampling_ratio))
        registry = CollectorRegistry()
        ProcessCollector(registry=registry)  # process_cpu_seconds_total, memory, open fds
        readers = metric_readers(cfg, registry)
        meter_provider = MeterProvider(resource=resource, metric_readers=readers)
        trace.set_tracer_provider(tracer_provider)
        metrics.set_meter_provider(meter_provider)
        _current = Telemetry(tracer_provider, meter_provider, registry)
        # the endpoint only, never OTEL_EXPORTER_OTLP_HEADERS: those carry API keys
        log.debug("telemetry: exporter %s %s, sampling %.2f", cfg.exporter,
                  cfg.endpoint or "", cfg.sampling_ratio)
        return _current


def recording_provider(
    cfg: TelemetryConfig, resource: Resource, processors: Sequence[SpanProcessor]
) -> TracerProvider:
    sampler = ParentBased(TraceIdRatioBased(cfg.sampling_ratio))
    provider = TracerProvider(resource=resource, sampler=sampler)
    for processor in processors:
        provider.add_span_processor(processor)
    return provider


def span_processor(cfg: TelemetryConfig) -> SpanProcessor | None:
    if cfg.exporter == "console":
        return BatchSpanProcessor(ConsoleSpanExporter())
    if cfg.exporter == "file":
        # synchronous: each span is on disk when it ends (a debugging and test exporter)
        return SimpleSpanProcessor(JsonLinesSpanExporter(cfg.file))
    if cfg.exporter == "otlp":
        return BatchSpanProcessor(otlp_span_exporter(cfg))
    return None


def otlp_span_exporter(cfg: TelemetryConfig) -> SpanExporter:
    if cfg.protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter(endpoint=cfg.endpoint or None)
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
        OTLPSpanExporter as HttpSpanExporter,
    )

    return HttpSpanExporter(endpoint=otlp_http_endpoint(cfg.endpoint, "traces"))


def otlp_http_endpoint(base: str, signal: str) -> str | None:
    # OTEL_EXPORTER_OTLP_ENDPOINT is a base URL; an explicit endpoint is used verbatim
    if not base:
        return None
    return base if base.rstrip("/").endswith(f"/v1/{signal}") else f"{base.rstrip('/')}/v1/{signal}"


def metric_readers(cfg: TelemetryConfig, registry: CollectorRegistry) -> list[MetricReader]:
    from opentelemetry.exporter.prometheus import PrometheusMetricReader

    readers: list[MetricReader] = [PrometheusMetricReader(registry=registry)]
    if cfg.exporter == "otlp":  # a collector gets the metrics too
        from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

        if cfg.protocol == "grpc":
            from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import (
                OTLPMetricExporter,
            )

            exporter: Any = OTLPMetricExporter(endpoint=cfg.endpoint or None)
        else:
            from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
                OTLPMetricExporter as HttpMetricExporter,
            )

            exporter = HttpMetricExporter(endpoint=otlp_http_endpoint(cfg.endpoint, "metrics"))
        readers.append(PeriodicExportingMetricReader(exporter))
    return readers


class JsonLinesSpanExporter(SpanExporter):
    """Appends each span as one compact JSON object per line (OpenTelemetry's JSON shape)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        lines = "".join(json.dumps(json.loads(s.to_json(indent=None))) + "\n" for s in spans)
        with self._lock, self.path.open("a", encoding="utf-8") as out:
            out.write(lines)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass


# -- instrumentation hooks (global API: no-ops until set-up) -------------------------------


def broker_middleware(system: str) -> list[Middleware]:
    """Tracing first (outermost), so metrics and logging run inside the consumer span."""
    return [TracingMiddleware(system), MetricsMiddleware(system)]


def grpc_server_interceptors() -> list[Any]:
    from opentelemetry.instrumentation.grpc import aio_server_interceptor, filters

    # probes call the health service every few seconds: not worth a trace each
    return [aio_server_interceptor(filter_=filters.negate(filters.health_check()))]


def grpc_client_interceptors() -> list[Any]:
    from opentelemetry.instrumentation.grpc import aio_client_interceptors

    return list(aio_client_interceptors())


def instrument_engine(engine: Any) -> None:
    """Database spans (one per statement, the SQL without its parameters) for an engine.

    `SQLAlchemyInstrumentor().instrument(engine=...)` works once per process; the app and the
    tests open several engines, so each gets its own EngineTracer, as that call would make.
    """
    from opentelemetry.instrumentation.sqlalchemy import __version__
    from opentelemetry.instrumentation.sqlalchemy.engine import EngineTracer

    name = "opentelemetry.instrumentation.sqlalchemy"
    tracer = trace.get_tracer(name, __version__)
    usage = metrics.get_meter(name, __version__).create_up_down_counter(
        "db.client.connections.usage", unit="connections",
        description="Connections by state (idle, used)",
    )
    sync_engine = getattr(engine, "sync_engine", engine)  # AsyncEngine or Engine
    EngineTracer(tracer, sync_engine, usage)
