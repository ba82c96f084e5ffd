"""brokerline: a Kratos-style service framework for Python with broker transport plugins.

The broker API (`Broker`, `MessageContext`, `Reject`, ...) is re-exported here; plugins live
in one subpackage per broker (`brokerline.memory`, `.nats`, `.jetstream`, `.pulsar`), the App
and its servers in `brokerline.app` and `brokerline.server`.
"""

from brokerline.core import (
    DLQ_DELIVERIES,
    DLQ_ORIGINAL_TOPIC,
    DLQ_REASON,
    Backoff,
    Broker,
    BrokerError,
    BrokerUnavailable,
    Codec,
    DecodeError,
    Delivery,
    Envelope,
    Handler,
    InitialPosition,
    LoggingMiddleware,
    MessageContext,
    Middleware,
    Reject,
    Retry,
    SubscribeOptions,
    Subscription,
    SubscriptionType,
    Transient,
    UnknownBrokerType,
    create_broker,
    is_transient,
    known_types,
    register_plugin,
    register_transient,
)

__version__ = "0.1.0"

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
    "__version__",
    "create_broker",
    "is_transient",
    "known_types",
    "register_plugin",
    "register_transient",
]
