"""A local Kafka for `dev`, `demo`, `broker` and `broker.embedded: true`.

Kafka has no PyPI build, so this is the test suite's Apache Kafka KRaft node
(`brokerline.testing.apache_kafka`: Maven Central's jars, one JVM on free loopback ports);
it needs Java 17 and Maven, and says so in one sentence where they are missing.
"""

from __future__ import annotations

import os
import shutil

from brokerline.core.embedded import EmbeddedBroker
from brokerline.core.errors import BrokerError


def local_kafka(store: str | os.PathLike[str] | None = None) -> EmbeddedBroker:
    """A KRaft node, formatted, not yet started (PLAINTEXT only: no TLS certificates)."""
    missing = [tool for tool in ("java", "mvn") if shutil.which(tool) is None]
    if missing:
        raise BrokerError(
            f"a local Kafka needs {' and '.join(missing)} on PATH (it runs Apache Kafka from "
            "Maven Central's jars): install Java 17 and Maven, or set broker.address "
            "(MQ_NAME_SERVER) to a running Kafka"
        )
    try:
        from brokerline.testing.apache_kafka import apache_kafka_kraft
    except ImportError as exc:  # the runner lives in the test plugin's package (pytest)
        raise BrokerError(
            f"a local Kafka needs brokerline[testing] ({exc.name} is not installed); install "
            "the development dependencies, or set broker.address (MQ_NAME_SERVER) to a "
            "running Kafka"
        ) from None
    return apache_kafka_kraft(store=store, tls=False)
