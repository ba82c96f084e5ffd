"""A tracer provider for processes that export no spans: trace ids without recording.

With `telemetry.exporter: none` nothing would ever read a span, yet the ids still matter:
they go into every log line and, through the message headers, on to the next process, whose
spans (if it exports them) join the same trace. The SDK would build, sample and end a full
span per message for nobody; these spans only carry ids (the parent's trace id and flags, a
new span id), which costs a fraction of that on a busy subscriber.

A new trace (no parent) is marked sampled with probability `sampling_ratio`, so a downstream
process that exports spans records the same share of traces as if this one did.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import (
    INVALID_SPAN_ID,
    INVALID_TRACE_ID,
    Link,
    NonRecordingSpan,
    Span,
    SpanContext,
    SpanKind,
    TraceFlags,
)

SAMPLED = TraceFlags(TraceFlags.SAMPLED)
NOT_SAMPLED = TraceFlags(TraceFlags.DEFAULT)


class IdsOnlyTracer(trace.Tracer):
    def __init__(self, sampling_ratio: float) -> None:
        self._ratio = sampling_ratio
        self._random = random.Random()

    def _new_id(self, bits: int, invalid: int) -> int:
        value = self._random.getrandbits(bits)
        while value == invalid:
            value = self._random.getrandbits(bits)
        return value

    def start_span(
        self,
        name: str,
        context: otel_context.Context | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: Mapping[str, Any] | None = None,
        links: Sequence[Link] | None = None,
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
    ) -> Span:
        parent = trace.get_current_span(context).get_span_context()
        if parent.is_valid:
            trace_id, flags, state = parent.trace_id, parent.trace_flags, parent.trace_state
        else:
            trace_id = self._new_id(128, INVALID_TRACE_ID)
            flags = SAMPLED if self._random.random() < self._ratio else NOT_SAMPLED
            state = None
        span_id = self._new_id(64, INVALID_SPAN_ID)
        return NonRecordingSpan(
            SpanContext(trace_id, span_id, is_remote=False, trace_flags=flags, trace_state=state)
        )

    @contextmanager
    def start_as_current_span(  # type: ignore[override]  # the API types its own decorator
        self,
        name: str,
        context: otel_context.Context | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: Mapping[str, Any] | None = None,
        links: Sequence[Link] | None = None,
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
        end_on_exit: bool = True,
    ) -> Iterator[Span]:
        span = self.start_span(name, context)
        token = otel_context.attach(trace.set_span_in_context(span))
        try:
            yield span
        finally:
            otel_context.detach(token)


class IdsOnlyTracerProvider(trace.TracerProvider):
    def __init__(self, sampling_ratio: float = 1.0) -> None:
        self._tracer = IdsOnlyTracer(sampling_ratio)

    def get_tracer(self, *args: Any, **kwargs: Any) -> trace.Tracer:
        return self._tracer

    def shutdown(self) -> None:
        """Nothing to flush: no span is recorded."""
