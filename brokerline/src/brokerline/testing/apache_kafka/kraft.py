"""Apache Kafka as a KRaft single node (controller and broker in one JVM) on loopback.

The log directory is formatted with a random cluster id by `kafka.tools.StorageTool format`,
then `kafka.Kafka <server.properties>` runs with the jars that `pom.xml` resolves. One node
serves three client listeners so one session broker covers every test: PLAINTEXT,
SASL_PLAINTEXT with the PLAIN mechanism (user `SASL_USER`) and, where the openssl command can
make a throwaway CA, SSL with PEM files. The settings that are not defaults make one node a
whole cluster (replication factors of 1), keep it off the network (loopback, free ports) and
bound its memory for a 2-core machine that also runs the tests.
"""

from __future__ import annotations

import base64
import os
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from brokerline.core.embedded import EmbeddedBroker, free_port, store_dir
from brokerline.core.errors import BrokerError
from brokerline.testing import jvm
from brokerline.testing.tls import TestCertificates, make_test_certificates, missing_openssl

PROJECT = jvm.MavenProject(
    __package__ or "brokerline.testing.apache_kafka", "apache-kafka", "Apache Kafka",
    "kafka.version",
)
JVM_MEMORY = ["-Xms128m", "-Xmx512m", "-XX:MaxDirectMemorySize=128m"]
START_TIMEOUT = 120.0
#: the SASL/PLAIN account the SASL_PLAINTEXT listener accepts (a test secret, nothing else)
SASL_USER = "brokerline"
SASL_PASSWORD = "brokerline-test-secret"
#: warnings only, to the process's log file (Kafka's INFO logs a line per group join)
LOG4J2 = """\
rootLogger.level=WARN
rootLogger.appenderRef.out.ref=out
appender.out.type=Console
appender.out.name=out
appender.out.layout.type=PatternLayout
appender.out.layout.pattern=[%d] %p %m (%c)%n
"""


def missing_tools() -> str | None:
    """One sentence naming what to install, or None when Java and Maven are both there."""
    return jvm.missing_tools("Apache Kafka")


def random_cluster_id() -> str:
    """A KRaft cluster id: 16 random bytes, URL-safe base64 without padding (22 chars).

    Never one that starts with "-": the storage tool's argument parser takes it for an
    option and refuses to format (one start in 64 failed that way).
    """
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cluster_id.startswith("-"):
            return cluster_id


@dataclass(frozen=True)
class Listeners:
    plain: int
    sasl: int
    controller: int
    ssl: int | None


def server_properties(
    listeners: Listeners, log_dir: Path, certificates: TestCertificates | None,
    extra: dict[str, str | int] | None = None,
) -> str:
    names = {
        "PLAINTEXT": listeners.plain, "SASL_PLAINTEXT": listeners.sasl,
        **({"SSL": listeners.ssl} if listeners.ssl else {}),
    }
    client = ",".join(f"{name}://127.0.0.1:{port}" for name, port in names.items())
    jaas = (
        "org.apache.kafka.common.security.plain.PlainLoginModule required "
        f'username="{SASL_USER}" password="{SASL_PASSWORD}" '
        f'user_{SASL_USER}="{SASL_PASSWORD}";'
    )
    settings: dict[str, str | int] = {
        "process.roles": "broker,controller",
        "node.id": 1,
        "controller.quorum.voters": f"1@127.0.0.1:{listeners.controller}",
        "listeners": f"{client},CONTROLLER://127.0.0.1:{listeners.controller}",
        "advertised.listeners": client,
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": ",".join(f"{name}:{name}" for name in names)
        + ",CONTROLLER:PLAINTEXT",
        "sasl.enabled.mechanisms": "PLAIN",
        "listener.name.sasl_plaintext.plain.sasl.jaas.config": jaas,
        "log.dirs": str(log_dir),
        # one node is the whole cluster: every internal topic has one replica
        "offsets.topic.replication.factor": 1,
        "offsets.topic.num.partitions": 4,
        "transaction.state.log.replication.factor": 1,
        "transaction.state.log.min.isr": 1,
        "transaction.state.log.num.partitions": 4,
        "share.coordinator.state.topic.replication.factor": 1,
        "share.coordinator.state.topic.min.isr": 1,
        "num.partitions": 1,
        "auto.create.topics.enable": "true",
        # a test's consumers join at once: no wait for more members of a new group
        "group.initial.rebalance.delay.ms": 0,
        "num.network.threads": 2,
        "num.io.threads": 2,
        "background.threads": 2,
        **(extra or {}),
    }
    if certificates is not None:
        settings.update({
            "listener.name.ssl.ssl.keystore.type": "PEM",
            "listener.name.ssl.ssl.keystore.location": str(certificates.server_cert.parent
                                                          / "server-keystore.pem"),
            "listener.name.ssl.ssl.truststore.type": "PEM",
            "listener.name.ssl.ssl.truststore.location": str(certificates.ca),
            "listener.name.ssl.ssl.client.auth": "requested",
        })
    return "".join(f"{key}={value}\n" for key, value in settings.items())


