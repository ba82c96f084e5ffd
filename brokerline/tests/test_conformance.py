"""The conformance suite on each of brokerline's plugins whose client is installed.

`broker_factory` is the plugin's: parametrized over `broker_type`, it connects to the
session's real broker processes (test ids: memory, nats, jetstream, pulsar-lite,
apache-pulsar, kafka).
"""

from brokerline.testing import BrokerConformance


class TestConformance(BrokerConformance):
    pass
