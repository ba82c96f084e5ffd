"""Metrics middleware: message counters, handler duration and in-flight handlers.

Instruments (OpenTelemetry names; a Prometheus exporter turns dots into underscores and adds
`_total` to counters and the unit to the histogram):

| instrument                               | kind           | what                           |
|------------------------------------------|----------------|--------------------------------|
| messaging.client.sent.messages           | counter*       | messages published             |
| messaging.client.consumed.messages       | counter*       | deliveries processed           |
| messaging.client.acked.messages          | counter*       | deliveries acked (handled)     |
| messaging.client.redelivered.messages    | counter*       | deliveries handed back to retry|
| messaging.client.dead_lettered.messages  | counter*       | deliveries sent to the DLQ     |
| messaging.process.duration               | histogram (s)  | handler duration               |
| messaging.process.in_flight              | up-down counter*| handlers running now          |
| messaging.batch.size                     | histogram      | messages per batch (sent, handled) |

A batch subscriber counts its messages one by one (consumed, acked, ...); the duration and
in-flight figures are per batch (one handler call), and each batch's size is recorded.

Attributes: `messaging.system`, `messaging.destination.name` (the topic) and, on the consumer
side, `messaging.consumer.group.name`. Only the OpenTelemetry API is used. (*) Observable
instruments: the counts are plain integers read at collection time, which keeps the per-message
cost of metrics to one histogram record.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, Meter, MeterProvider, Observation

from brokerline.core.base import Envelope, Handler
from brokerline.core.middleware import Middleware, Settlement
from brokerline.core.tracing import CONSUMER_GROUP, DESTINATION, SYSTEM

if TYPE_CHECKING:
    from brokerline.core.batch import BatchContext, BatchHandler

#: handler durations from 1 ms to 60 s (the SDK's default buckets are in milliseconds)
DURATION_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
BATCH_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)


_Key = tuple[str, str, "str | None"]  # (system, topic, group)


def _attributes(system: str, topic: str, group: str | None = None) -> dict[str, str]:
    attributes = {SYSTEM: system, DESTINATION: topic}
    if group:
        attributes[CONSUMER_GROUP] = group
    return attributes


class _Tally:
    """Counts per (system, topic, group) in a plain dict, reported when a reader collects.

    An SDK `Counter.add` per message hashes the attributes, takes a lock and offers an
    exemplar; an observable instrument reads these integers once per collection instead.
    """

    def __init__(self) -> None:
        self.counts: dict[_Key, int] = {}

    def add(self, key: _Key, amount: int = 1) -> None:
        self.counts[key] = self.counts.get(key, 0) + amount

    def observe(self, _options: CallbackOptions) -> Iterable[Observation]:
        for (system, topic, group), value in list(self.counts.items()):
            yield Observation(value, _attributes(system, topic, group))


class _Instruments:
    """One set per meter provider: a provider registers an observable name once, so every
    MetricsMiddleware of the process shares these tallies (as SDK counters would be shared)."""

    def __init__(self, meter: Meter) -> None:
        unit = "{message}"

        def counter(name: str, description: str) -> _Tally:
            tally = _Tally()
            meter.create_observable_counter(name, [tally.observe], unit, description)
            return tally

        self.sent = counter("messaging.client.sent.messages", "Messages published")
        self.consumed = counter("messaging.client.consumed.messages", "Deliveries processed")
        self.settled = {
            "ack": counter("messaging.client.acked.messages", "Deliveries acked"),
            "redeliver": counter("messaging.client.redelivered.messages",
                                 "Deliveries handed back for redelivery"),
            "dead_letter": counter("messaging.client.dead_lettered.messages",
                                   "Deliveries dead-lettered"),
        }
        self.in_flight = _Tally()
        meter.create_observable_up_down_counter(
            "messaging.process.in_flight", [self.in_flight.observe], unit, "Handlers running")
        self.duration = meter.create_histogram(
            "messaging.process.duration", "s", "Handler duration",
            explicit_bucket_boundaries_advisory=list(DURATION_BUCKETS))
        self.batch_size = meter.create_histogram(
            "messaging.batch.size", unit, "Messages per batch",
            explicit_bucket_boundaries_advisory=list(BATCH_BUCKETS))


_global: _Instruments | None = None  # on the process-wide provider (set once, or a proxy)


def _instruments(meter_provider: MeterProvider | None) -> _Instruments:
    global _global
    if meter_provider is not None:  # an explicit provider (tests): its own set
        return _Instruments(metrics.get_meter(__name__, meter_provider=meter_provider))
    if _global is None:
        _global = _Instruments(metrics.get_meter(__name__))
    return _global


class MetricsMiddleware(Middleware):
    def __init__(self, system: str, meter_provider: MeterProvider | None = None) -> None:
        self.system = system
        instruments = _instruments(meter_provider)
        self.sent, self.consumed = instruments.sent, instruments.consumed
        self.settled, self.in_flight = instruments.settled, instruments.in_flight
        self.duration, self.batch_size = instruments.duration, instruments.batch_size

    def _attributes(self, topic: str, group: str | None = None) -> dict[str, str]:
        return _attributes(self.system, topic, group)

    def on_publish(self, envelope: Envelope) -> Envelope:
        self.sent.add((self.system, envelope.topic, None))
        return envelope

    def on_publish_batch(self, envelopes: list[Envelope]) -> list[Envelope]:
        if envelopes:
            self.batch_size.record(len(envelopes), self._attributes(envelopes[0].topic))
            for envelope in envelopes:
                self.sent.add((self.system, envelope.topic, None))
        return envelopes

    def wrap_handler(self, handler: Handler, topic: str, group: str | None) -> Handler:
        return self._measured(handler, topic, group)

    def wrap_batch_handler(
        self, handler: BatchHandler, topic: str, group: str | None
    ) -> BatchHandler:
        attributes = self._attributes(topic, group)
        batch_size = self.batch_size
        measured = self._measured(handler, topic, group)

        async def sized(batch: list[Any], ctx: BatchContext) -> Any:
            batch_size.record(len(batch), attributes)
            return await measured(batch, ctx)

        return sized

    def _measured(self, handler: Any, topic: str, group: str | None) -> Any:
        """The handler, timed and counted in flight (one call: a message, or a batch)."""
        attributes = self._attributes(topic, group)
        key: _Key = (self.system, topic, group)
        duration, in_flight = self.duration, self.in_flight
        in_flight.add(key, 0)  # reported as 0 from the start, not only after a first message

        async def measured(msg: Any, ctx: Any) -> Any:
            in_flight.add(key)
            started = time.perf_counter()
            outcome = "ok"
            try:
                return await handler(msg, ctx)
            except BaseException as exc:
                outcome = type(exc).__name__
                raise
            finally:
                in_flight.add(key, -1)
                elapsed = time.perf_counter() - started
                if outcome == "ok":
                    duration.record(elapsed, attributes)
                else:
                    duration.record(elapsed, {**attributes, "error.type": outcome})

        return measured

    def on_settle(self, topic: str, group: str | None, settlement: Settlement) -> None:
        key = (self.system, topic, group)
        self.consumed.add(key)
        self.settled[settlement].add(key)

    def record_batch(self, topic: str, size: int, group: str | None = None) -> None:
        """For code that handles messages in batches (e.g. a saver writing N rows at once)."""
        self.batch_size.record(size, self._attributes(topic, group))