@dataclass
class ApacheKafkaServer(EmbeddedBroker):
    """An Apache Kafka KRaft node; `.url` is its PLAINTEXT bootstrap address.

    `.sasl_url` takes SASL/PLAIN (`SASL_USER` / `SASL_PASSWORD`); with TLS on, `.ssl_url` is
    its SSL listener and `.certificates` the CA (the trust file) and a client pair.
    """

    sasl_port: int = 0
    ssl_port: int | None = None
    version: str = ""
    started_in: float | None = None  # seconds from launch to a broker that answers metadata
    certificates: TestCertificates | None = None

    @property
    def url(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def sasl_url(self) -> str:
        return f"127.0.0.1:{self.sasl_port}"

    @property
    def ssl_url(self) -> str:
        if self.ssl_port is None:
            raise BrokerError("this Apache Kafka node was started without TLS")
        return f"127.0.0.1:{self.ssl_port}"

    def rss_mb(self) -> float | None:
        return None if self.process is None else jvm.rss_mb(self.process.pid)

    def start(self, timeout: float = START_TIMEOUT) -> ApacheKafkaServer:
        launched = time.monotonic()
        super().start(timeout)  # the client port opens once the broker has joined the quorum
        self.started_in = time.monotonic() - launched
        return self


def format_storage(classpath: str, properties: Path, log4j: Path) -> None:
    """`kafka-storage format`: write the cluster id and the bootstrap metadata to log.dirs."""
    argv = [
        "java", "-Xmx128m", f"-Dlog4j2.configurationFile={log4j}", "-cp", classpath,
        "kafka.tools.StorageTool", "format", "--cluster-id", random_cluster_id(),
        "--config", str(properties), "--ignore-formatted",
    ]
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    except subprocess.TimeoutExpired:
        raise BrokerError("Kafka's StorageTool did not format the log directory in 60s") from None
    if result.returncode != 0:
        raise BrokerError(
            f"Kafka's StorageTool could not format {properties.parent} (exit "
            f"{result.returncode}): {(result.stderr or result.stdout).strip()[-500:]}"
        )


def keystore(certificates: TestCertificates) -> Path:
    """The server's PEM keystore: its private key followed by its certificate."""
    path = certificates.server_cert.parent / "server-keystore.pem"
    path.write_text(certificates.server_key.read_text() + certificates.server_cert.read_text())
    return path


def apache_kafka_kraft(
    store: str | os.PathLike[str] | None = None,
    settings: dict[str, str | int] | None = None,
    tls: bool = True,
) -> ApacheKafkaServer:
    """An Apache Kafka KRaft node on free loopback ports, formatted, not yet started
    (`.start()`). Resolves the jars first (Maven, or the cached classpath); `settings` adds or
    overrides server.properties keys. With `tls` (and openssl), an SSL listener too."""
    classpath = PROJECT.resolve_classpath()
    path, owned = store_dir(store, "apache-kafka-")
    certificates = None
    if tls and missing_openssl() is None:
        certificates = make_test_certificates(path / "tls")
        keystore(certificates)
    listeners = Listeners(
        free_port(), free_port(), free_port(), free_port() if certificates else None
    )
    properties, log4j = path / "server.properties", path / "log4j2.properties"
    properties.write_text(server_properties(listeners, path / "data", certificates, settings))
    log4j.write_text(LOG4J2)
    format_storage(classpath, properties, log4j)
    argv = [
        "java", *JVM_MEMORY, "-XX:+ExitOnOutOfMemoryError", "-Djava.awt.headless=true",
        "-Djava.net.preferIPv4Stack=true",  # loopback IPv4 sockets, as the ports promise
        f"-Dlog4j2.configurationFile={log4j}", "-cp", classpath, "kafka.Kafka", str(properties),
    ]
    return ApacheKafkaServer(
        "apache-kafka", listeners.plain, path, argv, path / "apache-kafka.log",
        _owns_store=owned, sasl_port=listeners.sasl, ssl_port=listeners.ssl,
        version=PROJECT.version(), certificates=certificates,
    )
