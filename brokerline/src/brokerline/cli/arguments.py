"""Argument parsing of the command line: one-line usage errors, and typed numbers.

A bad argument (`--workers 0`, `--count -5`) is refused while parsing with one sentence that
names the argument and the accepted range, and exit code 2, like every expected failure.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import NoReturn
from urllib.parse import urlsplit

EXIT_USAGE = 2


class OneLineParser(argparse.ArgumentParser):
    """A bad argument is one `error: ...` line and exit code 2, like every expected failure."""

    def error(self, message: str) -> NoReturn:
        print(f"error: {self.prog}: {message}; see `{self.prog} --help`", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def whole_number(minimum: int) -> Callable[[str], int]:
    """An argparse type: a whole number of at least `minimum`."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{value} is too small; use {minimum} or more")
        return value

    return parse


def positive_seconds(text: str) -> float:
    """An argparse type: a number of seconds greater than 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{value:g} is not positive; use more than 0 seconds")
    return value


def http_url(text: str) -> str:
    """An argparse type: an http:// or https:// URL with a host."""
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an HTTP URL; write it as http://host:port/path, "
            "e.g. http://127.0.0.1:9464/readyz"
        )
    return text
