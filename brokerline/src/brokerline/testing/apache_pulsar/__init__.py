"""Apache Pulsar standalone as a test broker: jars from Maven Central, one JVM on loopback.

Needs Java 17 and Maven (`missing_tools()` says which is absent); the plugin's
`apache_pulsar_server` fixture starts one per test session; `admin()` calls its admin API.
"""

from brokerline.testing.apache_pulsar.admin import AdminError, admin, topic_path
from brokerline.testing.apache_pulsar.maven import missing_tools, pulsar_version
from brokerline.testing.apache_pulsar.standalone import (
    ApachePulsarServer,
    apache_pulsar_standalone,
)

__all__ = [
    "AdminError",
    "ApachePulsarServer",
    "admin",
    "apache_pulsar_standalone",
    "missing_tools",
    "pulsar_version",
    "topic_path",
]
