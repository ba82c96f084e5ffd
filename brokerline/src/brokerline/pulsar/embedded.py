"""A local pulsar-lite broker (from the pulsar-lite package) for development and tests."""

from __future__ import annotations

import os

from brokerline.core.embedded import EmbeddedBroker, free_port, store_dir
from brokerline.core.errors import BrokerError


def pulsar_lite_binary() -> str:
    try:
        from pulsar_lite.binary_finder import find_pulsar_lite_binary
    except ImportError:
        raise BrokerError(
            "pulsar-lite is not installed; install the development dependencies (make install, "
            "or pip install pulsar-lite) or set the broker address to a running Pulsar cluster"
        ) from None
    return str(find_pulsar_lite_binary())


def pulsar_lite(
    *,
    port: int | None = None,
    store: str | os.PathLike[str] | None = None,
    default_partitions: int | None = None,
) -> EmbeddedBroker:
    """A pulsar-lite broker on loopback (not yet started: call `.start()`).

    `default_partitions`: every topic it creates has that many partitions (pulsar-lite has
    no admin API to partition one topic).
    """
    port = port or free_port()
    path, owned = store_dir(store, "pulsar-lite-")
    metrics_port = free_port()
    # an own config file: without --config, pulsar-lite reads ./pulsar-lite.toml if present
    config = path / "pulsar-lite.toml"
    partitions = f"default_partitions = {default_partitions}\n" if default_partitions else ""
    config.write_text(f'{partitions}[metrics]\naddr = "127.0.0.1:{metrics_port}"\n')
    argv = [
        pulsar_lite_binary(), "--config", str(config), "--addr", f"127.0.0.1:{port}",
        "--db-path", str(path / "db"), "--log-level", "warn",
    ]
    return EmbeddedBroker(
        "pulsar", port, path, argv, path / "pulsar-lite.log", metrics_port=metrics_port,
        _owns_store=owned,
    )
