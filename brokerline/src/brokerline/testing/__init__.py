"""brokerline.testing: fixtures with real local brokers, and the broker conformance suite.

The fixtures come with the pytest plugin (`brokerline.testing.plugin`, loaded automatically);
the conformance suite is `BrokerConformance` (see `brokerline.testing.conformance` for how a
plugin of your own runs it); helpers for tests are here.
"""

from brokerline.testing.brokers import (
    BrokerFactory,
    connected_brokers,
    eventually,
    make_broker,
    nats_test_settings,
    unique,
)
from brokerline.testing.conformance import BrokerConformance

__all__ = [
    "BrokerConformance",
    "BrokerFactory",
    "connected_brokers",
    "eventually",
    "make_broker",
    "nats_test_settings",
    "unique",
]
