"""A service's entry point: parse, run the command, end expected failures in one sentence."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from brokerline.cli.arguments import EXIT_USAGE
from brokerline.cli.tools import TOOL_ERRORS
from brokerline.config import ConfigError
from brokerline.core import BrokerError
from brokerline.core.urls import redact_text

#: failures that end in one `error: ...` sentence and exit code 2, without a traceback
EXPECTED_ERRORS: tuple[type[Exception], ...] = (ConfigError, BrokerError, OSError, *TOOL_ERRORS)


def run_cli(parser: argparse.ArgumentParser, argv: Sequence[str] | None = None) -> None:
    """Run the command `argv` selects (its `func`); Ctrl-C exits 130 without a traceback."""
    args = parser.parse_args(argv)
    try:
        args.func(args)
    except EXPECTED_ERRORS as exc:
        print(f"error: {redact_text(str(exc))}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE) from None
    except KeyboardInterrupt:
        raise SystemExit(130) from None
