"""A Pulsar message as the core sees it: its message id, key and publish time asked for on use.

Every field of a `Delivery` is a call into the binding. Most cost a fraction of a microsecond,
but the message id as text costs 1.5 us (the binding formats it through a C++ stream), and a
handler that returns reads neither it, nor the key (unless messages are ordered by key), nor
the publish time: the dispatcher reads them to dead-letter or retry, tracing for its span.
So these three are read from the message when first used and then kept (`bench/pulsar_steps.py`
measures the difference). The payload, headers (content type, trace context) and redelivery
count (`max_deliveries`) are needed for every message and are read at once.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import _pulsar

from brokerline.core.base import Delivery, MessageContext


def _on_use(field: str, read: Callable[[_pulsar.Message], Any]) -> Any:
    """A property for `field`: `read(message)` when first read, then kept in the field's slot
    (a property of a subclass hides its parent's slot; the slot's descriptor still reaches it)."""
    slot = MessageContext.__dict__[field]

    def get(self: PulsarDelivery) -> Any:
        try:
            return slot.__get__(self)
        except AttributeError:  # not read yet
            value = read(self._message)
            slot.__set__(self, value)
            return value

    def set_(self: PulsarDelivery, value: Any) -> None:
        slot.__set__(self, value)

    return property(get, set_)


def _publish_time(message: _pulsar.Message) -> datetime | None:
    millis = message.publish_timestamp()
    return datetime.fromtimestamp(millis / 1000, UTC) if millis else None


class PulsarDelivery(Delivery):
    """A `Delivery` of one `_pulsar.Message`; behaves as a plain one (repr, equality)."""

    __slots__ = ("_message",)

    def __init__(  # not the dataclass's: the fields read on use are left unset
        self, message: _pulsar.Message, topic: str, headers: Mapping[str, str],
        redelivery_count: int, payload: bytes,
    ) -> None:
        self._message = message
        self.topic = topic
        self.headers = headers
        self.redelivery_count = redelivery_count
        self.group = None
        self.payload = payload

    message_id = _on_use("message_id", lambda message: str(message.message_id()))
    key = _on_use("key", lambda message: message.partition_key() or None)
    publish_time = _on_use("publish_time", _publish_time)
