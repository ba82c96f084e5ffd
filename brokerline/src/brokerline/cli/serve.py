"""Running a service: one role in this process, or `serve --workers N` as N processes.

The service's composition root builds the App (container -> servers -> App); this module
runs it with telemetry, lets SIGINT/SIGTERM stop it at any moment (start-up connection
retries included), and supervises worker processes.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import subprocess
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from brokerline.app import App
from brokerline.cli.startup import shutdown_interrupted, start_interruptibly
from brokerline.config import BrokerConfig, ConfigError, ServiceConfig
from brokerline.core import SubscriptionType
from brokerline.telemetry import service_name, setup_telemetry

log = logging.getLogger("brokerline.serve")


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
            await app.run()
    finally:
        if app is None:
            await shutdown_interrupted(container)
        await asyncio.to_thread(telemetry.shutdown)  # flush the last spans


def serve_workers(
    package: str, config_path: str | None, role: str, workers: int, broker: BrokerConfig
) -> int:
    """Run `workers` processes of `python -m package serve role` in one consumer group.

    Every worker joins the configured group, so the broker shares the messages among them.
    They need a broker they can all reach (broker.address): an embedded one per process would
    not be shared. SIGTERM/SIGINT are forwarded to every worker. Returns the first non-zero
    exit code of the workers (0 if none).
    """
    if broker.type == "memory" or not broker.address:
        raise ConfigError(
            "--workers needs a shared broker: set broker.address (BROKER_ADDRESS) to a running "
            "nats, jetstream or pulsar broker; an embedded or memory broker is one per process"
        )
    exclusive = [where for where, kind in broker.subscription_types().items()
                 if kind is SubscriptionType.EXCLUSIVE]
    if workers > 1 and exclusive:
        raise ConfigError(
            f"--workers {workers} needs subscriptions several consumers can join, but "
            f"{exclusive[0]} is exclusive (the broker refuses a second consumer); set it to "
            "shared, key_shared or failover (a hot standby), or run one worker"
        )
    argv = [sys.executable, "-m", package]
    if config_path:
        argv += ["--config", config_path]
    argv += ["serve", role]
    children = [subprocess.Popen(argv) for _ in range(workers)]
    log.info("started %d %s workers: %s", len(children), role,
             ", ".join(str(c.pid) for c in children))

    def forward(signum: int, _frame: object) -> None:
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    codes = [child.wait() for child in children]
    return next((code for code in codes if code), 0)
