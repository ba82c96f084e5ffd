"""Logging set-up: text or JSON lines, with the trace and span ids of the current span.

Every record logged inside a gRPC call or a subscriber handler carries `trace_id` and
`span_id` (the ids of the active OpenTelemetry span), so a log search by trace id finds the
lines of one request in every service. Log messages, not objects: the configuration, tokens
and passwords are never logged (a secret's length at most). As a backstop, both formats hide
the credentials of any URL in a line (nats://user:pass@host -> nats://***@host).
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

from opentelemetry import trace

from brokerline.core.urls import redact_text

TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


class TraceContextFilter(logging.Filter):
    """Adds `trace_id` and `span_id` (hex, or "" outside a span) to every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        context = trace.get_current_span().get_span_context()
        if context.is_valid:
            record.trace_id = format(context.trace_id, "032x")
            record.span_id = format(context.span_id, "016x")
        else:
            record.trace_id = record.span_id = ""
        return True


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        line = redact_text(super().format(record))
        trace_id = getattr(record, "trace_id", "")
        if trace_id:
            line += f" trace_id={trace_id} span_id={getattr(record, 'span_id', '')}"
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message, ids, exception."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": redact_text(record.getMessage()),
        }
        trace_id = getattr(record, "trace_id", "")
        if trace_id:
            data["trace_id"] = trace_id
            data["span_id"] = getattr(record, "span_id", "")
        if record.exc_info:
            data["exception"] = redact_text(self.formatException(record.exc_info))
        if record.stack_info:
            data["stack"] = self.formatStack(record.stack_info)
        return json.dumps(data, ensure_ascii=False, default=str)


def configure_logging(level: str, fmt: str = "text", stream: TextIO | None = None) -> None:
    """Route every logger to one stderr handler in the chosen format (replacing others)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(TraceContextFilter())
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(level.upper())
    quiet_driver_loggers()


#: libraries that stay at INFO whatever the level: aiosqlite's DEBUG lines carry every
#: statement's parameters (the rows: report contents), gRPC's one line per call ("Loaded
#: running loop") buries the service's own DEBUG lines
DRIVER_LOGGERS = ("aiosqlite", "grpc._cython")


def quiet_driver_loggers() -> None:
    for name in DRIVER_LOGGERS:
        logging.getLogger(name).setLevel(max(logging.INFO, logging.getLogger().level))
