"""The broker API every plugin implements (see base.Broker), and what plugins share:
the codec, middleware, settlement (ack / retry / dead-letter), flow control, the consumer loop.

No client library is imported here; each broker's lives in its own subpackage.
"""

from brokerline.core.base import (
    MESSAGE_ID_HEADER,
    Backoff,
    Broker,
    Delivery,
    Envelope,
    Handler,
    InitialPosition,
    MessageContext,
    SubscribeOptions,
    Subscription,
    SubscriptionType,
)
from brokerline.core.batch import BatchContext, BatchHandler, BatchOptions, BatchResult
from brokerline.core.codec import Codec
from brokerline.core.dispatch import DLQ_DELIVERIES, DLQ_ORIGINAL_TOPIC, DLQ_REASON
from brokerline.core.errors import (
    BrokerError,
    BrokerUnavailable,
    DecodeError,
    Reject,
    Retry,
    Transient,
    UnknownBrokerType,
)
from brokerline.core.middleware import LoggingMiddleware, Middleware
from brokerline.core.registry import create_broker, known_types, register_plugin
from brokerline.core.transient import is_transient, register_transient

__all__ = [
    "DLQ_DELIVERIES",
    "DLQ_ORIGINAL_TOPIC",
    "DLQ_REASON",
    "MESSAGE_ID_HEADER",
    "Backoff",
    "BatchContext",
    "BatchHandler",
    "BatchOptions",
    "BatchResult",
    "Broker",
    "BrokerError",
    "BrokerUnavailable",
    "Codec",
    "DecodeError",
    "Delivery",
    "Envelope",
    "Handler",
    "InitialPosition",
    "LoggingMiddleware",
    "MessageContext",
    "Middleware",
    "Reject",
    "Retry",
    "SubscribeOptions",
    "Subscription",
    "SubscriptionType",
    "Transient",
    "UnknownBrokerType",
    "create_broker",
    "is_transient",
    "known_types",
    "register_plugin",
    "register_transient",
]
