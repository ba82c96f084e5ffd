"""Tracing middleware: W3C trace context through the broker, OpenTelemetry messaging spans.

On publish, a PRODUCER span `send <topic>` is opened as a child of the caller's span (a gRPC
call, say) and its context is written into the message headers (`traceparent`, `tracestate`),
which the plugins carry as NATS headers or Pulsar properties. On consume, the context is read
back and the handler runs inside a CONSUMER span `process <topic>` whose parent is that
producer span, so one trace follows a request across processes. A batch handler runs inside
one CONSUMER span `process <topic>` per batch, linked (span links) to the producer span of
every message in it; a span has one parent, so its parent is the first message's producer
span: a message handled alone (and the first of each batch) keeps one trace from request to
database, the others are reached through the links. Attribute names follow the OpenTelemetry
messaging semantic conventions.

Only the OpenTelemetry API is used: without an SDK configured, every span is a no-op.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.trace import Link, SpanKind, TracerProvider

from brokerline.core.base import Envelope, Handler, MessageContext
from brokerline.core.middleware import Middleware

if TYPE_CHECKING:
    from brokerline.core.batch import BatchContext, BatchHandler

SYSTEM = "messaging.system"
DESTINATION = "messaging.destination.name"
OPERATION_TYPE = "messaging.operation.type"
OPERATION_NAME = "messaging.operation.name"
MESSAGE_ID = "messaging.message.id"
BODY_SIZE = "messaging.message.body.size"
CONSUMER_GROUP = "messaging.consumer.group.name"
#: not (yet) a generic convention; named like the broker-specific `...delivery_count` ones
DELIVERY_COUNT = "messaging.message.delivery_count"
BATCH_COUNT = "messaging.batch.message_count"


class TracingMiddleware(Middleware):
    """Opens producer and consumer spans and carries their context in the message headers.

    Put it first in `broker.middleware` so that everything after it, logging included, runs
    inside the consumer span.
    """

    def __init__(self, system: str, tracer_provider: TracerProvider | None = None) -> None:
        self.system = system
        self.tracer = trace.get_tracer(__name__, tracer_provider=tracer_provider)

    def on_publish(self, envelope: Envelope) -> Envelope:
        headers = dict(envelope.headers)
        # The span marks the hand-over to the broker; its context is what consumers continue.
        with self.tracer.start_as_current_span(
            f"send {envelope.topic}", kind=SpanKind.PRODUCER
        ) as span:
            if span.is_recording():  # attributes only for spans that are kept
                span.set_attributes({
                    SYSTEM: self.system,
                    DESTINATION: envelope.topic,
                    OPERATION_TYPE: "send",
                    OPERATION_NAME: "send",
                    BODY_SIZE: len(envelope.payload),
                })
            propagate.inject(headers)
        return replace(envelope, headers=headers)

    def _process_attributes(self, topic: str, group: str | None) -> dict[str, Any]:
        base: dict[str, Any] = {
            SYSTEM: self.system,
            DESTINATION: topic,
            OPERATION_TYPE: "process",
            OPERATION_NAME: "process",
        }
        if group:
            base[CONSUMER_GROUP] = group
        return base

    def wrap_handler(self, handler: Handler, topic: str, group: str | None) -> Handler:
        tracer = self.tracer
        name = f"process {topic}"
        base = self._process_attributes(topic, group)

        async def traced(msg: Any, ctx: MessageContext) -> Any:
            parent = propagate.extract(ctx.headers)
            with tracer.start_as_current_span(name, context=parent, kind=SpanKind.CONSUMER) as span:
                if span.is_recording():  # attributes only for spans that are kept
                    span.set_attributes({
                        **base, MESSAGE_ID: ctx.message_id,
                        DELIVERY_COUNT: ctx.redelivery_count + 1,
                    })
                return await handler(msg, ctx)

        return traced

    def wrap_batch_handler(
        self, handler: BatchHandler, topic: str, group: str | None
    ) -> BatchHandler:
        tracer = self.tracer
        name = f"process {topic}"
        base = self._process_attributes(topic, group)

        async def traced(batch: list[Any], ctx: BatchContext) -> Any:
            parent: Context | None = None
            links = []
            for message in ctx.messages:  # the W3C header this middleware's publish writes
                if "traceparent" in message.headers:
                    context = propagate.extract(message.headers)
                    parent = parent or context
                    links.append(Link(trace.get_current_span(context).get_span_context()))
            with tracer.start_as_current_span(
                name, context=parent or Context(), kind=SpanKind.CONSUMER, links=links
            ) as span:
                if span.is_recording():
                    span.set_attributes({**base, BATCH_COUNT: len(batch)})
                return await handler(batch, ctx)

        return traced
