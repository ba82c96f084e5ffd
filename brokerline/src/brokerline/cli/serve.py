"""Running a service: one role in this process, or `serve --workers N` as N processes
(one consumer group, one listening port).

The service's composition root builds the App (container -> servers -> App); this module
runs it with telemetry, lets SIGINT/SIGTERM stop it at any moment (start-up connection
retries included), and supervises worker processes.
"""

from __future__ import annotations

import asyncio
import ctypes
import gc
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from brokerline.app import App
from brokerline.cli.startup import shutdown_interrupted, start_interruptibly
from brokerline.config import ConfigError, ServiceConfig
from brokerline.config.loader import WORKER_SETTINGS
from brokerline.core import SubscriptionType
from brokerline.server.listener import reserve
from brokerline.telemetry import service_name, setup_telemetry

log = logging.getLogger("brokerline.serve")

PR_SET_PDEATHSIG = 1  # linux/prctl.h
#: the listening sections `serve --workers` can share: what they serve, the setting to change
LISTENERS = {"grpc": ("gRPC", "grpc.address (GRPC_ADDRESS)"),
             "http": ("HTTP", "http.address (HTTP_ADDRESS)")}


def stop_with_parent() -> None:
    """In a worker, before exec: SIGTERM (a clean drain) when the supervisor dies.

    A supervisor killed with SIGKILL cannot forward anything; without this its workers would
    keep consuming, unseen by whoever restarts the service. Linux only; elsewhere a no-op.
    """
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def freeze_start_up_heap() -> None:
    """Leave what the imports and the wiring made out of every later garbage collection.

    After start-up the heap is mostly modules, classes and the container's objects, alive
    until exit; each full collection would walk them all again. A batch subscriber keeps
    hundreds of messages alive at once, so collections run often: freezing the start-up heap
    took a fifth to a third off the CPU of its decode-and-decide step (`bench/nats_steps.py`).
    Collected first, so that start-up garbage is not kept with it.
    """
    gc.collect()
    gc.freeze()


async def run_role(
    config: ServiceConfig, role: str, container: Any, build_app: Callable[[], Awaitable[App]]
) -> None:
    """Build the role's App from `container`, run it until SIGINT/SIGTERM, then clean up.

    The App closes the container's resources when it stops; if start-up fails or a signal
    interrupts it, whatever the container had started is shut down here.
    """
    telemetry = setup_telemetry(
        config.telemetry, service_name(config.name, role), distribution=config.name
    )
    app: App | None = None
    try:
        app = await start_interruptibly(build_app)
        if app is not None:
            freeze_start_up_heap()  # built, not yet consuming: no message is frozen with it
            await app.run()
    finally:
        if app is None:
            await shutdown_interrupted(container)
        await asyncio.to_thread(telemetry.shutdown)  # flush the last spans


def serve_workers(
    package: str, config_path: str | None, role: str, workers: int, config: ServiceConfig,
    *, listens: Sequence[str] = (), subscribes: bool = True,
) -> int:
    """Run `workers` processes of `python -m package serve role`: one consumer group, one port.

    Subscribers: every worker joins the configured group, so the broker shares the messages
    among them. They need a broker they can all reach (broker.address): an embedded one per
    process would not be shared. Listeners: for each section named in `listens` ("grpc",
    "http") the workers bind its address with SO_REUSEPORT and the kernel spreads connections
    over them; the port is reserved here first (a taken port is one error before any worker
    starts; a port of 0 becomes one free port for all). With telemetry.metrics_port P, worker
    i serves its own health and metrics on P + i (Prometheus scrapes each process).

    SIGTERM/SIGINT are forwarded to every worker. A worker that exits on its own stops the
    others (a group one short would look healthy to whatever restarts it). Returns the first
    failed worker's exit code (a signal's as 128 + its number; 0 if none).
    """
    broker = config.broker
    if broker.type == "memory" or not broker.address:
        raise ConfigError(
            "--workers needs a shared broker: set broker.address (BROKER_ADDRESS) to a running "
            "nats, jetstream or pulsar broker; an embedded or memory broker is one per process"
        )
    exclusive = [where for where, kind in broker.subscription_types().items()
                 if kind is SubscriptionType.EXCLUSIVE]
    if workers > 1 and subscribes and exclusive:
        raise ConfigError(
            f"--workers {workers} needs subscriptions several consumers can join, but "
            f"{exclusive[0]} is exclusive (the broker refuses a second consumer); set it to "
            "shared, key_shared or failover (a hot standby), or run one worker"
        )
    listening: dict[str, tuple[str, socket.socket]] = {}
    try:
        for section in listens:  # one at a time: those reserved before a failure are closed
            listening[section] = _reserve(config, section)
        return _supervise(package, config_path, role, workers, config, listening)
    finally:
        for _address, sock in listening.values():
            sock.close()


def _reserve(config: ServiceConfig, section: str) -> tuple[str, socket.socket]:
    """The section's concrete address, and its port held (not listening) for the workers."""
    address = getattr(config, section).address
    what, setting = LISTENERS.get(section, (section, f"{section}.address"))
    sock = reserve(address, what, setting)
    host = address.rpartition(":")[0]
    return f"{host}:{sock.getsockname()[1]}", sock


def _supervise(
    package: str, config_path: str | None, role: str, workers: int, config: ServiceConfig,
    listening: dict[str, tuple[str, socket.socket]],
) -> int:
    argv = [sys.executable, "-m", package]
    if config_path:
        argv += ["--config", config_path]
    argv += ["serve", role]
    shared = {section: {"address": address, "reuse_port": True}
              for section, (address, _sock) in listening.items()}
    metrics_port = config.telemetry.metrics_port
    children = []
    for index in range(workers):
        settings: dict[str, Any] = dict(shared)
        if metrics_port:
            settings["telemetry"] = {"metrics_port": metrics_port + index}
        env = {**os.environ, WORKER_SETTINGS: json.dumps(settings)}
        children.append(subprocess.Popen(argv, env=env, preexec_fn=stop_with_parent))
    log.info("started %d %s workers: %s%s", len(children), role,
             ", ".join(str(c.pid) for c in children),
             "".join(f"; {section} on {address}" for section, (address, _s) in listening.items()))

    stopping = False

    def forward(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    while (ended := next((c for c in children if c.poll() is not None), None)) is None:
        time.sleep(0.2)
    if not stopping:
        code = ended.returncode
        how = f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"
        log.error("%s worker %d %s: stopping the other workers", role, ended.pid, how)
        forward(signal.SIGTERM, None)
    codes = [child.wait() for child in children]
    failed = next((code for code in codes if code), 0)
    return 128 - failed if failed < 0 else failed  # killed by signal N: 128 + N, as a shell
