"""The `broker` command: a local broker in the foreground, for development."""

from __future__ import annotations

import argparse
import signal
from typing import Any

from brokerline.core import BrokerError, known_types
from brokerline.core.embedded import embedded_broker
from brokerline.logs import configure_logging


def add_broker_command(sub: Any) -> None:
    """`broker [--type T] [--store DIR]`, added to the subparsers `sub`."""
    kinds = [t for t in known_types() if t != "memory"] or ["nats"]
    p = sub.add_parser("broker", help="run an embedded broker in the foreground")
    p.add_argument("--type", default="pulsar" if "pulsar" in kinds else kinds[0], choices=kinds)
    p.add_argument("--store", help="store directory (default: a temporary one)")
    p.set_defaults(func=cmd_broker)


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def cmd_broker(args: argparse.Namespace) -> None:
    """Run the embedded broker until SIGINT/SIGTERM; then stop it and remove a temp store."""
    configure_logging("INFO")
    signal.signal(signal.SIGTERM, _interrupt)
    server = embedded_broker(args.type, store=args.store)
    try:
        server.start()
        print(f"{args.type} broker listening at {server.url} (store {server.store}; "
              "Ctrl-C to stop)", flush=True)
        assert server.process is not None
        code = server.process.wait()
        if code not in (0, -signal.SIGINT, -signal.SIGTERM):  # not stopped, as by Ctrl-C
            raise BrokerError(f"the {args.type} broker exited with code {code}; see "
                              f"{server.log_path}")
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second one must not cut cleanup short
        server.cleanup()
