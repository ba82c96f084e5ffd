"""Apache Pulsar standalone (broker, bookie and RocksDB metadata in one JVM) on loopback.

Started as `org.apache.pulsar.PulsarStandaloneStarter --config <file>` with the jars that
`maven.py` resolves. The settings below are keys of Pulsar's standalone.conf /
ServiceConfiguration; the ones that are not defaults keep one bookie working (quorums of 1),
keep it off the network (loopback bind and advertised address, free ports) and bound its
memory for a 2-core machine that also runs the tests.
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from dataclasses import dataclass

from brokerline.core.embedded import EmbeddedBroker, free_port, store_dir
from brokerline.core.errors import BrokerError
from brokerline.testing.apache_pulsar.maven import pulsar_version, resolve_classpath
from brokerline.testing.jvm import rss_mb
from brokerline.testing.tls import TestCertificates, make_test_certificates, missing_openssl

#: heap and direct memory (the bookie's write/read caches come out of direct memory)
JVM_MEMORY = ["-Xms128m", "-Xmx512m", "-XX:MaxDirectMemorySize=256m"]
#: what Pulsar's own launcher opens on Java 17 (its netty and metrics reach into these)
JVM_OPENS = [
    "java.base/java.io", "java.base/java.lang", "java.base/java.nio", "java.base/sun.nio.ch",
    "java.base/jdk.internal.misc", "java.base/sun.net", "java.management/sun.management",
    "jdk.management/com.sun.management.internal",
]
START_TIMEOUT = 180.0


def standalone_conf(
    broker_port: int, web_port: int, extra: dict[str, str | int] | None = None
) -> str:
    settings: dict[str, str | int] = {
        "clusterName": "standalone",
        "bindAddress": "127.0.0.1",
        "advertisedAddress": "127.0.0.1",
        "brokerServicePort": broker_port,
        "webServicePort": web_port,
        # one bookie: every ledger's ensemble and quorums are 1 (the defaults are 2)
        "managedLedgerDefaultEnsembleSize": 1,
        "managedLedgerDefaultWriteQuorum": 1,
        "managedLedgerDefaultAckQuorum": 1,
        "loadManagerClassName": "org.apache.pulsar.broker.loadbalance.NoopLoadManager",
        "loadBalancerEnabled": "false",
        # tests reuse topics across a session; an idle one must not vanish under them
        "brokerDeleteInactiveTopicsEnabled": "false",
        # delays to the tenth of a second, never early (tests measure them)
        "delayedDeliveryTickTimeMillis": 100,
        "isDelayedDeliveryDeliverAtTimeStrict": "true",
        "webSocketServiceEnabled": "false",
        "brokerShutdownTimeoutMs": 5000,
        "statusFilePath": "",
        # the bookie (it reads the same file): loopback, no fsync, small caches
        "allowLoopback": "true",
        "journalSyncData": "false",
        "dbStorage_writeCacheMaxSizeMb": 32,
        "dbStorage_readAheadCacheMaxSizeMb": 32,
        "dbStorage_rocksDB_blockCacheSize": 16 * 1024 * 1024,
        **(extra or {}),
    }
    return "".join(f"{key}={value}\n" for key, value in settings.items())


def tls_conf(
    certificates: TestCertificates, broker_tls_port: int, web_tls_port: int,
    require_client_certificate: bool,
) -> dict[str, str | int]:
    """standalone.conf keys for TLS listeners beside the plaintext ones (same certificates
    for the binary and the HTTP port); with `require_client_certificate`, a client must
    present a certificate the CA signed or its handshake fails (mutual TLS)."""
    return {
        "brokerServicePortTls": broker_tls_port,
        "webServicePortTls": web_tls_port,
        "tlsCertificateFilePath": str(certificates.server_cert),
        "tlsKeyFilePath": str(certificates.server_key),
        "tlsTrustCertsFilePath": str(certificates.ca),
        "tlsAllowInsecureConnection": "false",
        "tlsRequireTrustedClientCertOnConnect": str(require_client_certificate).lower(),
    }


@dataclass
class ApachePulsarServer(EmbeddedBroker):
    """An Apache Pulsar standalone process; `.url` is its binary port, `.admin_url` its HTTP.

    With TLS on, `.tls_url` and `.admin_tls_url` are its TLS ports and `.certificates` the
    CA (the trust file) and the server's and a client's certificates.
    """

    web_port: int = 0
    version: str = ""
    started_in: float | None = None  # seconds from launch to the default namespace existing
    admin_token: str | None = None  # a superuser's JWT, when authentication is on
    tls_port: int | None = None
    web_tls_port: int | None = None
    certificates: TestCertificates | None = None

    @property
    def url(self) -> str:
        return f"pulsar://127.0.0.1:{self.port}"

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    @property
    def tls_url(self) -> str:
        return f"pulsar+ssl://127.0.0.1:{self._tls_ports()[0]}"

    @property
    def admin_tls_url(self) -> str:
        return f"https://127.0.0.1:{self._tls_ports()[1]}"

    def _tls_ports(self) -> tuple[int, int]:
        if self.tls_port is None or self.web_tls_port is None:
            raise BrokerError("this Apache Pulsar standalone was started without TLS")
        return self.tls_port, self.web_tls_port

    def rss_mb(self) -> float | None:
        return None if self.process is None else rss_mb(self.process.pid)

    def start(self, timeout: float = START_TIMEOUT) -> ApachePulsarServer:
        launched = time.monotonic()
        super().start(timeout)  # the binary port is open once the broker service is
        try:
            self.wait_for_default_namespace(launched + timeout)
        except BrokerError as exc:
            self.stop()
            tail = self.log_path.read_text(errors="replace")[-2000:]
            raise BrokerError(f"{exc}; its log ends with:\n{tail}") from None
        self.started_in = time.monotonic() - launched
        return self

    def wait_for_default_namespace(self, deadline: float) -> None:
        """Standalone creates public/default after opening its ports; tests need it."""
        url = f"{self.admin_url}/admin/v2/namespaces/public"
        while time.monotonic() < deadline:
            if self.process is None or self.process.poll() is not None:
                raise BrokerError("Apache Pulsar standalone exited at start")
            headers = {"Authorization": f"Bearer {self.admin_token}"} if self.admin_token else {}
            try:
                request = urllib.request.Request(url, headers=headers)
                with urllib.request.urlopen(request, timeout=2) as response:
                    if "public/default" in json.loads(response.read()):
                        return
            except (urllib.error.URLError, OSError, ValueError):
                pass
            time.sleep(0.2)
        raise BrokerError("Apache Pulsar standalone did not create public/default in time")


def apache_pulsar_standalone(
    store: str | os.PathLike[str] | None = None,
    settings: dict[str, str | int] | None = None,
    admin_token: str | None = None,
    tls: bool = True,
    require_client_certificate: bool = False,
) -> ApachePulsarServer:
    """An Apache Pulsar standalone on free loopback ports (not yet started: `.start()`).

    Resolves the jars first (Maven, or the cached classpath); the functions worker and stream
    storage are off. `settings` adds or overrides standalone.conf keys; with authentication
    on, `admin_token` is a superuser's token (the readiness check sends it). With `tls` (and
    the openssl command to make a CA; without it TLS stays off), TLS ports are opened too,
    with certificates made for this server; `require_client_certificate` makes them mutual.
    """
    classpath = resolve_classpath()
    path, owned = store_dir(store, "apache-pulsar-")
    broker_port, web_port, bookie_port = free_port(), free_port(), free_port()
    certificates, tls_port, web_tls_port = None, None, None
    all_settings = dict(settings or {})
    if tls and missing_openssl() is None:
        certificates = make_test_certificates(path / "tls")
        tls_port, web_tls_port = free_port(), free_port()
        all_settings = {
            **tls_conf(certificates, tls_port, web_tls_port, require_client_certificate),
            **all_settings,
        }
    config = path / "standalone.conf"
    config.write_text(standalone_conf(broker_port, web_port, all_settings))
    argv = [
        "java", *JVM_MEMORY, "-XX:+ExitOnOutOfMemoryError",
        "-Dorg.apache.logging.log4j.level=WARN",
        *(f"--add-opens={module}=ALL-UNNAMED" for module in JVM_OPENS),
        "-cp", classpath, "org.apache.pulsar.PulsarStandaloneStarter",
        "--config", str(config), "--no-functions-worker", "--no-stream-storage",
        "--metadata-dir", str(path / "metadata"), "--bookkeeper-dir", str(path / "bookkeeper"),
        # never created: its absence keeps standalone on RocksDB metadata, not ZooKeeper
        "--zookeeper-dir", str(path / "zookeeper"),
        "--bookkeeper-port", str(bookie_port),
    ]
    return ApachePulsarServer(
        "apache-pulsar", broker_port, path, argv, path / "apache-pulsar.log",
        _owns_store=owned, web_port=web_port, version=pulsar_version(), admin_token=admin_token,
        tls_port=tls_port, web_tls_port=web_tls_port, certificates=certificates,
    )
