"""Apache Kafka as a test broker: a KRaft single node from Maven Central's jars, on loopback.

Needs Java 17 and Maven (`missing_tools()` says which is absent); the plugin's
`apache_kafka_server` fixture starts one per test session.
"""

from brokerline.testing.apache_kafka.kraft import (
    PROJECT,
    SASL_PASSWORD,
    SASL_USER,
    ApacheKafkaServer,
    apache_kafka_kraft,
    missing_tools,
)

__all__ = [
    "PROJECT",
    "SASL_PASSWORD",
    "SASL_USER",
    "ApacheKafkaServer",
    "apache_kafka_kraft",
    "missing_tools",
]
