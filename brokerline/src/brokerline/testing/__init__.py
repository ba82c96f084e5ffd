"""brokerline.testing: fixtures with real local brokers, and the broker conformance suite.

The fixtures come with the pytest plugin (`brokerline.testing.plugin`, loaded automatically);
helpers for tests are here.
"""

from brokerline.testing.brokers import eventually, make_broker, nats_test_settings, unique

__all__ = ["eventually", "make_broker", "nats_test_settings", "unique"]
