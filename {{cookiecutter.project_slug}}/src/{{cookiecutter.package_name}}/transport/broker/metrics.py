"""Metrics middleware: message counters, handler duration and in-flight handlers.

Instruments (OpenTelemetry names; a Prometheus exporter turns dots into underscores and adds
`_total` to counters and the unit to the histogram):

| instrument                               | kind           | what                           |
|------------------------------------------|----------------|--------------------------------|
| messaging.client.sent.messages           | counter        | messages published             |
| messaging.client.consumed.messages       | counter        | deliveries processed           |
| messaging.client.acked.messages          | counter        | deliveries acked (handled)     |
| messaging.client.redelivered.messages    | counter        | deliveries handed back to retry|
| messaging.client.dead_lettered.messages  | counter        | deliveries sent to the DLQ     |
| messaging.process.duration               | histogram (s)  | handler duration               |
| messaging.process.in_flight              | up-down counter| handlers running now           |
| messaging.batch.size                     | histogram      | messages per publish_batch     |

Attributes: `messaging.system`, `messaging.destination.name` (the topic) and, on the consumer
side, `messaging.consumer.group.name`. Only the OpenTelemetry API is used.
"""

from __future__ import annotations

import time
from typing import Any

from opentelemetry import metrics
from opentelemetry.metrics import MeterProvider

from .base import Envelope, Handler, MessageContext
from .middleware import Middleware, Settlement
from .tracing import CONSUMER_GROUP, DESTINATION, SYSTEM

#: handler durations from 1 ms to 60 s (the SDK's default buckets are in milliseconds)
DURATION_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
BATCH_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)


class MetricsMiddleware(Middleware):
    def __init__(self, system: str, meter_provider: MeterProvider | None = None) -> None:
        self.system = system
        meter = metrics.get_meter(__name__, meter_provider=meter_provider)
        unit = "{message}"
        self.sent = meter.create_counter(
            "messaging.client.sent.messages", unit, "Messages published")
        self.consumed = meter.create_counter(
            "messaging.client.consumed.messages", unit, "Deliveries processed")
        self.settled = {
            "ack": meter.create_counter(
                "messaging.client.acked.messages", unit, "Deliveries acked"),
            "redeliver": meter.create_counter(
                "messaging.client.redelivered.messages", unit,
                "Deliveries handed back for redelivery"),
            "dead_letter": meter.create_counter(
                "messaging.client.dead_lettered.messages", unit, "Deliveries dead-lettered"),
        }
        self.duration = meter.create_histogram(
            "messaging.process.duration", "s", "Handler duration",
            explicit_bucket_boundaries_advisory=list(DURATION_BUCKETS))
        self.in_flight = meter.create_up_down_counter(
            "messaging.process.in_flight", unit, "Handlers running")
        self.batch_size = meter.create_histogram(
            "messaging.batch.size", unit, "Messages per batch",
            explicit_bucket_boundaries_advisory=list(BATCH_BUCKETS))

    def _attributes(self, topic: str, group: str | None = None) -> dict[str, str]:
        attributes = {SYSTEM: self.system, DESTINATION: topic}
        if group:
            attributes[CONSUMER_GROUP] = group
        return attributes

    def on_publish(self, envelope: Envelope) -> Envelope:
        self.sent.add(1, self._attributes(envelope.topic))
        return envelope

    def on_publish_batch(self, envelopes: list[Envelope]) -> list[Envelope]:
        if envelopes:
            self.batch_size.record(len(envelopes), self._attributes(envelopes[0].topic))
        return super().on_publish_batch(envelopes)

    def wrap_handler(self, handler: Handler, topic: str, group: str | None) -> Handler:
        attributes = self._attributes(topic, group)
        duration, in_flight = self.duration, self.in_flight

        async def measured(msg: Any, ctx: MessageContext) -> Any:
            in_flight.add(1, attributes)
            started = time.perf_counter()
            outcome = "ok"
            try:
                return await handler(msg, ctx)
            except BaseException as exc:
                outcome = type(exc).__name__
                raise
            finally:
                in_flight.add(-1, attributes)
                extra = {} if outcome == "ok" else {"error.type": outcome}
                duration.record(time.perf_counter() - started, {**attributes, **extra})

        return measured

    def on_settle(self, topic: str, group: str | None, settlement: Settlement) -> None:
        attributes = self._attributes(topic, group)
        self.consumed.add(1, attributes)
        self.settled[settlement].add(1, attributes)

    def record_batch(self, topic: str, size: int, group: str | None = None) -> None:
        """For code that handles messages in batches (e.g. a saver writing N rows at once)."""
        self.batch_size.record(size, self._attributes(topic, group))
