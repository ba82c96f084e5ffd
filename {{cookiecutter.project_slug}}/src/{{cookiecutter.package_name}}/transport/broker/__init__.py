"""The broker transport layer: one API, several brokers (see base.Broker).

Self-contained: nothing here imports from the service, data or server layers.
"""

from .base import (
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
from .codec import Codec
from .dispatch import DLQ_DELIVERIES, DLQ_ORIGINAL_TOPIC, DLQ_REASON
from .errors import (
    BrokerError,
    BrokerUnavailable,
    DecodeError,
    Reject,
    Retry,
    Transient,
    UnknownBrokerType,
)
from .middleware import LoggingMiddleware, Middleware
from .registry import create_broker, known_types
from .transient import is_transient, register_transient

__all__ = [
    "DLQ_DELIVERIES",
    "DLQ_ORIGINAL_TOPIC",
    "DLQ_REASON",
    "Backoff",
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
    "register_transient",
]
