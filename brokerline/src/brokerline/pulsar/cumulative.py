"""Cumulative acknowledgement that never acknowledges a message still being handled.

A cumulative ack of message N acknowledges every message of its topic up to N. With several
handlers in flight, N may finish before N-1: so the acks move a frontier instead. Per topic
(a partition counts as one), the messages in flight are kept in the order the broker
delivered them, which on an exclusive or failover subscription is message-id order; when the
oldest ones are all handled, one cumulative ack of the newest of that run acknowledges them.
A message whose handler failed (it will be negatively acknowledged and redelivered) stops the
frontier until a redelivered copy of it is handled; the handled messages behind it then wait,
and are redelivered too if the consumer closes first (at-least-once: duplicates, never loss).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import _pulsar
import pulsar

AckCallback = Callable[[pulsar.Result], None]
#: a message id's place in its topic (the binding's MessageId compares but does not hash)
Position = tuple[int, int, int]


def position(message_id: _pulsar.MessageId) -> Position:
    return message_id.ledger_id(), message_id.entry_id(), message_id.batch_index()


@dataclass(slots=True, eq=False)
class Tracked:
    """One message in flight: how many of its deliveries are still being handled."""

    position: Position
    message: _pulsar.Message
    in_flight: int = 0
    failed: bool = False  # its last handled delivery failed: it will come back

    @property
    def settled(self) -> bool:
        return self.in_flight == 0 and not self.failed


@dataclass(slots=True)
class _Topic:
    pending: deque[Tracked]  # oldest first
    by_position: dict[Position, Tracked]


class CumulativeAcks:
    """The frontier of one consumer's topics; see the module docstring."""

    def __init__(self, consumer: _pulsar.Consumer, on_acked: AckCallback) -> None:
        self._consumer = consumer
        self._on_acked = on_acked
        self._topics: dict[str, _Topic] = {}

    def received(self, message: _pulsar.Message) -> Tracked | None:
        """Track a delivered message; None: one older than the frontier, to ack by itself."""
        at = position(message.message_id())
        topic = self._topics.get(message.topic_name())
        if topic is None:
            topic = self._topics[message.topic_name()] = _Topic(deque(), {})
        tracked = topic.by_position.get(at)
        if tracked is None:
            if topic.pending and topic.pending[-1].position >= at:
                # redelivered after the frontier passed it (it raced the cumulative ack):
                # behind the frontier, so an ack of its own is the only one that fits
                return None
            tracked = Tracked(at, message)
            topic.pending.append(tracked)
            topic.by_position[at] = tracked
        tracked.in_flight += 1
        tracked.message = message  # the newest delivery is the one to acknowledge
        return tracked

    def handled(self, tracked: Tracked, topic_name: str) -> None:
        """One delivery of `tracked` was handled: move the frontier as far as it may go."""
        tracked.in_flight -= 1
        tracked.failed = False
        self._advance(topic_name)

    def failed(self, tracked: Tracked) -> None:
        """One delivery failed and goes back to the broker: the frontier stops before it."""
        tracked.in_flight -= 1
        tracked.failed = True

    def _advance(self, topic_name: str) -> None:
        topic = self._topics[topic_name]
        newest: Tracked | None = None
        while topic.pending and topic.pending[0].settled:
            newest = topic.pending.popleft()
            del topic.by_position[newest.position]
        if newest is not None:
            self._consumer.acknowledge_cumulative_async(newest.message, self._on_acked)
